"""Prediction sets of single observations: equal-tail intervals and highest-density regions of
the mixture predictive law against scipy's distribution functions and dense posteriors, a
union of intervals for separated experts, nominal coverage of new subjects, and coverage
flags."""
import types

import numpy as np
import pandas as pd
from scipy.stats import norm

from pymemoe import MEMoE
from pymemoe._model.params import Params
from pymemoe.prediction import coverage, prediction_set, predictive_mixture

from prediction_cases import (SEPARATED, TRUTH, design, fit, hand_marginal_mixture, hand_params,
                              hand_posterior, simulate)


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


def test_single_expert_hdr_is_mean_plus_minus_z_sd(pbc):
    res = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                             n_experts=1).fit()
    mix = predictive_mixture(res, pbc.head(50), kind="conditional")
    m, sd = mix.means[1].to_numpy(), np.sqrt(mix.variances[1].to_numpy())
    for method in ("hdr", "equal_tail"):
        sets = prediction_set(res, pbc.head(50), kind="conditional", method=method)
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
