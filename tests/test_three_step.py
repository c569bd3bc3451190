"""Three-step methods (pymemoe.three_step): distal outcomes and predictors of membership.

References, independent of the code under test:
- modal assignment is ordinary regression on the assigned class: statsmodels' OLS on class
  dummies (means, HC0 standard errors) and MNLogit (coefficients, HC0 standard errors);
- the ML three-step likelihood written here from its definition (Vermunt 2010) and maximised
  by scipy with numerical derivatives; its standard errors from statsmodels' numerical Hessian;
- algebra: for a saturated distal model (a binary outcome with free class proportions) the ML
  three-step reproduces the observed (assignment x outcome) table, as BCH does, so the two
  coincide; with perfect classification (D = I) every method is the modal one;
- the step-1 correction: J by the implicit function theorem equals the brute-force derivative
  of the re-estimated step 3 at perturbed step-1 parameters.
"""
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize
from scipy.special import logsumexp
from statsmodels.tools.numdiff import approx_hess3

from pymemoe import MEMoE
from pymemoe._model.likelihood import e_step
from pymemoe._model.params import from_user
from pymemoe._relate.classification import classification_error as error_matrix
from pymemoe._relate.classification import modal_assignment
from pymemoe._relate.distal import BernoulliLaw
from pymemoe._relate.estimators import weighted_distal
from pymemoe.three_step import class_predictors, classification_error, distal_outcome

MODEL = dict(re_formula="~ year", n_experts=2)


@pytest.fixture(scope="module")
def pbc2(pbc):
    df = pbc.assign(died=(pbc["status"] == 2).astype(int))
    res = MEMoE.from_formula("logbili ~ year", df, "id", **MODEL).fit(random_state=0)
    return df, res


def _modal(res):
    return pd.Series(res.posterior.to_numpy().argmax(axis=1) + 1, index=res.posterior.index)


def _first(df, column):
    return df.groupby("id")[column].first()


def test_modal_means_are_ols_on_the_assigned_class(pbc2):
    df, res = pbc2
    out = distal_outcome(res, df, "age", method="modal", se="step3")
    assigned = _modal(res)
    X = pd.get_dummies(assigned).astype(float).to_numpy()
    ols = sm.OLS(_first(df, "age").to_numpy(), X).fit(cov_type="HC0")
    means = out.params.xs("mean", level="parameter")
    np.testing.assert_allclose(means, ols.params, rtol=1e-12)
    np.testing.assert_allclose(out.bse.xs("mean", level="parameter"), ols.bse, rtol=1e-10)
    # the SD is the within-class ML standard deviation
    sd = _first(df, "age").groupby(assigned).std(ddof=0)
    np.testing.assert_allclose(out.params.xs("sd", level="parameter"), sd, rtol=1e-12)


def test_modal_predictors_are_mnlogit_on_the_assigned_class(pbc2):
    df, res = pbc2
    out = class_predictors(res, df, "~ age + C(sex)", method="modal", se="step3")
    first = df.groupby("id").first()
    X = sm.add_constant(np.column_stack([(first["sex"] == "m").astype(float), first["age"]]))
    mn = sm.MNLogit(_modal(res).to_numpy() - 1, X).fit(disp=0, cov_type="HC0", tol=1e-12,
                                                       maxiter=200)
    np.testing.assert_allclose(out.params, np.asarray(mn.params).T.ravel(), rtol=1e-6)
    np.testing.assert_allclose(out.bse, np.asarray(mn.bse).T.ravel(), rtol=1e-5)


def _ml_predictor_loglik(beta, X, D, assigned):
    """sum_i log sum_k pi_k(x_i; beta) D[k, s_i], written from Vermunt (2010)."""
    K = D.shape[0]
    eta = np.column_stack([np.zeros(len(X)), X @ beta.reshape(K - 1, -1).T])
    log_pi = eta - logsumexp(eta, axis=1, keepdims=True)
    return float(logsumexp(log_pi + np.log(D[:, assigned].T), axis=1).sum())


def test_ml_predictors_maximise_the_three_step_likelihood(pbc2):
    df, res = pbc2
    out = class_predictors(res, df, "~ age + C(sex)", method="ml", se="step3")
    tau = res.posterior.to_numpy()
    s = modal_assignment(tau)
    D = error_matrix(tau, s)
    first = df.groupby("id").first()
    X = np.column_stack([np.ones(len(first)), (first["sex"] == "m").astype(float), first["age"]])
    found = optimize.minimize(lambda b: -_ml_predictor_loglik(b, X, D, s), np.zeros(3),
                              method="Nelder-Mead",
                              options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000})
    np.testing.assert_allclose(out.params, found.x, rtol=1e-4, atol=1e-6)
    hess = approx_hess3(out.params.to_numpy(), lambda b: _ml_predictor_loglik(b, X, D, s))
    np.testing.assert_allclose(out.bse, np.sqrt(np.diag(np.linalg.inv(-hess))), rtol=1e-4)


