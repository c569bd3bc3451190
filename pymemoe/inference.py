r"""Covariance of the estimates: inverse observed information and the subject-level sandwich.

Let s_i(theta) be subject i's score (the gradient of its log-likelihood contribution, computed
analytically by Fisher's identity in :mod:`pymemoe.likelihood`) and
A = -sum_i d s_i / d theta' the observed information.

* ``cov_type="oim"``     Cov = A^-1 (the default; valid when the model is correct);
* ``cov_type="robust"``  Cov = A^-1 B A^-1 with B = sum_i s_i s_i' (Huber-White sandwich with the
                         subject as the independent unit: valid under misspecification of the
                         within-subject distribution, e.g. heavy tails or heteroscedasticity);
* ``cov_type="none"``    no standard errors (NaN), for speed.

A is the central-difference Jacobian of the *analytic* summed score, so its error is O(h^2) on
an exact gradient rather than the O(h) of differencing the log-likelihood twice.

**Scale of the parameters.** The information is computed directly in the user's parameters
(variances and covariances of D_k, residual variances, SD ratios). At an interior maximum the
gradient vanishes, so this equals the delta-method transformation J Cov_internal J' of the
covariance on the internal (Cholesky, log-variance) scale; computing it directly avoids the
Jacobian of the transformation. Functions of the parameters reported in the summary (SDs,
correlations, residual SD) get their standard errors by the delta method
(:func:`delta_method`).

**Boundary.** A variance at 0 (or an SD ratio at 0) has no interior derivative: such parameters,
and covariances involving a zero variance, are held fixed, get NaN standard errors and a
warning naming them. If the remaining information matrix is not positive definite, the
parameters loading on its non-positive eigenvalues also get NaN, with a warning; the others
keep their standard errors.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from .data import SubjectData
from .exceptions import HessianInversionWarning
from .likelihood import score, score_obs
from .parallel import thread_map
from .params import Params, Structure, from_user, param_labels, to_user

__all__ = ["CovEstimate", "COV_TYPES", "estimate_cov", "observed_information", "delta_method",
           "boundary_parameters"]


@dataclass(frozen=True, eq=False)
class CovEstimate:
    """A covariance matrix of the user parameter vector and how it was obtained."""

    name: str
    cov: np.ndarray
    messages: tuple[str, ...] = ()
    config: tuple = ()


def _summed_score(data: SubjectData, structure: Structure, vector: np.ndarray) -> np.ndarray:
    return score(data, structure, from_user(vector, structure))


def observed_information(data: SubjectData, structure: Structure, params: Params,
                         fixed: np.ndarray | None = None, rel_step: float = 1e-5,
                         n_jobs: int = 1) -> np.ndarray:
    """A = -d(sum_i s_i)/d theta' by central differences of the analytic score, symmetrised.

    Columns of ``fixed`` parameters are not differenced (they are left as zeros). The columns
    are independent, so ``n_jobs`` threads compute them (:func:`pymemoe.parallel.thread_map`);
    the result does not depend on it.
    """
    theta = to_user(params, structure)
    n = theta.size
    fixed = np.zeros(n, dtype=bool) if fixed is None else fixed
    info = np.zeros((n, n))
    steps = _steps(data, structure, params, theta, rel_step)

    def column(j: int) -> np.ndarray:  # one pair of score evaluations per parameter
        h = steps[j]
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        return -(_summed_score(data, structure, up) - _summed_score(data, structure, down)) / (2 * h)

    free = np.flatnonzero(~fixed)
    for j, values in zip(free, thread_map(column, free, n_jobs)):
        info[:, j] = values
    return (info + info.T) / 2.0


def _steps(data: SubjectData, structure: Structure, params: Params, theta: np.ndarray,
           rel_step: float) -> np.ndarray:
    """Difference steps on each parameter's own scale, so they do not depend on the units of
    the data: ``rel_step`` times the larger of |theta_j| and the BHHH standard error
    1 / sqrt(sum_i s_ij^2); a variance-type parameter is never stepped below half its value."""
    scores = score_obs(data, structure, params)
    with np.errstate(divide="ignore"):
        se = 1.0 / np.sqrt(np.einsum("nj,nj->j", scores, scores))
    scale = np.where(np.isfinite(se), np.maximum(np.abs(theta), se), np.abs(theta))
    steps = rel_step * np.where(scale > 0, scale, 1.0)
    positive = np.array([b in ("re_cov", "scale") and (t.startswith("Var(") or t in ("sigma2", "SD ratio"))
                         for b, _, t in param_labels(structure)], dtype=bool)
    return np.where(positive, np.minimum(steps, 0.5 * np.abs(theta) + 1e-300), steps)


def boundary_parameters(structure: Structure, params: Params, data: SubjectData,
                        rel_tol: float = 1e-6) -> np.ndarray:
    """Mask of user parameters at the boundary: a variance (or SD ratio) ~0, and the
    covariances that involve such a variance."""
    labels = param_labels(structure)
    mask = np.zeros(len(labels), dtype=bool)
    floor = 1e-8 * float(data.yy.sum() / data.nobs)
    for j, (block, expert, term) in enumerate(labels):
        if block == "scale":
            k = 0 if expert == "all" else int(expert) - 1
            mask[j] = params.scale[k] <= floor
    if not structure.k_re:
        return mask
    z_scale = np.diagonal(data.zz, axis1=1, axis2=2).sum(axis=0) / data.nobs
    names = structure.exog_re_names
    theta = to_user(params, structure)
    for j, (block, expert, term) in enumerate(labels):
        if block != "re_cov":
            continue
        k = 0 if expert == "all" else int(expert) - 1
        if params.scale[k] <= floor:     # D / sigma2 is meaningless when sigma2 is ~0
            mask[j] = True
            continue
        D = params.cov_re[k]
        relative = np.diag(D) * z_scale / params.scale[k]
        if term == "SD ratio":
            mask[j] = theta[j] < np.sqrt(rel_tol)
            continue
        inner = term[term.index("(") + 1:-1].split(",")
        idx = [names.index(t) for t in inner]
        mask[j] = bool(np.any(relative[idx] < rel_tol))
    return mask


def _invert(info: np.ndarray, free: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Inverse of the information over the ``free`` parameters that it identifies."""
    messages = []
    ok = free.copy()
    for _ in range(info.shape[0]):
        sub = info[np.ix_(ok, ok)]
        if sub.size == 0:
            break
        # work with the correlation-scaled matrix, so that the test of positive definiteness
        # does not depend on the units of the parameters (variances of y * 1e-6 are ~1e-12)
        diag = np.abs(np.diag(sub))
        scale = 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0))
        scaled = sub * scale[:, None] * scale[None, :]
        if not np.all(np.isfinite(scaled)):
            break
        vals, vecs = np.linalg.eigh(scaled)
        bad = vals <= 1e-10 * max(vals.max(), 1e-300)
        if not bad.any():
            inv = ((vecs / vals) @ vecs.T) * scale[:, None] * scale[None, :]
            cov = np.full(info.shape, np.nan)
            cov[np.ix_(ok, ok)] = inv
            return cov, ok, messages
        loading = np.abs(vecs[:, bad]).max(axis=1)
        worst = np.flatnonzero(ok)[np.argmax(loading)]
        ok[worst] = False
        messages.append(f"the information matrix is not positive definite in the direction of "
                        f"{_name(labels[worst])}: its standard error is not available (NaN); "
                        f"the model may be over-parameterised (fewer experts, a simpler "
                        f"re_structure or cov_re) or the fit not at a maximum")
    return np.full(info.shape, np.nan), np.zeros_like(ok), messages


