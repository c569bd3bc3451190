r"""Generalised linear mixed model experts: binomial (logit) and Poisson (log), or any row
law written as a :class:`~pymemoe.families.distributions.Distribution`.

Expert k of subject i (rows r; offset o_r, log exposure included)::

    eta_r = o_r + x_r' beta_k + z_r' b_i,   b_i ~ N(0, D_k)
    binomial (logit):  y_r | b_i ~ Binomial(m_r, expit(eta_r))     (m_r = 1: binary outcomes)
    Poisson (log):     y_r | b_i ~ Poisson(exp(eta_r))

:class:`GLMMFamily` is the family object; what depends on the row law (its derivatives, draws,
predictive variances, the wording of its warnings) it asks its distribution.

The random effects are integrated out per (subject, expert) by the Laplace approximation
(``nAGQ=1``) or adaptive Gauss-Hermite quadrature with a product grid (``nAGQ > 1``,
q <= 3), around modes found by a vectorised Newton iteration warm-started from the previous
pass (:mod:`pymemoe.families._glmm_kernel`). ``res.llf`` is this approximate log-likelihood, and so is the
objective of the EM, of the quasi-Newton polish and of the standard errors, whose gradients are
the exact gradients of the approximation (including the dependence of the modes and of the node
placement on the parameters).

**The M-step.** With the posterior expert probabilities tau_ik fixed, the experts' part of the
EM objective is Q_E = sum_ik tau_ik log f(y_i | k): a posterior-weighted GLMM likelihood per
expert. Without random effects (``re_formula="0"``) it is a weighted GLM, maximised exactly by
Newton (IRLS) steps. With random effects it has no closed-form maximiser; the M-step takes ``m_iter`` L-BFGS-B iterations on it
over the experts' internal parameters (fixed effects and the entries of the Cholesky factor of
D_k, whose diagonal is bounded below by 0, tied across experts by ``cov_re``), preconditioned by
the diagonal of the posterior-weighted outer product of the gradients, and keeps the result only
if Q_E did not decrease: a generalised EM step, so the log-likelihood never decreases.

**Laplace for binary data.** The Laplace approximation is poor for binary outcomes with few
visits per subject: on 600 simulated subjects with 6-10 visits it is 24 log-likelihood units
below the adaptive quadrature value at the same estimates (``../shared/reference/glmm``), and
its estimates of the variance components are biased towards 0. Use ``nAGQ`` of 7 to 15 there.

**The start search at a coarser quadrature.** The default start search runs a dozen EM starts
(:mod:`pymemoe._estimation.starts`); with ``nAGQ`` above :data:`SEARCH_AGQ` they run with
``SEARCH_AGQ`` nodes per dimension (:meth:`GLMMFamily.search_family`), and the search's best
solutions are then run to the maximum with the model's ``nAGQ``. Three adaptive nodes are
already close to the integral (on the binary benchmark of ``docs/performance.rst``, 10,000
subjects, K = 2, their maximised log-likelihood is 6.7 units below that of ten nodes, the
Laplace approximation's 101 units below), so the maxima sit in the same basins and rank alike,
while a pass costs a fraction of one with 10^q nodes. The Laplace approximation is not used
for the search: on binary data it puts variances at 0, a boundary that EM with quadrature would
not leave.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import minimize

from .._design.checks import plain_label
from .._design.subjects import subject_codes
from .._linalg.smallmat import weighted_sum
from .._model.likelihood import chain_sums
from .._model.params import (Params, Structure, from_internal, internal_bounds, param_kinds,
                             psd_cholesky, to_internal)
from .._model.scales import DataSummary
from ._glmm_kernel import (GLMMMoments, GLMMRows, chol_grad_to_cov_grad, glmm_conditional_mean,
                           glmm_gradients, glmm_marginal_mean, glmm_moments)
from .base import ExpertFamily, ExpertGradients
from .distributions import DISTRIBUTIONS, Distribution, get_distribution
from .gaussian import solve_fixed_effects

__all__ = ["GLMMFamily", "GLMMData", "GLMMExpertMoments", "MAX_AGQ_DIM", "SEARCH_AGQ"]

MAX_AGQ_DIM = 3   # the product grid has nAGQ**q nodes: beyond q = 3 it is too large to be useful
SEARCH_AGQ = 3
"""Nodes per dimension of the start search when ``nAGQ`` is larger (module docstring)."""


@dataclass(frozen=True, eq=False)
class GLMMData:
    """Rows of the subjects as contiguous segments
    (:class:`pymemoe.families._glmm_kernel.GLMMRows`), with one row of gating covariates per
    subject: the data of a GLMM family, in the block interface of
    :class:`pymemoe.families.gaussian.SubjectData` (``n_groups``, ``exog_gate``, ``subjects``,
    blocks).

    Attributes
    ----------
    rows : GLMMRows
    exog_gate : ndarray (N, r)
    subjects : pandas.Index
    row_codes : ndarray (n,)
        Subject position of every row in the row order of the input (empty for a block).
    family : GLMMFamily
    known_class : ndarray (N,) of int, optional
        The known expert of each subject, 0-based, -1 where unknown (None: none known).
    subject_weights : ndarray (N,), optional
        Each subject's weight in the log-likelihood (None: 1).
    class_prior : ndarray (N, K), optional
        Fixed prior expert probabilities (NaN rows: the gating's).
    """

    rows: GLMMRows
    exog_gate: np.ndarray
    subjects: pd.Index
    row_codes: np.ndarray
    family: "GLMMFamily"
    known_class: np.ndarray | None = None
    subject_weights: np.ndarray | None = None
    class_prior: np.ndarray | None = None

    @property
    def n_groups(self) -> int:
        return self.rows.n_subjects

    @property
    def n_obs(self) -> np.ndarray:
        return self.rows.n_obs.astype(float)

    @property
    def k_fe(self) -> int:
        return self.rows.k_fe

    @property
    def k_re(self) -> int:
        return self.rows.k_re

    @property
    def k_gate(self) -> int:
        return self.exog_gate.shape[1]

    @property
    def nobs(self) -> int:
        return self.rows.n_rows

    def with_family(self, family: "GLMMFamily") -> "GLMMData":
        """The same subjects under another family (the start search's coarser quadrature,
        :meth:`GLMMFamily.search_family`); the arrays are shared, not copied."""
        return dataclasses.replace(self, family=family)

    def _subset_rows(self, subjects: np.ndarray) -> GLMMRows:
        rows = self.rows
        row_index = _segment_rows(rows, subjects)
        n_obs = rows.n_obs[subjects]
        return GLMMRows(endog=rows.endog[row_index], trials=rows.trials[row_index],
                        exog=rows.exog[row_index], exog_re=rows.exog_re[row_index],
                        offset=rows.offset[row_index], weights=rows.weights[row_index],
                        starts=np.concatenate([[0], np.cumsum(n_obs)[:-1]]), n_obs=n_obs,
                        groups=None if rows.groups is None else rows.groups[subjects])

    def subject_slice(self, start: int, stop: int) -> "GLMMData":
        """The rows of subjects ``start:stop`` (a block of :mod:`pymemoe._execution.blocks`)."""
        rows = self.rows
        first = int(rows.starts[start])
        last = int(rows.starts[stop - 1] + rows.n_obs[stop - 1])
        sl = slice(first, last)
        block = GLMMRows(endog=rows.endog[sl], trials=rows.trials[sl], exog=rows.exog[sl],
                         exog_re=rows.exog_re[sl], offset=rows.offset[sl],
                         weights=rows.weights[sl], starts=rows.starts[start:stop] - first,
                         n_obs=rows.n_obs[start:stop],
                         groups=None if rows.groups is None else rows.groups[start:stop])
        return GLMMData(rows=block, exog_gate=self.exog_gate[start:stop],
                        subjects=self.subjects[start:stop], row_codes=np.empty(0, dtype=np.intp),
                        family=self.family,
                        known_class=_part(self.known_class, slice(start, stop)),
                        subject_weights=_part(self.subject_weights, slice(start, stop)),
                        class_prior=_part(self.class_prior, slice(start, stop)))

    def take(self, index: np.ndarray) -> "GLMMData":
        """The rows of the subjects at positions ``index`` (a copy)."""
        index = np.asarray(index)
        return GLMMData(rows=self._subset_rows(index), exog_gate=self.exog_gate[index],
                        subjects=self.subjects[index], row_codes=np.empty(0, dtype=np.intp),
                        family=self.family, known_class=_part(self.known_class, index),
                        subject_weights=_part(self.subject_weights, index),
                        class_prior=_part(self.class_prior, index))


def _part(values: np.ndarray | None, where) -> np.ndarray | None:
    """``values[where]`` of an optional per-subject array."""
    return None if values is None else values[where]


def _segment_rows(rows: GLMMRows, subjects: np.ndarray) -> np.ndarray:
    """Row positions of the given subjects' segments, in order (no loop over subjects)."""
    n_obs = rows.n_obs[subjects]
    offsets = np.repeat(rows.starts[subjects] - np.concatenate([[0], np.cumsum(n_obs)[:-1]]), n_obs)
    return np.arange(int(n_obs.sum())) + offsets


@dataclass(frozen=True, eq=False)
class GLMMExpertMoments:
    """The E-step quantities of a GLMM family for a block: ``logdens`` (N, K), ``b_hat``
    (N, K, q), ``b_cov`` (N, K, q, q), and the kernel's moments (for gradients and warm
    starts; None once blocks are joined)."""

    logdens: np.ndarray
    b_hat: np.ndarray
    b_cov: np.ndarray
    kernel: GLMMMoments | None

    @classmethod
    def concatenate(cls, parts: "list[GLMMExpertMoments]") -> "GLMMExpertMoments":
        if len(parts) == 1:
            return parts[0]
        return cls(**{name: np.concatenate([getattr(m, name) for m in parts], axis=0)
                      for name in ("logdens", "b_hat", "b_cov")}, kernel=None)


def cholesky_factors(cov_re: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors L_k of the D_k (singular D_k allowed)."""
    if cov_re.shape[-1] == 0:
        return np.zeros_like(cov_re)
    return np.tril(psd_cholesky(cov_re))


class GLMMFamily(ExpertFamily):
    """Generalised linear mixed model experts: a row law (binomial with the logit link,
    Poisson with the log link, or any :class:`~pymemoe.families.distributions.Distribution`)
    and Gaussian random effects on the linear predictor.

    Parameters
    ----------
    distribution : {"binomial", "poisson"} or Distribution
        The law of one row's outcome given its linear predictor.
    n_agq : int
        1: the Laplace approximation; > 1: adaptive Gauss-Hermite quadrature with ``n_agq``
        nodes per random-effect dimension (a product grid; random effects of dimension <= 3).
    m_iter : int
        L-BFGS-B iterations of each M-step (see the module docstring).
    """

    uses_warm_start = True       # the Newton iterations for the modes start from the last pass
    may_separate = True          # separation: fitted probabilities (or Poisson means) of 0 or 1
    takes_offset = True
    # each M-step costs several passes and the mixture EM converges slowly, while the polish
    # converges fast once the experts are sorted out: stopping EM early reaches the same
    # log-likelihood in a third of the time (docs/performance.rst, "Measurements behind the
    # defaults", as the two settings below)
    em_tol = 1e-4
    # a GLMM pass (Newton for the modes at every row) costs far more than a Gaussian one per
    # subject, so the start search runs on a smaller subsample
    search_subjects = 2_000

    def __init__(self, distribution: str | Distribution, n_agq: int = 1, m_iter: int = 2) -> None:
        try:
            self.distribution = get_distribution(distribution)
        except (ValueError, TypeError):
            raise ValueError(f"GLMM family must be 'binomial', 'poisson' or a Distribution, "
                             f"got {distribution!r}") from None
        if int(n_agq) != n_agq or n_agq < 1:
            raise ValueError(f"nAGQ must be a positive integer, got {n_agq!r}")
        self.name = self.distribution.name
        self.n_agq = int(n_agq)
        self.m_iter = int(m_iter)
        self.link = self.distribution.link
        self.outcome_columns = self.distribution.outcome_columns
        self.separation_text = self.distribution.separation_text
        self.observed_lines = self.distribution.observed_lines

    def __repr__(self) -> str:
        what = (repr(self.name) if self.distribution is DISTRIBUTIONS.get(self.name)
                else repr(self.distribution))
        return f"GLMMFamily({what}, n_agq={self.n_agq})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, GLMMFamily) and (self.name, self.n_agq, self.m_iter)
                == (other.name, other.n_agq, other.m_iter))

    def __hash__(self) -> int:
        return hash((self.name, self.n_agq, self.m_iter))

    @property
    def description(self) -> str:
        method = "Laplace" if self.n_agq == 1 else f"AGQ {self.n_agq}"
        return f"{self.name}, {self.link.name} link, {method}"

    def structure_options(self, structure) -> dict:
        return {"family": self}

    def search_family(self) -> "GLMMFamily":
        """This family with :data:`SEARCH_AGQ` nodes per dimension when ``n_agq`` is larger
        (the module docstring says why not the Laplace approximation), else this family.

        Examples
        --------
        >>> GLMMFamily("binomial", n_agq=10).search_family()
        GLMMFamily('binomial', n_agq=3)
        >>> GLMMFamily("poisson").search_family()
        GLMMFamily('poisson', n_agq=1)
        """
        if self.n_agq <= SEARCH_AGQ:
            return self
        return GLMMFamily(self.distribution, n_agq=SEARCH_AGQ, m_iter=self.m_iter)

    def check_random_effects(self, n_random_effects: int) -> None:
        if n_random_effects > MAX_AGQ_DIM and self.n_agq > 1:
            raise ValueError(f"nAGQ={self.n_agq} uses a product grid of nAGQ**q nodes, for "
                             f"at most {MAX_AGQ_DIM} random effects (re_formula has "
                             f"{n_random_effects}); use nAGQ=1 (Laplace) or fewer random effects")

    def response_label(self, name: str, two_columns: bool = False) -> str:
        return self.distribution.response_label(name, two_columns)

    # -- data ----------------------------------------------------------------------------------

    def make_data(self, endog, exog, exog_re, exog_gate, groups, *, trials=None,
                  offset=None, weights=None) -> GLMMData:
        """Rows sorted by subject (subjects in the order of
        :func:`pymemoe._design.subjects.subject_codes`) and the first row of gating covariates
        of each subject."""
        codes, labels = subject_codes(np.asarray(groups))
        endog = np.asarray(endog, dtype=float)
        if weights is not None:                 # rows out of the likelihood may lack an outcome
            endog = np.where(np.asarray(weights) > 0, endog, 0.0)
        rows = GLMMRows.from_groups(codes, endog, exog, exog_re if np.shape(exog_re)[1] else None,
                                    trials=trials, offset=offset, weights=weights)
        gate = np.asarray(exog_gate, dtype=float)[rows.order][rows.starts]
        return GLMMData(rows=rows, exog_gate=gate, subjects=labels, row_codes=codes, family=self)

    def check_outcome(self, endog, trials, exog, outcome, formula=None,
                      rows: pd.Index | None = None) -> None:
        """A ValueError naming the outcome and the first offending row for outcomes the
        distribution cannot model (binary outcomes outside {0, 1}, successes above, or trials
        below, their number, negative or non-integer counts), and for an outcome that never
        varies."""
        name = f"the outcome {outcome!r}"
        y = np.asarray(endog, dtype=float)
        label = ((lambda j: f"row {plain_label(rows[j])!r}") if rows is not None
                 else (lambda j: f"row {j}"))
        problem = self.distribution.invalid_outcome(y, trials)
        if problem is not None:
            mask, what = problem
            j = int(np.flatnonzero(mask)[0])
            has = (f"{y[j]:g}" if trials is None else
                   f"{y[j]:g} successes and {trials[j] - y[j]:g} failures")
            raise ValueError(f"{name}: {what} ({label(j)} has {has})")
        if np.all(y == y[0]) and (trials is None or np.all(y == np.asarray(trials))):
            raise ValueError(f"{name} is constant ({y[0]:g} in all {y.size} rows of the "
                             f"analysis sample): the fixed effects would diverge; check the "
                             f"outcome column and the rows kept")

    # -- E-step and gradients ------------------------------------------------------------------

    def moments(self, data: GLMMData, params: Params, warm=None) -> GLMMExpertMoments:
        previous = None
        if warm is not None and warm.kernel is not None and warm.logdens.shape == (data.n_groups, params.n_experts):
            previous = warm.kernel
        kernel = glmm_moments(data.rows, self.distribution, params.beta, cholesky_factors(params.cov_re),
                              n_agq=self.n_agq, previous=previous)
        return GLMMExpertMoments(logdens=kernel.logdens, b_hat=kernel.b_hat, b_cov=kernel.b_cov,
                                 kernel=kernel)

    def gradients(self, data: GLMMData, params: Params, moments: GLMMExpertMoments) -> ExpertGradients:
        grads = glmm_gradients(data.rows, moments.kernel)
        q = data.k_re
        cov = (chol_grad_to_cov_grad(grads.chol, moments.kernel.chol) if q
               else np.zeros(grads.beta.shape[:2] + (0, 0)))
        return ExpertGradients(beta=grads.beta, cov=cov, scale=None)

    def extreme_fits(self, data: GLMMData, params: Params, tau: np.ndarray):
        """Per expert, the most degenerate fixed-effects linear predictor x' beta_k + offset
        (the distribution's ``degeneracy``: abs(eta) for binomial experts, a fitted probability
        near 0 or 1; -eta for Poisson experts, a fitted mean near 0) over the rows of its
        likely subjects, and the column of the term that contributes most at that row (see
        :meth:`pymemoe.families.base.ExpertFamily.extreme_fits`)."""
        rows = data.rows
        K = params.n_experts
        extreme, term = np.zeros(K), np.zeros(K, dtype=int)
        if rows.exog.shape[0] == 0:
            return extreme, term
        subject = np.repeat(np.arange(rows.n_obs.size), rows.n_obs)
        contributions = rows.exog[:, None, :] * params.beta[None, :, :]      # (n, K, p)
        eta = rows.offset[:, None] + contributions.sum(axis=2)
        score = self.distribution.degeneracy(eta)
        score = np.where((tau[subject] > 0.5) & (rows.weights[:, None] > 0), score, -np.inf)
        worst = score.argmax(axis=0)                                           # (K,)
        extreme = np.maximum(score[worst, np.arange(K)], 0.0)
        term = np.abs(contributions[worst, np.arange(K)]).argmax(axis=1)
        return extreme, term

    # -- prediction ----------------------------------------------------------------------------

    def expert_means(self, params: Params, exog, exog_re, offset, power: int = 1) -> np.ndarray:
        """E[mu | expert k] over b ~ N(0, D_k): the success probability or the count's mean
        (``power=2``: E[mu^2 | expert k])."""
        return glmm_marginal_mean(self.distribution, params.beta, cholesky_factors(params.cov_re), exog,
                                  exog_re if exog_re.shape[1] else None, offset, power=power)

    def conditional_means(self, data: GLMMData, moments: GLMMExpertMoments, params: Params,
                          exog, exog_re, offset, subject, power: int = 1) -> np.ndarray:
        """E[mu | y_i, expert k] under the approximate posterior of b (the quadrature nodes, or
        the Gaussian approximation N(b_hat, b_cov) for Laplace); ``power=2``: E[mu^2 | ...]."""
        kernel = moments.kernel
        if kernel is None:                   # joined blocks keep no kernel cache: recompute
            kernel = self.moments(data, params).kernel
        return glmm_conditional_mean(data.rows, kernel, exog, exog_re if exog_re.shape[1] else None,
                                     np.asarray(subject), offset, power=power)

    def predictive_variances(self, params: Params, rows, means, posterior=None,
                             trials=None) -> np.ndarray:
        """Var[y | expert k] from the first two moments of mu over the law of b (module
        docstring of :mod:`pymemoe._predictive`; the distribution's ``predictive_variance``):
        E[mu] + Var[mu] for Poisson counts; for a binomial proportion y / m,
        (E[mu] - E[mu^2]) / m + Var[mu] (m = 1: E[mu] (1 - E[mu]), the Bernoulli variance).
        NaN where the trials are unknown."""
        if posterior is None:
            second = self.expert_means(params, rows.exog, rows.exog_re, rows.row_offset, power=2)
        else:
            second = self.conditional_means(posterior.data, posterior.moments, params, rows.exog,
                                            rows.exog_re, rows.row_offset, posterior.codes,
                                            power=2)
        return self.distribution.predictive_variance(means, second, trials)

    def expert_residuals(self, rows, endog, params: Params, b_hat, codes,
                         standardize: bool) -> np.ndarray:
        """Raw: y - E[y | expert k] (proportions for binomial experts). Standardised:
        randomised quantile residuals (Dunn & Smyth 1996) given the subject's predicted random
        effects under expert k, r = Phi^-1(u) with u uniform between F(y - 1) and F(y), F the
        conditional distribution function of the row: N(0, 1) when the expert is right. The
        uniforms come from a fixed seed, so the residuals are reproducible and the same draw
        serves every expert."""
        if not standardize:
            y = endog if rows.trials is None else endog / rows.trials
            return y[:, None] - self.expert_means(params, rows.exog, rows.exog_re, rows.row_offset)
        b = np.asarray(b_hat)[codes]                                          # (n, K, q)
        eta = (rows.row_offset[:, None] + rows.exog @ params.beta.T
               + np.einsum("nq,nkq->nk", rows.exog_re, b))
        counts = endog[:, None]
        law = self.distribution.row_law(eta, rows.row_trials[:, None])
        low, high = law.cdf(counts - 1), law.cdf(counts)
        u = np.random.default_rng(20260101).random(counts.shape)
        return stats.norm.ppf(np.clip(low + u * (high - low), 1e-300, 1 - 1e-16))

    def simulate_outcome(self, rows, params: Params, expert, b, rng, errors="normal",
                         df=3.0) -> np.ndarray:
        """Draws of the distribution at eta = offset + x' beta_k + z' b."""
        if errors != "normal":
            raise ValueError(f"errors={errors!r} is for Gaussian experts; binomial and Poisson "
                             f"outcomes are drawn from their own law")
        eta = (rows.row_offset + np.einsum("np,np->n", rows.exog, params.beta[expert])
               + np.einsum("nq,nq->n", rows.exog_re, b))
        return self.distribution.sample(eta, rows.row_trials, rng)

    # -- M-step --------------------------------------------------------------------------------

    def q_block(self, data: GLMMData, cache, params: Params):
        """Q_E = sum_ik tau_ik log f(y_i | k) on one block, its natural gradient sums and the
        posterior-weighted squares of the per-subject internal gradients' natural pieces."""
        moments = self.moments(data, params, warm=cache.moments)
        grads = self.gradients(data, params, moments)
        tau = cache.weighted_tau
        value = float(np.einsum("nk,nk->", tau, moments.logdens))
        return value, (weighted_sum(tau, grads.beta), weighted_sum(tau, grads.cov))

    def glm_block(self, data: GLMMData, cache, beta: np.ndarray):
        """Without random effects: Q_E per expert and its Newton (IRLS) normal equations on one
        block, sum_i tau_ik X_i'W X_i (K, p, p) and sum_i tau_ik X_i'(y_i - mu_i) (K, p)."""
        rows = data.rows
        tau_rows = rows.gather(cache.weighted_tau)                      # (n, K)
        eta = rows.offset[:, None] + rows.exog @ beta.T                 # (n, K)
        loglik, score, weight = self.distribution.glm_terms(rows.endog[:, None],
                                                            rows.trials[:, None], eta)
        w = rows.weights[:, None] * tau_rows
        value = np.einsum("nk,nk->k", w, loglik)
        gram = np.einsum("nk,np,nq->kpq", w * weight, rows.exog, rows.exog)
        rhs = np.einsum("nk,np->kp", w * score, rows.exog)
        return value, gram, rhs

    def _glm_m_step(self, blocks, caches: Sequence, structure: Structure, beta: np.ndarray,
                    max_steps: int = 25) -> np.ndarray:
        """Without random effects each expert is a posterior-weighted GLM: Newton (IRLS) steps,
        solved jointly when ``shared_formula`` ties columns across experts, with step halving
        (Q_E is concave), to convergence: the exact M-step of the mixture of GLMs."""
        value, gram, rhs = blocks.reduce(self.glm_block, caches, beta)
        current = value.sum()
        for _ in range(max_steps):
            step = solve_fixed_effects(structure, gram, rhs)
            for _ in range(30):
                trial = beta + step
                t_value, t_gram, t_rhs = blocks.reduce(self.glm_block, caches, trial)
                if t_value.sum() >= current:
                    break
                step = step / 2.0
            else:
                break
            gain = t_value.sum() - current
            beta, current, gram, rhs = trial, t_value.sum(), t_gram, t_rhs
            if gain <= 1e-12 * (1.0 + abs(current)):
                break
        return beta

    def m_step(self, blocks, caches: Sequence, structure: Structure, params: Params, e_sums,
               summary: DataSummary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if structure.k_re == 0:
            beta = self._glm_m_step(blocks, caches, structure, params.beta)
            return beta, params.cov_re, np.ones(params.n_experts)
        kinds = param_kinds(structure)
        free = np.array([kind.kind != "gate" for kind in kinds], dtype=bool)
        theta0 = to_internal(params, structure)
        bounds = [b for b, f in zip(internal_bounds(structure), free) if f]
        N = summary.n_groups
        zero_gate = np.zeros_like(params.gamma)
        zero_scale = np.zeros(params.n_experts)
        memo: dict = {}

        def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
            theta = theta0.copy()
            theta[free] = x
            par = from_internal(theta, structure)
            if not np.all(np.isfinite(par.cov_re)):
                return np.inf, np.zeros_like(x)
            value, (g_beta, g_cov) = blocks.reduce(self.q_block, caches, par)
            grad = chain_sums(par, structure, (zero_gate, g_beta, g_cov, zero_scale),
                              internal=True)[free]
            if not (np.isfinite(value) and np.all(np.isfinite(grad))):
                return np.inf, np.zeros_like(x)
            if value > memo.get("best", (-np.inf,))[0]:
                memo["best"] = (value, par)
            return -value / N, -grad / N

        start_value, _ = evaluate(theta0[free])
        minimize(evaluate, theta0[free], jac=True, method="L-BFGS-B", bounds=bounds,
                 options={"maxiter": self.m_iter, "ftol": 1e-15, "gtol": 1e-10})
        best = memo.get("best")
        if best is None or -best[0] / N > start_value:
            return params.beta, params.cov_re, params.scale
        par = best[1]
        return par.beta, par.cov_re, np.ones(params.n_experts)

    # -- summary and starts ----------------------------------------------------------------------

    @staticmethod
    def totals_block(data: GLMMData, cache=None):
        rows = data.rows
        return (float(rows.n_rows), (rows.exog_re ** 2).sum(axis=0), data.n_groups)

    def summary(self, blocks) -> DataSummary:
        nobs, zsq, n_groups = blocks.reduce(self.totals_block, blocks.empty_caches())
        return DataSummary(n_groups=int(n_groups), nobs=int(nobs), outcome_scale=1.0,
                           z_scale=np.asarray(zsq, dtype=float) / nobs)

    def one_expert_start(self, blocks, structure: Structure, summary: DataSummary) -> Params:
        """The pooled GLM (no random effects) by IRLS, and D = 0.5 / mean(z^2) on the diagonal
        (a random-intercept SD of about 0.7 on the linear predictor's scale)."""
        beta = np.zeros(structure.k_fe)
        for _ in range(25):
            xwx, xa = blocks.reduce(self._irls_block, blocks.empty_caches(), beta)
            step = np.linalg.lstsq(xwx, xa, rcond=None)[0]
            beta = beta + step
            if np.abs(step).max() < 1e-10 * (1.0 + np.abs(beta).max()):
                break
        q = structure.k_re
        cov = np.diag(0.5 / np.maximum(summary.z_scale, 1e-12)) if q else np.zeros((0, 0))
        return Params(gamma=np.zeros((1, structure.k_gate)), beta=beta[None], cov_re=cov[None],
                      scale=np.ones(1))

    def _irls_block(self, data: GLMMData, cache, beta: np.ndarray):
        rows = data.rows
        eta = rows.offset + rows.exog @ beta
        _, score, weight = self.distribution.glm_terms(rows.endog, rows.trials, eta)
        w = rows.weights * weight
        return (rows.exog * w[:, None]).T @ rows.exog, rows.exog.T @ (rows.weights * score)

    def subject_coefficients(self, data: GLMMData, k_mix: int) -> np.ndarray:
        """One ridge-penalised Newton step per subject from the pooled GLM of the block: shrunken
        per-subject estimates of the expert-specific fixed effects (binary subjects with few
        visits have no finite maximum likelihood estimate of their own)."""
        rows = data.rows
        X = rows.exog
        xwx, xa = self._irls_block(data, None, np.zeros(X.shape[1]))
        beta0 = np.linalg.lstsq(xwx, xa, rcond=None)[0]
        for _ in range(10):
            xwx, xa = self._irls_block(data, None, beta0)
            beta0 = beta0 + np.linalg.lstsq(xwx, xa, rcond=None)[0]
        eta = rows.offset + X @ beta0
        _, row_score, weight = self.distribution.glm_terms(rows.endog, rows.trials, eta)
        Xm = X[:, :k_mix]
        w = rows.weights * weight
        outer = (Xm[:, :, None] * Xm[:, None, :] * w[:, None, None]).reshape(len(w), -1)
        gram = rows.segment_sum(outer).reshape(-1, k_mix, k_mix)
        score = rows.segment_sum(Xm * (rows.weights * row_score)[:, None])
        ridge = 1.0 + 0.1 * np.trace(gram, axis1=1, axis2=2) / max(k_mix, 1)
        step = np.linalg.solve(gram + ridge[:, None, None] * np.eye(k_mix), score[..., None])[..., 0]
        return beta0[:k_mix] + step
