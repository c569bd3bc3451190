r"""The law of one row's outcome given its linear predictor: what a generalised linear mixed
model expert (:class:`pymemoe.families.glmm.GLMMFamily`) is made of.

A :class:`Distribution` gives, per row r with outcome y_r, number of trials m_r and linear
predictor eta_r, the row log-likelihood and its first three derivatives in eta (what the
Laplace and quadrature kernel :mod:`pymemoe.families._glmm_kernel` needs), the mean
mu = g^-1(eta) and its link g, and what the rest of pymemoe asks of a family: draws, the law
of a row for randomised quantile residuals, predictive variances, the labels of figures, the
wording of warnings and the check of the outcome's values.

**Two forms.** A *canonical* distribution (``canonical = True``) has

    log p(y | eta) = y eta - m c(eta) + log C(y, m),

and supplies the cumulant function c and its derivatives c', c'', c'''; the kernel then keeps
the part linear in eta as cross-products of the data (cheaper). Binomial with the logit link
and Poisson with the log link are of this form. Any other distribution (a probit or
complementary log-log link, say) is written in the *general* form: its ``cumulants`` return,
at each row, c = -log p(y | eta), c' = -d log p / d eta and c'' = -d2 log p / d eta2 (with
``y`` and ``m`` given), ``third`` returns -d3 log p / d eta3 times the row weight, and
``log_const`` returns 0; the kernel's formulas are then the same, with no linear term. Either
way c'' must be >= 0 (a log-concave row likelihood), so that each mode is unique.
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import expit, gammaln

from .links import Link, Log, Logit

__all__ = ["Distribution", "Binomial", "Poisson", "DISTRIBUTIONS", "get_distribution",
           "POISSON_ETA_MAX"]

#: exp(eta) of the Poisson family is evaluated at min(eta, POISSON_ETA_MAX): exp(709) is close
#: to the largest double; beyond it the log-density is below -1e307 in any case.
POISSON_ETA_MAX = 709.0


class Distribution:
    """Base class of the row laws of GLMM experts (see the module docstring for the two
    forms). Subclasses set ``name``, ``link``, ``canonical``, ``separation_text`` and the
    methods below."""

    #: name used in summaries and errors (and, for the built-in ones, by ``family=``)
    name: str = ""
    #: the link g of mu = g^-1(eta)
    link: Link = Link()
    #: log p = y eta - m c(eta) + const (see the module docstring)
    canonical: bool = False
    #: numbers of outcome columns the formula may have (2: ``successes + failures``)
    outcome_columns: tuple[int, ...] = (1,)
    #: what a degenerate fit of an expert's rows is, for the separation warning
    separation_text: str = "a fitted mean at the edge of its range"
    #: whether observed trajectories are worth drawing (not for 0/1 outcomes: lines through
    #: 0/1 values show nothing but noise)
    observed_lines: bool = True

    # -- what the kernel needs (rows as arrays) ---------------------------------------------

    def check(self, endog: np.ndarray, trials: np.ndarray) -> None:
        """A ValueError for outcomes outside the distribution's support."""

    def trials(self, endog: np.ndarray, trials: np.ndarray) -> np.ndarray:
        """m_r, the factor of c in the canonical form (ones for the general form)."""
        return np.ones_like(endog)

    def log_const(self, endog: np.ndarray, trials: np.ndarray) -> np.ndarray:
        """log C(y, m) of the canonical form (zeros for the general form)."""
        return np.zeros_like(endog)

    def cumulants(self, eta: np.ndarray, value: bool = True, mu_out=None, v_out=None, *,
                  y=None, m=None):
        """c (when ``value``), c' and c'' at ``eta`` (shape (K, n)); c' and c'' into
        ``mu_out`` and ``v_out`` when given. ``y`` and ``m`` (n,) are the rows' outcomes and
        trials (used by the general form only)."""
        raise NotImplementedError

    def value_mean(self, eta: np.ndarray, need_mean: bool, *, y=None, m=None):
        """c and (when ``need_mean``) c' at the quadrature nodes, ``eta`` of shape
        (K, n, nodes) (``y``, ``m`` of shape (n,))."""
        c, mu, _ = self.cumulants(eta, True, y=None if y is None else y[:, None],
                                  m=None if m is None else m[:, None])
        return c, (mu if need_mean else None)

    def third(self, mu: np.ndarray, v: np.ndarray, *, eta=None, y=None, wm=None) -> np.ndarray:
        """w m c''' at the mode (the derivative of the weights W = w m c'' in eta), from
        c' (``mu``) and W (``v``); the general form also gets ``eta``, ``y`` and the row
        factors ``wm`` = w (K, n) / (n,)."""
        raise NotImplementedError

    def mean(self, eta: np.ndarray) -> np.ndarray:
        """mu = g^-1(eta) (the success probability, the Poisson mean)."""
        return self.link.inverse(eta)

    def normal_mean(self, mean: np.ndarray, var: np.ndarray, power: int = 1) -> np.ndarray:
        """E[mu(eta)^power] for eta ~ N(mean, var), elementwise: the trapezoid rule on z in
        [-9, 9] with a step that shrinks as the SD s grows, h = min(1/2, pi / (8 s)). For the
        logit link, whose inverse has poles at distance pi / s from the real z-axis, the error
        is about exp(-2 pi (pi / s) / h) <= exp(-16 pi) ~ 1e-22 whatever s; for an entire
        inverse link (probit) it is smaller still."""
        power = check_power(power)
        mean, var = np.broadcast_arrays(np.asarray(mean, float), np.maximum(var, 0.0))
        with np.errstate(over="ignore", under="ignore"):
            s = np.sqrt(var).ravel()
            m = mean.ravel()
            out = np.empty(m.shape)
            # buckets of s (powers of 2 above pi/4, where the step falls below 1/2): each
            # bucket uses the step of its largest s, so no element pays for the largest s
            level = np.ceil(np.log2(np.maximum(s, np.pi / 4) / (np.pi / 4))).astype(int)
            for lev in np.unique(level):
                idx = np.flatnonzero(level == lev)
                h = min(0.5, np.pi / (8.0 * (np.pi / 4) * 2.0 ** lev))
                z = h * np.arange(-int(np.ceil(9.0 / h)), int(np.ceil(9.0 / h)) + 1)
                w = np.exp(-0.5 * z * z)
                w /= w.sum()
                acc = np.zeros(idx.size)
                mi, si = m[idx], s[idx]
                for zj, wj in zip(z, w):
                    acc += wj * self.mean(mi + si * zj) ** power
                out[idx] = acc
        return out.reshape(mean.shape)

    # -- what the family needs ----------------------------------------------------------------

    def glm_terms(self, y: np.ndarray, trials: np.ndarray,
                  eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row log-likelihoods (up to a constant), d log p / d eta and the Newton weight
        -d2 log p / d eta2 (or its expectation), broadcast over ``eta``: what the M-step of an
        expert without random effects (Newton, IRLS) and the start values use."""
        c, mu, v = self.cumulants(np.array(eta, dtype=float), True, y=y, m=trials)
        return -c, -mu, v

    def invalid_outcome(self, y: np.ndarray,
                        trials: np.ndarray | None) -> tuple[np.ndarray, str] | None:
        """The rows whose outcome the distribution cannot model and why (a mask and a text),
        or None."""
        return None

    def degeneracy(self, eta: np.ndarray) -> np.ndarray:
        """How far each linear predictor pushes the mean towards the edge of its range, on
        the scale where beyond 25 it is within e^-25 of it (the separation warning)."""
        return np.abs(eta)

    def predictive_variance(self, means: np.ndarray, second: np.ndarray,
                            trials: np.ndarray | None) -> np.ndarray:
        """Var[y | expert k] (n, K) from E[mu] (``means``) and E[mu^2] (``second``) over the
        law of the random effects; for a proportion y / m: (E[mu] - E[mu^2]) / m + Var[mu]."""
        spread = np.maximum(second - means ** 2, 0.0)           # Var[mu]; rounding below 0
        m = np.ones(means.shape[0]) if trials is None else np.asarray(trials, dtype=float)
        return np.maximum(means - second, 0.0) / m[:, None] + spread

    def sample(self, eta: np.ndarray, trials: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Outcomes drawn at linear predictors ``eta``."""
        raise NotImplementedError

    def row_law(self, eta: np.ndarray, trials: np.ndarray):
        """The law of each row's outcome at ``eta`` (a frozen scipy distribution), for the
        randomised quantile residuals."""
        raise NotImplementedError

    def response_label(self, name: str, two_columns: bool) -> str:
        """The axis label of predicted means of the outcome ``name``."""
        return f"E[{name}]"

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_power(power: int) -> int:
    """``power`` (1 or 2: the moment of mu asked for), or a ValueError."""
    if power not in (1, 2):
        raise ValueError(f"power must be 1 or 2, got {power!r}")
    return power


def _binomial_mean(er: np.ndarray, eta: np.ndarray, out) -> np.ndarray:
    """c'(eta) = 1/(1+e) (eta >= 0) or e/(1+e) (eta < 0), e = exp(-abs(eta)), from er = e/(1+e),
    as 1/2 + sign(eta) (1/2 - er): branch-free (a masked copy costs as much as an exp here).
    The absolute error is below 1.2e-16; c' enters only through y - m c' and sums of such
    terms, where absolute accuracy is what counts (c'' is computed separately, to full
    relative accuracy). ``er`` is overwritten."""
    np.subtract(0.5, er, out=er)
    out = np.copysign(er, eta, out=out)
    out += 0.5
    return out


class Binomial(Distribution):
    """Binomial with logit link (canonical): c(eta) = log(1 + e^eta); successes out of m
    trials (m = 1: binary outcomes)."""

    name = "binomial"
    link = Logit()
    canonical = True
    outcome_columns = (1, 2)
    separation_text = "a fitted probability within e^-25 of 0 or 1"
    observed_lines = False

    def check(self, endog, trials):
        if np.any(trials <= 0):
            raise ValueError("binomial trials must be > 0")
        if np.any(endog < 0) or np.any(endog > trials):
            raise ValueError("binomial endog must be in [0, trials]")

    def log_const(self, endog, trials):
        return gammaln(trials + 1.0) - gammaln(endog + 1.0) - gammaln(trials - endog + 1.0)

    def trials(self, endog, trials):
        return trials

    def third(self, mu, v, *, eta=None, y=None, wm=None):
        """c''' = c'' (1 - 2 c') from c' and c'' (``v`` may carry the row factors w m); the
        absolute error is below 3e-16 c''."""
        return v * (1.0 - 2.0 * mu)

    def cumulants(self, eta, value=True, mu_out=None, v_out=None, *, y=None, m=None):
        """c (if ``value``), c' and c'' at eta, from e = exp(-abs(eta)) alone, so any finite eta
        is safe. c' and c'' go to ``mu_out`` and ``v_out`` when given (arrays like eta)."""
        e = np.abs(eta)
        np.negative(e, out=e)
        np.exp(e, out=e)                       # e in (0, 1]: no overflow for any eta
        d = e + 1.0
        r = np.divide(1.0, d)
        c = None
        if value:
            # log(1 + e) rather than log1p(e): e <= 1, so the absolute error is < 3e-16 either
            # way, and log is 2.5 times faster here; the log-density needs absolute accuracy
            c = np.log(d, out=d)
            c += np.maximum(eta, 0.0)
        er = np.multiply(e, r, out=e)
        v = np.multiply(er, r, out=v_out)                     # c'' = e / (1+e)^2
        mu = _binomial_mean(er, eta, mu_out)
        return c, mu, v

    def value_mean(self, eta, need_mean, *, y=None, m=None):
        """c and (if asked) c' only: the quadrature nodes need no c''."""
        e = np.abs(eta)
        np.negative(e, out=e)
        np.exp(e, out=e)
        d = e + 1.0
        mu = None
        if need_mean:
            mu = _binomial_mean(np.divide(e, d, out=e), eta, None)
        c = np.log(d, out=d)
        c += np.maximum(eta, 0.0)
        return c, mu

    def mean(self, eta):
        return expit(eta)

    def glm_terms(self, y, trials, eta):
        p = 0.5 * (1.0 + np.tanh(0.5 * eta))           # expit without overflow
        mu, var = trials * p, trials * p * (1.0 - p)
        return y * eta - trials * np.logaddexp(0.0, eta), y - mu, var

    def invalid_outcome(self, y, trials):
        if trials is None:
            bad = (y != 0) & (y != 1)
            return (bad, "a binary outcome must be 0 or 1 for family='binomial' (write "
                         "'successes + failures ~ ...' for counts)") if bad.any() else None
        bad = (y < 0) | (y != np.round(y))
        if bad.any():
            return bad, "successes must be non-negative integers"
        t = np.asarray(trials, dtype=float)
        wrong = (t != np.round(t)) | (t < 1) | (y > t)
        if wrong.any():
            return wrong, ("the number of trials (successes + failures) must be an integer >= 1 "
                           "and at least the successes")
        return None

    def sample(self, eta, trials, rng):
        return rng.binomial(trials.astype(np.int64), 0.5 * (1.0 + np.tanh(0.5 * eta))).astype(float)

    def row_law(self, eta, trials):
        return stats.binom(trials, 0.5 * (1.0 + np.tanh(0.5 * eta)))

    def response_label(self, name, two_columns):
        return f"proportion of {name}" if two_columns else f"P({name} = 1)"


class Poisson(Distribution):
    """Poisson with log link (canonical): c(eta) = exp(eta); the offset carries log(exposure)."""

    name = "poisson"
    link = Log()
    canonical = True
    separation_text = "a fitted mean below e^-25"

    def check(self, endog, trials):
        if np.any(endog < 0):
            raise ValueError("Poisson endog must be >= 0")

    def log_const(self, endog, trials):
        return -gammaln(endog + 1.0)

    def trials(self, endog, trials):
        return np.ones_like(endog)

    def third(self, mu, v, *, eta=None, y=None, wm=None):
        """c''' = c'' for the log link (``v`` may carry the row factors w m)."""
        return v.copy()

    def cumulants(self, eta, value=True, mu_out=None, v_out=None, *, y=None, m=None):
        """c = c' = c'' = exp(eta) (as separate arrays; c' and c'' into ``mu_out``, ``v_out``)."""
        mu = np.empty_like(eta) if mu_out is None else mu_out
        np.minimum(eta, POISSON_ETA_MAX, out=mu)
        np.exp(mu, out=mu)
        v = mu.copy() if v_out is None else (np.copyto(v_out, mu), v_out)[1]
        return (mu.copy() if value else None), mu, v

    def value_mean(self, eta, need_mean, *, y=None, m=None):
        mu = np.exp(np.minimum(eta, POISSON_ETA_MAX))
        return mu, (mu.copy() if need_mean else None)

    def mean(self, eta):
        return np.exp(np.minimum(eta, POISSON_ETA_MAX))

    def normal_mean(self, mean, var, power=1):
        """Closed form: E[exp(power eta)] = exp(power mean + power^2 var / 2)."""
        power = check_power(power)
        mean, var = np.broadcast_arrays(np.asarray(mean, float), np.maximum(var, 0.0))
        with np.errstate(over="ignore", under="ignore"):
            return np.exp(np.minimum(power * mean + 0.5 * power ** 2 * var,
                                     power * POISSON_ETA_MAX))

    def glm_terms(self, y, trials, eta):
        mu = np.exp(np.minimum(eta, 709.0))
        return y * eta - np.exp(np.minimum(eta, 709.0)), y - mu, mu

    def invalid_outcome(self, y, trials):
        bad = (y < 0) | (y != np.round(y))
        return (bad, "counts must be non-negative integers for family='poisson'") if bad.any() else None

    def degeneracy(self, eta):
        return -eta          # a mean near 0; large means are not degenerate

    def predictive_variance(self, means, second, trials):
        """E[mu] + Var[mu]."""
        return means + np.maximum(second - means ** 2, 0.0)

    def sample(self, eta, trials, rng):
        return rng.poisson(np.exp(np.minimum(eta, 700.0))).astype(float)

    def row_law(self, eta, trials):
        return stats.poisson(np.exp(np.minimum(eta, 709.0)))

    def response_label(self, name, two_columns):
        return f"expected {name}"


DISTRIBUTIONS = {"binomial": Binomial(), "poisson": Poisson()}


def get_distribution(distribution) -> Distribution:
    """A :class:`Distribution` (returned as is) or the built-in one of that name."""
    if isinstance(distribution, Distribution):
        return distribution
    if isinstance(distribution, str):
        try:
            return DISTRIBUTIONS[distribution.lower()]
        except KeyError:
            raise ValueError(f"family must be one of {sorted(DISTRIBUTIONS)} or a Distribution, "
                             f"got {distribution!r}") from None
    raise TypeError(f"family must be a name in {sorted(DISTRIBUTIONS)} or a Distribution, got "
                    f"{type(distribution).__name__}")
