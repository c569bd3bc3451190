r"""Gaussian experts: linear mixed models on per-subject sufficient statistics.

The kernel (Woodbury log-densities, the exact Laplace step, GLS normal equations, the sums of
the variance update, scores) is :mod:`pymemoe.expert`; this module is the family object that
serves it to the EM driver: the posterior-weighted M-step (ECME)::

    beta          GLS given V_ik:  (sum_i tau_ik X'V^-1 X) beta_k = sum_i tau_ik X'V^-1 y,
                  one joint solve when ``shared_formula`` ties columns across experts;
    D_k, sigma2_k EM update with b missing, at the new beta:
                  R_k = sum_i tau_ik (b_hat b_hat' + Sigma),   S_k = sum_i tau_ik E||e_i||^2,

with the covariance structures as a table of updaters (:data:`COV_RE_UPDATERS`)::

    "expert"        D_k = R_k / sum_i tau_ik
    "shared"        D   = sum_k R_k / N
    "proportional"  D_k = w_k^2 D: one coordinate step in D, then in w (both increase Q)

and the residual variances likewise (:data:`SCALE_UPDATERS`): sigma2_k = S_k / sum_i tau_ik n_i
or one pooled value, never below the floor of :class:`~pymemoe.families.base.DataSummary`.
``re_structure="diagonal"`` keeps the diagonal of the update (the maximiser under that
constraint, since the Q function is separable in the variances then).

Every step increases the log-likelihood (generalised EM): the GLS step maximises Q over beta
exactly at the current variances, and the variance step is the EM step with b missing.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from ..expert import ExpertMoments, expert_gradients, expert_moments, gls_normal_equations, variance_sums
from ..expert_hessian import expert_hessian_sums
from ..params import Params, Structure
from .base import DataSummary, ExpertFamily, ExpertGradients

__all__ = ["GaussianFamily", "GAUSSIAN", "COV_RE_UPDATERS", "SCALE_UPDATERS", "solve_fixed_effects"]


def solve_fixed_effects(structure: Structure, gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Joint GLS solve for (beta_mix_1..beta_mix_K, beta_shared) from each expert's weighted
    normal equations ``gram`` (K, p, p) and ``rhs`` (K, p); returns beta (K, p)."""
    K, p, km = structure.n_experts, structure.k_fe, structure.k_mix
    n_free = K * km + (p - km)
    big = np.zeros((n_free, n_free))
    vec = np.zeros(n_free)
    select = []
    for k in range(K):  # K selection matrices: loops over experts, not subjects
        P = np.zeros((p, n_free))
        P[np.arange(km), k * km + np.arange(km)] = 1.0
        P[km + np.arange(p - km), K * km + np.arange(p - km)] = 1.0
        big += P.T @ gram[k] @ P
        vec += P.T @ rhs[k]
        select.append(P)
    try:
        theta = np.linalg.solve(big, vec)
    except np.linalg.LinAlgError:
        theta = np.linalg.lstsq(big, vec, rcond=None)[0]
    return np.stack([P @ theta for P in select])


# -- the covariance structures: (previous D, R_k, sizes, re_structure) -> D (K, q, q) --------


