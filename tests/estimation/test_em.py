"""EM behaviour: monotone log-likelihood, starts, reproducibility, canonical order, recovery of
known truth, and warnings instead of NaN at the boundary."""
import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from pymemoe import BoundaryWarning, MEMoE
from pymemoe._model.likelihood import e_step

from truth import TRUTH_K2, simulate_memoe

FORMULA = dict(formula="y ~ time", groups="id", re_formula="~ time", gate_formula="~ x1 + x2")


def _fit(df, n_experts=2, model_kw=None, **fit_kw):
    model = MEMoE.from_formula(data=df, n_experts=n_experts, **{**FORMULA, **(model_kw or {})})
    return model, model.fit(**fit_kw)


@pytest.mark.parametrize("options", [dict(), dict(cov_re="proportional", scale="shared"),
                                     dict(re_formula="0"), dict(shared_formula="~ x1")])
def test_llf_trace_never_decreases(sim500, options):
    _, res = _fit(sim500, model_kw=options, n_starts=3, random_state=1, polish=False, tol=1e-12)
    trace = res.llf_trace
    assert len(trace) > 5
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))


def test_pbc_llf_trace_never_decreases_for_every_start(pbc):
    model = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                               gate_formula="~ age + C(sex)", n_experts=3)
    for seed in range(4):
        res = model.fit(n_starts=1, random_state=seed, polish=False, tol=1e-10)
        assert np.all(np.diff(res.llf_trace) >= -1e-9 * np.abs(res.llf_trace[1:]))


def test_more_starts_never_worse_and_same_seed_same_output(pbc):
    model = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year", n_experts=3,
                               cov_re="shared", scale="shared")
    one = model.fit(n_starts=1, random_state=7)
    many = model.fit(n_starts=6, random_state=7)
    again = model.fit(n_starts=6, random_state=7)
    # the starts are children of one SeedSequence: the first start is common to both fits
    assert many.llf >= one.llf - 1e-8
    assert many.llf == again.llf
    pd.testing.assert_series_equal(many.params, again.params, check_exact=True)
    pd.testing.assert_frame_equal(many.posterior, again.posterior, check_exact=True)


def test_posterior_matches_returned_parameters_and_canonical_order(sim500):
    model, res = _fit(sim500, n_starts=3, random_state=0)
    est = e_step(model.data, model._params(res.params))
    np.testing.assert_allclose(res.posterior.to_numpy(), est.tau, rtol=1e-12)
    np.testing.assert_allclose(res.posterior.sum(axis=1), 1.0)
    sizes = res.posterior.sum(axis=0).to_numpy()
    assert np.all(np.diff(sizes) <= 0)                     # largest expert first
    assert np.all(res.gate_params[1] == 0.0)               # ... and it is the gating reference


def test_recovers_known_truth(sim500):
    _, res = _fit(sim500, n_starts=5, random_state=0)
    assert res.converged
    # expert 1 (largest) is the true expert 1 here: P(expert 2) is below one half on average
    truth_order = np.argsort(-np.bincount(sim500.groupby("id")["expert"].first() - 1))
    beta = TRUTH_K2["beta"][truth_order]
    np.testing.assert_allclose(res.fe_params.to_numpy().T, beta, atol=0.1)
    for k, j in enumerate(truth_order, start=1):
        np.testing.assert_allclose(res.cov_re[k].to_numpy(), TRUTH_K2["cov_re"][j], atol=0.08)
        assert res.scale[k] == pytest.approx(TRUTH_K2["scale"][j], rel=0.1)
    gamma = TRUTH_K2["gamma"][truth_order] - TRUTH_K2["gamma"][truth_order][0]
    np.testing.assert_allclose(res.gate_params.to_numpy().T, gamma, atol=0.4)
    true_class = sim500.groupby("id")["expert"].first()
    mapped = pd.Series(truth_order[res.predicted_class.to_numpy() - 1] + 1, index=res.predicted_class.index)
    assert (mapped == true_class.loc[mapped.index]).mean() > 0.95


def test_too_many_experts_warn_and_stay_finite():
    df = simulate_memoe(40, seed=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time", n_experts=8).fit(
            n_starts=2, random_state=0)
    assert np.isfinite(res.llf)
    assert np.isfinite(res.posterior.to_numpy()).all()
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert any("fewer experts" in m for m in messages)
    assert any("fewer experts" in m for m in res.messages)


