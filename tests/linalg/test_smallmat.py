"""Small-matrix kernels against numpy.linalg on random stacks."""
import numpy as np
import pytest

from pymemoe._linalg.smallmat import (as_stack, cholesky_inverse_logdet, empty_stack, matmul,
                                      matvec, outer, sandwich, trace, trace_product, weighted_sum)


@pytest.mark.parametrize("q", [1, 2, 3, 4, 6])
def test_inverse_and_logdet_equal_numpy(q):
    rng = np.random.default_rng(q)
    a = rng.normal(size=(50, 3, q, q))
    m = a @ np.swapaxes(a, -1, -2) + np.eye(q)          # the contract: M = A + I, A >= 0
    inv, logdet = cholesky_inverse_logdet(m)
    np.testing.assert_allclose(inv, np.linalg.inv(m), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(m)[1], rtol=1e-10)


@pytest.mark.parametrize("shapes", [((7, 3, 2, 2), (3, 2, 2)), ((3, 2, 3), (7, 3, 3, 2)),
                                    ((5, 1, 4, 4), (5, 2, 4, 1)), ((6, 6), (6, 2))])
def test_products_equal_numpy(shapes):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])
    np.testing.assert_allclose(matmul(a, b), a @ b, rtol=1e-12)
    x = b[..., 0]
    np.testing.assert_allclose(matvec(a, x), (a @ x[..., None])[..., 0], rtol=1e-12)


@pytest.mark.parametrize("q", [1, 2, 3, 5])
def test_reductions_and_symmetric_products_equal_numpy(q):
    rng = np.random.default_rng(10 + q)
    a, s = rng.normal(size=(40, 3, q, q)), rng.normal(size=(40, 3, q, q))
    s = s + np.swapaxes(s, -1, -2)
    w, x = rng.random((40, 3)), rng.normal(size=(40, 3, q))
    np.testing.assert_allclose(sandwich(a, s), a @ s @ np.swapaxes(a, -1, -2), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(outer(x, x), x[..., :, None] * x[..., None, :], rtol=1e-15)
    np.testing.assert_allclose(trace(a), np.trace(a, axis1=-2, axis2=-1), rtol=1e-12)
    np.testing.assert_allclose(trace_product(a, s), np.trace(a @ s, axis1=-2, axis2=-1), rtol=1e-10)
    np.testing.assert_allclose(weighted_sum(w, a), np.einsum("nk,nkab->kab", w, a), rtol=1e-12)


def test_stacks_are_entry_major():
    """Each entry of a returned stack is one contiguous (N, K) block (see the module docstring)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(100, 3, 2, 2)), rng.normal(size=(100, 3, 2))
    m = a @ np.swapaxes(a, -1, -2) + np.eye(2)
    for out in (matmul(a, a), matvec(a, b), sandwich(a, m), outer(b, b),
                cholesky_inverse_logdet(m)[0], as_stack(a, 2), empty_stack((100, 3), (2, 2))):
        assert out.shape[:2] == (100, 3)
        last_entry = out[..., -1] if out.ndim == 3 else out[..., -1, 0]
        assert last_entry.flags.c_contiguous
