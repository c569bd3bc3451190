r"""Plots of a fitted MEMoE (matplotlib is optional).

matplotlib is imported inside each function, so ``import pymemoe`` and every fit work without
it; install it with ``pip install pymemoe[plot]``. Every function draws on ``ax`` when one is
given, otherwise on a new figure, and returns the Axes (``ax.figure`` is the Figure). Fitting
never calls these functions.

* :func:`plot_trajectories`: observed trajectories coloured by assigned expert, with each
  expert's mean trajectory and the range of the observations of its subjects;
* :func:`plot_posterior`: the largest posterior probability per subject, by assigned expert;
* :func:`plot_llf_trace`: the log-likelihood across the EM iterations of the best start;
* :func:`plot_prediction_sets`: prediction sets with the observations they cover and miss;
* :func:`plot_comparison`: information criteria against the number of experts K.

Expert k is drawn in matplotlib's cycle colour ``"C{k-1}"`` in every plot, so the plots of one
fit can be read together.

**Mean trajectory and band** (:func:`plot_trajectories`). For expert k and a time t on a grid,
with x(t), z(t) the fixed- and random-effects design rows rebuilt from the model's formulas
(other covariates at typical values)::

    mean_k(t) = x(t)' beta_k
    band_k(t) = mean_k(t) +- z_{1-(1-level)/2} sqrt(z(t)' D_k z(t) + sigma2_k)

The band is the central ``level`` range (95%: +- 1.96 SD) of the marginal law of one
observation y(t) of a subject drawn at random from expert k (its random effects unknown): it
holds both the spread between the expert's subjects (z' D_k z) and within a subject
(sigma2_k), i.e. where that expert's observations fall at time t. It is not a confidence band
for the mean (parameter uncertainty is not included), nor the range of one subject around its
own trajectory (that is +- 1.96 sqrt(sigma2_k)).

Examples
--------
>>> import matplotlib.pyplot as plt
>>> from pymemoe import MEMoE
>>> from pymemoe.datasets import load_pbcseq
>>> from pymemoe.plotting import plot_posterior, plot_trajectories
>>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
>>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
...                          n_experts=2).fit(n_starts=2, random_state=0)
>>> fig, axes = plt.subplots(1, 2, figsize=(10, 4))
>>> _ = plot_trajectories(res, "year", data=df, ax=axes[0])
>>> _ = plot_posterior(res, ax=axes[1])
>>> plt.close(fig)
"""
from __future__ import annotations

import ast
import warnings
from typing import TYPE_CHECKING, Any, Hashable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .formula import build_new_design

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib stays optional at run time
    from matplotlib.axes import Axes

    from .results import MEMoEResults
    from .selection import ExpertComparison

__all__ = ["plot_trajectories", "plot_posterior", "plot_llf_trace", "plot_prediction_sets",
           "plot_comparison"]

_THRESHOLDS = (0.7, 0.8, 0.9)
_SMALLER_IS_BETTER = ("AIC", "BIC", "SABIC", "ICL")


# ---------------------------------------------------------------------------------------------
# Helpers


def _import_pyplot():
    """Import and return ``matplotlib.pyplot``, or raise an ImportError that names the remedy."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "pymemoe's plotting functions need matplotlib, which is not installed; "
            "install it with: pip install pymemoe[plot]"
        ) from err
    return plt


def _get_ax(ax: "Axes | None", figsize: tuple[float, float] = (7.0, 4.5)) -> "Axes":
    plt = _import_pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _expert_colour(k: int) -> str:
    """matplotlib colour of expert ``k`` (1-based) in every pymemoe plot: ``"C{k-1}"``."""
    return f"C{(int(k) - 1) % 10}"


# ---------------------------------------------------------------------------------------------
# Trajectories


def _fit_rows(model, data: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``data`` used in the fit, in the model's row order."""
    index = model.row_index
    if data.index.is_unique:
        absent = ~index.isin(data.index)
        if absent.any():
            raise ValueError(
                f"data lacks rows used in the fit (e.g. index label {index[absent][0]!r}); pass "
                f"the DataFrame the model was fitted on"
            )
        rows = data.loc[index]
    elif data.index.equals(index):
        rows = data
    else:
        raise ValueError(
            "data has a repeated index and rows were dropped in fitting, so its rows cannot be "
            "matched to the fit; fit and plot with data.reset_index(drop=True)"
        )
    groups = model.spec.groups
    if groups is not None and groups in rows.columns:
        same = pd.Series(rows[groups].to_numpy()).eq(pd.Series(model.groups)).all()
        if not same:
            raise ValueError(
                f"the subject column {groups!r} of data does not match the fit; pass the "
                f"DataFrame the model was fitted on"
            )
    return rows


