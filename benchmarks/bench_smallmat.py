"""Benchmark of the lead-layout matrix product (``pymemoe._linalg.smallmat.lead_matmul``).

What it measures: microseconds per product of stacks of small matrices in the lead layout
((n, m, K, N) x (m, r, K, N) -> (n, r, K, N), K = 3 experts, N subjects), for the shapes the
kernels use (q x q with q = 2, 3; (p + q) x (p + q) with p + q = 5, 6; matrix-vector), on stacks
of a few hundred to 10^5 subjects, for

* ``einsum``: one ``np.einsum`` call into an entry-major output (what :func:`lead_matmul`
  does for stacks of at most ``EINSUM_TAIL`` matrices with operands of the same shape);
* ``loop``: a loop over the n r m index triples, each an elementwise multiply-add on whole
  (K, N) arrays (what it does otherwise);
* ``matmul``: numpy's batched ``matmul`` on the axes moved last;

each with both operands full stacks, and (``bcast`` columns) with the right operand one matrix
per expert broadcast over the subjects, as the Gaussian kernels multiply their stacks (tails
(N, K), subjects first) by parameters (tails (1, K)). The variants
agree to rounding (checked before timing). Timings are figures to read, never
asserted; on a loaded machine compare the ratios within one run.

Run (from the repository root)::

    python benchmarks/bench_smallmat.py
    python benchmarks/bench_smallmat.py --subjects 500 5000
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from pymemoe._linalg import smallmat
from pymemoe._linalg.smallmat import lead_matmul

SHAPES = [(2, 2, 2), (3, 3, 3), (5, 5, 5), (6, 6, 6), (3, 3, 1), (6, 6, 1)]


def loop_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`lead_matmul`'s loop over the index triples, whatever the stack's size."""
    limit = smallmat.EINSUM_TAIL
    smallmat.EINSUM_TAIL = -1
    try:
        return lead_matmul(a, b)
    finally:
        smallmat.EINSUM_TAIL = limit


def einsum_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    shape = (a.shape[0], b.shape[1]) + np.broadcast_shapes(a.shape[2:], b.shape[2:])
    return np.einsum("ij...,jk...->ik...", a, b, out=np.empty(shape))


def batched_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    moved = np.moveaxis(a, (0, 1), (-2, -1)) @ np.moveaxis(b, (0, 1), (-2, -1))
    return np.moveaxis(moved, (-2, -1), (0, 1))


def microseconds(fn, a, b, budget: float = 0.3) -> float:
    fn(a, b)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget:
        fn(a, b)
        reps += 1
    return (time.perf_counter() - start) / reps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[500, 5000, 100_000])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'shape':>10} {'subjects':>9} {'einsum us':>10} {'loop us':>9} {'matmul us':>10} "
          f"{'einsum bcast':>13} {'loop bcast':>11}")
    for n, m, r in SHAPES:
        for N in args.subjects:
            a, b = rng.normal(size=(n, m, 3, N)), rng.normal(size=(m, r, 3, N))
            a2 = np.ascontiguousarray(np.swapaxes(a, 2, 3))     # tails (N, K)
            b1 = rng.normal(size=(m, r, 1, 3))
            for x, y in ((a, b), (a2, b1)):
                ref = lead_matmul(x, y)
                for other in (einsum_matmul, loop_matmul, batched_matmul):
                    np.testing.assert_allclose(other(x, y), ref, rtol=1e-12, atol=1e-12)
            times = [microseconds(fn, a, b) for fn in (einsum_matmul, loop_matmul, batched_matmul)]
            times += [microseconds(fn, a2, b1) for fn in (einsum_matmul, loop_matmul)]
            print(f"{str((n, m, r)):>10} {N:>9} {times[0]:>10.0f} {times[1]:>9.0f} "
                  f"{times[2]:>10.0f} {times[3]:>13.0f} {times[4]:>11.0f}", flush=True)

if __name__ == "__main__":
    main()