def _name(label) -> str:
    block, expert, term = label
    return f"{block}[{expert}]:{term}"


def _prepare(data, structure, params, n_jobs=1):
    labels = param_labels(structure)
    boundary = boundary_parameters(structure, params, data)
    messages = [f"{_name(labels[j])} is at the boundary of the parameter space: its standard "
                f"error is not available (NaN); consider dropping that random effect"
                for j in np.flatnonzero(boundary)]
    info = observed_information(data, structure, params, fixed=boundary, n_jobs=n_jobs)
    return labels, boundary, info, messages


def cov_oim(data: SubjectData, structure: Structure, params: Params, n_jobs: int = 1) -> CovEstimate:
    """Inverse observed information (its columns computed in ``n_jobs`` threads)."""
    labels, boundary, info, messages = _prepare(data, structure, params, n_jobs)
    cov, _, more = _invert(info, ~boundary, labels)
    return CovEstimate(name="oim", cov=cov, messages=tuple(messages + more))


def cov_robust(data: SubjectData, structure: Structure, params: Params, n_jobs: int = 1) -> CovEstimate:
    """Subject-level sandwich A^-1 B A^-1, B = sum_i s_i s_i' (A in ``n_jobs`` threads)."""
    labels, boundary, info, messages = _prepare(data, structure, params, n_jobs)
    a_inv, ok, more = _invert(info, ~boundary, labels)
    scores = score_obs(data, structure, params)[:, ok]
    meat = scores.T @ scores
    cov = np.full(info.shape, np.nan)
    bread = a_inv[np.ix_(ok, ok)]
    cov[np.ix_(ok, ok)] = bread @ meat @ bread
    return CovEstimate(name="robust", cov=cov, messages=tuple(messages + more))


