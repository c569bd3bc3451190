"""Helpers every benchmark script shares."""
from __future__ import annotations

import os
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
