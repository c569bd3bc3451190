"""Sufficient statistics built by chunks and by Dask partitions give the in-memory fit.

The chunks cut through subjects (rows sorted by subject and split in 7, and shuffled rows), so
every subject's sums are assembled from several partial sums. The per-subject statistics then
agree with ``MEMoE.from_formula`` on all rows to the order of floating-point summation (1e-12
relative asserted, about 1e-15 seen), the log-likelihoods to 1e-8 absolute (about 1e-12 seen)
and the parameters to the precision of the fit itself (1e-6 asserted: a perturbation of the
statistics at 1e-16 moves the point where the optimiser stops by up to about 1e-7, as a
permutation of the rows of the in-memory data does).
"""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import pymemoe.chunked as chunked
from pymemoe import MEMoE, simulate
from pymemoe.chunked import from_chunks, from_dask

FORMULA = "np.log(bili) ~ year"
PBC = dict(re_formula="~ year", gate_formula="~ age + C(sex)")
SIM = dict(re_formula="~ time", gate_formula="~ x1 + x2")
FIELDS = ("n_obs", "xx", "xz", "zz", "xy", "zy", "yy", "exog_gate")


def split(df: pd.DataFrame, n_chunks: int = 7, shuffle: bool = False, seed: int = 0) -> list:
    """Rows sorted by subject (or shuffled), cut into ``n_chunks`` pieces that split subjects."""
    if shuffle:
        df = df.iloc[np.random.default_rng(seed).permutation(len(df))]
    else:
        df = df.sort_values("id", kind="stable")
    return [df.iloc[rows] for rows in np.array_split(np.arange(len(df)), n_chunks)]


def assert_same_data(chunk_model: MEMoE, memory_model: MEMoE) -> None:
    a, b = chunk_model.data, memory_model.data
    assert a.subjects.equals(b.subjects)
    assert a.subjects.name == b.subjects.name
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=0, err_msg=name)
    np.testing.assert_array_equal(a.n_obs, b.n_obs)
    np.testing.assert_array_equal(a.exog_gate, b.exog_gate)
    assert chunk_model.structure == memory_model.structure
    assert chunk_model.n_dropped == memory_model.n_dropped


def assert_same_fit(chunk_model: MEMoE, memory_model: MEMoE, seed: int = 1) -> None:
    r1 = chunk_model.fit(n_starts=2, random_state=seed)
    r0 = memory_model.fit(n_starts=2, random_state=seed)
    assert abs(r1.llf - r0.llf) <= 1e-8 + 1e-10 * abs(r0.llf)
    assert r1.params.index.equals(r0.params.index)
    # the same maximum (llf to 1e-8); sums in another order move the point where the polish
    # stops along a flat gating direction by a few 1e-6
    np.testing.assert_allclose(r1.params, r0.params, rtol=1e-5, atol=1e-5)
    assert r1.nobs == r0.nobs and r1.n_groups == r0.n_groups and r1.n_dropped == r0.n_dropped
    pd.testing.assert_index_equal(r1.posterior.index, r0.posterior.index)


@pytest.fixture(scope="module")
def pbc_df(pbc) -> pd.DataFrame:
    return pbc[["id", "age", "sex", "bili", "year"]].copy()


@pytest.fixture(scope="module")
def pbc_memory(pbc_df) -> dict[int, MEMoE]:
    return {k: MEMoE.from_formula(FORMULA, pbc_df, "id", n_experts=k, **PBC) for k in (1, 2)}


@pytest.mark.parametrize("n_experts", [1, 2])
@pytest.mark.parametrize("shuffle", [False, True], ids=["sorted", "shuffled"])
def test_pbcseq_chunks_match_in_memory(pbc_df, pbc_memory, n_experts, shuffle):
    chunks = split(pbc_df, 7, shuffle=shuffle)
    spans = sum(c["id"].iloc[-1] == d["id"].iloc[0] for c, d in zip(chunks, chunks[1:]))
    assert shuffle or spans >= 5                       # the cuts go through subjects
    model = from_chunks(FORMULA, iter(chunks), "id", n_experts=n_experts, **PBC)
    assert model.endog is None and model.data.row_codes.size == 0
    assert_same_data(model, pbc_memory[n_experts])
    assert_same_fit(model, pbc_memory[n_experts])


