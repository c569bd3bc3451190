r"""The EM driver: starts, E/M iterations, quasi-Newton polish, the best start, a final E-step.

Loop shape (as scikit-learn's mixtures, with lme4's separate convergence check)::

    for each start s = 1..n_starts  (own child of SeedSequence(random_state).spawn):
        tau0   <- an initial soft partition (k-means on per-subject coefficients, or random)
        theta  <- one M-step from tau0 and the one-expert (K = 1) fit
        repeat: E-step (llf, tau)  ->  M-step (gating Newton, the family's M-step)
        until the relative change of llf < tol, or maxiter
    polish the best start: L-BFGS-B on -llf over the internal vector with the analytic score,
        kept only if it raises llf
    canonical expert order; final E-step.

Every pass over subjects is a reduction over blocks of subjects (:mod:`pymemoe.blocks`): the
E-step leaves a state per block (posterior probabilities and random-effect moments,
:class:`pymemoe.likelihood.EStep`), the M-step's sums and the gating Newton's derivatives are
sums of block functions over those states, and so are the polish's log-likelihood and score.
The driver knows the experts only through their family (:mod:`pymemoe.families.base`) and the
gating (:mod:`pymemoe.gating`); it contains no family-specific code.

Each M-step increases the log-likelihood (generalised EM), so ``llf_trace`` never decreases; the
polish is not EM and is not part of the trace. EM alone is slow near the optimum for variance
components; the polish brings the gradient to ~0 so that standard errors are computed at a
maximum.

Canonical order: experts by decreasing size (sum of posterior probabilities), ties by the first
fixed effect; the gating reference is the first expert in that order.

An expert whose posterior size falls below ``min_size`` subjects ends its start (reported, never
NaN); if every start ends so, the best of them is returned with a warning.
"""
from __future__ import annotations

import dataclasses
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import minimize

from .blocks import LocalBlocks, as_blocks, tree_sum
from .boundary import boundary_messages, near_lower_bound
from .exceptions import (BestNotReplicatedWarning, BoundaryWarning, ConvergenceWarning,
                         SeparationWarning)
from .families.base import DataSummary
from .gating import max_logit_spread, newton_update_blocks, SEPARATION_THRESHOLD
from .likelihood import EStep, chain_sums, e_step, natural_score_sums, score_obs
from .parallel import thread_map
from .params import Params, Structure, from_internal, internal_bounds, reorder, to_internal

__all__ = ["EMOptions", "EMFit", "FitContext", "run_em", "e_pass", "m_step", "map_starts",
           "canonical_order", "as_seed_sequence", "collapse_messages"]


@dataclass(frozen=True)
class EMOptions:
    """Controls of the fit (see :meth:`pymemoe.MEMoE.fit`)."""

    n_starts: int = 10
    maxiter: int = 1000
    tol: float = 1e-8
    polish: bool = True
    gtol: float = 1e-8
    gtol_check: float = 1e-3
    min_size: float = 1.0
    n_jobs: int = 1
    screen_iter: int | None = None
    n_finish: int = 3
    progress: bool = False
    block_size: int | None = None
    starts: str = "auto"
    sample_subjects: int | None = None


@dataclass(frozen=True, eq=False)
class StartResult:
    params: Params
    llf: float
    llf_trace: np.ndarray
    n_iter: int
    em_converged: bool
    empty: bool
    grad_max: float
    kind: str = ""


@dataclass(frozen=True, eq=False)
class EMFit:
    """The outcome of :func:`run_em` (frozen; see the attributes for what each start did)."""

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


@dataclass(eq=False)
class FitContext:
    """What every pass of one fit needs: the blocks of all subjects (in memory,
    :class:`pymemoe.blocks.LocalBlocks`, or distributed), the in-memory blocks the starts run
    on (the same blocks, or a random subsample of subjects when the data are large or
    distributed), the structure, the options and the data summary."""

    blocks: object
    start_blocks: LocalBlocks
    structure: Structure
    options: EMOptions
    summary: DataSummary

    @property
    def family(self):
        return self.blocks.family

    @classmethod
    def build(cls, data_or_blocks, structure: Structure, options: EMOptions) -> "FitContext":
        blocks = as_blocks(data_or_blocks, structure.n_experts, options.n_jobs, options.block_size)
        start_blocks = blocks if isinstance(blocks, LocalBlocks) else as_blocks(
            blocks.sample(blocks.n_groups, np.random.default_rng(0)), structure.n_experts,
            options.n_jobs, options.block_size)
        return cls(blocks=blocks, start_blocks=start_blocks, structure=structure,
                   options=options, summary=blocks.family.summary(blocks))

    def with_structure(self, structure: Structure) -> "FitContext":
        return dataclasses.replace(self, structure=structure)


