"""Multi-start fits with one thread and with two: where do threads pay off?

``MEMoE.fit(n_jobs=None)`` runs the starts in threads only when there are at least
``pymemoe.model.PARALLEL_MIN_PAIRS`` subject-expert pairs; this script measures the crossover
that threshold comes from. Cases: PBCseq (312 subjects) with 20 screened starts as lcmm's
gridsearch, and with 10 full starts; simulated data (``bench_fit.simulate``, K = 3) of growing
size with 4 starts. Each fit uses ``cov_type="none"``; the table shows the median wall time of
``--repeats`` fits per thread count and checks that the log-likelihood does not depend on it.

Run (from the repository root)::

    python benchmarks/bench_threads.py                    # about a minute
    python benchmarks/bench_threads.py --sizes 2000 10000 50000 --repeats 3
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_threads_and_out, pin_blas_threads, write_table  # noqa: E402


def cases(sizes: list[int]):
    from pymemoe import MEMoE
    from pymemoe.datasets import load_pbcseq

    from bench_fit import simulate

    pbc = load_pbcseq().assign(year=lambda d: d["day"] / 365.25)
    yield ("PBCseq nwg K=2, 20 screened starts", 312 * 2,
           MEMoE.from_formula("np.log(bili) ~ year", data=pbc, groups="id", re_formula="~ year",
                              n_experts=2, cov_re="proportional", scale="shared"),
           dict(n_starts=20, screen_iter=30, n_finish=1))
    yield ("PBCseq full K=2, 10 starts", 312 * 2,
           MEMoE.from_formula("np.log(bili) ~ year", data=pbc, groups="id", re_formula="~ year",
                              n_experts=2), dict(n_starts=10))
    for n in sizes:
        df = simulate(n, 3, seed=1)
        yield (f"simulated N={n} K=3, 4 starts", n * 3,
               MEMoE.from_formula("y ~ time", data=df, groups="id", re_formula="~ time",
                                  gate_formula="~ x1 + x2", n_experts=3), dict(n_starts=4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 10_000, 50_000])
    parser.add_argument("--repeats", type=int, default=3)
    add_threads_and_out(parser, "bench_threads", threads=1)
    args = parser.parse_args(argv)
    pin_blas_threads(args.threads)   # before numpy's BLAS is loaded by the imports below
    from pymemoe.model import PARALLEL_MIN_PAIRS

    rows = []
    for name, pairs, model, options in cases(args.sizes):
        row = dict(case=name, pairs=pairs)
        for jobs in (1, 2):
            walls = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                res = model.fit(random_state=0, cov_type="none", n_jobs=jobs, **options)
                walls.append(time.perf_counter() - start)
            row[f"s_{jobs}_thread"] = float(np.median(walls))
            row[f"llf_{jobs}_thread"] = res.llf
        row["speedup_2"] = row["s_1_thread"] / row["s_2_thread"]
        row["same_llf"] = row["llf_1_thread"] == row["llf_2_thread"]
        rows.append(row)
        print(f"{name:36s} 1 thread {row['s_1_thread']:6.2f} s, 2 threads {row['s_2_thread']:6.2f} s",
              flush=True)
    table = pd.DataFrame(rows)
    print(f"\nmedian of {args.repeats} fits; n_jobs=None uses threads from {PARALLEL_MIN_PAIRS} "
          "subject-expert pairs")
    print(table[["case", "pairs", "s_1_thread", "s_2_thread", "speedup_2", "same_llf"]].to_string(
        index=False, float_format=lambda v: f"{v:.2f}"))
    write_table(table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
