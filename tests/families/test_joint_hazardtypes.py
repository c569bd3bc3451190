"""How the experts' hazards relate: specific, proportional (lcmm's "PH"), common baseline, and
covariate effects common to all experts (``TimeToEvent(hazardtype=..., common_formula=...)``).

* a common baseline without expert-specific covariates makes the events uninformative about
  the experts: the joint maximum is the trajectory mixture's plus one Weibull fit (scipy);
* piecewise hazards proportional across experts are a reparametrisation of the specific ones
  at K = 1 (alpha_j = a + d_j): the same maximum and the same hazards;
* K = 2 with a common Weibull shape and a common covariate: the log-likelihood equals a dense
  computation with scipy's Weibull, the score equals numerical differences, EM never
  decreases the log-likelihood (with competing risks and delayed entry too);
* the summary prints the common coefficients once, in their own section;
* bad input is a ValueError.
"""
import warnings

import numpy as np
import pytest
from scipy import special, stats
from test_joint import weibull_fit
from test_joint_entry import simulate_entry

from pymemoe import MEMoE, TimeToEvent

from helpers import assert_em_never_decreases, assert_score_is_numerical_gradient, perturbed
from truth import dense_loglike


@pytest.fixture(scope="module")
def data():
    df = simulate_entry(500, seed=4)
    # a subject-level covariate that is not in the gating (no effect on the events)
    z = np.random.default_rng(5).normal(size=df["id"].max() + 1)
    return df.assign(z=z[df["id"].to_numpy()])


def _model(df, n_experts=2, **survival):
    spec = dict(time="T", event="d", formula="~ x1")
    spec.update(survival)
    return MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time",
                              gate_formula="~ x1 + x2", n_experts=n_experts,
                              survival=TimeToEvent(**spec))


def test_common_baseline_without_expert_effects_adds_a_separate_weibull_fit(data):
    """Every hazard coefficient common: f(T_i, d_i | k) is the same for all k, so the joint
    log-likelihood separates into the trajectory mixture's and one Weibull model's."""
    joint = _model(data, formula="~1", common_formula="~ x1", hazardtype="common").fit(
        n_starts=3, random_state=0)
    trajectories = MEMoE.from_formula("y ~ time", data, "id", re_formula="~ time",
                                      gate_formula="~ x1 + x2", n_experts=2).fit(
        n_starts=3, random_state=0)
    subjects = data.groupby("id").first()
    X = np.column_stack([np.ones(len(subjects)), subjects["x1"]])
    coef, llf = weibull_fit(subjects["T"].to_numpy(), subjects["d"].to_numpy() == 1, X)
    assert joint.llf >= trajectories.llf + llf - 1e-6
    assert joint.llf - (trajectories.llf + llf) < 1e-4
    mine = np.array([joint.params[("beta", "all", f"event: {term}")]
                     for term in ("Intercept", "x1", "log(shape)")])
    np.testing.assert_allclose(mine, coef, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(joint.fe_params.loc[["Intercept", "time"]].to_numpy(),
                               trajectories.fe_params.to_numpy(), rtol=1e-3, atol=1e-4)


def test_proportional_piecewise_hazards_reparametrise_the_specific_ones(data):
    knots = (1.5, 3.0, 5.0)
    plain = _model(data, n_experts=1, hazard="piecewise", knots=knots).fit()
    relative = _model(data, n_experts=1, hazard="piecewise", knots=knots,
                      hazardtype="PH").fit()
    assert relative.llf == pytest.approx(plain.llf, abs=1e-6)
    alpha = plain.params.loc[("beta", 1)].filter(like="log hazard [").to_numpy()
    level = relative.params.loc[("beta", 1, "event: log hazard [0, 1.5)")]
    ratios = relative.params.loc[("beta", "all")].filter(like="log hazard ratio").to_numpy()
    np.testing.assert_allclose(np.r_[level, level + ratios], alpha, atol=1e-5)


def _dense_llf(res, df):
    """Dense log-likelihood of the K = 2 model with a Weibull shape and an effect of x2
    common to the experts (scipy's Weibull; tests/truth.py's normals), with entry."""
    params = res.params
    subjects = df.groupby("id").first()
    T, d, T0 = (subjects[c].to_numpy() for c in ("T", "d", "T0"))
    event_logdens, entry_logsurv = np.zeros((len(T), 2)), np.zeros((len(T), 2))
    for k in range(2):
        theta = np.array([params[("beta", k + 1, "event: Intercept")],
                          params[("beta", k + 1, "event: x1")],
                          params[("beta", "all", "event: x2")]])
        rho = np.exp(params[("beta", "all", "event: log(shape)")])
        X = np.column_stack([np.ones(len(T)), subjects["x1"], subjects["x2"]])
        scale = np.exp(-(X @ theta) / rho)
        event_logdens[:, k] = np.where(d == 1, stats.weibull_min.logpdf(T, rho, scale=scale),
                                       stats.weibull_min.logsf(T, rho, scale=scale))
        entry_logsurv[:, k] = stats.weibull_min.logsf(T0, rho, scale=scale)
    gamma = res.gate_params.to_numpy().T
    W = np.column_stack([np.ones(len(T)), subjects["x1"], subjects["x2"]])
    log_prior = W @ gamma.T - special.logsumexp(W @ gamma.T, axis=1, keepdims=True)
    beta = res.fe_params.loc[["Intercept", "time"]].to_numpy().T
    cov = np.stack([res.cov_re[k + 1].to_numpy() for k in range(2)])
    X = np.column_stack([np.ones(len(df)), df["time"]])
    Wrows = np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])
    numerator = dense_loglike(df["y"], X, X, Wrows, df["id"], gamma, beta, cov,
                              res.scale.to_numpy(), extra_logdens=event_logdens)
    return numerator - special.logsumexp(log_prior + entry_logsurv, axis=1).sum()


