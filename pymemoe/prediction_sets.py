r"""Prediction sets of a fitted MEMoE: equal-tail intervals and highest-density regions.

The predictive law of one new observation is a Gaussian mixture (see
:mod:`pymemoe.predict`, :func:`pymemoe.predict.predictive_mixture`).

A **prediction set** at level 1 - alpha is either

* the *equal-tail* interval [F^-1(alpha/2), F^-1(1 - alpha/2)] of the mixture CDF F (found by
  safeguarded Newton iterations, vectorised over rows), or
* the *highest-density region* (HDR) {y : f(y) >= c} with c chosen so that its mass is
  1 - alpha. It is the shortest set of that mass, and a union of intervals when the experts'
  predictions are far apart. On a per-row grid that follows every component (``n_grid``
  points over +-9 standard deviations each) the grid cells sorted by density give a first c
  (Hyndman's method); then, at each c, the grid locates the intervals of {f >= c}, each end is
  solved exactly from f(y) = c by safeguarded Newton, and c is updated by Newton's method on
  the exact mass m(c) = sum [F(u) - F(l)], whose derivative is m'(c) = -c sum 1 / ``|f'(end)|``,
  with bisection as the safeguard (m is decreasing in c). The masses are then exact to 1e-10.

Parameter uncertainty is not propagated (plug-in predictive law), as in lcmm's ``predictY``.
In-sample conditional sets (``newdata=None``) use each observation in its own posterior, so
they are optimistic; honest coverage comes from held-out subjects (:func:`cross_validate`) or
future rows.

References
----------
Hyndman (1996), Computing and graphing highest density regions. The American
Statistician 50(2).
"""
from __future__ import annotations

from typing import Hashable

import numpy as np
import pandas as pd

from .laws import ComponentLaws
from .predict import laws_of, observed_outcome, require_rows

__all__ = ["prediction_set", "coverage", "set_arrays", "covered_rows", "check_alpha",
           "SET_METHODS"]

SET_METHODS = ("hdr", "equal_tail")
_GRID_Z = 9.0          # the HDR grid spans +-9 SD around every component's mean
_CHUNK = 2_000_000     # grid cells per chunk of rows in the HDR computation

def _checked(laws: ComponentLaws) -> ComponentLaws:
    if not laws.continuous:
        raise ValueError(f"prediction sets are intervals of a density; the {laws.family!r} "
                         f"predictive law has none")
    sd = laws.sd
    if not (np.isfinite(sd).all() and (sd > 0).all()):
        raise ValueError("a predictive variance is zero or not finite; prediction sets need "
                         "positive residual variances")
    return laws


def _safeguarded_newton(g, dg, lo: np.ndarray, hi: np.ndarray, y: np.ndarray,
                        rising: np.ndarray | bool, max_iter: int) -> np.ndarray:
    """Root of g in [lo, hi] per row (g changes sign there; ``rising``: g increases through
    the root): Newton steps, replaced by bisection whenever they leave the bracket."""
    lo, hi = lo.copy(), hi.copy()
    for _ in range(max_iter):
        h = g(y)
        left_of_root = (h < 0) == rising          # the root lies above y
        lo = np.where(left_of_root, y, lo)
        hi = np.where(left_of_root, hi, y)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            newton = y - h / dg(y)
        inside = np.isfinite(newton) & (newton > lo) & (newton < hi)
        y_new = np.where(inside, newton, 0.5 * (lo + hi))
        done = np.abs(y_new - y) <= 1e-13 * (1.0 + np.abs(y))
        y = y_new
        if done.all():
            break
    return y


def _quantile(mix: ComponentLaws, p: float, max_iter: int = 200) -> np.ndarray:
    """Mixture quantile F^-1(p) per row (the CDF rises through it)."""
    rows = np.arange(mix.weights.shape[0])
    lo = (mix.means - 15.0 * mix.sd).min(axis=1)
    hi = (mix.means + 15.0 * mix.sd).max(axis=1)
    y = np.clip(mix.mean(), lo, hi)
    return _safeguarded_newton(lambda t: mix.cdf(t, rows) - p, lambda t: mix.pdf(t, rows),
                               lo, hi, y, True, max_iter)


def _refine_roots(mix: ComponentLaws, rows: np.ndarray, c: np.ndarray, lo: np.ndarray,
                  hi: np.ndarray, y: np.ndarray, rising: np.ndarray) -> np.ndarray:
    """Solve f(y) = c in [lo, hi] (f - c changes sign there)."""
    return _safeguarded_newton(lambda t: mix.pdf(t, rows) - c, lambda t: mix.dpdf(t, rows),
                               lo, hi, y, rising, 60)


