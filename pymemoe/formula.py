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

**Pickling.** patsy's ``DesignInfo`` cannot be pickled (patsy issue #26), and neither can the
evaluation environment the formulas were evaluated in. A :class:`DesignSpec` therefore also
keeps what is needed to rebuild its ``DesignInfo`` objects identically: the columns of the
analysis sample that the formulas use (:func:`required_variables`, found by walking the code of
patsy's factors with :mod:`ast`) and the values of the other names the formulas take from the
caller's namespace (modules by name, other objects by value; patsy's own functions such as
``C``, ``center`` or ``standardize`` are not stored). Pickling drops the ``DesignInfo`` objects
and unpickling rebuilds them with patsy from the same rows, so stateful transforms and
categorical levels are learnt again from the same data and come out identical. A formula that
uses an unpicklable object from the caller's namespace (a lambda, a local function) makes the
spec unpicklable, with a ``pickle.PicklingError`` that names it.
"""
from __future__ import annotations

import ast
import importlib
import pickle
import re
import types
from dataclasses import dataclass, field, fields
from typing import Any, Hashable

import numpy as np
import pandas as pd
import patsy

from .data import check_constant_within, check_outcome_varies, plain_label

__all__ = ["DesignSpec", "DesignArrays", "Factor", "build_design", "build_new_design",
           "build_new_endog", "required_variables", "formula_factors", "sample_column",
           "typical_frame", "group_labels", "plain_dtypes", "linear_constraint",
           "replace_outcome", "check_random_effects_estimable", "new_offset"]


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
    sample : pandas.DataFrame or None
        The analysis sample's columns that the formulas use (rows as fitted, a fresh
        ``RangeIndex``), kept to rebuild the ``DesignInfo`` objects after unpickling.
    variables : dict
        The data columns each formula uses (see :func:`required_variables`).
    namespace : dict
        The objects the formulas take from the caller's namespace rather than from the data
        (patsy's builtins excluded), e.g. ``{"np": numpy}``.
    offset, exposure : str or None
        Data columns of the offset and of the exposure (binomial and Poisson experts), read
        again from new data; None when not used or given as arrays.
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
    sample: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    variables: dict = field(default_factory=dict, repr=False, compare=False)
    namespace: dict = field(default_factory=dict, repr=False, compare=False)
    offset: str | None = None
    exposure: str | None = None

    @property
    def n_outcome_columns(self) -> int:
        """1, or 2 for a binomial outcome written ``successes + failures ~ ...``."""
        return len(self.endog_info.column_names)

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

    # -- pickling: patsy's DesignInfo refuses to pickle, so it is rebuilt ---------------------

    def __getstate__(self) -> dict:
        if self.sample is None:
            raise pickle.PicklingError(
                "this DesignSpec was built without the analysis sample, so its patsy designs "
                "cannot be rebuilt after unpickling; build it with pymemoe.formula.build_design")
        state = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.endswith("_info")}
        state["namespace"] = _picklable_namespace(self)
        state["column_names"] = _column_names(self)
        # Fail now rather than when loading: the designs must be rebuildable from the state.
        try:
            rebuilt = _column_names(_rebuild_infos(self))
        except ValueError as err:
            rebuilt = err
        if rebuilt != state["column_names"]:
            raise pickle.PicklingError(
                f"cannot pickle the model: its designs cannot be rebuilt from the stored columns "
                f"{list(self.sample.columns)} and names {sorted(self.namespace)} ({rebuilt}); "
                f"write the formulas with plain column names (or Q('name'))")
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        column_names = state.pop("column_names")
        namespace = {name: _restore_value(value) for name, value in state["namespace"].items()}
        state["namespace"] = namespace
        for name, value in state.items():
            object.__setattr__(self, name, value)
        for name, info in _rebuild_infos(self).items():
            object.__setattr__(self, name, info)
        rebuilt = _column_names(self)
        if rebuilt != column_names:
            raise pickle.UnpicklingError(
                f"the designs rebuilt from the stored sample differ from the pickled ones "
                f"({rebuilt} != {column_names}); was the pickle written by another version of "
                f"pymemoe or patsy?")


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
    offset: np.ndarray | None = None
    exposure: np.ndarray | None = None


_INFO_FIELDS = ("endog_info", "exog_info", "exog_re_info", "exog_gate_info", "exog_shared_info")
_VARIABLE_KEYS = {"endog_info": "outcome", "exog_info": "formula", "exog_re_info": "re_formula",
                  "exog_gate_info": "gate_formula", "exog_shared_info": "shared_formula"}
_PATSY_BUILTINS: dict[str, Any] = {}
exec("from patsy.builtins import *", {}, _PATSY_BUILTINS)  # what patsy itself adds to formulas


def _factor_codes(info) -> list[str]:
    """The Python code of each factor of a DesignInfo, e.g. ``"np.log(bili)"``, ``"C(sex)"``."""
    if info is None:
        return []
    return [getattr(factor, "code", str(factor)) for factor in info.factor_infos]


def _code_names(code: str) -> tuple[list[str], list[str]]:
    """Bare names of an expression and the string arguments of ``Q("...")`` calls."""
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError:
        return [], []
    names, quoted = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.append(node.id)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Q"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            quoted.append(node.args[0].value)
    return list(dict.fromkeys(names)), list(dict.fromkeys(quoted))


def _data_columns(info, columns) -> list[str]:
    """Columns of the data that a DesignInfo's factors read, in order of appearance (names in
    the code that are data columns, patsy's lookup order: the data come first, then the
    caller's namespace; and ``Q("...")`` arguments)."""
    found: list[str] = []
    for code in _factor_codes(info):
        names, quoted = _code_names(code)
        found += [n for n in names + quoted if n in columns]
    return list(dict.fromkeys(found))


