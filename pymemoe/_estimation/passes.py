r"""The passes of EM over the blocks of subjects: the E-step, one M-step, the scores.

Each pass is a reduction over blocks of subjects (:mod:`pymemoe._execution.blocks`): a block
function ``fn(block, cache, *args)`` returns the block's new cache (its E-step: posterior
probabilities and random-effect moments, :class:`pymemoe._model.likelihood.EStep`) and small
sums, which the blocks add up. The functions are at module level so that the Dask workers of
:mod:`pymemoe.distributed` receive them by reference.

One M-step (generalised EM: it never decreases the log-likelihood) is the gating's damped
Newton step (:func:`pymemoe._model.gating.newton_update_blocks`) and the family's own M-step
(:meth:`pymemoe.families.base.ExpertFamily.m_step`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .._execution.blocks import tree_sum
from .._model.gating import newton_update_blocks
from .._model.likelihood import EStep, e_step, gating_weights, natural_score_sums, score_obs
from .._model.params import Params, Structure
from .context import FitContext

__all__ = ["e_pass", "m_step", "score_moments", "value_score_block", "start_params_from_tau",
           "known_labels", "with_known_labels"]


def _e_block(data, cache, params: Params):
    """E-step of one block and the family's M-step sums formed while its data are hot."""
    estep = e_step(data, params, warm=cache)
    tau = estep.weighted_tau
    return estep, (estep.llf, tau.sum(axis=0),
                   data.family.e_sums(data, params, estep.moments, tau))


def e_pass(blocks, params: Params, caches: Sequence) -> tuple[list, float, np.ndarray, object]:
    """The E-step over all blocks: new caches, llf, expert sizes (sum_i tau_ik) and the summed
    M-step sums of the family."""
    caches, (llf, sizes, e_sums) = blocks.map_reduce(_e_block, caches, params)
    return caches, float(llf), sizes, e_sums


def m_step(ctx: FitContext, blocks, params: Params, caches: Sequence, e_sums) -> Params:
    """One M-step from the E-step ``caches`` at ``params``; never decreases the log-likelihood."""
    # one damped Newton step for the gating (an ascent; more steps cost evaluations that the
    # next E-step makes moot): the fits of the benchmark set took 10-20% less time, at the
    # same maxima (docs/performance.rst, "The benchmark set")
    gamma = newton_update_blocks(blocks, caches, params.gamma, max_steps=1)
    beta, cov, scale = ctx.family.m_step(blocks, caches, ctx.structure, params, e_sums, ctx.summary)
    return Params(gamma=gamma, beta=beta, cov_re=cov, scale=scale)


def _score_block(data, cache, params: Params, structure: Structure, internal: bool):
    """E-step of one block, its log-likelihood, natural score sums and the outer product of
    its per-subject scores (the BHHH matrix)."""
    estep = e_step(data, params, warm=cache)
    scores = score_obs(data, structure, params, estep, internal=internal)
    return estep, (estep.llf, scores.sum(axis=0), scores.T @ scores)


def score_moments(blocks, structure: Structure, params: Params, caches: Sequence,
                  internal: bool) -> tuple[list, float, np.ndarray, np.ndarray]:
    """States, llf, the summed score and the sum over subjects of the outer products of the
    per-subject scores, sum_i s_i s_i' (P, P): the BHHH approximation of the information."""
    caches, (llf, total, squares) = blocks.map_reduce(_score_block, caches, params, structure,
                                                      internal)
    return caches, float(llf), total, squares


def value_score_block(data, cache, params: Params):
    estep = e_step(data, params, warm=cache)
    return estep, (estep.llf, natural_score_sums(data, params, estep))


def _states_with_tau(blocks, params: Params, tau: np.ndarray) -> tuple[list, object]:
    """Block caches with given responsibilities ``tau`` (N, K) and the family's moments at
    ``params``, and their summed M-step sums: what an M-step from a soft partition needs."""
    def block_fn(data, cache, lo_hi):
        lo, hi = lo_hi
        moments = data.family.moments(data, params)
        t = tau[lo:hi]
        fake = EStep(llf=np.nan, llf_obs=np.zeros(hi - lo), tau=t, log_prior=np.zeros_like(t),
                     moments=moments, weights=getattr(data, "subject_weights", None),
                     gating_weights=gating_weights(data, t.shape[1]))
        return fake, data.family.e_sums(data, params, moments, fake.weighted_tau)
    out = [block_fn(b, None, bounds) for b, bounds in zip(blocks.blocks, blocks.bounds)]
    return [s for s, _ in out], tree_sum([e for _, e in out])


def known_labels(blocks) -> np.ndarray | None:
    """The known expert of every subject of ``blocks`` (0-based, -1 unknown), or None when
    the data know none (``known_class`` of the family's data)."""
    parts = blocks.map(lambda block, cache: getattr(block, "known_class", None),
                       blocks.empty_caches())
    return None if parts[0] is None else blocks.concatenate(parts)


def with_known_labels(tau: np.ndarray, known: np.ndarray | None) -> np.ndarray:
    """``tau`` (N, K) with the rows of subjects whose expert is known set to that expert."""
    if known is None:
        return tau
    out = tau.copy()
    rows = np.flatnonzero((known >= 0) & (known < tau.shape[1]))
    out[rows] = 0.0
    out[rows, known[rows]] = 1.0
    return out


def start_params_from_tau(ctx: FitContext, blocks, base: Params, tau0: np.ndarray) -> Params:
    """The parameters of one M-step from the soft partition ``tau0`` (N, K), with the family's
    moments at ``base``: one expert repeated K times, or already K experts (a split start).
    Subjects whose expert is known start in it."""
    tau0 = with_known_labels(tau0, known_labels(blocks))
    K = ctx.structure.n_experts
    if base.n_experts != K:
        base = Params(gamma=np.zeros((K, base.gamma.shape[1])),
                      beta=np.repeat(base.beta, K, axis=0),
                      cov_re=np.repeat(base.cov_re, K, axis=0), scale=np.repeat(base.scale, K))
    caches, e_sums = _states_with_tau(blocks, base, tau0)
    return m_step(ctx, blocks, base, caches, e_sums)
