"""pymemoe.bootstrap_lrt: input checks, the p-value and the fields against a draw recomputed by
hand, reproducibility, independence of the number of threads, the refits' options, failed and
negative draws, the summary; slow: the rejection rate with two experts (power) and with one
(size).

The data are small mixtures of regressions (``re_formula="0"``, no random effects in the
truth), so that every draw's two fits take well under a second."""
import functools
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import pymemoe.blrt as blrt
from pymemoe import BootstrapLRTResult, MEMoE, bootstrap_lrt, simulate
from pymemoe._model.params import Params
from pymemoe.datasets import load_pbcseq
from pymemoe.exceptions import ConvergenceWarning

ONE = Params(gamma=np.zeros((1, 2)), beta=[[1.0, 0.3]], cov_re=np.zeros((1, 2, 2)), scale=[0.1])
TWO = Params(gamma=np.zeros((2, 2)), beta=[[0.0, 0.1], [1.5, 0.5]], cov_re=np.zeros((2, 2, 2)),
             scale=[0.1, 0.1])
# fast refits for the tests about bookkeeping (their optimum does not matter there)
CHEAP = {"n_starts": 1, "maxiter": 3, "polish": False}


def _fit(sim, K, fit=None, **model):
    kwargs = {**sim.formula_kwargs, "re_formula": "0", "gate_formula": "~ 1", **model}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MEMoE.from_formula(data=sim.data, n_experts=K, **kwargs).fit(
            **{"n_starts": 2, "random_state": 0, "cov_type": "none", **(fit or {})})


@pytest.fixture(scope="module")
def null_sim():
    return simulate(ONE, 80, visits=4, random_state=0)


@pytest.fixture(scope="module")
def null_fits(null_sim):
    return _fit(null_sim, 1), _fit(null_sim, 2)


@pytest.fixture(scope="module")
def null_test(null_fits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bootstrap_lrt(*null_fits, n_boot=4, random_state=0, n_jobs=1)


# -- input checks ---------------------------------------------------------------------------

def test_invalid_inputs_raise(null_sim, null_fits):
    restricted, full = null_fits
    with pytest.raises(ValueError, match="pass the fit with fewer experts first"):
        bootstrap_lrt(full, restricted)
    with pytest.raises(ValueError, match="exactly one more expert"):
        bootstrap_lrt(full, full)
    with pytest.raises(ValueError, match="fitted MEMoEResults"):
        bootstrap_lrt(restricted, "full")
    other = simulate(ONE, 80, visits=4, random_state=1)
    with pytest.raises(ValueError, match=r"the data \(endog differs\)"):
        bootstrap_lrt(restricted, _fit(other, 2, fit=CHEAP))
    with pytest.raises(ValueError, match=r"scale \('expert' vs 'shared'\)"):
        bootstrap_lrt(restricted, _fit(null_sim, 2, fit=CHEAP, scale="shared"))
    with pytest.raises(ValueError, match="gate_formula"):
        bootstrap_lrt(restricted, _fit(null_sim, 2, fit=CHEAP, gate_formula="~ x1"))
    X = np.column_stack([np.ones(len(null_sim.data)), null_sim.data["time"]])
    arrays = MEMoE(null_sim.data["y"], X, null_sim.data["id"], exog_re=np.empty((len(X), 0)),
                   n_experts=1).fit()
    with pytest.raises(ValueError, match="fitted from arrays"):
        bootstrap_lrt(arrays, full)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="n_boot"):
            bootstrap_lrt(restricted, full, n_boot=bad)
    with pytest.raises(ValueError, match="n_jobs"):
        bootstrap_lrt(restricted, full, n_jobs=0)
    with pytest.raises(ValueError, match="set per refit|sets them itself"):
        bootstrap_lrt(restricted, full, fit_kwargs={"random_state": 1})
    with pytest.raises(ValueError, match=r"unknown options \['n_start'\]"):
        bootstrap_lrt(restricted, full, fit_kwargs={"n_start": 5})


# -- the statistic, the p-value and the draws -------------------------------------------------

