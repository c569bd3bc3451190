"""Joint models with delayed entry (left truncation): checks from independent sources.

The likelihood of subject i, event-free at its entry time T0_i, is conditioned on that across
the mixture: log sum_k pi_ik f(y_i, T_i, d_i | k) - log sum_k pi_ik S_k(T0_i).

* K = 1: the joint maximum is the linear mixed model's plus the left-truncated cause-specific
  Weibull models' (statsmodels MixedLM; scipy.stats.weibull_min, logpdf or logsf at T minus
  logsf at T0, maximised by scipy.optimize), and for piecewise-constant hazards plus Poisson
  GLMs on split episodes that start at entry (statsmodels);
* K = 2: the log-likelihood equals a dense computation with scipy's Weibull;
* the score equals numerical differences of the log-likelihood; EM (with the expected
  "ghosts", the subjects lost before entry) never decreases it, with competing risks too;
* the observed information equals minus the numerical Hessian of the log-likelihood;
* the simulated truth is recovered, and ignoring the delayed entry is visibly biased;
* the parametric bootstrap draws the experts and the event times given event-free at entry;
* bad entry times are ValueErrors naming the subject.
"""
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import optimize, special, stats
from test_joint import HAZARD_TRUTH

from pymemoe import MEMoE, TimeToEvent, simulate

from helpers import assert_em_never_decreases, assert_score_is_numerical_gradient, perturbed
from truth import TRUTH_K2, dense_loglike, simulate_memoe


def simulate_entry(n_subjects=600, seed=0):
    """tests/truth.py's K = 2 trajectories with the Weibull hazards of test_joint; 70% of the
    subjects enter late, at T0 ~ U(0, 3), and are in the data only if their event comes after
    T0 (left truncation); censoring at T0 + U(2, 10). Rows up to the follow-up time are kept
    (measurements before entry included: given the expert they do not depend on the event)."""
    df = simulate_memoe(n_subjects, TRUTH_K2, seed=seed, baseline_visit=True)
    rng = np.random.default_rng(seed + 100)
    subjects = df.groupby("id").first()
    k = subjects["expert"].to_numpy() - 1
    theta = HAZARD_TRUTH[k]
    rho = np.exp(theta[:, 2])
    eta = theta[:, 0] + theta[:, 1] * subjects["x1"].to_numpy()
    event_time = (-np.log(rng.uniform(size=len(k))) / np.exp(eta)) ** (1 / rho)
    entry = rng.uniform(0.0, 3.0, size=len(k)) * (rng.uniform(size=len(k)) < 0.7)
    censor = entry + rng.uniform(2.0, 10.0, size=len(k))
    per = pd.DataFrame({"T": np.minimum(event_time, censor), "T0": entry,
                        "d": (event_time <= censor).astype(int)}, index=subjects.index)
    kept = per.index[event_time > entry]
    df = df.join(per, on="id")
    df = df[df["id"].isin(kept) & (df["time"] <= df["T"])].reset_index(drop=True)
    # a second cause for the competing-risks checks: 40% of the events, at random
    second = pd.Series(rng.uniform(size=len(per)) < 0.4, index=per.index)
    df["d2"] = df["d"] * (1 + df["id"].map(second).astype(int))
    return df


@pytest.fixture(scope="module")
def entry_data():
    return simulate_entry()


def _model(df, n_experts=2, event="d", **survival):
    spec = dict(formula="~ x1", entry="T0")
    spec.update(survival)
    return MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time",
                              gate_formula="~ x1 + x2", n_experts=n_experts,
                              survival=TimeToEvent("T", event, **spec))


# -- independent references -----------------------------------------------------------------


def truncated_weibull_loglike(time, entry, event, X, coef):
    """Left-truncated, right-censored Weibull log-likelihood per subject from scipy.stats:
    hazard rho t^(rho-1) e^(x'theta) is weibull_min(rho, scale=exp(-x'theta / rho))."""
    theta, s = coef[:-1], coef[-1]
    rho = np.exp(s)
    scale = np.exp(-(X @ theta) / rho)
    here = np.where(event, stats.weibull_min.logpdf(time, rho, scale=scale),
                    stats.weibull_min.logsf(time, rho, scale=scale))
    return here - stats.weibull_min.logsf(entry, rho, scale=scale)


