r"""The default start strategy: split starts grown from K - 1 experts, diverse screened
starts, SQUAREM, and the evidence that the best maximum was found.

The log-likelihood of a mixture has many local maxima, and plain EM from a handful of k-means
starts stops at one of them often enough to matter (PBCseq, K = 3 with random intercept and
slope and gating: 6 fits in 20 stopped 3 to 7 log-likelihood units short, each "converged").
The strategy here, measured on PBCseq K = 3 and K = 4, the lcmm-style shared model and
simulated data (``benchmarks/bench_starts.py``), reaches the best known maximum from every seed
tried, in less time than ten independent starts::

    one    <- the one-expert mixed model (EM)
    prev   <- the K - 1 fit by this same strategy (recursively down to K = 2, whose K - 1
              fit is ``one``), or the fit given as ``grow_from`` (compare_experts passes its
              K - 1 fit)
    split  <- for each expert j of prev, two starts: prev's posterior with expert j's
              subjects divided by their empirical-Bayes coefficients (beta_j + b_hat_ij,
              standardised): by the sign of their projection on the first principal axis of
              their tau_ij-weighted covariance, and by 2-means; then one M-step (what lcmm
              users do by hand with ``B = m1``)
    others <- n_starts starts cycling k-means++ on per-subject OLS coefficients, K random
              subjects as soft centres, and uniform random partitions (own child seeds)
    run    every start by EM + SQUAREM (:func:`pymemoe._estimation.em.run_start`) to ``tol``; with
           ``screen_iter``, every start runs that many M-steps and only the splits and the
           ``n_finish`` best others are finished
    polish the ``n_polish`` best finished starts within ``POLISH_MARGIN`` of the best by
           L-BFGS-B (:func:`pymemoe._estimation.polish.polish`)
    best   the finished start of highest log-likelihood

Why splits: the K - 1 solution already holds K - 2 of the K experts of the optimum in most
data sets; dividing one of its experts along its main direction of spread puts a start in the
basin of the K-expert optimum far more often than a partition of all subjects does (PBCseq
K = 3: 20/20 seeds against 14/20 for ten k-means/random starts). The two ways of splitting
reach the best maximum independently often enough that the best value is replicated.

**Large data.** When there are more than ``2 * sample_subjects`` subjects, everything above
runs on a random subsample of ``sample_subjects`` subjects (2,500 for Gaussian experts, 2,000
for binomial and Poisson ones; what lcmm's authors advise by hand), and the best distinct
solution, with at most ``n_full - 1`` runners-up that can still win, is then run on all
subjects (EM + SQUAREM, polish); the best of those is the fit.

*Which runners-up can win.* A solution's full-data log-likelihood is a sum over subjects, so
its deficit against the best is estimated from the sample: with d_i the per-subject
log-likelihood of the best minus the runner-up's on the n sampled subjects (mean m, SD s) and
N subjects in all, the deficit on all subjects is N m, with standard error
N s sqrt((1 - n/N) / n) (sampling without replacement). A runner-up is carried only when
m / (s sqrt((1 - n/N) / n)) < :data:`CARRY_Z` (3): when it is within three standard errors
of the best, a full-data run could reverse the order. Otherwise running it on all subjects
(some 75 passes over the data instead of 15, for a maximum hundreds of units below) cannot
change the fit. ``res.starts`` shows each candidate's ``z_behind`` and whether it was
``carried``. An EM iteration on the subsample costs a small fraction of one on all subjects, and a
larger subsample did not find a better maximum (measured: :ref:`defaults-measured`). A
runner-up that would be carried but was not polished (EM stopped at the family's ``em_tol``,
which for GLMM experts leaves the last part of the climb to the polish) is polished on the
subsample first: if it then reaches a kept solution's value it is that solution, and the next
distinct one is considered instead.

**A cheaper approximation for the search.** A family may search under a cheaper approximation
of its own model (:meth:`pymemoe.families.base.ExpertFamily.search_family`: GLMM experts with
``nAGQ`` > 3 search with 3 nodes per dimension). The search then runs as above on those data
(subsample or all subjects), the distinct solutions are ranked by their per-subject
log-likelihoods under the model's own family on the searched subjects, and the best, with
the runners-up that can still win, are run on all subjects under the model's own family
(``kind`` ``"refined"`` in ``res.starts`` when no subsample was drawn). Without a subsample the
deficit is measured, not estimated (``z_behind`` is infinite for any deficit), so a runner-up
is also carried when its deficit is below ``POLISH_MARGIN``: finishing under the model's
approximation moves both solutions.

**Replication** (the evidence). A finished start *reached the best* when its log-likelihood is
within ``LLF_TOL`` (0.01) of the best one: distinct local maxima of these models are at least
0.04 apart in every case studied, and an EM or polished llf is a lower bound of its basin's
maximum. ``n_best`` counts the finished starts of the fitted K that reached the best (on the
subsample when one was used: there every start ran). When it is 1, the best value rests on a
single start and :class:`pymemoe.exceptions.BestNotReplicatedWarning` says so (Mplus: "the best
loglikelihood value was not replicated"); the remedy is more starts (``n_starts``).

Every start's outcome is one row of :func:`starts_table` (``res.starts``).
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.cluster.vq import kmeans2

from .._execution.blocks import as_blocks
from .._model.params import Params
from .context import FitContext
from .em import StartResult, map_starts, one_expert_fit, run_start, run_starts
from .passes import e_pass, start_params_from_tau
from .polish import finish_start, polish_run

__all__ = ["StartPlan", "StartSearch", "LLF_TOL", "POLISH_MARGIN", "CARRY_Z", "behind_z",
           "default_sample_subjects",
           "search_starts", "independent_starts", "starts_table_row", "initial_tau",
           "split_tau", "starts_table"]

LLF_TOL = 0.01
"""Finished starts within this of the best log-likelihood count as reaching it."""

POLISH_MARGIN = 1.0
"""Finished starts within this of the best EM log-likelihood are polished (at most n_polish)."""

KINDS = ("kmeans", "random", "partition")

CARRY_Z = 3.0
"""A subsample runner-up is run on all subjects when its estimated full-data deficit is within
this many standard errors of the best (module docstring)."""


def behind_z(best_obs: np.ndarray, other_obs: np.ndarray, n_total: int) -> float:
    """How many standard errors the full-data log-likelihood of a solution is estimated to be
    behind the best's, from their per-subject log-likelihoods on a sample of subjects (module
    docstring); +inf when it is behind on every sampled subject by the same amount.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> best = rng.normal(size=2500)
    >>> behind_z(best, best - 0.1 + rng.normal(0, 0.5, 2500), 100_000) > 3   # far behind
    True
    >>> abs(behind_z(best, best + rng.normal(0, 0.5, 2500), 100_000)) < 3          # a tie
    True
    """
    d = np.asarray(best_obs, dtype=float) - np.asarray(other_obs, dtype=float)
    n = d.size
    mean, sd = d.mean(), d.std(ddof=1) if n > 1 else 0.0
    se = sd * np.sqrt(max(1.0 - n / n_total, 0.0) / n)
    if se == 0.0:
        return np.inf if mean > 0 else (-np.inf if mean < 0 else 0.0)
    return float(mean / se)


@dataclass(frozen=True)
class StartPlan:
    """The plan of one start search (:func:`search_starts`): the user's choices of
    :class:`~pymemoe._estimation.context.EMOptions` resolved for these data (``sample_subjects``
    from the family and the number of subjects), with the strategy's own settings that are not
    options of :meth:`pymemoe.MEMoE.fit` (split starts, SQUAREM, how many starts are polished
    and re-run on all subjects). The driver builds one per fit.

    Attributes
    ----------
    n_starts : int
        Starts besides the split starts (cycling ``KINDS``).
    split : bool
        Add one start per expert of the K - 1 fit, that expert split in two.
    accel : bool
        SQUAREM acceleration of the EM runs.
    screen_iter : int or None
        Screen every start for this many M-steps and finish only the splits and the
        ``n_finish`` best others; None finishes every start.
    n_finish : int
    n_polish : int
        Finished starts polished by quasi-Newton (the best first, within ``POLISH_MARGIN``).
    sample_subjects : int
        Run the search on a random subsample of this many subjects when there are more than
        twice as many; 0: always on all subjects.
    n_full : int
        Distinct subsample solutions re-run on all subjects.
    """

    n_starts: int = 10
    split: bool = True
    accel: bool = True
    screen_iter: int | None = None
    n_finish: int = 3
    n_polish: int = 3
    sample_subjects: int = 0
    n_full: int = 2


def default_sample_subjects(n_groups: int, family) -> int:
    """Subjects of the start search's subsample: the family's ``search_subjects`` (2,500 for
    Gaussian experts, 2,000 for binomial and Poisson ones) when there are more than twice as
    many subjects, else all (0)."""
    size = int(family.search_subjects)
    return 0 if n_groups <= 2 * size else size


@dataclass(frozen=True, eq=False)
class StartSearch:
    """The outcome of :func:`search_starts`: the chosen start (polished, its llf on all
    subjects), every start's row (:func:`starts_table`), and the replication count."""

    best: StartResult
    rows: tuple = field(default_factory=tuple)
    n_best: int = 1
    n_finished: int = 1