def _cov_expert(cov_re: np.ndarray, re_sum: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    return re_sum / sizes[:, None, None]


def _cov_shared(cov_re: np.ndarray, re_sum: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    K = re_sum.shape[0]
    return np.broadcast_to(re_sum.sum(axis=0) / sizes.sum(), (K,) + re_sum.shape[1:]).copy()


def _cov_proportional(cov_re: np.ndarray, re_sum: np.ndarray, sizes: np.ndarray,
                      diagonal: bool) -> np.ndarray:
    K, q = re_sum.shape[:2]
    trace = np.trace(cov_re, axis1=1, axis2=2)
    w2 = trace / trace[0] if trace[0] > 0 else np.ones(K)
    w2 = np.maximum(w2, 1e-300)
    base = (re_sum / w2[:, None, None]).sum(axis=0) / sizes.sum()
    if diagonal:
        base = np.diag(np.diag(base))
    base_inv = np.linalg.pinv(base)
    w2 = np.einsum("ab,kba->k", base_inv, re_sum) / (q * sizes)
    w2[0] = 1.0
    return w2[:, None, None] * base


COV_RE_UPDATERS: dict[str, Callable[..., np.ndarray]] = {
    "expert": lambda cov, re_sum, sizes, diagonal: _cov_expert(cov, re_sum, sizes),
    "shared": lambda cov, re_sum, sizes, diagonal: _cov_shared(cov, re_sum, sizes),
    "proportional": _cov_proportional,
}

SCALE_UPDATERS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "expert": lambda rss_sum, obs_sizes: rss_sum / obs_sizes,
    "shared": lambda rss_sum, obs_sizes: np.full(rss_sum.shape, rss_sum.sum() / obs_sizes.sum()),
}


class GaussianFamily(ExpertFamily):
    """Linear mixed model experts (identity link, normal errors, residual variance sigma2_k).

    Its data are :class:`pymemoe.data.SubjectData` (per-subject sufficient statistics); its
    moments :class:`pymemoe.expert.ExpertMoments`.
    """

    name = "gaussian"
    has_scale = True
    description = "Gaussian (identity link)"

    def make_data(self, endog, exog, exog_re, exog_gate, groups, *, trials=None, offset=None,
                  weights=None):
        """Per-subject sufficient statistics (:class:`pymemoe.data.SubjectData`); a row of
        weight 0 enters no cross-product and no count n_i."""
        from ..data import SubjectData
        if weights is None:
            return SubjectData.from_arrays(endog, exog, exog_re, exog_gate, groups)
        w = np.asarray(weights, dtype=float)
        y = np.where(w > 0, endog, 0.0)
        data = SubjectData.from_arrays(y, exog * w[:, None], exog_re * w[:, None], exog_gate, groups)
        n_obs = np.bincount(data.row_codes, weights=w, minlength=data.n_groups)
        return dataclasses.replace(data, n_obs=n_obs)

    def expert_means(self, params: Params, exog, exog_re, offset) -> np.ndarray:
        return exog @ params.beta.T

    def conditional_means(self, data, moments, params: Params, exog, exog_re, offset,
                          subject) -> np.ndarray:
        return exog @ params.beta.T + np.einsum("nq,nkq->nk", exog_re, np.asarray(moments.b_hat)[subject])

    def predictive_variances(self, params: Params, rows, means, posterior=None,
                             trials=None) -> np.ndarray:
        """z' D_k z + sigma2_k (a new subject) or z' Sigma_ik z + sigma2_k (given a history)."""
        z = rows.exog_re
        if posterior is None:
            var = np.einsum("nq,kqr,nr->nk", z, params.cov_re, z)
        else:
            var = np.einsum("nq,nkqr,nr->nk", z, posterior.b_cov[posterior.codes], z)
        return np.maximum(var + params.scale, 0.0)

    def moments(self, data, params: Params, warm=None) -> ExpertMoments:
        return expert_moments(data, params)

    def gradients(self, data, params: Params, moments: ExpertMoments) -> ExpertGradients:
        beta, cov, scale = expert_gradients(data, params, moments)
        return ExpertGradients(beta=beta, cov=cov, scale=scale)

    def hessian_sums(self, data, params: Params, moments: ExpertMoments, tau: np.ndarray) -> np.ndarray:
        """Closed-form weighted Hessians of the experts (:mod:`pymemoe.expert_hessian`)."""
        return expert_hessian_sums(data, params, moments, tau)

    def e_sums(self, data, params: Params, moments: ExpertMoments, tau: np.ndarray):
        """The GLS normal equations at the E-step's V_ik: (gram (K, p, p), rhs (K, p))."""
        return gls_normal_equations(data, params, moments, tau)

    @staticmethod
    def variance_block(data, state, params: Params):
        """Sums of the variance update on one block, at ``params`` (new beta, the E-step's
        D_k and sigma2_k, whose covariance factor the block's state holds): R_k, S_k, the
        posterior sizes and the posterior numbers of observations."""
        old = state.moments
        moments = expert_moments(data, params, factor=(old.lam, old.m_inv, old.logdet_m))
        re_sum, rss_sum = variance_sums(data, moments, state.tau)
        return re_sum, rss_sum, state.tau.sum(axis=0), state.tau.T @ data.n_obs

    def m_step(self, blocks, states: Sequence, structure: Structure, params: Params, e_sums,
               summary: DataSummary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        gram, rhs = e_sums
        beta = solve_fixed_effects(structure, gram, rhs)
        at_new_beta = dataclasses.replace(params, beta=beta)
        re_sum, rss_sum, sizes, obs_sizes = blocks.reduce(self.variance_block, states, at_new_beta)
        scale = np.maximum(SCALE_UPDATERS[structure.scale](rss_sum, obs_sizes), summary.scale_floor)
        K, q = structure.n_experts, structure.k_re
        if q == 0:
            return beta, np.zeros((K, 0, 0)), scale
        diagonal = structure.re_structure == "diagonal"
        cov = COV_RE_UPDATERS[structure.cov_re](params.cov_re, re_sum, sizes, diagonal)
        if diagonal:
            cov = np.einsum("kaa->ka", cov)[:, :, None] * np.eye(q)
        return beta, cov, scale

    @staticmethod
    def totals_block(data, state=None):
        """Whole-data sums of one block: X'X, X'y, y'y, observations, diag(Z'Z), subjects."""
        zdiag = np.diagonal(data.zz, axis1=1, axis2=2).sum(axis=0)
        return (data.xx.sum(axis=0), data.xy.sum(axis=0), float(data.yy.sum()), float(data.nobs),
                zdiag, data.n_groups)

    def summary(self, blocks) -> DataSummary:
        _, _, yy, nobs, zdiag, n_groups = blocks.reduce(self.totals_block, blocks.empty_states())
        return DataSummary(n_groups=int(n_groups), nobs=int(nobs),
                           outcome_scale=float(yy / nobs), z_scale=np.asarray(zdiag) / nobs)

    def llf_bound(self, summary: DataSummary) -> float:
        """-nobs/2 log(2 pi floor): every eigenvalue of V_i = Z D Z' + sigma2 I is at least
        sigma2, itself at least the floor, so log N(y_i; mu, V_i) <= -n_i/2 log(2 pi floor),
        and a mixture's log density is at most its largest expert's."""
        return -0.5 * summary.nobs * float(np.log(2.0 * np.pi * summary.scale_floor))

    def one_expert_start(self, blocks, structure: Structure, summary: DataSummary) -> Params:
        """Pooled OLS, half the residual variance to each variance component."""
        xx, xy, yy, nobs, zdiag, _ = blocks.reduce(self.totals_block, blocks.empty_states())
        p, q = xx.shape[0], structure.k_re
        beta = np.linalg.lstsq(xx, xy, rcond=None)[0]
        rss = yy - 2 * beta @ xy + beta @ xx @ beta
        sigma2 = max(rss / max(nobs - p, 1), summary.scale_floor) / 2.0
        z_scale = np.asarray(zdiag) / nobs if q else np.zeros(0)
        cov = np.diag(sigma2 / np.maximum(z_scale, 1e-12)) if q else np.zeros((0, 0))
        return Params(gamma=np.zeros((1, structure.k_gate)), beta=beta[None], cov_re=cov[None],
                      scale=np.array([sigma2]))

    def subject_coefficients(self, data, k_mix: int) -> np.ndarray:
        """Ridge-stabilised per-subject OLS coefficients of the expert-specific columns."""
        xx, xy = data.xx[:, :k_mix, :k_mix], data.xy[:, :k_mix]
        ridge = 1e-6 * (np.trace(xx, axis1=1, axis2=2) / max(k_mix, 1) + 1e-12)
        return np.linalg.solve(xx + ridge[:, None, None] * np.eye(k_mix), xy[..., None])[..., 0]


GAUSSIAN = GaussianFamily()