def truncated_weibull_fit(time, entry, event, X):
    start = np.r_[np.log(event.sum() / (time - entry).sum()), np.zeros(X.shape[1] - 1), 0.0]

    def negative(c):
        value = -truncated_weibull_loglike(time, entry, event, X, c).sum()
        return value if np.isfinite(value) else 1e300

    first = optimize.minimize(negative, start, method="Nelder-Mead",
                              options=dict(maxiter=20000, xatol=1e-10, fatol=1e-12))
    best = optimize.minimize(negative, first.x, method="BFGS", options=dict(gtol=1e-9))
    return best.x, -best.fun


def test_one_expert_is_a_mixed_model_plus_truncated_weibull_fits(entry_data):
    """K = 1, two causes: the maximum is MixedLM's plus one left-truncated Weibull fit per
    cause (the other cause censored), and the hazards' estimates are scipy's."""
    res = _model(entry_data, n_experts=1, event="d2", causes=["a", "b"]).fit()
    mixed = smf.mixedlm("y ~ time", entry_data, groups="id", re_formula="~ time").fit(
        reml=False, method=["lbfgs"], maxiter=2000)
    subjects = entry_data.groupby("id").first()
    X = np.column_stack([np.ones(len(subjects)), subjects["x1"]])
    total = mixed.llf
    for c, cause in enumerate(["a", "b"]):
        coef, llf = truncated_weibull_fit(subjects["T"].to_numpy(), subjects["T0"].to_numpy(),
                                          subjects["d2"].to_numpy() == c + 1, X)
        total += llf
        mine = res.fe_params.loc[[f"{cause}: Intercept", f"{cause}: x1",
                                  f"{cause}: log(shape)"], 1].to_numpy()
        np.testing.assert_allclose(mine, coef, rtol=1e-4, atol=1e-5)
    assert res.llf >= total - 1e-6
    assert res.llf - total < 1e-4           # MixedLM's optimiser stops within 1e-4 of its max


def _episodes(subjects, knots):
    """Split episodes from entry to follow-up time: one row per subject and interval the
    at-risk period [T0, T] overlaps, with its exposure and whether the event fell in it."""
    edges = np.r_[0.0, knots, np.inf]
    rows = []
    for T0, T, d, x in zip(subjects["T0"], subjects["T"], subjects["d"], subjects["x1"]):
        for j in range(len(edges) - 1):
            exposure = min(T, edges[j + 1]) - max(T0, edges[j])
            if exposure > 0:
                rows.append((j, exposure, float(d and edges[j] < T <= edges[j + 1]), x))
    return pd.DataFrame(rows, columns=["piece", "exposure", "event", "x1"])


def test_one_expert_piecewise_hazards_are_a_poisson_regression_from_entry(entry_data):
    knots = (1.5, 3.0, 5.0)
    res = _model(entry_data, n_experts=1, hazard="piecewise", knots=knots).fit()
    mixed = smf.mixedlm("y ~ time", entry_data, groups="id", re_formula="~ time").fit(
        reml=False, method=["lbfgs"], maxiter=2000)
    ep = _episodes(entry_data.groupby("id").first(), knots)
    X = np.column_stack([np.eye(4)[ep["piece"]], ep["x1"]])
    glm = sm.GLM(ep["event"], X, family=sm.families.Poisson(),
                 offset=np.log(ep["exposure"])).fit(tol=1e-12)
    total = mixed.llf + glm.llf - float((ep["event"] * np.log(ep["exposure"])).sum())
    names = [n for n in res.fe_params.index if n.startswith("event:")]
    np.testing.assert_allclose(res.fe_params.loc[names, 1], glm.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.bse.loc["beta"].loc[1].loc[names], glm.bse, rtol=2e-3)
    assert res.llf >= total - 1e-6
    assert res.llf - total < 1e-4