# ---------------------------------------------------------------------------------------------
# Initial responsibilities


def initial_tau(kind: str, K: int, coefs: np.ndarray, rng: np.random.Generator,
                smooth: float = 0.1) -> np.ndarray:
    """Initial responsibilities (N, K) of one start from per-subject coefficients (N, m).

    ``"kmeans"``: k-means++ on the standardised coefficients, hard labels smoothed.
    ``"random"``: K random subjects as centres, subjects softly assigned by distance.
    ``"partition"``: uniform random hard labels, smoothed. Experts start with different
    trajectories in the first two; in the third they differ by the chance composition of
    their subjects, which EM amplifies (a different route to the same or another maximum).
    Without coefficients (no expert-specific fixed effects) the responsibilities are Dirichlet.

    Examples
    --------
    >>> import numpy as np
    >>> tau = initial_tau("kmeans", 2, np.r_[np.zeros(5), np.ones(5)][:, None],
    ...                   np.random.default_rng(0))
    >>> tau.shape, bool(np.allclose(tau.sum(axis=1), 1))
    ((10, 2), True)
    """
    N = coefs.shape[0]
    if coefs.shape[1] == 0:
        return rng.dirichlet(np.ones(K), size=N)
    sd = coefs.std(axis=0)
    scaled = coefs / np.where(sd > 0, sd, 1.0)
    if kind == "kmeans":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # kmeans2 warns on empty clusters; checked below
            _, labels = kmeans2(scaled, K, minit="++", seed=rng)
        if np.bincount(labels, minlength=K).min() > 0:
            return (1 - smooth) * np.eye(K)[labels] + smooth / K
        kind = "random"
    if kind == "partition":
        labels = rng.integers(K, size=N)
        return (1 - smooth) * np.eye(K)[labels] + smooth / K
    if kind != "random":
        raise ValueError(f"unknown start kind {kind!r}; expected one of {KINDS}")
    centres = scaled[rng.choice(N, size=K, replace=False)]
    dist2 = ((scaled[:, None, :] - centres[None]) ** 2).sum(axis=2)
    logits = -dist2 / 2.0
    logits -= logits.max(axis=1, keepdims=True)
    tau = np.exp(logits)
    return (1 - smooth) * tau / tau.sum(axis=1, keepdims=True) + smooth / K


