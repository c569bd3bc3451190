r"""Metrics for comparing a fit with a known truth: classification agreement and relabelling.

Mixture labels are arbitrary, so a fit is compared with the truth (a simulation, or another
fit) after matching its experts to the true ones.

* :func:`adjusted_rand_index` (Hubert & Arabie 1985): the label-free agreement of two
  partitions, from their contingency table (:func:`contingency_table`);
* :func:`match_labels`: the permutation of the fitted experts that maximises the agreement of
  the predicted classes with the true ones (ties broken by a cost, e.g. distances between
  intercepts);
* :func:`relabel_matrix`: the linear map of a user parameter vector (``results.params``) to
  the experts in a new order (the gating re-expressed against the new reference), with
  :func:`relabelled_variances` for the standard errors, and :func:`truth_vector`: the true
  value of each parameter of a fitted model.

References
----------
Hubert & Arabie (1985), Comparing partitions. Journal of Classification 2(1).
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import pandas as pd

from ._model.params import Params, Structure, param_labels

__all__ = ["contingency_table", "adjusted_rand_index", "match_labels", "relabel_matrix",
           "relabelled_variances", "truth_vector"]


def contingency_table(labels_a, labels_b) -> np.ndarray:
    """Counts n_ij of items with label i in ``labels_a`` and label j in ``labels_b``.

    Rows and columns are the sorted distinct labels of each partition.

    Examples
    --------
    >>> contingency_table([1, 1, 2, 2], [1, 2, 2, 2]).tolist()
    [[1, 1], [0, 2]]
    """
    a, b = np.asarray(labels_a), np.asarray(labels_b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"the two labellings must be 1-d of the same length, got shapes "
                         f"{a.shape} and {b.shape}")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max(initial=-1) + 1, ib.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    return table


def _pairs(x) -> np.ndarray | float:
    x = np.asarray(x, dtype=float)
    return x * (x - 1.0) / 2.0


def adjusted_rand_index(labels_true, labels_pred) -> float:
    r"""Adjusted Rand index of two partitions (Hubert & Arabie 1985), from the contingency table.

    With n_ij the contingency table, a_i and b_j its row and column sums and C(m) = m (m - 1) / 2::

        index    = sum_ij C(n_ij)
        expected = sum_i C(a_i) sum_j C(b_j) / C(n)
        maximum  = (sum_i C(a_i) + sum_j C(b_j)) / 2
        ARI      = (index - expected) / (maximum - expected)

    1 for identical partitions (whatever the labels), about 0 for independent ones, negative
    below chance. When the denominator is 0 (both partitions a single cluster, or both all
    singletons) the partitions are identical and the ARI is 1.

    Examples
    --------
    >>> adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    >>> round(adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 2]), 6)   # 4 / 7
    0.571429
    >>> round(adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]), 6)    # below chance
    -0.5
    """
    table = contingency_table(labels_true, labels_pred)
    n = table.sum()
    if n < 2:
        return 1.0
    index = float(_pairs(table).sum())
    sum_a = float(_pairs(table.sum(axis=1)).sum())
    sum_b = float(_pairs(table.sum(axis=0)).sum())
    expected = sum_a * sum_b / float(_pairs(n))
    maximum = (sum_a + sum_b) / 2.0
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def match_labels(labels_true, labels_pred, n_experts: int | None = None,
                 cost=None) -> np.ndarray:
    """The true expert of each fitted expert: the permutation maximising the agreement.

    Labels are 1..K in both partitions. Among all permutations of the K experts, the one that
    maximises the number of subjects whose mapped predicted label equals the true label is
    chosen (brute force over the K! permutations: meant for small K); ties are broken by the
    smallest total ``cost`` (a K x K array, cost[j, k] of mapping fitted expert j + 1 to true
    expert k + 1, e.g. the distance between the fitted and true intercepts), then by the
    order of the permutations.

    Returns
    -------
    numpy.ndarray of int, shape (K,)
        ``mapping[j - 1]`` is the true expert (1-based) matched to fitted expert j.

    Examples
    --------
    >>> match_labels([1, 1, 1, 2, 2], [2, 2, 1, 1, 1]).tolist()
    [2, 1]
    >>> match_labels([1, 2], [1, 1], cost=[[1.0, 0.0], [0.0, 1.0]]).tolist()   # a tie
    [2, 1]
    """
    t = np.asarray(labels_true).astype(int)
    p = np.asarray(labels_pred).astype(int)
    if t.shape != p.shape:
        raise ValueError("labels_true and labels_pred must have the same length")
    K = int(n_experts) if n_experts is not None else int(max(t.max(initial=1),
                                                              p.max(initial=1)))
    if t.size and (t.min() < 1 or p.min() < 1 or t.max() > K or p.max() > K):
        raise ValueError(f"labels must be integers in 1..{K}")
    counts = np.zeros((K, K), dtype=np.int64)           # counts[fitted j, true k]
    np.add.at(counts, (p - 1, t - 1), 1)
    cost = np.zeros((K, K)) if cost is None else np.asarray(cost, dtype=float)
    if cost.shape != (K, K):
        raise ValueError(f"cost must have shape ({K}, {K}), got {cost.shape}")
    rows = np.arange(K)
    best, best_key = None, None
    for perm in itertools.permutations(range(K)):
        perm = np.asarray(perm)
        key = (-int(counts[rows, perm].sum()), float(cost[rows, perm].sum()))
        if best_key is None or key < best_key:
            best, best_key = perm, key
    return best + 1


def relabel_matrix(labels: pd.MultiIndex, order: Sequence[int]) -> np.ndarray:
    """Linear map of a user parameter vector to the experts in a new order.

    New expert k (1-based) is old expert ``order[k - 1]`` (1-based), as
    :func:`pymemoe._model.params.reorder` with ``perm = order - 1``. Fixed effects, covariances and
    residual variances are permuted; the gating coefficients are re-expressed against the new
    reference expert, gamma'_k = gamma_{order[k]} - gamma_{order[1]} (gamma_1 = 0): also
    linear, so the covariance of the relabelled vector is T Cov T'. Parameters shared by all
    experts are unchanged. (SD ratios of ``cov_re="proportional"`` are not linear in the
    order; their rows are NaN.)

    Examples
    --------
    >>> import pandas as pd
    >>> labels = pd.MultiIndex.from_tuples([("gate", 2, "Intercept"), ("beta", 1, "Intercept"),
    ...                                     ("beta", 2, "Intercept"), ("scale", "all", "sigma2")])
    >>> relabel_matrix(labels, [2, 1]).tolist()
    [[-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    """
    order = [int(k) for k in order]
    pos = {tuple(label): i for i, label in enumerate(labels)}
    T = np.zeros((len(labels), len(labels)))
    for i, (block, expert, term) in enumerate(labels):
        if expert == "all":
            T[i, i] = 1.0
        elif term == "SD ratio":
            T[i, :] = np.nan
        elif block == "gate":
            src, ref = order[int(expert) - 1], order[0]
            if src != 1:
                T[i, pos[("gate", src, term)]] += 1.0
            if ref != 1:
                T[i, pos[("gate", ref, term)]] -= 1.0
        else:
            T[i, pos[(block, order[int(expert) - 1], term)]] = 1.0
    return T


def relabelled_variances(T: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """diag(T Cov T') without letting a NaN spread through the zeros of T (the variances of a
    relabelled parameter vector, :func:`relabel_matrix`)."""
    out = np.full(T.shape[0], np.nan)
    for i in range(T.shape[0]):
        idx = np.flatnonzero(T[i] != 0)
        if idx.size and np.isfinite(T[i, idx]).all():
            out[i] = T[i, idx] @ cov[np.ix_(idx, idx)] @ T[i, idx]
    return out


def truth_vector(truth: Params, structure: Structure) -> np.ndarray:
    """True value of each parameter of a fitted model (labels ``param_labels(structure)``).

    NaN where the fitted model's parameter has no true counterpart: the number of experts
    differs, a shared D (sigma2) when the true D_k (sigma2_k) differ, the residual variance of a
    model without random effects when the truth has random effects, SD ratios.
    """
    labels = param_labels(structure)
    out = np.full(len(labels), np.nan)
    if truth.n_experts != structure.n_experts:
        return out
    fe, re, gate = structure.exog_names, structure.exog_re_names, structure.exog_gate_names
    true_re = ("Intercept", "time")
    has_true_re = bool(np.any(truth.cov_re != 0))
    D_equal = bool(np.allclose(truth.cov_re, truth.cov_re[0]))
    s_equal = bool(np.allclose(truth.scale, truth.scale[0]))
    for i, (block, expert, term) in enumerate(labels):
        k = 0 if expert == "all" else int(expert) - 1
        if block == "gate" and term in gate:
            j = gate.index(term)
            out[i] = truth.gamma[k, j] if j < truth.gamma.shape[1] else np.nan
        elif block == "beta" and term in fe and fe.index(term) < truth.beta.shape[1]:
            out[i] = truth.beta[k, fe.index(term)]
        elif block == "re_cov" and term != "SD ratio":
            if expert == "all" and not D_equal:
                continue
            inner = term[term.index("(") + 1:-1].split(",")
            if all(name in true_re for name in inner) and all(name in re for name in inner):
                a, b = (true_re.index(inner[0]), true_re.index(inner[-1]))
                out[i] = truth.cov_re[k, a, b]
        elif block == "scale":
            if (structure.k_re == 0 and has_true_re) or (expert == "all" and not s_equal):
                continue
            out[i] = truth.scale[k]
    return out