def _dense_truncated_llf(res, df):
    """sum_i [log sum_k pi_ik N(y_i; ...) f_k(T_i, d_i) - log sum_k pi_ik S_k(T0_i)], densely
    (tests/truth.py's multivariate normals, scipy's Weibull)."""
    K = res.n_experts
    fe = res.fe_params
    subjects = df.groupby("id").first()
    X1 = np.column_stack([np.ones(len(subjects)), subjects["x1"]])
    event_logdens, entry_logsurv = np.zeros((len(subjects), K)), np.zeros((len(subjects), K))
    for k in range(K):
        coef = fe.loc[["event: Intercept", "event: x1", "event: log(shape)"], k + 1].to_numpy()
        rho = np.exp(coef[-1])
        scale = np.exp(-(X1 @ coef[:-1]) / rho)
        T, d = subjects["T"].to_numpy(), subjects["d"].to_numpy() == 1
        event_logdens[:, k] = np.where(d, stats.weibull_min.logpdf(T, rho, scale=scale),
                                       stats.weibull_min.logsf(T, rho, scale=scale))
        entry_logsurv[:, k] = stats.weibull_min.logsf(subjects["T0"].to_numpy(), rho,
                                                      scale=scale)
    gamma = res.gate_params.to_numpy().T
    W = np.column_stack([np.ones(len(subjects)), subjects["x1"], subjects["x2"]])
    log_prior = W @ gamma.T - special.logsumexp(W @ gamma.T, axis=1, keepdims=True)
    traj = ["Intercept", "time"]
    beta = fe.loc[traj].to_numpy().T
    cov = np.stack([res.cov_re[k + 1].to_numpy() for k in range(K)])
    X = np.column_stack([np.ones(len(df)), df["time"]])
    Wrows = np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])
    numerator = dense_loglike(df["y"], X, X, Wrows, df["id"], gamma, beta, cov,
                              res.scale.to_numpy(), extra_logdens=event_logdens)
    return numerator - special.logsumexp(log_prior + entry_logsurv, axis=1).sum()


def test_loglikelihood_equals_dense_truncated_computation(entry_data):
    model = _model(entry_data)
    res = model.fit(n_starts=2, random_state=0)
    dense = _dense_truncated_llf(res, entry_data)
    assert res.llf == pytest.approx(dense, abs=1e-8 * abs(dense))
    # the truncation term is not negligible here: without it the value differs by tens
    plain = MEMoE.from_formula("y ~ time", entry_data, "id", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=2,
                               survival=TimeToEvent("T", "d", formula="~ x1"))
    assert abs(plain.loglike(res.params) - res.llf) > 10


@pytest.mark.parametrize("hazard", ["weibull", "piecewise"])
def test_score_equals_numerical_gradient_with_entry_and_competing_risks(entry_data, hazard):
    model = _model(entry_data, event="d2", hazard=hazard)
    res = model.fit(n_starts=1, random_state=0, maxiter=30, polish=False)
    assert_score_is_numerical_gradient(model, perturbed(res.params))


@pytest.mark.parametrize("hazard", ["weibull", "piecewise"])
def test_em_with_ghosts_never_decreases_the_truncated_loglikelihood(entry_data, hazard):
    """The M-step's Q includes the expected subjects lost before entry; with two causes the
    hazards' Newton steps move one cause at a time. The reported (exact) log-likelihood
    never decreases, from several starts."""
    assert_em_never_decreases(_model(entry_data, event="d2", hazard=hazard))


def test_observed_information_is_minus_the_numerical_hessian(entry_data):
    """oim standard errors from the Jacobian of the score equal those of minus the Hessian
    of the log-likelihood by second differences (model.loglike only)."""
    model = _model(entry_data)
    res = model.fit(n_starts=2, random_state=0)
    theta = res.params.to_numpy()
    n = theta.size
    h = 1e-4 * np.maximum(np.abs(theta), 0.1)

    def f(x):
        return model.loglike(pd.Series(x, index=res.params.index))

    hess = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            e_i, e_j = np.eye(n)[i] * h[i], np.eye(n)[j] * h[j]
            hess[i, j] = hess[j, i] = (f(theta + e_i + e_j) - f(theta + e_i - e_j)
                                       - f(theta - e_i + e_j) + f(theta - e_i - e_j)) / (4 * h[i] * h[j])
    se = np.sqrt(np.diag(np.linalg.inv(-hess)))
    np.testing.assert_allclose(res.bse.to_numpy(), se, rtol=2e-3)


