"""Helpers every benchmark script shares."""
from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_blas_threads(threads: int | None) -> None:
    """Set the BLAS thread count of the subprocesses a benchmark spawns (their BLAS reads the
    variables at import); ``None`` leaves the machine's default."""
    if threads is not None:
        for var in BLAS_THREAD_VARIABLES:
            os.environ[var] = str(threads)


def write_table(table, path: Path) -> None:
    """Write a benchmark's table (a pandas DataFrame) as CSV, creating its folder, and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    print(f"\nwrote {path}")


def add_threads_and_out(parser, name: str, threads: int | None = None) -> None:
    """The options every benchmark takes: ``--threads`` (see :func:`pin_blas_threads`; default
    ``threads``) and ``--out``, the CSV written (``benchmarks/out/<name>.csv`` by default)."""
    parser.add_argument("--threads", type=int, default=threads,
                        help="BLAS threads (OMP/OPENBLAS/MKL variables) of the fits and of R "
                             f"(default: {threads if threads is not None else 'the machine default'})")
    parser.add_argument("--out", type=Path, default=Path(f"benchmarks/out/{name}.csv"),
                        help=f"CSV of the table (default benchmarks/out/{name}.csv)")


GB = 1e9


def peak_gb() -> float:
    """Peak resident memory of this process (VmHWM) since the last :func:`reset_peak`, in GB;
    without /proc, the peak since the start (``getrusage``). Also run on Dask workers
    (``client.run(peak_gb)``)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB on Linux, bytes on macOS
    return rss / GB if sys.platform == "darwin" else rss * 1024 / GB


def reset_peak() -> bool:
    """Reset VmHWM to the current resident size (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False