def test_pvalue_and_fields_are_consistent(null_fits, null_test):
    restricted, full = null_fits
    test = null_test
    assert isinstance(test, BootstrapLRTResult)
    assert test.n_experts == (1, 2) and test.n_boot == 4 and test.n_jobs == 1
    assert test.llf == (restricted.llf, full.llf)
    assert test.statistic == pytest.approx(2 * (full.llf - restricted.llf))
    assert test.statistic > 0
    null = test.null_distribution
    assert null.shape == (4,) and not null.flags.writeable
    assert test.n_valid == 4 and test.n_failed == 0 and test.failures == ()
    expected = (1 + np.sum(null >= test.statistic)) / (len(null) + 1)
    assert test.pvalue == pytest.approx(expected)
    assert 0.2 <= test.pvalue <= 1.0
    draws = test.draws
    assert list(draws.index) == [1, 2, 3, 4] and draws.index.name == "draw"
    np.testing.assert_allclose(draws["statistic"],
                               2 * (draws["llf_full"] - draws["llf_restricted"]))
    np.testing.assert_allclose(null, np.maximum(draws["statistic"], 0.0))
    assert (draws["error"] == "").all()
    # the draws are different data sets: distinct log-likelihoods
    assert draws["llf_restricted"].nunique() == 4
    q = test.quantiles([0.5, 0.95])
    np.testing.assert_allclose(q.to_numpy(), np.quantile(null, [0.5, 0.95]))
    assert test.elapsed > 0


def test_a_draw_recomputed_by_hand(null_fits, null_test):
    """Draw 1 is: simulate from the restricted fit with the first spawned seed, refit both
    models with the tested fits' options, take twice the difference of the log-likelihoods."""
    restricted, full = null_fits
    sim_seed, seed0, seed1 = np.random.SeedSequence(0).spawn(4)[0].spawn(3)
    sim = simulate(restricted, random_state=sim_seed)
    llf = []
    for K, seed in ((1, seed0), (2, seed1)):
        model = MEMoE.from_formula(data=sim.data, **sim.formula_kwargs,
                                   **{**sim.model_kwargs, "n_experts": K})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            llf.append(model.fit(n_starts=2, random_state=seed, cov_type="none").llf)
    row = null_test.draws.loc[1]
    assert (row["llf_restricted"], row["llf_full"]) == pytest.approx(tuple(llf), rel=1e-10)
    assert row["statistic"] == pytest.approx(2 * (llf[1] - llf[0]))


def test_same_seed_same_result_whatever_n_jobs(null_fits, null_test):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = bootstrap_lrt(*null_fits, n_boot=4, random_state=0, n_jobs=2)
        other = bootstrap_lrt(*null_fits, n_boot=2, random_state=1, n_jobs=1, fit_kwargs=CHEAP)
    assert again.n_jobs == 2
    np.testing.assert_array_equal(again.null_distribution, null_test.null_distribution)
    pd.testing.assert_frame_equal(again.draws, null_test.draws)
    assert again.pvalue == null_test.pvalue
    assert again.warning_counts == null_test.warning_counts
    assert not np.isin(other.draws["llf_restricted"], null_test.draws["llf_restricted"]).any()


def test_summary_and_repr_show_the_numbers(null_test):
    text = null_test.summary()
    assert str(null_test) == text
    assert "Bootstrap likelihood ratio test: 1 against 2 experts" in text
    assert f"{null_test.statistic:.3f}" in text
    assert f"{null_test.pvalue:.3f}" in text
    for value in null_test.quantiles():
        assert f"{value:.3f}" in text
    assert "Draws requested" in text and "chi-square" in text
    for label in ("Draws used (B)", "Failed draws (left out)", "Draws with LR < 0 (set to 0)"):
        line = next(line for line in text.splitlines() if line.startswith(label))
        assert line.split()[-1] == {"Draws used (B)": "4"}.get(label, "0")
    rep = repr(null_test)
    assert rep.startswith("<BootstrapLRTResult 1 vs 2 experts")
    assert f"p={null_test.pvalue:.4g}" in rep and "B=4/4" in rep


# -- the refits ---------------------------------------------------------------------------------

