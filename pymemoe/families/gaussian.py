r"""Gaussian experts: linear mixed models on per-subject sufficient statistics.

**The data** (:class:`SubjectData`). Every quantity of the EM algorithm and of the scores
depends on subject i's data only through the cross-products of the stacked row block
``[X_i  Z_i  y_i]``::

    X'X (p x p),  X'Z (p x q),  Z'Z (q x q),  X'y (p),  Z'y (q),  y'y,  n_i

plus the subject's row of gating covariates ``w_i``. They are computed once, in one vectorised
pass of grouped sums over the rows sorted by subject (``numpy.add.reduceat`` on each of the
m(m+1)/2 column products, m = p + q + 1), and stored as stacked arrays with the subject on the
first axis. The EM iterations then cost O(N K (p + q)^3) whatever the number of rows. ``X`` is
the full fixed-effects design: the expert-specific columns followed by the shared columns
(``shared_formula``). These sums can also be built a chunk of rows at a time
(:mod:`pymemoe.chunked`).

**The kernel** (Woodbury log-densities, the exact Laplace step, GLS normal equations, the sums of
the variance update, scores) is :mod:`pymemoe.families._lmm`; this module is the family object that
serves it to the EM driver: the posterior-weighted M-step (ECME)::

    beta          GLS given V_ik:  (sum_i tau_ik X'V^-1 X) beta_k = sum_i tau_ik X'V^-1 y,
                  one joint solve when ``shared_formula`` ties columns across experts;
    D_k, sigma2_k EM update with b missing, at the new beta:
                  R_k = sum_i tau_ik (b_hat b_hat' + Sigma),   S_k = sum_i tau_ik E||e_i||^2,

with the covariance structures as a table of updaters (:data:`COV_RE_UPDATERS`)::

    "expert"        D_k = R_k / sum_i tau_ik
    "shared"        D   = sum_k R_k / N
    "proportional"  D_k = w_k^2 D: one coordinate step in D, then in w (both increase Q)

and the residual variances likewise (:data:`SCALE_UPDATERS`): sigma2_k = S_k / sum_i tau_ik n_i
or one pooled value, never below the floor of :class:`~pymemoe.families.base.DataSummary`.
``re_structure="diagonal"`` keeps the diagonal of the update (the maximiser under that
constraint, since the Q function is separable in the variances then).

Every step increases the log-likelihood (generalised EM): the GLS step maximises Q over beta
exactly at the current variances, and the variance step is the EM step with b missing.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .._design.checks import check_outcome_varies
from .._design.subjects import subject_codes
from .._model.params import Params, Structure
from .._model.scales import DataSummary
from ._lmm import (ExpertMoments, expert_gradients, expert_moments, gls_normal_equations,
                   variance_sums)
from ._lmm_hessian import expert_hessian_sums
from .base import ExpertFamily, ExpertGradients
from .links import Identity

__all__ = ["SubjectData", "GaussianFamily", "GAUSSIAN", "COV_RE_UPDATERS", "SCALE_UPDATERS",
           "solve_fixed_effects"]

#: entries of the (subjects, K, n_i, n_i) stacks whitened at once (memory of the residuals)
WHITEN_BLOCK = 2_000_000


@dataclass(frozen=True)
class SubjectData:
    """Sufficient statistics of each subject (first axis: subject, N of them).

    Attributes
    ----------
    n_obs : ndarray (N,)
        Number of observations n_i.
    xx, xz, zz : ndarray (N, p, p), (N, p, q), (N, q, q)
        X'X, X'Z and Z'Z.
    xy, zy : ndarray (N, p), (N, q)
        X'y and Z'y.
    yy : ndarray (N,)
        y'y.
    exog_gate : ndarray (N, r)
        The gating covariates w_i (one row per subject).
    subjects : pandas.Index
        Subject labels, in the order of the first axis.
    row_codes : ndarray (n,)
        Subject position of every row, in the row order of the input.
    known_class : ndarray (N,) of int, optional
        The known expert of each subject, 0-based, -1 where unknown (None: no subject's
        expert is known; see :meth:`pymemoe.MEMoE.from_formula`'s ``known_class``).
    subject_weights : ndarray (N,), optional
        Each subject's weight in the log-likelihood (None: 1; see ``MEMoE.fit(weights=)``).
    class_prior : ndarray (N, K), optional
        Fixed prior expert probabilities (NaN rows: the gating's; see ``class_prior`` of
        :meth:`pymemoe.MEMoE.from_formula`).
    """

    n_obs: np.ndarray
    xx: np.ndarray
    xz: np.ndarray
    zz: np.ndarray
    xy: np.ndarray
    zy: np.ndarray
    yy: np.ndarray
    exog_gate: np.ndarray
    subjects: pd.Index
    row_codes: np.ndarray
    known_class: np.ndarray | None = None
    subject_weights: np.ndarray | None = None
    class_prior: np.ndarray | None = None

    @property
    def n_groups(self) -> int:
        return self.n_obs.shape[0]

    @property
    def k_fe(self) -> int:
        return self.xx.shape[1]

    @property
    def k_re(self) -> int:
        return self.zz.shape[1]

    @property
    def k_gate(self) -> int:
        return self.exog_gate.shape[1]

    @property
    def nobs(self) -> int:
        return int(self.n_obs.sum())

    @property
    def family(self) -> "GaussianFamily":
        """The expert family these statistics serve: Gaussian (linear mixed model) experts."""
        return GAUSSIAN

    def subject_slice(self, start: int, stop: int) -> "SubjectData":
        """The statistics of subjects ``start:stop`` (views, no copy): a block of
        :mod:`pymemoe._execution.blocks`. Its ``row_codes`` are empty (rows belong to the whole data)."""
        sl = slice(start, stop)
        return SubjectData(n_obs=self.n_obs[sl], xx=self.xx[sl], xz=self.xz[sl], zz=self.zz[sl],
                           xy=self.xy[sl], zy=self.zy[sl], yy=self.yy[sl],
                           exog_gate=self.exog_gate[sl], subjects=self.subjects[sl],
                           row_codes=np.empty(0, dtype=np.intp),
                           known_class=_part(self.known_class, sl),
                           subject_weights=_part(self.subject_weights, sl),
                           class_prior=_part(self.class_prior, sl))

    @classmethod
    def concatenate(cls, parts: "list[SubjectData]") -> "SubjectData":
        """The statistics of consecutive groups of subjects as one object (subjects in order;
        ``row_codes`` empty)."""
        if len(parts) == 1:
            return parts[0]
        join = {name: np.concatenate([getattr(p, name) for p in parts], axis=0)
                for name in ("n_obs", "xx", "xz", "zz", "xy", "zy", "yy", "exog_gate")}
        per_subject = {name: None if getattr(parts[0], name) is None
                       else np.concatenate([getattr(p, name) for p in parts])
                       for name in ("known_class", "subject_weights", "class_prior")}
        return cls(**join, subjects=parts[0].subjects.append([p.subjects for p in parts[1:]]),
                   row_codes=np.empty(0, dtype=np.intp), **per_subject)

    def take(self, index: np.ndarray) -> "SubjectData":
        """The statistics of the subjects at positions ``index`` (a copy; e.g. a random
        subsample of subjects to screen starts on). ``row_codes`` are empty."""
        index = np.asarray(index)
        return SubjectData(n_obs=self.n_obs[index], xx=self.xx[index], xz=self.xz[index],
                           zz=self.zz[index], xy=self.xy[index], zy=self.zy[index],
                           yy=self.yy[index], exog_gate=self.exog_gate[index],
                           subjects=self.subjects[index], row_codes=np.empty(0, dtype=np.intp),
                           known_class=_part(self.known_class, index),
                           subject_weights=_part(self.subject_weights, index),
                           class_prior=_part(self.class_prior, index))

    @classmethod
    def from_arrays(
        cls,
        endog: np.ndarray,
        exog: np.ndarray,
        exog_re: np.ndarray,
        exog_gate: np.ndarray,
        groups: np.ndarray,
    ) -> "SubjectData":
        """Compute the per-subject cross-products by grouped sums over the rows.

        Parameters
        ----------
        endog : ndarray (n,)
        exog : ndarray (n, p)
        exog_re : ndarray (n, q); q may be 0
        exog_gate : ndarray (n, r); constant within subject (the first row of each is used)
        groups : ndarray (n,) of hashable labels

        Examples
        --------
        >>> import numpy as np
        >>> y = np.array([1.0, 2.0, 3.0]); x = np.ones((3, 1)); g = np.array(["a", "b", "a"])
        >>> sd = SubjectData.from_arrays(y, x, x, x, g)
        >>> sd.n_obs.tolist(), sd.xy[:, 0].tolist(), sd.yy.tolist()
        ([2.0, 1.0], [4.0, 2.0], [10.0, 4.0])
        """
        endog = np.asarray(endog, dtype=float)
        n = endog.shape[0]
        blocks = {"exog": exog, "exog_re": exog_re, "exog_gate": exog_gate}
        arrays = {}
        for name, value in blocks.items():
            value = np.asarray(value, dtype=float)
            if value.ndim == 1:
                value = value[:, None]
            if value.ndim != 2 or value.shape[0] != n:
                raise ValueError(f"{name} must have one row per observation ({n}); got shape {value.shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"{name} contains missing or non-finite values")
            arrays[name] = value
        if not np.isfinite(endog).all():
            raise ValueError("endog contains missing or non-finite values")
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must have one label per observation ({n}); got shape {groups.shape}")

        codes, labels = subject_codes(groups)
        in_order = bool(np.all(codes[1:] >= codes[:-1])) if n > 1 else True
        # rows already grouped by subject (the usual long data): no sort, no copy
        order = slice(None) if in_order else np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        x, z = arrays["exog"], arrays["exog_re"]
        p, q = x.shape[1], z.shape[1]
        columns = [col[order] for col in (*x.T, *z.T, endog)]
        m = p + q + 1
        # the same column in X and Z (the intercept, time) is summed once, and products with
        # a column of ones are the other column itself (identical sums, fewer passes)
        first = list(range(m))
        for a in range(m):
            for b in range(a):
                if first[b] == b and np.array_equal(columns[a], columns[b]):
                    first[a] = b
                    break
        ones = [bool(np.all(col == 1.0)) for col in columns]
        sums: dict[tuple[int, int], np.ndarray] = {}
        cross = np.empty((len(starts), m, m))
        for a in range(m):  # grouped sums over rows; never a loop over subjects
            for b in range(a, m):
                key = tuple(sorted((first[a], first[b])))
                if key not in sums:
                    u, v = key
                    product = (columns[v] if ones[u] else columns[u] if ones[v]
                               else columns[u] * columns[v])
                    sums[key] = np.add.reduceat(product, starts)
                cross[:, a, b] = cross[:, b, a] = sums[key]
        n_obs = np.diff(np.r_[starts, n]).astype(float)
        xs, zs, ys = slice(0, p), slice(p, p + q), p + q
        return cls(
            n_obs=n_obs,
            xx=cross[:, xs, xs].copy(),
            xz=cross[:, xs, zs].copy(),
            zz=cross[:, zs, zs].copy(),
            xy=cross[:, xs, ys].copy(),
            zy=cross[:, zs, ys].copy(),
            yy=cross[:, ys, ys].copy(),
            exog_gate=arrays["exog_gate"][order][starts],
            subjects=labels,
            row_codes=codes,
        )


def _part(values: np.ndarray | None, where) -> np.ndarray | None:
    """``values[where]`` of an optional per-subject array."""
    return None if values is None else values[where]


def solve_fixed_effects(structure: Structure, gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Joint GLS solve for (beta_mix_1..beta_mix_K, beta_shared) from each expert's weighted
    normal equations ``gram`` (K, p, p) and ``rhs`` (K, p); returns beta (K, p)."""
    K, p, km = structure.n_experts, structure.k_fe, structure.k_mix
    n_free = K * km + (p - km)
    big = np.zeros((n_free, n_free))
    vec = np.zeros(n_free)
    select = []
    for k in range(K):  # K selection matrices: loops over experts, not subjects
        P = np.zeros((p, n_free))
        P[np.arange(km), k * km + np.arange(km)] = 1.0
        P[km + np.arange(p - km), K * km + np.arange(p - km)] = 1.0
        big += P.T @ gram[k] @ P
        vec += P.T @ rhs[k]
        select.append(P)
    try:
        theta = np.linalg.solve(big, vec)
    except np.linalg.LinAlgError:
        theta = np.linalg.lstsq(big, vec, rcond=None)[0]
    return np.stack([P @ theta for P in select])


# -- the covariance structures: (previous D, R_k, sizes, re_structure) -> D (K, q, q) --------


def _cov_expert(cov_re: np.ndarray, re_sum: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    return re_sum / sizes[:, None, None]


def _cov_shared(cov_re: np.ndarray, re_sum: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    K = re_sum.shape[0]
    return np.broadcast_to(re_sum.sum(axis=0) / sizes.sum(), (K,) + re_sum.shape[1:]).copy()


def _cov_proportional(cov_re: np.ndarray, re_sum: np.ndarray, sizes: np.ndarray,
                      diagonal: bool) -> np.ndarray:
    K, q = re_sum.shape[:2]
    trace = np.trace(cov_re, axis1=1, axis2=2)
    w2 = trace / trace[0] if trace[0] > 0 else np.ones(K)
    w2 = np.maximum(w2, 1e-300)
    base = (re_sum / w2[:, None, None]).sum(axis=0) / sizes.sum()
    if diagonal:
        base = np.diag(np.diag(base))
    base_inv = np.linalg.pinv(base)
    w2 = np.einsum("ab,kba->k", base_inv, re_sum) / (q * sizes)
    w2[0] = 1.0
    return w2[:, None, None] * base


COV_RE_UPDATERS: dict[str, Callable[..., np.ndarray]] = {
    "expert": lambda cov, re_sum, sizes, diagonal: _cov_expert(cov, re_sum, sizes),
    "shared": lambda cov, re_sum, sizes, diagonal: _cov_shared(cov, re_sum, sizes),
    "proportional": _cov_proportional,
}

SCALE_UPDATERS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "expert": lambda rss_sum, obs_sizes: rss_sum / obs_sizes,
    "shared": lambda rss_sum, obs_sizes: np.full(rss_sum.shape, rss_sum.sum() / obs_sizes.sum()),
}


class GaussianFamily(ExpertFamily):
    """Linear mixed model experts (identity link, normal errors, residual variance sigma2_k).

    Its data are :class:`SubjectData` (per-subject sufficient statistics); its moments
    :class:`pymemoe.families._lmm.ExpertMoments`.
    """

    name = "gaussian"
    link = Identity()
    description = "Gaussian (identity link)"
    continuous = True
    sufficient_statistics = True
    mean_is_linear = True
    expert_mean_text = r"expert means $x^\top\beta_k$"

    # -- the model's options and input -----------------------------------------------------

    def scale_structure(self, scale: str) -> str:
        """``"expert"`` or ``"shared"`` residual variances, as asked."""
        if scale == "none":
            raise ValueError("scale='none' is for families without a residual variance")
        return scale

    def structure_options(self, structure) -> dict:
        return {"scale": structure.scale}

    def check_outcome(self, endog, trials, exog, outcome, formula=None, rows=None) -> None:
        """The outcome must vary, and not be an exact linear function of the fixed effects
        (the residual variances would be 0 and the likelihood unbounded)."""
        what = (f"formula {formula!r}: the outcome {outcome!r}" if formula is not None
                else f"the outcome {outcome!r}")
        check_outcome_varies(np.asarray(endog, dtype=float), exog, what)

    def re_scale(self, params: Params) -> np.ndarray:
        """The residual variances: a random-effect variance is judged against sigma2_k."""
        return params.scale

    def make_data(self, endog, exog, exog_re, exog_gate, groups, *, trials=None, offset=None,
                  weights=None):
        """Per-subject sufficient statistics (:class:`pymemoe.families.gaussian.SubjectData`); a row of
        weight 0 enters no cross-product and no count n_i."""
        if weights is None:
            return SubjectData.from_arrays(endog, exog, exog_re, exog_gate, groups)
        w = np.asarray(weights, dtype=float)
        y = np.where(w > 0, endog, 0.0)
        data = SubjectData.from_arrays(y, exog * w[:, None], exog_re * w[:, None], exog_gate, groups)
        n_obs = np.bincount(data.row_codes, weights=w, minlength=data.n_groups)
        return dataclasses.replace(data, n_obs=n_obs)

    def expert_means(self, params: Params, exog, exog_re, offset) -> np.ndarray:
        return exog @ params.beta.T

    def conditional_means(self, data, moments, params: Params, exog, exog_re, offset,
                          subject) -> np.ndarray:
        return exog @ params.beta.T + np.einsum("nq,nkq->nk", exog_re, np.asarray(moments.b_hat)[subject])

    def predictive_variances(self, params: Params, rows, means, posterior=None,
                             trials=None) -> np.ndarray:
        """z' D_k z + sigma2_k (a new subject) or z' Sigma_ik z + sigma2_k (given a history)."""
        z = rows.exog_re
        if posterior is None:
            var = np.einsum("nq,kqr,nr->nk", z, params.cov_re, z)
        else:
            var = np.einsum("nq,nkqr,nr->nk", z, posterior.b_cov[posterior.codes], z)
        return np.maximum(var + params.scale, 0.0)

    def expert_residuals(self, rows, endog, params: Params, b_hat, codes,
                         standardize: bool) -> np.ndarray:
        """Raw: y_j - x_j' beta_k. Standardised: the within-subject whitened residuals
        L_ik^-1 (y_i - X_i beta_k), V_ik = L_ik L_ik' (Cholesky), with the subject's rows in the
        order of the data: its standardised one-step-ahead prediction errors, independent
        N(0, 1) given a correct expert k. One batched Cholesky per distinct n_i, never a loop
        over subjects."""
        raw = endog[:, None] - rows.exog @ params.beta.T
        if not standardize:
            return raw
        if rows.exog_re.shape[1] == 0:
            return raw / np.sqrt(params.scale)
        order = np.argsort(codes, kind="stable")     # each subject's rows in the order of the data
        sizes = np.bincount(codes)
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        K = params.n_experts
        out = np.empty_like(raw)
        for size in np.unique(sizes):  # one batch per subject size, never a loop over subjects
            subjects = np.flatnonzero(sizes == size)
            n_blocks = max(1, int(np.ceil(subjects.size * K * size * size / WHITEN_BLOCK)))
            for block in np.array_split(subjects, n_blocks):
                idx = order[starts[block][:, None] + np.arange(size)]            # (S, m)
                z = rows.exog_re[idx]                                            # (S, m, q)
                V = np.einsum("smq,kqr,snr->skmn", z, params.cov_re, z)
                V += params.scale[None, :, None, None] * np.eye(size)
                resid = np.swapaxes(raw[idx], 1, 2)[..., None]                   # (S, K, m, 1)
                white = np.linalg.solve(np.linalg.cholesky(V), resid)[..., 0]
                out[idx] = np.swapaxes(white, 1, 2)
        return out

    def simulate_outcome(self, rows, params: Params, expert, b, rng, errors="normal",
                         df=3.0) -> np.ndarray:
        """x' beta_k + z' b + e with e ~ N(0, sigma2_k), or Student t with ``df`` degrees of
        freedom scaled to variance sigma2_k (``errors="t"``)."""
        n = expert.size
        sd = np.sqrt(params.scale[expert])
        if errors == "normal":
            e = sd * rng.standard_normal(n)
        else:
            e = sd * np.sqrt((df - 2.0) / df) * rng.standard_t(df, size=n)
        mean = self.expert_means(params, rows.exog, rows.exog_re, rows.row_offset)[np.arange(n), expert]
        return mean + np.einsum("nq,nq->n", rows.exog_re, b) + e

    def moments(self, data, params: Params, warm=None) -> ExpertMoments:
        return expert_moments(data, params)

    def gradients(self, data, params: Params, moments: ExpertMoments) -> ExpertGradients:
        beta, cov, scale = expert_gradients(data, params, moments)
        return ExpertGradients(beta=beta, cov=cov, scale=scale)

    def hessian_sums(self, data, params: Params, moments: ExpertMoments, tau: np.ndarray) -> np.ndarray:
        """Closed-form weighted Hessians of the experts (:mod:`pymemoe.families._lmm_hessian`)."""
        return expert_hessian_sums(data, params, moments, tau)

    def e_sums(self, data, params: Params, moments: ExpertMoments, tau: np.ndarray):
        """The GLS normal equations at the E-step's V_ik: (gram (K, p, p), rhs (K, p))."""
        return gls_normal_equations(data, params, moments, tau)

    @staticmethod
    def variance_block(data, cache, params: Params):
        """Sums of the variance update on one block, at ``params`` (new beta, the E-step's
        D_k and sigma2_k, whose covariance factor the block's cache holds): R_k, S_k, the
        posterior sizes and the posterior numbers of observations."""
        old = cache.moments
        moments = expert_moments(data, params, factor=(old.lam, old.m_inv, old.logdet_m))
        tau = cache.weighted_tau
        re_sum, rss_sum = variance_sums(data, moments, tau)
        return re_sum, rss_sum, tau.sum(axis=0), tau.T @ data.n_obs

    def m_step(self, blocks, caches: Sequence, structure: Structure, params: Params, e_sums,
               summary: DataSummary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        gram, rhs = e_sums
        beta = solve_fixed_effects(structure, gram, rhs)
        at_new_beta = dataclasses.replace(params, beta=beta)
        re_sum, rss_sum, sizes, obs_sizes = blocks.reduce(self.variance_block, caches, at_new_beta)
        scale = np.maximum(SCALE_UPDATERS[structure.scale](rss_sum, obs_sizes), summary.scale_floor)
        K, q = structure.n_experts, structure.k_re
        if q == 0:
            return beta, np.zeros((K, 0, 0)), scale
        diagonal = structure.re_structure == "diagonal"
        cov = COV_RE_UPDATERS[structure.cov_re](params.cov_re, re_sum, sizes, diagonal)
        if diagonal:
            cov = np.einsum("kaa->ka", cov)[:, :, None] * np.eye(q)
        return beta, cov, scale

    @staticmethod
    def totals_block(data, cache=None):
        """Whole-data sums of one block: X'X, X'y, y'y, observations, diag(Z'Z), subjects."""
        zdiag = np.diagonal(data.zz, axis1=1, axis2=2).sum(axis=0)
        return (data.xx.sum(axis=0), data.xy.sum(axis=0), float(data.yy.sum()), float(data.nobs),
                zdiag, data.n_groups)

    def summary(self, blocks) -> DataSummary:
        _, _, yy, nobs, zdiag, n_groups = blocks.reduce(self.totals_block, blocks.empty_caches())
        return DataSummary(n_groups=int(n_groups), nobs=int(nobs),
                           outcome_scale=float(yy / nobs), z_scale=np.asarray(zdiag) / nobs)

    def llf_bound(self, summary: DataSummary) -> float:
        """-nobs/2 log(2 pi floor): every eigenvalue of V_i = Z D Z' + sigma2 I is at least
        sigma2, itself at least the floor, so log N(y_i; mu, V_i) <= -n_i/2 log(2 pi floor),
        and a mixture's log density is at most its largest expert's."""
        return -0.5 * summary.nobs * float(np.log(2.0 * np.pi * summary.scale_floor))

    def one_expert_start(self, blocks, structure: Structure, summary: DataSummary) -> Params:
        """Pooled OLS, half the residual variance to each variance component."""
        xx, xy, yy, nobs, zdiag, _ = blocks.reduce(self.totals_block, blocks.empty_caches())
        p, q = xx.shape[0], structure.k_re
        beta = np.linalg.lstsq(xx, xy, rcond=None)[0]
        rss = yy - 2 * beta @ xy + beta @ xx @ beta
        sigma2 = max(rss / max(nobs - p, 1), summary.scale_floor) / 2.0
        z_scale = np.asarray(zdiag) / nobs if q else np.zeros(0)
        cov = np.diag(sigma2 / np.maximum(z_scale, 1e-12)) if q else np.zeros((0, 0))
        return Params(gamma=np.zeros((1, structure.k_gate)), beta=beta[None], cov_re=cov[None],
                      scale=np.array([sigma2]))

    def subject_coefficients(self, data, k_mix: int) -> np.ndarray:
        """Ridge-stabilised per-subject OLS coefficients of the expert-specific columns."""
        xx, xy = data.xx[:, :k_mix, :k_mix], data.xy[:, :k_mix]
        ridge = 1e-6 * (np.trace(xx, axis1=1, axis2=2) / max(k_mix, 1) + 1e-12)
        return np.linalg.solve(xx + ridge[:, None, None] * np.eye(k_mix), xy[..., None])[..., 0]


GAUSSIAN = GaussianFamily()
