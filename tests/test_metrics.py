"""pymemoe.metrics: the adjusted Rand index against hand examples and pair counting, label
matching, relabelling of parameters and their variances, and the truth vectors of the
simulation study's models."""
import itertools

import numpy as np
import pandas as pd
import pytest

from pymemoe._model.params import Params, Structure, param_labels, reorder, to_user
from pymemoe.metrics import (adjusted_rand_index, contingency_table, match_labels, relabel_matrix,
                             relabelled_variances, truth_vector)

from sim_design import MODELS, SETTINGS  # noqa: E402


def test_ari_hand_example():
    # true [0 0 0 1 1 1], predicted [0 0 1 1 2 2]: contingency [[2, 1, 0], [0, 1, 2]]
    # index = C(2)+C(2) = 2; rows (3, 3): 3+3 = 6; columns (2, 2, 2): 1+1+1 = 3; C(6) = 15
    # expected = 6 * 3 / 15 = 1.2; maximum = (6 + 3) / 2 = 4.5; ARI = 0.8 / 3.3 = 8 / 33
    true, pred = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]
    assert contingency_table(true, pred).tolist() == [[2, 1, 0], [0, 1, 2]]
    assert adjusted_rand_index(true, pred) == pytest.approx(8 / 33, abs=1e-12)
    assert adjusted_rand_index(pred, true) == pytest.approx(8 / 33, abs=1e-12)   # symmetric


@pytest.mark.parametrize("a, b, expected", [
    ([0, 0, 1, 1], [0, 0, 1, 1], 1.0),
    ([0, 0, 1, 1], [5, 5, 2, 2], 1.0),          # the labels themselves do not matter
    ([0, 0, 1, 1], [0, 0, 1, 2], 4 / 7),        # index 1, rows 2, columns 1, C(4) = 6
    ([0, 0, 1, 1], [0, 1, 0, 1], -0.5),         # index 0, rows 2, columns 2: below chance
    ([1, 1, 1, 1], [2, 2, 2, 2], 1.0),          # both a single cluster
    ([1, 2, 3], [4, 5, 6], 1.0),                # both all singletons
])
def test_ari_small_cases(a, b, expected):
    assert adjusted_rand_index(a, b) == pytest.approx(expected, abs=1e-12)


def _ari_by_pairs(a, b) -> float:
    """The same index counted over all pairs of items (independent of the contingency table)."""
    n = len(a)
    both = same_a = same_b = 0
    for i, j in itertools.combinations(range(n), 2):
        sa, sb = a[i] == a[j], b[i] == b[j]
        same_a += sa
        same_b += sb
        both += sa and sb
    pairs = n * (n - 1) / 2
    expected = same_a * same_b / pairs
    return (both - expected) / ((same_a + same_b) / 2 - expected)


def test_ari_matches_pair_counting():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = rng.integers(0, 3, size=25)
        b = np.where(rng.random(25) < 0.6, a, rng.integers(0, 4, size=25))
        assert adjusted_rand_index(a, b) == pytest.approx(_ari_by_pairs(a, b), abs=1e-12)


def test_ari_near_zero_for_independent_partitions():
    rng = np.random.default_rng(0)
    values = [adjusted_rand_index(rng.integers(0, 2, 400), rng.integers(0, 2, 400))
              for _ in range(50)]
    assert abs(np.mean(values)) < 0.01
    assert max(values) <= 1.0


def test_match_labels_hand_examples():
    # fitted 1 holds true 2 (x3), fitted 2 holds true 1 (x2) and true 2 (x1)
    assert match_labels([2, 2, 2, 1, 1, 2], [1, 1, 1, 2, 2, 2]).tolist() == [2, 1]
    # K = 3: fitted 1 -> true 3, fitted 2 -> true 1, fitted 3 -> true 2
    true = [1, 1, 2, 2, 3, 3, 3]
    pred = [2, 2, 3, 3, 1, 1, 2]
    assert match_labels(true, pred, 3).tolist() == [3, 1, 2]
    # identity when the labels agree
    assert match_labels(true, true, 3).tolist() == [1, 2, 3]


