"""Formulas to design matrices: the only module of pymemoe that calls patsy.

A MEMoE is described by up to four formulas evaluated on one long-format DataFrame (one row per
visit) plus a subject identifier:

* ``formula``          outcome and the fixed effects that differ between experts, ``y ~ X``;
* ``re_formula``       the random-effects design ``Z`` (``"0"`` for none);
* ``gate_formula``     the baseline covariates ``w`` of the multinomial-logit gating; they must be
                       constant within each subject;
* ``shared_formula``   fixed effects common to all experts (optional). Its intercept, if any, is
                       dropped because the intercept already belongs to ``formula``.

Rows with a missing or non-finite value in any variable of any formula, or in the subject
identifier, are dropped jointly (``missing="drop"``) and counted, or raise (``missing="raise"``).
The designs are then built once more on the kept rows, so that stateful transforms (``center``,
``standardize``) and categorical levels are learnt from the analysis sample. The resulting patsy
``DesignInfo`` objects are kept in a frozen :class:`DesignSpec` so that designs for new data are
rebuilt with the same levels and transforms (:func:`build_new_design`), never by re-parsing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable

import numpy as np
import pandas as pd
import patsy

from .data import check_constant_within

__all__ = ["DesignSpec", "DesignArrays", "build_design", "build_new_design", "build_new_endog"]


@dataclass(frozen=True)
class DesignSpec:
    """What was learnt from the formulas and the analysis data; enough to rebuild designs.

    Attributes
    ----------
    formula, re_formula, gate_formula, shared_formula : str or None
        The formulas as given.
    groups : str or None
        Name of the subject column, or None when subject labels were passed as an array.
    endog_name : str
        Name of the outcome (the left-hand side of ``formula``).
    endog_info : patsy.DesignInfo
        Stored design information of the outcome.
    exog_info, exog_re_info, exog_gate_info, exog_shared_info : patsy.DesignInfo
        Stored design information of each part (``exog_shared_info`` is None without
        ``shared_formula``).
    shared_drop_intercept : bool
        Whether the shared design's ``Intercept`` column is dropped.
    """

    formula: str
    re_formula: str
    gate_formula: str
    shared_formula: str | None
    groups: str | None
    endog_name: str
    endog_info: Any
    exog_info: Any
    exog_re_info: Any
    exog_gate_info: Any
    exog_shared_info: Any
    shared_drop_intercept: bool

    @property
    def exog_names(self) -> list[str]:
        return list(self.exog_info.column_names)

    @property
    def exog_re_names(self) -> list[str]:
        return list(self.exog_re_info.column_names)

    @property
    def exog_gate_names(self) -> list[str]:
        return list(self.exog_gate_info.column_names)

    @property
    def exog_shared_names(self) -> list[str]:
        if self.exog_shared_info is None:
            return []
        names = list(self.exog_shared_info.column_names)
        return [n for n in names if not (self.shared_drop_intercept and n == "Intercept")]


@dataclass(frozen=True)
class DesignArrays:
    """Row-level arrays of the analysis sample, in the row order of the user's data."""

    endog: np.ndarray
    exog: np.ndarray
    exog_re: np.ndarray
    exog_gate: np.ndarray
    exog_shared: np.ndarray
    groups: np.ndarray
    row_index: pd.Index
    n_dropped: int


def _eval_env(depth: int) -> patsy.EvalEnvironment:
    # numpy is offered under its usual alias so that "np.log(bili)" works even when the caller
    # did not import it; the caller's own names take precedence.
    env = patsy.EvalEnvironment.capture(depth + 1)
    return env.with_outer_namespace({"np": np})


def _as_rhs(formula: str) -> str:
    formula = formula.strip()
    return formula if formula.startswith("~") else "~ " + formula


