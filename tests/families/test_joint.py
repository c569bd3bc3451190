"""Joint experts (trajectory x time to event): checks from independent sources.

* K = 1: the joint log-likelihood is the linear mixed model's plus the cause-specific Weibull
  models', each fitted separately (statsmodels' MixedLM; scipy.stats.weibull_min maximised by
  scipy.optimize, an implementation independent of pymemoe's hazards);
* K >= 2: the log-likelihood equals a dense per-subject computation (tests/truth.py's
  multivariate normals plus scipy's Weibull densities);
* the score equals the numerical gradient of the log-likelihood; EM never decreases it;
* the truth a simulated data set was drawn from is recovered;
* bad input is a ValueError naming the subject or the cause.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import optimize, special, stats

from pymemoe import MEMoE, TimeToEvent

from truth import TRUTH_K2, dense_loglike, simulate_memoe

# expert-specific Weibull hazards of the simulation: intercept, effect of x1, log shape
HAZARD_TRUTH = np.array([[-3.0, 0.5, np.log(1.5)],
                         [-1.5, -0.5, np.log(0.8)]])


def weibull_loglike(time, event, X, coef):
    """Right-censored Weibull log-likelihood from scipy.stats (hazard rho t^(rho-1) e^(x'theta)
    is weibull_min with shape rho and scale exp(-x'theta / rho)), per subject."""
    theta, s = coef[:-1], coef[-1]
    rho = np.exp(s)
    scale = np.exp(-(X @ theta) / rho)
    return np.where(event, stats.weibull_min.logpdf(time, rho, scale=scale),
                    stats.weibull_min.logsf(time, rho, scale=scale))


def weibull_fit(time, event, X):
    """Maximum likelihood by scipy (Nelder-Mead then BFGS from an exponential start)."""
    start = np.r_[np.log(event.sum() / time.sum()), np.zeros(X.shape[1] - 1), 0.0]

    def negative(c):
        value = -weibull_loglike(time, event, X, c).sum()
        return value if np.isfinite(value) else 1e300

    first = optimize.minimize(negative, start, method="Nelder-Mead",
                              options=dict(maxiter=20000, xatol=1e-10, fatol=1e-12))
    best = optimize.minimize(negative, first.x, method="BFGS", options=dict(gtol=1e-9))
    return best.x, -best.fun


def simulate_joint(n_subjects=400, seed=0):
    """Trajectories of tests/truth.py's K = 2 truth; given the expert, an event time from its
    Weibull hazard (HAZARD_TRUTH, covariate x1), censored uniformly on (2, 12); the rows
    measured after the subject's time are dropped, as follow-up ends there. Every subject
    is measured at enrolment (time 0), so that no subject is lost with all its rows: losing
    the subjects whose event comes before their first visit would select on the event time
    (left truncation, which the model does not take into account) and bias the hazards."""
    df = simulate_memoe(n_subjects, TRUTH_K2, seed=seed, baseline_visit=True)
    rng = np.random.default_rng(seed + 100)
    subjects = df.groupby("id").first()
    k = subjects["expert"].to_numpy() - 1
    theta = HAZARD_TRUTH[k]
    rho = np.exp(theta[:, 2])
    eta = theta[:, 0] + theta[:, 1] * subjects["x1"].to_numpy()
    event_time = (-np.log(rng.uniform(size=len(k))) / np.exp(eta)) ** (1 / rho)
    censor = rng.uniform(2.0, 12.0, size=len(k))
    per = pd.DataFrame({"T": np.minimum(event_time, censor),
                        "d": (event_time <= censor).astype(int)}, index=subjects.index)
    df = df.join(per, on="id")
    return df[df["time"] <= df["T"]].reset_index(drop=True)


@pytest.fixture(scope="module")
def joint_data():
    return simulate_joint()


@pytest.fixture(scope="module")
def pbc_joint(pbc):
    out = pbc.copy()
    out["fu"] = out["futime"] / 365.25
    return out


def _dense_joint_llf(res, df, causes):
    """sum_i log sum_k pi_ik N(y_i; ...) prod_c weibull_c(T_i, d_i | k), densely."""
    K = res.n_experts
    fe = res.fe_params
    traj = [name for name in fe.index if ":" not in name]
    X = np.column_stack([np.ones(len(df)), df["time"]])
    subjects = df.groupby("id").first()
    event_logdens = np.zeros((len(subjects), K))
    for k in range(K):
        for c, cause in enumerate(causes):
            names = [n for n in fe.index if n.startswith(f"{cause}:")]
            coef = fe.loc[names, k + 1].to_numpy()
            design = np.column_stack([np.ones(len(subjects))] +
                                     [subjects[n.split(": ")[1]].to_numpy()
                                      for n in names[1:-1]])
            event_logdens[:, k] += weibull_loglike(subjects["T"].to_numpy(),
                                                   subjects["d"].to_numpy() == c + 1,
                                                   design, coef)
    gamma = res.gate_params.to_numpy().T
    beta = fe.loc[traj].to_numpy().T
    cov = np.stack([res.cov_re[k + 1].to_numpy() for k in range(K)])
    W = np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])
    return dense_loglike(df["y"], X, X, W, df["id"], gamma, beta, cov, res.scale.to_numpy(),
                         extra_logdens=event_logdens)


def test_one_expert_is_a_mixed_model_plus_separate_cause_specific_weibull_fits(pbc_joint):
    """K = 1, competing risks (transplant, death) with a covariate: the joint maximum is the
    sum of the separately maximised models (statsmodels MixedLM, ML; scipy Weibull fits of
    each cause with the other censored), and the estimates are theirs."""
    model = MEMoE.from_formula("logbili ~ year", pbc_joint, "id", re_formula="~ year",
                               n_experts=1,
                               survival=TimeToEvent("fu", "status", formula="~ age",
                                                    causes=["transplant", "death"]))
    res = model.fit()
    mixed = smf.mixedlm("logbili ~ year", pbc_joint, groups="id", re_formula="~ year").fit(
        reml=False, method=["lbfgs"], maxiter=2000)
    subjects = pbc_joint.groupby("id").first()
    X = np.column_stack([np.ones(len(subjects)), subjects["age"]])
    total = mixed.llf
    for c, cause in enumerate(["transplant", "death"]):
        coef, llf = weibull_fit(subjects["fu"].to_numpy(), subjects["status"].to_numpy() == c + 1,
                                X)
        total += llf
        mine = res.fe_params.loc[[f"{cause}: Intercept", f"{cause}: age",
                                  f"{cause}: log(shape)"], 1].to_numpy()
        np.testing.assert_allclose(mine, coef, rtol=1e-4, atol=1e-5)
    assert res.llf >= total - 1e-6
    assert res.llf - total < 1e-4           # MixedLM's optimiser stops within 1e-4 of its max
    np.testing.assert_allclose(res.fe_params.loc[["Intercept", "year"], 1],
                               mixed.fe_params[["Intercept", "year"]], rtol=1e-3, atol=1e-4)


def test_loglikelihood_equals_dense_per_subject_computation(joint_data):
    model = MEMoE.from_formula("y ~ time", joint_data, "id", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=2,
                               survival=TimeToEvent("T", "d", formula="~ x1"))
    res = model.fit(n_starts=2, random_state=0)
    dense = _dense_joint_llf(res, joint_data, ["event"])
    assert res.llf == pytest.approx(dense, abs=1e-8 * abs(dense))
    # and at a point away from the maximum, through model.loglike
    moved = res.params.copy()
    moved[("beta", 2, "event: x1")] += 0.3
    moved[("beta", 1, "time")] -= 0.1
    shifted = res.model.loglike(moved)
    assert shifted < res.llf


def test_recovers_the_simulated_hazards_and_trajectories(joint_data):
    model = MEMoE.from_formula("y ~ time", joint_data, "id", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=2,
                               survival=TimeToEvent("T", "d", formula="~ x1"))
    res = model.fit(random_state=1)
    fe = res.fe_params
    truth_beta = np.asarray(TRUTH_K2["beta"])
    # experts are ordered by size; match them to the truth by their intercepts
    order = [int(np.argmin(np.abs(truth_beta[:, 0] - fe.loc["Intercept", k + 1])))
             for k in range(2)]
    assert sorted(order) == [0, 1]
    se = res.bse.loc["beta"]
    for k in range(2):
        est = fe.loc[["event: Intercept", "event: x1", "event: log(shape)"], k + 1].to_numpy()
        err = se.loc[k + 1].loc[["event: Intercept", "event: x1", "event: log(shape)"]]
        z = (est - HAZARD_TRUTH[order[k]]) / err.to_numpy()
        assert np.all(np.abs(z) < 4), (k, est, HAZARD_TRUTH[order[k]], z)


def test_score_equals_numerical_gradient_with_competing_risks(pbc_joint):
    model = MEMoE.from_formula("logbili ~ year", pbc_joint, "id", re_formula="~ year",
                               gate_formula="~ age", n_experts=2,
                               survival=TimeToEvent("fu", "status", formula="~ age",
                                                    causes=["transplant", "death"]))
    res = model.fit(n_starts=2, random_state=0, polish=False, maxiter=30)
    theta = res.params.to_numpy() + 0.01 * np.random.default_rng(0).standard_normal(len(res.params))
    theta = pd.Series(theta, index=res.params.index)
    grad = model.score(theta)
    steps = 1e-5 * np.maximum(np.abs(theta.to_numpy()), 1.0)
    numeric = np.empty_like(grad)
    for j, h in enumerate(steps):
        up, down = theta.copy(), theta.copy()
        up.iloc[j] += h
        down.iloc[j] -= h
        numeric[j] = (model.loglike(up) - model.loglike(down)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4)


def test_em_never_decreases_the_joint_loglikelihood(pbc_joint):
    model = MEMoE.from_formula("logbili ~ year", pbc_joint, "id", re_formula="~ year",
                               n_experts=2,
                               survival=TimeToEvent("fu", "status", formula="~ age",
                                                    causes=["transplant", "death"]))
    for seed in range(3):
        res = model.fit(n_starts=1, random_state=seed, polish=False, tol=1e-10,
                        starts="independent")
        trace = res.llf_trace
        assert len(trace) > 5
        assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))


