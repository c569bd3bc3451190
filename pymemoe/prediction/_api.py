"""Predictions of a fitted MEMoE: means (marginal, per expert, conditional and dynamic), their
standard errors, class membership of new subjects, and the predictive law of one observation.

The mathematics is in :mod:`pymemoe._predictive` (the predictive engine these functions call).
"""
from __future__ import annotations

from typing import Hashable

import numpy as np
import pandas as pd

from .._design.subjects import first_rows, subject_codes
from .._predictive.jacobian import delta_se, prediction_jacobian
from .._predictive.laws import gating_probabilities, laws_of, point_prediction, request_inputs
from .._predictive.rows import design_rows
from ._results import PredictionResults, PredictiveMixture

__all__ = ["predict", "get_prediction", "predict_class", "prior_class", "predictive_mixture"]


def _experts(results) -> pd.Index:
    return pd.Index(range(1, results.state.n_experts + 1), name="expert")


def predictive_mixture(results, newdata: pd.DataFrame | None = None, kind: str = "conditional",
                       *, groups=None, landmark: float | None = None,
                       time: Hashable | None = None) -> PredictiveMixture:
    """The mixture predictive law of one observation at each row: its weights and, per
    expert, the mean and variance of the component.

    For Gaussian experts the components are normal (module docstring). For binomial and
    Poisson experts the means are on the response scale (a success probability, or a count's
    mean with the row's offset), averaged over the random effects (``kind="marginal"``) or
    over their posterior (``"conditional"``), and so are the variances (of the count, or of
    the proportion of successes; module docstring); the components are not normal.

    Parameters
    ----------
    results : MEMoEResults
    newdata : pandas.DataFrame, optional
        Rows to predict; None for the fitting data.
    kind : {"conditional", "marginal"}
        Weights tau (from the subject's history) or pi (from its baseline covariates).
    groups : str or array-like, optional
        Subject labels of newdata (default: the fitting ``groups`` column).
    landmark, time : optional
        Only rows with ``time <= landmark`` enter the history (``kind="conditional"``).

    Returns
    -------
    PredictiveMixture

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.prediction import predictive_mixture
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1).fit()
    >>> mix = predictive_mixture(res, df.head(2), kind="marginal")
    >>> mix.means.round(3)
    expert      1
    0       0.496
    1       0.589
    >>> mix.variances.round(3)
    expert      1
    0       1.116
    1       1.200
    """
    index, laws = laws_of(results, newdata, kind, groups=groups, landmark=landmark, time=time)
    cols = _experts(results)
    make = lambda a: pd.DataFrame(np.array(a), index=index, columns=cols)  # noqa: E731
    return PredictiveMixture(weights=make(laws.weights), means=make(laws.means),
                             variances=make(laws.variances), kind=kind)


def predict(results, newdata: pd.DataFrame | None = None, kind: str = "marginal", *,
            groups=None, landmark: float | None = None,
            time: Hashable | None = None) -> pd.Series | pd.DataFrame:
    """Predicted outcome at each row: marginal, per expert, or subject-specific (conditional).

    Parameters
    ----------
    results : MEMoEResults
        A fitted model.
    newdata : pandas.DataFrame, optional
        Rows to predict, with the columns of the formulas (covariates present in every row);
        designs are rebuilt with the categorical levels and transforms learnt in fitting (a
        level never seen in fitting raises a ValueError naming the formula). None means the
        fitting data (the rows used in the fit). Models built from arrays support
        ``newdata=None`` only; models built from chunks ``newdata`` only.
    kind : {"marginal", "expert", "conditional"}
        ``"marginal"``: sum_k pi_k(w) x' beta_k from the covariates alone. ``"expert"``: the
        expert means x' beta_k, one column per expert. ``"conditional"``: sum_k tau_ik
        (x' beta_k + z' b_hat_ik) from the subject's observed outcomes; on the fitting data
        these are the fitted values. Rows of newdata with a missing outcome (or after the
        landmark) are future rows, predicted from the subject's other rows (dynamic
        prediction); a subject without observed outcome gets its marginal prediction.
    groups : str or array-like, optional
        Subject labels of newdata; default the fitting ``groups`` column. Needed by
        ``kind="conditional"``; with any kind, the gating covariates of a subject must be
        constant within it. Subjects of newdata are new subjects, even if their labels were in
        the fit.
    landmark : float, optional
        With ``time``: rows with ``time > landmark`` are future rows whatever their outcome.
    time : str, optional
        Name of the time column of newdata (needed by ``landmark``).

    Returns
    -------
    pandas.Series or pandas.DataFrame
        Indexed like newdata's rows (or the fitting rows); a DataFrame with one column per
        expert for ``kind="expert"``.

    See Also
    --------
    get_prediction : the same predictions with delta-method standard errors.

    Examples
    --------
    >>> import numpy as np
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.prediction import predict
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1).fit()
    >>> predict(res, df.head(3)).round(3)
    0    0.496
    1    0.589
    2    0.496
    Name: predicted, dtype: float64

    Dynamic prediction: hide the outcome of subject 1's second visit; its prediction then uses
    the first visit only.

    >>> new = df[df["id"] == 1].copy()
    >>> new.loc[new.index[1], "bili"] = np.nan
    >>> predict(res, new, kind="conditional").round(3)
    0    2.436
    1    2.603
    Name: predicted, dtype: float64
    """
    rows, post, _ = request_inputs(results, newdata, kind, groups, landmark, time)
    values = point_prediction(results, rows, kind, post)
    if kind == "expert":
        return pd.DataFrame(values, index=rows.index, columns=_experts(results))
    return pd.Series(values, index=rows.index, name="predicted")