def test_recovers_the_truth_and_ignoring_entry_is_biased(entry_data):
    res = _model(entry_data).fit(random_state=1)
    fe, se = res.fe_params, res.bse.loc["beta"]
    truth_beta = np.asarray(TRUTH_K2["beta"])
    order = [int(np.argmin(np.abs(truth_beta[:, 0] - fe.loc["Intercept", k + 1])))
             for k in range(2)]
    assert sorted(order) == [0, 1]
    terms = ["event: Intercept", "event: x1", "event: log(shape)"]
    plain = MEMoE.from_formula("y ~ time", entry_data, "id", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=2,
                               survival=TimeToEvent("T", "d", formula="~ x1")).fit(random_state=1)
    worst, worst_plain = 0.0, 0.0
    for k in range(2):
        z = (fe.loc[terms, k + 1].to_numpy() - HAZARD_TRUTH[order[k]]) / \
            se.loc[k + 1].loc[terms].to_numpy()
        assert np.all(np.abs(z) < 4), (k, z)
        worst = max(worst, np.abs(z).max())
        kp = int(np.argmin(np.abs(plain.fe_params.loc["Intercept"].to_numpy()
                                  - truth_beta[order[k], 0])))
        z_plain = (plain.fe_params.loc[terms, kp + 1].to_numpy() - HAZARD_TRUTH[order[k]]) / \
            plain.bse.loc["beta"].loc[kp + 1].loc[terms].to_numpy()
        worst_plain = max(worst_plain, np.abs(z_plain).max())
    # the fit without entry misses the hazards by several SEs
    assert worst_plain > 3 and worst_plain > 2 * worst, (worst, worst_plain)


def test_simulation_draws_experts_and_times_given_event_free_at_entry(entry_data):
    """simulate(res): the experts' frequencies are those of pi_ik S_k(T0_i) / P_i (scipy's
    Weibull survival), and H_k(T) - H_k(T0) of the uncensored draws is Exp(1) (drawn from the
    family directly, so censoring does not thin them)."""
    res = _model(entry_data).fit(n_starts=2, random_state=0)
    subjects = entry_data.groupby("id").first()
    fe = res.fe_params
    X1 = np.column_stack([np.ones(len(subjects)), subjects["x1"]])
    W = np.column_stack([np.ones(len(subjects)), subjects["x1"], subjects["x2"]])
    gamma = res.gate_params.to_numpy().T
    prior = special.softmax(W @ gamma.T, axis=1)
    surv = np.empty_like(prior)
    coefs = []
    for k in range(2):
        coef = fe.loc[["event: Intercept", "event: x1", "event: log(shape)"], k + 1].to_numpy()
        coefs.append(coef)
        surv[:, k] = stats.weibull_min.sf(subjects["T0"], np.exp(coef[-1]),
                                          scale=np.exp(-(X1 @ coef[:-1]) / np.exp(coef[-1])))
    rho = prior * surv / (prior * surv).sum(axis=1, keepdims=True)
    shares = np.array([simulate(res, random_state=seed).expert.to_numpy() == 2
                       for seed in range(20)]).mean(axis=0)
    expected = rho[:, 1]
    se = np.sqrt((expected * (1 - expected)).sum() / 20) / len(expected)
    assert abs(shares.mean() - expected.mean()) < 4 * se
    sim = simulate(res, random_state=3)
    drawn = sim.data.groupby("id").first()
    assert (drawn["T"] > drawn["T0"]).all()
    np.testing.assert_array_equal(drawn["T0"].to_numpy(), subjects["T0"].to_numpy())
    # conditional draws, straight from the family: H(T) - H(T0) ~ Exp(1)
    model = res.model
    expert = np.random.default_rng(5).integers(0, 2, size=len(subjects))
    times, _ = model.family.simulate_events(res.state, model.data, expert,
                                            np.random.default_rng(6))
    coef = np.array(coefs)[expert]
    rate = np.exp(np.einsum("nr,nr->n", X1, coef[:, :-1]))
    shape = np.exp(coef[:, -1])
    spent = rate * (times ** shape - subjects["T0"].to_numpy() ** shape)
    assert stats.kstest(spent, "expon").pvalue > 0.01


def test_summary_counts_person_time_from_entry(entry_data):
    res = _model(entry_data).fit(n_starts=1, random_state=0)
    counts = res.event_counts
    subjects = entry_data.groupby("id").first()
    at_risk = (subjects["T"] - subjects["T0"]).sum()
    assert counts["person-time"].sum() == pytest.approx(at_risk, rel=1e-10)
    assert np.isfinite(res.bse).all()
    robust = _model(entry_data).fit(n_starts=1, random_state=0, cov_type="robust")
    assert np.isfinite(robust.bse).all()


