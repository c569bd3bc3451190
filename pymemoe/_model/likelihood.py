r"""The observed-data log-likelihood of a MEMoE, its E-step and its scores, per block of subjects.

    loglik(theta) = sum_i log sum_k pi_ik(gamma) f(y_i | k; beta_k, D_k, sigma2_k)

The E-step evaluates log pi_ik + log f(y_i | k) for every (subject, expert) pair (the expert
family's :meth:`~pymemoe.families.base.ExpertFamily.moments`), normalises in log space
(logsumexp) into the posterior expert probabilities tau_ik, and keeps the conditional moments
of the random effects.

By Fisher's identity the gradient of subject i's log-likelihood is the posterior-weighted sum
of the per-expert gradients::

    s_i = sum_k tau_ik u_ik,      u_ik = d/dtheta [log pi_ik + log f(y_i | k)]

(``gating.gating_gradients`` and the family's ``gradients``), mapped to the user or the
internal parameter vector by :func:`pymemoe._model.params.chain_gradient`. Every function here works on
any block of subjects (:mod:`pymemoe._execution.blocks`) as well as on the whole data; the summed versions
return the small sums a reduction adds up.

**Fixed priors.** A subject with fixed prior probabilities p_ik (``class_prior``, lcmm's
``pprior``) contributes sum_k p_ik f(y_i | k): its log-prior is log p_ik and its terms are
left out of everything the gating is fitted with (its gating weight is 0).

**Delayed entry** (left truncation, a joint model's ``TimeToEvent(entry=...)``). Subject i is
in the data because it was event-free at its entry time T0_i, so its likelihood is
conditioned on that across the mixture (as lcmm's ``Jointlcmm``)::

    loglik_i = log sum_k pi_ik f(y_i | k) - log P_i,     P_i = sum_k pi_ik S_k(T0_i),

S_k(T0_i) the expert's probability of being event-free at entry (the family's
``entry_logsurv``). The posterior tau_ik is unchanged; with rho_ik = pi_ik S_k(T0_i) / P_i the
score is

    s_i = sum_k tau_ik u_ik - sum_k rho_ik v_ik,     v_ik = d/dtheta [log pi_ik + log S_k(T0_i)],

whose gating part is (tau_ik - rho_ik) w_i. EM treats the subjects that were not sampled
because their event came before T0_i as missing data ("ghosts", as for truncated data in
Dempster, Laird & Rubin 1977 and McLachlan & Jones 1988): for each subject, a geometric number
of ghosts with its covariates, each from expert k with probability proportional to
pi_ik (1 - S_k(T0_i)), precede it. Their expected numbers are

    g_ik = pi_ik (1 - S_k(T0_i)) / P_i,

and the expected complete-data log-likelihood gains sum_ik g_ik [log pi_ik + log(1 -
S_k(T0_i))]: the gating's M-step becomes a weighted multinomial logit with labels tau_ik +
g_ik (row totals 1 / P_i, :meth:`EStep.gating_targets`) and the hazards' M-step gains the
ghosts' term. It is an EM algorithm, so every M-step that increases its Q increases the
log-likelihood above.

**Known experts.** A subject whose expert c_i is known (``known_class``) contributes
pi_ic f(y_i | c) instead of the sum over experts: the likelihood of labels missing at random
(semi-supervised mixtures; lcmm's ``prior``). The E-step then has tau_ik = [k = c_i] for it,
and every formula above holds with that tau (its gating score is ([k = c_i] - pi_ik) w_i).

This module is shared by the EM driver (:mod:`pymemoe._estimation.driver`), the quasi-Newton polish, the
inference code and prediction; it is a separate module (not in the design's layout) so that
none of those owns the likelihood.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from .._linalg.smallmat import max_last, sum_last, weighted_sum
from .gating import gating_gradients, gating_score, log_prior
from .params import Params, Structure, chain_gradient

__all__ = ["EStep", "e_step", "gating_weights", "natural_score_sums", "chain_sums", "score_obs", "score",
           "expert_score_vectors"]


@dataclass(frozen=True, eq=False)
class EStep:
    """Everything the E-step computes at one parameter value, for a block or all subjects.

    Attributes
    ----------
    llf : float                 observed-data log-likelihood (of these subjects; weighted by
                                the subjects' weights when the fit has them)
    llf_obs : ndarray (N,)      per-subject log-likelihood (unweighted)
    tau : ndarray (N, K)        posterior expert probabilities
    log_prior : ndarray (N, K)  log gating probabilities
    moments                     the family's per-expert densities and random-effect moments
    weights : ndarray (N,) or None   the subjects' weights in the fit (None: all 1)
    gating_weights : ndarray (N,) or None   the subjects' weights in the gating's terms: 0 for
                                a subject with fixed prior probabilities (None: ``weights``)
    entry_logsurv : ndarray (N, K) or None   log S_k(T0_i) under delayed entry (module
                                docstring); None without
    """

    llf: float
    llf_obs: np.ndarray
    tau: np.ndarray
    log_prior: np.ndarray
    moments: object
    weights: np.ndarray | None = None
    gating_weights: np.ndarray | None = None
    entry_logsurv: np.ndarray | None = None

    @property
    def entry_log_total(self) -> np.ndarray | None:
        """log P_i = log sum_k pi_ik S_k(T0_i), (N,) (None without delayed entry)."""
        if self.entry_logsurv is None:
            return None
        return logsumexp(self.log_prior + self.entry_logsurv, axis=1)

    @property
    def entry_tau(self) -> np.ndarray | None:
        """rho_ik = pi_ik S_k(T0_i) / P_i, (N, K): the experts' probabilities among the
        subjects event-free at entry (None without delayed entry)."""
        if self.entry_logsurv is None:
            return None
        return np.exp(self.log_prior + self.entry_logsurv - self.entry_log_total[:, None])

    @property
    def score_prior(self) -> np.ndarray:
        """What tau_ik is compared with in the gating's score: pi_ik, or rho_ik under delayed
        entry (the score's gating part is (tau_ik - rho_ik) w_i)."""
        return np.exp(self.log_prior) if self.entry_logsurv is None else self.entry_tau

    @property
    def ghost_weights(self) -> np.ndarray | None:
        """The expected ghosts g_ik = pi_ik (1 - S_k(T0_i)) / P_i (N, K), times the subject's
        weight (module docstring; None without delayed entry)."""
        if self.entry_logsurv is None:
            return None
        ghosts = (np.exp(self.log_prior - self.entry_log_total[:, None])
                  * -np.expm1(self.entry_logsurv))
        return ghosts if self.weights is None else ghosts * self.weights[:, None]

    def gating_targets(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (N, K, rows summing to 1) and subject weights (N,) of the gating's M-step:
        the posterior and ``gate_weights``; under delayed entry the labels (tau_ik + g_ik) P_i
        and the weights times 1 / P_i (the ghosts' multinomial terms, module docstring)."""
        if self.entry_logsurv is None:
            return self.tau, self.gate_weights
        log_total = self.entry_log_total
        total = np.exp(log_total)[:, None]
        labels = total * self.tau + np.exp(self.log_prior) * -np.expm1(self.entry_logsurv)
        weights = np.exp(-log_total)
        gate = self.gate_weights
        return labels, weights if gate is None else weights * gate

    @property
    def gate_weights(self) -> np.ndarray | None:
        """Each subject's weight in the gating's sums (None: all 1)."""
        return self.weights if self.gating_weights is None else self.gating_weights

    @property
    def weighted_tau(self) -> np.ndarray:
        """tau_ik times subject i's weight: the weights of every sum over subjects of the
        M-step, the scores and the information (``tau`` itself without weights)."""
        return self.tau if self.weights is None else self.tau * self.weights[:, None]

    @classmethod
    def concatenate(cls, parts: "list[EStep]") -> "EStep":
        """The E-steps of consecutive blocks as one (subjects in order)."""
        if len(parts) == 1:
            return parts[0]
        moments = type(parts[0].moments).concatenate([p.moments for p in parts])
        optional = {name: None if getattr(parts[0], name) is None
                    else np.concatenate([getattr(p, name) for p in parts])
                    for name in ("weights", "gating_weights", "entry_logsurv")}
        return cls(llf=float(sum(p.llf for p in parts)),
                   llf_obs=np.concatenate([p.llf_obs for p in parts]),
                   tau=np.concatenate([p.tau for p in parts]),
                   log_prior=np.concatenate([p.log_prior for p in parts]), moments=moments,
                   **optional)


def e_step(data, params: Params, warm: EStep | None = None) -> EStep:
    """Log-space E-step at ``params`` on ``data`` (a block or all subjects); ``warm`` is the
    previous E-step of the same subjects (a warm start for families that iterate)."""
    moments = data.family.moments(data, params, None if warm is None else warm.moments)
    lp = log_prior(data.exog_gate, params.gamma)
    fixed = getattr(data, "class_prior", None)
    if fixed is not None and fixed.shape[1] == lp.shape[1]:   # fixed priors replace the gating's
        # (the fits with fewer experts that seed the starts ignore them)
        rows = np.isfinite(fixed[:, 0])
        with np.errstate(divide="ignore"):
            lp = np.where(rows[:, None], np.log(np.where(rows[:, None], fixed, 1.0)), lp)
    joint = lp + moments.logdens
    known = getattr(data, "known_class", None)
    K = joint.shape[1]
    if known is not None:                       # a known expert: only its term (module docstring)
        # (labels beyond K occur only in the fits with fewer experts that seed the starts,
        # where they are ignored)
        other = ((known[:, None] >= 0) & (known[:, None] < K)
                 & (known[:, None] != np.arange(K)))
        joint = np.where(other, -np.inf, joint)
    top = max_last(joint)[:, None]
    with np.errstate(under="ignore"):
        shifted = np.exp(joint - top)
        total = sum_last(shifted)[:, None]
        tau = shifted / total
    llf_obs = (top + np.log(total))[:, 0]
    entry = data.family.entry_logsurv(data, params)
    if entry is not None:       # conditioned on being event-free at entry (module docstring)
        llf_obs = llf_obs - logsumexp(lp + entry, axis=1)
    weights = getattr(data, "subject_weights", None)
    llf = float(llf_obs.sum()) if weights is None else float(weights @ llf_obs)
    return EStep(llf=llf, llf_obs=llf_obs, tau=tau, log_prior=lp, moments=moments,
                 weights=weights, gating_weights=gating_weights(data, lp.shape[1]),
                 entry_logsurv=entry)


def gating_weights(data, n_experts: int | None = None) -> np.ndarray | None:
    """Each subject's weight in the gating's terms: its weight, 0 where ``data`` fix its prior
    probabilities (``class_prior``); None when no prior is fixed (then the subjects' weights),
    or when the fit has another number of experts than the priors (``n_experts``)."""
    fixed = getattr(data, "class_prior", None)
    if fixed is None or (n_experts is not None and fixed.shape[1] != n_experts):
        return None
    free = (~np.isfinite(fixed[:, 0])).astype(float)
    weights = getattr(data, "subject_weights", None)
    return free if weights is None else free * weights


def natural_score_sums(data, params: Params, estep: EStep) -> tuple[np.ndarray, ...]:
    """The summed score in natural pieces: sum_i of (tau_ik - pi_ik) w_i (K, r), and the
    posterior-weighted gradients of the experts, beta (K, p), D (K, q, q), sigma2 (K,).

    These are sums over subjects, so blocks add up; :func:`chain_sums` maps the total to a
    parameter vector (the chain rule is linear)."""
    tau = estep.weighted_tau
    grads = data.family.gradients(data, params, estep.moments)
    g_gamma = gating_score(data.exog_gate, estep.tau, estep.score_prior, estep.gate_weights)
    g_scale = (np.einsum("nk,nk->k", tau, grads.scale) if grads.scale is not None
               else np.zeros(tau.shape[1]))
    g_beta = weighted_sum(tau, grads.beta)
    if estep.entry_logsurv is not None:         # - sum_k rho_ik d log S_k(T0_i)
        rho = estep.entry_tau if estep.weights is None else estep.entry_tau * estep.weights[:, None]
        g_beta = g_beta - weighted_sum(rho, data.family.entry_gradients(data, params))
    return g_gamma, g_beta, weighted_sum(tau, grads.cov), g_scale


def chain_sums(params: Params, structure: Structure, sums: tuple[np.ndarray, ...],
               internal: bool = False) -> np.ndarray:
    """The summed score of the user (or internal) vector from :func:`natural_score_sums`."""
    return chain_gradient(params, structure, *(piece[None] for piece in sums), internal=internal)[0]


def score(data, structure: Structure, params: Params, estep: EStep | None = None,
          internal: bool = False) -> np.ndarray:
    """The summed score, shape (n_params,), of all subjects of ``data``."""
    if estep is None:
        estep = e_step(data, params)
    return chain_sums(params, structure, natural_score_sums(data, params, estep), internal)


def score_obs(data, structure: Structure, params: Params, estep: EStep | None = None,
              internal: bool = False) -> np.ndarray:
    """Per-subject scores, shape (N, n_params), of the user (or internal) parameter vector:
    each subject's term of the summed score (its weight times its score, in a weighted fit)."""
    if estep is None:
        estep = e_step(data, params)
    tau = estep.tau
    grads = data.family.gradients(data, params, estep.moments)
    g_gamma = gating_gradients(data.exog_gate, params.gamma, tau, prior=estep.score_prior)
    if estep.gating_weights is not None:        # no gating term for fixed priors
        g_gamma = g_gamma * (estep.gating_weights > 0)[:, None, None]
    g_scale = None if grads.scale is None else tau * grads.scale
    g_beta = tau[:, :, None] * grads.beta
    if estep.entry_logsurv is not None:         # - sum_k rho_ik d log S_k(T0_i)
        g_beta = g_beta - estep.entry_tau[:, :, None] * data.family.entry_gradients(data, params)
    scores = chain_gradient(params, structure, grad_gamma=g_gamma,
                            grad_beta=g_beta,
                            grad_cov_re=tau[:, :, None, None] * grads.cov, grad_scale=g_scale,
                            internal=internal)
    return scores if estep.weights is None else scores * estep.weights[:, None]


def expert_score_vectors(data, structure: Structure, params: Params,
                         estep: EStep) -> list[np.ndarray]:
    """u_ik for each expert k: the gradient of log pi_ik + log f(y_i | k) on the user vector,
    a list of K arrays (N, n_params). The score is s_i = sum_k tau_ik u_ik and the posterior
    covariance of the u_ik gives the missing-information term of the observed information
    (:mod:`pymemoe._estimation.inference`)."""
    grads = data.family.gradients(data, params, estep.moments)
    prior = np.exp(estep.log_prior)
    N, K = prior.shape
    w = data.exog_gate
    if estep.gating_weights is not None:        # no gating term for fixed priors
        w = w * (estep.gating_weights > 0)[:, None]
    out = []
    for k in range(K):          # loops over experts, not subjects
        onehot = np.zeros((1, K))
        onehot[0, k] = 1.0
        mask = onehot[:, :, None]
        g_scale = None if grads.scale is None else grads.scale * onehot
        out.append(chain_gradient(
            params, structure, grad_gamma=(onehot - prior)[:, :, None] * w[:, None, :],
            grad_beta=grads.beta * mask, grad_cov_re=grads.cov * mask[..., None],
            grad_scale=g_scale, internal=False))
    return out
