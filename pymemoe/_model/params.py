"""Parameters of a MEMoE: one frozen state object and its conversions.

The state is ``Params(gamma, beta, cov_re, scale)`` on the user's scale:

* ``gamma``  (K, r)     gating coefficients, row 0 (the reference expert) identically zero;
* ``beta``   (K, p)     fixed effects of each expert over the full design; the last
                        ``k_shared`` columns (``shared_formula``) are equal across experts;
* ``cov_re`` (K, q, q)  random-effects covariance D_k;
* ``scale``  (K,)       residual variance sigma2_k (ones for families without one: binomial,
                        Poisson; ``Structure.scale == "none"``).

The :class:`Structure` says which of these are free. Two flat vectors are derived from it:

* the **user vector** (``to_user`` / ``from_user``), labelled by :func:`param_labels` with a
  (block, expert, term) MultiIndex: the gating coefficients of experts 2..K; the expert-specific
  fixed effects of each expert, then the shared ones; the free entries of D (variances and
  covariances, lower triangle row by row), with ``cov_re="proportional"`` the reference D and
  the SD ratios w_k (D_k = w_k^2 D, w_1 = 1, as lcmm's ``nwg``); the residual variances.
* the **kinds** of the user vector's entries (:func:`param_kinds`): which entries are variances,
  covariances, SD ratios or residual variances, and of which expert and which random effects.
  Code that needs to know (bounds, boundary masks, difference steps) asks them, never the
  labels' text.
* the **internal vector** (``to_internal`` / ``from_internal``) seen by the quasi-Newton polish:
  the same but with D replaced by the entries of its lower Cholesky factor L (D = L L', the
  diagonal of L bounded below by 0 so that a variance may reach the boundary, as in lme4) and
  sigma2 by its logarithm.

:func:`chain_gradient` maps per-subject gradients with respect to the natural pieces
(gamma_k, beta_k, D_k as a symmetric matrix, sigma2_k) to either vector by the chain rule.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._linalg.smallmat import matmul

__all__ = [
    "Structure", "Params", "ParamKind", "param_kinds", "param_labels", "to_user", "from_user",
    "to_internal", "from_internal", "internal_bounds", "chain_gradient", "reorder",
    "psd_cholesky", "natural_index", "natural_vector",
]

COV_RE_OPTIONS = ("expert", "proportional", "shared")
RE_STRUCTURES = ("unstructured", "diagonal")
SCALE_OPTIONS = ("expert", "shared", "none")
SHARED = "all"  # expert label of parameters common to all experts


@dataclass(frozen=True)
class Structure:
    """Dimensions, names and constraints of a MEMoE: everything about the parameter space but
    the parameter values (what the parameter vectors, their labels, the M-steps and the
    boundary rules are built from). Built once per model, from its designs
    (:meth:`of_designs`)."""

    n_experts: int
    exog_names: tuple[str, ...]
    exog_re_names: tuple[str, ...]
    exog_gate_names: tuple[str, ...]
    k_shared: int = 0
    cov_re: str = "expert"
    re_structure: str = "unstructured"
    scale: str = "expert"

    def __post_init__(self) -> None:
        for name, value, options in (
            ("cov_re", self.cov_re, COV_RE_OPTIONS),
            ("re_structure", self.re_structure, RE_STRUCTURES),
            ("scale", self.scale, SCALE_OPTIONS),
        ):
            if value not in options:
                raise ValueError(f"{name} must be one of {options}, got {value!r}")
        if int(self.n_experts) != self.n_experts or self.n_experts < 1:
            raise ValueError(f"n_experts must be an integer >= 1, got {self.n_experts!r}")

    @classmethod
    def of_designs(cls, n_experts: int, exog_names, exog_re_names, exog_gate_names,
                   exog_shared_names=(), *, cov_re: str = "expert",
                   re_structure: str = "unstructured", scale: str = "expert") -> "Structure":
        """The structure of a model from its designs' column names: the expert-specific and
        the shared fixed effects (in that order in ``exog_names``), the random effects and
        the gating covariates."""
        return cls(n_experts=n_experts, exog_names=tuple(exog_names) + tuple(exog_shared_names),
                   exog_re_names=tuple(exog_re_names), exog_gate_names=tuple(exog_gate_names),
                   k_shared=len(exog_shared_names), cov_re=cov_re, re_structure=re_structure,
                   scale=scale)

    @property
    def k_fe(self) -> int:
        return len(self.exog_names)

    @property
    def k_mix(self) -> int:
        return self.k_fe - self.k_shared

    @property
    def k_re(self) -> int:
        return len(self.exog_re_names)

    @property
    def k_gate(self) -> int:
        return len(self.exog_gate_names)

    @property
    def re_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices of the free entries of D (or of its Cholesky factor)."""
        q = self.k_re
        if self.re_structure == "diagonal":
            return np.arange(q), np.arange(q)
        return np.tril_indices(q)

    @property
    def has_scale(self) -> bool:
        """Whether the experts have residual variances (``scale != "none"``: Gaussian)."""
        return self.scale != "none"

    @property
    def n_scale(self) -> int:
        """Number of free residual variances."""
        return {"expert": self.n_experts, "shared": 1, "none": 0}[self.scale]

    @property
    def n_cov_matrices(self) -> int:
        """Number of distinct covariance matrices with free entries."""
        return self.n_experts if self.cov_re == "expert" else 1

    @property
    def n_params(self) -> int:
        K, q = self.n_experts, self.k_re
        n_re = len(self.re_index[0]) * self.n_cov_matrices if q else 0
        if q and self.cov_re == "proportional":
            n_re += K - 1
        return (K - 1) * self.k_gate + K * self.k_mix + self.k_shared + n_re + self.n_scale


