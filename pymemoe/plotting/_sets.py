"""Prediction sets drawn with the observations they cover and miss."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._style import import_pyplot, new_axes

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib stays optional at run time
    from matplotlib.axes import Axes

__all__ = ["plot_prediction_sets"]


def plot_prediction_sets(sets: pd.DataFrame, observed: pd.Series, ax: "Axes | None" = None,
                         time: pd.Series | None = None) -> "Axes":
    """Prediction sets of each row as vertical segments, with observations covered or missed.

    The figure of the MEMoE paper (its Figure 5, 95% sets for PBCseq log bilirubin): every
    interval of every row's set is a vertical segment (a highest-density set that is a union of
    intervals gives several segments on one row); each observed value is a dot when it lies in
    one of its row's intervals and a cross when it does not. The title states the empirical
    coverage, the share of rows with an observed value that are covered.

    Parameters
    ----------
    sets : pandas.DataFrame
        Tidy sets as returned by :func:`pymemoe.prediction.prediction_set`: columns ``row`` (a
        label of ``observed``'s index), ``interval`` (0, 1, ... within the row), ``lower`` and
        ``upper``. The level is read from ``sets.attrs["alpha"]`` when present.
    observed : pandas.Series
        Observed outcome per row, indexed by row label (unique); NaN for a row without an
        observation (its set is drawn, it does not count in the coverage).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure when None.
    time : pandas.Series, optional
        x position of each row (same index as ``observed``); by default the position of the
        row in ``observed``.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.collections``: the segments (a LineCollection, gid ``"sets"``, one segment per
        row of ``sets``), then the covered and the missed observations (gids ``"covered"``
        and ``"missed"``).

    Raises
    ------
    ValueError
        If a column is missing, ``observed``'s index is not unique, a row of ``sets`` is not
        in ``observed``, an observed row has no set, or ``time`` lacks a row.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import pandas as pd
    >>> sets = pd.DataFrame({"row": [0, 1, 1], "interval": [0, 0, 1],
    ...                      "lower": [0.0, 0.0, 2.0], "upper": [1.0, 1.0, 3.0]})
    >>> observed = pd.Series([0.5, 1.5])
    >>> ax = plot_prediction_sets(sets, observed)
    >>> ax.get_title()
    'Prediction sets: empirical coverage 50.0% (1 of 2)'
    >>> plt.close(ax.figure)
    """
    import_pyplot()
    need = {"row", "lower", "upper"}
    if not isinstance(sets, pd.DataFrame) or not need <= set(sets.columns):
        raise ValueError("sets must be a DataFrame with columns 'row', 'lower' and 'upper' "
                         "(as from MEMoEResults.prediction_set)")
    observed = pd.Series(observed)
    labels = observed.index
    if not labels.is_unique:
        raise ValueError("observed must have a unique index (the row labels of sets)")
    pos = labels.get_indexer(pd.Index(sets["row"]))
    if (pos < 0).any():
        first = sets["row"].iloc[np.flatnonzero(pos < 0)[0]]
        raise ValueError(f"sets has a row not in observed's index: {first!r}")
    y = observed.to_numpy(dtype=float)
    n = y.size
    has_set = np.zeros(n, dtype=bool)
    has_set[pos] = True
    finite = np.isfinite(y)
    lonely = finite & ~has_set
    if lonely.any():
        raise ValueError(f"observed row {labels[np.flatnonzero(lonely)[0]]!r} has no prediction set")
    lower = sets["lower"].to_numpy(dtype=float)
    upper = sets["upper"].to_numpy(dtype=float)
    inside = (lower <= y[pos]) & (y[pos] <= upper)
    covered = (np.bincount(pos, inside.astype(float), minlength=n) > 0) & finite
    missed = finite & ~covered

    if time is None:
        x = np.arange(n, dtype=float)
        xlabel = "observation (order of observed)"
    else:
        t = pd.Series(time).reindex(labels)
        if t.isna().any():
            raise ValueError(f"time has no value for row {labels[np.flatnonzero(t.isna())[0]]!r}")
        x = t.to_numpy(dtype=float)
        xlabel = str(time.name) if getattr(time, "name", None) is not None else "time"

    alpha = sets.attrs.get("alpha")
    level = "Prediction sets" if alpha is None else f"{100 * (1 - alpha):g}% prediction sets"
    ax = new_axes(ax)
    if time is None:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    width = float(np.clip(300.0 / max(n, 1), 0.3, 1.5))
    ax.vlines(x[pos], lower, upper, colors="0.55", lw=width, label=level, gid="sets")
    size = float(np.clip(3000.0 / max(n, 1), 4.0, 30.0))
    ax.scatter(x[covered], y[covered], s=size, marker="o", color="C0", zorder=3,
               label=f"covered ({int(covered.sum())})", gid="covered")
    ax.scatter(x[missed], y[missed], s=2 * size, marker="x", color="C3", zorder=4,
               label=f"missed ({int(missed.sum())})", gid="missed")
    n_obs = int(finite.sum())
    if n_obs:
        share = covered.sum() / n_obs
        ax.set_title(f"{level}: empirical coverage {100 * share:.1f}% "
                     f"({int(covered.sum())} of {n_obs})")
    else:
        ax.set_title(f"{level} (no observed outcome)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(str(observed.name) if observed.name is not None else "outcome")
    ax.legend(fontsize="small")
    return ax