def _crossings(mix: ComponentLaws, grid: np.ndarray, dens: np.ndarray, c: np.ndarray,
               rising: bool, rows: np.ndarray, j: np.ndarray, refine: bool) -> np.ndarray:
    """Ends of {f >= c} between grid points j-1 and j (linear interpolation, then Newton)."""
    G = grid.shape[1]
    a, b = np.clip(j - 1, 0, G - 1), np.clip(j, 0, G - 1)
    ya, yb, fa, fb = grid[rows, a], grid[rows, b], dens[rows, a], dens[rows, b]
    cr = c[rows]
    inner = (j > 0) & (j < G)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(inner, ya + (cr - fa) * (yb - ya) / (fb - fa), np.where(j == 0, yb, ya))
    y = np.where(np.isfinite(y), y, 0.5 * (ya + yb))
    if refine and inner.any():
        sel = np.flatnonzero(inner)
        y[sel] = _refine_roots(mix, rows[sel], cr[sel], ya[sel], yb[sel], y[sel],
                               np.full(sel.size, rising))
    return y


def _region(mix: ComponentLaws, grid: np.ndarray, dens: np.ndarray, c: np.ndarray, refine: bool):
    """The intervals of {f >= c}: row of each, lower and upper ends (rows ascending)."""
    n, G = dens.shape
    above = np.zeros((n, G + 2), dtype=bool)
    above[:, 1:-1] = dens >= c[:, None]
    # (rows, j): the grid crosses c between grid points j-1 and j (j = 0 or G: a grid edge)
    rows, j = np.nonzero(above[:, 1:] != above[:, :-1])
    rising = above[rows, j + 1]           # rows, j in row-major order: lower, upper, lower, ...
    lower = _crossings(mix, grid, dens, c, True, rows[rising], j[rising], refine)
    upper = _crossings(mix, grid, dens, c, False, rows[~rising], j[~rising], refine)
    return rows[rising], lower, upper


def _region_mass(mix: ComponentLaws, region, n: int) -> np.ndarray:
    r, a, b = region
    return np.bincount(r, mix.cdf(b, r) - mix.cdf(a, r), minlength=n)


def _hdr_chunk(mix: ComponentLaws, target: float, n_grid: int, tol: float = 1e-10):
    n, K = mix.weights.shape
    t = np.linspace(-_GRID_Z, _GRID_Z, n_grid)
    grid = (mix.means[:, :, None] + mix.sd[:, :, None] * t).reshape(n, K * n_grid)
    grid.sort(axis=1)
    dens = mix.pdf(grid)
    # Start: grid cells sorted by density, their (trapezoid) masses accumulated to the target.
    level = 0.5 * (dens[:, 1:] + dens[:, :-1])
    order = np.argsort(-level, axis=1)
    cum = np.cumsum(np.take_along_axis(level * np.diff(grid, axis=1), order, axis=1), axis=1)
    pos = np.minimum((cum < target).sum(axis=1), level.shape[1] - 1)
    c = level[np.arange(n), order[np.arange(n), pos]]
    # Safeguarded Newton on the exact mass m(c), decreasing in c: m'(c) = -c sum 1/|f'(end)|.
    lo, hi = np.zeros(n), dens.max(axis=1)
    best_c, best_err, prev_err = c, np.full(n, np.inf), np.full(n, np.inf)
    for _ in range(60):
        region = _region(mix, grid, dens, c, refine=True)
        err = _region_mass(mix, region, n) - target
        better = np.abs(err) < best_err
        best_c, best_err = np.where(better, c, best_c), np.where(better, np.abs(err), best_err)
        done = best_err <= tol
        if done.all():
            break
        lo, hi = np.where(err >= 0, c, lo), np.where(err >= 0, hi, c)
        r, a, b = region
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            slope = np.bincount(r, 1.0 / np.abs(mix.dpdf(a, r)) + 1.0 / np.abs(mix.dpdf(b, r)),
                                minlength=n)
            c_new = c + err / (c * slope)
        bisect = (~np.isfinite(c_new) | (c_new <= lo) | (c_new >= hi)
                  | (np.abs(err) > 0.5 * prev_err))
        c_new = np.where(bisect, 0.5 * (lo + hi), c_new)
        prev_err = np.abs(err)
        c = np.where(done, best_c, c_new)
    return _region(mix, grid, dens, best_c, refine=True)


