"""A family defined only here, in the tests: Bernoulli experts with a probit link (a row law in
the general form of :mod:`pymemoe.families.distributions`). It fits, summarises, predicts,
draws bootstrap data and plots through the package's public API without an edit outside
``pymemoe.families``, which is what the family contract promises.

References, independent of pymemoe's code: statsmodels' GLM with a probit link (one expert, no
random effects), scipy's quadrature of the probit random-intercept likelihood, numerical
derivatives of the kernel's log-densities, and recovery of the truth the data were drawn from.
"""
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import integrate, stats
from scipy.special import log_ndtr, ndtr, ndtri

from pymemoe import MEMoE, simulate
from pymemoe.families import Distribution, GLMMFamily, Link
from pymemoe.families._glmm_kernel import GLMMRows, glmm_gradients, glmm_moments

LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


class Probit(Link):
    name = "probit"

    def link(self, mu):
        return ndtri(mu)

    def inverse(self, eta):
        return ndtr(eta)

    def inverse_deriv_at_mean(self, mu):
        return stats.norm.pdf(ndtri(mu))


def _mills(x):
    """lambda(x) = phi(x) / Phi(x), and its first two derivatives, stably for any x."""
    lam = np.exp(-0.5 * x * x - LOG_SQRT_2PI - log_ndtr(x))
    d1 = -lam * (x + lam)
    d2 = -d1 * (x + lam) - lam * (1.0 + d1)
    return lam, d1, d2


class ProbitBernoulli(Distribution):
    """y in {0, 1}, P(y = 1 | eta) = Phi(eta). With s = 2y - 1, log p = log Phi(s eta), whose
    derivatives in eta are s lambda, lambda', s lambda'' (lambda the inverse Mills ratio)."""

    name = "probit"
    link = Probit()
    canonical = False
    separation_text = "a fitted probability within e^-25 of 0 or 1"
    observed_lines = False

    def check(self, endog, trials):
        if np.any((endog != 0) & (endog != 1)):
            raise ValueError("probit experts take 0/1 outcomes")

    def cumulants(self, eta, value=True, mu_out=None, v_out=None, *, y=None, m=None):
        s = 2.0 * y - 1.0
        x = s * eta
        lam, d1, _ = _mills(x)
        c = -log_ndtr(x) if value else None
        mu, v = -s * lam, -d1
        if mu_out is not None:
            mu_out[...] = mu
            mu = mu_out
        if v_out is not None:
            v_out[...] = v
            v = v_out
        return c, mu, v

    def third(self, mu, v, *, eta=None, y=None, wm=None):
        s = 2.0 * y - 1.0
        _, _, d2 = _mills(s * eta)
        return wm * (-s * d2)

    def invalid_outcome(self, y, trials):
        bad = (y != 0) & (y != 1)
        return (bad, "a probit outcome must be 0 or 1") if bad.any() else None

    def degeneracy(self, eta):
        return 0.5 * eta * eta          # -log Phi(-|eta|) ~ eta^2 / 2: beyond 25, e^-25

    def sample(self, eta, trials, rng):
        return (rng.random(eta.shape) < ndtr(eta)).astype(float)

    def row_law(self, eta, trials):
        return stats.binom(1, ndtr(eta))

    def response_label(self, name, two_columns):
        return f"P({name} = 1)"


PROBIT = ProbitBernoulli()


