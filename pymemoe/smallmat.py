"""Stacks of small matrices: products, Cholesky factors, inverses and log-determinants.

The EM works on millions of q x q or p x q matrices (one per subject and expert) with q and p
rarely above 3. numpy's batched ``matmul``, ``cholesky`` and ``inv`` pay a per-matrix overhead
(a LAPACK call each for the last two) that dominates at that size. Here the loops run over the
matrix *indices* (q^3 of them at most) and every step is an elementwise operation on whole
stacks, so the cost is a few passes over memory. Above ``SMALL`` the numpy routines are used.

**Layout.** The stacks these kernels return keep their logical shape (..., n, m) but are stored
entry-major (:func:`empty_stack`): all the (subject, expert) values of entry (i, j) are one
contiguous block. The kernels read whole entries ``x[..., i, j]`` at a time; in numpy's row-major
layout such a slice has a stride of n*m*8 bytes, so every pass would pull the whole stack through
the cache to use a fraction of it (3x slower for 2 x 2 stacks of 10^6 subjects x 3 experts,
where the fit is bound by memory bandwidth). numpy's elementwise operations keep this layout,
so the rest of the code sees ordinary arrays. Reshaping such a stack copies it: reduce with
:func:`weighted_sum`, :func:`trace` or :func:`trace_product` instead.

All functions take arrays whose last two axes are the matrix axes and broadcast over the others.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SMALL", "empty_stack", "as_stack", "matmul", "matvec", "sandwich", "outer",
           "cholesky_inverse_logdet", "trace", "trace_product", "weighted_sum", "dot", "sum_last",
           "max_last"]

SMALL = 4


def empty_stack(lead: tuple[int, ...], tail: tuple[int, ...]) -> np.ndarray:
    """An uninitialised array of shape ``lead + tail`` stored entry-major: for every index ``t``
    of the trailing (matrix or vector) axes, ``x[..., *t]`` is a C-contiguous block of shape
    ``lead``."""
    lead, tail = tuple(lead), tuple(tail)
    base = np.empty(tail + lead)
    n_lead, n_tail = len(lead), len(tail)
    return base.transpose(tuple(range(n_tail, n_tail + n_lead)) + tuple(range(n_tail)))


def as_stack(x: np.ndarray, n_tail: int) -> np.ndarray:
    """A copy of ``x`` stored entry-major over its last ``n_tail`` axes (see :func:`empty_stack`)."""
    out = empty_stack(x.shape[: x.ndim - n_tail], x.shape[x.ndim - n_tail:])
    out[...] = x
    return out


def _lead(*arrays_and_ndims) -> tuple[int, ...]:
    return np.broadcast_shapes(*(a.shape[: a.ndim - nd] for a, nd in arrays_and_ndims))


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` over the last two axes, broadcasting the leading ones."""
    n, m = a.shape[-2:]
    p = b.shape[-1]
    if max(n, m, p) > SMALL or m == 0:
        return a @ b
    out = empty_stack(_lead((a, 2), (b, 2)), (n, p))
    for i in range(n):
        for j in range(p):
            acc = out[..., i, j]
            np.multiply(a[..., i, 0], b[..., 0, j], out=acc)
            for l in range(1, m):
                acc += a[..., i, l] * b[..., l, j]
    return out


def matvec(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``a @ x`` for matrices ``a`` (..., n, m) and vectors ``x`` (..., m)."""
    n, m = a.shape[-2:]
    if max(n, m) > SMALL or m == 0:
        return (a @ x[..., None])[..., 0]
    out = empty_stack(_lead((a, 2), (x, 1)), (n,))
    for i in range(n):
        acc = out[..., i]
        np.multiply(a[..., i, 0], x[..., 0], out=acc)
        for l in range(1, m):
            acc += a[..., i, l] * x[..., l]
    return out


def sandwich(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``a @ s @ a'`` for a symmetric ``s`` (..., m, m); the result is symmetric (..., n, n) and
    only its upper triangle is computed."""
    n, m = a.shape[-2:]
    if max(n, m) > SMALL or m == 0:
        return a @ s @ np.swapaxes(a, -1, -2)
    as_ = matmul(a, s)
    out = empty_stack(_lead((as_, 2), (a, 2)), (n, n))
    for i in range(n):
        for j in range(i, n):
            acc = out[..., i, j]
            np.multiply(as_[..., i, 0], a[..., j, 0], out=acc)
            for l in range(1, m):
                acc += as_[..., i, l] * a[..., j, l]
            if j > i:
                out[..., j, i] = acc
    return out


def outer(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``x y'`` for vectors (..., n) and (..., m), entry-major."""
    n, m = x.shape[-1], y.shape[-1]
    out = empty_stack(_lead((x, 1), (y, 1)), (n, m))
    for i in range(n):
        for j in range(m):
            np.multiply(x[..., i], y[..., j], out=out[..., i, j])
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
        inv = empty_stack(m.shape[:-2], (2, 2))
        inv[..., 0, 0] = d / det
        inv[..., 1, 1] = a / det
        inv[..., 0, 1] = inv[..., 1, 0] = -b / det
        return inv, np.log(det)
    if q > SMALL:
        chol = np.linalg.cholesky(m)
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
        return np.linalg.inv(m), logdet
    L = empty_stack(m.shape[:-2], (q, q))
    L[...] = 0.0
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
    L_inv = empty_stack(m.shape[:-2], (q, q))
    L_inv[...] = 0.0
    for i in range(q):
        L_inv[..., i, i] = 1.0 / diag[i]
        for j in range(i):
            s = L[..., i, j] * L_inv[..., j, j]
            for k in range(j + 1, i):
                s = s + L[..., i, k] * L_inv[..., k, j]
            L_inv[..., i, j] = -s / diag[i]
    inv = matmul(np.swapaxes(L_inv, -1, -2), L_inv)
    return inv, logdet


def trace(a: np.ndarray) -> np.ndarray:
    """Trace over the last two axes."""
    n = a.shape[-1]
    if n == 0:
        return np.zeros(a.shape[:-2])
    out = a[..., 0, 0].copy()
    for i in range(1, n):
        out += a[..., i, i]
    return out


def trace_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """tr(a b) = sum_ij a_ij b_ji over the last two axes, without forming the product."""
    n, m = a.shape[-2:]
    if n == 0 or m == 0:
        return np.zeros(_lead((a, 2), (b, 2)))
    out = np.zeros(_lead((a, 2), (b, 2)))
    for i in range(n):
        for j in range(m):
            out += a[..., i, j] * b[..., j, i]
    return out


def weighted_sum(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """sum_i w[i, k] x[i, k, ...] for weights (N, K) and a stack (N, K, ...): shape (K, ...).

    One contiguous pass per trailing entry (the entry-major slices of :func:`empty_stack`)."""
    K, tail = w.shape[1], x.shape[2:]
    out = np.empty((K,) + tail)
    for index in np.ndindex(*tail):
        out[(slice(None),) + index] = np.einsum("nk,nk->k", w, x[(Ellipsis,) + index])
    return out


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
