"""The GLMM kernel (pymemoe.families._glmm_kernel): gradients against finite differences, values against
brute-force integrals computed independently with scipy (scipy.stats log-pmfs, quad, dblquad),
modes, robustness, predictive means, and lme4/glmmTMB references.

References (tests/reference/results/glmm_refs_used.json, copied from shared/reference/glmm/, made by
tests/reference/results/scripts/05_glmm.R with R 4.2.2, lme4 1.1-31, glmmTMB 1.1.5; data in
tests/reference/results/glmm/): glmer fits with nAGQ = 1 and 25 on sim_binary_k2, sim_poisson_k2 and MASS's
bacteria and epil.
"""
import warnings

import numpy as np
import pytest
from scipy import integrate, optimize, stats
from scipy.special import expit

from pymemoe._linalg.quadrature import gauss_hermite_normal
from pymemoe.families._glmm_kernel import (GLMMNumericalWarning, GLMMRows, _adaptive_pass,
                                           _Context, _evaluate, _internal, chol_grad_to_cov_grad,
                                           glmm_conditional_mean, glmm_gradients,
                                           glmm_marginal_mean, glmm_moments)

from helpers import RESULTS

GLMM = RESULTS / "glmm"


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def _simulate(family, q, seed, N=24, trials=False, weights=False, offset=False):
    """Small unbalanced data (1 to 8 rows per subject), covariates on different scales."""
    rng = np.random.default_rng(seed)
    n_obs = rng.integers(1, 9, N)
    g = np.repeat(np.arange(N), n_obs)
    n = g.size
    t = rng.uniform(0, 3, n)
    x2 = rng.normal(size=n)
    X = np.column_stack([np.ones(n), t, x2])
    Z = X[:, :q]
    b = rng.normal(size=(N, q)) * 0.7
    eta = X @ [-0.2, 0.3, 0.2] + (Z * b[g]).sum(axis=1)
    m = rng.integers(1, 6, n).astype(float) if trials else None
    off = 0.3 * rng.normal(size=n) if offset else None
    if off is not None:
        eta = eta + off
    if family == "binomial":
        y = rng.binomial(1 if m is None else m.astype(int), expit(eta))
    else:
        y = rng.poisson(np.exp(eta))
    w = rng.choice([0.0, 1.0, 1.0, 1.0, 2.5], n) if weights else None
    return GLMMRows.from_groups(g, y, X, Z, trials=m, offset=off, weights=w)


def _params(q, seed, K=2):
    rng = np.random.default_rng(seed + 100)
    beta = np.array([[-0.3, 0.2, 0.1], [0.5, -0.1, -0.2]])[:K]
    chol = np.stack([np.tril(0.4 * rng.normal(size=(q, q))) + 0.6 * np.eye(q) for _ in range(K)])
    return beta, chol


def _logdens(rows, family, beta, chol, n_agq):
    return glmm_moments(rows, family, beta, chol, n_agq=n_agq, gtol=1e-12, gradient=False).logdens


def _numerical_gradients(rows, family, beta, chol, n_agq, h=1e-5, one_sided=()):
    """Per-subject central differences of logdens; entries of L in ``one_sided`` (k, a, b) by the
    second-order forward formula (-3 f(0) + 4 f(h) - f(2h)) / (2h), for a diagonal at 0."""
    K, p = beta.shape
    q = chol.shape[-1]
    N = rows.n_subjects
    gb, gl = np.zeros((N, K, p)), np.zeros((N, K, q, q))
    f0 = _logdens(rows, family, beta, chol, n_agq)
    for k in range(K):
        for j in range(p):
            bp, bm = beta.copy(), beta.copy()
            bp[k, j] += h
            bm[k, j] -= h
            gb[:, k, j] = ((_logdens(rows, family, bp, chol, n_agq)
                            - _logdens(rows, family, bm, chol, n_agq)) / (2 * h))[:, k]
        for a in range(q):
            for b in range(a + 1):
                def at(d):
                    c = chol.copy()
                    c[k, a, b] += d
                    return _logdens(rows, family, beta, c, n_agq)[:, k]
                if (k, a, b) in one_sided:
                    gl[:, k, a, b] = (-3 * f0[:, k] + 4 * at(h) - at(2 * h)) / (2 * h)
                else:
                    gl[:, k, a, b] = (at(h) - at(-h)) / (2 * h)
    return gb, gl


def _rel_err(a, b):
    return np.abs(a - b).max() / max(1.0, np.abs(b).max())


def _subject_loglik(family, y, m, w, eta):
    """Row log-likelihood from scipy.stats (independent of the kernel's formulas)."""
    if family == "binomial":
        return np.sum(w * stats.binom.logpmf(y, m, expit(eta)))
    return np.sum(w * stats.poisson.logpmf(y, np.exp(eta)))


