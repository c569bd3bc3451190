"""Stacks of small matrices: products, Cholesky factors, inverses and log-determinants.

The EM works on millions of q x q or p x q matrices (one per subject and expert) with q and p
rarely above 3. numpy's batched ``matmul``, ``cholesky`` and ``inv`` pay a per-matrix overhead
(a LAPACK call each for the last two) that dominates at that size. Here the loops run over the
matrix *indices* (q^3 of them at most) and every step is an elementwise operation on whole
stacks, so the cost is a few passes over memory. Above ``SMALL`` the numpy routines are used.

All functions take arrays whose last two axes are the matrix axes and broadcast over the others.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SMALL", "matmul", "matvec", "cholesky_inverse_logdet", "dot", "sum_last", "max_last"]

SMALL = 4


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` over the last two axes, broadcasting the leading ones."""
    n, m = a.shape[-2:]
    p = b.shape[-1]
    if max(n, m, p) > SMALL or m == 0:
        return a @ b
    out = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (n, p))
    for i in range(n):
        for j in range(p):
            acc = a[..., i, 0] * b[..., 0, j]
            for l in range(1, m):
                acc = acc + a[..., i, l] * b[..., l, j]
            out[..., i, j] = acc
    return out


def matvec(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``a @ x`` for matrices ``a`` (..., n, m) and vectors ``x`` (..., m)."""
    n, m = a.shape[-2:]
    if max(n, m) > SMALL or m == 0:
        return (a @ x[..., None])[..., 0]
    out = np.empty(np.broadcast_shapes(a.shape[:-2], x.shape[:-1]) + (n,))
    for i in range(n):
        acc = a[..., i, 0] * x[..., 0]
        for l in range(1, m):
            acc = acc + a[..., i, l] * x[..., l]
        out[..., i] = acc
    return out


def cholesky_inverse_logdet(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse and log-determinant of matrices M = A + I, A symmetric positive semi-definite
    (..., q, q); rounding below the bounds det(M) >= 1 and L_jj >= 1 is clamped away.

    Closed forms for q = 1 and 2; otherwise the Cholesky-Banachiewicz factorisation, triangular
    inversion and ``L^-T L^-1``, each written as loops over the q indices.
    """
    q = m.shape[-1]
    if q == 1:
        m = np.maximum(m, 1.0)
        return 1.0 / m, np.log(m[..., 0, 0])
    if q == 2:  # closed form: the common random intercept and slope
        a, b, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 1]
        # callers pass M = A + I with A >= 0, so det(M) >= 1; the clamp only removes rounding
        # (cancellation when A is huge, e.g. a residual variance at its floor)
        det = np.maximum(a * d - b * b, 1.0)
        inv = np.empty_like(m)
        inv[..., 0, 0] = d / det
        inv[..., 1, 1] = a / det
        inv[..., 0, 1] = inv[..., 1, 0] = -b / det
        return inv, np.log(det)
    if q > SMALL:
        chol = np.linalg.cholesky(m)
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
        return np.linalg.inv(m), logdet
    L = np.zeros_like(m)
    for j in range(q):
        s = m[..., j, j].copy()
        for k in range(j):
            s -= L[..., j, k] ** 2
        L[..., j, j] = np.sqrt(np.maximum(s, 1.0))   # Schur complements of M >= I are >= 1
        for i in range(j + 1, q):
            s = m[..., i, j].copy()
            for k in range(j):
                s -= L[..., i, k] * L[..., j, k]
            L[..., i, j] = s / L[..., j, j]
    diag = [L[..., j, j] for j in range(q)]
    logdet = 2.0 * sum(np.log(d) for d in diag) if q else np.zeros(m.shape[:-2])
    L_inv = np.zeros_like(m)
    for i in range(q):
        L_inv[..., i, i] = 1.0 / diag[i]
        for j in range(i):
            s = L[..., i, j] * L_inv[..., j, j]
            for k in range(j + 1, i):
                s = s + L[..., i, k] * L_inv[..., k, j]
            L_inv[..., i, j] = -s / diag[i]
    inv = matmul(np.swapaxes(L_inv, -1, -2), L_inv)
    return inv, logdet


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_j a[..., j] * b[..., j] over a short last axis (numpy's reductions over a short
    trailing axis are several times slower than these elementwise additions)."""
    n = np.broadcast_shapes(a.shape, b.shape)[-1]
    if n == 0:
        return np.zeros(np.broadcast_shapes(a.shape, b.shape)[:-1])
    if n > 2 * SMALL:
        return np.sum(a * b, axis=-1)
    out = a[..., 0] * b[..., 0]
    for j in range(1, n):
        out = out + a[..., j] * b[..., j]
    return out


def sum_last(a: np.ndarray) -> np.ndarray:
    """Sum over a short last axis."""
    if a.shape[-1] == 0 or a.shape[-1] > 2 * SMALL:
        return a.sum(axis=-1)
    out = a[..., 0].copy()
    for j in range(1, a.shape[-1]):
        out += a[..., j]
    return out


def max_last(a: np.ndarray) -> np.ndarray:
    """Maximum over a short, non-empty last axis."""
    if a.shape[-1] > 2 * SMALL:
        return a.max(axis=-1)
    out = a[..., 0].copy()
    for j in range(1, a.shape[-1]):
        np.maximum(out, a[..., j], out=out)
    return out
