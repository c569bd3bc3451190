"""The event curves of a joint model by expert: the model against the posterior-weighted
nonparametric estimates (:func:`pymemoe.diagnostics.event_fit_table`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..diagnostics import event_fit_table
from ._style import expert_colour, import_pyplot

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_event_curves"]


def plot_event_curves(results, times=None, axes=None, time_label: str = "time"
                      ) -> "np.ndarray":
    """Survival and the cumulative incidence of each cause by expert (one panel each): the
    model's curves averaged over each expert's subjects (lines) and the posterior-weighted
    Aalen-Johansen estimates (steps, dashed). Where a line leaves its steps, the expert's
    hazard misses the events of its subjects.

    Parameters
    ----------
    results : MEMoEResults
        A joint model's fit (``survival=`` in :meth:`~pymemoe.MEMoE.from_formula`).
    times : array-like, optional
        Default: 100 points from 0 to the largest follow-up time.
    axes : sequence of matplotlib Axes, optional
        One per panel (1 + the number of causes).
    time_label : str
        The label of the time axis.

    Returns
    -------
    ndarray of matplotlib.axes.Axes
    """
    plt = import_pyplot()
    table = event_fit_table(results, times)
    curves = list(dict.fromkeys(table["curve"]))
    if axes is None:
        fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 4.0),
                                 squeeze=False)
        axes = axes[0]
    axes = np.asarray(axes, dtype=object).ravel()
    if axes.size != len(curves):
        raise ValueError(f"axes must hold {len(curves)} Axes (survival and each cause); "
                         f"got {axes.size}")
    for ax, curve in zip(axes, curves):
        part = table[table["curve"] == curve]
        for k, rows in part.groupby("expert"):
            colour = expert_colour(int(k))
            ax.plot(rows["time"], rows["predicted"], color=colour, label=f"expert {k}")
            ax.step(rows["time"], rows["observed"], where="post", color=colour,
                    linestyle="--", linewidth=1.0, alpha=0.8)
        ax.set_title(curve.replace("incidence: ", "cumulative incidence: "))
        ax.set_xlabel(time_label)
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("probability")
    axes[0].plot([], [], color="0.3", linestyle="--", linewidth=1.0,
                 label="weighted Aalen-Johansen")
    axes[0].legend(frameon=False, fontsize="small")
    axes[0].figure.tight_layout()
    return axes
