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

so exp(theta_kc[j]) is the hazard ratio of covariate j for cause c within expert k. By
default every parameter is expert-specific (lcmm's ``hazardtype="Specific"`` with covariates
in ``mixture()``); ``Hazards.tied_per_cause`` marks those common to all experts: the shape
under ``hazardtype="proportional"`` (lcmm's "PH"), the whole baseline under ``"common"``, and
the covariates of ``common_formula``. The coefficients of one cause are ``(theta_kc, s_kc)``:
the design's columns (``formula``'s, then ``common_formula``'s) and then the log shape; the
causes follow one another.

Derivatives (per subject, cause c; u = rho log T, H = T^rho e^eta, delta = [d = c])::

    d/d eta  = delta - H                    d2/d eta2     = -H
    d/d s    = delta (1 + u) - H u          d2/d eta d s  = -H u
                                            d2/d s2       = delta u - H u (1 + u)

**Piecewise-constant hazards** (``hazard="piecewise"``): with cut points 0 = a_0 < a_1 < ...
< a_J = inf (``knots``; by default at quantiles of the event times),

    h_kc(t | x) = exp(alpha_kcj + x' theta_kc)   for t in [a_(j-1), a_j),
    H_kc(t | x) = exp(x' theta_kc) sum_j exp(alpha_kcj) E_j(t),

E_j(t) the time spent in interval j by t; the design's intercept is left out (the alphas are
the baseline). It is a Poisson model of the events with the log exposures as offsets, and its
log-likelihood is concave: with derivatives (H_j = exp(alpha_j + x' theta) E_j)

    d/d alpha_j = delta [T in interval j] - H_j     d/d theta = (delta - H) x
    d2/d alpha_j2 = -H_j                           d2/d alpha_j d theta = -H_j x
    d2/d theta2 = -H x x'.

The M-step maximises sum_i tau_ik log f(T_i, d_i | k) for each (k, c) separately (the causes
and experts share no parameter) by Newton's method on these sums, with the Hessian made
negative definite where it is not and the step halved until the weighted log-likelihood
increases: the M-step never decreases the expected complete-data log-likelihood. When some
coefficients are common to all experts, a cause's coefficients of all experts move together
(:class:`TiedSystem`: the common ones get the sums of the experts' gradients and Hessians).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._design.events import SubjectEvents

__all__ = ["TimeToEvent", "Hazards", "WeibullHazards", "PiecewiseHazards",
           "event_sums", "event_totals", "newton_m_step", "TiedSystem"]

HAZARDS = ("weibull", "piecewise", "splines")
#: the relations between the experts' baseline hazards, and lcmm's names of them
HAZARD_TYPES = {"specific": "specific", "proportional": "proportional", "ph": "proportional",
                "common": "common"}
#: intervals of a piecewise-constant hazard when ``knots`` is not given
DEFAULT_PIECES = 5
#: intervals between the knots of a spline hazard when ``knots`` is not given (3 interior
#: knots, 7 cubic M-splines, as lcmm's default of 5 nodes)
DEFAULT_SPLINE_PIECES = 4


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
    hazard : {"weibull", "piecewise", "splines"}
        The baseline hazard of each expert and cause: Weibull, piecewise constant between
        ``knots``, or a positive combination of cubic M-splines with interior ``knots``
        (:mod:`pymemoe.families.spline_hazards`, lcmm's ``"splines"``).
    knots : int or sequence of float, optional
        ``hazard="piecewise"`` or ``"splines"``: the interior knots (times > 0), or their
        number + 1 (the number of intervals), placed at quantiles of the event times;
        default 5 intervals (piecewise) or 4 (splines: 7 M-splines).
    causes : list of str, optional
        Names of the causes 1..C (default ``"event"`` for one cause, else ``"1"`` to
        ``"C"``).
    visit_time : str, optional
        Column of the measurement times of the trajectory: rows measured after their
        subject's follow-up time are counted and reported in a warning.
    entry : str, optional
        Column of delayed entry times T0_i, 0 <= T0_i < T_i (left truncation; lifelines'
        ``entry``, statsmodels' ``PHReg(entry=...)``): subject i is in the data because it
        was event-free at T0_i. The likelihood is then conditioned on that across the
        mixture, divided by sum_k pi_ik S_k(T0_i) (as lcmm's ``Jointlcmm`` with entry times).
    hazardtype : {"specific", "proportional", "common"}
        How the experts' baseline hazards relate (lcmm's ``hazardtype`` "Specific", "PH",
        "Common", which are accepted too): each expert its own (default); one shape with a
        level per expert (proportional hazards across experts: a Weibull shape common to
        all, or piecewise-constant hazards whose ratios between intervals are common); or
        one hazard for all (then only ``formula``'s covariates differ between experts).
    common_formula : str, optional
        One-sided formula of covariates whose effects are common to all experts (lcmm's
        covariates outside ``mixture()``), e.g. ``"~ sex"``; ``formula``'s effects are each
        expert's own.

    Examples
    --------
    >>> from pymemoe import TimeToEvent
    >>> TimeToEvent(time="years", event="status", formula="~ age", causes=["transplant", "death"])
    TimeToEvent(time='years', event='status', formula='~ age', hazard='weibull', causes=('transplant', 'death'), visit_time=None, knots=None, entry=None, hazardtype='specific', common_formula=None)
    """

    time: str
    event: str
    formula: str = "~1"
    hazard: str = "weibull"
    causes: tuple[str, ...] | None = None
    visit_time: str | None = None
    knots: int | tuple[float, ...] | None = None
    entry: str | None = None
    hazardtype: str = "specific"
    common_formula: str | None = None

    def __post_init__(self) -> None:
        if self.hazard not in HAZARDS:
            raise ValueError(f"TimeToEvent: hazard must be one of {HAZARDS}, got {self.hazard!r}")
        kind = HAZARD_TYPES.get(str(self.hazardtype).lower())
        if kind is None:
            raise ValueError(f"TimeToEvent: hazardtype must be 'specific', 'proportional' or "
                             f"'common' (lcmm's 'Specific', 'PH', 'Common'), got "
                             f"{self.hazardtype!r}")
        object.__setattr__(self, "hazardtype", kind)
        if self.common_formula is not None and "~" not in self.common_formula:
            raise ValueError(f"TimeToEvent: common_formula {self.common_formula!r} must be "
                             f"one-sided, e.g. '~ sex'")
        if self.knots is not None:
            if self.hazard == "weibull":
                raise ValueError("TimeToEvent: knots are for hazard='piecewise' or 'splines'")
            if np.ndim(self.knots) == 0:
                if int(self.knots) != self.knots or self.knots < 1:
                    raise ValueError(f"TimeToEvent: knots={self.knots!r} must be a number of "
                                     f"intervals >= 1 or a sequence of cut points")
                object.__setattr__(self, "knots", int(self.knots))
            else:
                cuts = tuple(float(k) for k in self.knots)
                if not all(np.isfinite(cuts)) or any(k <= 0 for k in cuts) or \
                        any(b <= a for a, b in zip(cuts, cuts[1:])):
                    raise ValueError(f"TimeToEvent: knots {cuts} must be increasing times > 0")
                object.__setattr__(self, "knots", cuts)
        if self.causes is not None:
            object.__setattr__(self, "causes", tuple(str(c) for c in self.causes))
        if "~" not in self.formula:
            raise ValueError(f"TimeToEvent: formula {self.formula!r} must be one-sided, "
                             f"e.g. '~ age'")


@dataclass(frozen=True)
class Hazards:
    """What every kind of hazards of a joint model shares: the causes, the coefficients'
    layout (per cause, ``n_per_cause`` coefficients, causes one after another), the curves
    and the sums of Newton's M-step. Subclasses give the log-density, its derivatives and
    the cumulative hazard."""

    exog_names: tuple[str, ...]
    cause_names: tuple[str, ...]
    hazardtype: str = "specific"
    common_names: tuple[str, ...] = ()

    @property
    def n_causes(self) -> int:
        return len(self.cause_names)

    @property
    def tied_per_cause(self) -> np.ndarray:
        """Which of a cause's coefficients are common to all experts, (n_per_cause,): the
        covariates of ``common_names``, the baseline's shape under ``hazardtype=
        "proportional"``, the whole baseline (level and shape) under ``"common"``."""
        terms = self.cause_terms()
        tied = np.array([term in self.common_names for term in terms], dtype=bool)
        if self.hazardtype == "proportional":
            tied[self.shape_columns()] = True
        elif self.hazardtype == "common":
            tied[self.shape_columns() + self.rate_columns()] = True
        return tied

    @property
    def tied(self) -> np.ndarray:
        """:attr:`tied_per_cause` for every cause, (n_coef,)."""
        return np.tile(self.tied_per_cause, self.n_causes)

    def shape_columns(self) -> list[int]:
        """Positions, within a cause's coefficients, of the baseline's shape (common to all
        experts under proportional hazards)."""
        raise NotImplementedError

    def at_zero(self, coef: np.ndarray) -> np.ndarray:
        """Which coefficients (K, n_coef) sit at a boundary of their range (none here; a
        spline hazard's weights can reach 0)."""
        return np.zeros(coef.shape, dtype=bool)

    @property
    def n_per_cause(self) -> int:
        raise NotImplementedError

    @property
    def n_coef(self) -> int:
        return self.n_causes * self.n_per_cause

    def cause_terms(self) -> list[str]:
        """The terms of one cause's coefficients (without the cause)."""
        raise NotImplementedError

    def coef_names(self) -> list[str]:
        """Labels of the coefficients: ``"<cause>: <term>"`` (``"event: ..."`` with one
        cause)."""
        return [f"{cause}: {term}" for cause in self.cause_names for term in self.cause_terms()]

    def ratio_terms(self) -> tuple[str, ...]:
        """The coefficients whose exponentials are hazard ratios (the covariates')."""
        covariates = {name for name in self.exog_names if name != "Intercept"}
        return tuple(f"{cause}: {term}" for cause in self.cause_names
                     for term in self.cause_terms() if term in covariates)

    def rate_columns(self) -> list[int]:
        """Positions, within a cause's coefficients, of the baseline log rate (the starts'
        and the fallback's events over person-time)."""
        raise NotImplementedError

    def per_cause(self, coef: np.ndarray) -> np.ndarray:
        """The coefficients (K, n_coef) as (K, C, n_per_cause)."""
        return coef.reshape(coef.shape[0], self.n_causes, self.n_per_cause)

    def _delta(self, events: SubjectEvents) -> tuple[np.ndarray, np.ndarray]:
        """[d_i = c] (N, 1, C) and which subjects have event information (N,)."""
        return events.indicators[:, None, :], events.cause >= 0

    def weighted_sums(self, events: SubjectEvents, coef: np.ndarray,
                      weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """sum_i w_ik of the log-density, its gradient and its Hessian per expert and cause:
        (K, C), (K, C, m), (K, C, m, m) with m = ``n_per_cause`` (``weights`` (N, K)). A
        trial step whose hazards overflow gives -inf or NaN sums, which the Newton iterations
        reject."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self._weighted_sums(events, coef, weights)

    def rate_coefficients(self, log_rate: np.ndarray) -> np.ndarray:
        """Coefficients (..., C, n_per_cause) of exponential hazards with no covariate effect:
        ``log_rate`` (..., C) in the baseline's rate columns, 0 elsewhere (the starts and
        the M-step's fallback)."""
        log_rate = np.asarray(log_rate, dtype=float)
        coef = np.zeros(log_rate.shape + (self.n_per_cause,))
        coef[..., self.rate_columns()] = log_rate[..., None]
        return coef

    def start(self, events: SubjectEvents) -> np.ndarray:
        """Exponential hazards with no covariate effect, one expert (1, n_coef): the log of
        events over person-time in the baseline's rate columns, 0 elsewhere."""
        counts = np.maximum(events.indicators.sum(axis=0), 0.5)
        return self.rate_coefficients(np.log(counts / events.at_risk_time.sum())).reshape(1, -1)

    def curves(self, coef: np.ndarray, exog: np.ndarray, times: np.ndarray,
               n_grid: int = 4000) -> tuple[np.ndarray, np.ndarray]:
        """Survival S_k(t | x) (n, K, T) and cumulative incidence of each cause F_kc(t | x)
        (n, K, C, T) at ``times`` (>= 0) for the design rows ``exog`` (n, r).

        F_kc(t) = int_0^t h_kc(u) S_k(u) du, S_k = exp(-sum_c H_kc); with h_kc S_k =
        (h_kc / h_k)(-dS_k), each interval of a grid of ``n_grid`` steps up to max(times)
        (and the hazards' own break points) contributes its drop of S_k times the causes'
        shares of the hazard at its midpoint (exact for one cause, and where the causes'
        hazards are proportional within the interval; otherwise the error shrinks with the
        square of the spacing)."""
        t_max = float(np.max(times)) if np.size(times) else 0.0
        grid = np.unique(np.r_[np.linspace(0.0, t_max, n_grid + 1), times,
                               [b for b in self.breaks() if b < t_max]])
        mid = 0.5 * (grid[1:] + grid[:-1])
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            surv = np.exp(-self.cumulative(coef, exog, grid).sum(axis=2))     # (n, K, G)
            hazard = self.rates(coef, exog, mid)                               # (n, K, C, G-1)
            share = np.nan_to_num(hazard / hazard.sum(axis=2, keepdims=True))
        drop = surv[..., :-1] - surv[..., 1:]
        incidence = np.concatenate([np.zeros(share.shape[:3] + (1,)),
                                    np.cumsum(share * drop[:, :, None, :], axis=3)], axis=3)
        where = np.searchsorted(grid, times)
        return surv[..., where], incidence[..., where]

    def breaks(self) -> tuple[float, ...]:
        """Times where a hazard jumps (none for smooth hazards)."""
        return ()

    def log_cumulative(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        """log H_kc(T_i | x_i), (N, K, C): how far a hazard is from a degenerate fit."""
        with np.errstate(divide="ignore", over="ignore"):
            return np.log(self._cum_at_own_time(events, coef))

    # -- delayed entry (left truncation) ------------------------------------------------------

    def cumulative_at(self, exog: np.ndarray, times: np.ndarray, coef: np.ndarray) -> np.ndarray:
        """H_kc(t_i | x_i) at each row's own time ``times`` (N,) >= 0, (N, K, C)."""
        raise NotImplementedError

    def log_rates_at(self, exog: np.ndarray, times: np.ndarray, coef: np.ndarray) -> np.ndarray:
        """log h_kc(t_i | x_i) at each row's own time ``times`` (N,) > 0, (N, K, C)."""
        raise NotImplementedError

    def cumulative_gradient(self, exog: np.ndarray, times: np.ndarray, coef: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
        """H_kc(t_i | x_i) (n, K, C) and its gradient in the cause's coefficients
        (n, K, C, m), at times ``times`` > 0."""
        raise NotImplementedError

    def weighted_cumulative_hessian(self, exog: np.ndarray, times: np.ndarray,
                                    coef: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """sum_i w_ikc d2 H_kc(t_i | x_i) / d coef_kc2, (K, C, m, m), at times ``times`` > 0
        (``weights`` (n, K, C)), as matrix products over the subjects."""
        raise NotImplementedError

    def entry_cumulative(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        """H_kc(T0_i | x_i), (N, K, C): 0 without delayed entry (and for subjects without
        event information, whose entry is not known)."""
        N, K = events.time.shape[0], coef.shape[0]
        if events.entry is None:
            return np.zeros((N, K, self.n_causes))
        with np.errstate(over="ignore"):
            cum = self.cumulative_at(events.exog, events.entry, coef)
        return np.where((events.cause >= 0)[:, None, None], cum, 0.0)

    def log_entry_survival(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        """log S_k(T0_i | x_i) = -sum_c H_kc(T0_i | x_i), (N, K): the log-probability under
        expert k of being event-free at entry."""
        return -self.entry_cumulative(events, coef).sum(axis=2)

    def entry_gradients(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        """d log S_k(T0_i | x_i) / d coefficients, (N, K, n_coef) (0 without entry)."""
        N, K = events.time.shape[0], coef.shape[0]
        out = np.zeros((N, K, self.n_causes, self.n_per_cause))
        rows = _entered(events)
        if rows.size:
            _, grad = self.cumulative_gradient(events.exog[rows], events.entry[rows], coef)
            out[rows] = -grad
        return out.reshape(N, K, -1)

    def ghost_sums(self, events: SubjectEvents, coef: np.ndarray, ghosts: np.ndarray,
                   causes: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ghosts' term of the M-step under delayed entry (:func:`newton_m_step`):
        G_k = sum_i g_ik log(1 - S_k(T0_i)) per expert (K,), and its gradient (K, C, m) and
        Hessian (K, C, m, m) in each cause's coefficients with the other causes held (the
        M-step moves one cause at a time when there are ghosts); ``ghosts`` g (N, K);
        ``causes`` (C,) the causes whose Hessian is wanted (default all; the others' is 0).

        With H = sum_c H_kc(T0) and a = 1 / (e^H - 1) = S / (1 - S)::

            dG/d theta_c = sum_i g a dH_c,
            d2G/d theta_c2 = sum_i g (a d2H_c - a (1 + a) dH_c dH_c')."""
        K, C, m = coef.shape[0], self.n_causes, self.n_per_cause
        value, grad, hess = np.zeros(K), np.zeros((K, C, m)), np.zeros((K, C, m, m))
        rows = _entered(events)
        if not rows.size:
            return value, grad, hess
        causes = np.ones(C, dtype=bool) if causes is None else np.asarray(causes, dtype=bool)
        g = ghosts[rows]
        exog, entry = events.exog[rows], events.entry[rows]
        cum, d_cum = self.cumulative_gradient(exog, entry, coef)
        total = cum.sum(axis=2)                                         # (n, K)
        use = g > 0
        total = np.where(use, total, 1.0)       # g = 0 counts for nothing (no 0 * inf)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            value = np.where(use, g * np.log(-np.expm1(-total)), 0.0).sum(axis=0)
            a = np.where(use, 1.0 / np.expm1(total), 0.0)
        ga, gaa = g * a, g * a * (1.0 + a)                              # (n, K)
        grad = np.einsum("nk,nkcm->kcm", ga, d_cum)
        weights = np.where(causes[None, None, :], ga[..., None], 0.0)   # (n, K, C)
        hess = self.weighted_cumulative_hessian(exog, entry, coef, weights)
        for k in range(K):                 # loops over experts and causes, not subjects
            for c in np.flatnonzero(causes):
                d = d_cum[:, k, c]
                hess[k, c] -= (d * gaa[:, k, None]).T @ d
        return value, grad, hess


@dataclass(frozen=True)
class WeibullHazards(Hazards):
    """Cause-specific Weibull hazards of every expert (see the module docstring).

    The coefficients of a cause are theta (the design's r columns) then the log shape s.
    """

    @property
    def n_per_cause(self) -> int:
        return len(self.exog_names) + 1

    def cause_terms(self) -> list[str]:
        return list(self.exog_names) + ["log(shape)"]

    def rate_columns(self) -> list[int]:
        return [self.exog_names.index("Intercept")] if "Intercept" in self.exog_names else []

    def shape_columns(self) -> list[int]:
        return [len(self.exog_names)]

    def split(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """theta (K, C, r) and s (K, C) from the coefficients (K, C * (r + 1))."""
        per = self.per_cause(coef)
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
        delta, known = self._delta(events)
        return eta, s, u, cum, delta, known, log_t

    def _cum_at_own_time(self, events, coef):
        return self._pieces(events, coef)[3]

    def martingale(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        """delta_ic - H_kc(T_i | x_i), (N, K, C); 0 without event information."""
        _, _, _, cum, delta, known, _ = self._pieces(events, coef)
        return np.where(known[:, None, None], delta - cum, 0.0)

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

    def cumulative(self, coef: np.ndarray, exog: np.ndarray, t: np.ndarray) -> np.ndarray:
        """H_kc(t | x) for the rows ``exog`` (n, r) at the times ``t`` (G,): (n, K, C, G),
        in log space so that H(0) = 0 even where exp(x' theta) overflows."""
        theta, s = self.split(coef)
        eta = np.einsum("nr,kcr->nkc", exog, theta)[..., None]
        with np.errstate(divide="ignore", over="ignore"):
            log_t = np.log(np.asarray(t, dtype=float))
            return np.exp(eta + np.exp(s)[None, ..., None] * log_t)

    def cumulative_at(self, exog, times, coef):
        theta, s = self.split(coef)
        eta = np.einsum("nr,kcr->nkc", exog, theta)
        times = np.asarray(times, dtype=float)
        with np.errstate(divide="ignore"):
            log_t = np.log(times)[:, None, None]
        positive = (times > 0)[:, None, None]
        return np.where(positive, np.exp(eta + np.exp(s)[None] * np.where(positive, log_t, 0.0)),
                        0.0)

    def log_rates_at(self, exog, times, coef):
        theta, s = self.split(coef)
        eta = np.einsum("nr,kcr->nkc", exog, theta)
        log_t = np.log(np.asarray(times, dtype=float))[:, None, None]
        return eta + s[None] + (np.exp(s)[None] - 1.0) * log_t

    def cumulative_gradient(self, exog, times, coef):
        """With u = rho log t: dH/d theta = H x, dH/ds = H u."""
        theta, s = self.split(coef)
        eta = np.einsum("nr,kcr->nkc", exog, theta)
        u = np.exp(s)[None] * np.log(np.asarray(times, dtype=float))[:, None, None]
        cum = np.exp(eta + u)
        n, K, C = cum.shape
        x = np.broadcast_to(exog[:, None, None, :], (n, K, C, exog.shape[1]))
        return cum, np.concatenate([cum[..., None] * x, (cum * u)[..., None]], axis=3)

    def weighted_cumulative_hessian(self, exog, times, coef, weights):
        """d2H/d theta2 = H x x', d2H/d theta ds = H u x, d2H/ds2 = H u (1 + u): with
        v = (x, u), H (v v' + u e_s e_s')."""
        theta, s = self.split(coef)
        eta = np.einsum("nr,kcr->nkc", exog, theta)
        u = np.exp(s)[None] * np.log(np.asarray(times, dtype=float))[:, None, None]
        w_cum = weights * np.exp(eta + u)                                # (n, K, C)
        K, C = w_cum.shape[1:]
        r = exog.shape[1]
        out = np.zeros((K, C, r + 1, r + 1))
        for k in range(K):                 # loops over experts and causes, not subjects
            for c in range(C):
                if not weights[:, k, c].any():      # a cause the M-step does not move
                    continue
                v = np.column_stack([exog, u[:, k, c]])
                out[k, c] = (v * w_cum[:, k, c, None]).T @ v
                out[k, c, r, r] += w_cum[:, k, c] @ u[:, k, c]
        return out

    def rates(self, coef: np.ndarray, exog: np.ndarray, t: np.ndarray) -> np.ndarray:
        """h_kc(t | x), (n, K, C, G), in log space (no 0 * inf where exp(x' theta)
        underflows and t^(rho - 1) overflows)."""
        theta, s = self.split(coef)
        eta = np.einsum("nr,kcr->nkc", exog, theta)[..., None]
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            log_t = np.log(np.asarray(t, dtype=float))
            power = np.exp(s)[None, ..., None] - 1.0
            return np.exp(eta + s[None, ..., None]
                          + np.where(power == 0.0, 0.0, power * log_t))


    def inverse_cumulative(self, coef, exog, expert, values):
        """t with H_kc(t | x_i) = values[i, c] under expert ``expert[i]``, (N, C)."""
        theta, s = self.split(coef)
        eta = np.einsum("nr,ncr->nc", exog, theta[expert])
        return (values * np.exp(-eta)) ** (1.0 / np.exp(s[expert]))


@dataclass(frozen=True)
class PiecewiseHazards(Hazards):
    """Cause-specific piecewise-constant hazards of every expert (the module docstring).

    The coefficients of a cause are the log hazards of the intervals (alpha_1..alpha_J) then
    the effects theta of the design's columns other than the intercept.
    """

    knots: tuple[float, ...] = ()

    @property
    def covariates(self) -> list[int]:
        """Positions of the design's columns that have effects (all but the intercept)."""
        return [j for j, name in enumerate(self.exog_names) if name != "Intercept"]

    @property
    def n_pieces(self) -> int:
        return len(self.knots) + 1

    @property
    def n_per_cause(self) -> int:
        return self.n_pieces + len(self.covariates)

    def breaks(self) -> tuple[float, ...]:
        return self.knots

    @property
    def relative(self) -> bool:
        """Proportional hazards across experts: a cause's baseline is stored as the log
        hazard of the first interval (each expert's level) and the log ratios of the others
        to it (common to all experts), alpha_j = a + d_j with d_1 = 0."""
        return self.hazardtype == "proportional"

    def cause_terms(self) -> list[str]:
        edges = [0.0, *self.knots, np.inf]
        names = [f"[{a:.4g}, {b:.4g})" for a, b in zip(edges[:-1], edges[1:])]
        if self.relative:
            pieces = [f"log hazard {names[0]}"] + [f"log hazard ratio {n} : {names[0]}"
                                                  for n in names[1:]]
        else:
            pieces = [f"log hazard {n}" for n in names]
        return pieces + [self.exog_names[j] for j in self.covariates]

    def rate_columns(self) -> list[int]:
        return [0] if self.relative else list(range(self.n_pieces))

    def shape_columns(self) -> list[int]:
        return list(range(1, self.n_pieces))

    def split(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """alpha (K, C, J) and theta (K, C, r') from the coefficients."""
        per = self.per_cause(coef)
        alpha = per[..., :self.n_pieces]
        if self.relative:
            alpha = alpha[..., :1] + np.concatenate([np.zeros(alpha.shape[:-1] + (1,)),
                                                     alpha[..., 1:]], axis=-1)
        return alpha, per[..., self.n_pieces:]

    def _stored_map(self) -> np.ndarray:
        """L with natural coefficients (alpha, theta) = L (stored): the identity, or under
        proportional hazards alpha_j = a + d_j."""
        m, J = self.n_per_cause, self.n_pieces
        out = np.eye(m)
        if self.relative:
            out[1:J, 0] = 1.0
        return out

    def _stored_gradient(self, grad: np.ndarray) -> np.ndarray:
        """Gradients in the natural coefficients (..., m) -> in the stored ones."""
        return grad if not self.relative else grad @ self._stored_map()

    def _stored_hessian(self, hess: np.ndarray) -> np.ndarray:
        """Hessians in the natural coefficients (..., m, m) -> in the stored ones."""
        if not self.relative:
            return hess
        L = self._stored_map()
        return np.swapaxes(L, 0, 1) @ hess @ L

    def exposure(self, t: np.ndarray) -> np.ndarray:
        """E_j(t): time spent in each interval by t, (len(t), J)."""
        edges = np.r_[0.0, self.knots, np.inf]
        t = np.asarray(t, dtype=float)[:, None]
        return np.clip(t - edges[:-1], 0.0, edges[1:] - edges[:-1])

    def interval(self, t: np.ndarray) -> np.ndarray:
        """The interval of each time, (len(t),) in 0..J-1."""
        return np.searchsorted(np.asarray(self.knots), np.asarray(t, dtype=float),
                               side="right")

    def _pieces(self, events: SubjectEvents, coef: np.ndarray):
        """eta = x' theta (N, K, C), the pieces' cumulative hazards H_j (N, K, C, J) and
        their sum H, [T in interval j] (N, J), delta and which subjects have event data."""
        alpha, theta = self.split(coef)
        K, C, r = theta.shape
        x = events.exog[:, self.covariates]
        eta = (x @ theta.reshape(K * C, r).T).reshape(-1, K, C)
        exposure = self.exposure(events.time)[:, None, None, :]
        with np.errstate(over="ignore", invalid="ignore"):
            pieces = np.exp(eta)[..., None] * np.exp(alpha)[None] * exposure
        pieces = np.where(exposure > 0, pieces, 0.0)      # no time in an interval: 0, not NaN
        at = np.eye(self.n_pieces)[self.interval(events.time)]
        delta, known = self._delta(events)
        return x, eta, alpha, pieces, pieces.sum(axis=3), at, delta, known

    def _cum_at_own_time(self, events, coef):
        return self._pieces(events, coef)[4]

    def martingale(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        """delta_ic - H_kc(T_i | x_i), (N, K, C); 0 without event information."""
        pieces = self._pieces(events, coef)
        cum, delta, known = pieces[4], pieces[6], pieces[7]
        return np.where(known[:, None, None], delta - cum, 0.0)

    def log_cumulative(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        """The most extreme log cumulative hazard of one interval among those each subject
        reaches, (N, K, C): an interval without events among an expert's subjects has its
        hazard run to 0 even where the total does not."""
        pieces = self._pieces(events, coef)[3]                           # (N, K, C, J)
        reached = (self.exposure(events.time) > 0)[:, None, None, :]
        with np.errstate(divide="ignore"):
            logs = np.where(reached, np.log(pieces), 0.0)
        pick = np.abs(logs).argmax(axis=3)[..., None]
        return np.take_along_axis(logs, pick, axis=3)[..., 0]

    def logdens(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        x, eta, alpha, pieces, cum, at, delta, known = self._pieces(events, coef)
        log_h = np.einsum("nj,kcj->nkc", at, alpha) + eta
        per_cause = delta * log_h - cum
        return np.where(known[:, None], per_cause.sum(axis=2), 0.0)

    def gradients(self, events: SubjectEvents, coef: np.ndarray) -> np.ndarray:
        x, eta, alpha, pieces, cum, at, delta, known = self._pieces(events, coef)
        g_alpha = delta[..., None] * at[:, None, None, :] - pieces          # (N, K, C, J)
        g_theta = (delta - cum)[..., None] * x[:, None, None, :]
        grad = np.concatenate([g_alpha, g_theta], axis=3) * known[:, None, None, None]
        grad = self._stored_gradient(grad)
        return grad.reshape(grad.shape[0], grad.shape[1], -1)

    def _weighted_sums(self, events, coef, weights):
        x, eta, alpha, pieces, cum, at, delta, known = self._pieces(events, coef)
        w = (weights * known[:, None])[..., None]                           # (N, K, 1)
        pieces = np.where(w[..., None] > 0, pieces, 0.0)
        cum = pieces.sum(axis=3)
        N, K, C = cum.shape
        J, r = self.n_pieces, x.shape[1]
        w_delta = w * delta
        w_pieces = (w[..., None] * pieces).reshape(N, K * C * J)
        log_h = np.einsum("nj,kcj->nkc", at, alpha) + eta
        value = (w_delta * log_h - w * cum).sum(axis=0)
        g_alpha = (w_delta.reshape(N, K * C).T @ at).reshape(K, C, J) \
            - w_pieces.sum(axis=0).reshape(K, C, J)
        g_theta = ((w_delta - w * cum).reshape(N, K * C).T @ x).reshape(K, C, r)
        h_aa = -w_pieces.sum(axis=0).reshape(K, C, J)
        h_at = -(w_pieces.T @ x).reshape(K, C, J, r)
        xx = (x[:, :, None] * x[:, None, :]).reshape(N, r * r)
        h_tt = -((w * cum).reshape(N, K * C).T @ xx).reshape(K, C, r, r)
        grad = np.concatenate([g_alpha, g_theta], axis=2)
        hess = np.zeros((K, C, J + r, J + r))
        hess[..., np.arange(J), np.arange(J)] = h_aa
        hess[..., :J, J:] = h_at
        hess[..., J:, :J] = np.swapaxes(h_at, -1, -2)
        hess[..., J:, J:] = h_tt
        return value, self._stored_gradient(grad), self._stored_hessian(hess)

    def cumulative(self, coef: np.ndarray, exog: np.ndarray, t: np.ndarray) -> np.ndarray:
        """In log space: an interval not reached adds 0 even where a hazard overflows."""
        alpha, theta = self.split(coef)
        eta = np.einsum("nr,kcr->nkc", exog[:, self.covariates], theta)
        with np.errstate(divide="ignore", over="ignore"):
            log_exposure = np.log(self.exposure(t))                      # (G, J)
            return np.exp(eta[..., None, None] + alpha[None, :, :, None, :]
                          + log_exposure[None, None, None]).sum(axis=4)

    def cumulative_at(self, exog, times, coef):
        alpha, theta = self.split(coef)
        eta = np.einsum("nr,kcr->nkc", exog[:, self.covariates], theta)
        base = np.einsum("kcj,nj->nkc", np.exp(alpha), self.exposure(times))
        return np.exp(eta) * base

    def _entry_pieces(self, exog, times, coef):
        """H_j = exp(alpha_j + x' theta) E_j(t) (n, K, C, J) and the covariates x (n, r')."""
        alpha, theta = self.split(coef)
        x = exog[:, self.covariates]
        eta = np.einsum("nr,kcr->nkc", x, theta)
        with np.errstate(over="ignore", divide="ignore"):
            log_exposure = np.log(self.exposure(times))[:, None, None, :]
            return np.exp(eta[..., None] + alpha[None] + log_exposure), x

    def log_rates_at(self, exog, times, coef):
        alpha, theta = self.split(coef)
        eta = np.einsum("nr,kcr->nkc", exog[:, self.covariates], theta)
        return eta + np.moveaxis(alpha[..., self.interval(times)], -1, 0)

    def cumulative_gradient(self, exog, times, coef):
        """dH/d alpha_j = H_j, dH/d theta = H x."""
        pieces, x = self._entry_pieces(exog, times, coef)
        cum = pieces.sum(axis=3)
        n, K, C = cum.shape
        xb = np.broadcast_to(x[:, None, None, :], (n, K, C, x.shape[1]))
        return cum, self._stored_gradient(np.concatenate([pieces, cum[..., None] * xb], axis=3))

    def weighted_cumulative_hessian(self, exog, times, coef, weights):
        """d2H/d alpha_j2 = H_j, d2H/d alpha_j d theta = H_j x, d2H/d theta2 = H x x'."""
        pieces, x = self._entry_pieces(exog, times, coef)
        w_pieces = weights[..., None] * pieces                           # (n, K, C, J)
        w_cum = w_pieces.sum(axis=3)
        K, C = weights.shape[1:]
        J, r = self.n_pieces, x.shape[1]
        out = np.zeros((K, C, J + r, J + r))
        out[..., np.arange(J), np.arange(J)] = w_pieces.sum(axis=0)
        cross = np.einsum("nkcj,nr->kcjr", w_pieces, x)
        out[..., :J, J:] = cross
        out[..., J:, :J] = np.swapaxes(cross, -1, -2)
        for k in range(K):                 # loops over experts and causes, not subjects
            for c in range(C):
                if weights[:, k, c].any():
                    out[k, c, J:, J:] = (x * w_cum[:, k, c, None]).T @ x
        return self._stored_hessian(out)

    def rates(self, coef: np.ndarray, exog: np.ndarray, t: np.ndarray) -> np.ndarray:
        alpha, theta = self.split(coef)
        scale = np.exp(np.einsum("nr,kcr->nkc", exog[:, self.covariates], theta))[..., None]
        return scale * np.exp(alpha)[..., self.interval(t)][None]


    def inverse_cumulative(self, coef, exog, expert, values):
        """t with H_kc(t | x_i) = values[i, c] under expert ``expert[i]``, (N, C): the
        cumulative hazard is piecewise linear in t, so the interval comes from its values at
        the knots."""
        alpha, theta = self.split(coef)
        eta = np.einsum("nr,ncr->nc", exog[:, self.covariates], theta[expert])
        rate = np.exp(alpha[expert] + eta[..., None])                   # (N, C, J)
        widths = np.diff(np.r_[0.0, self.knots])                        # (J - 1,)
        at_knots = np.concatenate([np.zeros(rate.shape[:2] + (1,)),
                                   np.cumsum(rate[..., :-1] * widths, axis=2)], axis=2)
        j = (at_knots <= values[..., None]).sum(axis=2) - 1             # the time's interval
        start = np.r_[0.0, self.knots][j]
        below = np.take_along_axis(at_knots, j[..., None], 2)[..., 0]
        return start + (values - below) / np.take_along_axis(rate, j[..., None], 2)[..., 0]


def _entered(events: SubjectEvents) -> np.ndarray:
    """Positions of the subjects with delayed entry (T0_i > 0) and event information."""
    if events.entry is None:
        return np.zeros(0, dtype=int)
    return np.flatnonzero((events.entry > 0) & (events.cause >= 0))


def _regularised_step(grad: np.ndarray, hess: np.ndarray) -> np.ndarray:
    """The Newton step -H^-1 g, with H shifted to be negative definite where it is not
    (a Levenberg step: still an ascent direction); 0 where the sums are not finite."""
    m = grad.shape[-1]
    finite = np.isfinite(grad).all(axis=-1) & np.isfinite(hess).all(axis=(-2, -1))
    grad = np.where(finite[..., None], grad, 0.0)
    hess = np.where(finite[..., None, None], hess, -np.eye(m))
    vals = np.linalg.eigvalsh(hess)
    shift = np.maximum(vals.max(axis=-1) + 1e-8 * (1 + np.abs(vals).max(axis=-1)), 0.0)
    step = np.linalg.solve(-(hess - shift[..., None, None] * np.eye(m)), grad[..., None])[..., 0]
    # a direction the data hardly inform (an interval without events or exposure among an
    # expert's subjects) would get a huge step: at most MAX_STEP per coordinate
    size = np.abs(step).max(axis=-1, keepdims=True)
    return step * np.minimum(1.0, MAX_STEP / np.maximum(size, 1e-300))


#: the largest change of a hazard coefficient in one Newton step (a factor e^5 in a hazard)
MAX_STEP = 5.0


def event_sums(block, cache, hazards: Hazards, coef: np.ndarray,
               causes: np.ndarray | None = None):
    """Block function: the weighted sums of :meth:`Hazards.weighted_sums` of the
    block's subjects, weighted by the E-step's posterior (times the subjects' weights), and
    under delayed entry the ghosts' term (:meth:`Hazards.ghost_sums`, weighted by the
    E-step's expected ghosts), added to every cause of its expert."""
    value, grad, hess = hazards.weighted_sums(block.events, coef, cache.weighted_tau)
    ghosts = getattr(cache, "ghost_weights", None)
    if ghosts is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            g_value, g_grad, g_hess = hazards.ghost_sums(block.events, coef, ghosts, causes)
        value, grad, hess = value + g_value[:, None], grad + g_grad, hess + g_hess
    return value, grad, hess


def event_totals(block, cache):
    """Block function: posterior-weighted events of each cause (K, C) and follow-up time (K,)
    of the block's subjects."""
    ev = block.events
    w = cache.weighted_tau * (ev.cause >= 0)[:, None]
    return w.T @ ev.indicators, w.T @ ev.at_risk_time


def newton_m_step(blocks, caches, hazards: Hazards, coef: np.ndarray,
                  max_iter: int = 25, tol: float = 1e-10, entry: bool = False) -> np.ndarray:
    """Maximise sum_i tau_ik log f(T_i, d_i | k) over every expert's coefficients from
    ``coef`` (K, C * (r + 1)), each (expert, cause) by its own Newton iterations with step
    halving (a pass over the blocks per iteration; the passes are cheap: no trajectory data).
    Never decreases the objective of any (expert, cause).

    ``entry``: the data have delayed entry, and the objective has the ghosts' term
    sum_i g_ik log(1 - S_k(T0_i)) (:mod:`pymemoe.families.joint`), which couples an
    expert's causes through S_k: the causes then move one at a time, the others held
    (block coordinate ascent), so each accepted step still increases the objective; one
    Newton step per cause and M-step (a generalised EM step: the next E-step moves the
    weights anyway; the benchmark's fits with two causes took 30-45% less time than iterating
    each cause to convergence, ``python benchmarks/bench_joint.py --entry``)."""
    C = hazards.n_causes
    newton = _newton_tied if hazards.tied.any() else _newton_causes
    if not entry or C == 1:
        return newton(blocks, caches, hazards, coef, np.ones(C, dtype=bool), max_iter, tol)
    for c in range(C):
        coef = newton(blocks, caches, hazards, coef, np.arange(C) == c, 1, tol)
    return coef


class TiedSystem:
    """The Newton system of one cause when some of its coefficients are common to all
    experts (``Hazards.tied_per_cause``): the unknowns of cause c are each expert's own
    coefficients, then the common ones, phi_c = (own_1, ..., own_K, common). The objective is
    the sum over experts, so its gradient in the common coefficients is the sum of the
    experts' and its Hessian has the experts' own blocks on the diagonal, their cross terms
    with the common ones, and the sum of their common blocks."""

    def __init__(self, hazards: Hazards, n_experts: int) -> None:
        self.tied = hazards.tied_per_cause
        self.free = ~self.tied
        self.K, self.C, self.m = n_experts, hazards.n_causes, hazards.n_per_cause
        self.n_own = int(self.free.sum())
        self.size = self.K * self.n_own + int(self.tied.sum())

    def pack(self, coef: np.ndarray) -> np.ndarray:
        """(K, C, m) coefficients -> (C, size) unknowns (the common ones from expert 1)."""
        own = np.swapaxes(coef[:, :, self.free], 0, 1).reshape(self.C, -1)
        return np.concatenate([own, coef[0][:, self.tied]], axis=1)

    def unpack(self, phi: np.ndarray) -> np.ndarray:
        """(C, size) unknowns -> (K, C, m) coefficients."""
        out = np.empty((self.K, self.C, self.m))
        own = phi[:, :self.K * self.n_own].reshape(self.C, self.K, self.n_own)
        out[:, :, self.free] = np.swapaxes(own, 0, 1)
        out[:, :, self.tied] = phi[None, :, self.K * self.n_own:]
        return out

    def sums(self, value: np.ndarray, grad: np.ndarray, hess: np.ndarray):
        """Per-(expert, cause) sums (K, C), (K, C, m), (K, C, m, m) -> the cause's objective
        (C,), gradient (C, size) and Hessian (C, size, size)."""
        f, t = self.free, self.tied
        n, common = self.n_own, slice(self.K * self.n_own, None)
        g = np.concatenate([np.swapaxes(grad[:, :, f], 0, 1).reshape(self.C, -1),
                            grad[:, :, t].sum(axis=0)], axis=1)
        h = np.zeros((self.C, self.size, self.size))
        h[:, common, common] = hess[:, :, t][..., t].sum(axis=0)
        for k in range(self.K):          # loops over experts, not subjects
            own = slice(k * n, (k + 1) * n)
            h[:, own, own] = hess[k][:, f][..., f]
            h[:, own, common] = hess[k][:, f][..., t]
            h[:, common, own] = np.swapaxes(h[:, own, common], 1, 2)
        return value.sum(axis=0), g, h


def _newton_tied(blocks, caches, hazards: Hazards, coef: np.ndarray, movable: np.ndarray,
                 max_iter: int, tol: float) -> np.ndarray:
    """Newton's iterations of :func:`newton_m_step` when some coefficients are common to all
    experts: each cause's unknowns (:class:`TiedSystem`) move together, with step halving on
    the cause's objective summed over the experts; the causes ``movable`` (C,) only."""
    K = coef.shape[0]
    system = TiedSystem(hazards, K)
    current = coef.reshape(K, hazards.n_causes, hazards.n_per_cause).copy()

    def evaluate(per):
        return system.sums(*blocks.reduce(event_sums, caches, hazards, per.reshape(K, -1),
                                          movable))

    value, grad, hess = evaluate(current)
    if not np.isfinite(value[movable]).all():
        # overflowing hazards (an extreme start): the pooled exponential fit of the experts
        # (the same for all of them, so the common coefficients stay common)
        events, time = blocks.reduce(event_totals, caches)
        rate = np.log(np.maximum(events.sum(axis=0), 0.5) / max(time.sum(), 1e-300))   # (C,)
        fallback = np.broadcast_to(hazards.rate_coefficients(rate), current.shape).copy()
        lost = ~np.isfinite(value) & movable
        fallback = np.where(lost[None, :, None], fallback, current)
        f_value, f_grad, f_hess = evaluate(fallback)
        take = lost & np.isfinite(f_value)
        current = np.where(take[None, :, None], fallback, current)
        value = np.where(take, f_value, value)
        grad = np.where(take[:, None], f_grad, grad)
        hess = np.where(take[:, None, None], f_hess, hess)
    phi = _damped_newton(lambda x: evaluate(system.unpack(x)), system.pack(current),
                         (value, grad, hess), movable, max_iter, tol)
    return system.unpack(phi).reshape(K, -1)


def _damped_newton(evaluate, x: np.ndarray, sums: tuple, movable: np.ndarray,
                   max_iter: int, tol: float) -> np.ndarray:
    """Newton's iterations on independent units (the leading axes of ``x`` (..., d), each
    its own objective), with the Levenberg-shifted step (:func:`_regularised_step`) halved
    per unit until its objective does not decrease; ``evaluate(x)`` returns the objectives
    (...), gradients (..., d) and Hessians (..., d, d), ``sums`` those at ``x``; only the
    units ``movable`` move. Never decreases any unit's objective."""
    value, grad, hess = sums
    for _ in range(max_iter):
        step = _regularised_step(grad, hess)
        active = np.array(movable, dtype=bool, copy=True)
        factor = np.ones(active.shape)
        accepted = np.zeros(active.shape, dtype=bool)
        new_value, new_grad, new_hess = value, grad, hess
        for _ in range(30):                          # step halving, all units at once
            trial = x + np.where(active, factor, 0.0)[..., None] * step
            t_value, t_grad, t_hess = evaluate(trial)
            ok = active & np.isfinite(t_value) & (t_value >= value - 1e-12 * np.abs(value))
            new_value = np.where(ok, t_value, new_value)
            new_grad = np.where(ok[..., None], t_grad, new_grad)
            new_hess = np.where(ok[..., None, None], t_hess, new_hess)
            x = np.where(ok[..., None], trial, x)
            accepted |= ok
            active &= ~ok
            if not active.any():
                break
            factor = np.where(active, factor / 2.0, factor)
        gain = new_value - value
        value, grad, hess = new_value, new_grad, new_hess
        if not accepted.any() or np.all(gain <= tol * (1.0 + np.abs(value))):
            break
    return x


def _newton_causes(blocks, caches, hazards: Hazards, coef: np.ndarray, movable: np.ndarray,
                   max_iter: int, tol: float) -> np.ndarray:
    """Newton's iterations of :func:`newton_m_step` on the causes ``movable`` (C,) of every
    expert, the other causes held."""
    K = coef.shape[0]
    C, m = hazards.n_causes, hazards.n_per_cause
    current = coef.reshape(K, C, m).copy()

    def evaluate(per):
        return blocks.reduce(event_sums, caches, hazards, per.reshape(K, -1), movable)

    value, grad, hess = evaluate(current)
    lost = ~np.isfinite(value)
    if lost.any():
        # hazards that overflow for subjects of the expert (an extreme start): the weighted
        # exponential fit of each such (expert, cause) instead, an increase from -inf
        events, time = blocks.reduce(event_totals, caches)
        rate = np.log(np.maximum(events, 0.5) / np.maximum(time, 1e-300)[:, None])   # (K, C)
        fallback = np.where(lost[..., None], hazards.rate_coefficients(rate), current)
        f_value, f_grad, f_hess = evaluate(fallback)
        take = lost & np.isfinite(f_value) & movable
        current = np.where(take[..., None], fallback, current)
        value = np.where(take, f_value, value)
        grad = np.where(take[..., None], f_grad, grad)
        hess = np.where(take[..., None, None], f_hess, hess)
    current = _damped_newton(evaluate, current, (value, grad, hess),
                             np.broadcast_to(movable, (K, C)), max_iter, tol)
    return current.reshape(K, -1)