@dataclass(frozen=True, eq=False)
class Params:
    """The parameters of a MEMoE on the user's scale, as arrays (frozen, read-only copies).

    ``res.state`` holds a fit's estimates in this form; :func:`pymemoe.simulate` takes one as
    the truth to draw data from.

    Attributes
    ----------
    gamma : ndarray (K, r)
        Gating coefficients; row 0 (the reference expert) is zero.
    beta : ndarray (K, p)
        Fixed effects of each expert over the full design (the shared columns last, equal
        across experts).
    cov_re : ndarray (K, q, q)
        Random-effects covariance D_k of each expert.
    scale : ndarray (K,)
        Residual variance sigma2_k (ones for experts without one: binomial, Poisson).

    Examples
    --------
    >>> from pymemoe import Params
    >>> truth = Params(gamma=[[0.0]], beta=[[1.0, 0.5]], cov_re=[[[0.25, 0.0], [0.0, 0.01]]],
    ...                scale=[0.1])
    >>> truth.n_experts, truth.beta.flags.writeable
    (1, False)
    """

    gamma: np.ndarray
    beta: np.ndarray
    cov_re: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        for name in ("gamma", "beta", "cov_re", "scale"):
            value = np.array(getattr(self, name), dtype=float)  # private, read-only copy
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def n_experts(self) -> int:
        return self.beta.shape[0]


