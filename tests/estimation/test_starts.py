"""The default start strategy (pymemoe._estimation.starts): it reaches the best known maximum where
the earlier default's independent starts stop at local maxima, and ``res.starts`` / ``res.n_best``
report the evidence.

Best known maxima (llf) of the PBCseq models (``np.log(bili) ~ year``, random intercept and
slope, gating ``~ C(sex) + age + C(trt)``): the highest values of at least 200 long EM runs from
random starts (the starts study of issue 12); the K = 3 value is re-computed here by the dense
scipy log-likelihood of tests/truth.py at the fitted estimates, independently of pymemoe's
kernel. Seeds 1, 2 and 5 are seeds where the earlier default (``starts="independent"``)
stops at the local maximum -1288.30 and says "converged".
"""
import warnings

import numpy as np
import pytest

from pymemoe import MEMoE
from pymemoe._estimation.starts import CARRY_Z, LLF_TOL, behind_z, initial_tau, split_tau
from pymemoe.exceptions import BestNotReplicatedWarning
from pymemoe.selection import compare_experts

from truth import dense_loglike_results, simulate_memoe

GATE = "~ C(sex) + age + C(trt)"
BEST_PBC3 = -1281.445089
BEST_PBC4 = -1263.487382
BEST_SHARED3 = -1474.929319


def pbc_model(pbc, K, **kwargs):
    return MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                              gate_formula=kwargs.pop("gate_formula", GATE), n_experts=K, **kwargs)


def quiet_fit(model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BestNotReplicatedWarning)
        return model.fit(cov_type="none", **kwargs)


def dense_llf(res, pbc):
    y = pbc["logbili"].to_numpy()
    X = np.column_stack([np.ones(len(pbc)), pbc["year"]])
    columns = {"Intercept": np.ones(len(pbc)), "age": pbc["age"].to_numpy(),
               "C(sex)[T.m]": (pbc["sex"] == "m").to_numpy(float),
               "C(trt)[T.1]": (pbc["trt"] == 1).to_numpy(float)}
    W = np.column_stack([columns[name] for name in res.gate_params.index])
    return dense_loglike_results(res, pbc, y, X, X, W, pbc["id"].to_numpy())


@pytest.fixture(scope="module")
def pbc3(pbc):
    return pbc_model(pbc, 3)


@pytest.mark.parametrize("seed", [1, 2, 5])
def test_default_reaches_the_best_known_maximum_where_independent_starts_do_not(pbc3, pbc, seed):
    old = quiet_fit(pbc3, random_state=seed, starts="independent")
    assert old.llf < BEST_PBC3 - 1.0            # the defect: a local maximum ...
    assert old.converged                        # ... reported as converged
    res = quiet_fit(pbc3, random_state=seed)
    assert res.llf == pytest.approx(BEST_PBC3, abs=1e-3)
    assert res.converged
    if seed == 1:   # the value itself, by a dense log-likelihood independent of the kernel
        assert dense_llf(res, pbc) == pytest.approx(res.llf, abs=1e-6)


def test_starts_table_is_complete_and_consistent(pbc3):
    res = quiet_fit(pbc3, random_state=0)
    starts = res.starts
    assert list(starts.columns) == ["n_experts", "kind", "seed", "subjects", "llf_start",
                                    "llf_screen", "llf", "n_iter", "converged", "emptied",
                                    "polished", "reached_best", "chosen", "z_behind",
                                    "carried"]
    assert starts["carried"].isna().all()          # no subsample: nothing to carry
    mine = starts[starts["n_experts"] == 3]
    chain = starts[starts["n_experts"] == 2]
    # 10 other starts and two split starts (principal axis, 2-means) per expert of the K - 1
    # fit, itself grown from K = 1
    assert len(mine) == 14 and (mine["kind"] == "split").sum() == 2
    assert (mine["kind"] == "split 2-means").sum() == 2
    assert len(chain) == 12 and chain["kind"].str.startswith("split").sum() == 2
    assert starts["chosen"].sum() == 1
    chosen = starts[starts["chosen"]].iloc[0]
    assert chosen["n_experts"] == 3 and chosen["reached_best"] and chosen["polished"]
    assert chosen["llf"] == pytest.approx(res.llf, abs=1e-8)
    assert mine["llf"].max() == pytest.approx(res.llf, abs=1e-8)
    assert (starts["subjects"] == res.n_groups).all()
    finished = mine[mine["llf"].notna()]
    assert res.n_finished == len(finished)
    assert res.n_best == int(mine["reached_best"].sum()) >= 2
    assert (finished.loc[finished["reached_best"], "llf"] >= res.llf - LLF_TOL).all()
    assert (finished.loc[~finished["reached_best"], "llf"] < res.llf - LLF_TOL).all()
    # EM never lowers the log-likelihood of a start
    assert (finished["llf"] >= finished["llf_start"]).all()
    assert np.array_equal(res.start_llfs, mine["llf"].to_numpy())
    assert f"{res.n_best} of {res.n_finished} finished starts" in str(res.summary())