def _namespace_names(infos, columns) -> list[str]:
    """Bare names of the factors' code that are not data columns (looked up in the caller's
    namespace, then in patsy's builtins)."""
    found: list[str] = []
    for info in infos:
        for code in _factor_codes(info):
            found += [n for n in _code_names(code)[0] if n not in columns]
    return list(dict.fromkeys(found))


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


def _column_names(infos) -> dict[str, list[str] | None]:
    """Column names of each DesignInfo of a spec (or of a dict of DesignInfos)."""
    get = infos.get if isinstance(infos, dict) else lambda name: getattr(infos, name)
    return {name: None if get(name) is None else list(get(name).column_names)
            for name in _INFO_FIELDS}


def _picklable_namespace(spec: DesignSpec) -> dict[str, Any]:
    """The formulas' namespace objects in a picklable form: modules by name, others by value."""
    out: dict[str, Any] = {}
    for name, value in spec.namespace.items():
        if isinstance(value, types.ModuleType):
            out[name] = _ModuleRef(value.__name__)
            continue
        try:
            pickle.dumps(value)
        except Exception as err:  # noqa: BLE001 - any failure means "cannot pickle"
            formulas = [text for text in (spec.formula, spec.re_formula, spec.gate_formula,
                                          spec.shared_formula) if text is not None]
            raise pickle.PicklingError(
                f"cannot pickle the model: its formulas {formulas} use {name!r} "
                f"({type(value).__name__}) from the namespace they were evaluated in, and it "
                f"cannot be pickled ({err}); define it at module level or add the transformed "
                f"variable to the data as a column"
            ) from None
        out[name] = value
    return out


@dataclass(frozen=True)
class _ModuleRef:
    """A module stored by name in a pickled DesignSpec (modules do not pickle)."""

    name: str


def _restore_value(value: Any) -> Any:
    return importlib.import_module(value.name) if isinstance(value, _ModuleRef) else value


