"""Degenerate fits and reproducibility: a clear answer every time.

The promise: every fit either raises a ``ValueError`` (the input checks are in
``design/test_input.py``) or returns a result whose log-likelihood, parameters and posteriors
are finite (the posteriors sum to 1), with a warning that names the remedy when the fit is
degenerate and with ``converged`` and ``results.messages`` set honestly. Never a silent NaN,
never a numpy ``RuntimeWarning`` (the project's pytest configuration turns those into errors).

=====================================  ==================================================
case                                   documented behaviour
=====================================  ==================================================
``n_experts`` beyond the data          BoundaryWarning "fit fewer experts", converged
                                       False, finite llf, posteriors sum to 1
outcome scaled by 1e6 / 1e-6, time in  same fit up to scale: llf shifts by -n log(c),
days instead of years                  fixed effects and variances scale, posteriors
                                       equal, standard errors scale, the same
                                       ``converged`` (K = 1 and K = 2, fixed seed)
an expert that empties during EM       BoundaryWarning "fit fewer experts", converged
                                       False, finite result
random-effect variance at the boundary BoundaryWarning "drop that random effect",
                                       SE NaN with a HessianInversionWarning
complete separation in the gating      SeparationWarning "remove the separating
                                       covariate", finite llf
flat likelihood (identical experts)    ConvergenceWarning "experts 1 and 2 are identical",
                                       converged False, the message in
                                       ``results.messages``; finite result
no residual variation within subjects  BoundaryWarning "residual variance ... at the
(exact subject lines, random slopes)   boundary", finite result (sigma2 at its floor)
=====================================  ==================================================

Guarantees: the same ``random_state`` gives bit-identical results; fits are safe from several
threads (bit-identical to sequential fits); warnings are statsmodels' ``ConvergenceWarning``
subclasses or ``HessianInversionWarning``.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from statsmodels.tools.sm_exceptions import ConvergenceWarning, HessianInversionWarning

from pymemoe import MEMoE
from pymemoe.exceptions import BoundaryWarning, SeparationWarning

from helpers import FORMULA, GATE, assert_same_results, assert_valid, fit_recording, messages_of

# -- helpers -------------------------------------------------------------------------------------


def simulate(n: int = 120, visits: int = 5, beta=((0.0, 0.5), (3.0, -0.5)), sd_re=(0.7, 0.2),
             sigma: float = 0.3, seed: int = 0, separate: bool = False) -> pd.DataFrame:
    """Regular visits on [0, 4]; random intercept and slope; expert 2 for x > 0 when
    ``separate`` (a gating covariate that separates the experts perfectly), else at random."""
    rng = np.random.default_rng(seed)
    K = len(beta)
    x = rng.normal(size=n)
    expert = (x > 0).astype(int) if separate else rng.integers(0, K, size=n)
    ids = np.repeat(np.arange(n), visits)
    t = np.tile(np.linspace(0.0, 4.0, visits), n)
    b = rng.normal(size=(n, 2)) * np.asarray(sd_re)
    B = np.asarray(beta)[expert]
    y = B[ids, 0] + b[ids, 0] + (B[ids, 1] + b[ids, 1]) * t + rng.normal(scale=sigma, size=n * visits)
    return pd.DataFrame({"id": ids, "time": t, "x": x[ids], "y": y, "expert": expert[ids] + 1})


# -- 1. pickling and save/load ----------------------------------------------------------------


# -- 2. the catalogue: bad input -------------------------------------------------------------


def _few_subjects(pbc, n=15):
    return pbc[pbc["id"] <= n]


def test_n_experts_beyond_the_data_em(pbc):
    """Five experts for 15 subjects: a BoundaryWarning naming the remedy, converged=False,
    finite results (the covariance step is skipped: see the next test)."""
    model = MEMoE.from_formula(FORMULA, _few_subjects(pbc), "id", re_formula="~ year", n_experts=5)
    res, caught = fit_recording(model, n_starts=2, random_state=0, cov_type="none")
    assert_valid(res, caught)
    assert not res.converged
    boundary = messages_of(caught, BoundaryWarning)
    assert any("fit fewer experts" in m for m in boundary), boundary
    assert any("fit fewer experts" in m for m in res.messages)


def test_n_experts_beyond_the_data_with_standard_errors(pbc):
    model = MEMoE.from_formula(FORMULA, _few_subjects(pbc), "id", re_formula="~ year", n_experts=5)
    res, caught = fit_recording(model, n_starts=2, random_state=0)
    assert_valid(res, caught)


# -- scale equivariance --------------------------------------------------------------------------

def _scaled_fit(pbc, K, outcome_scale=1.0, time_scale=1.0, cov_type="none"):
    data = pbc.assign(ys=np.log(pbc["bili"]) * outcome_scale, ts=pbc["year"] * time_scale)
    model = MEMoE.from_formula("ys ~ ts", data, "id", re_formula="~ ts", gate_formula="~ age",
                               n_experts=K)
    kwargs = dict(cov_type=cov_type)
    if K > 1:
        kwargs.update(n_starts=2, random_state=0)
    return fit_recording(model, **kwargs)


@pytest.fixture(scope="module")
def unscaled(pbc):
    return {K: _scaled_fit(pbc, K)[0] for K in (1, 2)}


@pytest.mark.parametrize("K", [1, 2])
@pytest.mark.parametrize("c", [1e6, 1e-6])
def test_outcome_scale_equivariance(pbc, unscaled, K, c):
    ref = unscaled[K]
    res, caught = _scaled_fit(pbc, K, outcome_scale=c)
    runtime = messages_of(caught, RuntimeWarning)
    assert not runtime, runtime
    n = ref.nobs
    np.testing.assert_allclose(res.llf, ref.llf - n * np.log(c), rtol=1e-9)
    np.testing.assert_allclose(res.fe_params.to_numpy() / c, ref.fe_params.to_numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.scale.to_numpy() / c ** 2, ref.scale.to_numpy(), rtol=1e-6)
    for k in range(1, K + 1):
        np.testing.assert_allclose(res.cov_re[k].to_numpy() / c ** 2, ref.cov_re[k].to_numpy(),
                                   rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(res.gate_params.to_numpy(), ref.gate_params.to_numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res.posterior.to_numpy(), ref.posterior.to_numpy(), atol=1e-6)


@pytest.mark.parametrize("K", [1, 2])
def test_time_in_days_equivariance(pbc, unscaled, K):
    ref = unscaled[K]
    c = 365.25
    res, caught = _scaled_fit(pbc, K, time_scale=c)
    assert_valid(res, caught)
    np.testing.assert_allclose(res.llf, ref.llf, rtol=1e-10)
    fe, fe_ref = res.fe_params.to_numpy(), ref.fe_params.to_numpy()
    np.testing.assert_allclose(fe[0], fe_ref[0], rtol=1e-6)               # intercepts
    np.testing.assert_allclose(fe[1] * c, fe_ref[1], rtol=1e-6)           # slopes per day
    for k in range(1, K + 1):
        D, D_ref = res.cov_re[k].to_numpy(), ref.cov_re[k].to_numpy()
        np.testing.assert_allclose(D[1, 1] * c ** 2, D_ref[1, 1], rtol=1e-5)
        np.testing.assert_allclose(D[0, 1] * c, D_ref[0, 1], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(res.posterior.to_numpy(), ref.posterior.to_numpy(), atol=1e-6)
    assert res.converged == ref.converged


def test_outcome_scale_does_not_change_convergence(pbc, unscaled):
    res, _ = _scaled_fit(pbc, 1, outcome_scale=1e-6)
    assert res.converged == unscaled[1].converged


def test_outcome_scale_standard_errors(pbc):
    ref, _ = _scaled_fit(pbc, 1, cov_type="oim")
    res, caught = _scaled_fit(pbc, 1, outcome_scale=1e-6, cov_type="oim")
    assert_valid(res, caught)
    beta = res.params.index.get_level_values("block") == "beta"
    np.testing.assert_allclose(res.bse[beta].to_numpy() / 1e-6, ref.bse[beta].to_numpy(), rtol=1e-3)


# -- 3. the catalogue: degenerate fits ------------------------------------------------------

def test_expert_that_empties_during_em(pbc):
    """Eight experts for 15 subjects: every start empties an expert; the best start is returned
    with a BoundaryWarning naming the remedy and converged=False."""
    model = MEMoE.from_formula(FORMULA, _few_subjects(pbc), "id", re_formula="~ year", n_experts=8)
    res, caught = fit_recording(model, n_starts=2, random_state=0)
    assert_valid(res, caught)
    assert not res.converged
    assert any("every start emptied an expert" in m and "n_experts=7" in m
               for m in messages_of(caught, BoundaryWarning))
    assert any("every start emptied an expert" in m for m in res.messages)


def test_random_effect_variance_at_the_boundary():
    # no random intercept and the residuals centred within each subject: the subject means lie
    # exactly on the population line, so the ML estimate of Var(Intercept) is 0
    data = simulate(beta=((0.0, 0.5),), sd_re=(0.0, 0.0), seed=1)
    resid = data["y"] - 0.5 * data["time"]
    data["y"] = 0.5 * data["time"] + resid - resid.groupby(data["id"]).transform("mean")
    model = MEMoE.from_formula("y ~ time", data, "id", re_formula="~ 1", n_experts=1)
    res, caught = fit_recording(model)
    assert_valid(res, caught)
    boundary = messages_of(caught, BoundaryWarning)
    assert any("'Intercept'" in m and "drop that random effect" in m for m in boundary), boundary
    assert any("boundary" in m for m in res.messages)
    assert np.isnan(res.bse[("re_cov", 1, "Var(Intercept)")])
    assert res.params[("re_cov", 1, "Var(Intercept)")] >= 0


def test_complete_separation_in_the_gating():
    data = simulate(separate=True, seed=2)
    model = MEMoE.from_formula("y ~ time", data, "id", re_formula="~ time", gate_formula="~ x",
                               n_experts=2)
    res, caught = fit_recording(model, n_starts=2, random_state=0)
    assert_valid(res, caught)
    separation = messages_of(caught, SeparationWarning)
    assert any("remove the separating covariate" in m for m in separation), separation
    assert any("separate" in m for m in res.messages)
    # the experts themselves are recovered: the posterior classes are the true ones
    truth = data.groupby("id")["expert"].first()
    agree = (res.predicted_class.to_numpy() == truth.to_numpy()).mean()
    assert max(agree, 1 - agree) == 1.0


def _identical_experts_start(model, data):
    one = MEMoE.from_formula("y ~ time", data, "id", re_formula="~ time", n_experts=1).fit()
    values = [0.0 if block == "gate" else one.params[(block, 1, term)]
              for block, _, term in model.param_names]
    return pd.Series(values, index=model.param_names)


def test_flat_likelihood_gives_a_warning_and_a_valid_result():
    """Two identical experts: the likelihood is flat in the gating coefficients; a
    HessianInversionWarning names the remedy (fewer experts) and the result is finite."""
    data = simulate(beta=((0.0, 0.5),), n=60, seed=3)
    model = MEMoE.from_formula("y ~ time", data, "id", re_formula="~ time", n_experts=2)
    res, caught = fit_recording(model, start_params=_identical_experts_start(model, data))
    assert_valid(res, caught)
    singular = messages_of(caught, HessianInversionWarning)
    assert any("fewer experts" in m for m in singular), singular
    assert np.isnan(res.bse[("gate", 2, "Intercept")])


def test_flat_likelihood_is_reported_in_messages():
    data = simulate(beta=((0.0, 0.5),), n=60, seed=3)
    model = MEMoE.from_formula("y ~ time", data, "id", re_formula="~ time", n_experts=2)
    res, _ = fit_recording(model, start_params=_identical_experts_start(model, data))
    assert any("fewer experts" in m for m in res.messages)


def test_no_residual_variation_within_subjects():
    data = simulate(beta=((0.0, 0.5),), n=40, sigma=0.0, seed=4)
    model = MEMoE.from_formula("y ~ time", data, "id", re_formula="~ time", n_experts=1)
    res, caught = fit_recording(model)
    assert_valid(res, caught)
    assert messages_of(caught, BoundaryWarning)


# -- 4. guarantees ---------------------------------------------------------------------------

def test_warning_classes_are_statsmodels():
    assert issubclass(BoundaryWarning, ConvergenceWarning)
    assert issubclass(SeparationWarning, ConvergenceWarning)


def test_non_convergence_is_a_convergence_warning(pbc):
    model = MEMoE.from_formula(FORMULA, pbc, "id", re_formula="~ year", n_experts=2)
    res, caught = fit_recording(model, n_starts=1, random_state=0, maxiter=2, polish=False)
    assert_valid(res, caught)
    assert not res.converged
    assert any(issubclass(w.category, ConvergenceWarning) and "maxiter" in str(w.message)
               for w in caught)
    assert any("maxiter" in m for m in res.messages)


@pytest.mark.parametrize("seed", [7, "generator", "seedsequence"])
def test_same_random_state_bit_identical(pbc, seed):
    def state():
        if seed == "generator":
            return np.random.default_rng(11)
        if seed == "seedsequence":
            return np.random.SeedSequence(11)
        return seed
    model = MEMoE.from_formula(FORMULA, pbc, "id", re_formula="~ year", gate_formula=GATE,
                               n_experts=2)
    first = model.fit(n_starts=3, random_state=state())
    second = model.fit(n_starts=3, random_state=state())
    assert_same_results(first, second)
    assert np.array_equal(first.start_llfs, second.start_llfs)


def _thread_jobs(pbc):
    sim = simulate(n=80, seed=6)
    models = {
        "pbc-K2": MEMoE.from_formula(FORMULA, pbc, "id", re_formula="~ year", gate_formula=GATE,
                                     n_experts=2),
        "pbc-K1": MEMoE.from_formula(FORMULA, pbc, "id", re_formula="~ year", n_experts=1),
    }
    kwargs = dict(n_starts=2, random_state=3)

    def build_and_fit():  # patsy's formula evaluation in the thread too
        return MEMoE.from_formula("y ~ time", sim, "id", re_formula="~ time", gate_formula="~ x",
                                  n_experts=2, cov_re="shared").fit(**kwargs)

    jobs = {name: (lambda model=model: model.fit(**kwargs)) for name, model in models.items()}
    jobs["sim-K2"] = build_and_fit
    # the same model several times, and different models, all at once
    return jobs, ["pbc-K2", "pbc-K2", "sim-K2", "pbc-K1", "sim-K2", "pbc-K2"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fits_from_several_threads_are_identical_to_sequential(pbc):
    jobs, order = _thread_jobs(pbc)
    sequential = {name: job() for name, job in jobs.items()}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [(name, pool.submit(jobs[name])) for name in order]
        concurrent = [(name, future.result()) for name, future in futures]
    for name, res in concurrent:
        assert_same_results(res, sequential[name])
