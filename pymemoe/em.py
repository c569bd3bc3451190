r"""The EM driver: starts, E/M iterations, quasi-Newton polish, the best start, a final E-step.

Loop shape (as scikit-learn's mixtures, with lme4's separate convergence check)::

    for each start s = 1..n_starts  (own child of SeedSequence(random_state).spawn):
        tau0   <- an initial soft partition (k-means on per-subject OLS coefficients, or random)
        theta  <- one M-step from tau0 and the one-expert (K = 1) fit
        repeat: E-step (llf, tau)  ->  M-step (gating Newton, GLS beta, EM D and sigma2)
        until the relative change of llf < tol, or maxiter
        polish: L-BFGS-B on -llf over the internal vector with the analytic score,
                kept only if it raises llf
    keep the start with the highest llf; canonical expert order; final E-step.

Each M-step increases the log-likelihood (generalised EM), so ``llf_trace`` never decreases; the
polish is not EM and is not part of the trace. EM alone is slow near the optimum
for variance components; the polish brings the gradient to ~0 so that standard errors are
computed at a maximum.

Canonical order: experts by decreasing size (sum of posterior probabilities), ties by the first
fixed effect; the gating reference is the first expert in that order.

An expert whose posterior size falls below ``min_size`` subjects ends its start (reported, never
NaN); if every start ends so, the best of them is returned with a warning.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.optimize import minimize
from .data import SubjectData
from .exceptions import BoundaryWarning, ConvergenceWarning, SeparationWarning
from .expert import gls_normal_equations, expert_moments, variance_sums
from .gating import newton_update, separation_detected
from .likelihood import EStep, e_step, score, score_obs
from .parallel import thread_map
from .params import (Params, Structure, from_internal, internal_bounds, reorder, to_internal)

__all__ = ["EMOptions", "EMFit", "run_em", "m_step", "one_expert_start", "as_seed_sequence"]


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


@dataclass(frozen=True, eq=False)
class StartResult:
    params: Params
    llf: float
    llf_trace: np.ndarray
    n_iter: int
    em_converged: bool
    empty: bool
    grad_max: float


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


# ---------------------------------------------------------------------------------------------
# M-step


def _solve_fixed_effects(structure: Structure, gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Joint GLS solve for (beta_mix_1..beta_mix_K, beta_shared); returns beta (K, p)."""
    K, p, km = structure.n_experts, structure.k_fe, structure.k_mix
    n_free = K * km + (p - km)
    big = np.zeros((n_free, n_free))
    vec = np.zeros(n_free)
    select = []
    for k in range(K):  # K selection matrices: loops over experts, not subjects
        P = np.zeros((p, n_free))
        P[np.arange(km), k * km + np.arange(km)] = 1.0
        P[km + np.arange(p - km), K * km + np.arange(p - km)] = 1.0
        big += P.T @ gram[k] @ P
        vec += P.T @ rhs[k]
        select.append(P)
    try:
        theta = np.linalg.solve(big, vec)
    except np.linalg.LinAlgError:
        theta = np.linalg.lstsq(big, vec, rcond=None)[0]
    return np.stack([P @ theta for P in select])


def _variance_update(structure: Structure, params: Params, re_sum: np.ndarray, rss_sum: np.ndarray,
                     sizes: np.ndarray, obs_sizes: np.ndarray, scale_floor: float) -> tuple[np.ndarray, np.ndarray]:
    K, q = structure.n_experts, structure.k_re
    if structure.scale == "expert":
        scale = rss_sum / obs_sizes
    else:
        scale = np.full(K, rss_sum.sum() / obs_sizes.sum())
    scale = np.maximum(scale, scale_floor)
    if q == 0:
        return np.zeros((K, 0, 0)), scale
    if structure.cov_re == "expert":
        cov = re_sum / sizes[:, None, None]
    elif structure.cov_re == "shared":
        cov = np.broadcast_to(re_sum.sum(axis=0) / sizes.sum(), (K, q, q)).copy()
    else:  # proportional, D_k = w_k^2 D: one coordinate step in D, then in w (both increase Q)
        trace = np.trace(params.cov_re, axis1=1, axis2=2)
        w2 = trace / trace[0] if trace[0] > 0 else np.ones(K)
        w2 = np.maximum(w2, 1e-300)
        base = (re_sum / w2[:, None, None]).sum(axis=0) / sizes.sum()
        if structure.re_structure == "diagonal":
            base = np.diag(np.diag(base))
        base_inv = np.linalg.pinv(base)
        w2 = np.einsum("ab,kba->k", base_inv, re_sum) / (q * sizes)
        w2[0] = 1.0
        cov = w2[:, None, None] * base
    if structure.re_structure == "diagonal":
        cov = np.einsum("kaa->ka", cov)[:, :, None] * np.eye(q)
    return cov, scale