def get_prediction(results, newdata: pd.DataFrame | None = None, kind: str = "marginal", *,
                   groups=None, landmark: float | None = None, time: Hashable | None = None):
    """Predicted means with delta-method standard errors and confidence intervals.

    The means are those of :func:`predict`; their standard errors come from
    ``results.cov_params()`` by the delta method (module docstring): for ``kind="expert"``
    exactly sqrt(x' V_k x). They measure the uncertainty of the estimated mean (parameter
    uncertainty), not the spread of a new observation: for that use the prediction sets
    (:meth:`PredictionResults.prediction_set`).

    Parameters
    ----------
    results : MEMoEResults
        A fit with standard errors (``cov_type`` ``"oim"`` or ``"robust"``).
    newdata, kind, groups, landmark, time
        As in :func:`predict`.

    Returns
    -------
    pymemoe.prediction.PredictionResults
        ``summary_frame(alpha)`` has statsmodels' columns ``mean``, ``mean_se``,
        ``mean_ci_lower`` and ``mean_ci_upper``.

    Examples
    --------
    >>> import pandas as pd
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1).fit()
    >>> grid = pd.DataFrame({"year": [0.0, 5.0, 10.0]})
    >>> res.get_prediction(grid, kind="expert").summary_frame().round(3)
               mean  mean_se  mean_ci_lower  mean_ci_upper
      expert                                              
    0 1       0.496    0.058          0.382          0.609
    1 1       1.383    0.097          1.193          1.572
    2 1       2.270    0.154          1.967          2.573
    """
    cov = results.cov_params().to_numpy()
    if not np.isfinite(np.diag(cov)).any():
        raise ValueError(f"standard errors of predictions need the covariance of the estimates, "
                         f"and this fit has none (cov_type={results.cov_type!r}); refit with "
                         f"cov_type='oim' or 'robust', or use predict() for the means alone")
    rows, post, history = request_inputs(results, newdata, kind, groups, landmark, time)
    mean = point_prediction(results, rows, kind, post)
    se = delta_se(prediction_jacobian(results, rows, kind, history), cov)
    request = dict(newdata=newdata, kind=kind, groups=groups, landmark=landmark, time=time)
    return PredictionResults(mean=mean, se=se, index=rows.index, experts=_experts(results),
                             kind=kind, results=results, request=request)


def predict_class(results, newdata: pd.DataFrame | None = None, *, groups=None,
                  landmark: float | None = None,
                  time: Hashable | None = None) -> pd.DataFrame:
    """Posterior expert probabilities of (new) subjects from their outcomes and covariates.

    The analogue of lcmm's ``predictClass``: tau_ik = pi_ik f(y_i | k) / sum_l pi_il f(y_i | l)
    at the fitted parameters, using the rows of newdata with an observed outcome (and time at or
    before ``landmark``). A subject without such rows gets its prior (gating) probabilities.

    Parameters
    ----------
    results : MEMoEResults
    newdata : pandas.DataFrame, optional
        Long-format data of the subjects; None for the fitting data (then the result equals
        ``results.posterior``).
    groups, landmark, time
        As in :func:`predict`.

    Returns
    -------
    pandas.DataFrame
        Subjects x experts (rows sum to 1).

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.prediction import predict_class
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=1).fit()
    >>> predict_class(res, df[df["id"] <= 2])
    expert     1
    subject     
    1        1.0
    2        1.0
    """
    if newdata is None:
        _forbid_time(landmark, time)
        return results.posterior
    _, post, _ = request_inputs(results, newdata, "conditional", groups, landmark, time)
    return pd.DataFrame(np.array(post.tau), index=post.subjects, columns=_experts(results))


def _forbid_time(landmark, time) -> None:
    if landmark is not None or time is not None:
        raise ValueError("landmark/time need newdata (a DataFrame with the time column); "
                         "the fitting data's time is not stored in the model")


def prior_class(results, newdata: pd.DataFrame | None = None, *, groups=None) -> pd.DataFrame:
    """Gating (prior) expert probabilities pi_ik of (new) subjects from baseline covariates.

    Parameters
    ----------
    results : MEMoEResults
    newdata : pandas.DataFrame, optional
        Data with the gating covariates and the subject column; None for the fitting subjects
        (then the result equals ``results.prior``).
    groups : str or array-like, optional
        Subject labels of newdata (default: the fitting ``groups`` column).

    Returns
    -------
    pandas.DataFrame
        Subjects x experts.

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.prediction import prior_class
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", n_experts=1).fit()
    >>> prior_class(res, df[df["id"] == 3])
    expert     1
    subject     
    3        1.0
    """
    if newdata is None:
        return results.prior
    rows = design_rows(results, newdata, need_groups=True, groups=groups)
    codes, subjects = subject_codes(rows.groups)
    gate = rows.exog_gate[first_rows(codes, len(subjects))]
    return pd.DataFrame(gating_probabilities(gate, results.state.gamma), index=subjects,
                        columns=_experts(results))
