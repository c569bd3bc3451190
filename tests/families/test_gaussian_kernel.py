"""The expert kernel on sufficient statistics against dense linear algebra (scipy), and the
analytic scores against numerical derivatives of the log-likelihood (statsmodels numdiff)."""
import numpy as np
import pytest
from scipy.stats import multivariate_normal
from statsmodels.tools.numdiff import approx_fprime
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from pymemoe import MEMoE
from pymemoe._model.params import Params, from_user, to_user
from pymemoe.families._lmm import expert_moments
from pymemoe.families.gaussian import SubjectData


def _random_problem(rng, n_subjects=7, p=3, q=2, K=3, singular=False):
    sizes = rng.integers(1, 6, size=n_subjects)
    groups = np.repeat(np.arange(n_subjects), sizes)
    n = len(groups)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
    Z = np.column_stack([np.ones(n), rng.normal(size=(n, q - 1))])
    y = rng.normal(size=n) * 2
    cov = []
    for _ in range(K):
        A = rng.normal(size=(q, q))
        D = A @ A.T + 0.1 * np.eye(q)
        if singular:
            D[0, :] = D[:, 0] = 0.0     # a variance on the boundary
        cov.append(D)
    params = Params(gamma=np.zeros((K, 1)), beta=rng.normal(size=(K, p)), cov_re=np.array(cov),
                    scale=rng.uniform(0.2, 2.0, size=K))
    data = SubjectData.from_arrays(y, X, Z, np.ones((n, 1)), groups)
    return data, params, (y, X, Z, groups)


@pytest.mark.parametrize("singular", [False, True])
@pytest.mark.parametrize("p, q", [(3, 2), (2, 1), (6, 3), (3, 5)])   # closed forms, index loops, numpy
def test_woodbury_logdensity_equals_dense_mvn(singular, p, q):
    rng = np.random.default_rng(1)
    data, params, (y, X, Z, groups) = _random_problem(rng, p=p, q=q, singular=singular)
    moments = expert_moments(data, params)
    for i in range(data.n_groups):
        rows = groups == i
        for k in range(params.n_experts):
            V = Z[rows] @ params.cov_re[k] @ Z[rows].T + params.scale[k] * np.eye(rows.sum())
            dense = multivariate_normal.logpdf(y[rows], X[rows] @ params.beta[k], V)
            assert moments.logdens[i, k] == pytest.approx(dense, rel=1e-8, abs=1e-8)
            # conditional mode and covariance = BLUP formulas D Z'V^-1 r, D - D Z'V^-1 Z D
            Vinv = np.linalg.inv(V)
            r = y[rows] - X[rows] @ params.beta[k]
            D = params.cov_re[k]
            np.testing.assert_allclose(moments.b_hat[i, k], D @ Z[rows].T @ Vinv @ r, atol=1e-9)
            np.testing.assert_allclose(moments.b_cov[i, k],
                                       D - D @ Z[rows].T @ Vinv @ Z[rows] @ D, atol=1e-9)


def test_sufficient_statistics_equal_per_subject_products():
    rng = np.random.default_rng(2)
    data, _, (y, X, Z, groups) = _random_problem(rng)
    for i in range(data.n_groups):
        rows = groups == i
        np.testing.assert_allclose(data.xx[i], X[rows].T @ X[rows])
        np.testing.assert_allclose(data.xz[i], X[rows].T @ Z[rows])
        np.testing.assert_allclose(data.zz[i], Z[rows].T @ Z[rows])
        np.testing.assert_allclose(data.zy[i], Z[rows].T @ y[rows])
        assert data.yy[i] == pytest.approx(y[rows] @ y[rows])
        assert data.n_obs[i] == rows.sum()


OPTIONS = [
    dict(),
    dict(cov_re="proportional"),
    dict(cov_re="shared"),
    dict(re_structure="diagonal"),
    dict(scale="shared"),
    dict(cov_re="proportional", re_structure="diagonal", scale="shared"),
    dict(re_formula="0"),
    dict(shared_formula="~ x1"),
    dict(re_formula="~ 1", cov_re="shared"),
    dict(re_formula="~ time + I(time**2)"),
    dict(formula="y ~ time * x1 + I(time**2) + x2 + x1:x2"),    # p = 6, above smallmat.SMALL
]


def _model(sim, **kw):
    kw = {"formula": "y ~ time", "re_formula": "~ time", "gate_formula": "~ x1 + x2", **kw}
    sub = sim[sim["id"] < 60]
    return MEMoE.from_formula(data=sub, groups="id", n_experts=2, **kw)


@pytest.mark.parametrize("options", OPTIONS, ids=[str(o) for o in OPTIONS])
def test_score_equals_numerical_gradient_at_random_point(sim500, options):
    model = _model(sim500, **options)
    rng = np.random.default_rng(3)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        res = model.fit(n_starts=1, random_state=0, maxiter=5, polish=False, cov_type="none")
    point = np.array(res.params, dtype=float)
    # move away from the fit, keeping every D_k positive definite (one factor for all entries of
    # a D_k: scaling its variances alone can make it indefinite, where the likelihood is that of
    # the clipped matrix) and the residual variances and SD ratios positive
    labels = res.params.index
    cov_factor = {expert: rng.uniform(0.7, 1.4) for block, expert, _ in labels if block == "re_cov"}
    for j, (block, expert, term) in enumerate(labels):
        if block in ("gate", "beta"):
            point[j] += rng.normal(scale=0.3)
        elif block == "re_cov" and term != "SD ratio":
            point[j] *= cov_factor[expert]
        elif term in ("sigma2", "SD ratio"):
            point[j] *= rng.uniform(0.7, 1.4)
    analytic = model.score(point)
    numeric = approx_fprime(point, model.loglike, centered=True)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-5 * np.abs(numeric).max())


@pytest.mark.parametrize("options", OPTIONS[:3], ids=[str(o) for o in OPTIONS[:3]])
def test_score_vanishes_at_optimum(sim500, options):
    model = _model(sim500, **options)
    res = model.fit(n_starts=2, random_state=0)
    assert res.converged
    grad = model.score(res.params)
    numeric = approx_fprime(res.params.to_numpy(), model.loglike, centered=True)
    np.testing.assert_allclose(grad, numeric, atol=1e-4)
    assert np.abs(grad).max() < 1e-3


def test_user_vector_round_trip(sim500):
    model = _model(sim500, cov_re="proportional")
    res = model.fit(n_starts=1, random_state=0)
    par = from_user(res.params.to_numpy(), model.structure)
    np.testing.assert_allclose(to_user(par, model.structure), res.params.to_numpy())
    assert model.loglike(res.params) == pytest.approx(res.llf, rel=1e-12)
