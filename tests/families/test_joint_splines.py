"""Spline baseline hazards (``TimeToEvent(hazard="splines")``): cubic M-splines with positive
weights.

* the basis: each M-spline integrates to 1 over [0, upper] and its I-spline equals its
  integral by scipy's adaptive quadrature;
* K = 1: the joint maximum is statsmodels' MixedLM plus a spline-hazard model maximised here
  by scipy, with the M-splines built from scipy's B-spline basis elements and the cumulative
  hazard by Gauss-Legendre quadrature (not pymemoe's I-splines);
* a Weibull truth is recovered by the spline hazard (the cumulative hazard at several times);
* K = 2 (two causes, delayed entry, proportional hazards): the score equals numerical
  differences and EM never decreases the log-likelihood;
* event times drawn from the hazard invert it; weights that run to 0 are reported, held
  fixed, and do not stop the fit from converging.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import integrate, optimize
from scipy.interpolate import BSpline
from test_joint_entry import simulate_entry

from pymemoe import MEMoE, TimeToEvent
from pymemoe.families.spline_hazards import mspline_basis

from helpers import assert_em_never_decreases, assert_score_is_numerical_gradient, perturbed


def test_msplines_integrate_to_one_and_isplines_are_their_integrals():
    knots, upper = (0.7, 2.0, 3.1), 5.0
    t = np.array([0.3, 1.0, 2.5, 4.9, 5.0, 6.5])
    m, i = mspline_basis(knots, upper, t)
    for j in range(m.shape[1]):
        def mj(u, j=j):
            return mspline_basis(knots, upper, np.array([u]))[0][0, j]
        total, _ = integrate.quad(mj, 0.0, upper, points=knots, limit=200)
        assert total == pytest.approx(1.0, abs=1e-8)
        for value, end in zip(i[:, j], t):
            inside, _ = integrate.quad(mj, 0.0, min(end, upper), points=knots, limit=200)
            expected = inside + max(end - upper, 0.0) * mj(upper)    # constant beyond upper
            assert value == pytest.approx(expected, abs=1e-8)
    assert (m >= 0).all() and (np.diff(i, axis=0) >= -1e-12).all()


def _msplines_by_elements(knots, upper):
    """The cubic M-splines built independently: scipy's B-spline basis elements on the
    clamped knot vector, each scaled by 4 / (its support's length)."""
    grid = np.r_[[0.0] * 4, knots, [upper] * 4]
    out = []
    for j in range(grid.size - 4):
        element = BSpline.basis_element(grid[j:j + 5], extrapolate=False)
        out.append((element, 4.0 / (grid[j + 4] - grid[j])))
    return out


def _spline_loglike(coef, time, event, x, basis, nodes, weights):
    """Right-censored log-likelihood of h(t) = exp(theta x) sum_j exp(a_j) M_j(t), with H by
    Gauss-Legendre quadrature on [0, T_i] (per subject)."""
    J = len(basis)
    a, theta = coef[:J], coef[J:]

    upper = basis[-1][0].t[-1]

    def h0(t):
        # a basis element's support is half-open: the last knot is taken from the left
        t = np.minimum(np.asarray(t, dtype=float), upper * (1 - 1e-13))
        return sum(np.exp(a[j]) * s * np.nan_to_num(b(t)) for j, (b, s) in enumerate(basis))

    u = 0.5 * time[:, None] * (nodes[None, :] + 1.0)                 # (N, nodes) on [0, T]
    cum0 = 0.5 * time * (h0(u) * weights[None, :]).sum(axis=1)
    eta = x @ theta
    log_h = np.where(event > 0, np.log(np.where(event > 0, h0(time), 1.0)) + eta, 0.0)
    return np.sum(event * log_h - np.exp(eta) * cum0)


def test_one_expert_equals_mixedlm_plus_an_independent_spline_fit():
    df = simulate_entry(400, seed=8)
    subjects = df.groupby("id").first()
    time, event = subjects["T"].to_numpy(), (subjects["d"] == 1).to_numpy().astype(float)
    knots = tuple(np.quantile(time[event == 1], [1 / 3, 2 / 3]))
    model = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time", n_experts=1,
                               survival=TimeToEvent("T", "d", formula="~ x1",
                                                    hazard="splines", knots=knots))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # a weight at 0 is reported, not an error
        res = model.fit()
    mixed = smf.mixedlm("y ~ time", df, groups="id", re_formula="~ time").fit(
        reml=False, method=["lbfgs"], maxiter=2000)
    basis = _msplines_by_elements(knots, float(time.max()))
    nodes, weights = np.polynomial.legendre.leggauss(60)
    x = subjects[["x1"]].to_numpy()
    start = np.r_[np.full(len(basis), np.log(event.sum() / time.sum() * time.max() / len(basis))),
                  0.0]

    def negative(c):
        value = -_spline_loglike(c, time, event, x, basis, nodes, weights)
        return value if np.isfinite(value) else 1e300

    best = optimize.minimize(negative, start, method="BFGS", options=dict(gtol=1e-7))
    best = optimize.minimize(negative, best.x, method="BFGS", options=dict(gtol=1e-9))
    total = mixed.llf - best.fun
    assert res.llf >= total - 1e-5
    assert res.llf - total < 1e-3          # MixedLM and the quadrature fit stop near their max
    # the hazards themselves agree: the cumulative hazard at several times
    curves = res.cumulative_incidence([1.0, 2.0, 4.0], profile={"x1": 0.0})
    surv = curves[(curves["expert"] == 1) & (curves["curve"] == "survival")]["estimate"]
    coef = best.x
    for t, s in zip([1.0, 2.0, 4.0], surv):
        u = 0.5 * t * (nodes + 1.0)
        h0 = sum(np.exp(coef[j]) * sc * np.nan_to_num(b(u)) for j, (b, sc) in enumerate(basis))
        assert s == pytest.approx(np.exp(-0.5 * t * (h0 * weights).sum()), abs=2e-3)


