"""Questions about the formulas of a fitted spec: the rest of pymemoe asks here, not patsy.

Which columns each formula reads (:func:`required_variables`), its factors and their levels
(:func:`formula_factors`), the values of a column in the analysis sample
(:func:`sample_column`), a frame on which the formulas can be evaluated with other columns at
typical values (:func:`typical_frame`, for plotting grids), and the formula with another
outcome (:func:`replace_outcome`, for a parametric bootstrap).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

import numpy as np
import pandas as pd

from .formula import DesignSpec
from .variables import data_columns_of_code

__all__ = ["required_variables", "Factor", "formula_factors", "sample_column", "typical_frame",
           "replace_outcome"]


def required_variables(spec: DesignSpec) -> dict[str, list[str]]:
    """The data columns each formula of a fitted spec uses.

    Returns
    -------
    dict
        ``{"outcome": [...], "formula": [...], "re_formula": [...], "gate_formula": [...],
        "shared_formula": [...]}``: the columns read by the outcome (the left-hand side of
        ``formula``), by the right-hand side of ``formula`` and by the other formulas (the
        ``shared_formula`` key only when there is one). The subject column is not included.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"id": [1, 1, 2, 2, 3, 3], "t": [0., 1, 0, 1, 0, 1],
    ...                    "y": [1., 2, 2, 4, 3, 5], "sex": list("ffmmff"), "age": [50., 50, 60, 60, 40, 40]})
    >>> from pymemoe._design.formula import build_design
    >>> spec, _ = build_design("np.log(y) ~ t", df, "id", gate_formula="~ C(sex) + center(age)")
    >>> required_variables(spec)
    {'outcome': ['y'], 'formula': ['t'], 're_formula': [], 'gate_formula': ['sex', 'age']}

    A model with an offset or exposure column also lists it (keys ``"offset"``,
    ``"exposure"``).
    """
    out = {key: list(value) for key, value in spec.variables.items()}
    for key in ("offset", "exposure"):
        if getattr(spec, key, None) is not None:
            out[key] = [getattr(spec, key)]
    return out


@dataclass(frozen=True)
class Factor:
    """One factor of a fitted formula: a variable or an expression of variables.

    Attributes
    ----------
    part : str
        ``"outcome"``, ``"formula"``, ``"re_formula"``, ``"gate_formula"`` or
        ``"shared_formula"``.
    formula : str
        The text of that formula.
    code : str
        The factor's Python code as patsy normalised it, e.g. ``"np.log(bili)"``, ``"C(sex)"``.
    columns : tuple of str
        The data columns it reads.
    levels : tuple or None
        The categorical levels learnt in fitting (sorted; the first is the reference of the
        default treatment coding), None for a numeric factor.
    """

    part: str
    formula: str
    code: str
    columns: tuple
    levels: tuple | None


def formula_factors(spec: DesignSpec) -> list[Factor]:
    """Every factor of every formula of a fitted spec, in formula order.

    Examples
    --------
    >>> df = pd.DataFrame({"id": [1, 1, 2, 2, 3, 3], "t": [0., 1, 0, 1, 0, 1],
    ...                    "y": [1., 2, 2, 4, 3, 5], "sex": list("ffmmff")})
    >>> from pymemoe._design.formula import build_design
    >>> spec, _ = build_design("y ~ t", df, "id", gate_formula="~ C(sex)")
    >>> [(f.part, f.code, f.columns, f.levels) for f in formula_factors(spec)]
    [('outcome', 'y', ('y',), None), ('formula', 't', ('t',), None), ('re_formula', 'Intercept', (), None), ('gate_formula', 'C(sex)', ('sex',), ('f', 'm'))]
    """
    parts = [("outcome", spec.formula, spec.endog_info), ("formula", spec.formula, spec.exog_info),
             ("re_formula", spec.re_formula, spec.exog_re_info),
             ("gate_formula", spec.gate_formula, spec.exog_gate_info),
             ("shared_formula", spec.shared_formula, spec.exog_shared_info)]
    known = set().union(*spec.variables.values()) if spec.variables else set()
    out = []
    for part, text, info in parts:
        if info is None:
            continue
        if not info.factor_infos and "Intercept" in info.column_names:
            out.append(Factor(part, text, "Intercept", (), None))
            continue
        for factor, finfo in info.factor_infos.items():
            code = getattr(factor, "code", str(factor))
            levels = tuple(finfo.categories) if finfo.type == "categorical" else None
            out.append(Factor(part, text, code, tuple(data_columns_of_code(code, known)), levels))
    return out


def sample_column(spec: DesignSpec, column: Hashable) -> np.ndarray:
    """Values of a data column in the analysis sample (the fitted rows, in their order).

    Only the columns the formulas use are kept with the model; ask for another and the
    ValueError says so (pass the data then).
    """
    sample = spec.sample
    if sample is None or column not in sample.columns:
        kept = [] if sample is None else list(sample.columns)
        raise ValueError(f"column {column!r} is not used by the formulas, so the model does not "
                         f"keep it (it keeps {kept}); pass data= with that column")
    return sample[column].to_numpy()


def _typical_value(values: pd.Series, levels: tuple | None, where: str):
    if levels is not None:
        return levels[0]
    if pd.api.types.is_bool_dtype(values.dtype):
        return float(values.astype(float).mean())
    if pd.api.types.is_numeric_dtype(values.dtype):
        return float(pd.to_numeric(values).astype(float).mean())
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.categories[0]
    try:
        return sorted(pd.unique(values.dropna()))[0]
    except (TypeError, IndexError):
        raise ValueError(f"cannot set column {values.name!r} (used in {where}) to a typical "
                         f"value: it is neither numeric nor categorical with ordered "
                         f"levels") from None


def typical_frame(spec: DesignSpec, vary: dict, sample: pd.DataFrame | None = None,
                  include_outcome: bool = False) -> pd.DataFrame:
    """A frame on which the formulas can be evaluated: the columns in ``vary`` take the given
    values, every other column the formulas use is held at a typical value.

    The typical value of a column is its first level if a formula uses it as a categorical
    factor (the first of the levels learnt in fitting, the reference of the default coding),
    otherwise its mean over the rows of the analysis sample (a proportion for a boolean). The
    model's offset column, if any, is set to 0 and its exposure column to 1 (means per unit of
    exposure).

    Parameters
    ----------
    spec : DesignSpec
    vary : dict
        Column -> values (all of one length); e.g. ``{"year": grid}``.
    sample : pandas.DataFrame, optional
        Rows whose means are used (default: the analysis sample kept in the spec).
    include_outcome : bool
        Also set the outcome's columns (normally left out: predictions do not need them).

    Raises
    ------
    ValueError
        When a factor of a formula reads no data column (an outside array, say), so that it
        cannot be evaluated on the new frame; the message names the formula and the factor.
    """
    sample = spec.sample if sample is None else sample
    lengths = {len(np.atleast_1d(v)) for v in vary.values()}
    if len(lengths) != 1:
        raise ValueError("the values of vary must all have one length")
    n = lengths.pop()
    frame = {column: np.atleast_1d(values) for column, values in vary.items()}
    levels: dict = {}
    where: dict = {}
    for factor in formula_factors(spec):
        if factor.part == "outcome" and not include_outcome:
            continue
        if factor.code == "Intercept":
            continue
        place = f"{factor.part} {factor.formula!r}, term {factor.code!r}"
        if not factor.columns:
            raise ValueError(f"cannot evaluate {place} on new rows: it reads no column of the "
                             f"data (only data columns can be set)")
        if factor.levels is not None and len(factor.columns) == 1:
            levels.setdefault(factor.columns[0], factor.levels)
        for column in factor.columns:
            where.setdefault(column, place)
    for column, place in where.items():
        if column in frame:
            continue
        if sample is None or column not in sample.columns:
            raise ValueError(f"column {column!r} (used in {place}) is not in the data to take "
                             f"its typical value from")
        frame[column] = [_typical_value(sample[column], levels.get(column), place)] * n
    # an offset / exposure column is set to 0 / 1: means per unit of exposure (a typical
    # count would mix the rate with the follow-up of the sample)
    for name, unit in ((spec.offset, 0.0), (spec.exposure, 1.0)):
        if isinstance(name, str) and name not in frame:
            frame[name] = [unit] * n
    return pd.DataFrame(frame)


def replace_outcome(spec: DesignSpec, name: str) -> str:
    """The spec's formula with the outcome (left-hand side) replaced by the column ``name``.

    >>> df = pd.DataFrame({"id": [1, 1, 2, 2], "t": [0., 1, 0, 1], "y": [1., 2, 2, 4]})
    >>> from pymemoe._design.formula import build_design
    >>> spec, _ = build_design("np.log(y) ~ t", df, "id")
    >>> replace_outcome(spec, "y_sim")
    'y_sim ~ t'
    """
    _, _, rhs = spec.formula.partition("~")
    return f"{name} ~ {rhs.strip()}"