def _brute_force(rows, family, beta, chol, i):
    """log integral of p(y_i | b) N(b; 0, D) db for subject i, centred at the mode found by
    scipy.optimize (nothing from the kernel): scipy quad for q = 1; for q = 2 the trapezoid rule
    on a 401 x 401 grid over the mode +- 10 prior SDs (spectrally accurate for this smooth,
    Gaussian-tailed integrand; dblquad gives the same to 1e-9 but takes 10 s a subject)."""
    s = slice(rows.starts[i], rows.starts[i] + rows.n_obs[i])
    y, m, w = rows.endog[s], rows.trials[s], rows.weights[s]
    eta0 = rows.offset[s] + rows.exog[s] @ beta
    Z = rows.exog_re[s]
    D = chol @ chol.T
    q = D.shape[0]
    prior = stats.multivariate_normal(np.zeros(q), D)
    logint = lambda b: _subject_loglik(family, y, m, w, eta0 + Z @ b) + prior.logpdf(b)
    opt = optimize.minimize(lambda b: -logint(b), np.zeros(q), method="BFGS", options=dict(gtol=1e-10))
    top, centre = -opt.fun, opt.x
    sd = np.sqrt(np.diag(D))
    if q == 1:
        val, _ = integrate.quad(lambda b: np.exp(logint(np.array([b])) - top), centre[0] - 12 * sd[0],
                                centre[0] + 12 * sd[0], epsabs=0, epsrel=1e-12, limit=200,
                                points=[centre[0]])
        return top + np.log(val)
    g1 = centre[0] + sd[0] * np.linspace(-10, 10, 401)
    g2 = centre[1] + sd[1] * np.linspace(-10, 10, 401)
    B = np.stack(np.meshgrid(g1, g2, indexing="ij"), axis=-1).reshape(-1, 2)
    eta = eta0[None, :] + B @ Z.T                              # (grid, n_i)
    if family == "binomial":
        ll = (w * stats.binom.logpmf(y, m, expit(eta))).sum(axis=1)
    else:
        ll = (w * stats.poisson.logpmf(y, np.exp(eta))).sum(axis=1)
    f = np.exp(ll + prior.logpdf(B) - top).reshape(401, 401)
    val = integrate.trapezoid(integrate.trapezoid(f, g2, axis=1), g1)
    return top + np.log(val)


# ----------------------------------------------------------------------------------------------
# rows and quadrature
# ----------------------------------------------------------------------------------------------

def test_rows_from_groups_sorts_stably_and_validates():
    g = np.array(["b", "a", "b", "c", "a", "b"])
    y = np.arange(6.0) % 2
    X = np.arange(12.0).reshape(6, 2)
    r = GLMMRows.from_groups(g, y, X, X[:, :1], offset=np.arange(6.0))
    assert r.groups.tolist() == ["a", "b", "c"]
    assert r.n_obs.tolist() == [2, 3, 1] and r.starts.tolist() == [0, 2, 5]
    assert r.order.tolist() == [1, 4, 0, 2, 5, 3]               # stable within a subject
    np.testing.assert_array_equal(r.offset, [1, 4, 0, 2, 5, 3])
    np.testing.assert_array_equal(r.exog, X[r.order])
    np.testing.assert_array_equal(r.segment_sum(r.offset), [5, 7, 3])
    np.testing.assert_array_equal(r.subject, [0, 0, 1, 1, 1, 2])
    with pytest.raises(ValueError, match="cumulative"):
        GLMMRows(y, np.ones(6), X, X[:, :1], np.zeros(6), np.ones(6), [0, 3, 4], [2, 3, 1])
    with pytest.raises(ValueError, match="at least one row"):
        GLMMRows(y, np.ones(6), X, X[:, :1], np.zeros(6), np.ones(6), [0, 6], [6, 0])
    with pytest.raises(ValueError, match="weights"):
        GLMMRows.from_groups(g, y, X, weights=-np.ones(6))
    with pytest.raises(ValueError, match="endog must be in"):
        glmm_moments(GLMMRows.from_groups(g, y + 1, X), "binomial", [[0, 0]], np.zeros((1, 0, 0)))


def test_product_rule_integrates_polynomials_exactly():
    z, lw, sq = gauss_hermite_normal(4, 3)              # exact to degree 7 in each coordinate
    w = np.exp(lw)
    assert z.shape == (64, 3)
    assert w @ (z[:, 0] ** 6 * z[:, 1] ** 2) == pytest.approx(15.0, rel=1e-12)  # E Z^6 E Z^2
    assert w @ (z[:, 0] * z[:, 2] ** 3) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(sq, (z ** 2).sum(axis=1))


