"""The results object: definitions of the criteria, labelled outputs, BLUPs against statsmodels,
immutability and the summary."""

import numpy as np
import pandas as pd
import pytest

from pymemoe import MEMoE

from helpers import GATE_R


@pytest.fixture(scope="module")
def full(pbc):
    return MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                              gate_formula=GATE_R, n_experts=2).fit(n_starts=4, random_state=0)


def test_information_criteria_definitions(full):
    tau = full.posterior.to_numpy()
    E = -np.sum(tau * np.log(tau))
    n_subjects = 312
    assert full.n_groups == n_subjects and full.nobs == 1945
    assert full.df_modelwc == 16       # flexmix's df for this model (reference file)
    assert full.bic == pytest.approx(-2 * full.llf + np.log(n_subjects) * 16)
    assert full.icl == pytest.approx(full.bic + 2 * E)
    assert full.entropy == pytest.approx(1 - E / (n_subjects * np.log(2)))
    assert 0 < full.entropy < 1
    for value in (full.llf, full.aic, full.bic, full.icl, full.entropy):
        assert type(value) is float          # plain Python floats, all of them


def test_labelled_outputs(full):
    p = full.params
    assert p.index.names == ["block", "expert", "term"]
    assert set(p.index.get_level_values("block")) == {"gate", "beta", "re_cov", "scale"}
    assert p[("beta", 1, "year")] == full.fe_params.loc["year", 1]
    assert p[("scale", 2, "sigma2")] == full.scale[2]
    assert p[("re_cov", 2, "Cov(Intercept,year)")] == full.cov_re[2].loc["Intercept", "year"]
    assert list(full.posterior.columns) == [1, 2]
    assert full.posterior.index.is_monotonic_increasing and len(full.posterior) == 312
    np.testing.assert_array_equal(full.predicted_class, full.posterior.to_numpy().argmax(1) + 1)
    sizes = full.expert_sizes
    assert sizes["n_assigned"].sum() == 312
    assert sizes["posterior_size"].sum() == pytest.approx(312)


def test_prior_is_the_softmax_of_the_gating(full, pbc):
    first = pbc.groupby("id").first()
    W = np.column_stack([np.ones(len(first)), (first["sex"] == "f"), (first["trt"] == 1), first["age"]])
    eta = W @ full.gate_params.to_numpy()
    prior = np.exp(eta) / np.exp(eta).sum(axis=1, keepdims=True)
    assert list(full.gate_params.index) == ["Intercept", "C(sex, Treatment('m'))[T.f]",
                                            "C(trt)[T.1]", "age"]
    np.testing.assert_allclose(full.prior.to_numpy(), prior, rtol=1e-10)


def test_results_are_read_only(full):
    with pytest.raises(AttributeError):
        full.llf = 0.0
    params = full.params
    params.iloc[0] = 99.0
    assert full.params.iloc[0] != 99.0
    post = full.posterior
    post.iloc[0, 0] = -1.0
    assert full.posterior.iloc[0, 0] >= 0
    trace = full.llf_trace
    trace[0] = 0
    assert full.llf_trace[0] != 0


def test_summary_renders_every_section(full):
    smry = full.summary()
    text = smry.as_text()
    for needle in ["Gating: multinomial logit vs expert 1", "Expert 1: ", "Expert 2: ", "Posterior classification", "std err",
                   "SD(year)", "Corr(Intercept,year)", "Residual SD", "BIC (n = subjects)",
                   f"{full.llf:.4f}"]:
        assert needle in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "\\begin{tabular}" in smry.as_latex()
    assert "<table" in smry.as_html()
    assert str(full) == text


@pytest.fixture(scope="module")
def quad(pbc):
    return MEMoE.from_formula("logbili ~ year + I(year**2)", pbc, "id", re_formula="~ 1",
                              gate_formula="~ C(sex)", n_experts=2).fit(n_starts=2,
                                                                        random_state=0)


def test_tests_take_names_as_in_the_formula_labels_and_flat_names(quad):
    label = ("beta", 1, "I(year ** 2)")
    z = quad.zvalues[label]
    for hypothesis in ("beta[1]:I(year**2)", "beta[1]:I(year ** 2) = 0", label, [label]):
        assert float(quad.t_test(hypothesis).statistic[0]) == pytest.approx(z)
    # a contrast as a Series indexed like params
    contrast = pd.Series({("beta", 1, "year"): 1.0, ("beta", 2, "year"): -1.0})
    by_name = quad.t_test("beta[1]:year = beta[2]:year")
    assert float(quad.t_test(contrast).effect[0]) == pytest.approx(float(by_name.effect[0]))
    # names with brackets of their own (categorical levels) work in joint tests
    wald = quad.wald_test(["gate[2]:C(sex)[T.m]", "gate[2]:Intercept"])
    assert wald.df_denom == 2
    # the names of to_frame() are the names the tests take
    named = quad.to_frame().query("name != ''")
    for name, coef in zip(named["name"], named["coef"]):
        assert float(quad.t_test(name).effect[0]) == pytest.approx(coef)


def test_unknown_parameter_names_list_the_valid_ones(quad):
    with pytest.raises(ValueError, match=r"unknown parameter name 'beta\[1\]:yeer'.*valid names "
                                         r"are .*beta\[1\]:year"):
        quad.wald_test("beta[1]:yeer = 0")
    with pytest.raises(ValueError, match="unknown parameter name 'beta\\[3\\]:year'"):
        quad.t_test("beta[3]:year")
    with pytest.raises(ValueError, match="unknown parameter label"):
        quad.t_test(("beta", 3, "year"))
    with pytest.raises(ValueError, match="not a linear equation"):
        quad.t_test("beta[1]:year = = 0")
    with pytest.raises(ValueError, match="not parameters"):
        quad.t_test(pd.Series({("beta", 9, "year"): 1.0}))
