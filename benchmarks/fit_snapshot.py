"""Fits of the reference cases, written down number by number: the log-likelihood, every
estimate and every standard error (oim and robust), for comparing two versions of pymemoe.

A change that must not change behaviour (a move of code, a new layout, a faster kernel) is
checked by writing a snapshot before and after and comparing them::

    python benchmarks/fit_snapshot.py --out before.json          # on the old version
    python benchmarks/fit_snapshot.py --out after.json --compare before.json

The cases are those of the reference tests, through the public API only (so that any version
runs them): lme4 and lcmm on PBCseq (K = 1, 2 with shared, proportional and free covariances,
with gating), flexmix's full MEMoE (K = 2), the default fit of the demo (K = 3), glmer's
binomial and Poisson cases (Laplace and nAGQ = 25), flexmix's mixtures of GLMs, a binary
mixture with random effects, and simulated Gaussian data with the start search on a subsample
(6,000 subjects). ``--compare`` prints, per case, the largest absolute difference of the
log-likelihood, of the estimates and of the standard errors, and whether they are bit for bit
equal; it exits with status 1 when one exceeds ``--tol`` (default 1e-10).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pymemoe import MEMoE, simulate
from pymemoe.datasets import load_pbcseq

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "tests" / "reference" / "results"
GATE_R = "~ C(sex, Treatment('m')) + age + C(trt)"


def _pbc() -> pd.DataFrame:
    df = load_pbcseq()
    return df.assign(year=df["day"] / 365.25, logbili=np.log(df["bili"]))


def _glmm_csv(name: str) -> pd.DataFrame:
    return pd.read_csv(RESULTS / "glmm" / f"{name}.csv")


def _sim_glmm(name: str, q: int, n_experts: int, **kw) -> MEMoE:
    df = _glmm_csv(f"sim_{name}_k2")
    X = pd.DataFrame({"Intercept": 1.0, "time": df["time"]})
    gate = pd.DataFrame({"Intercept": 1.0, "x1": df["x1"], "x2": df["x2"]})
    exog_re = X.iloc[:, :q] if q else np.empty((len(df), 0))
    return MEMoE(df["y"], X, df["subject"], exog_re=exog_re, exog_gate=gate,
                 n_experts=n_experts, family="binomial" if name == "binary" else "poisson",
                 exposure=df.get("exposure") if name == "poisson" else None, **kw)


def _bacteria(**kw) -> MEMoE:
    df = _glmm_csv("bacteria")
    X = pd.DataFrame({"(Intercept)": 1.0, "trtdrug": (df["trt"] == "drug") * 1.0,
                      "trtdrug+": (df["trt"] == "drug+") * 1.0, "wk2": df["wk2"] * 1.0})
    return MEMoE(df["yn"], X, df["ID"], exog_re=X.iloc[:, :1], n_experts=1, family="binomial",
                 **kw)


def _epil(**kw) -> MEMoE:
    df = _glmm_csv("epil")
    prog = (df["trt"] == "progabide") * 1.0
    X = pd.DataFrame({"(Intercept)": 1.0, "lbase": df["lbase"], "trtprogabide": prog,
                      "lage": df["lage"], "V4": df["V4"] * 1.0,
                      "lbase:trtprogabide": df["lbase"] * prog})
    return MEMoE(df["y"], X, df["subject"], exog_re=X.iloc[:, :1], n_experts=1,
                 family="poisson", **kw)


def _pbc_model(formula="logbili ~ year", n_experts=2, **kw) -> MEMoE:
    return MEMoE.from_formula(formula, _pbc(), "id", re_formula="~ year", n_experts=n_experts,
                              **kw)


def _simulated(n_subjects: int, n_experts: int) -> MEMoE:
    from pymemoe.simulate import paper_settings
    sim = simulate(paper_settings()["example2"], n_subjects, random_state=7)
    return MEMoE.from_formula(data=sim.data, n_experts=n_experts, **sim.formula_kwargs)


# name -> (model factory, fit keywords, covariances)
CASES = {
    "lmer_base": (lambda: _pbc_model(n_experts=1), {}, ("oim", "robust")),
    "lmer_cov": (lambda: _pbc_model("logbili ~ year + age + C(sex, Treatment('m')) + C(trt)",
                                     n_experts=1), {}, ("oim",)),
    "hlme_shared": (lambda: _pbc_model(cov_re="shared", scale="shared"),
                    dict(n_starts=10, random_state=0), ("oim",)),
    "hlme_proportional": (lambda: _pbc_model(cov_re="proportional", scale="shared"),
                          dict(n_starts=10, random_state=0), ("oim",)),
    "hlme_gated": (lambda: _pbc_model(gate_formula=GATE_R, cov_re="shared", scale="shared"),
                   dict(n_starts=10, random_state=0), ("oim",)),
    "flexmix_full": (lambda: _pbc_model(gate_formula=GATE_R), dict(n_starts=10, random_state=0),
                     ("oim", "robust")),
    "demo_k3": (lambda: _pbc_model(n_experts=3, gate_formula="~ age + C(sex) + C(trt)"),
                dict(random_state=0), ("oim", "robust")),
    "bin_k1_slope_laplace": (lambda: _sim_glmm("binary", 2, 1), {}, ("oim",)),
    "bin_k1_int_agq25": (lambda: _sim_glmm("binary", 1, 1, nAGQ=25), {}, ("oim",)),
    "pois_k1_int_laplace": (lambda: _sim_glmm("poisson", 1, 1), {}, ("oim",)),
    "pois_k1_int_agq25": (lambda: _sim_glmm("poisson", 1, 1, nAGQ=25), {}, ("oim",)),
    "bacteria_laplace": (lambda: _bacteria(), {}, ("oim",)),
    "bacteria_agq25": (lambda: _bacteria(nAGQ=25), {}, ("oim",)),
    "epil_laplace": (lambda: _epil(), {}, ("oim",)),
    "epil_agq25": (lambda: _epil(nAGQ=25), {}, ("oim",)),
    "bin_k2_nore": (lambda: _sim_glmm("binary", 0, 2), dict(random_state=0), ("oim",)),
    "pois_k2_nore": (lambda: _sim_glmm("poisson", 0, 2), dict(random_state=0), ("oim",)),
    "bin_k2_slope_laplace": (lambda: _sim_glmm("binary", 2, 2), dict(random_state=0, n_starts=2),
                             ("oim", "robust")),
    "bin_k2_int_agq7": (lambda: _sim_glmm("binary", 1, 2, nAGQ=7),
                        dict(random_state=0, n_starts=2), ("oim",)),
    "sim_gaussian_k2_1000": (lambda: _simulated(1000, 2), dict(random_state=0), ("oim", "robust")),
    "sim_gaussian_k3_6000": (lambda: _simulated(6000, 3), dict(random_state=0), ("oim",)),
}


def run_case(name: str) -> dict:
    make, fit_kwargs, cov_types = CASES[name]
    start = time.perf_counter()
    out: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cov_type in cov_types:
            res = make().fit(cov_type=cov_type, **fit_kwargs)
            params = res.params
            out.setdefault("llf", float(res.llf))
            out.setdefault("labels", [list(map(str, label)) for label in params.index])
            out.setdefault("params", params.to_numpy().tolist())
            out.setdefault("posterior_sums", res.posterior.sum(axis=0).to_numpy().tolist())
            out[f"bse_{cov_type}"] = res.bse.to_numpy().tolist()
    out["seconds"] = time.perf_counter() - start
    return out


def _largest(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return np.inf
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    return float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0))


def compare(before: dict, after: dict, tol: float) -> bool:
    ok = True
    rows = []
    for name in before:
        if name not in after:
            rows.append((name, "missing", "", "", "", ""))
            ok = False
            continue
        b, a = before[name], after[name]
        keys = ["llf", "params", "posterior_sums"] + sorted(k for k in b if k.startswith("bse"))
        diffs = {k: _largest(b[k], a.get(k, np.nan)) for k in keys}
        same = all(json.dumps(b[k]) == json.dumps(a.get(k)) for k in keys)
        worst = max(diffs.values())
        ok &= worst <= tol and b["labels"] == a["labels"]
        bse = max(v for k, v in diffs.items() if k.startswith("bse"))
        rows.append((name, f"{diffs['llf']:.1e}", f"{diffs['params']:.1e}", f"{bse:.1e}",
                     "yes" if same else "no", "ok" if worst <= tol else "DIFFERS"))
    table = pd.DataFrame(rows, columns=["case", "|d llf|", "max |d param|", "max |d se|",
                                        "bit for bit", f"within {tol:g}"])
    with pd.option_context("display.width", 140):
        print(table.to_string(index=False))
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--compare", type=Path, help="a snapshot to compare with")
    parser.add_argument("--tol", type=float, default=1e-10)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args(argv)
    snapshot = {}
    for name in args.cases:
        snapshot[name] = run_case(name)
        print(f"{name}: llf {snapshot[name]['llf']:.6f} ({snapshot[name]['seconds']:.1f} s)",
              flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(snapshot, indent=1))
    if args.compare is None:
        return 0
    before = json.loads(args.compare.read_text())
    before = {k: v for k, v in before.items() if k in snapshot}
    return 0 if compare(before, snapshot, args.tol) else 1


if __name__ == "__main__":
    sys.exit(main())
