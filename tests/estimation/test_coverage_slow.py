"""Coverage of 95% Wald intervals for the fixed effects (slow; run with `pytest -m slow`).

Data from a two-expert MEMoE with known truth (tests/truth.py), N = 300 subjects. For each
replication one fit gives both the model-based ("oim") and the robust sandwich intervals.
Scenarios: the model is correct; heavy-tailed (t3) errors; heteroscedastic errors (variance
growing with time). Required: both kinds of intervals cover at 0.93-0.97 when the model is
correct, and the robust ones also under heteroscedastic errors.

Heavy tails are different, and the test records it rather than hides it: measured over 500
replications (2026-11-26), the robust intervals cover 0.81-0.90 and the model-based ones
0.77-0.84. The sandwich corrects the variance of the estimates, but heavy-tailed subjects are
misclassified between the experts, so the mixture estimates themselves are biased (the
simulation study, docs/simulation_results, shows the same with t5 errors). The test requires
only that the robust intervals do better than the model-based ones there.

Print the table: python tests/test_coverage_slow.py [reps]
"""
from __future__ import annotations

import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pymemoe import MEMoE  # noqa: E402
from pymemoe._estimation.inference import cov_oim, cov_robust

from truth import TRUTH_K2, simulate_memoe  # noqa: E402

REPS = 500          # Monte Carlo SE of a 0.95 coverage: 0.0097
N_SUBJECTS = 300
SCENARIOS = ("normal", "t3", "hetero")


def one_replication(args: tuple[str, int]) -> dict:
    errors, seed = args
    df = simulate_memoe(N_SUBJECTS, seed=10_000 + seed, errors=errors)
    model = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(n_starts=2, random_state=seed, cov_type="none")
        covs = {"oim": cov_oim(model.data, model.structure, res.state).cov,
                "robust": cov_robust(model.data, model.structure, res.state).cov}
    # true expert order: expert 1 of the truth is the larger one (intercept 1 vs 3)
    order = np.argsort(res.fe_params.loc["Intercept"].to_numpy())
    labels = res.params.index
    out = {"errors": errors, "seed": seed}
    for j, (block, expert, term) in enumerate(labels):
        if block != "beta":
            continue
        truth_k = int(np.flatnonzero(order == expert - 1)[0])
        true = TRUTH_K2["beta"][truth_k, 0 if term == "Intercept" else 1]
        for name, cov in covs.items():
            se = np.sqrt(cov[j, j])
            out[f"{name}:{truth_k + 1}:{term}"] = abs(res.params.iloc[j] - true) <= 1.959964 * se
    return out


def coverage_table(reps: int = REPS, workers: int = 2) -> pd.DataFrame:
    jobs = [(e, s) for e in SCENARIOS for s in range(reps)]
    rows = []
    with ProcessPoolExecutor(workers) as pool:
        for row in pool.map(one_replication, jobs, chunksize=4):
            rows.append(row)
            if len(rows) % 100 == 0:
                print(f"coverage: {len(rows)}/{len(jobs)} replications", file=sys.stderr, flush=True)
    frame = pd.DataFrame(rows)
    table = frame.drop(columns="seed").groupby("errors").mean().T
    table.index = pd.MultiIndex.from_tuples([tuple(i.split(":")) for i in table.index],
                                            names=["cov_type", "expert", "term"])
    return table[list(SCENARIOS)]


@pytest.mark.slow
def test_wald_interval_coverage():
    table = coverage_table()
    print(table)
    robust = table.xs("robust", level="cov_type")
    oim = table.xs("oim", level="cov_type")
    for scenario in ("normal", "hetero"):
        assert robust[scenario].between(0.93, 0.97).all(), robust
    assert oim["normal"].between(0.93, 0.97).all(), oim
    assert (robust["t3"] > oim["t3"]).all(), table


if __name__ == "__main__":
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else REPS
    with pd.option_context("display.precision", 3):
        print(coverage_table(reps))
