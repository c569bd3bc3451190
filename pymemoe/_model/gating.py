r"""Multinomial-logit gating: the prior expert probabilities of each subject.

With baseline covariates w_i (r-vector, intercept included) and coefficients gamma_k, the first
expert being the reference (gamma_1 = 0)::

    log pi_ik = w_i' gamma_k - log sum_l exp(w_i' gamma_l).

In the M-step the gating maximises the soft-label multinomial log-likelihood

    Q(gamma) = sum_i sum_k tau_ik log pi_ik(gamma),

which is concave in the free coefficients (gamma_2..gamma_K). Its gradient and Hessian are::

    dQ/dgamma_k              =  sum_i (tau_ik - pi_ik) w_i
    d2Q/dgamma_k dgamma_l'   = -sum_i pi_ik (delta_kl - pi_il) w_i w_i'

Newton steps with step halving (so Q never decreases, hence the EM log-likelihood never
decreases) solve it; EM takes one per M-step (:func:`pymemoe._estimation.passes.m_step`): a
generalised EM step is an ascent whatever the number, and one costs two evaluations of Q
instead of five or six, while the next E-step moves tau anyway. With hard labels (tau in {0, 1}) this is the ordinary multinomial logit
(statsmodels' ``MNLogit``). Perfect separation sends coefficients to infinity; it is detected by
:func:`separation_detected` and reported by the EM driver.
"""
from __future__ import annotations

import numpy as np

from .._linalg.smallmat import max_last, sum_last

__all__ = ["log_prior", "gating_objective", "gating_gradients", "gating_score", "gating_hessian",
           "gating_block", "newton_update", "newton_update_blocks", "damped_newton",
           "SEPARATION_THRESHOLD", "max_logit_spread", "separation_detected"]


