"""Benchmark of ``MEMoE.fit``: time, memory and EM iterations as the number of subjects grows,
and pymemoe beside the R packages on the PBCseq fits timed in the project's ``../shared/reference``.

What it measures
----------------
1. Scaling (simulated data). For each N (subjects) and K (experts): data drawn by a numpy-only
   simulator below (random intercept and slope on time, expert-specific fixed effects, D_k and
   sigma2_k, multinomial-logit gating on ``x1`` (normal) and ``x2`` (binary), 6-10 visits at
   times 0..n_i-1 with small jitter), fitted with ``MEMoE.from_formula("y ~ time", ...,
   re_formula="~ time", gate_formula="~ x1 + x2", n_experts=K).fit(n_starts, random_state=0,
   cov_type="none")``; the model-based standard errors (``estimate_cov("oim", ...)``, the
   numerical Jacobian of the analytic score) are timed apart, in one thread (``se_s``) and in
   one per core (``se_par_s``, what ``fit(n_jobs=None)`` uses from 20,000 subject-expert pairs).
2. PBCseq: the fits of flexmix (full MEMoE, K=2), lcmm ``hlme`` gridsearch (shared and
   proportional ``nwg``, K=2) and lme4 (K=1), with R's elapsed seconds and log-likelihood read
   from the reference JSON files (``lcmm`` is not packaged for Debian, so its timings come only
   from there: single-threaded seconds on a 2-core machine, per the reference README). R's figures are
   single-threaded (reference BLAS); pass ``--threads 1`` to pin pymemoe's BLAS to one thread
   too. The speedup divides R's seconds by pymemoe's fit plus standard errors (``fit_se_s``),
   since hlme computes the Hessian as part of its fit. The ``screened`` cases run as lcmm's
   ``gridsearch(rep=20, maxiter=30)`` does: 20 starts of 30 EM iterations, the best to
   convergence (``fit(n_starts=20, screen_iter=30, n_finish=1)``).

Per case: wall time (``time.perf_counter``) of model construction (formulas and per-subject
sufficient statistics) and of the fit separately (the median of ``--repeats`` fits of the same
model, every run listed in ``fit_runs_s``); peak traced Python/numpy allocations
(``tracemalloc``) during construction and the fit's peak above what was alive at its start;
process peak RSS (``ru_maxrss``, which includes the interpreter, the libraries and the data
frame); the fit's CPU time (``process_time``, all threads) and the 1-minute load average
before it, to spot a busy machine; EM iterations of the best start (``res.n_iter``; the L-BFGS-B
polish that follows EM is not counted there), llf, converged, and the number of warnings. Every
case runs in a fresh ``spawn`` subprocess so that ``ru_maxrss`` is per case. Timings are figures
to read, never asserted. tracemalloc (on during construction and the first fit only) adds a few
per cent to those.

Run (from the repository root)::

    python benchmarks/bench_fit.py                               # N = 1e3, 1e4, 1e5; K = 2, 3
    python benchmarks/bench_fit.py --sizes 1000 --experts 2 --skip-pbcseq
    python benchmarks/bench_fit.py --n-starts 5 --threads 1 --out benchmarks/out/bench_fit.csv
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_threads_and_out, pin_blas_threads, write_table  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"   # ../shared beside the repo
MB = 1e6

# Truth of the simulator, per expert k: (intercept, slope), D_k = cov of (b0, b1), sigma2_k,
# gating coefficients (Intercept, x1, x2) relative to expert 1.
BETA = np.array([[0.0, 0.10], [2.0, 0.50], [-1.5, -0.30]])
D = np.array([[[0.50, 0.02], [0.02, 0.020]], [[1.00, -0.05], [-0.05, 0.050]],
              [[0.30, 0.00], [0.00, 0.010]]])
SIGMA2 = np.array([0.10, 0.25, 0.05])
GAMMA = np.array([[0.0, 0.0, 0.0], [-0.3, 0.8, 0.5], [0.2, -0.6, 1.0]])


def simulate(n_subjects: int, n_experts: int, seed: int = 0) -> pd.DataFrame:
    """Long-format data (columns id, time, x1, x2, y) from a MEMoE with the truth above."""
    rng = np.random.default_rng(seed)
    K = n_experts
    x1, x2 = rng.normal(size=n_subjects), rng.binomial(1, 0.5, size=n_subjects).astype(float)
    logits = np.column_stack([np.ones(n_subjects), x1, x2]) @ GAMMA[:K].T
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    expert = (prob.cumsum(axis=1) < rng.uniform(size=(n_subjects, 1))).sum(axis=1)
    b = np.einsum("nij,nj->ni", np.linalg.cholesky(D[:K])[expert],
                  rng.normal(size=(n_subjects, 2)))            # random intercept and slope
    n_visits = rng.integers(6, 11, size=n_subjects)            # 6..10 visits
    row_id = np.repeat(np.arange(n_subjects), n_visits)
    visit = np.arange(row_id.size) - np.repeat(np.cumsum(n_visits) - n_visits, n_visits)
    jitter = rng.uniform(-0.1, 0.1, size=row_id.size)
    t = np.where(visit == 0, 0.0, visit + jitter)
    c = expert[row_id]
    mean = BETA[c, 0] + b[row_id, 0] + (BETA[c, 1] + b[row_id, 1]) * t
    y = mean + np.sqrt(SIGMA2[c]) * rng.normal(size=row_id.size)
    return pd.DataFrame({"id": row_id, "time": t, "x1": x1[row_id], "x2": x2[row_id], "y": y})


def pbcseq_cases(reference: Path) -> list[dict[str, Any]]:
    """The PBCseq fits of the reference, each with R's seconds and log-likelihood."""
    def load(rel: str) -> dict[str, Any]:
        return json.loads((reference / rel).read_text())

    flex = load("flexmix/flexmix_full_conc_k2.json")
    grid = load("lcmm/hlme_default_ng2_gridsearch.json")
    nwg = load("lcmm/hlme_nwg_ng2_gridsearch.json")
    lmer = load("lme4/lmer_base.json")
    median3 = "median of 3 runs"
    cases = [
        dict(case="flexmix full K=2", n_starts=5, n_experts=2,
             gate_formula="~ C(sex, Treatment('m')) + age + C(trt)",
             r_seconds=flex["polished"]["elapsed"], r_llf=flex["polished"]["loglik"],
             r_total_seconds=flex["nrep"]["nrep_5"]["elapsed_total"],
             r_note="r_seconds: best start rerun to convergence; total: nrep=5 x 200 it"),
        dict(case="hlme shared K=2", n_starts=20, n_experts=2, cov_re="shared", scale="shared",
             r_seconds=grid["timing"]["median_elapsed"], r_llf=grid["loglik"],
             r_note="gridsearch(rep=20, maxiter=30), " + median3),
        dict(case="hlme nwg K=2", n_starts=20, n_experts=2, cov_re="proportional",
             scale="shared", r_seconds=nwg["timing"]["median_elapsed"], r_llf=nwg["loglik"],
             r_note="gridsearch(rep=20, maxiter=30), " + median3),
        dict(case="hlme shared K=2, screened", n_starts=20, n_experts=2, cov_re="shared",
             scale="shared", screen_iter=30, n_finish=1,
             r_seconds=grid["timing"]["median_elapsed"], r_llf=grid["loglik"],
             r_note="as lcmm's gridsearch(rep=20, maxiter=30): 20 starts x 30 EM iterations, "
                    "the best to convergence; " + median3),
        dict(case="hlme nwg K=2, screened", n_starts=20, n_experts=2, cov_re="proportional",
             scale="shared", screen_iter=30, n_finish=1,
             r_seconds=nwg["timing"]["median_elapsed"], r_llf=nwg["loglik"],
             r_note="as lcmm's gridsearch(rep=20, maxiter=30); " + median3),
        dict(case="lme4 K=1", n_starts=1, n_experts=1, r_seconds=lmer["timing"]["median_elapsed"],
             r_llf=lmer["loglik"], r_note="lmer(REML=FALSE), " + median3),
    ]
    return [dict(suite="pbcseq", **case) for case in cases]