def test_boundary_variance_warns_with_remedy():
    # Every subject's least-squares slope is exactly 0.5 (the noise is symmetric in time, hence
    # orthogonal to the centred times), so the ML random-slope variance is 0: a boundary fit.
    rng = np.random.default_rng(4)
    n, visits = 120, 5
    half = rng.normal(size=(n, 3))
    noise = np.column_stack([half, half[:, 1], half[:, 0]])           # e = (a, b, c, b, a)
    t = np.tile(np.arange(visits, dtype=float), n)
    y = 1.0 + 0.5 * t + np.repeat(rng.normal(size=n), visits) + noise.ravel()
    df = pd.DataFrame({"id": np.repeat(np.arange(n), visits), "time": t, "y": y})
    with pytest.warns(BoundaryWarning, match="boundary.*re_formula"):
        res = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time", n_experts=1).fit()
    assert np.isfinite(res.llf)
    assert res.cov_re[1].loc["time", "time"] < 1e-8
    assert np.isfinite(res.posterior.to_numpy()).all()
    assert any("boundary" in m for m in res.messages)


def test_no_convergence_warns():
    df = simulate_memoe(60, seed=5)
    with pytest.warns(ConvergenceWarning, match="maxiter"):
        res = MEMoE.from_formula("y ~ time", df, "id", re_formula="~ time", n_experts=2).fit(
            n_starts=1, random_state=0, maxiter=2, polish=False)
    assert not res.converged


def test_parallel_starts_and_screening_do_not_change_results(pbc):
    model = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year", n_experts=2,
                               cov_re="shared", scale="shared")
    serial = model.fit(n_starts=6, random_state=3, n_jobs=1)
    parallel = model.fit(n_starts=6, random_state=3, n_jobs=2)
    assert np.array_equal(serial.params.to_numpy(), parallel.params.to_numpy())
    assert np.array_equal(serial.posterior.to_numpy(), parallel.posterior.to_numpy())
    screened = model.fit(n_starts=6, random_state=3, screen_iter=5, n_finish=2, n_jobs=2)
    again = model.fit(n_starts=6, random_state=3, screen_iter=5, n_finish=2, n_jobs=1)
    assert np.array_equal(screened.params.to_numpy(), again.params.to_numpy())
    assert screened.converged and screened.llf == pytest.approx(serial.llf, abs=1e-6)
    trace = screened.llf_trace
    # one value per plain M-step or SQUAREM cycle (2 or 3 M-steps), and the initial value
    assert screened.n_iter / 3 + 1 <= len(trace) <= screened.n_iter + 1
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))
    with pytest.raises(ValueError, match="screen_iter"):
        model.fit(screen_iter=0)


def test_polish_from_an_optimum_stops_within_a_few_evaluations(monkeypatch):
    """At an optimum the changes of the objective are below rounding: the polish must stop
    after its patience (5 evaluations at the best value) instead of letting L-BFGS-B's line
    search run on (it took ~20 evaluations there), and must not lose log-likelihood."""
    import pymemoe._estimation.passes as passes
    from pymemoe._estimation.context import EMOptions, FitContext
    from pymemoe._estimation.polish import polish

    # on these data L-BFGS-B alone spends 40 evaluations after the optimum (9 with the rule)
    model, res = _fit(simulate_memoe(2000, seed=2026), n_starts=1, random_state=0, cov_type="none")
    calls = []
    original = passes.e_step
    monkeypatch.setattr(passes, "e_step",
                        lambda data, params, warm=None: calls.append(1) or original(data, params, warm))
    ctx = FitContext.build(model.data, model.structure, EMOptions())
    params, llf = polish(ctx, ctx.blocks, res.state, gtol=1e-12, maxiter=500)
    assert len(calls) <= 12
    assert llf >= res.llf - 1e-12 * abs(res.llf)
    assert e_step(model.data, params).llf == pytest.approx(llf, rel=1e-12)


def test_polish_in_short_rounds_reaches_the_same_maximum(monkeypatch):
    """The polish renews its whitened coordinates every ROUND_ITER iterations: with rounds of
    two iterations it must go on round after round from a point EM left short of the maximum
    and end where one long round ends (the gradient at the target)."""
    import pymemoe._estimation.polish as polish_module
    from pymemoe._estimation.context import EMOptions, FitContext

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model, res = _fit(simulate_memoe(500, seed=7), n_starts=1, random_state=0, polish=False,
                          maxiter=3, starts="independent", cov_type="none")
    ctx = FitContext.build(model.data, model.structure, EMOptions())
    long_params, long_llf = polish_module.polish(ctx, ctx.blocks, res.state, gtol=1e-8, maxiter=500)
    assert long_llf > res.llf + 0.1                   # EM had stopped short of the maximum
    monkeypatch.setattr(polish_module, "ROUND_ITER", 2)
    short_params, short_llf = polish_module.polish(ctx, ctx.blocks, res.state, gtol=1e-8,
                                                   maxiter=500)
    assert short_llf == pytest.approx(long_llf, abs=1e-6)
    np.testing.assert_allclose(short_params.beta, long_params.beta, atol=1e-4)