@pytest.mark.parametrize("kind", ["weibull", "piecewise"])
def test_ghost_term_derivatives_equal_numerical_differences(kind):
    """The M-step's ghosts' term sum_i g_ik log(1 - S_k(T0_i)): its gradient equals
    differences of its value and its Hessian differences of its gradient, per (expert,
    cause) (entry times of 0 included: they count for nothing)."""
    from pymemoe._design.events import SubjectEvents
    from pymemoe.families.events import PiecewiseHazards, WeibullHazards
    rng = np.random.default_rng(0)
    n, K, C = 60, 2, 2
    names, causes = ("Intercept", "x1"), ("a", "b")
    events = SubjectEvents(time=rng.uniform(2, 5, n), cause=rng.integers(0, 3, n),
                           exog=np.column_stack([np.ones(n), rng.normal(size=n)]),
                           exog_names=names, cause_names=causes,
                           entry=rng.uniform(0, 2, n) * (rng.uniform(size=n) < 0.7))
    hazards = (WeibullHazards(exog_names=names, cause_names=causes) if kind == "weibull"
               else PiecewiseHazards(exog_names=names, cause_names=causes, knots=(0.5, 1.2)))
    ghosts = rng.uniform(0, 1, (n, K))
    m = hazards.n_per_cause
    coef = rng.normal(scale=0.3, size=(K, C * m))
    coef[:, ::m] -= 1.0
    _, grad, hess = hazards.ghost_sums(events, coef, ghosts)
    h = 1e-6
    for j in range(C * m):
        up, down = coef.copy(), coef.copy()
        up[:, j] += h
        down[:, j] -= h
        v_up, g_up, _ = hazards.ghost_sums(events, up, ghosts)
        v_down, g_down, _ = hazards.ghost_sums(events, down, ghosts)
        c, i = divmod(j, m)
        np.testing.assert_allclose(grad[:, c, i], (v_up - v_down) / (2 * h), rtol=1e-6,
                                   atol=1e-7)
        np.testing.assert_allclose(hess[:, c, :, i], (g_up[:, c] - g_down[:, c]) / (2 * h),
                                   rtol=1e-5, atol=1e-6)


def test_weighted_aalen_johansen_with_entry_is_statsmodels_product_limit(entry_data):
    """Unit weights, one cause: the risk sets start at entry, as statsmodels' SurvfuncRight
    with ``entry``."""
    from statsmodels.duration.survfunc import SurvfuncRight

    from pymemoe.diagnostics import weighted_aalen_johansen
    subjects = entry_data.groupby("id").first()
    T, d, T0 = (subjects[c].to_numpy() for c in ("T", "d", "T0"))
    at = np.linspace(0.5, 8.0, 16)
    surv, _ = weighted_aalen_johansen(T, d, np.ones(len(T)), 1, at, entry=T0)
    reference = SurvfuncRight(T, d, entry=T0)
    where = np.searchsorted(reference.surv_times, at, side="right") - 1
    expected = np.where(where >= 0, reference.surv_prob[np.maximum(where, 0)], 1.0)
    np.testing.assert_allclose(surv, expected, rtol=1e-12)


# -- bad input ------------------------------------------------------------------------------


def test_bad_entry_times_name_the_subject(entry_data):
    df = entry_data
    first = int(df["id"].iloc[0])
    here = df["id"] == first
    with pytest.raises(ValueError, match=f"entry 'T0' is missing for subject {first!r}"):
        _model(df.assign(T0=np.where(here, np.nan, df["T0"])))
    with pytest.raises(ValueError, match=f"subject {first!r} is -1; entry times must be >= 0"):
        _model(df.assign(T0=np.where(here, -1.0, df["T0"])))
    with pytest.raises(ValueError, match=f"subject {first!r} .* at or after its follow-up"):
        _model(df.assign(T0=np.where(here, df["T"], df["T0"])))
    sizes = df.groupby("id").size()
    several = int(sizes.index[sizes > 1][0])
    bad = df.copy()
    bad.loc[bad.index[bad["id"] == several][0], "T0"] += 0.01
    with pytest.raises(ValueError, match=f"varies within subject {several!r}"):
        _model(bad)
    with pytest.raises(ValueError, match="entry 'nope' is not a column"):
        _model(df, entry="nope")
