"""Delta-method standard errors of predicted means: the gradient of each prediction with
respect to the user parameter vector (analytic where the expert means are linear in the fixed
effects, central differences otherwise), and sqrt(g' V g)."""
from __future__ import annotations

import numpy as np

from .._model.params import chain_gradient, from_user, param_kinds, to_user
from .laws import expert_means, gating_probabilities, point_prediction
from .posterior import history_statistics, posterior_of
from .rows import KINDS, DesignRows

__all__ = ["prediction_jacobian", "delta_se"]


def _lower_bounded(results) -> np.ndarray:
    """Parameters that must stay positive (variances, SD ratios, residual variances)."""
    return np.array([kind.positive for kind in param_kinds(results.model.structure)])


def prediction_jacobian(results, rows: DesignRows, kind: str,
                        history: np.ndarray | None = None, rel_step: float = 1e-5) -> np.ndarray:
    """Gradient of each predicted mean with respect to the user parameter vector
    (``results.params``): (n, P), or (n, K, P) for ``kind="expert"``.

    Analytic for ``"expert"`` and ``"marginal"`` (module docstring); central differences of the
    conditional prediction for ``"conditional"`` (the posterior recomputed at each step; a
    forward difference for a variance too close to 0 to be lowered). Parameters without a
    standard error are not differenced (their columns are NaN).
    """
    params, structure = results.state, results.model.structure
    n, K = rows.n_rows, params.n_experts
    r, q = params.gamma.shape[1], params.cov_re.shape[-1]
    if kind in ("expert", "marginal") and results.model.family.mean_is_linear:
        if kind == "expert":
            m = n * K
            grad_beta = np.zeros((n, K, K, rows.exog.shape[1]))
            grad_beta[:, np.arange(K), np.arange(K), :] = rows.exog[:, None, :]
            grad_beta = grad_beta.reshape(m, K, -1)
            grad_gamma = np.zeros((m, K, r))
        else:
            m = n
            pi = gating_probabilities(rows.exog_gate, params.gamma)
            means = expert_means(results, rows)
            grad_beta = pi[:, :, None] * rows.exog[:, None, :]
            centred = means - (pi * means).sum(axis=1, keepdims=True)
            grad_gamma = (pi * centred)[:, :, None] * rows.exog_gate[:, None, :]
        jac = chain_gradient(params, structure, grad_gamma, grad_beta, np.zeros((m, K, q, q)),
                             np.zeros((m, K)), internal=False)
        return jac.reshape(n, K, -1) if kind == "expert" else jac
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    theta = to_user(params, structure)
    known = np.isfinite(np.diag(results.cov_params().to_numpy()))
    positive = _lower_bounded(results)
    if kind == "conditional":
        if rows.fitting and history is None:
            data = results.model.data
        else:
            data = history_statistics(results, rows,
                                       np.isfinite(rows.endog) if history is None else history)

        def at(vector: np.ndarray) -> np.ndarray:
            post = posterior_of(data, from_user(vector, structure))
            return point_prediction(results, rows, "conditional", post,
                                    from_user(vector, structure))
    else:       # binomial and Poisson experts: the means are integrals over b, differenced
        def at(vector: np.ndarray) -> np.ndarray:
            return point_prediction(results, rows, kind, params=from_user(vector, structure))

    jac = np.full(((n, K) if kind == "expert" else (n,)) + (theta.size,), np.nan)
    for j in np.flatnonzero(known):       # one pair of posteriors per parameter
        h = rel_step * max(abs(theta[j]), 1e-2)
        up = theta.copy()
        up[j] += h
        if positive[j] and theta[j] - h <= 0:
            jac[..., j] = (at(up) - at(theta)) / h
            continue
        down = theta.copy()
        down[j] -= h
        jac[..., j] = (at(up) - at(down)) / (2.0 * h)
    return jac


def delta_se(jacobian: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """sqrt(g' V g) for every gradient g in the last axis of ``jacobian``.

    NaN where g involves a parameter without a variance (NaN on the diagonal of ``cov``) or
    where g itself is NaN (a parameter that was not differenced).
    """
    unknown = ~np.isfinite(np.diag(cov))
    g = np.nan_to_num(jacobian, nan=0.0)
    var = np.einsum("...p,pq,...q->...", g, np.nan_to_num(cov, nan=0.0), g)
    lost = np.any(((jacobian != 0) | np.isnan(jacobian)) & unknown, axis=-1)
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.maximum(var, 0.0))
    return np.where(lost, np.nan, se)