def test_warning_when_a_single_start_reaches_the_best(pbc3):
    # the earlier default's ten independent starts, seed 0: one start alone reaches -1281.45, the
    # other nine stop at local maxima (a case the default strategy replicates)
    with pytest.warns(BestNotReplicatedWarning, match=r"only 1 of the 10 finished starts.*n_starts"):
        res = pbc3.fit(random_state=0, cov_type="none", starts="independent")
    assert res.n_best == 1 and res.n_finished == 10
    assert res.llf == pytest.approx(BEST_PBC3, abs=1e-3)
    assert any("only 1 of the 10" in m for m in res.messages)
    assert res.starts["reached_best"].sum() == 1
    assert (res.starts["kind"].isin(["kmeans", "random"])).all()
    # replicated: no such warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", BestNotReplicatedWarning)
        again = pbc3.fit(random_state=0, cov_type="none")
    assert again.n_best >= 2


def test_squarem_and_plain_em_reach_the_same_maximum(pbc):
    from pymemoe._estimation.context import EMOptions, FitContext
    from pymemoe._estimation.em import run_start
    from pymemoe._estimation.passes import start_params_from_tau
    model = pbc_model(pbc, 2)
    ctx = FitContext.build(model.data, model.structure, EMOptions(tol=1e-10))
    from pymemoe._estimation.em import one_expert_fit
    one = one_expert_fit(ctx, ctx.blocks).params
    coefs = model.data.family.subject_coefficients(model.data, 2)
    tau = initial_tau("kmeans", 2, coefs, np.random.default_rng(4))
    p0 = start_params_from_tau(ctx, ctx.blocks, one, tau)
    plain = run_start(ctx, ctx.blocks, p0, 5000, accel=False)
    fast = run_start(ctx, ctx.blocks, p0, 5000, accel=True)
    assert plain.em_converged and fast.em_converged
    assert fast.llf == pytest.approx(plain.llf, abs=1e-5)
    assert fast.n_iter < plain.n_iter
    assert np.all(np.diff(fast.llf_trace) >= -1e-9 * np.abs(fast.llf_trace[1:]))


def test_split_tau_divides_one_expert_along_its_main_axis():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 2)) + [3.0, 0.0]
    b = rng.normal(size=(50, 2)) - [3.0, 0.0]
    coefs = np.vstack([a, b])
    tau = np.column_stack([np.full(100, 0.9), np.full(100, 0.1)])
    out = split_tau(tau, coefs, 0, smooth=0.0)
    assert out.shape == (100, 3)
    assert np.allclose(out.sum(axis=1), 1.0)
    assert np.allclose(out[:, 1], 0.1)                   # the other expert is untouched
    halves = out[:, 0] > out[:, 2]
    assert halves[:50].all() != halves[50:].any()        # the two clusters are separated
    assert abs(int(halves.sum()) - 50) <= 2


def test_initial_tau_kinds():
    coefs = np.random.default_rng(1).normal(size=(40, 2))
    for kind in ("kmeans", "random", "partition"):
        tau = initial_tau(kind, 3, coefs, np.random.default_rng(2))
        assert tau.shape == (40, 3) and np.allclose(tau.sum(axis=1), 1) and (tau > 0).all()
    with pytest.raises(ValueError, match="unknown start kind"):
        initial_tau("spectral", 3, coefs, np.random.default_rng(2))


def test_grow_from_and_compare_experts_seed_k_from_k_minus_1(pbc):
    comp = compare_experts("logbili ~ year", pbc, "id", n_experts=[1, 2, 3], re_formula="~ year",
                           gate_formula=GATE, random_state=0, fit_kwargs={"cov_type": "none"})
    three = comp.results[3]
    # the K = 2 fit of the comparison seeded K = 3: no K - 1 chain inside the K = 3 fit
    assert set(three.starts["n_experts"]) == {3}
    assert three.starts["kind"].str.startswith("split").sum() == 4
    assert three.llf == pytest.approx(BEST_PBC3, abs=1e-3)
    assert {"n_best", "n_finished"} <= set(comp.table.columns)
    assert comp.table.loc[3, "n_best"] == three.n_best
    model3 = pbc_model(pbc, 3)
    with pytest.raises(ValueError, match="grow_from must have 2 experts"):
        model3.fit(grow_from=comp.results[1])
    other = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year", n_experts=2)
    with pytest.raises(ValueError, match="same formulas"):
        model3.fit(grow_from=other.fit(n_starts=1, random_state=0, cov_type="none"))
    with pytest.raises(ValueError, match="grow_from"):
        compare_experts("logbili ~ year", pbc, "id", n_experts=[1, 2],
                        fit_kwargs={"grow_from": comp.results[1]})
    with pytest.raises(ValueError, match="starts must be"):
        model3.fit(starts="many")


