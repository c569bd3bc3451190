"""Binary experts with known truth (slow; run with `pytest -m slow`).

* Recovery: the two-expert binary mixture of the R reference (600 subjects, random intercept and
  slope, gating on x1 + x2; truth in tests/results/glmm/sim_binary_k2_truth.json) fitted with
  adaptive quadrature (nAGQ = 10): estimates within a few standard errors of the truth, and the
  llf at least the llf at the truth.
* Coverage of 95% Wald intervals, model-based ("oim") and robust, over replications of a binary
  K = 2 mixture with a random intercept (N = 300 subjects, 8 visits; nAGQ = 7), for the fixed
  effects and the gating coefficients. Required: 0.91-0.985 for every parameter and both kinds
  (the Monte Carlo SE of a 0.95 coverage over 200 replications is 0.015). Not met yet for the
  fixed effects of expert 1 (0.875-0.915, measured 2026-12-02): marked xfail until explained.

Print the coverage table: python tests/test_glmm_slow.py [reps]
"""
from __future__ import annotations

import json
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pymemoe import MEMoE
from pymemoe.inference import cov_oim, cov_robust
from pymemoe.params import Params, to_user

RESULTS = Path(__file__).parent / "results" / "glmm"
REPS = 200
BETA = np.array([[-1.0, 0.5], [1.0, -0.4]])
SD = np.array([0.8, 0.5])
GAMMA = np.array([[0.0, 0.0], [0.3, 0.8]])          # (Intercept, x1), expert 1 the reference


def simulate(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    visits = 8
    x1 = rng.normal(size=n)
    logits = np.column_stack([np.ones(n), x1]) @ GAMMA.T
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expert = (rng.random(n) > prob[:, 0]).astype(int)
    ids = np.repeat(np.arange(n), visits)
    t = np.tile(np.arange(visits) / 2.0, n)
    eta = BETA[expert[ids], 0] + BETA[expert[ids], 1] * t + (SD[expert] * rng.normal(size=n))[ids]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"id": ids, "t": t, "x1": x1[ids], "y": y})


def one_replication(seed: int) -> dict:
    df = simulate(300, 50_000 + seed)
    model = MEMoE.from_formula("y ~ t", df, "id", gate_formula="~ x1", n_experts=2,
                               family="binomial", nAGQ=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(n_starts=3, random_state=seed, cov_type="none")
        covs = {"oim": cov_oim(model.data, model.structure, res.state).cov,
                "robust": cov_robust(model.data, model.structure, res.state).cov}
    # match the experts to the truth by the sign of the slope (truth: +0.5 and -0.4)
    order = np.argsort(-res.fe_params.loc["t"].to_numpy())          # fitted expert of truth 0, 1
    truth = Params(gamma=GAMMA[np.argsort(order)] - GAMMA[np.argsort(order)][0],
                   beta=BETA[np.argsort(order)], cov_re=(SD[np.argsort(order)] ** 2)[:, None, None],
                   scale=np.ones(2))
    true = to_user(truth, model.structure)
    est = res.params.to_numpy()
    out = {"seed": seed}
    for j, (block, expert, term) in enumerate(res.params.index):
        if block not in ("beta", "gate"):
            continue
        for name, cov in covs.items():
            se = np.sqrt(cov[j, j])
            out[f"{name}|{block}[{expert}]:{term}"] = float(abs(est[j] - true[j]) <= 1.959964 * se)
    return out


def coverage_table(reps: int) -> pd.DataFrame:
    with ProcessPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(one_replication, range(reps)))
    frame = pd.DataFrame(rows).drop(columns="seed")
    return frame.mean().rename("coverage").to_frame()


@pytest.mark.slow
def test_binary_mixture_recovers_the_truth_with_quadrature():
    truth = json.loads((RESULTS / "sim_binary_k2_truth.json").read_text())
    df = pd.read_csv(RESULTS / "sim_binary_k2.csv")
    model = MEMoE.from_formula("y ~ time", df, "subject", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=2, family="binomial", nAGQ=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(random_state=0)
        bse = res.bse
    assert res.converged and res.llf >= truth["llf_truth_agq20"] - 0.05   # nAGQ 10 vs 20: ~1e-3
    beta_true = np.array(truth["beta"])
    order = np.argsort(res.fe_params.loc["time"].to_numpy())               # truth: slopes 0.8, -0.6
    fitted = res.fe_params.to_numpy().T[order[::-1]]
    se = np.array([bse["beta"][k + 1].to_numpy() for k in order[::-1]])
    assert np.all(np.abs(fitted - beta_true) < 3.5 * se)


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason=(
    "measured 2026-12-02 (python tests/test_glmm_slow.py 200): the gating and expert 2 cover "
    "0.945-0.980, but expert 1's fixed effects 0.875-0.915 (oim and robust alike, so a bias "
    "of the estimates rather than of the standard errors); open, see the issue on binary and "
    "count experts"))
def test_wald_intervals_of_binary_experts_cover_at_the_nominal_rate():
    table = coverage_table(REPS)
    assert table["coverage"].between(0.91, 0.985).all(), table


if __name__ == "__main__":
    print(coverage_table(int(sys.argv[1]) if len(sys.argv) > 1 else REPS).round(3).to_string())