# ----------------------------------------------------------------------------------------------
# gradients against finite differences
# ----------------------------------------------------------------------------------------------

GRADIENT_CASES = [
    # family, q, n_agq, data options
    ("binomial", 1, 1, dict(weights=True)),
    ("binomial", 1, 7, dict(weights=True)),
    ("binomial", 2, 1, dict()),
    ("binomial", 2, 5, dict(weights=True)),
    ("binomial", 2, 4, dict(trials=True, offset=True)),
    ("binomial", 3, 1, dict(trials=True)),
    ("binomial", 3, 3, dict(weights=True)),
    ("poisson", 1, 1, dict(offset=True, weights=True)),
    ("poisson", 1, 9, dict(offset=True)),
    ("poisson", 2, 1, dict(offset=True, weights=True)),
    ("poisson", 2, 4, dict(offset=True, weights=True)),
    ("poisson", 3, 3, dict(offset=True)),
]


@pytest.mark.parametrize("family, q, n_agq, opts", GRADIENT_CASES,
                         ids=[f"{f}-q{q}-agq{n}-{'-'.join(o) or 'plain'}" for f, q, n, o in GRADIENT_CASES])
def test_gradients_match_finite_differences(family, q, n_agq, opts):
    rows = _simulate(family, q, seed=10 * q + n_agq, **opts)
    beta, chol = _params(q, seed=q)                          # K = 2 experts, different parameters
    m = glmm_moments(rows, family, beta, chol, n_agq=n_agq, gtol=1e-12)
    gr = glmm_gradients(rows, m)
    nb, nl = _numerical_gradients(rows, family, beta, chol, n_agq)
    assert gr.beta.shape == (rows.n_subjects, 2, 3) and gr.chol.shape == (rows.n_subjects, 2, q, q)
    assert np.all(gr.chol[:, :, ~np.tri(q, dtype=bool)] == 0)
    # finite differences with h = 1e-5 are good to ~1e-9; the analytic gradient agrees to ~1e-10
    assert _rel_err(gr.beta, nb) < 1e-7
    assert _rel_err(gr.chol, nl) < 1e-7
    assert np.abs(nb).max() > 0.1 and np.abs(nl).max() > 0.1   # not trivially small


@pytest.mark.parametrize("n_agq", [1, 5])
def test_gradients_at_singular_chol(n_agq):
    """A zero column of L (a variance at 0): the value is still smooth, the diagonal entry is
    differentiated one-sided (the optimiser's bound)."""
    rows = _simulate("binomial", 2, seed=3)
    beta, chol = _params(2, seed=5)
    chol[0, :, 1] = 0.0                                      # expert 1: second column zero
    chol[1] = [[0.0, 0.0], [0.4, 0.7]]                       # expert 2: first variance at 0
    m = glmm_moments(rows, "binomial", beta, chol, n_agq=n_agq, gtol=1e-12)
    gr = glmm_gradients(rows, m)
    assert np.all(np.isfinite(gr.beta)) and np.all(np.isfinite(gr.chol))
    nb, nl = _numerical_gradients(rows, "binomial", beta, chol, n_agq, h=1e-5,
                                  one_sided=[(0, 1, 1), (1, 0, 0)])
    assert _rel_err(gr.beta, nb) < 1e-7
    assert _rel_err(gr.chol, nl) < 1e-6
    # q = 1 with the variance at 0: the derivative of an even function of L at 0 vanishes
    rows1 = _simulate("poisson", 1, seed=4, offset=True)
    m1 = glmm_moments(rows1, "poisson", beta[:1], np.zeros((1, 1, 1)), n_agq=n_agq)
    g1 = glmm_gradients(rows1, m1)
    np.testing.assert_allclose(g1.chol, 0.0, atol=1e-12)
    np.testing.assert_allclose(m1.b_cov, 0.0, atol=0)


def test_no_random_effects_is_a_glm():
    rows = _simulate("binomial", 1, seed=6, trials=True, weights=True)
    rows0 = GLMMRows(rows.endog, rows.trials, rows.exog, np.zeros((rows.n_rows, 0)), rows.offset,
                     rows.weights, rows.starts, rows.n_obs)
    beta = np.array([[0.1, -0.2, 0.3], [-0.4, 0.1, 0.0]])
    m = glmm_moments(rows0, "binomial", beta, np.zeros((2, 0, 0)), n_agq=5)
    eta = rows0.offset[:, None] + rows0.exog @ beta.T
    ll = rows0.weights[:, None] * stats.binom.logpmf(rows0.endog[:, None], rows0.trials[:, None], expit(eta))
    np.testing.assert_allclose(m.logdens, rows0.segment_sum(ll), rtol=1e-12)
    gr = glmm_gradients(rows0, m)
    resid = rows0.weights[:, None] * (rows0.endog[:, None] - rows0.trials[:, None] * expit(eta))
    np.testing.assert_allclose(gr.beta, rows0.segment_sum(rows0.exog[:, :, None] * resid[:, None]).swapaxes(1, 2),
                               rtol=1e-12, atol=1e-14)
    assert gr.chol.shape == (rows0.n_subjects, 2, 0, 0)