def test_match_labels_tie_broken_by_cost():
    true, pred = [1, 2, 1, 2], [1, 1, 2, 2]           # both permutations agree on 2 subjects
    assert match_labels(true, pred, 2).tolist() == [1, 2]
    cost = [[5.0, 0.1], [0.2, 5.0]]                     # intercepts say: swap
    assert match_labels(true, pred, 2, cost=cost).tolist() == [2, 1]


def test_match_labels_rejects_bad_labels():
    with pytest.raises(ValueError):
        match_labels([0, 1], [1, 2], 2)


@pytest.mark.parametrize("cov_re, scale", [("expert", "expert"), ("shared", "shared")])
def test_relabel_matrix_equals_reorder(cov_re, scale):
    rng = np.random.default_rng(1)
    K = 3
    structure = Structure(K, ("Intercept", "time"), ("Intercept", "time"),
                          ("Intercept", "x1"), cov_re=cov_re, scale=scale)
    gamma = np.vstack([np.zeros(2), rng.normal(size=(K - 1, 2))])
    A = rng.normal(size=(K, 2, 2))
    D = A @ np.swapaxes(A, 1, 2)
    if cov_re == "shared":
        D[:] = D[0]
    s = rng.uniform(1, 2, K) if scale == "expert" else np.full(K, 1.5)
    params = Params(gamma=gamma, beta=rng.normal(size=(K, 2)), cov_re=D, scale=s)
    labels = param_labels(structure)
    for perm in itertools.permutations(range(K)):
        T = relabel_matrix(labels, np.array(perm) + 1)
        assert np.allclose(T @ to_user(params, structure),
                           to_user(reorder(params, np.array(perm)), structure))


def test_relabelled_variances_do_not_spread_nan():
    T = np.array([[1.0, 0.0], [0.0, -1.0]])
    cov = np.array([[np.nan, np.nan], [np.nan, 4.0]])
    out = relabelled_variances(T, cov)
    assert np.isnan(out[0]) and out[1] == 4.0


def _structure(spec):
    q = () if spec.re_formula == "0" else ("Intercept", "time")
    gate = ("Intercept",) if spec.gate_formula == "~ 1" else ("Intercept", "x1", "x2")
    return Structure(spec.n_experts, ("Intercept", "time"), q, gate, cov_re=spec.cov_re,
                     scale=spec.scale)


def test_truth_vector_per_model():
    ex1, ex2 = SETTINGS["example1"].params, SETTINGS["example2"].params
    full = _structure(MODELS["memoe"])
    t = pd.Series(truth_vector(ex2, full), index=param_labels(full))
    assert np.isfinite(t).all()
    assert t[("gate", 2, "x2")] == -1.0 and t[("beta", 2, "time")] == 0.5
    assert t[("re_cov", 2, "Var(Intercept)")] == pytest.approx(0.64)
    assert t[("scale", 2, "sigma2")] == 0.25

    shared = _structure(MODELS["shared"])
    t1 = pd.Series(truth_vector(ex1, shared), index=param_labels(shared))
    assert np.isfinite(t1).all()                  # equal D_k and sigma2_k: the truth exists
    assert t1[("re_cov", "all", "Cov(Intercept,time)")] == pytest.approx(0.2 * 0.5 * 0.1)
    t2 = pd.Series(truth_vector(ex2, shared), index=param_labels(shared))
    assert t2.xs("re_cov", level="block").isna().all()
    assert t2.xs("scale", level="block").isna().all()
    assert t2.xs("beta", level="block").notna().all()

    moe = _structure(MODELS["moe"])
    t3 = pd.Series(truth_vector(ex1, moe), index=param_labels(moe))
    assert t3.xs("scale", level="block").isna().all()
    assert t3.xs("gate", level="block").notna().all()

    assert np.isnan(truth_vector(ex1, _structure(MODELS["lmm"]))).all()
