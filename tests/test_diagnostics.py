"""Model checking: residuals, standardised residuals, the fit table and their plots.

References: statsmodels' MixedLM (K = 1 residuals), a dense one-subject-at-a-time whitening with
scipy's Cholesky and triangular solve, a simulation with known truth (standardised residuals
of a correctly specified model are N(0, 1)), and pandas group-bys for the binned means.
"""
import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import linalg, stats

from pymemoe import MEMoE, plotting
from pymemoe._model.params import Params
from pymemoe.diagnostics import fit_table, fitted_means
from pymemoe.simulate import simulate

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(scope="module")
def res3(pbc):
    return MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                              gate_formula="~ C(sex) + age + C(trt)",
                              n_experts=3).fit(n_starts=4, random_state=1)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_resid_is_endog_minus_fitted_and_matches_mixedlm(pbc):
    res = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                             n_experts=1).fit()
    np.testing.assert_allclose(res.resid.to_numpy(), pbc["logbili"] - res.fittedvalues)
    assert res.resid.index.equals(pbc.index)
    sm = smf.mixedlm("logbili ~ year", pbc, groups=pbc["id"], re_formula="~ year").fit(reml=False)
    np.testing.assert_allclose(res.resid.to_numpy(), sm.resid.to_numpy(), atol=2e-4)


def _dense_whitened(res, data, subjects):
    """L^-1 (y - X beta_k) per subject and expert, with scipy, one subject at a time."""
    out = {}
    beta, D, s2 = res.fe_params, res.cov_re, res.scale
    for i in subjects:
        rows = data.index[data["id"] == i]
        X = np.column_stack([np.ones(len(rows)), data.loc[rows, "year"]])
        y = data.loc[rows, "logbili"].to_numpy()
        for k in range(1, res.n_experts + 1):
            V = X @ D[k].to_numpy() @ X.T + s2[k] * np.eye(len(rows))
            L = linalg.cholesky(V, lower=True)
            out[(i, k)] = pd.Series(linalg.solve_triangular(L, y - X @ beta[k].to_numpy(),
                                                            lower=True), index=rows)
    return out


