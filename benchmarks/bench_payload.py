"""What one pass of a distributed fit sends to each partition and gets back, in bytes, as a
function of the model's dimensions: K experts, p fixed effects, q random effects, r gating
columns (Gaussian experts, full model: every parameter expert-specific).

What it does
------------
For each (K, p, q, r) of ``--dims``: fits the model on a small simulated data set
(``bench_fit.simulate``, in memory; the values of the parameters do not change the sizes),
then calls every block function of a pass on the data as one partition, exactly as a worker
does (:func:`pymemoe.distributed._pass_task`), and measures

* ``out``: the function and its arguments pickled by cloudpickle, as
  :class:`pymemoe.distributed.DaskBlocks` counts them (``Traffic.bytes_out`` per task);
* ``back``: the partial sum pickled with protocol 5 and out-of-band buffers, as
  ``Traffic.bytes_in`` counts it;
* ``raw``: the bytes of the numbers in the partial (8 per double), beside the count of doubles
  given by the formula read from the code (``FORMULAS``), which the script checks.

The passes: the E-step with the M-step's GLS sums (``em._e_block``), the variance sums of the
M-step (``GaussianFamily.variance_block``), a trial of the gating Newton step
(``gating.gating_block``), a polish evaluation (``em._value_score_block``), the polish's
preconditioner and gradient check (``em._score_block``), the data summary
(``GaussianFamily.totals_block``: the start and the boundary check of the standard errors), and
the standard errors' pass (``inference._louis_block``). None needs a cluster: the sizes are
those of the objects ``distributed`` would send (its own framing and the scheduler's
messages, a few hundred bytes per task, come on top).

Run (from the repository root; needs ``cloudpickle``, which ``distributed`` installs)::

    python benchmarks/bench_payload.py                       # K = 3, p = q = 2, r = 3 and variants
    python benchmarks/bench_payload.py --dims 3,2,2,3 5,4,3,6
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_table  # noqa: E402


def n_params(K: int, p: int, q: int, r: int) -> int:
    """Parameters of the full model: gating (K - 1) r, beta K p, D_k K q (q + 1) / 2, sigma2_k K."""
    return (K - 1) * r + K * p + K * q * (q + 1) // 2 + K


# Doubles in each partial sum, read from the code (pymemoe/em.py, families/gaussian.py,
# gating.py, likelihood.py, inference.py, expert_hessian.py); d = n_params, n_nu = p + q(q+1)/2 + 1.
FORMULAS = {
    "e_step": ("llf, sizes (K), GLS gram (K, p, p), rhs (K, p)",
               lambda K, p, q, r, d: 1 + K + K * p * p + K * p),
    "variance": ("R_k (K, q, q), S_k (K), sizes (K), observations (K)",
                 lambda K, p, q, r, d: K * q * q + 3 * K),
    "gating_trial": ("Q, gradient ((K-1) r), Hessian ((K-1) r)^2",
                     lambda K, p, q, r, d: 1 + (K - 1) * r + ((K - 1) * r) ** 2),
    "polish_eval": ("llf, gating score (K, r), beta (K, p), D (K, q, q), sigma2 (K)",
                    lambda K, p, q, r, d: 1 + K * r + K * p + K * q * q + K),
    "polish_score": ("llf, score (d), sums of squares (d)",
                     lambda K, p, q, r, d: 1 + 2 * d),
    "summary": ("X'X (p, p), X'y (p), y'y, rows, diag Z'Z (q), subjects",
                lambda K, p, q, r, d: p * p + p + q + 3),
    "se_information": ("missing information (d, d), meat (d, d), gating information "
                       "((K-1) r)^2, gradient sums K (p + q^2 + 1), Hessians K n_nu^2",
                       lambda K, p, q, r, d: 2 * d * d + ((K - 1) * r) ** 2
                       + K * (p + q * q + 1) + K * (p + q * (q + 1) // 2 + 1) ** 2),
}

RE_BY_Q = {1: "~ 1", 2: "~ time", 3: "~ time + I(time ** 2)"}
GATE_BY_R = {1: "~ 1", 2: "~ x1", 3: "~ x1 + x2", 4: "~ x1 + x2 + x1:x2"}


def model_for(K: int, p: int, q: int, r: int, n_subjects: int):
    from pymemoe import MEMoE

    from bench_fit import simulate

    formula = {1: "y ~ 1", 2: "y ~ time", 3: "y ~ time + x2", 4: "y ~ time + x1 + x2"}[p]
    data = simulate(n_subjects, min(K, 3), seed=K * 1000 + p * 100 + q * 10 + r)
    return MEMoE.from_formula(formula, data, "id", re_formula=RE_BY_Q[q],
                              gate_formula=GATE_BY_R[r], n_experts=K)


def raw_bytes(obj) -> int:
    """Bytes of the numbers in ``obj`` (arrays, floats, ints; nested tuples and lists)."""
    if obj is None:
        return 0
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (tuple, list)):
        return sum(raw_bytes(o) for o in obj)
    return 8                                                   # a Python or numpy scalar


def measure(K: int, p: int, q: int, r: int, n_subjects: int) -> list[dict]:
    from pymemoe import em, gating, inference
    from pymemoe._model.likelihood import e_step
    from pymemoe.distributed import _function_size, _pickled_size
    from pymemoe.families.gaussian import GaussianFamily

    model = model_for(K, p, q, r, n_subjects)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(n_starts=1, random_state=0, cov_type="none")
    data, structure, params = model.data, model.structure, res.state
    assert (data.k_fe, data.k_re, data.k_gate) == (p, q, r), (data.k_fe, data.k_re, data.k_gate)
    state = e_step(data, params)
    d = n_params(K, p, q, r)
    assert structure.n_params == d, (structure.n_params, d)
    calls = {
        "e_step": (em._e_block, (params,), True),
        "variance": (GaussianFamily.variance_block, (params,), False),
        "gating_trial": (gating.gating_block, (params.gamma,), False),
        "polish_eval": (em._value_score_block, (params,), True),
        "polish_score": (em._score_block, (params, structure, True), True),
        "summary": (GaussianFamily.totals_block, (), False),
        "se_information": (inference._louis_block, (structure, params, True), True),
    }
    rows = []
    for name, (fn, args, returns_state) in calls.items():
        out = fn(data, state, *args)
        partial = out[1] if returns_state else out
        what, formula = FORMULAS[name]
        doubles = formula(K, p, q, r, d)
        raw = raw_bytes(partial)
        if raw != 8 * doubles:
            raise AssertionError(f"{name} at K={K} p={p} q={q} r={r}: {raw} bytes, "
                                 f"the formula says {doubles} doubles")
        rows.append(dict(K=K, p=p, q=q, r=r, n_params=d, pass_=name, what=what,
                         doubles=doubles, raw_bytes=raw, out_bytes=_function_size(fn, args),
                         back_bytes=_pickled_size(partial)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", nargs="+", default=["3,2,2,3", "2,2,2,3", "5,2,2,3",
                                                      "3,4,2,3", "3,2,1,3", "3,2,3,3", "3,2,2,1"],
                        help="K,p,q,r tuples (p <= 4, q <= 3, r <= 4)")
    parser.add_argument("--subjects", type=int, default=2_000, help="subjects of each fit")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/bench_payload.csv"))
    args = parser.parse_args(argv)
    rows = []
    for dims in args.dims:
        K, p, q, r = (int(v) for v in dims.split(","))
        rows += measure(K, p, q, r, args.subjects)
    table = pd.DataFrame(rows).rename(columns={"pass_": "pass"})
    print("Doubles of each partial sum (formula from the code, checked against the objects), "
          "and bytes per partition and pass: out = function + arguments (cloudpickle), back = "
          "the partial (pickle protocol 5)\n")
    for name, (what, _) in FORMULAS.items():
        print(f"  {name:15s} {what}")
    print()
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.drop(columns="what").to_string(index=False))
    write_table(table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
