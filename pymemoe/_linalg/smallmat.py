"""Small matrices in bulk: products, Cholesky factors, inverses and log-determinants.

The fit works on millions of q x q or p x q matrices (one per subject and expert) with q and p
rarely above 3. numpy's batched ``matmul``, ``cholesky`` and ``inv`` pay a per-matrix overhead
(a LAPACK call each for the last two) that dominates at that size. Here the loops run over the
matrix *indices* (q^3 of them at most) and every step is an elementwise operation on whole
arrays of one entry, so the cost is a few passes over memory.

**Two layouts, one storage.** In both, the values of one matrix entry (i, j) over all subjects
and experts form one contiguous block ("entry-major" storage); they differ in where the
matrix axes sit in the logical shape:

* the **stack layout** (matrix axes last, (..., n, m)): what the Gaussian experts, the
  likelihood and the inference hand around (:func:`empty_stack`, :func:`matmul`,
  :func:`matvec`, :func:`sandwich`, :func:`cholesky_inverse_logdet`, ...); numpy
  broadcasting and indexing by subject read naturally there;
* the **lead layout** (matrix axes first, (n, m, ...)): what the GLMM kernel computes in,
  with the experts and subjects trailing ((q, q, K, N)), so that an entry ``a[i, j]`` is a
  plain (K, N) array (:func:`lead_matmul`, :func:`lead_cholesky`, ...).

:func:`to_lead` and :func:`to_stack` turn one into the other without copying, and the stack
functions run the lead-layout loops on such views, so every algorithm is written once. Above
``SMALL`` the stack functions use numpy's routines.

**Why entry-major.** The kernels read whole entries ``x[..., i, j]`` at a time; in numpy's
row-major layout such a slice has a stride of n*m*8 bytes, so every pass would pull the whole
stack through the cache to use a fraction of it (measured: :ref:`defaults-measured`; at 10^6
subjects the fit is bound by memory bandwidth). numpy's elementwise operations keep this
layout, so the rest of the code sees ordinary arrays. Reshaping such a stack copies it: reduce with
:func:`weighted_sum`, :func:`trace` or :func:`trace_product` instead.

All functions take arrays whose last two axes are the matrix axes and broadcast over the others.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["SMALL", "EINSUM_TAIL", "empty_stack", "as_stack", "to_lead", "to_stack", "matmul",
           "matvec", "sandwich", "outer", "cholesky_inverse_logdet", "trace", "trace_product",
           "weighted_sum", "dot", "sum_last", "max_last", "lead_matmul", "lead_matvec",
           "lead_transpose", "lead_cholesky", "lead_triangular_inverse", "lead_inverse_factor",
           "lead_sym_phi"]

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


@lru_cache(maxsize=None)
def _axes(nd: int, kind: str) -> tuple[int, ...]:
    """The transposition of an ``nd``-dimensional array that moves its matrix (or vector) axes
    between last and first: what ``np.moveaxis`` computes, without its argument checks on
    every call (the kernels make tens of thousands of such views in a fit)."""
    if kind == "lead":                    # (..., n, m) -> (n, m, ...)
        return (nd - 2, nd - 1, *range(nd - 2))
    if kind == "stack":                   # (n, m, ...) -> (..., n, m)
        return (*range(2, nd), 0, 1)
    if kind == "vector_first":            # (..., m) -> (m, ...)
        return (nd - 1, *range(nd - 1))
    return (*range(1, nd), 0)             # "vector_last": (m, ...) -> (..., m)


def to_lead(x: np.ndarray) -> np.ndarray:
    """A stack-layout array (..., n, m) as a lead-layout view (n, m, ...) (no copy)."""
    return x.transpose(_axes(x.ndim, "lead"))


def to_stack(x: np.ndarray) -> np.ndarray:
    """A lead-layout array (n, m, ...) as a stack-layout view (..., n, m) (no copy)."""
    return x.transpose(_axes(x.ndim, "stack"))


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` over the last two axes, broadcasting the leading ones."""
    n, m = a.shape[-2:]
    p = b.shape[-1]
    if max(n, m, p) > SMALL or m == 0:
        return a @ b
    return to_stack(lead_matmul(to_lead(a), to_lead(b)))


