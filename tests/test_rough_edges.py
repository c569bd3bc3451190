"""The rough edges of issue 13, one test each: parameter names in tests, one observation per
subject with random effects, gating covariates varying within a new subject, splines outside
their knots, nullable pandas dtypes, the parametric bootstrap of any fitted model,
compare_experts' fit options, and row-level outputs of a model built from chunks."""
import warnings

import numpy as np
import pandas as pd
import pytest

from pymemoe import MEMoE, compare_experts, simulate
from pymemoe.chunked import from_chunks
from pymemoe.prediction import predictive_mixture


@pytest.fixture(scope="module")
def quad(pbc):
    return MEMoE.from_formula("logbili ~ year + I(year**2)", pbc, "id", re_formula="~ 1",
                              gate_formula="~ C(sex)", n_experts=2).fit(n_starts=2,
                                                                        random_state=0)


# -- one naming system -------------------------------------------------------------------------

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


# -- input -------------------------------------------------------------------------------------

def test_one_observation_per_subject_with_random_effects_advises_re_formula_0(pbc):
    last = pbc.groupby("id").tail(1)
    with pytest.raises(ValueError, match=r"single observation.*re_formula=\"0\""):
        MEMoE.from_formula("logbili ~ year", last, "id", re_formula="~ 1", n_experts=1)
    with pytest.raises(ValueError, match="single observation.*exog_re"):
        MEMoE(last["logbili"], np.column_stack([np.ones(len(last)), last["year"]]), last["id"],
              n_experts=1)
    res = MEMoE.from_formula("logbili ~ year", last, "id", re_formula="0", n_experts=1).fit()
    assert np.isfinite(res.bse).all()


def test_gating_varying_within_a_new_subject_is_rejected_by_every_kind(pbc):
    res = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                             gate_formula="~ age", n_experts=2).fit(n_starts=1, random_state=0)
    new = pbc[pbc["id"].isin([1, 2])].copy()
    new.loc[new.index[1], "age"] += 1.0               # subject 1's age changes between visits
    message = r"gate_formula '~ age': column 'age' varies within subject 1"
    calls = [lambda: res.predict(new), lambda: res.predict(new, kind="expert"),
             lambda: res.predict(new, kind="conditional"),
             lambda: res.get_prediction(new), lambda: res.get_prediction(new, kind="expert"),
             lambda: res.prediction_set(new, kind="marginal"), lambda: res.prediction_set(new),
             lambda: res.predict_class(new), lambda: res.prior_class(new)]
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call()


def test_spline_outside_its_knots_explains_the_bounds(pbc):
    res = MEMoE.from_formula("logbili ~ bs(year, df=3)", pbc, "id", n_experts=1).fit()
    new = pd.DataFrame({"year": [5.0, 20.0]})
    with pytest.raises(ValueError, match=r"(?s)bs\(year, df=3\).*from 0 to 14.*20.*"
                                         r"lower_bound=.*upper_bound=20"):
        res.predict(new)
    wide = MEMoE.from_formula("logbili ~ bs(year, df=3, lower_bound=0, upper_bound=25)", pbc,
                              "id", n_experts=1).fit()
    assert np.isfinite(wide.predict(new)).all()


def test_nullable_pandas_dtypes_give_the_same_fit(pbc):
    kwargs = dict(re_formula="~ year", gate_formula="~ C(sex) + C(trt) + age", n_experts=2)
    plain = MEMoE.from_formula("logbili ~ year + C(stage)", pbc, "id", **kwargs).fit(
        n_starts=1, random_state=0)
    nullable = pbc.astype({"trt": "Int64", "sex": "string", "stage": "Int64", "age": "Float64",
                           "id": "Int64", "logbili": "Float64"})
    before = nullable.copy()
    res = MEMoE.from_formula("logbili ~ year + C(stage)", nullable, "id", **kwargs).fit(
        n_starts=1, random_state=0)
    pd.testing.assert_frame_equal(nullable, before)                  # the data are untouched
    assert res.llf == pytest.approx(plain.llf, abs=1e-8)
    pd.testing.assert_index_equal(res.params.index, plain.params.index)
    np.testing.assert_allclose(res.params, plain.params, rtol=1e-7, atol=1e-9)
    # missing values in nullable columns are dropped and counted, new data may be nullable too
    holes = nullable.copy()
    holes.loc[holes.index[:3], "trt"] = pd.NA
    assert MEMoE.from_formula("logbili ~ year", holes, "id", **kwargs).n_dropped == 3
    np.testing.assert_allclose(res.predict(nullable.head(5)), plain.predict(pbc.head(5)),
                               rtol=1e-7)
    boolean = pbc.assign(treated=(pbc["trt"] == 1).astype("boolean"))
    assert MEMoE.from_formula("logbili ~ year", boolean, "id", gate_formula="~ treated",
                              n_experts=2).structure.exog_gate_names[1] == "treated[T.True]"


