"""The fit on a ``dask.distributed`` cluster: statistics kept on worker processes, every pass as
tasks there, the same fit as in memory, and no per-subject statistics brought to the driver
beyond the sample the starts ask for.

One ``LocalCluster`` (two worker processes, one thread each) serves the module. The data are
simulated (``tests/truth.py``) and their rows shuffled over five input partitions, so that
almost every subject spans several; ``from_dask`` brings each subject's rows together in three
partitions of whole subjects.
"""
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
import dask  # noqa: E402

from pymemoe import MEMoE  # noqa: E402
from pymemoe._estimation.inference import cov_robust
from pymemoe._execution.blocks import LocalBlocks
from pymemoe._model.likelihood import e_step
from pymemoe.chunked import from_dask  # noqa: E402
from pymemoe.distributed import DaskBlocks, DistributedData, DistributedEStep  # noqa: E402
from pymemoe.families.gaussian import SubjectData

from truth import simulate_memoe  # noqa: E402

MODEL = dict(re_formula="~ time", gate_formula="~ x1 + x2", n_experts=2)
STATISTICS = ("n_obs", "xx", "xz", "zz", "xy", "zy", "yy", "exog_gate")


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # e.g. a dashboard port already in use
        cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                           dashboard_address=None)
        with distributed.Client(cluster) as active:
            yield active
        cluster.close()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return simulate_memoe(400, seed=3)


@pytest.fixture(scope="module")
def shuffled(frame):
    """The rows in random order over five partitions: subjects span partitions."""
    return dd.from_pandas(frame.sample(frac=1.0, random_state=1), npartitions=5, sort=False)


@pytest.fixture(scope="module")
def in_memory(frame):
    model = MEMoE.from_formula("y ~ time", frame, "id", **MODEL)
    return model, model.fit(random_state=0)


@pytest.fixture(scope="module")
def on_cluster(client, shuffled):
    model = from_dask("y ~ time", shuffled, "id", npartitions=3, **MODEL)
    return model, model.fit(random_state=0)


def _rows(obj, depth=0) -> int:
    """The largest number of rows (first axis) of an array or index inside a gathered object."""
    if isinstance(obj, (np.ndarray, pd.Index)):
        return obj.shape[0] if obj.ndim else 0
    if depth > 5:
        return 0
    if isinstance(obj, (list, tuple)):
        return max((_rows(item, depth + 1) for item in obj), default=0)
    if isinstance(obj, dict):
        return max((_rows(item, depth + 1) for item in obj.values()), default=0)
    if hasattr(obj, "__dict__"):
        return max((_rows(item, depth + 1) for item in vars(obj).values()), default=0)
    return 0


def test_subjects_spanning_partitions_are_whole_in_one_partition(on_cluster, in_memory, shuffled):
    model, _ = on_cluster
    reference, _ = in_memory
    parts = shuffled.to_delayed()
    spans = pd.concat([p.compute()[["id"]].assign(part=j) for j, p in enumerate(parts)])
    assert (spans.groupby("id")["part"].nunique() > 1).mean() > 0.9   # the test's premise
    data = model.data
    assert isinstance(data, DistributedData) and isinstance(data.as_blocks(), DaskBlocks)
    assert data.npartitions == 3
    assert data.n_groups == reference.data.n_groups and data.nobs == reference.data.nobs
    assert data.subjects.is_unique and data.subjects.equals(reference.data.subjects)
    gathered = data.to_subject_data()
    assert isinstance(gathered, SubjectData)
    for name in STATISTICS:
        np.testing.assert_allclose(getattr(gathered, name), getattr(reference.data, name),
                                   rtol=1e-13, atol=1e-11, err_msg=name)
    np.testing.assert_allclose(data.array("xx").sum(axis=0), reference.data.xx.sum(axis=0),
                               rtol=1e-13)


