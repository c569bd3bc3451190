r"""Predictions, dynamic predictions, class membership and predictive laws of a fitted MEMoE.

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

from .data import SubjectData, check_constant_within, subject_codes
from .formula import build_new_design, build_new_endog
from .gating import log_prior
from .likelihood import e_step

__all__ = ["predict", "predict_class", "prior_class", "predictive_mixture", "PredictiveMixture"]

KINDS = ("marginal", "expert", "conditional")
SET_KINDS = ("conditional", "marginal")


# ---------------------------------------------------------------------------------------------
# Rows of the data to predict


@dataclass(frozen=True, eq=False)
class _Rows:
    """Row-level designs of the data to predict (n rows)."""

    index: pd.Index
    exog: np.ndarray                 # (n, p) expert-specific then shared columns
    exog_re: np.ndarray              # (n, q)
    exog_gate: np.ndarray            # (n, r)
    endog: np.ndarray | None         # (n,), NaN where not observed
    groups: np.ndarray | None        # (n,)
    time: np.ndarray | None          # (n,)


def _outcome(spec, data: pd.DataFrame) -> np.ndarray:
    """The outcome with NaN where it is missing (rows without an outcome are future rows)."""
    return build_new_endog(spec, data)


def _resolve_groups(spec, data: pd.DataFrame, groups) -> np.ndarray:
    if groups is None:
        groups = spec.groups
        if groups is None:
            raise ValueError("the model was fitted with subject labels given as an array; pass "
                             "groups= (a column name of newdata or one label per row)")
    if isinstance(groups, str) or (np.ndim(groups) == 0 and groups is not None):
        if groups not in data.columns:
            raise ValueError(f"groups={groups!r} is not a column of newdata; columns are "
                             f"{list(data.columns)}")
        values = data[groups].to_numpy()
    else:
        values = np.asarray(groups)
        if values.shape != (len(data),):
            raise ValueError(f"groups must be a column name or one label per row of newdata "
                             f"({len(data)} rows); got shape {values.shape}")
    if pd.isna(pd.Series(values)).any():
        raise ValueError("the subject labels (groups) of newdata contain missing values")
    return values


def _rows(results, newdata: pd.DataFrame | None, *, endog: bool, groups_needed: bool,
          groups=None, time: Hashable | None = None) -> _Rows:
    model = results.model
    if newdata is None:
        if time is not None:
            raise ValueError("landmark/time need newdata (a DataFrame with the time column); "
                             "the fitting data's time is not stored in the model")
        return _Rows(index=model.row_index, exog=model.exog, exog_re=model.exog_re,
                     exog_gate=model.exog_gate, endog=model.endog, groups=model.groups,
                     time=None)
    spec = model.spec
    if spec is None:
        raise ValueError("this model was built from arrays (MEMoE(endog, exog, ...)), so its "
                         "designs cannot be rebuilt for new data; use newdata=None, or build the "
                         "model with MEMoE.from_formula")
    if not isinstance(newdata, pd.DataFrame):
        raise ValueError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
    if len(newdata) == 0:
        raise ValueError("newdata has no rows")
    parts = build_new_design(spec, newdata)
    exog = np.column_stack([parts["exog"], parts["exog_shared"]])
    y = _outcome(spec, newdata) if endog else None
    labels = _resolve_groups(spec, newdata, groups) if groups_needed else None
    if labels is not None:
        check_constant_within(parts["exog_gate"], labels, spec.exog_gate_names,
                              f"gate_formula {spec.gate_formula!r}")
    t = None
    if time is not None:
        if time not in newdata.columns:
            raise ValueError(f"time={time!r} is not a column of newdata")
        t = pd.to_numeric(newdata[time], errors="raise").to_numpy(dtype=float)
    return _Rows(index=newdata.index, exog=exog, exog_re=parts["exog_re"],
                 exog_gate=parts["exog_gate"], endog=y, groups=labels, time=t)


def _history(rows: _Rows, landmark: float | None) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------
# Posterior of each subject from its history rows


@dataclass(frozen=True, eq=False)
class _Posterior:
    subjects: pd.Index
    codes: np.ndarray       # (n,) subject position of each row
    tau: np.ndarray         # (S, K)
    b_hat: np.ndarray       # (S, K, q)
    b_cov: np.ndarray       # (S, K, q, q)


def _posterior(results, rows: _Rows, history: np.ndarray | None) -> _Posterior:
    """Posterior expert probabilities and random-effect moments of every subject.

    ``history=None`` means the fitting data (every row observed): the model's own sufficient
    statistics are used. Otherwise the future rows get weight zero in the cross-products and
    the subject's ``n_i`` counts its history rows only; a subject without history then has
    log f = 0 (tau = pi), b_hat = 0 and Sigma = D_k.
    """
    state = results.state
    if history is None:
        data = results.model.data
    else:
        weight = history.astype(float)
        y = np.where(history, rows.endog, 0.0)
        data = SubjectData.from_arrays(y, rows.exog * weight[:, None],
                                       rows.exog_re * weight[:, None], rows.exog_gate,
                                       rows.groups)
        n_hist = np.bincount(data.row_codes, weights=weight, minlength=data.n_groups)
        data = dataclasses.replace(data, n_obs=n_hist)
    estep = e_step(data, state)
    return _Posterior(subjects=data.subjects, codes=data.row_codes, tau=estep.tau,
                      b_hat=estep.moments.b_hat, b_cov=estep.moments.b_cov)


def _conditional_inputs(results, newdata, groups, landmark, time) -> tuple[_Rows, _Posterior]:
    _check_landmark(landmark, time)
    rows = _rows(results, newdata, endog=True, groups_needed=True, groups=groups, time=time)
    if newdata is None:
        return rows, _posterior(results, rows, None)
    return rows, _posterior(results, rows, _history(rows, landmark))


# ---------------------------------------------------------------------------------------------
# Predictive mixtures


@dataclass(frozen=True, eq=False)
class PredictiveMixture:
    """Gaussian-mixture predictive law of one observation at each row.

    Attributes
    ----------
    weights, means, variances : pandas.DataFrame
        Rows x experts: the mixture weights (tau_ik or pi_ik), the component means and the
        component variances (see the module docstring).
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


