r"""Predictive laws of one observation given the expert, vectorised over rows.

The predictive law of a new observation y_j is a mixture over the experts,
sum_k w_jk p_k(y_j), with weights w_jk (the gating pi_ik for a new subject, the posterior
tau_ik for a subject with a history) and component laws p_k given expert k
(:mod:`pymemoe.predict` computes them). For Gaussian experts each component is
N(m_jk, v_jk) with m_jk = x_j' beta_k (+ z_j' b_hat_ik) and v_jk = z_j' D_k z_j + sigma2_k
(z_j' Sigma_ik z_j + sigma2_k). :class:`ComponentLaws` holds the arrays and evaluates the
mixture's density, its derivative and its distribution function for every row at once, which
is what the prediction sets need (:mod:`pymemoe.prediction_sets`).

An expert family with another law (a binary or count outcome) keeps the weights and the
predictive means and variances; its law is not normal, ``continuous`` is False, and ``pdf``,
``dpdf`` and ``cdf`` (Gaussian) refuse it, as the prediction sets do.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

__all__ = ["ComponentLaws"]

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
    family : str
        The experts' family: ``"gaussian"``, ``"binomial"`` or ``"poisson"``.
    """

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    family: str = "gaussian"
    sd: np.ndarray = dataclasses.field(init=False, repr=False)   # component SDs, (n, K)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sd", np.sqrt(self.variances))

    @property
    def continuous(self) -> bool:
        """Whether the law has a density (prediction sets are intervals of it)."""
        return self.family == "gaussian"

    def mean(self) -> np.ndarray:
        """Mixture mean sum_k w_k m_k per row."""
        return (self.weights * self.means).sum(axis=1)

    def variance(self) -> np.ndarray:
        """Mixture variance sum_k w_k (v_k + m_k^2) - mean^2 per row."""
        m = self.mean()
        return (self.weights * (self.variances + self.means ** 2)).sum(axis=1) - m ** 2

    def subset(self, rows) -> "ComponentLaws":
        return ComponentLaws(self.weights[rows], self.means[rows], self.variances[rows],
                             self.family)

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
