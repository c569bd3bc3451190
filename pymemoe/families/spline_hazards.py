r"""Smooth baseline hazards: M-splines with positive weights (lcmm's ``hazard="splines"``).

The baseline hazard of expert k and cause c is a combination of J cubic M-splines (B-splines
scaled to integrate to 1; Ramsay 1988) on [0, t_max] with interior knots a_1 < ... < a_(J-4)
(``knots``; by default at quantiles of the event times), with positive weights::

    h_kc(t | x) = exp(x' theta_kc) sum_j exp(alpha_kcj) M_j(t),
    H_kc(t | x) = exp(x' theta_kc) sum_j exp(alpha_kcj) I_j(t),

I_j(t) = int_0^t M_j, the I-splines (each rises from 0 to 1). The weights are stored as their
logs, so every value of the coefficients is a valid hazard. Beyond t_max (the largest
follow-up time of the data) the hazard stays at its value at t_max.

The cumulative hazard has the form of the piecewise-constant one (:class:`PiecewiseHazards`,
with the interval exposures E_j replaced by I_j), so its derivatives, the delayed-entry terms
and the curves are shared; the log hazard at the event time differs: with the softmax weights
w_j = exp(alpha_j) M_j(T) / sum_l exp(alpha_l) M_l(T) and H_j = exp(alpha_j + x' theta) I_j(T),

    d/d alpha_j   = delta w_j - H_j           d/d theta = (delta - H) x
    d2/d alpha_j d alpha_l = delta (w_j [j = l] - w_j w_l) - H_j [j = l]
    d2/d alpha_j d theta   = -H_j x           d2/d theta2 = -H x x'.

The log-likelihood is not concave in alpha (the delta terms); Newton's M-step makes the
Hessian negative definite where it is not and halves its steps, so it still never decreases
its objective. Under ``hazardtype="proportional"`` the weights are stored as the first one's
log and the others' log ratios to it, common to the experts (as the piecewise hazards'
intervals).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import BSpline

from .._design.events import SubjectEvents
from .events import PiecewiseHazards

__all__ = ["SplineHazards", "mspline_basis"]

DEGREE = 3


def mspline_basis(knots: tuple[float, ...], upper: float, t: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Cubic M-splines M_j(t) and I-splines I_j(t) = int_0^t M_j, (len(t), J), on [0, upper]
    with interior ``knots``; beyond ``upper`` M_j stays at its value there and I_j grows
    linearly with it.

    Examples
    --------
    >>> m, i = mspline_basis((1.0,), 2.0, np.array([0.0, 2.0]))
    >>> m.shape, np.round(i[1], 12).tolist()          # every I-spline reaches 1 at the end
    ((2, 5), [1.0, 1.0, 1.0, 1.0, 1.0])
    """
    t = np.asarray(t, dtype=float)
    grid = np.r_[[0.0] * (DEGREE + 1), knots, [upper] * (DEGREE + 1)]
    J = grid.size - DEGREE - 1
    scale = (DEGREE + 1) / (grid[DEGREE + 1:] - grid[:J])              # B_j -> M_j
    basis = BSpline(grid, np.eye(J) * scale, DEGREE, extrapolate=False)
    integral = basis.antiderivative()
    inside = np.clip(t, 0.0, upper)
    m = np.nan_to_num(basis(inside))
    i = np.nan_to_num(integral(inside) - integral(0.0))
    beyond = np.clip(t - upper, 0.0, None)[:, None]
    if np.any(beyond > 0):
        at_end = np.nan_to_num(basis(np.array([upper])))                # (1, J)
        m = np.where(beyond > 0, at_end, m)
        i = i + beyond * at_end
    return m, i


