"""The posterior of every subject from its history rows: tau_ik, b_hat_ik and Sigma_ik (the
family's E-step on the subject's data, its future rows weighted 0)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._model.likelihood import e_step
from .._model.params import Params
from .rows import DesignRows

__all__ = ["SubjectPosterior", "subject_posterior", "posterior_of", "history_statistics"]


@dataclass(frozen=True, eq=False)
class SubjectPosterior:
    """Posterior of each subject (S subjects) from its history rows.

    Attributes
    ----------
    subjects : pandas.Index
        Subject labels.
    codes : ndarray (n,)
        Subject position of each row.
    tau : ndarray (S, K)
        Posterior expert probabilities.
    b_hat : ndarray (S, K, q)
        Conditional means (modes) of the random effects given each expert.
    b_cov : ndarray (S, K, q, q)
        Their conditional covariances.
    """

    subjects: pd.Index
    codes: np.ndarray
    tau: np.ndarray
    b_hat: np.ndarray
    b_cov: np.ndarray
    data: object = None
    moments: object = None


def history_statistics(results, rows: DesignRows, history: np.ndarray):
    """The family's data of the subjects in which the future rows carry weight zero (their
    outcome is not used), so a subject without history has log f = 0 (tau = pi), b_hat = 0
    and Sigma = D_k."""
    return results.model.family.make_data(np.where(history, rows.endog, 0.0), rows.exog,
                                           rows.exog_re, rows.exog_gate, rows.groups,
                                           trials=rows.trials, offset=rows.offset,
                                           weights=history.astype(float))


def posterior_of(data, params: Params) -> SubjectPosterior:
    estep = e_step(data, params)
    return SubjectPosterior(subjects=data.subjects, codes=data.row_codes, tau=estep.tau,
                            b_hat=np.asarray(estep.moments.b_hat),
                            b_cov=np.asarray(estep.moments.b_cov), data=data,
                            moments=estep.moments)


def subject_posterior(results, rows: DesignRows, history: np.ndarray | None = None,
                      params: Params | None = None) -> SubjectPosterior:
    """Posterior expert probabilities and random-effect moments of every subject of ``rows``.

    ``history=None`` on the fitting rows means every row is history: the fit's own E-step is
    used (at ``params``, if given, the model's sufficient statistics). Otherwise the rows in
    ``history`` form each subject's history.
    """
    if rows.fitting and history is None:
        data = results.model.data
        if params is None:
            estep = results.estep     # the fit's final E-step (the posterior of results)
            return SubjectPosterior(subjects=data.subjects, codes=data.row_codes,
                                    tau=np.array(estep.tau), b_hat=np.array(estep.moments.b_hat),
                                    b_cov=np.array(estep.moments.b_cov), data=data,
                                    moments=estep.moments)
        return posterior_of(data, params)
    if history is None:
        history = np.isfinite(rows.endog)
    return posterior_of(history_statistics(results, rows, history),
                         results.state if params is None else params)
