"""Per-subject sufficient statistics: the only view of the rows that the fit needs.

For Gaussian experts every quantity of the EM algorithm and of the scores depends on subject i's
data only through the cross-products of the stacked row block ``[X_i  Z_i  y_i]``::

    X'X (p x p),  X'Z (p x q),  Z'Z (q x q),  X'y (p),  Z'y (q),  y'y,  n_i

plus the subject's row of gating covariates ``w_i``. They are computed once, in one vectorised
pass of grouped sums over the rows sorted by subject (``numpy.add.reduceat`` on each of the
m(m+1)/2 column products, m = p + q + 1), and stored as stacked arrays with the subject on the
first axis. The EM iterations then cost O(N K (p + q)^3) whatever the number of rows.

``X`` here is the full fixed-effects design: the expert-specific columns followed by the shared
columns (``shared_formula``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["SubjectData", "subject_codes", "check_constant_within", "check_outcome_varies",
           "plain_label"]


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


def check_constant_within(values: np.ndarray, groups: np.ndarray, names: list[str], what: str) -> None:
    """Raise a ValueError naming the column and a subject if a column varies within a subject.

    Gating covariates describe the subject at baseline, so they must be constant within it.
    """
    if values.shape[1] == 0:
        return
    codes, _ = pd.factorize(pd.Series(groups))
    first_row = np.empty(codes.max() + 1, dtype=int)
    first_row[codes[::-1]] = np.arange(len(codes))[::-1]
    differs = values != values[first_row[codes]]
    if differs.any():
        row, col = np.argwhere(differs)[0]
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
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    if float(resid @ resid) <= 1e-20 * float(center @ center):
        raise ValueError(
            f"{what}: the fixed effects reproduce the outcome exactly (no residual variation in "
            f"the analysis sample), so the residual variance would be 0 and the likelihood "
            f"unbounded; check that the outcome is not a function of the covariates"
        )


@dataclass(frozen=True)
class SubjectData:
    """Sufficient statistics of each subject (first axis: subject, N of them).

    Attributes
    ----------
    n_obs : ndarray (N,)
        Number of observations n_i.
    xx, xz, zz : ndarray (N, p, p), (N, p, q), (N, q, q)
        X'X, X'Z and Z'Z.
    xy, zy : ndarray (N, p), (N, q)
        X'y and Z'y.
    yy : ndarray (N,)
        y'y.
    exog_gate : ndarray (N, r)
        The gating covariates w_i (one row per subject).
    subjects : pandas.Index
        Subject labels, in the order of the first axis.
    row_codes : ndarray (n,)
        Subject position of every row, in the row order of the input.
    """

    n_obs: np.ndarray
    xx: np.ndarray
    xz: np.ndarray
    zz: np.ndarray
    xy: np.ndarray
    zy: np.ndarray
    yy: np.ndarray
    exog_gate: np.ndarray
    subjects: pd.Index
    row_codes: np.ndarray

    @property
    def n_groups(self) -> int:
        return self.n_obs.shape[0]

    @property
    def k_fe(self) -> int:
        return self.xx.shape[1]

    @property
    def k_re(self) -> int:
        return self.zz.shape[1]

    @property
    def k_gate(self) -> int:
        return self.exog_gate.shape[1]

    @property
    def nobs(self) -> int:
        return int(self.n_obs.sum())

    @property
    def family(self):
        """The expert family these statistics serve: Gaussian (linear mixed model) experts."""
        from .families.gaussian import GAUSSIAN   # the families import this module
        return GAUSSIAN

    def subject_slice(self, start: int, stop: int) -> "SubjectData":
        """The statistics of subjects ``start:stop`` (views, no copy): a block of
        :mod:`pymemoe.blocks`. Its ``row_codes`` are empty (rows belong to the whole data)."""
        sl = slice(start, stop)
        return SubjectData(n_obs=self.n_obs[sl], xx=self.xx[sl], xz=self.xz[sl], zz=self.zz[sl],
                           xy=self.xy[sl], zy=self.zy[sl], yy=self.yy[sl],
                           exog_gate=self.exog_gate[sl], subjects=self.subjects[sl],
                           row_codes=np.empty(0, dtype=np.intp))

    @classmethod
    def concatenate(cls, parts: "list[SubjectData]") -> "SubjectData":
        """The statistics of consecutive groups of subjects as one object (subjects in order;
        ``row_codes`` empty)."""
        if len(parts) == 1:
            return parts[0]
        join = {name: np.concatenate([getattr(p, name) for p in parts], axis=0)
                for name in ("n_obs", "xx", "xz", "zz", "xy", "zy", "yy", "exog_gate")}
        return cls(**join, subjects=parts[0].subjects.append([p.subjects for p in parts[1:]]),
                   row_codes=np.empty(0, dtype=np.intp))

    def take(self, index: np.ndarray) -> "SubjectData":
        """The statistics of the subjects at positions ``index`` (a copy; e.g. a random
        subsample of subjects to screen starts on). ``row_codes`` are empty."""
        index = np.asarray(index)
        return SubjectData(n_obs=self.n_obs[index], xx=self.xx[index], xz=self.xz[index],
                           zz=self.zz[index], xy=self.xy[index], zy=self.zy[index],
                           yy=self.yy[index], exog_gate=self.exog_gate[index],
                           subjects=self.subjects[index], row_codes=np.empty(0, dtype=np.intp))

    @classmethod
    def from_arrays(
        cls,
        endog: np.ndarray,
        exog: np.ndarray,
        exog_re: np.ndarray,
        exog_gate: np.ndarray,
        groups: np.ndarray,
    ) -> "SubjectData":
        """Compute the per-subject cross-products by grouped sums over the rows.

        Parameters
        ----------
        endog : ndarray (n,)
        exog : ndarray (n, p)
        exog_re : ndarray (n, q); q may be 0
        exog_gate : ndarray (n, r); constant within subject (the first row of each is used)
        groups : ndarray (n,) of hashable labels

        Examples
        --------
        >>> import numpy as np
        >>> y = np.array([1.0, 2.0, 3.0]); x = np.ones((3, 1)); g = np.array(["a", "b", "a"])
        >>> sd = SubjectData.from_arrays(y, x, x, x, g)
        >>> sd.n_obs.tolist(), sd.xy[:, 0].tolist(), sd.yy.tolist()
        ([2.0, 1.0], [4.0, 2.0], [10.0, 4.0])
        """
        endog = np.asarray(endog, dtype=float)
        n = endog.shape[0]
        blocks = {"exog": exog, "exog_re": exog_re, "exog_gate": exog_gate}
        arrays = {}
        for name, value in blocks.items():
            value = np.asarray(value, dtype=float)
            if value.ndim == 1:
                value = value[:, None]
            if value.ndim != 2 or value.shape[0] != n:
                raise ValueError(f"{name} must have one row per observation ({n}); got shape {value.shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"{name} contains missing or non-finite values")
            arrays[name] = value
        if not np.isfinite(endog).all():
            raise ValueError("endog contains missing or non-finite values")
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must have one label per observation ({n}); got shape {groups.shape}")

        codes, labels = subject_codes(groups)
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        x, z = arrays["exog"], arrays["exog_re"]
        p, q = x.shape[1], z.shape[1]
        block = np.column_stack([x, z, endog])[order]
        m = p + q + 1
        cross = np.empty((len(starts), m, m))
        for a in range(m):  # m(m+1)/2 grouped sums over rows; never a loop over subjects
            for b in range(a, m):
                cross[:, a, b] = cross[:, b, a] = np.add.reduceat(block[:, a] * block[:, b], starts)
        n_obs = np.diff(np.r_[starts, n]).astype(float)
        xs, zs, ys = slice(0, p), slice(p, p + q), p + q
        return cls(
            n_obs=n_obs,
            xx=cross[:, xs, xs].copy(),
            xz=cross[:, xs, zs].copy(),
            zz=cross[:, zs, zs].copy(),
            xy=cross[:, xs, ys].copy(),
            zy=cross[:, zs, ys].copy(),
            yy=cross[:, ys, ys].copy(),
            exog_gate=arrays["exog_gate"][order][starts],
            subjects=labels,
            row_codes=codes,
        )