def _rebuild_infos(spec: DesignSpec) -> dict[str, Any]:
    """DesignInfo objects rebuilt with patsy on the stored analysis sample, exactly as
    :func:`build_design` built them (same formulas, rows, namespace and NA handling)."""
    env = patsy.EvalEnvironment([dict(spec.namespace), {"np": np}])
    rhs = {"re_formula": _as_rhs(spec.re_formula), "gate_formula": _as_rhs(spec.gate_formula)}
    if spec.shared_formula is not None:
        rhs["shared_formula"] = _as_rhs(spec.shared_formula)
    frames = _build_all(spec.formula, rhs, spec.sample, env, patsy.NAAction(on_NA="raise"))
    return {
        "endog_info": frames["formula_lhs"].design_info,
        "exog_info": frames["formula"].design_info,
        "exog_re_info": frames["re_formula"].design_info,
        "exog_gate_info": frames["gate_formula"].design_info,
        "exog_shared_info": (frames["shared_formula"].design_info
                             if spec.shared_formula is not None else None),
    }


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
    """Subject labels of ``data`` and the name of their column (None for an array)."""
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
    *,
    outcome_columns: tuple[int, ...] = (1,),
    check_outcome: bool = True,
    offset=None,
    exposure=None,
) -> tuple[DesignSpec, DesignArrays]:
    """Evaluate the formulas on ``data`` and return the spec and the row-level arrays.

    Parameters
    ----------
    formula, re_formula, gate_formula, shared_formula : str
        See the module docstring. ``re_formula="0"`` means no random effects.
    outcome_columns : tuple of int
        The numbers of outcome columns allowed: ``(1, 2)`` for binomial experts, whose outcome
        may be ``successes + failures`` (two columns, as statsmodels' GLM takes them).
    check_outcome : bool
        Check that the outcome varies and is not reproduced exactly by the fixed effects (the
        Gaussian checks; the other families check their outcomes themselves).
    offset, exposure : str or array-like, optional
        A column of ``data`` (stored in the spec and read again from new data) or one value per
        row; rows where it is missing are dropped like the rest.
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
    # Rows with a missing value in a column that a formula reads are set aside before patsy
    # evaluates anything, so that a stateful transform (center, standardize) of a column with
    # missing values is not learnt as NaN in this pass.
    user_index = data.index
    data = data.set_axis(pd.RangeIndex(len(data)), axis=0)   # a new frame; the user's is untouched
    extra = {name: _extra_column(data, value, name) for name, value in
             (("offset", offset), ("exposure", exposure)) if value is not None}
    raw_missing = _missing_in_used_columns([formula, *rhs.values()], data)
    for values in extra.values():
        raw_missing = raw_missing | ~np.isfinite(values)
    candidates = data.loc[~raw_missing] if raw_missing.any() else data
    if len(candidates) == 0:
        if missing == "raise":
            _build_all(formula, rhs, data, env, patsy.NAAction(on_NA="raise"),
                       what_prefix="with missing='raise', ")
        raise ValueError("no rows left after dropping rows with missing or non-finite values")
    frames = _build_all(formula, rhs, candidates, env, patsy.NAAction(on_NA="drop"))
    _check_numeric_outcome(formula, frames["formula_lhs"], data)
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
    if y_frame.shape[1] not in outcome_columns:
        two = (" (two columns, successes + failures, are for family='binomial')"
               if y_frame.shape[1] == 2 else " (is it non-numeric?)")
        raise ValueError(
            f"formula {formula!r}: the outcome must be one numeric column, got {y_frame.shape[1]} "
            f"columns {list(y_frame.columns)}{two}"
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
    if check_outcome:
        _check_outcome_varies(formula, y_frame, pd.concat([x_frame, shared_frame], axis=1)
                              if shared_frame is not None else x_frame)
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
        offset=offset if isinstance(offset, str) else None,
        exposure=exposure if isinstance(exposure, str) else None,
        **_sample_and_namespace(frames, used, env),
    )
    n_used = len(used)
    endog = y_frame.to_numpy(dtype=float)
    arrays = DesignArrays(
        endog=endog[:, 0] if endog.shape[1] == 1 else endog,
        exog=x_frame.to_numpy(dtype=float),
        exog_re=frames["re_formula"].to_numpy(dtype=float).reshape(n_used, -1),
        exog_gate=gate_frame.to_numpy(dtype=float),
        exog_shared=(np.empty((n_used, 0)) if shared_frame is None
                     else shared_frame.to_numpy(dtype=float)),
        groups=group_used,
        row_index=user_index[keep_mask],
        n_dropped=n_dropped,
        **{name: values[keep_mask] for name, values in extra.items()},
    )
    return spec, arrays


def _extra_column(data: pd.DataFrame, value, name: str) -> np.ndarray:
    """An offset or exposure: a numeric column of ``data`` or one value per row."""
    if isinstance(value, str):
        if value not in data.columns:
            raise ValueError(f"{name}={value!r} is not a column of the data")
        column = pd.to_numeric(data[value], errors="coerce")
        if column.isna().sum() > data[value].isna().sum():
            raise ValueError(f"{name}={value!r}: the column is not numeric")
        return column.to_numpy(dtype=float)
    values = np.asarray(value, dtype=float).reshape(-1)
    if values.shape != (len(data),):
        raise ValueError(f"{name} must be a column name or one value per row of the data "
                         f"({len(data)}); got shape {np.shape(value)}")
    return values


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


def _sample_and_namespace(frames: dict, used: pd.DataFrame, env: patsy.EvalEnvironment) -> dict:
    """What a DesignSpec keeps to rebuild its DesignInfos after unpickling: the used columns of
    the analysis sample, the columns of each formula, and the caller's objects the formulas use."""
    columns = {c for c in used.columns if isinstance(c, str)}
    infos = {"endog_info": frames["formula_lhs"].design_info,
             "exog_info": frames["formula"].design_info,
             "exog_re_info": frames["re_formula"].design_info,
             "exog_gate_info": frames["gate_formula"].design_info,
             "exog_shared_info": (frames["shared_formula"].design_info
                                  if "shared_formula" in frames else None)}
    variables = {_VARIABLE_KEYS[name]: _data_columns(info, columns)
                 for name, info in infos.items() if info is not None}
    needed = list(dict.fromkeys(c for cols in variables.values() for c in cols))
    lookup = env.namespace
    namespace = {}
    for name in _namespace_names(infos.values(), columns):
        if name not in lookup:
            continue                      # a patsy builtin or a Python builtin (abs, round, ...)
        value = lookup[name]
        if name in _PATSY_BUILTINS and value is _PATSY_BUILTINS[name]:
            continue
        namespace[name] = value
    sample = used[needed].reset_index(drop=True)
    return {"sample": sample, "variables": variables, "namespace": namespace}


