"""Benchmark of the distributed fit: 1e6 and 1e7 subjects read from Parquet with
``dask.dataframe.read_parquet`` and fitted on a ``distributed.LocalCluster`` of worker processes.

What it does
------------
1. Writes the data to Parquet under ``--data-dir`` (default ``benchmarks/out/parquet``), once
   per N (reused by later runs; ``--rewrite`` to redraw): ``bench_fit.simulate`` (random
   intercept and slope on ``time``, expert-specific fixed effects, D_k and sigma2_k,
   multinomial-logit gating on ``x1``, ``x2``; 6-10 visits, 8 on average) in batches of
   ``--batch`` subjects, batch ``j`` drawn with seed ``seed + j`` and written as one file, so
   memory stays at one batch. Before writing, the free space of the data directory is checked
   against the size the data could take (44 bytes per row uncompressed; Parquet's compression
   makes it about 20).
2. For each N, in a fresh ``spawn`` subprocess (the driver), with a fresh
   ``LocalCluster(n_workers=--workers, threads_per_worker=1, processes=True)``:
   ``from_dask("y ~ time", dd.read_parquet(folder), "id", re_formula="~ time",
   gate_formula="~ x1 + x2", n_experts=K)``; ``model.fit(random_state=0)`` (the defaults, or
   ``n_starts=--n-starts``); the default standard errors (``res.bse``: the observed
   information, computed on first use); ``res.posterior`` (the one step that gathers all
   subjects' posteriors into the driver). The starts run in the driver on a sample of at most
   ``sample_limit`` (100,000) subjects; the best start's polish on all subjects is judged
   against the start's log-likelihood on all subjects (``em._finish_start`` does so since
   commit f59f186; before it, ``--fix-finish`` patched that in, and the option is now accepted
   and ignored so that the documented commands still run).

Reported per N: wall time of each step; the peak resident memory (``VmHWM`` of
``/proc/<pid>/status``) of the driver (the scheduler of a LocalCluster runs in it) and of each
worker process during each step (the peaks are reset between steps by writing 5 to
``/proc/<pid>/clear_refs``), and over the whole case; the traffic between driver and workers
(:class:`pymemoe.distributed.Traffic`: passes, tasks, payload bytes each way); EM iterations,
llf, converged; the 1-minute load average before and after (the machine is shared: a busy
machine slows every step). Timings are figures to read, never asserted.

Run (from the repository root; needs ``dask[dataframe]``, ``distributed``, ``pyarrow``)::

    python benchmarks/bench_distributed.py --n-starts 1                # N = 1e6, 1e7 (the docs)
    python benchmarks/bench_distributed.py --sizes 100000 --n-starts 1      # a quick check
    python benchmarks/bench_distributed.py --sizes 1000000                  # fit()'s defaults
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import GB, add_threads_and_out, peak_gb, pin_blas_threads, reset_peak, write_table  # noqa: E402

MODEL = dict(re_formula="~ time", gate_formula="~ x1 + x2")
COLUMNS = ["id", "time", "x1", "x2", "y"]
BYTES_PER_ROW = 44              # at most: five 8-byte columns, uncompressed, plus metadata


# -- memory of the processes (peak_gb, reset_peak: _common.py) --------------------------------

class Peaks:
    """Peaks of the driver and of each worker process, per step and over the whole case."""

    def __init__(self, client) -> None:
        self.client = client
        self.overall: dict[str, float] = {}
        self.resettable = True

    def start(self) -> None:
        self.resettable = reset_peak() and all(self.client.run(reset_peak).values())

    def stop(self, step: str, row: dict[str, Any]) -> None:
        peaks = {"driver": peak_gb()}
        for j, (_, value) in enumerate(sorted(self.client.run(peak_gb).items())):
            peaks[f"worker{j}"] = value
        for name, value in peaks.items():
            row[f"{step}_peak_{name}_gb"] = value
            self.overall[name] = max(self.overall.get(name, 0.0), value)


# -- data -------------------------------------------------------------------------------------

def dataset_dir(root: Path, n_subjects: int, n_experts: int, seed: int) -> Path:
    return root / f"N{n_subjects}_K{n_experts}_seed{seed}"


def write_parquet(folder: Path, n_subjects: int, n_experts: int, seed: int,
                  batch: int) -> dict[str, Any]:
    """Simulate ``n_subjects`` in batches of ``batch`` and write one Parquet file per batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench_fit import simulate

    folder.mkdir(parents=True, exist_ok=True)
    expected = n_subjects * 8 * BYTES_PER_ROW
    free = shutil.disk_usage(folder).free
    if free < 1.5 * expected:
        raise SystemExit(f"{folder}: {free / GB:.1f} GB free, the data need about "
                         f"{expected / GB:.1f} GB; choose another --data-dir")
    t0 = time.perf_counter()
    n_rows, offset = 0, 0
    sizes = np.diff(np.r_[np.arange(0, n_subjects, batch), n_subjects])
    for j, size in enumerate(sizes):
        block = simulate(int(size), n_experts, seed=seed + j)
        block["id"] += offset
        offset += int(size)
        pq.write_table(pa.Table.from_pandas(block[COLUMNS], preserve_index=False),
                       folder / f"part-{j:04d}.parquet")
        n_rows += len(block)
    (folder / "_SUCCESS").write_text(f"{n_subjects} subjects, {n_rows} rows\n")
    disk = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    print(f"wrote {n_rows} rows of {n_subjects} subjects in {len(sizes)} files "
          f"({disk / GB:.2f} GB) in {time.perf_counter() - t0:.0f} s", flush=True)
    return dict(write_s=time.perf_counter() - t0, disk_gb=disk / GB)