def m_step(data: SubjectData, structure: Structure, params: Params, estep: EStep,
           scale_floor: float) -> Params:
    """One ECME M-step from the E-step at ``params``; never decreases the log-likelihood."""
    tau = estep.tau
    gamma = newton_update(data.exog_gate, params.gamma, tau)
    gram, rhs = gls_normal_equations(data, params, estep.moments, tau)
    beta = _solve_fixed_effects(structure, gram, rhs)
    at_new_beta = dataclasses.replace(params, beta=beta)
    old = estep.moments
    moments = expert_moments(data, at_new_beta, factor=(old.lam, old.m_inv, old.logdet_m))
    re_sum, rss_sum = variance_sums(data, moments, tau)
    sizes = tau.sum(axis=0)
    cov, scale = _variance_update(structure, params, re_sum, rss_sum, sizes, tau.T @ data.n_obs,
                                  scale_floor)
    return Params(gamma=gamma, beta=beta, cov_re=cov, scale=scale)


# ---------------------------------------------------------------------------------------------
# Starts


def _scale_floor(data: SubjectData) -> float:
    return 1e-10 * float(data.yy.sum() / data.nobs) + 1e-300


def one_expert_start(data: SubjectData, structure: Structure) -> Params:
    """A crude one-expert start: pooled OLS, half the residual variance to each component."""
    p, q = data.k_fe, data.k_re
    xx, xy = data.xx.sum(axis=0), data.xy.sum(axis=0)
    beta = np.linalg.lstsq(xx, xy, rcond=None)[0]
    rss = data.yy.sum() - 2 * beta @ xy + beta @ xx @ beta
    sigma2 = max(rss / max(data.nobs - p, 1), _scale_floor(data)) / 2.0
    z_scale = np.diagonal(data.zz, axis1=1, axis2=2).sum(axis=0) / data.nobs if q else np.zeros(0)
    cov = np.diag(sigma2 / np.maximum(z_scale, 1e-12)) if q else np.zeros((0, 0))
    return Params(gamma=np.zeros((1, data.k_gate)), beta=beta[None], cov_re=cov[None],
                  scale=np.array([sigma2]))


def _subject_coefficients(data: SubjectData, km: int) -> np.ndarray:
    """Ridge-stabilised per-subject OLS coefficients of the expert-specific columns (N, km)."""
    xx, xy = data.xx[:, :km, :km], data.xy[:, :km]
    ridge = 1e-6 * (np.trace(xx, axis1=1, axis2=2) / max(km, 1) + 1e-12)
    return np.linalg.solve(xx + ridge[:, None, None] * np.eye(km), xy[..., None])[..., 0]


def _initial_tau(data: SubjectData, K: int, strategy: str, rng: np.random.Generator,
                 coefs: np.ndarray) -> np.ndarray:
    """Initial responsibilities (N, K).

    ``"kmeans"``: k-means (k-means++ seeding) on the standardised per-subject OLS coefficients.
    ``"random"``: K random subjects' coefficients as centres, subjects softly assigned by
    distance. Both give experts with different trajectories from the start; a uniform random
    soft partition would not (all experts start equal and EM stays at that saddle point).
    """
    N = data.n_groups
    sd = coefs.std(axis=0)
    scaled = coefs / np.where(sd > 0, sd, 1.0)
    if strategy == "kmeans" and coefs.shape[1] > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # kmeans2 warns on empty clusters; checked below
            _, labels = kmeans2(scaled, K, minit="++", seed=rng)
        if np.bincount(labels, minlength=K).min() > 0:
            smooth = 0.1
            return (1 - smooth) * np.eye(K)[labels] + smooth / K
    if coefs.shape[1] == 0:
        return rng.dirichlet(np.ones(K), size=N)
    centres = scaled[rng.choice(N, size=K, replace=False)]
    dist2 = ((scaled[:, None, :] - centres[None]) ** 2).sum(axis=2)
    logits = -dist2 / 2.0
    logits -= logits.max(axis=1, keepdims=True)
    tau = np.exp(logits)
    tau = 0.9 * tau / tau.sum(axis=1, keepdims=True) + 0.1 / K
    return tau