def _columns_in(code: str, columns: set) -> list:
    """Columns of the data that a patsy factor's Python code refers to (names and Q("..."))."""
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError:
        return [c for c in columns if isinstance(c, str) and c in code]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in columns:
            found.append(node.id)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "Q" and node.args and isinstance(node.args[0], ast.Constant)
              and node.args[0].value in columns):
            found.append(node.args[0].value)
    return list(dict.fromkeys(found))


def _typical_value(rows: pd.DataFrame, column: Hashable, first_level: dict, used_in: str) -> Any:
    """Mean of a numeric column, first level of a categorical one (see plot_trajectories)."""
    if column in first_level:
        return first_level[column]
    values = rows[column]
    if pd.api.types.is_numeric_dtype(values):
        return float(values.astype(float).mean())
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.categories[0]
    try:
        return sorted(pd.unique(values.dropna()))[0]
    except (TypeError, IndexError):
        raise ValueError(
            f"plot_trajectories cannot set column {column!r} (used in {used_in}) to a typical "
            f"value: it is neither numeric nor categorical with ordered levels"
        ) from None


def _grid_frame(spec, rows: pd.DataFrame, time: Hashable, grid: np.ndarray) -> pd.DataFrame:
    """A DataFrame with the time column on ``grid`` and every other column the formulas use at
    its typical value (mean or first level)."""
    parts = [("formula", spec.formula, spec.exog_info),
             ("re_formula", spec.re_formula, spec.exog_re_info),
             ("shared_formula", spec.shared_formula, spec.exog_shared_info),
             ("gate_formula", spec.gate_formula, spec.exog_gate_info)]
    columns = set(rows.columns)
    first_level: dict = {}
    used: dict = {}
    time_used = False
    for what, text, info in parts:
        if info is None:
            continue
        for factor, finfo in info.factor_infos.items():
            code = factor.name()
            names = _columns_in(code, columns)
            where = f"{what} {text!r}, term {code!r}"
            if not names:
                raise ValueError(
                    f"plot_trajectories cannot evaluate {where}: it uses no column of data, and "
                    f"only columns of data can be set (time on a grid, other covariates at their "
                    f"mean or first level)"
                )
            if time in names and finfo.type == "categorical":
                raise ValueError(
                    f"the time column {time!r} is categorical in {where}; plot_trajectories "
                    f"needs a numeric time to draw the expert means on a grid"
                )
            time_used |= time in names and what != "gate_formula"
            if finfo.type == "categorical" and len(names) == 1:
                first_level.setdefault(names[0], finfo.categories[0])
            for name in names:
                used.setdefault(name, where)
    if not time_used:
        warnings.warn(
            f"the time column {time!r} is not used by formula {spec.formula!r} or re_formula "
            f"{spec.re_formula!r}, so the expert means and bands are flat in it; pass the time "
            f"variable of the formulas as time=", UserWarning, stacklevel=4)
    frame = {time: grid}
    for column, where in used.items():
        if column != time:
            frame[column] = [_typical_value(rows, column, first_level, where)] * grid.size
    return pd.DataFrame(frame)


def _expert_curves(results, rows: pd.DataFrame, time: Hashable, grid: np.ndarray):
    """Mean x(t)' beta_k and marginal variance z(t)' D_k z(t) + sigma2_k on the grid, (G, K)."""
    spec = results.model.spec
    frame = _grid_frame(spec, rows, time, grid)
    try:
        design = build_new_design(spec, frame)
    except ValueError as err:
        raise ValueError(
            f"plot_trajectories could not rebuild the design at a grid of {time!r} with the other "
            f"covariates at their mean or first level: {err}"
        ) from None
    exog = np.column_stack([design["exog"], design["exog_shared"]])
    exog_re = design["exog_re"]
    state = results.state
    mean = exog @ state.beta.T
    var = np.einsum("gq,kqr,gr->gk", exog_re, state.cov_re, exog_re) + state.scale
    return mean, var