def test_cov_gradient_helper():
    """G_D from the L-gradient equals finite differences of logdens in D (d logf = tr(G dD))."""
    rows = _simulate("poisson", 2, seed=7, offset=True)
    beta, chol = _params(2, seed=8)
    m = glmm_moments(rows, "poisson", beta, chol, n_agq=3, gtol=1e-12)
    GD = chol_grad_to_cov_grad(glmm_gradients(rows, m).chol, chol)
    np.testing.assert_allclose(GD, np.swapaxes(GD, -1, -2))
    D = chol @ np.swapaxes(chol, 1, 2)
    h = 1e-6
    for a, b in [(0, 0), (1, 0), (1, 1)]:
        E = np.zeros((2, 2, 2))
        E[:, a, b] = E[:, b, a] = h
        f = lambda dD: _logdens(rows, "poisson", beta, np.linalg.cholesky(D + dD), 3)
        num = (f(E) - f(-E)) / (2 * h)                           # symmetric perturbation
        expected = GD[:, :, a, b] * (1 if a == b else 2)         # tr(G dD)
        np.testing.assert_allclose(expected, num, rtol=1e-6, atol=1e-8)
    # a singular L: the pseudo-inverse gives a finite (minimum-norm) answer
    sing = chol.copy()
    sing[:, :, 1] = 0.0
    ms = glmm_moments(rows, "poisson", beta, sing)
    assert np.all(np.isfinite(chol_grad_to_cov_grad(glmm_gradients(rows, ms).chol, sing)))


# ----------------------------------------------------------------------------------------------
# values against brute-force integrals
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family, q", [("binomial", 1), ("poisson", 1), ("binomial", 2), ("poisson", 2)])
def test_adaptive_quadrature_converges_to_the_integral(family, q):
    rows = _simulate(family, q, seed=20 + q, N=8, offset=family == "poisson")
    beta, chol = _params(q, seed=21, K=1)
    chol = 1.6 * chol                                        # larger variances: Laplace is worse
    subjects = [int(np.argmax(rows.n_obs)), int(np.argmin(rows.n_obs)), 3]
    exact = np.array([_brute_force(rows, family, beta[0], chol[0], i) for i in subjects])
    err = {n: np.abs(_logdens(rows, family, beta, chol, n)[subjects, 0] - exact)
           for n in (1, 3, 7, 15, 25)}
    assert err[25].max() < 1e-7                               # the quadrature converges
    assert err[15].max() < 1e-6
    assert err[7].max() < err[1].max() / 10
    if family == "binomial":
        assert err[1].max() > 1e-3                            # Laplace is a real approximation


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_laplace_equals_the_formula_at_an_independent_mode(family):
    """h(u_hat) + (q/2) log 2pi - (1/2) log|H| with the mode from scipy.optimize and H by
    finite differences of an h written with scipy.stats."""
    rows = _simulate(family, 2, seed=30, trials=family == "binomial", offset=True, N=6)
    beta, chol = _params(2, seed=31, K=1)
    L = chol[0]
    m = glmm_moments(rows, family, beta, chol)
    for i in range(rows.n_subjects):
        s = slice(rows.starts[i], rows.starts[i] + rows.n_obs[i])
        eta0 = rows.offset[s] + rows.exog[s] @ beta[0]
        h = lambda u: (_subject_loglik(family, rows.endog[s], rows.trials[s], rows.weights[s],
                                       eta0 + rows.exog_re[s] @ (L @ u))
                       + stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(u))
        u_hat = optimize.minimize(lambda u: -h(u), np.zeros(2), method="BFGS",
                                  options=dict(gtol=1e-11)).x
        np.testing.assert_allclose(m.u_hat[i, 0], u_hat, atol=2e-6)
        e = 1e-4
        Hn = np.empty((2, 2))
        for a in range(2):
            for b in range(2):
                da, db = np.eye(2)[a] * e, np.eye(2)[b] * e
                Hn[a, b] = -(h(u_hat + da + db) - h(u_hat + da - db) - h(u_hat - da + db)
                             + h(u_hat - da - db)) / (4 * e * e)
        laplace = h(u_hat) + np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(Hn)[1]
        assert m.logdens[i, 0] == pytest.approx(laplace, abs=1e-6)


