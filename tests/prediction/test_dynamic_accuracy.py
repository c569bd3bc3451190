"""Time-dependent AUC and Brier score of dynamic event predictions.

* one cause: equal to scikit-survival's ``cumulative_dynamic_auc`` and ``brier_score`` (IPCW
  with the Kaplan-Meier estimate of censoring) on the times since the landmark;
* competing risks: equal to the definitions written as a double loop over (case, control)
  pairs and a loop over subjects here (Blanche et al. 2015, "definition 2");
* cross-validation of a joint model: the pooled held-out predictions' scores are these
  functions' on the predictions it returns, only subjects at risk at the landmark are scored,
  and a model that predicts from the truth scores better than chance.
"""
import numpy as np
import pandas as pd
import pytest

from pymemoe import TimeToEvent
from pymemoe.crossval import cross_validate
from pymemoe.prediction import dynamic_accuracy


def _cohort(n=500, seed=0, causes=1):
    """Weibull event times, uniform censoring, a noisy risk score that tracks the event."""
    rng = np.random.default_rng(seed)
    latent = rng.weibull(1.3, (n, causes)) * 5
    event_time = latent.min(axis=1)
    censor = rng.uniform(1, 12, n)
    time = np.minimum(event_time, censor)
    event = np.where(event_time <= censor, latent.argmin(axis=1) + 1, 0)
    # high for an early event: the survival function at the event time, plus noise
    risk = np.clip(np.exp(-(event_time / 5) ** 1.3) + rng.normal(scale=0.2, size=n),
                   0.01, 0.99)
    return time, event, risk


@pytest.mark.parametrize("landmark, horizon", [(0.0, 2.0), (1.0, 3.0), (2.5, 4.0)])
def test_one_cause_equals_scikit_survival(landmark, horizon):
    # scikit-survival is in the test extra (setup.cfg): the reference implementation
    sksurv_metrics = pytest.importorskip("sksurv.metrics")
    Surv = pytest.importorskip("sksurv.util").Surv
    time, event, risk = _cohort(seed=int(landmark * 10))
    mine = dynamic_accuracy(risk, time, event, landmark, horizon)
    at = time > landmark
    y = Surv.from_arrays(event[at] == 1, time[at] - landmark)
    auc, _ = sksurv_metrics.cumulative_dynamic_auc(y, y, risk[at], times=[horizon])
    _, brier = sksurv_metrics.brier_score(y, y, (1 - risk[at])[:, None], times=[horizon])
    assert mine["auc"] == pytest.approx(auc[0], rel=1e-12)
    assert mine["brier"] == pytest.approx(brier[0], rel=1e-12)
    assert mine["n_at_risk"] == at.sum()
    assert 0.6 < mine["auc"] < 1.0          # the score tracks the event


def _km_censoring(time, censored, t, left):
    """Kaplan-Meier of censoring by a loop over the distinct times (reference)."""
    value = 1.0
    for u in np.unique(time):
        if (u >= t) if left else (u > t):
            break
        value *= 1.0 - np.sum(censored & (time == u)) / np.sum(time >= u)
    return value


def test_competing_risks_equal_the_pairwise_definition():
    time, event, risk = _cohort(n=200, seed=3, causes=2)
    s, h, cause = 0.5, 3.0, 2
    mine = dynamic_accuracy(risk, time, event, s, h, cause=cause)
    at = time > s
    t, d, p = time[at], event[at], risk[at]
    censored = d == 0
    weights, case, control = np.zeros(t.size), np.zeros(t.size, bool), np.zeros(t.size, bool)
    for i in range(t.size):
        if t[i] <= s + h and d[i] > 0:
            weights[i] = 1.0 / _km_censoring(t, censored, t[i], left=True)
            case[i], control[i] = d[i] == cause, d[i] != cause
        elif t[i] > s + h:
            weights[i] = 1.0 / _km_censoring(t, censored, s + h, left=False)
            control[i] = True
    numerator = 0.0
    for i in np.flatnonzero(case):
        for j in np.flatnonzero(control):
            numerator += weights[i] * weights[j] * ((p[i] > p[j]) + 0.5 * (p[i] == p[j]))
    auc = numerator / (weights[case].sum() * weights[control].sum())
    brier = np.mean(weights * (case - p) ** 2)
    assert mine["auc"] == pytest.approx(auc, rel=1e-12)
    assert mine["brier"] == pytest.approx(brier, rel=1e-12)
    assert mine["n_cases"] == case.sum() and mine["n_controls"] == control.sum()


