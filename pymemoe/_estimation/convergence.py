r"""What the driver checks once the best start is known, and how it says so (lme4's
``checkConv``, a stage of its own).

:func:`check_fit` decides whether the fit converged and collects its diagnostics as
(warning class, message) pairs, each naming its remedy:

* every start emptied an expert (the data do not support K experts);
* two experts identical (a saddle point), or a gradient that is not small (not converged);
* the best log-likelihood reached by a single start (:class:`BestNotReplicatedWarning`);
* a nearly empty expert; a variance at the boundary; a singular covariance
  (:func:`pymemoe._model.boundary.boundary_messages`);
* gating covariates that separate the experts; an expert whose fixed effects fit some of its
  rows perfectly (binomial and Poisson experts).

:func:`collapse_messages` keeps a few of each kind, so that a fit with many experts warns a
few times instead of hundreds.
"""
from __future__ import annotations

import re

import numpy as np

from .._model.boundary import boundary_messages
from .._model.gating import SEPARATION_THRESHOLD, max_logit_spread
from .._model.params import Params
from ..exceptions import (BestNotReplicatedWarning, BoundaryWarning, ConvergenceWarning,
                          SeparationWarning)
from .context import FitContext

__all__ = ["check_fit", "collapse_messages"]


def check_fit(ctx: FitContext, blocks, search, best, params: Params, caches,
              sizes: np.ndarray, llf_tol: float) -> tuple[bool, list[tuple[type, str]]]:
    """Whether the fit at ``params`` (the best start ``best`` of ``search``, experts in
    canonical order; ``caches`` its E-step on ``blocks``, ``sizes`` the posterior sizes)
    converged, and its diagnostics as (warning class, message) pairs, collapsed."""
    structure, options, family = ctx.structure, ctx.options, ctx.family
    K = structure.n_experts
    ok = search.n_finished > 0
    messages: list[tuple[type, str]] = []
    if not ok:
        messages.append((BoundaryWarning,
            f"every start emptied an expert (posterior size < {options.min_size} subjects): "
            f"the data do not support {K} experts; fit fewer experts (n_experts={K - 1})"))
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
            f"{search.n_finished} finished starts (within {llf_tol}): it may not be the global "
            f"maximum; refit with more starts (n_starts) and look at res.starts"))
    messages += _size_messages(ctx, sizes)
    messages += boundary_messages(structure, params, ctx.summary, family.re_scale(params),
                                  family=family)
    spread = max(blocks.gather(_logit_spread, caches, params.gamma))
    if spread > SEPARATION_THRESHOLD:
        messages.append((SeparationWarning,
                         "the gating covariates separate the experts (near) perfectly: gating "
                         "coefficients are not identified; remove the separating covariate from "
                         "gate_formula or use fewer experts"))
    messages += _expert_separation_messages(ctx, blocks, params, caches)
    return converged, collapse_messages(messages)


def _logit_spread(block, cache, gamma: np.ndarray) -> float:
    # module level (not a closure): distributed blocks pickle it by reference
    return max_logit_spread(block.exog_gate, gamma)


def _expert_separation_messages(ctx: FitContext, blocks, params: Params,
                                caches) -> list[tuple[type, str]]:
    """A SeparationWarning for each expert whose fixed effects fit some of its rows perfectly
    (the family says what that means: :attr:`~pymemoe.families.base.ExpertFamily.separation_text`),
    where the maximum likelihood coefficients do not exist and the reported ones are where the
    optimiser stopped (as statsmodels' PerfectSeparationWarning for a GLM)."""
    if not ctx.family.may_separate:       # no pass over the (perhaps distributed) blocks
        return []
    per_block = blocks.gather(_extreme_fits, caches, ctx.family, params)
    extreme = np.array([e for e, _ in per_block])                    # (blocks, K)
    worst_block = extreme.argmax(axis=0)
    out = []
    for k in np.flatnonzero(extreme.max(axis=0) > SEPARATION_THRESHOLD):
        term = ctx.structure.exog_names[per_block[worst_block[k]][1][k]]
        what = ctx.family.separation_text
        out.append((SeparationWarning,
                    f"expert {k + 1}: the fixed effects fit some of its rows perfectly ({what}, "
                    f"mostly through {term!r}): the outcome is (quasi-)separated, the maximum "
                    f"likelihood coefficients do not exist and those reported, with their "
                    f"standard errors, are meaningless; remove or merge the separating term "
                    f"or category, or use fewer experts"))
    return out


def _extreme_fits(block, cache, family, params: Params):
    # module level (not a closure over the fit's context): distributed blocks pickle it
    return family.extreme_fits(block, params, cache.tau)


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
