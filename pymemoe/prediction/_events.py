r"""Survival and cumulative incidence curves of a joint model, with confidence bands.

For a covariate profile x (a row of the time-to-event design) and each expert k::

    S_k(t | x) = exp(-sum_c H_kc(t | x)),      F_kc(t | x) = int_0^t h_kc(u | x) S_k(u | x) du,

the probability of being event-free at t and of having had the event of cause c by t
(cause-specific hazards: the F_kc of the causes and S_k add up to 1). The marginal curves of a
profile w of the gating covariates are the mixtures sum_k pi_k(w) S_k and sum_k pi_k(w) F_kc.

Confidence bands are pointwise, by the delta method on the logit scale (so that they stay
inside (0, 1)): the gradient of logit(curve) in the parameters by central differences, with
the fit's covariance of the estimates (:meth:`~pymemoe.MEMoEResults.cov_params`).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit, logit, logsumexp

from .._design.subject_level import subject_values
from .._estimation.inference import delta_method
from .._model.gating import log_prior
from .._model.params import from_user
from .._predictive.accuracy import dynamic_accuracy_arrays
from .._predictive.posterior import history_statistics, posterior_of
from .._predictive.rows import design_rows, history_mask

__all__ = ["cumulative_incidence", "dynamic_prediction", "prognostic_loglik", "dynamic_accuracy"]


def _row(names: tuple[str, ...], values: Mapping | None, default: np.ndarray,
         what: str) -> np.ndarray:
    """A design row from ``values`` (by the design's column names; ``Intercept`` is 1), or
    ``default`` when None."""
    if values is None:
        return np.asarray(default, dtype=float)
    if isinstance(values, pd.DataFrame):
        if len(values) != 1:
            raise ValueError(f"{what} must be one row; got {len(values)}")
        values = values.iloc[0]
    values = dict(values)
    row = np.empty(len(names))
    for j, name in enumerate(names):
        if name == "Intercept":
            row[j] = 1.0
        elif name in values:
            row[j] = float(values[name])
        else:
            raise ValueError(f"{what} has no value for the design column {name!r} (it "
                             f"needs {[n for n in names if n != 'Intercept']})")
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{what}: {unknown} are not columns of the design {list(names)}")
    return row


def cumulative_incidence(results, times, profile: Mapping | None = None,
                         gate_profile: Mapping | None = None, alpha: float = 0.05
                         ) -> pd.DataFrame:
    """Survival and cumulative incidence curves of each expert, and their mixture, with
    pointwise confidence intervals.

    Parameters
    ----------
    results : MEMoEResults
        A joint model's fit (``survival=`` in :meth:`~pymemoe.MEMoE.from_formula`).
    times : array-like
        Times (>= 0) at which to evaluate the curves.
    profile : dict, Series or one-row DataFrame, optional
        Values of the time-to-event design's columns (by their names, e.g. ``{"age": 50}``;
        a categorical term by its column name such as ``"C(sex)[T.f]"``). Default: the mean
        design row of the fitted subjects.
    gate_profile : dict, Series or one-row DataFrame, optional
        Values of the gating design's columns for the marginal curves. Default: the mean
        gating row of the fitted subjects.
    alpha : float
        1 - the level of the confidence intervals.

    Returns
    -------
    DataFrame
        Long format: ``time``, ``expert`` (1..K, or ``"marginal"``), ``curve``
        (``"survival"`` or ``"incidence: <cause>"``), ``estimate``, ``std err`` (of the
        estimate, delta method), ``lower``, ``upper``.

    Examples
    --------
    >>> from pymemoe import MEMoE, TimeToEvent
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq().assign(year=lambda d: d["day"] / 365.25,
    ...                           years=lambda d: d["futime"] / 365.25)
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1, survival=TimeToEvent("years", "status",
    ...                          causes=["transplant", "death"])).fit()
    >>> curves = res.cumulative_incidence([5.0, 10.0])
    >>> sorted(curves["curve"].unique())
    ['incidence: death', 'incidence: transplant', 'survival']
    """
    model = results.model
    family, structure = model.family, model.structure
    times = np.asarray(times, dtype=float).ravel()
    if times.size == 0 or not np.isfinite(times).all() or (times < 0).any():
        raise ValueError("times must be finite and >= 0")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    events = family.event_data(model.data)
    cause_names = events.cause_names
    x = _row(events.exog_names, profile, events.exog[events.cause >= 0].mean(axis=0),
             "profile")
    w = _row(structure.exog_gate_names, gate_profile, model.data.exog_gate.mean(axis=0),
             "gate_profile")
    K = structure.n_experts

    def curves(theta: np.ndarray) -> np.ndarray:
        params = from_user(theta, structure)
        surv, inc = family.event_curves(params, x[None], times)
        surv, inc = surv[0], inc[0]                                     # (K, T), (K, C, T)
        prior = np.exp(log_prior(w[None, :], params.gamma))[0]          # (K,)
        per = np.concatenate([surv[:, None, :], inc], axis=1)           # (K, 1 + C, T)
        both = np.concatenate([per, np.einsum("k,kct->ct", prior, per)[None]], axis=0)
        return both.ravel()

    theta = results.params.to_numpy()
    cov = results.cov_params().to_numpy()
    value = curves(theta)
    clipped = np.clip(value, 1e-15, 1 - 1e-15)
    _, cov_logit = delta_method(lambda th: logit(np.clip(curves(th), 1e-15, 1 - 1e-15)),
                                theta, cov)
    se_logit = np.sqrt(np.clip(np.diag(cov_logit), 0.0, None))
    crit = stats.norm.ppf(1 - alpha / 2)
    center = logit(clipped)
    se = se_logit * clipped * (1 - clipped)
    labels = ["survival"] + [f"incidence: {c}" for c in cause_names]
    experts = list(range(1, K + 1)) + ["marginal"]
    index = pd.MultiIndex.from_product([experts, labels, times], names=["expert", "curve", "time"])
    out = pd.DataFrame({"estimate": value, "std err": se,
                        "lower": expit(center - crit * se_logit),
                        "upper": expit(center + crit * se_logit)}, index=index).reset_index()
    out["expert"] = out["expert"].astype(object)
    return out[["time", "expert", "curve", "estimate", "std err", "lower", "upper"]]


def dynamic_prediction(results, newdata: pd.DataFrame, landmark: float, horizon,
                       time, *, groups=None, alpha: float = 0.05, n_draws: int = 500,
                       random_state=None) -> pd.DataFrame:
    r"""The probability of each cause of event in (s, s + h] for subjects event-free at the
    landmark s, given their measurements up to s (lcmm's ``dynpred``).

    With y_i(s) the subject's outcomes measured at or before s and x_i its time-to-event
    covariates::

        P(k | y_i(s), T_i > s) = pi_ik f(y_i(s) | k) S_k(s | x_i) / sum_l (same for l)
        P(d_i = c, T_i <= s + h | y_i(s), T_i > s)
            = sum_k P(k | y_i(s), T_i > s) (F_kc(s + h | x_i) - F_kc(s | x_i)) / S_k(s | x_i)

    The interval of each probability is the central 1 - alpha range of its values over
    ``n_draws`` draws of the parameters from their estimated normal law (N(theta_hat,
    cov_params()), as lcmm's ``dynpred`` with ``draws = TRUE``); ``n_draws=0`` for none.

    Parameters
    ----------
    results : MEMoEResults
        A joint model's fit.
    newdata : DataFrame
        Long data of the subjects (fitted or new): their measurements (rows after ``landmark``
        are ignored), gating covariates and time-to-event covariates.
    landmark : float
        s: the subjects are event-free at s.
    horizon : float or sequence of float
        h > 0 (several: one row per subject and horizon).
    time : str
        The column of measurement times.
    groups : str, optional
        The subject column (default: the fit's).
    alpha : float
    n_draws : int
    random_state : int or numpy Generator, optional
        Seeds the parameter draws.

    Returns
    -------
    DataFrame
        One row per subject (and ``horizon``, when several are given): ``P(<cause>)`` for
        each cause, ``P(any)`` their sum, with draws ``... lower`` and ``... upper`` for each,
        and ``P(expert k)``, the posterior at s given the measurements and T > s.
    """
    model = results.model
    family, structure = model.family, model.structure
    s = float(landmark)
    h = np.atleast_1d(np.asarray(horizon, dtype=float))
    if not (np.isfinite(s) and s >= 0 and np.isfinite(h).all() and (h > 0).all()):
        raise ValueError(f"landmark must be >= 0 and horizon > 0; got {landmark!r}, {horizon!r}")
    data, x, _ = _at_landmark(results, newdata, s, time, groups)
    subjects = data.subjects
    causes = family.event_data(model.data).cause_names
    times = np.r_[s, s + h]

    def probabilities(params) -> tuple[np.ndarray, np.ndarray]:
        """(S, H, C) probabilities and (S, K) posterior weights at ``params``."""
        post = posterior_of(data, params)                         # P(k | y_i(s)), trajectory
        surv, inc = family.event_curves(params, x, times)         # (S, K, 1+H), (S, K, C, 1+H)
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = np.asarray(post.tau) * surv[..., 0]
            weight = weight / weight.sum(axis=1, keepdims=True)
            cond = (inc[..., 1:] - inc[..., :1]) / surv[..., 0][..., None, None]
        return np.einsum("sk,skch->shc", weight, np.nan_to_num(cond)), weight

    prob, weight = probabilities(results.state)
    prob = np.concatenate([prob, prob.sum(axis=2, keepdims=True)], axis=2)   # + P(any)
    names = [f"P({c})" for c in causes] + ["P(any)"]
    index = pd.MultiIndex.from_product([subjects, h], names=["subject", "horizon"])
    out = pd.DataFrame(prob.reshape(-1, len(names)), index=index, columns=names)
    if n_draws:
        rng = np.random.default_rng(random_state)
        theta = results.params.to_numpy()
        cov = np.nan_to_num(results.cov_params().to_numpy())
        draws = rng.multivariate_normal(theta, cov, size=int(n_draws), method="eigh")
        values = np.stack([probabilities(from_user(d, structure))[0] for d in draws])
        values = np.concatenate([values, values.sum(axis=3, keepdims=True)], axis=3)
        lower = np.quantile(values, alpha / 2, axis=0).reshape(-1, len(names))
        upper = np.quantile(values, 1 - alpha / 2, axis=0).reshape(-1, len(names))
        for j, name in enumerate(names):
            out[f"{name} lower"] = lower[:, j]
            out[f"{name} upper"] = upper[:, j]
    for k in range(weight.shape[1]):
        out[f"P(expert {k + 1})"] = np.repeat(weight[:, k], h.size)
    if np.ndim(horizon) == 0:
        out = out.droplevel("horizon")
    return out


def _at_landmark(results, newdata: pd.DataFrame, landmark: float, time, groups):
    """What a prediction at the landmark reads of ``newdata``: the subjects' measurement
    statistics up to the landmark, their time-to-event design, and the fit's subject column."""
    model = results.model
    rows = design_rows(results, newdata, outcome=True, need_groups=True, groups=groups,
                       time=time)
    data = history_statistics(results, rows, history_mask(rows, landmark))
    fitted_groups = None if model.spec is None else model.spec.groups
    x = model.family.event_exog(newdata, groups, fitted_groups, data.subjects)
    return data, x, fitted_groups


def prognostic_loglik(results, newdata: pd.DataFrame, landmark: float, time, *,
                      groups=None) -> pd.Series:
    r"""Each subject's log-likelihood of its observed follow-up given its measurements up to
    the landmark s and event-free at s.

    Its mean over held-out subjects, with the sign changed, is the EPOCE of Commenges et al.
    (2012, lcmm's ``epoce``)::

        log P(T_i, d_i | y_i(s), T_i > s)
            = log sum_k pi_ik f(y_i(s) | k) h_k,d_i(T_i)^[d_i > 0] S_k(T_i)
              - log sum_k pi_ik f(y_i(s) | k) S_k(s).

    Parameters
    ----------
    results : MEMoEResults
        A joint model's fit.
    newdata : DataFrame
        Long data of the subjects: measurements (rows after ``landmark`` are ignored),
        covariates, and the follow-up columns of the model's ``survival`` (time and event).
    landmark : float
    time : str
        The column of measurement times.
    groups : str, optional
        The subject column (default: the fit's).

    Returns
    -------
    Series
        One value per subject; a ValueError names a subject not event-free at the landmark.
    """
    model = results.model
    family = model.family
    survival = model.structure_options()["survival"]
    s = float(landmark)
    data, x, fitted_groups = _at_landmark(results, newdata, s, time, groups)
    subjects = data.subjects
    group_column = fitted_groups if groups is None else groups
    follow = subject_values(newdata, survival.time, group_column, fitted_groups, subjects,
                            what=f"survival time {survival.time!r}").to_numpy(dtype=float)
    cause = subject_values(newdata, survival.event, group_column, fitted_groups, subjects,
                           what=f"event {survival.event!r}").to_numpy(dtype=float)
    early = np.flatnonzero(~(follow > s))
    if early.size:
        raise ValueError(f"subject {subjects[early[0]]!r} is not event-free at the landmark "
                         f"{s:g} (follow-up time {follow[early[0]]:g})")
    post = posterior_of(data, results.state)                     # P(k | y_i(s)), trajectory
    with np.errstate(divide="ignore"):
        log_tau = np.log(np.asarray(post.tau))
    after = family.event_logdens_after(results.state, x, follow, cause.astype(int), s)
    at_landmark = family.event_logdens_after(results.state, x, np.full(follow.shape, s),
                                             np.zeros(follow.shape, dtype=int), 0.0)
    value = (logsumexp(log_tau + at_landmark + after, axis=1)
             - logsumexp(log_tau + at_landmark, axis=1))
    return pd.Series(value, index=subjects, name="prognostic log-likelihood")


def dynamic_accuracy(probability, time, event, landmark: float, horizon: float,
                     cause: int = 1, entry=None) -> pd.Series:
    r"""Time-dependent AUC and Brier score of predicted probabilities of an event of
    ``cause`` in (landmark, landmark + horizon], with inverse-probability-of-censoring weights
    (Blanche et al. 2015; the mathematics in :mod:`pymemoe._predictive.accuracy`).

    Parameters
    ----------
    probability : array-like
        One predicted probability per subject (e.g. a column ``P(<cause>)`` of
        :func:`dynamic_prediction` at this landmark and horizon; subjects not at risk at the
        landmark are left out whatever their value).
    time, event : array-like
        The same subjects' follow-up times and how follow-up ended (0 censored, 1..C the
        cause).
    landmark, horizon : float
    cause : int
        The cause predicted (1..C).
    entry : array-like, optional
        Delayed entry times: a subject who enters after the landmark is not at risk there.

    Returns
    -------
    Series
        ``n_at_risk``, ``n_cases``, ``n_controls``, ``n_censored`` (censored in the window:
        weight 0), ``auc``, ``brier``.

    Examples
    --------
    >>> from pymemoe.prediction import dynamic_accuracy
    >>> dynamic_accuracy([0.9, 0.2, 0.6, 0.1], [2.0, 9.0, 3.0, 8.0], [1, 0, 1, 0],
    ...                  landmark=1.0, horizon=4.0)[["auc", "brier"]].round(4).tolist()
    [1.0, 0.055]
    """
    values = [np.asarray(v, dtype=float).ravel() for v in (probability, time, event)]
    if len({v.size for v in values}) != 1:
        raise ValueError("probability, time and event must have one value per subject")
    if not (np.isfinite(horizon) and horizon > 0 and np.isfinite(landmark)):
        raise ValueError(f"landmark must be finite and horizon > 0; got {landmark!r}, "
                         f"{horizon!r}")
    out = dynamic_accuracy_arrays(values[0], values[1], values[2].astype(int), landmark,
                                  horizon, cause=int(cause),
                                  entry=None if entry is None else np.asarray(entry, dtype=float))
    return pd.Series(out, dtype=object).infer_objects()
