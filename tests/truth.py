"""Test helpers independent of pymemoe's fitting code: a simulator with known truth and a dense
(row-level) log-likelihood on dense per-subject covariance matrices."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import logsumexp

TRUTH_K2 = {
    "gamma": np.array([[0.0, 0.0, 0.0], [-0.3, 1.0, -0.8]]),   # gating on (1, x1, x2)
    "beta": np.array([[1.0, 0.2], [3.0, -0.4]]),                # (Intercept, time)
    "cov_re": np.array([[[0.5, 0.05], [0.05, 0.04]], [[0.2, -0.02], [-0.02, 0.01]]]),
    "scale": np.array([0.25, 0.1]),
}


def simulate_memoe(n_subjects: int, truth: dict = TRUTH_K2, seed: int = 0,
                   visits: tuple[int, int] = (4, 9), errors: str = "normal",
                   baseline_visit: bool = False) -> pd.DataFrame:
    """Long-format data from a MEMoE with intercept + time fixed and random effects.

    ``errors``: ``"normal"`` (the model), ``"t3"`` (Student t with 3 df scaled to variance
    sigma2_k: heavy tails) or ``"hetero"`` (normal with variance sigma2_k (0.2 + 0.32 t^2),
    from 0.2 sigma2_k at t = 0 to 8.2 sigma2_k at t = 5, 2.9 sigma2_k on average over
    t ~ U(0, 5): strongly heteroscedastic, and larger than the model's variance).

    Columns: id, time, x1, x2 (subject-level, x2 binary), y, expert (true, 1-based).
    """
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n_subjects)
    x2 = rng.binomial(1, 0.5, size=n_subjects).astype(float)
    w = np.column_stack([np.ones(n_subjects), x1, x2])
    eta = w @ truth["gamma"].T
    prob = np.exp(eta - logsumexp(eta, axis=1, keepdims=True))
    expert = (rng.random(n_subjects)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1)
    rows = []
    for i in range(n_subjects):
        k = expert[i]
        n_i = rng.integers(visits[0], visits[1] + 1)
        t = np.sort(rng.uniform(0, 5, size=n_i))
        if baseline_visit:          # every subject measured at enrolment (time 0)
            t[0] = 0.0
        b = rng.multivariate_normal(np.zeros(2), truth["cov_re"][k])
        mean = truth["beta"][k, 0] + b[0] + (truth["beta"][k, 1] + b[1]) * t
        sd = np.sqrt(truth["scale"][k])
        if errors == "normal":
            e = rng.normal(scale=sd, size=n_i)
        elif errors == "t3":
            e = rng.standard_t(3, size=n_i) * sd / np.sqrt(3.0)
        elif errors == "hetero":
            e = rng.normal(size=n_i) * sd * np.sqrt(0.2 + 0.32 * t ** 2)
        else:
            raise ValueError(errors)
        y = mean + e
        rows.append(pd.DataFrame({"id": i, "time": t, "x1": x1[i], "x2": x2[i], "y": y,
                                  "expert": k + 1}))
    return pd.concat(rows, ignore_index=True)


def dense_loglike(y, X, Z, W, groups, gamma, beta, cov_re, scale, known=None,
                  fixed_prior=None, extra_logdens=None) -> float:
    """sum_i log sum_k pi_ik N(y_i; X_i beta_k, Z_i D_k Z_i' + sigma2_k I) on dense V_ik (row
    arrays; W's first row of each subject is its gating row): a batched Cholesky over the
    subjects with the same number of rows, independent of pymemoe's Woodbury and
    sufficient-statistics code. The tests and the benchmarks (``benchmarks/_simdata.py``)
    check pymemoe's log-likelihoods with it. ``known`` (one per subject in sorted label order,
    0-based, -1 unknown): a subject with a known expert c contributes log pi_ic N(y_i; ...c).
    ``fixed_prior`` (N, K, the same order; NaN rows: the gating's) replaces pi_i.
    ``extra_logdens`` (N, K, the same order) is added to each subject's log-density under each
    expert (another outcome independent of y_i given the expert: a time to event)."""
    y, X, Z, W = (np.asarray(a, dtype=float) for a in (y, X, Z, W))
    labels, codes = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    eta = W[order][starts] @ np.asarray(gamma, dtype=float).T
    log_prior = eta - logsumexp(eta, axis=1, keepdims=True)
    if fixed_prior is not None:
        fixed_prior = np.asarray(fixed_prior, dtype=float)
        rows = np.isfinite(fixed_prior[:, 0])
        log_prior[rows] = np.log(fixed_prior[rows])
    beta, cov_re, scale = (np.asarray(a, dtype=float) for a in (beta, cov_re, scale))
    log_dens = np.empty((labels.size, beta.shape[0]))
    for n in np.unique(sizes):
        subjects = np.flatnonzero(sizes == n)
        index = order[starts[subjects][:, None] + np.arange(n)]              # (m, n)
        Zi, Xi, yi = Z[index], X[index], y[index]
        for k in range(beta.shape[0]):
            V = Zi @ cov_re[k] @ np.swapaxes(Zi, 1, 2) + scale[k] * np.eye(n)
            L = np.linalg.cholesky(V)
            u = np.linalg.solve(L, (yi - Xi @ beta[k])[..., None])[..., 0]
            logdet = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
            log_dens[subjects, k] = -0.5 * (n * np.log(2 * np.pi) + logdet + (u ** 2).sum(axis=1))
    joint = log_prior + log_dens
    if extra_logdens is not None:
        joint = joint + np.asarray(extra_logdens, dtype=float)
    if known is not None:
        known = np.asarray(known)
        labelled = known >= 0
        joint[labelled] = np.where(np.arange(joint.shape[1]) == known[labelled][:, None],
                                   joint[labelled], -np.inf)
    return float(logsumexp(joint, axis=1).sum())


def dense_loglike_results(res, data: pd.DataFrame, y, X, Z, W, groups) -> float:
    """Dense log-likelihood at a fitted pymemoe results' parameters (taken from its attributes)."""
    K = res.n_experts
    gamma = res.gate_params.to_numpy().T
    beta = res.fe_params.to_numpy().T
    cov = np.stack([res.cov_re[k + 1].to_numpy() for k in range(K)])
    return dense_loglike(y, X, Z, W, groups, gamma, beta, cov, res.scale.to_numpy())
