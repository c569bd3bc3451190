r"""Covariance of the estimates: inverse observed information and the subject-level sandwich.

Let s_i(theta) be subject i's score (the gradient of its log-likelihood contribution, computed
analytically by Fisher's identity in :mod:`pymemoe._model.likelihood`) and
A = -sum_i d s_i / d theta' the observed information.

* ``cov_type="oim"``     Cov = A^-1 (the default; valid when the model is correct);
* ``cov_type="robust"``  Cov = A^-1 B A^-1 with B = sum_i s_i s_i' (Huber-White sandwich with the
                         subject as the independent unit: valid under misspecification of the
                         within-subject distribution, e.g. heavy tails or heteroscedasticity);
* ``cov_type="none"``    no standard errors (NaN), for speed.

**The information in three terms (Louis 1982).** With u_ik = d/dtheta log[pi_ik f(y_i | k)]
and s_i = sum_k tau_ik u_ik, differentiating s_i once more gives::

    A = sum_i sum_k tau_ik (-d2 log pi_ik)                 gating: sum_i (diag pi_i - pi_i pi_i') (x) w_i w_i'
      + sum_i sum_k tau_ik (-d2 log f(y_i | k))           experts, at fixed tau
      - sum_i [ sum_k tau_ik u_ik u_ik' - s_i s_i' ]       missing information (the posterior
                                                           covariance of u_ik over k)

The first is closed form (:func:`pymemoe._model.gating.gating_hessian`) and the third a sum of outer
products of the per-expert vectors u_ik (:func:`pymemoe._model.likelihood.expert_score_vectors`), one
pass over the subjects that also gives the sandwich's meat B. The second is the Jacobian of the
tau-fixed expert score S_E(theta) = sum_i sum_k tau_ik d log f(y_i | k)/dtheta, by central
differences of the family's analytic gradients (error O(h^2)); a column moves one expert's
parameters (or the shared ones), so it costs the E-step of that expert only, and all columns of
a block are computed while its data are in cache. In all, about 2 x (parameters per expert)
E-steps instead of two E-steps and scores per parameter when the whole score is differenced
(:func:`observed_information_numeric`, kept as the independent check of the tests).

**Scale of the parameters.** The information is computed directly in the user's parameters
(variances and covariances of D_k, residual variances, SD ratios). At an interior maximum the
gradient vanishes, so this equals the delta-method transformation J Cov_internal J' of the
covariance on the internal (Cholesky, log-variance) scale. Functions of the parameters reported
in the summary (SDs, correlations, residual SD) get their standard errors by the delta method
(:func:`delta_method`).

**Boundary.** A variance at 0 (or an SD ratio at 0) has no interior derivative: such parameters,
and covariances involving a zero variance (:func:`pymemoe._model.boundary.boundary_mask`), are held
fixed, get NaN standard errors and a warning naming them. If the remaining information matrix is
not positive definite, the parameters loading on its non-positive eigenvalues also get NaN, with
a warning; the others keep their standard errors.

**Delayed entry.** The log-likelihood of a joint model with delayed entry is a difference of
two mixtures (:mod:`pymemoe._model.likelihood`); its observed information is the central-
difference Jacobian of the exact analytic score over blocks (two passes per parameter), and
the meat the sum of the exact per-subject scores' outer products.

**Passes over blocks.** Both passes are reductions over blocks of subjects
(:mod:`pymemoe._execution.blocks`), run in ``n_jobs`` threads; the result does not depend on ``n_jobs``.
"""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from .._execution.blocks import as_blocks
from .._execution.threads import one_blas_thread
from .._linalg.smallmat import weighted_sum
from .._model.boundary import boundary_mask
from .._model.gating import gating_hessian
from .._model.likelihood import chain_sums, e_step, expert_score_vectors, score_obs
from .._model.params import (Params, Structure, from_user, natural_vector, param_kinds,
                             param_labels, to_user)
from ..exceptions import HessianInversionWarning

__all__ = ["CovEstimate", "DeferredCov", "COV_TYPES", "COV_OPTIONS", "survey_meat",
           "check_cov_type", "estimate_cov", "observed_information",
           "observed_information_numeric", "information_terms", "has_closed_form", "delta_method",
           "boundary_parameters", "cov_oim", "cov_robust", "cov_none"]


