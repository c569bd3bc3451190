"""Joint models with binomial and Poisson trajectories (GLMM experts times hazards).

* K = 1: the joint maximum is the GLMM's (pymemoe's binomial and Poisson experts, checked
  against lme4 and brute-force integration in test_glmm.py) plus the cause's Weibull fit by
  scipy, and the hazards' estimates are scipy's;
* K = 2: each subject's log-likelihood equals brute-force integration over the random
  intercept (scipy's quad) times scipy's Weibull densities, mixed by the gating;
* the score equals numerical differences of the log-likelihood (Laplace);
* a binary joint fit has its summary, hazard ratios and dynamic predictions.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

from pymemoe import MEMoE, TimeToEvent

from helpers import assert_score_is_numerical_gradient, perturbed
from test_joint import HAZARD_TRUTH, weibull_fit, weibull_loglike


def simulate_binary_joint(n=300, seed=0, family="binomial"):
    """Two experts: a random-intercept logistic (or log-linear Poisson) trajectory on 4-8
    visits over [0, 6] and test_joint's Weibull hazards; censoring U(2, 12); no visit after
    the follow-up time; every subject measured at 0."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 2, n)
    x1 = rng.normal(size=n)
    b = rng.normal(scale=np.where(k == 0, 0.8, 1.2))
    beta = np.array([[-1.0, 0.5], [1.0, -0.4]]) if family == "binomial" else \
        np.array([[0.2, 0.15], [1.0, -0.1]])
    theta = HAZARD_TRUTH[k]
    event = (-np.log(rng.uniform(size=n)) / np.exp(theta[:, 0] + theta[:, 1] * x1)) \
        ** (1 / np.exp(theta[:, 2]))
    censor = rng.uniform(2.0, 12.0, n)
    T, d = np.minimum(event, censor), (event <= censor).astype(int)
    rows = []
    for i in range(n):          # a test's simulation, not a hot path
        times = np.r_[0.0, np.sort(rng.uniform(0, 6, rng.integers(3, 8)))]
        for t in times[times <= T[i]]:
            eta = beta[k[i], 0] + b[i] + beta[k[i], 1] * t
            y = rng.binomial(1, special.expit(eta)) if family == "binomial" else \
                rng.poisson(np.exp(eta))
            rows.append((i, t, x1[i], y, T[i], d[i]))
    return pd.DataFrame(rows, columns=["id", "time", "x1", "y", "T", "d"])


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_one_expert_is_the_glmm_plus_a_separate_weibull_fit(family):
    df = simulate_binary_joint(family=family)
    joint = MEMoE.from_formula("y ~ time", df, "id", n_experts=1, family=family,
                               survival=TimeToEvent("T", "d", formula="~ x1")).fit()
    glmm = MEMoE.from_formula("y ~ time", df, "id", n_experts=1, family=family).fit()
    subjects = df.groupby("id").first()
    X = np.column_stack([np.ones(len(subjects)), subjects["x1"]])
    coef, llf = weibull_fit(subjects["T"].to_numpy(), subjects["d"].to_numpy() == 1, X)
    assert joint.llf >= glmm.llf + llf - 1e-6
    assert joint.llf - (glmm.llf + llf) < 1e-4
    mine = joint.fe_params.loc[["event: Intercept", "event: x1", "event: log(shape)"], 1]
    np.testing.assert_allclose(mine.to_numpy(), coef, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(joint.fe_params.loc[["Intercept", "time"], 1],
                               glmm.fe_params[1], rtol=1e-4, atol=1e-5)


def test_two_experts_equal_brute_force_integration():
    df = simulate_binary_joint(n=200, seed=1)
    model = MEMoE.from_formula("y ~ time", df, "id", gate_formula="~ x1", n_experts=2,
                               family="binomial", nAGQ=25,
                               survival=TimeToEvent("T", "d", formula="~ x1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(n_starts=1, random_state=0, cov_type="none")
    ours = model.loglikeobs(res.params)
    fe = res.fe_params
    for i in range(6):
        rows = df[df["id"] == i]
        y, t = rows["y"].to_numpy(), rows["time"].to_numpy()
        first = rows.iloc[0]
        eta_gate = res.gate_params.to_numpy().T @ np.array([1.0, first["x1"]])
        log_prior = eta_gate - special.logsumexp(eta_gate)
        terms = []
        for k in (1, 2):
            sd = np.sqrt(res.cov_re[k].to_numpy()[0, 0])

            def density(b, k=k, sd=sd):
                eta = fe.loc["Intercept", k] + b + fe.loc["time", k] * t
                return np.exp(np.sum(y * eta - np.logaddexp(0.0, eta))) * \
                    stats.norm.pdf(b, scale=sd)

            value = integrate.quad(density, -12 * sd, 12 * sd, epsabs=1e-15)[0]
            coef = fe.loc[["event: Intercept", "event: x1", "event: log(shape)"], k].to_numpy()
            event = weibull_loglike(np.array([first["T"]]), np.array([first["d"] == 1]),
                                    np.array([[1.0, first["x1"]]]), coef)[0]
            terms.append(log_prior[k - 1] + np.log(value) + event)
        assert ours[i] == pytest.approx(special.logsumexp(terms), abs=1e-7)


def test_score_equals_numerical_gradient():
    df = simulate_binary_joint(n=200, seed=2)
    model = MEMoE.from_formula("y ~ time", df, "id", gate_formula="~ x1", n_experts=2,
                               family="binomial",
                               survival=TimeToEvent("T", "d", formula="~ x1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(n_starts=1, random_state=0, maxiter=20, polish=False, cov_type="none")
    assert_score_is_numerical_gradient(model, perturbed(res.params, seed=4), rel_step=1e-5,
                                       rtol=1e-4)


def test_binary_joint_fit_reports_and_predicts():
    df = simulate_binary_joint(n=300, seed=3)
    res = MEMoE.from_formula("y ~ time", df, "id", n_experts=2, family="binomial",
                             survival=TimeToEvent("T", "d", formula="~ x1")).fit(
        n_starts=2, random_state=0)
    text = str(res.summary())
    assert "binomial, logit link" in text and "Weibull hazards" in text
    assert "hazard ratio" in text
    assert np.isfinite(res.bse).all()
    dyn = res.dynamic_prediction(df[df["id"] < 4], landmark=1.0, horizon=2.0, time="time",
                                 n_draws=0)
    assert np.isfinite(dyn["P(event)"]).all() and (dyn["P(event)"].between(0, 1)).all()
