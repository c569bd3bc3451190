"""The simulation study (experiments/, beside benchmarks/) and the metrics it takes from the
library (pymemoe.metrics): the adjusted Rand index and the label matching on hand-computed
examples, relabelling of parameter vectors, the truth of each fitted model, reproducibility of a
replication, and the whole study end to end on a tiny configuration."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import sim_design  # noqa: E402
import sim_report  # noqa: E402
import simulation as sim  # noqa: E402
from sim_design import MODELS, SETTINGS, StudyConfig  # noqa: E402
from sim_replication import run_replication  # noqa: E402

# -- adjusted Rand index ------------------------------------------------------------------------


# -- label matching and relabelling -------------------------------------------------------------


# -- truth of each fitted model -----------------------------------------------------------------


# -- one replication and the study --------------------------------------------------------------

SMALL = StudyConfig(reps=2, n_subjects=60, n_test=30, n_starts=2)


def test_seeds_do_not_depend_on_the_subset():
    a = sim_design.replication_seed(7, "example3_case2", 4)
    b = np.random.SeedSequence(7).spawn(len(SETTINGS))[3].spawn(10)[4]
    assert a.generate_state(4).tolist() == b.generate_state(4).tolist()


def test_config_checks():
    with pytest.raises(ValueError, match="settings"):
        StudyConfig(settings=("example9",))
    with pytest.raises(ValueError, match="reps"):
        StudyConfig(reps=0)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("simstudy")
    code = sim.main(["--reps", "2", "--n-subjects", "60", "--n-starts", "2", "--workers", "2",
                     "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_study_files(study):
    for name in ("README.md", "config.json", "raw/replications.csv", "raw/parameters.csv",
                 "summary_models.csv", "summary_models.md", "summary_parameters.csv",
                 "summary_parameters.md"):
        assert (study / name).is_file(), name
    if importlib.util.find_spec("matplotlib") is not None:
        assert (study / "pmse_marginal.png").stat().st_size > 1000
        assert (study / "pmse_dynamic.png").stat().st_size > 1000
    config = json.loads((study / "config.json").read_text())
    assert config["reps"] == 2 and config["n_subjects"] == 60 and config["n_test"] == 30
    readme = (study / "README.md").read_text()
    for word in ("summary_models.csv", "summary_parameters.csv", "pmse_dynamic.png",
                 "misspecified_t5", "60 for fitting + 30 held out", "seed 20250101",
                 "LMM has no parameter rows"):
        assert word in readme, word
    assert "### example3_case3" in (study / "summary_models.md").read_text()
    assert "| MEMoE | beta[2]:time |" in (study / "summary_parameters.md").read_text()


def test_study_model_table(study):
    raw = pd.read_csv(study / "raw" / "replications.csv")
    assert len(raw) == len(SETTINGS) * 2 * len(MODELS)
    assert (raw["status"] == "ok").all()
    assert raw.groupby(["setting", "model"]).size().eq(2).all()
    table = pd.read_csv(study / "summary_models.csv", index_col=[0, 1])
    assert list(table.index) == [(s, m) for s in SETTINGS for m in MODELS]
    for col in ("fits", "converged", "bic_mean", "bic_best", "accuracy", "ari", "accuracy_test",
                "ari_test", "pmse_marginal_mean", "pmse_marginal_sd", "pmse_dynamic_mean",
                "pmse_dynamic_sd", "time_fit"):
        assert col in table.columns, col
    assert (table["fits"] == 2).all()
    mixtures = table.drop(index="lmm", level="model")
    for col in ("accuracy", "accuracy_test"):
        assert mixtures[col].between(0, 1).all()
    assert (mixtures[["ari", "ari_test"]] <= 1 + 1e-12).all().all()
    assert table.xs("lmm", level="model")[["accuracy", "ari"]].isna().all().all()
    assert (table[["pmse_marginal_mean", "pmse_dynamic_mean", "time_fit"]] > 0).all().all()
    assert np.isfinite(table["bic_mean"]).all()
    # the shares of "best" sum to 1 over the models of a setting
    for col in ("bic_best", "pmse_marginal_best", "pmse_dynamic_best"):
        assert table[col].groupby(level="setting").sum().round(10).eq(1).all()
    # the MEMoE separates the well-separated experts of example 3, case 1
    assert table.loc[("example3_case1", "memoe"), "accuracy"] > 0.8


def test_study_parameter_table(study):
    table = pd.read_csv(study / "summary_parameters.csv", index_col=[0, 1, 2, 3, 4])
    for col in ("truth", "bias", "sd", "se_oim", "se_robust", "cover_oim", "cover_robust", "n"):
        assert col in table.columns, col
    assert table[["cover_oim", "cover_robust"]].stack().between(0, 1).all()
    assert (table["n"] == 2).all()
    per_model = table.groupby(level=["setting", "model"]).size()
    for setting in SETTINGS:
        assert per_model[(setting, "memoe")] == 15        # 3 gate + 4 beta + 6 re_cov + 2 scale
        assert per_model[(setting, "moe")] == 7           # gate + beta only
        equal_variances = setting.startswith(("example1", "example3"))
        assert per_model[(setting, "shared")] == (11 if equal_variances else 7)
    assert "lmm" not in set(table.index.get_level_values("model"))
    ex2 = table.sort_index().loc[("example2", "memoe")]
    assert ex2.loc[("beta", "2", "Intercept"), "truth"] == 2.0
    assert ex2.loc[("scale", "2", "sigma2"), "truth"] == 0.25
    assert (table["se_oim"].dropna() > 0).all() and (table["sd"].dropna() >= 0).all()


def test_replication_reproducible_in_and_out_of_the_pool(study):
    """A replication rerun in this process gives the numbers the worker processes wrote."""
    raw_models = pd.read_csv(study / "raw" / "replications.csv")
    raw_params = pd.read_csv(study / "raw" / "parameters.csv", dtype={"expert": str})
    models, params = run_replication("example2", 1, SMALL)
    models, params = pd.DataFrame(models), pd.DataFrame(params)
    assert models["model"].tolist() == list(MODELS)
    old = raw_models[(raw_models["setting"] == "example2") & (raw_models["rep"] == 1)]
    for col in ("llf", "bic", "accuracy", "ari", "pmse_marginal", "pmse_dynamic"):
        assert np.allclose(old[col].to_numpy(), models[col].to_numpy(), rtol=1e-10,
                           equal_nan=True), col
    old = raw_params[(raw_params["setting"] == "example2") & (raw_params["rep"] == 1)]
    assert old["term"].tolist() == params["term"].tolist()
    for col in ("estimate", "se_oim", "se_robust"):
        assert np.allclose(old[col].to_numpy(), params[col].to_numpy(), rtol=1e-8), col
    # another replication drew other data
    rep0 = raw_models[(raw_models["setting"] == "example2") & (raw_models["rep"] == 0)]
    assert not np.allclose(rep0["llf"].to_numpy(), models["llf"].to_numpy())


def test_tables_rebuild_from_raw(study):
    before = pd.read_csv(study / "summary_parameters.csv")
    (study / "summary_parameters.csv").unlink()
    assert sim.main(["--out", str(study), "--tables-only", "--quiet"]) == 0
    after = pd.read_csv(study / "summary_parameters.csv")
    pd.testing.assert_frame_equal(before, after)


def test_plots_skipped_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)      # import now fails
    frame = pd.DataFrame({"setting": "example1", "rep": [0, 1], "model": "memoe",
                          "status": "ok", "pmse_marginal": [1.0, 1.2]})
    assert sim_report.plot_pmse(frame, "pmse_marginal", tmp_path / "x.png", "t") is False
    assert not (tmp_path / "x.png").exists()
