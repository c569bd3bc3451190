r"""The expert-family interface: what the EM driver and the inference code know of an expert.

An *expert family* is one object with one job: for its experts, vectorised over the subjects of
a block, it gives

* the log-density of each subject's data under each expert, log f(y_i | class k)
  (:meth:`ExpertFamily.moments`; exact for Gaussian experts, Laplace or adaptive Gauss-Hermite
  for generalised linear mixed experts), with the conditional modes b_hat_ik and covariances of
  the random effects;
* the gradients of log f(y_i | k) with respect to its natural parameters beta_k, D_k (a
  symmetric matrix gradient G with d log f = tr(G dD_k)) and sigma2_k
  (:meth:`ExpertFamily.gradients`); the EM driver maps them to the user and internal vectors by
  :func:`pymemoe.params.chain_gradient`;
* the posterior-weighted M-step for its parameters (:meth:`ExpertFamily.m_step`), which runs
  its own passes over the blocks and must not decrease sum_ik tau_ik log f(y_i | k);
* a one-expert start (:meth:`ExpertFamily.one_expert_start`), per-subject coefficients for the
  k-means starts (:meth:`ExpertFamily.subject_coefficients`), and the scale against which a
  random-effect variance counts as 0 (:meth:`ExpertFamily.re_scale`, used by
  :func:`pymemoe.boundary.boundary_mask`).

The gating (multinomial logit, :mod:`pymemoe.gating`) is common to all families. Nothing outside
``pymemoe.families`` contains family-specific code.

Every method that takes ``data`` receives one *block* of subjects (see :mod:`pymemoe.blocks`):
the family's data restricted to consecutive subjects; methods that take ``blocks`` run passes
over all of them through ``blocks.reduce``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["ExpertFamily", "DataSummary", "ExpertGradients"]


@dataclass(frozen=True)
class DataSummary:
    """Scalars of the whole data that the fit's tolerances and boundary rules use.

    Attributes
    ----------
    n_groups, nobs : int
        Subjects and observations (rows).
    outcome_scale : float
        A typical squared size of the outcome (Gaussian: mean of y^2), the unit of the residual
        variance's floor; 1 for families without a residual variance.
    z_scale : ndarray (q,)
        Mean of each random-effect column's square over the rows: a random-effect variance d
        is "about 0" when d * z_scale is negligible against the family's ``re_scale``.
    """

    n_groups: int
    nobs: int
    outcome_scale: float
    z_scale: np.ndarray

    @property
    def scale_floor(self) -> float:
        """Lower bound of a residual variance (1e-10 of the outcome's scale)."""
        return 1e-10 * self.outcome_scale + 1e-300

    @property
    def scale_boundary(self) -> float:
        """A residual variance at or below this is reported at the boundary."""
        return 1e-8 * self.outcome_scale


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
    #: whether the experts have residual variances sigma2_k (the ``scale`` block)
    has_scale: bool = True
    #: whether :meth:`moments` uses ``warm`` (the previous moments of the block): passes that
    #: do not need the new states otherwise then keep none (memory on the workers)
    uses_warm_start: bool = False
    #: default EM tolerance (relative change of the log-likelihood): EM runs to convergence when
    #: its M-step is exact and cheap; with an iterative M-step the quasi-Newton polish finishes
    #: sooner, so EM stops earlier
    em_tol: float = 1e-8
    #: subjects of the start search's subsample when there are more than twice as many
    #: (pymemoe.starts); families whose passes cost more per subject search on fewer
    search_subjects: int = 2_500

    @abstractmethod
    def make_data(self, endog, exog, exog_re, exog_gate, groups, *, trials=None, offset=None,
                  weights=None):
        """The family's data from row arrays (sorted by subject as
        :func:`pymemoe.data.subject_codes` sorts them), with the interface of
        :class:`pymemoe.data.SubjectData` (``n_groups``, ``exog_gate``, ``subjects``,
        ``row_codes``, ``subject_slice``, ``take``, ``family``). Rows with ``weights`` 0 do not
        enter the likelihood (future rows of a dynamic prediction); only 0/1 weights occur."""

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

    def e_sums(self, data, params, moments, tau: np.ndarray) -> Any:
        """Sums for the M-step that the E-step pass can form while the block's data are hot
        (default: none). Summed over blocks and handed to :meth:`m_step`."""
        return None

    @abstractmethod
    def m_step(self, blocks, states: Sequence, structure, params, e_sums: Any,
               summary: DataSummary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """New (beta, cov_re, scale) from the E-step ``states`` at ``params``; must not
        decrease sum_ik tau_ik log f(y_i | k)."""

    @abstractmethod
    def summary(self, blocks) -> DataSummary:
        """The :class:`DataSummary` of the data (one reduction over the blocks)."""

    @abstractmethod
    def one_expert_start(self, blocks, structure, summary: DataSummary):
        """Crude one-expert parameters (:class:`pymemoe.params.Params` with K = 1) to start
        the one-expert fit from."""

    @abstractmethod
    def subject_coefficients(self, data, k_mix: int) -> np.ndarray:
        """Per-subject estimates of the expert-specific fixed effects, (N, k_mix): the points
        the k-means starts cluster."""

    def hessian_sums(self, data, params, moments, tau: np.ndarray) -> np.ndarray | None:
        """sum_i tau_ik d2 log f(y_i | k) / dnu dnu' per expert, (K, n_nu, n_nu), in the natural
        coordinates of :func:`pymemoe.expert_hessian.natural_index`; None (the default) when the
        family has no closed form, and the inference then differences :meth:`gradients`."""
        return None

    # -- prediction (used by pymemoe.predict, the predictive engine) ---------------------------

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
        :class:`pymemoe.predict.SubjectPosterior`, with ``codes``, ``b_cov``, ``data`` and
        ``moments``). ``rows`` are :class:`pymemoe.predict.DesignRows`; ``trials`` (n,) the
        binomial trials of each row (None: 1; NaN where unknown). None when the family has no
        predictive variance."""
        return None

    def llf_bound(self, summary: DataSummary) -> float:
        """An upper bound of the log-likelihood of any parameter value the fit can reach; a
        computed value above it is rounding garbage (e.g. Woodbury terms at a residual variance
        far below the random effects' scale) and the searches reject it. Default: +inf (the
        log-probabilities of discrete outcomes are below 0, but their Laplace approximations
        need not be)."""
        return np.inf

    #: whether the fixed effects can fit rows perfectly (separation; :meth:`extreme_fits`)
    may_separate: bool = False

    def extreme_fits(self, data, params, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How close each expert's fixed effects push its own rows to a degenerate fit, for
        the separation warning: per expert (K,), the most extreme fixed-effects linear
        predictor over the rows of the subjects it most likely holds (tau_ik > 1/2), on the
        scale where beyond 25 the fitted mean is within e^-25 of the edge of its range, and
        the column of the term that contributes most to it. Default: zeros (a Gaussian
        expert has no degenerate fit)."""
        K = params.n_experts
        return np.zeros(K), np.zeros(K, dtype=int)

    def re_scale(self, params) -> np.ndarray:
        """The scale (K,) against which random-effect variances are judged: the residual
        variance for Gaussian experts, 1 (the linear predictor's scale) otherwise."""
        return params.scale if self.has_scale else np.ones(params.n_experts)

    @property
    def description(self) -> str:
        """How the summary names the family (with its link and, for GLMMs, the integration)."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
