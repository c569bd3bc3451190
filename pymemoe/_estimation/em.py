r"""EM from one start: E-steps and M-steps, accelerated by SQUAREM, and starts run side by side.

Each M-step increases the log-likelihood (generalised EM: the gating's Newton step and the
family's M-step each increase Q), so ``llf_trace`` never decreases. Every pass over subjects
is a reduction over blocks of subjects (:mod:`pymemoe._estimation.passes`). An expert whose
posterior size falls below ``min_size`` subjects ends its start (``empty``: reported, never a
NaN).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .._execution.threads import progress_bar, thread_map
from .._model.params import Params, from_internal, internal_bounds, to_internal
from .context import FitContext
from .passes import e_pass, m_step

__all__ = ["StartResult", "one_expert_fit", "run_start", "run_starts", "map_starts"]


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


def one_expert_fit(ctx: FitContext, blocks, accel: bool = True) -> StartResult:
    """EM for the one-expert model (K = 1, each expert's covariance and variance of its own)
    on ``blocks``: the base of every start."""
    structure = ctx.structure
    base = dataclasses.replace(structure, n_experts=1, cov_re="expert",
                               scale="expert" if structure.has_scale else "none")
    base_ctx = ctx.with_structure(base)
    return run_start(base_ctx, blocks, ctx.family.one_expert_start(blocks, structure, ctx.summary),
                     ctx.options.maxiter, kind="one expert", accel=accel)


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
    caches, llf, sizes, e_sums = e_pass(blocks, params, blocks.empty_caches())
    trace = [llf]                                # at the start, then after each M-step or cycle

    def emptied(sizes):
        return K > 1 and sizes.min() < options.min_size

    warm = ctx.family.uses_warm_start

    def step(params, box: list, e_sums):
        """One M-step from the caches in ``box`` (a one-item list, the only reference to
        them), then the E-step. For a family that does not warm-start, the old caches are
        released before the new ones are made: with SQUAREM several sets would otherwise be
        alive at once (9.3 GB per worker at 10^7 subjects on two workers)."""
        new = m_step(ctx, blocks, params, box[0], e_sums)
        if warm:
            previous = box[0]
        else:
            box.clear()
            previous = blocks.empty_caches()
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
        box, caches = [caches], None
        if not accel:
            params, caches, llf, sizes, e_sums = step(params, box, e_sums)
            n_iter += 1
            steps = 1
        else:
            x0 = to_internal(params, ctx.structure)
            p1, s1, l1, z1, e1 = step(params, box, e_sums)
            box, s1 = [s1], None
            p2, s2, l2, z2, e2 = step(p1, box, e1)
            del box
            n_iter += 2
            params, caches, llf, sizes, e_sums, steps = p2, s2, l2, z2, e2, 2
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
                                                s2 if warm else blocks.empty_caches())
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
                    s2 = caches = None
                    params, caches, llf, sizes, e_sums, steps = p3, s3, l3, z3, e3, 3
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


def run_starts(ctx: FitContext, inits: list[Params], kinds: list[str]) -> list[StartResult]:
    """Run every start, in ``options.n_jobs`` threads (:func:`pymemoe._execution.threads.thread_map`),
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


# ---------------------------------------------------------------------------------------------
# Driver


