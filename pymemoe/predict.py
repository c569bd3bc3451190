"""The former home of the predictions, kept so that code written for it still runs.

The predictions are in :mod:`pymemoe.prediction` (``predict``, ``get_prediction``,
``predict_class``, ``prior_class``, ``predictive_mixture``, ...) and the predictive engine in
:mod:`pymemoe._predictive` (internal). New code should import from :mod:`pymemoe.prediction`.
"""
from ._predictive.jacobian import delta_se, prediction_jacobian
from ._predictive.laws import (ComponentLaws, component_laws, expert_means, gating_probabilities,
                               laws_of, point_prediction)
from ._predictive.posterior import SubjectPosterior, subject_posterior
from ._predictive.residuals import expert_residuals
from ._predictive.rows import DesignRows, design_rows, history_mask, observed_outcome, require_rows
from .prediction import (PredictiveMixture, get_prediction, predict, predict_class,
                         predictive_mixture, prior_class)

__all__ = ["predict", "get_prediction", "predict_class", "prior_class", "predictive_mixture",
           "PredictiveMixture", "DesignRows", "SubjectPosterior", "ComponentLaws",
           "design_rows", "history_mask", "subject_posterior", "component_laws", "laws_of",
           "expert_means", "point_prediction", "prediction_jacobian", "delta_se",
           "expert_residuals", "gating_probabilities", "observed_outcome", "require_rows"]