def _missing_in_used_columns(formulas: list[str], data: pd.DataFrame) -> np.ndarray:
    """Rows with a missing value (NaN, None, NaT, pd.NA) in a data column that a formula reads
    (a formula patsy cannot parse reads none here; patsy reports it when building)."""
    columns = {c for c in data.columns if isinstance(c, str)}
    used: list[str] = []
    for text in formulas:
        try:
            desc = patsy.ModelDesc.from_formula(text)
        except patsy.PatsyError:
            continue
        for term in desc.lhs_termlist + desc.rhs_termlist:
            for factor in term.factors:
                names, quoted = _code_names(getattr(factor, "code", ""))
                used += [n for n in names + quoted if n in columns]
    used = list(dict.fromkeys(used))
    if not used:
        return np.zeros(len(data), dtype=bool)
    return data[used].isna().any(axis=1).to_numpy()


def _check_numeric_outcome(formula: str, y_frame: pd.DataFrame, data: pd.DataFrame) -> None:
    """A ValueError naming the formula and the column when the outcome is not numeric (patsy
    would code it as categorical: one indicator column per level)."""
    info = y_frame.design_info
    categorical = [f for f, fi in info.factor_infos.items() if fi.type == "categorical"]
    if not categorical:
        return
    factor = categorical[0]
    code = getattr(factor, "code", str(factor))
    columns = _data_columns(info, {c for c in data.columns if isinstance(c, str)})
    column = columns[0] if columns else code
    dtype = data[column].dtype if column in data.columns else "categorical"
    levels = info.factor_infos[factor].categories
    shown = ", ".join(repr(v) for v in levels[:3]) + (", ..." if len(levels) > 3 else "")
    raise ValueError(
        f"formula {formula!r}: the outcome {code!r} is not numeric (column {column!r} has dtype "
        f"{dtype}; patsy would treat it as categorical with {len(levels)} levels: {shown}). "
        f"pymemoe needs a numeric outcome (a measurement; 0/1 for family='binomial', e.g. "
        f"(df[{column!r}] == 'y').astype(int); counts for family='poisson'): convert the column "
        f"with pandas.to_numeric (values that are not numbers become NaN and their rows are "
        f"dropped) or astype(float)"
    )


