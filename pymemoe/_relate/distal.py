r"""Laws of a distal outcome within each expert: Gaussian, Bernoulli (binary), Poisson (count) and
categorical.

Each law has m natural parameters per expert, theta_k, estimated from class weights W (N, K)
by the weighted maximum likelihood estimator, which for these laws solves the moment equations

    sum_i W_ik g(z_i; theta_k) = 0,     -d/dtheta_k sum_i W_ik g(z_i; theta_k) = (sum_i W_ik) I

with g the moment function below, so the bread of every sandwich is diagonal:

=============  ==========================  ===========================================
law            theta_k                     g(z; theta_k)
=============  ==========================  ===========================================
gaussian       (mu_k, v_k)                 (z - mu_k, (z - mu_k)^2 - v_k)
bernoulli      (p_k,)                      z - p_k
poisson        (lambda_k,)                 z - lambda_k
categorical    (pi_k2, ..., pi_kC)         [z = c] - pi_kc, c = 2..C (pi_k1 = 1 - sum)
=============  ==========================  ===========================================

The ML three-step needs the log-density and its gradient in theta_k as well (both below). What
is reported is the natural parameters in readable form: the SD instead of the variance of a
Gaussian law, and all C probabilities of a categorical one (with :meth:`DistalLaw.report` and
its Jacobian for the delta method).
"""
from __future__ import annotations

import numpy as np
from scipy.special import gammaln

__all__ = ["DistalLaw", "MeanLaw", "GaussianLaw", "BernoulliLaw", "PoissonLaw", "CategoricalLaw",
           "distal_law", "LAWS", "LAW_NAMES"]

LOG_2PI = float(np.log(2.0 * np.pi))


