r"""Expert mean trajectories with their bands over the observed trajectories (the mathematics
of the bands is in :mod:`pymemoe.plotting`)."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Hashable

import numpy as np
import pandas as pd
from scipy import stats

from .._design.questions import formula_factors, sample_column, typical_frame
from .._predictive.laws import component_laws, expert_means
from .._predictive.posterior import subject_posterior
from .._predictive.residuals import observed_response
from .._predictive.rows import design_rows, require_rows
from ..prediction import get_prediction
from ._style import expert_colour, import_pyplot, new_axes, response_label

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib stays optional at run time
    from matplotlib.axes import Axes

    from ..results import MEMoEResults

__all__ = ["plot_trajectories", "expert_curves", "fitted_time", "BANDS"]


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
    value (:func:`pymemoe._design.questions.typical_frame`: its mean over the fitted rows if numeric, its
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
    if band == "prediction" and not family.continuous:
        raise ValueError(f"band='prediction' draws a Gaussian predictive interval; the "
                         f"{family.name!r} outcome is discrete: use band='confidence' or None")
    if max_subjects is None and not family.observed_lines:
        max_subjects = 0        # e.g. lines through 0/1 outcomes show nothing but noise

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