def cov_none(data: SubjectData, structure: Structure, params: Params, n_jobs: int = 1) -> CovEstimate:
    """No covariance (all NaN)."""
    n = structure.n_params
    return CovEstimate(name="none", cov=np.full((n, n), np.nan))


COV_TYPES: dict[str, Callable[..., CovEstimate]] = {
    "oim": cov_oim,
    "robust": cov_robust,
    "none": cov_none,
}


def estimate_cov(cov_type: str, data: SubjectData, structure: Structure, params: Params,
                 cov_kwds: dict | None = None, n_jobs: int = 1) -> CovEstimate:
    """Look up ``cov_type`` in :data:`COV_TYPES` and compute it; warn with its messages."""
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {sorted(COV_TYPES)}, got {cov_type!r}")
    if cov_kwds:
        raise ValueError(f"cov_type={cov_type!r} takes no options; got {sorted(cov_kwds)}")
    estimate = COV_TYPES[cov_type](data, structure, params, n_jobs=n_jobs)
    for msg in estimate.messages:
        warnings.warn(msg, HessianInversionWarning, stacklevel=3)
    return estimate


def delta_method(func: Callable[[np.ndarray], np.ndarray], theta: np.ndarray,
                 cov: np.ndarray, rel_step: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Value and delta-method covariance of ``func(theta)`` (central-difference Jacobian).

    Returns
    -------
    value : ndarray (m,)
    cov : ndarray (m, m)   J cov J'
    """
    value = np.asarray(func(theta), dtype=float)
    jac = np.zeros((value.size, theta.size))
    for j in range(theta.size):
        h = rel_step * max(abs(theta[j]), 1e-3)
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        jac[:, j] = (np.asarray(func(up)) - np.asarray(func(down))) / (2 * h)
    # An output whose Jacobian touches a parameter without a variance gets NaN; the others do
    # not (a boundary in one expert leaves the other experts' SDs intact).
    unknown = np.isnan(np.diag(cov))
    out = jac @ np.nan_to_num(cov, nan=0.0) @ jac.T
    lost = np.any((jac != 0) & unknown[None, :], axis=1)
    out[lost, :] = np.nan
    out[:, lost] = np.nan
    return value, out
