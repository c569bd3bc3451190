"""Run every benchmark of pymemoe with one size argument, each printing its table and writing
its CSV under ``benchmarks/out/``.

What runs (each script in its own interpreter, one after the other, so they do not compete for
the cores; a failing or skipped script does not stop the others):

1. ``bench_fit.py``: fit time, memory and EM iterations for every size in ``--sizes`` and
   K = 2, 3, plus the PBCseq fits beside the R reference timings;
2. ``bench_statsmodels.py``: K = 1 against statsmodels ``MixedLM(reml=False)`` for the sizes up
   to ``--max-statsmodels`` (statsmodels needs about 20 s at N = 10,000 and grows faster than
   linearly);
3. ``bench_r.py``: K = 1 against lme4 and K = 2, 3 against flexmix (and lcmm where it is
   installed) for the sizes up to ``--max-r`` (flexmix needs minutes at N = 1,000); without R it
   says so and skips;
4. ``bench_chunked.py``: the largest size read from Parquet files in chunks (and, up to 10^5
   subjects, the same fit built in memory); without pyarrow it says so and skips;
5. ``bench_threads.py``: multi-start fits with one and two threads (its own fixed sizes), the
   measurement behind ``fit(n_jobs=None)``;
6. ``bench_glmm.py``: binomial experts at ``--glmm-subjects`` subjects (default 10,000; 0 skips
   it): K = 1 (Laplace, and nAGQ = 10 with a random intercept) beside lme4's ``glmer``, and
   K = 2 with gating (Laplace and nAGQ = 10); without R the glmer columns are empty and it
   says so. The K = 2 quadrature case takes minutes;
7. ``bench_scale.py``: end to end (``from_formula``, ``fit()`` with its defaults, the standard
   errors) with the peak resident memory, for every size in ``--sizes``, with ``n_jobs=1`` and
   ``n_jobs=2``, beside issue 15's targets.

Run (from the repository root)::

    python benchmarks/run_all.py --sizes 1000 10000 100000          # the documented tables
    python benchmarks/run_all.py --sizes 1000 --max-r 300 --glmm-subjects 1000   # a quick check
    python benchmarks/run_all.py --sizes 1000000 --max-statsmodels 0 --max-r 0   # N = 10^6
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000],
                        help="numbers of subjects N (default: 1000 10000 100000)")
    parser.add_argument("--max-statsmodels", type=int, default=10_000,
                        help="largest N given to the statsmodels comparison (default 10000)")
    parser.add_argument("--max-r", type=int, default=1_000,
                        help="largest N given to the R comparisons (default 1000)")
    parser.add_argument("--glmm-subjects", type=int, default=10_000,
                        help="subjects of the binomial-expert benchmark bench_glmm.py "
                             "(default 10000; 0 skips it)")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads of every fit (default 1, as R's reference BLAS)")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(script, arguments) of every benchmark to run; sizes a script does not take are left out."""
    sizes = sorted(set(args.sizes))
    threads = ["--threads", str(args.threads)]
    runs = [("bench_fit.py", ["--sizes", *map(str, sizes), *threads])]
    small = [str(n) for n in sizes if n <= args.max_statsmodels]
    if small:
        runs.append(("bench_statsmodels.py", ["--sizes", *small, *threads]))
    r_sizes = [str(n) for n in sizes if n <= args.max_r]
    if r_sizes:
        runs.append(("bench_r.py", ["--sizes", *r_sizes, *threads]))
    largest = sizes[-1]
    memory = [str(largest)] if largest <= 100_000 else []
    runs.append(("bench_chunked.py", ["--sizes", str(largest), "--memory-sizes", *memory, *threads]))
    runs.append(("bench_threads.py", threads))
    if args.glmm_subjects > 0:
        runs.append(("bench_glmm.py", ["--subjects", str(args.glmm_subjects), *threads]))
    runs.append(("bench_scale.py", ["--sizes", *map(str, sizes), "--threads", "1", "2",
                                    "--blas-threads", str(args.threads)]))
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outcomes = []
    for script, script_args in plan(args):
        command = [sys.executable, str(HERE / script), *script_args]
        print(f"\n=== {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(command)
        outcomes.append((script, code, time.perf_counter() - start))
    ran = {script for script, _, _ in outcomes}
    skipped = {"bench_statsmodels.py", "bench_r.py", "bench_glmm.py"} - ran
    print("\n=== summary")
    for script, code, seconds in outcomes:
        print(f"{script:24s} {'ok' if code == 0 else f'failed (exit {code})':18s} {seconds:8.1f} s")
    for script in sorted(skipped):
        why = ("--glmm-subjects 0" if script == "bench_glmm.py"
               else "every size is above its --max-* limit")
        print(f"{script:24s} not run: {why}")
    return max((code for _, code, _ in outcomes), default=0)


if __name__ == "__main__":
    sys.exit(main())
