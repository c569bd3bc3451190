"""Predictions, dynamic predictions, class membership, prediction sets and cross-validation.

References are computed here independently of pymemoe's kernels: from the labelled results
(posterior, random_effects, fe_params, gate_params, cov_re, scale) with dense numpy/scipy per
subject, and statsmodels MixedLM for one expert.
"""
import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy.special import softmax
from scipy.stats import multivariate_normal, norm

from pymemoe import MEMoE
from pymemoe._model.params import Params
from pymemoe.crossval import cross_validate
from pymemoe.datasets import load_pbcseq
from pymemoe.prediction import (
    coverage,
    predict,
    predict_class,
    prediction_set,
    predictive_mixture,
    prior_class,
)

TRUTH = {
    "gamma": np.array([[0.0, 0.0, 0.0], [-0.3, 1.0, -0.8]]),   # gating on (1, x1, x2)
    "beta": np.array([[1.0, 0.2], [3.0, -0.4]]),                # (Intercept, time)
    "cov_re": np.array([[[0.5, 0.05], [0.05, 0.04]], [[0.2, -0.02], [-0.02, 0.01]]]),
    "scale": np.array([0.25, 0.1]),
}
SEPARATED = {                                                   # intercepts 0 and 10
    "gamma": np.array([[0.0, 0.0, 0.0], [0.2, 0.5, -0.5]]),
    "beta": np.array([[0.0, 0.1], [10.0, -0.1]]),
    "cov_re": np.array([[[0.1, 0.0], [0.0, 0.01]], [[0.1, 0.0], [0.0, 0.01]]]),
    "scale": np.array([0.1, 0.1]),
}
MODEL = dict(re_formula="~ time", gate_formula="~ x1 + x2", n_experts=2)


