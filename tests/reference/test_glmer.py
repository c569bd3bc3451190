"""Binomial and Poisson experts against R: K = 1 against lme4's glmer (Laplace and nAGQ = 25) on
simulated data and MASS's bacteria and epil, by the model and by the kernel; glmmTMB's Laplace
optimum; the mixture log-likelihood at the simulated truths against the reference values of
the R script; K = 2 without random effects against flexmix.

References: reference/results/glmm_refs_used.json and reference/results/glmm/ (copied from
shared/reference/glmm, made by reference/results/scripts/05_glmm.R with R 4.2.2, lme4 1.1-31,
glmmTMB 1.1.5, flexmix 2.3-18).
"""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from pymemoe import MEMoE
from pymemoe._model.params import Params
from pymemoe.families._glmm_kernel import GLMMRows, glmm_gradients, glmm_moments

from helpers import RESULTS, bacteria_model, glmm_csv, glmm_sim

GLMM = RESULTS / "glmm"


REFS = json.loads((RESULTS / "glmm_refs_used.json").read_text())


def _saturated(name: str) -> float:
    """sum_r log Poisson(y_r; mean y_r): the constant lme4 subtracts from a Poisson
    log-likelihood with nAGQ > 1 (reference README: -7867.846 and -382.952), computed exactly
    here so that the comparison is not limited by those three decimals."""
    y = pd.read_csv(RESULTS / "glmm" / f"{name}.csv")["y"].to_numpy()
    return float(stats.poisson.logpmf(y, y).sum())


SATURATED = {"pois_k1_int_agq25": _saturated("sim_poisson_k2"), "epil_agq25": _saturated("epil")}


def _ones(df):
    return pd.Series(1.0, index=df.index, name="Intercept")


def _epil(**kw) -> MEMoE:
    df = glmm_csv("epil")
    prog = (df["trt"] == "progabide") * 1.0
    X = pd.DataFrame({"(Intercept)": 1.0, "lbase": df["lbase"], "trtprogabide": prog,
                      "lage": df["lage"], "V4": df["V4"] * 1.0, "lbase:trtprogabide": df["lbase"] * prog})
    return MEMoE(df["y"], X, df["subject"], exog_re=X.iloc[:, :1], n_experts=1, family="poisson", **kw)


