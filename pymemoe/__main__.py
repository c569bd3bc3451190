"""Command line: ``python -m pymemoe demo`` runs the PBCseq analysis on the bundled data.

It fits log bilirubin over years since enrolment with a random intercept and slope per patient
and a gating on baseline age, sex and treatment, for K = 1, 2, 3 experts; prints the comparison
table and the summary of the model that BIC prefers.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import pandas as pd

from .datasets import load_pbcseq
from .selection import compare_experts


def demo(n_starts: int | None = None, random_state: int = 0, max_experts: int = 3) -> None:
    data = load_pbcseq()
    data = data.assign(year=data["day"] / 365.25)
    print("PBCseq (R package survival): 312 patients with primary biliary cholangitis, 1945 visits")
    print("Model: log(bili) ~ year, random intercept and slope per patient,")
    print("       gating on baseline age, sex and treatment; experts K = 1..%d\n" % max_experts)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        comparison = compare_experts(
            "np.log(bili) ~ year", data, "id", n_experts=range(1, max_experts + 1),
            re_formula="~ year", gate_formula="~ age + C(sex) + C(trt)",
            n_starts=n_starts, random_state=random_state, fit_kwargs={"cov_type": "robust"})
    elapsed = time.perf_counter() - start
    with pd.option_context("display.width", 160, "display.precision", 3,
                           "display.max_columns", 20):
        print(comparison.table)
    starts = 10 if n_starts is None else n_starts
    print(f"\n(BIC and SABIC use the number of subjects; starts per K: two per expert of the "
          f"K - 1 fit, split in two, and {starts} others; n_best of n_finished reached the "
          f"best llf; random_state={random_state}; {elapsed:.1f} s in all)")
    for w in caught:
        print(f"warning: {w.message}")
    best = comparison.best("BIC")
    print(f"\nBIC prefers K = {best.n_experts}.\n")
    print(best.summary())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pymemoe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="fit the PBCseq case study for K = 1, 2, 3")
    p_demo.add_argument("--n-starts", type=int, default=None,
                        help="starts per K besides the split starts (default 10)")
    p_demo.add_argument("--random-state", type=int, default=0)
    p_demo.add_argument("--max-experts", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(n_starts=args.n_starts, random_state=args.random_state, max_experts=args.max_experts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