# ---------------------------------------------------------------------------------------------
# Passes


def _e_block(data, state, params: Params):
    """E-step of one block and the family's M-step sums formed while its data are hot."""
    estep = e_step(data, params, warm=state)
    return estep, (estep.llf, estep.tau.sum(axis=0),
                   data.family.e_sums(data, params, estep.moments, estep.tau))


def e_pass(blocks, params: Params, states: Sequence) -> tuple[list, float, np.ndarray, object]:
    """The E-step over all blocks: new states, llf, expert sizes (sum_i tau_ik) and the summed
    M-step sums of the family."""
    states, (llf, sizes, e_sums) = blocks.map_reduce(_e_block, states, params)
    return states, float(llf), sizes, e_sums


def m_step(ctx: FitContext, blocks, params: Params, states: Sequence, e_sums) -> Params:
    """One M-step from the E-step ``states`` at ``params``; never decreases the log-likelihood."""
    gamma = newton_update_blocks(blocks, states, params.gamma)
    beta, cov, scale = ctx.family.m_step(blocks, states, ctx.structure, params, e_sums, ctx.summary)
    return Params(gamma=gamma, beta=beta, cov_re=cov, scale=scale)


def _score_block(data, state, params: Params, structure: Structure, internal: bool):
    """E-step of one block, its log-likelihood, natural score sums and the sums of squares of
    its per-subject scores (the BHHH diagonal)."""
    estep = e_step(data, params, warm=state)
    scores = score_obs(data, structure, params, estep, internal=internal)
    return estep, (estep.llf, scores.sum(axis=0), np.einsum("nj,nj->j", scores, scores))


def score_moments(blocks, structure: Structure, params: Params, states: Sequence,
                  internal: bool) -> tuple[list, float, np.ndarray, np.ndarray]:
    """States, llf, the summed score and the sum over subjects of each score entry's square."""
    states, (llf, total, squares) = blocks.map_reduce(_score_block, states, params, structure,
                                                      internal)
    return states, float(llf), total, squares


def _value_score_block(data, state, params: Params):
    estep = e_step(data, params, warm=state)
    return estep, (estep.llf, natural_score_sums(data, params, estep))


# ---------------------------------------------------------------------------------------------
# Starts


def _states_with_tau(blocks, params: Params, tau: np.ndarray) -> tuple[list, object]:
    """Block states with given responsibilities ``tau`` (N, K) and the family's moments at
    ``params``, and their summed M-step sums: what an M-step from a soft partition needs."""
    def block_fn(data, state, lo_hi):
        lo, hi = lo_hi
        moments = data.family.moments(data, params)
        t = tau[lo:hi]
        fake = EStep(llf=np.nan, llf_obs=np.zeros(hi - lo), tau=t, log_prior=np.zeros_like(t),
                     moments=moments)
        return fake, data.family.e_sums(data, params, moments, t)
    out = [block_fn(b, None, bounds) for b, bounds in zip(blocks.blocks, blocks.bounds)]
    return [s for s, _ in out], tree_sum([e for _, e in out])


def start_params_from_tau(ctx: FitContext, blocks, base: Params, tau0: np.ndarray) -> Params:
    """The parameters of one M-step from the soft partition ``tau0`` (N, K), with the family's
    moments at ``base``: one expert repeated K times, or already K experts (a split start)."""
    K = ctx.structure.n_experts
    if base.n_experts != K:
        base = Params(gamma=np.zeros((K, base.gamma.shape[1])),
                      beta=np.repeat(base.beta, K, axis=0),
                      cov_re=np.repeat(base.cov_re, K, axis=0), scale=np.repeat(base.scale, K))
    states, e_sums = _states_with_tau(blocks, base, tau0)
    return m_step(ctx, blocks, base, states, e_sums)


