"""What the time to event costs: joint fits against trajectory-only fits of the same data.

Simulated cohorts with K = 3 experts (intercepts 0, 2, 4; slopes 1, 0, -1; a random intercept
and slope; 6-10 visits uniform on [0, 6]; gating on a standard normal and a binary covariate),
each expert with its own Weibull hazards of two competing causes (covariate x1), censoring
uniform on (3, 8), and no measurement after the subject's event or censoring time. Each size
is fitted twice with the defaults (``from_formula`` -> ``fit()`` -> ``bse``): the trajectories
alone, and the joint model (``survival=TimeToEvent("T", "d", formula="~ x1")``). The last line
is the issue's small case: a quadratic trajectory (three random effects), 500 subjects, K = 4.

    python benchmarks/bench_joint.py                     # 10^3, 10^4 and 10^5 subjects
    python benchmarks/bench_joint.py --sizes 2000 --seeds 0 1
    python benchmarks/bench_joint.py --entry --sizes 1000 10000 --no-small

``--entry``: 70% of the subjects enter late, at T0 ~ U(0, 2), and are kept only if event-free
then (censoring at T0 + U(3, 8)); the joint model is fitted without and with
``entry="T0"``, and the fit and the standard errors (the observed information by differences
of the exact score under delayed entry) are timed apart.

Prints, per size and seed, the seconds of each fit end to end, their ratio, the number of EM
iterations and the log-likelihoods; nothing is asserted.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from pymemoe import MEMoE, TimeToEvent

BETA = np.array([[0.0, 1.0], [2.0, 0.0], [4.0, -1.0]])
GAMMA = np.array([[0.0, 0.0, 0.0], [0.2, 0.6, -0.4], [-0.3, -0.5, 0.6]])
COV = np.array([[[0.5, 0.05], [0.05, 0.1]], [[0.3, 0.0], [0.0, 0.05]],
                [[0.8, -0.1], [-0.1, 0.2]]])
SIGMA2 = np.array([0.25, 0.5, 0.36])
# per expert and cause: intercept, effect of x1, log shape
HAZARDS = np.array([[[-3.0, 0.3, 0.3], [-4.0, 0.0, 0.0]],
                    [[-2.0, -0.3, 0.0], [-3.5, 0.5, 0.4]],
                    [[-1.5, 0.0, 0.5], [-2.5, -0.2, -0.2]]])


def simulate(n: int, seed: int = 0, quadratic: bool = False, K: int = 3,
             entry: bool = False) -> pd.DataFrame:
    """Long data with ``id, time, x1, x2, y, T, d`` (and ``T0`` with ``entry``; see the
    module docstring)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.binomial(1, 0.5, size=n).astype(float)
    logits = np.column_stack([np.ones(n), x1, x2]) @ GAMMA[:K].T
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    k = (prob.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1) % 3
    sizes = rng.integers(6, 11, size=n)
    row = np.repeat(np.arange(n), sizes)
    t = rng.uniform(0, 6, size=row.size)
    b = np.einsum("nij,nj->ni", np.linalg.cholesky(COV)[k], rng.normal(size=(n, 2)))
    kr = k[row]
    y = BETA[kr, 0] + b[row, 0] + (BETA[kr, 1] + b[row, 1]) * t
    if quadratic:
        y += (0.05 * (kr - 1) + 0.05 * rng.normal(size=n)[row]) * t ** 2
    y += np.sqrt(SIGMA2[kr]) * rng.normal(size=row.size)
    theta = HAZARDS[k]                                           # (n, 2, 3)
    eta = theta[..., 0] + theta[..., 1] * x1[:, None]
    rho = np.exp(theta[..., 2])
    latent = (-np.log(rng.uniform(size=(n, 2))) / np.exp(eta)) ** (1 / rho)
    first = latent.min(axis=1)
    T0 = rng.uniform(0.0, 2.0, size=n) * (rng.uniform(size=n) < 0.7) if entry else np.zeros(n)
    censor = T0 + rng.uniform(3.0, 8.0, size=n)
    T = np.minimum(first, censor)
    d = np.where(first <= censor, latent.argmin(axis=1) + 1, 0)
    df = pd.DataFrame({"id": row, "time": t, "x1": x1[row], "x2": x2[row], "y": y,
                       "T": T[row], "d": d[row], "T0": T0[row]})
    df = df[(df["time"] <= df["T"]) & (df["T"] > df["T0"])]
    return df.sort_values(["id", "time"], kind="stable").reset_index(drop=True)


def run(df: pd.DataFrame, joint: bool, K: int = 3, re_formula: str = "~ time",
        formula: str = "y ~ time", gate: str = "~ x1 + x2") -> dict:
    start = time.perf_counter()
    survival = TimeToEvent("T", "d", formula="~ x1") if joint else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MEMoE.from_formula(formula, df, "id", re_formula=re_formula, gate_formula=gate,
                                   n_experts=K, survival=survival)
        res = model.fit(random_state=0)
        res.bse
    return {"seconds": time.perf_counter() - start, "iterations": res.n_iter, "llf": res.llf}


def run_entry(df: pd.DataFrame, entry: str | None) -> dict:
    """The joint model with the defaults, its fit and its standard errors timed apart."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time",
                                   gate_formula="~ x1 + x2", n_experts=3,
                                   survival=TimeToEvent("T", "d", formula="~ x1", entry=entry))
        res = model.fit(random_state=0)
        fitted = time.perf_counter()
        res.bse
    return {"fit": fitted - start, "bse": time.perf_counter() - fitted, "llf": res.llf,
            "iterations": res.n_iter}


def main_entry(sizes, seeds) -> None:
    print(f"{'subjects':>9} {'seed':>4} {'no entry: fit s':>16} {'bse s':>6} "
          f"{'entry: fit s':>13} {'bse s':>6} {'EM it. (no entry, entry)':>25}")
    for n in sizes:
        for seed in seeds:
            df = simulate(n, seed, entry=True)
            plain, entry = run_entry(df, None), run_entry(df, "T0")
            print(f"{n:>9} {seed:>4} {plain['fit']:>16.1f} {plain['bse']:>6.1f} "
                  f"{entry['fit']:>13.1f} {entry['bse']:>6.1f} "
                  f"{plain['iterations']:>12} {entry['iterations']:>12}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-small", action="store_true", help="skip the quadratic K = 4 case")
    parser.add_argument("--entry", action="store_true",
                        help="delayed entry: the joint fit without and with entry=")
    args = parser.parse_args()
    if args.entry:
        main_entry(args.sizes, args.seeds)
        return
    print(f"{'subjects':>9} {'seed':>4} {'trajectories s':>15} {'joint s':>8} {'ratio':>6} "
          f"{'EM it. (traj, joint)':>21}")
    for n in args.sizes:
        for seed in args.seeds:
            df = simulate(n, seed)
            alone, joint = run(df, False), run(df, True)
            print(f"{n:>9} {seed:>4} {alone['seconds']:>15.1f} {joint['seconds']:>8.1f} "
                  f"{joint['seconds'] / alone['seconds']:>6.2f} "
                  f"{alone['iterations']:>10} {joint['iterations']:>10}", flush=True)
    if not args.no_small:
        df = simulate(500, 0, quadratic=True, K=3)
        quad = dict(K=4, re_formula="~ time + I(time ** 2)", formula="y ~ time + I(time ** 2)")
        alone, joint = run(df, False, **quad), run(df, True, **quad)
        print(f"quadratic, 3 random effects, 500 subjects, K = 4: trajectories "
              f"{alone['seconds']:.1f} s, joint {joint['seconds']:.1f} s")


if __name__ == "__main__":
    main()
