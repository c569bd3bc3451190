"""Formulas to design matrices: :func:`build_design` and the frozen :class:`DesignSpec`.

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
rebuilt with the same levels and transforms (:mod:`pymemoe._design.new_data`), never by
re-parsing.

**Pickling.** patsy's ``DesignInfo`` cannot be pickled (patsy issue #26), and neither can the
evaluation environment the formulas were evaluated in. A :class:`DesignSpec` therefore also
keeps what is needed to rebuild its ``DesignInfo`` objects identically: the columns of the
analysis sample that the formulas use (found by walking the code of patsy's factors,
:mod:`pymemoe._design.variables`) and the values of the other names the formulas take from the
caller's namespace (modules by name, other objects by value; patsy's own functions such as
``C``, ``center`` or ``standardize`` are not stored). Pickling drops the ``DesignInfo`` objects
and unpickling rebuilds them with patsy from the same rows, so stateful transforms and
categorical levels are learnt again from the same data and come out identical. A formula that
uses an unpicklable object from the caller's namespace (a lambda, a local function) makes the
spec unpicklable, with a ``pickle.PicklingError`` that names it.
"""
from __future__ import annotations

import importlib
import pickle
import types
from dataclasses import dataclass, field, fields
from typing import Any, Hashable

import numpy as np
import pandas as pd
import patsy

from .checks import check_constant_within, finite_rows
from .dtypes import plain_dtypes
from .subjects import group_labels
from .variables import data_columns, missing_in_used_columns, namespace_names

__all__ = ["DesignSpec", "DesignArrays", "build_design"]


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
    known_class: str | None = None
    class_prior: tuple | None = None
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
                "cannot be rebuilt after unpickling; build it with pymemoe._design.formula.build_design")
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
    known_class: np.ndarray | None = None
    class_prior: np.ndarray | None = None


_INFO_FIELDS = ("endog_info", "exog_info", "exog_re_info", "exog_gate_info", "exog_shared_info")
_VARIABLE_KEYS = {"endog_info": "outcome", "exog_info": "formula", "exog_re_info": "re_formula",
                  "exog_gate_info": "gate_formula", "exog_shared_info": "shared_formula"}
