r"""Prediction sets of a fitted MEMoE: equal-tail intervals and highest-density regions.

The predictive law of one new observation is a Gaussian mixture (see
:mod:`pymemoe._predictive` and :func:`pymemoe.prediction.predictive_mixture`).

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
they are optimistic; honest coverage comes from held-out subjects
(:func:`pymemoe.cross_validate`) or future rows. The user's functions are
:func:`pymemoe.prediction.prediction_set` and :func:`pymemoe.prediction.coverage`.

References
----------
Hyndman (1996), Computing and graphing highest density regions. The American
Statistician 50(2).
"""
from __future__ import annotations

import numpy as np

from .laws import ComponentLaws

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


def covered_rows(rows: np.ndarray, lower: np.ndarray, upper: np.ndarray, y: np.ndarray,
                 n: int) -> np.ndarray:
    """Whether y of each of the n rows lies in one of its intervals (``set_arrays`` layout)."""
    inside = (lower <= y[rows]) & (y[rows] <= upper)
    return np.bincount(rows, inside.astype(float), minlength=n) > 0


