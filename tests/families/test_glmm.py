"""Binomial and Poisson experts (pymemoe.families.glmm) through the model: K = 1 against lme4's
glmer (Laplace and nAGQ = 25) on simulated data and MASS's bacteria and epil; the mixture
log-likelihood at the simulated truths against the reference values of the R script; K = 2
without random effects against flexmix; the mixture log-likelihood of a few subjects against
brute-force integration; convergence in the number of nodes; standard errors against
numerical differentiation of the reported log-likelihood; bad input.

References: tests/reference/results/glmm_refs_used.json and tests/reference/results/glmm/sim_*_truth.json (copied
from shared/reference/glmm, made by tests/reference/results/scripts/05_glmm.R with R 4.2.2, lme4 1.1-31,
glmmTMB 1.1.5, flexmix 2.3-18).
"""
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats
from scipy.special import expit, gammaln

from pymemoe import MEMoE
from pymemoe._model.params import Params, from_user

from helpers import RESULTS, bacteria_model, glmm_csv, glmm_sim


def _row_loglik(y, eta, family):
    if family == "binomial":
        return y * eta - np.logaddexp(0.0, eta)
    return y * eta - np.exp(eta) - gammaln(y + 1)


def _brute_force_subject_llf(y, X, Z, params, family):
    """log sum_k pi_k int p(y | b) N(b; 0, D_k) db, independently of pymemoe: scipy's quad for
    one random effect, a 1201 x 1201 trapezoid grid over +-9 SD for two (the integrand is
    smooth and decays like a Gaussian, so the grid error is far below 1e-10)."""
    total = 0.0
    prior = np.exp(params.gamma @ np.ones(params.gamma.shape[1]))     # gating on the intercept
    prior = prior / prior.sum()
    for k in range(params.n_experts):
        sd = np.sqrt(np.diag(params.cov_re[k]))
        if Z.shape[1] == 1:
            def density(b):
                eta = X @ params.beta[k] + Z[:, 0] * b
                return np.exp(_row_loglik(y, eta, family).sum()) * stats.norm.pdf(b, scale=sd[0])
            value = integrate.quad(density, -10 * sd[0], 10 * sd[0], epsabs=1e-14)[0]
        else:
            b0 = np.linspace(-9 * sd[0], 9 * sd[0], 1201)
            b1 = np.linspace(-9 * sd[1], 9 * sd[1], 1201)
            B0, B1 = np.meshgrid(b0, b1, indexing="ij")
            eta = (X @ params.beta[k])[:, None, None] + Z[:, 0, None, None] * B0 + Z[:, 1, None, None] * B1
            log_p = _row_loglik(y[:, None, None], eta, family).sum(axis=0)
            prior_b = stats.multivariate_normal(cov=params.cov_re[k]).logpdf(np.dstack([B0, B1]))
            value = integrate.trapezoid(integrate.trapezoid(np.exp(log_p + prior_b), b1, axis=1), b0)
        total += prior[k] * value
    return np.log(total)


@pytest.mark.parametrize("family, q", [("binomial", 2), ("poisson", 1)])
def test_mixture_llf_of_a_few_subjects_equals_brute_force_integration(family, q):
    rng = np.random.default_rng(5)
    n_sub, visits = 3, 5
    t = np.tile(np.arange(visits, dtype=float), n_sub)
    g = np.repeat(np.arange(n_sub), visits)
    X = np.column_stack([np.ones_like(t), t])
    y = (rng.random(t.size) < 0.4).astype(float) if family == "binomial" else rng.poisson(2.0, t.size).astype(float)
    params = Params(gamma=[[0.0], [0.4]], beta=[[-0.5, 0.3], [0.8, -0.2]],
                    cov_re=np.array([[[0.8, 0.1], [0.1, 0.3]], [[0.5, -0.05], [-0.05, 0.1]]])[:, :q, :q],
                    scale=[1.0, 1.0])
    model = MEMoE(y, X, g, exog_re=X[:, :q], n_experts=2, family=family, nAGQ=25)
    ours = model.loglikeobs(params)
    brute = [_brute_force_subject_llf(y[g == i], X[g == i], X[g == i, :q], params, family)
             for i in range(n_sub)]
    np.testing.assert_allclose(ours, brute, atol=1e-8)