CASES = {
    "bin_k1_slope_laplace": lambda: glmm_sim("binary", 2, 1),
    "bin_k1_int_laplace": lambda: glmm_sim("binary", 1, 1),
    "bin_k1_int_agq25": lambda: glmm_sim("binary", 1, 1, nAGQ=25),
    "pois_k1_int_laplace": lambda: glmm_sim("poisson", 1, 1),
    "pois_k1_int_agq25": lambda: glmm_sim("poisson", 1, 1, nAGQ=25),
    "bacteria_laplace": lambda: bacteria_model(),
    "bacteria_agq25": lambda: bacteria_model(nAGQ=25),
    "epil_laplace": lambda: _epil(),
    "epil_agq25": lambda: _epil(nAGQ=25),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_expert_matches_glmer(case):
    """llf at least glmer's (to 1e-6: measured 1e-9 to 4e-4 higher) and within 1e-3 of it;
    fixed effects and the random intercept variance within 1e-3 (glmer's Laplace stops its
    inner mode search early, so our optimum is up to 4e-4 higher there, as glmmTMB's is)."""
    ref = REFS[case]
    res = CASES[case]().fit(cov_type="none")
    llf_ref = ref["llf"] + SATURATED.get(case, 0.0)
    assert res.converged
    assert res.llf >= llf_ref - 1e-6
    assert res.llf - llf_ref < 1e-3
    np.testing.assert_allclose(res.fe_params[1].to_numpy(), list(ref["fixef"].values()), atol=1e-3)
    D_ref = np.array(next(iter(ref["re_cov"].values())))
    np.testing.assert_allclose(res.cov_re[1].to_numpy(), D_ref, atol=1e-3)


def test_glmmtmb_laplace_optimum_is_reached():
    res = CASES["bin_k1_slope_laplace"]().fit(cov_type="none")
    ref = REFS["bin_k1_slope_glmmTMB"]
    assert res.llf == pytest.approx(ref["llf"], abs=1e-5)
    np.testing.assert_allclose(res.fe_params[1].to_numpy(), list(ref["fixef"].values()), atol=1e-4)


@pytest.mark.parametrize("name, q", [("binary", 2), ("poisson", 1)])
def test_mixture_llf_at_the_truth_equals_the_reference(name, q):
    truth = json.loads((RESULTS / "glmm" / f"sim_{name}_k2_truth.json").read_text())
    params = Params(gamma=truth["gamma"], beta=truth["beta"], cov_re=truth["D"], scale=[1.0, 1.0])
    assert glmm_sim(name, q, 2).loglike(params) == pytest.approx(truth["llf_truth_laplace"], abs=1e-6)
    assert glmm_sim(name, q, 2, nAGQ=20).loglike(params) == pytest.approx(truth["llf_truth_agq20"], abs=1e-6)


@pytest.mark.parametrize("name, key", [("binary", "bin_k2_nore_flexmix"), ("poisson", "pois_k2_nore_flexmix")])
def test_mixture_of_glms_reaches_flexmix(name, key):
    """K = 2 without random effects (re_formula "0"), gating on x1 + x2: flexmix's FLXMRglm with
    FLXPmultinom, best of 10 starts.

    The Poisson reference is compared without the exposure: flexmix dropped the
    ``offset(logexp)`` of its formula (``y ~ time + offset(logexp) | subject``, script
    05_glmm.R). Its coefficients are those of the fit without an offset (to 2e-3; with the
    exposure the intercepts are 0.19 lower, the mean log exposure), and its llf -16535.917 is
    that model's; with the exposure pymemoe reaches -14856.802 (checked independently below)."""
    df = glmm_csv(f"sim_{name}_k2")
    X = pd.DataFrame({"Intercept": 1.0, "time": df["time"]})
    gate = pd.DataFrame({"Intercept": 1.0, "x1": df["x1"], "x2": df["x2"]})
    model = MEMoE(df["y"], X, df["subject"], exog_re=np.empty((len(df), 0)), exog_gate=gate,
                  n_experts=2, family="binomial" if name == "binary" else "poisson")
    res = model.fit(random_state=0, cov_type="none")
    assert res.converged
    assert res.llf >= REFS[key]["llf"] - 1e-6
    flexmix = np.array(REFS[key]["coef"]).reshape(2, 2)
    fitted = res.fe_params.to_numpy().T
    np.testing.assert_allclose(fitted[np.argsort(fitted[:, 0])], flexmix[np.argsort(flexmix[:, 0])],
                               atol=5e-3)
    if name == "poisson":       # with the exposure: the llf by scipy at pymemoe's estimates
        model = MEMoE(df["y"], X, df["subject"], exog_re=np.empty((len(df), 0)), exog_gate=gate,
                      n_experts=2, family="poisson", exposure=df["exposure"])
        res = model.fit(random_state=0, cov_type="none")
        state = res.state
        eta = np.log(df["exposure"].to_numpy())[:, None] + X.to_numpy() @ state.beta.T
        rows = stats.poisson.logpmf(df["y"].to_numpy()[:, None], np.exp(eta))
        subject = pd.DataFrame(rows).groupby(df["subject"].to_numpy()).sum().to_numpy()
        w = gate.groupby(df["subject"].to_numpy()).first().to_numpy()
        log_prior = w @ state.gamma.T
        log_prior -= np.logaddexp.reduce(log_prior, axis=1, keepdims=True)
        assert res.llf == pytest.approx(np.logaddexp.reduce(subject + log_prior, axis=1).sum(),
                                        abs=1e-6)
        assert res.llf > REFS[key]["llf"] + 1000


LAPLACE = ["bin_k1_slope_laplace", "bin_k1_int_laplace", "pois_k1_int_laplace", "bacteria_laplace",
           "epil_laplace"]


AGQ25 = ["bin_k1_int_agq25", "pois_k1_int_agq25", "bacteria_agq25", "epil_agq25"]


def _reference_design(name):
    """Rows and family of a reference case, coded as the R calls in its "call" field (factor
    references: trt = placebo in bacteria and epil)."""
    if name.startswith(("bin_k1", "pois_k1")):
        d = pd.read_csv(GLMM / ("sim_binary_k2.csv" if name.startswith("bin") else "sim_poisson_k2.csv"))
        X = np.column_stack([np.ones(len(d)), d["time"]])
        Z = X if "slope" in name else X[:, :1]
        off = np.log(d["exposure"].to_numpy()) if name.startswith("pois") else None
        return GLMMRows.from_groups(d["subject"].to_numpy(), d["y"].to_numpy(), X, Z, offset=off), \
            ("poisson" if name.startswith("pois") else "binomial")
    if name.startswith("bacteria"):
        d = pd.read_csv(GLMM / "bacteria.csv")
        X = np.column_stack([np.ones(len(d)), d["trt"] == "drug", d["trt"] == "drug+", d["wk2"]]).astype(float)
        return GLMMRows.from_groups(d["ID"].to_numpy(), d["yn"].to_numpy(), X, X[:, :1]), "binomial"
    d = pd.read_csv(GLMM / "epil.csv")
    prog = (d["trt"] == "progabide").to_numpy(float)
    X = np.column_stack([np.ones(len(d)), d["lbase"], prog, d["lage"], d["V4"], d["lbase"] * prog])
    return GLMMRows.from_groups(d["subject"].to_numpy(), d["y"].to_numpy(), X, X[:, :1]), "poisson"


def _lme4_llf(rows, family, total, n_agq):
    """Our total on lme4's scale: for Poisson with nAGQ > 1 lme4 reports the log-likelihood minus
    the saturated model's, sum (y log y - y - log y!) (README of the references)."""
    if family == "poisson" and n_agq > 1:
        return total - stats.poisson.logpmf(rows.endog, rows.endog).sum()
    return total


def _reference_params(ref):
    beta = np.array([list(ref["fixef"].values())])
    D = np.array(next(iter(ref["re_cov"].values())))
    return beta, np.linalg.cholesky(D)[None]


def test_saturated_constants_of_the_references():
    """The constants lme4 subtracts (values stated in the references' README)."""
    for name, value in [("pois_k1_int_agq25", -7867.846), ("epil_agq25", -382.952)]:
        rows, _ = _reference_design(name)
        assert stats.poisson.logpmf(rows.endog, rows.endog).sum() == pytest.approx(value, abs=1e-3)


@pytest.mark.parametrize("name", LAPLACE + AGQ25)
def test_loglik_at_glmer_estimates(name):
    """Our K = 1 log-likelihood at glmer's estimates equals glmer's logLik within 1e-3 (measured:
    nAGQ = 25 agrees to ~1e-11; Laplace to 0.4e-3 at most, ours the higher, as the glmmTMB value
    of the slope model confirms: glmer's PIRLS stops on a looser tolerance)."""
    ref = REFS[name]
    rows, family = _reference_design(name)
    beta, chol = _reference_params(ref)
    m = glmm_moments(rows, family, beta, chol, n_agq=ref["nAGQ"])
    assert m.converged.all()
    ours = _lme4_llf(rows, family, m.logdens.sum(), ref["nAGQ"])
    assert ours == pytest.approx(ref["llf"], abs=1e-3)
    if ref["nAGQ"] > 1:
        assert ours == pytest.approx(ref["llf"], abs=1e-8)


def _fit(rows, family, n_agq):
    """L-BFGS-B over (beta, lower entries of L) with the summed analytic gradient, from beta = 0,
    L = I, warm-starting the modes from the previous evaluation."""
    p, q = rows.k_fe, rows.k_re
    il = np.tril_indices(q)
    state = {}

    def unpack(x):
        L = np.zeros((1, q, q))
        L[0][il] = x[p:]
        return x[:p][None], L

    def objective(x):
        beta, L = unpack(x)
        m = glmm_moments(rows, family, beta, L, n_agq=n_agq, u_start=state.get("u"))
        state["u"] = m.u_hat
        g = glmm_gradients(rows, m)
        return -m.logdens.sum(), -np.concatenate([g.beta.sum(axis=0)[0], g.chol.sum(axis=0)[0][il]])

    x0 = np.concatenate([np.zeros(p), np.eye(q)[il]])
    bounds = [(None, None)] * p + [(0, None) if a == b else (None, None) for a, b in zip(*il)]
    res = optimize.minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                            options=dict(maxiter=500, ftol=1e-14, gtol=1e-7))
    return -res.fun, *unpack(res.x), res


