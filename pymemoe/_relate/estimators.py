"""Step-3 estimators (modal, BCH, ML) for distal outcomes and for predictors of membership, their
covariance, and the correction for the uncertainty of step 1 (formulas in
:mod:`pymemoe._relate`).

A weighted step 1 (:class:`SubjectWeights`) weights every sum over subjects of step 2 (the
classification error) and step 3 (the estimating equations); the covariance is then the
sandwich of the weighted terms (sampling weights) or the covariance of the data with each
subject repeated (frequency weights).

Each estimator returns a :class:`Step3Fit`: the estimates as one flat vector, the covariance
that treats step 1 as known, the derivative A = -dPsi/dtheta of its estimating function, and
that function of the step-1 posterior (``estimating(tau)``), which :func:`step1_correction`
differentiates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import optimize
from scipy.special import logsumexp

from .._model.gating import damped_newton, gating_hessian, gating_score, log_prior
from .classification import bch_weights, classification_error, modal_weights
from .distal import DistalLaw

__all__ = ["Step3Fit", "SubjectWeights", "class_weights", "weighted_distal", "ml_distal", "weighted_predictors",
           "ml_predictors", "step1_correction", "METHODS"]

METHODS = ("modal", "bch", "ml")


@dataclass(frozen=True, eq=False)
class Step3Fit:
    """Step-3 estimates (flat), their covariance given step 1 (``cov``), the bread A and the
    summed estimating function at the estimates as a function of the full step-1 posterior
    (None when the estimates do not depend on it smoothly: modal assignment)."""

    theta: np.ndarray
    cov: np.ndarray
    bread: np.ndarray
    estimating: Callable[[np.ndarray], np.ndarray] | None
    converged: bool = True
    n_iter: int = 0


@dataclass(frozen=True, eq=False)
class SubjectWeights:
    """The subjects' weights of a weighted step 1 (N,), and whether they are frequency
    weights (each subject counted w_i times) rather than sampling weights."""

    values: np.ndarray
    frequency: bool = False

    def of(self, rows: np.ndarray) -> np.ndarray:
        return self.values[rows]


def _multiplier(weights: SubjectWeights | None, rows: np.ndarray) -> np.ndarray:
    return np.ones(len(rows)) if weights is None else weights.of(rows)


def _sandwich(bread: np.ndarray, per_subject: np.ndarray,
              unit: np.ndarray | None = None) -> np.ndarray:
    """A^-1 B A^-1 with B the sum of squares of the per-subject terms; ``unit`` (n,): the
    subjects' frequency weights, by which B divides each square (a subject counted w times
    contributes w of its unweighted squares)."""
    inverse = np.linalg.pinv(bread)
    scaled = per_subject if unit is None else per_subject / np.where(unit > 0, unit, 1.0)[:, None]
    meat = scaled.T @ per_subject
    cov = inverse @ meat @ inverse.T
    return (cov + cov.T) / 2.0


def _unit(weights: SubjectWeights | None, rows: np.ndarray) -> np.ndarray | None:
    return weights.of(rows) if weights is not None and weights.frequency else None


def class_weights(method: str, tau: np.ndarray, assigned: np.ndarray, rows: np.ndarray,
                  weights: SubjectWeights | None = None) -> np.ndarray:
    """Weights (n, K) of the subjects ``rows`` (positions among all N subjects) for ``method``
    ``"modal"`` or ``"bch"``; the classification error uses all N subjects' ``tau`` (and
    their weights)."""
    K = tau.shape[1]
    if method == "modal":
        return modal_weights(assigned[rows], K)
    values = None if weights is None else weights.values
    return bch_weights(classification_error(tau, assigned, values), assigned[rows])


# -- distal outcomes ---------------------------------------------------------------------------

def weighted_distal(law: DistalLaw, z: np.ndarray, method: str, tau: np.ndarray,
                    assigned: np.ndarray, rows: np.ndarray,
                    subject_weights: SubjectWeights | None = None) -> Step3Fit:
    """Modal or BCH estimates of every expert's law of ``z`` (the outcome of subjects ``rows``)."""
    scale = _multiplier(subject_weights, rows)[:, None]
    weights = class_weights(method, tau, assigned, rows, subject_weights) * scale
    totals = weights.sum(axis=0)
    if np.any(totals <= 0):
        k = int(np.argmin(totals)) + 1
        raise ValueError(f"expert {k} has no weight among the subjects with an outcome "
                         f"(sum of {method.upper()} weights {totals[k - 1]:.3g}): its law cannot "
                         f"be estimated; use method='ml' or fewer experts")
    theta = law.fit_weighted(z, weights)
    bread = np.diag(np.repeat(totals, law.m))

    def per_subject(w: np.ndarray) -> np.ndarray:
        return (w[:, :, None] * law.moments(z, theta)).reshape(len(z), -1)

    cov = _sandwich(bread, per_subject(weights), _unit(subject_weights, rows))
    estimating = None
    if method != "modal":
        def estimating(tau_new: np.ndarray) -> np.ndarray:
            new = class_weights(method, tau_new, assigned, rows, subject_weights) * scale
            return per_subject(new).sum(axis=0)
    return Step3Fit(theta.ravel(), cov, bread, estimating)


