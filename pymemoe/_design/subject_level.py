"""Per-subject variables after the fit: one value, or one design row, per subject of a fitted
model, read from a long data frame (repeated on every row of a subject) or from one row per
subject. What the three-step methods (:mod:`pymemoe.three_step`) relate the classes to.

A subject of the fit whose rows are absent from the data, or whose value is missing, is
missing (counted by the caller); a variable that varies within a subject is an error naming the
subject, since a distal outcome or a predictor of membership is one value per subject.
"""
from __future__ import annotations

from typing import Hashable

import numpy as np
import pandas as pd
import patsy

from .checks import plain_label
from .subjects import group_labels

__all__ = ["subject_values", "subject_design", "align_to_subjects"]


def _subject_rows(data: pd.DataFrame, groups, fitted_column: str | None,
                  subjects: pd.Index) -> np.ndarray:
    """The position in ``subjects`` of each row's subject (-1: a subject the fit does not
    have)."""
    labels, _ = group_labels(data, groups, fitted_column=fitted_column, missing_ok=True)
    return subjects.get_indexer(pd.Index(labels))


def _first_per_subject(values: np.ndarray, where: np.ndarray, n_subjects: int,
                       what: str, subjects: pd.Index) -> np.ndarray:
    """One row of ``values`` (n, m) per subject (NaN for subjects without a row), checking
    that the rows of a subject agree (NaN rows are ignored)."""
    out = np.full((n_subjects, values.shape[1]), np.nan)
    rows = np.flatnonzero(where >= 0)
    complete = rows[np.isfinite(values[rows]).all(axis=1)]
    order = complete[::-1]
    out[where[order]] = values[order]            # the first complete row of each subject
    if complete.size:
        differs = ~np.isclose(values[complete], out[where[complete]], rtol=0.0, atol=0.0,
                              equal_nan=True)
        if differs.any():
            row = complete[np.argwhere(differs)[0][0]]
            subject = plain_label(subjects[where[row]])
            raise ValueError(f"{what} varies within subject {subject!r}; it must be one value "
                             f"per subject (repeated on each of its rows, or one row per "
                             f"subject)")
    return out


def subject_values(data: pd.DataFrame, column: Hashable, groups, fitted_column: str | None,
                   subjects: pd.Index, what: str | None = None) -> pd.Series:
    """The value of ``column`` for each subject of ``subjects`` (NaN/None where missing);
    ``what`` names the column in errors (default ``"outcome '<column>'"``).

    Examples
    --------
    >>> df = pd.DataFrame({"id": [1, 1, 2, 3], "z": [0.5, 0.5, 2.0, np.nan]})
    >>> subject_values(df, "z", "id", None, pd.Index([1, 2, 3, 4])).tolist()
    [0.5, 2.0, nan, nan]
    """
    what = f"outcome {column!r}" if what is None else what
    if column not in data.columns:
        raise ValueError(f"{what} is not a column of the data; columns are "
                         f"{list(data.columns)}")
    where = _subject_rows(data, groups, fitted_column, subjects)
    raw = data[column]
    if pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
        values = raw.astype(float).to_numpy()[:, None]
        first = _first_per_subject(values, where, len(subjects), what, subjects)[:, 0]
        return pd.Series(first, index=subjects, name=str(column))
    codes, levels = pd.factorize(raw, sort=True)     # any other type: categories
    coded = np.where(codes < 0, np.nan, codes.astype(float))[:, None]
    first = _first_per_subject(coded, where, len(subjects), what, subjects)[:, 0]
    out = pd.Series(pd.Categorical.from_codes(np.where(np.isnan(first), -1, first).astype(int),
                                              categories=levels),
                    index=subjects, name=str(column))
    return out


def subject_design(formula: str, data: pd.DataFrame, groups, fitted_column: str | None,
                   subjects: pd.Index, eval_depth: int = 0) -> tuple[np.ndarray, list[str]]:
    """The design of ``formula`` (e.g. ``"~ age + C(sex)"``) for each subject of ``subjects``:
    (S, r) with NaN rows for subjects that are absent or have a missing value, and the column
    names. ``eval_depth`` counts the frames above the caller where the formula's names (such
    as ``np``) are looked up."""
    if "~" not in formula:
        raise ValueError(f"formula {formula!r} must be one-sided, e.g. '~ age + C(sex)'")
    if formula.split("~", 1)[0].strip():
        raise ValueError(f"formula {formula!r} must be one-sided (nothing left of '~'): the "
                         f"classes are its outcome")
    env = patsy.EvalEnvironment.capture(eval_depth + 1)
    data = data.reset_index(drop=True)          # a new frame: rows by position
    try:
        frame = patsy.dmatrix(formula, data, eval_env=env, NA_action="drop",
                              return_type="dataframe")
    except Exception as err:            # patsy's errors say where in the formula
        raise ValueError(f"formula {formula!r} cannot be evaluated on the data: {err}") from err
    where = _subject_rows(data, groups, fitted_column, subjects)
    full = np.full((len(data), frame.shape[1]), np.nan)
    full[data.index.get_indexer(frame.index)] = frame.to_numpy(dtype=float)
    design = _first_per_subject(full, where, len(subjects), f"formula {formula!r}", subjects)
    return design, list(frame.columns)


def align_to_subjects(values, subjects: pd.Index, what: str) -> np.ndarray:
    """One value per subject of ``subjects``: a pandas Series indexed by subject label (in any
    order; a ValueError names a subject it lacks), or an array in the order of ``subjects``.

    Examples
    --------
    >>> align_to_subjects(pd.Series({"b": 2.0, "a": 1.0}), pd.Index(["a", "b"]), "w").tolist()
    [1.0, 2.0]
    """
    if isinstance(values, pd.Series):
        missing = subjects.difference(values.index)
        if len(missing):
            raise ValueError(f"{what} has no value for subject {plain_label(missing[0])!r} "
                             f"({len(missing)} subjects of the model lack one)")
        if not values.index.is_unique:
            raise ValueError(f"{what}: its index repeats a subject label")
        return values.reindex(subjects).to_numpy()
    out = np.asarray(values)
    if out.shape != (len(subjects),):
        raise ValueError(f"{what} must have one value per subject ({len(subjects)}, in the "
                         f"order of the model's subjects) or be a Series indexed by subject; "
                         f"got shape {out.shape}")
    return out