def _start_params(data: SubjectData, structure: Structure, base: Params, tau0: np.ndarray,
                  scale_floor: float) -> Params:
    K = structure.n_experts
    rep = Params(gamma=np.zeros((K, data.k_gate)), beta=np.repeat(base.beta, K, axis=0),
                 cov_re=np.repeat(base.cov_re, K, axis=0), scale=np.repeat(base.scale, K))
    moments = expert_moments(data, rep)
    fake = EStep(llf=np.nan, llf_obs=np.zeros(data.n_groups), tau=tau0,
                 log_prior=np.zeros_like(tau0), moments=moments)
    return m_step(data, structure, rep, fake, scale_floor)


# ---------------------------------------------------------------------------------------------
# One start


class _PolishDone(Exception):
    """Raised inside the polish objective to end L-BFGS-B: target met or no more progress."""


def _polish(data: SubjectData, structure: Structure, params: Params, gtol: float,
            maxiter: int, patience: int = 5) -> tuple[Params, float]:
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
    N = data.n_groups
    theta0 = to_internal(params, structure)
    scores = score_obs(data, structure, params, internal=True)
    curvature = np.sqrt(np.einsum("nj,nj->j", scores, scores) / N)
    unit = np.where(curvature > 1e-8, curvature, 1.0)     # x = theta * unit
    bounds = [(None if lo is None else lo * u, None if hi is None else hi * u)
              for (lo, hi), u in zip(internal_bounds(structure), unit)]
    best = {"f": np.inf, "g": np.inf, "x": theta0 * unit, "stalled": 0}

    def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(over="ignore"):         # exp of a huge log-variance: inf, caught below
            par = from_internal(x / unit, structure)
        if not (np.all(np.isfinite(par.cov_re)) and np.all(np.isfinite(par.scale))):
            return np.inf, np.zeros_like(x)          # a trial point beyond floating range
        with np.errstate(all="ignore"):   # a trial point may be extreme: judged by its result
            try:
                est = e_step(data, par)
            except np.linalg.LinAlgError:
                return np.inf, np.zeros_like(x)
            if not np.isfinite(est.llf):
                return np.inf, np.zeros_like(x)
            grad = score(data, structure, par, est, internal=True)
        if not np.all(np.isfinite(grad)):           # e.g. a residual variance whose square underflows
            return np.inf, np.zeros_like(x)
        return -est.llf / N, -grad / N / unit

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = evaluate(x)
        g_max = float(np.abs(grad).max()) if grad.size else 0.0
        rounding = 8.0 * np.finfo(float).eps * abs(value)
        if np.isfinite(value) and (value < best["f"] - rounding
                                   or (value <= best["f"] + rounding and g_max < best["g"])):
            best.update(f=value, g=g_max, x=x.copy(), stalled=0)
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


def _projected_grad_max(data: SubjectData, structure: Structure, params: Params, estep: EStep) -> float:
    """Largest scaled gradient entry g_j / sqrt(sum_i s_ij^2) on the internal scale, ignoring
    components pushing against an active bound.

    With the outer product of the scores as the information, g_j / sqrt(B_jj) is the size of
    a Newton step in units of the standard error, so the measure does not depend on the units
    of the data (lme4's scaled gradient is of the same kind).
    """
    theta = to_internal(params, structure)
    scores = score_obs(data, structure, params, estep, internal=True)
    grad = scores.sum(axis=0)
    scale = np.sqrt(np.einsum("nj,nj->j", scores, scores))
    scaled = np.divide(grad, scale, out=np.zeros_like(grad), where=scale > 0)
    for j, (low, _) in enumerate(internal_bounds(structure)):
        if low is not None and theta[j] <= low + 1e-12 and grad[j] < 0:
            scaled[j] = 0.0
    return float(np.abs(scaled).max()) if scaled.size else 0.0


