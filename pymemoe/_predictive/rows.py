"""The rows to predict: designs of the fitting data or of new data, and which rows are history."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

import numpy as np
import pandas as pd

from .._design.checks import check_constant_within
from .._design.new_data import build_new_design, build_new_endog, new_offset
from .._design.questions import required_variables
from .._design.subjects import group_labels

__all__ = ["KINDS", "DesignRows", "design_rows", "history_mask", "check_landmark",
           "forbid_landmark", "observed_outcome", "require_rows"]

KINDS = ("marginal", "expert", "conditional")


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

    New data are rebuilt through the model's formulas (:func:`pymemoe._design.new_data.build_new_design`:
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
        labels, _ = group_labels(newdata, groups, spec.groups)
        if gating:
            check_constant_within(parts["exog_gate"], labels, spec.exog_gate_names,
                                  f"gate_formula {spec.gate_formula!r}")
    t = None
    if time is not None:
        if time not in newdata.columns:
            raise ValueError(f"time={time!r} is not a column of newdata")
        t = pd.to_numeric(newdata[time], errors="raise").to_numpy(dtype=float)
    offset = new_offset(spec, newdata) if model.family.takes_offset else None
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


def check_landmark(landmark, time) -> None:
    """A ValueError when a landmark is given without the time column it refers to."""
    if landmark is not None and time is None:
        raise ValueError("landmark needs time= (the name of the time column of newdata)")


def forbid_landmark(landmark, kind: str) -> None:
    """A ValueError for a landmark with a prediction kind that has no history."""
    if landmark is not None:
        raise ValueError(f"landmark applies to kind='conditional' only, not kind={kind!r}")


# ---------------------------------------------------------------------------------------------
# Posterior of each subject from its history rows


# ---------------------------------------------------------------------------------------------
# Laws of one observation given the expert


# ---------------------------------------------------------------------------------------------
# Delta-method standard errors


# ---------------------------------------------------------------------------------------------
# Residuals


# User-facing predictions