def one_expert_fit(ctx: FitContext, blocks, accel: bool = True) -> StartResult:
    """EM for the one-expert model (K = 1, each expert's covariance and variance of its own)
    on ``blocks``: the base of every start."""
    structure = ctx.structure
    base = dataclasses.replace(structure, n_experts=1, cov_re="expert",
                               scale="expert" if structure.has_scale else "none")
    base_ctx = ctx.with_structure(base)
    return run_start(base_ctx, blocks, ctx.family.one_expert_start(blocks, structure, ctx.summary),
                     ctx.options.maxiter, kind="one expert", accel=accel)


# ---------------------------------------------------------------------------------------------
# One start


def run_start(ctx: FitContext, blocks, params: Params, maxiter: int, kind: str = "",
              accel: bool = False) -> StartResult:
    """EM from ``params`` on ``blocks`` for at most ``maxiter`` M-steps.

    Stops when the log-likelihood gained per M-step falls below ``tol (1 + |llf|)``, or when an
    expert's posterior size falls below ``min_size`` subjects (``empty``).

    ``accel=True``: SQUAREM (Varadhan & Roland 2008, scheme S3). Each cycle maps
    x0 -> x1 = F(x0) -> x2 = F(x1) by two M-steps, extrapolates on the internal vector
    (Cholesky factors, log variances: every point is a valid parameter)::

        r = x1 - x0,  v = x2 - 2 x1 + x0,  alpha = -clip(|r| / |v|, 1, step_max)
        x' = x0 - 2 alpha r + alpha^2 v,   x'' = F(x')

    and keeps x'' only if its log-likelihood is at least that of x2 (otherwise x2: a plain EM
    cycle), so the trace never decreases. ``step_max`` starts at 1, is multiplied by 4 after an
    accepted step that reached it and divided by 4 after a rejected one. On PBCseq (K = 3) it
    cuts the M-steps of a start by a factor of 2 to 5.
    """
    options = ctx.options
    K = ctx.structure.n_experts
    em_converged = empty = False
    n_iter = 0                                   # M-steps done
    states, llf, sizes, e_sums = e_pass(blocks, params, blocks.empty_states())
    trace = [llf]                                # at the start, then after each M-step or cycle

    def emptied(sizes):
        return K > 1 and sizes.min() < options.min_size

    warm = ctx.family.uses_warm_start

    def step(params, box: list, e_sums):
        """One M-step from the states in ``box`` (a one-item list, the only reference to
        them), then the E-step. For a family that does not warm-start, the old states are
        released before the new ones are made: with SQUAREM several sets would otherwise be
        alive at once (9.3 GB per worker at 10^7 subjects on two workers)."""
        new = m_step(ctx, blocks, params, box[0], e_sums)
        if warm:
            previous = box[0]
        else:
            box.clear()
            previous = blocks.empty_states()
        return (new,) + e_pass(blocks, new, previous)

    step_max = 1.0
    # the extrapolation stays in the box of the polish (variances >= 0, residual variances
    # >= the M-step's floor): a linear step in log sigma2 can otherwise reach 1e-65 in a few
    # cycles where the likelihood is flat in sigma2, and the Woodbury terms overflow there
    lower = np.array([-np.inf if lo is None else lo
                      for lo, _ in internal_bounds(ctx.structure, ctx.summary.scale_floor)])
    bound = ctx.family.llf_bound(ctx.summary)
    while n_iter < maxiter:
        if emptied(sizes):
            empty = True
            break
        previous = llf
        box, states = [states], None
        if not accel:
            params, states, llf, sizes, e_sums = step(params, box, e_sums)
            n_iter += 1
            steps = 1
        else:
            x0 = to_internal(params, ctx.structure)
            p1, s1, l1, z1, e1 = step(params, box, e_sums)
            box, s1 = [s1], None
            p2, s2, l2, z2, e2 = step(p1, box, e1)
            del box
            n_iter += 2
            params, states, llf, sizes, e_sums, steps = p2, s2, l2, z2, e2, 2
            x1, x2 = to_internal(p1, ctx.structure), to_internal(p2, ctx.structure)
            r, v = x1 - x0, x2 - 2.0 * x1 + x0
            norm_r, norm_v = np.linalg.norm(r), np.linalg.norm(v)
            if norm_v > 0 and np.isfinite(norm_v) and not emptied(z2) and n_iter < maxiter:
                alpha = -max(1.0, min(step_max, norm_r / norm_v))
                accepted = False
                # an extrapolated point may be extreme (huge variances): judged by its llf
                with np.errstate(all="ignore"):
                    try:
                        xe = np.maximum(x0 - 2.0 * alpha * r + alpha ** 2 * v, lower)
                        pe = from_internal(xe, ctx.structure)
                        se, le, ze, ee = e_pass(blocks, pe,
                                                s2 if warm else blocks.empty_states())
                        if np.isfinite(le) and not emptied(ze):
                            box, se = [se], None
                            p3, s3, l3, z3, e3 = step(pe, box, ee)
                            del box
                            n_iter += 1
                            accepted = bool(np.isfinite(l3) and l2 <= l3 <= bound
                                            and not emptied(z3))
                    except (np.linalg.LinAlgError, ValueError, FloatingPointError):
                        accepted = False
                se = None
                if accepted:
                    s2 = states = None
                    params, states, llf, sizes, e_sums, steps = p3, s3, l3, z3, e3, 3
                    if -alpha >= step_max:
                        step_max *= 4.0
                else:
                    step_max = max(1.0, step_max / 4.0)
        trace.append(llf)
        if abs(llf - previous) / steps <= options.tol * (1.0 + abs(llf)):
            em_converged = True
            break
    return StartResult(params=params, llf=llf, llf_trace=np.asarray(trace), n_iter=n_iter,
                       em_converged=em_converged, empty=empty, grad_max=np.inf, kind=kind)


