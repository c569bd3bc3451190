"""The object returned by :meth:`MEMoEResults.get_prediction`: predicted means with standard
errors, in statsmodels' layout.

statsmodels' ``get_prediction(...).summary_frame(alpha)`` has the columns ``mean``,
``mean_se``, ``mean_ci_lower`` and ``mean_ci_upper``; so does this one. The intervals are Wald
intervals mean +- z_{1-alpha/2} mean_se for the *mean* (parameter uncertainty). statsmodels'
``obs_ci_*`` columns, the interval of a new observation, have no place here because the
predictive law of a new observation is a mixture whose highest-density set may be a union of
intervals: :meth:`PredictionResults.prediction_set` returns it, as
:meth:`MEMoEResults.prediction_set` does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ._sets import prediction_set

__all__ = ["PredictionResults", "PredictiveMixture"]


class PredictionResults:
    """Predicted means with delta-method standard errors (see :func:`pymemoe.prediction.get_prediction`).

    Attributes
    ----------
    predicted_mean : pandas.Series or pandas.DataFrame
        The predictions (rows x experts for ``kind="expert"``).
    se_mean : pandas.Series or pandas.DataFrame
        Their standard errors, same shape.
    kind : str
    """

    def __init__(self, mean: np.ndarray, se: np.ndarray, index: pd.Index, experts: pd.Index,
                 kind: str, results, request: dict) -> None:
        self._mean = np.array(mean, dtype=float)
        self._se = np.array(se, dtype=float)
        for array in (self._mean, self._se):
            array.setflags(write=False)
        self._index = index
        self._experts = experts
        self._kind = kind
        self._results = results
        self._request = dict(request)

    @property
    def kind(self) -> str:
        return self._kind

    def _labelled(self, values: np.ndarray, name: str):
        if self._kind == "expert":
            return pd.DataFrame(np.array(values), index=self._index, columns=self._experts)
        return pd.Series(np.array(values), index=self._index, name=name)

    @property
    def predicted_mean(self) -> pd.Series | pd.DataFrame:
        return self._labelled(self._mean, "mean")

    @property
    def se_mean(self) -> pd.Series | pd.DataFrame:
        return self._labelled(self._se, "mean_se")

    def _long_index(self) -> pd.Index:
        if self._kind != "expert":
            return self._index
        K = len(self._experts)
        rows = np.repeat(np.arange(len(self._index)), K)
        return pd.MultiIndex.from_arrays(
            [self._index.take(rows), np.tile(self._experts.to_numpy(), len(self._index))],
            names=[self._index.name, "expert"])

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald confidence intervals of the means, columns ``lower`` and ``upper`` (one row per
        input row, or per (row, expert) for ``kind="expert"``)."""
        frame = self.summary_frame(alpha)
        return frame[["mean_ci_lower", "mean_ci_upper"]].set_axis(["lower", "upper"], axis=1)

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """``mean``, ``mean_se``, ``mean_ci_lower``, ``mean_ci_upper`` at level 1 - alpha.

        For ``kind="expert"`` the frame is long: one row per (input row, expert), indexed by
        both. The interval is the Wald interval on the scale of the family's link
        (:meth:`pymemoe.families.links.Link.interval`: for binomial experts the logit of the
        probability, for Poisson experts the log of the mean, the standard error there being
        ``mean_se`` divided by the derivative of the mean in the linear predictor), mapped
        back, so that it stays within the range of the mean, as statsmodels' GLM does; for
        Gaussian experts (identity link) mean -+ z mean_se.
        """
        alpha = float(alpha)
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        crit = stats.norm.ppf(1.0 - alpha / 2.0)
        mean, se = self._mean.ravel(), self._se.ravel()
        lower, upper = self._results.model.family.link.interval(mean, se, crit)
        return pd.DataFrame({"mean": mean, "mean_se": se, "mean_ci_lower": lower,
                             "mean_ci_upper": upper}, index=self._long_index())

    def prediction_set(self, alpha: float = 0.05, method: str = "hdr",
                       n_grid: int = 400) -> pd.DataFrame:
        """Prediction sets of one new observation at the same rows (plug-in predictive law);
        see :func:`pymemoe.prediction.prediction_set`. Not for ``kind="expert"``."""
        if self._kind == "expert":
            raise ValueError("prediction sets are for kind='marginal' or 'conditional' (the "
                             "law of a new observation mixes the experts)")
        request = self._request
        return prediction_set(self._results, request["newdata"], alpha, request["kind"], method,
                              groups=request["groups"], landmark=request["landmark"],
                              time=request["time"], n_grid=n_grid)

    def __repr__(self) -> str:
        return f"<PredictionResults: kind={self._kind!r}, {len(self._index)} rows>"


@dataclass(frozen=True, eq=False)
class PredictiveMixture:
    """Mixture predictive law of one observation at each row (:func:`predictive_mixture`).

    Attributes
    ----------
    weights, means, variances : pandas.DataFrame
        Rows x experts: the mixture weights (tau_ik or pi_ik), the component means and the
        component variances (see the module docstring; for binomial experts, of the
        proportion of successes).
    kind : str
        ``"conditional"`` or ``"marginal"``.
    """

    weights: pd.DataFrame
    means: pd.DataFrame
    variances: pd.DataFrame
    kind: str

    def mean(self) -> pd.Series:
        """The predictive mean sum_k w_k m_k (the point prediction of the same kind)."""
        return (self.weights * self.means).sum(axis=1).rename("predicted")

    def variance(self) -> pd.Series:
        """The predictive variance sum_k w_k (v_k + m_k^2) - mean^2."""
        m = self.mean()
        second = (self.weights * (self.variances + self.means ** 2)).sum(axis=1)
        return (second - m ** 2).rename("variance")
