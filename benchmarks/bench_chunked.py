"""Benchmark of chunked fitting (:func:`pymemoe.chunked.from_chunks`): a MEMoE fitted to data
read from Parquet files batch by batch, never holding all rows in memory.

What it does
------------
1. Writes simulated data to Parquet: N subjects drawn by ``bench_fit.simulate`` (vectorised
   numpy: random intercept and slope on ``time``, expert-specific fixed effects, D_k and
   sigma2_k, multinomial-logit gating on ``x1``, ``x2``; 6-10 visits per subject), in
   ``--files`` files of disjoint subjects (block ``j`` drawn with seed ``seed + j``), each with
   row groups of ``--row-group`` rows. With ``--layout shuffled`` the rows within each file are
   shuffled, so that every subject's rows are spread over several batches. The data are written
   once per N into ``--data-dir`` and reused by later runs (``--rewrite`` to redraw).
2. For each case, in a fresh ``spawn`` subprocess (so that ``ru_maxrss`` is the case's own):

   * ``chunked``: ``pyarrow.parquet.ParquetFile.iter_batches(batch_size=--batch)`` over the
     files, each batch converted to pandas, into ``from_chunks("y ~ time", batches, "id",
     re_formula="~ time", gate_formula="~ x1 + x2", n_experts=K)``; then
     ``model.fit(n_starts=--n-starts, random_state=0, cov_type=--cov-type)``;
   * ``memory`` (comparison, ``--memory-sizes``): ``pandas.read_parquet`` of all files, then
     ``MEMoE.from_formula`` on the whole frame and the same fit.

Reported per case: wall time of building the per-subject statistics (for ``chunked`` the
reading of the Parquet batches included; for ``memory`` the reading is timed apart as
``read_s``) and of the fit (with the covariance of the estimates), the fit's CPU time
(``process_time``, all threads) and the 1-minute load average before it, EM iterations, llf;
peak traced Python/numpy allocations (``tracemalloc``) while building and the fit's peak above
what was alive at its start; the process's peak RSS after building and at the end (``ru_maxrss``:
the interpreter, numpy/pandas/pyarrow and, for ``memory``, the whole data frame included); the
size of the per-subject statistics. tracemalloc slows allocation-heavy Python code (patsy) by a
few per cent; ``--no-tracemalloc`` turns it off. Timings are figures to read, never asserted.

Run (from the repository root; needs ``pyarrow``)::

    python benchmarks/bench_chunked.py --sizes --memory-sizes 100000   # quick: both paths, 1e5
    python benchmarks/bench_chunked.py                                 # N = 1e6, memory at 1e5
    python benchmarks/bench_chunked.py --sizes 1000000 --memory-sizes 100000 --experts 2 \\
        --data-dir /tmp/pymemoe_parquet --out benchmarks/out/bench_chunked.csv
    python benchmarks/bench_chunked.py --sizes --memory-sizes 1000000 --skip-fit \\
        --out benchmarks/out/bench_chunked_build.csv      # building only, both paths at 1e6
"""
from __future__ import annotations

import argparse
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

MB = 1e6
MODEL = dict(formula="y ~ time", groups="id", re_formula="~ time", gate_formula="~ x1 + x2")
COLUMNS = ["id", "time", "x1", "x2", "y"]


def maxrss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / MB if sys.platform == "darwin" else rss * 1024 / MB


def dataset_dir(root: Path, n_subjects: int, n_experts: int, layout: str, seed: int) -> Path:
    return root / f"N{n_subjects}_K{n_experts}_{layout}_seed{seed}"