def _check_outcome_varies(formula: str, y_frame: pd.DataFrame, x_frame: pd.DataFrame) -> None:
    check_outcome_varies(y_frame.to_numpy(dtype=float)[:, 0], x_frame.to_numpy(dtype=float),
                         f"formula {formula!r}: the outcome {str(y_frame.columns[0])!r}")
    # messages read "... the outcome 'y' is constant" and "...: the fixed effects reproduce the
    # outcome exactly"


def _build_all(formula, rhs, data, env, na_action, what_prefix=""):
    data = plain_dtypes(data)
    y, x = _patsy_call(what_prefix + "formula", formula, patsy.dmatrices, formula, data,
                       eval_env=env, NA_action=na_action, return_type="dataframe")
    frames = {"formula_lhs": y, "formula": x}
    for name, text in rhs.items():
        frames[name] = _patsy_call(what_prefix + name, text, patsy.dmatrix, text, data,
                                   eval_env=env, NA_action=na_action, return_type="dataframe")
    return frames


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
        what = "formula" if key == "endog" else key.replace("exog", "formula")
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
        for column in _data_columns_of_code(code, set(sample.columns) & set(data.columns)):
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


# ---------------------------------------------------------------------------------------------
# Questions about the formulas of a fitted spec (the rest of pymemoe asks here, not patsy)


