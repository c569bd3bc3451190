"""Benchmark of binomial experts (GLMM): pymemoe beside lme4's glmer on the same data.

What it measures
----------------
Data: ``--subjects`` subjects (default 10,000) with 6-10 visits at times 0..n_i-1 plus jitter
(about 80,000 rows), a binary outcome from a mixture of logistic mixed models with random
intercept and slope on time and multinomial-logit gating on ``x1`` (normal) and ``x2``
(binary); the truth is below. For each case, in a fresh ``spawn`` subprocess: wall and CPU
time of model construction, of ``fit(random_state=0)`` with its other options at their
defaults (the starts, the tolerance, the polish; the standard errors are deferred) and of the
standard errors (``res.bse``, the observed information computed on first use), EM iterations,
llf, converged, the process's peak RSS, and the one-minute load average of the machine when the
case started (on a loaded machine, read the CPU columns).

Cases: K = 1 (Laplace, and nAGQ = 10 on a random-intercept model: nAGQ > 1 with two random
effects is a 10 x 10 grid), K = 2 with gating on ``x1 + x2`` (Laplace, and nAGQ = 10 on the
random intercept and slope: 100 nodes per subject and expert). The K = 2 cases use fit()'s
default start strategy, so their times follow it.

R (optional): with ``Rscript`` and lme4 installed (Debian: ``r-cran-lme4``), the K = 1 models
are also fitted by ``glmer`` (Laplace; nAGQ = 10 for the random intercept, which lme4 allows
for one scalar random effect only) on the same CSV, single-threaded, and its elapsed seconds
and log-likelihood are printed beside pymemoe's. Without R the comparison is skipped with a
message. Timings are figures to read, never asserted.

Data sets (``--data-seeds``): by default one per K (seed K). With ``--data-seeds s1 s2 ...``
every case runs on the data simulated with each seed (the same design), and a second table gives
per case the median and the worst fit time over the seeds and the log-likelihood of each: the
cost of a fit depends on the data's landscape (how many solutions the start search finds, how
flat the optimum is), so one data set is not a benchmark.

Run (from the repository root)::

    python benchmarks/bench_glmm.py                       # 10,000 subjects, every case
    python benchmarks/bench_glmm.py --subjects 2000 --cases k1 --threads 1
    python benchmarks/bench_glmm.py --cases k2_agq10 --skip-r --threads 1 --data-seeds 1 2 3 4 5
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_threads_and_out, pin_blas_threads, write_table  # noqa: E402

BETA = np.array([[-1.0, 0.35], [1.0, -0.45]])              # (intercept, time) per expert
D = np.array([[[1.0, -0.05], [-0.05, 0.08]], [[0.6, 0.0], [0.0, 0.04]]])
GAMMA = np.array([[0.0, 0.0, 0.0], [0.2, 0.7, -0.6]])       # (Intercept, x1, x2), expert 1 = 0


def simulate(n_subjects: int, n_experts: int, seed: int = 0) -> pd.DataFrame:
    """Long-format binary data (columns id, time, x1, x2, y) from the truth above."""
    rng = np.random.default_rng(seed)
    K = n_experts
    x1, x2 = rng.normal(size=n_subjects), rng.binomial(1, 0.5, size=n_subjects).astype(float)
    logits = np.column_stack([np.ones(n_subjects), x1, x2]) @ GAMMA[:K].T
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    expert = (rng.random(n_subjects)[:, None] > np.cumsum(prob, axis=1)[:, :-1]).sum(axis=1)
    visits = rng.integers(6, 11, size=n_subjects)
    ids = np.repeat(np.arange(n_subjects), visits)
    t = np.concatenate([np.arange(v) for v in visits]) + rng.uniform(-0.2, 0.2, ids.size)
    t = np.maximum(t, 0.0) / 2.0
    b = np.einsum("nij,nj->ni", np.linalg.cholesky(D[:K])[expert], rng.normal(size=(n_subjects, 2)))
    k = expert[ids]
    eta = BETA[k, 0] + b[ids, 0] + (BETA[k, 1] + b[ids, 1]) * t
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    return pd.DataFrame({"id": ids, "time": t, "x1": x1[ids], "x2": x2[ids], "y": y.astype(float)})


CASES = {
    "k1": dict(n_experts=1, re_formula="~ time", nAGQ=1),
    "k1_int_agq10": dict(n_experts=1, re_formula="~ 1", nAGQ=10),
    "k2": dict(n_experts=2, re_formula="~ time", nAGQ=1, gate_formula="~ x1 + x2"),
    "k2_agq10": dict(n_experts=2, re_formula="~ time", nAGQ=10, gate_formula="~ x1 + x2"),
}


def run_case(args) -> dict:
    path, name, threads = args
    from pymemoe import MEMoE
    warnings.simplefilter("ignore")     # after the import: statsmodels' sets "always" filters
    df = pd.read_csv(path)
    kw = dict(CASES[name])
    n_experts = kw.pop("n_experts")
    load1 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    model = MEMoE.from_formula("y ~ time", df, "id", n_experts=n_experts, family="binomial", **kw)
    t1, c1 = time.perf_counter(), time.process_time()
    res = model.fit(random_state=0, n_jobs=threads)
    t2, c2 = time.perf_counter(), time.process_time()
    res.bse
    t3, c3 = time.perf_counter(), time.process_time()
    return {"case": name, "K": n_experts, "nAGQ": kw["nAGQ"], "build_s": t1 - t0, "fit_s": t2 - t1,
            "fit_cpu_s": c2 - c1, "se_s": t3 - t2, "se_cpu_s": c3 - c2, "n_iter": res.n_iter,
            "llf": res.llf, "converged": res.converged,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            "load1": load1}


R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
d <- read.csv(commandArgs(TRUE)[1])
t <- system.time(m <- glmer(y ~ time + (time | id), data = d, family = binomial, nAGQ = 1))
cat(sprintf("k1 %.3f %.10f\n", t[["elapsed"]], as.numeric(logLik(m))))
t <- system.time(m <- glmer(y ~ time + (1 | id), data = d, family = binomial, nAGQ = 10))
cat(sprintf("k1_int_agq10 %.3f %.10f\n", t[["elapsed"]], as.numeric(logLik(m))))
"""