def test_quadrature_llf_converges_as_nodes_are_added():
    params = None
    values = []
    for n_agq in (1, 3, 7, 11, 15, 21):
        model = glmm_sim("binary", 2, 2, nAGQ=n_agq)
        if params is None:
            truth = json.loads((RESULTS / "glmm" / "sim_binary_k2_truth.json").read_text())
            params = Params(gamma=truth["gamma"], beta=truth["beta"], cov_re=truth["D"], scale=[1.0, 1.0])
        values.append(model.loglike(params))
    errors = np.abs(np.array(values) - values[-1])
    assert errors[0] > 5.0                                 # Laplace is off by ~7 units here
    assert np.all(np.diff(errors[:-1]) < 0) and errors[-2] < 1e-4


def test_standard_errors_equal_the_inverse_numerical_hessian_of_the_reported_llf():
    from statsmodels.tools.numdiff import approx_hess2
    model = bacteria_model()
    res = model.fit(cov_type="oim")
    theta = res.params.to_numpy()
    hess = approx_hess2(theta, lambda v: model.loglike(from_user(v, model.structure)))
    se = np.sqrt(np.diag(np.linalg.inv(-hess)))
    np.testing.assert_allclose(res.bse.to_numpy(), se, rtol=2e-3)
    robust = model.fit(cov_type="robust")
    assert np.all(np.isfinite(robust.bse.to_numpy())) and not np.allclose(robust.bse, res.bse)


@pytest.mark.parametrize("family, y, kw, match", [
    ("binomial", [0, 1, 2, 0, 1, 0], {}, "0 or 1.*row 2"),
    ("poisson", [0, 1, -1, 0, 1, 0], {}, "non-negative integers.*row 2"),
    ("poisson", [0, 1, 0.5, 0, 1, 0], {}, "non-negative integers.*row 2"),
    ("poisson", [0, 1, 1, 0, 1, 0], {"exposure": [1, 1, 1, 0, 1, 1]}, "exposure must be positive: row 3"),
    ("binomial", [[1, 0], [0, 2], [3, -1], [0, 1], [1, 1], [0, 1]], {}, "trials.*row 2"),
    ("binomial", [0, 0, 0, 0, 0, 0], {}, "constant"),
])
def test_bad_outcomes_are_rejected_naming_the_row(family, y, kw, match):
    g = [1, 1, 1, 2, 2, 2]
    X = np.column_stack([np.ones(6), np.arange(6.0)])
    with pytest.raises(ValueError, match=match):
        MEMoE(np.array(y, dtype=float), X, g, n_experts=1, family=family, **kw)


@pytest.mark.parametrize("formula, family, column, value, kw, message", [
    ("y ~ t", "binomial", "y", 2.0, {}, "the outcome 'y': a binary outcome must be 0 or 1 "
                                        "for family='binomial' (write 'successes + failures ~ "
                                        "...' for counts) (row 104 has 2)"),
    ("y ~ t", "poisson", "e", 0.0, {"exposure": "e"},
     "the exposure column 'e' must be positive: row 104 has 0"),
    ("s + f ~ t", "binomial", "f", -1.0, {},
     "the outcome 's + f': the number of trials (successes + failures) must be an integer >= 1 "
     "and at least the successes (row 104 has 1 successes and -1 failures)"),
])
def test_bad_input_from_formulas_names_the_column_and_the_row_label(formula, family, column,
                                                                     value, kw, message):
    df = pd.DataFrame({"id": np.repeat(np.arange(4), 3), "t": np.tile([0.0, 1, 2], 4),
                       "y": np.tile([0.0, 1, 1], 4), "s": 1.0, "f": 1.0, "e": 1.0},
                      index=np.arange(12) + 100)
    df.loc[104, column] = value
    with pytest.raises(ValueError) as err:
        MEMoE.from_formula(formula, df, "id", family=family, n_experts=1, **kw)
    assert str(err.value) == message


