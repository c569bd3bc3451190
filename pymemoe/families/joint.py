r"""Joint experts: a trajectory model and a time-to-event model, independent given the expert.

The joint latent class model (Proust-Lima et al.; lcmm's ``Jointlcmm``) makes each expert a
product of conditionally independent outcome models: given expert k, subject i's measurements
y_i and its follow-up (T_i, d_i) are independent, so

    f(y_i, T_i, d_i | k) = f(y_i | k) f(T_i, d_i | k),
    loglik = sum_i log sum_k pi_ik(gamma) f(y_i | k) f(T_i, d_i | k).

:class:`JointFamily` is that product, written to the family contract of
:mod:`pymemoe.families.base`: the trajectory family (Gaussian, binomial or Poisson experts)
and the hazards (:class:`pymemoe.families.events.Hazards`: Weibull, piecewise constant or
M-splines) each own their log-densities, gradients and M-step; the joint family adds the log-densities, places the
gradients side by side and runs both M-steps (each maximises its own part of the expected
complete-data log-likelihood, so their pair maximises the sum). The EM driver, the polish, the
inference and the executors see one family and do not change.

**Coefficients.** The hazards' coefficients are expert-specific fixed effects of the model's
structure: each expert's coefficient vector is

    [ trajectory's expert-specific columns | hazards' coefficients | shared columns ]

so the parameter vector, its labels (``"event: age"``, ``"death: log(shape)"``), the polish,
the standard errors and the Wald tests cover them with no code of their own.

**Subjects without event information** (new subjects of a prediction, whose follow-up is not
known) have f(T_i, d_i | k) = 1: their posterior rests on their trajectory alone, as lcmm's
``pprobY``.

The trajectory family's own passes (its M-step reductions) run on the trajectory half of each
block through :class:`TrajectoryBlocks`, so they need not know the product exists.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from .._design.events import SubjectEvents, hazard_design
from .._model.params import Params, Structure
from .._model.scales import DataSummary
from .base import CoefficientSection, ExpertFamily, ExpertGradients
from .events import (
    DEFAULT_PIECES,
    DEFAULT_SPLINE_PIECES,
    Hazards,
    PiecewiseHazards,
    TimeToEvent,
    WeibullHazards,
    newton_m_step,
)
from .spline_hazards import SplineHazards

__all__ = ["JointFamily", "JointData", "JointMoments", "TrajectoryBlocks", "make_hazards"]


@dataclass(frozen=True, eq=False)
class JointData:
    """A block of subjects of a joint model: the trajectory family's data (``base``) and the
    subjects' time-to-event data (``events``), in the block interface of
    :mod:`pymemoe._execution.blocks`."""

    base: object
    events: SubjectEvents
    joint_family: "JointFamily"
    known_class: np.ndarray | None = None
    subject_weights: np.ndarray | None = None
    class_prior: np.ndarray | None = None

    @property
    def family(self) -> "JointFamily":
        return self.joint_family

    @property
    def n_groups(self) -> int:
        return self.base.n_groups

    @property
    def exog_gate(self) -> np.ndarray:
        return self.base.exog_gate

    @property
    def subjects(self) -> pd.Index:
        return self.base.subjects

    @property
    def row_codes(self) -> np.ndarray:
        return self.base.row_codes

    @property
    def nobs(self) -> int:
        return self.base.nobs

    @property
    def k_gate(self) -> int:
        return self.base.k_gate

    def _per_subject(self, where) -> dict:
        return {name: None if getattr(self, name) is None else getattr(self, name)[where]
                for name in ("known_class", "subject_weights", "class_prior")}

    def subject_slice(self, start: int, stop: int) -> "JointData":
        sl = slice(start, stop)
        return JointData(base=self.base.subject_slice(start, stop), events=self.events.take(sl),
                         joint_family=self.joint_family, **self._per_subject(sl))

    def take(self, index: np.ndarray) -> "JointData":
        index = np.asarray(index)
        return JointData(base=self.base.take(index), events=self.events.take(index),
                         joint_family=self.joint_family, **self._per_subject(index))

    @classmethod
    def concatenate(cls, parts: "list[JointData]") -> "JointData":
        if len(parts) == 1:
            return parts[0]
        per_subject = {name: None if getattr(parts[0], name) is None
                       else np.concatenate([getattr(p, name) for p in parts])
                       for name in ("known_class", "subject_weights", "class_prior")}
        base = type(parts[0].base).concatenate([p.base for p in parts])
        return cls(base=base, events=SubjectEvents.concatenate([p.events for p in parts]),
                   joint_family=parts[0].joint_family, **per_subject)


@dataclass(frozen=True, eq=False)
class JointMoments:
    """The trajectory family's moments (``base``) and the time-to-event log-densities
    (``event_logdens``, (N, K)) of a block."""

    base: object
    event_logdens: np.ndarray

    @property
    def logdens(self) -> np.ndarray:
        """log f(y_i | k) + log f(T_i, d_i | k), (N, K)."""
        return self.base.logdens + self.event_logdens

    @property
    def trajectory_logdens(self) -> np.ndarray:
        """log f(y_i | k) alone (posteriors without the event information)."""
        return self.base.logdens

    @property
    def b_hat(self) -> np.ndarray:
        return self.base.b_hat

    @property
    def b_cov(self) -> np.ndarray:
        return self.base.b_cov

    @classmethod
    def concatenate(cls, parts: "list[JointMoments]") -> "JointMoments":
        if len(parts) == 1:
            return parts[0]
        base = type(parts[0].base).concatenate([p.base for p in parts])
        return cls(base=base, event_logdens=np.concatenate([p.event_logdens for p in parts]))


@dataclass(frozen=True)
class OnTrajectory:
    """A block function of the trajectory family run on the trajectory half of a joint block
    (a picklable object, so that it travels to Dask workers like a module-level function)."""

    fn: object

    def __call__(self, block, cache, *args):
        base_cache = (None if cache is None
                      else dataclasses.replace(cache, moments=cache.moments.base))
        return self.fn(block.base, base_cache, *args)


class TrajectoryBlocks:
    """The executor of a joint model's blocks as the trajectory family sees it: its block
    functions receive the trajectory data and moments of each block."""

    def __init__(self, blocks) -> None:
        self._blocks = blocks

    @property
    def n_groups(self) -> int:
        return self._blocks.n_groups

    def empty_caches(self) -> list:
        return self._blocks.empty_caches()

    def reduce(self, fn, caches: Sequence, *args):
        return self._blocks.reduce(OnTrajectory(fn), caches, *args)

    def map(self, fn, caches: Sequence, *args) -> list:
        return self._blocks.map(OnTrajectory(fn), caches, *args)

    def gather(self, fn, caches: Sequence, *args) -> list:
        return self._blocks.gather(OnTrajectory(fn), caches, *args)

    def concatenate(self, values):
        return self._blocks.concatenate(values)


#: the family attributes a joint family takes from its trajectory family
TRAJECTORY_ATTRIBUTES = ("name", "link", "continuous", "outcome_columns", "takes_offset",
                         "expert_mean_text", "em_tol", "search_subjects")


class JointFamily(ExpertFamily):
    """Experts that are a trajectory model times a time-to-event model (module docstring).

    Parameters
    ----------
    base : ExpertFamily
        The trajectory family (Gaussian, binomial or Poisson experts).
    survival : TimeToEvent
        The time-to-event specification, as the user gave it.
    hazards : Hazards
        The hazards, with the names of their design's columns and causes.
    k_shared : int
        Number of trajectory columns shared by all experts (``shared_formula``): they end
        every coefficient vector, after the hazards' coefficients.
    """

    observed_lines = True
    uses_warm_start = False
    has_events = True

    def __init__(self, base: ExpertFamily, survival: TimeToEvent, hazards: Hazards,
                 k_shared: int = 0):
        self.base = base
        self.survival = survival
        self.hazards = hazards
        self.k_shared = int(k_shared)
        for name in TRAJECTORY_ATTRIBUTES:      # what the trajectory family says of itself
            setattr(self, name, getattr(base, name))
        if base.may_separate:       # a GLMM trajectory can separate too (extreme_fits)
            self.separation_text = (f"{base.separation_text} (the trajectory), or "
                                    f"{JointFamily.separation_text} (the hazards)")

    def __repr__(self) -> str:
        return f"JointFamily({self.base!r}, {self.survival!r}, k_shared={self.k_shared})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, JointFamily) and self.base == other.base
                and self.survival == other.survival and self.hazards == other.hazards
                and self.k_shared == other.k_shared)

    def __hash__(self) -> int:
        return hash((type(self), self.survival, self.hazards, self.k_shared))

    @property
    def description(self) -> str:
        causes = ", ".join(self.hazards.cause_names)
        kind = {"weibull": "Weibull", "piecewise": "piecewise-constant",
                "splines": "M-spline"}[self.survival.hazard]
        entry = "" if self.survival.entry is None else f", entry {self.survival.entry!r}"
        relation = {"specific": "", "proportional": " proportional across experts",
                    "common": " with a common baseline"}[self.survival.hazardtype]
        return (f"{self.base.description} + {kind} hazards{relation} of {causes} (time "
                f"{self.survival.time!r}, event {self.survival.event!r}{entry})")

    # -- where the hazards' coefficients sit ------------------------------------------------

    def hazard_positions(self, n_columns: int) -> np.ndarray:
        """Where each of the hazards' coefficients (their order, (n_coef,)) sits in a
        coefficient vector of ``n_columns``: the experts' own after the trajectory's
        expert-specific columns, those common to all experts (``Hazards.tied``) last, after
        the trajectory's shared columns (shared columns of the structure)."""
        tied = self.hazards.tied
        n_tied = int(tied.sum())
        start = n_columns - self.hazards.n_coef - self.k_shared
        out = np.empty(tied.size, dtype=int)
        out[~tied] = start + np.arange(tied.size - n_tied)
        out[tied] = n_columns - n_tied + np.arange(n_tied)
        return out

    def trajectory_positions(self, n_columns: int) -> np.ndarray:
        """Where the trajectory's coefficients sit in a coefficient vector of ``n_columns``
        (the complement of :meth:`hazard_positions`, in order)."""
        taken = np.zeros(n_columns, dtype=bool)
        taken[self.hazard_positions(n_columns)] = True
        return np.flatnonzero(~taken)

    def trajectory_structure(self, structure: Structure) -> Structure:
        """The structure of the trajectory model alone."""
        names = structure.exog_names
        keep = self.trajectory_positions(len(names))
        return dataclasses.replace(structure, exog_names=tuple(names[j] for j in keep),
                                   k_shared=structure.k_shared - int(self.hazards.tied.sum()))

    def trajectory_params(self, params: Params) -> Params:
        """The trajectory model's parameters of ``params`` (without the hazards' columns)."""
        return self._split(params)[0]

    def _split(self, params: Params) -> tuple[Params, np.ndarray]:
        """The trajectory's parameters and the hazards' coefficients (K, n) of ``params``."""
        beta = params.beta
        traj = beta[:, self.trajectory_positions(beta.shape[1])]
        return (dataclasses.replace(params, beta=traj),
                beta[:, self.hazard_positions(beta.shape[1])])

    def _join(self, traj: np.ndarray, event: np.ndarray) -> np.ndarray:
        """Coefficients (or their gradients) on the last axis, (..., p), from the
        trajectory's (..., p_t) and the hazards' (..., n): the inverse of :meth:`_split`."""
        p = traj.shape[-1] + event.shape[-1]
        out = np.empty(np.broadcast_shapes(traj.shape[:-1], event.shape[:-1]) + (p,))
        out[..., self.trajectory_positions(p)] = traj
        out[..., self.hazard_positions(p)] = event
        return out

    # -- the model's options and input ------------------------------------------------------

    def scale_structure(self, scale: str) -> str:
        return self.base.scale_structure(scale)

    def structure_options(self, structure) -> dict:
        return {**self.base.structure_options(structure), "survival": self.survival}

    def check_outcome(self, endog, trials, exog, outcome, formula=None, rows=None) -> None:
        self.base.check_outcome(endog, trials, exog, outcome, formula, rows)

    def check_random_effects(self, n_random_effects: int) -> None:
        self.base.check_random_effects(n_random_effects)

    def re_scale(self, params: Params) -> np.ndarray:
        return self.base.re_scale(self._split(params)[0])

    # -- the fit ----------------------------------------------------------------------------

    def make_data(self, endog, exog, exog_re, exog_gate, groups, *, trials=None, offset=None,
                  weights=None, events: SubjectEvents | None = None):
        """The trajectory family's data with the subjects' events (``events``, in the order of
        the data's subjects); without them, subjects without event information."""
        base = self.base.make_data(endog, exog, exog_re, exog_gate, groups, trials=trials,
                                   offset=offset, weights=weights)
        if events is None:
            events = SubjectEvents.unknown(base.n_groups, self.hazards.exog_names,
                                           self.hazards.cause_names)
        return JointData(base=base, events=events, joint_family=self)

    def moments(self, data, params: Params, warm=None) -> JointMoments:
        traj, coef = self._split(params)
        base = self.base.moments(data.base, traj, None if warm is None else warm.base)
        return JointMoments(base=base, event_logdens=self.hazards.logdens(data.events, coef))

    def gradients(self, data, params: Params, moments: JointMoments) -> ExpertGradients:
        traj, coef = self._split(params)
        grads = self.base.gradients(data.base, traj, moments.base)
        beta = self._join(grads.beta, self.hazards.gradients(data.events, coef))
        return ExpertGradients(beta=beta, cov=grads.cov, scale=grads.scale)

    @property
    def has_entry(self) -> bool:
        """Delayed entry (``TimeToEvent(entry=...)``): the likelihood is conditioned on being
        event-free at entry (:mod:`pymemoe._model.likelihood`)."""
        return self.survival.entry is not None

    def entry_logsurv(self, data, params: Params) -> np.ndarray | None:
        if data.events.entry is None:
            return None
        return self.hazards.log_entry_survival(data.events, self._split(params)[1])

    def entry_gradients(self, data, params: Params) -> np.ndarray:
        """d log S_k(T0_i) on the coefficient vectors: the hazards' columns only."""
        traj, coef = self._split(params)
        grad = self.hazards.entry_gradients(data.events, coef)
        N, K = grad.shape[:2]
        return self._join(np.zeros((N, K, traj.beta.shape[1])), grad)

    def hessian_sums(self, data, params: Params, moments: JointMoments,
                     tau: np.ndarray) -> np.ndarray | None:
        """The trajectory family's closed-form Hessians and the hazards' (Newton's sums of
        :meth:`~pymemoe.families.events.Hazards.weighted_sums`) in one natural
        coordinate system: the hazards' coefficients among the betas; no cross terms (the two
        outcome models share no parameter). None when the trajectory family has no closed
        form (the inference then differences the gradients)."""
        if not self.base.has_hessian_sums:
            return None
        traj, coef = self._split(params)
        base = self.base.hessian_sums(data.base, traj, moments.base, tau)
        if base is None:
            return None
        _, _, h_events = self.hazards.weighted_sums(data.events, coef, tau)   # (K, C, m, m)
        n = self.hazards.n_coef
        p_traj = traj.beta.shape[1]
        n_base = base.shape[1]
        # where each of the trajectory's natural coordinates sits in the joint ones: its
        # betas among the joint betas, the covariance and scale after them
        where = np.arange(n_base) + n
        where[:p_traj] = self.trajectory_positions(p_traj + n)
        out = np.zeros((base.shape[0], n_base + n, n_base + n))
        out[:, where[:, None], where[None, :]] = base
        m = self.hazards.n_per_cause
        positions = self.hazard_positions(p_traj + n)
        for c in range(self.hazards.n_causes):     # loops over causes, not subjects
            cols = positions[c * m + np.arange(m)]
            out[:, cols[:, None], cols[None, :]] = h_events[:, c]
        return out

    def e_sums(self, data, params: Params, moments: JointMoments, tau: np.ndarray):
        traj, _ = self._split(params)
        return self.base.e_sums(data.base, traj, moments.base, tau)

    def m_step(self, blocks, caches: Sequence, structure: Structure, params: Params, e_sums,
               summary: DataSummary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The trajectory family's M-step on its half, then Newton's method on the hazards
        (:func:`pymemoe.families.events.newton_m_step`); each maximises its own term of the
        expected complete-data log-likelihood."""
        traj, coef = self._split(params)
        beta_t, cov, scale = self.base.m_step(TrajectoryBlocks(blocks), caches,
                                              self.trajectory_structure(structure), traj,
                                              e_sums, summary)
        new_coef = newton_m_step(blocks, caches, self.hazards, coef, entry=self.has_entry)
        return self._join(beta_t, new_coef), cov, scale

    def summary(self, blocks) -> DataSummary:
        return self.base.summary(TrajectoryBlocks(blocks))

    def llf_bound(self, summary: DataSummary) -> float:
        return np.inf       # the hazards' densities are not bounded above

    def one_expert_start(self, blocks, structure: Structure, summary: DataSummary) -> Params:
        traj = self.base.one_expert_start(TrajectoryBlocks(blocks),
                                          self.trajectory_structure(structure), summary)
        events = SubjectEvents.concatenate(blocks.gather(_events_of_block, blocks.empty_caches()))
        return dataclasses.replace(traj, beta=self._join(traj.beta, self.hazards.start(events)))

    def subject_coefficients(self, data, k_mix: int) -> np.ndarray:
        """The trajectory family's per-subject coefficients, and for the hazards the log of
        (events + 1/2) over follow-up time in the baseline's rate columns (other columns 0),
        so that the starts separate subjects by their risk as well as their trajectories."""
        n_own = int((~self.hazards.tied).sum())
        traj = self.base.subject_coefficients(data.base, k_mix - n_own)
        ev = data.events
        per = self.hazards.rate_coefficients(np.log((ev.indicators + 0.5)
                                                    / ev.at_risk_time[:, None]))
        return np.concatenate([traj, per.reshape(per.shape[0], -1)], axis=1)

    # -- degenerate hazards ------------------------------------------------------------------

    #: an expert's hazard of a cause can run to 0 (a cause without events among its subjects)
    #: or concentrate on a single event (the likelihood is then unbounded): the separation check
    may_separate = True
    separation_text = ("a cumulative hazard beyond e^25 or below e^-25 at its subjects' "
                       "follow-up times: a cause with no or a single event among them")

    def coefficient_boundary(self, params: Params) -> np.ndarray | None:
        """The hazards' coefficients at a boundary (``Hazards.at_zero``) in their columns."""
        coef = self._split(params)[1]
        at = self.hazards.at_zero(coef)
        if not at.any():
            return None
        out = np.zeros(params.beta.shape, dtype=bool)
        out[:, self.hazard_positions(params.beta.shape[1])] = at
        return out

    def extreme_fits(self, data, params: Params, tau: np.ndarray):
        """The largest absolute log cumulative hazard, abs(log H_kc(T_i)), over the subjects
        that expert k most likely holds, and the largest hazard coefficient of that cause (its
        position in the coefficient vector); the trajectory family's own check where it is
        larger."""
        traj, coef = self._split(params)
        base_value, base_term = self.base.extreme_fits(data.base, traj, tau)
        ev = data.events
        log_cum = self.hazards.log_cumulative(ev, coef)                 # (N, K, C)
        held = (tau > 0.5) & (ev.cause >= 0)[:, None]
        size = np.where(held[..., None], np.abs(log_cum), 0.0)
        size = np.where(np.isnan(size), np.inf, size)
        K = tau.shape[1]
        value, term = np.zeros(K), np.zeros(K, dtype=int)
        per = self.hazards.per_cause(coef)                              # (K, C, m)
        p = traj.beta.shape[1] + self.hazards.n_coef
        positions = self.hazard_positions(p)
        if size.shape[0]:
            value = size.max(axis=(0, 2))
            for k in range(K):           # loops over experts, not subjects
                c = int(size[:, k].max(axis=0).argmax())
                j = int(np.abs(per[k, c]).argmax())
                term[k] = positions[c * self.hazards.n_per_cause + j]
        base_term = self.trajectory_positions(p)[base_term]
        use_base = base_value >= value
        return np.where(use_base, base_value, value), np.where(use_base, base_term, term)

    # -- the hazards in results -------------------------------------------------------------

    def coefficient_sections(self, structure) -> tuple[CoefficientSection, ...]:
        """The hazards' coefficients; their covariates' effects are log hazard ratios."""
        terms = tuple(self.hazards.coef_names())
        ratios = self.hazards.ratio_terms()
        return (CoefficientSection(title="time to event", terms=terms, ratio_terms=ratios,
                                   ratio_name="hazard ratio"),)

    def outcome_counts(self, data, tau: np.ndarray) -> pd.DataFrame:
        """Posterior-weighted events of each cause and person-time per expert: sum_i
        tau_ik [d_i = c] and sum_i tau_ik (T_i - T0_i) (T0_i the entry time, 0 without
        delayed entry; subjects without event information count for nothing)."""
        ev = data.events
        w = tau * (ev.cause >= 0)[:, None]
        events = w.T @ ev.indicators                                    # (K, C)
        out = {f"events: {name}": events[:, c]
               for c, name in enumerate(self.hazards.cause_names)}
        out["person-time"] = w.T @ ev.at_risk_time
        return pd.DataFrame(out, index=pd.RangeIndex(1, tau.shape[1] + 1, name="expert"))

    def event_curves(self, params, exog, times, n_grid: int = 4000):
        return self.hazards.curves(self._split(params)[1], np.asarray(exog, dtype=float),
                                   np.asarray(times, dtype=float), n_grid=n_grid)

    def event_logdens_after(self, params, exog, time, cause, landmark):
        coef = self._split(params)[1]
        exog = np.asarray(exog, dtype=float)
        time = np.asarray(time, dtype=float)
        with np.errstate(over="ignore"):
            spent = (self.hazards.cumulative_at(exog, time, coef)
                     - self.hazards.cumulative_at(exog, np.full(time.shape, float(landmark)),
                                                  coef)).sum(axis=2)
        indicators = (np.asarray(cause)[:, None] == np.arange(1, self.hazards.n_causes + 1))
        log_rate = np.where(indicators[:, None, :],
                            self.hazards.log_rates_at(exog, time, coef), 0.0).sum(axis=2)
        return log_rate - spent

    def event_data(self, data) -> SubjectEvents:
        return data.events

    def event_exog(self, data, groups, fitted_groups, subjects):
        """The hazards' design of ``subjects`` from ``data`` (its formula evaluated per
        subject); a ValueError names a subject whose covariates are missing."""
        formula, common = self.survival.formula, self.survival.common_formula
        exog, names, _ = hazard_design(formula, common, data, groups, fitted_groups, subjects)
        if tuple(names) != self.hazards.exog_names:
            raise ValueError(f"the survival formula {formula!r} gives the columns "
                             f"{names} on these data, not those of the fit "
                             f"{list(self.hazards.exog_names)} (a category absent here?)")
        return exog

    def simulate_events(self, params, data, expert, rng):
        """Each cause's latent time H_kc^-1(E_c | x_i), E_c ~ Exp(1), under the subject's
        expert; the event is the first of them (cause-specific hazards). Under delayed entry,
        H_kc^-1(H_kc(T0_i) + E_c): the latent times given all of them beyond T0_i, that is
        the subject event-free at entry."""
        _, coef = self._split(params)
        ev = data.events
        draws = -np.log(rng.random((ev.time.shape[0], self.hazards.n_causes)))
        if ev.entry is not None:
            at_entry = self.hazards.entry_cumulative(ev, coef)          # (N, K, C)
            draws = draws + at_entry[np.arange(draws.shape[0]), expert]
        latent = self.hazards.inverse_cumulative(coef, ev.exog, expert, draws)   # (N, C)
        return latent.min(axis=1), latent.argmin(axis=1) + 1

    def independence_scores(self, data, params, moments, tau):
        """U_i = sum_k tau_ik (delta_ic - H_kc(T_i)) b_hat_ik for each cause c: with the
        hazards extended to exp(x' theta_kc + eta_c' b_i), the derivative of subject i's
        log-likelihood in eta_c at eta = 0 (there the events do not depend on b_i, so the
        posterior mean of b_i given expert k is the trajectory's b_hat_ik; for binomial and
        Poisson trajectories b_hat_ik is the posterior mode, the Laplace approximation of
        that mean), (N, C q)."""
        _, coef = self._split(params)
        residual = self.hazards.martingale(data.events, coef)          # (N, K, C)
        b_hat = np.asarray(moments.b_hat)                               # (N, K, q)
        scores = np.einsum("nk,nkc,nkq->ncq", tau, residual, b_hat)
        return scores.reshape(scores.shape[0], -1)

    def trajectory_logdens(self, moments: JointMoments) -> np.ndarray:
        return moments.trajectory_logdens

    # -- prediction, model checking, simulation (the trajectory's) ----------------------------

    def expert_means(self, params, exog, exog_re, offset):
        return self.base.expert_means(self._split(params)[0], exog, exog_re, offset)

    def conditional_means(self, data, moments, params, exog, exog_re, offset, subject):
        return self.base.conditional_means(data.base, moments.base, self._split(params)[0],
                                           exog, exog_re, offset, subject)

    def predictive_variances(self, params, rows, means, posterior=None, trials=None):
        return self.base.predictive_variances(self._split(params)[0], rows, means, posterior,
                                              trials)

    def expert_residuals(self, rows, endog, params, b_hat, codes, standardize):
        return self.base.expert_residuals(rows, endog, self._split(params)[0], b_hat, codes,
                                          standardize)

    def simulate_outcome(self, rows, params, expert, b, rng, errors="normal", df=3.0):
        return self.base.simulate_outcome(rows, self._split(params)[0], expert, b, rng,
                                          errors, df)

    def response_label(self, name: str, two_columns: bool = False) -> str:
        return self.base.response_label(name, two_columns)


def _events_of_block(block, cache) -> SubjectEvents:
    """Block function: the block's events (brought to the caller for the start)."""
    return block.events


def make_hazards(survival: TimeToEvent, events: SubjectEvents) -> Hazards:
    """The hazards of ``survival`` for these subjects' events (a piecewise hazard's knots at
    quantiles of their event times when not given)."""
    common = dict(hazardtype=survival.hazardtype, common_names=events.common_names)
    if survival.hazard == "weibull":
        return WeibullHazards(exog_names=events.exog_names, cause_names=events.cause_names,
                              **common)
    default = DEFAULT_PIECES if survival.hazard == "piecewise" else DEFAULT_SPLINE_PIECES
    knots = survival.knots if survival.knots is not None else default
    if isinstance(knots, int):
        times = events.time[events.cause > 0]
        knots = tuple(np.unique(np.quantile(times, np.arange(1, knots) / knots)))
    knots = tuple(float(k) for k in knots)
    if survival.hazard == "piecewise":
        return PiecewiseHazards(exog_names=events.exog_names, cause_names=events.cause_names,
                                knots=knots, **common)
    upper = float(events.time.max())
    if knots and knots[-1] >= upper:
        raise ValueError(f"TimeToEvent: the spline knots {knots} must be below the largest "
                         f"follow-up time {upper:g}")
    return SplineHazards(exog_names=events.exog_names, cause_names=events.cause_names,
                         knots=knots, upper=upper, **common)
