r"""Plots of a fitted MEMoE (matplotlib is optional).

matplotlib is imported inside each function, so ``import pymemoe`` and every fit work without
it; install it with ``pip install pymemoe[plot]``. Every function draws on ``ax`` when one is
given, otherwise on a new figure, and returns the Axes (``ax.figure`` is the Figure). Fitting
never calls these functions.

* :func:`plot_trajectories`: observed trajectories coloured by assigned expert, with each
  expert's mean curve and its confidence band (or the range of its subjects' observations);
* :func:`plot_fit`: observed and predicted mean trajectories per expert over time bins,
  weighted by the posterior (lcmm's ``plot(m, which = "fit")``);
* :func:`plot_residuals`: standardised residuals against the normal law (histogram, QQ plot)
  and against the fitted values;
* :func:`plot_posterior`: the largest posterior probability per subject, by assigned expert;
* :func:`plot_llf_trace`: the log-likelihood across the EM iterations of the best start;
* :func:`plot_prediction_sets`: prediction sets with the observations they cover and miss;
* :func:`plot_comparison`: information criteria against the number of experts K.

Plots of a fit take their data from the fitted model (the outcome, and the time column when
the formulas use it); ``data=`` is needed only for a time column the formulas do not use.

Expert k is drawn in matplotlib's cycle colour ``"C{k-1}"`` in every plot, so the plots of one
fit can be read together.

**Mean trajectory and bands** (:func:`plot_trajectories`). For expert k and a time t on a
grid, with x(t), z(t) the fixed- and random-effects design rows rebuilt from the model's
formulas (other covariates at typical values), z = z_{1-(1-level)/2}::

    mean_k(t)       = x(t)' beta_k
    confidence band = mean_k(t) +- z sqrt(x(t)' V_k x(t))                 (V_k = Cov(beta_k))
    prediction band = mean_k(t) +- z sqrt(z(t)' D_k z(t) + sigma2_k)

The confidence band (the default) is the uncertainty of the estimated mean curve, by the delta
method from ``cov_params()``; the prediction band is the central ``level`` range of one
observation y(t) of a subject drawn at random from expert k (between- and within-subject
variation), where that expert's observations fall. With several experts the prediction bands
overlap and hide each other; the confidence bands do not.

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
>>> _ = plot_trajectories(res, "year", ax=axes[0])
>>> _ = plot_posterior(res, ax=axes[1])
>>> plt.close(fig)
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Hashable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .formula import formula_factors, sample_column, typical_frame
from .plot_checks import plot_fit, plot_residuals
from .plot_style import expert_colour, import_pyplot, new_axes, outcome_label, response_label
from .predict import (component_laws, design_rows, expert_means, get_prediction,
                      observed_response, require_rows, subject_posterior)

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib stays optional at run time
    from matplotlib.axes import Axes

    from .results import MEMoEResults

__all__ = ["plot_trajectories", "plot_posterior", "plot_llf_trace", "plot_prediction_sets",
           "plot_comparison", "plot_fit", "plot_residuals"]

_THRESHOLDS = (0.7, 0.8, 0.9)
_SMALLER_IS_BETTER = ("AIC", "BIC", "SABIC", "ICL")


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


def fitted_time(results, time: Hashable, data: pd.DataFrame | None) -> np.ndarray:
    """The time of every fitting row: from ``data`` (matched by index label) or, without it,
    from the columns the model keeps (those its formulas use)."""
    model = results.model
    if data is None:
        try:
            values = sample_column(model.spec, time)
        except ValueError as err:
            raise ValueError(f"{err} (the time column {time!r} is needed)") from None
        series = pd.Series(values)
    else:
        if not isinstance(data, pd.DataFrame):
            raise ValueError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        if time not in data.columns:
            raise ValueError(f"time={time!r} is not a column of data; columns are "
                             f"{list(data.columns)}")
        series = _fit_rows(model, data)[time]
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        raise ValueError(f"the time column {time!r} must be numeric, got dtype {series.dtype}")
    t = series.to_numpy(dtype=float)
    if not np.isfinite(t).all():
        raise ValueError(f"the time column {time!r} has missing values in rows used in the fit")
    return t


def _grid_frame(spec, time: Hashable, grid: np.ndarray) -> pd.DataFrame:
    """The time column on ``grid``, every other column the formulas use at its typical value."""
    factors = formula_factors(spec)
    for factor in factors:
        if time in factor.columns and factor.levels is not None:
            raise ValueError(
                f"the time column {time!r} is categorical in {factor.part} {factor.formula!r}, "
                f"term {factor.code!r}; plot_trajectories needs a numeric time to draw the "
                f"expert means on a grid")
    used = any(time in f.columns for f in factors
               if f.part in ("formula", "re_formula", "shared_formula"))
    if not used:
        warnings.warn(
            f"the time column {time!r} is not used by formula {spec.formula!r} or re_formula "
            f"{spec.re_formula!r}, so the expert means and bands are flat in it; pass the time "
            f"variable of the formulas as time=", UserWarning, stacklevel=4)
    try:
        return typical_frame(spec, {time: grid})
    except ValueError as err:
        raise ValueError(f"plot_trajectories cannot evaluate the formulas on a grid of "
                         f"{time!r}: {err}") from None


BANDS = ("confidence", "prediction")


def expert_curves(results, time: Hashable, grid: np.ndarray, band: str | None,
                  level: float = 0.95):
    """Each expert's mean x(t)' beta_k on a time grid, (G, K), and the half-width of its band
    (None without a band): ``"confidence"`` z se(x(t)' beta_k) (delta method), ``"prediction"``
    z sqrt(z(t)' D_k z(t) + sigma2_k)."""
    spec = results.model.spec
    frame = _grid_frame(spec, time, grid)
    crit = stats.norm.ppf(0.5 + level / 2.0)
    try:
        if band == "confidence":
            pred = get_prediction(results, frame, kind="expert")
            return pred.predicted_mean.to_numpy(), crit * pred.se_mean.to_numpy()
        rows = design_rows(results, frame)
        mean = expert_means(results, rows)
        if band is None:
            return mean, None
        laws = component_laws(results, rows, "marginal")
        return mean, crit * np.sqrt(laws.variances)
    except ValueError as err:
        raise ValueError(
            f"plot_trajectories could not rebuild the design at a grid of {time!r} with the other "
            f"covariates at their mean or first level: {err}"
        ) from None


def plot_trajectories(results: "MEMoEResults", time: Hashable, data: pd.DataFrame | None = None,
                      n_grid: int = 100, band: str | None = "confidence", level: float = 0.95,
                      max_subjects: int | None = None, ax: "Axes | None" = None,
                      ylabel: str | None = None) -> "Axes":
    r"""Observed trajectories coloured by assigned expert, with each expert's mean curve and band.

    Draws one thin line per subject (its observations of the outcome, as transformed by the
    formula, joined in time order; a subject with one observation is a dot), coloured by
    ``results.predicted_class``; then for each expert k the mean trajectory
    x(t)' beta_k on a grid of ``n_grid`` times over the observed range, and a band at
    ``level``:

    * ``band="confidence"`` (default): the pointwise confidence band of the mean curve,
      x(t)' beta_k +- z se, with the delta-method standard error sqrt(x(t)' V_k x(t)) of
      :meth:`~pymemoe.MEMoEResults.get_prediction` (parameter uncertainty; lcmm's
      ``predictY(draws = TRUE)``). Narrow, so the experts stay readable at K = 3 and more.
    * ``band="prediction"``: x(t)' beta_k +- z sqrt(z(t)' D_k z(t) + sigma2_k), where one
      observation y(t) of a subject drawn at random from expert k falls (between- plus
      within-subject variation). Wide: with several experts these overlap.

    The designs x(t), z(t) are rebuilt from the model's formulas on a grid in which the time
    column runs over the grid and every other column the formulas use is held at a typical
    value (:func:`pymemoe.formula.typical_frame`: its mean over the fitted rows if numeric, its
    first level, the reference, if categorical). Gating covariates do not change the curves.

    Parameters
    ----------
    results : MEMoEResults
        A fit of a model built with :meth:`pymemoe.MEMoE.from_formula` (with standard errors
        for ``band="confidence"``).
    time : str
        Name of the time column (numeric); it need not be a term of the formulas by itself
        (``center(year)`` or ``year + I(year**2)`` work).
    data : pandas.DataFrame, optional
        The DataFrame the model was fitted on (rows matched by index label). Not needed when
        the formulas use the time column: the model keeps it.
    n_grid : int
        Number of grid times for the mean trajectories.
    band : {"confidence", "prediction"} or None
        Which band to draw (see above); None draws none.
    level : float
        Level of the band (0.95: +- 1.96 SE or SD).
    max_subjects : int, optional
        Draw the trajectories of at most this many subjects, evenly spaced in the subject order
        of ``results.posterior`` (the means and bands always use the whole fit).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure when None.
    ylabel : str, optional
        Label of the y axis; default the outcome as in the formula, without ``np.``
        (``"log(bili)"``).

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.lines`` holds the subject lines first (in the subject order of
        ``results.posterior``, gid ``"subject <label>"``), then one mean line per expert (gid
        ``"mean <k>"``, label ``"expert <k> ..."``); ``ax.collections`` one band per expert
        (gid ``"band <k>"``).

    Raises
    ------
    ValueError
        If the model was built from arrays or from chunks, the time column is neither kept by
        the model nor in ``data``, ``data`` does not match the fit, ``time`` is not numeric,
        a term of the formulas uses something other than columns of the data (an outside
        array, say) so that it cannot be evaluated on the grid, or ``band="confidence"`` on a
        fit without standard errors.

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
    >>> ax = plot_trajectories(res, "year")
    >>> len(ax.lines)            # 312 subjects and 2 expert means
    314
    >>> ax.get_ylabel()
    'log(bili)'
    >>> plt.close(ax.figure)
    """
    import_pyplot()
    model = results.model
    if model.spec is None:
        raise ValueError(
            "plot_trajectories needs a model built with MEMoE.from_formula: the expert means are "
            "computed by rebuilding the formulas' designs on a grid of time"
        )
    require_rows(results, "trajectory plots")
    if int(n_grid) != n_grid or n_grid < 2:
        raise ValueError(f"n_grid must be an integer >= 2, got {n_grid!r}")
    if band is not None and band not in BANDS:
        raise ValueError(f"band must be one of {BANDS} or None, got {band!r} (the level of the "
                         f"band is level=)")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if max_subjects is not None and (int(max_subjects) != max_subjects or max_subjects < 0):
        raise ValueError(f"max_subjects must be a non-negative integer or None, got {max_subjects!r}")
    family = model.family
    if band == "prediction" and not family.has_scale:
        raise ValueError(f"band='prediction' draws a Gaussian predictive interval; the "
                         f"{family.name!r} outcome is discrete: use band='confidence' or None")
    if max_subjects is None and family.name == "binomial":
        max_subjects = 0        # lines through 0/1 outcomes show nothing but noise

    from matplotlib import patheffects

    t = fitted_time(results, time, data)
    grid = np.linspace(t.min(), t.max(), int(n_grid))
    mean, half = expert_curves(results, time, grid, band, level)

    ax = new_axes(ax)
    y = observed_response(model)
    post = subject_posterior(results, design_rows(results))
    codes, subjects = post.codes, post.subjects
    assigned = post.tau.argmax(axis=1) + 1
    n_subjects = len(subjects)
    if max_subjects is None or max_subjects >= n_subjects:
        shown = np.arange(n_subjects)
    else:
        shown = np.unique(np.linspace(0, n_subjects - 1, int(max_subjects)).round().astype(int))
    order = np.lexsort((t, codes))
    bounds = np.searchsorted(codes[order], np.arange(n_subjects + 1))
    thin = float(np.clip(60.0 / max(len(shown), 1), 0.25, 0.8))
    for i in shown:
        idx = order[bounds[i]:bounds[i + 1]]
        ax.plot(t[idx], y[idx], color=expert_colour(assigned[i]), lw=thin, alpha=0.3,
                marker="." if idx.size == 1 else None, ms=3, zorder=1,
                label="_nolegend_", gid=f"subject {subjects[i]}")

    K = results.n_experts
    counts = np.bincount(assigned - 1, minlength=K)
    if half is not None and band == "confidence":
        missing = [k + 1 for k in range(K) if np.isnan(half[:, k]).all()]
        if missing:
            warnings.warn(f"no confidence band for expert(s) {missing}: their means depend on "
                          f"parameters without a standard error (at the boundary of the parameter "
                          f"space, see results.messages)", UserWarning, stacklevel=2)
    for k in range(K):
        colour = expert_colour(k + 1)
        if half is not None:
            ax.fill_between(grid, mean[:, k] - half[:, k], mean[:, k] + half[:, k], color=colour,
                            alpha=0.3 if band == "confidence" else 0.15, lw=0, zorder=2,
                            gid=f"band {k + 1}")
        # a white casing keeps each mean readable over the subjects' lines
        ax.plot(grid, mean[:, k], color=colour, lw=2.5, zorder=4, gid=f"mean {k + 1}",
                label=f"expert {k + 1} ({counts[k]} subjects)",
                path_effects=[patheffects.Stroke(linewidth=5, foreground="white"),
                              patheffects.Normal()])
    title = {None: "expert means",
             "confidence": f"expert means, {level:.0%} confidence bands",
             "prediction": f"expert means, {level:.0%} of one subject's y"}[band]
    ax.legend(title=title, fontsize="small", title_fontsize="small", loc="upper left")
    ax.set_xlabel(str(time))
    ax.set_ylabel(response_label(model) if ylabel is None else ylabel)
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


# ---------------------------------------------------------------------------------------------
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