def test_gaussian_options_that_do_not_apply_are_rejected():
    g = [1, 1, 1, 2, 2, 2]
    X = np.column_stack([np.ones(6), np.arange(6.0)])
    y = np.array([0, 1, 1, 0, 1, 0.0])
    with pytest.raises(ValueError, match="residual variances exist for Gaussian"):
        MEMoE(y, X, g, n_experts=1, family="binomial", scale="shared")
    with pytest.raises(ValueError, match="offset and exposure"):
        MEMoE(y, X, g, n_experts=1, exposure=np.ones(6))
    with pytest.raises(ValueError, match="nAGQ"):
        MEMoE(y, X, g, n_experts=1, nAGQ=5)
    with pytest.raises(ValueError, match="at most 3 random effects"):
        MEMoE(y, np.column_stack([X, X ** 2]), g, exog_re=np.column_stack([X, X ** 2]),
              n_experts=1, family="binomial", nAGQ=3)


@pytest.fixture(scope="module")
def poisson_k2():
    df = glmm_csv("sim_poisson_k2")
    model = MEMoE.from_formula("y ~ time", df, "subject", gate_formula="~ x1 + x2", n_experts=2,
                               family="poisson", exposure="exposure")
    return df, model.fit(random_state=0, n_starts=2)


@pytest.mark.parametrize("options, check", [
    (dict(cov_re="shared"), lambda r: np.allclose(r.cov_re[1], r.cov_re[2])),
    (dict(cov_re="proportional"), lambda r: np.isfinite(r.params[("re_cov", 2, "SD ratio")])),
    (dict(re_structure="diagonal"), lambda r: r.cov_re[1].iloc[0, 1] == 0 and r.cov_re[2].iloc[0, 1] == 0),
    (dict(shared_formula="~ x2"), lambda r: ("beta", "all", "x2") in r.params.index),
])
def test_structures_work_for_binary_experts(options, check):
    df = glmm_csv("sim_binary_k2")
    model = MEMoE.from_formula("y ~ time", df, "subject", re_formula="~ time", gate_formula="~ x1 + x2",
                               n_experts=2, family="binomial", **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(random_state=0, n_starts=2)
        assert np.isfinite(res.llf) and check(res)
        assert np.isfinite(res.bse[("beta", 1, "time")])
    assert "Residual SD" not in res.summary().as_text()
    assert not any(t == "sigma2" for t in res.params.index.get_level_values("term"))


def test_two_column_binomial_outcome_equals_its_binary_expansion():
    """successes + failures per row against the same data as one binary row per trial: the
    log-likelihoods differ by the binomial coefficients only, the estimates not at all."""
    rng = np.random.default_rng(3)
    n_sub, visits = 80, 4
    g = np.repeat(np.arange(n_sub), visits)
    t = np.tile(np.arange(visits, dtype=float), n_sub)
    trials = rng.integers(1, 5, size=g.size)
    succ = rng.binomial(trials, 1 / (1 + np.exp(-(0.3 * t - 0.5 + np.repeat(rng.normal(size=n_sub), visits)))))
    counts = pd.DataFrame({"id": g, "t": t, "s": succ, "f": trials - succ})
    binary = counts.loc[counts.index.repeat(trials)].copy()
    binary["y"] = np.concatenate([np.r_[np.ones(s), np.zeros(n - s)] for s, n in zip(succ, trials)])
    a = MEMoE.from_formula("s + f ~ t", counts, "id", n_experts=1, family="binomial").fit()
    b = MEMoE.from_formula("y ~ t", binary, "id", n_experts=1, family="binomial").fit()
    from scipy.special import comb
    assert a.llf - b.llf == pytest.approx(np.log(comb(trials, succ)).sum(), abs=1e-5)
    np.testing.assert_allclose(a.params.to_numpy(), b.params.to_numpy(), atol=1e-5)
    assert a.resid.abs().max() <= 1.0          # proportions minus probabilities


def test_predictions_are_on_the_response_scale(poisson_k2):
    df, res = poisson_k2
    new = df[df["subject"] == df["subject"].iloc[0]]
    expert = res.predict(new, kind="expert")
    marginal = res.predict(new, kind="marginal")
    pi = res.prior_class(new).to_numpy()[0]
    np.testing.assert_allclose(marginal.to_numpy(), expert.to_numpy() @ pi, rtol=1e-12)
    # E[exp(eta)] over b ~ N(0, s^2) is exp(eta0 + s^2 / 2) (closed form, independent)
    beta = res.fe_params.to_numpy()
    var = np.array([res.cov_re[k].iloc[0, 0] for k in (1, 2)])
    eta0 = np.log(new["exposure"].to_numpy())[:, None] + np.column_stack([np.ones(len(new)), new["time"]]) @ beta
    np.testing.assert_allclose(expert.to_numpy(), np.exp(eta0 + var / 2), rtol=1e-10)
    cond = res.predict(new, kind="conditional")
    assert np.all(cond > 0) and not np.allclose(cond, marginal)
    frame = res.get_prediction(new, kind="marginal").summary_frame()
    assert (frame["mean_ci_lower"] > 0).all() and (frame["mean_ci_lower"] < frame["mean"]).all()
    with pytest.raises(ValueError, match="density"):
        res.prediction_set(new, kind="marginal")
    assert res.predict_class(new).shape == (1, 2)


def test_bootstrap_draws_counts_and_refits(poisson_k2):
    from pymemoe import simulate
    df, res = poisson_k2
    sim = simulate(res, random_state=1)
    y = sim.data["y"].to_numpy()
    assert np.all(y >= 0) and np.all(y == np.round(y)) and not np.array_equal(y, df["y"].to_numpy())
    refit = MEMoE.from_formula(data=sim.data, **sim.formula_kwargs, **sim.model_kwargs).fit(
        random_state=0, n_starts=2, cov_type="none")
    assert refit.n_experts == 2 and refit.model.family.name == "poisson"
    np.testing.assert_allclose(np.sort(refit.fe_params.to_numpy()[0]), np.sort(res.fe_params.to_numpy()[0]),
                               atol=0.3)


def test_chunked_data_refuse_glmm_families():
    from pymemoe.chunked import from_chunks
    with pytest.raises(ValueError, match="need each subject's rows"):
        from_chunks("y ~ time", [glmm_csv("sim_poisson_k2")], "subject", family="poisson")


def test_trajectory_plot_of_a_model_with_exposure_is_per_unit_exposure(poisson_k2):
    """The grid of plot_trajectories sets the exposure column to 1: each curve is the expert's
    marginal mean count per unit of exposure, the closed form exp(x'beta_k + z'D_k z / 2) for a
    random intercept (the Poisson marginal mean)."""
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    from pymemoe.plotting import plot_trajectories
    from pymemoe.plotting._trajectories import expert_curves
    _, res = poisson_k2
    ax = plot_trajectories(res, "time", band=None)
    assert len(ax.lines) >= 2
    grid = np.linspace(0.0, 5.0, 7)
    curves = expert_curves(res, "time", grid, band=None)[0]
    beta = res.fe_params.to_numpy()                      # (terms, K)
    var = np.array([res.cov_re[k + 1].iloc[0, 0] for k in range(res.n_experts)])
    expected = np.exp(beta[0] + np.outer(grid, beta[1]) + var / 2)
    np.testing.assert_allclose(curves, expected, rtol=1e-6)
    matplotlib.pyplot.close("all")


def test_separated_outcomes_warn_naming_the_expert_and_the_term():
    """Complete separation (y = 1 exactly when x > 0; counts all zero in one category): the
    maximum likelihood estimates do not exist and the fit says so; the simulated reference
    data, which are not separated, raise no such warning."""
    from pymemoe.exceptions import SeparationWarning
    rng = np.random.default_rng(1)
    x = rng.normal(size=360)
    df = pd.DataFrame({"id": np.repeat(np.arange(60), 6), "x": x, "y": (x > 0) * 1.0,
                       "count": rng.poisson(np.where(x > 0, 3.0, 0.0)), "g": (x > 0) * 1})
    for formula, family, term in (("y ~ x", "binomial", "'x'"), ("count ~ C(g)", "poisson", "")):
        model = MEMoE.from_formula(formula, df, "id", n_experts=1, family=family, re_formula="0")
        with pytest.warns(SeparationWarning, match=f"expert 1: .*perfectly.*{term}"):
            model.fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeparationWarning)
        glmm_sim("binary", 2, 2).fit(random_state=0, n_starts=2, cov_type="none")


