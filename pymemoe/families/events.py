r"""Time to event as an outcome model of an expert: cause-specific Weibull hazards.

Given its expert k, subject i's follow-up ends at time T_i > 0 by cause d_i in 1..C, or is
censored (d_i = 0). Each cause c has its own hazard (cause-specific hazards: competing risks
act through them), Weibull in time with proportional covariate effects::

    h_kc(t | x_i) = rho_kc t^(rho_kc - 1) exp(eta_ikc),     eta_ikc = x_i' theta_kc,
    H_kc(t | x_i) = t^rho_kc exp(eta_ikc),                  rho_kc = exp(s_kc),

with x_i the subject's row of the survival design (its intercept gives the log scale). The
time-to-event density of the subject under expert k, with right censoring, is

    log f(T_i, d_i | k) = sum_c ( [d_i = c] (s_kc + (rho_kc - 1) log T_i + eta_ikc)
                                  - T_i^rho_kc exp(eta_ikc) ),

so exp(theta_kc[j]) is the hazard ratio of covariate j for cause c within expert k. Every
parameter is expert-specific (lcmm's ``hazardtype="Specific"`` with covariates in
``mixture()``). The coefficients of one cause are ``(theta_kc, s_kc)``: the design's columns
and then the log shape; the causes follow one another.

Derivatives (per subject, cause c; u = rho log T, H = T^rho e^eta, delta = [d = c])::

    d/d eta  = delta - H                    d2/d eta2     = -H
    d/d s    = delta (1 + u) - H u          d2/d eta d s  = -H u
                                            d2/d s2       = delta u - H u (1 + u)

The M-step maximises sum_i tau_ik log f(T_i, d_i | k) for each (k, c) separately (the causes
and experts share no parameter) by Newton's method on these sums, with the Hessian made
negative definite where it is not and the step halved until the weighted log-likelihood
increases: the M-step never decreases the expected complete-data log-likelihood.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._design.events import SubjectEvents

__all__ = ["TimeToEvent", "WeibullHazards", "event_sums"]

HAZARDS = ("weibull",)


@dataclass(frozen=True)
class TimeToEvent:
    """The time-to-event part of a joint model (``MEMoE.from_formula(..., survival=...)``).

    Parameters
    ----------
    time : str
        Column of follow-up times T_i > 0 (event or censoring; one value per subject,
        repeated on its rows), on the time scale of the trajectories (as lifelines'
        ``duration``).
    event : str
        Column of how follow-up ended: 0 censored, 1..C the cause of the event (competing
        risks); True/False for a single event (statsmodels' ``status``, lifelines'
        ``event``).
    formula : str
        One-sided formula of the hazards' covariates (baseline values), e.g. ``"~ age"``;
        each expert has its own effects. Default ``"~1"``: a hazard per expert.
    hazard : {"weibull"}
        The baseline hazard of each expert and cause.
    causes : list of str, optional
        Names of the causes 1..C (default ``"event"`` for one cause, else ``"1"`` to
        ``"C"``).
    visit_time : str, optional
        Column of the measurement times of the trajectory: rows measured after their
        subject's follow-up time are counted and reported in a warning.

    Examples
    --------
    >>> from pymemoe import TimeToEvent
    >>> TimeToEvent(time="years", event="status", formula="~ age", causes=["transplant", "death"])
    TimeToEvent(time='years', event='status', formula='~ age', hazard='weibull', causes=('transplant', 'death'), visit_time=None)
    """

    time: str
    event: str
    formula: str = "~1"
    hazard: str = "weibull"
    causes: tuple[str, ...] | None = None
    visit_time: str | None = None

    def __post_init__(self) -> None:
        if self.hazard not in HAZARDS:
            raise ValueError(f"TimeToEvent: hazard must be one of {HAZARDS}, got {self.hazard!r}")
        if self.causes is not None:
            object.__setattr__(self, "causes", tuple(str(c) for c in self.causes))
        if "~" not in self.formula:
            raise ValueError(f"TimeToEvent: formula {self.formula!r} must be one-sided, "
                             f"e.g. '~ age'")


@dataclass(frozen=True)
class WeibullHazards:
    """Cause-specific Weibull hazards of every expert (see the module docstring).

    ``coefficients`` of an expert are (C, r + 1): per cause, theta (the design's r columns)
    then the log shape s.
    """

    exog_names: tuple[str, ...]
    cause_names: tuple[str, ...]

    @property
    def n_causes(self) -> int:
        return len(self.cause_names)

    @property
    def n_per_cause(self) -> int:
        return len(self.exog_names) + 1

    @property
    def intercept(self) -> int | None:
        """The position of the design's intercept column (None without one)."""
        return (self.exog_names.index("Intercept") if "Intercept" in self.exog_names
                else None)

    @property
    def n_coef(self) -> int:
        return self.n_causes * self.n_per_cause

    def coef_names(self) -> list[str]:
        """Labels of the coefficients: ``"event: age"``, ``"event: log(shape)"``; with
        competing risks the cause's name replaces ``event``: ``"death: age"``."""
        names = []
        for cause in self.cause_names:
            names += [f"{cause}: {name}" for name in self.exog_names]
            names.append(f"{cause}: log(shape)")
        return names

    def split(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """theta (K, C, r) and s (K, C) from the coefficients (K, C * (r + 1))."""
        K = coef.shape[0]
        per = coef.reshape(K, self.n_causes, self.n_per_cause)
        return per[..., :-1], per[..., -1]

    def _pieces(self, events: SubjectEvents, coef: np.ndarray):
        """eta, s, u = rho log T, H, delta, which subjects have event data, log T; an
        overflowing cumulative hazard is +inf (the log-density -inf: the step is rejected)."""
        theta, s = self.split(coef)
        K, C, r = theta.shape
        eta = (events.exog @ theta.reshape(K * C, r).T).reshape(-1, K, C)
        rho = np.exp(s)                                          # (K, C)
        log_t = np.log(events.time)[:, None, None]
        u = rho[None] * log_t                                    # (N, K, C)
        with np.errstate(over="ignore"):
            cum = np.exp(u + eta)                                # H_kc(T_i)
        known = events.cause >= 0
        delta = (events.cause[:, None] == np.arange(1, self.n_causes + 1)).astype(float)
        return eta, s, u, cum, delta[:, None, :], known, log_t

    def logdens(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        """log f(T_i, d_i | k), (N, K); 0 for subjects without event information."""
        eta, s, u, cum, delta, known, log_t = self._pieces(events, coef)
        per_cause = delta * (s[None] + u - log_t + eta) - cum
        return np.where(known[:, None], per_cause.sum(axis=2), 0.0)

    def gradients(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        """d log f(T_i, d_i | k) / d coefficients, (N, K, C * (r + 1))."""
        eta, s, u, cum, delta, known, _ = self._pieces(events, coef)
        d_eta = delta - cum
        d_s = delta * (1.0 + u) - cum * u
        g_theta = d_eta[..., None] * events.exog[:, None, None, :]       # (N, K, C, r)
        grad = np.concatenate([g_theta, d_s[..., None]], axis=3)
        grad = grad * known[:, None, None, None]
        return grad.reshape(grad.shape[0], grad.shape[1], -1)

    def weighted_sums(self, events: SubjectEvents, coef: np.ndarray,
                      weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """sum_i w_ik of the log-density, its gradient and its Hessian per expert and cause:
        (K, C), (K, C, m), (K, C, m, m) with m = r + 1 (``weights`` (N, K)). A trial step
        whose hazards overflow gives -inf or NaN sums, which the Newton iterations reject."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self._weighted_sums(events, coef, weights)

    def _weighted_sums(self, events, coef, weights):
        eta, s, u, cum, delta, known, log_t = self._pieces(events, coef)
        w = (weights * known[:, None])[..., None]                           # (N, K, 1)
        # a subject of weight 0 counts for nothing, even where its hazard overflows
        # (0 * inf would make the sums NaN)
        cum = np.where(w > 0, cum, 0.0)
        N, K, C = cum.shape
        x = events.exog
        r = x.shape[1]
        w_cum = w * cum
        w_delta = w * delta
        # sums over subjects as matrix products (BLAS), the (expert, cause) pairs as columns
        value = (w_delta * (s[None] + u - log_t + eta) - w_cum).sum(axis=0)
        g_theta = ((w_delta - w_cum).reshape(N, K * C).T @ x).reshape(K, C, r)
        g_s = (w_delta * (1.0 + u) - w_cum * u).sum(axis=0)
        xx = (x[:, :, None] * x[:, None, :]).reshape(N, r * r)
        h_tt = -(w_cum.reshape(N, K * C).T @ xx).reshape(K, C, r, r)
        h_ts = -(((w_cum * u).reshape(N, K * C)).T @ x).reshape(K, C, r)
        h_ss = (w_delta * u - w_cum * u * (1.0 + u)).sum(axis=0)
        grad = np.concatenate([g_theta, g_s[..., None]], axis=2)
        hess = np.empty((K, C, r + 1, r + 1))
        hess[..., :r, :r] = h_tt
        hess[..., :r, r] = hess[..., r, :r] = h_ts
        hess[..., r, r] = h_ss
        return value, grad, hess

    def curves(self, coef: np.ndarray, exog: np.ndarray, times: np.ndarray,
               n_grid: int = 4000) -> tuple[np.ndarray, np.ndarray]:
        """Survival S_k(t | x) (n, K, T) and cumulative incidence of each cause F_kc(t | x)
        (n, K, C, T) at ``times`` (>= 0) for the design rows ``exog`` (n, r).

        F_kc(t) = int_0^t h_kc(u) S_k(u) du, S_k = exp(-sum_c H_kc); with h_kc S_k =
        (h_kc / h_k)(-dS_k), each interval of a grid of ``n_grid`` steps up to max(times)
        contributes its drop of S_k times the causes' shares of the hazard at its midpoint
        (exact for one cause, and when the causes' shapes are equal; otherwise the error
        shrinks with the square of the spacing)."""
        theta, s = self.split(coef)                              # (K, C, r), (K, C)
        rho = np.exp(s)[None, ..., None]                         # (1, K, C, 1)
        scale = np.exp(np.einsum("nr,kcr->nkc", exog, theta))[..., None]   # (n, K, C, 1)
        t_max = float(np.max(times)) if np.size(times) else 0.0
        grid = np.unique(np.r_[np.linspace(0.0, t_max, n_grid + 1), times])
        mid = 0.5 * (grid[1:] + grid[:-1])
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            surv = np.exp(-(scale * grid ** rho).sum(axis=2))                  # (n, K, G)
            hazard = scale * rho * mid ** (rho - 1.0)                          # (n, K, C, G-1)
            share = np.nan_to_num(hazard / hazard.sum(axis=2, keepdims=True))
        drop = surv[..., :-1] - surv[..., 1:]
        incidence = np.concatenate([np.zeros(share.shape[:3] + (1,)),
                                    np.cumsum(share * drop[:, :, None, :], axis=3)], axis=3)
        where = np.searchsorted(grid, times)
        return surv[..., where], incidence[..., where]

    def start(self, events: SubjectEvents, weights: np.ndarray | None = None) -> np.ndarray:
        """Exponential hazards with no covariate effect, one expert: the intercept is the log
        of events over person-time (when the design has an intercept), the log shape 0;
        (1, C * (r + 1))."""
        w = np.ones(events.time.shape[0]) if weights is None else weights
        coef = np.zeros((1, self.n_causes, self.n_per_cause))
        ones = [j for j, name in enumerate(self.exog_names)
                if np.allclose(events.exog[:, j], 1.0)]
        person_time = float(w @ events.time)
        for c in range(self.n_causes):
            n_events = float(w @ (events.cause == c + 1))
            if ones:
                coef[0, c, ones[0]] = np.log(max(n_events, 0.5) / person_time)
        return coef.reshape(1, -1)


def _regularised_step(grad: np.ndarray, hess: np.ndarray) -> np.ndarray:
    """The Newton step -H^-1 g, with H shifted to be negative definite where it is not
    (a Levenberg step: still an ascent direction); 0 where the sums are not finite."""
    m = grad.shape[-1]
    finite = np.isfinite(grad).all(axis=-1) & np.isfinite(hess).all(axis=(-2, -1))
    grad = np.where(finite[..., None], grad, 0.0)
    hess = np.where(finite[..., None, None], hess, -np.eye(m))
    vals = np.linalg.eigvalsh(hess)
    shift = np.maximum(vals.max(axis=-1) + 1e-8 * (1 + np.abs(vals).max(axis=-1)), 0.0)
    return np.linalg.solve(-(hess - shift[..., None, None] * np.eye(m)), grad[..., None])[..., 0]


def event_sums(block, cache, hazards: WeibullHazards, coef: np.ndarray):
    """Block function: the weighted sums of :meth:`WeibullHazards.weighted_sums` of the
    block's subjects, weighted by the E-step's posterior (times the subjects' weights)."""
    return hazards.weighted_sums(block.events, coef, cache.weighted_tau)


def event_totals(block, cache, hazards: WeibullHazards):
    """Block function: posterior-weighted events of each cause (K, C) and follow-up time (K,)
    of the block's subjects."""
    ev = block.events
    w = cache.weighted_tau * (ev.cause >= 0)[:, None]
    causes = (ev.cause[:, None] == np.arange(1, hazards.n_causes + 1)).astype(float)
    return w.T @ causes, w.T @ ev.time


def newton_m_step(blocks, caches, hazards: WeibullHazards, coef: np.ndarray,
                  max_iter: int = 25, tol: float = 1e-10) -> np.ndarray:
    """Maximise sum_i tau_ik log f(T_i, d_i | k) over every expert's coefficients from
    ``coef`` (K, C * (r + 1)), each (expert, cause) by its own Newton iterations with step
    halving (a pass over the blocks per iteration; the passes are cheap: no trajectory data).
    Never decreases the objective of any (expert, cause)."""
    K = coef.shape[0]
    C, m = hazards.n_causes, hazards.n_per_cause
    current = coef.reshape(K, C, m).copy()
    value, grad, hess = blocks.reduce(event_sums, caches, hazards, current.reshape(K, -1))
    lost = ~np.isfinite(value)
    if lost.any():
        # hazards that overflow for subjects of the expert (an extreme start): the weighted
        # exponential fit of each such (expert, cause) instead, an increase from -inf
        events, time = blocks.reduce(event_totals, caches, hazards)
        fallback = current.copy()
        fallback[lost] = 0.0
        if hazards.intercept is not None:
            rate = np.log(np.maximum(events, 0.5) / np.maximum(time, 1e-300)[:, None])
            fallback[..., hazards.intercept] = np.where(lost, rate, current[..., hazards.intercept])
        f_value, f_grad, f_hess = blocks.reduce(event_sums, caches, hazards,
                                                fallback.reshape(K, -1))
        take = lost & np.isfinite(f_value)
        current = np.where(take[..., None], fallback, current)
        value = np.where(take, f_value, value)
        grad = np.where(take[..., None], f_grad, grad)
        hess = np.where(take[..., None, None], f_hess, hess)
    for _ in range(max_iter):
        step = _regularised_step(grad, hess)
        active = np.ones((K, C), dtype=bool)
        factor = np.ones((K, C))
        accepted = np.zeros((K, C), dtype=bool)
        new_value, new_grad, new_hess = value, grad, hess
        for _ in range(30):                          # step halving, all (k, c) at once
            trial = current + np.where(active, factor, 0.0)[..., None] * step
            t_value, t_grad, t_hess = blocks.reduce(event_sums, caches, hazards,
                                                    trial.reshape(K, -1))
            ok = active & np.isfinite(t_value) & (t_value >= value - 1e-12 * np.abs(value))
            new_value = np.where(ok, t_value, new_value)
            new_grad = np.where(ok[..., None], t_grad, new_grad)
            new_hess = np.where(ok[..., None, None], t_hess, new_hess)
            current = np.where(ok[..., None], trial, current)
            accepted |= ok
            active &= ~ok
            if not active.any():
                break
            factor = np.where(active, factor / 2.0, factor)
        gain = new_value - value
        value, grad, hess = new_value, new_grad, new_hess
        if not accepted.any() or np.all(gain <= tol * (1.0 + np.abs(value))):
            break
    return current.reshape(K, -1)