def test_ml_and_bch_coincide_for_a_saturated_binary_outcome(pbc2):
    df, res = pbc2
    bch = distal_outcome(res, df, "died", family="binomial", method="bch")
    ml = distal_outcome(res, df, "died", family="binomial", method="ml")
    np.testing.assert_allclose(ml.params.xs("probability", level="parameter"),
                               bch.params.xs("probability", level="parameter"), rtol=1e-7)
    # ML's class proportions are those of BCH's weights: the assignment shares times D^-1
    tau = res.posterior.to_numpy()
    s = modal_assignment(tau)
    shares = np.bincount(s, minlength=2) / len(s)
    np.testing.assert_allclose(ml.params.xs("proportion", level="parameter"),
                               shares @ np.linalg.inv(error_matrix(tau, s)), rtol=1e-7)


def test_every_method_is_modal_when_classification_is_perfect():
    rng = np.random.default_rng(4)
    n = 300
    cls = rng.integers(0, 2, n)
    rows = pd.DataFrame({"id": np.repeat(np.arange(n), 5), "t": np.tile(np.arange(5.0), n)})
    rows["y"] = np.repeat(np.where(cls == 1, 8.0, 0.0), 5) + rows["t"] + rng.normal(0, 0.5, 5 * n)
    rows["z"] = np.repeat(np.where(cls == 1, 2.0, -1.0) + rng.normal(size=n), 5)
    res = MEMoE.from_formula("y ~ t", rows, "id", re_formula="0", n_experts=2).fit(
        random_state=1)
    assert np.allclose(classification_error(res), np.eye(2), atol=1e-9)
    fits = {m: distal_outcome(res, rows, "z", method=m) for m in ("modal", "bch", "ml")}
    for m in ("bch", "ml"):
        np.testing.assert_allclose(fits[m].params.xs("mean", level="parameter"),
                                   fits["modal"].params.xs("mean", level="parameter"),
                                   rtol=1e-6)
        np.testing.assert_allclose(fits[m].bse.xs("mean", level="parameter"),
                                   fits["modal"].bse.xs("mean", level="parameter"), rtol=1e-3)


def test_the_step1_jacobian_equals_the_derivative_of_the_re_estimated_step3(pbc2):
    """J = A^-1 dPsi/dtheta_1 (implicit function theorem) against re-estimating BCH step 3 at
    perturbed step-1 parameters (central differences of the estimates themselves)."""
    df, res = pbc2
    model = res.model
    theta1 = res.params.to_numpy()
    z = _first(df, "died").to_numpy(dtype=float)
    rows = np.arange(len(z))
    tau = res.posterior.to_numpy()
    s = modal_assignment(tau)
    law = BernoulliLaw()
    fit = weighted_distal(law, z, "bch", tau, s, rows)

    def tau_at(vector):
        return e_step(model.data, from_user(vector, model.structure)).tau

    se = res.bse.to_numpy()
    for j in (0, 3, 6):                        # a gating, a fixed-effect, a variance parameter
        h = 1e-3 * se[j]
        up, down = theta1.copy(), theta1.copy()
        up[j] += h
        down[j] -= h
        brute = (weighted_distal(law, z, "bch", tau_at(up), s, rows).theta
                 - weighted_distal(law, z, "bch", tau_at(down), s, rows).theta) / (2 * h)
        grad = (fit.estimating(tau_at(up)) - fit.estimating(tau_at(down))) / (2 * h)
        np.testing.assert_allclose(np.linalg.solve(fit.bread, grad), brute, rtol=1e-5,
                                   atol=1e-9)


def test_corrected_standard_errors_add_a_positive_semidefinite_term(pbc2):
    df, res = pbc2
    for method in ("bch", "ml"):
        corrected = distal_outcome(res, df, "age", method=method)
        known = distal_outcome(res, df, "age", method=method, se="step3")
        extra = corrected.cov_params().to_numpy() - known.cov_params().to_numpy()
        assert np.linalg.eigvalsh(extra).min() > -1e-10
        assert (corrected.bse > known.bse).any()
    modal = distal_outcome(res, df, "age", method="modal")
    np.testing.assert_array_equal(modal.bse,
                                  distal_outcome(res, df, "age", method="modal",
                                                 se="step3").bse)


