"""Shared pieces of the comparison benchmarks (``bench_statsmodels.py``, ``bench_r.py``).

- :func:`simulate`: the seeded numpy simulator of ``bench_fit.py`` (imported, not copied, so that
  every benchmark draws the same data for the same ``(n_subjects, n_experts, seed)``): random
  intercept and slope on ``time``, expert-specific fixed effects, D_k and sigma2_k, multinomial
  logit gating on ``x1`` (normal) and ``x2`` (binary), 6-10 visits per subject.
- :func:`write_csv`: writes the data with 17 significant digits so that R reads the same numbers.
- :class:`Estimates` and :func:`dense_loglik`: any package's estimates in one common form, and
  the MEMoE marginal log-likelihood evaluated from them on dense per-subject covariance matrices
  (numpy only, batched Cholesky over subjects with the same number of visits). This is
  independent of pymemoe's Woodbury/sufficient-statistics code and of the other packages, so it
  checks that the log-likelihoods put side by side are those of the same model on the same data.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_fit import simulate  # noqa: E402  (the generator of bench_fit.py, unchanged)
from truth import dense_loglike  # noqa: E402  (the tests' dense reference log-likelihood)

__all__ = ["simulate", "write_csv", "Estimates", "dense_loglik", "from_pymemoe"]

FORMULA = "y ~ time"
RE_FORMULA = "~ time"
GATE_FORMULA = "~ x1 + x2"


def write_csv(data: pd.DataFrame, path: Path) -> Path:
    """Write ``data`` for R: no index, doubles with 17 significant digits (round trip)."""
    data.to_csv(path, index=False, float_format="%.17g")
    return path


@dataclass(frozen=True)
class Estimates:
    """One fit's parameters: beta (K, 2), D (K, 2, 2), sigma2 (K,), gamma (K, 3), row 0 zero.

    Columns of beta and of the random effects: (Intercept, time); of gamma: (Intercept, x1, x2).
    """

    beta: np.ndarray
    D: np.ndarray
    sigma2: np.ndarray
    gamma: np.ndarray

    @classmethod
    def from_lists(cls, beta, D, sigma2, gamma=None) -> "Estimates":
        beta = np.atleast_2d(np.asarray(beta, dtype=float))
        K = beta.shape[0]
        D = np.asarray(D, dtype=float).reshape(K, 2, 2)
        sigma2 = np.asarray(sigma2, dtype=float).reshape(K)
        gamma = (np.zeros((K, 3)) if gamma is None
                 else np.asarray(gamma, dtype=float).reshape(K, 3))
        return cls(beta=beta, D=D, sigma2=sigma2, gamma=gamma - gamma[0])

    def user_vector(self, param_names: pd.MultiIndex) -> pd.Series:
        """The same parameters as a pymemoe user-scale Series (gating relative to expert 1)."""
        terms = {"Intercept": 0, "time": 1, "x1": 1, "x2": 2}
        re_entries = {"Var(Intercept)": (0, 0), "Cov(Intercept,time)": (0, 1), "Var(time)": (1, 1)}
        values = []
        for block, expert, term in param_names:
            k = int(expert) - 1 if isinstance(expert, (int, np.integer)) else 0  # "all": shared
            if block == "gate":
                values.append(self.gamma[k, terms[term]])
            elif block == "beta":
                values.append(self.beta[k, terms[term]])
            elif block == "re_cov":
                values.append(self.D[k][re_entries[term]])
            elif block == "scale":
                values.append(self.sigma2[k])
            else:
                raise ValueError(f"unexpected parameter block {block!r}")
        return pd.Series(values, index=param_names)


def from_pymemoe(params: pd.Series, n_experts: int) -> Estimates:
    """Read pymemoe's labelled ``results.params`` (full model or shared D / sigma2)."""
    K = n_experts
    gamma = np.zeros((K, 3))
    beta, D, sigma2 = np.zeros((K, 2)), np.zeros((K, 2, 2)), np.zeros(K)
    col = {"Intercept": 0, "time": 1, "x1": 1, "x2": 2}
    for (block, expert, term), value in params.items():
        ks = range(K) if expert in (0, None, "all", "shared") else [int(expert) - 1]
        for k in ks:
            if block == "gate":
                gamma[k, col[term]] = value
            elif block == "beta":
                beta[k, col[term]] = value
            elif block == "re_cov":
                if term == "Var(Intercept)":
                    D[k, 0, 0] = value
                elif term == "Var(time)":
                    D[k, 1, 1] = value
                else:
                    D[k, 0, 1] = D[k, 1, 0] = value
            elif block == "scale":
                sigma2[k] = value
    return Estimates(beta=beta, D=D, sigma2=sigma2, gamma=gamma)


def dense_loglik(data: pd.DataFrame, est: Estimates) -> float:
    """sum_i log sum_k pi_ik N(y_i; X_i beta_k, Z_i D_k Z_i' + sigma2_k I), on dense V_ik, with
    X_i = Z_i = [1, time] and the gating on (1, x1, x2): the tests' dense reference
    (``tests/truth.py``), so that the tests and the benchmarks check with one piece of code."""
    t = data["time"].to_numpy(float)
    X = np.column_stack([np.ones_like(t), t])
    W = np.column_stack([np.ones_like(t), data["x1"].to_numpy(float), data["x2"].to_numpy(float)])
    return dense_loglike(data["y"].to_numpy(float), X, X, W, data["id"].to_numpy(), est.gamma,
                         est.beta, est.D, est.sigma2)
