r"""Linear mixed model experts on per-subject sufficient statistics.

Model of expert k for subject i (n_i observations)::

    y_i = X_i beta_k + Z_i b_i + e_i,    b_i ~ N_q(0, D_k),    e_i ~ N(0, sigma2_k I)
    y_i ~ N(X_i beta_k, V_ik),           V_ik = Z_i D_k Z_i' + sigma2_k I.

**Relative covariance factor.** Write D_k = sigma2_k Lambda_k Lambda_k' (lme4's
parameterisation; Lambda_k is any square root of D_k / sigma2_k, here the symmetric one) and
b = Lambda_k u. Then, with r = y_i - X_i beta_k and the q x q matrix
M_ik = Lambda_k' Z'Z Lambda_k + I (always positive definite, even when D_k is singular),
the Woodbury identity and the matrix determinant lemma give::

    log|V_ik|     = n_i log sigma2_k + log|M_ik|
    r' V^-1 r     = (r'r - v' M_ik^-1 v) / sigma2_k,       v = Lambda_k' Z'r
    V^-1 r        = (r - Z b_hat_ik) / sigma2_k

so the marginal log-density needs only X'X, X'Z, Z'Z, X'y, Z'y, y'y and n_i (see
:mod:`pymemoe.families.gaussian`) and a q x q Cholesky factorisation per subject and expert.

**Laplace step.** The paper integrates b out by a Laplace approximation around the conditional
mode. Here the integrand p(y_i | b) p(b) is Gaussian in b, so the Laplace approximation is exact:
the mode and the curvature are those of the Gaussian posterior of b given y_i and class k::

    b_hat_ik = Lambda_k M_ik^-1 Lambda_k' Z'r          (conditional mode = BLUP)
    Sigma_ik = sigma2_k Lambda_k M_ik^-1 Lambda_k'       (conditional covariance)

and the Laplace log-density equals the exact marginal log-density above. A non-Gaussian expert
(a GLMM) would supply the same quantities from an iterative mode search, and the EM driver would
not change (see :class:`ExpertMoments`).

**Weighted M-step** (ECME, with tau_ik the posterior expert probabilities): beta by generalised
least squares given the current V_ik, which maximises the observed-data Q function exactly::

    sum_i tau_ik X'V^-1 X beta_k = sum_i tau_ik X'V^-1 y,
    X'V^-1 X = (X'X - A' M^-1 A) / sigma2,   X'V^-1 y = (X'y - A' M^-1 Lambda'Z'y) / sigma2,
    A = Lambda' Z'X,

then D_k and sigma2_k by the EM update with b missing (with the new beta)::

    D_k      = sum_i tau_ik (b_hat b_hat' + Sigma) / sum_i tau_ik
    sigma2_k = sum_i tau_ik E||e_i||^2 / sum_i tau_ik n_i,
    E||e_i||^2 = ||r - Z b_hat||^2 + tr(Z'Z Sigma).

Every step increases the log-likelihood (generalised EM).

**Scores** (the gradient of log f(y_i | k), equal to the conditional expectation of the
complete-data score by Fisher's identity), with a = Z'V^-1 r = (Z'r - Z'Z b_hat) / sigma2::

    d/dbeta_k   = X'V^-1 r = (X'r - X'Z b_hat) / sigma2
    d/dD_k      = (a a' - Z'V^-1 Z) / 2,     Z'V^-1 Z = (Z'Z - Z'Z Lambda M^-1 Lambda' Z'Z) / sigma2
    d/dsigma2_k = (||r - Z b_hat||^2 / sigma2^2 - (n_i - q + tr M^-1) / sigma2) / 2

No inverse of D_k appears, so the scores stay finite at a boundary.

All functions are pure: arrays in, arrays out; shapes are stated with N subjects, K experts,
p fixed effects, q random effects.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from .._linalg.smallmat import (as_stack, cholesky_inverse_logdet, dot, empty_stack, matmul,
                                matvec, outer, sandwich, trace, trace_product, weighted_sum)
from .._model.params import Params

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .gaussian import SubjectData

__all__ = ["ExpertMoments", "relative_factor", "covariance_factor", "expert_moments", "gls_normal_equations",
           "variance_sums", "expert_gradients"]

LOG_2PI = np.log(2.0 * np.pi)


@dataclass(frozen=True, eq=False)
class ExpertMoments:
    """E-step quantities of every (subject, expert) pair at one parameter value.

    Attributes
    ----------
    logdens : (N, K)   marginal log-density log f(y_i | class k)
    b_hat   : (N, K, q) conditional modes of the random effects
    b_cov   : (N, K, q, q) conditional covariances
    m_inv   : (N, K, q, q) M_ik^-1
    lam     : (K, q, q) relative covariance factors
    logdet_m : (N, K)  log|M_ik|
    rr      : (N, K)   r'r
    zr      : (N, K, q) Z'r

    The stacks (b_hat, b_cov, m_inv, zr) are stored entry-major (see :mod:`pymemoe._linalg.smallmat`);
    they behave as ordinary arrays, but reshaping them copies.
    """

    logdens: np.ndarray
    b_hat: np.ndarray
    m_inv: np.ndarray
    lam: np.ndarray
    logdet_m: np.ndarray
    rr: np.ndarray
    zr: np.ndarray
    scale: np.ndarray

    @classmethod
    def concatenate(cls, parts: "list[ExpertMoments]") -> "ExpertMoments":
        """The moments of consecutive blocks of subjects as one object (subjects in order)."""
        if len(parts) == 1:
            return parts[0]
        join = {name: np.concatenate([getattr(m, name) for m in parts], axis=0)
                for name in ("logdens", "b_hat", "m_inv", "logdet_m", "rr", "zr")}
        return cls(lam=parts[0].lam, scale=parts[0].scale, **join)

    @cached_property
    def b_cov(self) -> np.ndarray:
        """Conditional covariances sigma2_k Lambda_k M_ik^-1 Lambda_k' (N, K, q, q), computed
        on first use: the E-step of the log-likelihood and the scores do not need them."""
        return self.scale[None, :, None, None] * sandwich(self.lam, self.m_inv)


def relative_factor(cov_re: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Symmetric square roots Lambda_k of D_k / sigma2_k, shape (K, q, q).

    Negative eigenvalues from rounding are clipped to zero, so a singular D_k is fine.
    """
    vals, vecs = np.linalg.eigh(cov_re / scale[:, None, None])
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))[:, None, :]) @ np.swapaxes(vecs, 1, 2)