class DistalLaw:
    """A law of the distal outcome given the expert (see the module docstring)."""

    #: the name ``distal_outcome(..., family=)`` takes
    name: str = ""
    #: names of the natural parameters (m,)
    natural_names: tuple[str, ...] = ()
    #: positions of the natural parameters compared across experts by the equality test
    tested: tuple[int, ...] = (0,)

    @property
    def m(self) -> int:
        return len(self.natural_names)

    def encode(self, values, what: str) -> np.ndarray:
        """The outcome as floats (N,) with the checks of the law (a ValueError naming the
        outcome ``what`` otherwise)."""
        raise NotImplementedError

    def moments(self, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """g(z_i; theta_k) for every subject and expert, (N, K, m)."""
        raise NotImplementedError

    def fit_weighted(self, z: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The weighted MLE (K, m) of every expert's parameters from weights (N, K)."""
        raise NotImplementedError

    def logpdf(self, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """log f(z_i | theta_k), (N, K)."""
        raise NotImplementedError

    def gradient(self, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """d log f(z_i | theta_k) / d theta_k, (N, K, m)."""
        raise NotImplementedError

    def report_names(self) -> list[str]:
        return list(self.natural_names)

    def report(self, theta: np.ndarray) -> np.ndarray:
        """The reported parameters (K, R) from the natural ones (K, m)."""
        return theta.copy()

    def report_jacobian(self, theta: np.ndarray) -> np.ndarray:
        """d report_k / d theta_k, (K, R, m)."""
        return np.broadcast_to(np.eye(self.m), (theta.shape[0], self.m, self.m)).copy()

    def in_range(self, theta: np.ndarray) -> bool:
        """Whether ``theta`` is a valid parameter (BCH's negative weights can leave the range)."""
        return bool(np.all(np.isfinite(theta)))


class GaussianLaw(DistalLaw):
    """z | k ~ N(mu_k, v_k)."""

    name = "gaussian"
    natural_names = ("mean", "variance")
    tested = (0,)

    def encode(self, values, what: str) -> np.ndarray:
        return _numeric(values, what)

    def moments(self, z, theta):
        r = z[:, None] - theta[None, :, 0]
        return np.stack([r, r * r - theta[None, :, 1]], axis=-1)

    def fit_weighted(self, z, weights):
        total = weights.sum(axis=0)
        mean = weights.T @ z / total
        var = np.einsum("nk,nk->k", weights, (z[:, None] - mean) ** 2) / total
        return np.column_stack([mean, var])

    def logpdf(self, z, theta):
        mean, var = theta[:, 0], theta[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return -0.5 * (LOG_2PI + np.log(var) + (z[:, None] - mean) ** 2 / var)

    def gradient(self, z, theta):
        mean, var = theta[:, 0], theta[:, 1]
        r = z[:, None] - mean
        return np.stack([r / var, 0.5 * (r * r / var - 1.0) / var], axis=-1)

    def report_names(self):
        return ["mean", "sd"]

    def report(self, theta):
        with np.errstate(invalid="ignore"):
            return np.column_stack([theta[:, 0], np.sqrt(theta[:, 1])])

    def report_jacobian(self, theta):
        out = np.zeros((theta.shape[0], 2, 2))
        out[:, 0, 0] = 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, 1, 1] = 0.5 / np.sqrt(theta[:, 1])
        return out

    def in_range(self, theta):
        return bool(np.all(np.isfinite(theta)) and np.all(theta[:, 1] > 0))


class MeanLaw(DistalLaw):
    """A law with one parameter per expert, its mean: the weighted mean is its MLE."""

    def moments(self, z, theta):
        return (z[:, None] - theta[None, :, 0])[:, :, None]

    def fit_weighted(self, z, weights):
        return (weights.T @ z / weights.sum(axis=0))[:, None]


class BernoulliLaw(MeanLaw):
    """z | k ~ Bernoulli(p_k), z in {0, 1}."""

    name = "binomial"
    natural_names = ("probability",)

    def encode(self, values, what: str) -> np.ndarray:
        z = _numeric(values, what)
        bad = np.flatnonzero((z != 0) & (z != 1))
        if bad.size:
            raise ValueError(f"outcome {what!r} must be 0/1 (or boolean) for family='binomial'; "
                             f"subject {_label(values, bad[0])!r} has {float(z[bad[0]])!r}")
        return z

    def logpdf(self, z, theta):
        p = theta[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(z[:, None] > 0.5, np.log(p), np.log1p(-p))

    def gradient(self, z, theta):
        p = theta[:, 0]
        return ((z[:, None] - p) / (p * (1.0 - p)))[:, :, None]

    def in_range(self, theta):
        return bool(np.all(np.isfinite(theta)) and np.all((theta > 0) & (theta < 1)))


class PoissonLaw(MeanLaw):
    """z | k ~ Poisson(lambda_k), z a non-negative integer."""

    name = "poisson"
    natural_names = ("mean",)

    def encode(self, values, what: str) -> np.ndarray:
        z = _numeric(values, what)
        bad = np.flatnonzero((z < 0) | (z != np.round(z)))
        if bad.size:
            raise ValueError(f"outcome {what!r} must be a count (a non-negative integer) for "
                             f"family='poisson'; subject {_label(values, bad[0])!r} has "
                             f"{float(z[bad[0]])!r}")
        return z

    def logpdf(self, z, theta):
        lam = theta[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            return z[:, None] * np.log(lam) - lam - gammaln(z + 1.0)[:, None]

    def gradient(self, z, theta):
        return (z[:, None] / theta[:, 0] - 1.0)[:, :, None]

    def in_range(self, theta):
        return bool(np.all(np.isfinite(theta)) and np.all(theta > 0))


class CategoricalLaw(DistalLaw):
    """z | k ~ Categorical(pi_k1, ..., pi_kC), z coded 0..C-1; the free parameters are
    pi_k2..pi_kC (pi_k1 = 1 - their sum)."""

    name = "categorical"
    tested = ()

    def __init__(self, levels) -> None:
        self.levels = tuple(levels)
        if len(self.levels) < 2:
            raise ValueError("a categorical outcome needs at least two categories")
        self.natural_names = tuple(f"P({level})" for level in self.levels[1:])
        self.tested = tuple(range(len(self.levels) - 1))

    def encode(self, values, what: str) -> np.ndarray:
        return np.asarray(values, dtype=float)

    def _indicators(self, z):
        return (z[:, None] == np.arange(1, len(self.levels))).astype(float)   # (N, C-1)

    def moments(self, z, theta):
        return self._indicators(z)[:, None, :] - theta[None, :, :]

    def fit_weighted(self, z, weights):
        return (weights.T @ self._indicators(z)) / weights.sum(axis=0)[:, None]

    def _full(self, theta):
        return np.column_stack([1.0 - theta.sum(axis=1), theta])

    def logpdf(self, z, theta):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(self._full(theta))[:, z.astype(int)].T

    def gradient(self, z, theta):
        full = self._full(theta)
        ind = self._indicators(z)
        first = (z == 0).astype(float)
        return ind[:, None, :] / theta[None] - (first[:, None] / full[:, 0])[:, :, None]

    def report_names(self):
        return [f"P({level})" for level in self.levels]

    def report(self, theta):
        return self._full(theta)

    def report_jacobian(self, theta):
        C1 = theta.shape[1]
        block = np.vstack([-np.ones((1, C1)), np.eye(C1)])
        return np.broadcast_to(block, (theta.shape[0], C1 + 1, C1)).copy()

    def in_range(self, theta):
        full = self._full(theta)
        return bool(np.all(np.isfinite(full)) and np.all(full > 0))


#: the laws by the name ``distal_outcome(..., family=)`` takes
LAWS = {law.name: law for law in (GaussianLaw, BernoulliLaw, PoissonLaw, CategoricalLaw)}
LAW_NAMES = tuple(LAWS)


def distal_law(family: str, levels=None) -> DistalLaw:
    """The law for ``family`` (``levels``: the categories of a categorical outcome)."""
    if family not in LAWS:
        raise ValueError(f"family must be one of {LAW_NAMES}, got {family!r}")
    return LAWS[family](levels) if LAWS[family] is CategoricalLaw else LAWS[family]()


def _numeric(values, what: str) -> np.ndarray:
    z = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(z)):
        raise ValueError(f"outcome {what!r} has non-finite values")
    return z


def _label(values, position: int):
    index = getattr(values, "index", None)
    label = index[position] if index is not None else position
    return label.item() if isinstance(label, np.generic) else label