def test_proportional_weibull_with_a_common_covariate_is_the_dense_likelihood(data):
    model = _model(data, hazardtype="proportional", common_formula="~ x2", entry="T0")
    res = model.fit(n_starts=2, random_state=0)
    assert res.llf == pytest.approx(_dense_llf(res, data), abs=1e-8 * abs(res.llf))
    # the common coefficients are parameters once, in their own section of the summary
    labels = list(res.params.index)
    assert ("beta", "all", "event: log(shape)") in labels
    assert ("beta", 1, "event: log(shape)") not in labels
    text = str(res.summary())
    assert "All experts: time to event" in text and "proportional across experts" in text
    assert "all experts: event: x2" in text            # its hazard ratio
    assert np.isfinite(res.bse).all()


@pytest.mark.parametrize("spec", [
    dict(hazardtype="PH", common_formula="~ x2"),
    dict(hazard="piecewise", knots=(1.5, 3.0), hazardtype="PH", formula="~1",
         common_formula="~ x1"),
])
def test_score_with_common_coefficients_equals_numerical_gradient(data, spec):
    model = _model(data, event="d2", causes=["a", "b"], entry="T0", **spec)
    res = model.fit(n_starts=1, random_state=0, maxiter=30, polish=False)
    assert_score_is_numerical_gradient(model, perturbed(res.params, seed=2))


@pytest.mark.parametrize("spec", [
    dict(hazardtype="PH", common_formula="~ x2"),
    dict(hazardtype="common"),
    dict(hazard="piecewise", knots=(1.5, 3.0), hazardtype="PH", formula="~1",
         common_formula="~ x1", entry="T0"),
])
def test_em_with_common_coefficients_never_decreases_the_loglikelihood(data, spec):
    assert_em_never_decreases(_model(data, event="d2", causes=["a", "b"], **spec))


def test_predictions_read_both_formulas_for_new_subjects(data):
    res = _model(data, hazardtype="PH", common_formula="~ z").fit(n_starts=1,
                                                                  random_state=0)
    first = data[data["id"].isin(data["id"].unique()[:3])]
    dyn = res.dynamic_prediction(first, landmark=1.0, horizon=2.0, time="time", n_draws=0)
    assert np.isfinite(dyn["P(event)"]).all()
    with pytest.raises(ValueError, match="'~ x1 / ~ z' is missing for subject"):
        res.dynamic_prediction(first.assign(z=np.nan), landmark=1.0, horizon=2.0,
                               time="time", n_draws=0)


def test_curves_are_finite_for_extreme_coefficients():
    """A degenerate hazard (a huge linear predictor and shape, as a separated fit gives) has
    H(0) = 0 and finite survival and incidence curves (computed in log space)."""
    from pymemoe.families.events import WeibullHazards
    hazards = WeibullHazards(exog_names=("Intercept", "age"), cause_names=("a", "b"))
    coef = np.array([[5e4, -2e3, 8.0, -5.0, 0.05, 0.2]])        # cause a: exp(5e4 - 2e3 age)
    surv, incidence = hazards.curves(coef, np.array([[1.0, 50.0], [1.0, 20.0]]),
                                     np.array([0.0, 3.0, 6.0]))
    assert np.isfinite(surv).all() and np.isfinite(incidence).all()
    assert surv[0, 0, 0] == 1.0
    np.testing.assert_allclose(incidence[0, 0].sum(axis=0), 1.0 - surv[0, 0], atol=1e-3)


def test_bad_hazard_relations_are_value_errors(data):
    with pytest.raises(ValueError, match="hazardtype must be"):
        TimeToEvent("T", "d", hazardtype="stratified")
    with pytest.raises(ValueError, match="both have 'x1'"):
        _model(data, common_formula="~ x1")
    with pytest.raises(ValueError, match="must be one-sided"):
        TimeToEvent("T", "d", common_formula="x1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TimeToEvent("T", "d", hazardtype="PH").hazardtype == "proportional"
