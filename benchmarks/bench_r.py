"""pymemoe beside R on the same simulated data: flexmix (K = 2, 3), lme4 (K = 1), lcmm (K = 2, 3).

The performance issue's targets: for K = 2 and 3, pymemoe at least 20x faster than R flexmix
(full model) and than lcmm ``hlme`` (its shared-variance model, pymemoe fitting the same model),
with a log-likelihood at least as high. lme4 (K = 1) is shown for reference, without a target.

Comparisons (like with like)
----------------------------
=========  ===============================================================  ====================
R          R call (timed)                                                    pymemoe
=========  ===============================================================  ====================
flexmix    ``set.seed(seed + s); flexmix(. ~ . | id, k = K,``                 ``MEMoE.from_formula(
           ``model = FLXMRlmm(y ~ time, random = ~ time,``                    "y ~ time", data,
           ``varFix = c(Random = FALSE, Residual = FALSE)),``                 "id", re_formula=
           ``concomitant = FLXPmultinom(~ x1 + x2), data = d,``               "~ time",
           ``control = list(iter.max, tolerance, minprior = 0.05))``          gate_formula=
           for s = 0..starts-1, best logLik kept (flexmix's own random        "~ x1 + x2",
           start: subjects assigned to classes at random, posteriors         n_experts=K)``
           0.9 / 0.1; seeded as in the reference script)
lme4       ``lmer(y ~ time + (1 + time | id), data = d, REML = FALSE)``       the same, K = 1
lcmm       ``m1 <- hlme(y ~ time, random = ~ time, subject = "id", ng = 1)``  the same with
           ``hlme(y ~ time, mixture = ~ time, random = ~ time,``              ``cov_re="shared",
           ``subject = "id", ng = K, classmb = ~ x1 + x2, B = m1)``           scale="shared"``
           (one run from the K = 1 fit; the time includes ``m1``)
=========  ===============================================================  ====================

pymemoe fits with ``fit(n_starts=starts, random_state=seed, cov_type="none")``: as many starts
as R (its own k-means / random-centre starts, then its quasi-Newton polish), and no standard
errors, since neither ``flexmix()`` nor ``lmer()`` computes them in the call that is timed
(``--cov-type oim`` to include them).

Data: ``_simdata.simulate(N, K, seed=N + K)`` (the seeded numpy generator of ``bench_fit.py``:
random intercept and slope on ``time``, expert-specific fixed effects, D_k and sigma2_k, gating
on ``x1`` and ``x2``, 6-10 visits). It is written to a CSV in a temporary folder with 17
significant digits; R and pymemoe both read that file. The R side is an R script written to the
same folder and run with ``Rscript`` once per case; it times the fitting call only (not R's
start-up, library loading or CSV reading) with ``system.time`` and writes llf, elapsed seconds,
iterations, convergence and estimates to a JSON file. pymemoe is timed (construction from the
data frame + fit) in a fresh ``spawn`` subprocess. Times are medians over repetitions: ``--reps``
for pymemoe and lme4, ``--r-mixture-reps`` (default 1: a flexmix fit takes minutes and a fixed
seed repeats it exactly) for flexmix and lcmm.

Checks in the CSV: ``r_llf_dense`` / ``py_llf_dense`` recompute each package's llf from its
estimates on dense per-subject covariance matrices (``_simdata.dense_loglik``), and
``py_loglike_at_r`` is pymemoe's log-likelihood function at R's estimates; both equal R's llf
when the two packages fit the same model to the same data. (Not done for lcmm, whose estimates
are not read back.) For flexmix they agree only up to its unfinished last EM step: flexmix's
logLik uses the gating fitted at the start of its last iteration, and after the loop it refits
the concomitant model to the final posteriors, so the estimates it returns score slightly higher
than the logLik it reports (``r_llf - r_llf_dense`` < 0, small, shrinking as flexmix converges).
A flexmix fit that dropped a component (``minprior``) is not comparable ("n/a").

Reading the llfs: with ``--r-iter-max 200`` flexmix usually stops before its tolerance is met
(``r_conv`` False), so its llf is the llf after 200 iterations, and its time is then a lower
bound of the time it needs to converge.

Skips: without ``Rscript`` the script says so and exits 0; a missing R package skips only its
comparisons, with a message. lcmm is not packaged in Debian (install it from CRAN where that is
reachable); flexmix and lme4 come from ``apt-get install r-base-core r-cran-flexmix r-cran-lme4``.

Run (from the repository root)::

    python benchmarks/bench_r.py                                   # N = 300 1000; K = 1 2 3
    python benchmarks/bench_r.py --sizes 300 --experts 2 --reps 3 --r-iter-max 200
    python benchmarks/bench_r.py --starts 5 --threads 1 --keep     # keep the R script and CSVs
"""
from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_threads_and_out, pin_blas_threads, write_table  # noqa: E402
from _simdata import Estimates, dense_loglik, from_pymemoe, simulate, write_csv  # noqa: E402