def test_agq_with_one_node_is_laplace_and_rule_depends_on_D_only():
    rows = _simulate("binomial", 2, seed=40)
    beta, chol = _params(2, seed=41)
    m = glmm_moments(rows, "binomial", beta, chol)
    # the adaptive sum with the single node z = 0 adds exactly 0 to the Laplace value
    ctx = _Context(rows, "binomial", beta, chol)
    u, R = _internal(m.u_hat, 1), _internal(m.chol_h_inv, 2)
    logsum, acc = _adaptive_pass(ctx, u, R, _evaluate(ctx, u), 1, gradient=True)
    assert np.all(logsum == 0.0)
    np.testing.assert_allclose(acc["mubar"], _evaluate(ctx, u).mu, rtol=1e-15)
    # flipping the sign of a column of L leaves D, and so the value, unchanged
    flipped = chol * np.array([1.0, -1.0])[None, None, :]
    for n in (1, 6):
        np.testing.assert_allclose(_logdens(rows, "binomial", beta, flipped, n),
                                   _logdens(rows, "binomial", beta, chol, n), rtol=1e-11)


# ----------------------------------------------------------------------------------------------
# modes
# ----------------------------------------------------------------------------------------------

def test_mode_gradient_vanishes_and_warm_starts():
    rows = _simulate("binomial", 2, seed=50, weights=True)
    beta, chol = _params(2, seed=51)
    m = glmm_moments(rows, "binomial", beta, chol, n_agq=3)
    assert m.converged.all() and m.grad_norm.max() <= 1e-8
    assert m.n_iter.max() >= 3                                  # from zero it takes a few steps
    warm = glmm_moments(rows, "binomial", beta, chol, n_agq=3, u_start=m.u_hat)
    assert warm.n_iter.max() == 0 and warm.n_evaluations == 1
    np.testing.assert_allclose(warm.logdens, m.logdens, rtol=1e-13)
    moved = glmm_moments(rows, "binomial", beta + 0.01, chol * 1.01, n_agq=3, u_start=m.u_hat)
    cold = glmm_moments(rows, "binomial", beta + 0.01, chol * 1.01, n_agq=3)
    assert moved.converged.all() and moved.n_iter.max() <= 3     # quadratic convergence to 1e-8
    assert moved.n_iter.sum() < 0.75 * cold.n_iter.sum()           # measured 98 vs 147 steps
    # the value depends on where Newton stops only through -log|H|/2, which is not stationary at
    # the mode: with gtol = 1e-8 the two agree to ~1e-10 (measured 7e-11)
    np.testing.assert_allclose(moved.logdens, cold.logdens, rtol=0, atol=1e-9)
    assert np.allclose(m.b_hat, np.einsum("kab,nkb->nka", chol, m.u_hat))
    assert np.allclose(m.b_cov, np.swapaxes(m.b_cov, -1, -2))
    # the gradient of h at the returned mode by central differences of an h written with
    # scipy.stats (independent of the kernel's own g)
    for i in (0, 5, 11):
        s = slice(rows.starts[i], rows.starts[i] + rows.n_obs[i])
        for k in range(2):
            eta0 = rows.offset[s] + rows.exog[s] @ beta[k]
            h = lambda u: (_subject_loglik("binomial", rows.endog[s], rows.trials[s], rows.weights[s],
                                           eta0 + rows.exog_re[s] @ (chol[k] @ u)) - 0.5 * u @ u)
            e = 1e-5
            grad = [(h(m.u_hat[i, k] + e * d) - h(m.u_hat[i, k] - e * d)) / (2 * e) for d in np.eye(2)]
            assert np.abs(grad).max() < 1e-7


def test_step_halving_never_decreases_h():
    """Poisson counts far above the fixed-effect mean with a large variance: the full Newton
    step from 0 overshoots (exp), the damping must halve it; h(u) after each iteration is
    non-decreasing."""
    rng = np.random.default_rng(60)
    g = np.repeat(np.arange(5), 4)
    y = rng.poisson(np.repeat([1.0, 50.0, 400.0, 0.1, 3000.0], 4))
    rows = GLMMRows.from_groups(g, y, np.ones((20, 1)), np.ones((20, 1)))
    beta, chol = np.array([[-2.0]]), np.array([[[3.0]]])
    hs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GLMMNumericalWarning)
        for it in range(0, 30):
            hs.append(glmm_moments(rows, "poisson", beta, chol, max_iter=it, gradient=False).h_mode)
    hs = np.array(hs)
    assert np.all(np.diff(hs, axis=0) >= -1e-12 * np.abs(hs[1:]))
    final = glmm_moments(rows, "poisson", beta, chol)
    assert final.converged.all() and final.n_halvings.sum() > 0
    np.testing.assert_allclose(hs[-1], final.h_mode)


