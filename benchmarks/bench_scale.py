"""End-to-end scaling with the number of subjects: ``from_formula``, ``fit()`` with its
defaults and the standard errors, with the peak resident memory, at N = 1e4, 1e5, 1e6.

What it measures
----------------
For each N (subjects) and each thread count T (``--threads``, ``fit(n_jobs=T)``): data drawn by
``bench_fit.simulate`` (the simulator every benchmark shares, ``_simdata.py``: K = 3 experts,
random intercept and slope on ``time``, expert-specific fixed effects, D_k and sigma2_k,
multinomial-logit gating on ``x1`` (normal) and ``x2`` (binary), 6-10 visits, 8 on average),
then what a user runs::

    model = MEMoE.from_formula("y ~ time", data, "id", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=3)
    res = model.fit(random_state=0, n_jobs=T)     # the defaults (plus --fit-kwargs, if any)
    res.bse                                       # the standard errors, computed on first use

Reported per case: the seconds of the simulation (not counted), of ``from_formula``, of
``fit()`` and of the first ``res.bse`` (wall time, ``time.perf_counter``, and CPU time of the
process, ``time.process_time``, all threads), their total (``from_formula`` + fit + SEs); the
peak resident memory (``VmHWM`` of ``/proc/self/status``) of each step, reset between steps by
writing 5 to ``/proc/self/clear_refs`` (where allowed; otherwise each step's peak is the peak
so far), and of the whole process (the largest of them: interpreter, libraries, the data frame
and every step; ``ru_maxrss`` on systems without ``/proc``); EM iterations of the best start
(``res.n_iter``), llf, converged, the number of warnings, the EM options used (and, where the
version has them, the start strategy and ``res.n_best``); the 1-minute load
average before and after (the machine may be shared). Each case runs in a fresh ``spawn``
subprocess, so its peak is its own; a case that exceeds ``--timeout`` seconds is stopped and
reported with the steps it finished. ``--profile DIR`` runs the fit and the standard errors
under cProfile instead (the timings are then inflated and flagged ``profiled``), writes
``DIR/N<n>_T<t>_{fit,se}.prof`` and prints the top functions by cumulative time. The profiler
counts CPU time (``time.process_time``), not wall time, so that the time the process waits for
a core on a shared machine is not charged to whatever function was running; it follows the
calling thread only, so profile with ``--threads 1``.

The targets of issue 15 are printed beside the measured values: N = 1e5 (K = 3),
``from_formula`` + fit + SEs <= 3 s with the defaults; N = 1e6, <= 30 s end to end and a peak
of at most 4 GB. ``--fit-kwargs`` (e.g. ``n_starts=1``) changes the fit from the defaults: the
table then says so, and the targets are compared as a proxy only. Timings are figures to read,
never asserted.

Run (from the repository root)::

    python benchmarks/bench_scale.py                                  # N = 1e4, 1e5, 1e6; T = 1, 2
    python benchmarks/bench_scale.py --sizes 10000 100000 --threads 1 2
    python benchmarks/bench_scale.py --sizes 1000000 --threads 2 --fit-kwargs n_starts=1
    python benchmarks/bench_scale.py --sizes 100000 --threads 1 --fit-kwargs n_starts=1 --profile benchmarks/out/prof
"""
from __future__ import annotations

import argparse
import ast
import cProfile
import io
import multiprocessing as mp
import os
import platform
import pstats
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import GB, peak_gb, pin_blas_threads, reset_peak, write_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPEC = dict(formula="y ~ time", groups="id", re_formula="~ time", gate_formula="~ x1 + x2")
# issue 15's targets: N -> (seconds of from_formula + fit + SEs, peak GB or None), K = 3
TARGETS = {100_000: (3.0, None), 1_000_000: (30.0, 4.0)}
STEPS = ("simulate", "from_formula", "fit", "se")


# -- options ------------------------------------------------------------------------------

def parse_fit_kwargs(items: list[str]) -> dict[str, Any]:
    """``["n_starts=1", "screen_iter=30"]`` -> ``{"n_starts": 1, "screen_iter": 30}``; values
    are Python literals (numbers, None, True, quoted or bare strings)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"--fit-kwargs takes key=value pairs, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value                     # a bare string, e.g. cov_type=robust
    for reserved in ("random_state", "n_jobs"):
        if reserved in out:
            raise SystemExit(f"--fit-kwargs: {reserved} is set by the benchmark")
    return out


def git_commit() -> str:
    """The commit of the checkout measured, with ``+dirty`` if it has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return ""


# -- one case, in a fresh subprocess --------------------------------------------------------

