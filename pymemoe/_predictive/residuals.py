"""Residuals of each fitting row under each expert: raw, or whitened within the subject
(Gaussian experts: the prediction-error decomposition of V_ik; binomial and Poisson experts:
randomised quantile residuals)."""
from __future__ import annotations

import numpy as np

from .rows import design_rows, require_rows

__all__ = ["expert_residuals", "observed_response"]


_BLOCK = 2_000_000        # entries of the (subjects, K, n_i, n_i) stacks whitened at once


def expert_residuals(results, standardize: bool = True) -> np.ndarray:
    """Residuals of each fitting row under each expert, shape (n, K), as the family defines
    them (:meth:`pymemoe.families.base.ExpertFamily.expert_residuals`): raw (the outcome minus
    the expert mean of a new subject) or standardised (N(0, 1) under a correct expert: for
    Gaussian experts the within-subject whitened residuals, for binomial and Poisson experts
    randomised quantile residuals)."""
    require_rows(results, "residuals")
    model = results.model
    rows = design_rows(results, what="residuals")
    return model.family.expert_residuals(rows, model.endog, results.state,
                                         np.asarray(results.estep.moments.b_hat),
                                         model.data.row_codes, standardize)


def observed_response(model) -> np.ndarray:
    """The fitting rows' outcome on the scale of the predictions: y, or the proportion of
    successes y / m of a ``successes + failures`` outcome."""
    trials = getattr(model, "trials", None)
    return model.endog if trials is None else model.endog / trials