def test_ties_in_the_risk_count_one_half():
    # two cases and two controls, every risk equal: AUC 1/2
    out = dynamic_accuracy([0.3] * 4, [2.0, 3.0, 9.0, 8.0], [1, 1, 0, 0], 1.0, 4.0)
    assert out["auc"] == 0.5


def test_a_missing_probability_makes_the_scores_missing():
    out = dynamic_accuracy([0.9, np.nan, 0.6, 0.1], [2.0, 9.0, 3.0, 8.0], [1, 0, 1, 0],
                           1.0, 4.0)
    assert np.isnan(out["auc"]) and np.isnan(out["brier"])
    # a subject not at risk at the landmark does not count, whatever its value
    out = dynamic_accuracy([np.nan, 0.2, 0.6, 0.1], [0.5, 9.0, 3.0, 8.0], [1, 0, 1, 0],
                           1.0, 4.0)
    assert out["auc"] == 1.0 and out["n_at_risk"] == 3


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="one value per subject"):
        dynamic_accuracy([0.1, 0.2], [1.0], [1], 0.0, 1.0)
    with pytest.raises(ValueError, match="horizon > 0"):
        dynamic_accuracy([0.1], [1.0], [1], 0.0, 0.0)


@pytest.fixture(scope="module")
def joint_cohort():
    """Two experts whose hazards differ a lot; the trajectory tells them apart."""
    rng = np.random.default_rng(7)
    n = 240
    k = rng.integers(0, 2, n)
    rate = np.where(k == 1, 0.5, 0.05)
    event_time = rng.exponential(1 / rate)
    censor = rng.uniform(3, 10, n)
    T = np.minimum(event_time, censor)
    d = (event_time <= censor).astype(int)
    b = rng.normal(scale=0.5, size=n)
    rows = []
    for i in range(n):       # a test's simulation, not a hot path
        for t in np.arange(0.0, T[i], 0.5):
            y = 2.0 * k[i] + b[i] + (1.0 if k[i] else -0.2) * t + rng.normal(scale=0.5)
            rows.append((i, t, y, T[i], d[i]))
    return pd.DataFrame(rows, columns=["id", "time", "y", "T", "d"])


def test_cross_validation_scores_the_pooled_held_out_predictions(joint_cohort):
    cv = cross_validate("y ~ time", joint_cohort, "id", n_folds=3, random_state=0,
                        time="time", re_formula="~ 1", n_experts=2, landmarks=[0.5, 1.5],
                        horizon=2.0, survival=TimeToEvent("T", "d"), n_starts=2)
    pred, acc = cv.event_predictions, cv.event_accuracy
    subjects = joint_cohort.groupby("id").first()
    for s in (0.5, 1.5):
        at = pred[pred["landmark"] == s]
        # every subject at risk at s, once, predicted by the fold that held it out
        assert sorted(at["subject"]) == sorted(subjects.index[subjects["T"] > s])
        assert (at["fold"].to_numpy() == cv.folds.loc[at["subject"]].to_numpy()).all()
        expected = dynamic_accuracy(at["P(event)"], at["time"], at["event"], s, 2.0)
        row = acc.loc[(s, "event")]
        assert row["auc"] == pytest.approx(expected["auc"], rel=1e-12)
        assert row["brier"] == pytest.approx(expected["brier"], rel=1e-12)
        # the experts' risks differ tenfold and the trajectories reveal the experts: far
        # better than chance (AUC 1/2)
        assert row["auc"] > 0.7
        # the EPOCE is minus the mean of the held-out prognostic log-likelihoods
        assert cv.epoce.loc[s, "epoce"] == pytest.approx(-at["log_prognostic"].mean())
        assert cv.epoce.loc[s, "n_at_risk"] == len(at)
    # one expert ignores what the trajectory says of the risk: a worse (higher) EPOCE
    one = cross_validate("y ~ time", joint_cohort, "id", n_folds=3, random_state=0,
                         time="time", re_formula="~ 1", n_experts=1, landmarks=[0.5, 1.5],
                         horizon=2.0, survival=TimeToEvent("T", "d"))
    assert (one.epoce["epoce"] > cv.epoce["epoce"]).all()
    with pytest.raises(ValueError, match="needs time="):
        cross_validate("y ~ time", joint_cohort, "id", n_folds=3, n_experts=2,
                       landmarks=[1.0], horizon=2.0, survival=TimeToEvent("T", "d"))
    with pytest.raises(ValueError, match="scores the event predictions of a joint model"):
        cross_validate("y ~ time", joint_cohort, "id", n_folds=3, time="time", n_experts=1,
                       landmarks=[1.0], horizon=2.0)
