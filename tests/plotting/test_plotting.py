"""Tests of pymemoe.plotting: what is drawn, not only that drawing works."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection, PolyCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from pymemoe import (
    MEMoE,  # noqa: E402
    plotting,  # noqa: E402
)
from pymemoe.datasets import load_pbcseq  # noqa: E402
from pymemoe.selection import ExpertComparison, comparison_table  # noqa: E402


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    data = load_pbcseq()
    return data.assign(year=data["day"] / 365.25)


@pytest.fixture(scope="module")
def res(df):
    return MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
                              n_experts=2).fit(n_starts=2, random_state=0)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------------------------
# plot_trajectories


def test_trajectories_one_line_per_subject_and_per_expert(res, df):
    ax = plotting.plot_trajectories(res, "year", data=df)
    N, K = res.n_groups, res.n_experts
    assert len(ax.lines) == N + K
    subject_lines, mean_lines = ax.lines[:N], ax.lines[N:]
    assert [line.get_gid() for line in subject_lines] == [f"subject {s}" for s in res.posterior.index]
    assert [line.get_gid() for line in mean_lines] == [f"mean {k}" for k in range(1, K + 1)]
    # each subject line holds that subject's observations of log(bili), in time order
    for label in (1, 2, 100, 312):
        line = subject_lines[res.posterior.index.get_loc(label)]
        rows = df[df["id"] == label].sort_values("year")
        np.testing.assert_allclose(line.get_xdata(), rows["year"])
        np.testing.assert_allclose(line.get_ydata(), np.log(rows["bili"]))


def test_trajectory_colours_follow_the_assigned_expert(res, df):
    ax = plotting.plot_trajectories(res, "year", data=df)
    N, K = res.n_groups, res.n_experts
    mean_colour = {k: to_rgba(ax.lines[N + k - 1].get_color()) for k in range(1, K + 1)}
    assert len(set(mean_colour.values())) == K                  # experts are distinguishable
    assigned = res.predicted_class
    for line, subject in zip(ax.lines[:N], res.posterior.index):
        assert to_rgba(line.get_color()) == mean_colour[assigned[subject]]
    # the mean lines are the only legend entries, with the expert sizes
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    sizes = assigned.value_counts()
    assert texts == [f"expert {k} ({sizes[k]} subjects)" for k in range(1, K + 1)]


def test_trajectory_means_are_x_beta_and_bands_are_marginal_ranges(res, df):
    ax = plotting.plot_trajectories(res, "year", data=df, n_grid=50, band="prediction")
    N, K = res.n_groups, res.n_experts
    beta = res.fe_params
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == K
    for k in range(1, K + 1):
        line = ax.lines[N + k - 1]
        t = np.asarray(line.get_xdata())
        assert t.size == 50
        assert t[0] == pytest.approx(df["year"].min()) and t[-1] == pytest.approx(df["year"].max())
        expected = beta.loc["Intercept", k] + beta.loc["year", k] * t
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-12)
        # band: mean +- 1.96 sqrt(z' D_k z + sigma2_k) with z = (1, t)
        D = res.cov_re[k].to_numpy()
        var = D[0, 0] + 2 * D[0, 1] * t + D[1, 1] * t ** 2 + res.scale[k]
        half = 1.959963984540054 * np.sqrt(var)
        vertices = bands[k - 1].get_paths()[0].vertices
        for x, low, high in zip(t, expected - half, expected + half):
            at_x = vertices[np.isclose(vertices[:, 0], x)]
            assert np.isclose(at_x[:, 1], high).any() and np.isclose(at_x[:, 1], low).any()
        assert to_rgba(bands[k - 1].get_facecolor()[0])[:3] == to_rgba(line.get_color())[:3]


def test_trajectories_options(res, df):
    ax = plotting.plot_trajectories(res, "year", data=df, max_subjects=10, band=None)
    assert len(ax.lines) == 10 + res.n_experts
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    # a wider band at level 0.99, the level is level= (band names the kind of band)
    for band in ("confidence", "prediction"):
        ax95 = plotting.plot_trajectories(res, "year", data=df, max_subjects=0, band=band)
        ax99 = plotting.plot_trajectories(res, "year", data=df, max_subjects=0, band=band,
                                          level=0.99)
        span = [np.ptp(ax.collections[0].get_paths()[0].vertices[:, 1]) for ax in (ax95, ax99)]
        assert span[1] > span[0]
    with pytest.raises(ValueError, match="level="):
        plotting.plot_trajectories(res, "year", band=0.99)
    # a time column the formulas do not use gives flat means, with a warning
    with pytest.warns(UserWarning, match="'day' is not used by formula"):
        ax = plotting.plot_trajectories(res, "day", data=df, max_subjects=0)
    assert all(np.ptp(line.get_ydata()) == 0 for line in ax.lines)


def test_trajectories_hold_other_covariates_at_mean_or_first_level(df):
    res = MEMoE.from_formula("np.log(bili) ~ year + age + C(sex)", df, "id", re_formula="~ 1",
                             gate_formula="~ C(trt)", n_experts=2).fit(n_starts=1, random_state=0)
    ax = plotting.plot_trajectories(res, "year", data=df, max_subjects=0, n_grid=20)
    beta = res.fe_params
    assert list(beta.index) == ["Intercept", "C(sex)[T.m]", "year", "age"]
    for k, line in enumerate(ax.lines, start=1):
        t = np.asarray(line.get_xdata())
        # age at its mean over the rows of the fit, sex at its first level "f" (dummy 0)
        expected = beta.loc["Intercept", k] + beta.loc["year", k] * t + beta.loc["age", k] * df["age"].mean()
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-12)


def test_trajectories_rebuild_transforms_of_time(df):
    res = MEMoE.from_formula("np.log(bili) ~ center(year) + I(year ** 2)", df, "id",
                             n_experts=1).fit()
    ax = plotting.plot_trajectories(res, "year", data=df, max_subjects=0, n_grid=20)
    b = res.fe_params[1].to_numpy()
    t = np.asarray(ax.lines[0].get_xdata())
    expected = b[0] + b[1] * (t - df["year"].mean()) + b[2] * t ** 2   # centred as in fitting
    np.testing.assert_allclose(ax.lines[0].get_ydata(), expected, rtol=1e-10)


def test_trajectories_refuse_what_they_cannot_draw(res, df):
    with pytest.raises(ValueError, match="'day' is not used by the formulas.*data="):
        plotting.plot_trajectories(res, "day")
    with pytest.raises(ValueError, match="not a column"):
        plotting.plot_trajectories(res, "years", data=df)
    with pytest.raises(ValueError, match="lacks rows used in the fit"):
        plotting.plot_trajectories(res, "year", data=df.iloc[:100])
    with pytest.raises(ValueError, match="does not match the fit"):
        plotting.plot_trajectories(res, "year", data=df.assign(id=df["id"].to_numpy()[::-1]))
    # a formula term that is not made of columns of data cannot be set on the grid
    noise = np.random.default_rng(0).normal(size=len(df))  # noqa: F841 (used by the formula)
    outside = MEMoE.from_formula("np.log(bili) ~ year + noise", df, "id", n_experts=1).fit()
    with pytest.raises(ValueError, match="'noise'.*reads no column of the data"):
        plotting.plot_trajectories(outside, "year", data=df)
    # a model built from arrays has no formulas to rebuild
    arrays = MEMoE(np.log(df["bili"]), np.column_stack([np.ones(len(df)), df["year"]]), df["id"],
                   n_experts=1).fit()
    with pytest.raises(ValueError, match="from_formula"):
        plotting.plot_trajectories(arrays, "year", data=df)


# ---------------------------------------------------------------------------------------------
# plot_posterior


def test_posterior_histogram_counts_every_subject_once(res):
    ax = plotting.plot_posterior(res, bins=10)
    heights = np.array([p.get_height() for p in ax.patches])
    assert heights.sum() == res.n_groups
    assert len(ax.patches) == 10 * res.n_experts
    sizes = res.predicted_class.value_counts()
    assert len(ax.containers) == res.n_experts
    for k, container in enumerate(ax.containers, start=1):
        assert sum(bar.get_height() for bar in container) == sizes[k]
        assert {to_rgba(bar.get_facecolor())[:3] for bar in container} == {to_rgba(f"C{k - 1}")[:3]}
    assert sorted(line.get_xdata()[0] for line in ax.lines) == [0.7, 0.8, 0.9]
    best = res.posterior.max(axis=1)
    texts = {t.get_text().strip() for t in ax.texts}
    assert f"{(best > 0.9).mean():.0%} > 0.9" in texts


# ---------------------------------------------------------------------------------------------
# plot_llf_trace


def test_llf_trace_is_drawn_as_recorded(res):
    ax = plotting.plot_llf_trace(res)
    trace = ax.lines[0]
    np.testing.assert_array_equal(trace.get_ydata(), res.llf_trace)
    np.testing.assert_array_equal(trace.get_xdata(), np.arange(res.llf_trace.size))
    assert ax.lines[1].get_ydata()[0] == res.llf


# ---------------------------------------------------------------------------------------------
# plot_prediction_sets


@pytest.fixture
def hand_sets():
    """Five rows labelled by letters; row "b" has a set of two intervals; row "d" has no
    observation (a future row); row "e" is observed at the end of its interval."""
    sets = pd.DataFrame({
        "row": ["a", "b", "b", "c", "d", "e"],
        "interval": [0, 0, 1, 0, 0, 0],
        "lower": [0.0, -1.0, 2.0, 0.0, 1.0, -2.0],
        "upper": [1.0, 0.0, 3.0, 1.0, 2.0, -1.0],
    })
    observed = pd.Series([0.5, 2.5, 1.5, np.nan, -1.0], index=list("abcde"), name="logbili")
    return sets, observed


def test_prediction_sets_segments_markers_and_coverage(hand_sets):
    sets, observed = hand_sets
    ax = plotting.plot_prediction_sets(sets, observed)
    (segments,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(segments.get_segments()) == len(sets)
    # segment j spans row j's interval at the row's position in observed
    position = {label: i for i, label in enumerate(observed.index)}
    for seg, (_, r) in zip(segments.get_segments(), sets.iterrows()):
        np.testing.assert_allclose(seg, [[position[r["row"]], r["lower"]], [position[r["row"]], r["upper"]]])
    by_gid = {c.get_gid(): c for c in ax.collections if isinstance(c, PathCollection)}
    # by hand: a (0.5 in [0, 1]), b (2.5 in [2, 3]), e (-1 in [-2, -1]) covered; c (1.5 not in
    # [0, 1]) missed; d not observed: coverage 3 of 4
    np.testing.assert_allclose(by_gid["covered"].get_offsets(), [[0, 0.5], [1, 2.5], [4, -1.0]])
    np.testing.assert_allclose(by_gid["missed"].get_offsets(), [[2, 1.5]])
    assert "75.0%" in ax.get_title()


def test_prediction_sets_on_a_time_axis_with_the_level(hand_sets):
    sets, observed = hand_sets
    sets = sets.copy()
    sets.attrs["alpha"] = 0.05
    time = pd.Series([5.0, 1.0, 2.0, 3.0, 4.0], index=list("abcde"), name="year")
    ax = plotting.plot_prediction_sets(sets, observed, time=time)
    (segments,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert [seg[0, 0] for seg in segments.get_segments()] == [5.0, 1.0, 1.0, 2.0, 3.0, 4.0]
    assert ax.get_title().startswith("95% prediction sets")
    assert ax.get_xlabel() == "year"


def test_prediction_sets_check_their_rows(hand_sets):
    sets, observed = hand_sets
    with pytest.raises(ValueError, match="not in observed"):
        plotting.plot_prediction_sets(sets, observed.drop("a"))
    with pytest.raises(ValueError, match="has no prediction set"):
        plotting.plot_prediction_sets(sets[sets["row"] != "c"], observed)
    with pytest.raises(ValueError, match="columns"):
        plotting.plot_prediction_sets(sets.drop(columns="upper"), observed)


# ---------------------------------------------------------------------------------------------
# plot_comparison


def test_comparison_draws_each_criterion_against_k(res, df):
    one = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
                             n_experts=1).fit()
    comp = ExpertComparison(table=comparison_table({1: one, 2: res}), results={1: one, 2: res})
    ax = plotting.plot_comparison(comp)
    assert [line.get_label() for line in ax.lines] == ["AIC", "BIC", "ICL"]
    for line in ax.lines:
        np.testing.assert_array_equal(line.get_xdata(), [1, 2])
        np.testing.assert_allclose(line.get_ydata(), comp.table[line.get_label()])
    ax = plotting.plot_comparison(comp.table, criteria="BIC")
    assert len(ax.lines) == 1
    with pytest.raises(ValueError, match="not columns"):
        plotting.plot_comparison(comp, criteria=("AIC", "CAIC"))


# ---------------------------------------------------------------------------------------------
# matplotlib is optional


def test_missing_matplotlib_gives_a_clear_import_error(res, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    for call in (lambda: plotting.plot_llf_trace(res), lambda: plotting.plot_posterior(res)):
        with pytest.raises(ImportError, match=r"pip install pymemoe\[plot\]"):
            call()


def test_importing_pymemoe_does_not_import_matplotlib():
    code = ("import sys, pymemoe, pymemoe.plotting, pymemoe.selection; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
