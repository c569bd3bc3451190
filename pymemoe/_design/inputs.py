"""The row arrays of a model, from what a user passes to ``MEMoE(...)``: coercion to arrays,
names of the columns, the offset, rows dropped for missing values, and the checks that name
the column, subject or row at fault.

:func:`model_inputs` is the whole of it; ``MEMoE.__init__`` calls it and builds the model's
structure and data from its :class:`ModelInputs`. What depends on the expert family (the
outcome's values, the number of outcome columns, whether an offset is taken, the ``scale``
option, limits on the random effects) the family says (:mod:`pymemoe.families.base`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .checks import check_constant_within, check_random_effects_estimable, finite_rows, plain_label
from .formula import DesignSpec
from .subjects import subject_codes

__all__ = ["ModelInputs", "model_inputs", "as_columns", "known_classes", "fixed_priors"]


@dataclass(frozen=True, eq=False)
class ModelInputs:
    """The checked row arrays of a model (rows with missing values dropped).

    Attributes
    ----------
    endog, trials, offset : ndarray (n,)
        Outcome (successes for a two-column binomial outcome), trials (None unless the
        outcome has two columns) and offset of the linear predictor (zeros without one).
    exog, exog_re, exog_gate : ndarray (n, p), (n, q), (n, r)
        The full fixed-effects design (expert-specific then shared columns), the
        random-effects and the gating designs.
    groups : ndarray (n,)
        Subject labels.
    names : tuple of tuple of str
        Column names of the expert-specific, random-effects, gating and shared designs.
    endog_name : str
    row_index : pandas.Index
        Labels of the kept rows (the user's, or positions).
    n_dropped : int
        Rows dropped for missing or non-finite values (with those dropped before).
    scale : str
        The model structure's ``scale`` (the family's reading of the ``scale`` option).
    known_class : ndarray (N,) of int or None
        The known expert of each subject (0-based, -1 unknown), subjects sorted as
        :func:`pymemoe._design.subjects.subject_codes` sorts them; None when none is known.
    class_prior : ndarray (N, K) or None
        Fixed prior expert probabilities of each subject (NaN rows: the gating's), subjects
        in the same order; None when no subject has them.
    """

    endog: np.ndarray
    trials: np.ndarray | None
    offset: np.ndarray
    exog: np.ndarray
    exog_re: np.ndarray
    exog_gate: np.ndarray
    groups: np.ndarray
    names: tuple
    endog_name: str
    row_index: pd.Index
    n_dropped: int
    scale: str
    known_class: np.ndarray | None = None
    class_prior: np.ndarray | None = None

    @property
    def k_shared(self) -> int:
        return len(self.names[3])


def as_columns(value, n: int, name: str) -> np.ndarray:
    """``value`` as a float array with one row per observation, (n, m); a ValueError naming
    ``name`` otherwise."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{name} must have one row per observation ({n}); got shape {arr.shape}")
    return arr


def _names(value, default_prefix: str, width: int) -> list[str]:
    if isinstance(value, pd.DataFrame):
        return [str(c) for c in value.columns]
    if isinstance(value, pd.Series) and value.name is not None:
        return [str(value.name)]
    return [f"{default_prefix}{j}" for j in range(width)]


def _offset(offset, exposure, n: int, family, rows: pd.Index | None = None,
            exposure_name: str = "exposure") -> np.ndarray:
    """The offset of the linear predictor: ``offset`` plus log(``exposure``). A non-positive
    exposure is a ValueError naming ``exposure_name`` and the first such row (its label in
    ``rows``, else its position)."""
    if (offset is not None or exposure is not None) and not family.takes_offset:
        raise ValueError(f"offset and exposure are for binomial and Poisson experts; "
                         f"family={family.name!r} does not take them")
    out = np.zeros(n) if offset is None else as_columns(offset, n, "offset")[:, 0].copy()
    if exposure is not None:
        exp = as_columns(exposure, n, "exposure")[:, 0]
        bad = np.isfinite(exp) & (exp <= 0)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            row = repr(plain_label(rows[j])) if rows is not None else j
            raise ValueError(f"{exposure_name} must be positive: row {row} has {exp[j]:g}")
        with np.errstate(divide="ignore", invalid="ignore"):
            out = out + np.log(exp)
    return out


