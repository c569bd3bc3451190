r"""Gauss-Hermite rules for expectations under standard normal laws.

For Z ~ N(0, 1) the n-point Gauss-Hermite rule (probabilists' weight exp(-z^2 / 2)) is::

    E[f(Z)] ~= sum_j w_j f(z_j),      sum_j w_j = 1,

exact when f is a polynomial of degree <= 2n - 1. For Z ~ N(0, I_q) the product rule takes every
combination of the one-dimensional nodes, n^q points with weights prod_l w_{j_l}; it is exact for
polynomials of degree <= 2n - 1 in each coordinate. The nodes are symmetric about 0 and the rule
with n = 1 is the single node z = 0 with weight 1 (the Laplace approximation when the rule is
centred at a mode, see :mod:`pymemoe.families._glmm_kernel`).

The rules are computed once per (n, q) and cached; the arrays returned are read-only.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

__all__ = ["gauss_hermite_normal", "gauss_hermite_normal_1d"]

#: The largest number of nodes per dimension accepted. ``hermegauss`` is accurate well beyond
#: this; the limit only keeps a product grid (n^q nodes) from being requested by mistake.
MAX_NODES = 200


@lru_cache(maxsize=64)
def gauss_hermite_normal_1d(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-point Gauss-Hermite rule for N(0, 1).

    Parameters
    ----------
    n : int
        Number of nodes, 1 <= n <= 200.

    Returns
    -------
    nodes : ndarray (n,)
        Nodes in increasing order (symmetric about 0).
    weights : ndarray (n,)
        Positive weights summing to 1.

    Examples
    --------
    >>> z, w = gauss_hermite_normal_1d(3)
    >>> round(float(w @ z**2), 12), round(float(w @ z**4), 12)   # E Z^2 = 1, E Z^4 = 3
    (1.0, 3.0)
    """
    n = int(n)
    if not 1 <= n <= MAX_NODES:
        raise ValueError(f"the number of quadrature nodes must be in 1..{MAX_NODES}, got {n}")
    if n == 1:
        z, w = np.zeros(1), np.ones(1)
    else:
        z, w = hermegauss(n)
        w = w / w.sum()          # hermegauss weights sum to sqrt(2 pi); normalise exactly
        z = 0.5 * (z - z[::-1])  # exact symmetry (the rule's odd moments vanish to rounding)
    z.setflags(write=False)
    w.setflags(write=False)
    return z, w


@lru_cache(maxsize=64)
def gauss_hermite_normal(n: int, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The product Gauss-Hermite rule for N(0, I_q) with n nodes per dimension.

    Parameters
    ----------
    n : int
        Nodes per dimension (1..200).
    q : int
        Dimension (>= 0; q = 0 gives one empty node of weight 1).

    Returns
    -------
    nodes : ndarray (n**q, q)
        Product nodes, the last coordinate varying fastest.
    log_weights : ndarray (n**q,)
        Logarithms of the product weights (which sum to 1); logs because products of many
        small weights underflow for large n and q.
    sq_norm : ndarray (n**q,)
        ``|z_j|^2`` for each node (the adaptive rule needs ``exp(|z_j|^2 / 2)``).

    Examples
    --------
    >>> z, lw, _ = gauss_hermite_normal(5, 2)
    >>> z.shape, round(float(np.exp(lw).sum()), 12)
    ((25, 2), 1.0)
    >>> round(float(np.exp(lw) @ (z[:, 0] ** 2 * z[:, 1] ** 2)), 12)   # E Z1^2 Z2^2 = 1
    1.0
    """
    n, q = int(n), int(q)
    if q < 0:
        raise ValueError(f"the dimension must be >= 0, got {q}")
    z1, w1 = gauss_hermite_normal_1d(n)
    if q == 0:
        nodes, logw = np.zeros((1, 0)), np.zeros(1)
    else:
        grids = np.meshgrid(*([z1] * q), indexing="ij")
        nodes = np.stack([g.ravel() for g in grids], axis=1)
        lgrids = np.meshgrid(*([np.log(w1)] * q), indexing="ij")
        logw = sum(g.ravel() for g in lgrids)
    sq = np.einsum("jl,jl->j", nodes, nodes)
    for a in (nodes, logw, sq):
        a.setflags(write=False)
    return nodes, logw, sq
