r"""The predictive engine: predictions, their uncertainty, predictive laws and residuals.

Every computation of pymemoe that evaluates the fitted model on rows (predictions, prediction
sets, cross-validation, plots, residuals, the parametric bootstrap) goes through this module,
and this module is the only one outside the core that calls the core (the E-step, the gating,
the per-subject statistics). What depends on the expert family (Gaussian, binomial, Poisson)
it asks the family for (:mod:`pymemoe.families`); its internal-public API is listed at the end
of this docstring.

Notation as in :mod:`pymemoe.model`: a row (visit) j of subject i has fixed-effects design x_j
(expert-specific then shared columns), random-effects design z_j and the subject's baseline
covariates w_i; expert k has fixed effects beta_k, random-effects covariance D_k and residual
variance sigma2_k; the gating gives pi_ik = softmax_k(w_i' gamma_k).

**Marginal** (population) prediction, from the baseline covariates only::

    E[y_j | w_i] = sum_k pi_ik x_j' beta_k

``kind="expert"`` returns the K expert means x_j' beta_k separately.

**Conditional** (subject-specific) prediction, from the subject's observed outcomes y_i^h (its
*history*): the posterior expert probabilities and, per expert, the conditional mean and
covariance of the random effects (exact Laplace step, :func:`pymemoe.expert.expert_moments`)::

    tau_ik   = pi_ik f(y_i^h | k) / sum_l pi_il f(y_i^h | l)
    b_hat_ik = E[b_i | y_i^h, k],    Sigma_ik = Var[b_i | y_i^h, k]
    E[y_j | y_i^h] = sum_k tau_ik (x_j' beta_k + z_j' b_hat_ik)

On the fitting data (``newdata=None``) every row is history, and this is the model's fitted value.

**Dynamic prediction.** With new data, a row whose outcome is missing (NaN), or whose time is
after a ``landmark``, is a *future* row: it is not in the history, and its prediction uses the
posterior computed from the history rows only. A subject without history has tau_ik = pi_ik,
b_hat_ik = 0 and Sigma_ik = D_k, so its conditional prediction is the marginal one. The posterior
is computed for all subjects at once from per-subject sufficient statistics in which the future
rows carry weight zero.

**Predictive law of one new observation.** Given the expert, y_j is Gaussian, so its
predictive law is the Gaussian mixture::

    conditional:  sum_k tau_ik N(x_j' beta_k + z_j' b_hat_ik,  z_j' Sigma_ik z_j + sigma2_k)
    marginal:     sum_k pi_ik  N(x_j' beta_k,                  z_j' D_k z_j      + sigma2_k)

Prediction sets from these laws are in :mod:`pymemoe.prediction_sets`; cross-validation
over subjects in :mod:`pymemoe.crossval`.

**Binomial and Poisson experts.** With a link g the expert mean of a row is no longer
x_j' beta_k but an integral over the random effects, on the response scale (a success
probability, or a count's mean with the row's offset o_j)::

    mu_jk(b) = g^{-1}(o_j + x_j' beta_k + z_j' b)
    marginal:     E[y_j | w_i]   = sum_k pi_ik  E_{b ~ N(0, D_k)}       mu_jk(b)
    conditional:  E[y_j | y_i^h] = sum_k tau_ik E_{b ~ p_k(b | y_i^h)} mu_jk(b)

the first a one-dimensional integral over z_j' b ~ N(0, z_j' D_k z_j) (closed form for
Poisson, the trapezoid rule for binomial: :func:`pymemoe.glmm_kernel.glmm_marginal_mean`), the
second under the fit's approximate posterior of b
(its adaptive quadrature nodes, or N(b_hat_ik, Sigma_ik) for Laplace), with tau_ik from the
same approximate likelihood as ``res.llf``. The component variances follow from the first two
moments of mu over the same law of b (E[mu^2] by the same integrals)::

    Poisson counts:               Var[y_j | k] = E[mu] + Var[mu]
    binomial proportions y / m:   Var[y_j / m_j | k] = (E[mu] - E[mu^2]) / m_j + Var[mu]

(m_j = 1: the Bernoulli variance E[mu] (1 - E[mu]); NaN for rows of a ``successes +
failures`` model whose number of trials is not given). The component laws are discrete and
not normal, so prediction sets refuse them.

**Standard errors of predicted means** (:func:`get_prediction`). A predicted mean m(theta) is a
function of the parameter vector theta (``results.params``); its delta-method standard error is
sqrt(g' V g) with g = dm/dtheta and V = ``results.cov_params()``. For ``kind="expert"``
m = x' beta_k, so g is x on the coefficients of expert k (and the shared ones) and the standard
error is exactly sqrt(x' V_k x), V_k the covariance of those coefficients. For
``kind="marginal"`` the gradient is analytic: d m / d beta_k = pi_k x and
d m / d gamma_l = pi_l (x' beta_l - m) w. For ``kind="conditional"`` the posterior tau_ik and
the modes b_hat_ik are also functions of theta, and g is their central-difference Jacobian
(one posterior per parameter and direction); the subject's observed outcomes are held fixed, so
the standard error is that of the subject-specific mean given its data, not a prediction error.
A parameter without a standard error (NaN, at a boundary) makes the standard error of every
prediction that depends on it NaN.

**Residuals.** ``y_j - E[y_j | y_i]`` on the fitting data (:meth:`MEMoEResults.resid`, as
statsmodels' ``MixedLM``) and, for model checking, the within-subject *whitened* residuals of
each expert: with V_ik = Z_i D_k Z_i' + sigma2_k I = L_ik L_ik' (Cholesky),

    e_ik = L_ik^-1 (y_i - X_i beta_k),

which are independent standard normal given expert k when the expert is correctly specified.
With the subject's rows in time order, e_ik are its standardised one-step-ahead prediction
errors (the Cholesky factor is the prediction-error decomposition). They are computed for all
subjects of one size n_i at once (one batched Cholesky per distinct n_i, never a loop over
subjects). :mod:`pymemoe.diagnostics` combines them over experts.

Internal-public API (the engine)
--------------------------------
* ``design_rows(results, newdata, ...) -> DesignRows``: row-level designs (x, z, w, outcome,
  subject labels, time) of the fitting data or of new data, with the checks of new data
  (levels, gating constant within a subject);
* ``history_mask(rows, landmark) -> ndarray``: which rows enter the posterior;
* ``subject_posterior(results, rows, history, state) -> SubjectPosterior``: tau, b_hat and
  Sigma per subject, at the fitted or at other parameters;
* ``component_laws(results, rows, kind, posterior, state) -> ComponentLaws``: per row and
  expert, the weight, predictive mean and variance of one observation given the expert, with
  the law's ``pdf`` and ``cdf`` (:mod:`pymemoe.laws`; a family's law plugs in here), and
  ``laws_of(results, newdata, kind, ...) -> (index, ComponentLaws)`` for a whole request;
* ``expert_means(results, rows, state) -> ndarray (n, K)``: E[y | expert k, covariates] of a
  new subject (for a family with a link, not x' beta);
* ``point_prediction(results, rows, kind, posterior, state) -> ndarray``: the predicted mean;
* ``prediction_jacobian(results, rows, kind, history) -> ndarray`` and
  ``delta_se(jacobian, cov) -> ndarray``: delta-method standard errors;
* ``expert_residuals(results, standardize) -> ndarray (n, K)``: raw or whitened residuals;
* ``gating_probabilities(exog_gate, gamma) -> ndarray (n, K)``;
* ``observed_outcome(results, newdata) -> ndarray`` and ``require_rows(results, what)``.

References
----------
Proust-Lima, Philipps & Liquet (2017), the R package lcmm (``predictY``, ``predictClass``,
``predictL``). Hyndman (1996), Computing and graphing highest density regions. The American
Statistician 50(2). Rizopoulos (2011), Dynamic predictions and prospective accuracy in joint
models for longitudinal and time-to-event data. Biometrics 67(3).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Hashable

import numpy as np
import pandas as pd

from .data import check_constant_within, subject_codes
from .formula import build_new_design, build_new_endog, group_labels, new_offset, required_variables
from .gating import log_prior
from .laws import ComponentLaws
from .likelihood import e_step
from .params import Params, chain_gradient, from_user, param_kinds, to_user

__all__ = ["predict", "get_prediction", "predict_class", "prior_class", "predictive_mixture",
           "PredictiveMixture", "DesignRows", "SubjectPosterior", "ComponentLaws",
           "design_rows", "history_mask", "subject_posterior", "component_laws", "laws_of",
           "expert_means", "point_prediction", "prediction_jacobian", "delta_se",
           "expert_residuals", "gating_probabilities", "observed_outcome", "require_rows"]

KINDS = ("marginal", "expert", "conditional")
MIXTURE_KINDS = ("conditional", "marginal")
_BLOCK = 2_000_000        # entries of the (subjects, K, n_i, n_i) stacks whitened at once


# ---------------------------------------------------------------------------------------------
# Rows of the data to predict


@dataclass(frozen=True, eq=False)
class DesignRows:
    """Row-level designs of the rows to predict (n rows).

    Attributes
    ----------
    index : pandas.Index
        Labels of the rows (the user's index of newdata, or of the fitting rows).
    exog, exog_re, exog_gate : ndarray (n, p), (n, q), (n, r)
        Fixed-effects (expert-specific then shared columns), random-effects and gating designs.
    endog : ndarray (n,) or None
        The outcome, NaN where it is not observed (None when it was not asked for).
    groups : ndarray (n,) or None
        Subject labels (None when neither asked for nor available).
    time : ndarray (n,) or None
        The time column (with ``time=``).
    fitting : bool
        Whether these are the fitting data (then the fit's own posterior applies).
    offset : ndarray (n,) or None
        Offset of the linear predictor (binomial and Poisson experts; None: 0).
    trials : ndarray (n,) or None
        Binomial trials of the observed outcomes (None: 1); ``endog`` then counts successes.
    """

    index: pd.Index
    exog: np.ndarray
    exog_re: np.ndarray
    exog_gate: np.ndarray
    endog: np.ndarray | None
    groups: np.ndarray | None
    time: np.ndarray | None
    fitting: bool = False
    offset: np.ndarray | None = None
    trials: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return self.exog.shape[0]

    @property
    def row_offset(self) -> np.ndarray:
        return np.zeros(self.n_rows) if self.offset is None else self.offset

    @property
    def row_trials(self) -> np.ndarray:
        return np.ones(self.n_rows) if self.trials is None else self.trials


def require_rows(results, what: str) -> None:
    """A ValueError when ``results`` keeps no rows of its fitting data (a model built from
    per-subject sufficient statistics, :mod:`pymemoe.chunked`) but ``what`` needs them."""
    if results.model.endog is None:
        raise ValueError(
            f"{what} need the rows of the fitting data, but this model was built from "
            f"per-subject sufficient statistics (pymemoe.chunked: from_chunks / from_dask), "
            f"which keep no rows; pass newdata= (a DataFrame with the rows) where the method "
            f"takes it, or rebuild the model with MEMoE.from_formula on the rows")


def observed_outcome(results, newdata: pd.DataFrame | None) -> np.ndarray:
    """The outcome (the formula's left-hand side) of each row, NaN where it is not observed."""
    if newdata is None:
        require_rows(results, "observed outcomes")
        return np.array(results.model.endog, dtype=float)
    spec = _formula_spec(results)
    return build_new_endog(spec, newdata)


def _formula_spec(results):
    spec = results.model.spec
    if spec is None:
        raise ValueError("this model was built from arrays (MEMoE(endog, exog, ...)), so its "
                         "designs cannot be rebuilt for new data; use newdata=None, or build the "
                         "model with MEMoE.from_formula")
    return spec


def design_rows(results, newdata: pd.DataFrame | None = None, *, outcome: bool = False,
                groups=None, need_groups: bool = False, time: Hashable | None = None,
                need_gating: bool = True,
                what: str = "predictions on the fitting data") -> DesignRows:
    """Designs of the fitting rows (``newdata=None``) or of new rows.

    New data are rebuilt through the model's formulas (:func:`pymemoe.formula.build_new_design`:
    the levels and transforms learnt in fitting). When the subject labels are known (asked for
    with ``need_groups``, given as ``groups``, or the fitting ``groups`` column is a column of
    newdata), the gating covariates must be constant within each subject, and the ValueError
    names the column and the subject otherwise; every prediction kind checks it the same way.
    With ``need_gating=False`` (the expert means need no gating) new data may lack the gating
    covariates; ``exog_gate`` is then NaN.
    """
    model = results.model
    if newdata is None:
        if time is not None:
            raise ValueError("landmark/time need newdata (a DataFrame with the time column); "
                             "the fitting data's time is not stored in the model")
        require_rows(results, what)
        return DesignRows(index=model.row_index, exog=model.exog, exog_re=model.exog_re,
                          exog_gate=model.exog_gate, endog=model.endog if outcome else None,
                          groups=model.groups, time=None, fitting=True,
                          offset=getattr(model, "offset", None), trials=getattr(model, "trials", None))
    spec = _formula_spec(results)
    if not isinstance(newdata, pd.DataFrame):
        raise ValueError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
    if len(newdata) == 0:
        raise ValueError("newdata has no rows")
    gate_columns = required_variables(spec).get("gate_formula", [])
    gating = need_gating or all(c in newdata.columns for c in gate_columns)
    parts = build_new_design(spec, newdata, gating=gating)
    if not gating:
        parts["exog_gate"] = np.full((len(newdata), len(spec.exog_gate_names)), np.nan)
    exog = np.column_stack([parts["exog"], parts["exog_shared"]])
    y = build_new_endog(spec, newdata) if outcome else None
    trials = None
    if y is not None and y.ndim == 2:                 # binomial: successes + failures
        y, trials = y[:, 0], y.sum(axis=1)
        trials = np.where(np.isfinite(trials), trials, 1.0)
    labels = None
    if need_groups or groups is not None or (spec.groups is not None
                                             and spec.groups in newdata.columns):
        labels = group_labels(newdata, groups, spec)
        if gating:
            check_constant_within(parts["exog_gate"], labels, spec.exog_gate_names,
                                  f"gate_formula {spec.gate_formula!r}")
    t = None
    if time is not None:
        if time not in newdata.columns:
            raise ValueError(f"time={time!r} is not a column of newdata")
        t = pd.to_numeric(newdata[time], errors="raise").to_numpy(dtype=float)
    offset = None if model.family.has_scale else new_offset(spec, newdata)
    return DesignRows(index=newdata.index, exog=exog, exog_re=parts["exog_re"],
                      exog_gate=parts["exog_gate"], endog=y, groups=labels, time=t,
                      offset=offset, trials=trials)


def history_mask(rows: DesignRows, landmark: float | None) -> np.ndarray:
    """Rows whose outcome enters the posterior: observed, and at or before the landmark."""
    observed = np.isfinite(rows.endog)
    if landmark is None:
        return observed
    if rows.time is None:
        raise ValueError("landmark needs time= (the name of the time column of newdata)")
    with np.errstate(invalid="ignore"):
        return observed & (rows.time <= float(landmark))


def _check_landmark(landmark, time) -> None:
    if landmark is not None and time is None:
        raise ValueError("landmark needs time= (the name of the time column of newdata)")


def _forbid_landmark(landmark, kind: str) -> None:
    if landmark is not None:
        raise ValueError(f"landmark applies to kind='conditional' only, not kind={kind!r}")


# ---------------------------------------------------------------------------------------------
# Posterior of each subject from its history rows


@dataclass(frozen=True, eq=False)
class SubjectPosterior:
    """Posterior of each subject (S subjects) from its history rows.

    Attributes
    ----------
    subjects : pandas.Index
        Subject labels.
    codes : ndarray (n,)
        Subject position of each row.
    tau : ndarray (S, K)
        Posterior expert probabilities.
    b_hat : ndarray (S, K, q)
        Conditional means (modes) of the random effects given each expert.
    b_cov : ndarray (S, K, q, q)
        Their conditional covariances.
    """

    subjects: pd.Index
    codes: np.ndarray
    tau: np.ndarray
    b_hat: np.ndarray
    b_cov: np.ndarray
    data: object = None
    moments: object = None


def _history_statistics(results, rows: DesignRows, history: np.ndarray):
    """The family's data of the subjects in which the future rows carry weight zero (their
    outcome is not used), so a subject without history has log f = 0 (tau = pi), b_hat = 0
    and Sigma = D_k."""
    return results.model.family.make_data(np.where(history, rows.endog, 0.0), rows.exog,
                                           rows.exog_re, rows.exog_gate, rows.groups,
                                           trials=rows.trials, offset=rows.offset,
                                           weights=history.astype(float))


def _posterior_of(data, state: Params) -> SubjectPosterior:
    estep = e_step(data, state)
    return SubjectPosterior(subjects=data.subjects, codes=data.row_codes, tau=estep.tau,
                            b_hat=np.asarray(estep.moments.b_hat),
                            b_cov=np.asarray(estep.moments.b_cov), data=data,
                            moments=estep.moments)


def subject_posterior(results, rows: DesignRows, history: np.ndarray | None = None,
                      state: Params | None = None) -> SubjectPosterior:
    """Posterior expert probabilities and random-effect moments of every subject of ``rows``.

    ``history=None`` on the fitting rows means every row is history: the fit's own E-step is
    used (at ``state``, if given, the model's sufficient statistics). Otherwise the rows in
    ``history`` form each subject's history.
    """
    if rows.fitting and history is None:
        data = results.model.data
        if state is None:
            estep = results._fit.estep     # the fit's final E-step (the posterior of results)
            return SubjectPosterior(subjects=data.subjects, codes=data.row_codes,
                                    tau=np.array(estep.tau), b_hat=np.array(estep.moments.b_hat),
                                    b_cov=np.array(estep.moments.b_cov), data=data,
                                    moments=estep.moments)
        return _posterior_of(data, state)
    if history is None:
        history = np.isfinite(rows.endog)
    return _posterior_of(_history_statistics(results, rows, history),
                         results.state if state is None else state)


# ---------------------------------------------------------------------------------------------
# Laws of one observation given the expert


def gating_probabilities(exog_gate: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """pi_ik = softmax_k(w_i' gamma_k) for rows of gating covariates, shape (n, K)."""
    return np.exp(log_prior(np.asarray(exog_gate, dtype=float), np.asarray(gamma, dtype=float)))


def expert_means(results, rows: DesignRows, state: Params | None = None) -> np.ndarray:
    """E[y | expert k, covariates] of a new subject at each row, shape (n, K): x' beta_k for
    Gaussian experts; for binomial and Poisson experts the response mean averaged over the
    random effects (the success probability, or the count's mean with the rows' offset)."""
    state = results.state if state is None else state
    return results.model.family.expert_means(state, rows.exog, rows.exog_re, rows.row_offset)


def _weights_and_means(results, rows: DesignRows, kind: str, posterior, state: Params):
    """The mixture weights and the component means (n, K) of ``kind``."""
    if kind == "marginal":
        return (gating_probabilities(rows.exog_gate, state.gamma),
                expert_means(results, rows, state))
    if kind == "conditional":
        means = results.model.family.conditional_means(
            posterior.data, posterior.moments, state, rows.exog, rows.exog_re, rows.row_offset,
            posterior.codes)
        return posterior.tau[posterior.codes], means
    raise ValueError(f"kind must be one of {MIXTURE_KINDS}, got {kind!r}")


def component_laws(results, rows: DesignRows, kind: str, posterior: SubjectPosterior | None = None,
                   state: Params | None = None) -> ComponentLaws:
    """Weights, means and variances of the predictive law at each row (module docstring):
    ``kind="marginal"`` from the gating, ``"conditional"`` from ``posterior``. Families with a
    discrete law (binomial, Poisson) give its means and variances, but their laws are not
    continuous, and prediction sets refuse them."""
    state = results.state if state is None else state
    family = results.model.family
    weights, means = _weights_and_means(results, rows, kind, posterior, state)
    var = family.predictive_variances(state, rows, means,
                                      posterior if kind == "conditional" else None,
                                      _row_trials(results, rows))
    if var is None:
        var = np.full(means.shape, np.nan)
    return ComponentLaws(weights=weights, means=means, variances=var, family=family.name)


def point_prediction(results, rows: DesignRows, kind: str,
                     posterior: SubjectPosterior | None = None,
                     state: Params | None = None) -> np.ndarray:
    """The predicted mean at each row: (n,) for ``"marginal"`` and ``"conditional"``, (n, K)
    for ``"expert"``. Only the means: no predictive variances (a second integral over the
    random effects for binomial and Poisson experts) are computed."""
    state = results.state if state is None else state
    if kind == "expert":
        return expert_means(results, rows, state)
    weights, means = _weights_and_means(results, rows, kind, posterior, state)
    return (weights * means).sum(axis=1)


# ---------------------------------------------------------------------------------------------
# Delta-method standard errors


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
    state, structure = results.state, results.model.structure
    n, K = rows.n_rows, state.n_experts
    r, q = state.gamma.shape[1], state.cov_re.shape[-1]
    gaussian = results.model.family.has_scale
    if kind in ("expert", "marginal") and gaussian:
        if kind == "expert":
            m = n * K
            grad_beta = np.zeros((n, K, K, rows.exog.shape[1]))
            grad_beta[:, np.arange(K), np.arange(K), :] = rows.exog[:, None, :]
            grad_beta = grad_beta.reshape(m, K, -1)
            grad_gamma = np.zeros((m, K, r))
        else:
            m = n
            pi = gating_probabilities(rows.exog_gate, state.gamma)
            means = expert_means(results, rows)
            grad_beta = pi[:, :, None] * rows.exog[:, None, :]
            centred = means - (pi * means).sum(axis=1, keepdims=True)
            grad_gamma = (pi * centred)[:, :, None] * rows.exog_gate[:, None, :]
        jac = chain_gradient(state, structure, grad_gamma, grad_beta, np.zeros((m, K, q, q)),
                             np.zeros((m, K)), internal=False)
        return jac.reshape(n, K, -1) if kind == "expert" else jac
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    theta = to_user(state, structure)
    known = np.isfinite(np.diag(results.cov_params().to_numpy()))
    positive = _lower_bounded(results)
    if kind == "conditional":
        if rows.fitting and history is None:
            data = results.model.data
        else:
            data = _history_statistics(results, rows,
                                       np.isfinite(rows.endog) if history is None else history)

        def at(vector: np.ndarray) -> np.ndarray:
            post = _posterior_of(data, from_user(vector, structure))
            return point_prediction(results, rows, "conditional", post,
                                    from_user(vector, structure))
    else:       # binomial and Poisson experts: the means are integrals over b, differenced
        def at(vector: np.ndarray) -> np.ndarray:
            return point_prediction(results, rows, kind, state=from_user(vector, structure))

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


# ---------------------------------------------------------------------------------------------
# Residuals


def expert_residuals(results, standardize: bool = True) -> np.ndarray:
    """Residuals of each fitting row under each expert, shape (n, K).

    ``standardize=False``: y_j - x_j' beta_k. ``standardize=True``: the within-subject whitened
    residuals L_ik^-1 (y_i - X_i beta_k), V_ik = L_ik L_ik' (module docstring), with the
    subject's rows in the order of the data.
    """
    require_rows(results, "residuals")
    model, state = results.model, results.state
    if not model.family.has_scale:
        return _discrete_expert_residuals(results, standardize)
    raw = model.endog[:, None] - model.exog @ state.beta.T
    if not standardize:
        return raw
    if model.exog_re.shape[1] == 0:
        return raw / np.sqrt(state.scale)
    codes = model.data.row_codes
    order = np.argsort(codes, kind="stable")     # each subject's rows in the order of the data
    sizes = np.bincount(codes)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    K = state.n_experts
    out = np.empty_like(raw)
    for size in np.unique(sizes):      # one batch per subject size, never a loop over subjects
        subjects = np.flatnonzero(sizes == size)
        n_blocks = max(1, int(np.ceil(subjects.size * K * size * size / _BLOCK)))
        for block in np.array_split(subjects, n_blocks):
            idx = order[starts[block][:, None] + np.arange(size)]            # (S, m)
            z = model.exog_re[idx]                                           # (S, m, q)
            V = np.einsum("smq,kqr,snr->skmn", z, state.cov_re, z)
            V += state.scale[None, :, None, None] * np.eye(size)
            resid = np.swapaxes(raw[idx], 1, 2)[..., None]                   # (S, K, m, 1)
            white = np.linalg.solve(np.linalg.cholesky(V), resid)[..., 0]
            out[idx] = np.swapaxes(white, 1, 2)
    return out


def observed_response(model) -> np.ndarray:
    """The fitting rows' outcome on the scale of the predictions: y for Gaussian and Poisson
    experts, the proportion of successes y / m for binomial experts."""
    trials = getattr(model, "trials", None)
    return model.endog if trials is None else model.endog / trials


def _discrete_expert_residuals(results, standardize: bool) -> np.ndarray:
    """Binomial and Poisson experts. Raw: y - E[y | expert k] (proportions for binomial).
    Standardised: randomised quantile residuals (Dunn & Smyth 1996) given the subject's
    predicted random effects under expert k, r = Phi^-1(u) with u uniform between F(y - 1) and
    F(y), F the conditional distribution function of the row: N(0, 1) when the expert is right.
    The uniforms come from a fixed seed, so the residuals are reproducible and the same draw
    serves every expert."""
    from scipy import stats
    model, state = results.model, results.state
    rows = design_rows(results, what="residuals")
    y = observed_response(model)
    if not standardize:
        return y[:, None] - expert_means(results, rows, state)
    codes = model.data.row_codes
    b_hat = np.asarray(results._fit.estep.moments.b_hat)[codes]          # (n, K, q)
    eta = rows.row_offset[:, None] + rows.exog @ state.beta.T + np.einsum("nq,nkq->nk", rows.exog_re, b_hat)
    counts = model.endog[:, None]
    if model.family.name == "binomial":
        m = rows.row_trials[:, None]
        law = stats.binom(m, 0.5 * (1.0 + np.tanh(0.5 * eta)))
    else:
        law = stats.poisson(np.exp(np.minimum(eta, 709.0)))
    low, high = law.cdf(counts - 1), law.cdf(counts)
    u = np.random.default_rng(20260101).random(counts.shape)
    return stats.norm.ppf(np.clip(low + u * (high - low), 1e-300, 1 - 1e-16))


# ---------------------------------------------------------------------------------------------
def _row_trials(results, rows: DesignRows) -> np.ndarray | None:
    """Binomial trials of each row for the predictive variances: None (one trial) for a 0/1
    outcome; for a ``successes + failures`` outcome the rows' own, NaN where the outcome (and
    so the number of trials) is not given."""
    if getattr(results.model, "trials", None) is None:
        return None
    if rows.trials is None:                     # new rows read without their outcome
        return np.full(rows.n_rows, np.nan)
    if rows.endog is None:                      # the fitting rows: their trials are known
        return rows.trials
    return np.where(np.isfinite(rows.endog), rows.trials, np.nan)


# User-facing predictions


@dataclass(frozen=True, eq=False)
class PredictiveMixture:
    """Mixture predictive law of one observation at each row (:func:`predictive_mixture`).

    Attributes
    ----------
    weights, means, variances : pandas.DataFrame
        Rows x experts: the mixture weights (tau_ik or pi_ik), the component means and the
        component variances (see the module docstring; for binomial experts, of the
        proportion of successes).
    kind : str
        ``"conditional"`` or ``"marginal"``.
    """

    weights: pd.DataFrame
    means: pd.DataFrame
    variances: pd.DataFrame
    kind: str

    def mean(self) -> pd.Series:
        """The predictive mean sum_k w_k m_k (the point prediction of the same kind)."""
        return (self.weights * self.means).sum(axis=1).rename("predicted")

    def variance(self) -> pd.Series:
        """The predictive variance sum_k w_k (v_k + m_k^2) - mean^2."""
        m = self.mean()
        second = (self.weights * (self.variances + self.means ** 2)).sum(axis=1)
        return (second - m ** 2).rename("variance")


def _experts(results) -> pd.Index:
    return pd.Index(range(1, results.state.n_experts + 1), name="expert")


def _inputs(results, newdata, kind, groups, landmark, time):
    """Rows and (for ``kind="conditional"``) the posterior of a prediction request."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind != "conditional":
        _forbid_landmark(landmark, kind)
        return design_rows(results, newdata, groups=groups,
                           need_gating=kind != "expert"), None, None
    _check_landmark(landmark, time)
    rows = design_rows(results, newdata, outcome=True, need_groups=True, groups=groups,
                       time=time)
    history = None if rows.fitting else history_mask(rows, landmark)
    return rows, subject_posterior(results, rows, history), history


def laws_of(results, newdata: pd.DataFrame | None, kind: str, *, groups=None,
            landmark: float | None = None,
            time: Hashable | None = None) -> tuple[pd.Index, ComponentLaws]:
    """The rows' index and their :class:`~pymemoe.laws.ComponentLaws` for a prediction request
    (``kind`` marginal or conditional; the other arguments as in :func:`predict`)."""
    if kind not in MIXTURE_KINDS:
        raise ValueError(f"kind must be one of {MIXTURE_KINDS}, got {kind!r}")
    rows, post, _ = _inputs(results, newdata, kind, groups, landmark, time)
    return rows.index, component_laws(results, rows, kind, post)


def predictive_mixture(results, newdata: pd.DataFrame | None = None, kind: str = "conditional",
                       *, groups=None, landmark: float | None = None,
                       time: Hashable | None = None) -> PredictiveMixture:
    """The mixture predictive law of one observation at each row: its weights and, per
    expert, the mean and variance of the component.

    For Gaussian experts the components are normal (module docstring). For binomial and
    Poisson experts the means are on the response scale (a success probability, or a count's
    mean with the row's offset), averaged over the random effects (``kind="marginal"``) or
    over their posterior (``"conditional"``), and so are the variances (of the count, or of
    the proportion of successes; module docstring); the components are not normal.

    Parameters
    ----------
    results : MEMoEResults
    newdata : pandas.DataFrame, optional
        Rows to predict; None for the fitting data.
    kind : {"conditional", "marginal"}
        Weights tau (from the subject's history) or pi (from its baseline covariates).
    groups : str or array-like, optional
        Subject labels of newdata (default: the fitting ``groups`` column).
    landmark, time : optional
        Only rows with ``time <= landmark`` enter the history (``kind="conditional"``).

    Returns
    -------
    PredictiveMixture

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.predict import predictive_mixture
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1).fit()
    >>> mix = predictive_mixture(res, df.head(2), kind="marginal")
    >>> mix.means.round(3)
    expert      1
    0       0.496
    1       0.589
    >>> mix.variances.round(3)
    expert      1
    0       1.116
    1       1.200
    """
    index, laws = laws_of(results, newdata, kind, groups=groups, landmark=landmark, time=time)
    cols = _experts(results)
    make = lambda a: pd.DataFrame(np.array(a), index=index, columns=cols)  # noqa: E731
    return PredictiveMixture(weights=make(laws.weights), means=make(laws.means),
                             variances=make(laws.variances), kind=kind)


def predict(results, newdata: pd.DataFrame | None = None, kind: str = "marginal", *,
            groups=None, landmark: float | None = None,
            time: Hashable | None = None) -> pd.Series | pd.DataFrame:
    """Predicted outcome at each row: marginal, per expert, or subject-specific (conditional).

    Parameters
    ----------
    results : MEMoEResults
        A fitted model.
    newdata : pandas.DataFrame, optional
        Rows to predict, with the columns of the formulas (covariates present in every row);
        designs are rebuilt with the categorical levels and transforms learnt in fitting (a
        level never seen in fitting raises a ValueError naming the formula). None means the
        fitting data (the rows used in the fit). Models built from arrays support
        ``newdata=None`` only; models built from chunks ``newdata`` only.
    kind : {"marginal", "expert", "conditional"}
        ``"marginal"``: sum_k pi_k(w) x' beta_k from the covariates alone. ``"expert"``: the
        expert means x' beta_k, one column per expert. ``"conditional"``: sum_k tau_ik
        (x' beta_k + z' b_hat_ik) from the subject's observed outcomes; on the fitting data
        these are the fitted values. Rows of newdata with a missing outcome (or after the
        landmark) are future rows, predicted from the subject's other rows (dynamic
        prediction); a subject without observed outcome gets its marginal prediction.
    groups : str or array-like, optional
        Subject labels of newdata; default the fitting ``groups`` column. Needed by
        ``kind="conditional"``; with any kind, the gating covariates of a subject must be
        constant within it. Subjects of newdata are new subjects, even if their labels were in
        the fit.
    landmark : float, optional
        With ``time``: rows with ``time > landmark`` are future rows whatever their outcome.
    time : str, optional
        Name of the time column of newdata (needed by ``landmark``).

    Returns
    -------
    pandas.Series or pandas.DataFrame
        Indexed like newdata's rows (or the fitting rows); a DataFrame with one column per
        expert for ``kind="expert"``.

    See Also
    --------
    get_prediction : the same predictions with delta-method standard errors.

    Examples
    --------
    >>> import numpy as np
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.predict import predict
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1).fit()
    >>> predict(res, df.head(3)).round(3)
    0    0.496
    1    0.589
    2    0.496
    Name: predicted, dtype: float64

    Dynamic prediction: hide the outcome of subject 1's second visit; its prediction then uses
    the first visit only.

    >>> new = df[df["id"] == 1].copy()
    >>> new.loc[new.index[1], "bili"] = np.nan
    >>> predict(res, new, kind="conditional").round(3)
    0    2.436
    1    2.603
    Name: predicted, dtype: float64
    """
    rows, post, _ = _inputs(results, newdata, kind, groups, landmark, time)
    values = point_prediction(results, rows, kind, post)
    if kind == "expert":
        return pd.DataFrame(values, index=rows.index, columns=_experts(results))
    return pd.Series(values, index=rows.index, name="predicted")


def get_prediction(results, newdata: pd.DataFrame | None = None, kind: str = "marginal", *,
                   groups=None, landmark: float | None = None, time: Hashable | None = None):
    """Predicted means with delta-method standard errors and confidence intervals.

    The means are those of :func:`predict`; their standard errors come from
    ``results.cov_params()`` by the delta method (module docstring): for ``kind="expert"``
    exactly sqrt(x' V_k x). They measure the uncertainty of the estimated mean (parameter
    uncertainty), not the spread of a new observation: for that use the prediction sets
    (:meth:`PredictionResults.prediction_set`).

    Parameters
    ----------
    results : MEMoEResults
        A fit with standard errors (``cov_type`` ``"oim"`` or ``"robust"``).
    newdata, kind, groups, landmark, time
        As in :func:`predict`.

    Returns
    -------
    pymemoe.prediction_results.PredictionResults
        ``summary_frame(alpha)`` has statsmodels' columns ``mean``, ``mean_se``,
        ``mean_ci_lower`` and ``mean_ci_upper``.

    Examples
    --------
    >>> import pandas as pd
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1).fit()
    >>> grid = pd.DataFrame({"year": [0.0, 5.0, 10.0]})
    >>> res.get_prediction(grid, kind="expert").summary_frame().round(3)
               mean  mean_se  mean_ci_lower  mean_ci_upper
      expert                                              
    0 1       0.496    0.058          0.382          0.609
    1 1       1.383    0.097          1.193          1.572
    2 1       2.270    0.154          1.967          2.573
    """
    from .prediction_results import PredictionResults

    cov = results.cov_params().to_numpy()
    if not np.isfinite(np.diag(cov)).any():
        raise ValueError(f"standard errors of predictions need the covariance of the estimates, "
                         f"and this fit has none (cov_type={results.cov_type!r}); refit with "
                         f"cov_type='oim' or 'robust', or use predict() for the means alone")
    rows, post, history = _inputs(results, newdata, kind, groups, landmark, time)
    mean = point_prediction(results, rows, kind, post)
    se = delta_se(prediction_jacobian(results, rows, kind, history), cov)
    request = dict(newdata=newdata, kind=kind, groups=groups, landmark=landmark, time=time)
    return PredictionResults(mean=mean, se=se, index=rows.index, experts=_experts(results),
                             kind=kind, results=results, request=request)


def predict_class(results, newdata: pd.DataFrame | None = None, *, groups=None,
                  landmark: float | None = None,
                  time: Hashable | None = None) -> pd.DataFrame:
    """Posterior expert probabilities of (new) subjects from their outcomes and covariates.

    The analogue of lcmm's ``predictClass``: tau_ik = pi_ik f(y_i | k) / sum_l pi_il f(y_i | l)
    at the fitted parameters, using the rows of newdata with an observed outcome (and time at or
    before ``landmark``). A subject without such rows gets its prior (gating) probabilities.

    Parameters
    ----------
    results : MEMoEResults
    newdata : pandas.DataFrame, optional
        Long-format data of the subjects; None for the fitting data (then the result equals
        ``results.posterior``).
    groups, landmark, time
        As in :func:`predict`.

    Returns
    -------
    pandas.DataFrame
        Subjects x experts (rows sum to 1).

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.predict import predict_class
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1).fit()
    >>> predict_class(res, df[df["id"] <= 2])
    expert     1
    subject     
    1        1.0
    2        1.0
    """
    if newdata is None:
        _forbid_time(landmark, time)
        return results.posterior
    _, post, _ = _inputs(results, newdata, "conditional", groups, landmark, time)
    return pd.DataFrame(np.array(post.tau), index=post.subjects, columns=_experts(results))


def _forbid_time(landmark, time) -> None:
    if landmark is not None or time is not None:
        raise ValueError("landmark/time need newdata (a DataFrame with the time column); "
                         "the fitting data's time is not stored in the model")


def prior_class(results, newdata: pd.DataFrame | None = None, *, groups=None) -> pd.DataFrame:
    """Gating (prior) expert probabilities pi_ik of (new) subjects from baseline covariates.

    Parameters
    ----------
    results : MEMoEResults
    newdata : pandas.DataFrame, optional
        Data with the gating covariates and the subject column; None for the fitting subjects
        (then the result equals ``results.prior``).
    groups : str or array-like, optional
        Subject labels of newdata (default: the fitting ``groups`` column).

    Returns
    -------
    pandas.DataFrame
        Subjects x experts.

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.predict import prior_class
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", n_experts=1).fit()
    >>> prior_class(res, df[df["id"] == 3])
    expert     1
    subject     
    3        1.0
    """
    state = results.state
    if newdata is None:
        data = results.model.data
        gate, subjects = data.exog_gate, data.subjects
    else:
        rows = design_rows(results, newdata, need_groups=True, groups=groups)
        codes, subjects = subject_codes(rows.groups)
        first = np.empty(len(subjects), dtype=int)
        first[codes[::-1]] = np.arange(len(codes))[::-1]
        gate = rows.exog_gate[first]
    return pd.DataFrame(gating_probabilities(gate, state.gamma), index=subjects,
                        columns=_experts(results))