def matvec(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``a @ x`` for matrices ``a`` (..., n, m) and vectors ``x`` (..., m)."""
    n, m = a.shape[-2:]
    if max(n, m) > SMALL or m == 0:
        return (a @ x[..., None])[..., 0]
    out = lead_matvec(to_lead(a), x.transpose(_axes(x.ndim, "vector_first")))
    return out.transpose(_axes(out.ndim, "vector_last"))


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
    L = lead_cholesky(to_lead(m))
    logdet = 2.0 * sum(np.log(L[j, j]) for j in range(q)) if q else np.zeros(m.shape[:-2])
    L_inv = lead_triangular_inverse(L)
    return to_stack(lead_matmul(lead_transpose(L_inv), L_inv)), logdet


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


# ---------------------------------------------------------------------------------------------
# The lead layout: matrix axes first, (n, m, ...)


EINSUM_TAIL = 16384
"""Stacks of at most this many matrices, neither operand broadcast, are multiplied by one
``einsum`` call (see :func:`lead_matmul`)."""


def lead_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix product over the two leading axes: (n, m, ...) x (m, r, ...) -> (n, r, ...).

    The result is entry-major. Large stacks, or an operand broadcast over the stack (one
    expert's parameters against all subjects): a loop over the n r m index triples, each a
    multiply-add on whole entries, accumulated in one buffer (a few passes over memory, no
    temporaries). Stacks of at most :data:`EINSUM_TAIL` matrices with operands of the same
    shape: one ``einsum`` call, whose C loop avoids the n r m ufunc calls whose overhead
    dominates there. Measured (``benchmarks/bench_smallmat.py``, stacks of 3 experts x N
    subjects): einsum 1.4 to 2.5 times faster than the loop for N = 500 to 2,000 with full
    operands, but no faster with a broadcast one (0.8 to 1.2 times) and at best as fast for
    N = 10^5; used for every product, it doubled the CPU time of a 10^5-subject Gaussian fit
    (3.5 -> 6.7 s).
    """
    n, m, r = a.shape[0], a.shape[1], b.shape[1]
    tail = np.broadcast_shapes(a.shape[2:], b.shape[2:])
    out = np.empty((n, r) + tail)
    if m == 0:
        out[...] = 0.0
        return out
    if a.shape[2:] == b.shape[2:] and out[0, 0].size <= EINSUM_TAIL:
        return np.einsum("ij...,jk...->ik...", a, b, out=out)
    term = np.empty(tail) if m > 1 else None      # one buffer for every product term
    for i in range(n):
        for j in range(r):
            acc = out[i, j]
            np.multiply(a[i, 0], b[0, j], out=acc)
            for l in range(1, m):
                np.multiply(a[i, l], b[l, j], out=term)
                np.add(acc, term, out=acc)
    return out


def lead_matvec(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Matrix-vector product over leading axes: (n, m, ...) x (m, ...) -> (n, ...)."""
    return lead_matmul(a, x[:, None])[:, 0]


def lead_transpose(a: np.ndarray) -> np.ndarray:
    """Transpose of lead-layout matrices (a view)."""
    return np.swapaxes(a, 0, 1)


def lead_cholesky(a: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of symmetric matrices >= I (lead layout). The pivots of such a
    matrix are >= 1; clamping at 1 removes rounding only."""
    q = a.shape[0]
    L = np.zeros(a.shape)
    for j in range(q):
        s = a[j, j].copy()
        for k in range(j):
            s -= L[j, k] ** 2
        L[j, j] = np.sqrt(np.maximum(s, 1.0))
        for i in range(j + 1, q):
            s = a[i, j].copy()
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / L[j, j]
    return L


def lead_triangular_inverse(L: np.ndarray) -> np.ndarray:
    """Inverse of lower triangular matrices with a positive diagonal (lead layout)."""
    q = L.shape[0]
    inv = np.zeros(L.shape)
    for i in range(q):
        inv[i, i] = 1.0 / L[i, i]
        for j in range(i):
            s = L[i, j] * inv[j, j]
            for k in range(j + 1, i):
                s = s + L[i, k] * inv[k, j]
            inv[i, j] = -s / L[i, i]
    return inv


def lead_inverse_factor(H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R, the lower Cholesky factor of H^-1, and log|H|, from one Cholesky factorisation.

    With J the index reversal, chol(J H J) = Lt gives H = U U' with U = J Lt J upper, so
    H^-1 = U^-T U^-1 and R = U^-T = (J Lt^-1 J)' is lower with a positive diagonal: it is the
    Cholesky factor of H^-1. log|H| = -2 sum log R_ii.
    """
    q = H.shape[0]
    if q == 1:
        h = np.maximum(H[0, 0], 1.0)
        return (1.0 / np.sqrt(h))[None, None], np.log(h)
    rev = np.arange(q)[::-1]
    Lt_inv = lead_triangular_inverse(lead_cholesky(H[rev][:, rev]))
    R = lead_transpose(Lt_inv[rev][:, rev]).copy()
    logdet = -2.0 * sum(np.log(R[j, j]) for j in range(q))
    return R, logdet


def lead_sym_phi(a: np.ndarray) -> np.ndarray:
    """(Phi(a) + Phi(a)') / 2, Phi = lower triangle with halved diagonal."""
    q = a.shape[0]
    out = np.empty(a.shape)
    for i in range(q):
        out[i, i] = 0.5 * a[i, i]
        for j in range(i):
            out[i, j] = out[j, i] = 0.5 * a[i, j]
    return out
