"""Every model option (the table of :mod:`pymemoe.model` and of the user guide's options page)
fits, counts its parameters right and nests the models it should: shared structures are special
cases of free ones (so the free fit is never worse)."""
import numpy as np
import pytest

from pymemoe import MEMoE

K = 2
P, Q, R = 2, 2, 3   # fixed effects, random effects, gating columns in the tests below

CASES = {
    # option: (model keywords, number of free parameters)
    "full": (dict(), (K - 1) * R + K * P + K * 3 + K),
    "proportional": (dict(cov_re="proportional"), (K - 1) * R + K * P + 3 + (K - 1) + K),
    "shared_cov": (dict(cov_re="shared"), (K - 1) * R + K * P + 3 + K),
    "diagonal": (dict(re_structure="diagonal"), (K - 1) * R + K * P + K * 2 + K),
    "shared_scale": (dict(scale="shared"), (K - 1) * R + K * P + K * 3 + 1),
    "lcmm_hlme": (dict(cov_re="shared", scale="shared"), (K - 1) * R + K * P + 3 + 1),
    "no_random_effects": (dict(re_formula="0"), (K - 1) * R + K * P + K),
    "shared_fixed": (dict(shared_formula="~ x1"), (K - 1) * R + K * P + 1 + K * 3 + K),
}


@pytest.fixture(scope="module")
def fits(sim500):
    out = {}
    for name, (kw, _) in CASES.items():
        kw = {"re_formula": "~ time", "gate_formula": "~ x1 + x2", **kw}
        model = MEMoE.from_formula("y ~ time", sim500, "id", n_experts=K, **kw)
        out[name] = model.fit(n_starts=3, random_state=0)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_option_fits_and_counts_parameters(fits, name):
    res = fits[name]
    assert np.isfinite(res.llf)
    assert res.df_modelwc == CASES[name][1] == len(res.params)
    np.testing.assert_allclose(res.posterior.sum(axis=1), 1.0)
    assert res.aic == pytest.approx(-2 * res.llf + 2 * res.df_modelwc)


def test_nested_structures_never_beat_the_free_model(fits):
    full = fits["full"].llf
    for name in ["proportional", "shared_cov", "diagonal", "shared_scale", "lcmm_hlme",
                 "no_random_effects"]:
        assert fits[name].llf <= full + 1e-6, name
    assert fits["lcmm_hlme"].llf <= fits["shared_cov"].llf + 1e-6
    assert fits["lcmm_hlme"].llf <= fits["shared_scale"].llf + 1e-6
    assert fits["full"].llf <= fits["shared_fixed"].llf + 1e-6   # the shared term is extra


def test_structures_hold_in_the_estimates(fits):
    shared = fits["shared_cov"]
    np.testing.assert_allclose(shared.cov_re[1], shared.cov_re[2])
    prop = fits["proportional"]
    ratio = prop.cov_re[2].to_numpy() / prop.cov_re[1].to_numpy()
    np.testing.assert_allclose(ratio, ratio[0, 0])
    assert prop.params[("re_cov", 2, "SD ratio")] == pytest.approx(np.sqrt(ratio[0, 0]))
    diag = fits["diagonal"]
    assert diag.cov_re[1].loc["Intercept", "time"] == 0.0
    assert fits["shared_scale"].scale[1] == fits["shared_scale"].scale[2]
    sf = fits["shared_fixed"]
    assert sf.fe_params.loc["x1", 1] == sf.fe_params.loc["x1", 2]
    assert ("beta", "all", "x1") in sf.params.index
    none = fits["no_random_effects"]
    assert none.random_effects.shape[1] == 0


def test_one_expert_with_any_structure_is_the_same_lmm(sim500):
    llfs = []
    for kw in [dict(), dict(cov_re="shared", scale="shared"), dict(cov_re="proportional")]:
        res = MEMoE.from_formula("y ~ time", sim500, "id", re_formula="~ time", n_experts=1,
                                 **kw).fit()
        llfs.append(res.llf)
    np.testing.assert_allclose(llfs, llfs[0], rtol=1e-9)


def test_start_params_reproduce_a_fit(sim500):
    model = MEMoE.from_formula("y ~ time", sim500, "id", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=2)
    res = model.fit(n_starts=2, random_state=0)
    again = model.fit(start_params=res.params)
    assert again.llf == pytest.approx(res.llf, abs=1e-6)
    assert again.n_iter <= 3