def test_predictive_variances_match_simulation(poisson_k2):
    """Var[y | expert k] of predictive_mixture against Monte Carlo draws from the fitted model
    (b ~ N(0, D_k), then y): Poisson counts with exposure; binomial proportions y / m of a
    'successes + failures' model; 0/1 outcomes have the Bernoulli variance; rows whose trials
    are not known get NaN."""
    from pymemoe.prediction import predictive_mixture
    rng = np.random.default_rng(12)
    df, res = poisson_k2
    rows = df.iloc[[0, 7, 40]]
    mix = predictive_mixture(res, rows, kind="marginal")
    state = res.state
    X = np.column_stack([np.ones(3), rows["time"]])
    for k in range(2):
        b = rng.normal(size=1_000_000) * np.sqrt(state.cov_re[k, 0, 0])
        for r in range(3):
            mu = rows["exposure"].iloc[r] * np.exp(X[r] @ state.beta[k] + b)
            y = rng.poisson(mu)
            assert mix.means.iloc[r, k] == pytest.approx(y.mean(), rel=5e-3)
            assert mix.variances.iloc[r, k] == pytest.approx(y.var(), rel=2e-2)

    n_sub, visits = 200, 4
    g = np.repeat(np.arange(n_sub), visits)
    t = np.tile(np.arange(visits, dtype=float), n_sub)
    trials = rng.integers(1, 6, size=g.size)
    succ = rng.binomial(trials, expit(0.3 * t - 0.5 + np.repeat(1.2 * rng.normal(size=n_sub), visits)))
    counts = pd.DataFrame({"id": g, "t": t, "s": succ, "f": trials - succ})
    fit = MEMoE.from_formula("s + f ~ t", counts, "id", n_experts=1, family="binomial").fit()
    mix = predictive_mixture(fit, kind="marginal")                    # the fitting rows
    beta, sd = fit.state.beta[0], np.sqrt(fit.state.cov_re[0, 0, 0])
    b = rng.normal(size=1_000_000) * sd
    for r in (0, 3, 17):
        p = expit(beta[0] + beta[1] * t[r] + b)
        prop = rng.binomial(trials[r], p) / trials[r]
        assert mix.variances.iloc[r, 0] == pytest.approx(prop.var(), rel=2e-2)
    new = counts.iloc[:4].assign(s=np.nan)                 # no outcome: trials unknown
    assert predictive_mixture(fit, new, kind="conditional").variances.iloc[:, 0].isna().all()
    binary = MEMoE.from_formula("y ~ t", counts.assign(y=(counts["s"] > 0) * 1.0), "id",
                                n_experts=1, family="binomial").fit()
    for kind in ("marginal", "conditional"):
        mix = predictive_mixture(binary, kind=kind)
        m = mix.means.iloc[:, 0]
        np.testing.assert_allclose(mix.variances.iloc[:, 0], m * (1 - m), rtol=1e-10)
    from pymemoe._predictive.laws import laws_of
    _, laws = laws_of(binary, None, "marginal")      # the Gaussian formulas do not apply
    with pytest.raises(ValueError, match="'binomial' predictive law is discrete"):
        laws.cdf(np.zeros((laws.weights.shape[0], 1)))


