r"""The observed-data log-likelihood of a MEMoE, its E-step and its per-subject score.

    loglik(theta) = sum_i log sum_k pi_ik(gamma) f(y_i | k; beta_k, D_k, sigma2_k)

The E-step evaluates log pi_ik + log f(y_i | k) for every (subject, expert) pair, normalises in
log space (logsumexp) into the posterior expert probabilities tau_ik, and keeps the conditional
moments of the random effects (:class:`pymemoe.expert.ExpertMoments`).

By Fisher's identity the gradient of subject i's log-likelihood is the posterior-weighted sum
of the per-expert gradients::

    s_i = sum_k tau_ik d/dtheta [log pi_ik + log f(y_i | k)]

(``gating.gating_gradients`` and ``expert.expert_gradients``), mapped to the user or the
internal parameter vector by ``params.chain_gradient``.

This module is shared by the EM driver (:mod:`pymemoe.em`), the quasi-Newton polish and the
inference code; it is a separate module (not in the design's layout) so that neither of those
owns the likelihood.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import SubjectData
from .expert import ExpertMoments, expert_gradients, expert_moments
from .gating import gating_gradients, gating_score, log_prior
from .params import Params, Structure, chain_gradient
from .smallmat import max_last, sum_last, weighted_sum

__all__ = ["EStep", "e_step", "score_obs", "score"]


@dataclass(frozen=True, eq=False)
class EStep:
    """Everything the E-step computes at one parameter value.

    Attributes
    ----------
    llf : float                 observed-data log-likelihood
    llf_obs : ndarray (N,)      per-subject log-likelihood
    tau : ndarray (N, K)        posterior expert probabilities
    log_prior : ndarray (N, K)  log gating probabilities
    moments : ExpertMoments     per-expert densities and random-effect moments
    """

    llf: float
    llf_obs: np.ndarray
    tau: np.ndarray
    log_prior: np.ndarray
    moments: ExpertMoments


def e_step(data: SubjectData, params: Params) -> EStep:
    """Log-space E-step at ``params``."""
    moments = expert_moments(data, params)
    lp = log_prior(data.exog_gate, params.gamma)
    joint = lp + moments.logdens
    top = max_last(joint)[:, None]
    with np.errstate(under="ignore"):
        shifted = np.exp(joint - top)
        total = sum_last(shifted)[:, None]
        tau = shifted / total
    llf_obs = (top + np.log(total))[:, 0]
    return EStep(llf=float(llf_obs.sum()), llf_obs=llf_obs, tau=tau, log_prior=lp, moments=moments)


def score_obs(data: SubjectData, structure: Structure, params: Params,
              estep: EStep | None = None, internal: bool = False) -> np.ndarray:
    """Per-subject scores, shape (N, n_params), of the user (or internal) parameter vector."""
    if estep is None:
        estep = e_step(data, params)
    tau = estep.tau
    g_beta, g_cov, g_scale = expert_gradients(data, params, estep.moments)
    g_gamma = gating_gradients(data.exog_gate, params.gamma, tau, prior=np.exp(estep.log_prior))
    return chain_gradient(params, structure, grad_gamma=g_gamma, grad_beta=tau[:, :, None] * g_beta,
                          grad_cov_re=tau[:, :, None, None] * g_cov, grad_scale=tau * g_scale,
                          internal=internal)


def score(data: SubjectData, structure: Structure, params: Params,
          estep: EStep | None = None, internal: bool = False) -> np.ndarray:
    """The summed score, shape (n_params,). The chain rule is linear, so the natural pieces are
    summed over subjects first (posterior-weighted sums, without the per-subject products) and
    mapped once (cheaper than summing :func:`score_obs`)."""
    if estep is None:
        estep = e_step(data, params)
    tau = estep.tau
    g_beta, g_cov, g_scale = expert_gradients(data, params, estep.moments)
    g_gamma = gating_score(data.exog_gate, tau, np.exp(estep.log_prior))
    pieces = (g_gamma, weighted_sum(tau, g_beta), weighted_sum(tau, g_cov),
              np.einsum("nk,nk->k", tau, g_scale))
    return chain_gradient(params, structure, *(piece[None] for piece in pieces), internal=internal)[0]