def test_simulated_chunks_combined_every_chunk(sim500, monkeypatch):
    """Combining after every chunk (the periodic reduction) and generator input with empty
    chunks; a shared fixed effect, string subject labels."""
    df = sim500.assign(id="s" + sim500["id"].astype(str))
    kw = dict(SIM, shared_formula="~ x1")
    memory = MEMoE.from_formula("y ~ time", df, "id", n_experts=2, **kw)
    monkeypatch.setattr(chunked, "COMBINE_MIN_ROWS", 1)
    calls = []
    original = chunked._combine
    monkeypatch.setattr(chunked, "_combine", lambda parts, spec: calls.append(len(parts))
                        or original(parts, spec))

    def generate():
        yield df.iloc[:0]
        for i, chunk in enumerate(split(df, 11, shuffle=True, seed=5)):
            yield chunk
            if i == 3:
                yield df.iloc[:0]

    model = from_chunks("y ~ time", generate(), "id", n_experts=2, **kw)
    assert len(calls) >= 4                     # combined as it went (when pending >= total)
    assert model.structure.k_shared == 1
    assert_same_data(model, memory)
    assert_same_fit(model, memory, seed=7)


def test_read_csv_chunksize(sim500, tmp_path):
    path = tmp_path / "sim.csv"
    sim500.to_csv(path, index=False, float_format="%.17g")
    memory = MEMoE.from_formula("y ~ time", pd.read_csv(path), "id", n_experts=1, **SIM)
    model = from_chunks("y ~ time", pd.read_csv(path, chunksize=500), "id", n_experts=1, **SIM)
    assert_same_data(model, memory)


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
def test_missing_values_dropped_and_counted(pbc_df):
    df = pbc_df.copy()
    rows = np.arange(len(df))
    df.loc[rows[1000:1004], "bili"] = np.nan            # outcome missing
    df.loc[rows[[5, 1500]], "bili"] = 0.0                # log(0) = -inf: non-finite
    df.loc[rows[[1200, 1201]], "year"] = np.nan          # fixed and random effects
    df.loc[rows[[300]], "sex"] = None                    # categorical gating covariate
    df["id"] = df["id"].astype("Float64")
    df.loc[rows[[1800]], "id"] = pd.NA                   # subject identifier
    memory = MEMoE.from_formula(FORMULA, df, "id", n_experts=2, **PBC)
    assert memory.n_dropped == 10
    model = from_chunks(FORMULA, split(df, 7, shuffle=True, seed=3), "id", n_experts=2, **PBC)
    assert model.n_dropped == 10
    assert_same_data(model, memory)
    with pytest.raises(ValueError, match="missing='raise'"):
        from_chunks(FORMULA, split(df.sort_values("id", na_position="first"), 7), "id",
                    missing="raise", **PBC)
    clean = split(pbc_df.dropna(), 7)
    with pytest.raises(ValueError, match="missing='raise': chunk 3"):
        bad = [c.copy() for c in clean]
        bad[3].iloc[2, bad[3].columns.get_loc("bili")] = np.nan
        from_chunks(FORMULA, bad, "id", missing="raise", **PBC)