def write_parquet(args: dict[str, Any]) -> dict[str, Any]:
    """Simulate N subjects block by block and write one Parquet file per block."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench_fit import simulate

    folder = Path(args["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    n, n_files = args["n_subjects"], args["files"]
    sizes = np.diff(np.linspace(0, n, n_files + 1).round().astype(int))
    t0 = time.perf_counter()
    n_rows, offset = 0, 0
    for j, size in enumerate(sizes):
        block = simulate(int(size), args["n_experts"], seed=args["seed"] + j)
        block["id"] += offset
        offset += int(size)
        if args["layout"] == "shuffled":
            rng = np.random.default_rng(args["seed"] + 10_000 + j)
            block = block.iloc[rng.permutation(len(block))]
        table = pa.Table.from_pandas(block[COLUMNS], preserve_index=False)
        pq.write_table(table, folder / f"part-{j:03d}.parquet", row_group_size=args["row_group"])
        n_rows += len(block)
    (folder / "_SUCCESS").write_text(f"{n} subjects, {n_rows} rows\n")
    disk = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    return dict(write_s=time.perf_counter() - t0, n_rows=n_rows, disk_mb=disk / MB)


def parquet_batches(folder: Path, batch_rows: int):
    """pandas DataFrames of ``batch_rows`` rows read from the Parquet files one at a time."""
    import pyarrow.parquet as pq

    for path in sorted(folder.glob("*.parquet")):
        with pq.ParquetFile(path) as handle:
            for batch in handle.iter_batches(batch_size=batch_rows, columns=COLUMNS):
                yield batch.to_pandas()


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Build the statistics and fit; runs in a fresh subprocess."""
    from pymemoe import MEMoE
    from pymemoe.chunked import from_chunks

    folder = Path(case["folder"])
    trace = case["tracemalloc"]
    rss_start = maxrss_mb()
    read_s = 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if trace:
            tracemalloc.start()
        t0 = time.perf_counter()
        if case["path"] == "chunked":
            model = from_chunks(MODEL["formula"], parquet_batches(folder, case["batch"]),
                                MODEL["groups"], re_formula=MODEL["re_formula"],
                                gate_formula=MODEL["gate_formula"], n_experts=case["n_experts"])
        else:
            data = pd.read_parquet(folder, columns=COLUMNS)
            read_s = time.perf_counter() - t0
            model = MEMoE.from_formula(data=data, n_experts=case["n_experts"], **MODEL)
        t1 = time.perf_counter()
        held, build_peak = tracemalloc.get_traced_memory() if trace else (0, 0)
        if trace:
            tracemalloc.reset_peak()
        rss_build = maxrss_mb()
        load1 = os.getloadavg()[0]
        t2, c2 = time.perf_counter(), time.process_time()
        res = (None if case["skip_fit"] else
               model.fit(n_starts=case["n_starts"], random_state=0, cov_type=case["cov_type"]))
        t3, c3 = time.perf_counter(), time.process_time()
        fit_peak = (tracemalloc.get_traced_memory()[1] - held) if trace else 0
        if trace:
            tracemalloc.stop()
    stats_mb = sum(getattr(model.data, f).nbytes
                   for f in ("n_obs", "xx", "xz", "zz", "xy", "zy", "yy", "exog_gate")) / MB
    return dict(case, n_groups=model.data.n_groups, nobs=model.data.nobs,
                read_s=read_s, build_s=t1 - t0, load1=load1,
                fit_s=np.nan if res is None else t3 - t2,
                fit_cpu_s=np.nan if res is None else c3 - c2,
                n_iter=np.nan if res is None else res.n_iter,
                llf=np.nan if res is None else res.llf,
                converged=np.nan if res is None else res.converged,
                n_warnings=len(caught), warning=str(caught[0].message)[:80] if caught else "",
                stats_mb=stats_mb, py_build_peak_mb=build_peak / MB,
                py_fit_peak_mb=fit_peak / MB, rss_start_mb=rss_start,
                rss_after_build_mb=rss_build, maxrss_mb=maxrss_mb())


