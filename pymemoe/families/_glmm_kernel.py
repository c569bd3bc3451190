r"""Numerical kernel of generalised linear mixed model (GLMM) experts: Laplace and adaptive
Gauss-Hermite log-densities, their exact gradients, and predictive means.

Pure functions on rows held as contiguous per-subject segments (:class:`GLMMRows`); every
(subject, expert) pair is computed at once, and no Python loop runs over subjects.

Model
-----
Expert k, subject i with rows r (offset o_r, fixed-effect row x_r (p), random-effect row z_r (q),
row weight w_r >= 0)::

    eta_r = o_r + x_r' beta_k + z_r' b_i,    b_i = L_k u_i,   u_i ~ N(0, I_q),   D_k = L_k L_k'
    binomial (logit), m_r trials:  log p(y_r | eta_r) = w_r [y_r eta_r - m_r c(eta_r) + log C(m_r, y_r)],
                                   c(eta) = log(1 + e^eta)
    Poisson (log):                 log p(y_r | eta_r) = w_r [y_r eta_r - e^eta_r - log y_r!]

The row law is a :class:`~pymemoe.families.distributions.Distribution`; the formulas below are
written for the canonical form above. A distribution in the general form (another link)
supplies c = -log p(y_r | eta), its derivatives and m_r = 1, with no term linear in eta (the
``y_r eta_r`` terms below are then 0): every formula holds as written, with W_r and c3_r the
second and third derivatives of -w_r log p(y_r | eta).

L_k is lower triangular with a non-negative diagonal and may be singular. Everything is computed
in u-space, where the prior is N(0, I) whatever L_k, so a variance at 0 needs no special case::

    h_i(u) = sum_r log p(y_r | eta_r(u)) - |u|^2 / 2 - (q / 2) log 2 pi,
    g_i(u) = L' Z_i' a - u,                a_r = w_r (y_r - m_r c'(eta_r))
    H_i(u) = L' Z_i' W Z_i L + I,          W_r = w_r m_r c''(eta_r)     (-Hessian of h)

(m_r = 1 for Poisson, where c = c' = c'' = c''' = exp). Both links are canonical, so H_i is the
exact negative Hessian, it is >= I, h_i is strictly concave and has a unique mode u_hat_i.

Mode
----
Newton's method, u <- u + alpha H^-1 g, for all pairs at once; per pair the step is halved
(alpha = 1, 1/2, 1/4, ...) until h does not decrease, and a pair stops when max_l abs(g_l) <= gtol.
Warm starts (the previous EM iteration's modes) usually need 1-2 steps.

Laplace (nAGQ = 1)
------------------
::

    log f_i = h_i(u_hat) + (q / 2) log 2 pi - (1/2) log |H_i(u_hat)|.

Adaptive Gauss-Hermite quadrature (nAGQ = n > 1)
------------------------------------------------
With R_i the lower Cholesky factor of H_i^-1 (at the mode) and (z_j, w_j) the product rule for
N(0, I_q) (:mod:`pymemoe._linalg.quadrature`), the nodes are u_j = u_hat + R z_j and::

    log f_i = log sum_j w_j exp(h_i(u_j) + |z_j|^2 / 2) + log |R_i| + (q / 2) log 2 pi.

n = 1 (the node z = 0) is the Laplace formula. In b-space the nodes are b_hat + L R z_j, and
L R, a product of lower triangular factors with positive diagonals, is the lower Cholesky factor
of Sigma_b = L H^-1 L': the rule is the b-space rule with Cholesky-factor scaling, so it depends
on D = L L' only (not on how D is factored), and for q = 1 it is lme4's rule. The sum is taken
as ``exp(log w_j + h(u_j) - h(u_hat) + |z_j|^2 / 2)``: as h(u_j) <= h(u_hat), the exponent is at
most ``|z_j|^2 / 2 + log w_j`` (< 1 for every rule), so nothing overflows.

Exact gradients
---------------
Write theta = (beta, L), F = log f_i. All derivatives below are of the value returned, including
the dependence of u_hat(theta) and of the node placement R(theta) on theta.

*Mode.* The implicit function theorem applied to g(u_hat, theta) = 0 (dg/du = -H) gives::

    d u_hat = P (-L' Z'WX d beta + dL' Z'a - L' C dL u_hat),    P = H^-1, C = Z'WZ.

*Curvature.* H is evaluated at u_hat, so, with c3_r = w_r m_r c'''(eta_r),::

    dH = dL' C L + L' C dL + L' Z' diag(c3 * d eta) Z L,    d eta = X d beta + Z (dL u_hat + L d u_hat).

*Adaptive sum.* F = F(theta, u_hat, R). With omega_j the normalised node weights (their sum is 1),
g_j = g(u_j) and zbar = sum omega_j z_j, Q = sum omega_j z_j z_j'::

    dF/d theta (nodes fixed) = sum_j omega_j dh(u_j)/d theta:  X'abar  and  S0 u_hat' + S1 R',
        abar = sum_j omega_j a(u_j) (rows), S0 = Z'abar, S1 = sum_j omega_j Z'a(u_j) z_j'
    dF/d u_hat = gbar = L' S0 - u_hat - R zbar
    dF/d R     = Psi  = Gamma + R^-T,     Gamma = L' S1 - u_hat zbar' - R Q.

The Cholesky differential of R R' = P, dR = R Phi(R^-1 dP R^-T) (Phi: lower triangle with
halved diagonal), and dP = -P dH P turn tr(Psi' dR) into -<E, dH> with::

    E = R S R',    S = (Phi(R' Psi) + Phi(R' Psi)') / 2.

For Laplace (one node at 0) gbar = 0, Psi = R^-T and E = P / 2: the familiar
-(1/2) tr(H^-1 dH). Collecting terms, with the row leverages lev_r = z_r' L E L' z_r,
s_r = c3_r lev_r, t = Z's, kappa = gbar - L't, rho = P kappa and zeta_r = z_r' L rho::

    d F / d beta = X' (abar - s - W zeta)
    d F / d L    = lower[ S0 u_hat' + S1 R' + (Z'a) rho' - (C L rho) u_hat' - t u_hat' - 2 C L E ]

(Z'a, C, W, c3 at the mode). For Laplace abar = a(u_hat) and S1 = 0. These are finite at a
singular L. The gradient with respect to a symmetric D = L L' (d F = tr(G_D dD)) satisfies
dF/dL = lower(2 G_D L); :func:`chol_grad_to_cov_grad` solves that small linear system per expert.

q = 0 (no random effects): the expert is a GLM, log f_i = sum_r log p(y_r | o_r + x_r' beta),
gradient X'a.

Numerics
--------
The binomial terms use e = exp(-abs(eta)) only (c = max(eta, 0) + log(1 + e), c' = 1/(1+e) or
e/(1+e), c'' = e/(1+e)^2), so any finite eta is safe; Poisson's exp(eta) is capped at
exp(709) (the float limit), which turns an overflow into a huge negative log-density that the
step halving rejects. A non-finite log-density or gradient raises :class:`GLMMNumericalWarning`
(never a silent NaN).

Layout and cost
---------------
Inside the kernel the expert axis comes before the subject or row axis: row arrays are (K, n),
per-pair arrays (K, N), and the per-pair small matrices are in the lead layout of
:mod:`pymemoe._linalg.smallmat`, (q, K, N) and (q, q, K, N), so that each entry is one
contiguous (K, N) block and row weights (n,) broadcast along the long last axis (with the
expert axis last, numpy's inner loops would run over K: several times slower, measured in
:ref:`defaults-measured`). The public outputs are (N, K), (N, K, q) and (N, K, q, q). Every pass over the rows
runs over blocks of whole subjects (about 65,536 rows x experts; the quadrature loop uses
smaller blocks and chunks of nodes), so the memory of temporaries is bounded whatever n and
the number of nodes. Sums over a subject's rows are products with sparse (subjects x rows)
matrices of a block that carry the row weights (w m, w m z_j, w m z_i z_j, z_j, x_j), stacked
so that one product gives all the sums of a kind: faster than ``np.add.reduceat`` (measured
in :ref:`defaults-measured`), and no product temporaries.

A Newton pass costs one exp and one log per row and expert (numpy's float64 exp and log are
scalar without AVX-512, and they dominate its cost); once fewer than half the subjects are still iterating,
only their rows are evaluated. Warm starts (``u_start``) typically need 2 steps at an
optimiser's step size; ``previous`` (the first-order prediction of the modes) needs 1-2 and
saves about one pass. The adaptive quadrature costs the same per node as a Newton pass.

References
----------
Pinheiro, J. C. and Bates, D. M. (1995). Approximations to the log-likelihood function in the
nonlinear mixed-effects model. J. Comput. Graph. Statist. 4, 12-35.
Bates, D. et al. (2015). Fitting linear mixed-effects models using lme4. J. Stat. Softw. 67(1).
Murray, I. (2016). Differentiation of the Cholesky decomposition. arXiv:1602.07527.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from .._linalg.quadrature import gauss_hermite_normal
from .._linalg.smallmat import (lead_inverse_factor, lead_matmul, lead_matvec, lead_sym_phi,
                                lead_transpose)
from ..exceptions import GLMMNumericalWarning
from .distributions import Distribution, check_power, get_distribution

__all__ = ["GLMMRows", "GLMMMoments", "GLMMGradients", "glmm_moments", "glmm_gradients", "chol_grad_to_cov_grad", "glmm_marginal_mean",
           "glmm_conditional_mean"]

LOG_2PI = float(np.log(2.0 * np.pi))


# ----------------------------------------------------------------------------------------------
# Row data
# ----------------------------------------------------------------------------------------------

def _as_float(a, name: str, shape: tuple[int, ...]) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=float)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite values")
    return a


@dataclass(frozen=True, eq=False)
class GLMMRows:
    """Rows of N subjects held as contiguous per-subject segments.

    Attributes
    ----------
    endog : ndarray (n,)
        Outcome: successes (binomial) or counts (Poisson).
    trials : ndarray (n,)
        Binomial trials m_r (ones for binary outcomes); ignored by the Poisson family.
    exog : ndarray (n, p)
        Fixed-effects design.
    exog_re : ndarray (n, q)
        Random-effects design (q may be 0).
    offset : ndarray (n,)
        Offset of the linear predictor (log exposure for Poisson).
    weights : ndarray (n,)
        Row weights w_r >= 0 multiplying the row log-likelihood (1 normally; 0 drops the row
        from the likelihood while keeping it in the data, as dynamic prediction needs).
    starts : ndarray (N,) of int
        First row of each subject; subject i owns rows starts[i] : starts[i] + n_obs[i].
    n_obs : ndarray (N,) of int
        Rows per subject (>= 1).
    groups : ndarray (N,) or None
        Subject labels in segment order (set by :meth:`from_groups`).
    order : ndarray (n,) or None
        Row permutation applied by :meth:`from_groups`: row t here is input row ``order[t]``.
    """

    endog: np.ndarray
    trials: np.ndarray
    exog: np.ndarray
    exog_re: np.ndarray
    offset: np.ndarray
    weights: np.ndarray
    starts: np.ndarray
    n_obs: np.ndarray
    groups: np.ndarray | None = None
    order: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exog = np.asarray(self.exog, dtype=float)
        if exog.ndim != 2:
            raise ValueError(f"exog must be 2-d (n, p), got shape {exog.shape}")
        n, p = exog.shape
        exog_re = np.asarray(self.exog_re, dtype=float)
        if exog_re.ndim != 2 or exog_re.shape[0] != n:
            raise ValueError(f"exog_re must have shape ({n}, q), got {exog_re.shape}")
        q = exog_re.shape[1]
        set_ = object.__setattr__
        set_(self, "exog", _as_float(exog, "exog", (n, p)))
        set_(self, "exog_re", _as_float(exog_re, "exog_re", (n, q)))
        for name in ("endog", "trials", "offset", "weights"):
            set_(self, name, _as_float(getattr(self, name), name, (n,)))
        if np.any(self.weights < 0):
            raise ValueError("weights must be >= 0")
        starts = np.ascontiguousarray(self.starts, dtype=np.intp)
        n_obs = np.ascontiguousarray(self.n_obs, dtype=np.intp)
        if starts.ndim != 1 or n_obs.shape != starts.shape or starts.size == 0:
            raise ValueError("starts and n_obs must be non-empty 1-d arrays of the same length")
        if np.any(n_obs < 1):
            raise ValueError("every subject needs at least one row (n_obs >= 1)")
        if starts[0] != 0 or np.any(starts[1:] != np.cumsum(n_obs)[:-1]) or n_obs.sum() != n:
            raise ValueError("starts must be the cumulative sums of n_obs (contiguous segments "
                             "covering all rows)")
        set_(self, "starts", starts)
        set_(self, "n_obs", n_obs)

    @classmethod
    def from_groups(cls, groups, endog, exog, exog_re=None, *, trials=None, offset=None,
                    weights=None) -> "GLMMRows":
        """Build the segments from unsorted rows and a subject label per row.

        Rows are sorted stably by label (the order of a subject's rows is kept); subjects are
        numbered in sorted label order.

        Parameters
        ----------
        groups : array (n,)
            Subject label of each row (any sortable values).
        endog, exog, exog_re : arrays (n,), (n, p), (n, q)
            ``exog_re=None`` means no random effects (q = 0).
        trials, offset, weights : arrays (n,), optional
            Default 1, 0 and 1.

        Returns
        -------
        GLMMRows

        Examples
        --------
        >>> import numpy as np
        >>> r = GLMMRows.from_groups([7, 3, 7, 3, 3], [1, 0, 0, 1, 1], np.ones((5, 1)), np.ones((5, 1)))
        >>> r.groups.tolist(), r.n_obs.tolist(), r.order.tolist(), r.endog.tolist()
        ([3, 7], [3, 2], [1, 3, 4, 0, 2], [0.0, 1.0, 1.0, 1.0, 0.0])
        """
        groups = np.asarray(groups)
        if groups.ndim != 1:
            raise ValueError("groups must be 1-d")
        n = groups.shape[0]
        labels, codes = np.unique(groups, return_inverse=True)
        codes = codes.reshape(-1)
        order = np.argsort(codes, kind="stable")
        n_obs = np.bincount(codes, minlength=labels.size)
        starts = np.concatenate([[0], np.cumsum(n_obs)[:-1]])
        exog = np.asarray(exog, dtype=float)
        if exog.ndim == 1:
            exog = exog[:, None]
        exog_re = np.zeros((n, 0)) if exog_re is None else np.asarray(exog_re, dtype=float)
        if exog_re.ndim == 1:
            exog_re = exog_re[:, None]
        take = lambda a, default: (np.full(n, default) if a is None else np.asarray(a, float))[order]
        return cls(endog=np.asarray(endog, dtype=float)[order], trials=take(trials, 1.0),
                   exog=exog[order], exog_re=exog_re[order], offset=take(offset, 0.0),
                   weights=take(weights, 1.0), starts=starts, n_obs=n_obs, groups=labels,
                   order=order)

    @property
    def n_subjects(self) -> int:
        return int(self.starts.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.endog.shape[0])

    @property
    def k_fe(self) -> int:
        return int(self.exog.shape[1])

    @property
    def k_re(self) -> int:
        return int(self.exog_re.shape[1])

    @cached_property
    def subject(self) -> np.ndarray:
        """Subject index of every row (n,)."""
        return np.repeat(np.arange(self.n_subjects), self.n_obs)

    @cached_property
    def _indicator(self) -> sp.csr_matrix:
        return _indicator_matrix(self.n_obs)

    def segment_sum(self, a: np.ndarray) -> np.ndarray:
        """Sums over each subject's rows: (n, ...) -> (N, ...), in row order within a segment
        (no cancellation: the sums are as accurate as ``np.add.reduceat``)."""
        return _segment_sum(self._indicator, a)

    def gather(self, a: np.ndarray) -> np.ndarray:
        """Subject values broadcast to their rows: (N, ...) -> (n, ...)."""
        return np.take(a, self.subject, axis=0)


def _indicator_matrix(n_obs: np.ndarray) -> sp.csr_matrix:
    """The (N x n) 0/1 matrix of contiguous segments: row i has ones at subject i's rows."""
    n = int(n_obs.sum())
    indptr = np.concatenate([[0], np.cumsum(n_obs)])
    return sp.csr_matrix((np.ones(n), np.arange(n), indptr), shape=(n_obs.size, n))


def _segment_sum(indicator: sp.csr_matrix, a: np.ndarray) -> np.ndarray:
    """Segment sums (n, ...) -> (N, ...) as one sparse product (all trailing columns at once)."""
    a = np.asarray(a)
    tail = a.shape[1:]
    flat = np.ascontiguousarray(a.reshape(a.shape[0], -1))
    out = indicator @ flat[:, 0] if flat.shape[1] == 1 else indicator @ flat
    return np.asarray(out).reshape((indicator.shape[0],) + tail)


# ----------------------------------------------------------------------------------------------
# Families
# ----------------------------------------------------------------------------------------------


def _pub(a: np.ndarray, n_lead: int) -> np.ndarray:
    """Internal expert-major layout -> public: (K, N) -> (N, K); (q, K, N) -> (N, K, q);
    (q, q, K, N) -> (N, K, q, q); C-contiguous copies."""
    order = {0: (1, 0), 1: (2, 1, 0), 2: (3, 2, 0, 1)}[n_lead]
    return np.ascontiguousarray(a.transpose(order))


def _internal(a: np.ndarray, n_tail: int) -> np.ndarray:
    """Public -> internal: (N, K, q) -> (q, K, N); (N, K, q, q) -> (q, q, K, N)."""
    order = {1: (2, 1, 0), 2: (2, 3, 1, 0)}[n_tail]
    return np.ascontiguousarray(a.transpose(order))


# ----------------------------------------------------------------------------------------------
# Blocks of subjects, per-call context and the evaluation of h, g, H
# ----------------------------------------------------------------------------------------------

#: Rows x experts per block of subjects (512 KB per (K, rows) array). Passes over the rows run
#: block by block, so the memory of the temporaries is bounded whatever the data size; smaller
#: blocks pay numpy's per-call overhead, larger ones were no faster (docs/performance.rst,
#: "Measurements behind the defaults", for this and the two sizes below).
BLOCK_ELEMENTS = 65536
#: Rows x experts per block in the quadrature loop, and rows x experts x nodes per chunk of
#: nodes within a block (512 KB per array): the temporaries of a chunk mostly stay in cache
#: (elementwise work costs more than twice as much per element out of cache; smaller chunks
#: pay more per-call overhead).
AGQ_BLOCK_ELEMENTS = 16384
NODE_ELEMENTS = 65536


@dataclass(frozen=True, eq=False)
class _Block:
    rows: slice              # the block's rows
    subjects: slice          # its subjects (whole subjects only)
    local: np.ndarray        # subject of each row, relative to subjects.start
    n_obs: np.ndarray        # rows of each of its subjects


def _stacked(n_obs: np.ndarray, columns: list[np.ndarray]) -> sp.csr_matrix:
    """(m Nb x nb) matrix whose row j Nb + i holds columns[j] on subject i's rows: one sparse
    product gives the m weighted segment sums sum_r columns[j]_r a_r of every subject."""
    m, nb, Nb = len(columns), int(n_obs.sum()), n_obs.size
    if m == 0:
        return sp.csr_matrix((0, nb))
    indptr = np.concatenate([[0], np.cumsum(np.tile(n_obs, m))])
    data = np.concatenate([np.broadcast_to(c, (nb,)) for c in columns])
    return sp.csr_matrix((data, np.tile(np.arange(nb), m), indptr), shape=(m * Nb, nb))


@dataclass(frozen=True, eq=False)
class _BlockSums:
    """The weighted segment-sum matrices of one block (see :func:`_stacked`); ``z`` and ``x``
    (used by the gradient only) are None in Newton's subsets."""

    wm: sp.csr_matrix                # w m
    wmz: sp.csr_matrix               # w m z_j, j < q
    wmzz: sp.csr_matrix              # w m z_i z_j, i >= j
    z: sp.csr_matrix | None = None   # z_j
    x: sp.csr_matrix | None = None   # x_j, j < p


def _block_sums(blk: _Block, wm, zc, wmz, wmzz, X, newton_only: bool = False) -> _BlockSums:
    r, n_obs = blk.rows, blk.n_obs
    sums = dict(wm=_stacked(n_obs, [wm[r]]), wmz=_stacked(n_obs, [w[r] for w in wmz]),
                wmzz=_stacked(n_obs, [w[r] for w in wmzz.values()]))
    if not newton_only:
        sums.update(z=_stacked(n_obs, [z[r] for z in zc]),
                    x=_stacked(n_obs, [X[r, j] for j in range(X.shape[1])]))
    return _BlockSums(**sums)


def _smul(S: sp.csr_matrix, a: np.ndarray, m: int) -> np.ndarray:
    """Stacked segment sums per expert: a (K, nb, ...) -> (m, K, Nb, ...)."""
    K, nb, tail = a.shape[0], a.shape[1], a.shape[2:]
    Nb = S.shape[0] // max(m, 1)
    out = np.empty((m, K, Nb) + tail)
    for k in range(K):
        flat = a[k].reshape(nb, -1)
        res = S @ flat[:, 0] if flat.shape[1] == 1 else S @ flat
        out[:, k] = np.asarray(res).reshape((m, Nb) + tail)
    return out


def _make_blocks(n_obs: np.ndarray, size: int) -> list[_Block]:
    """Runs of whole subjects with about ``size`` rows each (a longer subject is a block)."""
    ends = np.cumsum(n_obs)
    ids = (ends - 1) // max(1, size)                 # block of each subject, by its last row
    cut = np.flatnonzero(np.diff(ids)) + 1
    s_lo = np.concatenate([[0], cut])
    s_hi = np.concatenate([cut, [n_obs.size]])
    row_at = np.concatenate([[0], ends])
    blocks = []
    for s0, s1 in zip(s_lo.tolist(), s_hi.tolist()):
        nb = n_obs[s0:s1]
        blocks.append(_Block(slice(int(row_at[s0]), int(row_at[s1])), slice(s0, s1),
                             np.repeat(np.arange(s1 - s0), nb), nb))
    return blocks


class _Context:
    """Everything fixed during one call: data terms (cached per rows and family), the blocks,
    and the parameter-dependent linear predictor eta0 = offset + X beta_k.

    Internal layout, expert-major: rows (K, n), per-pair arrays (K, N), (q, K, N),
    (q, q, K, N), the factors L as (q, q, K, 1). Row weights (n,) and parameters then broadcast
    along the long last axis: with the expert axis last, numpy's inner loops would run over K
    (5-7 times slower for K = 2, measured)."""

    def __init__(self, rows: GLMMRows, family, beta, chol):
        fam = get_distribution(family)
        self.rows, self.fam = rows, fam
        p, q = rows.k_fe, rows.k_re
        beta = np.asarray(beta, dtype=float)
        if beta.ndim == 1:
            beta = beta[None]
        if beta.ndim != 2 or beta.shape[1] != p:
            raise ValueError(f"beta must have shape (K, {p}), got {beta.shape}")
        K = beta.shape[0]
        chol = np.asarray(chol, dtype=float)
        if q == 0 and chol.size == 0:
            chol = np.zeros((K, 0, 0))
        if chol.ndim == 2 and K == 1:
            chol = chol[None]
        if chol.shape != (K, q, q):
            raise ValueError(f"chol must have shape ({K}, {q}, {q}), got {chol.shape}")
        if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(chol))):
            raise ValueError("beta and chol must be finite")
        chol = np.tril(chol)                       # the upper triangle is ignored
        self.beta, self.chol, self.K, self.p, self.q = beta, chol, K, p, q
        self.L = np.moveaxis(chol, 0, -1)[..., None]          # (q, q, K, 1)
        self.tri = [(i, j) for i in range(q) for j in range(i + 1)]
        d = self._data_terms()
        for name in ("wy", "wm", "zc", "wmz", "wmzz", "zzlev", "Zwy", "y", "m"):
            setattr(self, name, d[name])
        self.X = rows.exog
        # Sum_r w_r [y_r eta0_r + log C_r]: the part of sum_r log p linear in beta
        self.base = (d["const"] + d["wyo"])[None, :] + beta @ d["Xwy"].T              # (K, N)
        self.eta0 = rows.offset[None, :] + beta @ rows.exog.T                         # (K, n)
        self.blocks, self.sums = self._blocks(BLOCK_ELEMENTS)
        self.row_index = None                      # rows of the full data: all of them

    def _blocks(self, elements: int):
        """Blocks of about ``elements`` rows x experts and their sums, cached per rows."""
        rows, size = self.rows, max(1, elements // self.K)
        if ("blocks", size) not in rows._cache:
            rows._cache[("blocks", size)] = _make_blocks(rows.n_obs, size)
        blocks = rows._cache[("blocks", size)]
        if (self.fam.name, size) not in rows._cache:
            rows._cache[(self.fam.name, size)] = [
                _block_sums(b, self.wm, self.zc, self.wmz, self.wmzz, self.X) for b in blocks]
        return blocks, rows._cache[(self.fam.name, size)]

    def agq_blocks(self):
        """Smaller blocks for the quadrature loop (see ``AGQ_BLOCK_ELEMENTS``)."""
        return self._blocks(AGQ_BLOCK_ELEMENTS)

    def subset(self, idx: np.ndarray) -> "_Context":
        """The same call restricted to the subjects ``idx`` (increasing), for Newton only:
        its last steps concern a few pairs, and evaluating only their rows makes them cheap."""
        rows = self.rows
        sub = object.__new__(_Context)
        sub.__dict__.update(self.__dict__)
        n_obs = rows.n_obs[idx]
        first = np.concatenate([[0], np.cumsum(n_obs)[:-1]])
        ridx = np.repeat(rows.starts[idx] - first, n_obs) + np.arange(int(n_obs.sum()))
        sub.row_index = ridx
        sub.wm = self.wm[ridx]
        sub.zc = [z[ridx] for z in self.zc]
        sub.wmz = [z[ridx] for z in self.wmz]
        sub.wmzz = {key: z[ridx] for key, z in self.wmzz.items()}
        sub.blocks = _make_blocks(n_obs, max(1, BLOCK_ELEMENTS // self.K))
        sub.sums = [_block_sums(b, sub.wm, sub.zc, sub.wmz, sub.wmzz, None, newton_only=True)
                    for b in sub.blocks]
        sub.Zwy = self.Zwy[..., idx]
        sub.y, sub.m = self.y[ridx], self.m[ridx]
        sub.base = self.base[:, idx]
        sub.eta0 = self.eta0[:, ridx]
        for name in ("wy", "zzlev", "X", "rows"):                # not for a subset's use
            setattr(sub, name, None)
        return sub

    def _data_terms(self) -> dict:
        rows, fam = self.rows, self.fam
        cache = rows._cache.get(fam.name)
        if cache is None:
            w, y = rows.weights, rows.endog
            fam.check(y, rows.trials)
            # a general (non-canonical) distribution has no part linear in eta: its whole
            # log-likelihood is in c (see pymemoe.families.distributions)
            wy = w * y if fam.canonical else np.zeros_like(y)
            wm = w * fam.trials(y, rows.trials)
            Z = rows.exog_re
            q = Z.shape[1]
            zc = [np.ascontiguousarray(Z[:, j]) for j in range(q)]
            cache = dict(
                wy=wy, wm=wm, zc=zc, y=y, m=rows.trials,
                wmz=[wm * z for z in zc],
                wmzz={(i, j): wm * zc[i] * zc[j] for i in range(q) for j in range(i + 1)},
                # z_i z_j (twice off the diagonal): z' M z = sum_{i>=j} zzlev_ij M_ij
                zzlev={(i, j): (1.0 if i == j else 2.0) * zc[i] * zc[j]
                       for i in range(q) for j in range(i + 1)},
                const=rows.segment_sum(w * fam.log_const(y, rows.trials)),
                wyo=rows.segment_sum(wy * rows.offset),
                Xwy=rows.segment_sum(rows.exog * wy[:, None]),
                Zwy=np.ascontiguousarray(rows.segment_sum(Z * wy[:, None]).T[:, None, :]),
            )
            rows._cache[fam.name] = cache
        return cache

    def row_data(self, r) -> dict:
        """The outcomes and trials of rows ``r`` for a distribution in the general form
        (whose c depends on y); nothing for a canonical one."""
        return {} if self.fam.canonical else {"y": self.y[r], "m": self.m[r]}

    def b_of(self, u: np.ndarray) -> np.ndarray:
        """b = L u, (q, K, N)."""
        return lead_matvec(self.L, u)


@dataclass
class _Eval:
    h: np.ndarray          # (K, N)
    za: np.ndarray         # (q, K, N)  Z'a
    g: np.ndarray          # (q, K, N)
    C: np.ndarray          # (q, q, K, N)  Z'WZ
    H: np.ndarray          # (q, q, K, N)
    sum_c: np.ndarray      # (K, N) sum_r w_r m_r c(eta_r)
    eta: np.ndarray        # rows (K, n)
    mu: np.ndarray         # rows (K, n) c'(eta)
    v: np.ndarray          # rows (K, n) c''(eta) (W_r = w_r m_r c'')


def _evaluate(ctx: _Context, u: np.ndarray) -> _Eval:
    """h, its gradient and negative Hessian at u (q, K, N) for all pairs, block by block; the
    segment sums (sum w m c, Z'(w m mu), Z'WZ) are three weighted sparse products per block
    and expert."""
    q, K, tri = ctx.q, ctx.K, ctx.tri
    N, n = ctx.base.shape[1], ctx.eta0.shape[1]
    b = ctx.b_of(u)
    sum_c = np.empty((K, N))
    za = np.empty((q, K, N))
    C = np.empty((q, q, K, N))
    eta_f, mu_f, v_f = np.empty((K, n)), np.empty((K, n)), np.empty((K, n))
    cumulants = ctx.fam.cumulants
    for blk, S in zip(ctx.blocks, ctx.sums):
        r, s, loc = blk.rows, blk.subjects, blk.local
        eta = eta_f[:, r]
        np.copyto(eta, ctx.eta0[:, r])
        for j in range(q):
            eta += ctx.zc[j][r] * np.take(b[j, :, s], loc, axis=1)
        c, mu, v = cumulants(eta, True, mu_f[:, r], v_f[:, r], **ctx.row_data(r))
        sum_c[:, s] = _smul(S.wm, c, 1)[0]
        np.subtract(ctx.Zwy[..., s], _smul(S.wmz, mu, q), out=za[..., s])
        cv = _smul(S.wmzz, v, len(tri))
        for t, (i, j) in enumerate(tri):
            C[i, j][:, s] = cv[t]
            if i != j:
                C[j, i][:, s] = cv[t]
    h = ctx.base - sum_c - 0.5 * (u * u).sum(axis=0) - 0.5 * q * LOG_2PI
    for j in range(q):
        h += ctx.Zwy[j] * b[j]
    g = lead_matvec(lead_transpose(ctx.L), za) - u
    H = lead_matmul(lead_transpose(ctx.L), lead_matmul(C, ctx.L))
    for j in range(q):
        H[j, j] += 1.0
    return _Eval(h, za, g, C, H, sum_c, eta_f, mu_f, v_f)


#: Newton evaluates only the rows of the subjects still iterating once they are fewer than this
#: fraction of all subjects (building the subset costs about a tenth of a pass over its rows).
COMPACT_FRACTION = 0.6


def _newton(ctx: _Context, u: np.ndarray, gtol: float, max_iter: int, max_halvings: int):
    """Damped Newton for the modes of all pairs (u: (q, K, N)).

    Returns (u, evaluation, n_iter, n_halvings, converged, n_evaluations, stale): the
    subject-level parts of the evaluation (h, g, H, Z'a, C) are at u for every pair, and so are
    its row arrays except for the subjects flagged in ``stale`` (N,) (a rejected last trial).
    ``n_evaluations`` counts passes over the rows in units of the full data.
    """
    K, N = ctx.base.shape
    n_rows = ctx.eta0.shape[1]
    ev = _evaluate(ctx, u)
    n_eval = 1.0
    n_iter = np.zeros((K, N), dtype=np.intp)
    n_halve = np.zeros((K, N), dtype=np.intp)
    halve_now = np.zeros((K, N), dtype=np.intp)        # halvings of the current step
    converged = np.abs(ev.g).max(axis=0) <= gtol
    done = converged.copy()
    stale = np.zeros(N, dtype=bool)
    alpha = np.ones((K, N))
    R, _ = lead_inverse_factor(ev.H)
    step = lead_matvec(R, lead_matvec(lead_transpose(R), ev.g))
    while not done.all():
        active = ~done
        busy = active.any(axis=0)
        if busy.mean() > COMPACT_FRACTION:
            sel, sub = slice(None), ctx
        else:
            sel = np.flatnonzero(busy)
            sub = ctx.subset(sel)
        act = active[:, sel]
        u_s, h_s = u[..., sel], ev.h[:, sel]
        trial = np.where(act, u_s + alpha[:, sel] * step[..., sel], u_s)
        ev_t = _evaluate(sub, trial)
        n_eval += ev_t.eta.shape[1] / n_rows
        # accept when h does not decrease beyond its rounding level: near the mode the gain
        # g'H^-1 g falls below what h (a sum of n_i terms) resolves, and the comparison alone
        # would stall Newton at |g| ~ sqrt(eps |h|) ~ 1e-8
        acc = act & (ev_t.h >= h_s - 1e-13 * (1.0 + np.abs(h_s)))
        rej = act & ~acc
        # a step that no longer moves u in floating point: as converged as rounding allows
        moved = np.abs(alpha[:, sel] * step[..., sel]).max(axis=0)
        stalled = acc & (moved <= 4e-16 * (1.0 + np.abs(u_s).max(axis=0)))
        n_iter[:, sel] += acc
        n_halve[:, sel] += rej
        halve_now[:, sel] = np.where(rej, halve_now[:, sel] + 1, 0)
        alpha[:, sel] = np.where(rej, 0.5 * alpha[:, sel], 1.0)
        u[..., sel] = np.where(acc, trial, u_s)
        ev.h[:, sel] = np.where(acc, ev_t.h, h_s)
        ev.sum_c[:, sel] = np.where(acc, ev_t.sum_c, ev.sum_c[:, sel])
        for name in ("za", "g", "C", "H"):
            full = getattr(ev, name)
            full[..., sel] = np.where(acc, getattr(ev_t, name), full[..., sel])
        if sub.row_index is None:
            ev.eta, ev.mu, ev.v = ev_t.eta, ev_t.mu, ev_t.v
        else:
            ri = sub.row_index
            ev.eta[:, ri], ev.mu[:, ri], ev.v[:, ri] = ev_t.eta, ev_t.mu, ev_t.v
        stale[sel] = rej.any(axis=0)
        newly = acc & ((np.abs(ev.g[..., sel]).max(axis=0) <= gtol) | stalled)
        converged[:, sel] |= newly
        done[:, sel] |= newly | (rej & (halve_now[:, sel] > max_halvings)) | (n_iter[:, sel] >= max_iter)
        if not done.all():
            R, _ = lead_inverse_factor(ev.H[..., sel])
            new_step = lead_matvec(R, lead_matvec(lead_transpose(R), ev.g[..., sel]))
            step[..., sel] = np.where(acc, new_step, step[..., sel])
    return u, ev, n_iter, n_halve, converged, n_eval, stale


def _extrapolate(ctx: _Context, previous: "GLMMMoments") -> np.ndarray:
    """First-order prediction of the modes at ctx's parameters from ``previous`` (same rows,
    other parameters), by the implicit function theorem at the previous mode::

        u = u0 + P0 [-L0' Z'W X dbeta + dL' Z'a - L0' C dL u0]     (q, K, N)

    The error is O(|dtheta|^2), so one Newton step usually reaches the tolerance.
    """
    st = previous._state
    L0 = np.moveaxis(previous.chol, 0, -1)[..., None]
    u0, R0 = st.u, st.R
    dL = ctx.L - L0
    wx = ctx.wm * st.v * ((ctx.beta - previous.beta) @ ctx.X.T)     # W X dbeta, rows (K, n)
    zwx = np.stack([ctx.rows.segment_sum((z * wx).T).T for z in ctx.zc])  # (q, K, N)
    rhs = lead_matvec(lead_transpose(dL), st.za) - lead_matvec(lead_transpose(L0), zwx + lead_matvec(st.C, lead_matvec(dL, u0)))
    return np.ascontiguousarray(u0 + lead_matvec(R0, lead_matvec(lead_transpose(R0), rhs)))


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _GradState:
    """What :func:`glmm_gradients` (and ``previous=``) need, in the internal layout."""

    u: np.ndarray                # (q, K, N) the modes
    R: np.ndarray                # (q, q, K, N) chol(H^-1)
    za: np.ndarray               # (q, K, N)  Z'a(u_hat)
    C: np.ndarray                # (q, q, K, N)  Z'WZ at the mode
    v: np.ndarray                # rows (K, n) c'' at the mode (W = w m c'')
    mu: np.ndarray               # rows (K, n) c'(eta) at the mode
    mubar: np.ndarray            # rows (K, n) sum_j omega_j mu(u_j)  (Laplace: mu)
    eta: np.ndarray | None = None    # rows (K, n) eta at the mode (general-form distributions)
    S0: np.ndarray | None = None     # (q, K, N)  Z' abar                 (AGQ only)
    S1: np.ndarray | None = None     # (q, q, K, N)                       (AGQ only)
    zbar: np.ndarray | None = None   # (q, K, N)
    zz: np.ndarray | None = None     # (q, q, K, N) sum_j omega_j z_j z_j'
    ctx: "_Context | None" = None    # the call's context (eta0, data terms, blocks), reused


@dataclass(frozen=True, eq=False)
class GLMMMoments:
    """Log-densities and conditional modes of every (subject, expert) pair at one parameter.

    Attributes
    ----------
    logdens : ndarray (N, K)
        log f(y_i | class k): Laplace (n_agq = 1) or adaptive Gauss-Hermite, with all constants.
    u_hat : ndarray (N, K, q)
        Modes of h in u-space (pass as ``u_start`` to warm-start the next call).
    b_hat : ndarray (N, K, q)
        Modes of the random effects, L_k u_hat.
    b_cov : ndarray (N, K, q, q)
        L_k H^-1 L_k', the covariance of the Gaussian approximation of b | y_i, class k.
    chol_h_inv : ndarray (N, K, q, q)
        R, the lower Cholesky factor of H^-1 (the node scaling in u-space).
    logdet_h : ndarray (N, K)
        log det H at the mode.
    h_mode : ndarray (N, K)
        h(u_hat).
    grad_norm : ndarray (N, K)
        max_l abs(dh/du_l) at u_hat (the Newton stopping criterion).
    n_iter, n_halvings : ndarray (N, K) of int
        Accepted Newton steps and step halvings per pair.
    converged : ndarray (N, K) of bool
        Newton reached ``gtol`` (or the rounding level of h).
    n_evaluations : float
        Newton's passes over the rows (evaluations of h, g and H) in units of the full data: a
        pass over the rows of a subset of subjects counts as its fraction of the rows. The
        quadrature nodes are not counted.
    n_agq : int
        Nodes per dimension (1: Laplace).
    family : Distribution
        The row law (:mod:`pymemoe.families.distributions`).
    beta : ndarray (K, p)
    chol : ndarray (K, q, q)
        The parameters (lower triangle of ``chol``) the moments were computed at.
    """

    logdens: np.ndarray
    u_hat: np.ndarray
    b_hat: np.ndarray
    b_cov: np.ndarray
    chol_h_inv: np.ndarray
    logdet_h: np.ndarray
    h_mode: np.ndarray
    grad_norm: np.ndarray
    n_iter: np.ndarray
    n_halvings: np.ndarray
    converged: np.ndarray
    n_evaluations: float
    n_agq: int
    family: Distribution
    beta: np.ndarray
    chol: np.ndarray
    _state: _GradState | None = field(default=None, repr=False)


@dataclass(frozen=True, eq=False)
class GLMMGradients:
    """Per-subject exact gradients of :attr:`GLMMMoments.logdens`.

    Attributes
    ----------
    beta : ndarray (N, K, p)
        d logdens[i, k] / d beta_k.
    chol : ndarray (N, K, q, q)
        d logdens[i, k] / d L_k[a, b] for a >= b; zero above the diagonal.
    """

    beta: np.ndarray
    chol: np.ndarray


# ----------------------------------------------------------------------------------------------
# Quadrature over the adaptive nodes
# ----------------------------------------------------------------------------------------------

def _adaptive_pass(ctx: _Context, u_hat, R, ev: _Eval, n_agq: int, gradient: bool, extra=None):
    """Sum over the adaptive nodes u_j = u_hat + R z_j for all pairs, block by block, the
    nodes in chunks within a block (internal layout; u_hat (q, K, N), R (q, q, K, N)).

    Returns log sum_j w_j exp(h(u_j) - h(u_hat) + |z_j|^2 / 2) (K, N) and, when ``gradient``,
    the node averages the gradient needs: mubar (rows (K, n), sum_j omega_j mu(u_j)), S0, S1,
    zbar, zz (module docstring). ``extra(subjects, z, omega)`` is called for each block and
    chunk of nodes with the unnormalised weights (K, Nb, J) (used by the conditional mean).

    Every contraction over the nodes is a BLAS product with a small matrix of node features
    F_j = (1, z_j, z_jl z_jm (l >= m)): the shift of eta, the part of h(u_j) - h(u_hat)
    quadratic in z_j, and the weighted node averages.
    """
    q, K = ctx.q, ctx.K
    N, n = ev.h.shape[1], ev.eta.shape[1]
    nodes, logw, sq = gauss_hermite_normal(n_agq, q)
    J = nodes.shape[0]
    tri = ctx.tri
    F = np.column_stack([np.ones(J)] + [nodes[:, l] for l in range(q)]
                        + [nodes[:, l] * nodes[:, m] for l, m in tri])           # (J, 1+q+t)
    nf = F.shape[1]
    LR = lead_matmul(ctx.L, R)                                      # (q, q, K, N) b-space scaling
    # h(u_j) - h(u_hat) = -(change of sum_r w m c) + coef . F_j, with per pair
    # coef = (0, (L R)' Zwy - R' u_hat, -(1/2) (R'R)_lm (twice off the diagonal))
    lin = lead_matvec(lead_transpose(LR), ctx.Zwy) - lead_matvec(lead_transpose(R), u_hat)          # (q, K, N)
    RtR = lead_matmul(lead_transpose(R), R)
    coef = np.zeros((K, N, nf))
    for l in range(q):
        coef[:, :, 1 + l] = lin[l]
    for t, (l, m) in enumerate(tri):
        coef[:, :, 1 + q + t] = -0.5 * RtR[l, m] * (1.0 if l == m else 2.0)
    value_mean = ctx.fam.value_mean
    total = np.empty((K, N))
    if gradient:
        mubar = np.empty((K, n))
        S0, zbar = np.empty((q, K, N)), np.empty((q, K, N))
        S1, zz = np.empty((q, q, K, N)), np.empty((q, q, K, N))
    for blk, S in zip(*ctx.agq_blocks()):
        r, s, loc = blk.rows, blk.subjects, blk.local
        nb, Nb = loc.size, s.stop - s.start
        # rows of Z L R (LR is lower: m >= l): the node shift of eta is T_r z_j
        T = np.zeros((K, nb, q))
        for l in range(q):
            for m in range(l, q):
                T[:, :, l] += ctx.zc[m][r] * np.take(LR[m, l][:, s], loc, axis=1)
        eta_hat = ev.eta[:, r][:, :, None]
        base = ev.sum_c[:, s][:, :, None]
        coef_b = coef[:, s]
        sub_acc = np.zeros((K, Nb, nf))            # sum_j omega_j F_j per pair
        if gradient:
            row_acc = np.zeros((K, nb, 1 + q))     # sum_j omega_j mu_j (1, z_j) per row
        chunk = max(1, NODE_ELEMENTS // max(1, nb * K))
        for j0 in range(0, J, chunk):
            j1 = min(J, j0 + chunk)
            Fc = F[j0:j1]
            eta = T @ nodes[j0:j1].T
            eta += eta_hat                                                  # (K, nb, Jc)
            c, mu = value_mean(eta, gradient, **ctx.row_data(r))
            dh = base - _smul(S.wm, c, 1)[0]                                # (K, Nb, Jc)
            dh += coef_b @ Fc.T
            dh += logw[j0:j1] + 0.5 * sq[j0:j1]
            # h(u_j) <= h(u_hat): the exponent is at most log w_j + |z_j|^2 / 2 < 1
            omega = np.exp(dh, out=dh)
            sub_acc += omega @ Fc
            if extra is not None:
                extra(s, nodes[j0:j1], omega)
            if gradient:
                om = np.take(omega, loc, axis=1)
                om *= mu
                row_acc += om @ Fc[:, :1 + q]
        tot = sub_acc[:, :, 0]
        total[:, s] = tot
        if gradient:
            inv = 1.0 / tot
            row_acc *= np.take(inv, loc, axis=1)[:, :, None]
            mubar[:, r] = row_acc[:, :, 0]
            # S0 = Z'(w y - w m mubar), S1[a, l] = Zwy_a zbar_l - Z'(w m mubar_z_l)_a
            sm = _smul(S.wmz, row_acc, q)                                  # (q, K, Nb, 1+q)
            for l in range(q):
                zbar[l][:, s] = sub_acc[:, :, 1 + l] * inv
            for t, (l, m) in enumerate(tri):
                zz[l, m][:, s] = sub_acc[:, :, 1 + q + t] * inv
                zz[m, l][:, s] = zz[l, m][:, s]
            for a in range(q):
                S0[a][:, s] = ctx.Zwy[a][:, s] - sm[a, :, :, 0]
                for l in range(q):
                    S1[a, l][:, s] = ctx.Zwy[a][:, s] * zbar[l][:, s] - sm[a, :, :, 1 + l]
    logsum = np.log(total)
    if not gradient:
        return logsum, None
    return logsum, dict(mubar=mubar, S0=S0, S1=S1, zbar=zbar, zz=zz)


# ----------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------

def glmm_moments(rows: GLMMRows, family, beta, chol, n_agq: int = 1, u_start=None, *,
                 previous: "GLMMMoments | None" = None, gtol: float = 1e-8, max_iter: int = 100,
                 max_halvings: int = 40, gradient: bool = True, warn: bool = True) -> GLMMMoments:
    """Log-densities, modes and conditional covariances of all (subject, expert) pairs.

    Parameters
    ----------
    rows : GLMMRows
    family : {"binomial", "poisson"} or Distribution
    beta : array (K, p)
        Fixed effects of each expert.
    chol : array (K, q, q)
        Lower Cholesky factors L_k of D_k (upper triangle ignored; diagonal >= 0, may be 0).
    n_agq : int
        Gauss-Hermite nodes per dimension: 1 is the Laplace approximation; n > 1 the adaptive
        product rule with n**q nodes.
    u_start : array (N, K, q), optional
        Starting modes in u-space (e.g. the previous call's ``u_hat``); zeros by default.
    previous : GLMMMoments, optional
        Moments of the same rows at other parameters, computed with ``gradient=True`` (an
        optimiser's previous point, the previous EM iteration). The start is then the
        first-order prediction of the modes at the new parameters (implicit function theorem),
        which saves about one Newton pass over the rows; exclusive with ``u_start``.
    gtol : float
        Newton stops for a pair when max_l abs(dh/du_l) <= gtol. The value then carries an error
        of order gtol * abs(d log det H / du) (the log-determinant is not stationary at the mode):
        about 1e-10 per subject at the default; Newton's quadratic convergence makes smaller
        values cheap (1e-10 costs ~12% more steps).
    max_iter : int
        Maximum accepted Newton steps per pair.
    max_halvings : int
        Maximum step halvings per Newton step.
    gradient : bool
        Keep what :func:`glmm_gradients` needs (a few (n, K) arrays); False saves time and
        memory in an E-step that needs no gradient.
    warn : bool
        Issue :class:`GLMMNumericalWarning` when some pairs did not converge.

    Returns
    -------
    GLMMMoments

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(50), 6); t = np.tile(np.arange(6.0), 50)
    >>> X = np.column_stack([np.ones(300), t]); y = rng.binomial(1, 0.4, 300)
    >>> rows = GLMMRows.from_groups(g, y, X, X[:, :1])
    >>> m = glmm_moments(rows, "binomial", [[-0.5, 0.1]], [[[1.0]]], n_agq=5)
    >>> m.logdens.shape, m.b_cov.shape, bool(m.converged.all())
    ((50, 1), (50, 1, 1, 1), True)
    >>> warm = glmm_moments(rows, "binomial", [[-0.5, 0.1]], [[[1.0]]], n_agq=5, u_start=m.u_hat)
    >>> int(warm.n_iter.max()), bool(np.allclose(warm.logdens, m.logdens))
    (0, True)
    """
    ctx = _Context(rows, family, beta, chol)
    N, K, q = rows.n_subjects, ctx.K, ctx.q
    n_agq = int(n_agq)
    if n_agq < 1:
        raise ValueError(f"n_agq must be >= 1, got {n_agq}")
    with np.errstate(over="ignore", under="ignore"):
        if q == 0:
            return _moments_glm(ctx, n_agq, gradient)
        if previous is not None:
            if u_start is not None:
                raise ValueError("give u_start or previous, not both")
            if (previous.u_hat.shape != (N, K, q) or previous.family.name != ctx.fam.name
                    or previous._state is None or previous._state.v.shape[1] != rows.n_rows):
                raise ValueError("previous must be moments of the same rows, family and shapes, "
                                 "computed with gradient=True")
            u = _extrapolate(ctx, previous)
        elif u_start is None:
            u = np.zeros((q, K, N))
        else:
            u_start = np.asarray(u_start, dtype=float)
            if u_start.shape != (N, K, q):
                raise ValueError(f"u_start must have shape {(N, K, q)}, got {u_start.shape}")
            if not np.all(np.isfinite(u_start)):
                raise ValueError("u_start must be finite")
            u = _internal(u_start, 1)
        u, ev, n_iter, n_halve, converged, n_eval, stale = _newton(ctx, u, gtol, max_iter,
                                                                    max_halvings)
        if stale.any():
            # a last step was rejected: those subjects' row arrays are at the trial point
            idx = np.flatnonzero(stale)
            sub = ctx.subset(idx)
            ev_s = _evaluate(sub, u[..., idx])
            ri = sub.row_index
            ev.eta[:, ri], ev.mu[:, ri], ev.v[:, ri] = ev_s.eta, ev_s.mu, ev_s.v
            n_eval += ri.size / rows.n_rows
        R, logdet = lead_inverse_factor(ev.H)
        logdens = ev.h + 0.5 * q * LOG_2PI - 0.5 * logdet
        state = None
        if n_agq == 1:
            if gradient:
                state = _GradState(u, R, ev.za, ev.C, ev.v, ev.mu, ev.mu, ctx=ctx,
                                   eta=None if ctx.fam.canonical else ev.eta)
        else:
            logsum, acc = _adaptive_pass(ctx, u, R, ev, n_agq, gradient)
            logdens = logdens + logsum
            if gradient:
                state = _GradState(u, R, ev.za, ev.C, ev.v, ev.mu, ctx=ctx,
                                   eta=None if ctx.fam.canonical else ev.eta, **acc)
        b = ctx.b_of(u)
        P = lead_matmul(R, lead_transpose(R))
        b_cov = lead_matmul(ctx.L, lead_matmul(P, lead_transpose(ctx.L)))
    gnorm = np.abs(ev.g).max(axis=0)
    if warn and not converged.all():
        warnings.warn(f"Newton's method for the random-effect modes did not converge for "
                      f"{int((~converged).sum())} of {converged.size} (subject, expert) pairs "
                      f"(largest |gradient| {gnorm[~converged].max():.3g}); raise max_iter or "
                      "check the parameters for extreme values", GLMMNumericalWarning, stacklevel=2)
    _check_finite(logdens, "log-density")
    return GLMMMoments(logdens=_pub(logdens, 0), u_hat=_pub(u, 1), b_hat=_pub(b, 1),
                       b_cov=_pub(b_cov, 2), chol_h_inv=_pub(R, 2), logdet_h=_pub(logdet, 0),
                       h_mode=_pub(ev.h, 0), grad_norm=_pub(gnorm, 0), n_iter=_pub(n_iter, 0),
                       n_halvings=_pub(n_halve, 0), converged=_pub(converged, 0),
                       n_evaluations=n_eval, n_agq=n_agq, family=ctx.fam, beta=ctx.beta,
                       chol=ctx.chol, _state=state)


def _moments_glm(ctx: _Context, n_agq: int, gradient: bool) -> GLMMMoments:
    """q = 0: the expert is a GLM; log f_i = sum_r log p(y_r | eta0_r)."""
    rows = ctx.rows
    K, N = ctx.base.shape
    c, mu, v = ctx.fam.cumulants(ctx.eta0, value=True, **ctx.row_data(slice(None)))
    c *= ctx.wm
    logdens = ctx.base - rows.segment_sum(c.T).T                                   # (K, N)
    _check_finite(logdens, "log-density")
    e0, e00 = np.zeros((0, K, N)), np.zeros((0, 0, K, N))
    state = (_GradState(e0, e00, e0, e00, v, mu, mu, ctx=ctx,
                        eta=None if ctx.fam.canonical else ctx.eta0) if gradient else None)
    z1, z2 = np.zeros((N, K, 0)), np.zeros((N, K, 0, 0))
    return GLMMMoments(logdens=_pub(logdens, 0), u_hat=z1, b_hat=z1.copy(), b_cov=z2,
                       chol_h_inv=z2.copy(), logdet_h=np.zeros((N, K)), h_mode=_pub(logdens, 0),
                       grad_norm=np.zeros((N, K)), n_iter=np.zeros((N, K), dtype=np.intp),
                       n_halvings=np.zeros((N, K), dtype=np.intp),
                       converged=np.ones((N, K), dtype=bool), n_evaluations=1.0, n_agq=n_agq,
                       family=ctx.fam, beta=ctx.beta, chol=ctx.chol, _state=state)


def _check_finite(a: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        warnings.warn(f"{int(bad.sum())} GLMM {what} values are not finite (overflow of the linear "
                      "predictor: check the parameters and the scale of the covariates)",
                      GLMMNumericalWarning, stacklevel=3)


def glmm_gradients(rows: GLMMRows, moments: GLMMMoments) -> GLMMGradients:
    """Per-subject exact gradients of ``moments.logdens`` with respect to beta_k and L_k.

    The derivatives include the dependence of the modes and (for n_agq > 1) of the node
    placement on the parameters; see the module docstring for the formulas.

    Parameters
    ----------
    rows : GLMMRows
        The rows ``moments`` was computed on.
    moments : GLMMMoments
        From :func:`glmm_moments` with ``gradient=True``.

    Returns
    -------
    GLMMGradients
        ``beta`` (N, K, p) and ``chol`` (N, K, q, q, zero above the diagonal). Sum over
        subjects (weighted by posterior probabilities in a mixture) for the score.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> g = np.repeat(np.arange(30), 5); X = np.column_stack([np.ones(150), rng.normal(size=150)])
    >>> rows = GLMMRows.from_groups(g, rng.poisson(2.0, 150), X, X[:, :1])
    >>> m = glmm_moments(rows, "poisson", [[0.5, 0.1]], [[[0.4]]])
    >>> gr = glmm_gradients(rows, m)
    >>> gr.beta.shape, gr.chol.shape
    ((30, 1, 2), (30, 1, 1, 1))
    """
    st = moments._state
    if st is None:
        raise ValueError("moments were computed with gradient=False")
    if moments.logdens.shape[0] != rows.n_subjects or st.v.shape[1] != rows.n_rows:
        raise ValueError("moments were computed on other rows")
    ctx = st.ctx if st.ctx is not None and st.ctx.rows is rows else _Context(
        rows, moments.family, moments.beta, moments.chol)
    N, K, p, q = rows.n_subjects, ctx.K, ctx.p, ctx.q
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        if q == 0:
            e = ctx.wy - ctx.wm * st.mubar                                  # (K, n)
            gb = rows.segment_sum(ctx.X[:, :, None] * e.T[:, None, :])      # (N, p, K)
            out = GLMMGradients(np.ascontiguousarray(np.swapaxes(gb, 1, 2)), np.zeros((N, K, 0, 0)))
            _check_finite(out.beta, "gradient")
            return out
        L, Lt = ctx.L, lead_transpose(ctx.L)
        u, R = st.u, st.R
        P = lead_matmul(R, lead_transpose(R))
        if moments.n_agq == 1:
            E = 0.5 * P
            S0, S1 = st.za, None                          # abar = a(u_hat): S0 = Z'a
            kappa0 = np.zeros((q, K, N))                  # gbar = 0 at the mode
        else:
            S0, S1 = st.S0, st.S1
            kappa0 = lead_matvec(Lt, S0) - u - lead_matvec(R, st.zbar)    # gbar
            Gamma = lead_matmul(Lt, S1) - u[:, None] * st.zbar[None, :] - lead_matmul(R, st.zz)
            A = lead_matmul(lead_transpose(R), Gamma)
            for j in range(q):
                A[j, j] += 1.0                            # R' R^-T = I
            E = lead_matmul(R, lead_matmul(lead_sym_phi(A), lead_transpose(R)))
        M = lead_matmul(L, lead_matmul(E, Lt))                            # L E L' (symmetric)
        third = ctx.fam.third
        gb = np.empty((p, K, N))
        t, rho = np.empty((q, K, N)), np.empty((q, K, N))
        # one pass over the rows, block by block; between the two segment sums of a block the
        # per-subject step t -> kappa -> rho -> L rho needs only that block's subjects
        for blk, S in zip(ctx.blocks, ctx.sums):
            r, s, loc = blk.rows, blk.subjects, blk.local
            W = ctx.wm[r] * st.v[:, r]                    # (K, nb)
            lev = np.zeros(W.shape)                       # z_r' L E L' z_r
            for key in ctx.tri:
                lev += ctx.zzlev[key][r] * np.take(M[key][:, s], loc, axis=1)
            sv = third(st.mu[:, r], W, **({} if ctx.fam.canonical else   # w m c''' at the mode
                                          dict(eta=st.eta[:, r], y=ctx.y[r], wm=ctx.wm[r])))
            sv *= lev
            t_b = _smul(S.z, sv, q)                       # Z's (q, K, Nb)
            rho_b = lead_matvec(P[..., s], kappa0[..., s] - lead_matvec(Lt, t_b))
            Lrho = lead_matvec(L, rho_b)
            zeta = ctx.zc[0][r] * np.take(Lrho[0], loc, axis=1)
            for a in range(1, q):
                zeta += ctx.zc[a][r] * np.take(Lrho[a], loc, axis=1)
            zeta *= W
            e = ctx.wy[r] - ctx.wm[r] * st.mubar[:, r]
            e -= sv
            e -= zeta
            gb[..., s] = _smul(S.x, e, p)
            t[..., s], rho[..., s] = t_b, rho_b
        CL = lead_matmul(st.C, L)
        CLrho = lead_matvec(CL, rho)
        GL = (S0[:, None] * u[None]                        # S0 u'
              + st.za[:, None] * rho[None]                 # (Z'a) rho'
              - CLrho[:, None] * u[None]                   # (C L rho) u'
              - t[:, None] * u[None]                       # t u'
              - 2.0 * lead_matmul(CL, E))                          # 2 C L E
        if S1 is not None:
            GL += lead_matmul(S1, lead_transpose(R))                           # S1 R'
        for i in range(q):
            GL[i, i + 1:] = 0.0                            # lower triangle only
        out = GLMMGradients(_pub(gb, 1), _pub(GL, 2))
    _check_finite(out.beta, "gradient")
    _check_finite(out.chol, "gradient")
    return out


def chol_grad_to_cov_grad(grad_chol, chol) -> np.ndarray:
    """Gradients with respect to D_k = L_k L_k' from gradients with respect to L_k.

    With G_D symmetric and d logf = tr(G_D dD), the chain rule through dD = dL L' + L dL' gives
    d logf / dL = lower(2 G_D L). For each expert this is a fixed linear map between the
    q(q+1)/2 free entries of G_D and of the lower triangle; it is solved once per expert
    (least squares by pseudo-inverse, so a singular L gives the minimum-norm G_D) and applied to
    all subjects.

    Parameters
    ----------
    grad_chol : array (N, K, q, q) or (K, q, q)
        d logf / dL (lower triangle used), e.g. :attr:`GLMMGradients.chol`.
    chol : array (K, q, q)
        The lower Cholesky factors L_k.

    Returns
    -------
    ndarray, same shape as ``grad_chol``
        Symmetric G_D. The derivative with respect to a diagonal entry D_aa is G_D[a, a]; with
        respect to an off-diagonal covariance D_ab = D_ba (one parameter) it is 2 G_D[a, b].

    Examples
    --------
    >>> import numpy as np
    >>> L = np.array([[[2.0]]]); G_L = np.array([[[4.0]]])      # q = 1: dlogf/dD = G_L / (2 L)
    >>> chol_grad_to_cov_grad(G_L, L)
    array([[[1.]]])
    """
    chol = np.tril(np.asarray(chol, dtype=float))
    grad_chol = np.asarray(grad_chol, dtype=float)
    K, q = chol.shape[0], chol.shape[-1]
    il = np.tril_indices(q)
    m = il[0].size
    lead = grad_chol.shape[:-2]
    if q == 0:
        return grad_chol.copy()
    gl = grad_chol[..., il[0], il[1]]                         # (..., K, m)
    out = np.empty(lead + (m,))
    for k in range(K):
        A = np.empty((m, m))
        for col, (a, b) in enumerate(zip(*il)):
            basis = np.zeros((q, q))
            basis[a, b] = basis[b, a] = 1.0
            A[:, col] = (2.0 * basis @ chol[k])[il]
        out[..., k, :] = gl[..., k, :] @ np.linalg.pinv(A).T
    G = np.zeros(lead + (q, q))
    G[..., il[0], il[1]] = out
    G[..., il[1], il[0]] = out
    return G


# ----------------------------------------------------------------------------------------------
# Predictive means
# ----------------------------------------------------------------------------------------------

def glmm_marginal_mean(family, beta, chol, exog, exog_re=None, offset=None,
                       power: int = 1) -> np.ndarray:
    """Marginal mean of the response, E[mu(eta)] over b ~ N(0, D_k), for new rows (with
    ``power=2`` the second moment E[mu(eta)^2], for the predictive variances).

    With eta = offset + x'beta_k + z'b and b ~ N(0, D_k), z'b ~ N(0, z'D_k z) is one-dimensional
    whatever q, so a one-dimensional integral in s = sqrt(z'D_k z) is the q-dimensional one
    exactly (no product grid needed). Poisson has the closed form exp(eta0 + s^2 / 2). The binomial
    integral E[expit(eta0 + s Z)] is taken by the trapezoid rule on z in [-9, 9] with step
    h = min(1/2, pi / (8 s)): expit has poles at distance pi / s from the real z-axis, so the
    error is about exp(-2 pi (pi / s) / h) <= exp(-16 pi) ~ 1e-22 whatever s (Gauss-Hermite, by
    contrast, loses digits as s grows: 40 nodes give only 1e-4 at s = 4). The same holds for
    expit^2, with the same poles; Poisson's E[mu^r] is exp(r eta0 + r^2 s^2 / 2).

    Parameters
    ----------
    family : {"binomial", "poisson"} or Distribution
    beta : array (K, p)
    chol : array (K, q, q)
    exog : array (n, p)
    exog_re : array (n, q), optional
    offset : array (n,), optional
    power : {1, 2}
        The moment of mu.

    Returns
    -------
    ndarray (n, K)
        E[mu^power] per row and expert: mu the success probability (multiply by the trials
        for the expected count) or the Poisson mean (including the exposure in the offset).

    Examples
    --------
    >>> import numpy as np
    >>> glmm_marginal_mean("poisson", [[0.0]], [[[1.0]]], np.ones((1, 1)), np.ones((1, 1)))
    array([[1.64872127]])
    >>> round(float(glmm_marginal_mean("binomial", [[0.0]], [[[2.0]]], np.ones((1, 1)), np.ones((1, 1)))[0, 0]), 12)
    0.5
    """
    fam = get_distribution(family)
    beta = np.atleast_2d(np.asarray(beta, dtype=float))
    exog = np.atleast_2d(np.asarray(exog, dtype=float))
    n = exog.shape[0]
    K = beta.shape[0]
    Z = np.zeros((n, 0)) if exog_re is None else np.asarray(exog_re, dtype=float).reshape(n, -1)
    q = Z.shape[1]
    chol = np.asarray(chol, dtype=float)
    chol = np.tril(np.zeros((K, 0, 0)) if q == 0 and chol.size == 0 else chol.reshape(K, q, q))
    eta0 = exog @ beta.T + (0.0 if offset is None else np.asarray(offset, float)[:, None])
    D = chol @ np.swapaxes(chol, 1, 2)
    var = np.einsum("na,kab,nb->nk", Z, D, Z)
    return fam.normal_mean(eta0, var, power)


def glmm_conditional_mean(rows: GLMMRows, moments: GLMMMoments, exog, exog_re, subject,
                          offset=None, power: int = 1) -> np.ndarray:
    """Conditional mean of the response given a subject's data and its class,
    E[mu(eta_new) | y_i, class k], for new rows (``power=2``: E[mu(eta_new)^2 | y_i, k]).

    For n_agq > 1 the posterior expectation is the ratio of two adaptive quadratures on the
    nodes of ``moments`` (the same nodes and weights as the log-density):
    sum_j omega_ij mu(eta0 + z'(b_hat + L R z_j)). For the Laplace approximation (n_agq = 1)
    b | y_i, k is taken as N(b_hat, b_cov), and E[mu] is the one-dimensional Gaussian integral
    of ``glmm_marginal_mean`` with mean eta0 + z'b_hat and variance z' b_cov z.

    Parameters
    ----------
    rows : GLMMRows
        The subjects' observed rows (``moments`` was computed on them).
    moments : GLMMMoments
    exog, exog_re : arrays (n_new, p), (n_new, q)
        Designs of the rows to predict.
    subject : array (n_new,) of int
        Subject index (0..N-1, in the order of ``rows``) of each new row.
    offset : array (n_new,), optional
    power : {1, 2}
        The moment of mu.

    Returns
    -------
    ndarray (n_new, K)
        Posterior mean of mu^power (mu the probability, or the Poisson mean including the
        offset's exposure).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(2)
    >>> g = np.repeat(np.arange(20), 4); X = np.ones((80, 1)); y = rng.binomial(1, 0.5, 80)
    >>> rows = GLMMRows.from_groups(g, y, X, X)
    >>> m = glmm_moments(rows, "binomial", [[0.0]], [[[1.0]]], n_agq=7)
    >>> glmm_conditional_mean(rows, m, np.ones((20, 1)), np.ones((20, 1)), np.arange(20)).shape
    (20, 1)
    """
    fam = get_distribution(moments.family)
    power = check_power(power)
    exog = np.atleast_2d(np.asarray(exog, dtype=float))
    n_new = exog.shape[0]
    q = rows.k_re
    Z = np.asarray(exog_re, dtype=float).reshape(n_new, q)
    subject = np.asarray(subject, dtype=np.intp)
    if subject.shape != (n_new,) or np.any(subject < 0) or np.any(subject >= rows.n_subjects):
        raise ValueError("subject must give a subject index in 0..N-1 for every new row")
    eta0 = exog @ moments.beta.T + (0.0 if offset is None else np.asarray(offset, float)[:, None])
    if q == 0:
        return fam.mean(eta0) ** power
    bh = moments.b_hat[subject]                                      # (n_new, K, q)
    mean = eta0 + np.einsum("na,nka->nk", Z, bh)
    if moments.n_agq == 1:
        var = np.einsum("na,nkab,nb->nk", Z, moments.b_cov[subject], Z)
        return fam.normal_mean(mean, var, power)
    # AGQ: recompute the node weights, accumulate mu at the new rows
    ctx = _Context(rows, moments.family, moments.beta, moments.chol)
    u = _internal(moments.u_hat, 1)
    R = _internal(moments.chol_h_inv, 2)
    with np.errstate(over="ignore", under="ignore"):
        ev = _evaluate(ctx, u)
        LR = _pub(lead_matmul(ctx.L, R), 2)[subject]                            # (n_new, K, q, q)
        ZLR = np.einsum("na,nkal->nkl", Z, LR)                          # (n_new, K, q)
        acc = np.zeros(mean.shape)
        order = np.argsort(subject, kind="stable")
        sorted_subject = subject[order]

        def extra(subjects: slice, z, omega):
            # the new rows of this block's subjects (found by bisection in the sorted rows)
            lo, hi = np.searchsorted(sorted_subject, [subjects.start, subjects.stop])
            if hi == lo:
                return
            idx = order[lo:hi]
            eta = mean[idx][:, :, None] + np.einsum("nkl,jl->nkj", ZLR[idx], z)
            om = np.moveaxis(omega[:, subject[idx] - subjects.start], 0, 1)   # (rows, K, J)
            acc[idx] += (om * fam.mean(eta) ** power).sum(axis=2)

        logsum, _ = _adaptive_pass(ctx, u, R, ev, moments.n_agq, gradient=False, extra=extra)
    return acc / np.exp(_pub(logsum, 0))[subject]
