"""Parameters at the boundary of the parameter space: one rule for the fit and the inference.

A residual variance at its floor, a random-effect variance d_j with d_j * z_scale_j negligible
against the expert's scale (the residual variance for Gaussian experts, 1 on the linear
predictor's scale otherwise; :meth:`~pymemoe.families.base.ExpertFamily.re_scale`), and an SD
ratio w_k ~0 have no interior derivative. :func:`boundary_mask` marks them, with the covariances
that involve such a variance; the inference holds them fixed (NaN standard errors) and the EM
driver reports them (:func:`boundary_messages`) with a remedy.

A family can have coefficients of its own with a boundary (a spline hazard's weight, stored as
its log, that runs to 0: :meth:`~pymemoe.families.base.ExpertFamily.coefficient_boundary`);
they are masked with the variances, given ``family``.

A covariance matrix can also be singular with every variance positive: random effects
perfectly correlated (lme4's "boundary (singular) fit"). In the scaled matrix
D~ = diag(z) D diag(z) / scale, the squared diagonal of its Cholesky factor holds each random
effect's variance *given the previous ones*; one of them ~0 puts D_k on the boundary of the
positive semi-definite cone, where derivatives in some directions are one-sided. All entries
of such a D_k are then held fixed, with a message naming the expert.
"""
from __future__ import annotations

import numpy as np

from ..exceptions import BoundaryWarning
from .params import Params, Structure, param_kinds, param_labels, psd_cholesky, to_user
from .scales import DataSummary

__all__ = ["REL_TOL", "variance_at_boundary", "singular_covariance", "boundary_mask",
           "near_lower_bound", "boundary_messages", "coefficients_at_boundary"]

REL_TOL = 1e-6   # a variance below this fraction of its expert's scale counts as 0


def variance_at_boundary(params: Params, summary: DataSummary, re_scale: np.ndarray,
                         rel_tol: float = REL_TOL) -> np.ndarray:
    """(K, q) mask: random-effect variance j of expert k is ~0 relative to ``re_scale[k]``."""
    if params.cov_re.shape[-1] == 0:
        return np.zeros((params.n_experts, 0), dtype=bool)
    diag = np.diagonal(params.cov_re, axis1=1, axis2=2)
    return diag * summary.z_scale[None, :] / re_scale[:, None] < rel_tol


def singular_covariance(params: Params, summary: DataSummary, re_scale: np.ndarray,
                        rel_tol: float = REL_TOL) -> np.ndarray:
    """(K,) mask: D_k is singular although no variance is ~0 (perfectly correlated random
    effects): a conditional variance of the scaled D~_k (see the module docstring) is below
    ``rel_tol``."""
    K, q = params.n_experts, params.cov_re.shape[-1]
    if q < 2:
        return np.zeros(K, dtype=bool)
    z = np.sqrt(summary.z_scale)
    scaled = params.cov_re * z[None, :, None] * z[None, None, :] / re_scale[:, None, None]
    conditional = np.diagonal(psd_cholesky(scaled), axis1=1, axis2=2) ** 2
    return (conditional < rel_tol).any(axis=1) & ~variance_at_boundary(params, summary, re_scale,
                                                                       rel_tol).any(axis=1)


def coefficients_at_boundary(structure: Structure, params: Params, family=None) -> np.ndarray:
    """Mask of the parameter vector's fixed effects that ``family`` puts at a boundary
    (:meth:`~pymemoe.families.base.ExpertFamily.coefficient_boundary`); all False without."""
    kinds = param_kinds(structure)
    mask = np.zeros(len(kinds), dtype=bool)
    at = None if family is None else family.coefficient_boundary(params)
    if at is None or not at.any():
        return mask
    k_mix = structure.k_mix
    seen: dict = {}
    for j, kind in enumerate(kinds):   # beta entries: each expert's columns, then the shared
        if kind.kind != "beta":
            continue
        owner = -1 if kind.expert is None else kind.expert
        column = seen.get(owner, 0)
        seen[owner] = column + 1
        mask[j] = (at[:, k_mix + column].any() if owner < 0 else at[owner, column])
    return mask


