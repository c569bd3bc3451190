r"""Predictive laws of one observation given the expert, vectorised over rows.

The predictive law of a new observation y_j is a mixture over the experts,
sum_k w_jk p_k(y_j), with weights w_jk (the gating pi_ik for a new subject, the posterior
tau_ik for a subject with a history) and component laws p_k given expert k
(:func:`component_laws` computes them). For Gaussian experts each component is
N(m_jk, v_jk) with m_jk = x_j' beta_k (+ z_j' b_hat_ik) and v_jk = z_j' D_k z_j + sigma2_k
(z_j' Sigma_ik z_j + sigma2_k). :class:`ComponentLaws` holds the arrays and evaluates the
mixture's density, its derivative and its distribution function for every row at once, which
is what the prediction sets need (:mod:`pymemoe.prediction`).

An expert family with another law (a binary or count outcome) keeps the weights and the
predictive means and variances; its law is not normal, ``continuous`` is False, and ``pdf``,
``dpdf`` and ``cdf`` (Gaussian) refuse it, as the prediction sets do.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Hashable

import numpy as np
import pandas as pd
from scipy.special import ndtr

from .._model.gating import log_prior
from .._model.params import Params
from .posterior import SubjectPosterior, subject_posterior
from .rows import KINDS, DesignRows, check_landmark, design_rows, forbid_landmark, history_mask

__all__ = ["ComponentLaws", "MIXTURE_KINDS", "gating_probabilities", "expert_means",
           "weights_and_means", "component_laws", "point_prediction", "row_trials",
           "request_inputs", "laws_of"]

_SQRT_2PI = np.sqrt(2.0 * np.pi)


@dataclass(frozen=True, eq=False)
class ComponentLaws:
    """The law of one observation at each row given each expert, with the mixture weights.

    For the Gaussian family each component is N(means, variances). A family with a discrete
    law (binomial, Poisson) keeps ``weights``, ``means`` and ``variances`` (the predictive
    moments); its ``pdf``, ``dpdf`` and ``cdf`` raise a ValueError.

    Attributes
    ----------
    weights, means, variances : ndarray (n, K)
    continuous : bool
        Whether each component is N(means, variances) (the family's ``continuous`` flag).
    family : str
        The experts' family, by name (for messages).
    """

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    continuous: bool = True
    family: str = "gaussian"
    sd: np.ndarray = dataclasses.field(init=False, repr=False)   # component SDs, (n, K)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sd", np.sqrt(self.variances))

    def mean(self) -> np.ndarray:
        """Mixture mean sum_k w_k m_k per row."""
        return (self.weights * self.means).sum(axis=1)

    def variance(self) -> np.ndarray:
        """Mixture variance sum_k w_k (v_k + m_k^2) - mean^2 per row."""
        m = self.mean()
        return (self.weights * (self.variances + self.means ** 2)).sum(axis=1) - m ** 2

    def subset(self, rows) -> "ComponentLaws":
        return ComponentLaws(self.weights[rows], self.means[rows], self.variances[rows],
                             self.continuous, self.family)

    def _component(self, k: int, rows: np.ndarray | None):
        if not self.continuous:     # the Gaussian formulas below would silently be wrong
            raise ValueError(f"the {self.family!r} predictive law is discrete: it has no "
                             f"Gaussian density or distribution function here")
        if rows is None:              # y of shape (n, G)
            return self.weights[:, k, None], self.means[:, k, None], self.sd[:, k, None]
        return self.weights[rows, k], self.means[rows, k], self.sd[rows, k]

    def pdf(self, y: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Mixture density at y: y of shape (n, G) (``rows=None``) or y[i] at row rows[i]."""
        out = np.zeros(np.shape(y))
        for k in range(self.weights.shape[1]):
            w, mu, sd = self._component(k, rows)
            z = (y - mu) / sd
            out += w * np.exp(-0.5 * z * z) / (sd * _SQRT_2PI)
        return out

    def dpdf(self, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Derivative of the mixture density at y[i] of row rows[i]."""
        out = np.zeros(np.shape(y))
        for k in range(self.weights.shape[1]):
            w, mu, sd = self._component(k, rows)
            z = (y - mu) / sd
            out -= w * z * np.exp(-0.5 * z * z) / (sd * sd * _SQRT_2PI)
        return out

    def cdf(self, y: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Mixture distribution function, shaped as :meth:`pdf`."""
        out = np.zeros(np.shape(y))
        for k in range(self.weights.shape[1]):
            w, mu, sd = self._component(k, rows)
            out += w * ndtr((y - mu) / sd)
        return out


MIXTURE_KINDS = ("conditional", "marginal")


def gating_probabilities(exog_gate: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """pi_ik = softmax_k(w_i' gamma_k) for rows of gating covariates, shape (n, K)."""
    return np.exp(log_prior(np.asarray(exog_gate, dtype=float), np.asarray(gamma, dtype=float)))


def expert_means(results, rows: DesignRows, params: Params | None = None) -> np.ndarray:
    """E[y | expert k, covariates] of a new subject at each row, shape (n, K): x' beta_k for
    Gaussian experts; for binomial and Poisson experts the response mean averaged over the
    random effects (the success probability, or the count's mean with the rows' offset)."""
    params = results.state if params is None else params
    return results.model.family.expert_means(params, rows.exog, rows.exog_re, rows.row_offset)


def weights_and_means(results, rows: DesignRows, kind: str, posterior, params: Params):
    """The mixture weights and the component means (n, K) of ``kind``."""
    if kind == "marginal":
        return (gating_probabilities(rows.exog_gate, params.gamma),
                expert_means(results, rows, params))
    if kind == "conditional":
        means = results.model.family.conditional_means(
            posterior.data, posterior.moments, params, rows.exog, rows.exog_re, rows.row_offset,
            posterior.codes)
        return posterior.tau[posterior.codes], means
    raise ValueError(f"kind must be one of {MIXTURE_KINDS}, got {kind!r}")


def component_laws(results, rows: DesignRows, kind: str, posterior: SubjectPosterior | None = None,
                   params: Params | None = None) -> ComponentLaws:
    """Weights, means and variances of the predictive law at each row (module docstring):
    ``kind="marginal"`` from the gating, ``"conditional"`` from ``posterior``. Families with a
    discrete law (binomial, Poisson) give its means and variances, but their laws are not
    continuous, and prediction sets refuse them."""
    params = results.state if params is None else params
    family = results.model.family
    weights, means = weights_and_means(results, rows, kind, posterior, params)
    var = family.predictive_variances(params, rows, means,
                                      posterior if kind == "conditional" else None,
                                      row_trials(results, rows))
    if var is None:
        var = np.full(means.shape, np.nan)
    return ComponentLaws(weights=weights, means=means, variances=var,
                         continuous=family.continuous, family=family.name)


def point_prediction(results, rows: DesignRows, kind: str,
                     posterior: SubjectPosterior | None = None,
                     params: Params | None = None) -> np.ndarray:
    """The predicted mean at each row: (n,) for ``"marginal"`` and ``"conditional"``, (n, K)
    for ``"expert"``. Only the means: no predictive variances (a second integral over the
    random effects for binomial and Poisson experts) are computed."""
    params = results.state if params is None else params
    if kind == "expert":
        return expert_means(results, rows, params)
    weights, means = weights_and_means(results, rows, kind, posterior, params)
    return (weights * means).sum(axis=1)


# ---------------------------------------------------------------------------------------------
def row_trials(results, rows: DesignRows) -> np.ndarray | None:
    """Binomial trials of each row for the predictive variances: None (one trial) for a 0/1
    outcome; for a ``successes + failures`` outcome the rows' own, NaN where the outcome (and
    so the number of trials) is not given."""
    if getattr(results.model, "trials", None) is None:
        return None
    if rows.trials is None:                     # new rows read without their outcome
        return np.full(rows.n_rows, np.nan)
    if rows.endog is None:                      # the fitting rows: their trials are known
        return rows.trials
    return np.where(np.isfinite(rows.endog), rows.trials, np.nan)


def request_inputs(results, newdata, kind, groups, landmark, time):
    """Rows and (for ``kind="conditional"``) the posterior of a prediction request."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind != "conditional":
        forbid_landmark(landmark, kind)
        return design_rows(results, newdata, groups=groups,
                           need_gating=kind != "expert"), None, None
    check_landmark(landmark, time)
    rows = design_rows(results, newdata, outcome=True, need_groups=True, groups=groups,
                       time=time)
    history = None if rows.fitting else history_mask(rows, landmark)
    return rows, subject_posterior(results, rows, history), history


def laws_of(results, newdata: pd.DataFrame | None, kind: str, *, groups=None,
            landmark: float | None = None,
            time: Hashable | None = None) -> tuple[pd.Index, ComponentLaws]:
    """The rows' index and their :class:`~pymemoe._predictive.laws.ComponentLaws` for a prediction request
    (``kind`` marginal or conditional; the other arguments as in :func:`predict`)."""
    if kind not in MIXTURE_KINDS:
        raise ValueError(f"kind must be one of {MIXTURE_KINDS}, got {kind!r}")
    rows, post, _ = request_inputs(results, newdata, kind, groups, landmark, time)
    return rows.index, component_laws(results, rows, kind, post)
