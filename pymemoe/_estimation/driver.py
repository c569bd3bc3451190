r"""The EM driver: the starts, the best start, its canonical order and a final E-step.

Loop shape (as scikit-learn's mixtures, with lme4's separate convergence check)::

    search   the starts (:mod:`pymemoe._estimation.starts`): the default strategy grows K
             experts from the K - 1 fit and adds diverse starts, each run by EM + SQUAREM
             (:mod:`pymemoe._estimation.em`), the best polished by quasi-Newton
             (:mod:`pymemoe._estimation.polish`); or independent starts, or a given start
    order    experts by decreasing size (sum of posterior probabilities), ties by the first
             fixed effect; the gating reference is the first expert in that order
    E-step   a final E-step on all subjects, so that the posteriors match the parameters
    check    convergence and diagnostics (:mod:`pymemoe._estimation.convergence`), issued as
             warnings and kept in the fit's messages

The driver knows the experts only through their family (:mod:`pymemoe.families.base`) and the
gating (:mod:`pymemoe._model.gating`); it contains no family-specific code.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

from .._execution.threads import one_blas_thread
from .._model.likelihood import EStep
from .._model.params import Params, Structure, reorder
from .context import EMOptions, FitContext
from .convergence import check_fit
from .passes import e_pass, known_labels
from .polish import projected_grad_max
from .seeds import as_seed_sequence
from .starts import LLF_TOL, StartPlan, default_sample_subjects, independent_starts, search_starts

__all__ = ["EMFit", "run_em", "canonical_order"]


@dataclass(frozen=True, eq=False)
class EMFit:
    """The outcome of :func:`run_em` (frozen): the estimates in canonical order, the final
    E-step on all subjects (``estep``), the best start's trace and iterations, the convergence
    verdict and messages, and every start's row (``starts``, see
    :func:`pymemoe._estimation.starts.starts_table`) with the replication count ``n_best`` of
    ``n_finished``."""

    params: Params
    estep: EStep
    llf: float
    llf_trace: np.ndarray
    n_iter: int
    converged: bool
    grad_max: float
    messages: tuple[str, ...]
    start_llfs: np.ndarray
    best_start: int
    starts: tuple = ()
    n_best: int = 1
    n_finished: int = 1


def canonical_order(params: Params, sizes: np.ndarray) -> np.ndarray:
    """Permutation putting experts by decreasing size (sum_i tau_ik), ties broken by the first
    fixed effect."""
    sizes = np.round(np.asarray(sizes, dtype=float), 8)
    first = params.beta[:, 0] if params.beta.shape[1] else np.zeros(len(sizes))
    return np.lexsort((first, -sizes))


def _read_only(estep):
    """The final E-step with its arrays made read-only (the results hand it to the predictive
    engine; nothing may change it). Arrays a distributed E-step keeps on the workers are
    gathered read-only when asked for (:class:`pymemoe.distributed.DistributedEStep`)."""
    held = vars(estep)
    arrays = [held.get(name) for name in ("tau", "log_prior", "llf_obs")]
    arrays.append(vars(held["moments"]).get("b_hat") if "moments" in held else None)
    for values in arrays:
        if isinstance(values, np.ndarray):
            values.setflags(write=False)
    return estep


def run_em(data, structure: Structure, options: EMOptions,
           random_state=None, start_params: Params | None = None,
           grow_from: Params | None = None) -> EMFit:
    """Fit a MEMoE by EM from several starts and return the best (see the module docstring).

    ``data`` is in-memory data (blocks are made of it) or data and blocks that run their own
    passes (:func:`pymemoe._execution.blocks.as_blocks`); ``grow_from`` a fit with one expert
    fewer whose experts the split starts divide."""
    with one_blas_thread():
        return _run_em(data, structure, options, random_state, start_params, grow_from)


def _run_em(data, structure: Structure, options: EMOptions, random_state,
            start_params: Params | None, grow_from: Params | None) -> EMFit:
    ctx = FitContext.build(data, structure, options)
    try:
        structure, options, family = ctx.structure, ctx.options, ctx.family
        K = structure.n_experts
        labelled = known_labels(ctx.blocks) is not None
        seed = as_seed_sequence(random_state)
        searched = not (start_params is not None or K == 1 or options.starts == "independent")
        if not searched:
            search = independent_starts(ctx, seed, start_params)
        else:
            sample = (default_sample_subjects(ctx.summary.n_groups, family) if options.sample_subjects is None
                      else options.sample_subjects)
            # with known experts the labels fix the numbering: no split starts grown from
            # fits with fewer experts (whose numbering the labels do not fit)
            plan = StartPlan(n_starts=options.n_starts, screen_iter=options.screen_iter,
                             n_finish=options.n_finish, sample_subjects=sample,
                             split=not labelled)
            search = search_starts(ctx, seed, plan, prev=grow_from)
        best = search.best
        blocks = ctx.blocks
        caches, llf, sizes, _ = e_pass(blocks, best.params, blocks.empty_caches())
        if searched and not best.empty:
            # the search's best (pymemoe._estimation.starts): its llf and gradient on all subjects
            best = dataclasses.replace(best, llf=llf, grad_max=projected_grad_max(
                ctx, blocks, best.params, caches))
        order = (np.arange(K) if labelled else canonical_order(best.params, sizes))
        params = reorder(best.params, order)
        caches, _, sizes, _ = e_pass(blocks, params, caches)
        estep = _read_only(blocks.joined(caches))
        converged, messages = check_fit(ctx, blocks, search, best, params, caches, sizes, LLF_TOL)
        for category, msg in messages:
            warnings.warn(msg, category, stacklevel=3)
        rows = search.rows
        return EMFit(params=params, estep=estep, llf=estep.llf, llf_trace=best.llf_trace,
                     n_iter=best.n_iter, converged=converged, grad_max=best.grad_max,
                     messages=tuple(msg for _, msg in messages),
                     start_llfs=np.array([r["llf"] for r in rows if r["n_experts"] == K]),
                     best_start=next((i for i, r in enumerate(rows) if r["chosen"]), 0),
                     starts=rows, n_best=search.n_best, n_finished=search.n_finished)
    finally:
        if ctx.blocks is not data:
            ctx.blocks.close()