def _patsy_call(what: str, formula: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except patsy.PatsyError as err:
        raise ValueError(f"{what} {formula!r} cannot be evaluated on the data: {err}") from None


def _nonfinite_rows(frame: pd.DataFrame) -> np.ndarray:
    values = frame.to_numpy(dtype=float)
    return ~np.isfinite(values).all(axis=1)


def _group_labels(data: pd.DataFrame, groups: Hashable | np.ndarray | pd.Series) -> tuple[np.ndarray, str | None]:
    if isinstance(groups, str) or (np.ndim(groups) == 0 and groups is not None):
        if groups not in data.columns:
            raise ValueError(
                f"groups={groups!r} is not a column of the data; columns are {list(data.columns)}"
            )
        return data[groups].to_numpy(), str(groups)
    labels = np.asarray(groups)
    if labels.ndim != 1 or labels.shape[0] != len(data):
        raise ValueError(
            f"groups must be a column name or an array with one label per row ({len(data)} rows); "
            f"got shape {labels.shape}"
        )
    return labels, None


def build_design(
    formula: str,
    data: pd.DataFrame,
    groups: Hashable | np.ndarray | pd.Series,
    re_formula: str = "~1",
    gate_formula: str = "~1",
    shared_formula: str | None = None,
    missing: str = "drop",
    eval_depth: int = 0,
) -> tuple[DesignSpec, DesignArrays]:
    """Evaluate the formulas on ``data`` and return the spec and the row-level arrays.

    Parameters
    ----------
    formula, re_formula, gate_formula, shared_formula : str
        See the module docstring. ``re_formula="0"`` means no random effects.
    data : pandas.DataFrame
        Long-format data, one row per observation. It is never modified.
    groups : str or array-like
        Subject identifier: a column of ``data`` or one label per row (any hashable type).
    missing : {"drop", "raise"}
        What to do with rows that have a missing or non-finite value in a used variable.
    eval_depth : int
        How many frames above the caller of this function the formulas' names are looked up.

    Returns
    -------
    spec : DesignSpec
    arrays : DesignArrays
    """
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    if len(data) == 0:
        raise ValueError("data has no rows")
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(f"formula must be a string 'outcome ~ terms', got {formula!r}")
    group_values, group_name = _group_labels(data, groups)
    env = _eval_env(eval_depth + 1)
    rhs = {
        "re_formula": _as_rhs(re_formula),
        "gate_formula": _as_rhs(gate_formula),
    }
    if shared_formula is not None:
        rhs["shared_formula"] = _as_rhs(shared_formula)

    # Pass 1: find the rows every part can use (patsy drops missing values per formula). The
    # rows are addressed by position, so any index (repeated labels included) is fine.
    user_index = data.index
    data = data.set_axis(pd.RangeIndex(len(data)), axis=0)   # a new frame; the user's is untouched
    frames = _build_all(formula, rhs, data, env, patsy.NAAction(on_NA="drop"))
    keep_mask = ~pd.isna(pd.Series(group_values)).to_numpy()
    for frame in frames.values():
        rows = np.zeros(len(data), dtype=bool)
        rows[frame.index.to_numpy()[~_nonfinite_rows(frame)]] = True
        keep_mask &= rows
    n_dropped = int((~keep_mask).sum())
    if n_dropped and missing == "raise":
        # Name the formula (and patsy's factor) at fault.
        strict = patsy.NAAction(on_NA="raise")
        _build_all(formula, rhs, data, env, strict, what_prefix="with missing='raise', ")
        raise ValueError(
            f"with missing='raise': {n_dropped} rows have a missing or non-finite value "
            f"(in a design column or in the subject identifier)"
        )
    if keep_mask.sum() == 0:
        raise ValueError("no rows left after dropping rows with missing or non-finite values")

    # Pass 2: build on the analysis sample so that transforms and levels are learnt from it.
    used = data.loc[keep_mask] if n_dropped else data
    frames = _build_all(formula, rhs, used, env, patsy.NAAction(on_NA="raise"))
    y_frame, x_frame = frames["formula_lhs"], frames["formula"]
    if y_frame.shape[1] != 1:
        raise ValueError(
            f"formula {formula!r}: the outcome must be one numeric column, got {y_frame.shape[1]} "
            f"columns {list(y_frame.columns)} (is it non-numeric?)"
        )
    shared_frame = frames.get("shared_formula")
    drop_intercept = False
    if shared_frame is not None:
        drop_intercept = "Intercept" in shared_frame.columns
        if drop_intercept:
            shared_frame = shared_frame.drop(columns="Intercept")
        overlap = set(shared_frame.columns) & set(x_frame.columns)
        if overlap:
            raise ValueError(
                f"shared_formula {shared_formula!r} repeats terms of formula {formula!r}: "
                f"{sorted(overlap)}; a term is either expert-specific or shared"
            )
    gate_frame = frames["gate_formula"]
    group_used = group_values[keep_mask]
    check_constant_within(gate_frame.to_numpy(dtype=float), group_used, list(gate_frame.columns),
                          f"gate_formula {gate_formula!r}")

    spec = DesignSpec(
        formula=formula,
        re_formula=re_formula,
        gate_formula=gate_formula,
        shared_formula=shared_formula,
        groups=group_name,
        endog_name=str(y_frame.columns[0]),
        endog_info=y_frame.design_info,
        exog_info=x_frame.design_info,
        exog_re_info=frames["re_formula"].design_info,
        exog_gate_info=gate_frame.design_info,
        exog_shared_info=None if shared_frame is None else frames["shared_formula"].design_info,
        shared_drop_intercept=drop_intercept,
    )
    n_used = len(used)
    arrays = DesignArrays(
        endog=y_frame.to_numpy(dtype=float)[:, 0],
        exog=x_frame.to_numpy(dtype=float),
        exog_re=frames["re_formula"].to_numpy(dtype=float).reshape(n_used, -1),
        exog_gate=gate_frame.to_numpy(dtype=float),
        exog_shared=(np.empty((n_used, 0)) if shared_frame is None
                     else shared_frame.to_numpy(dtype=float)),
        groups=group_used,
        row_index=user_index[keep_mask],
        n_dropped=n_dropped,
    )
    return spec, arrays


def _build_all(formula, rhs, data, env, na_action, what_prefix=""):
    y, x = _patsy_call(what_prefix + "formula", formula, patsy.dmatrices, formula, data,
                       eval_env=env, NA_action=na_action, return_type="dataframe")
    frames = {"formula_lhs": y, "formula": x}
    for name, text in rhs.items():
        frames[name] = _patsy_call(what_prefix + name, text, patsy.dmatrix, text, data,
                                   eval_env=env, NA_action=na_action, return_type="dataframe")
    return frames


def build_new_design(spec: DesignSpec, data: pd.DataFrame, with_endog: bool = False) -> dict[str, np.ndarray]:
    """Rebuild the design matrices for new data from the stored ``DesignInfo`` objects.

    Levels and stateful transforms are those learnt at fit time; a categorical level never seen
    in fitting raises a ``ValueError`` naming the formula.
    """
    na = patsy.NAAction(on_NA="raise")
    parts = {
        "exog": (spec.exog_info, spec.formula),
        "exog_re": (spec.exog_re_info, spec.re_formula),
        "exog_gate": (spec.exog_gate_info, spec.gate_formula),
    }
    if spec.exog_shared_info is not None:
        parts["exog_shared"] = (spec.exog_shared_info, spec.shared_formula)
    out: dict[str, np.ndarray] = {}
    for key, (info, text) in parts.items():
        (frame,) = _patsy_call(key.replace("exog", "formula"), text, patsy.build_design_matrices,
                               [info], data, NA_action=na, return_type="dataframe")
        if key == "exog_shared" and spec.shared_drop_intercept:
            frame = frame.drop(columns="Intercept")
        out[key] = frame.to_numpy(dtype=float).reshape(len(data), -1)
    if "exog_shared" not in out:
        out["exog_shared"] = np.empty((len(data), 0))
    if with_endog:
        (frame,) = _patsy_call("formula", spec.formula, patsy.build_design_matrices,
                               [spec.endog_info], data, NA_action=na, return_type="dataframe")
        out["endog"] = frame.to_numpy(dtype=float)[:, 0]
    return out


def build_new_endog(spec: DesignSpec, data: pd.DataFrame) -> np.ndarray:
    """The outcome (the formula's left-hand side, transforms included) on new data, with NaN
    where it is missing or non-finite (e.g. log(0)) instead of raising or dropping, so that rows
    without an outcome can be kept as rows to predict."""
    try:
        (frame,) = patsy.build_design_matrices([spec.endog_info], data,
                                               NA_action=patsy.NAAction(NA_types=[]),
                                               return_type="dataframe")
    except patsy.PatsyError as err:
        raise ValueError(
            f"formula {spec.formula!r}: the outcome {spec.endog_name!r} cannot be evaluated on "
            f"the new data ({err}). Conditional predictions, posterior classes and coverage need "
            f"the outcome's column(s), numeric, with NaN for rows without an observation; use "
            f"kind='marginal' for predictions from covariates alone"
        ) from None
    values = frame.to_numpy(dtype=float)[:, 0]
    return np.where(np.isfinite(values), values, np.nan)