def test_fit_on_the_cluster_equals_the_fit_in_memory(on_cluster, in_memory):
    (model, dist), (reference, mem) = on_cluster, in_memory
    assert abs(dist.llf - mem.llf) <= 1e-8
    np.testing.assert_allclose(dist.params, mem.params, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(dist.bse, mem.bse, rtol=1e-5)
    robust = [np.sqrt(np.diag(cov_robust(m.data, m.structure, r.state).cov))
              for m, r in ((model, dist), (reference, mem))]
    np.testing.assert_allclose(robust[0], robust[1], rtol=1e-5)
    assert dist.posterior.index.equals(mem.posterior.index)
    # the same maximum (llf to 1e-8 above); sums in another order move the point where the
    # polish stops along its flattest direction by some 1e-6 (the parameters' tolerance above),
    # and what is computed from the parameters with it (the E-step itself is compared at equal
    # parameters in the next test)
    np.testing.assert_allclose(dist.posterior, mem.posterior, rtol=0, atol=1e-6)
    np.testing.assert_allclose(dist.prior, mem.prior, rtol=0, atol=1e-6)
    np.testing.assert_allclose(dist.random_effects, mem.random_effects, rtol=0, atol=2e-6)
    assert dist.entropy == pytest.approx(mem.entropy, rel=1e-8)
    assert dist.n_groups == mem.n_groups and dist.nobs == mem.nobs
    assert dist.converged and "Expert 2" in dist.summary().as_text()


def test_posterior_stays_on_the_workers_until_asked_for(on_cluster, in_memory):
    (model, dist), (reference, mem) = on_cluster, in_memory
    estep = model.data.e_step(dist.state)
    assert isinstance(estep, DistributedEStep) and "tau" not in vars(estep)
    assert estep.llf == pytest.approx(mem.llf, abs=1e-8)
    lazy = estep.posterior_frame()
    assert isinstance(lazy, dd.DataFrame)
    computed = lazy.compute()
    assert computed.index.equals(mem.posterior.index)
    # the in-memory E-step at the same parameters: equal to rounding
    here = e_step(reference.data, dist.state).tau
    np.testing.assert_allclose(computed.to_numpy(), here, rtol=0, atol=1e-12)
    np.testing.assert_allclose(estep.to_dask("b_hat").compute(),
                               np.asarray(estep.moments.b_hat), atol=0)


def test_fit_brings_no_per_subject_statistics_to_the_driver(client, on_cluster, monkeypatch):
    """Every result that reaches the driver goes through ``client.gather``: record them all
    during a fit and its standard errors, with the starts' sample limited to 150 of the 400
    subjects; then check that the record does see all subjects once the posterior is asked."""
    model, _ = on_cluster
    limit = 150
    monkeypatch.setattr(model.data.as_blocks(), "sample_limit", limit)
    calls = []                                    # per gather call: (rows, any SubjectData)
    gather = client.gather

    def recording(futures, *args, **kwargs):
        out = gather(futures, *args, **kwargs)
        items = out if isinstance(futures, list) else [out]
        calls.append((sum(_rows(item) for item in items),
                      any(isinstance(item, SubjectData) for item in items)))
        return out

    monkeypatch.setattr(client, "gather", recording)
    passes = model.data.traffic.passes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(n_starts=2, random_state=0)
        res.bse                                   # the standard errors too
    assert model.data.traffic.passes - passes > 20          # the passes ran on the workers
    assert sum(rows for rows, sample in calls if sample) == limit    # the starts' sample
    assert max(rows for rows, sample in calls if not sample) < 50    # partial sums only
    calls.clear()
    res.posterior                                 # asked for: now every subject comes
    assert sum(rows for rows, _ in calls) >= model.data.n_groups


def test_sample_draws_the_subjects_an_in_memory_sample_draws(on_cluster, in_memory):
    (model, _), (reference, _) = on_cluster, in_memory
    ours = model.data.as_blocks().sample(25, np.random.default_rng(7))
    theirs = LocalBlocks(reference.data).sample(25, np.random.default_rng(7))
    assert ours.subjects.equals(theirs.subjects)
    np.testing.assert_allclose(ours.xx, theirs.xx, rtol=1e-13)
    blocks = model.data.as_blocks()
    blocks.sample_limit, limit = 10, blocks.sample_limit
    try:
        assert blocks.sample(10 ** 9, np.random.default_rng(0)).n_groups == 10
    finally:
        blocks.sample_limit = limit


def test_gathering_is_explicit(on_cluster):
    model, _ = on_cluster
    with pytest.raises(TypeError, match="do not pickle.*to_subject_data"):
        pickle.dumps(model.data)
    with pytest.raises(ValueError, match="axis=0"):
        model.data.array("xx").sum(axis=1)
    assert np.asarray(model.data.array("yy")).shape == (model.data.n_groups,)
    # the per-subject arrays are asked for by name; the former attributes still work, with
    # a FutureWarning, and other names are not attributes
    with pytest.warns(FutureWarning, match=r"model.data.array\('yy'\)"):
        old = model.data.yy
    np.testing.assert_array_equal(np.asarray(old), np.asarray(model.data.array("yy")))
    with pytest.raises(AttributeError, match="no attribute 'zzz'"):
        model.data.zzz
    with pytest.raises(ValueError, match="no per-subject array 'zzz'"):
        model.data.array("zzz")


def test_without_the_client_the_statistics_are_gathered(client, shuffled, in_memory):
    reference, _ = in_memory
    model = from_dask("y ~ time", shuffled, "id", scheduler="sync", **MODEL)
    assert isinstance(model.data, SubjectData)
    np.testing.assert_allclose(model.data.xy, reference.data.xy, rtol=1e-13)


def test_unorderable_labels_are_hashed_to_partitions(client, frame, in_memory):
    reference, _ = in_memory
    labels = {i: (f"s{i}" if i % 2 else i) for i in frame["id"].unique()}   # ints and strings
    mixed = frame.assign(id=frame["id"].map(labels).astype(object))
    with dask.config.set({"dataframe.convert-string": False}):   # keep ints and strings
        ddf = dd.from_pandas(mixed, npartitions=4, sort=False)
        model = from_dask("y ~ time", ddf, "id", npartitions=3, **MODEL)
    assert model.data.npartitions == 3 and model.data.subjects.is_unique
    data = model.data.to_subject_data()
    order = pd.Index(data.subjects).get_indexer([labels[i] for i in reference.data.subjects])
    assert (order >= 0).all()
    np.testing.assert_allclose(data.xx[order], reference.data.xx, rtol=1e-13)


def test_gating_covariate_differing_across_partitions_names_column_and_subject(client, frame):
    bad = frame.copy()
    bad.loc[bad.index[-1], "x1"] += 1.0               # one row of the last subject differs
    subject = bad.loc[bad.index[-1], "id"]
    ddf = dd.from_pandas(bad.sample(frac=1.0, random_state=2), npartitions=4, sort=False)
    with pytest.raises(ValueError, match=rf"'x1'.*subject {subject}"):
        from_dask("y ~ time", ddf, "id", npartitions=2, **MODEL)