def _mixture_arrays(results, rows: _Rows, kind: str, post: _Posterior | None):
    state = results.state
    means = rows.exog @ state.beta.T                                        # (n, K)
    z = rows.exog_re
    if kind == "marginal":
        weights = np.exp(log_prior(rows.exog_gate, state.gamma))
        var = np.einsum("nq,kqr,nr->nk", z, state.cov_re, z) + state.scale
    else:
        c = post.codes
        weights = post.tau[c]
        means = means + np.einsum("nq,nkq->nk", z, post.b_hat[c])
        var = np.einsum("nq,nkqr,nr->nk", z, post.b_cov[c], z) + state.scale
    return weights, means, np.maximum(var, 0.0)


def _experts(results) -> pd.Index:
    return pd.Index(range(1, results.state.n_experts + 1), name="expert")


def predictive_mixture(results, newdata: pd.DataFrame | None = None, kind: str = "conditional",
                       *, groups=None, landmark: float | None = None,
                       time: Hashable | None = None) -> PredictiveMixture:
    """The Gaussian-mixture predictive law of one observation at each row.

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
    if kind not in SET_KINDS:
        raise ValueError(f"kind must be one of {SET_KINDS}, got {kind!r}")
    if kind == "marginal":
        _forbid_landmark(landmark, kind)
        rows, post = _rows(results, newdata, endog=False, groups_needed=False), None
    else:
        rows, post = _conditional_inputs(results, newdata, groups, landmark, time)
    w, m, v = _mixture_arrays(results, rows, kind, post)
    cols = _experts(results)
    make = lambda a: pd.DataFrame(a, index=rows.index, columns=cols)  # noqa: E731
    return PredictiveMixture(weights=make(w), means=make(m), variances=make(v), kind=kind)


def _forbid_landmark(landmark, kind: str) -> None:
    if landmark is not None:
        raise ValueError(f"landmark applies to kind='conditional' only, not kind={kind!r}")


# ---------------------------------------------------------------------------------------------
# Point predictions and classes


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
        designs are rebuilt with the categorical levels and transforms learnt in fitting (a level never seen in fitting
        raises a ValueError naming the formula). None means the fitting data (the rows used
        in the fit). Models built from arrays support ``newdata=None`` only.
    kind : {"marginal", "expert", "conditional"}
        ``"marginal"``: sum_k pi_k(w) x' beta_k from the covariates alone. ``"expert"``: the
        expert means x' beta_k, one column per expert. ``"conditional"``: sum_k tau_ik
        (x' beta_k + z' b_hat_ik) from the subject's observed outcomes; on the fitting data
        these are the fitted values. Rows of newdata with a missing outcome (or after the
        landmark) are future rows, predicted from the subject's other rows (dynamic
        prediction); a subject without observed outcome gets its marginal prediction.
    groups : str or array-like, optional
        Subject labels of newdata (``kind="conditional"``); default the fitting ``groups``
        column. Subjects of newdata are new subjects, even if their labels were in the fit.
    landmark : float, optional
        With ``time``: rows with ``time > landmark`` are future rows whatever their outcome.
    time : str, optional
        Name of the time column of newdata (needed by ``landmark``).

    Returns
    -------
    pandas.Series or pandas.DataFrame
        Indexed like newdata's rows (or the fitting rows); a DataFrame with one column per
        expert for ``kind="expert"``.

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
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    state = results.state
    if kind == "conditional":
        rows, post = _conditional_inputs(results, newdata, groups, landmark, time)
        w, m, _ = _mixture_arrays(results, rows, kind, post)
        return pd.Series((w * m).sum(axis=1), index=rows.index, name="predicted")
    _forbid_landmark(landmark, kind)
    rows = _rows(results, newdata, endog=False, groups_needed=False)
    means = rows.exog @ state.beta.T
    if kind == "expert":
        return pd.DataFrame(means, index=rows.index, columns=_experts(results))
    prior = np.exp(log_prior(rows.exog_gate, state.gamma))
    return pd.Series((prior * means).sum(axis=1), index=rows.index, name="predicted")


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
    _, post = _conditional_inputs(results, newdata, groups, landmark, time)
    return pd.DataFrame(post.tau, index=post.subjects, columns=_experts(results))


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
        rows = _rows(results, newdata, endog=False, groups_needed=True, groups=groups)
        codes, subjects = subject_codes(rows.groups)
        first = np.empty(len(subjects), dtype=int)
        first[codes[::-1]] = np.arange(len(codes))[::-1]
        gate = rows.exog_gate[first]
    return pd.DataFrame(np.exp(log_prior(gate, state.gamma)), index=subjects,
                        columns=_experts(results))