# -- the parametric bootstrap -------------------------------------------------------------------

@pytest.mark.parametrize("options", [
    dict(formula="np.log(bili) ~ year + I(year**2)", re_formula="~ year",
         gate_formula="~ C(sex) + age", cov_re="shared", scale="shared"),
    dict(formula="logbili ~ year", re_formula="~ 1", shared_formula="~ albumin",
         gate_formula="~ C(trt)", cov_re="proportional"),
])
def test_simulate_bootstraps_any_fitted_model(pbc, options):
    options = dict(options)
    formula = options.pop("formula")
    data = pbc.dropna(subset=["albumin"])
    res = MEMoE.from_formula(formula, data, "id", n_experts=2, **options).fit(n_starts=1,
                                                                             random_state=0)
    boot = simulate(res, random_state=3)
    assert len(boot.data) == res.nobs
    assert boot.model_kwargs["cov_re"] == options["cov_re"]
    refit = MEMoE.from_formula(data=boot.data, **boot.formula_kwargs, **boot.model_kwargs)
    assert refit.structure == res.model.structure
    np.testing.assert_allclose(refit.exog, res.model.exog)
    # the simulated outcome has the model's law: over many draws, its mean is the marginal
    # prediction and its variance the marginal mixture variance (closed forms)
    outcome = boot.formula_kwargs["formula"].split("~")[0].strip()
    draws = np.column_stack([simulate(res, random_state=seed).data[outcome].to_numpy()
                             for seed in range(200)])
    mix = predictive_mixture(res, data.iloc[:40], kind="marginal")
    mean, var = mix.mean().to_numpy(), mix.variance().to_numpy()
    z = (draws[:40].mean(axis=1) - mean) / np.sqrt(var / draws.shape[1])
    assert np.abs(z).max() < 4.5
    assert np.median(draws[:40].var(axis=1) / var) == pytest.approx(1.0, abs=0.1)


def test_bootstrap_refuses_schedule_options(pbc):
    res = MEMoE.from_formula("logbili ~ year", pbc, "id", n_experts=1).fit()
    with pytest.raises(ValueError, match="keeps the fitted rows"):
        simulate(res, visits=5)
    with pytest.raises(ValueError, match="n_subjects is needed"):
        simulate(res.state)


# -- compare_experts ----------------------------------------------------------------------------

def test_compare_experts_forwards_fit_options_and_rejects_unknown_ones(pbc):
    comp = compare_experts("logbili ~ year", pbc, "id", n_experts=[1, 2], n_starts=1,
                           random_state=0, fit_kwargs={"cov_type": "robust", "maxiter": 50})
    assert {r.cov_type for r in comp.results.values()} == {"robust"}
    with pytest.raises(ValueError, match=r"unknown options \['cov'\].*cov_type"):
        compare_experts("logbili ~ year", pbc, "id", n_experts=[1], fit_kwargs={"cov": "oim"})
    with pytest.raises(ValueError, match="to compare_experts itself"):
        compare_experts("logbili ~ year", pbc, "id", n_experts=[1], fit_kwargs={"n_starts": 2})
    with pytest.raises(ValueError, match="must be a dict"):
        compare_experts("logbili ~ year", pbc, "id", n_experts=[1], fit_kwargs=["robust"])
    with pytest.raises(ValueError, match=r"unknown model options \['cov_type'\].*fit_kwargs"):
        compare_experts("logbili ~ year", pbc, "id", n_experts=[1], cov_type="robust")


# -- models built from chunks keep no rows -------------------------------------------------------

def test_row_level_outputs_of_a_chunked_model_say_why_not(pbc):
    chunks = [pbc.iloc[:900], pbc.iloc[900:]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = from_chunks("logbili ~ year", chunks, "id", n_experts=1,
                          re_formula="~ year").fit()
    for call in (lambda: res.fittedvalues, lambda: res.resid,
                 lambda: res.standardized_residuals(), lambda: res.predict(),
                 lambda: res.predict(kind="conditional"), lambda: res.prediction_set(),
                 lambda: res.get_prediction(), lambda: simulate(res)):
        with pytest.raises(ValueError, match="sufficient statistics.*keep no rows"):
            call()
    assert np.isfinite(res.predict(pbc.head(3))).all()        # new data still work
    assert res.posterior.shape == (312, 1)
