"""Joint models on data simulated with known truth: recovery and coverage (slow).

The data are those of tests/families/test_joint.py (``simulate_joint``: tests/truth.py's
two-expert trajectories, an expert-specific Weibull hazard with a covariate, uniform
censoring, no measurement after the subject's time), 400 subjects per data set. Each data set
is fitted with the defaults; the experts are matched to the truth by their intercepts. For the
hazards' six parameters, the mean estimate must be near the truth and the 95% Wald intervals,
observed-information and robust, must cover at a rate compatible with 95% (the binomial
99.9% range over the replications). Run with
``python -m pytest -m slow tests/families/test_joint_slow.py -n 0 -s`` to see the table.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pymemoe import MEMoE, TimeToEvent

from test_joint import HAZARD_TRUTH, simulate_joint
from truth import TRUTH_K2

REPS = 150
TERMS = ["event: Intercept", "event: x1", "event: log(shape)"]


def _replicate(seed: int) -> dict:
    df = simulate_joint(400, seed=1000 + seed)
    model = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=2,
                               survival=TimeToEvent("T", "d", formula="~ x1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(random_state=seed)
        robust = model.fit(random_state=seed, cov_type="robust")
    intercepts = res.fe_params.loc["Intercept"].to_numpy()
    order = [int(np.argmin(np.abs(TRUTH_K2["beta"][:, 0] - b))) for b in intercepts]
    out = {}
    for k in range(2):
        for j, term in enumerate(TERMS):
            truth = HAZARD_TRUTH[order[k], j]
            est = res.params[("beta", k + 1, term)]
            for name, fit in (("oim", res), ("robust", robust)):
                se = fit.bse[("beta", k + 1, term)]
                out[(order[k], term, name)] = (est - truth, abs(est - truth) <= 1.96 * se)
    return out


@pytest.mark.slow
def test_hazards_recovered_and_intervals_cover():
    runs = [_replicate(seed) for seed in range(REPS)]
    rows = []
    for key in runs[0]:
        errors = np.array([r[key][0] for r in runs])
        covered = np.array([r[key][1] for r in runs])
        rows.append({"expert": key[0] + 1, "term": key[1], "se": key[2],
                     "bias": errors.mean(), "sd": errors.std(ddof=1),
                     "coverage": covered.mean()})
    table = pd.DataFrame(rows)
    print()
    print(table.round(3).to_string(index=False))
    low, high = stats.binom.ppf([0.0005, 0.9995], REPS, 0.95) / REPS
    assert (table["coverage"] >= low).all() and (table["coverage"] <= high).all()
    # bias small against the spread of the estimates (4 standard errors of the mean)
    assert (np.abs(table["bias"]) <= 4 * table["sd"] / np.sqrt(REPS) + 0.02).all()


@pytest.mark.slow
def test_conditional_independence_test_holds_its_level():
    """Under conditional independence (eta = 0) the score test rejects at 5% in a share of
    data sets compatible with 5% (binomial 99.9% range over 100 data sets of 300 subjects)."""
    from pymemoe.diagnostics import conditional_independence_test
    from test_joint import simulate_dependent
    reps = 100
    p_values = []
    for seed in range(reps):
        df = simulate_dependent(300, eta=0.0, seed=500 + seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time", n_experts=2,
                                     survival=TimeToEvent("T", "d")).fit(random_state=seed,
                                                                         cov_type="none")
        p_values.append(conditional_independence_test(res).loc["all", "P>chi2"])
    rejected = float(np.mean(np.array(p_values) < 0.05))
    print(f"\nrejection rate at 5% under conditional independence: {rejected:.3f}")
    low, high = stats.binom.ppf([0.0005, 0.9995], reps, 0.05) / reps
    assert low <= rejected <= high


@pytest.mark.slow
def test_delayed_entry_recovered_and_intervals_cover():
    """Delayed entry (tests/families/test_joint_entry.py's ``simulate_entry``: 70% of the
    subjects enter late and are kept only if event-free then), 100 data sets of 800 subjects:
    the hazards' and the gating's estimates are unbiased and their oim and robust 95%
    intervals cover at a rate compatible with 95% (binomial 99.9% range)."""
    from test_joint_entry import simulate_entry
    reps = 100
    gate_truth = np.asarray(TRUTH_K2["gamma"])
    runs = []
    for seed in range(reps):
        df = simulate_entry(800, seed=2000 + seed)
        model = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time",
                                   gate_formula="~ x1 + x2", n_experts=2,
                                   survival=TimeToEvent("T", "d", formula="~ x1", entry="T0"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.fit(random_state=seed)
            robust = model.fit(random_state=seed, cov_type="robust")
        intercepts = res.fe_params.loc["Intercept"].to_numpy()
        order = [int(np.argmin(np.abs(TRUTH_K2["beta"][:, 0] - b))) for b in intercepts]
        out = {}
        for k in range(2):
            for j, term in enumerate(TERMS):
                out[(order[k], term)] = (("beta", k + 1, term), HAZARD_TRUTH[order[k], j])
        # the gating against expert 1 of the truth; with the fit's experts swapped, its
        # coefficients are minus the truth's
        sign = 1.0 if order[1] == 1 else -1.0
        for j, term in enumerate(["Intercept", "x1", "x2"]):
            out[("gate", term)] = (("gate", 2, term), sign * gate_truth[1, j])
        row = {}
        for key, (label, truth) in out.items():
            est = res.params[label]
            row[key] = (est - truth, abs(est - truth) <= 1.96 * res.bse[label],
                        abs(est - truth) <= 1.96 * robust.bse[label])
        runs.append(row)
    rows = []
    for key in runs[0]:
        errors = np.array([r[key][0] for r in runs])
        rows.append({"parameter": str(key), "bias": errors.mean(), "sd": errors.std(ddof=1),
                     "oim": np.mean([r[key][1] for r in runs]),
                     "robust": np.mean([r[key][2] for r in runs])})
    table = pd.DataFrame(rows)
    print()
    print(table.round(3).to_string(index=False))
    low, high = stats.binom.ppf([0.0005, 0.9995], reps, 0.95) / reps
    for column in ("oim", "robust"):
        assert (table[column] >= low).all() and (table[column] <= high).all(), column
    assert (np.abs(table["bias"]) <= 4 * table["sd"] / np.sqrt(reps) + 0.02).all()
