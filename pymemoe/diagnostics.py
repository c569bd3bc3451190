r"""Model checking of a fitted MEMoE: standardised residuals and observed-versus-predicted means.

**Standardised residuals.** For subject i and expert k, the within-subject whitened residuals
e_ik = L_ik^-1 (y_i - X_i beta_k), V_ik = Z_i D_k Z_i' + sigma2_k I = L_ik L_ik', are
independent N(0, 1) when subject i belongs to expert k and the expert is correctly specified
(:func:`pymemoe._predictive.residuals.expert_residuals`). The expert is unknown, so they are combined:

* ``by="posterior"``: sum_k tau_ik e_ijk, the posterior-weighted residual; when the experts
  are well separated (tau near 0 or 1) it is N(0, 1), and its variance is below 1 for subjects
  whose class is uncertain;
* ``by="assigned"``: e_ij,k* with k* the subject's most probable expert (lcmm's and Mplus's
  "most likely class" convention).

Their histogram against the N(0, 1) density, their normal QQ plot and their plot against the
fitted expert means (:func:`pymemoe.plotting.plot_residuals`) check the Gaussian expert: heavy
tails, skewness, variance that changes with the level. The fitted values for that plot are the
experts' means combined the same way (:func:`fitted_means`: sum_k tau_ik x_j' beta_k, or
x_j' beta_k*), not the subject-specific ``fittedvalues``: those contain the predicted random
effects, which are correlated with the whitened residuals even under a correct model (a
subject with a large random intercept has both a large fitted value and positive residuals),
so a trend against them would not be a sign of misfit.

**Observed and predicted means by expert** (:func:`fit_table`, lcmm's
``plot(m, which = "fit")``). The time axis is cut into bins; in each bin and for each expert
k, the mean of the observations weighted by the posterior probabilities tau_ik of their
subjects is compared with the equally weighted mean of expert k's predictions, either the
expert mean x' beta_k (``kind="marginal"``, lcmm's ``marg = TRUE``) or the subject-specific
x' beta_k + z' b_hat_ik (``kind="conditional"``). A good fit has the predicted means inside
the intervals of the observed ones; the interval of an observed weighted mean treats the
visits in a bin as independent (a description, not a test).

**Observed and predicted event curves by expert** (:func:`event_fit_table`, joint models).
For each expert k, the nonparametric Aalen-Johansen estimates of survival and of the
cumulative incidence of each cause, with subject i weighted by tau_ik (the Kaplan-Meier
estimate for one cause), are compared with the model's curves averaged over the same
subjects with the same weights, sum_i tau_ik S_k(t | x_i) / sum_i tau_ik (and likewise
F_kc). The weighted estimates treat the posterior as known (a description, not a test).

**Conditional independence given the expert** (:func:`conditional_independence_test`, joint
models). The joint latent class model assumes that, given the expert, the time to event does
not depend on the trajectory. Following Jacqmin-Gadda et al. (2010), the hazards are extended
to h_kc(t) exp(eta_c' b_i), with b_i the subject's random effects, and eta = 0 is tested by a
score test at the fitted model: subject i's score is U_i = sum_k tau_ik (d_ic - H_kc(T_i))
b_hat_ik, and its variance, corrected for the estimated parameters, is estimated by the outer
products, V = sum U U' - (sum U s')(sum s s')^-1 (sum s U') with s_i the subjects' scores of
the model's parameters; U' V^-1 U is chi-squared with C q degrees of freedom under the
assumption. A small p-value says that the random effects still predict the event within the
experts: more experts, or a model that links the hazards to the trajectories, are needed.
"""
from __future__ import annotations

from typing import Hashable

import numpy as np
import pandas as pd
from scipy import stats

from ._design.questions import sample_column
from ._predictive.laws import component_laws, expert_means
from ._predictive.posterior import subject_posterior
from ._predictive.residuals import expert_residuals
from ._predictive.rows import design_rows

__all__ = ["standardized_residuals", "fitted_means", "fit_table", "event_fit_table",
           "weighted_aalen_johansen", "conditional_independence_test", "RESIDUAL_KINDS"]

RESIDUAL_KINDS = ("posterior", "assigned", "expert")