def test_gating_covariate_inconsistent_across_chunks(pbc_df):
    chunks = [c.copy() for c in split(pbc_df, 7)]
    subject = chunks[2]["id"].iloc[-1]
    assert subject == chunks[3]["id"].iloc[0]           # spans chunks 2 and 3
    chunks[3].loc[chunks[3]["id"] == subject, "age"] += 1.0
    with pytest.raises(ValueError, match=rf"'age' differs between chunks for subject {subject}"):
        from_chunks(FORMULA, chunks, "id", **PBC)
    within = [c.copy() for c in split(pbc_df, 7)]
    rows = within[4].index[within[4]["id"] == within[4]["id"].iloc[len(within[4]) // 2]]
    assert len(rows) >= 2
    within[4].loc[rows[-1], "age"] += 1.0
    with pytest.raises(ValueError, match="'age' varies within subject"):
        from_chunks(FORMULA, within, "id", **PBC)


def test_level_absent_from_first_chunk(pbc_df):
    df = pbc_df.sort_values(["sex", "id", "year"])      # the first chunk holds only "f"
    chunks = [df.iloc[rows] for rows in np.array_split(np.arange(len(df)), 4)]
    assert set(chunks[0]["sex"]) == {"f"} and "m" in set(chunks[-1]["sex"])
    with pytest.raises(ValueError, match=r"(?s)chunk \d+: gate_formula '~ age \+ C\(sex\)'.*"
                                         r"'m'.*spec_data=.*Categorical"):
        from_chunks(FORMULA, chunks, "id", **PBC)
    memory = MEMoE.from_formula(FORMULA, pbc_df, "id", n_experts=1, **PBC)
    # remedy 1: a representative sample, here without the subject column
    sample = pbc_df.drop_duplicates("sex").drop(columns="id")
    model = from_chunks(FORMULA, chunks, "id", n_experts=1, spec_data=sample, **PBC)
    assert_same_data(model, memory)
    # remedy 2: a Categorical dtype with all categories
    dtype = pd.CategoricalDtype(["f", "m"])
    model = from_chunks(FORMULA, [c.astype({"sex": dtype}) for c in chunks], "id", n_experts=1,
                        **PBC)
    assert_same_data(model, memory)


def test_stateful_transform_learnt_from_spec_data(pbc_df):
    kw = dict(re_formula="~ year", gate_formula="~ center(age) + C(sex)")
    memory = MEMoE.from_formula(FORMULA, pbc_df, "id", n_experts=1, **kw)
    chunks = split(pbc_df, 7)
    model = from_chunks(FORMULA, chunks, "id", n_experts=1, spec_data=pbc_df, **kw)
    assert_same_data(model, memory)
    first = from_chunks(FORMULA, chunks, "id", n_experts=1, **kw)   # centred on chunk 0's mean
    shift = chunks[0]["age"].mean() - pbc_df["age"].mean()
    np.testing.assert_allclose(first.data.exog_gate[:, 2], memory.data.exog_gate[:, 2] - shift)


def test_bad_input(pbc_df):
    with pytest.raises(ValueError, match="groups='subject' is not a column of the first chunk"):
        from_chunks(FORMULA, split(pbc_df), "subject", **PBC)
    with pytest.raises(ValueError, match="name of the subject column"):
        from_chunks(FORMULA, split(pbc_df), pbc_df["id"].to_numpy(), **PBC)
    with pytest.raises(ValueError, match="chunks is empty"):
        from_chunks(FORMULA, [], "id", **PBC)
    with pytest.raises(ValueError, match=r"chunk 2 lacks the column\(s\) \['age'\]"):
        chunks = split(pbc_df)
        chunks[2] = chunks[2].drop(columns="age")
        from_chunks(FORMULA, chunks, "id", **PBC)
    with pytest.raises(ValueError, match="chunk 1: expected a pandas DataFrame"):
        from_chunks(FORMULA, [pbc_df, pbc_df.to_numpy()], "id", **PBC)


def test_dask_partitions_match_in_memory(pbc_df, pbc_memory):
    dd = pytest.importorskip("dask.dataframe")
    shuffled = pbc_df.iloc[np.random.default_rng(11).permutation(len(pbc_df))]
    ddf = dd.from_pandas(shuffled, npartitions=5, sort=False)
    assert ddf.npartitions == 5
    model = from_dask(FORMULA, ddf, "id", n_experts=2, split_every=2, **PBC)
    assert_same_data(model, pbc_memory[2])
    assert_same_fit(model, pbc_memory[2])
    # missing values, counted across partitions; the synchronous scheduler
    df = pbc_df.copy()
    df.loc[df.index[[3, 700, 1500]], "bili"] = np.nan
    memory = MEMoE.from_formula(FORMULA, df, "id", n_experts=1, **PBC)
    model = from_dask(FORMULA, dd.from_pandas(df, npartitions=4), "id", n_experts=1,
                      scheduler="sync", **PBC)
    assert model.n_dropped == memory.n_dropped == 3
    assert_same_data(model, memory)


def test_dask_missing_gives_install_hint(pbc_df, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.dataframe", None)
    with pytest.raises(ImportError, match=r"pip install \"dask\[dataframe\]\""):
        from_dask(FORMULA, pbc_df, "id", **PBC)


def test_formula_names_from_the_callers_namespace(sim500):
    origin = 2.5  # noqa: F841 (a local that the formulas refer to)
    kw = dict(re_formula="~ I(time - origin)", gate_formula="~ x1 + x2")
    memory = MEMoE.from_formula("y ~ I(time - origin)", sim500, "id", n_experts=1, **kw)
    model = from_chunks("y ~ I(time - origin)", split(sim500, 3), "id", n_experts=1, **kw)
    assert model.structure.exog_names == ("Intercept", "I(time - origin)")
    assert_same_data(model, memory)
    dd = pytest.importorskip("dask.dataframe")
    model = from_dask("y ~ I(time - origin)", dd.from_pandas(sim500, npartitions=3), "id",
                      n_experts=1, **kw)
    assert_same_data(model, memory)


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
