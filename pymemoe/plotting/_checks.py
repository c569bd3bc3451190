"""Model-checking plots of a fitted MEMoE: the fit by expert and the standardised residuals.

Both take their data from the fitted model; the numbers they draw come from
:mod:`pymemoe.diagnostics` (:func:`~pymemoe.diagnostics.fit_table`,
:func:`~pymemoe.diagnostics.standardized_residuals`), so every point of a figure can be checked
in a table. They are also available as :func:`pymemoe.plotting.plot_fit` and
:func:`pymemoe.plotting.plot_residuals`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Hashable

import numpy as np
import pandas as pd
from scipy import stats

from .._predictive.posterior import subject_posterior
from .._predictive.rows import design_rows
from ..diagnostics import fit_table, fitted_means, standardized_residuals
from ._style import expert_colour, import_pyplot, new_axes, outcome_label, response_label

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib stays optional at run time
    from matplotlib.axes import Axes

__all__ = ["plot_fit", "plot_residuals"]


def plot_fit(results, time: Hashable, data: pd.DataFrame | None = None, bins=10,
             kind: str = "marginal", ax: "Axes | None" = None, alpha: float = 0.05,
             ylabel: str | None = None) -> "Axes":
    """Observed and predicted mean trajectories per expert over time bins (lcmm's
    ``plot(m, which = "fit")``).

    For each expert k and time bin: the mean of the observations weighted by their subjects'
    posterior probabilities tau_ik (a marker with its 1 - alpha interval) and the same weighted
    mean of expert k's predictions (a line); see :func:`pymemoe.diagnostics.fit_table`, which
    returns the numbers drawn. A predicted line that leaves the observed intervals shows where
    the expert's mean trajectory misses its subjects.

    Parameters
    ----------
    results : MEMoEResults
    time : str
        The time column (taken from the model when its formulas use it).
    data : pandas.DataFrame, optional
        The fitting data, for a time column the formulas do not use.
    bins : int or sequence of float
        Number of bins of (nearly) equal size, or their edges.
    kind : {"marginal", "conditional"}
        Predictions x' beta_k (lcmm's ``marg = TRUE``) or x' beta_k + z' b_hat_ik.
    ax : matplotlib.axes.Axes, optional
    alpha : float
        Level of the intervals of the observed means.
    ylabel : str, optional
        Default: the outcome as written in the formula, without ``np.``.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.lines``: one predicted line per expert (gid ``"predicted <k>"``); the observed
        means are error bars (``ax.containers``, one per expert, label
        ``"observed, expert <k>"``).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=2).fit(n_starts=2, random_state=0)
    >>> ax = plot_fit(res, "year", bins=8)
    >>> [line.get_gid() for line in ax.lines if line.get_gid()]
    ['predicted 1', 'predicted 2']
    >>> plt.close(ax.figure)
    """
    import_pyplot()
    table = fit_table(results, time, data=data, bins=bins, kind=kind, alpha=alpha)
    ax = new_axes(ax)
    K = results.n_experts
    span = float(np.ptp(table["time"].to_numpy())) or 1.0
    offsets = (np.arange(K) - (K - 1) / 2.0) * 0.006 * span   # error bars side by side
    for k in range(1, K + 1):
        rows = {c: table.loc[k, c].to_numpy(dtype=float) for c in table.columns}
        colour = expert_colour(k)
        ax.plot(rows["time"], rows["predicted"], color=colour, lw=2, gid=f"predicted {k}",
                label=f"predicted, expert {k}")
        ax.errorbar(rows["time"] + offsets[k - 1], rows["observed"],
                    yerr=[rows["observed"] - rows["observed_lower"],
                          rows["observed_upper"] - rows["observed"]],
                    fmt="o", ms=5, mfc="white", mec=colour, ecolor=colour, elinewidth=1.2,
                    capsize=2.5, label=f"observed, expert {k}")
    which = (f"predicted: {results.model.family.expert_mean_text}" if kind == "marginal" else
             "predicted: subject-specific means")
    ax.set_title(f"Observed (weighted by posterior, {1 - alpha:.0%} CI) and predicted means\n"
                 f"by expert ({which})", fontsize="medium")
    ax.set_xlabel(f"{time} (mean of each bin)")
    ax.set_ylabel(response_label(results.model) if ylabel is None else ylabel)
    ax.legend(fontsize="small", ncol=2 if K > 1 else 1)
    return ax


_RESIDUAL_LABELS = {"posterior": "standardised residual (posterior-weighted)",
                    "assigned": "standardised residual (assigned expert)"}


def plot_residuals(results, by: str = "posterior", axes=None, bins: int = 40):
    """Standardised residuals: histogram with the N(0, 1) density, normal QQ plot, and residuals
    against the fitted expert means.

    The residuals are the within-subject whitened residuals of
    :meth:`~pymemoe.MEMoEResults.standardized_residuals` (N(0, 1) under a correct model). The
    third panel plots them against the experts' means combined the same way
    (:func:`pymemoe.diagnostics.fitted_means`; not the subject-specific fitted values, which
    share the predicted random effects with the residuals and trend against them even under a
    correct model); each point is coloured by its subject's assigned expert, and the black line
    is the mean residual in deciles of the fitted means (flat at 0 when the means are right).

    Parameters
    ----------
    results : MEMoEResults
    by : {"posterior", "assigned"}
        Posterior-weighted over the experts, or those of the assigned expert.
    axes : sequence of three matplotlib Axes, optional
        Where to draw; a new 1 x 3 figure when None.
    bins : int
        Bins of the histogram.

    Returns
    -------
    numpy.ndarray of matplotlib.axes.Axes
        The three Axes (``axes[0].figure`` is the Figure). ``axes[0].patches`` are the
        histogram bars (a density), ``axes[0].lines[0]`` the N(0, 1) density;
        ``axes[1].collections[0]`` the QQ points (x: normal quantiles, y: sorted residuals);
        ``axes[2].collections`` the residuals against
        :func:`~pymemoe.diagnostics.fitted_means`, one set per expert.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1).fit()
    >>> axes = plot_residuals(res)
    >>> len(axes), int(axes[1].collections[0].get_offsets().shape[0])
    (3, 1945)
    >>> plt.close(axes[0].figure)
    """
    plt = import_pyplot()
    if by not in _RESIDUAL_LABELS:
        raise ValueError(f"by must be one of {tuple(_RESIDUAL_LABELS)}, got {by!r}")
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    resid = standardized_residuals(results, by=by).to_numpy()
    fitted = fitted_means(results, by=by).to_numpy()
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    axes = np.asarray(axes, dtype=object).ravel()
    if axes.size != 3:
        raise ValueError(f"axes must hold three Axes, got {axes.size}")
    label = _RESIDUAL_LABELS[by]

    hist = axes[0]
    hist.hist(resid, bins=int(bins), density=True, color="0.7", edgecolor="white", lw=0.5,
              label="residuals")
    x = np.linspace(min(resid.min(), -4.0), max(resid.max(), 4.0), 400)
    hist.plot(x, stats.norm.pdf(x), color="C3", lw=2, label="N(0, 1) density")
    hist.set_xlabel(label)
    hist.set_ylabel("density")
    hist.set_title(f"Histogram (mean {resid.mean():.2f}, SD {resid.std(ddof=1):.2f})",
                   fontsize="medium")
    hist.legend(fontsize="small")

    qq = axes[1]
    n = resid.size
    theoretical = stats.norm.ppf((np.arange(1, n + 1) - 0.375) / (n + 0.25))   # Blom
    qq.scatter(theoretical, np.sort(resid), s=6, color="0.3", alpha=0.6)
    lim = [min(theoretical[0], resid.min()), max(theoretical[-1], resid.max())]
    qq.plot(lim, lim, color="C3", lw=1.5, label="y = x")
    qq.set_xlabel("standard normal quantile")
    qq.set_ylabel(f"sorted {label.split(' (')[0]}")
    qq.set_title("Normal QQ plot", fontsize="medium")
    qq.legend(fontsize="small", loc="upper left")

    scatter = axes[2]
    expert_of_row = _row_experts(results)
    for k in range(1, results.n_experts + 1):
        sel = expert_of_row == k
        scatter.scatter(fitted[sel], resid[sel], s=6, alpha=0.5, color=expert_colour(k),
                        label=f"assigned to expert {k}")
    deciles = pd.qcut(fitted, 10, labels=False, duplicates="drop")
    means = pd.DataFrame({"f": fitted, "r": resid}).groupby(deciles).mean()
    scatter.plot(means["f"], means["r"], color="k", lw=1.5, marker="o", ms=3,
                 label="mean in deciles")
    scatter.axhline(0.0, color="0.4", lw=1, ls="--")
    scatter.set_xlabel(f"fitted expert mean ({outcome_label(results.model.endog_name)})")
    scatter.set_ylabel(label.split(" (")[0])
    scatter.set_title("Residuals against fitted expert means", fontsize="medium")
    scatter.legend(fontsize="small", markerscale=2)
    return axes


def _row_experts(results) -> np.ndarray:
    """The assigned expert of each fitting row's subject."""
    post = subject_posterior(results, design_rows(results))
    return post.tau.argmax(axis=1)[post.codes] + 1