TARGET_RATIO = 20.0
LLF_SLACK = 1e-4          # "llf at least as high": py_llf >= r_llf - LLF_SLACK
R_PACKAGES = {"lme4": "lme4", "flexmix": "flexmix", "lcmm": "lcmm"}
INSTALL_HINT = ("apt-get install r-base-core r-cran-flexmix r-cran-lme4 "
                "(lcmm: install.packages('lcmm') from CRAN; it is not packaged in Debian)")

R_SCRIPT = r"""
## Written and run by benchmarks/bench_r.py: one fit of one R package, timed, results as JSON.
## Usage: Rscript bench_r.R tool=flexmix|lme4|lcmm csv=PATH out=PATH k=K reps=R seed=S
##                          starts=S iter_max=I tol=T minprior=P
opt <- list()
for (a in commandArgs(trailingOnly = TRUE)) {
  kv <- regmatches(a, regexpr("=", a), invert = TRUE)[[1]]
  opt[[kv[1]]] <- kv[2]
}
tool <- opt$tool; K <- as.integer(opt$k); reps <- as.integer(opt$reps)
seed <- as.integer(opt$seed); starts <- as.integer(opt$starts)
iter_max <- as.integer(opt$iter_max); tol <- as.numeric(opt$tol)
minprior <- as.numeric(opt$minprior)

## minimal JSON writer (no jsonlite needed): named list -> object, unnamed list -> array,
## atomic length 1 -> scalar, NA / non-finite -> null; wrap vectors with arr() to get arrays
arr <- function(x) as.list(unname(x))
json <- function(x) {
  if (is.null(x)) return("null")
  if (is.list(x)) {
    items <- vapply(x, json, "")
    if (is.null(names(x))) return(paste0("[", paste(items, collapse = ","), "]"))
    keys <- gsub('"', '\\"', names(x), fixed = TRUE)
    return(paste0("{", paste0('"', keys, '":', items, collapse = ","), "}"))
  }
  if (length(x) != 1) return(json(arr(x)))
  if (is.na(x)) return("null")
  if (is.character(x) || is.factor(x)) {
    s <- gsub("\\", "\\\\", as.character(x), fixed = TRUE)
    s <- gsub('"', '\\"', s, fixed = TRUE)
    s <- gsub("\n", "\\n", s, fixed = TRUE)
    return(paste0('"', s, '"'))
  }
  if (is.logical(x)) return(if (x) "true" else "false")
  if (!is.finite(x)) return("null")
  sprintf("%.17g", x)
}
pkg_version <- function(p) tryCatch(as.character(packageVersion(p)), error = function(e) NA)
env <- list(R = R.version.string, package = tool, version = pkg_version(tool),
            blas = tryCatch(sessionInfo()$BLAS, error = function(e) NA))

d <- read.csv(opt$csv)
d <- d[order(d$id, d$time), ]

## time one call (elapsed and CPU seconds), printed output swallowed; errors returned
timed <- function(f) {
  invisible(gc())
  val <- NULL; out <- NULL
  st <- system.time(out <- capture.output(val <- tryCatch(f(), error = function(e) e)))
  list(value = val, elapsed = st[["elapsed"]], cpu = st[["user.self"]] + st[["sys.self"]])
}

run_flexmix <- function() {
  suppressPackageStartupMessages(library(flexmix))
  one <- function(s) {
    set.seed(s)
    flexmix(. ~ . | id, k = K,
            model = FLXMRlmm(y ~ time, random = ~ time, varFix = c(Random = FALSE, Residual = FALSE)),
            concomitant = FLXPmultinom(~ x1 + x2), data = d,
            control = list(iter.max = iter_max, tolerance = tol, minprior = minprior))
  }
  elapsed <- cpu <- numeric(reps); best <- NULL; start_ll <- numeric(starts)
  for (r in seq_len(reps)) {
    best <- NULL
    for (s in seq_len(starts)) {
      t <- timed(function() one(seed + s - 1))
      if (inherits(t$value, "error")) stop("flexmix start ", s, ": ", conditionMessage(t$value))
      elapsed[r] <- elapsed[r] + t$elapsed; cpu[r] <- cpu[r] + t$cpu
      start_ll[s] <- as.numeric(logLik(t$value))
      if (is.null(best) || start_ll[s] > as.numeric(logLik(best))) best <- t$value
    }
  }
  f <- best
  comps <- lapply(f@components, function(cc) cc[[1]]@parameters)
  G <- tryCatch(parameters(f, which = "concomitant"),  # r x K, class 1 the reference (zeros)
                error = function(e) NULL)
  list(elapsed = arr(elapsed), cpu = arr(cpu), loglik = as.numeric(logLik(f)),
       iter = f@iter, converged = f@converged, k_final = length(f@components),
       start_loglik = arr(start_ll),
       estimates = list(beta = arr(unlist(lapply(comps, function(p) as.numeric(p$coef)))),
                        D = arr(unlist(lapply(comps, function(p) as.numeric(as.matrix(p$sigma2$Random))))),
                        sigma2 = arr(sapply(comps, function(p) p$sigma2$Residual)),
                        gamma = if (is.null(G)) NULL else arr(as.numeric(G)),
                        gamma_names = arr(rownames(G))),
       call = sprintf("flexmix(. ~ . | id, k = %d, model = FLXMRlmm(y ~ time, random = ~ time, varFix = c(Random = FALSE, Residual = FALSE)), concomitant = FLXPmultinom(~ x1 + x2), control = list(iter.max = %d, tolerance = %g, minprior = %g)), set.seed(%d..%d), best of %d",
                      K, iter_max, tol, minprior, seed, seed + starts - 1, starts))
}

run_lme4 <- function() {
  suppressPackageStartupMessages(library(lme4))
  elapsed <- cpu <- numeric(reps); m <- NULL
  for (r in seq_len(reps)) {
    t <- timed(function() lmer(y ~ time + (1 + time | id), data = d, REML = FALSE))
    if (inherits(t$value, "error")) stop("lmer: ", conditionMessage(t$value))
    elapsed[r] <- t$elapsed; cpu[r] <- t$cpu; m <- t$value
  }
  oi <- m@optinfo
  list(elapsed = arr(elapsed), cpu = arr(cpu), loglik = as.numeric(logLik(m)),
       iter = oi$feval, iter_note = "function evaluations of lmer's profiled deviance",
       converged = is.null(oi$conv$lme4$messages) && oi$conv$opt == 0, k_final = 1,
       estimates = list(beta = arr(as.numeric(fixef(m))), D = arr(as.numeric(as.matrix(VarCorr(m)$id))),
                        sigma2 = arr(sigma(m)^2), gamma = NULL),
       call = "lmer(y ~ time + (1 + time | id), data = d, REML = FALSE)")
}

run_lcmm <- function() {
  suppressPackageStartupMessages(library(lcmm))
  elapsed <- cpu <- numeric(reps); m <- NULL
  for (r in seq_len(reps)) {
    t1 <- timed(function() hlme(y ~ time, random = ~ time, subject = "id", ng = 1, data = d))
    if (inherits(t1$value, "error")) stop("hlme ng = 1: ", conditionMessage(t1$value))
    m1 <- t1$value
    t <- timed(function() hlme(y ~ time, mixture = ~ time, random = ~ time, subject = "id",
                               ng = K, classmb = ~ x1 + x2, B = m1, data = d))
    if (inherits(t$value, "error")) stop("hlme: ", conditionMessage(t$value))
    elapsed[r] <- t1$elapsed + t$elapsed; cpu[r] <- t1$cpu + t$cpu; m <- t$value
  }
  list(elapsed = arr(elapsed), cpu = arr(cpu), loglik = m$loglik, iter = m$niter,
       converged = m$conv == 1, conv_code = m$conv, k_final = K, estimates = NULL,
       call = sprintf("m1 <- hlme(y ~ time, random = ~ time, subject = 'id', ng = 1); hlme(y ~ time, mixture = ~ time, random = ~ time, subject = 'id', ng = %d, classmb = ~ x1 + x2, B = m1) (time includes m1)", K))
}

res <- tryCatch(switch(tool, flexmix = run_flexmix(), lme4 = run_lme4(), lcmm = run_lcmm(),
                       stop("unknown tool ", tool)),
                error = function(e) list(error = conditionMessage(e)))
res$tool <- tool; res$k <- K; res$n_subjects <- length(unique(d$id)); res$nobs <- nrow(d)
res$env <- env
writeLines(json(res), opt$out)
"""