class _PolishDone(Exception):
    """Raised inside the polish objective to end L-BFGS-B: target met or no more progress."""


def polish(ctx: FitContext, blocks, params: Params, gtol: float, maxiter: int,
           patience: int = 5) -> tuple[Params, float]:
    """L-BFGS-B on -llf / N over the internal vector, preconditioned by the diagonal of the
    outer product of the per-subject scores (the BHHH approximation of the information), so
    that gating, fixed-effect and variance parameters are on comparable scales.

    The search ends at the projected gradient ``gtol`` (or at any evaluated point, a line-search
    trial included, whose whole gradient is that small), or once ``patience`` evaluations have
    landed within rounding of the best value (8 eps |f|, up to a factor 1000) without improving
    either it or the largest gradient entry of the best point: near the optimum the changes of f
    fall below double precision and L-BFGS-B's line search would otherwise spend some 20
    evaluations (each an E-step and a score) before giving up. The best point seen is returned.
    """
    structure = ctx.structure
    N = ctx.summary.n_groups
    theta0 = to_internal(params, structure)
    states, _, _, squares = score_moments(blocks, structure, params, blocks.empty_states(),
                                          internal=True)
    curvature = np.sqrt(squares / N)
    unit = np.where(curvature > 1e-8, curvature, 1.0)     # x = theta * unit
    bounds = [(None if lo is None else lo * u, None if hi is None else hi * u)
              for (lo, hi), u in zip(internal_bounds(structure, ctx.summary.scale_floor), unit)]
    # warm starts for the next evaluation: the best point's block states (only for families
    # that use them; the others would hold two more sets of states in memory for nothing)
    warm = ctx.family.uses_warm_start
    bound = ctx.family.llf_bound(ctx.summary)
    best = {"f": np.inf, "g": np.inf, "x": theta0 * unit, "stalled": 0,
            "states": states if warm else blocks.empty_states()}
    del states
    last: dict = {}                              # the states of the last evaluation

    def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(over="ignore"):         # exp of a huge log-variance: inf, caught below
            par = from_internal(x / unit, structure)
        if not (np.all(np.isfinite(par.cov_re)) and np.all(np.isfinite(par.scale))):
            return np.inf, np.zeros_like(x)          # a trial point beyond floating range
        with np.errstate(all="ignore"):   # a trial point may be extreme: judged by its result
            try:
                states, (llf, sums) = blocks.map_reduce(_value_score_block, best["states"], par)
            except np.linalg.LinAlgError:
                return np.inf, np.zeros_like(x)
            if not np.isfinite(llf) or llf > bound:     # beyond floating range or garbage
                return np.inf, np.zeros_like(x)
            grad = chain_sums(par, structure, sums, internal=True)
        if not np.all(np.isfinite(grad)):           # e.g. a residual variance whose square underflows
            return np.inf, np.zeros_like(x)
        last["states"] = states if warm else best["states"]
        return -llf / N, -grad / N / unit

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = evaluate(x)
        g_max = float(np.abs(grad).max()) if grad.size else 0.0
        rounding = 8.0 * np.finfo(float).eps * abs(value)
        if np.isfinite(value) and (value < best["f"] - rounding
                                   or (value <= best["f"] + rounding and g_max < best["g"])):
            best.update(f=value, g=g_max, x=x.copy(), stalled=0, states=last["states"])
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