def test_search_on_a_subsample_then_all_subjects():
    df = simulate_memoe(1200, seed=8)
    model = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=2)
    full = quiet_fit(model, random_state=0, sample_subjects=0)
    sampled = quiet_fit(model, random_state=0, sample_subjects=400)
    starts = sampled.starts
    on_sample = starts[starts["subjects"] == 400]
    on_all = starts[starts["subjects"] == 1200]
    assert len(on_sample) > 0 and 1 <= len(on_all) <= 2
    assert (on_all["kind"] == "from sample").all() and on_all["chosen"].sum() == 1
    assert on_all.loc[on_all["chosen"], "llf"].iloc[0] == pytest.approx(sampled.llf, abs=1e-8)
    # the same maximum as the search on all subjects
    assert sampled.llf == pytest.approx(full.llf, abs=1e-4)
    assert sampled.converged
    assert "of the subsample" in str(sampled.summary())
    # the distinct subsample solutions say how far behind the best they are, and exactly the
    # ones within CARRY_Z standard errors were run on all subjects
    candidates = on_sample[on_sample["z_behind"].notna()]
    assert (candidates["z_behind"] == 0.0).sum() == 1         # the best itself
    assert (candidates["carried"] == (candidates["z_behind"] < CARRY_Z)).all()
    assert len(on_all) == int(candidates["carried"].sum())


def test_a_runner_up_far_behind_on_the_sample_is_not_run_on_all_subjects():
    """behind_z: the deficit of a solution on all subjects estimated from the sample (the
    per-subject log-likelihood differences of a sample without replacement)."""
    rng = np.random.default_rng(3)
    population = rng.normal(0.2, 1.0, 100_000)             # d_i on all subjects: mean 0.2
    sample = rng.choice(population, 2500, replace=False)
    z = behind_z(sample, np.zeros(2500), 100_000)
    se = population.std() * np.sqrt((1 - 2500 / 100_000) / 2500)
    assert z == pytest.approx(sample.mean() / se, rel=0.05) and z > CARRY_Z
    # a runner-up ahead or level on the sample is carried
    assert behind_z(np.zeros(10), np.full(10, 0.5), 100) == -np.inf
    assert behind_z(rng.normal(size=500), rng.normal(size=500), 10_000) < CARRY_Z


# ---------------------------------------------------------------------------------------------
# Slow: the success rates of the issue (20 seeds each)


def _success(model, best, seeds=range(20), **kwargs):
    llfs = np.array([quiet_fit(model, random_state=s, **kwargs).llf for s in seeds])
    assert llfs.max() <= best + 1e-3, "above the best known value: verify it and update"
    return int((llfs >= best - LLF_TOL).sum()), llfs


@pytest.mark.slow
def test_pbc3_twenty_seeds(pbc3):
    hits, llfs = _success(pbc3, BEST_PBC3)
    print("PBCseq K = 3:", hits, "/ 20", np.round(llfs, 2))
    assert hits >= 19


@pytest.mark.slow
def test_pbc4_twenty_seeds(pbc):
    hits, llfs = _success(pbc_model(pbc, 4), BEST_PBC4)
    print("PBCseq K = 4:", hits, "/ 20", np.round(llfs, 2))
    assert hits >= 19


@pytest.mark.slow
def test_lcmm_shared_model_twenty_seeds(pbc):
    model = pbc_model(pbc, 3, gate_formula="~ 1", cov_re="shared", scale="shared")
    hits, llfs = _success(model, BEST_SHARED3)
    print("PBCseq shared K = 3:", hits, "/ 20", np.round(llfs, 2))
    assert hits >= 19


@pytest.mark.slow
def test_simulated_truth_twenty_seeds():
    """Known truth (tests/truth.py, K = 2, 400 subjects): every seed reaches the maximum that a
    fit started at the true parameters reaches."""
    df = simulate_memoe(400, seed=31)
    model = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=2)
    from pymemoe._model.params import Params, to_user

    from truth import TRUTH_K2
    truth = Params(**{k: np.asarray(v, float) for k, v in TRUTH_K2.items()})
    at_truth = quiet_fit(model, start_params=to_user(truth, model.structure)).llf
    hits, llfs = _success(model, max(at_truth, -np.inf))
    print("simulated K = 2:", hits, "/ 20", np.round(llfs, 2), "from the truth", at_truth)
    assert hits == 20


@pytest.mark.slow
def test_subsample_search_reaches_the_maximum_of_the_truth():
    """12,000 subjects (known truth, tests/truth.py): the default search on a 2,500-subject
    subsample reaches, for every seed, the maximum that EM started at the true parameters
    reaches on all subjects."""
    df = simulate_memoe(12_000, seed=41)
    model = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time",
                               gate_formula="~ x1 + x2", n_experts=2)
    from pymemoe._model.params import Params, to_user

    from truth import TRUTH_K2
    truth = Params(**{k: np.asarray(v, float) for k, v in TRUTH_K2.items()})
    at_truth = quiet_fit(model, start_params=to_user(truth, model.structure)).llf
    for seed in range(3):
        res = quiet_fit(model, random_state=seed)
        assert (res.starts["subjects"] == 2_500).any()      # the search ran on the subsample
        assert res.llf == pytest.approx(at_truth, abs=1e-4)
