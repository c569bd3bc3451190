r"""The quasi-Newton polish of a start, and the scaled gradient that judges convergence.

EM alone is slow near the optimum for variance components; the polish (L-BFGS-B on the
log-likelihood over the internal vector, :func:`pymemoe._model.params.to_internal`, with the
analytic score) brings the gradient to ~0 so that standard errors are computed at a maximum.
It is not EM and is not part of ``llf_trace``; a polished point is kept only if its
log-likelihood is at least the start's.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from scipy.optimize import minimize

from .._model.boundary import near_lower_bound
from .._model.likelihood import chain_sums
from .._model.params import Params, from_internal, internal_bounds, to_internal
from .context import FitContext
from .em import StartResult
from .passes import e_pass, score_moments, value_score_block

__all__ = ["polish", "projected_grad_max", "finish_start"]


class _PolishDone(Exception):
    """Raised inside the polish objective to end L-BFGS-B: target met or no more progress."""


def polish(ctx: FitContext, blocks, params: Params, gtol: float, maxiter: int,
           patience: int = 5) -> tuple[Params, float]:
    """L-BFGS-B on -llf / N over the internal vector, preconditioned by the diagonal of the
    outer product of the per-subject scores (the BHHH approximation of the information), so
    that gating, fixed-effect and variance parameters are on comparable scales.

    The search ends at the projected gradient ``gtol`` (or at any evaluated point, a line-search
    trial included, whose whole gradient is that small), or once ``patience`` evaluations have
    landed within rounding of the best value (8 eps abs(f), up to a factor 1000) without improving
    either it or the largest gradient entry of the best point: near the optimum the changes of f
    fall below double precision and L-BFGS-B's line search would otherwise spend some 20
    evaluations (each an E-step and a score) before giving up. The best point seen is returned.
    """
    structure = ctx.structure
    N = ctx.summary.n_groups
    theta0 = to_internal(params, structure)
    caches, _, _, squares = score_moments(blocks, structure, params, blocks.empty_caches(),
                                          internal=True)
    curvature = np.sqrt(squares / N)
    unit = np.where(curvature > 1e-8, curvature, 1.0)     # x = theta * unit
    bounds = [(None if lo is None else lo * u, None if hi is None else hi * u)
              for (lo, hi), u in zip(internal_bounds(structure, ctx.summary.scale_floor), unit)]
    # warm starts for the next evaluation: the best point's block caches (only for families
    # that use them; the others would hold two more sets of caches in memory for nothing)
    warm = ctx.family.uses_warm_start
    bound = ctx.family.llf_bound(ctx.summary)
    best = {"f": np.inf, "g": np.inf, "x": theta0 * unit, "stalled": 0,
            "caches": caches if warm else blocks.empty_caches()}
    del caches
    last: dict = {}                              # the caches of the last evaluation

    def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(over="ignore"):         # exp of a huge log-variance: inf, caught below
            par = from_internal(x / unit, structure)
        if not (np.all(np.isfinite(par.cov_re)) and np.all(np.isfinite(par.scale))):
            return np.inf, np.zeros_like(x)          # a trial point beyond floating range
        with np.errstate(all="ignore"):   # a trial point may be extreme: judged by its result
            try:
                caches, (llf, sums) = blocks.map_reduce(value_score_block, best["caches"], par)
            except np.linalg.LinAlgError:
                return np.inf, np.zeros_like(x)
            if not np.isfinite(llf) or llf > bound:     # beyond floating range or garbage
                return np.inf, np.zeros_like(x)
            grad = chain_sums(par, structure, sums, internal=True)
        if not np.all(np.isfinite(grad)):           # e.g. a residual variance whose square underflows
            return np.inf, np.zeros_like(x)
        last["caches"] = caches if warm else best["caches"]
        return -llf / N, -grad / N / unit

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = evaluate(x)
        g_max = float(np.abs(grad).max()) if grad.size else 0.0
        rounding = 8.0 * np.finfo(float).eps * abs(value)
        if np.isfinite(value) and (value < best["f"] - rounding
                                   or (value <= best["f"] + rounding and g_max < best["g"])):
            best.update(f=value, g=g_max, x=x.copy(), stalled=0, caches=last["caches"])
            if g_max <= gtol:          # a trial point of the line search may meet the target
                raise _PolishDone
        elif value <= best["f"] + 1e3 * rounding:
            # a trial at the best value within rounding: the line search is stuck there. A
            # clearly worse trial (an overshooting step) is ordinary backtracking, not a stall.
            best["stalled"] += 1
            if best["stalled"] >= patience:
                raise _PolishDone
        return value, grad

    try:
        minimize(objective, theta0 * unit, jac=True, method="L-BFGS-B", bounds=bounds,
                 options={"maxiter": maxiter, "gtol": gtol, "ftol": 1e-15, "maxcor": 20})
    except _PolishDone:
        pass
    par = from_internal(best["x"] / unit, structure)
    return par, float(-best["f"] * N)


def projected_grad_max(ctx: FitContext, blocks, params: Params, caches: Sequence) -> float:
    """Largest scaled gradient entry g_j / sqrt(sum_i s_ij^2) on the internal scale, ignoring
    components pushing against an active bound (or one the search has reached for all
    practical purposes: :func:`pymemoe._model.boundary.near_lower_bound`).

    With the outer product of the scores as the information, g_j / sqrt(B_jj) is the size of
    a Newton step in units of the standard error, so the measure does not depend on the units
    of the data (lme4's scaled gradient is of the same kind).
    """
    structure = ctx.structure
    theta = to_internal(params, structure)
    _, _, grad, squares = score_moments(blocks, structure, params, caches, internal=True)
    scale = np.sqrt(squares)
    scaled = np.divide(grad, scale, out=np.zeros_like(grad), where=scale > 0)
    near = near_lower_bound(structure, params, ctx.summary, ctx.family.re_scale(params),
                            family=ctx.family)
    for j, (low, _) in enumerate(internal_bounds(structure, ctx.summary.scale_floor)):
        # (a family's coefficient at a boundary has no bound of the search: a spline
        # hazard's log weight drifting to -inf)
        if ((low is not None and theta[j] <= low + 1e-12) or near[j]) and grad[j] < 0:
            scaled[j] = 0.0
    return float(np.abs(scaled).max()) if scaled.size else 0.0


def finish_start(ctx: FitContext, start: StartResult) -> StartResult:
    """Polish a start by quasi-Newton (kept only if it raises llf) and measure its gradient."""
    if start.empty:
        return start
    blocks = ctx.blocks
    params = start.params
    if ctx.start_blocks is not blocks:      # the start ran on a sample: its llf on all subjects
        _, llf, _, _ = e_pass(blocks, params, blocks.empty_caches())
        start = dataclasses.replace(start, llf=llf)
    if ctx.options.polish:
        polished, value = polish(ctx, blocks, params, ctx.options.gtol, maxiter=500)
        if np.isfinite(value) and value >= start.llf:
            params = polished
    caches, llf, _, _ = e_pass(blocks, params, blocks.empty_caches())
    return dataclasses.replace(start, params=params, llf=llf,
                               grad_max=projected_grad_max(ctx, blocks, params, caches))