def known_classes(values: np.ndarray, groups: np.ndarray, n_experts: int,
                  what: str = "known_class") -> np.ndarray | None:
    """The known expert of each subject (N,), 0-based, -1 where unknown, subjects in the order
    of :func:`pymemoe._design.subjects.subject_codes`; None when no subject's is known.
    ``values`` (n,) are 1..``n_experts`` or missing; a ValueError names the subject whose value
    is not an expert or differs between its rows.

    Examples
    --------
    >>> known_classes(np.array([2.0, 2.0, np.nan, 1.0]), np.array(["a", "a", "b", "c"]), 2).tolist()
    [1, -1, 0]
    """
    values = np.asarray(values, dtype=float)
    codes, labels = subject_codes(groups)
    given = np.isfinite(values)
    if not given.any():
        return None
    bad = given & ((values != np.round(values)) | (values < 1) | (values > n_experts))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}: subject {plain_label(groups[j])!r} has {values[j]:g}, not an "
                         f"expert 1..{n_experts} (leave it missing where the expert is unknown)")
    out = np.full(len(labels), -1, dtype=np.intp)
    out[codes[given]] = values[given].astype(np.intp) - 1
    differs = given & (out[codes] != values.astype(float) - 1)
    if differs.any():
        j = int(np.flatnonzero(differs)[0])
        raise ValueError(f"{what} differs between the rows of subject "
                         f"{plain_label(groups[j])!r}: it must be one value per subject")
    return out


def fixed_priors(values: np.ndarray, groups: np.ndarray, n_experts: int,
                 known: np.ndarray | None = None) -> np.ndarray | None:
    """Fixed prior expert probabilities of each subject (N, K), NaN rows where the gating
    gives them, subjects in the order of :func:`pymemoe._design.subjects.subject_codes`; None
    when no subject has them. A ValueError names the subject whose probabilities are not in
    [0, 1], do not sum to 1, differ between its rows, or that also has a known expert.

    Examples
    --------
    >>> p = np.array([[0.2, 0.8], [0.2, 0.8], [np.nan, np.nan]])
    >>> fixed_priors(p, np.array([1, 1, 2]), 2).tolist()
    [[0.2, 0.8], [nan, nan]]
    """
    values = np.asarray(values, dtype=float)
    if values.shape[1] != n_experts:
        raise ValueError(f"class_prior has {values.shape[1]} columns; it needs one per expert "
                         f"({n_experts})")
    codes, labels = subject_codes(groups)
    given = np.isfinite(values).all(axis=1)
    if not given.any():
        return None
    partial = np.isfinite(values).any(axis=1) & ~given
    bad = given & ((values < 0).any(axis=1) | (values > 1).any(axis=1)
                   | (np.abs(values.sum(axis=1) - 1.0) > 1e-6))
    for mask, what in ((partial, "misses some experts' probabilities"),
                       (bad, "are not probabilities summing to 1")):
        if mask.any():
            j = int(np.flatnonzero(mask)[0])
            raise ValueError(f"class_prior of subject {plain_label(groups[j])!r} {what}")
    out = np.full((len(labels), n_experts), np.nan)
    out[codes[given]] = values[given]
    differs = given & ~np.isclose(out[codes], values, rtol=0.0, atol=1e-12).all(axis=1)
    if differs.any():
        j = int(np.flatnonzero(differs)[0])
        raise ValueError(f"class_prior differs between the rows of subject "
                         f"{plain_label(groups[j])!r}: it must be one value per subject")
    if known is not None:
        both = np.isfinite(out[:, 0]) & (known >= 0)
        if both.any():
            raise ValueError(f"subject {plain_label(labels[int(np.flatnonzero(both)[0])])!r} "
                             f"has both a known expert and fixed prior probabilities")
    return out