def projected_grad_max(ctx: FitContext, blocks, params: Params, states: Sequence) -> float:
    """Largest scaled gradient entry g_j / sqrt(sum_i s_ij^2) on the internal scale, ignoring
    components pushing against an active bound (or one the search has reached for all
    practical purposes: :func:`pymemoe.boundary.near_lower_bound`).

    With the outer product of the scores as the information, g_j / sqrt(B_jj) is the size of
    a Newton step in units of the standard error, so the measure does not depend on the units
    of the data (lme4's scaled gradient is of the same kind).
    """
    structure = ctx.structure
    theta = to_internal(params, structure)
    _, _, grad, squares = score_moments(blocks, structure, params, states, internal=True)
    scale = np.sqrt(squares)
    scaled = np.divide(grad, scale, out=np.zeros_like(grad), where=scale > 0)
    near = near_lower_bound(structure, params, ctx.summary, ctx.family.re_scale(params))
    for j, (low, _) in enumerate(internal_bounds(structure, ctx.summary.scale_floor)):
        if low is not None and (theta[j] <= low + 1e-12 or near[j]) and grad[j] < 0:
            scaled[j] = 0.0
    return float(np.abs(scaled).max()) if scaled.size else 0.0


def _finish_start(ctx: FitContext, start: StartResult) -> StartResult:
    """Polish a start by quasi-Newton (kept only if it raises llf) and measure its gradient."""
    if start.empty:
        return start
    blocks = ctx.blocks
    params = start.params
    if ctx.start_blocks is not blocks:      # the start ran on a sample: its llf on all subjects
        _, llf, _, _ = e_pass(blocks, params, blocks.empty_states())
        start = dataclasses.replace(start, llf=llf)
    if ctx.options.polish:
        polished, value = polish(ctx, blocks, params, ctx.options.gtol, maxiter=500)
        if np.isfinite(value) and value >= start.llf:
            params = polished
    states, llf, _, _ = e_pass(blocks, params, blocks.empty_states())
    return dataclasses.replace(start, params=params, llf=llf,
                               grad_max=projected_grad_max(ctx, blocks, params, states))


def _run_starts(ctx: FitContext, inits: list[Params], kinds: list[str]) -> list[StartResult]:
    """Run every start, in ``options.n_jobs`` threads (:func:`pymemoe.parallel.thread_map`),
    each start's passes in the calling thread. Each start depends only on its own initial
    values, so the results do not depend on ``n_jobs``.

    With ``options.screen_iter`` (lcmm's ``gridsearch``), every start first runs that many EM
    iterations; only the ``options.n_finish`` best continue to convergence.
    """
    options = ctx.options
    parallel = options.n_jobs > 1 and len(inits) > 1
    blocks = ctx.start_blocks.serial() if parallel else ctx.start_blocks

    def run(item, maxiter):
        init, kind = item
        return run_start(ctx, blocks, init, maxiter, kind)

    def pool_map(fn, items, label):
        return map_starts(ctx, fn, items, label, parallel)

    items = list(zip(inits, kinds))
    if options.screen_iter is None or len(inits) <= options.n_finish:
        return pool_map(lambda item: run(item, options.maxiter), items, "starts")
    screened = pool_map(lambda item: run(item, options.screen_iter), items, "screening")
    order = np.argsort([-(r.llf if not r.empty else -np.inf) for r in screened], kind="stable")
    keep = set(order[: options.n_finish].tolist())

    def finish(j: int) -> StartResult:
        first = screened[j]
        if j not in keep or first.empty or first.em_converged:
            return first
        rest = run((first.params, first.kind), options.maxiter)
        return dataclasses.replace(rest, llf_trace=np.r_[first.llf_trace[:-1], rest.llf_trace],
                                   n_iter=first.n_iter + rest.n_iter)
    return pool_map(finish, range(len(screened)), "full fits")


