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

__all__ = ["polish", "polish_run", "projected_grad_max", "finish_start", "whitening"]


class _PolishDone(Exception):
    """Raised inside the polish objective to end L-BFGS-B: target met or no more progress."""


ROUND_ITER = 25
"""L-BFGS-B iterations of one round of the polish before its coordinates are renewed."""


def polish(ctx: FitContext, blocks, params: Params, gtol: float, maxiter: int,
           patience: int = 5) -> tuple[Params, float]:
    """L-BFGS-B on -llf / N over the internal vector in coordinates whitened by the outer
    product of the per-subject scores (the BHHH approximation of the information,
    :func:`whitening`), so that gating, fixed-effect and variance parameters are on comparable
    scales and parameters that trade off against each other do not form a narrow valley.

    The search runs in rounds of at most :data:`ROUND_ITER` iterations, each in coordinates
    whitened at its starting point: far from the optimum the information changes, and a round
    that runs out of iterations, crawling along a valley its coordinates no longer fit, is
    restarted from its best point in fresh coordinates while it gains more than rounding. Any
    other end of a round ends the search, as does ``maxiter`` iterations in all. Within a
    round, the search ends at the projected gradient ``gtol`` (or at any
    evaluated point, a line-search trial included, whose whole gradient is that small), or once
    ``patience`` evaluations have landed within rounding of the best value (8 eps abs(f), up to
    a factor 1000) without improving either it or the largest gradient entry of the best point:
    near the optimum the changes of f fall below double precision and L-BFGS-B's line search
    would otherwise spend some 20 evaluations (each an E-step and a score) before giving up.
    The best point seen is returned.

    Measured (docs/performance.rst, "Measurements behind the defaults"): against the diagonal
    scaling alone, 59% fewer evaluations on PBCseq K = 3 and 4, 25% fewer on the 10^5-subject
    benchmark set, the same maxima; on a binary data set where the diagonal scaling crawled
    for 459 evaluations, a higher maximum in a quarter of the fit's time.
    """
    value = -np.inf
    left = maxiter
    while left > 0:
        start = value
        n_iter = min(ROUND_ITER, left)
        new_params, new_value, ran_out = _polish_round(ctx, blocks, params, gtol, n_iter,
                                                       patience)
        left -= n_iter
        if new_value >= value:
            params, value = new_params, new_value
        # any other end of a round (the target, a stall on the rounding of f, L-BFGS-B's own
        # stop) is the end of the search
        rounding = 8e3 * np.finfo(float).eps * abs(value)
        if not ran_out or not value > start + rounding:
            break
    return params, value


def _polish_round(ctx: FitContext, blocks, params: Params, gtol: float, maxiter: int,
                  patience: int) -> tuple[Params, float, bool]:
    """One round of :func:`polish`: the best params, their llf, and whether the round ran
    out of its ``maxiter`` iterations short of the target."""
    structure = ctx.structure
    N = ctx.summary.n_groups
    theta0 = to_internal(params, structure)
    caches, _, _, outer = score_moments(blocks, structure, params, blocks.empty_caches(),
                                        internal=True)
    box = internal_bounds(structure, ctx.summary.scale_floor)
    to_theta = whitening(outer / N, box)              # theta = to_theta @ x
    x0 = np.linalg.solve(to_theta, theta0)
    # a bounded coordinate is only scaled (x_j = theta_j / T_jj), so its box scales with it
    bounds = [(None if lo is None else lo / t, None if hi is None else hi / t)
              for (lo, hi), t in zip(box, np.diag(to_theta))]
    # warm starts for the next evaluation: the best point's block caches (only for families
    # that use them; the others would hold two more sets of caches in memory for nothing)
    warm = ctx.family.uses_warm_start
    bound = ctx.family.llf_bound(ctx.summary)
    best = {"f": np.inf, "g": np.inf, "x": x0, "stalled": 0,
            "caches": caches if warm else blocks.empty_caches()}
    del caches
    last: dict = {}                              # the caches of the last evaluation

    def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(over="ignore"):         # exp of a huge log-variance: inf, caught below
            par = from_internal(to_theta @ x, structure)
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
        return -llf / N, -(to_theta.T @ grad) / N

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

    ran_out = False
    try:
        out = minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": maxiter, "gtol": gtol, "ftol": 1e-15, "maxcor": 20})
        ran_out = out.nit >= maxiter and "PROJECTED GRADIENT" not in str(out.message)
    except _PolishDone:
        pass
    par = from_internal(to_theta @ best["x"], structure)
    return par, float(-best["f"] * N), ran_out


def whitening(information: np.ndarray, box: list) -> np.ndarray:
    """The matrix T of the polish's coordinates x, theta = T x, from the BHHH information per
    subject (P, P) and the box constraints of theta.

    Each coordinate is first scaled by its standard deviation under the information
    (1 / sqrt(B_jj); 1 where the score is ~0). The unbounded coordinates (gating, fixed effects,
    off-diagonal Cholesky entries) are then rotated to principal axes of their scaled
    information, each axis scaled to unit curvature (eigenvalues floored at 1e-8 of the
    largest), so that parameters that trade off against each other (the gating intercepts and
    the experts' intercepts of overlapping experts) form a round valley for L-BFGS-B. Bounded
    coordinates (variances' Cholesky diagonals, log residual variances with a floor) keep the
    diagonal scaling: a rotation would turn their boxes into general linear constraints.

    Examples
    --------
    >>> B = np.array([[4.0, 3.9], [3.9, 4.0]])            # two strongly correlated parameters
    >>> T = whitening(B, [(None, None), (None, None)])
    >>> np.allclose(T.T @ B @ T, np.eye(2))                # unit curvature in x
    True
    >>> whitening(B, [(0.0, None), (None, None)])         # a bounded one: diagonal scaling
    array([[0.5, 0. ],
           [0. , 0.5]])
    """
    diag = np.diag(information)
    curvature = np.sqrt(np.where(diag > 1e-16, diag, 1.0))
    T = np.diag(1.0 / curvature)
    free = np.array([lo is None and hi is None for lo, hi in box], dtype=bool)
    free &= diag > 1e-16
    if free.sum() > 1:
        scaled = information[np.ix_(free, free)] / np.outer(curvature[free], curvature[free])
        if not np.all(np.isfinite(scaled)):
            return T
        values, vectors = np.linalg.eigh(scaled)
        # the scaled matrix has a unit diagonal, so its largest eigenvalue is at least 1
        values = np.maximum(values, 1e-8 * values.max())
        T[np.ix_(free, free)] = (vectors / np.sqrt(values)) / curvature[free, None]
    return T


def polish_run(ctx: FitContext, blocks, run: StartResult) -> StartResult:
    """``run`` with its parameters polished on ``blocks`` (:func:`polish` with
    ``ctx.options.gtol``), or ``run`` itself when the polish did not reach at least its
    log-likelihood (so that a caller can tell which)."""
    params, value = polish(ctx, blocks, run.params, ctx.options.gtol, maxiter=500)
    if np.isfinite(value) and value >= run.llf:
        return dataclasses.replace(run, params=params, llf=value)
    return run


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
    _, _, grad, outer = score_moments(blocks, structure, params, caches, internal=True)
    scale = np.sqrt(np.diag(outer))
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
        params = polish_run(ctx, blocks, start).params
    caches, llf, _, _ = e_pass(blocks, params, blocks.empty_caches())
    return dataclasses.replace(start, params=params, llf=llf,
                               grad_max=projected_grad_max(ctx, blocks, params, caches))