def test_refits_use_the_tested_fits_options(null_sim, monkeypatch):
    restricted = _fit(null_sim, 1, fit={"maxiter": 7, "tol": 1e-5})
    full = _fit(null_sim, 2, fit={"n_starts": 3, "maxiter": 4, "polish": False, "tol": 1e-4})
    stored = blrt.stored_fit_options(full)
    assert {"n_starts": 3, "maxiter": 4, "tol": 1e-4, "polish": False}.items() <= stored.items()
    assert not {"random_state", "n_jobs", "cov_type", "progress"} & set(stored)
    calls = []
    original = MEMoE.fit

    @functools.wraps(original)          # keeps fit's signature, which bootstrap_lrt checks
    def recording_fit(self, **kwargs):
        calls.append((self.n_experts, kwargs))
        return original(self, **kwargs)

    monkeypatch.setattr(MEMoE, "fit", recording_fit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # such short refits miss their maxima
        bootstrap_lrt(restricted, full, n_boot=2, random_state=0, n_jobs=1)
        bootstrap_lrt(restricted, full, n_boot=1, random_state=0, n_jobs=1,
                      fit_kwargs={"maxiter": 2})
    assert [K for K, _ in calls] == [1, 2, 1, 2, 1, 2]
    for K, kwargs in calls:
        assert kwargs["n_jobs"] == 1 and kwargs["cov_type"] == "none"
        assert isinstance(kwargs["random_state"], np.random.SeedSequence)
    assert calls[0][1]["maxiter"] == 7 and calls[0][1]["tol"] == 1e-5
    assert calls[1][1]["n_starts"] == 3 and calls[1][1]["polish"] is False
    assert calls[1][1]["maxiter"] == 4
    assert calls[4][1]["maxiter"] == 2 and calls[5][1]["maxiter"] == 2   # fit_kwargs win
    # every fit has its own seed
    keys = {kwargs["random_state"].spawn_key for _, kwargs in calls[:4]}
    assert len(keys) == 4


def test_refit_warnings_are_counted_not_issued(null_fits):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        test = bootstrap_lrt(*null_fits, n_boot=3, random_state=0, fit_kwargs=CHEAP)
    assert test.n_jobs == 1      # the default for small data: threads would only add overhead
    # three EM iterations do not converge with two experts (one expert, a linear regression,
    # converges at once): every K = 2 refit says so, counted as one kind of message
    assert test.n_not_converged == (0, 3)
    assert (test.draws["warnings_full"] >= 1).all()
    kinds = [k for k in test.warning_counts if k.startswith("the fit did not converge")]
    assert len(kinds) == 1 and test.warning_counts[kinds[0]] == 3
    messages = [str(w.message) for w in caught]
    assert not any("did not converge" in m for m in messages), messages
    assert len(messages) <= 1          # at most the one summary warning of bootstrap_lrt


class _LowerLLF:
    """A fitted results object whose log-likelihood is ``shift`` lower (a missed maximum)."""

    def __init__(self, results, shift):
        self._results, self.llf = results, results.llf - shift

    def __getattr__(self, name):
        return getattr(self._results, name)


def test_negative_draws_are_counted_and_set_to_zero(null_fits, monkeypatch):
    # draws 1 and 3: the K = 2 refit ends 0.5 below the K = 1 refit of the same data
    original, state = MEMoE.fit, {"draw": 0, "llf": None}

    @functools.wraps(original)
    def missing_fit(self, **kwargs):
        res = original(self, **kwargs)
        if self.n_experts == 1:
            state["draw"] += 1
            state["llf"] = res.llf
            return res
        if state["draw"] in (1, 3):
            return _LowerLLF(res, res.llf - state["llf"] + 0.5)
        return res

    monkeypatch.setattr(MEMoE, "fit", missing_fit)
    with pytest.warns(ConvergenceWarning, match="2 of 4 draws had a fit with 2 experts below"):
        test = bootstrap_lrt(*null_fits, n_boot=4, random_state=0, n_jobs=1, fit_kwargs=CHEAP)
    raw = test.draws["statistic"].to_numpy()
    np.testing.assert_allclose(raw[[0, 2]], -1.0)
    assert test.n_negative == 2
    np.testing.assert_array_equal(test.null_distribution, np.maximum(raw, 0.0))
    assert test.null_distribution[0] == 0.0 and test.null_distribution[2] == 0.0
    assert "2 draws had a K = 2 fit below the K = 1 fit" in test.summary()
    assert "negative=2" in repr(test)


def test_full_fit_below_restricted_warns(null_fits):
    restricted, full = null_fits
    bad = _LowerLLF(full, full.llf - restricted.llf + 1.0)
    with pytest.warns(ConvergenceWarning, match="missed its maximum"):
        test = bootstrap_lrt(restricted, bad, n_boot=1, random_state=0, n_jobs=1,
                             fit_kwargs=CHEAP)
    assert test.statistic == 0.0 and test.pvalue == 1.0
    # within rounding of the optimisers: no warning, statistic 0
    close = _LowerLLF(full, full.llf - restricted.llf + 1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        test = bootstrap_lrt(restricted, close, n_boot=1, random_state=0, n_jobs=1,
                             fit_kwargs={"n_starts": 2})
    assert test.statistic == 0.0


def test_failed_draws_are_left_out(null_fits, monkeypatch):
    calls = {"n": 0}
    real = blrt.simulate

    def sometimes_failing(results, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise np.linalg.LinAlgError("expert 2 emptied")
        return real(results, **kwargs)

    monkeypatch.setattr(blrt, "simulate", sometimes_failing)
    with pytest.warns(ConvergenceWarning, match="1 failed"):
        test = bootstrap_lrt(*null_fits, n_boot=3, random_state=0, n_jobs=1, fit_kwargs=CHEAP)
    assert test.n_failed == 1 and test.n_valid == 2 and test.n_boot == 3
    assert test.draws.loc[2, "error"] == "LinAlgError: expert 2 emptied"
    assert np.isnan(test.draws.loc[2, "statistic"])
    assert test.failures == ("draw 2: LinAlgError: expert 2 emptied",)
    expected = (1 + np.sum(test.null_distribution >= test.statistic)) / 3
    assert test.pvalue == pytest.approx(expected)
    assert "Failed draw 2: LinAlgError: expert 2 emptied" in test.summary()

    def always_failing(results, **kwargs):
        raise ValueError("no luck")

    monkeypatch.setattr(blrt, "simulate", always_failing)
    with pytest.raises(RuntimeError, match="every bootstrap draw failed.*no luck"):
        bootstrap_lrt(*null_fits, n_boot=2, random_state=0, n_jobs=1)


# -- the parametric bootstrap of a model with factors in the gating -----------------------------

def test_simulate_and_refit_with_factor_gating():
    df = load_pbcseq()
    df["year"] = df["day"] / 365.25
    model = MEMoE.from_formula("np.log(bili) ~ year", data=df, groups="id", re_formula="~ year",
                               gate_formula="~ C(sex) + age + C(trt)", n_experts=2)
    res = model.fit(n_starts=2, random_state=0, cov_type="none")
    sim = simulate(res, random_state=1)
    assert sim.formula_kwargs["gate_formula"] == "~ C(sex) + age + C(trt)"
    assert len(sim.data) == res.nobs
    refit_model = MEMoE.from_formula(data=sim.data, **sim.formula_kwargs, **sim.model_kwargs)
    assert refit_model.structure == model.structure
    np.testing.assert_array_equal(refit_model.exog_gate, model.exog_gate)
    refit = refit_model.fit(n_starts=2, random_state=0, cov_type="none")
    assert np.isfinite(refit.llf) and refit.n_experts == 2


# -- slow: rejection rates --------------------------------------------------------------------

def _rejections(truth, n_reps, n_boot, seed):
    """p-values of the test of 1 against 2 experts on ``n_reps`` data sets drawn from ``truth``
    (100 subjects, 4 visits)."""
    pvalues = []
    for rep in range(n_reps):
        sim = simulate(truth, 100, visits=4, random_state=np.random.SeedSequence([seed, rep]))
        fits = _fit(sim, 1), _fit(sim, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test = bootstrap_lrt(*fits, n_boot=n_boot, random_state=np.random.SeedSequence([seed, rep, 1]),
                                 n_jobs=1)
        assert test.n_failed == 0
        pvalues.append(test.pvalue)
    return np.array(pvalues)


@pytest.mark.slow
def test_two_separated_experts_are_found():
    """Power: data from two well-separated experts; the test rejects one expert at 5% (with
    B = 19 the p-value is 0.05 exactly when LR beats every draw)."""
    start = time.perf_counter()
    p = _rejections(TWO, n_reps=8, n_boot=19, seed=101)
    rate = np.mean(p <= 0.05)
    print(f"\npower: rejection rate at 5% {rate:.2f} over {p.size} data sets "
          f"(p-values {np.round(p, 3).tolist()}; {time.perf_counter() - start:.0f} s)")
    assert rate >= 0.9


@pytest.mark.slow
def test_one_expert_rejected_at_about_the_nominal_rate():
    """Size: data from one expert. With B = 19 a valid test rejects at 5% with probability 0.05
    exactly, and its p-value is uniform on {1/20, ..., 1} (mean 0.525, SD 0.29). Over 20 data
    sets, more than 4 rejections has probability 0.003 for a valid test, and a mean p-value
    outside [0.3, 0.75] is 3.4 standard errors away; an anti-conservative test (draws of the
    null pulled down by missed maxima) fails both."""
    start = time.perf_counter()
    p = _rejections(ONE, n_reps=20, n_boot=19, seed=202)
    rate5, rate10 = np.mean(p <= 0.05), np.mean(p <= 0.10)
    print(f"\nsize: rejection rate at 5% {rate5:.2f}, at 10% {rate10:.2f}, mean p-value "
          f"{p.mean():.3f} over {p.size} data sets ({time.perf_counter() - start:.0f} s)")
    assert rate5 <= 0.2
    assert 0.3 <= p.mean() <= 0.75