def maxrss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / MB if sys.platform == "darwin" else rss * 1024 / MB


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Build the data, construct and fit the model; runs in a fresh subprocess."""
    from pymemoe import MEMoE
    from pymemoe._estimation.inference import estimate_cov

    if case["suite"] == "simulated":
        data = simulate(case["n_subjects"], case["n_experts"], seed=case["seed"])
        spec = dict(formula="y ~ time", groups="id", re_formula="~ time", gate_formula="~ x1 + x2")
    else:
        from pymemoe.datasets import load_pbcseq
        data = load_pbcseq()
        data["year"] = data["day"] / 365.25
        spec = dict(formula="np.log(bili) ~ year", groups="id", re_formula="~ year",
                    gate_formula=case.get("gate_formula", "~ 1"),
                    cov_re=case.get("cov_re", "expert"), scale=case.get("scale", "expert"))
    rss_data = maxrss_mb()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracemalloc.start()
        t0 = time.perf_counter()
        model = MEMoE.from_formula(data=data, n_experts=case["n_experts"], **spec)
        t1 = time.perf_counter()
        held, build_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        load1 = os.getloadavg()[0]
        fit_options = dict(n_starts=case["n_starts"], random_state=0, cov_type="none",
                           screen_iter=case.get("screen_iter"), n_finish=case.get("n_finish", 3))
        walls, cpus, se_walls, se_par_walls = [], [], [], []
        for _ in range(case["repeats"]):      # the same fit again: the median is the figure
            t2, c2 = time.perf_counter(), time.process_time()
            res = model.fit(**fit_options)
            t3, c3 = time.perf_counter(), time.process_time()
            # the standard errors (model-based, cov_type="oim") timed apart from the fit, in
            # one thread and in as many as cores (as fit(n_jobs=None) does for large data)
            estimate_cov("oim", model.data, model.structure, res.state, n_jobs=1)
            t4 = time.perf_counter()
            estimate_cov("oim", model.data, model.structure, res.state, n_jobs=os.cpu_count() or 1)
            se_walls.append(t4 - t3)
            se_par_walls.append(time.perf_counter() - t4)
            walls.append(t3 - t2)
            cpus.append(c3 - c2)
            if len(walls) == 1:
                fit_peak = tracemalloc.get_traced_memory()[1] - held
                tracemalloc.stop()
    return dict(case, n_groups=model.data.n_groups, nobs=model.data.nobs,
                build_s=t1 - t0, fit_s=float(np.median(walls)), fit_cpu_s=float(np.median(cpus)),
                fit_runs_s=";".join(f"{w:.2f}" for w in walls), se_s=float(np.median(se_walls)), se_par_s=float(np.median(se_par_walls)),
                fit_se_s=float(np.median(np.add(walls, se_walls))), load1=load1,
                n_iter=res.n_iter, llf=res.llf, converged=res.converged, n_warnings=len(caught),
                warning=str(caught[0].message)[:80] if caught else "",
                data_mb=data.memory_usage(deep=True).sum() / MB,
                py_build_peak_mb=build_peak / MB, py_fit_peak_mb=fit_peak / MB,
                rss_after_data_mb=rss_data, maxrss_mb=maxrss_mb())


def run_isolated(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case in a fresh spawned interpreter so that ru_maxrss is its own."""
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(run_case, (case,))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000],
                        help="numbers of subjects N (default: 1000 10000 100000)")
    parser.add_argument("--experts", type=int, nargs="+", default=[2, 3], help="K values")
    parser.add_argument("--n-starts", type=int, default=1,
                        help="starts per simulated fit (default 1: one start to convergence)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fits per case; the table shows the median (default 3)")
    parser.add_argument("--skip-pbcseq", action="store_true", help="skip the PBCseq comparison")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="R reference folder")
    add_threads_and_out(parser, "bench_fit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_blas_threads(args.threads)     # read by the BLAS of the spawned children at import
    import pymemoe
    print(f"pymemoe {pymemoe.__version__}, numpy {np.__version__}, pandas {pd.__version__}, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"BLAS threads: {args.threads or 'default'}")
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)

    cases = [dict(suite="simulated", case=f"N={n} K={k}", n_subjects=n, n_experts=k,
                  n_starts=args.n_starts, seed=n + k) for n in args.sizes for k in args.experts]
    if not args.skip_pbcseq:
        cases += pbcseq_cases(args.reference)
    cases = [dict(case, repeats=args.repeats) for case in cases]
    rows = []
    for case in cases:
        print(f"running {case['suite']}: {case['case']} (n_starts={case['n_starts']}) ...",
              flush=True)
        rows.append(run_isolated(case))
        print(f"  fit {rows[-1]['fit_s']:.2f} s, {rows[-1]['n_iter']} EM iterations", flush=True)
    table = pd.DataFrame(rows)

    sim = table[table["suite"] == "simulated"]
    if len(sim):
        cols = ["n_groups", "n_experts", "nobs", "n_starts", "build_s", "fit_s", "fit_runs_s", "se_s", "se_par_s", "fit_cpu_s",
                "load1", "n_iter", "llf", "converged", "n_warnings", "data_mb",
                "py_build_peak_mb", "py_fit_peak_mb",
                "rss_after_data_mb", "maxrss_mb"]
        print("\nScaling on simulated data (seconds, MB = 1e6 bytes)")
        print(sim[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    pbc = table[table["suite"] == "pbcseq"].copy()
    if len(pbc):
        pbc["speedup"] = pbc["r_seconds"] / pbc["fit_se_s"]   # R's fits include the Hessian
        pbc["llf_minus_r"] = pbc["llf"] - pbc["r_llf"]
        cols = ["case", "n_starts", "build_s", "fit_s", "fit_runs_s", "se_s", "se_par_s", "fit_cpu_s", "load1", "r_seconds",
                "r_total_seconds", "speedup", "n_iter", "converged", "llf", "r_llf",
                "llf_minus_r", "maxrss_mb"]
        print("\nPBCseq: pymemoe beside R (R seconds and llf from the reference JSON; "
              "speedup = r_seconds / fit_se_s, fit and standard errors)")
        print(pbc[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        for _, row in pbc.iterrows():
            print(f"  {row['case']}: {row['r_note']}")
    warned = table[table["n_warnings"] > 0]
    for _, row in warned.iterrows():
        print(f"warning in {row['case']}: {row['warning']}")

    write_table(table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