def _distal_terms(law: DistalLaw, z: np.ndarray, log_error: np.ndarray, proportions: np.ndarray,
                  theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log p_k + log D_{k s_i} + log f_k(z_i), (n, K), and its log-sum per subject."""
    with np.errstate(divide="ignore"):
        terms = np.log(proportions)[None, :] + log_error + law.logpdf(z, theta)
    return terms, logsumexp(terms, axis=1)


def _distal_score(law: DistalLaw, z: np.ndarray, log_error: np.ndarray, flat: np.ndarray,
                  K: int) -> np.ndarray:
    """Per-subject scores (n, (K - 1) + K m) of the ML step-3 likelihood at ``flat``."""
    proportions = np.r_[1.0 - flat[:K - 1].sum(), flat[:K - 1]]
    theta = flat[K - 1:].reshape(K, law.m)
    terms, total = _distal_terms(law, z, log_error, proportions, theta)
    r = np.exp(terms - total[:, None])
    d_prop = r[:, 1:] / proportions[1:] - (r[:, :1] / proportions[0])
    d_theta = (r[:, :, None] * law.gradient(z, theta)).reshape(len(z), -1)
    return np.hstack([d_prop, d_theta])


def _error_rows(tau: np.ndarray, assigned: np.ndarray, rows: np.ndarray,
                weights: SubjectWeights | None = None) -> np.ndarray:
    """log D_{k s_i} (n, K) for the subjects ``rows``."""
    values = None if weights is None else weights.values
    with np.errstate(divide="ignore"):
        return np.log(classification_error(tau, assigned, values)[:, assigned[rows]].T)


def _numerical_jacobian(function: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                        scale: np.ndarray) -> np.ndarray:
    """Central-difference Jacobian of a vector function, steps 1e-5 of ``scale``."""
    columns = []
    for j in range(x.size):
        h = 1e-5 * scale[j]
        up, down = x.copy(), x.copy()
        up[j] += h
        down[j] -= h
        columns.append((function(up) - function(down)) / (2.0 * h))
    return np.column_stack(columns)


def _information_cov(score_sum: Callable[[np.ndarray], np.ndarray], flat: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The bread A = -d score / d theta (numerical, symmetrised) and its inverse."""
    hess = _numerical_jacobian(score_sum, flat, np.maximum(np.abs(flat), 1e-2))
    bread = -(hess + hess.T) / 2.0
    try:
        cov = np.linalg.inv(bread)
    except np.linalg.LinAlgError:
        cov = np.full_like(bread, np.nan)
    return bread, cov


def _ml_cov(bread: np.ndarray, cov: np.ndarray, per_subject: np.ndarray,
            weights: SubjectWeights | None) -> np.ndarray:
    """The ML covariance: the inverse information, or with sampling weights the sandwich of
    the weighted scores (the weighted log-likelihood is a pseudo-likelihood)."""
    if weights is None or weights.frequency:
        return cov
    return _sandwich(bread, per_subject)


def ml_distal(law: DistalLaw, z: np.ndarray, tau: np.ndarray, assigned: np.ndarray,
              rows: np.ndarray, subject_weights: SubjectWeights | None = None,
              tol: float = 1e-12, maxiter: int = 20_000) -> Step3Fit:
    """The ML three-step estimates: class proportions and each expert's law of ``z``, by EM."""
    K = tau.shape[1]
    log_error = _error_rows(tau, assigned, rows, subject_weights)
    sw = _multiplier(subject_weights, rows)
    r = modal_weights(assigned[rows], K)
    proportions = np.clip(r.mean(axis=0), 1e-3, None)
    proportions /= proportions.sum()
    theta = law.fit_weighted(z, r + 1e-3)       # every expert starts with some weight
    llf_old, converged, n_iter = -np.inf, False, 0
    for n_iter in range(1, maxiter + 1):
        terms, total = _distal_terms(law, z, log_error, proportions, theta)
        llf = float(sw @ total)
        r = np.exp(terms - total[:, None])
        proportions = sw @ r / sw.sum()
        theta = law.fit_weighted(z, r * sw[:, None])
        if abs(llf - llf_old) <= tol * (1.0 + abs(llf)):
            converged = True
            break
        llf_old = llf
    flat = np.r_[proportions[1:], theta.ravel()]

    def per_subject(x: np.ndarray, log_err: np.ndarray = log_error) -> np.ndarray:
        return _distal_score(law, z, log_err, x, K) * sw[:, None]

    def score_sum(x: np.ndarray, log_err: np.ndarray = log_error) -> np.ndarray:
        return per_subject(x, log_err).sum(axis=0)

    def loglik(x: np.ndarray) -> float:
        props = np.r_[1.0 - x[:K - 1].sum(), x[:K - 1]]
        if np.any(props <= 0) or not law.in_range(x[K - 1:].reshape(K, law.m)):
            return -np.inf
        return float(sw @ _distal_terms(law, z, log_error, props,
                                        x[K - 1:].reshape(K, law.m))[1])

    # EM converges linearly: Newton steps on the exact log-likelihood finish it
    bread, cov = _information_cov(score_sum, flat)
    for _ in range(5):
        if not np.all(np.isfinite(cov)):
            break
        trial = flat + cov @ score_sum(flat)
        if not loglik(trial) >= loglik(flat) - 1e-12 * (1.0 + abs(loglik(flat))):
            break
        moved = np.abs(trial - flat).max()
        flat = trial
        bread, cov = _information_cov(score_sum, flat)
        if moved < 1e-13 * (1.0 + np.abs(flat).max()):
            break
    cov = _ml_cov(bread, cov, per_subject(flat), subject_weights)

    def estimating(tau_new: np.ndarray) -> np.ndarray:
        return score_sum(flat, _error_rows(tau_new, assigned, rows, subject_weights))
    return Step3Fit(flat, cov, bread, estimating, converged, n_iter)


# -- predictors of membership -----------------------------------------------------------------

def _free(gamma: np.ndarray) -> np.ndarray:
    return gamma[1:].ravel()


def _gamma(flat: np.ndarray, K: int, r: int) -> np.ndarray:
    return np.vstack([np.zeros((1, r)), flat.reshape(K - 1, r)])


def weighted_predictors(exog: np.ndarray, method: str, tau: np.ndarray, assigned: np.ndarray,
                        rows: np.ndarray, start: np.ndarray | None = None,
                        subject_weights: SubjectWeights | None = None) -> Step3Fit:
    """Modal or BCH multinomial-logit coefficients of membership on ``exog`` (n, r): the
    maximum of sum_i sw_i sum_k W_ik log pi_ik (rows of W sum to 1; sw the subjects'
    weights), concave whatever the signs of W."""
    K, r = tau.shape[1], exog.shape[1]
    sw = _multiplier(subject_weights, rows)
    weights = class_weights(method, tau, assigned, rows, subject_weights)

    def evaluate(gamma: np.ndarray):
        lp = log_prior(exog, gamma)
        prior = np.exp(lp)
        value = float(np.einsum("n,nk,nk->", sw, weights, lp))
        grad = gating_score(exog, weights, prior, sw)[1:].ravel()
        return value, grad, gating_hessian(exog, gamma, prior=prior, weights=sw)

    gamma = np.zeros((K, r)) if start is None else start.copy()
    gamma = damped_newton(evaluate, gamma, max_steps=200, tol=1e-15)
    prior = np.exp(log_prior(exog, gamma))

    def per_subject(w: np.ndarray) -> np.ndarray:
        return ((w - prior)[:, 1:, None] * exog[:, None, :]).reshape(len(exog), -1) * sw[:, None]

    bread = -gating_hessian(exog, gamma, prior=prior, weights=sw)
    cov = _sandwich(bread, per_subject(weights), _unit(subject_weights, rows))
    grad = per_subject(weights).sum(axis=0)
    converged = bool(np.abs(np.linalg.solve(bread, grad)).max() < 1e-6) if grad.size else True
    estimating = None
    if method != "modal":
        def estimating(tau_new: np.ndarray) -> np.ndarray:
            new = class_weights(method, tau_new, assigned, rows, subject_weights)
            return per_subject(new).sum(axis=0)
    return Step3Fit(_free(gamma), cov, bread, estimating, converged)


def _predictor_terms(exog: np.ndarray, log_error: np.ndarray, gamma: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lp = log_prior(exog, gamma)
    terms = lp + log_error
    return terms, logsumexp(terms, axis=1), np.exp(lp)


def ml_predictors(exog: np.ndarray, tau: np.ndarray, assigned: np.ndarray, rows: np.ndarray,
                  start: np.ndarray | None = None,
                  subject_weights: SubjectWeights | None = None) -> Step3Fit:
    """ML three-step multinomial-logit coefficients: L_i = sum_k pi_k(x_i) D_{k s_i}."""
    K, r = tau.shape[1], exog.shape[1]
    log_error = _error_rows(tau, assigned, rows, subject_weights)
    sw = _multiplier(subject_weights, rows)

    def per_subject(flat: np.ndarray, log_err: np.ndarray = log_error) -> np.ndarray:
        terms, total, prior = _predictor_terms(exog, log_err, _gamma(flat, K, r))
        post = np.exp(terms - total[:, None])
        scores = ((post - prior)[:, 1:, None] * exog[:, None, :]).reshape(len(exog), -1)
        return scores * sw[:, None]

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        _, total, _ = _predictor_terms(exog, log_error, _gamma(flat, K, r))
        return -float(sw @ total), -per_subject(flat).sum(axis=0)

    x0 = np.zeros((K - 1) * r) if start is None else _free(start)
    found = optimize.minimize(objective, x0, jac=True, method="BFGS",
                              options={"gtol": 1e-9, "maxiter": 10_000})
    flat = found.x
    bread, cov = _information_cov(lambda x: per_subject(x).sum(axis=0), flat)
    grad = per_subject(flat).sum(axis=0)
    converged = bool(np.all(np.isfinite(cov)) and
                     np.abs(np.linalg.solve(bread, grad)).max() < 1e-6)
    cov = _ml_cov(bread, cov, per_subject(flat), subject_weights)

    def estimating(tau_new: np.ndarray) -> np.ndarray:
        return per_subject(flat, _error_rows(tau_new, assigned, rows, subject_weights)
                           ).sum(axis=0)
    return Step3Fit(flat, cov, bread, estimating, converged, int(found.nit))


# -- the uncertainty of step 1 ------------------------------------------------------------------

def step1_correction(fit: Step3Fit, tau_at: Callable[[np.ndarray], np.ndarray],
                     theta1: np.ndarray, cov1: np.ndarray, free: np.ndarray,
                     relative_step: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """The covariance with the step-1 uncertainty (Bakk, Oberski & Vermunt 2014) and J.

    ``tau_at(vector)`` is the posterior (N, K) at a step-1 parameter vector; ``free`` marks
    the step-1 parameters with a standard error (the others are held fixed); the step of
    each central difference is ``relative_step`` times its standard error.
    """
    if fit.estimating is None:
        return fit.cov, np.zeros((fit.theta.size, theta1.size))
    se = np.sqrt(np.diag(cov1))
    grad = np.zeros((fit.theta.size, theta1.size))
    for j in np.flatnonzero(free):
        h = relative_step * se[j]
        up, down = theta1.copy(), theta1.copy()
        up[j] += h
        down[j] -= h
        grad[:, j] = (fit.estimating(tau_at(up)) - fit.estimating(tau_at(down))) / (2.0 * h)
    jac = np.linalg.solve(fit.bread, grad)
    used = np.where(free[:, None] & free[None, :], cov1, 0.0)
    cov = fit.cov + jac @ used @ jac.T
    return (cov + cov.T) / 2.0, jac
