"""The closed-form Hessian of a linear mixed model expert (pymemoe.families._lmm_hessian) against
central differences of the analytic gradients (pymemoe.families._lmm.expert_gradients), in the natural
coordinates (beta, lower triangle of D, sigma2), for q = 0..3 random effects."""
import numpy as np
import pytest

from pymemoe._model.params import Params, natural_index, natural_vector
from pymemoe.families._lmm import expert_gradients, expert_moments
from pymemoe.families._lmm_hessian import expert_hessian_sums
from pymemoe.families.gaussian import SubjectData


def _data(q: int, seed: int = 0) -> SubjectData:
    rng = np.random.default_rng(seed)
    n_sub, visits = 60, 6
    t = np.tile(np.arange(visits, dtype=float), n_sub)
    groups = np.repeat(np.arange(n_sub), visits)
    x = np.column_stack([np.ones_like(t), t, rng.normal(size=t.size)])
    z = np.column_stack([np.ones_like(t), t, t ** 2 / 5, rng.normal(size=t.size)])[:, :q]
    y = x @ [1.0, 0.3, -0.2] + rng.normal(size=t.size) + np.repeat(rng.normal(size=n_sub), visits)
    return SubjectData.from_arrays(y, x, z, np.ones((t.size, 1)), groups)


def _params(q: int, rng) -> Params:
    A = rng.normal(size=(2, q, q))
    cov = 0.3 * A @ np.swapaxes(A, 1, 2) + 0.2 * np.eye(q)
    return Params(gamma=np.zeros((2, 1)), beta=rng.normal(size=(2, 3)), cov_re=cov,
                  scale=np.array([0.7, 1.3]))


def _natural_gradient(data, params, tau, k, index):
    g_beta, g_cov, g_scale = expert_gradients(data, params, expert_moments(data, params))
    out = []
    for kind, ij in index:
        if kind == "beta":
            values = g_beta[:, k, ij[0]]
        elif kind == "cov":       # dD_ij moves D_ij and D_ji: d log f = G_ij + G_ji
            i, j = ij
            values = g_cov[:, k, i, j] * (1.0 if i == j else 2.0)
        else:
            values = g_scale[:, k]
        out.append(tau[:, k] @ values)
    return np.array(out)


def _with_natural(params, k, nu, q):
    beta, cov, scale = params.beta.copy(), params.cov_re.copy(), params.scale.copy()
    p = beta.shape[1]
    beta[k] = nu[:p]
    rows, cols = np.tril_indices(q)
    D = np.zeros((q, q))
    D[rows, cols] = nu[p:p + len(rows)]
    cov[k] = D + np.tril(D, -1).T
    scale[k] = nu[-1]
    return Params(gamma=params.gamma, beta=beta, cov_re=cov, scale=scale)


@pytest.mark.parametrize("q", [0, 1, 2, 3])
def test_closed_form_hessian_equals_differenced_gradients(q):
    rng = np.random.default_rng(q)
    data, params = _data(q), _params(q, rng)
    tau = rng.dirichlet([1.0, 1.0], size=data.n_groups)
    index = natural_index(3, q)
    hess = expert_hessian_sums(data, params, expert_moments(data, params), tau)
    for k in range(2):
        nu = natural_vector(params, k)
        numeric = np.zeros((len(nu), len(nu)))
        for j in range(len(nu)):
            h = 1e-5 * max(abs(nu[j]), 0.1)
            up, down = nu.copy(), nu.copy()
            up[j] += h
            down[j] -= h
            numeric[:, j] = (_natural_gradient(data, _with_natural(params, k, up, q), tau, k, index)
                             - _natural_gradient(data, _with_natural(params, k, down, q), tau, k, index)) / (2 * h)
        scale = np.abs(numeric).max()
        np.testing.assert_allclose(hess[k], numeric, atol=1e-6 * scale, rtol=1e-6)
        assert np.allclose(hess[k], hess[k].T)