def map_starts(ctx: FitContext, fn, items, label: str, parallel: bool) -> list:
    """``[fn(item) for item in items]``, in ``options.n_jobs`` threads when ``parallel`` (the
    starts' passes then run serially in each thread), with the progress bar of
    ``options.progress``; results in input order."""
    options = ctx.options
    items = list(items)
    return list(progress_bar(thread_map(fn, items, options.n_jobs if parallel else 1),
                             len(items), label, options.progress))


def progress_bar(iterable, total: int, label: str, enabled: bool):
    """Wrap ``iterable`` in a tqdm progress bar when asked; without tqdm, print a plain line per
    item to stderr (``label: 3/10``) so the user still sees progress."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _plain_progress(iterable, total, label)
    return tqdm(iterable, total=total, desc=label)


def _plain_progress(iterable, total: int, label: str):
    print(f"{label}: 0/{total} (install tqdm for a progress bar)", file=sys.stderr, flush=True)
    for done, item in enumerate(iterable, start=1):
        print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)
        yield item


# ---------------------------------------------------------------------------------------------
# Driver


def canonical_order(params: Params, sizes: np.ndarray) -> np.ndarray:
    """Permutation putting experts by decreasing size (sum_i tau_ik), ties broken by the first
    fixed effect."""
    sizes = np.round(np.asarray(sizes, dtype=float), 8)
    first = params.beta[:, 0] if params.beta.shape[1] else np.zeros(len(sizes))
    return np.lexsort((first, -sizes))


def as_seed_sequence(random_state) -> np.random.SeedSequence:
    """Normalise ``random_state`` (None, int, Generator or SeedSequence) once, to a SeedSequence."""
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(random_state.integers(2 ** 63))
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.SeedSequence(random_state)
    raise ValueError(f"random_state must be None, an int, a numpy Generator or SeedSequence; got {random_state!r}")


def run_em(data, structure: Structure, options: EMOptions,
           random_state=None, start_params: Params | None = None,
           grow_from: Params | None = None) -> EMFit:
    """Fit a MEMoE by EM from several starts and return the best (see the module docstring).

    ``data`` is in-memory data (blocks are made of it) or blocks that run passes
    (:func:`pymemoe.blocks.as_blocks`)."""
    ctx = FitContext.build(data, structure, options)
    try:
        return _run_em(ctx, random_state, start_params, grow_from)
    finally:
        if ctx.blocks is not data:
            ctx.blocks.close()


def _independent_starts(ctx: FitContext, seed: np.random.SeedSequence,
                        start_params: Params | None):
    """``fit(starts="independent")`` (the strategy of pymemoe 0.1), a given start, or K = 1:
    the one-expert fit, then ``n_starts`` k-means / random-centre starts each run to
    convergence (or screened), the best polished."""
    from .starts import LLF_TOL, StartSearch, initial_tau, starts_table_row
    structure, options, family = ctx.structure, ctx.options, ctx.family
    K = structure.n_experts
    seeds = seed.spawn(max(options.n_starts, 1))
    one = one_expert_fit(ctx, ctx.blocks, accel=False)
    if start_params is not None:
        inits, kinds = [start_params], ["start_params"]
    elif K == 1:
        inits, kinds = [], []
    else:
        start_blocks = ctx.start_blocks.serial()
        coefs = start_blocks.concatenate(start_blocks.map(
            lambda block, state: family.subject_coefficients(block, structure.k_mix),
            start_blocks.empty_states()))
        inits, kinds = [], []
        for s, child in enumerate(seeds):
            rng = np.random.default_rng(child)
            kind = "kmeans" if s % 2 == 0 else "random"
            tau0 = initial_tau(kind, K, coefs, rng)
            inits.append(start_params_from_tau(ctx, start_blocks, one.params, tau0))
            kinds.append(kind)
    results = [one] if K == 1 and start_params is None else _run_starts(ctx, inits, kinds)
    # EM ranks the starts; only the best one is polished (polishing is the costly part)
    ok = [r for r in results if not r.empty]
    pool = ok if ok else results
    best_index = next(i for i, r in enumerate(results) if r is max(pool, key=lambda r: r.llf))
    results[best_index] = _finish_start(ctx, results[best_index])
    best = results[best_index]
    ok = [r for r in results if not r.empty]           # the best one polished
    n_subjects = ctx.start_blocks.n_groups
    rows = [starts_table_row(K, r.kind or "independent", i, n_subjects, r, False, r,
                             i == best_index and options.polish) for i, r in enumerate(results)]
    rows[best_index]["subjects"] = ctx.summary.n_groups
    n_best = sum(1 for r in ok if r.llf >= best.llf - LLF_TOL)
    for i, row in enumerate(rows):
        row["reached_best"] = not results[i].empty and results[i].llf >= best.llf - LLF_TOL
        row["chosen"] = i == best_index
    return StartSearch(best=best, rows=tuple(rows), n_best=n_best, n_finished=len(ok))


def _run_em(ctx: FitContext, random_state, start_params: Params | None,
            grow_from: Params | None = None) -> EMFit:
    structure, options, family = ctx.structure, ctx.options, ctx.family
    K = structure.n_experts
    seed = as_seed_sequence(random_state)
    searched = not (start_params is not None or K == 1 or options.starts == "independent")
    if not searched:
        search = _independent_starts(ctx, seed, start_params)
    else:
        # pymemoe.starts builds on this module's passes, hence the import here
        from .starts import StartPlan, default_sample_subjects, search_starts
        sample = (default_sample_subjects(ctx.summary.n_groups, family) if options.sample_subjects is None
                  else options.sample_subjects)
        plan = StartPlan(n_starts=options.n_starts, screen_iter=options.screen_iter,
                         n_finish=options.n_finish, sample_subjects=sample)
        search = search_starts(ctx, seed, plan, prev=grow_from)
    from .starts import LLF_TOL  # noqa: F811 (pymemoe.starts imports this module)
    best = search.best
    ok = search.n_finished > 0
    messages: list[tuple[type, str]] = []    # (warning class, text)
    if not ok:
        messages.append((BoundaryWarning,
            f"every start emptied an expert (posterior size < {options.min_size} subjects): "
            f"the data do not support {K} experts; fit fewer experts (n_experts={K - 1})"))
    blocks = ctx.blocks
    states, llf, sizes, _ = e_pass(blocks, best.params, blocks.empty_states())
    if searched and not best.empty:
        # the search's best (pymemoe.starts): its llf and gradient on all subjects
        best = dataclasses.replace(best, llf=llf, grad_max=projected_grad_max(
            ctx, blocks, best.params, states))
    params = reorder(best.params, canonical_order(best.params, sizes))
    states, _, sizes, _ = e_pass(blocks, params, states)
    estep = blocks.joined(states)
    if not ok:
        converged = False
    elif options.polish:
        converged = best.grad_max <= options.gtol_check
    else:
        converged = best.em_converged
    duplicates = _identical_experts(params)
    if duplicates and ok:
        converged = False
        messages += [(ConvergenceWarning, f"experts {k + 1} and {l + 1} are identical: the fit stopped at a saddle "
                     f"point where two experts coincide; use more starts (n_starts) or fewer "
                     f"experts") for k, l in duplicates]
    elif not converged and ok:
        messages.append((ConvergenceWarning,
            f"the fit did not converge (largest gradient entry {best.grad_max:.2g} after "
            f"{best.n_iter} EM iterations): increase maxiter, tighten tol, or try more starts "
            f"(n_starts)"))
    if ok and K > 1 and search.n_best == 1 and search.n_finished >= 2:
        messages.append((BestNotReplicatedWarning,
            f"the best log-likelihood ({best.llf:.4f}) was reached by only 1 of the "
            f"{search.n_finished} finished starts (within {LLF_TOL}): it may not be the global "
            f"maximum; refit with more starts (n_starts) and look at res.starts"))
    messages += _size_messages(ctx, sizes)
    messages += boundary_messages(structure, params, ctx.summary, family.re_scale(params))
    spread = max(blocks.gather(lambda block, state: max_logit_spread(block.exog_gate, params.gamma),
                               states))
    if spread > SEPARATION_THRESHOLD:
        messages.append((SeparationWarning,
                         "the gating covariates separate the experts (near) perfectly: gating "
                         "coefficients are not identified; remove the separating covariate from "
                         "gate_formula or use fewer experts"))
    messages += _expert_separation_messages(ctx, blocks, params, states)
    messages = collapse_messages(messages)
    for category, msg in messages:
        warnings.warn(msg, category, stacklevel=4)
    rows = search.rows
    return EMFit(params=params, estep=estep, llf=estep.llf, llf_trace=best.llf_trace,
                 n_iter=best.n_iter, converged=converged, grad_max=best.grad_max,
                 messages=tuple(msg for _, msg in messages),
                 start_llfs=np.array([r["llf"] for r in rows if r["n_experts"] == K]),
                 best_start=next((i for i, r in enumerate(rows) if r["chosen"]), 0),
                 starts=rows, n_best=search.n_best, n_finished=search.n_finished)


def _expert_separation_messages(ctx: FitContext, blocks, params: Params,
                                states) -> list[tuple[type, str]]:
    """A SeparationWarning for each expert whose fixed effects fit some of its rows perfectly
    (binomial: a probability within e^-25 of 0 or 1; Poisson: a mean below e^-25), where the
    maximum likelihood coefficients do not exist and the reported ones are where the
    optimiser stopped (as statsmodels' PerfectSeparationWarning for a GLM)."""
    if not ctx.family.may_separate:       # no pass over the (perhaps distributed) blocks
        return []
    per_block = blocks.gather(_extreme_fits, states, ctx.family, params)
    extreme = np.array([e for e, _ in per_block])                    # (blocks, K)
    worst_block = extreme.argmax(axis=0)
    out = []
    for k in np.flatnonzero(extreme.max(axis=0) > SEPARATION_THRESHOLD):
        term = ctx.structure.exog_names[per_block[worst_block[k]][1][k]]
        what = ("a fitted probability within e^-25 of 0 or 1" if ctx.family.name == "binomial"
                else "a fitted mean below e^-25")
        out.append((SeparationWarning,
                    f"expert {k + 1}: the fixed effects fit some of its rows perfectly ({what}, "
                    f"mostly through {term!r}): the outcome is (quasi-)separated, the maximum "
                    f"likelihood coefficients do not exist and those reported, with their "
                    f"standard errors, are meaningless; remove or merge the separating term "
                    f"or category, or use fewer experts"))
    return out


def _extreme_fits(block, state, family, params: Params):
    # module level (not a closure over the fit's context): distributed blocks pickle it
    return family.extreme_fits(block, params, state.tau)


def _size_messages(ctx: FitContext, sizes: np.ndarray) -> list[tuple[type, str]]:
    K = ctx.structure.n_experts
    out = []
    for k in range(K):
        if K > 1 and sizes[k] < max(5.0, 0.01 * ctx.summary.n_groups):
            out.append((BoundaryWarning,
                        f"expert {k + 1} is nearly empty (posterior size {sizes[k]:.1f} "
                        f"subjects): the data do not support {K} experts; fit fewer experts"))
    return out


def collapse_messages(messages: list[tuple[type, str]], limit: int = 3) -> list[tuple[type, str]]:
    """Keep at most ``limit`` messages of each kind (same class and same text once numbers are
    removed); the rest become one message that counts them, so a fit with many experts warns a
    few times instead of hundreds."""
    groups: dict[tuple, list[str]] = {}
    for category, msg in messages:
        key = (category, re.sub(r"[-+]?\d[\d.e+-]*|'[^']*'", "#", msg))
        groups.setdefault(key, []).append(msg)
    out = []
    for (category, _), texts in groups.items():
        out += [(category, text) for text in texts[:limit]]
        if len(texts) > limit:
            out.append((category, f"... and {len(texts) - limit} more warnings like: {texts[0]}"))
    return out


def _identical_experts(params: Params, rtol: float = 1e-6) -> list[tuple[int, int]]:
    """Pairs of experts with the same parameters (a saddle point of the likelihood)."""
    K = params.n_experts
    blocks = [params.gamma, params.beta, params.cov_re.reshape(K, -1), params.scale[:, None]]
    pairs = []
    for k in range(K):
        for l in range(k + 1, K):
            if all(np.allclose(b[k], b[l], rtol=rtol, atol=rtol * (np.abs(b).max() + 1e-300))
                   for b in blocks):
                pairs.append((k, l))
    return pairs