# Functions whose CPU time the profile summary lists, where they exist (a missing one is
# skipped, so the summary survives changes of the EM driver): the driver whose direct callees
# are the phases, then the passes over the subjects and the kernels inside them.
PROFILE_DRIVERS = {"fit": "_run_em", "se": "observed_information"}
PROFILE_PASSES = ("em.py:e_pass", "em.py:m_step", "gating.py:newton_update_blocks",
                  "gaussian.py:variance_block", "em.py:polish", "em.py:_value_score_block",
                  "em.py:score_moments", "em.py:projected_grad_max",
                  "inference.py:information_terms", "inference.py:_closed_form_columns",
                  "likelihood.py:e_step", "expert.py:gls_normal_equations",
                  "expert.py:expert_moments", "gating.py:gating_block",
                  "likelihood.py:natural_score_sums", "expert_hessian.py:expert_hessian_sums",
                  "likelihood.py:expert_score_vectors")


def profile_summary(stats: pstats.Stats, driver: str, share_min: float = 0.01) -> str:
    """The direct callees of ``driver`` (the phases) and the passes of PROFILE_PASSES, each
    with its cumulative CPU seconds, calls and share of the total."""
    total = max(stats.total_tt, 1e-12)
    lines = []
    drivers = [key for key in stats.stats if key[2] == driver]
    for key in drivers:
        lines.append(f"  phases (callees of {driver}, {stats.stats[key][3]:.2f} s):")
        edges = [(callee, callers[key]) for callee, (*_, callers) in stats.stats.items()
                 if key in callers]
        for callee, (cc, nc, tt, ct) in sorted(edges, key=lambda e: -e[1][3]):
            if ct >= share_min * total:
                lines.append(f"    {callee[2]:32s} {ct:8.2f} s {nc:6d} calls {ct / total:6.1%}")
    lines.append("  passes and kernels (cumulative over all calls):")
    for entry in PROFILE_PASSES:
        module, name = entry.split(":")
        keys = [key for key in stats.stats
                if key[2] == name and Path(key[0]).name == module]
        if keys:
            ct = sum(stats.stats[k][3] for k in keys)
            nc = sum(stats.stats[k][1] for k in keys)
            lines.append(f"    {entry:38s} {ct:8.2f} s {nc:6d} calls {ct / total:6.1%}")
    return "\n".join(lines)


def _profiled(call, path: Path | None, top: int, driver: str = ""):
    """``call()``, under cProfile when ``path`` is given (stats dumped there and printed)."""
    if path is None:
        return call()
    profile = cProfile.Profile(time.process_time)      # CPU seconds: see the module docstring
    out = profile.runcall(call)
    profile.dump_stats(path)
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    print(f"\n--- cProfile {path.name} (CPU seconds), top {top} by cumulative time\n"
          f"{text.getvalue()}\n--- summary of {path.name} ({stats.total_tt:.2f} CPU s)\n"
          f"{profile_summary(stats, driver)}", flush=True)
    return out


def run_case(case: dict[str, Any], conn) -> None:
    """Simulate, build, fit, standard errors; each finished step is sent to the parent."""
    from designs import simulate

    row = dict(case)
    resettable = True

    def step(name: str, call):
        nonlocal resettable
        resettable = reset_peak() and resettable
        t0, c0 = time.perf_counter(), time.process_time()
        out = call()
        row[f"{name}_s"] = time.perf_counter() - t0
        row[f"{name}_cpu_s"] = time.process_time() - c0
        row[f"{name}_peak_gb"] = peak_gb()
        row["peak_rss_gb"] = max(row.get("peak_rss_gb", 0.0), row[f"{name}_peak_gb"])
        row["peaks_reset_per_step"] = resettable
        conn.send(("step", dict(row)))
        return out

    row["load1_before"] = os.getloadavg()[0]
    row["rss_start_gb"] = peak_gb()
    data = step("simulate", lambda: simulate(case["design"], case["n_subjects"],
                                             seed=case["seed"]))
    row["nobs"] = len(data)
    from pymemoe import MEMoE  # imported before the timed steps
    profile = None if case["profile"] is None else Path(case["profile"])
    stem = f"N{case['n_subjects']}_T{case['n_jobs']}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = step("from_formula", lambda: MEMoE.from_formula(
            data=data, n_experts=case["n_experts"], **SPEC))
        res = step("fit", lambda: _profiled(
            lambda: model.fit(random_state=0, n_jobs=case["n_jobs"], **case["fit_kwargs"]),
            None if profile is None else profile / f"{stem}_fit.prof", case["profile_top"],
            PROFILE_DRIVERS["fit"]))
        row.update(n_groups=model.data.n_groups, n_iter=res.n_iter, llf=res.llf,
                   converged=res.converged)
        bse = step("se", lambda: _profiled(
            lambda: res.bse, None if profile is None else profile / f"{stem}_se.prof",
            case["profile_top"], PROFILE_DRIVERS["se"]))
    options = getattr(res, "_options", None)
    try:                                  # results of versions with a start strategy report
        n_best = getattr(res, "n_best", None)        # how many starts reached the best llf
    except Exception:                     # noqa: BLE001 (a figure to record, never a failure)
        n_best = None
    starts = getattr(res, "starts", None)
    if starts is not None and "kind" in starts:   # subsample solutions run on all subjects
        on_all = starts[starts["kind"] == "from sample"]
        row.update(runs_on_all=len(on_all), iters_on_all=int(on_all["n_iter"].sum()))
    row.update(starts=getattr(options, "starts", ""), n_best=n_best,
               sample_subjects=getattr(options, "sample_subjects", None))
    row.update(se_finite=int(np.isfinite(bse).sum()), n_params=len(bse),
               n_starts_used=getattr(options, "n_starts", None),
               options=repr(options) if options is not None else "",
               n_warnings=len(caught), warning=str(caught[0].message)[:100] if caught else "",
               total_s=row["from_formula_s"] + row["fit_s"] + row["se_s"],
               total_cpu_s=row["from_formula_cpu_s"] + row["fit_cpu_s"] + row["se_cpu_s"],
               load1_after=os.getloadavg()[0], status="ok")
    conn.send(("done", row))


