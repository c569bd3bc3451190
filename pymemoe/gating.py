r"""Multinomial-logit gating: the prior expert probabilities of each subject.

With baseline covariates w_i (r-vector, intercept included) and coefficients gamma_k, the first
expert being the reference (gamma_1 = 0)::

    log pi_ik = w_i' gamma_k - log sum_l exp(w_i' gamma_l).

In the M-step the gating maximises the soft-label multinomial log-likelihood

    Q(gamma) = sum_i sum_k tau_ik log pi_ik(gamma),

which is concave in the free coefficients (gamma_2..gamma_K). Its gradient and Hessian are::

    dQ/dgamma_k              =  sum_i (tau_ik - pi_ik) w_i
    d2Q/dgamma_k dgamma_l'   = -sum_i pi_ik (delta_kl - pi_il) w_i w_i'

A few Newton steps with step halving (so Q never decreases, hence the EM log-likelihood never
decreases) solve it. With hard labels (tau in {0, 1}) this is the ordinary multinomial logit
(statsmodels' ``MNLogit``). Perfect separation sends coefficients to infinity; it is detected by
:func:`separation_detected` and reported by the EM driver.
"""
from __future__ import annotations

import numpy as np

from .smallmat import max_last, sum_last

__all__ = ["log_prior", "gating_objective", "gating_gradients", "gating_score", "gating_hessian",
           "newton_update", "separation_detected"]


def log_prior(exog_gate: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """log pi_ik, shape (N, K), from exog_gate (N, r) and gamma (K, r)."""
    eta = exog_gate @ gamma.T
    eta = eta - max_last(eta)[:, None]
    return eta - np.log(sum_last(np.exp(eta)))[:, None]


def gating_objective(exog_gate: np.ndarray, gamma: np.ndarray, tau: np.ndarray) -> float:
    """Q(gamma) = sum_ik tau_ik log pi_ik."""
    return _objective(exog_gate, gamma, tau)[0]


def _objective(exog_gate: np.ndarray, gamma: np.ndarray, tau: np.ndarray) -> tuple[float, np.ndarray]:
    """Q(gamma) and log pi (N, K), which the Newton step reuses."""
    lp = log_prior(exog_gate, gamma)
    return float(np.einsum("nk,nk->", tau, lp)), lp


def gating_gradients(exog_gate: np.ndarray, gamma: np.ndarray, tau: np.ndarray,
                     prior: np.ndarray | None = None) -> np.ndarray:
    """Per-subject gradient (tau_ik - pi_ik) w_i, shape (N, K, r); ``prior`` is pi if known."""
    pi = np.exp(log_prior(exog_gate, gamma)) if prior is None else prior
    return (tau - pi)[:, :, None] * exog_gate[:, None, :]


def gating_score(exog_gate: np.ndarray, tau: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The summed gradient sum_i (tau_ik - pi_ik) w_i, shape (K, r), from pi = ``prior``: the
    subject sum of :func:`gating_gradients` as one BLAS product."""
    return (tau - prior).T @ exog_gate


def gating_hessian(exog_gate: np.ndarray, gamma: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
    """Hessian of Q in the free coefficients, shape ((K-1) r, (K-1) r); it does not depend on tau.
    ``prior`` is pi (N, K) if known."""
    pi = (np.exp(log_prior(exog_gate, gamma)) if prior is None else prior)[:, 1:]
    K1, r = pi.shape[1], exog_gate.shape[1]
    # -sum_i pi_ik (delta_kl - pi_il) w_i w_i', one BLAS product per pair of experts
    hess = np.empty((K1, r, K1, r))
    for k in range(K1):
        for l in range(k, K1):
            c = pi[:, k] * ((k == l) - pi[:, l])
            block = -(exog_gate * c[:, None]).T @ exog_gate
            hess[k, :, l, :] = block
            hess[l, :, k, :] = block.T
    return hess.reshape(K1 * r, K1 * r)


def newton_update(exog_gate: np.ndarray, gamma: np.ndarray, tau: np.ndarray,
                  max_steps: int = 5, tol: float = 1e-10) -> np.ndarray:
    """Increase Q by damped Newton steps from ``gamma``; returns the new (K, r) coefficients.

    Each accepted step increases Q (step halving), so the EM log-likelihood cannot decrease.
    """
    K, r = gamma.shape
    if K == 1:
        return gamma
    current, lp = _objective(exog_gate, gamma, tau)
    for _ in range(max_steps):
        pi = np.exp(lp)
        grad = gating_score(exog_gate, tau, pi)[1:].ravel()
        hess = gating_hessian(exog_gate, gamma, prior=pi)
        # A tiny ridge keeps the solve defined when a column separates the experts.
        ridge = 1e-10 * max(np.trace(-hess) / hess.shape[0], 1e-300)
        try:
            step = np.linalg.solve(-hess + ridge * np.eye(hess.shape[0]), grad)
        except np.linalg.LinAlgError:
            step = grad / max(np.abs(np.diag(hess)).max(), 1.0)
        if not np.all(np.isfinite(step)):
            break
        for _ in range(30):
            trial = gamma.copy()
            trial[1:] += step.reshape(K - 1, r)
            value, lp_trial = _objective(exog_gate, trial, tau)
            if value >= current:
                break
            step = step / 2.0
        else:
            break
        gain = value - current
        gamma, current, lp = trial, value, lp_trial
        if gain <= tol * (1.0 + abs(current)):
            break
    return gamma


def separation_detected(exog_gate: np.ndarray, gamma: np.ndarray, threshold: float = 25.0) -> bool:
    """True when some linear predictor difference exceeds ``threshold`` (prior odds > e^25).

    That happens only when the gating covariates separate the experts (near) perfectly, where
    the maximum likelihood coefficients do not exist.
    """
    if gamma.shape[0] == 1 or exog_gate.shape[1] == 0:
        return False
    eta = exog_gate @ gamma.T
    spread = eta.max(axis=1) - eta.min(axis=1)
    return bool(np.any(spread > threshold))