def test_results_summary_predictions_and_standard_errors(joint_data):
    model = MEMoE.from_formula("y ~ time", joint_data, "id", re_formula="~ time",
                               n_experts=2, survival=TimeToEvent("T", "d"))
    res = model.fit(n_starts=2, random_state=0)
    text = str(res.summary())
    assert "event: log(shape)" in text and "Weibull" in text
    assert np.isfinite(res.bse).all()
    robust = model.fit(n_starts=2, random_state=0, cov_type="robust")
    assert np.isfinite(robust.bse).all() and not np.allclose(robust.bse, res.bse)
    assert res.predict().shape == (len(joint_data),)
    # the hazards add K * 2 parameters to the trajectory model's
    plain = MEMoE.from_formula("y ~ time", joint_data, "id", re_formula="~ time", n_experts=2)
    assert len(res.params) == len(plain.param_names) + 2 * 2
    assert res.model.formula_options()["survival"] == TimeToEvent("T", "d")


# -- bad input ------------------------------------------------------------------------------


def _build(df, **survival):
    spec = dict(time="T", event="d")
    spec.update(survival)
    return MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time", n_experts=2,
                              survival=TimeToEvent(**spec))


def test_bad_times_and_events_name_the_subject_or_cause(joint_data):
    df = joint_data.copy()
    first = int(df["id"].iloc[0])
    bad = df.assign(T=np.where(df["id"] == first, np.nan, df["T"]))
    with pytest.raises(ValueError, match=f"missing for subject {first!r}"):
        _build(bad)
    bad = df.assign(T=np.where(df["id"] == first, -1.0, df["T"]))
    with pytest.raises(ValueError, match=f"subject {first!r} is -1; times must be positive"):
        _build(bad)
    sizes = df.groupby("id").size()
    several = int(sizes.index[sizes > 1][0])
    bad = df.copy()
    bad.loc[bad.index[bad["id"] == several][0], "T"] += 1.0
    with pytest.raises(ValueError, match=f"varies within subject {several!r}"):
        _build(bad)
    with pytest.raises(ValueError, match="no subject has an event"):
        _build(df.assign(d=0))
    with pytest.raises(ValueError, match="cause 1 has no event"):
        _build(df.assign(d=2 * df["d"]))
    with pytest.raises(ValueError, match="is 0.5; it must be 0"):
        _build(df.assign(d=np.where(df["id"] == first, 0.5, df["d"])))
    with pytest.raises(ValueError, match="'nope' is not a column"):
        _build(df, time="nope")
    with pytest.raises(ValueError, match="hazard must be one of"):
        TimeToEvent("T", "d", hazard="cox")