def model_inputs(endog, exog, groups, exog_re, exog_gate, exog_shared, *, family, scale: str,
                 missing: str, offset=None, exposure=None, spec: DesignSpec | None = None,
                 n_dropped: int = 0, row_index: pd.Index | None = None, known_class=None,
                 class_prior=None, n_experts: int = 2) -> ModelInputs:
    """The arguments of ``MEMoE(...)`` as checked row arrays (see :class:`ModelInputs`);
    ``spec`` names the columns when the arrays come from formulas."""
    if row_index is None and isinstance(endog, (pd.Series, pd.DataFrame)):
        row_index = endog.index       # predictions are labelled like the user's rows
    endog_arr = np.asarray(endog, dtype=float)
    if endog_arr.ndim == 2 and endog_arr.shape[1] == 1:
        endog_arr = endog_arr[:, 0]
    trials_arr = None
    if endog_arr.ndim == 2 and endog_arr.shape[1] == 2 and 2 in family.outcome_columns:
        trials_arr = endog_arr.sum(axis=1)         # (successes, failures), as statsmodels' GLM
        endog_arr = endog_arr[:, 0]
    if endog_arr.ndim != 1:
        raise ValueError(f"endog must be one-dimensional (or two columns, successes and "
                         f"failures, for family='binomial'), got shape {endog_arr.shape}")
    n = endog_arr.shape[0]
    if n == 0:
        raise ValueError("endog has no observations")
    exog_arr = as_columns(exog, n, "exog")
    exog_re_arr = np.ones((n, 1)) if exog_re is None else as_columns(exog_re, n, "exog_re")
    exog_gate_arr = np.ones((n, 1)) if exog_gate is None else as_columns(exog_gate, n, "exog_gate")
    exog_shared_arr = (np.empty((n, 0)) if exog_shared is None
                       else as_columns(exog_shared, n, "exog_shared"))
    groups_arr = np.asarray(groups)
    if groups_arr.shape != (n,):
        raise ValueError(f"groups must have one label per observation ({n}); got shape "
                         f"{groups_arr.shape}")
    exposure_name = ("exposure" if spec is None or spec.exposure is None
                     else f"the exposure column {spec.exposure!r}")
    offset_arr = _offset(offset, exposure, n, family, row_index, exposure_name)
    known_arr = None if known_class is None else as_columns(known_class, n, "known_class")[:, 0]
    prior_arr = None if class_prior is None else as_columns(class_prior, n, "class_prior")

    if spec is not None:
        names = (spec.exog_names, spec.exog_re_names, spec.exog_gate_names,
                 spec.exog_shared_names)
        endog_name = spec.endog_name
    else:
        names = (_names(exog, "x", exog_arr.shape[1]),
                 ["Intercept"] if exog_re is None else _names(exog_re, "z", exog_re_arr.shape[1]),
                 ["Intercept"] if exog_gate is None else _names(exog_gate, "w",
                                                                 exog_gate_arr.shape[1]),
                 [] if exog_shared is None else _names(exog_shared, "s", exog_shared_arr.shape[1]))
        endog_name = (str(endog.name) if isinstance(endog, pd.Series) and endog.name is not None
                      else "y")

    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    if spec is not None:
        # designs built from formulas: build_design kept complete rows only
        finite = np.ones(n, dtype=bool)
    else:
        finite = (finite_rows(endog_arr, exog_arr, exog_re_arr, exog_gate_arr, exog_shared_arr,
                              offset_arr, *(() if trials_arr is None else (trials_arr,)))
                  & pd.notna(pd.Series(groups_arr)).to_numpy())
    if not finite.all():
        if missing == "raise":
            raise ValueError(f"{int((~finite).sum())} rows have missing or non-finite values "
                             f"(missing='raise')")
        n_dropped += int((~finite).sum())
        endog_arr, exog_arr, exog_re_arr, exog_gate_arr, exog_shared_arr, groups_arr, offset_arr = (
            a[finite] for a in (endog_arr, exog_arr, exog_re_arr, exog_gate_arr,
                                exog_shared_arr, groups_arr, offset_arr))
        if trials_arr is not None:
            trials_arr = trials_arr[finite]
        if known_arr is not None:
            known_arr = known_arr[finite]
        if prior_arr is not None:
            prior_arr = prior_arr[finite]
        if row_index is not None:
            row_index = row_index[finite]
        if endog_arr.shape[0] == 0:
            raise ValueError("no rows left after dropping rows with missing values")
    if row_index is None:
        row_index = pd.RangeIndex(endog_arr.shape[0])

    if spec is None:              # build_design checked the gating formula's columns
        check_constant_within(exog_gate_arr, groups_arr, names[2], "exog_gate")
    check_random_effects_estimable(groups_arr, names[1], "exog_re" if spec is None else
                                   f"re_formula {spec.re_formula!r}")
    full_exog = np.column_stack([exog_arr, exog_shared_arr])
    outcome = (" + ".join(spec.endog_info.column_names)       # successes + failures
               if spec is not None and trials_arr is not None else endog_name)
    family.check_outcome(endog_arr, trials_arr, full_exog, outcome,
                         None if spec is None else spec.formula, row_index)
    structure_scale = family.scale_structure(scale)
    family.check_random_effects(exog_re_arr.shape[1])
    known_what = ("known_class" if spec is None or spec.known_class is None
                  else f"known_class column {spec.known_class!r}")
    known = (None if known_arr is None
             else known_classes(known_arr, groups_arr, n_experts, known_what))
    priors = (None if prior_arr is None
              else fixed_priors(prior_arr, groups_arr, n_experts, known))
    return ModelInputs(endog=endog_arr, trials=trials_arr, offset=offset_arr, exog=full_exog,
                       exog_re=exog_re_arr, exog_gate=exog_gate_arr, groups=groups_arr,
                       names=tuple(tuple(part) for part in names), endog_name=endog_name,
                       row_index=row_index, n_dropped=n_dropped, scale=structure_scale,
                       known_class=known, class_prior=priors)
