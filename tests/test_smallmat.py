"""Small-matrix kernels against numpy.linalg on random stacks."""
import numpy as np
import pytest

from pymemoe.smallmat import cholesky_inverse_logdet, matmul, matvec


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