def test_rows_after_the_follow_up_time_are_counted_in_a_warning(joint_data):
    shifted = joint_data.assign(T=joint_data["T"] - 0.5)
    shifted = shifted[shifted["T"] > 0]
    expected = int((shifted["time"] > shifted["T"]).sum())
    assert expected > 0
    with pytest.warns(UserWarning, match=f"{expected} rows are measured after"):
        _build(shifted, visit_time="time")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _build(joint_data, visit_time="time")          # none there


def test_data_frame_is_not_modified(joint_data):
    before = joint_data.copy()
    _build(joint_data, formula="~ x1", visit_time="time")
    pd.testing.assert_frame_equal(joint_data, before)


# -- results of a joint model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pbc_competing(pbc_joint):
    model = MEMoE.from_formula("logbili ~ year", pbc_joint, "id", re_formula="~ year",
                               n_experts=2,
                               survival=TimeToEvent("fu", "status", formula="~ age",
                                                    causes=["transplant", "death"]))
    return model.fit(random_state=0)


def test_cumulative_incidence_equals_quadrature_of_the_fitted_hazards(pbc_competing):
    """S_k(t) = exp(-sum_c H_kc(t)) in closed form and F_kc(t) = int_0^t h_kc S_k by scipy's
    quad, at the fitted parameters of each expert (profile age 50)."""
    from scipy import integrate
    res = pbc_competing
    times = np.array([0.5, 2.0, 5.0, 10.0])
    curves = res.cumulative_incidence(times, profile={"age": 50.0}).set_index(
        ["expert", "curve", "time"])
    fe = res.fe_params
    for k in (1, 2):
        scale, rho = [], []
        for cause in ("transplant", "death"):
            scale.append(np.exp(fe.loc[f"{cause}: Intercept", k] + 50.0 * fe.loc[f"{cause}: age", k]))
            rho.append(np.exp(fe.loc[f"{cause}: log(shape)", k]))

        def surv(t):
            return np.exp(-sum(a * t ** r for a, r in zip(scale, rho)))

        for t in times:
            assert curves.loc[(k, "survival", t), "estimate"] == pytest.approx(surv(t), rel=1e-12)
            for c, cause in enumerate(("transplant", "death")):
                exact = integrate.quad(lambda u: scale[c] * rho[c] * u ** (rho[c] - 1) * surv(u),
                                       0.0, t, limit=200, epsabs=1e-13, epsrel=1e-11)[0]
                got = curves.loc[(k, f"incidence: {cause}", t), "estimate"]
                assert got == pytest.approx(exact, abs=2e-6)
    # the curves add up, and the marginal is the gating-weighted mixture
    for t in times:
        total = sum(curves.loc[(k, name, t), "estimate"] for name in
                    ("survival", "incidence: transplant", "incidence: death") for k in [1])
        assert total == pytest.approx(1.0, abs=1e-6)
    prior = res.prior.mean(axis=0).to_numpy()      # intercept-only gating: the same for all
    mixed = prior @ np.array([curves.loc[(k, "survival", 5.0), "estimate"] for k in (1, 2)])
    assert curves.loc[("marginal", "survival", 5.0), "estimate"] == pytest.approx(mixed)
    rows = curves.reset_index()
    assert (rows["lower"] <= rows["estimate"]).all() and (rows["estimate"] <= rows["upper"]).all()
    with pytest.raises(ValueError, match="no value for the design column 'age'"):
        res.cumulative_incidence(times, profile={"sex": 1})


def test_hazard_ratios_event_counts_and_summary(pbc_competing, pbc_joint):
    res = pbc_competing
    ratios = res.hazard_ratios()
    ci = res.conf_int()
    for (k, term), row in ratios.iterrows():
        assert row["hazard ratio"] == pytest.approx(np.exp(res.params[("beta", k, term)]))
        assert row["lower"] == pytest.approx(np.exp(ci.loc[("beta", k, term)].iloc[0]))
    assert list(ratios.index.get_level_values("term").unique()) == ["transplant: age",
                                                                    "death: age"]
    counts = res.event_counts
    subjects = pbc_joint.groupby("id").first()
    assert counts.sum()["events: death"] == pytest.approx((subjects["status"] == 2).sum())
    assert counts.sum()["person-time"] == pytest.approx(subjects["fu"].sum())
    text = str(res.summary())
    assert "Expert 1: time to event" in text and "Hazard ratios" in text
    assert "Events and person-time by expert" in text
    plain = MEMoE.from_formula("logbili ~ year", pbc_joint, "id", re_formula="~ year",
                               n_experts=2).fit(n_starts=2, random_state=0)
    with pytest.raises(ValueError, match="no time-to-event part"):
        plain.event_counts
    with pytest.raises(ValueError, match="no time-to-event part"):
        plain.cumulative_incidence([1.0])
    pd.testing.assert_frame_equal(plain.posterior_trajectory, plain.posterior)


