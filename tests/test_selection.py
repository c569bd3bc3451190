"""Choosing K: the comparison table ranks the true number of experts first by BIC."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pymemoe import compare_experts  # noqa: E402
from pymemoe.simulate import paper_settings, simulate  # noqa: E402


@pytest.fixture(scope="module")
def comparison():
    sim = simulate(paper_settings()["example2"], 300, visits=(5, 8), random_state=11)
    return compare_experts(data=sim.data, n_experts=[1, 2, 3], n_starts=3, random_state=0,
                           **sim.formula_kwargs)


def test_bic_ranks_the_true_number_of_experts_first(comparison):
    table = comparison.table
    assert list(table.index) == [1, 2, 3]
    assert table["BIC"].idxmin() == 2
    assert comparison.best("BIC").n_experts == 2
    # the likelihood never falls as experts are added (nested models, several starts)
    assert np.all(np.diff(table["llf"]) > -1e-6)
    for K, res in comparison.results.items():
        assert table.loc[K, "BIC"] == pytest.approx(res.bic)
        assert table.loc[K, "SABIC"] == pytest.approx(
            -2 * res.llf + np.log((res.n_groups + 2) / 24) * res.df_modelwc)
        shares = table.loc[K, [f"%{k}" for k in range(1, K + 1)]].to_numpy(dtype=float)
        assert shares.sum() == pytest.approx(100.0)
    assert np.isnan(table.loc[1, "%2"])
    with pytest.raises(ValueError, match="criterion"):
        comparison.best("DIC")


def test_comparison_plot_has_one_line_per_criterion(comparison):
    ax = comparison.plot(criteria=("AIC", "BIC"))
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(lines) == 2
    np.testing.assert_allclose(lines[1].get_ydata(), comparison.table["BIC"].to_numpy())
    plt.close("all")


def test_fittedvalues_are_the_in_sample_conditional_predictions(comparison):
    res = comparison.results[2]
    model = res.model
    tau = res.posterior.to_numpy()[model.data.row_codes]
    b = np.stack([res.random_effects[k].to_numpy() for k in (1, 2)], axis=1)[model.data.row_codes]
    by_expert = model.exog @ res.fe_params.to_numpy() + np.einsum("nq,nkq->nk", model.exog_re, b)
    np.testing.assert_allclose(res.fittedvalues.to_numpy(), (tau * by_expert).sum(axis=1))


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