# ---------------------------------------------------------------------------------------------
# R side

def r_available() -> tuple[str | None, dict[str, bool]]:
    """Path of Rscript (None when absent) and which of the R packages load."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None, {}
    ok = {}
    for name, pkg in R_PACKAGES.items():
        proc = subprocess.run([rscript, "-e", f"suppressPackageStartupMessages(library({pkg}))"],
                              capture_output=True, text=True)
        ok[name] = proc.returncode == 0
    return rscript, ok


def r_version(rscript: str) -> str:
    proc = subprocess.run([rscript, "-e", "cat(R.version.string)"], capture_output=True,
                          text=True)
    return proc.stdout.strip()


def run_r(rscript: str, script: Path, tool: str, csv: Path, K: int, reps: int,
          args: argparse.Namespace) -> dict[str, Any]:
    out = csv.with_name(f"{csv.stem}_{tool}.json")
    cmd = [rscript, "--vanilla", str(script), f"tool={tool}", f"csv={csv}", f"out={out}",
           f"k={K}", f"reps={reps}", f"seed={args.seed}", f"starts={args.starts}",
           f"iter_max={args.r_iter_max}", f"tol={args.r_tol}", f"minprior={args.r_minprior}"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.r_timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f"Rscript timed out after {args.r_timeout} s")
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        return dict(error=f"Rscript failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    res = json.loads(out.read_text())
    res["process_wall_s"] = wall
    return res


def r_estimates(res: dict[str, Any]) -> Estimates | None:
    est = res.get("estimates")
    if not est or res.get("k_final") != res.get("k"):
        return None
    gamma = est.get("gamma")
    if gamma is None and res["k"] > 1:
        return None
    if gamma is not None and est.get("gamma_names") != ["(Intercept)", "x1", "x2"]:
        raise RuntimeError(f"unexpected flexmix concomitant terms {est.get('gamma_names')}")
    K = res["k"]
    return Estimates.from_lists(np.reshape(est["beta"], (K, 2)), est["D"], est["sigma2"],
                                None if gamma is None else np.reshape(gamma, (K, 3)))


# ---------------------------------------------------------------------------------------------
# pymemoe side (fresh subprocess per case)

def run_pymemoe(case: dict[str, Any]) -> dict[str, Any]:
    from pymemoe import MEMoE

    data = pd.read_csv(case["csv"])
    shared = dict(cov_re="shared", scale="shared") if case["model"] == "shared" else {}
    times, builds = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(case["reps"]):
            gc.collect()
            t0 = time.perf_counter()
            model = MEMoE.from_formula("y ~ time", data, "id", re_formula="~ time",
                                       gate_formula="~ x1 + x2", n_experts=case["K"], **shared)
            t1 = time.perf_counter()
            res = model.fit(n_starts=case["starts"], random_state=case["seed"],
                            cov_type=case["cov_type"])
            t2 = time.perf_counter()
            times.append(t2 - t0)
            builds.append(t1 - t0)
    messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    return dict(seconds=float(np.median(times)), build_s=float(np.median(builds)),
                all_seconds=";".join(f"{s:.3f}" for s in times), llf=float(res.llf),
                n_iter=res.n_iter, converged=bool(res.converged),
                estimates=from_pymemoe(res.params, case["K"]),
                n_warnings=len(caught), warnings=" | ".join(messages)[:300])


def run_isolated(case: dict[str, Any]) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(run_pymemoe, (case,))


# ---------------------------------------------------------------------------------------------

def compare(N: int, K: int, tool: str, data: pd.DataFrame, r: dict[str, Any],
            py: dict[str, Any], model_kind: str) -> dict[str, Any]:
    from pymemoe import MEMoE

    row: dict[str, Any] = dict(N=N, nobs=len(data), K=K, R=tool, model=model_kind,
                               py_s=py["seconds"], py_llf=py["llf"], py_iter=py["n_iter"],
                               py_conv=py["converged"], py_build_s=py["build_s"],
                               py_all_s=py["all_seconds"], py_warnings=py["warnings"],
                               py_llf_dense=dense_loglik(data, py["estimates"]))
    if "error" in r:
        return dict(row, verdict="R failed", note=r["error"][:200])
    elapsed = r["elapsed"]
    r_s = float(np.median(elapsed))
    row.update(r_s=r_s, r_llf=r["loglik"], r_iter=r["iter"], r_conv=r["converged"],
               r_k_final=r["k_final"], r_cpu_s=float(np.median(r["cpu"])),
               r_all_s=";".join(f"{s:.3f}" for s in elapsed), r_reps=len(elapsed),
               r_call=r["call"], r_version=f"{r['env']['R']}; {tool} {r['env']['version']}",
               ratio=r_s / py["seconds"], llf_diff=py["llf"] - r["loglik"])
    est = r_estimates(r)
    if est is not None:
        model = MEMoE.from_formula("y ~ time", data, "id", re_formula="~ time",
                                   gate_formula="~ x1 + x2", n_experts=K)
        row.update(r_llf_dense=dense_loglik(data, est),
                   py_loglike_at_r=model.loglike(est.user_vector(model.param_names)))
    note = ""
    if r["k_final"] != K:
        note = f"{tool} ended with {r['k_final']} of {K} components (minprior)"
    if K == 1:
        verdict = "(no target)"
    elif note:
        verdict = "n/a"
    else:
        ok = row["ratio"] >= TARGET_RATIO and row["llf_diff"] >= -LLF_SLACK
        verdict = "met" if ok else "MISSED"
        if not ok:
            note = ", ".join(x for x in (
                f"ratio < {TARGET_RATIO:g}" if row["ratio"] < TARGET_RATIO else "",
                "llf lower" if row["llf_diff"] < -LLF_SLACK else "") if x)
    return dict(row, verdict=verdict, note=note)


def _sci(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.1e}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000],
                        help="numbers of subjects N (default: 300 1000)")
    parser.add_argument("--experts", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3],
                        help="K values (1: lme4; 2, 3: flexmix and lcmm; default 1 2 3)")
    parser.add_argument("--reps", type=int, default=3,
                        help="timed runs of pymemoe and lme4 (median; default 3)")
    parser.add_argument("--r-mixture-reps", type=int, default=1,
                        help="timed runs of flexmix and lcmm (median; default 1)")
    parser.add_argument("--starts", type=int, default=1,
                        help="random starts of flexmix (seeds seed..seed+starts-1) and "
                             "pymemoe's n_starts (default 1)")
    parser.add_argument("--seed", type=int, default=1,
                        help="R's set.seed of the first start and pymemoe's random_state")
    parser.add_argument("--r-iter-max", type=int, default=200, help="flexmix iter.max")
    parser.add_argument("--r-tol", type=float, default=1e-6,
                        help="flexmix tolerance (relative change of logLik; default 1e-6)")
    parser.add_argument("--r-minprior", type=float, default=0.05, help="flexmix minprior")
    parser.add_argument("--r-timeout", type=float, default=3600.0,
                        help="seconds before one Rscript run is abandoned")
    parser.add_argument("--cov-type", default="none", choices=["none", "oim", "robust"],
                        help="pymemoe's cov_type (default none: the R calls compute no SEs)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (R script, CSVs, JSON) and print it")
    add_threads_and_out(parser, "bench_r")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rscript, have = r_available()
    if rscript is None:
        print(f"Rscript not found: skipping the R comparisons. To run them: {INSTALL_HINT}")
        return 0
    for name, ok in have.items():
        if not ok:
            extra = (" (not packaged in Debian; install from CRAN where it is reachable)"
                     if name == "lcmm" else f" (apt-get install r-cran-{name})")
            print(f"R package {name} is not available: skipping its comparisons{extra}")
    tools_for = {K: ([t for t in ("lme4",) if have.get(t)] if K == 1 else
                     [t for t in ("flexmix", "lcmm") if have.get(t)]) for K in args.experts}
    if not any(tools_for.values()):
        print("no R package available for the requested K: nothing to compare")
        return 0
    pin_blas_threads(args.threads)     # read by the BLAS of the spawned children at import

    import pymemoe
    print(f"{r_version(rscript)}; R packages: "
          + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in have.items()))
    print(f"pymemoe {pymemoe.__version__}, numpy {np.__version__}, Python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, BLAS threads: "
          f"{args.threads or 'default'}; starts={args.starts}, seed={args.seed}, flexmix "
          f"iter.max={args.r_iter_max} tol={args.r_tol:g}; pymemoe cov_type={args.cov_type!r}")

    tmp = Path(tempfile.mkdtemp(prefix="pymemoe_bench_r_"))
    script = tmp / "bench_r.R"
    script.write_text(R_SCRIPT)
    rows = []
    try:
        for N in args.sizes:
            for K in args.experts:
                tools = tools_for[K]
                if not tools:
                    continue
                data = simulate(N, K, seed=N + K)
                csv = write_csv(data, tmp / f"sim_N{N}_K{K}.csv")
                data = pd.read_csv(csv)        # what both sides read
                py_cache: dict[str, dict[str, Any]] = {}
                for tool in tools:
                    kind = "shared" if tool == "lcmm" else "full"
                    reps = args.reps if tool == "lme4" else args.r_mixture_reps
                    print(f"N={N} K={K}: {tool} x{reps} ...", flush=True)
                    r = run_r(rscript, script, tool, csv, K, reps, args)
                    if "error" in r:
                        print(f"  R error: {r['error']}", flush=True)
                    else:
                        print(f"  {[round(s, 3) for s in r['elapsed']]} s, llf {r['loglik']:.6f}, iter {r['iter']}, "
                              f"converged {r['converged']}", flush=True)
                    if kind not in py_cache:
                        print(f"N={N} K={K}: pymemoe ({kind}) x{args.reps} ...", flush=True)
                        py_cache[kind] = run_isolated(dict(
                            csv=str(csv), K=K, model=kind, reps=args.reps, starts=args.starts,
                            seed=args.seed, cov_type=args.cov_type))
                        print(f"  {py_cache[kind]['all_seconds']} s, llf "
                              f"{py_cache[kind]['llf']:.6f}", flush=True)
                    rows.append(compare(N, K, tool, data, r, py_cache[kind], kind))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    table = pd.DataFrame(rows)
    for col in ("r_s", "r_llf", "llf_diff", "ratio", "r_iter", "r_conv", "r_k_final",
                "r_llf_dense", "py_loglike_at_r"):
        if col not in table:
            table[col] = np.nan

    pd.set_option("display.width", 220)
    pd.set_option("display.max_columns", 30)
    pd.set_option("display.max_colwidth", 60)
    cols = ["N", "nobs", "K", "R", "model", "r_s", "py_s", "ratio", "r_llf", "py_llf",
            "llf_diff", "r_iter", "r_conv", "py_iter", "py_conv", "verdict"]
    fmt = {"r_s": "{:.3f}", "py_s": "{:.3f}", "ratio": "{:.1f}", "r_llf": "{:.4f}",
           "py_llf": "{:.4f}", "llf_diff": "{:.2e}"}
    print(f"\npymemoe vs R (seconds: R = the fitting call, pymemoe = construction + fit; "
          f"medians; ratio = r_s / py_s; target for K >= 2: ratio >= {TARGET_RATIO:g} and "
          f"llf_diff >= -{LLF_SLACK:g})")
    print(table[cols].to_string(index=False, na_rep="-", formatters={
        k: (lambda f: (lambda v: "-" if pd.isna(v) else f.format(v)))(f) for k, f in fmt.items()}))
    print("\nChecks (llf recomputed on dense V_i from each package's estimates; pymemoe's "
          "loglike at R's estimates; R's start llfs in the CSV):")
    checks = pd.DataFrame({
        "N": table["N"], "K": table["K"], "R": table["R"],
        "r_llf-dense": (table["r_llf"] - table["r_llf_dense"]).map(_sci),
        "py_llf-dense": (table["py_llf"] - table["py_llf_dense"]).map(_sci),
        "py_loglike(R)-r_llf": (table["py_loglike_at_r"] - table["r_llf"]).map(_sci),
        "r_runs_s": table.get("r_all_s"), "py_runs_s": table["py_all_s"]})
    print(checks.to_string(index=False, na_rep="-"))
    for _, row in table.iterrows():
        if row.get("note"):
            print(f"note N={row['N']} K={row['K']} {row['R']}: {row['note']}")
        if row.get("py_warnings"):
            print(f"pymemoe warnings N={row['N']} K={row['K']}: {row['py_warnings']}")
    if not have.get("lcmm"):
        print("lcmm (hlme) comparison skipped: lcmm is not installed (not in Debian).")
    write_table(table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