@dataclass(frozen=True)
class SplineHazards(PiecewiseHazards):
    """Cause-specific M-spline hazards of every expert (the module docstring). ``knots`` are
    the interior knots, ``upper`` the end of the basis (the data's largest follow-up time).
    The coefficients of a cause are the log weights of the J = len(knots) + 4 M-splines,
    then the covariates' effects."""

    upper: float = 1.0

    @property
    def n_pieces(self) -> int:
        return len(self.knots) + DEGREE + 1

    def breaks(self) -> tuple[float, ...]:
        return ()

    def cause_terms(self) -> list[str]:
        J = self.n_pieces
        if self.relative:
            weights = ["log weight M1"] + [f"log weight ratio M{j} : M1" for j in range(2, J + 1)]
        else:
            weights = [f"log weight M{j}" for j in range(1, J + 1)]
        return weights + [self.exog_names[j] for j in self.covariates]

    #: a weight below e^-12 (6e-6) of its cause's largest is 0 for all purposes (the
    #: M-spline adds nothing to the hazard; its log has no interior derivative, and the
    #: search only drifts towards -inf)
    ZERO_WEIGHT = 12.0

    def at_zero(self, coef: np.ndarray) -> np.ndarray:
        """The log weights (stored columns) whose weight is ~0 against the largest of its
        expert and cause."""
        alpha, _ = self.split(coef)                                     # (K, C, J) natural
        small = alpha < alpha.max(axis=-1, keepdims=True) - self.ZERO_WEIGHT
        out = np.zeros(coef.shape[:1] + (self.n_causes, self.n_per_cause), dtype=bool)
        out[..., :self.n_pieces] = small
        return out.reshape(coef.shape)

    def exposure(self, t: np.ndarray) -> np.ndarray:
        """I_j(t), (len(t), J): the role of the intervals' exposures."""
        return mspline_basis(self.knots, self.upper, np.atleast_1d(t))[1]

    def rate_coefficients(self, log_rate: np.ndarray) -> np.ndarray:
        """Weights with sum_j exp(alpha_j) M_j = the rate over [0, upper] (M_j integrate to
        1 over it: each weight rate * upper / J gives a near-constant hazard)."""
        log_rate = np.asarray(log_rate, dtype=float)
        coef = np.zeros(log_rate.shape + (self.n_per_cause,))
        level = log_rate + np.log(self.upper / self.n_pieces)
        coef[..., self.rate_columns()] = level[..., None]
        return coef

    def _event_terms(self, events: SubjectEvents, coef: np.ndarray):
        """x (N, r'), eta (N, K, C), the pieces H_j (N, K, C, J), H, log h0(T) (N, K, C),
        the softmax weights w (N, K, C, J), delta and which subjects have event data."""
        alpha, theta = self.split(coef)
        K, C, r = theta.shape
        x = events.exog[:, self.covariates]
        eta = (x @ theta.reshape(K * C, r).T).reshape(-1, K, C)
        m, i = mspline_basis(self.knots, self.upper, events.time)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            pieces = np.exp(eta[..., None] + alpha[None] + np.log(i)[:, None, None, :])
            log_terms = alpha[None] + np.log(m)[:, None, None, :]          # log of e^a M
            top = np.max(log_terms, axis=3, keepdims=True)
            top = np.where(np.isfinite(top), top, 0.0)
            weights = np.exp(log_terms - top)
            total = weights.sum(axis=3, keepdims=True)
            log_base = (top + np.log(total))[..., 0]
            weights = weights / total
        delta, known = self._delta(events)
        return x, eta, pieces, pieces.sum(axis=3), log_base, np.nan_to_num(weights), delta, known

    def _pieces(self, events: SubjectEvents, coef: np.ndarray):
        x, eta, pieces, cum, _, weights, delta, known = self._event_terms(events, coef)
        alpha, _ = self.split(coef)
        return x, eta, alpha, pieces, cum, weights, delta, known

    def logdens(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        _, eta, _, cum, log_base, _, delta, known = self._event_terms(events, coef)
        with np.errstate(invalid="ignore"):
            per_cause = np.where(delta > 0, delta * (log_base + eta), 0.0) - cum
        return np.where(known[:, None], per_cause.sum(axis=2), 0.0)

    def gradients(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        x, _, pieces, cum, _, weights, delta, known = self._event_terms(events, coef)
        g_alpha = delta[..., None] * weights - pieces                     # (N, K, C, J)
        g_theta = (delta - cum)[..., None] * x[:, None, None, :]
        grad = np.concatenate([g_alpha, g_theta], axis=3) * known[:, None, None, None]
        grad = self._stored_gradient(grad)
        return grad.reshape(grad.shape[0], grad.shape[1], -1)

    def _weighted_sums(self, events, coef, weights_in):
        x, eta, pieces, cum, log_base, w, delta, known = self._event_terms(events, coef)
        wt = (weights_in * known[:, None])[..., None]                       # (N, K, 1)
        pieces = np.where(wt[..., None] > 0, pieces, 0.0)
        cum = pieces.sum(axis=3)
        N, K, C = cum.shape
        J, r = self.n_pieces, x.shape[1]
        w_delta = wt * delta                                                # (N, K, C)
        with np.errstate(invalid="ignore"):
            value = (np.where(w_delta > 0, w_delta * (log_base + eta), 0.0) - wt * cum).sum(axis=0)
        w_pieces = wt[..., None] * pieces                                   # (N, K, C, J)
        g_alpha = (w_delta[..., None] * w).sum(axis=0) - w_pieces.sum(axis=0)
        g_theta = ((w_delta - wt * cum).reshape(N, K * C).T @ x).reshape(K, C, r)
        h_aa = (np.einsum("nkc,nkcj,nkcl->kcjl", w_delta, w, -w)
                + np.einsum("kcj,jl->kcjl", (w_delta[..., None] * w).sum(axis=0) -
                            w_pieces.sum(axis=0), np.eye(J)))
        h_at = -np.einsum("nkcj,nr->kcjr", w_pieces, x)
        xx = (x[:, :, None] * x[:, None, :]).reshape(N, r * r)
        h_tt = -((wt * cum).reshape(N, K * C).T @ xx).reshape(K, C, r, r)
        grad = np.concatenate([g_alpha, g_theta], axis=2)
        hess = np.zeros((K, C, J + r, J + r))
        hess[..., :J, :J] = h_aa
        hess[..., :J, J:] = h_at
        hess[..., J:, :J] = np.swapaxes(h_at, -1, -2)
        hess[..., J:, J:] = h_tt
        return value, self._stored_gradient(grad), self._stored_hessian(hess)

    def log_cumulative(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        """log H_kc(T_i | x_i), (N, K, C): how far a hazard is from a degenerate fit."""
        with np.errstate(divide="ignore"):
            return np.log(self._event_terms(events, coef)[3])

    def log_rates_at(self, exog, times, coef):
        alpha, theta = self.split(coef)
        eta = np.einsum("nr,kcr->nkc", exog[:, self.covariates], theta)
        m, _ = mspline_basis(self.knots, self.upper, np.atleast_1d(times))    # (N, J)
        with np.errstate(divide="ignore"):
            terms = alpha[None] + np.log(m)[:, None, None, :]
        top = np.max(terms, axis=3)
        return eta + top + np.log(np.exp(terms - top[..., None]).sum(axis=3))

    def rates(self, coef: np.ndarray, exog: np.ndarray, t: np.ndarray) -> np.ndarray:
        alpha, theta = self.split(coef)
        eta = np.einsum("nr,kcr->nkc", exog[:, self.covariates], theta)
        m, _ = mspline_basis(self.knots, self.upper, np.atleast_1d(t))      # (G, J)
        with np.errstate(over="ignore", divide="ignore"):
            base = np.einsum("kcj,gj->kcg", np.exp(alpha), m)
            return np.exp(eta[..., None] + np.log(base)[None])

    def inverse_cumulative(self, coef, exog, expert, values):
        """t with H_kc(t | x_i) = values[i, c] under expert ``expert[i]``, (N, C): H0_kc is
        tabulated on a fine grid of [0, upper] and inverted by linear interpolation (it is
        increasing), and linearly beyond ``upper``."""
        alpha, theta = self.split(coef)
        eta = np.einsum("nr,ncr->nc", exog[:, self.covariates], theta[expert])
        target = values * np.exp(-eta)                                      # H0 values
        grid = np.linspace(0.0, self.upper, 4001)
        _, i = mspline_basis(self.knots, self.upper, grid)
        m_end, _ = mspline_basis(self.knots, self.upper, np.array([self.upper]))
        base = np.einsum("kcj,gj->kcg", np.exp(alpha), i)                   # (K, C, G)
        end_rate = np.einsum("kcj,j->kc", np.exp(alpha), m_end[0])
        out = np.empty_like(target)
        for k in range(alpha.shape[0]):      # loops over experts and causes, not subjects
            rows = expert == k
            for c in range(alpha.shape[1]):
                v = target[rows, c]
                inside = np.interp(v, base[k, c], grid)
                past = self.upper + (v - base[k, c, -1]) / max(end_rate[k, c], 1e-300)
                out[rows, c] = np.where(v <= base[k, c, -1], inside, past)
        return out