def _child(case: dict[str, Any], conn) -> None:
    try:
        run_case(case, conn)
    except BaseException as err:                      # report it in the parent, then fail here
        conn.send(("error", f"{type(err).__name__}: {err}"))
        raise


def run_isolated(case: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """One case in a fresh spawned interpreter; the steps it finished if it fails or exceeds
    ``timeout`` seconds (then it is terminated)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(case, child))
    process.start()
    child.close()
    row, deadline = dict(case, status="started"), (None if timeout is None
                                                   else time.monotonic() + timeout)
    while True:
        wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            ready = parent.poll(wait)
        except (EOFError, OSError):
            ready = False
        if not ready:
            if deadline is not None and time.monotonic() >= deadline:
                process.terminate()
                row["status"] = f"timeout after {timeout:g} s"
            else:
                row["status"] = f"died (exit {process.exitcode})"
            break
        try:
            kind, value = parent.recv()
        except EOFError:
            process.join()
            row["status"] = f"died (exit {process.exitcode})"
            break
        if kind == "error":
            row["status"] = f"error: {value}"
            break
        row = value
        if kind == "done":
            break
    process.join()
    return row


# -- the table ----------------------------------------------------------------------------

def target_text(row: pd.Series) -> str:
    target = TARGETS.get(int(row["n_subjects"])) if row["n_experts"] == 3 else None
    if target is None:
        return ""
    seconds, peak = target
    parts = [f"total <= {seconds:g} s: "
             + ("met" if row.get("total_s", np.inf) <= seconds else "not met")]
    if peak is not None:
        parts.append(f"peak <= {peak:g} GB: "
                     + ("met" if row.get("peak_rss_gb", np.inf) <= peak else "not met"))
    return "; ".join(parts) + ("" if row["defaults"] else " (proxy: not the defaults)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                        help="numbers of subjects N (default: 10000 100000 1000000)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="threads of the fit and of the standard errors, fit(n_jobs=T), one "
                             "case per value (default: 1 2)")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads (OMP/OPENBLAS/MKL variables) of every case (default 1; "
                             "0 leaves the machine's default)")
    parser.add_argument("--experts", type=int, default=3, help="K (default 3)")
    parser.add_argument("--fit-kwargs", nargs="+", default=[], metavar="KEY=VALUE",
                        help="extra fit() arguments, e.g. n_starts=1 (the table then says the fit "
                             "is not the defaults)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds after which a case is stopped (default 1800; 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated data")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="several seeds of the simulated data (the table then gives the "
                             "median and the worst of them); overrides --seed")
    parser.add_argument("--designs", nargs="+", default=["default"],
                        help="designs of the benchmark set (designs.py): default, separated, "
                             "small, pbc")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="run the fit and the SEs under cProfile, write the stats to DIR")
    parser.add_argument("--profile-top", type=int, default=30,
                        help="functions printed per profile (default 30)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/bench_scale.csv"),
                        help="CSV of the table (default benchmarks/out/bench_scale.csv)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fit_kwargs = parse_fit_kwargs(args.fit_kwargs)
    pin_blas_threads(args.blas_threads or None)    # read by the spawned children's BLAS
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    import pymemoe
    commit = git_commit()
    fit_text = ", ".join(f"{k}={v!r}" for k, v in fit_kwargs.items())
    print(f"pymemoe {pymemoe.__version__} ({pymemoe.__file__}, commit {commit or '?'}), "
          f"numpy {np.__version__}, pandas {pd.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, BLAS threads: {args.blas_threads or 'default'}")
    print(f"fit(random_state=0, n_jobs=T{', ' + fit_text if fit_text else ''})"
          + ("" if fit_kwargs else ": the defaults"), flush=True)

    rows = []
    seeds = args.seeds or [args.seed]
    grid = [(design, n, jobs, seed) for design in args.designs for n in args.sizes
            for jobs in args.threads for seed in seeds]
    for design, n, jobs, seed in grid:
        if True:
            case = dict(design=design, n_subjects=n, n_experts=args.experts, n_jobs=jobs,
                        seed=seed,
                        fit_kwargs=fit_kwargs, fit_kwargs_text=fit_text,
                        defaults=not fit_kwargs, blas_threads=args.blas_threads,
                        profile=None if args.profile is None else str(args.profile),
                        profiled=args.profile is not None, profile_top=args.profile_top,
                        commit=commit, cpus=os.cpu_count(), python=platform.python_version())
            print(f"{design}: N = {n}, n_jobs = {jobs}, seed {seed} ...", flush=True)
            row = run_isolated(case, args.timeout or None)
            rows.append(row)
            done = [f"{s} {row[f'{s}_s']:.2f} s" for s in STEPS if f"{s}_s" in row]
            print(f"  {row['status']}: {', '.join(done)}"
                  + (f"; peak {row['peak_rss_gb']:.2f} GB" if "peak_rss_gb" in row else ""),
                  flush=True)
    table = pd.DataFrame(rows).drop(columns=["fit_kwargs", "profile_top"])
    table["target"] = table.apply(target_text, axis=1)

    cols = ["design", "n_subjects", "seed", "nobs", "n_jobs", "simulate_s", "from_formula_s",
            "fit_s", "se_s", "total_s", "total_cpu_s", "peak_rss_gb", "llf", "converged",
            "n_iter", "runs_on_all", "iters_on_all", "load1_before", "status"]
    cols = [c for c in cols if c in table.columns]
    heading = ("fit() defaults" if not fit_kwargs else
               f"fit({fit_text}): NOT the defaults, a proxy")
    print(f"\nEnd to end, K = {args.experts} ({heading}; seconds, GB = 1e9 bytes; total = "
          f"from_formula + fit + SEs, simulation not counted; CPU time of all threads)")
    with pd.option_context("display.width", 220, "display.max_columns", 40):
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        steps = [c for c in ("from_formula_cpu_s", "fit_cpu_s", "se_cpu_s") if c in table]
        peaks = [f"{s}_peak_gb" for s in STEPS if f"{s}_peak_gb" in table]
        print("\nCPU seconds and peak resident memory (GB) per step "
              f"(peaks reset per step: {bool(table.get('peaks_reset_per_step', pd.Series([False])).all())})")
        print(table[["n_subjects", "n_jobs", *steps, *peaks]].to_string(
            index=False, float_format=lambda v: f"{v:.3f}"))
    if len(seeds) > 1 and "total_s" in table:
        print(f"\nOver the {len(seeds)} seeds of the data: median and worst (seconds)")
        summary = table.groupby(["design", "n_subjects", "n_jobs"])[
            ["from_formula_s", "fit_s", "se_s", "total_s"]].agg(["median", "max"])
        print(summary.to_string(float_format=lambda v: f"{v:.2f}"))
    targeted = table[table["target"] != ""]
    if len(targeted):
        print("\nissue 15's targets beside the measured values:")
        for _, r in targeted.iterrows():
            print(f"  N={r['n_subjects']:>9} n_jobs={r['n_jobs']}: total "
                  f"{r.get('total_s', np.nan):.2f} s, peak {r.get('peak_rss_gb', np.nan):.2f} GB "
                  f"-> {r['target']}")
    for _, r in table[table.get("n_warnings", pd.Series(0, index=table.index)).fillna(0) > 0].iterrows():
        print(f"warning in N={r['n_subjects']} n_jobs={r['n_jobs']}: {r['warning']}")
    write_table(table, args.out)
    return 0 if (table["status"] == "ok").all() else 1


if __name__ == "__main__":
    sys.exit(main())