def test_a_weibull_truth_is_recovered_by_the_spline_hazard():
    rng = np.random.default_rng(3)
    n = 3000
    T_event = rng.weibull(1.6, n) * 4.0               # H(t) = (t / 4)^1.6
    censor = rng.uniform(2.0, 9.0, n)
    T = np.minimum(T_event, censor)
    d = (T_event <= censor).astype(int)
    df = pd.DataFrame({"id": np.repeat(np.arange(n), 2), "t": np.tile([0.0, 1.0], n),
                       "T": np.repeat(T, 2), "d": np.repeat(d, 2)})
    df["y"] = rng.normal(size=len(df)) + np.repeat(rng.normal(size=n), 2)
    model = MEMoE.from_formula("y ~ 1", df, "id", n_experts=1,
                               survival=TimeToEvent("T", "d", hazard="splines"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit()
    times = np.array([1.0, 2.0, 4.0, 6.0])
    curves = res.cumulative_incidence(times)
    surv = curves[(curves["expert"] == 1) & (curves["curve"] == "survival")]
    np.testing.assert_allclose(surv["estimate"], np.exp(-(times / 4.0) ** 1.6), atol=0.02)
    inside = (surv["lower"] <= np.exp(-(times / 4.0) ** 1.6)) & \
        (np.exp(-(times / 4.0) ** 1.6) <= surv["upper"])
    assert inside.sum() >= 3


@pytest.fixture(scope="module")
def data():
    return simulate_entry(500, seed=9)


def _model(df, **survival):
    spec = dict(time="T", event="d2", formula="~ x1", hazard="splines", knots=2,
                causes=["a", "b"], entry="T0")
    spec.update(survival)
    return MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time",
                              gate_formula="~ x1 + x2", n_experts=2,
                              survival=TimeToEvent(**spec))


@pytest.mark.parametrize("hazardtype", ["specific", "PH"])
def test_score_equals_numerical_gradient(data, hazardtype):
    model = _model(data, hazardtype=hazardtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(n_starts=1, random_state=0, maxiter=20, polish=False)
    # weights away from 0 (a log weight at -20 has no derivative to speak of)
    assert_score_is_numerical_gradient(model, perturbed(res.params.clip(lower=-5), seed=3))


@pytest.mark.parametrize("hazardtype", ["specific", "PH"])
def test_em_never_decreases_the_loglikelihood(data, hazardtype):
    assert_em_never_decreases(_model(data, hazardtype=hazardtype))


def test_draws_invert_the_cumulative_hazard_and_zero_weights_are_reported(data):
    model = _model(data, entry=None, knots=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(n_starts=2, random_state=0)
    assert res.converged
    at_zero = [str(w.message) for w in caught if "at the boundary of their range" in
               str(w.message)]
    hazards = res.model.family.hazards
    coef = res.model.family._split(res.state)[1]
    flagged = hazards.at_zero(coef)
    assert bool(at_zero) == bool(flagged.any())
    if flagged.any():                        # held fixed: no standard error, the others have
        assert res.bse.isna().sum() == flagged.sum()
    # inverse of H: H(t) at the drawn t equals the drawn value
    x = np.column_stack([np.ones(50), np.linspace(-2, 2, 50)])
    expert = np.repeat([0, 1], 25)
    values = np.random.default_rng(1).exponential(size=(50, 2))
    t = hazards.inverse_cumulative(coef, x, expert, values)
    cum = np.array([hazards.cumulative(coef, x[i:i + 1], t[i])[0, expert[i]].diagonal()
                    for i in range(50)])
    np.testing.assert_allclose(cum, values, rtol=1e-3, atol=1e-6)
