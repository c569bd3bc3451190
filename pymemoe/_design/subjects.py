"""Subject labels: read from the data, and coded in a canonical (sorted) order."""
from __future__ import annotations

from typing import Hashable

import numpy as np
import pandas as pd

__all__ = ["group_labels", "subject_codes", "first_rows"]


def group_labels(data: pd.DataFrame, groups: Hashable | np.ndarray | pd.Series | None,
                 fitted_column: str | None = None,
                 missing_ok: bool = False) -> tuple[np.ndarray, str | None]:
    """Subject labels of the rows of ``data`` and the name of their column (None for labels
    given as an array).

    ``groups`` is a column of ``data``, one label per row, or None: then the column the model
    was fitted with (``fitted_column``, e.g. ``spec.groups``). A ValueError names the column
    when it is absent, and (unless ``missing_ok``: the fit drops such rows) when a label is
    missing.
    """
    if groups is None:
        groups = fitted_column
        if groups is None:
            raise ValueError("the model was fitted with subject labels given as an array; pass "
                             "groups= (a column name of the data or one label per row)")
    if isinstance(groups, str) or (np.ndim(groups) == 0 and groups is not None):
        if groups not in data.columns:
            raise ValueError(
                f"groups={groups!r} is not a column of the data; columns are {list(data.columns)}"
            )
        values, name = data[groups].to_numpy(), str(groups)
    else:
        values, name = np.asarray(groups), None
        if values.ndim != 1 or values.shape[0] != len(data):
            raise ValueError(
                f"groups must be a column name or an array with one label per row ({len(data)} "
                f"rows); got shape {values.shape}"
            )
    if not missing_ok and pd.isna(pd.Series(values)).any():
        raise ValueError("the subject labels (groups) of the data contain missing values")
    return values, name


def subject_codes(groups: np.ndarray) -> tuple[np.ndarray, pd.Index]:
    """Integer code per row and the subject labels, sorted when the labels are orderable.

    Sorting makes the subject order (and so every per-subject output) independent of the row
    order of the data.
    """
    try:
        codes, labels = pd.factorize(pd.Series(groups), sort=True)
    except TypeError:  # labels of mixed, unorderable types: keep order of first appearance
        codes, labels = pd.factorize(pd.Series(groups), sort=False)
    return codes, pd.Index(labels, name="subject")


def first_rows(codes: np.ndarray, n_subjects: int) -> np.ndarray:
    """Position of the first row of each subject (codes from :func:`subject_codes`).

    Examples
    --------
    >>> first_rows(np.array([1, 0, 1, 0]), 2).tolist()
    [1, 0]
    """
    first = np.empty(n_subjects, dtype=int)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    return first
