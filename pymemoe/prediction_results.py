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

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

__all__ = ["PredictionResults"]


class PredictionResults:
    """Predicted means with delta-method standard errors (see :func:`pymemoe.predict.get_prediction`).

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
        both. For binomial and Poisson experts the interval is the Wald interval on the link
        scale (logit of the probability, log of the mean; the standard error there is
        ``mean_se`` divided by the link's derivative), mapped back, so it stays within the
        range of the mean, as statsmodels' GLM does.
        """
        alpha = float(alpha)
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        crit = stats.norm.ppf(1.0 - alpha / 2.0)
        mean, se = self._mean.ravel(), self._se.ravel()
        family = self._results.model.family.name
        with np.errstate(divide="ignore", invalid="ignore"):
            if family == "binomial":
                half = crit * se / (mean * (1.0 - mean))
                logit = np.log(mean / (1.0 - mean))
                lower, upper = expit(logit - half), expit(logit + half)
            elif family == "poisson":
                half = crit * se / mean
                lower, upper = mean * np.exp(-half), mean * np.exp(half)
            else:
                lower, upper = mean - crit * se, mean + crit * se
        return pd.DataFrame({"mean": mean, "mean_se": se, "mean_ci_lower": lower,
                             "mean_ci_upper": upper}, index=self._long_index())

    def prediction_set(self, alpha: float = 0.05, method: str = "hdr",
                       n_grid: int = 400) -> pd.DataFrame:
        """Prediction sets of one new observation at the same rows (plug-in predictive law);
        see :func:`pymemoe.prediction_sets.prediction_set`. Not for ``kind="expert"``."""
        from .prediction_sets import prediction_set

        if self._kind == "expert":
            raise ValueError("prediction sets are for kind='marginal' or 'conditional' (the "
                             "law of a new observation mixes the experts)")
        request = self._request
        return prediction_set(self._results, request["newdata"], alpha, request["kind"], method,
                              groups=request["groups"], landmark=request["landmark"],
                              time=request["time"], n_grid=n_grid)

    def __repr__(self) -> str:
        return f"<PredictionResults: kind={self._kind!r}, {len(self._index)} rows>"