def isolated(fn, arg: dict[str, Any]) -> dict[str, Any]:
    """Run ``fn(arg)`` in a fresh spawned interpreter (its own ru_maxrss)."""
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, (arg,))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000_000],
                        help="numbers of subjects of the chunked fits (default 1000000)")
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[100_000],
                        help="numbers of subjects fitted both in memory and in chunks "
                             "(default 100000)")
    parser.add_argument("--experts", type=int, nargs="+", default=[2], help="K values")
    parser.add_argument("--n-starts", type=int, default=1)
    parser.add_argument("--cov-type", default="oim", choices=["oim", "robust", "none"])
    parser.add_argument("--files", type=int, default=8, help="Parquet files per data set")
    parser.add_argument("--row-group", type=int, default=250_000, help="rows per row group")
    parser.add_argument("--batch", type=int, default=500_000, help="rows per batch read")
    parser.add_argument("--layout", choices=["sorted", "shuffled"], default="sorted",
                        help="rows sorted by subject within each file, or shuffled")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/pymemoe_bench_parquet"))
    parser.add_argument("--rewrite", action="store_true", help="redraw and rewrite the data")
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--skip-fit", action="store_true",
                        help="only build the statistics (compare the memory of building)")
    add_threads_and_out(parser, "bench_chunked")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_blas_threads(args.threads)     # read by the BLAS of the spawned children at import
    try:
        import pyarrow
    except ImportError:
        print("pyarrow is not installed: skipping the chunked (Parquet) benchmark; "
              "pip install '.[chunked]' to run it")
        return 0

    import pymemoe
    print(f"pymemoe {pymemoe.__version__}, numpy {np.__version__}, pandas {pd.__version__}, "
          f"pyarrow {pyarrow.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, BLAS threads: {args.threads or 'default'}", flush=True)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)

    cases = []
    for k in args.experts:
        for n in args.memory_sizes:
            cases += [dict(path="memory", n_subjects=n, n_experts=k),
                      dict(path="chunked", n_subjects=n, n_experts=k)]
        cases += [dict(path="chunked", n_subjects=n, n_experts=k) for n in args.sizes]
    written: dict[Path, dict[str, Any]] = {}
    rows = []
    for case in cases:
        folder = dataset_dir(args.data_dir, case["n_subjects"], case["n_experts"], args.layout,
                             args.seed)
        if folder not in written:
            if args.rewrite or not (folder / "_SUCCESS").exists():
                print(f"writing {folder} ...", flush=True)
                for old in folder.glob("*.parquet"):
                    old.unlink()
                info = isolated(write_parquet, dict(folder=str(folder), files=args.files,
                                                    row_group=args.row_group, layout=args.layout,
                                                    seed=args.seed, **case))
                print(f"  {info['n_rows']} rows, {info['disk_mb']:.1f} MB on disk, "
                      f"{info['write_s']:.1f} s", flush=True)
            else:
                info = dict(write_s=np.nan)
            info["disk_mb"] = sum(p.stat().st_size for p in folder.glob("*.parquet")) / MB
            written[folder] = info
        case = dict(case, folder=str(folder), batch=args.batch, n_starts=args.n_starts,
                    cov_type=args.cov_type, layout=args.layout, files=args.files,
                    tracemalloc=not args.no_tracemalloc, disk_mb=written[folder]["disk_mb"],
                    skip_fit=args.skip_fit)
        print(f"running {case['path']}: N={case['n_subjects']} K={case['n_experts']} ...",
              flush=True)
        rows.append(isolated(run_case, case))
        r = rows[-1]
        print(f"  build {r['build_s']:.1f} s, fit {r['fit_s']:.1f} s ({r['n_iter']} EM "
              f"iterations), llf {r['llf']:.4f}, peak RSS {r['maxrss_mb']:.0f} MB", flush=True)
    table = pd.DataFrame(rows)
    cols = ["path", "n_groups", "n_experts", "nobs", "disk_mb", "read_s", "build_s", "fit_s",
            "fit_cpu_s", "load1", "n_iter", "converged", "llf", "stats_mb", "py_build_peak_mb",
            "py_fit_peak_mb", "rss_after_build_mb", "maxrss_mb", "n_warnings"]
    print(f"\nChunked fits from Parquet ({args.layout} rows, {args.files} files, row groups of "
          f"{args.row_group}, batches of {args.batch} rows; seconds, MB = 1e6 bytes; "
          f"cov_type={args.cov_type})")
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    pairs = table.pivot_table(index=["n_groups", "n_experts"], columns="path", values="llf")
    if {"memory", "chunked"} <= set(pairs.columns):
        pairs = pairs.dropna()
        for (n, k), row in pairs.iterrows():
            print(f"N={n} K={k}: llf chunked - memory = {row['chunked'] - row['memory']:.3e}")
    for _, row in table[table["n_warnings"] > 0].iterrows():
        print(f"warning in {row['path']} N={row['n_groups']}: {row['warning']}")
    write_table(table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