def _run_start(data: SubjectData, structure: Structure, params: Params, options: EMOptions,
               scale_floor: float) -> StartResult:
    em_converged = empty = False
    n_iter = 0                                   # M-steps done
    estep = e_step(data, params)
    trace = [estep.llf]                          # at the start, then after each M-step
    while n_iter < options.maxiter:
        if estep.tau.sum(axis=0).min() < options.min_size and structure.n_experts > 1:
            empty = True
            break
        params = m_step(data, structure, params, estep, scale_floor)
        previous, estep = estep.llf, e_step(data, params)
        n_iter += 1
        trace.append(estep.llf)
        if abs(estep.llf - previous) <= options.tol * (1.0 + abs(estep.llf)):
            em_converged = True
            break
    return StartResult(params=params, llf=estep.llf, llf_trace=np.asarray(trace), n_iter=n_iter,
                       em_converged=em_converged, empty=empty, grad_max=np.inf)


def _finish_start(data: SubjectData, structure: Structure, start: StartResult,
                  options: EMOptions) -> StartResult:
    """Polish a start by quasi-Newton (kept only if it raises llf) and measure its gradient."""
    if start.empty:
        return start
    params = start.params
    if options.polish:
        polished, value = _polish(data, structure, params, options.gtol, maxiter=500)
        if np.isfinite(value) and value >= start.llf:
            params = polished
    estep = e_step(data, params)
    return dataclasses.replace(start, params=params, llf=estep.llf,
                               grad_max=_projected_grad_max(data, structure, params, estep))


def _run_starts(data: SubjectData, structure: Structure, inits: list[Params], options: EMOptions,
                scale_floor: float) -> list[StartResult]:
    """Run every start, in ``options.n_jobs`` threads (:func:`pymemoe.parallel.thread_map`).
    Each start depends only on its own initial values, so the results do not depend on
    ``n_jobs``.

    With ``options.screen_iter`` (lcmm's ``gridsearch``), every start first runs that many EM
    iterations; only the ``options.n_finish`` best continue to convergence.
    """
    def run(init: Params, opts: EMOptions) -> StartResult:
        return _run_start(data, structure, init, opts, scale_floor)

    def pool_map(fn, items, label):
        items = list(items)
        return list(_progress(thread_map(fn, items, options.n_jobs), len(items), label,
                              options.progress))

    if options.screen_iter is None or len(inits) <= options.n_finish:
        return pool_map(lambda init: run(init, options), inits, "starts")
    short = dataclasses.replace(options, maxiter=options.screen_iter)
    screened = pool_map(lambda init: run(init, short), inits, "screening")
    order = np.argsort([-(r.llf if not r.empty else -np.inf) for r in screened], kind="stable")
    keep = set(order[: options.n_finish].tolist())

    def finish(j: int) -> StartResult:
        first = screened[j]
        if j not in keep or first.empty or first.em_converged:
            return first
        rest = run(first.params, options)
        return dataclasses.replace(rest, llf_trace=np.r_[first.llf_trace[:-1], rest.llf_trace],
                                   n_iter=first.n_iter + rest.n_iter)
    return pool_map(finish, range(len(screened)), "full fits")


