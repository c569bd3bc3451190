"""The benchmark set: four designs of simulated longitudinal data, three experts each.

Every design returns long data with the columns ``id``, ``time``, ``x1`` (standard normal),
``x2`` (binary), ``y``, fitted by ``y ~ time`` with a random intercept and slope, expert-specific
D_k and sigma2_k and gating ``~ x1 + x2`` (the model of ``bench_scale.py``):

``default``     the simulator of ``bench_fit.py`` (6-10 visits on [0, 10)); its K = 3 search finds
                one distinct solution, so it never pays for a runner-up
``separated``   three well-separated experts (intercepts 0, 2, 4; slopes 1, 0, -1; different D_k
                and sigma2_k; 6-10 visits uniform on [0, 6]): the design of issue 23 on which
                the search finds the optimum and a second maximum far below it
``small``       the default experts with the third one rare (about 5% of the subjects)
``pbc``         PBCseq-like: the K = 3 estimates of the case study (log bilirubin), irregular
                follow-up (1-16 visits over up to 14 years, 6 on average), large noise relative
                to the separation of the experts

    >>> from designs import simulate
    >>> simulate("separated", 50, seed=0).columns.tolist()
    ['id', 'time', 'x1', 'x2', 'y']
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["DESIGNS", "simulate"]


def _gating(rng, n, gamma):
    x1, x2 = rng.normal(size=n), rng.binomial(1, 0.5, size=n).astype(float)
    logits = np.column_stack([np.ones(n), x1, x2]) @ np.asarray(gamma).T
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    expert = (prob.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
    return x1, x2, expert


def _long(rng, x1, x2, expert, beta, cov, sigma2, times):
    """Rows of every subject at ``times`` (a list of arrays), random intercept and slope."""
    n = len(expert)
    b = np.einsum("nij,nj->ni", np.linalg.cholesky(np.asarray(cov))[expert],
                  rng.normal(size=(n, 2)))
    sizes = np.array([len(t) for t in times])
    row = np.repeat(np.arange(n), sizes)
    t = np.concatenate(times)
    k = expert[row]
    beta = np.asarray(beta)
    mean = beta[k, 0] + b[row, 0] + (beta[k, 1] + b[row, 1]) * t
    y = mean + np.sqrt(np.asarray(sigma2))[k] * rng.normal(size=row.size)
    return pd.DataFrame({"id": row, "time": t, "x1": x1[row], "x2": x2[row], "y": y})


def _default(n, seed):
    from bench_fit import simulate as bench_fit_simulate
    return bench_fit_simulate(n, 3, seed=seed)


def _separated(n, seed):
    rng = np.random.default_rng(seed)
    x1, x2, expert = _gating(rng, n, [[0, 0, 0], [0.2, 0.6, -0.4], [-0.3, -0.5, 0.6]])
    times = [np.sort(rng.uniform(0, 6, size=m)) for m in rng.integers(6, 11, size=n)]
    cov = [[[0.30, 0.01], [0.01, 0.04]], [[0.60, -0.03], [-0.03, 0.02]],
           [[0.20, 0.00], [0.00, 0.08]]]
    return _long(rng, x1, x2, expert, [[0.0, 1.0], [2.0, 0.0], [4.0, -1.0]], cov,
                 [0.20, 0.50, 0.10], times)


def _small(n, seed):
    from bench_fit import BETA, D, SIGMA2
    rng = np.random.default_rng(seed)
    x1, x2, expert = _gating(rng, n, [[0, 0, 0], [-0.3, 0.8, 0.5], [-2.6, -0.6, 0.3]])
    visits = rng.integers(6, 11, size=n)
    times = [np.r_[0.0, np.arange(1, m) + rng.uniform(-0.1, 0.1, m - 1)] for m in visits]
    return _long(rng, x1, x2, expert, BETA, D, SIGMA2, times)


def _pbc(n, seed):
    rng = np.random.default_rng(seed)
    x1, x2, expert = _gating(rng, n, [[0, 0, 0], [-0.7, 0.3, 0.0], [-1.1, -0.3, 0.2]])
    beta = [[1.06, 0.27], [0.07, 0.12], [-0.28, 0.01]]
    cov = [[[1.00, -0.01], [-0.01, 0.027]], [[0.38, 0.02], [0.02, 0.005]],
           [[0.15, -0.007], [-0.007, 0.001]]]
    visits = np.minimum(1 + rng.geometric(1 / 6, size=n), 16)
    spans = rng.uniform(1, 14, size=n)
    times = [np.r_[0.0, np.sort(rng.uniform(0, s, size=m - 1))] for m, s in zip(visits, spans)]
    return _long(rng, x1, x2, expert, beta, cov, [0.23, 0.064, 0.033], times)


DESIGNS = {"default": _default, "separated": _separated, "small": _small, "pbc": _pbc}


def simulate(design: str, n_subjects: int, seed: int = 0) -> pd.DataFrame:
    """Long data of ``n_subjects`` from ``design`` (module docstring), seeded."""
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {sorted(DESIGNS)}, got {design!r}")
    return DESIGNS[design](n_subjects, seed)