def plain_dtypes(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with pandas' nullable dtypes replaced by the numpy dtypes patsy understands.

    ``Int64``/``UInt8``... become int64 (float64 with NaN where a value is missing), ``Float64``
    float64, ``boolean`` bool (object with NaN where missing), ``string`` object (NaN where
    missing). Other columns are untouched, and the user's frame is never modified (a new frame
    is returned when anything changes).

    Examples
    --------
    >>> df = pd.DataFrame({"n": pd.array([1, 2], dtype="Int64"), "s": pd.array(["a", None], dtype="string")})
    >>> plain_dtypes(df).dtypes.astype(str).tolist()
    ['int64', 'object']
    """
    converted = {}
    for column in data.columns:
        values = data[column]
        dtype = values.dtype
        if not pd.api.types.is_extension_array_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
            continue
        missing = values.isna().to_numpy()
        if pd.api.types.is_bool_dtype(dtype):
            converted[column] = (values.astype(bool) if not missing.any()
                                 else values.astype(object).where(~missing, np.nan))
        elif pd.api.types.is_integer_dtype(dtype) and not missing.any():
            converted[column] = values.astype(np.int64)
        elif pd.api.types.is_numeric_dtype(dtype):
            converted[column] = pd.Series(values.to_numpy(dtype=float, na_value=np.nan),
                                          index=values.index)
        elif pd.api.types.is_string_dtype(dtype) and dtype != object:
            if not isinstance(dtype, pd.StringDtype) or dtype.na_value is np.nan:
                continue        # pandas 3's default "str" dtype: patsy reads it as it is
            converted[column] = values.astype(object).where(~missing, np.nan)
    if not converted:
        return data
    out = data.copy(deep=False)        # new columns replace, never overwrite, the user's arrays
    for column, values in converted.items():
        out[column] = values
    return out


def _data_columns_of_code(code: str, columns: set) -> list[str]:
    names, quoted = _code_names(code)
    return [n for n in dict.fromkeys(names + quoted) if n in columns]


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
            out.append(Factor(part, text, code, tuple(_data_columns_of_code(code, known)), levels))
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


def group_labels(data: pd.DataFrame, groups: Hashable | np.ndarray | pd.Series | None,
                 spec: DesignSpec | None = None) -> np.ndarray:
    """Subject labels of the rows of ``data``: the column ``groups``, one label per row, or
    (``groups=None``) the column the model was fitted with (``spec.groups``).

    Raises a ValueError naming the column when it is absent, and when a label is missing.
    """
    if groups is None:
        groups = None if spec is None else spec.groups
        if groups is None:
            raise ValueError("the model was fitted with subject labels given as an array; pass "
                             "groups= (a column name of the data or one label per row)")
    values, _ = _group_labels(data, groups)
    if pd.isna(pd.Series(values)).any():
        raise ValueError("the subject labels (groups) of the data contain missing values")
    return values


def check_random_effects_estimable(groups: np.ndarray, exog_re_names, what: str) -> None:
    """A ValueError when every subject has a single observation but the model has random
    effects: a random intercept is then indistinguishable from the residual (and a slope has
    nothing to vary over), so the variance components are not identified. ``what`` names the
    random-effects design in the message (e.g. ``"re_formula '~ year'"``)."""
    names = list(exog_re_names)
    if not names or len(groups) == 0:
        return
    if pd.Series(groups).value_counts().max() == 1:
        raise ValueError(
            f"every subject has a single observation, so the random effects of {what} "
            f"({', '.join(names)}) cannot be told apart from the residual variance; fit without "
            f"random effects (re_formula=\"0\", the mixture of regression experts; exog_re with "
            f"no columns for MEMoE(...)) or check the subject column")


def replace_outcome(spec: DesignSpec, name: str) -> str:
    """The spec's formula with the outcome (left-hand side) replaced by the column ``name``.

    >>> df = pd.DataFrame({"id": [1, 1, 2, 2], "t": [0., 1, 0, 1], "y": [1., 2, 2, 4]})
    >>> spec, _ = build_design("np.log(y) ~ t", df, "id")
    >>> replace_outcome(spec, "y_sim")
    'y_sim ~ t'
    """
    _, _, rhs = spec.formula.partition("~")
    return f"{name} ~ {rhs.strip()}"


_OPERATOR_TEXT = set("0123456789.+-*/()=, eE\t\n")


def linear_constraint(names: list[str], hypothesis: str | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """R and q of the linear hypotheses R theta = q written with parameter names.

    Each hypothesis is a linear equation in the names, e.g. ``"beta[1]:year = beta[2]:year"``,
    ``"2 * gate[2]:age - gate[3]:age = 0"`` or ``"beta[1]:I(year**2)"`` (meaning ``= 0``);
    several are given as a list or separated by commas. Names may be written as in the formula:
    spaces are ignored when they are matched (patsy writes ``I(year ** 2)``).

    Raises
    ------
    ValueError
        Naming the unknown name and listing the valid ones, or naming the hypothesis that is
        not a linear equation.

    Examples
    --------
    >>> names = ["beta[1]:Intercept", "beta[1]:I(year ** 2)", "beta[2]:I(year ** 2)"]
    >>> R, q = linear_constraint(names, "beta[1]:I(year**2) = beta[2]:I(year**2)")
    >>> R.tolist(), q.tolist()
    ([[0.0, 1.0, -1.0]], [0.0])
    """
    texts = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("a hypothesis is a string or a list of strings, e.g. "
                         "'beta[1]:year = beta[2]:year'")
    squeezed = ["".join(str(n).split()) for n in names]
    if len(set(squeezed)) != len(squeezed):
        raise ValueError("parameter names are not unique once spaces are removed")
    placeholder = {name: f"p{j}" for j, name in enumerate(squeezed)}
    # a name counts only between operators, so "beta[1]:year2" is not "beta[1]:year" + "2";
    # longest first, so "beta[1]:year:age" is not read as "beta[1]:year"
    alternatives = "|".join(re.escape(n) for n in sorted(squeezed, key=len, reverse=True))
    pattern = re.compile(rf"(?<![^=,+\-*/(])({alternatives})(?=$|[=,+\-*/)])")
    rewritten = []
    for text in texts:
        compact = "".join(text.split())
        parts = pattern.split(compact)
        for part in parts[::2]:                   # the text between the names
            if set(part) <= _OPERATOR_TEXT:
                continue
            bad = next(t for t in re.split(r"[=,+\-*/]", part)
                       if not set(t) <= _OPERATOR_TEXT).strip("()")
            raise ValueError(f"unknown parameter name {bad!r} in hypothesis {text!r}; valid "
                             f"names are {', '.join(map(str, names))}")
        rewritten.append("".join(f" {placeholder[part]} " if j % 2 else part
                                 for j, part in enumerate(parts)))
    info = patsy.DesignInfo(list(placeholder.values()))
    try:
        constraint = info.linear_constraint(rewritten)
    except patsy.PatsyError as err:
        raise ValueError(f"hypothesis {hypothesis!r} is not a linear equation in the parameter "
                         f"names ({str(err).splitlines()[0]})") from None
    # + 0.0 turns patsy's -0.0 constants into 0.0
    return (np.asarray(constraint.coefs, dtype=float) + 0.0,
            np.asarray(constraint.constants, dtype=float)[:, 0] + 0.0)