def _progress(iterable, total: int, label: str, enabled: bool):
    """Wrap ``iterable`` in a tqdm progress bar when asked and tqdm is installed."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=label)


# ---------------------------------------------------------------------------------------------
# Driver


def canonical_order(params: Params, tau: np.ndarray) -> np.ndarray:
    """Permutation putting experts by decreasing size, ties broken by the first fixed effect."""
    sizes = np.round(tau.sum(axis=0), 8)
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


def run_em(data: SubjectData, structure: Structure, options: EMOptions,
           random_state=None, start_params: Params | None = None) -> EMFit:
    """Fit a MEMoE by EM from several starts and return the best (see the module docstring)."""
    K = structure.n_experts
    scale_floor = _scale_floor(data)
    seeds = as_seed_sequence(random_state).spawn(max(options.n_starts, 1))
    base_structure = dataclasses.replace(structure, n_experts=1, cov_re="expert", scale="expert")
    one = _run_start(data, base_structure, one_expert_start(data, structure), options, scale_floor)
    if start_params is not None:
        inits = [start_params]
    elif K == 1:
        inits = []
    else:
        coefs = _subject_coefficients(data, structure.k_mix)
        inits = []
        for s, seed in enumerate(seeds):
            rng = np.random.default_rng(seed)
            tau0 = _initial_tau(data, K, "kmeans" if s % 2 == 0 else "random", rng, coefs)
            inits.append(_start_params(data, structure, one.params, tau0, scale_floor))
    results = [one] if K == 1 and start_params is None else _run_starts(
        data, structure, inits, options, scale_floor)

    # EM screens the starts; only the best one is polished (polishing is the costly part and
    # the EM log-likelihoods already rank the local maxima).
    ok = [r for r in results if not r.empty]
    pool = ok if ok else results
    best_index = next(i for i, r in enumerate(results) if r is max(pool, key=lambda r: r.llf))
    best = _finish_start(data, structure, results[best_index], options)
    results[best_index] = best
    messages: list[tuple[type, str]] = []    # (warning class, text)
    if not ok:
        messages.append((BoundaryWarning,
            f"every start emptied an expert (posterior size < {options.min_size} subjects): "
            f"the data do not support {K} experts; fit fewer experts (n_experts={K - 1})"))
    estep = e_step(data, best.params)
    perm = canonical_order(best.params, estep.tau)
    params = reorder(best.params, perm)
    estep = e_step(data, params)
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
    messages += _boundary_messages(data, structure, params, estep)
    for category, msg in messages:
        warnings.warn(msg, category, stacklevel=3)
    return EMFit(params=params, estep=estep, llf=estep.llf, llf_trace=best.llf_trace,
                 n_iter=best.n_iter, converged=converged, grad_max=best.grad_max,
                 messages=tuple(msg for _, msg in messages), start_llfs=np.array([r.llf for r in results]),
                 best_start=best_index)


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


def _boundary_messages(data: SubjectData, structure: Structure, params: Params,
                       estep: EStep) -> list[tuple[type, str]]:
    """(warning class, message) for each parameter or expert at the boundary of the space."""
    out = []
    K, q = structure.n_experts, structure.k_re
    sizes = estep.tau.sum(axis=0)
    for k in range(K):
        if K > 1 and sizes[k] < max(5.0, 0.01 * data.n_groups):
            out.append((BoundaryWarning,
                        f"expert {k + 1} is nearly empty (posterior size {sizes[k]:.1f} "
                        f"subjects): the data do not support {K} experts; fit fewer experts"))
    floor = 1e-8 * float(data.yy.sum() / data.nobs)
    for k in range(K if structure.scale == "expert" else 1):
        if params.scale[k] <= floor:
            out.append((BoundaryWarning,
                        f"residual variance of expert {k + 1} is at the boundary (about 0): the "
                        f"model reproduces those subjects' outcomes exactly; use fewer random "
                        f"effects in re_formula or fewer experts"))
    if q:
        z_scale = np.diagonal(data.zz, axis1=1, axis2=2).sum(axis=0) / data.nobs
        for k in range(K if structure.cov_re == "expert" else 1):
            ratio = np.diag(params.cov_re[k]) * z_scale / params.scale[k]
            for j in np.flatnonzero(ratio < 1e-6):
                out.append((BoundaryWarning,
                            f"random-effect variance of {structure.exog_re_names[j]!r} in expert "
                            f"{k + 1} is at the boundary (about 0): drop that random effect from "
                            f"re_formula or use re_structure='diagonal' / cov_re='shared'"))
    if separation_detected(data.exog_gate, params.gamma):
        out.append((SeparationWarning,
                    "the gating covariates separate the experts (near) perfectly: gating "
                    "coefficients are not identified; remove the separating covariate from "
                    "gate_formula or use fewer experts"))
    return out