def test_posterior_without_the_events_is_the_trajectory_models(pbc_competing, pbc_joint):
    """lcmm's pprobY: the posterior of the trajectory model alone at the joint fit's
    trajectory and gating parameters (computed by the dense likelihood of tests/truth.py)."""
    res = pbc_competing
    fe = res.fe_params
    K = 2
    X = np.column_stack([np.ones(len(pbc_joint)), pbc_joint["year"]])
    beta = fe.loc[["Intercept", "year"]].to_numpy().T
    cov = np.stack([res.cov_re[k + 1].to_numpy() for k in range(K)])
    # log f(y_i | k): the dense likelihood of one subject under one expert (K = 1)
    logdens = np.empty((res.n_groups, K))
    ids = pbc_joint["id"].to_numpy()
    order = np.unique(ids)
    for k in range(K):
        per = []
        for i in order[:40]:                       # the first 40 subjects suffice
            rows = ids == i
            per.append(dense_loglike(pbc_joint.loc[rows, "logbili"], X[rows], X[rows],
                                     np.ones((rows.sum(), 1)), ids[rows], [[0.0]],
                                     beta[k:k + 1], cov[k:k + 1], res.scale.to_numpy()[k:k + 1]))
        logdens[:40, k] = per
    prior = np.log(res.prior.to_numpy()[:40])
    joint = prior + logdens[:40]
    expected = np.exp(joint - joint.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(res.posterior_trajectory.to_numpy()[:40], expected, atol=1e-10)
    # the events move the posterior of some subjects
    assert (res.posterior - res.posterior_trajectory).abs().to_numpy().max() > 0.1


def test_weighted_aalen_johansen_equals_statsmodels():
    """One cause: statsmodels' SurvfuncRight (Kaplan-Meier) with frequency weights; two
    causes: its CumIncidenceRight (Aalen-Johansen), with integer weights as frequencies."""
    from statsmodels.duration.survfunc import CumIncidenceRight, SurvfuncRight
    from pymemoe.diagnostics import weighted_aalen_johansen
    rng = np.random.default_rng(3)
    n = 300
    time = np.round(rng.exponential(3.0, n), 2) + 0.01
    cause = rng.choice([0, 1, 2], size=n, p=[0.3, 0.4, 0.3])
    weights = rng.integers(1, 4, size=n).astype(float)
    at = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    surv, inc = weighted_aalen_johansen(time, (cause > 0).astype(int), weights, 1, at)
    km = SurvfuncRight(time, (cause > 0).astype(float), freq_weights=weights)
    expected = np.array([km.surv_prob[np.searchsorted(km.surv_times, t, side="right") - 1]
                         for t in at])
    np.testing.assert_allclose(surv, expected, atol=1e-12)
    np.testing.assert_allclose(inc[0], 1 - expected, atol=1e-12)
    surv2, inc2 = weighted_aalen_johansen(time, cause, weights, 2, at)
    cif = CumIncidenceRight(time, cause, freq_weights=weights)
    for c in range(2):
        expected = np.array([cif.cinc[c][np.searchsorted(cif.times, t, side="right") - 1]
                             for t in at])
        np.testing.assert_allclose(inc2[c], expected, atol=1e-12)
    np.testing.assert_allclose(surv2 + inc2.sum(axis=0), 1.0, atol=1e-12)


def test_event_fit_table_and_its_figure(pbc_competing, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from pymemoe.diagnostics import event_fit_table
    from pymemoe.plotting import plot_event_curves
    res = pbc_competing
    table = event_fit_table(res, times=[1.0, 5.0, 10.0])
    assert set(table["curve"]) == {"survival", "incidence: transplant", "incidence: death"}
    # the model's average of expert 1's survival: the closed form averaged by hand
    fe = res.fe_params
    tau = res.posterior[1].to_numpy()
    age = pbc_competing.model.data.events.exog[:, 1]
    H = sum(np.exp(fe.loc[f"{c}: Intercept", 1] + age * fe.loc[f"{c}: age", 1])[:, None]
            * np.array([1.0, 5.0, 10.0]) ** np.exp(fe.loc[f"{c}: log(shape)", 1])
            for c in ("transplant", "death"))
    expected = tau @ np.exp(-H) / tau.sum()
    got = table[(table["expert"] == 1) & (table["curve"] == "survival")]["predicted"]
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    axes = plot_event_curves(res, time_label="years")
    assert len(axes) == 3 and axes[0].get_legend() is not None
    axes[0].figure.savefig(tmp_path / "events.png")


def test_a_hazard_run_to_zero_is_reported_as_separation(joint_data):
    """A cause whose hazard in an expert runs to 0 (or concentrates on one event) has no
    maximum likelihood estimate: the family's separation check finds it and names the term."""
    import dataclasses
    model = MEMoE.from_formula("y ~ time", joint_data, "id", re_formula="~ time",
                               n_experts=2, survival=TimeToEvent("T", "d", formula="~ x1"))
    res = model.fit(n_starts=2, random_state=0)
    family, names = model.family, list(model.structure.exog_names)
    tau = res.posterior.to_numpy()
    value, _ = family.extreme_fits(model.data, res.state, tau)
    assert (value < 25).all()
    beta = res.state.beta.copy()
    beta[1, names.index("event: Intercept")] = -60.0
    moved = dataclasses.replace(res.state, beta=beta)
    value, term = family.extreme_fits(model.data, moved, tau)
    assert value[1] > 25 and value[0] < 25
    assert names[term[1]] == "event: Intercept"


def test_dynamic_prediction_equals_a_dense_computation(pbc_competing, pbc_joint):
    """P(cause c in (s, s + h] | y(s), T > s) from the posterior of the measurements up to s
    (tests/truth.py's dense likelihood, one subject at a time) times S_k(s) and the Weibull
    curves by scipy quad: independent of pymemoe's predictive engine and hazards."""
    from scipy import integrate
    res = pbc_competing
    s, h = 2.0, 3.0
    ids = [2, 4, 7, 9]
    new = pbc_joint[pbc_joint["id"].isin(ids)]
    got = res.dynamic_prediction(new, s, h, "year", n_draws=200, random_state=1)
    fe = res.fe_params
    beta = fe.loc[["Intercept", "year"]].to_numpy().T
    cov = [res.cov_re[k + 1].to_numpy() for k in range(2)]
    prior = res.prior.iloc[0].to_numpy()           # intercept-only gating
    for i in ids:
        rows = new[(new["id"] == i) & (new["year"] <= s)]
        X = np.column_stack([np.ones(len(rows)), rows["year"]])
        age = rows["age"].iloc[0]
        logw, cond = np.empty(2), np.empty((2, 2))
        for k in range(2):
            scale = [np.exp(fe.loc[f"{c}: Intercept", k + 1] + age * fe.loc[f"{c}: age", k + 1])
                     for c in ("transplant", "death")]
            rho = [np.exp(fe.loc[f"{c}: log(shape)", k + 1]) for c in ("transplant", "death")]

            def surv(t):
                return np.exp(-sum(a * t ** r for a, r in zip(scale, rho)))

            dens = dense_loglike(rows["logbili"], X, X, np.ones((len(rows), 1)), rows["id"],
                                 [[0.0]], beta[k:k + 1], cov[k][None],
                                 res.scale.to_numpy()[k:k + 1])
            logw[k] = np.log(prior[k]) + dens + np.log(surv(s))
            for c in range(2):
                cond[k, c] = integrate.quad(
                    lambda u: scale[c] * rho[c] * u ** (rho[c] - 1) * surv(u), s, s + h,
                    epsabs=1e-13, epsrel=1e-11)[0] / surv(s)
        w = np.exp(logw - logw.max())
        w /= w.sum()
        expected = w @ cond
        np.testing.assert_allclose(got.loc[i, ["P(transplant)", "P(death)"]], expected,
                                   atol=2e-6)
        np.testing.assert_allclose(got.loc[i, ["P(expert 1)", "P(expert 2)"]], w, atol=1e-8)
        for name in ("P(death)", "P(any)"):
            assert got.loc[i, f"{name} lower"] <= got.loc[i, name] <= got.loc[i, f"{name} upper"]
    with pytest.raises(ValueError, match="horizon > 0"):
        res.dynamic_prediction(new, s, 0.0, "year")


def test_prognostic_loglik_equals_a_dense_computation(pbc_competing, pbc_joint):
    """log P(T_i, d_i | y_i(s), T_i > s) (the EPOCE's terms): the posterior of the
    measurements up to s by tests/truth.py's dense likelihood, times the Weibull density or
    survival of the observed follow-up over the survival at s, written here."""
    from pymemoe.prediction import prognostic_loglik
    res = pbc_competing
    s = 2.0
    subjects = pbc_joint.groupby("id").first()
    ids = [i for i in subjects.index[subjects["fu"] > s]][:6]
    new = pbc_joint[pbc_joint["id"].isin(ids)]
    got = prognostic_loglik(res, new, s, "year")
    fe = res.fe_params
    beta = fe.loc[["Intercept", "year"]].to_numpy().T
    cov = [res.cov_re[k + 1].to_numpy() for k in range(2)]
    prior = res.prior.iloc[0].to_numpy()
    causes = ("transplant", "death")
    for i in ids:
        rows = new[(new["id"] == i) & (new["year"] <= s)]
        X = np.column_stack([np.ones(len(rows)), rows["year"]])
        age, T, d = subjects.loc[i, "age"], subjects.loc[i, "fu"], subjects.loc[i, "status"]
        logw, logf = np.empty(2), np.empty(2)
        for k in range(2):
            scale = np.array([np.exp(fe.loc[f"{c}: Intercept", k + 1]
                                     + age * fe.loc[f"{c}: age", k + 1]) for c in causes])
            rho = np.array([np.exp(fe.loc[f"{c}: log(shape)", k + 1]) for c in causes])
            dens = dense_loglike(rows["logbili"], X, X, np.ones((len(rows), 1)), rows["id"],
                                 [[0.0]], beta[k:k + 1], cov[k][None],
                                 res.scale.to_numpy()[k:k + 1])
            logw[k] = np.log(prior[k]) + dens - np.sum(scale * s ** rho)
            hazard = scale[d - 1] * rho[d - 1] * T ** (rho[d - 1] - 1) if d > 0 else 1.0
            logf[k] = np.log(hazard) - np.sum(scale * (T ** rho - s ** rho))
        expected = special.logsumexp(logw + logf) - special.logsumexp(logw)
        assert got.loc[i] == pytest.approx(expected, abs=1e-8)
    with pytest.raises(ValueError, match="not event-free at the landmark"):
        prognostic_loglik(res, new, 50.0, "year")


def test_dynamic_prediction_figure(pbc_competing, pbc_joint, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from pymemoe.plotting import plot_dynamic_prediction
    axes = plot_dynamic_prediction(pbc_competing, pbc_joint, 4, landmark=3.0, horizon=5.0,
                                   time="year", n_draws=20, random_state=0)
    left, right = axes
    assert len(left.lines) >= 3 and len(right.lines) >= 2
    # the curve drawn is dynamic_prediction's
    dyn = pbc_competing.dynamic_prediction(pbc_joint[pbc_joint["id"] == 4], 3.0, 5.0, "year",
                                           n_draws=0)
    death = [line for line in right.lines if line.get_label() == "death"][0]
    assert death.get_ydata()[-1] == pytest.approx(dyn["P(death)"])
    axes[0].figure.savefig(tmp_path / "dynamic.png")
    with pytest.raises(ValueError, match="has no rows"):
        plot_dynamic_prediction(pbc_competing, pbc_joint, -1, 3.0, 5.0, "year")


def test_event_times_are_drawn_from_the_hazards():
    """Latent times drawn by inverting the cumulative hazard follow the hazard's law: a
    Kolmogorov-Smirnov test against scipy's Weibull (one expert, shape 1.5, scale from
    x' theta) and against the piecewise exponential's closed-form distribution function."""
    from pymemoe._design.events import SubjectEvents
    from pymemoe.families.events import PiecewiseHazards, WeibullHazards
    rng = np.random.default_rng(0)
    n = 4000
    exog = np.column_stack([np.ones(n), np.full(n, 0.5)])
    events = SubjectEvents(time=np.ones(n), cause=np.zeros(n, dtype=int), exog=exog,
                           exog_names=("Intercept", "x"), cause_names=("event",))
    expert = np.zeros(n, dtype=int)
    weibull = WeibullHazards(exog_names=events.exog_names, cause_names=events.cause_names)
    coef = np.array([[-1.0, 0.4, np.log(1.5)]])
    draws = weibull.inverse_cumulative(coef, exog, expert, -np.log(rng.random((n, 1))))[:, 0]
    scale = np.exp(-(-1.0 + 0.4 * 0.5) / 1.5)
    assert stats.kstest(draws, stats.weibull_min(1.5, scale=scale).cdf).pvalue > 0.01
    piecewise = PiecewiseHazards(exog_names=events.exog_names, cause_names=events.cause_names,
                                 knots=(1.0, 2.5))
    coef = np.array([[-1.0, -0.3, 0.2, 0.4]])              # log hazards of 3 pieces, x
    draws = piecewise.inverse_cumulative(coef, exog, expert, -np.log(rng.random((n, 1))))[:, 0]
    rates = np.exp(np.array([-1.0, -0.3, 0.2]) + 0.4 * 0.5)

    def cdf(t):
        exposure = np.clip(np.asarray(t)[:, None] - np.array([0.0, 1.0, 2.5]), 0,
                           np.array([1.0, 1.5, np.inf]))
        return 1.0 - np.exp(-exposure @ rates)

    assert stats.kstest(draws, cdf).pvalue > 0.01


def test_parametric_bootstrap_of_a_joint_model(pbc_competing, pbc_joint):
    """simulate(res) draws each subject's expert, trajectory and follow-up: censored where it
    was censored (at its own time), else at the end of the study; the simulated data refit
    with the model's own options; bootstrap_lrt runs on joint models."""
    from pymemoe import bootstrap_lrt, simulate
    res = pbc_competing
    sim = simulate(res, random_state=3)
    first = sim.data.groupby("id").first()
    observed = pbc_joint.groupby("id").first()
    censored = observed["status"] == 0
    assert (first.loc[censored, "fu"] <= observed.loc[censored, "fu"] + 1e-12).all()
    assert (first["fu"] <= observed["fu"].max() + 1e-12).all()
    assert set(first["status"]) <= {0, 1, 2} and (first["status"] == 2).sum() > 50
    assert (first["age"] == observed["age"]).all()
    refit = MEMoE.from_formula(data=sim.data, **sim.formula_kwargs, **sim.model_kwargs)
    assert refit.structure == res.model.structure
    one = MEMoE.from_formula("logbili ~ year", pbc_joint, "id", re_formula="~ year",
                             n_experts=1,
                             survival=TimeToEvent("fu", "status", formula="~ age",
                                                  causes=["transplant", "death"])).fit()
    test = bootstrap_lrt(one, res, n_boot=2, random_state=0, fit_kwargs={"n_starts": 2})
    assert np.isfinite(test.statistic) and test.n_boot == 2
    assert np.isfinite(test.null_distribution).all() and len(test.null_distribution) == 2


def test_new_subjects_of_a_joint_model_recover_its_parameters(joint_data):
    """simulate(res, n): new subjects' covariates resampled from the fitted ones (gating and
    hazards together), events drawn from their experts' hazards and censored at the end of
    follow-up, measurements after the event dropped; a refit of 2,000 such subjects finds the
    fitted parameters (the truth of the simulation) within 4 standard errors."""
    from pymemoe import simulate
    res = MEMoE.from_formula("y ~ time", joint_data, "id", re_formula="~ time",
                             gate_formula="~ x1 + x2", n_experts=2,
                             survival=TimeToEvent("T", "d", formula="~ x1")).fit(random_state=0)
    sim = simulate(res, 2000, follow_up=10.0, random_state=1)
    first = sim.data.groupby("id").first()
    last = sim.data.groupby("id")["time"].max()
    assert (last <= first["T"] + 1e-12).all() and (first["T"] <= 10.0).all()
    assert (first.loc[first["d"] == 0, "T"] == 10.0).all() and set(first["d"]) == {0, 1}
    # the resampled covariates are fitted subjects' rows: x1 and x2 together
    pairs = set(map(tuple, joint_data.groupby("id")[["x1", "x2"]].first().to_numpy()))
    assert set(map(tuple, first[["x1", "x2"]].to_numpy())) <= pairs
    refit = MEMoE.from_formula(data=sim.data, **sim.formula_kwargs, **sim.model_kwargs).fit(
        random_state=0)
    # the experts are ordered by size: match them by their intercepts
    truth = res.fe_params
    for k in (1, 2):
        match = int(np.argmin(np.abs(truth.loc["Intercept"].to_numpy()
                                     - refit.fe_params.loc["Intercept", k]))) + 1
        se = refit.bse.loc["beta"].xs(k, level="expert")
        z = (refit.fe_params[k] - truth[match]) / se
        assert np.all(np.abs(z) < 4), (k, z)


@pytest.mark.parametrize("hazard", ["weibull", "piecewise"])
def test_closed_form_information_equals_differences_of_the_score(pbc_competing, joint_data,
                                                                  hazard):
    """The joint family's closed-form Hessians (trajectory and hazards) give the observed
    information that central differences of the whole analytic score give."""
    from pymemoe._estimation.inference import (observed_information,
                                               observed_information_numeric)
    res = pbc_competing
    if hazard == "piecewise":      # simulated data: every interval has events in each expert
        res = MEMoE.from_formula("y ~ time", joint_data, "id", re_formula="~ time",
                                 n_experts=2,
                                 survival=TimeToEvent("T", "d", formula="~ x1",
                                                      hazard="piecewise", knots=3)
                                 ).fit(n_starts=2, random_state=0, cov_type="none")
        assert not res.messages
    model = res.model
    closed = observed_information(model.data, model.structure, res.state)
    numeric = observed_information_numeric(model.data, model.structure, res.state)
    scale = np.sqrt(np.outer(np.diag(numeric), np.diag(numeric)))
    np.testing.assert_allclose(closed / scale, numeric / scale, atol=2e-5)
    differenced = observed_information(model.data, model.structure, res.state,
                                       closed_form=False)
    np.testing.assert_allclose(closed / scale, differenced / scale, atol=2e-5)


# -- piecewise-constant hazards -----------------------------------------------------------------


def _episodes(subjects, time, event_code, knots, covariate):
    """Split-episode data of one cause: one row per subject and interval it reaches, with
    its exposure and whether the event happened in it (the piecewise exponential model as a
    Poisson GLM, written here independently of pymemoe)."""
    edges = np.r_[0.0, knots, np.inf]
    rows = []
    for T, d, x in zip(subjects[time], subjects["status"] == event_code, subjects[covariate]):
        for j in range(len(edges) - 1):
            if T <= edges[j]:
                break
            exposure = min(T, edges[j + 1]) - edges[j]
            rows.append((j, exposure, float(d and T <= edges[j + 1]), x))
    return pd.DataFrame(rows, columns=["piece", "exposure", "event", covariate])


def test_piecewise_hazards_at_one_expert_are_poisson_regressions(pbc_joint):
    """K = 1, two causes, piecewise-constant hazards with given knots: the joint maximum is
    the mixed model's plus one Poisson GLM per cause on split-episode data (statsmodels, log
    exposure offset), and the coefficients are the GLM's."""
    import statsmodels.api as sm
    knots = (2.5, 4.5, 6.0)    # every interval holds transplants and deaths
    model = MEMoE.from_formula("logbili ~ year", pbc_joint, "id", re_formula="~ year",
                               n_experts=1,
                               survival=TimeToEvent("fu", "status", formula="~ age",
                                                    hazard="piecewise", knots=knots,
                                                    causes=["transplant", "death"]))
    res = model.fit()
    mixed = smf.mixedlm("logbili ~ year", pbc_joint, groups="id", re_formula="~ year").fit(
        reml=False, method=["lbfgs"], maxiter=2000)
    subjects = pbc_joint.groupby("id").first()
    total = mixed.llf
    for code, cause in ((1, "transplant"), (2, "death")):
        ep = _episodes(subjects, "fu", code, knots, "age")
        X = np.column_stack([np.eye(4)[ep["piece"]], ep["age"]])
        glm = sm.GLM(ep["event"], X, family=sm.families.Poisson(),
                     offset=np.log(ep["exposure"])).fit(tol=1e-12)
        # the Poisson log-likelihood is the survival one plus sum(d log exposure) (and the
        # log factorials, 0 for 0/1 events)
        total += glm.llf - float((ep["event"] * np.log(ep["exposure"])).sum())
        names = [n for n in res.fe_params.index if n.startswith(f"{cause}:")]
        assert names[-1] == f"{cause}: age" and "log hazard [2.5, 4.5)" in names[1]
        np.testing.assert_allclose(res.fe_params.loc[names, 1], glm.params, rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(res.bse.loc["beta"].loc[1].loc[names], glm.bse, rtol=2e-3)
    assert res.llf >= total - 1e-6
    assert res.llf - total < 1e-4
    text = str(res.summary())
    assert "piecewise-constant hazards" in text and "death: age" in text


def test_piecewise_joint_model_likelihood_score_and_curves(joint_data):
    """K = 2 with piecewise hazards (knots at quantiles): the log-likelihood equals the dense
    one with the hazard written here; the score equals numerical differences; the survival
    curve is exp of minus the summed exposures."""
    model = MEMoE.from_formula("y ~ time", joint_data, "id", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=2,
                               survival=TimeToEvent("T", "d", formula="~ x1",
                                                    hazard="piecewise", knots=4))
    res = model.fit(n_starts=2, random_state=0)
    knots = model.family.hazards.knots
    event_times = joint_data.groupby("id").first().query("d == 1")["T"]
    np.testing.assert_allclose(knots, np.quantile(event_times, [0.25, 0.5, 0.75]))
    subjects = joint_data.groupby("id").first()
    edges = np.r_[0.0, knots, np.inf]
    T = subjects["T"].to_numpy()
    exposure = np.clip(T[:, None] - edges[:-1], 0, np.diff(edges))
    piece = np.searchsorted(knots, T, side="right")
    fe = res.fe_params
    logdens = np.empty((len(T), 2))
    for k in range(2):
        alpha = fe.loc[[n for n in fe.index if "log hazard" in n], k + 1].to_numpy()
        theta = fe.loc["event: x1", k + 1]
        eta = theta * subjects["x1"].to_numpy()
        logdens[:, k] = (subjects["d"].to_numpy() * (alpha[piece] + eta)
                         - np.exp(eta) * (exposure @ np.exp(alpha)))
    X = np.column_stack([np.ones(len(joint_data)), joint_data["time"]])
    W = np.column_stack([np.ones(len(joint_data)), joint_data["x1"], joint_data["x2"]])
    traj = ["Intercept", "time"]
    dense = dense_loglike(joint_data["y"], X, X, W, joint_data["id"],
                          res.gate_params.to_numpy().T, fe.loc[traj].to_numpy().T,
                          np.stack([res.cov_re[k + 1].to_numpy() for k in range(2)]),
                          res.scale.to_numpy(), extra_logdens=logdens)
    assert res.llf == pytest.approx(dense, abs=1e-8 * abs(dense))
    theta = res.params + 0.02 * np.random.default_rng(1).standard_normal(len(res.params))
    grad = model.score(theta)
    numeric = np.empty_like(grad)
    for j in range(len(theta)):
        h = 1e-5 * max(abs(theta.iloc[j]), 1.0)
        up, down = theta.copy(), theta.copy()
        up.iloc[j] += h
        down.iloc[j] -= h
        numeric[j] = (model.loglike(up) - model.loglike(down)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4)
    curves = res.cumulative_incidence([0.5, 2.0, 7.0], profile={"x1": 0.0})
    for t in (0.5, 2.0, 7.0):
        e = np.clip(t - edges[:-1], 0, np.diff(edges))
        for k in range(2):
            alpha = fe.loc[[n for n in fe.index if "log hazard" in n], k + 1].to_numpy()
            got = curves[(curves["expert"] == k + 1) & (curves["curve"] == "survival")
                         & (curves["time"] == t)]["estimate"].iloc[0]
            assert got == pytest.approx(np.exp(-(e @ np.exp(alpha))), rel=1e-12)
    with pytest.raises(ValueError, match="knots are for hazard='piecewise'"):
        TimeToEvent("T", "d", knots=3)
    with pytest.raises(ValueError, match="increasing times > 0"):
        TimeToEvent("T", "d", hazard="piecewise", knots=[2.0, 1.0])


def test_an_interval_without_events_in_an_expert_is_reported(pbc_joint):
    """PBCseq, two experts, piecewise hazards cut at 3 and 6 years: the second expert holds
    almost no transplant and no death in the first interval; that interval's hazard runs to
    0 (no maximum likelihood estimate), and the separation check names it."""
    from pymemoe import SeparationWarning
    model = MEMoE.from_formula("logbili ~ year", pbc_joint, "id", re_formula="~ year",
                               n_experts=2,
                               survival=TimeToEvent("fu", "status", formula="~ age",
                                                    hazard="piecewise", knots=(3.0, 6.0)))
    with pytest.warns(SeparationWarning, match="log hazard"):
        model.fit(n_starts=2, random_state=0, cov_type="none")


def test_cross_validation_refits_the_joint_model_on_each_fold(pbc_joint, pbc_competing):
    """cross_validate takes survival= (or a joint model): each fold refits the joint model,
    and the held-out subjects' trajectories are predicted without their events (new subjects
    of a prediction have no follow-up yet), from the same fold fits as a plain refit."""
    from pymemoe import cross_validate
    cv = cross_validate(pbc_competing.model, pbc_joint, "id", n_folds=3, random_state=0,
                        n_starts=2, time="year")
    assert np.isfinite(cv.table.loc["overall", "pmse"])
    assert np.isfinite(cv.table.loc["overall", "pmse_dynamic"])
    # the folds were fitted as joint models: the same folds and seeds without the events
    # give other experts, so other predictions
    plain = cross_validate("logbili ~ year", pbc_joint, "id", n_folds=3, random_state=0,
                           n_starts=2, time="year", re_formula="~ year", n_experts=2)
    pd.testing.assert_series_equal(cv.folds, plain.folds)
    assert not np.allclose(cv.predictions["predicted"], plain.predictions["predicted"])


# -- the score test of conditional independence --------------------------------------------------


def simulate_dependent(n_subjects=400, eta=0.0, seed=0):
    """Two experts (tests/truth.py's trajectories, drawn here with their random effects) and
    an expert-specific exponential hazard times exp(eta * b_i0): eta = 0 is conditional
    independence given the expert, eta != 0 lets the random intercept drive the event."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n_subjects), rng.binomial(1, 0.5, size=n_subjects)
    logits = np.column_stack([np.ones(n_subjects), x1, x2]) @ TRUTH_K2["gamma"].T
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    k = (rng.random(n_subjects)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1)
    b = np.einsum("nij,nj->ni", np.linalg.cholesky(TRUTH_K2["cov_re"])[k],
                  rng.normal(size=(n_subjects, 2)))
    rate = np.exp(np.array([-2.5, -1.5])[k] + eta * b[:, 0])
    event_time = rng.exponential(1 / rate)
    censor = rng.uniform(2.0, 10.0, size=n_subjects)
    T, d = np.minimum(event_time, censor), (event_time <= censor).astype(int)
    rows = []
    for i in range(n_subjects):
        t = np.r_[0.0, np.sort(rng.uniform(0, 5, size=rng.integers(3, 8)))]
        t = t[t <= T[i]]
        beta = TRUTH_K2["beta"][k[i]]
        y = (beta[0] + b[i, 0] + (beta[1] + b[i, 1]) * t
             + np.sqrt(TRUTH_K2["scale"][k[i]]) * rng.normal(size=t.size))
        rows.append(pd.DataFrame({"id": i, "time": t, "y": y, "x1": x1[i], "x2": x2[i],
                                  "T": T[i], "d": d[i]}))
    return pd.concat(rows, ignore_index=True)


def test_independence_score_is_the_derivative_of_the_extended_likelihood():
    """U_i = d log L_i(eta) / d eta at 0 for the hazards extended by exp(eta' b_i): the
    extended likelihood integrated over b_i by a 30 x 30 Gauss-Hermite product grid under the
    Gaussian posterior of b_i given y_i and the expert, computed densely here."""
    df = simulate_dependent(120, eta=0.0, seed=4)
    model = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time", n_experts=2,
                               survival=TimeToEvent("T", "d"))
    res = model.fit(n_starts=2, random_state=0)
    U = model.family.independence_scores(model.data, res.state, res.estep.moments,
                                         res.estep.tau)
    fe = res.fe_params
    nodes, weights = np.polynomial.hermite_e.hermegauss(30)
    grid = np.stack(np.meshgrid(nodes, nodes, indexing="ij"), -1).reshape(-1, 2)
    w2 = np.outer(weights, weights).ravel() / (2 * np.pi)
    prior = res.prior.to_numpy()
    for i in (0, 5, 17, 42):
        rows = df[df["id"] == i]
        X = np.column_stack([np.ones(len(rows)), rows["time"]])
        T, d = rows["T"].iloc[0], rows["d"].iloc[0]

        def loglik(eta):
            total = 0.0
            for k in range(2):
                D, s2 = res.cov_re[k + 1].to_numpy(), res.scale.iloc[k]
                beta = fe.loc[["Intercept", "time"], k + 1].to_numpy()
                V = X @ D @ X.T + s2 * np.eye(len(rows))
                f_y = stats.multivariate_normal(X @ beta, V).pdf(rows["y"])
                cov = np.linalg.inv(np.linalg.inv(D) + X.T @ X / s2)
                mean = cov @ X.T @ (rows["y"].to_numpy() - X @ beta) / s2
                b = mean + grid @ np.linalg.cholesky(cov).T
                scale = np.exp(fe.loc["event: Intercept", k + 1] + b @ eta)
                rho = np.exp(fe.loc["event: log(shape)", k + 1])
                f_t = (rho * T ** (rho - 1) * scale) ** d * np.exp(-scale * T ** rho)
                total += prior[i, k] * f_y * (w2 @ f_t)
            return np.log(total)

        h = 1e-5
        numeric = [(loglik(h * e) - loglik(-h * e)) / (2 * h) for e in np.eye(2)]
        np.testing.assert_allclose(U[i], numeric, rtol=1e-5, atol=1e-8)


def test_conditional_independence_test_detects_a_dependence():
    """Data with conditional independence give a large p-value, data whose hazard grows with
    the random intercept (eta = 1.5) a small one (fixed seeds)."""
    from pymemoe.diagnostics import conditional_independence_test
    p_values = {}
    for eta in (0.0, 1.5):
        df = simulate_dependent(500, eta=eta, seed=7)
        res = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time", n_experts=2,
                                 survival=TimeToEvent("T", "d")).fit(n_starts=2,
                                                                     random_state=0)
        table = conditional_independence_test(res)
        assert list(table.index) == ["event", "all"] and table.loc["all", "df"] == 2
        p_values[eta] = table.loc["all", "P>chi2"]
    assert p_values[0.0] > 0.05 and p_values[1.5] < 1e-4
    assert "Conditional independence given the expert" in str(res.summary())
