"""Figures of the classes and of the fit: the largest posterior probability per subject, the
log-likelihood across the EM iterations, and information criteria against K."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from ._style import expert_colour, import_pyplot, new_axes

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib stays optional at run time
    from matplotlib.axes import Axes

    from ..results import MEMoEResults

__all__ = ["plot_posterior", "plot_llf_trace", "plot_comparison"]

_THRESHOLDS = (0.7, 0.8, 0.9)
_SMALLER_IS_BETTER = ("AIC", "BIC", "SABIC", "ICL")


# Trajectories


# Posterior classification


def plot_posterior(results: "MEMoEResults", ax: "Axes | None" = None, bins: int = 20) -> "Axes":
    """Histogram of each subject's largest posterior probability, stacked by assigned expert.

    The largest posterior probability max_k tau_ik measures how clearly subject i is classified
    (it lies between 1/K and 1). Dashed lines mark 0.7, 0.8 and 0.9, each annotated with the
    share of subjects above it, as in lcmm's ``postprob`` (:meth:`MEMoEResults.postprob`).

    Parameters
    ----------
    results : MEMoEResults
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure when None.
    bins : int
        Number of equal-width bins between 1/K and 1.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.containers`` holds one bar container per expert (stacked); the bar heights sum to
        the number of subjects. The threshold lines are ``ax.lines``.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=2).fit(n_starts=2, random_state=0)
    >>> ax = plot_posterior(res)
    >>> int(sum(p.get_height() for p in ax.patches))
    312
    >>> plt.close(ax.figure)
    """
    import_pyplot()
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    tau = results.posterior.to_numpy()
    K = tau.shape[1]
    best = tau.max(axis=1)
    assigned = tau.argmax(axis=1)
    low = min(1.0 / K, float(best.min())) if K > 1 else 0.0
    edges = np.linspace(low, 1.0, int(bins) + 1)
    groups = [best[assigned == k] for k in range(K)]
    ax = new_axes(ax)
    ax.hist(groups, bins=edges, stacked=True, color=[expert_colour(k + 1) for k in range(K)],
            label=[f"expert {k + 1} ({g.size})" for k, g in enumerate(groups)],
            edgecolor="white", linewidth=0.5)
    for cut in _THRESHOLDS:
        ax.axvline(cut, color="0.3", ls="--", lw=1)
        ax.text(cut, 0.98, f" {np.mean(best > cut):.0%} > {cut}", transform=ax.get_xaxis_transform(),
                ha="left", va="top", fontsize="small", color="0.3")
    ax.set_xlim(low, 1.0)
    ax.set_xlabel(r"largest posterior probability $\max_k \tau_{ik}$")
    ax.set_ylabel("subjects")
    ax.set_title(f"Posterior classification (normalised entropy {results.entropy:.3f})")
    ax.legend(title="assigned to", fontsize="small", title_fontsize="small", loc="center left")
    return ax


# EM trace


def plot_llf_trace(results: "MEMoEResults", ax: "Axes | None" = None) -> "Axes":
    """Log-likelihood across the EM iterations of the best start (``results.llf_trace``).

    Iteration 0 is the starting value. The dashed line is the final log-likelihood
    ``results.llf``, which can exceed the last EM value after the quasi-Newton polish.

    Parameters
    ----------
    results : MEMoEResults
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure when None.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.lines[0]`` is the trace (x = 0, 1, ..., y = ``results.llf_trace``),
        ``ax.lines[1]`` the final log-likelihood.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=2).fit(n_starts=2, random_state=0)
    >>> ax = plot_llf_trace(res)
    >>> bool((ax.lines[0].get_ydata() == res.llf_trace).all())
    True
    >>> plt.close(ax.figure)
    """
    import_pyplot()
    trace = np.asarray(results.llf_trace, dtype=float)
    ax = new_axes(ax)
    ax.plot(np.arange(trace.size), trace, marker="o", ms=3, color="C0", label="EM, best start")
    ax.axhline(results.llf, color="0.4", ls="--", lw=1, label=f"final llf {results.llf:.4f}")
    ax.set_xlabel("EM iteration (0 = start)")
    ax.set_ylabel("log-likelihood")
    status = "converged" if results.converged else "not converged"
    ax.set_title(f"EM trace: {results.n_iter} iterations, {status}")
    ax.legend(fontsize="small", loc="lower right")
    return ax


# Prediction sets


# Model comparison


def plot_comparison(comparison,
                    criteria: Sequence[str] | str = ("AIC", "BIC", "ICL"),
                    ax: "Axes | None" = None) -> "Axes":
    """Information criteria against the number of experts K.

    One line per criterion, x = K (the index of ``comparison.table``); an open circle marks the
    minimum of each of AIC, BIC, SABIC and ICL (smaller is better). Criteria on another scale
    (``"llf"``, ``"entropy"``) can be drawn but are not marked.

    Parameters
    ----------
    comparison : ExpertComparison or pandas.DataFrame
        The result of :func:`pymemoe.selection.compare_experts`, or its ``table``.
    criteria : sequence of str
        Columns of the table to draw.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure when None.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.lines`` holds one line per criterion, in the order given, labelled by it.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.selection import compare_experts
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> comp = compare_experts("np.log(bili) ~ year", df, "id", n_experts=[1, 2],
    ...                        re_formula="~ year", n_starts=1, random_state=0)
    >>> ax = plot_comparison(comp)
    >>> [line.get_label() for line in ax.lines]
    ['AIC', 'BIC', 'ICL']
    >>> plt.close(ax.figure)
    """
    import_pyplot()
    table = comparison if isinstance(comparison, pd.DataFrame) else getattr(comparison, "table", None)
    if not isinstance(table, pd.DataFrame):
        raise ValueError("comparison must be an ExpertComparison (compare_experts) or its table")
    criteria = [criteria] if isinstance(criteria, str) else list(criteria)
    if not criteria:
        raise ValueError("criteria must name at least one column of the comparison table")
    absent = [c for c in criteria if c not in table.columns]
    if absent:
        raise ValueError(f"criteria {absent} are not columns of the comparison table; columns "
                         f"are {list(table.columns)}")
    K = table.index.to_numpy()
    ax = new_axes(ax)
    for j, name in enumerate(criteria):
        values = table[name].to_numpy(dtype=float)
        (line,) = ax.plot(K, values, marker="o", color=f"C{j % 10}", label=name)
        if name in _SMALLER_IS_BETTER and np.isfinite(values).any():
            best = int(np.nanargmin(values))
            ax.scatter([K[best]], [values[best]], s=160, facecolors="none",
                       edgecolors=line.get_color(), linewidths=1.5, zorder=3)
    ax.set_xticks(K)
    ax.set_xlabel("number of experts K")
    smaller = all(c in _SMALLER_IS_BETTER for c in criteria)
    ax.set_ylabel("criterion (smaller is better)" if smaller else "criterion")
    ax.set_title("Model selection" + (" (open circle: minimum)" if smaller else ""))
    ax.legend(fontsize="small")
    return ax
