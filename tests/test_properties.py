"""Property-based tests (hypothesis): over random designs, sizes, parameter values and options,
a fit either returns a finite result or raises a ``ValueError`` with a message -- never another
exception, never a NaN.

The examples are derandomized (``@settings(derandomize=True)``), so every run, locally and in
CI, tries the same designs; each example draws a numpy seed from which its data are simulated,
so a failure is reproduced from the example hypothesis prints. numpy ``RuntimeWarning``\\s raised
inside pymemoe are errors (pyproject's ``filterwarnings``), so a NaN or an overflow inside a fit
fails the property too. Statsmodels' convergence and Hessian warnings are expected on such
small, often ill-posed problems and are ignored here (tests/test_reliability.py checks them).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymemoe import MEMoE

pytestmark = [
    pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.HessianInversionWarning"),
]

PROPERTY_SETTINGS = settings(derandomize=True, max_examples=40, deadline=None, database=None,
                             suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])


@st.composite
def problems(draw) -> dict:
    """A simulated data set and the options to fit it with."""
    n_subjects = draw(st.integers(3, 40))
    visits = draw(st.lists(st.integers(1, 6), min_size=n_subjects, max_size=n_subjects))
    k_true = draw(st.integers(1, 3))
    finite = dict(allow_nan=False, allow_infinity=False)
    return dict(
        n_subjects=n_subjects,
        visits=visits,
        regular=draw(st.booleans()),
        intercepts=draw(st.lists(st.floats(-5, 5, **finite), min_size=k_true, max_size=k_true)),
        slopes=draw(st.lists(st.floats(-2, 2, **finite), min_size=k_true, max_size=k_true)),
        sd_intercept=draw(st.floats(0, 2, **finite)),
        sd_slope=draw(st.floats(0, 1, **finite)),
        sigma=draw(st.floats(0.01, 3, **finite)),
        gate_strength=draw(st.floats(-3, 3, **finite)),
        seed=draw(st.integers(0, 2 ** 32 - 1)),
        n_experts=draw(st.integers(1, 3)),
        re_formula=draw(st.sampled_from(["0", "~1", "~ time"])),
        gate_formula=draw(st.sampled_from(["~1", "~ x"])),
        cov_re=draw(st.sampled_from(["expert", "proportional", "shared"])),
        re_structure=draw(st.sampled_from(["unstructured", "diagonal"])),
        scale=draw(st.sampled_from(["expert", "shared"])),
        maxiter=draw(st.integers(1, 50)),
        polish=draw(st.booleans()),
    )


def simulate(problem: dict) -> pd.DataFrame:
    rng = np.random.default_rng(problem["seed"])
    n = problem["n_subjects"]
    visits = np.asarray(problem["visits"])
    k_true = len(problem["intercepts"])
    x = rng.normal(size=n)
    logits = problem["gate_strength"] * x[:, None] * np.arange(k_true)[None, :]
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    expert = (rng.random(n)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1).clip(0, k_true - 1)
    ids = np.repeat(np.arange(n), visits)
    if problem["regular"]:
        t = np.concatenate([np.linspace(0.0, 4.0, v) for v in visits])
    else:
        t = np.concatenate([np.r_[0.0, np.sort(rng.uniform(0, 4, v - 1))] for v in visits])
    b0 = rng.normal(scale=problem["sd_intercept"], size=n)
    b1 = rng.normal(scale=problem["sd_slope"], size=n)
    k = expert[ids]
    mean = (np.asarray(problem["intercepts"])[k] + b0[ids]
            + (np.asarray(problem["slopes"])[k] + b1[ids]) * t)
    y = mean + rng.normal(scale=problem["sigma"], size=ids.size)
    return pd.DataFrame({"id": ids, "time": t, "x": x[ids], "y": y})


def assert_finite_fit_or_value_error(data: pd.DataFrame, problem: dict) -> None:
    """The fit of ``problem``'s model to ``data`` is finite (log-likelihood, posteriors summing
    to 1, parameters; a message when it did not converge), or raises a ValueError with a
    message; never a LinAlgError."""
    try:
        model = MEMoE.from_formula(
            "y ~ time", data, "id", re_formula=problem["re_formula"],
            gate_formula=problem["gate_formula"], n_experts=problem["n_experts"],
            cov_re=problem["cov_re"], re_structure=problem["re_structure"],
            scale=problem["scale"])
        res = model.fit(n_starts=1, maxiter=problem["maxiter"], polish=problem["polish"],
                        random_state=problem["seed"])
    except np.linalg.LinAlgError:     # a ValueError subclass, but never an answer for the user
        raise
    except ValueError as err:
        assert str(err).strip(), "a ValueError without a message"
        return
    assert np.isfinite(res.llf), res.llf
    post = res.posterior.to_numpy()
    assert post.shape == (res.n_groups, problem["n_experts"])
    assert np.isfinite(post).all()
    np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-8)
    assert np.isfinite(res.params.to_numpy()).all()
    if not res.converged:
        assert res.messages


@PROPERTY_SETTINGS
@given(problems())
def test_fit_is_finite_or_raises_a_value_error(problem):
    assert_finite_fit_or_value_error(simulate(problem), problem)


@PROPERTY_SETTINGS
@given(problems(), st.sampled_from([1e-6, 1e-3, 1e3, 1e6]), st.sampled_from([1.0, 365.25]))
def test_fit_is_finite_or_raises_a_value_error_at_any_scale(problem, outcome_scale, time_scale):
    """The same property with the outcome in other units (x 1e-6 .. 1e6) and time in days."""
    data = simulate(problem)
    data["y"] *= outcome_scale
    data["time"] *= time_scale
    assert_finite_fit_or_value_error(data, problem)