def plot_trajectories(results: "MEMoEResults", time: Hashable, data: pd.DataFrame | None = None,
                      n_grid: int = 100, band: float | None = 0.95,
                      max_subjects: int | None = None, ax: "Axes | None" = None) -> "Axes":
    r"""Observed trajectories coloured by assigned expert, with each expert's mean and band.

    Draws one thin line per subject (its observations of the outcome, as transformed by the
    formula, joined in time order; a subject with one observation is a dot), coloured by
    ``results.predicted_class``; then for each expert k the mean trajectory
    x(t)' beta_k on a grid of ``n_grid`` times over the observed range, and a band::

        x(t)' beta_k +- z_{(1+band)/2} sqrt(z(t)' D_k z(t) + sigma2_k),

    the central ``band`` range of one observation y(t) of a subject drawn at random from expert
    k (random effects unknown: between- plus within-subject variation), i.e. where that
    expert's observations fall; not a confidence band for the mean (see the module
    docstring).

    The designs x(t), z(t) are rebuilt from the model's formulas
    (:func:`pymemoe.formula.build_new_design`) on a grid DataFrame in which the time column
    runs over the grid and every other column used by the formulas is held at a typical value:
    its mean over the rows (visits) of the fit if numeric (a proportion for a boolean used
    numerically), its first level if categorical (the first of the levels patsy learnt at fit
    time, sorted: the reference of the default treatment coding). Covariates of the gating
    formula are set the same way; they do not change the curves.

    Parameters
    ----------
    results : MEMoEResults
        A fit of a model built with :meth:`pymemoe.MEMoE.from_formula`.
    time : str
        Name of the time column of ``data`` (numeric); it need not be a term of the formulas
        by itself (``center(year)`` or ``year + I(year**2)`` work).
    data : pandas.DataFrame
        The DataFrame the model was fitted on (rows are matched to the fit by index label;
        rows dropped in fitting are ignored). Required: it holds the time column.
    n_grid : int
        Number of grid times for the mean trajectories.
    band : float or None
        Level of the band (0.95: +- 1.96 SD); None draws no band.
    max_subjects : int, optional
        Draw the trajectories of at most this many subjects, evenly spaced in the subject order
        of ``results.posterior`` (the means and bands always use the whole fit).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure when None.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.lines`` holds the subject lines first (in the subject order of
        ``results.posterior``, gid ``"subject <label>"``), then one mean line per expert (gid
        ``"mean <k>"``, label ``"expert <k> ..."``); ``ax.collections`` one band per expert.

    Raises
    ------
    ValueError
        If the model was built from arrays, ``data`` is missing or does not match the fit,
        ``time`` is not a numeric column, or a term of the formulas uses something other than
        columns of ``data`` (an outside array, say) so that it cannot be evaluated on the grid.

    Warns
    -----
    UserWarning
        If ``time`` is used by neither ``formula`` nor ``re_formula`` (nor ``shared_formula``):
        the means and bands are then flat in it (say ``time="day"`` for a model in ``year``).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=2).fit(n_starts=2, random_state=0)
    >>> ax = plot_trajectories(res, "year", data=df)
    >>> len(ax.lines)            # 312 subjects and 2 expert means
    314
    >>> plt.close(ax.figure)
    """
    _import_pyplot()
    model = results.model
    if model.spec is None:
        raise ValueError(
            "plot_trajectories needs a model built with MEMoE.from_formula: the expert means are "
            "computed by rebuilding the formulas' designs on a grid of time"
        )
    if data is None:
        raise ValueError(
            "plot_trajectories needs data=, the DataFrame the model was fitted on (it holds the "
            "time column)"
        )
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if time not in data.columns:
        raise ValueError(f"time={time!r} is not a column of data; columns are {list(data.columns)}")
    if not pd.api.types.is_numeric_dtype(data[time]) or pd.api.types.is_bool_dtype(data[time]):
        raise ValueError(f"the time column {time!r} must be numeric, got dtype {data[time].dtype}")
    if int(n_grid) != n_grid or n_grid < 2:
        raise ValueError(f"n_grid must be an integer >= 2, got {n_grid!r}")
    if band is not None and not 0.0 < band < 1.0:
        raise ValueError(f"band must be in (0, 1) or None, got {band!r}")
    if max_subjects is not None and (int(max_subjects) != max_subjects or max_subjects < 0):
        raise ValueError(f"max_subjects must be a non-negative integer or None, got {max_subjects!r}")

    rows = _fit_rows(model, data)
    t = rows[time].to_numpy(dtype=float)
    if not np.isfinite(t).all():
        raise ValueError(f"the time column {time!r} has missing values in rows used in the fit")
    grid = np.linspace(t.min(), t.max(), int(n_grid))
    mean, var = _expert_curves(results, rows, time, grid)

    ax = _get_ax(ax)
    y = model.endog
    codes = model.data.row_codes
    subjects = model.data.subjects
    assigned = results.predicted_class.to_numpy()
    n_subjects = len(subjects)
    if max_subjects is None or max_subjects >= n_subjects:
        shown = np.arange(n_subjects)
    else:
        shown = np.unique(np.linspace(0, n_subjects - 1, int(max_subjects)).round().astype(int))
    order = np.lexsort((t, codes))
    bounds = np.searchsorted(codes[order], np.arange(n_subjects + 1))
    for i in shown:
        idx = order[bounds[i]:bounds[i + 1]]
        ax.plot(t[idx], y[idx], color=_expert_colour(assigned[i]), lw=0.6, alpha=0.35,
                marker="." if idx.size == 1 else None, ms=3, zorder=1,
                label="_nolegend_", gid=f"subject {subjects[i]}")

    K = results.n_experts
    counts = np.bincount(assigned - 1, minlength=K)
    crit = None if band is None else stats.norm.ppf(0.5 + band / 2.0)
    for k in range(K):
        colour = _expert_colour(k + 1)
        if crit is not None:
            half = crit * np.sqrt(var[:, k])
            ax.fill_between(grid, mean[:, k] - half, mean[:, k] + half, color=colour, alpha=0.15,
                            lw=0, zorder=2, gid=f"band {k + 1}")
        ax.plot(grid, mean[:, k], color=colour, lw=2.5, zorder=3, gid=f"mean {k + 1}",
                label=f"expert {k + 1} ({counts[k]} subjects)")
    title = None if band is None else f"mean; band: {band:.0%} of the expert's y"
    ax.legend(title=title, fontsize="small", title_fontsize="small")
    ax.set_xlabel(str(time))
    ax.set_ylabel(model.spec.endog_name)
    ax.set_title(f"Trajectories by assigned expert (K = {K})")
    return ax