def psd_cholesky(matrix: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a symmetric positive semi-definite matrix (batched).

    A singular matrix (a variance at the boundary) gets the factor of ``matrix + eps I`` with eps
    of the order of the machine precision times its trace, which changes nothing that matters.
    """
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        q = matrix.shape[-1]
        trace = np.trace(matrix, axis1=-2, axis2=-1)[..., None, None]
        eps = 1e-12 * np.maximum(trace, 1e-300) + 1e-300
        vals, vecs = np.linalg.eigh(matrix)
        fixed = (vecs * np.clip(vals, 0.0, None)[..., None, :]) @ np.swapaxes(vecs, -1, -2)
        return np.linalg.cholesky(fixed + eps * np.eye(q))


def _re_term_labels(structure: Structure) -> list[str]:
    names = structure.exog_re_names
    rows, cols = structure.re_index
    return [f"Var({names[i]})" if i == j else f"Cov({names[j]},{names[i]})" for i, j in zip(rows, cols)]


def param_labels(structure: Structure) -> pd.MultiIndex:
    """The (block, expert, term) labels of the user vector; experts are numbered from 1."""
    K = structure.n_experts
    rows: list[tuple] = []
    rows += [("gate", k + 1, t) for k in range(1, K) for t in structure.exog_gate_names]
    mix_names = structure.exog_names[: structure.k_mix]
    shared_names = structure.exog_names[structure.k_mix:]
    rows += [("beta", k + 1, t) for k in range(K) for t in mix_names]
    rows += [("beta", SHARED, t) for t in shared_names]
    if structure.k_re:
        re_terms = _re_term_labels(structure)
        if structure.cov_re == "expert":
            rows += [("re_cov", k + 1, t) for k in range(K) for t in re_terms]
        else:
            rows += [("re_cov", SHARED if structure.cov_re == "shared" else 1, t) for t in re_terms]
            if structure.cov_re == "proportional":
                rows += [("re_cov", k + 1, "SD ratio") for k in range(1, K)]
    if structure.scale == "expert":
        rows += [("scale", k + 1, "sigma2") for k in range(K)]
    elif structure.scale == "shared":
        rows += [("scale", SHARED, "sigma2")]
    return pd.MultiIndex.from_tuples(rows, names=["block", "expert", "term"])


@dataclass(frozen=True)
class ParamKind:
    """What one entry of the user vector is.

    Attributes
    ----------
    kind : {"gate", "beta", "var", "cov", "ratio", "scale"}
        Gating coefficient, fixed effect, random-effect variance, random-effect covariance,
        SD ratio w_k (``cov_re="proportional"``) or residual variance.
    expert : int or None
        0-based expert the entry belongs to; None for entries common to all experts (shared
        fixed effects, a shared D or residual variance).
    re_index : tuple of int
        For "var" and "cov": the random effects (i, j) of the entry D[i, j]; else ().
    """

    kind: str
    expert: int | None
    re_index: tuple[int, ...] = ()

    @property
    def positive(self) -> bool:
        """Variance-type entries (variances, SD ratios, residual variances) are >= 0."""
        return self.kind in ("var", "ratio", "scale")


def param_kinds(structure: Structure) -> tuple[ParamKind, ...]:
    """The :class:`ParamKind` of every entry of the user vector, in the order of
    :func:`param_labels`."""
    K = structure.n_experts
    kinds = [ParamKind("gate", k) for k in range(1, K) for _ in structure.exog_gate_names]
    kinds += [ParamKind("beta", k) for k in range(K) for _ in range(structure.k_mix)]
    kinds += [ParamKind("beta", None) for _ in range(structure.k_shared)]
    if structure.k_re:
        rows, cols = structure.re_index
        entries = [("var" if i == j else "cov", (int(j), int(i))) for i, j in zip(rows, cols)]
        if structure.cov_re == "expert":
            kinds += [ParamKind(kind, k, idx) for k in range(K) for kind, idx in entries]
        else:
            owner = None if structure.cov_re == "shared" else 0
            kinds += [ParamKind(kind, owner, idx) for kind, idx in entries]
            if structure.cov_re == "proportional":
                kinds += [ParamKind("ratio", k) for k in range(1, K)]
    if structure.scale == "expert":
        kinds += [ParamKind("scale", k) for k in range(K)]
    elif structure.scale == "shared":
        kinds += [ParamKind("scale", None)]
    return tuple(kinds)


def _proportional_w(params: Params) -> np.ndarray:
    trace = np.trace(params.cov_re, axis1=1, axis2=2)
    if not trace[0] > 0:      # no division at all: np.where would compute (and overflow) it
        return np.ones_like(trace)
    return np.sqrt(trace / max(trace[0], 1e-300))


def _pack(params: Params, structure: Structure, internal: bool) -> np.ndarray:
    km = structure.k_mix
    parts = [params.gamma[1:].ravel(), params.beta[:, :km].ravel(), params.beta[0, km:]]
    if structure.k_re:
        rows, cols = structure.re_index
        mats = params.cov_re if structure.cov_re == "expert" else params.cov_re[:1]
        if internal:
            if structure.re_structure == "diagonal":
                mats = np.sqrt(np.clip(np.diagonal(mats, axis1=1, axis2=2), 0, None))[:, :, None] * np.eye(structure.k_re)
            else:
                mats = psd_cholesky(mats)
        parts.append(mats[:, rows, cols].ravel())
        if structure.cov_re == "proportional":
            parts.append(_proportional_w(params)[1:])
    scale = params.scale[: structure.n_scale]
    parts.append(np.log(scale) if internal else scale)
    return np.concatenate(parts)


def _unpack(vector: np.ndarray, structure: Structure, internal: bool) -> Params:
    vector = np.asarray(vector, dtype=float)
    if vector.shape != (structure.n_params,):
        raise ValueError(f"parameter vector must have length {structure.n_params}, got shape {vector.shape}")
    K, r, km, p, q = (structure.n_experts, structure.k_gate, structure.k_mix,
                      structure.k_fe, structure.k_re)
    pos = 0

    def take(size: int) -> np.ndarray:
        nonlocal pos
        out = vector[pos:pos + size]
        pos += size
        return out

    gamma = np.vstack([np.zeros((1, r)), take((K - 1) * r).reshape(K - 1, r)])
    beta = np.empty((K, p))
    beta[:, :km] = take(K * km).reshape(K, km)
    beta[:, km:] = take(p - km)
    cov_re = np.zeros((K, q, q))
    if q:
        rows, cols = structure.re_index
        n_mats = structure.n_cov_matrices
        mats = np.zeros((n_mats, q, q))
        mats[:, rows, cols] = take(n_mats * len(rows)).reshape(n_mats, len(rows))
        if internal:
            mats = mats @ np.swapaxes(mats, 1, 2)
        else:
            mats = mats + np.swapaxes(np.tril(mats, -1), 1, 2)
        if structure.cov_re == "proportional":
            w = np.r_[1.0, take(K - 1)]
            cov_re = (w ** 2)[:, None, None] * mats[0]
        else:
            cov_re[:] = mats
    if structure.has_scale:
        scale = take(structure.n_scale)
        scale = np.broadcast_to(np.exp(scale) if internal else scale, (K,))
    else:
        scale = np.ones(K)
    return Params(gamma=gamma, beta=beta, cov_re=cov_re, scale=scale)


def to_user(params: Params, structure: Structure) -> np.ndarray:
    """Flat user-scale vector in the order of :func:`param_labels`."""
    return _pack(params, structure, internal=False)


def from_user(vector: np.ndarray, structure: Structure) -> Params:
    """Inverse of :func:`to_user`."""
    return _unpack(vector, structure, internal=False)


def to_internal(params: Params, structure: Structure) -> np.ndarray:
    """Flat optimiser-scale vector (Cholesky entries of D, log sigma2)."""
    return _pack(params, structure, internal=True)


def from_internal(vector: np.ndarray, structure: Structure) -> Params:
    """Inverse of :func:`to_internal`."""
    return _unpack(vector, structure, internal=True)


def internal_bounds(structure: Structure, scale_floor: float | None = None
                    ) -> list[tuple[float | None, float | None]]:
    """Box constraints of the internal vector: Cholesky diagonals and SD ratios are >= 0; with
    ``scale_floor``, log residual variances are >= log(scale_floor) (the M-step's floor, so
    that no search reaches a residual variance whose Woodbury terms overflow)."""
    log_floor = None if scale_floor is None else float(np.log(scale_floor))
    return [(0.0, None) if kind.kind in ("var", "ratio")
            else (log_floor, None) if kind.kind == "scale" else (None, None)
            for kind in param_kinds(structure)]


def chain_gradient(
    params: Params,
    structure: Structure,
    grad_gamma: np.ndarray,
    grad_beta: np.ndarray,
    grad_cov_re: np.ndarray,
    grad_scale: np.ndarray,
    internal: bool,
) -> np.ndarray:
    """Per-subject gradient of the user or internal vector from natural-piece gradients.

    Parameters
    ----------
    grad_gamma : ndarray (N, K, r)
        d loglik_i / d gamma_k (the reference row is ignored).
    grad_beta : ndarray (N, K, p)
        d loglik_i / d beta_k (the shared columns are summed over experts).
    grad_cov_re : ndarray (N, K, q, q)
        Symmetric matrix gradient G_k with d loglik_i = sum_k tr(G_k dD_k).
    grad_scale : ndarray (N, K) or None
        d loglik_i / d sigma2_k (None, or anything, when the structure has no scale).
    internal : bool
        Gradient of the internal (True) or the user (False) vector.

    Returns
    -------
    ndarray (N, n_params)
    """
    N = grad_beta.shape[0]
    km, q = structure.k_mix, structure.k_re
    parts = [grad_gamma[:, 1:, :].reshape(N, -1), grad_beta[:, :, :km].reshape(N, -1),
             grad_beta[:, :, km:].sum(axis=1)]
    if q:
        rows, cols = structure.re_index
        offdiag = np.where(rows == cols, 1.0, 2.0)  # an off-diagonal entry moves two cells of D
        cov = params.cov_re
        if structure.cov_re == "expert":
            G = grad_cov_re
            base = cov
        elif structure.cov_re == "shared":
            G = grad_cov_re.sum(axis=1, keepdims=True)
            base = cov[:1]
        else:  # proportional: D_k = w_k^2 D_1
            w = _proportional_w(params)
            G = np.einsum("k,nkab->nab", w ** 2, grad_cov_re)[:, None]
            base = cov[:1]
        if internal:  # D = L L'  =>  d/dL = 2 G L (lower triangle)
            if structure.re_structure == "diagonal":
                L = np.sqrt(np.clip(np.diagonal(base, axis1=1, axis2=2), 0, None))[:, :, None] * np.eye(q)
            else:
                L = psd_cholesky(base)
            dL = 2.0 * matmul(G, L)
            parts.append(dL[:, :, rows, cols].reshape(N, -1))
        else:
            parts.append((G[:, :, rows, cols] * offdiag).reshape(N, -1))
        if structure.cov_re == "proportional":
            w = _proportional_w(params)
            trace_gd = np.einsum("nkab,ba->nk", grad_cov_re, cov[0])
            parts.append((2.0 * w[None, 1:] * trace_gd[:, 1:]))
    if structure.has_scale:
        gs = grad_scale if structure.scale == "expert" else grad_scale.sum(axis=1, keepdims=True)
        if internal:
            gs = gs * params.scale[: structure.n_scale]
        parts.append(gs)
    return np.concatenate(parts, axis=1)


def reorder(params: Params, perm: np.ndarray) -> Params:
    """Experts in the order ``perm`` (new expert j is old expert perm[j]).

    The gating is re-expressed against the new first expert; a proportional covariance keeps
    D_k = w_k^2 D with the new first expert's D as reference, which needs no change here because
    the user-scale covariance of every expert is stored in full.
    """
    perm = np.asarray(perm)
    gamma = params.gamma[perm]
    return Params(gamma=gamma - gamma[0], beta=params.beta[perm],
                  cov_re=params.cov_re[perm], scale=params.scale[perm])


def natural_index(p: int, q: int, has_scale: bool = True) -> list[tuple[str, tuple[int, ...]]]:
    """The coordinates of an expert's natural vector nu: ("beta", (j,)) for j < p, then
    ("cov", (i, j)) for the lower triangle of D row by row (i >= j), then ("scale", ())."""
    index = [("beta", (j,)) for j in range(p)]
    index += [("cov", (int(i), int(j))) for i, j in zip(*np.tril_indices(q))]
    if has_scale:
        index.append(("scale", ()))
    return index


def natural_vector(params: Params, k: int, has_scale: bool = True) -> np.ndarray:
    """Expert k's natural vector nu_k (see :func:`natural_index`)."""
    rows, cols = np.tril_indices(params.cov_re.shape[-1])
    parts = [params.beta[k], params.cov_re[k][rows, cols]]
    if has_scale:
        parts.append(params.scale[k:k + 1])
    return np.concatenate(parts)
