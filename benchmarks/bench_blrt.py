"""Cost of the bootstrap likelihood ratio test on PBCseq (the model of the quick start).

Fits K - 1 and K experts to ``np.log(bili) ~ year`` with random intercept and slope and the
gating ``~ C(sex) + age + C(trt)`` (default fit options: 10 starts), then runs
``pymemoe.bootstrap_lrt`` and prints its summary, the wall-clock and CPU seconds and the
seconds per draw::

    PYTHONPATH=. python benchmarks/bench_blrt.py --k 2 --n-boot 39 --n-jobs 1
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from pymemoe import MEMoE, bootstrap_lrt
from pymemoe.datasets import load_pbcseq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=2, help="K of the full model (default 2)")
    parser.add_argument("--n-boot", type=int, default=39, help="draws (default 39)")
    parser.add_argument("--n-jobs", type=int, default=1, help="threads (default 1)")
    parser.add_argument("--n-starts", type=int, default=10, help="starts of every fit (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    df = load_pbcseq()
    df["year"] = df["day"] / 365.25
    start = time.perf_counter()
    fits = [MEMoE.from_formula("np.log(bili) ~ year", data=df, groups="id", re_formula="~ year",
                               gate_formula="~ C(sex) + age + C(trt)", n_experts=K)
            .fit(n_starts=args.n_starts, random_state=args.seed)
            for K in (args.k - 1, args.k)]
    print(f"the two fits: {time.perf_counter() - start:.1f} s, llf {[round(f.llf, 3) for f in fits]}")
    cpu = time.process_time()
    test = bootstrap_lrt(*fits, n_boot=args.n_boot, random_state=args.seed, n_jobs=args.n_jobs)
    cpu = time.process_time() - cpu
    print(test.summary())
    print(f"\n{args.n_boot} draws, {args.n_jobs} thread(s): {test.elapsed:.1f} s wall-clock, "
          f"{cpu:.1f} s CPU, {test.elapsed / args.n_boot:.2f} s per draw; "
          f"null median {np.median(test.null_distribution):.2f}")


if __name__ == "__main__":
    main()