def standardized_residuals(results, by: str = "posterior") -> pd.Series | pd.DataFrame:
    """Within-subject whitened residuals of the fitting rows (module docstring).

    Parameters
    ----------
    results : MEMoEResults
    by : {"posterior", "assigned", "expert"}
        Posterior-weighted over the experts, those of the subject's most probable expert, or
        all experts (rows x experts).

    Returns
    -------
    pandas.Series or pandas.DataFrame
        Indexed like the fitting rows (``results.fittedvalues``).

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1).fit()
    >>> r = res.standardized_residuals()
    >>> round(float(r.mean()), 2), round(float(r.std()), 2)
    (0.01, 1.0)
    """
    if by not in RESIDUAL_KINDS:
        raise ValueError(f"by must be one of {RESIDUAL_KINDS}, got {by!r}")
    white = expert_residuals(results, standardize=True)
    rows = design_rows(results, what="residuals")
    if by == "expert":
        return pd.DataFrame(white, index=rows.index,
                            columns=pd.Index(range(1, white.shape[1] + 1), name="expert"))
    post = subject_posterior(results, rows)
    tau = post.tau[post.codes]
    if by == "posterior":
        values = (tau * white).sum(axis=1)
    else:
        values = white[np.arange(white.shape[0]), tau.argmax(axis=1)]
    return pd.Series(values, index=rows.index, name="standardized residual")


def fitted_means(results, by: str = "posterior") -> pd.Series:
    """The experts' means x_j' beta_k of each fitting row, combined as the standardised
    residuals are: posterior-weighted (``by="posterior"``) or of the assigned expert
    (``by="assigned"``); the x axis against which those residuals should show no trend."""
    if by not in ("posterior", "assigned"):
        raise ValueError(f"by must be 'posterior' or 'assigned', got {by!r}")
    rows = design_rows(results, what="fitted means")
    post = subject_posterior(results, rows)
    tau = post.tau[post.codes]
    means = expert_means(results, rows)
    values = ((tau * means).sum(axis=1) if by == "posterior"
              else means[np.arange(means.shape[0]), tau.argmax(axis=1)])
    return pd.Series(values, index=rows.index, name="fitted expert mean")


def _time_values(results, time: Hashable, data: pd.DataFrame | None) -> np.ndarray:
    model = results.model
    if data is None:
        if model.spec is None:
            raise ValueError("the model was built from arrays, so its time column is unknown; "
                             "pass data= (the fitting data)")
        return pd.to_numeric(pd.Series(sample_column(model.spec, time))).to_numpy(dtype=float)
    if not isinstance(data, pd.DataFrame) or time not in data.columns:
        raise ValueError(f"time={time!r} must be a column of data")
    index = model.row_index
    if not data.index.is_unique or (~index.isin(data.index)).any():
        raise ValueError("data must hold every row used in the fit, with a unique index (the "
                         "DataFrame the model was fitted on)")
    return pd.to_numeric(data.loc[index, time]).to_numpy(dtype=float)