def _residual_moments(data: SubjectData, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """r'r (N, K) and Z'r (N, K, q, entry-major) for residuals r = y - X beta_k.

    Contractions with the parameters are written as matrix products of the flattened
    per-subject statistics, so they run in BLAS.
    """
    N, p, q = data.n_groups, data.k_fe, data.k_re
    K = beta.shape[0]
    outer_beta = (beta[:, :, None] * beta[:, None, :]).reshape(K, p * p)
    rr = data.yy[:, None] - 2.0 * (data.xy @ beta.T) + data.xx.reshape(N, p * p) @ outer_beta.T
    zr = empty_stack((N, K), (q,))
    for l in range(q):
        np.matmul(data.xz[:, :, l], -beta.T, out=zr[..., l])
        zr[..., l] += data.zy[:, l, None]
    return rr, zr


def covariance_factor(data: SubjectData, params: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The parts of the E-step that depend on D_k and sigma2_k only.

    Returns
    -------
    lam      : (K, q, q)     relative covariance factors Lambda_k
    m_inv    : (N, K, q, q)  M_ik^-1
    logdet_m : (N, K)        log|M_ik|
    """
    N, K, q = data.n_groups, params.n_experts, data.k_re
    if q == 0:
        return np.zeros((K, 0, 0)), np.zeros((N, K, 0, 0)), np.zeros((N, K))
    lam = relative_factor(params.cov_re, params.scale)
    # Lambda_k' Z'Z Lambda_k is linear in the entries of Z'Z: one BLAS product per entry (a, d)
    # for all subjects and experts, written straight into the entry-major stack
    transform = np.einsum("kba,kcd->bcadk", lam, lam).reshape(q * q, q, q, K)
    zz = data.zz.reshape(N, q * q)
    m = empty_stack((N, K), (q, q))
    for a in range(q):
        for d in range(a, q):
            np.matmul(zz, np.ascontiguousarray(transform[:, a, d]), out=m[..., a, d])
            if d > a:
                m[..., d, a] = m[..., a, d]
        m[..., a, a] += 1.0
    m_inv, logdet_m = cholesky_inverse_logdet(m)
    return lam, m_inv, logdet_m


def expert_moments(data: SubjectData, params: Params,
                   factor: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> ExpertMoments:
    """Marginal log-densities, conditional modes and covariances (the exact Laplace step).

    Parameters
    ----------
    data : SubjectData
    params : Params
    factor : tuple, optional
        :func:`covariance_factor` at the same D_k and sigma2_k, to reuse (only beta changed).

    Returns
    -------
    ExpertMoments

    Examples
    --------
    >>> import numpy as np
    >>> from pymemoe.families.gaussian import SubjectData
    >>> from pymemoe._model.params import Params
    >>> t = np.tile([0.0, 1.0, 2.0], 2); X = np.column_stack([np.ones(6), t])
    >>> sd = SubjectData.from_arrays(t + [0, .1, 0, 1, 1.2, 1.1], X, X[:, :1], X[:, :1], np.repeat([1, 2], 3))
    >>> par = Params(gamma=np.zeros((1, 1)), beta=[[0.0, 1.0]], cov_re=[[[1.0]]], scale=[0.5])
    >>> expert_moments(sd, par).logdens.shape
    (2, 1)
    """
    scale = params.scale
    rr, zr = _residual_moments(data, params.beta)
    lam, m_inv, logdet_m = covariance_factor(data, params) if factor is None else factor
    lam_t = np.swapaxes(lam, 1, 2)
    v = matvec(lam_t, zr)                                       # Lambda' Z'r
    u_hat = matvec(m_inv, v)
    quad = rr - dot(v, u_hat)
    logdens = -0.5 * (data.n_obs[:, None] * (LOG_2PI + np.log(scale)) + logdet_m + quad / scale)
    b_hat = matvec(lam, u_hat)
    return ExpertMoments(logdens=logdens, b_hat=b_hat, m_inv=m_inv, lam=lam,
                         logdet_m=logdet_m, rr=rr, zr=zr, scale=scale)


def gls_normal_equations(data: SubjectData, params: Params, moments: ExpertMoments,
                         tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted GLS normal equations of each expert at the current V_ik.

    Returns
    -------
    gram : (K, p, p)   sum_i tau_ik X'V_ik^-1 X
    rhs  : (K, p)      sum_i tau_ik X'V_ik^-1 y
    """
    scale = params.scale
    N, K, p, q = data.n_groups, tau.shape[1], data.k_fe, data.k_re
    gram = (tau.T @ data.xx.reshape(N, p * p)).reshape(K, p, p)
    rhs = tau.T @ data.xy
    if q:
        lam_t, m_inv = np.swapaxes(moments.lam, 1, 2), moments.m_inv
        a = matmul(lam_t, as_stack(np.swapaxes(data.xz, 1, 2), 2)[:, None])    # Lambda' Z'X
        ma = matmul(m_inv, a)
        gram -= weighted_sum(tau, matmul(np.swapaxes(a, 2, 3), ma))
        v0 = matvec(lam_t, data.zy[:, None, :])                                # Lambda' Z'y
        rhs -= weighted_sum(tau, matvec(np.swapaxes(ma, 2, 3), v0))
    return gram / scale[:, None, None], rhs / scale[:, None]


def variance_sums(data: SubjectData, moments: ExpertMoments,
                  tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sums for the EM update of D_k and sigma2_k.

    ``moments`` must be computed at the beta of the update (after the GLS step).

    Returns
    -------
    re_sum  : (K, q, q)  sum_i tau_ik (b_hat b_hat' + Sigma)
    rss_sum : (K,)       sum_i tau_ik E||e_i||^2
    """
    second = outer(moments.b_hat, moments.b_hat) + moments.b_cov
    resid2 = _expected_rss(data, moments)
    return weighted_sum(tau, second), np.einsum("nk,nk->k", tau, resid2)


def expert_gradients(data: SubjectData, params: Params,
                     moments: ExpertMoments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of log f(y_i | k) with respect to beta_k, D_k and sigma2_k.

    Returns
    -------
    grad_beta  : (N, K, p)
    grad_cov   : (N, K, q, q)  symmetric matrix gradient
    grad_scale : (N, K)
    """
    scale = params.scale[None, :]
    b = moments.b_hat
    N, p, q = data.n_groups, data.k_fe, data.k_re
    K = b.shape[1]
    xx_beta = (data.xx.reshape(N * p, p) @ params.beta.T).reshape(N, p, K)
    xr = data.xy[:, None, :] - np.swapaxes(xx_beta, 1, 2)
    if q == 0:
        resid2 = moments.rr
        grad_scale = 0.5 * (resid2 / scale ** 2 - data.n_obs[:, None] / scale)
        return xr / scale[..., None], np.zeros(b.shape + (0,)), grad_scale
    zz = as_stack(data.zz, 2)[:, None]
    zz_b = matvec(zz, b)
    grad_beta = (xr - matvec(as_stack(data.xz, 2)[:, None], b)) / scale[..., None]
    resid2 = _residual_ss(moments, zz_b)
    grad_scale = 0.5 * (resid2 / scale ** 2 - (data.n_obs[:, None] - q + trace(moments.m_inv)) / scale)
    a = (moments.zr - zz_b) / scale[..., None]
    zvz = (zz - sandwich(matmul(zz, moments.lam), moments.m_inv)) / scale[..., None, None]
    grad_cov = 0.5 * (outer(a, a) - zvz)
    return grad_beta, grad_cov, grad_scale


def _residual_ss(moments: ExpertMoments, zz_b: np.ndarray) -> np.ndarray:
    """||r - Z b_hat||^2 = r'r - 2 b_hat'Z'r + b_hat'Z'Z b_hat per subject and expert, (N, K),
    from ``zz_b`` = Z'Z b_hat (which the caller also needs)."""
    b = moments.b_hat
    return moments.rr - 2.0 * dot(b, moments.zr) + dot(b, zz_b)


def _expected_rss(data: SubjectData, moments: ExpertMoments) -> np.ndarray:
    """E||e_i||^2 = ||r - Z b_hat||^2 + tr(Z'Z Sigma) per subject and expert, (N, K)."""
    b = moments.b_hat
    if b.shape[-1] == 0:
        return moments.rr
    zz = as_stack(data.zz, 2)[:, None]
    return _residual_ss(moments, matvec(zz, b)) + trace_product(zz, moments.b_cov)