def split_tau(tau: np.ndarray, coefs: np.ndarray, j: int, smooth: float = 0.05,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """Responsibilities (N, K) from those of a K - 1 fit (N, K - 1) with expert ``j`` split.

    ``coefs`` (N, m) are the subjects' coefficients under expert j. Without ``rng``, its
    subjects go to one half or the other by the sign of their standardised, centred
    coefficients projected on the first principal axis of their ``tau[:, j]``-weighted
    correlation matrix; with ``rng``, by 2-means (k-means++ seeding from ``rng``) on the standardised
    coefficients of the subjects mostly in expert j (tau_ij > 1/2), each subject then going to
    the nearer centre. Expert j keeps one half, the new expert K takes the other, the other
    experts keep their posterior.

    Examples
    --------
    >>> import numpy as np
    >>> c = np.r_[-np.ones(4), np.ones(4)][:, None]
    >>> split_tau(np.ones((8, 1)), c, 0, smooth=0.0)[:, 0]
    array([1., 1., 1., 1., 0., 0., 0., 0.])
    """
    N, Km1 = tau.shape
    w = tau[:, j]
    if coefs.shape[1] and w.sum() > 0:      # (an expert the K - 1 fit emptied: split evenly)
        centred = coefs - (w[:, None] * coefs).sum(axis=0) / w.sum()
        cov = (w[:, None] * centred).T @ centred / w.sum()
        sd = np.sqrt(np.maximum(np.diag(cov), 1e-300))
        scaled = centred / sd
        members = w > 0.5
        if rng is not None and members.sum() >= 4:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # empty clusters: the axis split below
                centres, labels = kmeans2(scaled[members], 2, minit="++", seed=rng)
            if np.bincount(labels, minlength=2).min() > 0:
                dist = ((scaled[:, None, :] - centres[None]) ** 2).sum(axis=2)
                side = dist[:, 1] < dist[:, 0]
            else:
                rng = None
        if rng is None or members.sum() < 4:
            _, vecs = np.linalg.eigh(cov / np.outer(sd, sd))
            side = scaled @ vecs[:, -1] > 0
    else:
        side = np.arange(N) % 2 == 0
    out = np.zeros((N, Km1 + 1))
    out[:, :Km1] = tau
    out[:, j] = w * ~side
    out[:, Km1] = w * side
    return (1 - smooth) * out + smooth / (Km1 + 1)


def _expert_coefficients(ctx: FitContext, blocks, params: Params, caches) -> np.ndarray:
    """beta_k + b_hat_ik for the expert-specific columns that have a random effect (beta_k for
    the others), (N, K, k_mix): each subject's trajectory under each expert, shrunk so that a
    subject with one or two visits does not dominate the spread (OLS coefficients would)."""
    structure = ctx.structure
    km = structure.k_mix
    b_hat = blocks.concatenate(blocks.map(lambda block, cache: np.asarray(cache.moments.b_hat),
                                          caches))
    coefs = np.repeat(params.beta[None, :, :km], b_hat.shape[0], axis=0).astype(float)
    for col, name in enumerate(structure.exog_names[:km]):
        if name in structure.exog_re_names:
            coefs[:, :, col] += b_hat[:, :, structure.exog_re_names.index(name)]
    return coefs


def _expand(params: Params, j: int) -> Params:
    """``params`` with expert ``j`` duplicated as a new last expert (its gating row too)."""
    return Params(gamma=np.vstack([params.gamma, params.gamma[j:j + 1]]),
                  beta=np.vstack([params.beta, params.beta[j:j + 1]]),
                  cov_re=np.concatenate([params.cov_re, params.cov_re[j:j + 1]]),
                  scale=np.r_[params.scale, params.scale[j:j + 1]])


# ---------------------------------------------------------------------------------------------
# The search


def starts_table_row(K: int, kind: str, label, n_subjects: int, first: StartResult,
                     screened: bool, final: StartResult | None, polished: bool) -> dict:
    """One row of :func:`starts_table` (without ``reached_best`` and ``chosen``): a start's
    initial run ``first`` (its screening when ``screened``) and its finished run ``final``
    (None when it was not finished)."""
    return {"n_experts": K, "kind": kind, "seed": label, "subjects": n_subjects,
            "llf_start": float(first.llf_trace[0]),
            "llf_screen": float(first.llf) if screened and not first.empty else np.nan,
            "llf": float(final.llf) if final is not None and not final.empty else np.nan,
            "n_iter": int(final.n_iter if final is not None else first.n_iter),
            "converged": bool(final is not None and final.em_converged),
            "emptied": bool((final or first).empty), "polished": polished}


def _finished_rank(rows: list[dict], K: int) -> list[int]:
    ok = [i for i, r in enumerate(rows) if r["n_experts"] == K and np.isfinite(r["llf"])]
    return sorted(ok, key=lambda i: -rows[i]["llf"])


def _search(ctx: FitContext, blocks, one: Params, seed: np.random.SeedSequence, plan: StartPlan,
            prev: Params | None) -> tuple[list[dict], list[StartResult | None]]:
    """Every start for ctx.structure.n_experts on ``blocks``; the rows (the K - 1 chain's
    first) and, aligned with the rows of this K, the finished runs (None when not finished)."""
    structure = ctx.structure
    K = structure.n_experts
    s_chain, s_others, s_split = seed.spawn(3)
    chain_rows: list[dict] = []
    inits: list[tuple[str, object, Params]] = []
    if plan.split:
        if prev is None and K == 2:
            prev = one
        elif prev is None:
            sub_ctx = ctx.with_structure(dataclasses.replace(structure, n_experts=K - 1))
            rows, runs = _search(sub_ctx, blocks, one, s_chain,
                                 dataclasses.replace(plan, n_polish=1), None)
            chain_rows = rows
            best = _finished_rank(rows, K - 1)
            if best:
                prev = runs[best[0]].params
        if prev is not None:
            sub_ctx = ctx.with_structure(dataclasses.replace(structure, n_experts=K - 1))
            caches, _, _, _ = e_pass(blocks, prev, blocks.empty_caches())
            tau = blocks.concatenate(blocks.map(lambda block, cache: cache.tau, caches))
            coefs = _expert_coefficients(sub_ctx, blocks, prev, caches)
            split_rngs = [np.random.default_rng(c) for c in s_split.spawn(K - 1)]
            for j in range(K - 1):
                inits.append(("split", j + 1, start_params_from_tau(
                    ctx, blocks, _expand(prev, j), split_tau(tau, coefs[:, j], j))))
                inits.append(("split 2-means", j + 1, start_params_from_tau(
                    ctx, blocks, _expand(prev, j),
                    split_tau(tau, coefs[:, j], j, rng=split_rngs[j]))))
    family = ctx.family
    ols = blocks.concatenate(blocks.map(
        lambda block, cache: family.subject_coefficients(block, structure.k_mix),
        blocks.empty_caches()))
    for s, child in enumerate(s_others.spawn(plan.n_starts)):
        rng = np.random.default_rng(child)
        kind = KINDS[s % len(KINDS)]
        inits.append((kind, s, start_params_from_tau(ctx, blocks, one,
                                                     initial_tau(kind, K, ols, rng))))

    options = ctx.options
    parallel = options.n_jobs > 1 and len(inits) > 1
    run_blocks = blocks.serial() if parallel else blocks

    def run_all(fn, items, label):
        return map_starts(ctx, fn, items, f"{label} (K={K})", parallel)

    screened = plan.screen_iter is not None and len(inits) > plan.n_finish
    if screened:
        first = run_all(lambda item: run_start(ctx, run_blocks, item[2], plan.screen_iter,
                                               item[0], accel=plan.accel), inits, "screening")
        others = [i for i, (kind, _, _) in enumerate(inits)
                  if not kind.startswith("split") and not first[i].empty]
        others.sort(key=lambda i: -first[i].llf)
        keep = {i for i, (kind, _, _) in enumerate(inits)
                if kind.startswith("split") and not first[i].empty}
        keep |= set(others[: plan.n_finish])
    else:
        first = [None] * len(inits)
        keep = set(range(len(inits)))

    def finish(i: int) -> StartResult | None:
        kind, _, p0 = inits[i]
        if i not in keep:
            return None
        if first[i] is None:
            return run_start(ctx, run_blocks, p0, options.maxiter, kind, accel=plan.accel)
        if first[i].em_converged:
            return first[i]
        rest = run_start(ctx, run_blocks, first[i].params, options.maxiter, kind, accel=plan.accel)
        return dataclasses.replace(rest, llf_trace=np.r_[first[i].llf_trace[:-1], rest.llf_trace],
                                   n_iter=first[i].n_iter + rest.n_iter)

    runs = run_all(finish, range(len(inits)), "starts")
    finished = [r for r in runs if r is not None and not r.empty]
    polished = set()
    if finished and options.polish:
        top = max(r.llf for r in finished)
        order = sorted((i for i, r in enumerate(runs) if r is not None and not r.empty),
                       key=lambda i: -runs[i].llf)
        for i in order[: plan.n_polish]:
            if runs[i].llf < top - POLISH_MARGIN:
                break
            runs[i] = polish_run(ctx, blocks, runs[i])
            polished.add(i)
    rows = [starts_table_row(K, kind, label, blocks.n_groups, first[i] if first[i] is not None else runs[i],
                 screened, runs[i], i in polished) for i, (kind, label, _) in enumerate(inits)]
    return chain_rows + rows, [None] * len(chain_rows) + runs


def search_starts(ctx: FitContext, seed: np.random.SeedSequence, plan: StartPlan,
                  prev: Params | None = None) -> StartSearch:
    """Run the start strategy of the module docstring for ``ctx.structure`` (K >= 2) and
    return the best start, polished unless ``options.polish`` is False, its llf on all
    subjects. ``prev``: the K - 1 fit to split (None: fitted here)."""
    K = ctx.structure.n_experts
    blocks = ctx.blocks
    n_groups = ctx.summary.n_groups
    options = ctx.options
    s_sample, seed = seed.spawn(2)
    if plan.sample_subjects and n_groups > 2 * plan.sample_subjects:
        sample = blocks.sample(plan.sample_subjects, np.random.default_rng(s_sample))
        searched = as_blocks(sample, K, options.n_jobs, options.block_size)
    else:                      # all subjects (for distributed data, those gathered to the driver)
        searched = ctx.start_blocks
    # a subsample, or (distributed data) all subjects gathered to the driver: the latter is
    # searched and polished as in memory, its result's llf then taken on the cluster
    sampled = searched.n_groups < n_groups
    # a cheaper approximation of the model for the search (coarser quadrature), its best
    # solutions then finished under the model's own (module docstring)
    search_family = ctx.family.search_family()
    coarse = search_family is not ctx.family
    search_blocks = (as_blocks(searched.data.with_family(search_family), K, options.n_jobs,
                               options.block_size) if coarse else searched)
    if search_blocks is not blocks:
        search_ctx = dataclasses.replace(ctx, blocks=search_blocks, start_blocks=search_blocks,
                                         summary=search_family.summary(search_blocks))
    else:
        search_ctx = ctx
    one = one_expert_fit(search_ctx, search_blocks).params
    rows, runs = _search(search_ctx, search_blocks, one, seed, plan, prev)
    ranked = _finished_rank(rows, K)
    if not ranked:             # every start emptied an expert: the best of them, flagged
        pool = [i for i, r in enumerate(runs) if r is not None] or [0]
        i = max(pool, key=lambda i: runs[i].llf if runs[i] is not None else -np.inf)
        rows[i]["chosen"] = True
        return StartSearch(best=runs[i], rows=tuple(_mark(rows, K, None)), n_best=0, n_finished=0)
    if not sampled and not coarse:
        top = rows[ranked[0]]["llf"]
        n_best = sum(1 for i in ranked if rows[i]["llf"] >= top - LLF_TOL)
        best_i = ranked[0]
        rows = _mark(rows, K, best_i)
        return StartSearch(best=runs[best_i], rows=tuple(rows), n_best=n_best,
                           n_finished=len(ranked))
    # the best search solution and the distinct runners-up that can still win, on all
    # subjects under the model's own family (module docstring)
    lead = ranked[0]
    # per-subject log-likelihoods on the searched subjects under the model's own family (with a
    # coarse search, the search's values are another approximation's)
    lead_obs = _llf_obs(searched, runs[lead].params)

    def behind(i: int) -> tuple[float, bool]:
        obs = _llf_obs(searched, runs[i].params)
        z = behind_z(lead_obs, obs, n_groups)
        deficit = float((lead_obs - obs).sum()) * n_groups / searched.n_groups
        return z, bool(z < CARRY_Z or (coarse and deficit < POLISH_MARGIN))

    def kept(i: int) -> bool:
        return any(abs(rows[i]["llf"] - rows[c]["llf"]) <= LLF_TOL for c in distinct)

    rows[lead].update(carried=True, z_behind=0.0)
    distinct, carried = [lead], [lead]
    for i in ranked[1:]:
        if len(distinct) == plan.n_full:
            break
        if kept(i):
            continue
        z, carry = behind(i)
        if carry and not rows[i]["polished"] and options.polish:
            # EM stopped short of this runner-up's maximum: polished, it may prove to be a
            # solution already kept, which need not run on all subjects again
            done = polish_run(search_ctx, search_blocks, runs[i])
            if done is not runs[i]:
                runs[i] = done
                rows[i].update(llf=done.llf, polished=True)
            if kept(i):
                continue
            z, carry = behind(i)
        rows[i].update(carried=carry, z_behind=z)
        distinct.append(i)
        if carry:
            carried.append(i)
    top = rows[lead]["llf"]
    n_best = sum(1 for i in ranked if rows[i]["llf"] >= top - LLF_TOL)
    rows = _mark(rows, K, None)
    kind = "from sample" if sampled else "refined"
    full_rows, full_runs = [], []
    for c in carried:
        run = run_start(ctx, blocks, runs[c].params, ctx.options.maxiter, kind,
                        accel=plan.accel)
        done = not run.empty and ctx.options.polish
        if done:
            run = polish_run(ctx, blocks, run)
        row = starts_table_row(K, kind, c, n_groups, run, False, run, done)
        row["llf_screen"] = rows[c]["llf"]
        full_rows.append(row)
        full_runs.append(run)
    ok = [j for j, r in enumerate(full_runs) if not r.empty]
    pick = max(ok, key=lambda j: full_runs[j].llf) if ok else 0
    for j, row in enumerate(full_rows):
        row["reached_best"] = j in ok and row["llf"] >= full_runs[pick].llf - LLF_TOL
        row["chosen"] = j == pick
    return StartSearch(best=full_runs[pick], rows=tuple(rows + full_rows), n_best=n_best,
                       n_finished=len(ranked))


def _llf_obs(blocks, params: Params) -> np.ndarray:
    """Per-subject log-likelihoods (N,) at ``params`` on ``blocks``."""
    caches, _, _, _ = e_pass(blocks, params, blocks.empty_caches())
    return np.asarray(blocks.joined(caches).llf_obs)


def _mark(rows: list[dict], K: int, chosen: int | None) -> list[dict]:
    """Add ``reached_best`` (within LLF_TOL of the best llf of the same number of experts on
    the same subjects) and ``chosen`` to every row."""
    best: dict[tuple, float] = {}
    for r in rows:
        if np.isfinite(r["llf"]):
            key = (r["n_experts"], r["subjects"])
            best[key] = max(best.get(key, -np.inf), r["llf"])
    for i, r in enumerate(rows):
        top = best.get((r["n_experts"], r["subjects"]), np.nan)
        r["reached_best"] = bool(np.isfinite(r["llf"]) and r["llf"] >= top - LLF_TOL)
        r["chosen"] = r.get("chosen", False) or i == chosen
    return rows


def starts_table(rows) -> "pd.DataFrame":
    """The rows of a search as a DataFrame, one row per start (``res.starts``).

    Columns: ``n_experts`` (the K of the start: the fitted K, or K - 1, ... for the chain of
    smaller fits that grew the split starts), ``kind`` (``split``: expert ``seed`` of the
    K - 1 fit split in two; ``kmeans``/``random``/``partition`` with ``seed`` the index of the
    start's child seed; ``from sample``: the ``seed``-th row's subsample solution run on all
    subjects; ``refined``: the ``seed``-th row's solution of a search under a cheaper
    approximation run under the model's own; ``one expert``: the fit of a one-expert model),
    ``subjects``
    (the subjects it ran on), ``llf_start`` (at its initial values), ``llf_screen`` (after
    screening; NaN without), ``llf`` (final; NaN when not finished), ``n_iter`` (M-steps),
    ``converged`` (EM stopping rule met), ``emptied`` (an expert emptied), ``polished``,
    ``reached_best`` (within ``LLF_TOL`` of the best llf of its K on its subjects), ``chosen``
    (the start the fit reports); when the search ran on a subsample or under a cheaper
    approximation, for its distinct solutions ``z_behind`` (how many standard errors its
    full-data log-likelihood is estimated to be behind the best's; :func:`behind_z`) and
    ``carried`` (run on all subjects), NaN for the other rows.
    """
    columns = ["n_experts", "kind", "seed", "subjects", "llf_start", "llf_screen", "llf",
               "n_iter", "converged", "emptied", "polished", "reached_best", "chosen",
               "z_behind", "carried"]
    frame = pd.DataFrame(list(rows), columns=columns)
    frame.index.name = "start"
    return frame


def independent_starts(ctx: FitContext, seed: np.random.SeedSequence,
                        start_params: Params | None):
    """``fit(starts="independent")`` (the first strategy of pymemoe), a given start, or K = 1:
    the one-expert fit, then ``n_starts`` k-means / random-centre starts each run to
    convergence (or screened), the best polished."""
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
            lambda block, cache: family.subject_coefficients(block, structure.k_mix),
            start_blocks.empty_caches()))
        inits, kinds = [], []
        for s, child in enumerate(seeds):
            rng = np.random.default_rng(child)
            kind = "kmeans" if s % 2 == 0 else "random"
            tau0 = initial_tau(kind, K, coefs, rng)
            inits.append(start_params_from_tau(ctx, start_blocks, one.params, tau0))
            kinds.append(kind)
    results = [one] if K == 1 and start_params is None else run_starts(ctx, inits, kinds)
    # EM ranks the starts; only the best one is polished (polishing is the costly part)
    ok = [r for r in results if not r.empty]
    pool = ok if ok else results
    best_index = next(i for i, r in enumerate(results) if r is max(pool, key=lambda r: r.llf))
    results[best_index] = finish_start(ctx, results[best_index])
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
