"""Reductions to models fitted by other, independent code: statsmodels MixedLM (K = 1),
OLS (K = 1 without random effects) and MNLogit (the gating step with hard labels)."""
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

from pymemoe import MEMoE
from pymemoe._model.gating import newton_update


def _mixedlm(formula, data, groups, re_formula):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm(formula, data, groups=data[groups], re_formula=re_formula).fit(
            reml=False, method=["lbfgs"], tol=1e-12, maxiter=2000)


@pytest.mark.parametrize("dataset", ["pbc", "sim500"])
def test_one_expert_equals_statsmodels_mixedlm(dataset, request):
    df = request.getfixturevalue(dataset)
    formula, t = ("logbili ~ year", "year") if dataset == "pbc" else ("y ~ time", "time")
    sm_res = _mixedlm(formula, df, "id", f"~ {t}")
    res = MEMoE.from_formula(formula, df, "id", re_formula=f"~ {t}", n_experts=1).fit()
    assert res.converged
    assert res.llf == pytest.approx(sm_res.llf, abs=1e-4)
    np.testing.assert_allclose(res.fe_params[1].to_numpy(), sm_res.fe_params.to_numpy(), atol=1e-4)
    np.testing.assert_allclose(res.cov_re[1].to_numpy(), sm_res.cov_re.to_numpy(), rtol=1e-3)
    assert res.scale[1] == pytest.approx(sm_res.scale, rel=1e-3)


def test_one_expert_random_intercept_with_covariates_equals_mixedlm(pbc):
    formula = "logbili ~ year + age + C(sex)"
    sm_res = _mixedlm(formula, pbc, "id", "~ 1")
    res = MEMoE.from_formula(formula, pbc, "id", n_experts=1).fit()
    assert res.llf == pytest.approx(sm_res.llf, abs=1e-4)
    np.testing.assert_allclose(res.fe_params[1].to_numpy(), sm_res.fe_params.to_numpy(), atol=1e-4)


def test_one_expert_without_random_effects_is_ols(pbc):
    ols = smf.ols("logbili ~ year + age", pbc).fit()
    res = MEMoE.from_formula("logbili ~ year + age", pbc, "id", re_formula="0", n_experts=1).fit()
    assert res.llf == pytest.approx(ols.llf, rel=1e-10)
    np.testing.assert_allclose(res.fe_params[1].to_numpy(), ols.params.to_numpy(), rtol=1e-8)
    assert res.scale[1] == pytest.approx(ols.ssr / ols.nobs, rel=1e-8)   # ML variance


def test_gating_newton_with_hard_labels_equals_mnlogit():
    rng = np.random.default_rng(5)
    n, K = 400, 3
    W = np.column_stack([np.ones(n), rng.normal(size=n), rng.binomial(1, 0.4, size=n)])
    gamma_true = np.array([[0, 0, 0], [0.5, 1.0, -1.0], [-0.5, -0.7, 1.0]])
    eta = W @ gamma_true.T
    prob = np.exp(eta) / np.exp(eta).sum(axis=1, keepdims=True)
    labels = (rng.random(n)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1)
    tau = np.eye(K)[labels]
    gamma = np.zeros((K, 3))
    for _ in range(10):
        gamma = newton_update(W, gamma, tau)
    mn = sm.MNLogit(labels, W).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
    np.testing.assert_allclose(gamma[1:], mn.params.T, atol=1e-6)


def test_one_expert_random_effects_equal_statsmodels_blups(pbc):
    res = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year", n_experts=1).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm_res = smf.mixedlm("logbili ~ year", pbc, groups=pbc["id"], re_formula="~ year").fit(
            reml=False, method=["lbfgs"], tol=1e-12)
    theirs = pd.DataFrame(sm_res.random_effects).T.sort_index()
    ours = res.random_effects["mixture"]
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), atol=2e-4)
    np.testing.assert_allclose(res.random_effects[1].to_numpy(), ours.to_numpy())
