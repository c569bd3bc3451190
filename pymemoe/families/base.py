r"""The expert-family contract: everything pymemoe knows of what an expert is.

An *expert family* is one object per kind of outcome model (Gaussian linear mixed models;
binomial and Poisson generalised linear mixed models; any other written to this contract).
Code outside ``pymemoe.families`` never tests a family by name: it asks the family. The
contract has four parts.

**The fit.** Vectorised over the subjects of a *block* (see :mod:`pymemoe._execution.blocks`),
the family gives

* its data from row arrays (:meth:`ExpertFamily.make_data`), with the block interface
  (``n_groups``, ``exog_gate``, ``subjects``, ``row_codes``, ``subject_slice``, ``take``,
  ``family``, and the optional per-subject fields ``known_class``, ``class_prior`` and
  ``subject_weights``, None by default, that ``subject_slice`` and ``take`` keep: the model
  sets them for known experts, fixed priors and a weighted fit);
* the log-density of each subject's data under each expert, log f(y_i | k), with the
  conditional modes and covariances of the random effects (:meth:`ExpertFamily.moments`;
  exact for Gaussian experts, Laplace or adaptive Gauss-Hermite for GLMMs);
* the gradients of log f(y_i | k) with respect to beta_k, D_k (a symmetric matrix gradient G
  with d log f = tr(G dD_k)) and sigma2_k (:meth:`ExpertFamily.gradients`), which the
  likelihood maps to the parameter vectors (:func:`pymemoe._model.params.chain_gradient`),
  and optionally their closed-form second derivatives (:meth:`ExpertFamily.hessian_sums`);
* the posterior-weighted M-step of its parameters (:meth:`ExpertFamily.m_step`), which runs
  its own passes over the blocks and must not decrease sum_ik tau_ik log f(y_i | k) (its sums
  weight subject i by ``cache.weighted_tau``, the posterior times the subject's weight);
* starts (:meth:`ExpertFamily.one_expert_start`, :meth:`ExpertFamily.subject_coefficients`,
  and :meth:`ExpertFamily.search_family`, a cheaper approximation for the start search),
  the data's scales (:meth:`ExpertFamily.summary`), a bound on the log-likelihood and the
  scale against which a random-effect variance counts as 0 (:meth:`ExpertFamily.re_scale`).

**The model's options and input.** The outcome's values (:meth:`ExpertFamily.check_outcome`),
how many outcome columns a formula may have (``outcome_columns``), whether an offset is taken
(``takes_offset``), how the ``scale`` option maps onto the model's structure
(:meth:`ExpertFamily.scale_structure`, :meth:`ExpertFamily.structure_options`), and limits on
the random effects (:meth:`ExpertFamily.check_random_effects`).

**Prediction, model checking and simulation.** Expert means of a new subject and of a subject
with a history, predictive variances, the link (:attr:`ExpertFamily.link`: the transform of
confidence intervals of predicted means), residuals under each expert
(:meth:`ExpertFamily.expert_residuals`), draws of new outcomes
(:meth:`ExpertFamily.simulate_outcome`), and the words and labels of figures and warnings
(:meth:`ExpertFamily.response_label`, ``expert_mean_text``, ``separation_text``,
``description``).

**Flags of what it supports**: ``continuous`` (the predictive law has a density: prediction
sets and prediction bands), ``sufficient_statistics`` (the data reduce to per-subject sums:
data read in chunks and on Dask workers), ``mean_is_linear`` (expert means are x' beta_k:
analytic gradients of predictions), ``may_separate``, ``uses_warm_start``,
``observed_lines`` (observed trajectories are worth drawing), and the EM tolerance and
start-search size that suit its cost.

The gating (multinomial logit, :mod:`pymemoe._model.gating`) is common to all families.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .._model.scales import DataSummary
from .links import Link

__all__ = ["ExpertFamily", "ExpertGradients", "CoefficientSection", "NO_EVENTS"]


#: the error of a time-to-event question asked of a model without a time-to-event part
NO_EVENTS = ("this model has no time-to-event part (build it with "
             "MEMoE.from_formula(..., survival=TimeToEvent(...)))")


@dataclass(frozen=True)
class CoefficientSection:
    """A group of each expert's coefficients that belongs to another outcome model than the
    trajectory (the hazards of a joint model): the summary prints it as its own section.

    Attributes
    ----------
    title : str                 the section's name, e.g. ``"time to event"``
    terms : tuple of str        its coefficients' terms (names in the structure)
    ratio_terms : tuple of str  the terms whose exponential is a ratio worth reporting
    ratio_name : str            what that ratio is, e.g. ``"hazard ratio"``
    """

    title: str
    terms: tuple[str, ...]
    ratio_terms: tuple[str, ...] = ()
    ratio_name: str = ""


@dataclass(frozen=True, eq=False)
class ExpertGradients:
    """Gradients of log f(y_i | k) with respect to the natural parameters of each expert.

    Attributes
    ----------
    beta : ndarray (N, K, p)
    cov : ndarray (N, K, q, q)   symmetric matrix gradient G_ik, d log f = tr(G dD_k)
    scale : ndarray (N, K) or None   d log f / d sigma2_k (None without residual variances)
    """

    beta: np.ndarray
    cov: np.ndarray
    scale: np.ndarray | None


class ExpertFamily(ABC):
    """Base class of expert families (see the module docstring for the contract)."""

    #: name used in summaries and by :func:`pymemoe.families.get_family`
    name: str = ""
    #: the link between an expert's mean and its linear predictor
    link: Link = Link()
    #: whether the predictive law of an observation has a density (prediction sets, bands)
    continuous: bool = False
    #: whether the data reduce to per-subject sums (data read in chunks, Dask workers)
    sufficient_statistics: bool = False
    #: whether the expert means are x' beta_k (so predictions have analytic gradients)
    mean_is_linear: bool = False
    #: numbers of outcome columns a formula may have (2: ``successes + failures``)
    outcome_columns: tuple[int, ...] = (1,)
    #: whether the linear predictor takes an offset (and an exposure)
    takes_offset: bool = False
    #: whether observed trajectories are worth drawing under the expert means
    observed_lines: bool = True
    #: the expert means, as the title of the fit plot names them
    expert_mean_text: str = "expert means E[y | expert k]"
    #: what a degenerate fit of an expert's rows is, for the separation warning
    separation_text: str = "a fitted mean at the edge of its range"
    #: whether :meth:`moments` uses ``warm`` (the previous moments of the block): passes that
    #: do not need the new caches otherwise then keep none (memory on the workers)
    uses_warm_start: bool = False
    #: default EM tolerance (relative change of the log-likelihood): EM runs to convergence when
    #: its M-step is exact and cheap; with an iterative M-step the quasi-Newton polish finishes
    #: sooner, so EM stops earlier
    em_tol: float = 1e-8
    #: subjects of the start search's subsample when there are more than twice as many
    #: (pymemoe._estimation.starts); families whose passes cost more per subject search on fewer
    search_subjects: int = 2_500
    #: whether the fixed effects can fit rows perfectly (separation; :meth:`extreme_fits`)
    may_separate: bool = False
    #: whether the experts also model a time to event (a joint family: :meth:`event_data`,
    #: :meth:`event_curves` and :meth:`simulate_events` answer)
    has_events: bool = False

    # -- the model's options and input ---------------------------------------------------------

    def scale_structure(self, scale: str) -> str:
        """The model structure's ``scale`` for the user's ``scale`` option (Gaussian experts:
        ``"expert"`` or ``"shared"``; a family without residual variances: ``"none"``), or a
        ValueError."""
        if scale != "expert":
            raise ValueError(f"scale={scale!r}: residual variances exist for Gaussian experts "
                             f"only (family={self.name!r} has none); leave scale at its default")
        return "none"

    def structure_options(self, structure) -> dict:
        """The ``from_formula`` keywords that rebuild ``structure``'s family-specific part
        (the inverse of :meth:`scale_structure`)."""
        return {}

    def check_outcome(self, endog: np.ndarray, trials: np.ndarray | None, exog: np.ndarray,
                      outcome: str, formula: str | None = None, rows=None) -> None:
        """A ValueError naming the outcome (``outcome``; ``formula`` when the model has one)
        and the first offending row (its label in ``rows``) for outcomes this family cannot
        model. ``exog`` is the full fixed-effects design."""

    def check_random_effects(self, n_random_effects: int) -> None:
        """A ValueError when the family cannot integrate this many random effects."""

    # -- the fit ---------------------------------------------------------------------------------

    @abstractmethod
    def make_data(self, endog, exog, exog_re, exog_gate, groups, *, trials=None, offset=None,
                  weights=None):
        """The family's data from row arrays (subjects sorted as
        :func:`pymemoe._design.subjects.subject_codes` sorts them), with the block interface
        (``n_groups``, ``exog_gate``, ``subjects``, ``row_codes``, ``subject_slice``, ``take``,
        ``family``). Rows with ``weights`` 0 do not enter the likelihood (future rows of a
        dynamic prediction); only 0/1 weights occur."""

    @abstractmethod
    def moments(self, data, params, warm=None):
        """Log-densities and random-effect moments of every (subject, expert) pair of a block.

        Returns an object with at least ``logdens`` (N, K), ``b_hat`` (N, K, q) and ``b_cov``
        (N, K, q, q), and a classmethod ``concatenate(list)`` joining blocks. ``warm`` is the
        previous moments of the same block (a warm start for iterative families).
        """

    @abstractmethod
    def gradients(self, data, params, moments) -> ExpertGradients:
        """Gradients of log f(y_i | k) at ``params`` (``moments`` computed there)."""

    def search_family(self) -> "ExpertFamily":
        """The family the default start search runs under (:mod:`pymemoe._estimation.starts`):
        this one (the default), or a cheaper approximation of the same model whose maxima lie
        in the same basins (the GLMM families' coarser quadrature). A family that returns
        another one has data with ``with_family(family)``: the same data under that family;
        the search's solutions are then finished under this family."""
        return self

    def e_sums(self, data, params, moments, tau: np.ndarray) -> Any:
        """Sums for the M-step that the E-step pass can form while the block's data are hot
        (default: none). Summed over blocks and handed to :meth:`m_step`."""
        return None

    @abstractmethod
    def m_step(self, blocks, caches: Sequence, structure, params, e_sums: Any,
               summary: DataSummary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """New (beta, cov_re, scale) from the E-step ``caches`` at ``params``; must not
        decrease sum_ik tau_ik log f(y_i | k)."""

    @abstractmethod
    def summary(self, blocks) -> DataSummary:
        """The :class:`~pymemoe._model.scales.DataSummary` of the data (one reduction over
        the blocks)."""

    @abstractmethod
    def one_expert_start(self, blocks, structure, summary: DataSummary):
        """Crude one-expert parameters (:class:`~pymemoe._model.params.Params` with K = 1)
        to start the one-expert fit from."""

    @abstractmethod
    def subject_coefficients(self, data, k_mix: int) -> np.ndarray:
        """Per-subject estimates of the expert-specific fixed effects, (N, k_mix): the points
        the k-means starts cluster."""

    def hessian_sums(self, data, params, moments, tau: np.ndarray) -> np.ndarray | None:
        """sum_i tau_ik d2 log f(y_i | k) / dnu dnu' per expert, (K, n_nu, n_nu), in the natural
        coordinates of :func:`pymemoe._model.params.natural_index`; None (the default) when
        the family has no closed form, and the inference then differences :meth:`gradients`."""
        return None

    @property
    def has_hessian_sums(self) -> bool:
        """Whether the family overrides :meth:`hessian_sums` (closed-form expert Hessians)."""
        return type(self).hessian_sums is not ExpertFamily.hessian_sums

    def llf_bound(self, summary: DataSummary) -> float:
        """An upper bound of the log-likelihood of any parameter value the fit can reach; a
        computed value above it is rounding garbage (e.g. Woodbury terms at a residual variance
        far below the random effects' scale) and the searches reject it. Default: +inf (the
        log-probabilities of discrete outcomes are below 0, but their Laplace approximations
        need not be)."""
        return np.inf

    def extreme_fits(self, data, params, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How close each expert's fixed effects push its own rows to a degenerate fit, for
        the separation warning: per expert (K,), the most extreme fixed-effects linear
        predictor over the rows of the subjects it most likely holds (tau_ik > 1/2), on the
        scale where beyond 25 the fitted mean is within e^-25 of the edge of its range, and
        the column of the term that contributes most to it. Default: zeros (no degenerate
        fit)."""
        K = params.n_experts
        return np.zeros(K), np.zeros(K, dtype=int)

    def coefficient_boundary(self, params) -> np.ndarray | None:
        """Which fixed effects (K, p) sit at a boundary of their range, where they have no
        interior derivative (a spline hazard's weight at 0: :mod:`pymemoe._model.boundary`
        holds them fixed); None (default) when the family has none."""
        return None

    def re_scale(self, params) -> np.ndarray:
        """The scale (K,) against which random-effect variances are judged (default: 1, the
        linear predictor's scale; Gaussian experts: the residual variance)."""
        return np.ones(params.n_experts)

    # -- other outcome models of an expert (joint models) -------------------------------------

    def coefficient_sections(self, structure) -> tuple[CoefficientSection, ...]:
        """The groups of coefficients of other outcome models than the trajectory (default:
        none; a joint family's hazards)."""
        return ()

    def outcome_counts(self, data, tau: np.ndarray) -> pd.DataFrame | None:
        """Posterior-weighted counts of the other outcome models per expert (a joint
        family: events of each cause and person-time), experts as rows; None (default)
        when the family has none."""
        return None

    def event_curves(self, params, exog: np.ndarray, times: np.ndarray, n_grid: int = 4000
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Survival (n, K, T) and cumulative incidence of each cause (n, K, C, T) of each
        expert at ``times`` for the rows ``exog`` (n, r) of the time-to-event design; a
        ValueError for a family without a time-to-event part (the default)."""
        raise ValueError(NO_EVENTS)

    def event_logdens_after(self, params, exog: np.ndarray, time: np.ndarray,
                            cause: np.ndarray, landmark: float) -> np.ndarray:
        """log of each expert's density of the follow-up (T_i, d_i) given event-free at
        ``landmark`` (< T_i): sum_c [d_i = c] log h_kc(T_i) - (H_k(T_i) - H_k(landmark)),
        (n, K), for the rows ``exog``; a ValueError without a time-to-event part (the
        default)."""
        raise ValueError(NO_EVENTS)

    def event_data(self, data):
        """The subjects' time-to-event data of ``data``
        (:class:`pymemoe._design.events.SubjectEvents`: times, causes, design and the names
        of its columns and of the causes); a ValueError without a time-to-event part (the
        default)."""
        raise ValueError(NO_EVENTS)

    def event_exog(self, data: pd.DataFrame, groups, fitted_groups, subjects: pd.Index
                   ) -> np.ndarray:
        """The time-to-event design of the subjects ``subjects`` (one row each), from the long
        frame ``data`` (new subjects of a prediction); a ValueError without a time-to-event
        part (the default)."""
        raise ValueError(NO_EVENTS)

    def simulate_events(self, params, data, expert: np.ndarray, rng: np.random.Generator
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Uncensored event times and causes (1..C) of the subjects of ``data`` drawn from
        their experts' hazards (``expert``, 0-based, one per subject); a ValueError without a
        time-to-event part (the default)."""
        raise ValueError(NO_EVENTS)

    def independence_scores(self, data, params, moments, tau: np.ndarray) -> np.ndarray:
        """Per-subject scores of the score test of conditional independence (a joint model:
        the derivative of the log-likelihood in eta at eta = 0, eta the effects of the random
        effects on the hazards), (N, C q); a ValueError without a time-to-event part (the
        default)."""
        raise ValueError(NO_EVENTS)

    #: whether the model's likelihood is conditioned on being event-free at a delayed entry
    #: (a joint model with ``TimeToEvent(entry=...)``): the E-step then subtracts
    #: log sum_k pi_ik S_k(T0_i) (:mod:`pymemoe._model.likelihood`), the hazards' M-step has
    #: the ghosts' term, and the observed information is the Jacobian of the exact score
    has_entry: bool = False

    def entry_logsurv(self, data, params) -> np.ndarray | None:
        """log S_k(T0_i), (N, K): each expert's log-probability that subject i is event-free
        at its entry time (delayed entry); None (default) when the model has no delayed
        entry."""
        return None

    def entry_gradients(self, data, params) -> np.ndarray:
        """d log S_k(T0_i) / d beta_k, (N, K, p), on the coefficient vectors of the experts
        (only called when :meth:`entry_logsurv` is not None)."""
        raise ValueError("this model has no delayed entry")

    def trajectory_logdens(self, moments) -> np.ndarray:
        """log f(y_i | k) of the trajectory alone, (N, K): the posterior without the other
        outcomes' information (lcmm's ``pprobY``). Default: the whole log-density."""
        return moments.logdens

    # -- prediction, model checking, simulation --------------------------------------------------

    @abstractmethod
    def expert_means(self, params, exog: np.ndarray, exog_re: np.ndarray,
                     offset: np.ndarray) -> np.ndarray:
        """E[y | expert k, covariates] of a new subject at each row, (n, K): the response
        mean averaged over b ~ N(0, D_k) (for binomial experts the success probability)."""

    @abstractmethod
    def conditional_means(self, data, moments, params, exog: np.ndarray, exog_re: np.ndarray,
                          offset: np.ndarray, subject: np.ndarray) -> np.ndarray:
        """E[y | y_i, expert k] at new rows (n, K) of the subjects ``subject`` (positions in
        ``data``), given each subject's data (``moments``: this family's moments of ``data``)."""

    def predictive_variances(self, params, rows, means: np.ndarray, posterior=None,
                             trials: np.ndarray | None = None) -> np.ndarray | None:
        """Var[y | expert k] at each row, (n, K), on the scale of ``means`` (the component
        means of the same rows): over b ~ N(0, D_k) for a new subject (``posterior=None``), or
        over the posterior of b given the subject's history (``posterior``: the rows'
        :class:`~pymemoe._predictive.posterior.SubjectPosterior`, with ``codes``, ``b_cov``,
        ``data`` and ``moments``). ``rows`` are
        :class:`~pymemoe._predictive.rows.DesignRows`; ``trials`` (n,) the binomial trials of
        each row (None: 1; NaN where unknown). None when the family has no predictive
        variance."""
        return None

    @abstractmethod
    def expert_residuals(self, rows, endog: np.ndarray, params, b_hat: np.ndarray,
                         codes: np.ndarray, standardize: bool) -> np.ndarray:
        """Residuals of each fitting row under each expert, (n, K): raw, y minus the expert
        mean of a new subject (on the scale of the predictions), or ``standardize``d: N(0, 1)
        under a correct expert. ``rows`` are the fitting rows' designs, ``endog`` their
        outcome, ``b_hat`` (N, K, q) the subjects' random-effect modes and ``codes`` the
        subject of each row."""

    @abstractmethod
    def simulate_outcome(self, rows, params, expert: np.ndarray, b: np.ndarray,
                         rng: np.random.Generator, errors: str = "normal",
                         df: float = 3.0) -> np.ndarray:
        """Outcomes drawn at the rows ``rows`` given each row's expert (``expert``, 0-based)
        and its subject's random effects (``b``, one row per row), from ``rng``; ``errors``
        other than ``"normal"`` (``"t"`` with ``df`` degrees of freedom) misspecify the
        residual law of families that have one, and raise otherwise."""

    def response_label(self, name: str, two_columns: bool = False) -> str:
        """The axis label of predicted means of the outcome ``name`` (``two_columns``: the
        outcome was given as successes + failures)."""
        return name

    @property
    def description(self) -> str:
        """How the summary names the family (with its link and, for GLMMs, the integration)."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