_PATSY_BUILTINS: dict[str, Any] = {}
exec("from patsy.builtins import *", {}, _PATSY_BUILTINS)  # what patsy itself adds to formulas


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
    offset=None,
    exposure=None,
    known_class=None,
    class_prior=None,
) -> tuple[DesignSpec, DesignArrays]:
    """Evaluate the formulas on ``data`` and return the spec and the row-level arrays.

    Parameters
    ----------
    formula, re_formula, gate_formula, shared_formula : str
        See the module docstring. ``re_formula="0"`` means no random effects.
    outcome_columns : tuple of int
        The numbers of outcome columns allowed: ``(1, 2)`` for binomial experts, whose outcome
        may be ``successes + failures`` (two columns, as statsmodels' GLM takes them).
    offset, exposure : str or array-like, optional
        A column of ``data`` (stored in the spec and read again from new data) or one value per
        row; rows where it is missing are dropped like the rest.
    known_class : str or array-like, optional
        A column of ``data`` or one value per row: the known expert of the row's subject
        (missing where unknown; missing values drop no row). Returned as read, for
        :func:`pymemoe._design.inputs.model_inputs` to check.
    class_prior : list of str or array-like (n, K), optional
        Columns of ``data`` (or one row per row of data) holding each subject's fixed prior
        expert probabilities, missing where the gating gives them (missing values drop no
        row); returned as read.
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
    group_values, group_name = group_labels(data, groups, missing_ok=True)
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
    labels = None if known_class is None else _extra_column(data, known_class, "known_class")
    priors = None if class_prior is None else _prior_columns(data, class_prior)
    raw_missing = missing_in_used_columns([formula, *rhs.values()], data)
    for values in extra.values():
        raw_missing = raw_missing | ~np.isfinite(values)
    candidates = data.loc[~raw_missing] if raw_missing.any() else data
    if len(candidates) == 0:
        if missing == "raise":
            _build_all(formula, rhs, data, env, patsy.NAAction(on_NA="raise"),
                       what_prefix="with missing='raise', ")
        raise ValueError("no rows left after dropping rows with missing or non-finite values")
    # no value counts as missing in this pass (the missing ones are set aside above): every
    # part has a row per candidate, and a transform's NaN (log of 0) shows as a non-finite value
    frames = _build_all(formula, rhs, candidates, env, patsy.NAAction(NA_types=[]))
    _check_numeric_outcome(formula, frames["formula_lhs"], data)
    keep_mask = ~pd.isna(pd.Series(group_values)).to_numpy()
    positions = candidates.index.to_numpy()
    for frame in frames.values():
        rows = np.zeros(len(data), dtype=bool)
        rows[positions[finite_rows(frame.values)]] = True
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

    # Pass 2: build on the analysis sample so that transforms and levels are learnt from it
    # (when pass 1 kept every row it ran on all of them: its designs are those of pass 2).
    used = data.loc[keep_mask] if n_dropped else data
    if n_dropped or raw_missing.any():
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
            shared_frame = shared_frame.without("Intercept")
        overlap = set(shared_frame.columns) & set(x_frame.columns)
        if overlap:
            raise ValueError(
                f"shared_formula {shared_formula!r} repeats terms of formula {formula!r}: "
                f"{sorted(overlap)}; a term is either expert-specific or shared"
            )
    gate_frame = frames["gate_formula"]
    # a copy either way: the model must not share memory with the user's frame
    group_used = group_values[keep_mask] if n_dropped else group_values.copy()
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
        known_class=known_class if isinstance(known_class, str) else None,
        class_prior=(tuple(class_prior) if class_prior is not None
                     and all(isinstance(c, str) for c in np.atleast_1d(class_prior)) else None),
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
        row_index=user_index[keep_mask] if n_dropped else user_index,
        n_dropped=n_dropped,
        **{name: values[keep_mask] for name, values in extra.items()},
        known_class=None if labels is None else labels[keep_mask],
        class_prior=None if priors is None else priors[keep_mask],
    )
    return spec, arrays


def _prior_columns(data: pd.DataFrame, class_prior) -> np.ndarray:
    """Fixed prior probabilities (n, K): K numeric columns of ``data`` or an (n, K) array."""
    if isinstance(class_prior, (list, tuple)) and all(isinstance(c, str) for c in class_prior):
        return np.column_stack([_extra_column(data, c, "class_prior") for c in class_prior])
    values = np.asarray(class_prior, dtype=float)
    if values.ndim != 2 or values.shape[0] != len(data):
        raise ValueError(f"class_prior must be a list of column names or an array with one row "
                         f"per row of the data ({len(data)}); got shape {values.shape}")
    return values


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
    variables = {_VARIABLE_KEYS[name]: data_columns(info, columns)
                 for name, info in infos.items() if info is not None}
    needed = list(dict.fromkeys(c for cols in variables.values() for c in cols))
    lookup = env.namespace
    namespace = {}
    for name in namespace_names(infos.values(), columns):
        if name not in lookup:
            continue                      # a patsy builtin or a Python builtin (abs, round, ...)
        value = lookup[name]
        if name in _PATSY_BUILTINS and value is _PATSY_BUILTINS[name]:
            continue
        namespace[name] = value
    sample = used[needed].reset_index(drop=True)
    return {"sample": sample, "variables": variables, "namespace": namespace}


def _check_numeric_outcome(formula: str, y_frame: pd.DataFrame, data: pd.DataFrame) -> None:
    """A ValueError naming the formula and the column when the outcome is not numeric (patsy
    would code it as categorical: one indicator column per level)."""
    info = y_frame.design_info
    categorical = [f for f, fi in info.factor_infos.items() if fi.type == "categorical"]
    if not categorical:
        return
    factor = categorical[0]
    code = getattr(factor, "code", str(factor))
    columns = data_columns(info, {c for c in data.columns if isinstance(c, str)})
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


    # messages read "... the outcome 'y' is constant" and "...: the fixed effects reproduce the
    # outcome exactly"


@dataclass(frozen=True, eq=False)
class _Part:
    """One evaluated formula: its design matrix (n, m) and patsy's DesignInfo (the matrix
    without a pandas frame around it: building frames of millions of rows costs copies)."""

    values: np.ndarray
    design_info: patsy.DesignInfo
    columns: tuple = ()

    @classmethod
    def of(cls, matrix) -> "_Part":
        return cls(np.asarray(matrix), matrix.design_info, tuple(matrix.design_info.column_names))

    @property
    def shape(self) -> tuple:
        return self.values.shape

    def to_numpy(self, dtype=float) -> np.ndarray:
        return np.asarray(self.values, dtype=dtype)

    def without(self, column: str) -> "_Part":
        """The part without ``column`` (its DesignInfo unchanged)."""
        keep = [j for j, c in enumerate(self.columns) if c != column]
        return _Part(self.values[:, keep], self.design_info, tuple(self.columns[j] for j in keep))


def _build_all(formula, rhs, data, env, na_action, what_prefix=""):
    data = plain_dtypes(data)
    y, x = _patsy_call(what_prefix + "formula", formula, patsy.dmatrices, formula, data,
                       eval_env=env, NA_action=na_action, return_type="matrix")
    frames = {"formula_lhs": _Part.of(y), "formula": _Part.of(x)}
    for name, text in rhs.items():
        frames[name] = _Part.of(_patsy_call(what_prefix + name, text, patsy.dmatrix, text, data,
                                            eval_env=env, NA_action=na_action,
                                            return_type="matrix"))
    return frames


# ---------------------------------------------------------------------------------------------
# Questions about the formulas of a fitted spec (the rest of pymemoe asks here, not patsy)