def fit_table(results, time: Hashable, data: pd.DataFrame | None = None, bins=10,
              kind: str = "marginal", alpha: float = 0.05) -> pd.DataFrame:
    """Observed and predicted mean outcome per expert and time bin, weighted by the posterior.

    Parameters
    ----------
    results : MEMoEResults
    time : str
        The time column. Taken from the fitted model when the formulas use it; otherwise pass
        ``data``.
    data : pandas.DataFrame, optional
        The fitting data (rows matched by index label), for a time column the formulas do not
        use.
    bins : int or sequence of float
        Number of bins with (nearly) equal numbers of visits, or the bin edges.
    kind : {"marginal", "conditional"}
        Expert means x' beta_k, or subject-specific predictions x' beta_k + z' b_hat_ik.
    alpha : float
        The observed means get 1 - alpha normal intervals.

    Returns
    -------
    pandas.DataFrame
        One row per (expert, bin): ``time`` (weighted mean time of the bin), ``weight`` (sum of
        the posterior weights), ``n_eff`` (its effective size (sum w)^2 / sum w^2),
        ``observed``, ``observed_se``, ``observed_lower``, ``observed_upper`` and
        ``predicted``.

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.diagnostics import fit_table
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1).fit()
    >>> table = fit_table(res, "year", bins=5)
    >>> table.index.names, table.shape
    (FrozenList(['expert', 'bin']), (5, 8))
    """
    if kind not in ("marginal", "conditional"):
        raise ValueError(f"kind must be 'marginal' or 'conditional', got {kind!r}")
    rows = design_rows(results, outcome=True, what="plots of the fit")
    t = _time_values(results, time, data)
    if not np.isfinite(t).all():
        raise ValueError(f"the time column {time!r} has missing values in rows used in the fit")
    post = subject_posterior(results, rows)
    weights = post.tau[post.codes]                                         # (n, K)
    if kind == "marginal":
        predicted = expert_means(results, rows)
    else:
        predicted = component_laws(results, rows, "conditional", post).means
    if np.ndim(bins) == 0:
        if int(bins) != bins or bins < 1:
            raise ValueError(f"bins must be a positive integer or bin edges, got {bins!r}")
        codes = pd.qcut(t, int(bins), labels=False, duplicates="drop")
    else:
        edges = np.asarray(bins, dtype=float)
        codes = pd.cut(t, edges, labels=False, include_lowest=True)
        if np.isnan(codes).any():
            raise ValueError("the bin edges must cover every fitted time")
    codes = np.asarray(codes, dtype=int)
    n_bins = codes.max() + 1
    crit = stats.norm.ppf(1.0 - alpha / 2.0)
    y = rows.endog
    pieces = []
    for k in range(weights.shape[1]):                 # experts: a handful, never subjects
        w = weights[:, k]
        total = np.bincount(codes, w, n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            observed = np.bincount(codes, w * y, n_bins) / total
            dev = y - observed[codes]
            se = np.sqrt(np.bincount(codes, (w * dev) ** 2, n_bins)) / total
            pieces.append(pd.DataFrame({
                "time": np.bincount(codes, w * t, n_bins) / total,
                "weight": total,
                "n_eff": total ** 2 / np.bincount(codes, w * w, n_bins),
                "observed": observed, "observed_se": se,
                "observed_lower": observed - crit * se, "observed_upper": observed + crit * se,
                "predicted": np.bincount(codes, w * predicted[:, k], n_bins) / total,
            }, index=pd.MultiIndex.from_product([[k + 1], range(n_bins)],
                                                names=["expert", "bin"])))
    return pd.concat(pieces)


def weighted_aalen_johansen(time: np.ndarray, cause: np.ndarray, weights: np.ndarray,
                            n_causes: int, at: np.ndarray, entry: np.ndarray | None = None
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Aalen-Johansen estimates at the times ``at``: survival (T,) and cumulative
    incidence of each cause (C, T), from right-censored times with causes 0 (censored) ..
    ``n_causes`` and subject weights. One cause: the weighted Kaplan-Meier estimate. With
    delayed ``entry`` a subject is at risk at t when T0_i < t <= T_i.

    Examples
    --------
    >>> surv, inc = weighted_aalen_johansen(np.array([1.0, 2.0, 3.0]), np.array([1, 0, 1]),
    ...                                     np.ones(3), 1, np.array([1.5, 3.0]))
    >>> surv.round(4).tolist(), inc.round(4).tolist()
    ([0.6667, 0.0], [[0.3333, 1.0]])
    """
    order = np.argsort(time, kind="stable")
    t, c, w = time[order], cause[order], weights[order]
    distinct, first = np.unique(t, return_index=True)
    at_risk = np.cumsum(w[::-1])[::-1][first]                           # sum w [T >= t_j]
    if entry is not None:                    # minus those not yet entered: sum w [T0 >= t_j]
        by_entry = np.argsort(entry, kind="stable")
        later = np.r_[np.cumsum(weights[by_entry][::-1])[::-1], 0.0]
        at_risk = at_risk - later[np.searchsorted(entry[by_entry], distinct, side="left")]
    events = np.zeros((n_causes, distinct.size))
    slot = np.searchsorted(distinct, t)
    for j in range(n_causes):        # loops over causes, not subjects
        np.add.at(events[j], slot, w * (c == j + 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, events / at_risk, 0.0)           # (C, J)
    surv = np.cumprod(1.0 - hazard.sum(axis=0))
    before = np.r_[1.0, surv[:-1]]
    incidence = np.cumsum(before * hazard, axis=1)
    where = np.searchsorted(distinct, np.asarray(at, dtype=float), side="right") - 1
    inside = where >= 0
    surv_at = np.where(inside, surv[np.maximum(where, 0)], 1.0)
    inc_at = np.where(inside, incidence[:, np.maximum(where, 0)], 0.0)
    return surv_at, inc_at


#: subjects per batch of the model's curves in :func:`event_fit_table` (bounds the memory of
#: the (subjects, experts, causes, grid) arrays)
CURVE_BATCH = 2_000


def event_fit_table(results, times=None) -> pd.DataFrame:
    """Posterior-weighted nonparametric and model event curves per expert (module docstring).

    Parameters
    ----------
    results : MEMoEResults
        A joint model's fit.
    times : array-like, optional
        Default: 100 points from 0 to the largest follow-up time.

    Returns
    -------
    DataFrame
        ``time``, ``expert``, ``curve`` (``"survival"``, ``"incidence: <cause>"``),
        ``observed`` (weighted Aalen-Johansen) and ``predicted`` (the model's average).
    """
    model = results.model
    family = model.family
    events = family.event_data(model.data)
    tau = results.estep.tau * (events.cause >= 0)[:, None]
    if times is None:
        times = np.linspace(0.0, float(events.time.max()), 100)
    times = np.asarray(times, dtype=float)
    K, C = tau.shape[1], events.n_causes
    params = results.state
    predicted_s = np.zeros((K, times.size))
    predicted_f = np.zeros((K, C, times.size))
    for start in range(0, tau.shape[0], CURVE_BATCH):   # batches of subjects, bounded memory
        sl = slice(start, start + CURVE_BATCH)
        surv, inc = family.event_curves(params, events.exog[sl], times, n_grid=400)
        predicted_s += np.einsum("nk,nkt->kt", tau[sl], surv)
        predicted_f += np.einsum("nk,nkct->kct", tau[sl], inc)
    sizes = tau.sum(axis=0)
    predicted_s /= sizes[:, None]
    predicted_f /= sizes[:, None, None]
    labels = ["survival"] + [f"incidence: {name}" for name in events.cause_names]
    frames = []
    for k in range(K):               # loops over experts, not subjects
        obs_s, obs_f = weighted_aalen_johansen(events.time, events.cause, tau[:, k], C, times,
                                               entry=events.entry)
        observed = np.vstack([obs_s, obs_f])
        predicted = np.vstack([predicted_s[k], predicted_f[k]])
        for j, label in enumerate(labels):
            frames.append(pd.DataFrame({"time": times, "expert": k + 1, "curve": label,
                                        "observed": observed[j], "predicted": predicted[j]}))
    return pd.concat(frames, ignore_index=True)


def conditional_independence_test(results) -> pd.DataFrame:
    """Score test that, given the expert, the random effects do not predict the event (module
    docstring; lcmm's test for ``Jointlcmm``).

    Parameters
    ----------
    results : MEMoEResults
        An unweighted joint model's fit with random effects.

    Returns
    -------
    DataFrame
        One row per cause and ``"all"``: ``chi2``, ``df``, ``P>chi2``.
    """
    model = results.model
    family = model.family
    events = family.event_data(model.data)
    if results.weight_type is not None:
        raise ValueError("the score test of conditional independence is for unweighted fits")
    q = model.structure.k_re
    if q == 0:
        raise ValueError("the score test of conditional independence needs random effects "
                         "(re_formula other than '0')")
    estep = results.estep
    scores_u = family.independence_scores(model.data, results.state, estep.moments, estep.tau)
    scores_s = model.score_obs(results.params)
    a = scores_u.T @ scores_u
    b = scores_u.T @ scores_s
    c = scores_s.T @ scores_s
    variance = a - b @ np.linalg.pinv(c) @ b.T
    total = scores_u.sum(axis=0)
    names = list(events.cause_names)
    rows = {}
    for c_index, name in enumerate(names + ["all"]):
        part = (np.arange(total.size) if name == "all"
                else np.arange(c_index * q, (c_index + 1) * q))
        sub = variance[np.ix_(part, part)]
        statistic = float(total[part] @ np.linalg.pinv(sub) @ total[part])
        rows[name] = {"chi2": statistic, "df": part.size,
                      "P>chi2": float(stats.chi2.sf(statistic, part.size))}
    return pd.DataFrame.from_dict(rows, orient="index")
