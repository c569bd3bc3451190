r"""Second derivatives of a linear mixed model expert's log-density, on sufficient statistics.

For y_i ~ N(X beta, V), V = Z D Z' + sigma2 I, with natural parameters nu = (beta, the lower
triangle of D, sigma2) and r = y - X beta, the Hessian of log f (V is linear in D and sigma2,
V_a = dV/dnu_a)::

    d2/dbeta dbeta'   = -X'V^-1 X
    d2/dbeta dnu_a    = -X'V^-1 V_a V^-1 r
    d2/dnu_a dnu_b    = 1/2 tr(V^-1 V_a V^-1 V_b) - r'V^-1 V_a V^-1 V_b V^-1 r

With V_a = Z E_a Z' for an entry of D (E_a = e_i e_j' + e_j e_i' off the diagonal, e_i e_i' on
it) and V_a = I for sigma2, everything reduces to q x q and p x q matrices per subject. Write
S = Lambda M^-1 Lambda' (so sigma2 V^-1 = I - Z S Z'), C = Z'Z, b_hat = S Z'r and::

    P    = Z'V^-1 Z   = (C - C S C) / sigma2          a    = Z'V^-1 r = (Z'r - C b_hat) / sigma2
    X'V^-1 Z          = (X'Z - X'Z S C) / sigma2       X'V^-1 X = (X'X - X'Z S Z'X) / sigma2
    Z'V^-2 Z          = (C - 2 C S C + C S C S C) / sigma2^2
    Z'V^-2 r          = (a - C S a) / sigma2           X'V^-2 r = (g - X'Z S a) / sigma2,  g = X'V^-1 r
    tr V^-2           = (n - 2 tr(S C) + tr(S C S C)) / sigma2^2
    r'V^-3 r          = (||r - Z b_hat||^2 - sigma2^2 a'S a) / sigma2^3

so that, with v_a = E_a a::

    d2/dbeta dD_a     = -(X'V^-1 Z) v_a             d2/dbeta dsigma2 = -X'V^-2 r
    d2/dD_a dD_b      = 1/2 tr(P E_a P E_b) - v_a' P v_b
    d2/dD_a dsigma2   = 1/2 tr(E_a Z'V^-2 Z) - v_a' Z'V^-2 r
    d2/dsigma2^2      = 1/2 tr V^-2 - r'V^-3 r

:func:`expert_hessian_sums` returns sum_i tau_ik of these for every expert k: with the observed
information's three-term decomposition (:mod:`pymemoe._estimation.inference`) the standard errors then cost
one pass over the subjects. No inverse of D appears, so a boundary D is fine.
"""
from __future__ import annotations

import numpy as np

from .._linalg.smallmat import as_stack, dot, matmul, matvec, sandwich, trace, trace_product
from .._model.params import Params

__all__ = ["natural_index", "natural_vector", "expert_hessian_sums"]


def _basis_times(i: int, j: int, a: np.ndarray) -> np.ndarray:
    """E_a a for the entry (i, j) of D: e_i a_j + e_j a_i off the diagonal, e_i a_i on it."""
    out = np.zeros_like(a)
    out[..., i] += a[..., j]
    if i != j:
        out[..., j] += a[..., i]
    return out


def _trace_basis(i: int, j: int, m: np.ndarray) -> np.ndarray:
    """tr(E_a M) for a symmetric M."""
    return m[..., i, i] if i == j else 2.0 * m[..., i, j]


def expert_hessian_sums(data, params: Params, moments, tau: np.ndarray) -> np.ndarray:
    """sum_i tau_ik d2 log f(y_i | k) / dnu dnu' for each expert, shape (K, n_nu, n_nu), in the
    coordinates of :func:`natural_index` (with the scale).

    ``moments`` are :func:`pymemoe.families._lmm.expert_moments` at ``params`` on ``data``."""
    N, p, q = data.n_groups, data.k_fe, data.k_re
    K = params.n_experts
    s2 = params.scale[None, :]                                    # (1, K)
    xx_beta = (data.xx.reshape(N * p, p) @ params.beta.T).reshape(N, p, K)
    xr = data.xy[:, None, :] - np.swapaxes(xx_beta, 1, 2)         # X'r (N, K, p)
    if q:
        C = as_stack(data.zz, 2)[:, None]                         # (N, 1, q, q)
        xz = as_stack(data.xz, 2)[:, None]                        # (N, 1, p, q)
        S = sandwich(moments.lam, moments.m_inv)                  # (N, K, q, q)
        b = moments.b_hat
        Cb = matvec(C, b)
        a = (moments.zr - Cb) / s2[..., None]
        SC = matmul(S, C)
        CSC = matmul(C, SC)
        P = (C - CSC) / s2[..., None, None]
        xzS = matmul(xz, S)
        xvz = (xz - matmul(xzS, C)) / s2[..., None, None]          # X'V^-1 Z (N, K, p, q)
        xvx = (data.xx[:, None] - matmul(xzS, np.swapaxes(xz, 2, 3))) / s2[..., None, None]
        g = (xr - matvec(xz, b)) / s2[..., None]                  # X'V^-1 r
        Sa = matvec(S, a)
        zv2r = (a - matvec(C, Sa)) / s2[..., None]
        xv2r = (g - matvec(xz, Sa)) / s2[..., None]
        zv2z = (C - 2.0 * CSC + matmul(CSC, SC)) / (s2 ** 2)[..., None, None]
        tr_sc = trace(SC)
        tr_v2 = (data.n_obs[:, None] - 2.0 * tr_sc + trace_product(SC, SC)) / s2 ** 2
        resid2 = moments.rr - 2.0 * dot(b, moments.zr) + dot(b, Cb)
        rv3r = (resid2 - s2 ** 2 * dot(a, Sa)) / s2 ** 3
    else:
        xvx = data.xx[:, None] / s2[..., None, None]
        g = xr / s2[..., None]
        xv2r = g / s2[..., None]
        tr_v2 = data.n_obs[:, None] / s2 ** 2
        rv3r = moments.rr / s2 ** 3

    entries = [(i, j) for i, j in zip(*np.tril_indices(q))]
    n_nu = p + len(entries) + 1
    # entries of the Hessian per (subject, expert), then weighted sums over subjects
    H = np.zeros((K, n_nu, n_nu))

    def put(r: int, c: int, values: np.ndarray) -> None:
        total = np.einsum("nk,nk->k", tau, values)
        H[:, r, c] = total
        H[:, c, r] = total

    for r in range(p):
        for c in range(r, p):
            put(r, c, -xvx[..., r, c])
    js = p + len(entries)                                          # position of sigma2
    for r in range(p):
        put(r, js, -xv2r[..., r])
    if q:
        v = [_basis_times(i, j, a) for i, j in entries]
        for e, (i, j) in enumerate(entries):
            col = p + e
            xv = matvec(xvz, v[e])
            for r in range(p):
                put(r, col, -xv[..., r])
            put(col, js, 0.5 * _trace_basis(i, j, zv2z) - dot(v[e], zv2r))
            Pv = matvec(P, v[e])
            for f in range(e, len(entries)):
                k_, l_ = entries[f]
                # tr(P E_a P E_b): sum of P_jk P_li over the (up to four) terms of E_a and E_b
                tr = 0.0
                for (s, t) in ({(i, j), (j, i)}):
                    for (u, w) in ({(k_, l_), (l_, k_)}):
                        tr = tr + P[..., t, u] * P[..., w, s]
                put(col, p + f, 0.5 * tr - dot(Pv, v[f]))
    put(js, js, 0.5 * tr_v2 - rv3r)
    return H
