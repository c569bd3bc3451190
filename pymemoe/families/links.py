r"""Link functions: the map g between an expert's mean mu and its linear predictor eta = g(mu).

A family supplies its link (:attr:`pymemoe.families.base.ExpertFamily.link`); code outside
``pymemoe.families`` uses it (never the family's name) to put a mean on the linear predictor's
scale and back, for instance for the Wald interval of a predicted mean (computed where the
normal approximation is better, on the link scale, and mapped back so that it stays in the
range of the mean, as statsmodels' GLM does)::

    eta = g(mu),   se(eta) = se(mu) / (d mu / d eta),   [g^-1(eta - z se(eta)), g^-1(eta + z se(eta))]

Three links are defined here; a family with another (a probit, a complementary log-log)
subclasses :class:`Link`.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

__all__ = ["Link", "Identity", "Logit", "Log"]


class Link:
    """A link function g: ``link(mu)`` = g(mu), ``inverse(eta)`` = g^-1(eta) and
    ``inverse_deriv_at_mean(mu)`` = d g^-1 / d eta at eta = g(mu) (the derivative of the
    mean with respect to the linear predictor, written as a function of the mean)."""

    name = ""

    def link(self, mu: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def inverse_deriv_at_mean(self, mu: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def interval(self, mean: np.ndarray, se: np.ndarray,
                 crit: float) -> tuple[np.ndarray, np.ndarray]:
        """The Wald interval of means with standard errors ``se``, on the link scale and
        mapped back: g^-1(g(mean) -+ crit se / g'^-1), see the module docstring."""
        with np.errstate(divide="ignore", invalid="ignore"):
            half = crit * se / self.inverse_deriv_at_mean(mean)
            eta = self.link(mean)
            return self.inverse(eta - half), self.inverse(eta + half)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Identity(Link):
    """g(mu) = mu (Gaussian experts): the interval is mean -+ crit se."""

    name = "identity"

    def link(self, mu):
        return mu

    def inverse(self, eta):
        return eta

    def inverse_deriv_at_mean(self, mu):
        return 1.0

    def interval(self, mean, se, crit):
        return mean - crit * se, mean + crit * se


class Logit(Link):
    """g(mu) = log(mu / (1 - mu)) (binomial experts), d mu / d eta = mu (1 - mu)."""

    name = "logit"

    def link(self, mu):
        return np.log(mu / (1.0 - mu))

    def inverse(self, eta):
        return expit(eta)

    def inverse_deriv_at_mean(self, mu):
        return mu * (1.0 - mu)


class Log(Link):
    """g(mu) = log(mu) (Poisson experts), d mu / d eta = mu; the interval is
    mean exp(-+ crit se / mean)."""

    name = "log"

    def link(self, mu):
        return np.log(mu)

    def inverse(self, eta):
        return np.exp(eta)

    def inverse_deriv_at_mean(self, mu):
        return mu

    def interval(self, mean, se, crit):
        with np.errstate(divide="ignore", invalid="ignore"):
            half = crit * se / mean
            return mean * np.exp(-half), mean * np.exp(half)