def test_start_search_runs_with_three_nodes_and_the_fit_with_the_models_nagq():
    """nAGQ > 3: the default start search runs with 3 nodes per dimension
    (GLMMFamily.search_family) and its best solution is finished with the model's nAGQ. The
    search's best value is the maximum of a separately fitted 3-node model, and the fit reaches
    the maximum that starts run with 10 nodes throughout (starts="independent") reach."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = glmm_sim("binary", 1, 2, nAGQ=10).fit(random_state=0, n_starts=4)
        three_nodes = glmm_sim("binary", 1, 2, nAGQ=3).fit(random_state=0, n_starts=4)
        ten_nodes = glmm_sim("binary", 1, 2, nAGQ=10).fit(random_state=0, n_starts=4,
                                                          starts="independent")
    starts = res.starts
    search = starts[(starts["n_experts"] == 2) & (starts["kind"] != "refined")]
    np.testing.assert_allclose(search["llf"].max(), three_nodes.llf, atol=1e-4)
    assert starts.loc[starts["chosen"], "kind"].tolist() == ["refined"]
    np.testing.assert_allclose(res.llf, ten_nodes.llf, atol=1e-6)
    # the two approximations' maxima differ here, so the two equalities tell them apart
    assert abs(res.llf - three_nodes.llf) > 0.5