def test_standardized_residuals_against_a_dense_whitening(res3, pbc):
    subjects = [1, 2, 17, 100, 311]          # subjects with 1 to 12 visits
    dense = _dense_whitened(res3, pbc, subjects)
    by_expert = res3.standardized_residuals(by="expert")
    tau = res3.posterior
    weighted = res3.standardized_residuals()
    assigned = res3.standardized_residuals(by="assigned")
    for i in subjects:
        rows = pbc.index[pbc["id"] == i]
        for k in (1, 2, 3):
            np.testing.assert_allclose(by_expert.loc[rows, k], dense[(i, k)], rtol=1e-9,
                                       atol=1e-12)
        expected = sum(tau.loc[i, k] * dense[(i, k)] for k in (1, 2, 3))
        np.testing.assert_allclose(weighted.loc[rows], expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(assigned.loc[rows], dense[(i, int(tau.loc[i].idxmax()))],
                                   rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="by must be one of"):
        res3.standardized_residuals(by="pearson")


def test_residuals_show_no_trend_against_fitted_means_under_the_true_model():
    """Against the fitted expert means the residuals of a correct model are flat; against the
    subject-specific fitted values they are not (shrinkage), which is why the plot uses the
    former."""
    truth = Params(gamma=[[0.0, 0.0], [0.4, 1.0]], beta=[[0.0, 0.2], [3.0, 0.8]],
                   cov_re=[[[0.3, 0.02], [0.02, 0.02]], [[0.5, -0.03], [-0.03, 0.04]]],
                   scale=[0.2, 0.4])
    sim = simulate(truth, 400, visits=(3, 9), random_state=5)
    res = MEMoE.from_formula(data=sim.data, n_experts=2, **sim.formula_kwargs).fit(
        n_starts=2, random_state=0, cov_type="none")
    r = res.standardized_residuals().to_numpy()
    flat = np.corrcoef(fitted_means(res).to_numpy(), r)[0, 1]
    trend = np.corrcoef(res.fittedvalues.to_numpy(), r)[0, 1]
    assert abs(flat) < 0.04 < trend


def test_standardized_residuals_are_standard_normal_under_the_true_model():
    truth = Params(gamma=[[0.0, 0.0], [0.4, 1.0]], beta=[[0.0, 0.2], [3.0, 0.8]],
                   cov_re=[[[0.3, 0.02], [0.02, 0.02]], [[0.5, -0.03], [-0.03, 0.04]]],
                   scale=[0.2, 0.4])
    sim = simulate(truth, 400, visits=(3, 9), random_state=5)
    res = MEMoE.from_formula(data=sim.data, n_experts=2, **sim.formula_kwargs).fit(
        n_starts=2, random_state=0, cov_type="none")
    for by in ("posterior", "assigned"):
        r = res.standardized_residuals(by=by).to_numpy()
        assert abs(r.mean()) < 0.05 and abs(r.std() - 1.0) < 0.05
        assert abs(stats.skew(r)) < 0.15 and abs(stats.kurtosis(r)) < 0.3
        assert stats.kstest(r, "norm").statistic < 0.03
    # and not under a misspecified one: t errors give heavy tails
    sim_t = simulate(truth, 400, visits=(3, 9), errors="t", df=3, random_state=5)
    res_t = MEMoE.from_formula(data=sim_t.data, n_experts=2, **sim_t.formula_kwargs).fit(
        n_starts=2, random_state=0, cov_type="none")
    assert stats.kurtosis(res_t.standardized_residuals().to_numpy()) > 1.0


def test_fit_table_against_pandas(res3, pbc):
    table = fit_table(res3, "year", bins=6)
    tau = res3.posterior.loc[pbc["id"]].to_numpy()
    bins = pd.qcut(pbc["year"], 6, labels=False)
    for k in (1, 2, 3):
        w = pd.Series(tau[:, k - 1], index=pbc.index)
        pred = res3.fe_params.loc["Intercept", k] + res3.fe_params.loc["year", k] * pbc["year"]
        frame = pd.DataFrame({"w": w, "wy": w * pbc["logbili"], "wp": w * pred,
                              "wt": w * pbc["year"], "bin": bins})
        sums = frame.groupby("bin").sum()
        np.testing.assert_allclose(table.loc[k, "observed"], sums["wy"] / sums["w"])
        np.testing.assert_allclose(table.loc[k, "predicted"], sums["wp"] / sums["w"])
        np.testing.assert_allclose(table.loc[k, "time"], sums["wt"] / sums["w"])
    assert (table["observed_lower"] < table["observed"]).all()
    # the time column is taken from the model (the formula uses year); another needs data=
    with pytest.raises(ValueError, match="data="):
        fit_table(res3, "day")
    by_day = fit_table(res3, "day", data=pbc, bins=6)
    np.testing.assert_allclose(by_day["observed"], table["observed"])


def test_plot_fit_draws_the_fit_table(res3):
    ax = plotting.plot_fit(res3, "year", bins=6)
    table = fit_table(res3, "year", bins=6)
    predicted = [line for line in ax.lines if str(line.get_gid()).startswith("predicted")]
    assert [line.get_gid() for line in predicted] == ["predicted 1", "predicted 2", "predicted 3"]
    for k, line in enumerate(predicted, start=1):
        np.testing.assert_allclose(line.get_xdata(), table.loc[k, "time"])
        np.testing.assert_allclose(line.get_ydata(), table.loc[k, "predicted"])
    bars = ax.containers
    assert len(bars) == 3
    for k, container in enumerate(bars, start=1):
        np.testing.assert_allclose(container.lines[0].get_ydata(), table.loc[k, "observed"])
    assert ax.get_xlabel().startswith("year") and ax.get_ylabel() == "logbili"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "observed, expert 3" in labels and "predicted, expert 1" in labels


def test_plot_residuals_draws_the_standardized_residuals(res3, pbc):
    axes = plotting.plot_residuals(res3)
    r = res3.standardized_residuals().to_numpy()
    heights = np.array([p.get_height() for p in axes[0].patches])
    widths = np.array([p.get_width() for p in axes[0].patches])
    assert (heights * widths).sum() == pytest.approx(1.0)           # a density
    x, y = axes[0].lines[0].get_data()
    np.testing.assert_allclose(y, stats.norm.pdf(x))
    qq = axes[1].collections[0].get_offsets()
    np.testing.assert_allclose(qq[:, 1], np.sort(r))
    assert np.all(np.diff(qq[:, 0]) > 0) and qq[0, 0] < -3 and qq[-1, 0] > 3
    points = np.vstack([c.get_offsets() for c in axes[2].collections])
    assert points.shape == (len(r), 2)
    # x: the posterior-weighted expert means, computed here from fe_params and the posterior
    tau = res3.posterior.loc[pbc["id"]].to_numpy()
    means = np.column_stack([res3.fe_params.loc["Intercept", k] + res3.fe_params.loc["year", k]
                             * pbc["year"] for k in (1, 2, 3)])
    np.testing.assert_allclose(np.sort(points[:, 0]), np.sort((tau * means).sum(axis=1)))
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


def test_confidence_band_of_trajectories_is_the_delta_method_band(res3, pbc):
    ax = plotting.plot_trajectories(res3, "year", max_subjects=0, n_grid=30)
    grid = pd.DataFrame({"year": np.linspace(pbc["year"].min(), pbc["year"].max(), 30)})
    frame = res3.get_prediction(grid, kind="expert").summary_frame()
    for k in (1, 2, 3):
        rows = frame.xs(k, level="expert")
        line = ax.lines[k - 1]
        np.testing.assert_allclose(line.get_ydata(), rows["mean"])
        vertices = ax.collections[k - 1].get_paths()[0].vertices
        for x, low, high in zip(grid["year"], rows["mean_ci_lower"], rows["mean_ci_upper"]):
            at_x = vertices[np.isclose(vertices[:, 0], x)]
            assert np.isclose(at_x[:, 1], high).any() and np.isclose(at_x[:, 1], low).any()
    assert ax.get_ylabel() == "logbili" and "confidence" in ax.get_legend().get_title().get_text()