# -- one case ---------------------------------------------------------------------------------

def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Cluster, from_dask, fit, standard errors, posterior; runs in a fresh subprocess."""
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    from pymemoe.chunked import from_dask

    row = dict(case)
    row["load1_before"] = os.getloadavg()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # a dashboard port in use, etc.
        cluster = LocalCluster(n_workers=case["workers"], threads_per_worker=1, processes=True,
                               memory_limit=case["memory_limit"], dashboard_address=None)
        client = Client(cluster)
    peaks = Peaks(client)
    try:
        peaks.start()
        t0 = time.perf_counter()
        ddf = dd.read_parquet(case["folder"], columns=COLUMNS)
        model = from_dask("y ~ time", ddf, "id", n_experts=case["n_experts"], **MODEL)
        row.update(from_dask_s=time.perf_counter() - t0, input_partitions=ddf.npartitions,
                   partitions=model.data.npartitions, n_groups=model.data.n_groups,
                   nobs=model.data.nobs)
        peaks.stop("from_dask", row)
        print(f"  from_dask {row['from_dask_s']:.1f} s: {model.data}", flush=True)
        traffic = model.data.traffic
        traffic.reset()

        peaks.start()
        fit_kw = {} if case["n_starts"] is None else {"n_starts": case["n_starts"]}
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = model.fit(random_state=0, **fit_kw)
        row.update(fit_s=time.perf_counter() - t0, n_iter=res.n_iter, llf=res.llf,
                   converged=res.converged, n_warnings=len(caught),
                   fit_passes=traffic.passes, fit_tasks=traffic.tasks,
                   fit_bytes_out=traffic.bytes_out, fit_bytes_in=traffic.bytes_in,
                   fit_largest_in=traffic.largest_in, fit_wait_s=traffic.wait_s)
        peaks.stop("fit", row)
        print(f"  fit {row['fit_s']:.1f} s (llf {res.llf:.4f}, {traffic.passes} passes)",
              flush=True)
        traffic.reset()

        peaks.start()
        t0 = time.perf_counter()
        finite = int(np.isfinite(res.bse).sum())
        row.update(se_s=time.perf_counter() - t0, se_finite=finite, se_passes=traffic.passes,
                   se_bytes_out=traffic.bytes_out, se_bytes_in=traffic.bytes_in,
                   se_wait_s=traffic.wait_s)
        peaks.stop("se", row)
        print(f"  standard errors {row['se_s']:.1f} s", flush=True)

        peaks.start()
        t0 = time.perf_counter()
        posterior = res.posterior
        row.update(posterior_s=time.perf_counter() - t0, posterior_rows=len(posterior))
        peaks.stop("posterior", row)
        for name, value in peaks.overall.items():
            row[f"peak_{name}_gb"] = value
        row["peaks_reset_per_step"] = peaks.resettable
    finally:
        row["load1_after"] = os.getloadavg()[0]
        client.close()
        cluster.close()
    return row


def _child(case: dict[str, Any], conn) -> None:
    try:
        conn.send(("ok", run_case(case)))
    except BaseException as err:                 # report it in the parent, then fail there
        conn.send(("error", repr(err)))
        raise


def run_isolated(case: dict[str, Any]) -> dict[str, Any]:
    """One case in a fresh spawned interpreter, so that the driver's peak is its own (a
    process, not a pool: a pool's daemonic workers may not start the cluster's workers)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(case, child))
    process.start()
    status, value = parent.recv()
    process.join()
    if status != "ok":
        raise RuntimeError(f"the case N={case['n_subjects']} failed: {value}")
    return value


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--experts", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="auto",
                        help="memory_limit of each worker (distributed's; default 'auto': the "
                             "machine's memory divided among the workers)")
    parser.add_argument("--n-starts", type=int, default=None,
                        help="fit(n_starts=...); default: fit()'s default")
    parser.add_argument("--fix-finish", action="store_true",
                        help="ignored: em.py compares the polish after sampled starts with the "
                             "start's log-likelihood on all subjects itself since f59f186 (this "
                             "option patched that in before)")
    parser.add_argument("--batch", type=int, default=250_000, help="subjects per Parquet file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/out/parquet"))
    parser.add_argument("--rewrite", action="store_true", help="redraw the Parquet data")
    add_threads_and_out(parser, "bench_distributed", threads=1)
    args = parser.parse_args(argv)
    pin_blas_threads(args.threads)             # one BLAS thread per worker process

    rows = []
    for n in args.sizes:
        folder = dataset_dir(args.data_dir, n, args.experts, args.seed)
        if args.rewrite or not (folder / "_SUCCESS").is_file():
            if folder.exists():
                shutil.rmtree(folder)
            write_parquet(folder, n, args.experts, args.seed, args.batch)
        case = dict(n_subjects=n, n_experts=args.experts, workers=args.workers,
                    memory_limit=args.memory_limit, n_starts=args.n_starts,
                    fix_finish=args.fix_finish,
                    folder=str(folder), cpus=os.cpu_count(), python=platform.python_version())
        print(f"N = {n}:", flush=True)
        rows.append(run_isolated(case))
    table = pd.DataFrame(rows)
    show = ["n_subjects", "nobs", "partitions", "from_dask_s", "fit_s", "fit_wait_s", "se_s",
            "posterior_s",
            "n_iter", "llf", "converged", "peak_driver_gb"]
    show += sorted(c for c in table.columns if c.startswith("peak_worker"))
    show += ["fit_passes", "fit_bytes_out", "fit_bytes_in", "load1_before", "load1_after"]
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        print(table[show].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        steps = ["from_dask", "fit", "se", "posterior"]
        print("\npeak resident memory (GB) per step:")
        for _, r in table.iterrows():
            for step in steps:
                cells = {k.split("_peak_")[1].removesuffix("_gb"): r[k] for k in table.columns
                         if k.startswith(f"{step}_peak_")}
                print(f"  N={r['n_subjects']:>9} {step:>10}: "
                      + ", ".join(f"{name} {value:.2f}" for name, value in cells.items()))
        for _, r in table.iterrows():
            passes = max(r["fit_passes"], 1)
            print(f"  N={r['n_subjects']:>9} per pass: {r['fit_bytes_out'] / passes:.0f} B out, "
                  f"{r['fit_bytes_in'] / passes:.0f} B in (fit, {r['fit_passes']} passes; "
                  f"the largest result {r['fit_largest_in']} B: the starts' sample)")
    write_table(table, args.out)
    return table


if __name__ == "__main__":
    main()