# ---------------------------------------------------------------------------------------------
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
    _import_pyplot()
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    tau = results.posterior.to_numpy()
    K = tau.shape[1]
    best = tau.max(axis=1)
    assigned = tau.argmax(axis=1)
    low = min(1.0 / K, float(best.min())) if K > 1 else 0.0
    edges = np.linspace(low, 1.0, int(bins) + 1)
    groups = [best[assigned == k] for k in range(K)]
    ax = _get_ax(ax)
    ax.hist(groups, bins=edges, stacked=True, color=[_expert_colour(k + 1) for k in range(K)],
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


# ---------------------------------------------------------------------------------------------
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
    _import_pyplot()
    trace = np.asarray(results.llf_trace, dtype=float)
    ax = _get_ax(ax)
    ax.plot(np.arange(trace.size), trace, marker="o", ms=3, color="C0", label="EM, best start")
    ax.axhline(results.llf, color="0.4", ls="--", lw=1, label=f"final llf {results.llf:.4f}")
    ax.set_xlabel("EM iteration (0 = start)")
    ax.set_ylabel("log-likelihood")
    status = "converged" if results.converged else "not converged"
    ax.set_title(f"EM trace: {results.n_iter} iterations, {status}")
    ax.legend(fontsize="small", loc="lower right")
    return ax


# ---------------------------------------------------------------------------------------------
# Prediction sets


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
        Tidy sets as returned by :func:`pymemoe.prediction_sets.prediction_set`: columns ``row`` (a
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
    _import_pyplot()
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
    ax = _get_ax(ax)
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


# ---------------------------------------------------------------------------------------------
# Model comparison


def plot_comparison(comparison: "ExpertComparison | pd.DataFrame",
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
    _import_pyplot()
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
    ax = _get_ax(ax)
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
