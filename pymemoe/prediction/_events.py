r"""Survival and cumulative incidence curves of a joint model, with confidence bands.

For a covariate profile x (a row of the time-to-event design) and each expert k::

    S_k(t | x) = exp(-sum_c H_kc(t | x)),      F_kc(t | x) = int_0^t h_kc(u | x) S_k(u | x) du,

the probability of being event-free at t and of having had the event of cause c by t
(cause-specific hazards: the F_kc of the causes and S_k add up to 1). The marginal curves of a
profile w of the gating covariates are the mixtures sum_k pi_k(w) S_k and sum_k pi_k(w) F_kc.

Confidence bands are pointwise, by the delta method on the logit scale (so that they stay
inside (0, 1)): the gradient of logit(curve) in the parameters by central differences, with
the fit's covariance of the estimates (:meth:`~pymemoe.MEMoEResults.cov_params`).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit, logit

from .._estimation.inference import delta_method
from .._model.gating import log_prior
from .._model.params import from_user

__all__ = ["cumulative_incidence"]


def _row(names: tuple[str, ...], values: Mapping | None, default: np.ndarray,
         what: str) -> np.ndarray:
    """A design row from ``values`` (by the design's column names; ``Intercept`` is 1), or
    ``default`` when None."""
    if values is None:
        return np.asarray(default, dtype=float)
    if isinstance(values, pd.DataFrame):
        if len(values) != 1:
            raise ValueError(f"{what} must be one row; got {len(values)}")
        values = values.iloc[0]
    values = dict(values)
    row = np.empty(len(names))
    for j, name in enumerate(names):
        if name == "Intercept":
            row[j] = 1.0
        elif name in values:
            row[j] = float(values[name])
        else:
            raise ValueError(f"{what} has no value for the design column {name!r} (it "
                             f"needs {[n for n in names if n != 'Intercept']})")
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{what}: {unknown} are not columns of the design {list(names)}")
    return row


def cumulative_incidence(results, times, profile: Mapping | None = None,
                         gate_profile: Mapping | None = None, alpha: float = 0.05
                         ) -> pd.DataFrame:
    """Survival and cumulative incidence curves of each expert, and their mixture, with
    pointwise confidence intervals.

    Parameters
    ----------
    results : MEMoEResults
        A joint model's fit (``survival=`` in :meth:`~pymemoe.MEMoE.from_formula`).
    times : array-like
        Times (>= 0) at which to evaluate the curves.
    profile : dict, Series or one-row DataFrame, optional
        Values of the time-to-event design's columns (by their names, e.g. ``{"age": 50}``;
        a categorical term by its column name such as ``"C(sex)[T.f]"``). Default: the mean
        design row of the fitted subjects.
    gate_profile : dict, Series or one-row DataFrame, optional
        Values of the gating design's columns for the marginal curves. Default: the mean
        gating row of the fitted subjects.
    alpha : float
        1 - the level of the confidence intervals.

    Returns
    -------
    DataFrame
        Long format: ``time``, ``expert`` (1..K, or ``"marginal"``), ``curve``
        (``"survival"`` or ``"incidence: <cause>"``), ``estimate``, ``std err`` (of the
        estimate, delta method), ``lower``, ``upper``.

    Examples
    --------
    >>> from pymemoe import MEMoE, TimeToEvent
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq().assign(year=lambda d: d["day"] / 365.25,
    ...                           years=lambda d: d["futime"] / 365.25)
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1, survival=TimeToEvent("years", "status",
    ...                          causes=["transplant", "death"])).fit()
    >>> curves = res.cumulative_incidence([5.0, 10.0])
    >>> sorted(curves["curve"].unique())
    ['incidence: death', 'incidence: transplant', 'survival']
    """
    model = results.model
    family, structure = model.family, model.structure
    times = np.asarray(times, dtype=float).ravel()
    if times.size == 0 or not np.isfinite(times).all() or (times < 0).any():
        raise ValueError("times must be finite and >= 0")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    events = family.event_data(model.data)
    cause_names = events.cause_names
    x = _row(events.exog_names, profile, events.exog[events.cause >= 0].mean(axis=0),
             "profile")
    w = _row(structure.exog_gate_names, gate_profile, model.data.exog_gate.mean(axis=0),
             "gate_profile")
    K = structure.n_experts

    def curves(theta: np.ndarray) -> np.ndarray:
        params = from_user(theta, structure)
        surv, inc = family.event_curves(params, x[None], times)
        surv, inc = surv[0], inc[0]                                     # (K, T), (K, C, T)
        prior = np.exp(log_prior(w[None, :], params.gamma))[0]          # (K,)
        per = np.concatenate([surv[:, None, :], inc], axis=1)           # (K, 1 + C, T)
        both = np.concatenate([per, np.einsum("k,kct->ct", prior, per)[None]], axis=0)
        return both.ravel()

    theta = results.params.to_numpy()
    cov = results.cov_params().to_numpy()
    value = curves(theta)
    clipped = np.clip(value, 1e-15, 1 - 1e-15)
    _, cov_logit = delta_method(lambda th: logit(np.clip(curves(th), 1e-15, 1 - 1e-15)),
                                theta, cov)
    se_logit = np.sqrt(np.clip(np.diag(cov_logit), 0.0, None))
    crit = stats.norm.ppf(1 - alpha / 2)
    center = logit(clipped)
    se = se_logit * clipped * (1 - clipped)
    labels = ["survival"] + [f"incidence: {c}" for c in cause_names]
    experts = list(range(1, K + 1)) + ["marginal"]
    index = pd.MultiIndex.from_product([experts, labels, times], names=["expert", "curve", "time"])
    out = pd.DataFrame({"estimate": value, "std err": se,
                        "lower": expit(center - crit * se_logit),
                        "upper": expit(center + crit * se_logit)}, index=index).reset_index()
    out["expert"] = out["expert"].astype(object)
    return out[["time", "expert", "curve", "estimate", "std err", "lower", "upper"]]