@dataclass(frozen=True, eq=False)
class CovEstimate:
    """A covariance matrix of the user parameter vector and how it was obtained."""

    name: str
    cov: np.ndarray
    messages: tuple[str, ...] = ()
    config: tuple = ()


# -- pass 1: gating information, missing information, the meat (and closed-form Hessians) ---------


def _louis_block(data, cache, structure: Structure, params: Params, closed_form: bool):
    estep = e_step(data, params)
    tau, weights = estep.tau, estep.weights
    wtau = estep.weighted_tau
    vectors = expert_score_vectors(data, structure, params, estep)
    scores = sum(tau[:, k, None] * u for k, u in enumerate(vectors))
    complete = sum((wtau[:, k, None] * u).T @ u for k, u in enumerate(vectors))
    if weights is None:
        missing = meat = scores.T @ scores
    else:
        # each subject's terms of the information times its weight; the meat of the sandwich
        # is the sum of squares of each subject's weighted score (sampling weights)
        weighted = scores * weights[:, None]
        missing, meat = weighted.T @ scores, weighted.T @ weighted
    gate = (-gating_hessian(data.exog_gate, params.gamma, prior=np.exp(estep.log_prior),
                            weights=estep.gate_weights)
            if params.n_experts > 1 else np.zeros((0, 0)))
    natural = _expert_sums(data, params, estep.moments, wtau)
    hess = data.family.hessian_sums(data, params, estep.moments, wtau) if closed_form else None
    return estep, (complete - missing, meat, gate, natural, hess)


def information_terms(blocks, structure: Structure, params: Params, closed_form: bool = True):
    """One pass: block caches (the E-step at ``params``), the missing-information term
    sum_i [sum_k tau_ik u_ik u_ik' - s_i s_i'], the meat B = sum_i s_i s_i', the gating
    information sum_i (diag pi_i - pi_i pi_i') (x) w_i w_i' (free coefficients), the experts'
    posterior-weighted natural gradient sums and, when the family has them (and
    ``closed_form``), their posterior-weighted natural Hessians (else None)."""
    closed_form = closed_form and has_closed_form(blocks.family)
    caches, terms = blocks.map_reduce(_louis_block, blocks.empty_caches(), structure, params,
                                      closed_form)
    return (caches, *terms)


def has_closed_form(family) -> bool:
    """Whether ``family`` has closed-form expert Hessians
    (:meth:`~pymemoe.families.base.ExpertFamily.hessian_sums`)."""
    return bool(family.has_hessian_sums)


# -- the experts' term: closed form, or the Jacobian of the tau-fixed expert score -------------


def _expert_sums(data, params: Params, moments, tau: np.ndarray) -> tuple[np.ndarray, ...]:
    grads = data.family.gradients(data, params, moments)
    g_scale = (np.einsum("nk,nk->k", tau, grads.scale) if grads.scale is not None
               else np.zeros(tau.shape[1]))
    return weighted_sum(tau, grads.beta), weighted_sum(tau, grads.cov), g_scale


def _subset(params: Params, experts: np.ndarray) -> Params:
    return Params(gamma=np.zeros((len(experts), params.gamma.shape[1])), beta=params.beta[experts],
                  cov_re=params.cov_re[experts], scale=params.scale[experts])


def _changed_experts(base: Params, moved: Params) -> np.ndarray:
    K = base.n_experts
    differs = ((base.beta != moved.beta).any(axis=1)
               | (base.cov_re.reshape(K, -1) != moved.cov_re.reshape(K, -1)).any(axis=1)
               | (base.scale != moved.scale))
    return np.flatnonzero(differs)


def _moved(structure: Structure, theta: np.ndarray, j: int, h: float) -> tuple[Params, Params]:
    up, down = theta.copy(), theta.copy()
    up[j] += h
    down[j] -= h
    return from_user(up, structure), from_user(down, structure)


def _moves(structure: Structure, params: Params, columns: np.ndarray, steps: np.ndarray) -> list:
    """For every column and sign: the moved parameters, the experts they change and those
    experts' parameters alone (computed once, outside the passes)."""
    theta = to_user(params, structure)
    plan = []
    for j in columns:
        for moved in _moved(structure, theta, j, steps[j]):
            experts = _changed_experts(params, moved)
            plan.append((moved, experts, _subset(moved, experts)))
    return plan