def log_prior(exog_gate: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """log pi_ik, shape (N, K), from exog_gate (N, r) and gamma (K, r)."""
    eta = exog_gate @ gamma.T
    eta = eta - max_last(eta)[:, None]
    return eta - np.log(sum_last(np.exp(eta)))[:, None]


def gating_objective(exog_gate: np.ndarray, gamma: np.ndarray, tau: np.ndarray) -> float:
    """Q(gamma) = sum_ik tau_ik log pi_ik."""
    return _objective(exog_gate, gamma, tau)[0]


def _objective(exog_gate: np.ndarray, gamma: np.ndarray, tau: np.ndarray
               ) -> tuple[float, np.ndarray]:
    """Q(gamma) and log pi (N, K), which the Newton step reuses."""
    lp = log_prior(exog_gate, gamma)
    return float(np.einsum("nk,nk->", tau, lp)), lp


def gating_gradients(exog_gate: np.ndarray, gamma: np.ndarray, tau: np.ndarray,
                     prior: np.ndarray | None = None) -> np.ndarray:
    """Per-subject gradient (tau_ik - pi_ik) w_i, shape (N, K, r); ``prior`` is pi if known."""
    pi = np.exp(log_prior(exog_gate, gamma)) if prior is None else prior
    return (tau - pi)[:, :, None] * exog_gate[:, None, :]


def gating_score(exog_gate: np.ndarray, tau: np.ndarray, prior: np.ndarray,
                 weights: np.ndarray | None = None) -> np.ndarray:
    """The summed gradient sum_i (tau_ik - pi_ik) w_i, shape (K, r), from pi = ``prior``: the
    subject sum of :func:`gating_gradients` as one BLAS product; each subject's term times
    its weight when ``weights`` (N,) are given."""
    diff = tau - prior
    if weights is not None:
        diff = diff * weights[:, None]
    return diff.T @ exog_gate


def gating_hessian(exog_gate: np.ndarray, gamma: np.ndarray, prior: np.ndarray | None = None,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """Hessian of Q in the free coefficients, shape ((K-1) r, (K-1) r); it does not depend on tau.
    ``prior`` is pi (N, K) if known; ``weights`` (N,) weight each subject's term."""
    pi = (np.exp(log_prior(exog_gate, gamma)) if prior is None else prior)[:, 1:]
    if weights is not None:
        exog_gate = exog_gate * np.sqrt(weights)[:, None]
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


def gating_block(data, cache, gamma: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Q, its gradient in the free coefficients ((K-1) r,) and its Hessian at ``gamma`` on one
    block of subjects (``data.exog_gate``, the labels and weights of the E-step's
    ``cache.gating_targets()``: the posterior, or under delayed entry the posterior and the
    expected ghosts): the terms a reduction over blocks adds up for the Newton step
    (:func:`newton_update_blocks`)."""
    labels, weights = cache.gating_targets()
    tau = labels if weights is None else labels * weights[:, None]
    value, lp = _objective(data.exog_gate, gamma, tau)
    pi = np.exp(lp)
    grad = gating_score(data.exog_gate, labels, pi, weights)[1:].ravel()
    return value, grad, gating_hessian(data.exog_gate, gamma, prior=pi, weights=weights)


def newton_update(exog_gate: np.ndarray, gamma: np.ndarray, tau: np.ndarray,
                  max_steps: int = 5, tol: float = 1e-10) -> np.ndarray:
    """Increase Q by damped Newton steps from ``gamma``; returns the new (K, r) coefficients.

    Each accepted step increases Q (step halving), so the EM log-likelihood cannot decrease.
    """
    def evaluate(trial):
        value, lp = _objective(exog_gate, trial, tau)
        pi = np.exp(lp)
        return value, gating_score(exog_gate, tau, pi)[1:].ravel(), gating_hessian(exog_gate, trial, prior=pi)
    return damped_newton(evaluate, gamma, max_steps, tol)


def newton_update_blocks(blocks, caches, gamma: np.ndarray, max_steps: int = 5,
                         tol: float = 1e-10) -> np.ndarray:
    """:func:`newton_update` with Q and its derivatives summed over blocks of subjects
    (:mod:`pymemoe._execution.blocks`; each block's ``cache.tau`` are its soft labels)."""
    return damped_newton(lambda trial: blocks.reduce(gating_block, caches, trial), gamma,
                         max_steps, tol)


def damped_newton(evaluate, gamma: np.ndarray, max_steps: int = 5, tol: float = 1e-10) -> np.ndarray:
    """Newton steps with step halving on the concave Q; ``evaluate(gamma)`` returns Q, its
    gradient and Hessian in the free coefficients. Each accepted step increases Q."""
    K, r = gamma.shape
    if K == 1:
        return gamma
    current, grad, hess = evaluate(gamma)
    for _ in range(max_steps):
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
            value, trial_grad, trial_hess = evaluate(trial)
            if value >= current:
                break
            step = step / 2.0
        else:
            break
        gain = value - current
        gamma, current, grad, hess = trial, value, trial_grad, trial_hess
        if gain <= tol * (1.0 + abs(current)):
            break
    return gamma


SEPARATION_THRESHOLD = 25.0   # a linear-predictor difference beyond this: prior odds > e^25


def max_logit_spread(exog_gate: np.ndarray, gamma: np.ndarray) -> float:
    """The largest difference between two experts' linear predictors w_i' gamma_k over the
    subjects given (a block's maximum; the maximum over blocks is the data's)."""
    if gamma.shape[0] == 1 or exog_gate.shape[1] == 0 or exog_gate.shape[0] == 0:
        return 0.0
    eta = exog_gate @ gamma.T
    return float((eta.max(axis=1) - eta.min(axis=1)).max())


def separation_detected(exog_gate: np.ndarray, gamma: np.ndarray,
                        threshold: float = SEPARATION_THRESHOLD) -> bool:
    """True when some linear predictor difference exceeds ``threshold`` (prior odds > e^25).

    That happens only when the gating covariates separate the experts (near) perfectly, where
    the maximum likelihood coefficients do not exist.
    """
    return max_logit_spread(exog_gate, gamma) > threshold