def boundary_mask(structure: Structure, params: Params, summary: DataSummary,
                  re_scale: np.ndarray, rel_tol: float = REL_TOL, family=None) -> np.ndarray:
    """Mask of the user parameters at the boundary: residual variances at their floor,
    random-effect variances ~0 and the covariances that involve them (all random-effect
    entries of an expert whose residual variance is ~0, where D / sigma2 means nothing), SD
    ratios ~0, and ``family``'s coefficients at a boundary."""
    kinds = param_kinds(structure)
    mask = np.zeros(len(kinds), dtype=bool)
    scale_zero = (params.scale <= summary.scale_boundary if structure.has_scale
                  else np.zeros(params.n_experts, dtype=bool))
    at_zero = variance_at_boundary(params, summary, re_scale, rel_tol)
    singular = singular_covariance(params, summary, re_scale, rel_tol)
    theta = to_user(params, structure)
    for j, kind in enumerate(kinds):
        k = 0 if kind.expert is None else kind.expert
        if kind.kind == "scale":
            mask[j] = scale_zero[k]
        elif kind.kind in ("var", "cov"):
            mask[j] = bool(scale_zero[k] or singular[k] or at_zero[k, list(kind.re_index)].any())
        elif kind.kind == "ratio":
            mask[j] = theta[j] < np.sqrt(rel_tol)
    return mask | coefficients_at_boundary(structure, params, family)


def near_lower_bound(structure: Structure, params: Params, summary: DataSummary,
                     re_scale: np.ndarray, rel_tol: float = REL_TOL,
                     family=None) -> np.ndarray:
    """Mask of the *internal* vector's bounded entries that sit at their bound for all
    practical purposes: a Cholesky diagonal L_jj whose conditional variance L_jj^2 z_j is below
    ``rel_tol`` of its expert's scale, or an SD ratio below sqrt(rel_tol). A quasi-Newton
    search approaches such a bound without reaching it exactly, and there the gradient scaled
    by its per-subject spread is meaningless (both vanish with L_jj). The same holds for
    ``family``'s coefficients at a boundary."""
    kinds = param_kinds(structure)
    mask = coefficients_at_boundary(structure, params, family)
    if not structure.k_re:
        return mask
    chol = psd_cholesky(params.cov_re) if structure.re_structure == "unstructured" else np.sqrt(
        np.clip(params.cov_re, 0.0, None))
    theta = to_user(params, structure)
    for j, kind in enumerate(kinds):
        if kind.kind == "var":
            k = 0 if kind.expert is None else kind.expert
            i = kind.re_index[0]
            mask[j] = chol[k, i, i] ** 2 * summary.z_scale[i] < rel_tol * re_scale[k]
        elif kind.kind == "ratio":
            mask[j] = theta[j] < np.sqrt(rel_tol)
    return mask


def boundary_messages(structure: Structure, params: Params, summary: DataSummary,
                      re_scale: np.ndarray, family=None) -> list[tuple[type, str]]:
    """(warning class, message) for each residual or random-effect variance at the boundary,
    and for ``family``'s coefficients there."""
    out = []
    at = coefficients_at_boundary(structure, params, family)
    if at.any():
        labels = [label for label, hit in zip(_labels(structure), at) if hit]
        out.append((BoundaryWarning,
                    f"{len(labels)} coefficient(s) at the boundary of their range, held fixed "
                    f"with no standard error: {', '.join(labels[:4])}"
                    f"{' ...' if len(labels) > 4 else ''} (a spline hazard's weight at 0: "
                    f"that M-spline is not used; fewer knots would drop it)"))
    K = structure.n_experts
    if structure.has_scale:
        for k in range(structure.n_scale):
            if params.scale[k] <= summary.scale_boundary:
                out.append((BoundaryWarning,
                            f"residual variance of expert {k + 1} is at the boundary (about 0): "
                            f"the model reproduces those subjects' outcomes exactly; use fewer "
                            f"random effects in re_formula or fewer experts"))
    if structure.k_re:
        at_zero = variance_at_boundary(params, summary, re_scale)
        singular = singular_covariance(params, summary, re_scale)
        for k in range(K if structure.cov_re == "expert" else 1):
            for j in np.flatnonzero(at_zero[k]):
                out.append((BoundaryWarning,
                            f"random-effect variance of {structure.exog_re_names[j]!r} in expert "
                            f"{k + 1} is at the boundary (about 0): drop that random effect from "
                            f"re_formula or use re_structure='diagonal' / cov_re='shared'"))
            if singular[k]:
                out.append((BoundaryWarning,
                            f"the random-effects covariance of expert {k + 1} is singular (random "
                            f"effects perfectly correlated, a boundary fit): the data do not "
                            f"identify {structure.k_re} random effects; simplify re_formula or use "
                            f"re_structure='diagonal'"))
    return out


def _labels(structure: Structure) -> list[str]:
    """``expert k: term`` (or ``all experts: term``) of each parameter."""
    return [f"{'all experts' if expert == 'all' else f'expert {expert}'}: {term}"
            for _, expert, term in param_labels(structure)]