def _jacobian_block(data, cache, plan: list):
    """Posterior-weighted natural gradient sums of the moved experts, for every move of
    ``plan``, on one block (tau held at the cache's)."""
    tau = cache.weighted_tau
    return [_expert_sums(data, sub, data.family.moments(data, sub), tau[:, experts])
            if experts.size else None for _, experts, sub in plan]


def _jacobian_columns(blocks, caches, structure: Structure, params: Params, natural: tuple,
                      columns: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """d S_E / d theta_j for the ``columns``, S_E the tau-fixed expert score on the user
    vector, by central differences of the family's gradients (one more pass over the blocks)."""
    plan = _moves(structure, params, columns, steps)
    moved_sums = blocks.reduce(_jacobian_block, caches, plan)
    zero_gate = np.zeros_like(params.gamma)
    values = []
    for (moved, experts, _), part in zip(plan, moved_sums):
        sums = [piece.copy() for piece in natural]
        if part is not None:
            for piece, new in zip(sums, part):
                piece[experts] = new
        values.append(chain_sums(moved, structure, (zero_gate, *sums)))
    values = np.array(values).reshape(len(columns), 2, -1)
    return ((values[:, 0] - values[:, 1]) / (2.0 * steps[columns, None])).T


def _closed_form_columns(structure: Structure, params: Params, natural: tuple, hess: np.ndarray,
                         columns: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """d S_E / d theta_j from the experts' natural Hessians: sum_k J_k' H_k J_k, with J_k the
    Jacobian of expert k's natural parameters in theta, plus the curvature of that map (nonzero
    for cov_re="proportional" only); both maps are data-free and differenced here."""
    theta = to_user(params, structure)
    K, has_scale = params.n_experts, structure.has_scale
    zero_gate = np.zeros_like(params.gamma)
    n_nu = hess.shape[1]
    jac = np.zeros((K, n_nu, theta.size))
    curvature = np.zeros((theta.size, len(columns)))
    for c, j in enumerate(columns):
        up, down = _moved(structure, theta, j, steps[j])
        for k in range(K):
            jac[k, :, j] = (natural_vector(up, k, has_scale) - natural_vector(down, k, has_scale)) / (2 * steps[j])
        curvature[:, c] = (chain_sums(up, structure, (zero_gate, *natural))
                           - chain_sums(down, structure, (zero_gate, *natural))) / (2 * steps[j])
    return sum(jac[k].T @ hess[k] @ jac[k][:, columns] for k in range(K)) + curvature


def _steps(structure: Structure, theta: np.ndarray, meat_diag: np.ndarray,
           rel_step: float) -> np.ndarray:
    """Difference steps on each parameter's own scale, so they do not depend on the units of
    the data: ``rel_step`` times the larger of |theta_j| and the BHHH standard error
    1 / sqrt(sum_i s_ij^2); a variance-type parameter is never stepped below half its value."""
    with np.errstate(divide="ignore"):
        se = 1.0 / np.sqrt(meat_diag)
    scale = np.where(np.isfinite(se), np.maximum(np.abs(theta), se), np.abs(theta))
    steps = rel_step * np.where(scale > 0, scale, 1.0)
    positive = np.array([kind.positive for kind in param_kinds(structure)], dtype=bool)
    return np.where(positive, np.minimum(steps, 0.5 * np.abs(theta) + 1e-300), steps)




def observed_information(data, structure: Structure, params: Params,
                         fixed: np.ndarray | None = None, rel_step: float = 1e-5,
                         n_jobs: int = 1, block_size: int | None = None,
                         return_meat: bool = False, closed_form: bool = True):
    """The observed information A (user scale) by the three-term decomposition of the module
    docstring: one pass over blocks of subjects in ``n_jobs`` threads when the family has
    closed-form Hessians (Gaussian), a second one differencing its gradients otherwise (or
    with ``closed_form=False``).

    Columns (and rows) of ``fixed`` parameters are left as zeros. With ``return_meat`` the
    sandwich's meat B = sum_i s_i s_i' of the first pass is returned too.
    """
    blocks = as_blocks(data, structure.n_experts, n_jobs, block_size)
    if blocks.family.has_entry:
        # the log-likelihood is a difference of two mixtures (module docstring)
        try:
            info, meat = _information_by_differences(blocks, structure, params, fixed, rel_step)
        finally:
            if blocks is not data:
                blocks.close()
        keep = ~np.asarray(fixed, dtype=bool) if fixed is not None else np.ones(len(info), bool)
        info = np.where(keep[:, None] & keep[None, :], info, 0.0)
        return (info, meat) if return_meat else info
    try:
        caches, missing, meat, gate, natural, hess = information_terms(blocks, structure, params,
                                                                       closed_form)
        theta = to_user(params, structure)
        n = theta.size
        fixed = np.zeros(n, dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool)
        is_gate = np.array([kind.kind == "gate" for kind in param_kinds(structure)], dtype=bool)
        columns = np.flatnonzero(~is_gate & ~fixed)
        steps = _steps(structure, theta, np.diag(meat), rel_step)
        if not columns.size:
            jac = np.zeros((n, 0))
        elif hess is not None:
            jac = _closed_form_columns(structure, params, natural, hess, columns, steps)
        else:
            jac = _jacobian_columns(blocks, caches, structure, params, natural, columns, steps)
    finally:
        if blocks is not data:
            blocks.close()
    info = -missing
    gate_index = np.flatnonzero(is_gate)
    info[np.ix_(gate_index, gate_index)] += gate
    info[:, columns] -= jac
    keep = ~fixed
    info = np.where(keep[:, None] & keep[None, :], info, 0.0)
    info = (info + info.T) / 2.0
    return (info, meat) if return_meat else info


def _score_block(data, cache, structure: Structure, params: Params, with_meat: bool):
    """The summed score of one block, and with ``with_meat`` its sum of outer products."""
    scores = score_obs(data, structure, params)
    return (scores.sum(axis=0), scores.T @ scores if with_meat else None)


def _information_by_differences(blocks, structure: Structure, params: Params,
                                fixed: np.ndarray | None, rel_step: float
                                ) -> tuple[np.ndarray, np.ndarray]:
    """A = -d(sum_i s_i)/d theta' by central differences of the whole analytic score (two
    passes over the blocks per parameter not ``fixed``; the columns of ``fixed`` ones are 0),
    symmetrised, and the meat B = sum_i s_i s_i'. Under delayed entry it is the observed
    information: the log-likelihood is a difference of two mixtures (log sum_k pi_ik f_ik -
    log sum_k pi_ik S_k(T0_i)) and the three-term decomposition of the module docstring would
    need the same three terms for the second one; otherwise it is the independent check of
    that decomposition (:func:`observed_information_numeric`)."""
    empty = blocks.empty_caches()
    _, meat = blocks.reduce(_score_block, empty, structure, params, True)
    theta = to_user(params, structure)
    n = theta.size
    fixed = np.zeros(n, dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool)
    steps = _steps(structure, theta, np.diag(meat), rel_step)
    info = np.zeros((n, n))
    for j in np.flatnonzero(~fixed):
        up, down = _moved(structure, theta, j, steps[j])
        s_up = blocks.reduce(_score_block, empty, structure, up, False)[0]
        s_down = blocks.reduce(_score_block, empty, structure, down, False)[0]
        info[:, j] = -(s_up - s_down) / (2.0 * steps[j])
    return (info + info.T) / 2.0, meat


def observed_information_numeric(data, structure: Structure, params: Params,
                                 fixed: np.ndarray | None = None, rel_step: float = 1e-5,
                                 n_jobs: int = 1) -> np.ndarray:
    """A = -d(sum_i s_i)/d theta' by central differences of the whole analytic score (two
    E-steps and scores per parameter), symmetrised: the slow, direct computation, kept as an
    independent check of :func:`observed_information`."""
    blocks = as_blocks(data, structure.n_experts, n_jobs)
    try:
        return _information_by_differences(blocks, structure, params, fixed, rel_step)[0]
    finally:
        if blocks is not data:
            blocks.close()


def boundary_parameters(structure: Structure, params: Params, data) -> np.ndarray:
    """Mask of user parameters at the boundary (see :func:`pymemoe._model.boundary.boundary_mask`)."""
    blocks = as_blocks(data, structure.n_experts)
    return boundary_mask(structure, params, blocks.family.summary(blocks),
                         blocks.family.re_scale(params), family=blocks.family)


def _invert(info: np.ndarray, free: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Inverse of the information over the ``free`` parameters that it identifies."""
    removed = []
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
            return cov, ok, _not_pd_messages(removed)
        loading = np.abs(vecs[:, bad]).max(axis=1)
        worst = np.flatnonzero(ok)[np.argmax(loading)]
        ok[worst] = False
        removed.append(_name(labels[worst]))
    return np.full(info.shape, np.nan), np.zeros_like(ok), _not_pd_messages(removed)


def _not_pd_messages(names: list[str]) -> list[str]:
    if not names:
        return []
    which = (f"the direction of {names[0]}: its standard error is" if len(names) == 1 else
             f"the directions of {', '.join(names)}: their standard errors are")
    return [f"the information matrix is not positive definite in {which} not available (NaN); "
            f"the model may be over-parameterised (fewer experts, a simpler re_structure or "
            f"cov_re) or the fit not at a maximum"]


def _name(label) -> str:
    block, expert, term = label
    return f"{block}[{expert}]:{term}"


def _boundary_text(names: list[str]) -> list[str]:
    if not names:
        return []
    which = (f"{names[0]} is at the boundary of the parameter space: its standard error is"
             if len(names) == 1 else
             f"{', '.join(names)} are at the boundary of the parameter space: their standard "
             f"errors are")
    remedy = ("consider fewer spline knots (a hazard's M-spline with weight 0)"
              if all("log weight" in name for name in names)
              else "consider dropping that random effect")
    return [f"{which} not available (NaN); {remedy}"]


def _prepare(data, structure, params, n_jobs=1, block_size=None):
    labels = param_labels(structure)
    boundary = boundary_parameters(structure, params, data)
    messages = _boundary_text([_name(labels[j]) for j in np.flatnonzero(boundary)])
    info, meat = observed_information(data, structure, params, fixed=boundary, n_jobs=n_jobs,
                                      block_size=block_size, return_meat=True)
    return labels, boundary, info, meat, messages


def cov_oim(data, structure: Structure, params: Params, n_jobs: int = 1,
            block_size: int | None = None, weight_type: str | None = None) -> CovEstimate:
    """Inverse observed information (of the weighted log-likelihood, in a weighted fit:
    right for frequency weights, not for sampling weights)."""
    labels, boundary, info, _, messages = _prepare(data, structure, params, n_jobs, block_size)
    cov, _, more = _invert(info, ~boundary, labels)
    return CovEstimate(name="oim", cov=cov, messages=tuple(messages + more))


def survey_meat(scores: np.ndarray, psu: np.ndarray | None, strata: np.ndarray | None
                ) -> np.ndarray:
    """The design-based meat from each subject's weighted score z_i (N, P): with z_c the sum
    over primary sampling unit c (a subject without ``psu``) and n_h the units of stratum h,
    B = sum_h n_h / (n_h - 1) sum_{c in h} (z_c - mean_h z)(z_c - mean_h z)' (as Stata's
    ``svy`` and R's survey package compute it, with replacement at the first stage).

    Examples
    --------
    >>> z = np.array([[1.0], [-1.0], [2.0], [-2.0]])
    >>> float(survey_meat(z, None, None)[0, 0])          # 4/3 * (1 + 1 + 4 + 4)
    13.333333333333332
    >>> float(survey_meat(z, np.array([0, 0, 1, 1]), None)[0, 0])   # two units, sums 0 and 0
    0.0
    """
    n = scores.shape[0]
    units = np.arange(n) if psu is None else np.asarray(psu)
    layers = np.zeros(n, dtype=int) if strata is None else np.asarray(strata)
    frame = pd.DataFrame(scores)
    frame["_stratum"], frame["_unit"] = layers, units
    totals = frame.groupby(["_stratum", "_unit"], sort=True).sum()
    meat = np.zeros((scores.shape[1], scores.shape[1]))
    for stratum, group in totals.groupby(level="_stratum"):
        z = group.to_numpy()
        if len(z) < 2:
            raise ValueError(f"stratum {stratum!r} has one primary sampling unit: its variance "
                             f"cannot be estimated (merge it with a neighbouring stratum)")
        centred = z - z.mean(axis=0)
        meat += len(z) / (len(z) - 1.0) * centred.T @ centred
    return meat


def cov_robust(data, structure: Structure, params: Params, n_jobs: int = 1,
               block_size: int | None = None, weight_type: str | None = None,
               psu: np.ndarray | None = None, strata: np.ndarray | None = None) -> CovEstimate:
    """Subject-level sandwich A^-1 B A^-1, B = sum_i s_i s_i'; in a weighted fit each s_i is
    the subject's weighted score w_i s_i (sampling weights) or B = sum_i w_i s_i s_i'
    (frequency weights: each subject counted w_i times); with ``psu`` or ``strata`` (one per
    subject), the design-based meat of :func:`survey_meat`."""
    labels, boundary, info, meat, messages = _prepare(data, structure, params, n_jobs, block_size)
    if psu is not None or strata is not None or weight_type == "frequency":
        weighted = score_obs(data, structure, params)     # w_i s_i
        if weight_type == "frequency":
            weights = np.asarray(data.subject_weights, dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                unit = np.where(weights[:, None] > 0, weighted / weights[:, None], 0.0)
            meat = weighted.T @ unit
        else:
            meat = survey_meat(weighted, psu, strata)
    a_inv, ok, more = _invert(info, ~boundary, labels)
    cov = np.full(info.shape, np.nan)
    bread = a_inv[np.ix_(ok, ok)]
    cov[np.ix_(ok, ok)] = bread @ meat[np.ix_(ok, ok)] @ bread
    return CovEstimate(name="robust", cov=cov, messages=tuple(messages + more))


def cov_none(data, structure: Structure, params: Params, n_jobs: int = 1,
             block_size: int | None = None, weight_type: str | None = None) -> CovEstimate:
    """No covariance (all NaN)."""
    n = structure.n_params
    return CovEstimate(name="none", cov=np.full((n, n), np.nan))


COV_TYPES: dict[str, Callable[..., CovEstimate]] = {
    "oim": cov_oim,
    "robust": cov_robust,
    "none": cov_none,
}


#: the options (``cov_kwds``) each covariance takes from the user
COV_OPTIONS = {"oim": (), "robust": ("psu", "strata"), "none": ()}


def check_cov_type(cov_type: str, cov_kwds: dict | None = None) -> None:
    """A ValueError for an unknown ``cov_type`` or options it does not take."""
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {sorted(COV_TYPES)}, got {cov_type!r}")
    unknown = sorted(set(cov_kwds or ()) - set(COV_OPTIONS[cov_type]) - {"weight_type"})
    if unknown:
        takes = (f"takes {list(COV_OPTIONS[cov_type])}" if COV_OPTIONS[cov_type]
                 else "takes no options")
        raise ValueError(f"cov_type={cov_type!r} {takes}; got {unknown}")


def estimate_cov(cov_type: str, data, structure: Structure, params: Params,
                 cov_kwds: dict | None = None, n_jobs: int = 1,
                 block_size: int | None = None) -> CovEstimate:
    """Look up ``cov_type`` in :data:`COV_TYPES` and compute it; warn with its messages."""
    check_cov_type(cov_type, cov_kwds)
    estimate = COV_TYPES[cov_type](data, structure, params, n_jobs=n_jobs, block_size=block_size,
                                   **(cov_kwds or {}))
    for msg in estimate.messages:
        warnings.warn(msg, HessianInversionWarning, stacklevel=3)
    return estimate


class DeferredCov:
    """A :class:`CovEstimate` computed on first use of ``cov`` or ``messages`` (as
    linearmodels defers its covariance), so a user who wants posteriors or predictions does
    not pay for standard errors. ``name`` is known at once. The estimate, once computed, is
    kept (and pickled with the results); its warnings are issued then.
    """

    def __init__(self, cov_type: str, data, structure: Structure, params: Params,
                 cov_kwds: dict | None = None, n_jobs: int = 1, block_size: int | None = None):
        check_cov_type(cov_type, cov_kwds)
        self.name = cov_type
        #: the user's options of the estimator (``psu``, ``strata``)
        self.options = tuple(sorted(k for k in (cov_kwds or {}) if k != "weight_type"))
        self._inputs = (cov_type, data, structure, params, cov_kwds, n_jobs, block_size)
        self._estimate: CovEstimate | None = None
        self._lock = threading.Lock()

    @property
    def computed(self) -> bool:
        return self._estimate is not None

    def estimate(self) -> CovEstimate:
        with self._lock:
            if self._estimate is None:
                cov_type, data, structure, params, cov_kwds, n_jobs, block_size = self._inputs
                with one_blas_thread():
                    self._estimate = estimate_cov(cov_type, data, structure, params, cov_kwds,
                                                  n_jobs=n_jobs, block_size=block_size)
                self._inputs = None
            return self._estimate

    @property
    def cov(self) -> np.ndarray:
        return self.estimate().cov

    @property
    def messages(self) -> tuple[str, ...]:
        return self.estimate().messages

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


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