def test_outcomes_of_each_family(pbc2):
    df, res = pbc2
    counts = df.groupby("id")["id"].transform("size")        # visits: a count per subject
    data = df.assign(visits=counts)
    pois = distal_outcome(res, data, "visits", family="poisson", method="ml")
    assert (pois.params.xs("mean", level="parameter") > 0).all()
    cat = distal_outcome(res, df, "status", family="categorical", method="bch")
    probs = cat.params.unstack("parameter")
    assert list(probs.columns) == ["P(0)", "P(1)", "P(2)"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    tests = cat.equality_test()
    assert tests.loc["all experts", "df"] == 2 and tests.loc["all experts", "P>chi2"] < 0.001
    text = str(cat.summary())
    assert "Distal outcome 'status' (categorical)" in text and "BCH" in text
    assert cat.summary().to_latex().count("\\midrule") >= 1


def test_missing_outcomes_are_left_out_and_counted(pbc2):
    df, res = pbc2
    ages = _first(df, "age")
    gone = ages.index[:5]
    data = df.assign(age=df["age"].where(~df["id"].isin(gone)))
    out = distal_outcome(res, data, "age", method="bch")
    assert out.n_used == len(ages) - 5 and out.n_missing == 5
    assert "5 without a value" in out.summary().notes
    per_subject = ages.drop(ages.index[5:15]).rename("age").reset_index()
    assert distal_outcome(res, per_subject, "age").n_missing == 10      # one row per subject


def test_bad_input_is_named(pbc2):
    df, res = pbc2
    varying = df.assign(z=np.arange(len(df), dtype=float))
    with pytest.raises(ValueError, match="outcome 'z' varies within subject 1"):
        distal_outcome(res, varying, "z")
    with pytest.raises(ValueError, match="must be 0/1.*subject"):
        distal_outcome(res, df, "status", family="binomial")
    with pytest.raises(ValueError, match="not a column"):
        distal_outcome(res, df, "nope")
    with pytest.raises(ValueError, match="method must be one of"):
        distal_outcome(res, df, "age", method="bhc")
    with pytest.raises(ValueError, match="family must be one of"):
        distal_outcome(res, df, "age", family="normal")
    with pytest.raises(ValueError, match="varies within subject"):
        class_predictors(res, df, "~ year")
    with pytest.raises(ValueError, match="one-sided"):
        class_predictors(res, df, "age ~ sex")
    one = MEMoE.from_formula("logbili ~ year", df, "id", n_experts=1).fit()
    with pytest.raises(ValueError, match="one expert"):
        distal_outcome(one, df, "age")
    none = MEMoE.from_formula("logbili ~ year", df, "id", **MODEL).fit(random_state=0,
                                                                        cov_type="none")
    with pytest.raises(ValueError, match="cov_type='none'.*se='step3'"):
        distal_outcome(none, df, "age")
    assert distal_outcome(none, df, "age", se="step3").n_used == 312


def test_results_do_not_change_and_the_data_are_not_modified(pbc2):
    df, res = pbc2
    before = df.copy()
    out = class_predictors(res, df, "~ age + C(sex)", method="bch")
    pd.testing.assert_frame_equal(df, before)
    params = out.params
    params.iloc[0] = 99.0
    assert out.params.iloc[0] != 99.0
    frame = out.to_frame()
    assert list(frame.columns) == ["coef", "std err", "z", "P>|z|", "lower", "upper"]
    assert set(out.equality_test().index) == {"C(sex)[T.m]", "age", "all predictors"}


def test_a_frequency_weighted_fit_equals_repeated_subjects(pbc2):
    """Steps 2 and 3 weight every sum by the subjects' weights: with frequency weights the
    results equal those on the data with each subject repeated."""
    df, _ = pbc2
    model = MEMoE.from_formula("logbili ~ year", df, "id", **MODEL)
    counts = pd.Series(np.random.default_rng(1).integers(1, 4, model.data.n_groups),
                       index=model.data.subjects).astype(float)
    weighted = model.fit(random_state=0, weights=counts, weight_type="frequency")
    parts = [df[df["id"] == sid].assign(id=f"{sid}_{r}") for sid, k in counts.items()
             for r in range(int(k))]
    repeated_df = pd.concat(parts, ignore_index=True)
    repeated = MEMoE.from_formula("logbili ~ year", repeated_df, "id", **MODEL).fit(
        random_state=0)
    # two fits, each converged to gtol: their parameters agree to ~1e-7, not to rounding
    np.testing.assert_allclose(classification_error(weighted), classification_error(repeated),
                               rtol=1e-6)
    for method in ("bch", "ml"):
        a = distal_outcome(weighted, df, "died", family="binomial", method=method)
        b = distal_outcome(repeated, repeated_df, "died", family="binomial", method=method)
        np.testing.assert_allclose(a.params, b.params, rtol=1e-6)
        np.testing.assert_allclose(a.bse, b.bse, rtol=1e-4)
        a = class_predictors(weighted, df, "~ age", method=method)
        b = class_predictors(repeated, repeated_df, "~ age", method=method)
        np.testing.assert_allclose(a.params, b.params, rtol=1e-5)
        np.testing.assert_allclose(a.bse, b.bse, rtol=1e-4)
    # sampling weights: the same estimates, sandwich standard errors
    sampled = model.fit(random_state=0, weights=counts)
    c = distal_outcome(sampled, df, "died", family="binomial", method="ml")
    np.testing.assert_allclose(c.params, distal_outcome(weighted, df, "died", family="binomial",
                                                        method="ml").params, rtol=1e-6)