def run_r(path: str) -> dict:
    """glmer's seconds and llf for the K = 1 cases, or {} (with a message) without R."""
    if shutil.which("Rscript") is None:
        print("R comparison skipped: Rscript not found (Debian: apt install r-cran-lme4)")
        return {}
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as handle:
        handle.write(R_SCRIPT)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["Rscript", handle.name, path], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"R comparison skipped: glmer failed ({proc.stderr.strip()[-300:]})")
        return {}
    out = {}
    for line in proc.stdout.strip().splitlines():
        name, seconds, llf = line.split()
        out[name] = {"seconds": float(seconds), "llf": float(llf)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--jobs", type=int, default=None,
                        help="fit(n_jobs=...): threads of the passes (default: pymemoe's choice)")
    parser.add_argument("--skip-r", action="store_true")
    parser.add_argument("--data-seeds", type=int, nargs="+", default=None,
                        help="seeds of the simulated data, each case run on each "
                             "(default: seed K for the K-expert cases)")
    add_threads_and_out(parser, "bench_glmm", threads=1)
    args = parser.parse_args()
    pin_blas_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = {}
        for name in args.cases:
            K = CASES[name]["n_experts"]
            for seed in args.data_seeds or [K]:
                if (K, seed) not in data:
                    data[K, seed] = str(Path(tmp) / f"binary_k{K}_seed{seed}.csv")
                    df = simulate(args.subjects, K, seed=seed)
                    df.to_csv(data[K, seed], index=False)
                    print(f"data K={K} seed={seed}: {df['id'].nunique()} subjects, {len(df)} rows")
        ctx = mp.get_context("spawn")
        for name in args.cases:
            K = CASES[name]["n_experts"]
            for seed in args.data_seeds or [K]:
                print(f"running {name} on data seed {seed} ...", flush=True)
                with ctx.Pool(1) as pool:
                    row = pool.map(run_case, [(data[K, seed], name, args.jobs)])[0]
                print(f"  fit {row['fit_s']:.2f} s ({row['fit_cpu_s']:.2f} s CPU), SEs "
                      f"{row['se_s']:.2f} s ({row['se_cpu_s']:.2f} s CPU), llf {row['llf']:.4f}")
                rows.append(dict(row, data_seed=seed))
        default_k1 = (1, (args.data_seeds or [1])[0])
        r = {} if args.skip_r or default_k1 not in data else run_r(data[default_k1])
    table = pd.DataFrame(rows)
    table["glmer_s"] = table["case"].map(lambda c: r.get(c, {}).get("seconds", np.nan))
    table["glmer_llf"] = table["case"].map(lambda c: r.get(c, {}).get("llf", np.nan))
    table["speedup"] = table["glmer_s"] / (table["fit_s"] + table["se_s"])
    table["llf_minus_glmer"] = table["llf"] - table["glmer_llf"]
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(4).to_string(index=False))
        if args.data_seeds and len(args.data_seeds) > 1:
            total = table["fit_s"] + table["se_s"]
            seeds = table.assign(total_s=total).groupby("case", sort=False).agg(
                median_total_s=("total_s", "median"), worst_total_s=("total_s", "max"),
                median_fit_cpu_s=("fit_cpu_s", "median"),
                llf_by_seed=("llf", lambda v: " ".join(f"{x:.4f}" for x in v)))
            print("\nover the data seeds", *args.data_seeds)
            print(seeds.round(2).to_string())
    write_table(table, args.out)


if __name__ == "__main__":
    main()