def _draw(n_subjects=400, visits=6, seed=11, two_experts=True):
    """Probit random-intercept data: experts with intercepts -1 and 1 and slopes 0.5 and -0.3,
    random-intercept SDs 0.6 and 0.9; the gating on x (slope 1.2)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n_subjects)
    expert = ((rng.random(n_subjects) < 1 / (1 + np.exp(-1.2 * x))) if two_experts
              else np.zeros(n_subjects, dtype=bool)).astype(int)
    beta = np.array([[-1.0, 0.5], [1.0, -0.3]])
    sd = np.array([0.6, 0.9])
    b = rng.standard_normal(n_subjects) * sd[expert]
    subject = np.repeat(np.arange(n_subjects), visits)
    t = np.tile(np.linspace(0.0, 2.0, visits), n_subjects)
    eta = beta[expert[subject], 0] + beta[expert[subject], 1] * t + b[subject]
    y = (rng.random(eta.size) < ndtr(eta)).astype(float)
    return pd.DataFrame({"id": subject, "t": t, "x": x[subject], "y": y})


def test_one_expert_without_random_effects_equals_statsmodels_probit_glm():
    df = _draw(two_experts=False)
    res = MEMoE.from_formula("y ~ t", df, "id", re_formula="0", n_experts=1,
                             family=GLMMFamily(PROBIT)).fit()
    # Newton: standard errors from the observed information, as pymemoe's (IRLS would give
    # the expected information, which differs for a non-canonical link)
    glm = sm.GLM(df["y"], sm.add_constant(df["t"]),
                 family=sm.families.Binomial(link=sm.families.links.Probit())).fit(
        method="newton", tol=1e-12)
    assert res.llf == pytest.approx(glm.llf, abs=1e-6)
    np.testing.assert_allclose(res.fe_params[1].to_numpy(), glm.params.to_numpy(), atol=1e-6)
    np.testing.assert_allclose(res.bse.loc["beta"].to_numpy(), glm.bse.to_numpy(), rtol=1e-4)


def test_random_intercept_likelihood_equals_scipy_quadrature():
    """The adaptive quadrature value of the fitted model at its estimates, subject by subject
    against scipy's quad of prod_r Phi(s_r (x_r' beta + sigma z)) phi(z) dz."""
    df = _draw(n_subjects=60, two_experts=False)
    res = MEMoE.from_formula("y ~ t", df, "id", n_experts=1,
                             family=GLMMFamily(PROBIT, n_agq=25)).fit(cov_type="none")
    beta = res.fe_params[1].to_numpy()
    sigma = np.sqrt(res.cov_re[1].to_numpy()[0, 0])
    total = 0.0
    for _, rows in df.groupby("id"):
        eta0 = beta[0] + beta[1] * rows["t"].to_numpy()
        s = 2.0 * rows["y"].to_numpy() - 1.0
        f = lambda z: np.exp(log_ndtr(s * (eta0 + sigma * z)).sum()) * stats.norm.pdf(z)
        total += np.log(integrate.quad(f, -12, 12, epsabs=1e-14, epsrel=1e-12)[0])
    assert res.llf == pytest.approx(total, abs=1e-6)


@pytest.mark.parametrize("n_agq", [1, 5])
def test_kernel_gradients_of_the_general_form_equal_numerical_derivatives(n_agq):
    """d logdens / d beta and d logdens / d L by the kernel's formulas (the third derivative
    of the row law included) against central differences of its log-densities."""
    df = _draw(n_subjects=25, seed=3, two_experts=False)
    X = np.column_stack([np.ones(len(df)), df["t"]])
    rows = GLMMRows.from_groups(df["id"].to_numpy(), df["y"].to_numpy(), X, X)
    beta = np.array([[-0.4, 0.3], [0.5, -0.2]])
    chol = np.array([[[0.7, 0.0], [0.2, 0.4]], [[0.5, 0.0], [-0.1, 0.3]]])
    m = glmm_moments(rows, PROBIT, beta, chol, n_agq=n_agq, gtol=1e-12)
    grads = glmm_gradients(rows, m)
    h = 1e-6
    for k, j in [(0, 0), (1, 1)]:
        up, down = beta.copy(), beta.copy()
        up[k, j] += h
        down[k, j] -= h
        numeric = (glmm_moments(rows, PROBIT, up, chol, n_agq=n_agq, gtol=1e-12).logdens[:, k]
                   - glmm_moments(rows, PROBIT, down, chol, n_agq=n_agq, gtol=1e-12).logdens[:, k])
        np.testing.assert_allclose(grads.beta[:, k, j], numeric / (2 * h), rtol=1e-5, atol=1e-7)
    for k, (a, b) in [(0, (1, 0)), (1, (1, 1))]:
        up, down = chol.copy(), chol.copy()
        up[k, a, b] += h
        down[k, a, b] -= h
        numeric = (glmm_moments(rows, PROBIT, beta, up, n_agq=n_agq, gtol=1e-12).logdens[:, k]
                   - glmm_moments(rows, PROBIT, beta, down, n_agq=n_agq, gtol=1e-12).logdens[:, k])
        np.testing.assert_allclose(grads.chol[:, k, a, b], numeric / (2 * h), rtol=1e-5,
                                   atol=1e-7)


@pytest.fixture(scope="module")
def mixture():
    df = _draw()
    model = MEMoE.from_formula("y ~ t", df, "id", gate_formula="~ x", n_experts=2,
                               family=GLMMFamily(PROBIT, n_agq=7))
    return df, model.fit(random_state=0)


def test_a_probit_mixture_recovers_its_truth(mixture):
    _, res = mixture
    assert res.converged
    order = np.argsort(res.fe_params.loc["Intercept"].to_numpy())
    beta = res.fe_params.to_numpy().T[order]
    np.testing.assert_allclose(beta, [[-1.0, 0.5], [1.0, -0.3]], atol=0.35)
    slope = res.gate_params.loc["x"].to_numpy()
    assert abs(abs(slope[1] - slope[0]) - 1.2) < 0.7
    assert np.isfinite(res.bse).all()


def test_the_summary_names_the_family_and_its_link(mixture):
    _, res = mixture
    text = res.summary().as_text()
    assert "probit, probit link, AGQ 7" in text
    assert "Residual SD" not in text                 # no residual variance in this family


def test_predictions_use_the_familys_link(mixture):
    df, res = mixture
    new = df[df["id"] < 5]
    marginal = res.predict(new)
    assert marginal.between(0, 1).all()
    frame = res.get_prediction(new.assign(y=np.nan), kind="marginal").summary_frame()
    # the interval of a probability is the probit-scale Wald interval mapped back: in (0, 1)
    assert (frame["mean_ci_lower"] > 0).all() and (frame["mean_ci_upper"] < 1).all()
    assert (frame["mean_ci_lower"] < frame["mean"]).all()
    half = stats.norm.ppf(0.975) * frame["mean_se"] / stats.norm.pdf(ndtri(frame["mean"]))
    np.testing.assert_allclose(frame["mean_ci_upper"], ndtr(ndtri(frame["mean"]) + half))
    conditional = res.predict(new, kind="conditional")
    assert conditional.between(0, 1).all()
    with pytest.raises(ValueError, match="intervals of a density"):
        res.prediction_set(new)                      # a 0/1 law has no prediction sets


def test_a_parametric_bootstrap_draws_from_the_family(mixture):
    _, res = mixture
    sim = simulate(res, random_state=1)
    assert set(np.unique(sim.data["y"])) <= {0.0, 1.0}
    refit = MEMoE.from_formula(data=sim.data, **sim.formula_kwargs, **sim.model_kwargs)
    assert refit.family.distribution is PROBIT
    assert refit.fit(random_state=0, n_starts=2, cov_type="none").llf < 0


def test_figures_take_the_familys_labels(mixture):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from pymemoe.plotting import plot_fit, plot_trajectories
    _, res = mixture
    ax = plot_trajectories(res, "t")
    assert ax.get_ylabel() == "P(y = 1)"
    ax2 = plot_fit(res, "t")
    assert "E[y | expert k]" in ax2.get_title()
    plt.close("all")
