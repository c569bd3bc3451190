"""Standard errors against other software: statsmodels' MixedLM (K = 1), lcmm's hlme (shared
variance mixtures) and flexmix (the numerical Hessian of its full MEMoE fit). Reference files:
reference/results/."""
import json
import warnings

import numpy as np
import pytest
import statsmodels.formula.api as smf

from pymemoe import MEMoE

from helpers import GATE_R, RESULTS


def _ref(name):
    return json.loads((RESULTS / name).read_text())


def test_one_expert_fixed_effect_se_equal_statsmodels(pbc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm_res = smf.mixedlm("logbili ~ year", pbc, groups=pbc["id"], re_formula="~ year").fit(
            reml=False, method=["lbfgs"], tol=1e-12)
    res = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year", n_experts=1).fit()
    np.testing.assert_allclose(res.bse["beta"].to_numpy(), sm_res.bse_fe.to_numpy(), rtol=1e-3)
    # lme4's vcov() of the fixed effects is (X'V^-1X)^-1, conditional on the variance
    # parameters, hence a little smaller than the full inverse information (statsmodels, here)
    lme4 = np.array(list(_ref("lmer_base.json")["fixed"]["se"].values()))
    assert np.all(lme4 <= res.bse["beta"].to_numpy() * (1 + 1e-3))


def _matched(res, classes):
    ours = res.fe_params.loc["Intercept"].to_numpy()
    theirs = np.array([c["beta"]["(Intercept)"] for c in classes])
    return [int(np.argmin(np.abs(theirs - v))) + 1 for v in ours]   # R class of each expert


def test_shared_variance_mixture_se_agree_with_lcmm(pbc):
    ref = _ref("hlme_default_ng2_gridsearch.json")
    res = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year", n_experts=2,
                             cov_re="shared", scale="shared").fit(n_starts=10, random_state=0)
    se = ref["se"]
    cls = _matched(res, ref["classes"])
    for k in (1, 2):
        assert res.bse[("beta", k, "Intercept")] == pytest.approx(se[f"intercept class{cls[k - 1]}"], rel=0.05)
        assert res.bse[("beta", k, "year")] == pytest.approx(se[f"year class{cls[k - 1]}"], rel=0.05)
    # lcmm's gating contrasts class 1 with class 2 (the reference): the same contrast up to sign
    assert res.bse[("gate", 2, "Intercept")] == pytest.approx(se["classmb intercept class1"], rel=0.05)
    ours = res.bse["re_cov"].to_numpy()
    np.testing.assert_allclose(ours, [se["varcov 1"], se["varcov 2"], se["varcov 3"]], rtol=0.05)
    rows = res.to_frame().set_index(["expert", "term"])
    resid_sd_se = rows.loc[(1, "Residual SD"), "std err"]
    assert resid_sd_se == pytest.approx(se["stderr"], rel=0.05)


def test_full_model_se_agree_with_flexmix_numerical_hessian(pbc):
    ref = _ref("flexmix_full_conc_k2.json")["polished"]
    res = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year", n_experts=2,
                             gate_formula=GATE_R).fit(n_starts=10, random_state=0)
    se = ref["numderiv_se"]["se"]
    cls = _matched(res, ref["classes"])
    for k in (1, 2):
        c = cls[k - 1]
        pairs = [(("beta", k, "Intercept"), f"(Intercept) class{c}"),
                 (("beta", k, "year"), f"year class{c}"),
                 (("re_cov", k, "Var(Intercept)"), f"D[(Intercept),(Intercept)] class{c}"),
                 (("re_cov", k, "Cov(Intercept,year)"), f"D[year,(Intercept)] class{c}"),
                 (("re_cov", k, "Var(year)"), f"D[year,year] class{c}"),
                 (("scale", k, "sigma2"), f"sigma2 class{c}")]
        for ours, theirs in pairs:
            assert res.bse[ours] == pytest.approx(se[theirs], rel=0.05), ours
    r_terms = {"Intercept": "(Intercept)", "C(sex, Treatment('m'))[T.f]": "sexf", "age": "age",
               "C(trt)[T.1]": "trt1"}
    for term, r_term in r_terms.items():
        assert res.bse[("gate", 2, term)] == pytest.approx(se[f"gamma {r_term} class2"], rel=0.05)
