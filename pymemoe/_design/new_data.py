"""Designs of new rows from a fitted spec: the levels and stateful transforms learnt in
fitting are applied unchanged (the stored patsy ``DesignInfo`` objects), never re-learnt.

:func:`build_new_design` builds the fixed-effects, random-effects, gating and shared designs,
:func:`build_new_endog` the outcome (NaN where it is missing, so that rows to predict can be
kept), :func:`new_offset` the offset column plus the log of the exposure column.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import patsy

from .checks import plain_label
from .dtypes import plain_dtypes
from .formula import DesignSpec
from .variables import data_columns_of_code

__all__ = ["build_new_design", "build_new_endog", "new_offset"]

#: the keyword of ``from_formula`` that gave each design (errors name the formula by it)
KEYWORDS = {"endog": "formula", "exog": "formula", "exog_re": "re_formula",
            "exog_gate": "gate_formula", "exog_shared": "shared_formula"}


def new_offset(spec: DesignSpec, data: pd.DataFrame) -> np.ndarray:
    """The offset of the linear predictor on new rows: the offset column plus the log of the
    exposure column, as stored in ``spec`` (zeros when the model has neither, or had them as
    arrays)."""
    out = np.zeros(len(data))
    for name, transform in ((spec.offset, lambda v: v), (spec.exposure, np.log)):
        if name is None:
            continue
        if name not in data.columns:
            raise ValueError(f"the model's {'offset' if name == spec.offset else 'exposure'} "
                             f"column {name!r} is not a column of the new data")
        values = pd.to_numeric(data[name], errors="raise").to_numpy(dtype=float)
        if name == spec.exposure and np.any(values <= 0):
            j = int(np.flatnonzero(values <= 0)[0])
            raise ValueError(f"the exposure column {name!r} must be positive: row "
                             f"{plain_label(data.index[j])!r} of the new data has {values[j]:g}")
        out = out + transform(values)
    return out


def build_new_design(spec: DesignSpec, data: pd.DataFrame, with_endog: bool = False,
                     gating: bool = True) -> dict[str, np.ndarray]:
    """Rebuild the design matrices for new data from the stored ``DesignInfo`` objects.

    Levels and stateful transforms are those learnt at fit time; a categorical level never seen
    in fitting raises a ``ValueError`` naming the formula, and so does a B-spline (``bs``)
    evaluated outside the range of the fitting data (its knots), with the remedy
    (``lower_bound``/``upper_bound``). Nullable pandas dtypes are accepted (:func:`plain_dtypes`).
    With ``gating=False`` the gating design is not built (``exog_gate`` is then absent).
    """
    data = plain_dtypes(data)
    na = patsy.NAAction(on_NA="raise")
    parts = {
        "exog": (spec.exog_info, spec.formula),
        "exog_re": (spec.exog_re_info, spec.re_formula),
    }
    if gating:
        parts["exog_gate"] = (spec.exog_gate_info, spec.gate_formula)
    if spec.exog_shared_info is not None:
        parts["exog_shared"] = (spec.exog_shared_info, spec.shared_formula)
    if with_endog:
        parts["endog"] = (spec.endog_info, spec.formula)
    out: dict[str, np.ndarray] = {}
    for key, (info, text) in parts.items():
        what = KEYWORDS[key]
        try:
            (frame,) = patsy.build_design_matrices([info], data, NA_action=na,
                                                   return_type="dataframe")
        except patsy.PatsyError as err:
            raise ValueError(_new_data_message(spec, what, text, info, data, err)) from None
        if key == "exog_shared" and spec.shared_drop_intercept:
            frame = frame.drop(columns="Intercept")
        values = frame.to_numpy(dtype=float)
        out[key] = values[:, 0] if key == "endog" else values.reshape(len(data), -1)
    if "exog_shared" not in out:
        out["exog_shared"] = np.empty((len(data), 0))
    return out


def _new_data_message(spec: DesignSpec, what: str, text: str, info, data: pd.DataFrame,
                      err: Exception) -> str:
    """Why a stored design cannot be evaluated on new data, with the remedy when known."""
    message = f"{what} {text!r} cannot be evaluated on the new data: {err}"
    if "outside the outermost knots" not in str(err):
        return message
    # patsy's B-splines refuse to extrapolate: name the term, the fitting range and the fix
    sample = spec.sample if spec.sample is not None else pd.DataFrame()
    for factor in info.factor_infos:
        code = getattr(factor, "code", str(factor))
        if "bs(" not in code.replace(" ", ""):
            continue
        for column in data_columns_of_code(code, set(sample.columns) & set(data.columns)):
            fit = pd.to_numeric(sample[column], errors="coerce")
            new = pd.to_numeric(data[column], errors="coerce")
            if (new < fit.min()).any() or (new > fit.max()).any():
                return (
                    f"{what} {text!r}: the spline term {code!r} was fitted with knots on "
                    f"{column!r} from {fit.min():g} to {fit.max():g} (the range of the fitting "
                    f"data), and the new data have {column!r} from {new.min():g} to "
                    f"{new.max():g}; B-splines are not defined outside their outer knots. Refit "
                    f"with the bounds of the values to predict, e.g. bs({column}, ..., "
                    f"lower_bound={min(fit.min(), new.min()):g}, "
                    f"upper_bound={max(fit.max(), new.max()):g}), or predict within the range"
                )
    return message + (" (a spline evaluated outside its outer knots: refit with bs(..., "
                      "lower_bound=..., upper_bound=...) covering the values to predict)")


def build_new_endog(spec: DesignSpec, data: pd.DataFrame) -> np.ndarray:
    """The outcome (the formula's left-hand side, transforms included) on new data, with NaN
    where it is missing or non-finite (e.g. log(0)) instead of raising or dropping, so that rows
    without an outcome can be kept as rows to predict."""
    data = plain_dtypes(data)
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
    values = frame.to_numpy(dtype=float)
    values = values[:, 0] if values.shape[1] == 1 else values       # (n, 2): successes, failures
    return np.where(np.isfinite(values), values, np.nan)
