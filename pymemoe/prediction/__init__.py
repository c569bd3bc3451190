"""Predictions of a fitted MEMoE.

* :func:`predict`: marginal (from baseline covariates), per-expert, or conditional
  (subject-specific) means; rows of new data with a missing outcome are predicted from the
  subject's other rows (dynamic prediction);
* :func:`get_prediction`: the same with delta-method standard errors and confidence intervals
  (:class:`PredictionResults`, statsmodels' ``summary_frame`` columns);
* :func:`predict_class`, :func:`prior_class`: posterior and gating probabilities of (new)
  subjects;
* :func:`predictive_mixture`: the mixture law of one observation (:class:`PredictiveMixture`);
* :func:`cumulative_incidence`: survival and cumulative incidence curves of a joint model's
  experts and their mixture, with confidence bands; :func:`dynamic_prediction`: the
  probability of each cause of event in (s, s + h] given the measurements up to s, and
  :func:`dynamic_accuracy`: their time-dependent AUC and Brier score, and
  :func:`prognostic_loglik`: the log-likelihood of the observed follow-up given the
  measurements up to s (EPOCE);
* :func:`prediction_set`, :func:`coverage`: highest-density or equal-tail prediction sets of
  single observations, and how often they cover.

The results' methods (``res.predict``, ``res.get_prediction``, ``res.prediction_set``, ...)
call these. The mathematics is in :mod:`pymemoe._predictive`, the engine they share with the
plots, the diagnostics, cross-validation and the simulation.
"""
from ._api import get_prediction, predict, predict_class, predictive_mixture, prior_class
from ._events import (cumulative_incidence, dynamic_accuracy, dynamic_prediction,
                      prognostic_loglik)
from ._results import PredictionResults, PredictiveMixture
from ._sets import coverage, prediction_set

__all__ = ["predict", "get_prediction", "predict_class", "prior_class", "predictive_mixture",
           "PredictiveMixture", "PredictionResults", "prediction_set", "coverage",
           "cumulative_incidence", "dynamic_prediction", "dynamic_accuracy",
           "prognostic_loglik"]
