"""Checks of the input that name the column, subject or row at fault.

Each raises a ``ValueError`` whose message says what is wrong, where, and what to do.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .subjects import first_rows

__all__ = ["plain_label", "finite_rows", "check_constant_within", "check_outcome_varies",
           "check_random_effects_estimable", "check_rank"]


def finite_rows(*arrays: np.ndarray) -> np.ndarray:
    """Rows (n,) where every array, (n,) or (n, m), holds finite values only: the rows a
    model keeps (``missing="drop"`` drops the others and counts them).

    Examples
    --------
    >>> finite_rows(np.array([1.0, np.nan, 3.0]), np.array([[1.0], [2.0], [np.inf]])).tolist()
    [True, False, False]
    """
    keep = np.ones(np.shape(arrays[0])[0], dtype=bool)
    for values in arrays:
        finite = np.isfinite(np.asarray(values, dtype=float))
        keep &= finite if finite.ndim == 1 else finite.all(axis=1)
    return keep


def plain_label(value):
    """A numpy scalar as the Python value it holds (other values unchanged), so that error
    messages name row 104 or subject 'a', not np.int64(104) or np.str_('a').

    Examples
    --------
    >>> import numpy as np
    >>> repr(plain_label(np.int64(104)))
    '104'
    """
    return value.item() if isinstance(value, np.generic) else value


def check_constant_within(values: np.ndarray, groups: np.ndarray, names: list[str], what: str) -> None:
    """Raise a ValueError naming the column and a subject if a column varies within a subject.

    Gating covariates describe the subject at baseline, so they must be constant within it.
    """
    if values.shape[1] == 0:
        return
    varying = [j for j in range(values.shape[1])            # a constant column (the intercept)
               if not np.all(values[:, j] == values[0, j])]  # is constant within every subject
    if not varying:
        return
    codes, _ = pd.factorize(pd.Series(groups))
    first = first_rows(codes, codes.max() + 1)[codes]
    for col in varying:
        differs = values[:, col] != values[first, col]
        if not differs.any():
            continue
        row = int(np.flatnonzero(differs)[0])
        subject = plain_label(groups[row])
        raise ValueError(
            f"{what}: column {names[col]!r} varies within subject {subject!r}; gating "
            f"covariates must be baseline values, constant within each subject (use the "
            f"baseline value, e.g. the first visit's)"
        )


def check_outcome_varies(y: np.ndarray, x: np.ndarray, what: str) -> None:
    """A ValueError when the outcome is constant, or an exact linear function of the fixed
    effects: the residual variances would be 0 and the likelihood unbounded, so no fit exists.
    ``what`` names the outcome in the message."""
    if np.all(y == y[0]):
        raise ValueError(
            f"{what} is constant ({float(y[0])!r} in all {y.size} rows of the analysis sample), "
            f"so there is nothing to model and the residual variance would be 0; check the "
            f"outcome column and the rows kept"
        )
    if x.shape[1] == 0 or x.shape[0] <= x.shape[1]:
        return
    center = y - y.mean()
    floor = 1e-20 * float(center @ center)
    # A least-squares fit to some of the rows leaves at most the residual of all rows, so a
    # residual above the floor there settles it without the full (n x p) least squares.
    some = np.linspace(0, y.size - 1, min(y.size, 20 * x.shape[1] + 2000)).astype(int)
    for rows in (some, slice(None)):
        coef, *_ = np.linalg.lstsq(x[rows], y[rows], rcond=None)
        resid = y[rows] - x[rows] @ coef
        if float(resid @ resid) > floor:
            return
    raise ValueError(
        f"{what}: the fixed effects reproduce the outcome exactly (no residual variation in "
        f"the analysis sample), so the residual variance would be 0 and the likelihood "
        f"unbounded; check that the outcome is not a function of the covariates"
    )


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


def check_rank(gram: np.ndarray, names: Sequence[str], what: str) -> None:
    """A ValueError naming the collinear (or all-zero) columns when the Gram matrix ``gram``
    of a design is rank deficient."""
    if gram.shape[0] == 0:
        return
    vals, vecs = np.linalg.eigh(gram)
    tol = vals.max() * gram.shape[0] * 1e-12
    null = vecs[:, vals <= tol]
    if null.shape[1]:
        involved = [names[j] for j in np.flatnonzero(np.abs(null).max(axis=1) > 1e-6)]
        raise ValueError(f"the {what} is rank deficient: columns {involved} are collinear "
                         f"(or constant zero); remove one of them from the formula")
