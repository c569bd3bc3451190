"""Standard errors: the information against a numerical Hessian, K = 1 against statsmodels,
the shared-variance mixture against lcmm, the full model against flexmix's numerical-Hessian
SEs; Wald tests against hand computations; boundary behaviour."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.tools.numdiff import approx_hess
from statsmodels.tools.sm_exceptions import HessianInversionWarning

from pymemoe import MEMoE
from pymemoe._estimation.inference import observed_information


@pytest.mark.parametrize("options", [dict(), dict(cov_re="proportional", scale="shared"),
                                     dict(cov_re="shared", re_structure="diagonal"),
                                     dict(re_formula="0"), dict(shared_formula="~ x1")],
                         ids=["full", "proportional", "shared-diagonal", "no-re", "shared-fe"])
def test_information_equals_numerical_hessian(sim500, options):
    sub = sim500[sim500["id"] < 150]
    kw = {"re_formula": "~ time", "gate_formula": "~ x1 + x2", **options}
    model = MEMoE.from_formula("y ~ time", sub, "id", n_experts=2, **kw)
    res = model.fit(n_starts=3, random_state=0)
    theta = np.array(res.params, dtype=float)
    info = observed_information(model.data, model.structure, res.state)
    hess = approx_hess(theta, model.loglike)
    np.testing.assert_allclose(info, -hess, rtol=1e-4, atol=1e-4 * np.abs(hess).max())
    np.testing.assert_allclose(res.cov_params().to_numpy(), np.linalg.inv(info), rtol=1e-6,
                               atol=1e-12)


@pytest.fixture(scope="module")
def robust3(pbc):
    return MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year", n_experts=3,
                              gate_formula="~ age + C(sex)").fit(n_starts=4, random_state=0,
                                                                   cov_type="robust")


def test_wald_and_t_tests_equal_hand_computations(robust3):
    res = robust3
    assert res.cov_type == "robust"
    names = res.param_names
    cov = res.cov_params().to_numpy()
    theta = res.params.to_numpy()
    # the slope on year is equal in experts 1 and 2
    r = np.zeros(len(names))
    r[names.index("beta[1]:year")], r[names.index("beta[2]:year")] = 1, -1
    z = r @ theta / np.sqrt(r @ cov @ r)
    tt = res.t_test("beta[1]:year = beta[2]:year")
    assert tt.statistic[0, 0] if np.ndim(tt.statistic) == 2 else tt.statistic[0] == pytest.approx(z)
    wt = res.wald_test("beta[1]:year = beta[2]:year")
    assert float(wt.statistic) == pytest.approx(z ** 2)
    assert float(wt.pvalue) == pytest.approx(2 * stats.norm.sf(abs(z)))
    # all gating coefficients of age are zero (two contrasts)
    R = np.zeros((2, len(names)))
    R[0, names.index("gate[2]:age")] = R[1, names.index("gate[3]:age")] = 1
    g = R @ theta
    stat = g @ np.linalg.solve(R @ cov @ R.T, g)
    joint = res.wald_test(["gate[2]:age", "gate[3]:age"])
    assert float(joint.statistic) == pytest.approx(stat)
    assert float(joint.pvalue) == pytest.approx(stats.chi2.sf(stat, 2))
    np.testing.assert_allclose(float(res.wald_test(R).statistic), stat)


def test_z_p_and_intervals_are_consistent(robust3):
    res = robust3
    np.testing.assert_allclose(res.zvalues, res.params / res.bse)
    np.testing.assert_allclose(res.pvalues, 2 * stats.norm.sf(np.abs(res.params / res.bse)))
    ci = res.conf_int(0.1)
    np.testing.assert_allclose(ci["upper"] - res.params, stats.norm.ppf(0.95) * res.bse)
    assert res.tvalues.equals(res.zvalues)
    table = res.to_frame()
    assert list(table.columns) == ["block", "expert", "term", "name", "coef", "std err", "z",
                                   "P>|z|", "lower", "upper"]
    # the parameter rows of the table are the parameters, with the names the tests take
    named = table[table["name"] != ""].set_index("name")
    for name, label in zip(res.param_names, res.params.index):
        if label[0] in ("gate", "beta"):
            assert named.loc[name, "coef"] == res.params[label]
            assert named.loc[name, "upper"] == pytest.approx(ci.loc[label, "upper"] + (
                stats.norm.ppf(0.975) - stats.norm.ppf(0.95)) * res.bse[label])


def test_exports(robust3, tmp_path):
    res = robust3
    assert "\\begin{tabular}" in res.to_latex()
    assert "<table" in res.to_html()
    md = res.to_markdown()
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(res.to_frame())
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines[2:])
    res.to_csv(tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv")
    np.testing.assert_allclose(back["coef"], res.to_frame()["coef"].to_numpy())


def test_unknown_cov_type_and_none(pbc):
    model = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year", n_experts=1)
    with pytest.raises(ValueError, match="cov_type"):
        model.fit(cov_type="sandwich")
    with pytest.raises(ValueError, match="takes no options"):
        model.fit(cov_kwds={"maxlags": 2})
    res = model.fit(cov_type="none")
    assert res.bse.isna().all()
    assert "not computed" in res.summary().as_text()
    with pytest.raises(ValueError, match="without a covariance"):
        res.wald_test("beta[1]:year")


def test_boundary_variance_gives_nan_only_for_its_parameters():
    rng = np.random.default_rng(4)
    n, visits = 120, 5
    half = rng.normal(size=(n, 3))
    noise = np.column_stack([half, half[:, 1], half[:, 0]])     # slope variance MLE is 0
    t = np.tile(np.arange(visits, dtype=float), n)
    y = 1.0 + 0.5 * t + np.repeat(rng.normal(size=n), visits) + noise.ravel()
    df = pd.DataFrame({"id": np.repeat(np.arange(n), visits), "time": t, "y": y})
    res = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time", n_experts=1).fit()
    with pytest.warns(HessianInversionWarning, match="Var\\(time\\)"):
        res.bse                                     # standard errors are computed on first use
    nan = res.bse[res.bse.isna()].index.get_level_values("term").tolist()
    assert set(nan) == {"Var(time)", "Cov(Intercept,time)"}
    assert res.bse["beta"].notna().all() and res.bse[("scale", 1, "sigma2")] > 0
    vc = res.to_frame().set_index(["expert", "term"])
    assert np.isnan(vc.loc[(1, "SD(time)"), "std err"])
    assert vc.loc[(1, "SD(Intercept)"), "std err"] > 0


def test_information_does_not_depend_on_threads(sim500):
    """The columns of the observed information are computed in threads (n_jobs): the matrix
    must be the same to the last bit."""
    model = MEMoE.from_formula("y ~ time", sim500, "id", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=2)
    res = model.fit(n_starts=1, random_state=0, cov_type="none", n_jobs=1)
    one = observed_information(model.data, model.structure, res.state, n_jobs=1)
    two = observed_information(model.data, model.structure, res.state, n_jobs=2)
    assert np.array_equal(one, two)
    assert np.all(np.isfinite(one)) and np.abs(one).max() > 0


def test_standard_errors_are_computed_on_first_use_and_kept(pbc):
    """cov_type is checked at fit, but the information is computed only when an output needs
    it (bse, cov_params, summary, messages); posteriors and predictions do not."""
    import pickle
    model = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year", n_experts=2)
    res = model.fit(n_starts=1, random_state=0, cov_type="robust")
    res.posterior, res.random_effects, res.predict(kind="marginal")
    assert res.cov_type == "robust" and not res._cov.computed
    bse = res.bse
    assert res._cov.computed and np.isfinite(bse.to_numpy()).all()
    again = pickle.loads(pickle.dumps(res))
    assert again._cov.computed
    assert np.array_equal(again.bse.to_numpy(), bse.to_numpy())
    with pytest.raises(ValueError, match="cov_type"):
        model.fit(cov_type="sandwich")
