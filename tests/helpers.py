"""What several test modules share: the reference files' folder, the R fits' coding of PBCseq's
gating, the data of the GLMM references, and the reliability checks (a fit either raises a
``ValueError`` or returns a finite, honestly flagged result)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
from statsmodels.tools.sm_exceptions import ConvergenceWarning, HessianInversionWarning

from pymemoe import MEMoE

RESULTS = Path(__file__).parent / "reference" / "results"
GATE_R = "~ C(sex, Treatment('m')) + age + C(trt)"  # the R fits' coding (reference m, 0)


STATSMODELS_WARNINGS = (ConvergenceWarning, HessianInversionWarning)


def fit_recording(model: MEMoE, **kwargs):
    """Fit and compute the standard errors (done on first use), recording every warning
    (numpy's RuntimeWarnings included, instead of raising)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(**kwargs)
        res.bse
    return res, list(caught)


def assert_valid(res, caught) -> None:
    """Finite llf, parameters and posteriors (rows summing to 1), only statsmodels' warning
    classes, no RuntimeWarning, and ``converged=False`` explained in ``messages``."""
    runtime = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught
               if issubclass(w.category, RuntimeWarning)]
    assert not runtime, "numpy RuntimeWarnings (NaN or overflow inside the fit):\n" + "\n".join(runtime)
    others = [f"{w.category.__name__}: {w.message}" for w in caught
              if not issubclass(w.category, STATSMODELS_WARNINGS)]
    assert not others, f"warnings that are not statsmodels' classes: {others}"
    assert np.isfinite(res.llf), res.llf
    assert np.isfinite(res.params.to_numpy()).all(), res.params
    post = res.posterior.to_numpy()
    assert np.isfinite(post).all() and (post >= 0).all()
    np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-10)
    assert np.isfinite(res.prior.to_numpy()).all()
    assert np.isfinite(res.llf_trace).all()
    if not res.converged:
        assert res.messages, "converged=False without a message"


def messages_of(caught, category=Warning) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, category)]


def glmm_csv(name: str) -> pd.DataFrame:
    """The data of a GLMM reference (``reference/results/glmm/<name>.csv``)."""
    return pd.read_csv(RESULTS / "glmm" / f"{name}.csv")


def glmm_sim(name: str, q: int, n_experts: int, **kw) -> MEMoE:
    """A model of the simulated GLMM references (``"binary"`` or ``"poisson"``) with ``q``
    random effects (intercept, time) and the gating on x1 + x2."""
    df = glmm_csv(f"sim_{name}_k2")
    X = pd.DataFrame({"Intercept": 1.0, "time": df["time"]})
    gate = pd.DataFrame({"Intercept": 1.0, "x1": df["x1"], "x2": df["x2"]})
    return MEMoE(df["y"], X, df["subject"], exog_re=X.iloc[:, :q], exog_gate=gate,
                 n_experts=n_experts, family="binomial" if name == "binary" else "poisson",
                 exposure=df.get("exposure"), **kw)


def bacteria_model(**kw) -> MEMoE:
    """MASS's bacteria data: a binary outcome, random intercept per child, one expert."""
    df = glmm_csv("bacteria")
    X = pd.DataFrame({"(Intercept)": 1.0, "trtdrug": (df["trt"] == "drug") * 1.0,
                      "trtdrug+": (df["trt"] == "drug+") * 1.0, "wk2": df["wk2"] * 1.0})
    return MEMoE(df["yn"], X, df["ID"], exog_re=X.iloc[:, :1], n_experts=1, family="binomial", **kw)


FORMULA = "np.log(bili) ~ year"


GATE = "~ center(age) + C(sex)"


def new_subjects(pbc: pd.DataFrame) -> pd.DataFrame:
    """Rows of 25 subjects turned into new subjects (new ids, older, a hidden outcome)."""
    new = pbc[pbc["id"].isin(pbc["id"].unique()[:25])].copy()
    new["id"] = new["id"] + 10_000
    new["age"] = new["age"] + 3.5
    new.loc[new.index[::4], "bili"] = np.nan        # future rows: dynamic prediction
    return new


def assert_same_results(a, b) -> None:
    assert a.llf == b.llf
    assert np.array_equal(a.params.to_numpy(), b.params.to_numpy())
    pdt.assert_index_equal(a.params.index, b.params.index)
    assert np.array_equal(a.posterior.to_numpy(), b.posterior.to_numpy())
    pdt.assert_index_equal(a.posterior.index, b.posterior.index)
    assert np.array_equal(a.bse.to_numpy(), b.bse.to_numpy(), equal_nan=True)
    assert np.array_equal(a.llf_trace, b.llf_trace)
    assert a.converged == b.converged and a.messages == b.messages


def assert_score_is_numerical_gradient(model: MEMoE, theta: pd.Series, rel_step: float = 1e-6,
                                       rtol: float = 1e-5) -> None:
    """``model.score(theta)`` equals central differences of ``model.loglike`` (steps
    ``rel_step`` times max(|theta_j|, 1)), to ``rtol`` and 1e-4 of the largest entry."""
    grad = model.score(theta)
    numeric = np.empty_like(grad)
    for j in range(len(theta)):
        h = rel_step * max(abs(theta.iloc[j]), 1.0)
        up, down = theta.copy(), theta.copy()
        up.iloc[j] += h
        down.iloc[j] -= h
        numeric[j] = (model.loglike(up) - model.loglike(down)) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=rtol, atol=1e-4 * np.abs(numeric).max())


def perturbed(params: pd.Series, scale: float = 0.05, seed: int = 1) -> pd.Series:
    """``params`` moved by ``scale`` times their size at random (variances stay positive): a
    point away from the maximum, where a score is not 0."""
    values = params.to_numpy()
    rng = np.random.default_rng(seed)
    return pd.Series(values + scale * np.abs(values) * rng.standard_normal(values.size),
                     index=params.index)


def assert_em_never_decreases(model: MEMoE, seeds=(0, 1)) -> None:
    """EM alone (no polish, one independent start, tight tolerance) from each seed: the
    log-likelihood trace never decreases (beyond rounding)."""
    for seed in seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.fit(n_starts=1, random_state=seed, polish=False, tol=1e-10,
                            starts="independent")
        trace = res.llf_trace
        assert len(trace) > 5
        assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:])), np.diff(trace).min()