def _hdr(mix: ComponentLaws, alpha: float, n_grid: int):
    n, K = mix.weights.shape
    size = max(1, _CHUNK // (K * n_grid))
    rows, lowers, uppers = [], [], []
    for start in range(0, n, size):  # chunks of rows bound the memory of the grid
        r, a, b = _hdr_chunk(mix.subset(slice(start, start + size)), 1.0 - alpha, n_grid)
        rows.append(r + start)
        lowers.append(a)
        uppers.append(b)
    return np.concatenate(rows), np.concatenate(lowers), np.concatenate(uppers)


def set_arrays(laws: ComponentLaws, alpha: float, method: str, n_grid: int = 400):
    """Prediction sets of every row of ``laws`` as flat arrays: the row of each interval
    (ascending), its lower and its upper end (a row may have several intervals)."""
    mix = _checked(laws)
    if method == "equal_tail":
        lower = _quantile(mix, alpha / 2.0)
        upper = _quantile(mix, 1.0 - alpha / 2.0)
        return np.arange(lower.shape[0]), lower, upper
    return _hdr(mix, alpha, n_grid)


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float in (0, 1), or a ValueError."""
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return alpha


def prediction_set(results, newdata: pd.DataFrame | None = None, alpha: float = 0.05,
                   kind: str = "conditional", method: str = "hdr", *, groups=None,
                   landmark: float | None = None, time: Hashable | None = None,
                   n_grid: int = 400) -> pd.DataFrame:
    """Prediction sets at level 1 - alpha for one new observation at each row.

    The predictive law is a Gaussian mixture (module docstring). ``method="hdr"`` returns its
    highest-density region, which is the shortest set of mass 1 - alpha and may be a union of
    several intervals; ``method="equal_tail"`` the interval between its alpha/2 and
    1 - alpha/2 quantiles.

    Parameters
    ----------
    results : MEMoEResults
    newdata : pandas.DataFrame, optional
        Rows to predict (None: the fitting data). For ``kind="conditional"``, the rows of a
        subject with an observed outcome (and time at or before ``landmark``) form the history
        that the posterior uses; on the fitting data each observation is in its own history,
        so in-sample conditional sets are optimistic.
    alpha : float
        One minus the level.
    kind : {"conditional", "marginal"}
        Mixture weights and components given the subject's history, or from covariates alone
        (a new subject: gating, D_k and sigma2_k).
    method : {"hdr", "equal_tail"}
    groups, landmark, time
        As in :func:`predict`.
    n_grid : int
        Grid points per mixture component for the HDR (the ends are then solved exactly).

    Returns
    -------
    pandas.DataFrame
        One row per (input row, interval), in input order, with columns ``row`` (the input
        index label), ``interval`` (0, 1, ... within the row, ascending), ``lower``, ``upper``
        and ``mass`` (the predictive probability of the interval; the masses of a row sum to
        1 - alpha).

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.prediction_sets import prediction_set
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1).fit()
    >>> prediction_set(res, df.head(2), kind="marginal").round(3)
       row  interval  lower  upper  mass
    0    0         0 -1.575  2.567  0.95
    1    1         0 -1.558  2.736  0.95

    With one expert the HDR is the equal-tail interval mean +- 1.96 SD.
    """
    alpha = check_alpha(alpha)
    if method not in SET_METHODS:
        raise ValueError(f"method must be one of {SET_METHODS}, got {method!r}")
    if int(n_grid) != n_grid or n_grid < 10:
        raise ValueError(f"n_grid must be an integer >= 10, got {n_grid!r}")
    index, laws = laws_of(results, newdata, kind, groups=groups, landmark=landmark, time=time)
    return _tidy_sets(laws, index, alpha, method, int(n_grid), kind)


def _tidy_sets(mix: ComponentLaws, index: pd.Index, alpha: float, method: str, n_grid: int,
               kind: str) -> pd.DataFrame:
    rows, lower, upper = set_arrays(mix, alpha, method, n_grid)
    mass = mix.cdf(upper, rows) - mix.cdf(lower, rows)
    interval = np.arange(rows.size) - np.searchsorted(rows, rows)
    frame = pd.DataFrame({"row": index.take(rows), "interval": interval, "lower": lower,
                          "upper": upper, "mass": mass})
    frame.attrs.update(alpha=alpha, kind=kind, method=method)
    return frame


def covered_rows(rows: np.ndarray, lower: np.ndarray, upper: np.ndarray, y: np.ndarray,
                 n: int) -> np.ndarray:
    """Whether y of each of the n rows lies in one of its intervals (``set_arrays`` layout)."""
    inside = (lower <= y[rows]) & (y[rows] <= upper)
    return np.bincount(rows, inside.astype(float), minlength=n) > 0


def coverage(results, newdata: pd.DataFrame | None, sets: pd.DataFrame) -> pd.Series:
    """Whether each observed outcome lies in its prediction set.

    Parameters
    ----------
    results : MEMoEResults
        The fit that made ``sets`` (its formula gives the outcome).
    newdata : pandas.DataFrame or None
        The rows the sets were made for (None: the fitting data). Its index must be unique.
    sets : pandas.DataFrame
        Output of :func:`prediction_set` on the same rows.

    Returns
    -------
    pandas.Series of bool
        Indexed by the rows with an observed outcome, named ``covered``; its mean is the
        empirical coverage.

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.prediction_sets import coverage, prediction_set
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1).fit()
    >>> sets = prediction_set(res, kind="marginal")
    >>> round(float(coverage(res, None, sets).mean()), 3)
    0.979
    """
    if newdata is None:
        require_rows(results, "coverage on the fitting data")
        index = results.model.row_index
    else:
        index = newdata.index
    y = observed_outcome(results, newdata)
    if not index.is_unique:
        raise ValueError("coverage matches sets to rows by index label, so the row index must "
                         "be unique (use reset_index() before prediction_set)")
    missing = ~pd.Index(sets["row"]).isin(index)
    if missing.any():
        raise ValueError(f"sets has rows not in the data, e.g. {sets['row'][missing].iloc[0]!r}")
    pos = index.get_indexer(sets["row"])
    covered = covered_rows(pos, sets["lower"].to_numpy(float), sets["upper"].to_numpy(float),
                       np.nan_to_num(y, nan=np.inf), len(index))
    observed = np.isfinite(y)
    return pd.Series(covered[observed], index=index[observed], name="covered")