def simulate(n, truth=TRUTH, seed=0, visits=(4, 8), first_id=0):
    """Long-format data from a MEMoE (intercept + time fixed and random effects), vectorised."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.binomial(1, 0.5, size=n).astype(float)
    prob = softmax(np.column_stack([np.ones(n), x1, x2]) @ truth["gamma"].T, axis=1)
    k = (rng.random(n)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1)
    n_i = rng.integers(visits[0], visits[1] + 1, size=n)
    sid = np.repeat(np.arange(n), n_i)
    t = rng.uniform(0, 5, size=sid.size)
    b = np.einsum("nab,nb->na", np.linalg.cholesky(truth["cov_re"])[k], rng.normal(size=(n, 2)))
    ks = k[sid]
    y = (truth["beta"][ks, 0] + b[sid, 0] + (truth["beta"][ks, 1] + b[sid, 1]) * t
         + rng.normal(size=sid.size) * np.sqrt(truth["scale"][ks]))
    return pd.DataFrame({"id": sid + first_id, "time": t, "x1": x1[sid], "x2": x2[sid], "y": y})


def fit(data, n_starts=2, **kwargs):
    return MEMoE.from_formula("y ~ time", data, "id", **{**MODEL, **kwargs}).fit(
        n_starts=n_starts, random_state=0)


def design(df):
    X = np.column_stack([np.ones(len(df)), df["time"]])
    return X, X.copy(), np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])


def hand_params(res):
    K = res.n_experts
    return (res.gate_params.to_numpy().T, res.fe_params.to_numpy().T,
            np.stack([res.cov_re[k + 1].to_numpy() for k in range(K)]), res.scale.to_numpy())


def hand_marginal_mixture(res, df):
    """Weights, means and variances of the marginal predictive mixture, by hand."""
    gamma, beta, D, s2 = hand_params(res)
    X, Z, W = design(df)
    w = softmax(W @ gamma.T, axis=1)
    var = np.einsum("nq,kqr,nr->nk", Z, D, Z) + s2
    return w, X @ beta.T, var


def hand_posterior(res, hist):
    """Dense per-subject posterior: tau_k, b_hat_k and Sigma_k from the history rows of one subject."""
    gamma, beta, D, s2 = hand_params(res)
    X, Z, W = design(hist)
    y = hist["y"].to_numpy()
    log_w = np.log(softmax(W[0] @ gamma.T))
    logf, b_hat, b_cov = [], [], []
    for k in range(beta.shape[0]):
        V = Z @ D[k] @ Z.T + s2[k] * np.eye(len(y))
        logf.append(multivariate_normal.logpdf(y, X @ beta[k], V))
        b_hat.append(D[k] @ Z.T @ np.linalg.solve(V, y - X @ beta[k]))
        b_cov.append(D[k] - D[k] @ Z.T @ np.linalg.solve(V, Z @ D[k]))
    return softmax(log_w + np.array(logf)), np.array(b_hat), np.array(b_cov)


@pytest.fixture(scope="module")
def sim():
    return simulate(300, seed=11)


@pytest.fixture(scope="module")
def sim_fit(sim):
    return fit(sim)


@pytest.fixture(scope="module")
def pbc_data():
    df = load_pbcseq()
    return df.assign(year=df["day"] / 365.25, logbili=np.log(df["bili"]))


# -- point predictions ------------------------------------------------------------------------


def test_conditional_in_sample_equals_fitted_values_by_hand(sim_fit, sim):
    res = sim_fit
    tau = res.posterior.loc[sim["id"]].to_numpy()                    # rows x experts
    re = res.random_effects
    beta = res.fe_params.to_numpy()                                  # terms x experts
    t = sim["time"].to_numpy()
    hand = np.zeros(len(sim))
    for k in (1, 2):
        b = re[k].loc[sim["id"]].to_numpy()
        mean = beta[0, k - 1] + b[:, 0] + (beta[1, k - 1] + b[:, 1]) * t
        hand += tau[:, k - 1] * mean
    np.testing.assert_allclose(predict(res, kind="conditional").to_numpy(), hand, atol=1e-10)
    np.testing.assert_allclose(predict(res, sim, kind="conditional").to_numpy(), hand,
                               atol=1e-10)


def test_marginal_and_expert_predictions_by_hand(sim_fit, sim):
    res = sim_fit
    X, _, W = design(sim)
    pi = softmax(W @ res.gate_params.to_numpy(), axis=1)
    means = X @ res.fe_params.to_numpy()
    np.testing.assert_allclose(predict(res, sim).to_numpy(), (pi * means).sum(axis=1),
                               atol=1e-12)
    np.testing.assert_allclose(predict(res).to_numpy(), (pi * means).sum(axis=1), atol=1e-12)
    expert = predict(res, sim, kind="expert")
    assert list(expert.columns) == [1, 2]
    np.testing.assert_allclose(expert.to_numpy(), means, atol=1e-12)


def test_one_expert_conditional_equals_mixedlm_fittedvalues(pbc_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm_res = smf.mixedlm("logbili ~ year", pbc_data, groups=pbc_data["id"],
                             re_formula="~ year").fit(reml=False, method=["lbfgs"], tol=1e-12,
                                                      maxiter=2000)
    res = MEMoE.from_formula("logbili ~ year", pbc_data, "id", re_formula="~ year",
                             n_experts=1).fit()
    expected = sm_res.fittedvalues.to_numpy()
    np.testing.assert_allclose(predict(res, kind="conditional").to_numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(predict(res, pbc_data, kind="conditional").to_numpy(), expected,
                               atol=1e-4)


def test_transformed_outcome_is_evaluated_with_stored_design(pbc_data):
    a = MEMoE.from_formula("np.log(bili) ~ year", pbc_data, "id", n_experts=1).fit()
    b = MEMoE.from_formula("logbili ~ year", pbc_data, "id", n_experts=1).fit()
    new = pbc_data[pbc_data["id"] <= 5]
    pd.testing.assert_series_equal(predict(a, new, kind="conditional"),
                                   predict(b, new, kind="conditional"), atol=1e-8)


def test_unseen_level_raises_naming_the_formula(pbc_data):
    res = MEMoE.from_formula("logbili ~ year + C(sex)", pbc_data, "id", n_experts=1).fit()
    new = pbc_data.head(3).assign(sex="x")
    for kind in ("marginal", "conditional"):
        with pytest.raises(ValueError, match="formula"):
            predict(res, new, kind=kind)
    predict(res, pbc_data.head(3))                                   # known levels are fine


def test_shuffled_newdata_gives_the_same_predictions_by_index(sim_fit, sim):
    shuffled = sim.sample(frac=1.0, random_state=3)
    for kind in ("marginal", "conditional"):
        a = predict(sim_fit, sim, kind=kind)
        b = predict(sim_fit, shuffled, kind=kind)
        assert b.index.equals(shuffled.index)
        pd.testing.assert_series_equal(b.reindex(a.index), a, atol=1e-10)
    a = predict(sim_fit, sim, kind="expert")
    pd.testing.assert_frame_equal(predict(sim_fit, shuffled, kind="expert").loc[a.index], a)
    new = sim.head(40)
    s1 = prediction_set(sim_fit, new).set_index(["row", "interval"]).sort_index()
    s2 = prediction_set(sim_fit, new.iloc[::-1]).set_index(["row", "interval"]).sort_index()
    pd.testing.assert_frame_equal(s1, s2, atol=1e-9)


def test_array_built_model_predicts_fitting_data_only(sim):
    X, Z, W = design(sim)
    res = MEMoE(sim["y"], X, sim["id"], exog_re=Z, n_experts=1).fit()
    assert predict(res, kind="conditional").shape == (len(sim),)
    with pytest.raises(ValueError, match="arrays"):
        predict(res, sim)


def test_bad_arguments(sim_fit, sim):
    with pytest.raises(ValueError, match="kind"):
        predict(sim_fit, sim, kind="population")
    with pytest.raises(ValueError, match="time"):
        predict(sim_fit, sim, kind="conditional", landmark=2.0)
    with pytest.raises(ValueError, match="outcome"):
        predict(sim_fit, sim.drop(columns="y"), kind="conditional")
    with pytest.raises(ValueError, match="alpha"):
        prediction_set(sim_fit, sim, alpha=1.5)
    varying = sim.head(10).assign(x1=np.arange(10.0))
    with pytest.raises(ValueError, match="x1"):
        predict(sim_fit, varying, kind="conditional")


# -- dynamic prediction --------------------------------------------------------------------------


def test_dynamic_prediction_uses_the_history_only(sim_fit):
    res = sim_fit
    new = simulate(25, seed=99, first_id=1000).sort_values(["id", "time"])
    new.index = pd.RangeIndex(len(new)) * 10 + 7                      # not positions
    rank = new.groupby("id").cumcount()
    n_rows = new.groupby("id")["time"].transform("size")
    future = rank >= n_rows - 2                                      # last two visits of each
    hidden = new.assign(y=new["y"].where(~future))
    pred = predict(res, hidden, kind="conditional")
    # dense reference from the history rows of each subject
    _, beta, _, _ = hand_params(res)
    X, Z, _ = design(new)
    for sid, hist in new[~future].groupby("id"):
        tau, b_hat, _ = hand_posterior(res, hist)
        rows = np.flatnonzero((new["id"] == sid).to_numpy() & future.to_numpy())
        expected = np.einsum("k,nk->n", tau, X[rows] @ beta.T + Z[rows] @ b_hat.T)
        np.testing.assert_allclose(pred.iloc[rows].to_numpy(), expected, rtol=1e-8, atol=1e-10)
    # same posterior as a data set holding only the history rows
    pd.testing.assert_frame_equal(predict_class(res, hidden), predict_class(res, new[~future]),
                                  atol=1e-12)
    history_only = predict(res, new[~future], kind="conditional")
    pd.testing.assert_series_equal(pred[~future], history_only, atol=1e-12)
    # a landmark: rows after it leave the history even when their outcome is observed
    shifted = new.assign(time=np.where(future, new["time"] + 10.0, new["time"]))
    by_landmark = predict(res, shifted, kind="conditional", landmark=5.0, time="time")
    by_missing = predict(res, shifted.assign(y=hidden["y"]), kind="conditional")
    pd.testing.assert_series_equal(by_landmark, by_missing, atol=1e-12)


def test_subject_without_outcome_gets_the_marginal_prediction(sim_fit):
    new = simulate(5, seed=5)
    blind = new.assign(y=np.nan)
    pd.testing.assert_series_equal(predict(sim_fit, blind, kind="conditional"),
                                   predict(sim_fit, new, kind="marginal"), atol=1e-12)
    pd.testing.assert_frame_equal(predict_class(sim_fit, blind), prior_class(sim_fit, new),
                                  atol=1e-14)


# -- classes -----------------------------------------------------------------------------------


def test_predict_class_on_training_data_reproduces_the_posterior(sim_fit, sim):
    pd.testing.assert_frame_equal(predict_class(sim_fit, sim), sim_fit.posterior, atol=1e-10,
                                  check_names=False)
    pd.testing.assert_frame_equal(predict_class(sim_fit), sim_fit.posterior, atol=1e-12,
                                  check_names=False)
    pd.testing.assert_frame_equal(prior_class(sim_fit, sim), sim_fit.prior, atol=1e-12,
                                  check_names=False)


def test_predict_class_of_new_subjects_by_hand(sim_fit):
    new = simulate(8, seed=21, first_id=500)
    got = predict_class(sim_fit, new)
    for sid, rows in new.groupby("id"):
        tau, _, _ = hand_posterior(sim_fit, rows)
        np.testing.assert_allclose(got.loc[sid].to_numpy(), tau, atol=1e-10)


# -- prediction sets -----------------------------------------------------------------------------


def mixture_cdf(y, w, m, v):
    return (w * norm.cdf((y[:, None] - m) / np.sqrt(v))).sum(axis=1)


def mixture_pdf(y, w, m, v):
    return (w * norm.pdf(y[:, None], m, np.sqrt(v))).sum(axis=1)


def test_prediction_set_layout(sim_fit, sim):
    sets = prediction_set(sim_fit, sim.head(30), alpha=0.1)
    assert list(sets.columns) == ["row", "interval", "lower", "upper", "mass"]
    assert set(sets["row"]) == set(sim.head(30).index)
    assert (sets["lower"] < sets["upper"]).all()
    first = sets.groupby("row")["interval"].transform("min")
    assert (first == 0).all()
    np.testing.assert_allclose(sets.groupby("row")["mass"].sum(), 0.9, atol=1e-8)


def test_single_expert_hdr_is_mean_plus_minus_z_sd(pbc_data):
    res = MEMoE.from_formula("logbili ~ year", pbc_data, "id", re_formula="~ year",
                             n_experts=1).fit()
    mix = predictive_mixture(res, pbc_data.head(50), kind="conditional")
    m, sd = mix.means[1].to_numpy(), np.sqrt(mix.variances[1].to_numpy())
    for method in ("hdr", "equal_tail"):
        sets = prediction_set(res, pbc_data.head(50), kind="conditional", method=method)
        assert (sets["interval"] == 0).all()
        np.testing.assert_allclose(sets["lower"], m - norm.ppf(0.975) * sd, atol=1e-8)
        np.testing.assert_allclose(sets["upper"], m + norm.ppf(0.975) * sd, atol=1e-8)


def test_marginal_sets_of_new_subjects_against_scipy(sim_fit):
    new = simulate(40, seed=8)
    w, m, v = hand_marginal_mixture(sim_fit, new)
    mix = predictive_mixture(sim_fit, new, kind="marginal")
    np.testing.assert_allclose(mix.weights.to_numpy(), w, atol=1e-12)
    np.testing.assert_allclose(mix.means.to_numpy(), m, atol=1e-12)
    np.testing.assert_allclose(mix.variances.to_numpy(), v, atol=1e-12)
    et = prediction_set(sim_fit, new, kind="marginal", method="equal_tail")
    np.testing.assert_allclose(mixture_cdf(et["lower"].to_numpy(), w, m, v), 0.025, atol=1e-9)
    np.testing.assert_allclose(mixture_cdf(et["upper"].to_numpy(), w, m, v), 0.975, atol=1e-9)
    hdr = prediction_set(sim_fit, new, kind="marginal", method="hdr")
    pos = new.index.get_indexer(hdr["row"])
    lo, up = hdr["lower"].to_numpy(), hdr["upper"].to_numpy()
    mass = mixture_cdf(up, w[pos], m[pos], v[pos]) - mixture_cdf(lo, w[pos], m[pos], v[pos])
    np.testing.assert_allclose(hdr["mass"], mass, atol=1e-10)
    np.testing.assert_allclose(pd.Series(mass).groupby(pos).sum(), 0.95, atol=1e-8)
    f_lo, f_up = mixture_pdf(lo, w[pos], m[pos], v[pos]), mixture_pdf(up, w[pos], m[pos], v[pos])
    np.testing.assert_allclose(f_lo, f_up, rtol=1e-6)                # one density level c ...
    inside = mixture_pdf(0.5 * (lo + up), w[pos], m[pos], v[pos])
    assert (inside > f_lo).all()                                     # ... exceeded inside
    length = pd.Series(up - lo).groupby(pos).sum().to_numpy()
    assert (length <= (et["upper"] - et["lower"]).to_numpy() + 1e-9).all()   # the shortest


def test_conditional_sets_against_dense_posterior(sim_fit, sim):
    sets = prediction_set(sim_fit, method="equal_tail", alpha=0.2)
    _, beta, _, s2 = hand_params(sim_fit)
    X, Z, _ = design(sim)
    for sid in sim["id"].unique()[:6]:
        rows = np.flatnonzero(sim["id"].to_numpy() == sid)
        tau, b_hat, b_cov = hand_posterior(sim_fit, sim.iloc[rows])
        m = X[rows] @ beta.T + Z[rows] @ b_hat.T
        v = np.einsum("nq,kqr,nr->nk", Z[rows], b_cov, Z[rows]) + s2
        w = np.broadcast_to(tau, m.shape)
        got = sets.set_index("row").loc[sim.index[rows]]
        np.testing.assert_allclose(mixture_cdf(got["lower"].to_numpy(), w, m, v), 0.1, atol=1e-9)
        np.testing.assert_allclose(mixture_cdf(got["upper"].to_numpy(), w, m, v), 0.9, atol=1e-9)


def test_separated_experts_give_a_union_of_two_intervals():
    train = simulate(200, truth=SEPARATED, seed=4)
    res = fit(train)
    assert sorted(res.fe_params.loc["Intercept"].round(0)) == [0.0, 10.0]
    new = simulate(30, truth=SEPARATED, seed=5)
    hdr = prediction_set(res, new, kind="marginal")
    et = prediction_set(res, new, kind="marginal", method="equal_tail")
    n_intervals = hdr.groupby("row").size()
    assert (n_intervals == 2).all()
    lengths = (hdr["upper"] - hdr["lower"]).groupby(hdr["row"]).sum()
    et_lengths = (et["upper"] - et["lower"]).set_axis(et["row"])
    assert (lengths < 0.5 * et_lengths.loc[lengths.index]).all()
    w, m, v = hand_marginal_mixture(res, new)
    pos = new.index.get_indexer(hdr["row"])
    mass = (mixture_cdf(hdr["upper"].to_numpy(), w[pos], m[pos], v[pos])
            - mixture_cdf(hdr["lower"].to_numpy(), w[pos], m[pos], v[pos]))
    np.testing.assert_allclose(pd.Series(mass).groupby(pos).sum(), 0.95, atol=1e-8)
    low_expert = np.argmin(m[pos], axis=1)                       # the interval around each mean
    first = hdr["interval"].to_numpy() == 0
    assert ((hdr["lower"] < m[pos, low_expert]) & (m[pos, low_expert] < hdr["upper"]))[first].all()


def test_marginal_hdr_covers_new_subjects_at_the_nominal_rate():
    train = simulate(400, seed=12)
    res = fit(train)
    new = simulate(1000, seed=77, visits=(1, 2), first_id=10_000)   # nearly independent obs
    sets = prediction_set(res, new, kind="marginal")
    covered = coverage(res, new, sets)
    assert covered.shape == (len(new),)
    assert 0.93 <= covered.mean() <= 0.97
    # with the true parameters (no estimation error) the rate is 0.95 up to sampling noise
    oracle = types.SimpleNamespace(model=res.model, state=Params(**TRUTH))
    truth_cover = coverage(oracle, new, prediction_set(oracle, new, kind="marginal")).mean()
    assert 0.935 <= truth_cover <= 0.965


def test_coverage_flags_by_hand(sim_fit, sim):
    new = sim.head(60).copy()
    sets = prediction_set(sim_fit, new, alpha=0.5, kind="marginal")
    merged = sets.merge(new[["y"]], left_on="row", right_index=True)
    hand = ((merged["lower"] <= merged["y"]) & (merged["y"] <= merged["upper"])).groupby(
        merged["row"]).any()
    got = coverage(sim_fit, new, sets)
    pd.testing.assert_series_equal(got, hand.reindex(new.index), check_names=False)
    new.loc[new.index[:5], "y"] = np.nan                              # unobserved rows are left out
    assert coverage(sim_fit, new, sets).index.equals(new.index[5:])


# -- cross-validation ------------------------------------------------------------------------------


def test_cross_validation_folds_scores_and_refit():
    data = simulate(120, seed=31)
    data.index = data.index + 1000
    cv = cross_validate("y ~ time", data, "id", n_folds=3, random_state=1, time="time",
                        n_starts=2, **MODEL)
    table = cv.table
    assert table.index.tolist() == [1, 2, 3, "overall"]
    assert {"pmse", "coverage", "n_obs", "pmse_dynamic", "coverage_dynamic"} <= set(table)
    assert table.loc[[1, 2, 3], "n_obs"].sum() == table.loc["overall", "n_obs"] == len(data)
    weighted = np.average(table.loc[[1, 2, 3], "pmse"], weights=table.loc[[1, 2, 3], "n_obs"])
    assert table.loc["overall", "pmse"] == pytest.approx(weighted)
    assert 0.85 <= table.loc["overall", "coverage"] <= 1.0
    # with random effects, predicting from the earlier rows beats the marginal prediction
    assert table.loc["overall", "pmse_dynamic"] < 0.6 * table.loc["overall", "pmse"]
    # every subject is held out exactly once and never in its own training set
    everyone = set(data["id"])
    assert set(cv.folds.index) == everyone
    for f in (1, 2, 3):
        held_out = set(cv.folds.index[cv.folds == f])
        assert held_out and held_out.isdisjoint(cv.train_subjects[f])
        assert held_out | set(cv.train_subjects[f]) == everyone
    assert cv.predictions.index.sort_values().equals(data.index)
    assert (cv.predictions["fold"] == cv.folds.loc[cv.predictions["subject"]].to_numpy()).all()
    # refit fold 1 independently: the same marginal predictions and PMSE
    test_ids = cv.folds.index[cv.folds == 1]
    res = fit(data[~data["id"].isin(test_ids)], n_starts=3)
    held = data[data["id"].isin(test_ids)]
    pred = predict(res, held)
    np.testing.assert_allclose(cv.predictions.loc[held.index, "predicted"], pred, atol=1e-4)
    assert table.loc[1, "pmse"] == pytest.approx(((held["y"] - pred) ** 2).mean(), rel=1e-4)


def test_cross_validate_accepts_a_model_built_from_formulas():
    df = load_pbcseq()
    df["year"] = df["day"] / 365.25
    model = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year", n_experts=1)
    by_model = cross_validate(model, df, "id", n_folds=3, random_state=0)
    by_formula = cross_validate("np.log(bili) ~ year", df, "id", n_folds=3, random_state=0,
                                re_formula="~ year", n_experts=1)
    pd.testing.assert_frame_equal(by_model.table, by_formula.table)
    array_model = MEMoE(model.endog, model.exog, model.groups, exog_re=model.exog_re, n_experts=1)
    with pytest.raises(ValueError, match="from_formula"):
        cross_validate(array_model, df, "id", n_folds=3)


def _glmm_data(name: str, n_subjects: int) -> pd.DataFrame:
    df = pd.read_csv(Path(__file__).parent / "results" / "glmm" / f"sim_{name}_k2.csv")
    return df[df["subject"] < n_subjects]


@pytest.mark.parametrize("name, options", [
    ("binary", dict(family="binomial", nAGQ=5, n_experts=1)),
    ("poisson", dict(family="poisson", exposure="exposure", n_experts=1)),
])
def test_cross_validation_of_binomial_and_poisson_experts(name, options):
    """Discrete predictive laws: PMSE (the Brier score for 0/1) against an independent refit of
    a fold with the same family, quadrature and exposure; no prediction sets."""
    data = _glmm_data(name, 150)
    cv = cross_validate("y ~ time", data, "subject", n_folds=3, random_state=0, time="time",
                        **options)
    table = cv.table
    assert table[["coverage", "mean_length"]].isna().all().all()
    assert cv.predictions["covered"].isna().all()
    test_ids = cv.folds.index[cv.folds == 2]
    held = data[data["subject"].isin(test_ids)]
    res = MEMoE.from_formula("y ~ time", data[~data["subject"].isin(test_ids)], "subject",
                             **options).fit()
    pred = predict(res, held)
    np.testing.assert_allclose(cv.predictions.loc[held.index, "predicted"], pred, atol=1e-5)
    assert table.loc[2, "pmse"] == pytest.approx(((held["y"] - pred) ** 2).mean(), rel=1e-6)
    # a subject's earlier rows carry its random intercept: they improve the prediction
    assert table.loc["overall", "pmse_dynamic"] < table.loc["overall", "pmse"]
    assert cv.predictions["covered_dynamic"].isna().all()
    # a model built by from_formula carries its family, quadrature and exposure to the folds
    model = MEMoE.from_formula("y ~ time", data, "subject", **options)
    pd.testing.assert_frame_equal(cross_validate(model, data, "subject", n_folds=3,
                                                 random_state=0, time="time").table, table)


def test_cross_validation_needs_offsets_as_columns():
    data = _glmm_data("poisson", 60)
    with pytest.raises(ValueError, match="exposure as a column name"):
        cross_validate("y ~ time", data, "subject", n_folds=3, family="poisson",
                       exposure=data["exposure"].to_numpy())
    model = MEMoE.from_formula("y ~ time", data, "subject", family="poisson",
                               offset=np.log(data["exposure"].to_numpy()))
    with pytest.raises(ValueError, match="given as an array"):
        cross_validate(model, data, "subject", n_folds=3)
