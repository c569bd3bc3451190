"""The event curves of a joint model by expert: the model against the posterior-weighted
nonparametric estimates (:func:`pymemoe.diagnostics.event_fit_table`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .._design.questions import required_variables
from .._predictive.laws import laws_of
from .._predictive.rows import observed_outcome
from ..diagnostics import event_fit_table
from ..prediction import dynamic_prediction
from ._style import expert_colour, import_pyplot, response_label

__all__ = ["plot_event_curves", "plot_dynamic_prediction"]


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


def plot_dynamic_prediction(results, newdata: pd.DataFrame, subject, landmark: float,
                            horizon: float, time: str, *, groups=None, n_draws: int = 200,
                            alpha: float = 0.05, random_state=None, axes=None,
                            time_label: str | None = None) -> "np.ndarray":
    """One subject's dynamic prediction at a landmark s: its measurements up to s and its
    predicted trajectory after s (left), and the probability of each cause of event within
    (s, s + t] for t up to ``horizon``, with its interval over parameter draws (right).

    The predicted trajectory is sum_k P(k | y(s), T > s) E[y(t) | y(s), k], the expert
    weights of :func:`pymemoe.prediction.dynamic_prediction` (which use the event-free time
    up to s as well as the measurements) and each expert's conditional mean given the
    measurements up to s.

    Parameters
    ----------
    results : MEMoEResults
        A joint model's fit.
    newdata : DataFrame
        Long data holding the subject's rows (measurements, time and covariates).
    subject
        The subject's label.
    landmark, horizon : float
    time : str
        The column of measurement times.
    groups : str, optional
        The subject column (default: the fit's).
    n_draws, alpha, random_state
        The intervals, as in :func:`pymemoe.prediction.dynamic_prediction`.
    axes : two matplotlib Axes, optional
    time_label : str, optional
        Default: ``time``.

    Returns
    -------
    ndarray of two matplotlib.axes.Axes
    """
    plt = import_pyplot()
    group_col = groups if groups is not None else results.model.spec.groups
    own = newdata[newdata[group_col] == subject]
    if own.empty:
        raise ValueError(f"subject {subject!r} has no rows in newdata")
    s, h = float(landmark), float(horizon)
    horizons = np.linspace(h / 40, h, 40)
    dyn = dynamic_prediction(results, own, s, horizons, time, groups=groups, alpha=alpha,
                             n_draws=n_draws, random_state=random_state)
    K = results.n_experts
    weights = dyn[[f"P(expert {k + 1})" for k in range(K)]].iloc[0].to_numpy()
    grid = np.linspace(s, s + h, 40)
    future = pd.DataFrame([own.iloc[-1]] * grid.size).reset_index(drop=True)
    future[time] = grid
    history = own[own[time] <= s]
    frame = pd.concat([history, future], ignore_index=True)
    for column in required_variables(results.model.spec)["outcome"]:
        frame.loc[len(history):, column] = np.nan
    _, laws = laws_of(results, frame, "conditional", groups=groups, landmark=s, time=time)
    mean = laws.means[len(history):] @ weights
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0))
    axes = np.asarray(axes, dtype=object).ravel()
    left, right = axes[0], axes[1]
    observed = observed_outcome(results, history)
    left.plot(history[time], observed, "o", color="0.2", label="measurements up to s")
    later = own[own[time] > s]
    if len(later):
        left.plot(later[time], observed_outcome(results, later), "o", mfc="none", color="0.5",
                  label="later measurements (not used)")
    left.plot(grid, mean, color="C3", label="predicted mean")
    left.axvline(s, color="0.5", linestyle=":")
    left.set_xlabel(time_label or time)
    left.set_ylabel(response_label(results.model))
    left.set_title(f"subject {subject}: trajectory")
    left.legend(frameon=False, fontsize="small")
    causes = [f"P({c})" for c in results.model.family.event_data(results.model.data).cause_names]
    for j, name in enumerate(causes):
        colour = f"C{j + 4}"
        right.plot(s + horizons, dyn[name], color=colour, label=name[2:-1])
        if f"{name} lower" in dyn:
            right.fill_between(s + horizons, dyn[f"{name} lower"], dyn[f"{name} upper"],
                               color=colour, alpha=0.2, linewidth=0)
    right.set_xlim(left.get_xlim())
    right.axvline(s, color="0.5", linestyle=":")
    right.set_ylim(0.0, 1.0)
    right.set_xlabel(time_label or time)
    right.set_ylabel("P(event in (s, t])")
    right.set_title(f"given the measurements up to s = {s:g} and no event by s",
                    fontsize="medium")
    right.legend(frameon=False, fontsize="small")
    axes[0].figure.tight_layout()
    return axes