@pytest.mark.parametrize("name", LAPLACE + AGQ25)
def test_fit_reaches_glmer(name):
    """A small optimiser on our value and gradient reaches glmer's logLik (or more) with glmer's
    estimates within 1e-3 (measured: llf higher by <= 4e-4, estimates within 4.3e-4)."""
    ref = REFS[name]
    rows, family = _reference_design(name)
    llf, beta, chol, res = _fit(rows, family, ref["nAGQ"])
    llf = _lme4_llf(rows, family, llf, ref["nAGQ"])
    assert llf >= ref["llf"] - 1e-3
    beta_r, chol_r = _reference_params(ref)
    np.testing.assert_allclose(beta, beta_r, atol=1e-3)
    D, D_r = chol[0] @ chol[0].T, chol_r[0] @ chol_r[0].T
    np.testing.assert_allclose(D, D_r, atol=1e-3)
    assert np.abs(res.jac).max() < 1e-3                     # a stationary point, not a stall
    if name == "bin_k1_slope_laplace":
        # glmmTMB maximises the same Laplace approximation with an exact inner Newton (as here):
        # measured agreement 8e-11 in llf and 3e-8 in beta; glmer's value is 3.7e-4 lower
        # (its PIRLS stops on a looser tolerance)
        tmb = REFS["bin_k1_slope_glmmTMB"]
        assert llf == pytest.approx(tmb["llf"], abs=1e-6)
        np.testing.assert_allclose(beta[0], list(tmb["fixef"].values()), atol=1e-5)
