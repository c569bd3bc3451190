r"""Cross-validation of a MEMoE over subjects.

**Cross-validation** (:func:`cross_validate`) splits subjects into folds, fits on the others,
and scores the held-out subjects' observations: PMSE = mean (y - prediction)^2 and the
empirical coverage of the 1 - alpha prediction sets.

For binomial and Poisson experts the predictive law is discrete and has no prediction sets
(:mod:`pymemoe.prediction`): the folds are scored by PMSE alone (for a 0/1 outcome it is
the Brier score), and the coverage and set-length columns are missing.

For joint models, ``landmarks`` and ``horizon`` score the dynamic event predictions too: at
each landmark s, every held-out subject at risk at s gets, from the model fitted without it
and its measurements up to s, the probability of each cause of event in (s, s + h]
(:func:`pymemoe.prediction.dynamic_prediction`); the predictions of all folds are pooled and
scored by the time-dependent AUC and Brier score with inverse-probability-of-censoring
weights (:mod:`pymemoe._predictive.accuracy`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np
import pandas as pd

from ._design.formula import build_design
from ._design.subjects import subject_codes
from ._estimation.seeds import as_seed_sequence
from ._execution.threads import progress_bar
from ._predictive.accuracy import dynamic_accuracy_arrays
from ._predictive.laws import component_laws, laws_of
from ._predictive.posterior import subject_posterior
from ._predictive.rows import design_rows, observed_outcome
from ._predictive.sets import SET_METHODS, check_alpha, covered_rows, set_arrays
from .families import get_family
from .model import MEMoE
from .prediction import dynamic_prediction, prognostic_loglik

__all__ = ["cross_validate", "CrossValidation"]

# ---------------------------------------------------------------------------------------------
# Cross-validation over subjects

_FIT_KEYS = ("n_starts", "maxiter", "tol", "polish", "start_params")
_MODEL_KEYS = ("re_formula", "gate_formula", "n_experts", "shared_formula", "cov_re",
               "re_structure", "scale", "missing", "family", "offset", "exposure", "nAGQ",
               "survival")


@dataclass(frozen=True, eq=False)
class CrossValidation:
    """Result of :func:`cross_validate`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per fold (1..n_folds) and ``"overall"`` (pooled over all held-out
        observations): ``n_subjects``, ``n_obs``, ``pmse`` (mean squared error of the marginal
        prediction), ``coverage`` (share of observations in their marginal 1 - alpha set),
        ``mean_length`` (mean total length of the sets; both missing for binomial and Poisson
        experts, whose discrete predictive laws have no sets); with ``time``, also
        ``n_dynamic``,
        ``pmse_dynamic`` and ``coverage_dynamic`` for the conditional predictions of each row
        from the subject's earlier rows.
    predictions : pandas.DataFrame
        One row per held-out observation (index of ``data``): fold, subject, observed,
        predicted, covered, set_length and, with ``time``, predicted_dynamic and
        covered_dynamic (missing for a subject's first row).
    folds : pandas.Series
        Fold (1-based) of each subject.
    train_subjects : dict
        Fold -> the subjects of the model fitted for it (``results.model.data.subjects``).
    alpha : float
    method : str
    event_accuracy : pandas.DataFrame or None
        With ``landmarks`` (joint models): one row per landmark and cause, the pooled
        held-out predictions' ``n_at_risk``, ``n_cases``, ``n_controls``, ``n_censored``,
        ``auc`` and ``brier`` (:func:`pymemoe.prediction.dynamic_accuracy`).
    event_predictions : pandas.DataFrame or None
        With ``landmarks``: one row per held-out subject at risk at each landmark: fold,
        subject, landmark, time, event (entry under delayed entry), ``P(<cause>)`` and
        ``log_prognostic``, the log-likelihood of the subject's observed follow-up given its
        measurements up to the landmark (:func:`pymemoe.prediction.prognostic_loglik`).
    epoce : pandas.DataFrame or None
        With ``landmarks``: per landmark, ``n_at_risk``, ``epoce`` (minus the mean of
        ``log_prognostic`` over the held-out subjects at risk: the cross-validated EPOCE of
        Commenges et al. 2012, lcmm's ``epoce``; lower is better) and its standard error.
    """

    table: pd.DataFrame
    predictions: pd.DataFrame
    folds: pd.Series
    train_subjects: dict
    alpha: float
    method: str
    event_accuracy: pd.DataFrame | None = None
    event_predictions: pd.DataFrame | None = None
    epoce: pd.DataFrame | None = None


def _dynamic_layout(codes: np.ndarray, t: np.ndarray):
    """For each row with an earlier row of its subject (ordered by time, ties by row order),
    the rows of a pseudo-subject made of that row and all earlier ones.

    Returns the positions of the expanded rows, their pseudo-subject labels, whether each is
    the pseudo-subject's target row, and the original position of every target.
    """
    m = codes.size
    order = np.lexsort((np.arange(m), t, codes))
    sorted_codes = codes[order]
    starts = np.searchsorted(sorted_codes, sorted_codes, side="left")
    rank = np.arange(m) - starts
    targets = np.flatnonzero(rank >= 1)                         # positions in sorted order
    length = rank[targets] + 1
    offset = np.repeat(np.cumsum(length) - length, length)
    within = np.arange(length.sum()) - offset
    expanded_sorted = np.repeat(starts[targets], length) + within
    pseudo = np.repeat(np.arange(targets.size), length)
    is_target = within == np.repeat(length - 1, length)
    return order[expanded_sorted], pseudo, is_target, order[targets]


def cross_validate(formula: Any, data: pd.DataFrame, groups: Hashable | Sequence,
                   n_folds: int = 5, random_state=None, alpha: float = 0.05,
                   progress: bool = False, *, time: Hashable | None = None,
                   method: str = "hdr", landmarks: Sequence[float] | None = None,
                   horizon: float | None = None,
                   **model_and_fit_kwargs: Any) -> CrossValidation:
    """K-fold cross-validation over subjects: PMSE and coverage of prediction sets.

    Subjects (not rows) are shuffled and split into ``n_folds`` folds of nearly equal size.
    For each fold a MEMoE is fitted on the other subjects and the held-out subjects are
    predicted as new subjects from their covariates alone (``kind="marginal"``: the gating and
    the experts' D_k and sigma2_k), with 1 - alpha prediction sets (``method``). With ``time``,
    each held-out row is also predicted dynamically from the same subject's earlier rows
    (``kind="conditional"`` with the earlier rows as history; a subject's first row has none
    and is not scored there).

    Rows with a missing value in a variable of the formulas (or in the subject identifier) are
    left out before splitting, as the fit would drop them.

    Parameters
    ----------
    formula : str or MEMoE
        ``"outcome ~ terms"`` as in :meth:`pymemoe.MEMoE.from_formula`, or a model built by
        ``from_formula``, whose formulas and options are refitted on each fold (keywords given
        here override them). Names in the formulas are looked up in the data and numpy
        (``np``), not in the caller's namespace.
    data : pandas.DataFrame
        Long-format data.
    groups : str or array-like
        Subject identifier column (or one label per row).
    n_folds : int
        Number of folds (2 <= n_folds <= number of subjects).
    random_state : None, int, numpy.random.Generator or numpy.random.SeedSequence
        Seeds the split and, through spawned children, every fit.
    alpha : float
        One minus the level of the prediction sets.
    progress : bool
        Show a progress bar (tqdm if installed, else a text bar on stderr).
    time : str, optional
        Time column: adds the dynamic (one row ahead of the earlier rows) scores.
    method : {"hdr", "equal_tail"}
        Prediction sets.
    landmarks : sequence of float, optional
        Joint models (``survival=``): landmark times s at which the held-out subjects at
        risk are given dynamic event predictions over (s, s + ``horizon``], scored by the
        time-dependent AUC and Brier score (``event_accuracy``); needs ``time``.
    horizon : float, optional
        The prediction window h > 0 of ``landmarks``.
    **model_and_fit_kwargs
        Passed to :meth:`pymemoe.MEMoE.from_formula` (``re_formula``, ``gate_formula``,
        ``n_experts``, ``shared_formula``, ``cov_re``, ``re_structure``, ``scale``,
        ``missing``, ``family``, ``offset``, ``exposure``, ``nAGQ``, ``survival``; ``offset``
        and ``exposure`` as column names, so that every held-out row gets its own) or to
        :meth:`pymemoe.MEMoE.fit` (``n_starts``, ``maxiter``, ``tol``, ``polish``,
        ``start_params``).

    Returns
    -------
    CrossValidation

    Examples
    --------
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.crossval import cross_validate
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> cv = cross_validate("np.log(bili) ~ year", df, "id", n_folds=3, random_state=0,
    ...                     re_formula="~ year", n_experts=1)
    >>> cv.table.index.tolist()
    [1, 2, 3, 'overall']
    >>> round(float(cv.table.loc["overall", "pmse"]), 2)
    1.71
    """
    if not isinstance(formula, str):
        model = formula
        if getattr(model, "spec", None) is None:
            raise ValueError("cross_validate needs a formula, or a MEMoE built by from_formula "
                             "(an array-built model has no formulas to refit)")
        if (model.offset is not None and np.any(model.offset != 0) and model.spec.offset is None
                and model.spec.exposure is None):
            raise ValueError("cross_validate cannot refit a model whose offset or exposure was "
                             "given as an array: give it as a column name of the data")
        formula = model.spec.formula
        model_and_fit_kwargs = {**model.formula_options(), **model_and_fit_kwargs}
    alpha = check_alpha(alpha)
    if method not in SET_METHODS:
        raise ValueError(f"method must be one of {SET_METHODS}, got {method!r}")
    unknown = set(model_and_fit_kwargs) - set(_FIT_KEYS) - set(_MODEL_KEYS)
    if unknown:
        raise TypeError(f"cross_validate got unexpected keyword arguments {sorted(unknown)}; "
                        f"model options are {_MODEL_KEYS}, fit options {_FIT_KEYS}")
    fit_kwargs = {k: v for k, v in model_and_fit_kwargs.items() if k in _FIT_KEYS}
    model_kwargs = {k: v for k, v in model_and_fit_kwargs.items() if k in _MODEL_KEYS}
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    # Rows every part of the model can use, by position.
    work = data.set_axis(pd.RangeIndex(len(data)), axis=0)
    for name in ("offset", "exposure"):
        if model_kwargs.get(name) is not None and not isinstance(model_kwargs[name], str):
            raise ValueError(f"cross_validate takes {name} as a column name of data (each "
                             f"fold's held-out rows are predicted with theirs), got "
                             f"{type(model_kwargs[name]).__name__}")
    family = get_family(model_kwargs.get("family", "gaussian"),
                        n_agq=model_kwargs.get("nAGQ", 1))
    design_kwargs = {k: model_kwargs[k] for k in ("re_formula", "gate_formula", "shared_formula",
                                                  "offset", "exposure") if k in model_kwargs}
    design_kwargs.update(outcome_columns=family.outcome_columns)
    kept, labels = _analysis_rows(formula, work, groups, design_kwargs)
    if time is not None and time not in data.columns:
        raise ValueError(f"time={time!r} is not a column of data")
    survival = model_kwargs.get("survival")
    if landmarks is not None:
        landmarks = _check_landmarks(landmarks, horizon, time, survival)
    codes, subjects = subject_codes(labels)
    n_subjects = len(subjects)
    if int(n_folds) != n_folds or not 2 <= n_folds <= n_subjects:
        raise ValueError(f"n_folds must be an integer between 2 and the number of subjects "
                         f"({n_subjects}), got {n_folds!r}")
    seeds = as_seed_sequence(random_state).spawn(n_folds + 1)
    perm = np.random.default_rng(seeds[0]).permutation(n_subjects)
    fold_of_subject = np.empty(n_subjects, dtype=int)
    for f, members in enumerate(np.array_split(perm, n_folds)):   # n_folds pieces, not subjects
        fold_of_subject[members] = f + 1
    fold_of_row = fold_of_subject[codes]
    group_values = (None if isinstance(groups, str) or np.ndim(groups) == 0
                    else np.asarray(groups))

    columns = ["fold", "subject", "observed", "predicted", "covered", "set_length"]
    if time is not None:
        columns += ["predicted_dynamic", "covered_dynamic"]
    out = pd.DataFrame(np.nan, index=pd.RangeIndex(kept.size), columns=columns)
    out["fold"] = fold_of_row
    out["subject"] = labels
    train_subjects: dict[int, pd.Index] = {}
    event_parts: list[pd.DataFrame] = []
    for f in progress_bar(range(1, n_folds + 1), n_folds, "cross-validation", progress):
        test_mask = fold_of_row == f
        train_pos, test_pos = kept[~test_mask], kept[test_mask]
        train, test = work.iloc[train_pos], work.iloc[test_pos].reset_index(drop=True)
        train_groups = groups if group_values is None else group_values[train_pos]
        res = _fit_fold(formula, train, train_groups, model_kwargs, fit_kwargs, seeds[f])
        train_subjects[f] = res.model.data.subjects
        try:
            _, laws = laws_of(res, test, "marginal")
            y = observed_outcome(res, test)
        except ValueError as err:
            raise ValueError(f"fold {f}: the held-out subjects cannot be predicted: {err}") from None
        idx = np.flatnonzero(test_mask)
        out.loc[idx, "observed"] = y
        out.loc[idx, "predicted"] = laws.mean()
        if laws.continuous:
            rows, lower, upper = set_arrays(laws, alpha, method, 400)
            out.loc[idx, "covered"] = covered_rows(rows, lower, upper, y, y.size).astype(float)
            out.loc[idx, "set_length"] = np.bincount(rows, upper - lower, minlength=y.size)
        if time is not None:
            t = pd.to_numeric(test[time]).to_numpy(dtype=float)
            expanded, pseudo, is_target, target_pos = _dynamic_layout(codes[test_mask], t)
            if target_pos.size:
                dyn_rows = design_rows(res, test.iloc[expanded], outcome=True, need_groups=True,
                                       groups=pseudo)
                history = np.isfinite(dyn_rows.endog) & ~is_target
                post = subject_posterior(res, dyn_rows, history)
                laws = component_laws(res, dyn_rows, "conditional", post).subset(is_target)
                out.loc[idx[target_pos], "predicted_dynamic"] = laws.mean()
                if laws.continuous:
                    r, lo_d, up_d = set_arrays(laws, alpha, method, 400)
                    out.loc[idx[target_pos], "covered_dynamic"] = covered_rows(
                        r, lo_d, up_d, y[target_pos], target_pos.size).astype(float)
        if landmarks is not None:
            test_labels = labels[test_mask]
            test_groups = groups if group_values is None else test_labels
            event_parts.append(_landmark_predictions(res, test, test_groups, test_labels,
                                                     survival, landmarks, horizon, time, f))
    out.index = data.index[kept]
    out = out[np.isfinite(out["observed"].to_numpy(dtype=float))]
    table = _cv_table(out, n_folds, time is not None)
    # missing coverage: a discrete law (no sets), or a subject's first row (no dynamic prediction)
    dtypes = {"fold": int, "covered": bool if out["covered"].notna().all() else "boolean"}
    if time is not None:
        dtypes["covered_dynamic"] = "boolean"      # missing for a subject's first row
    predictions = out.astype(dtypes)
    folds = pd.Series(fold_of_subject, index=subjects, name="fold")
    event_predictions = event_accuracy = epoce = None
    if landmarks is not None:
        event_predictions = pd.concat(event_parts, ignore_index=True)
        event_accuracy = _event_accuracy(event_predictions, landmarks, horizon)
        epoce = _epoce(event_predictions, landmarks)
    return CrossValidation(table=table, predictions=predictions, folds=folds,
                           train_subjects=train_subjects, alpha=alpha, method=method,
                           event_accuracy=event_accuracy, event_predictions=event_predictions,
                           epoce=epoce)


def _epoce(predictions: pd.DataFrame, landmarks: np.ndarray) -> pd.DataFrame:
    """Minus the mean held-out prognostic log-likelihood per landmark, with its standard
    error (the spread over subjects / sqrt(n))."""
    rows = []
    for s in landmarks:                        # loops over landmarks, not subjects
        values = (predictions.loc[predictions["landmark"] == s, "log_prognostic"].to_numpy()
                  if len(predictions) else np.zeros(0))
        n = values.size
        rows.append({"n_at_risk": n, "epoce": -values.mean() if n else np.nan,
                     "std err": values.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan})
    return pd.DataFrame(rows, index=pd.Index(landmarks, name="landmark"))


def _check_landmarks(landmarks, horizon, time, survival) -> np.ndarray:
    """The landmarks as floats, after checking that they can be scored."""
    if survival is None:
        raise ValueError("landmarks= scores the event predictions of a joint model: give "
                         "survival=TimeToEvent(...)")
    if time is None:
        raise ValueError("landmarks= needs time= (the measurement times: the predictions "
                         "use each subject's measurements up to the landmark)")
    values = np.atleast_1d(np.asarray(landmarks, dtype=float))
    if values.ndim != 1 or not values.size or not np.isfinite(values).all() or \
            (values < 0).any():
        raise ValueError(f"landmarks must be one or more times >= 0, got {landmarks!r}")
    if horizon is None or not np.isfinite(horizon) or horizon <= 0:
        raise ValueError(f"horizon must be a time > 0 with landmarks, got {horizon!r}")
    return values


def _landmark_predictions(res, test: pd.DataFrame, groups, labels: np.ndarray, survival,
                          landmarks: np.ndarray, horizon: float, time, fold: int
                          ) -> pd.DataFrame:
    """The held-out subjects at risk at each landmark, with their follow-up and the fold's
    predicted probability of each cause in (s, s + h]."""
    per_subject = pd.DataFrame({"subject": labels,
                                "time": pd.to_numeric(test[survival.time]).to_numpy(dtype=float),
                                "event": test[survival.event].astype(float).to_numpy()})
    if survival.entry is not None:
        per_subject["entry"] = pd.to_numeric(test[survival.entry]).to_numpy(dtype=float)
    per_subject = per_subject.groupby("subject", sort=False).first()
    parts = []
    for s in landmarks:                        # loops over landmarks, not subjects
        risk = per_subject["time"] > s
        if "entry" in per_subject:
            risk &= per_subject["entry"] <= s
        at_risk = per_subject.index[risk]
        if not at_risk.size:
            continue
        rows = np.flatnonzero(pd.Index(labels).isin(at_risk))
        row_groups = groups if isinstance(groups, str) else np.asarray(groups)[rows]
        pred = dynamic_prediction(res, test.iloc[rows], s, horizon, time, groups=row_groups,
                                  n_draws=0)
        causes = [c for c in pred.columns if c.startswith("P(") and not c.startswith(
            ("P(expert", "P(any"))]
        frame = per_subject.loc[pred.index].copy()
        frame[causes] = pred[causes].to_numpy()
        frame["log_prognostic"] = prognostic_loglik(res, test.iloc[rows], s, time,
                                                    groups=row_groups).loc[pred.index].to_numpy()
        frame.insert(0, "landmark", s)
        frame.insert(0, "fold", fold)
        parts.append(frame.reset_index())
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _event_accuracy(predictions: pd.DataFrame, landmarks: np.ndarray, horizon: float
                    ) -> pd.DataFrame:
    """The pooled AUC and Brier score of each landmark and cause."""
    causes = [c for c in predictions.columns if c.startswith("P(")]     # P(<cause>)
    rows, index = [], []
    for s in landmarks:                        # loops over landmarks and causes, not subjects
        at = predictions[predictions["landmark"] == s] if len(predictions) else predictions
        for c, column in enumerate(causes):
            if len(at):
                scores = dynamic_accuracy_arrays(
                    at[column].to_numpy(), at["time"].to_numpy(), at["event"].to_numpy(int),
                    s, horizon, cause=c + 1,
                    entry=at["entry"].to_numpy() if "entry" in at else None)
            else:
                scores = {"n_at_risk": 0, "n_cases": 0, "n_controls": 0, "n_censored": 0,
                          "auc": np.nan, "brier": np.nan}
            rows.append(scores)
            index.append((float(s), column[2:-1]))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index,
                                                                 names=["landmark", "cause"]))


# The formulas' names that are not columns of the data are looked up in the frame that calls
# build_design / from_formula: these two small functions keep that namespace nearly empty.

def _analysis_rows(formula, data, groups, design_kwargs):
    _, arrays = build_design(formula, data, groups, missing="drop", **design_kwargs)
    return arrays.row_index.to_numpy(), arrays.groups


def _fit_fold(formula, data, groups, model_kwargs, fit_kwargs, seed):
    return MEMoE.from_formula(formula, data, groups, **model_kwargs).fit(random_state=seed,
                                                                         **fit_kwargs)


def _cv_table(out: pd.DataFrame, n_folds: int, dynamic: bool) -> pd.DataFrame:
    err2 = (out["observed"] - out["predicted"]) ** 2
    parts = {
        "n_subjects": out.groupby("fold")["subject"].nunique(),
        "n_obs": out.groupby("fold").size(),
        "pmse": err2.groupby(out["fold"]).mean(),
        "coverage": out.groupby("fold")["covered"].mean(),
        "mean_length": out.groupby("fold")["set_length"].mean(),
    }
    overall = {"n_subjects": out["subject"].nunique(), "n_obs": len(out), "pmse": err2.mean(),
               "coverage": out["covered"].mean(), "mean_length": out["set_length"].mean()}
    if dynamic:
        scored = out["predicted_dynamic"].notna()
        d = out[scored]
        derr2 = (d["observed"] - d["predicted_dynamic"]) ** 2
        parts["n_dynamic"] = d.groupby("fold").size()
        parts["pmse_dynamic"] = derr2.groupby(d["fold"]).mean()
        parts["coverage_dynamic"] = d.groupby("fold")["covered_dynamic"].mean()
        overall.update(n_dynamic=len(d), pmse_dynamic=derr2.mean(),
                       coverage_dynamic=d["covered_dynamic"].mean())
    table = pd.DataFrame(parts).reindex(range(1, n_folds + 1))
    table = pd.concat([table, pd.DataFrame(overall, index=["overall"])])
    table.index.name = "fold"
    for col in ("n_subjects", "n_obs", "n_dynamic"):
        if col in table:
            table[col] = table[col].fillna(0).astype(int)
    return table
