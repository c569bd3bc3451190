"""Prediction sets of single observations (highest-density regions or equal-tail intervals of
the mixture predictive law; computed in :mod:`pymemoe._predictive.sets`) and their coverage."""
from __future__ import annotations

from typing import Hashable

import numpy as np
import pandas as pd

from .._predictive.laws import ComponentLaws, laws_of
from .._predictive.rows import observed_outcome, require_rows
from .._predictive.sets import SET_METHODS, check_alpha, covered_rows, set_arrays

__all__ = ["prediction_set", "coverage"]


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
    >>> from pymemoe.prediction import prediction_set
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
    >>> from pymemoe.prediction import coverage, prediction_set
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