def test_non_convergence_warns():
    rows = _simulate("poisson", 2, seed=61, offset=True)
    beta, chol = _params(2, seed=62)
    with pytest.warns(GLMMNumericalWarning, match="did not converge"):
        m = glmm_moments(rows, "poisson", beta, 3 * chol, max_iter=1)
    assert not m.converged.all()


# ----------------------------------------------------------------------------------------------
# robustness
# ----------------------------------------------------------------------------------------------

def test_extreme_linear_predictors_and_degenerate_subjects():
    """eta = +-700, all-zero and all-one subjects, one-row subjects: finite values and gradients,
    no warnings (RuntimeWarnings from pymemoe are errors in this test suite)."""
    g = np.array([0, 0, 0, 1, 1, 1, 2, 3, 4, 4])
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0, 1, 0.0])
    off = np.array([700, 700, 700, -700, -700, -700, 0, 0, 3, -3.0])
    X = np.column_stack([np.ones(10), np.arange(10.0) / 10])
    rows = GLMMRows.from_groups(g, y, X, X, offset=off)
    beta, chol = np.array([[0.2, -0.3]]), np.array([[[1.0, 0.0], [0.5, 0.8]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (1, 5):
            m = glmm_moments(rows, "binomial", beta, chol, n_agq=n)
            gr = glmm_gradients(rows, m)
            assert np.all(np.isfinite(m.logdens)) and m.converged.all()
            assert np.all(np.isfinite(gr.beta)) and np.all(np.isfinite(gr.chol))
            # y = 0 at eta = +700: each row contributes about -700
            assert m.logdens[0, 0] < -2000
        yp = np.array([0, 0, 0, 2, 0, 1, 5, 0, 1, 3.0])
        offp = np.array([-700, -700, -700, 0, 0, 0, 2, -1, 0, 0.0])
        rp = GLMMRows.from_groups(g, yp, X, X, offset=offp)
        for n in (1, 4):
            mp = glmm_moments(rp, "poisson", beta, chol, n_agq=n)
            gp = glmm_gradients(rp, mp)
            assert np.all(np.isfinite(mp.logdens)) and np.all(np.isfinite(gp.chol))
            assert mp.logdens[0, 0] == pytest.approx(
                _brute_force(rp, "poisson", beta[0], chol[0], 0) if n > 1 else mp.logdens[0, 0], abs=1e-6)


def test_zero_weight_rows_are_dropped_rows():
    rows = _simulate("poisson", 2, seed=70, offset=True)
    rng = np.random.default_rng(71)
    w = (rng.uniform(size=rows.n_rows) > 0.3).astype(float)
    w[rows.starts] = 1.0                                      # every subject keeps a row
    weighted = GLMMRows(rows.endog, rows.trials, rows.exog, rows.exog_re, rows.offset, w,
                        rows.starts, rows.n_obs)
    keep = w > 0
    dropped = GLMMRows.from_groups(rows.subject[keep], rows.endog[keep], rows.exog[keep],
                                   rows.exog_re[keep], offset=rows.offset[keep])
    beta, chol = _params(2, seed=72)
    for n in (1, 4):
        a = glmm_moments(weighted, "poisson", beta, chol, n_agq=n)
        b = glmm_moments(dropped, "poisson", beta, chol, n_agq=n)
        np.testing.assert_allclose(a.logdens, b.logdens, rtol=1e-12)
        ga, gb = glmm_gradients(weighted, a), glmm_gradients(dropped, b)
        np.testing.assert_allclose(ga.beta, gb.beta, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ga.chol, gb.chol, rtol=1e-10, atol=1e-12)
    # a subject whose rows all have weight 0: the prior alone, log f = 0, mode 0
    w0 = np.ones(rows.n_rows)
    w0[rows.starts[0]:rows.starts[0] + rows.n_obs[0]] = 0.0
    r0 = GLMMRows(rows.endog, rows.trials, rows.exog, rows.exog_re, rows.offset, w0, rows.starts, rows.n_obs)
    m0 = glmm_moments(r0, "poisson", beta, chol, n_agq=3)
    np.testing.assert_allclose(m0.logdens[0], 0.0, atol=1e-13)
    np.testing.assert_allclose(m0.u_hat[0], 0.0, atol=1e-13)
    g0 = glmm_gradients(r0, m0)
    np.testing.assert_allclose(g0.beta[0], 0.0, atol=1e-13)
    np.testing.assert_allclose(g0.chol[0], 0.0, atol=1e-13)


# ----------------------------------------------------------------------------------------------
# predictive means
# ----------------------------------------------------------------------------------------------

def test_marginal_mean_against_quad_and_product_rule():
    rng = np.random.default_rng(80)
    X = np.column_stack([np.ones(5), rng.normal(size=5)])
    Z = np.column_stack([np.ones(5), rng.uniform(0, 3, 5)])
    beta = np.array([[0.3, -0.5], [-1.0, 0.4]])
    chol = np.array([[[1.2, 0.0], [-0.3, 0.5]], [[0.4, 0.0], [0.2, 2.5]]])   # s up to ~7
    mb = glmm_marginal_mean("binomial", beta, chol, X, Z)
    mp = glmm_marginal_mean("poisson", beta, chol, X, Z, offset=np.full(5, 0.2))
    mb2 = glmm_marginal_mean("binomial", beta, chol, X, Z, power=2)
    mp2 = glmm_marginal_mean("poisson", beta, chol, X, Z, offset=np.full(5, 0.2), power=2)
    z, lw, _ = gauss_hermite_normal(40, 2)                    # q-dimensional product rule
    for k in range(2):
        D = chol[k] @ chol[k].T
        for r in range(5):
            eta0, s = X[r] @ beta[k], np.sqrt(Z[r] @ D @ Z[r])
            f = lambda e: expit(eta0 + s * e) * stats.norm.pdf(e)
            exact = integrate.quad(f, -40, 40, epsabs=1e-15, epsrel=1e-13, limit=500, points=[-eta0 / s])[0]
            assert mb[r, k] == pytest.approx(exact, abs=1e-13)
            # the q-dimensional product Gauss-Hermite rule agrees where it is accurate (small s)
            if s < 1.5:
                prod = np.exp(lw) @ expit(eta0 + (z @ chol[k].T) @ Z[r])
                assert mb[r, k] == pytest.approx(prod, abs=1e-10)
            fp = lambda e: np.exp(0.2 + eta0 + s * e) * stats.norm.pdf(e)
            assert mp[r, k] == pytest.approx(integrate.quad(fp, -40, 40, epsabs=0, epsrel=1e-12)[0], rel=1e-10)
            # second moments, for the predictive variances
            f2 = lambda e: expit(eta0 + s * e) ** 2 * stats.norm.pdf(e)
            exact2 = integrate.quad(f2, -40, 40, epsabs=1e-15, epsrel=1e-13, limit=500, points=[-eta0 / s])[0]
            assert mb2[r, k] == pytest.approx(exact2, abs=1e-13)
            fp2 = lambda e: np.exp(2 * (0.2 + eta0 + s * e)) * stats.norm.pdf(e)
            lim = 2 * s + 40                                   # the integrand peaks at e = 2 s
            assert mp2[r, k] == pytest.approx(integrate.quad(fp2, -lim, lim, epsabs=0, epsrel=1e-12,
                                                             limit=500, points=[2 * s])[0], rel=1e-9)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_conditional_mean_against_brute_force(family):
    """E[mu(eta_new) | y_i, k] = int mu p(y|b) p(b) db / int p(y|b) p(b) db by quad (q = 1), and
    the Laplace version equals the expectation under N(b_hat, b_cov)."""
    rows = _simulate(family, 1, seed=90, N=5, offset=family == "poisson")
    beta, chol = _params(1, seed=91, K=2)
    xnew = np.array([[1.0, 3.5, 0.2], [1.0, 0.5, -1.0]])
    znew = xnew[:, :1]
    subject = np.array([0, 2])
    m25 = glmm_moments(rows, family, beta, chol, n_agq=25)
    cm = glmm_conditional_mean(rows, m25, xnew, znew, subject)
    m1 = glmm_moments(rows, family, beta, chol)
    cm1 = glmm_conditional_mean(rows, m1, xnew, znew, subject)
    cm_2 = glmm_conditional_mean(rows, m25, xnew, znew, subject, power=2)
    cm1_2 = glmm_conditional_mean(rows, m1, xnew, znew, subject, power=2)
    mean_fn = expit if family == "binomial" else np.exp
    for k in range(2):                                       # two experts, different parameters
        L = chol[k, 0, 0]
        for r, i in enumerate(subject):
            s = slice(rows.starts[i], rows.starts[i] + rows.n_obs[i])
            eta0 = rows.offset[s] + rows.exog[s] @ beta[k]
            post = lambda b: np.exp(_subject_loglik(family, rows.endog[s], rows.trials[s], rows.weights[s],
                                                    eta0 + rows.exog_re[s, 0] * b) - 0.5 * (b / L) ** 2)
            lim = (-12 * L, 12 * L)
            num = integrate.quad(lambda b: mean_fn(xnew[r] @ beta[k] + b) * post(b), *lim, epsrel=1e-12)[0]
            den = integrate.quad(post, *lim, epsrel=1e-12)[0]
            assert cm[r, k] == pytest.approx(num / den, rel=1e-7)
            num2 = integrate.quad(lambda b: mean_fn(xnew[r] @ beta[k] + b) ** 2 * post(b), *lim,
                                  epsrel=1e-12)[0]
            assert cm_2[r, k] == pytest.approx(num2 / den, rel=1e-7)
            bh, bv = m1.b_hat[i, k, 0], m1.b_cov[i, k, 0, 0]
            for power, value in ((1, cm1), (2, cm1_2)):
                gauss = integrate.quad(
                    lambda b: mean_fn(xnew[r] @ beta[k] + b) ** power * stats.norm.pdf(b, bh, np.sqrt(bv)),
                    bh - 14 * np.sqrt(bv), bh + 14 * np.sqrt(bv), epsrel=1e-12)[0]
                assert value[r, k] == pytest.approx(gauss, rel=1e-9)


# ----------------------------------------------------------------------------------------------
# references from R (lme4 glmer, glmmTMB)
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# blocks, compaction and the predicted start do not change results
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_agq", [1, 4])
def test_blocks_and_compaction_leave_results_unchanged(monkeypatch, n_agq):
    """Tiny blocks (many blocks, subjects longer than a block) with Newton compacting to the
    active subjects at every step, against one block and no compaction."""
    import pymemoe.families._glmm_kernel as gk
    beta, chol = _params(2, seed=110)

    def run():
        rows = _simulate("binomial", 2, seed=111, N=40, weights=True)
        m = glmm_moments(rows, "binomial", beta, chol, n_agq=n_agq)
        return m, glmm_gradients(rows, m)

    monkeypatch.setattr(gk, "BLOCK_ELEMENTS", 1 << 20)
    monkeypatch.setattr(gk, "AGQ_BLOCK_ELEMENTS", 1 << 20)
    monkeypatch.setattr(gk, "NODE_ELEMENTS", 1 << 22)
    monkeypatch.setattr(gk, "COMPACT_FRACTION", -1.0)       # never compact
    m1, g1 = run()
    monkeypatch.setattr(gk, "BLOCK_ELEMENTS", 7)
    monkeypatch.setattr(gk, "AGQ_BLOCK_ELEMENTS", 5)
    monkeypatch.setattr(gk, "NODE_ELEMENTS", 9)
    monkeypatch.setattr(gk, "COMPACT_FRACTION", 2.0)        # always compact
    m2, g2 = run()
    np.testing.assert_allclose(m2.logdens, m1.logdens, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(m2.u_hat, m1.u_hat, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g2.beta, g1.beta, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(g2.chol, g1.chol, rtol=1e-11, atol=1e-13)
    np.testing.assert_array_equal(m2.n_iter, m1.n_iter)
    assert m2.n_evaluations < m1.n_evaluations              # compaction counts partial passes


def test_previous_predicts_the_modes():
    rows = _simulate("poisson", 2, seed=120, offset=True, N=60)
    beta, chol = _params(2, seed=121)
    m0 = glmm_moments(rows, "poisson", beta, chol)
    beta1, chol1 = beta + np.array([[0.02, -0.01, 0.0]]), chol * 1.02
    cold = glmm_moments(rows, "poisson", beta1, chol1)
    warm = glmm_moments(rows, "poisson", beta1, chol1, u_start=m0.u_hat)
    pred = glmm_moments(rows, "poisson", beta1, chol1, previous=m0)
    assert pred.n_iter.sum() < warm.n_iter.sum() < cold.n_iter.sum()
    # the same mode: at a tight tolerance the values agree to rounding (at the default 1e-8,
    # to ~1e-9: the value is not stationary in u through log|H|)
    tight = dict(gtol=1e-12)
    np.testing.assert_allclose(glmm_moments(rows, "poisson", beta1, chol1, previous=m0, **tight).logdens,
                               glmm_moments(rows, "poisson", beta1, chol1, **tight).logdens,
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(pred.logdens, cold.logdens, rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="not both"):
        glmm_moments(rows, "poisson", beta1, chol1, previous=m0, u_start=m0.u_hat)
    with pytest.raises(ValueError, match="gradient=True"):
        glmm_moments(rows, "poisson", beta1, chol1,
                     previous=glmm_moments(rows, "poisson", beta, chol, gradient=False))
