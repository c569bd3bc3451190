"""pymemoe.simulate: reproducibility, layout of the data, the moments of the draws against the
truth (computed here independently of pymemoe), recovery by a MEMoE fit, and simulation from a
fitted results object."""
import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pymemoe import MEMoE
from pymemoe._model.params import Params
from pymemoe.prediction import predictive_mixture
from pymemoe.simulate import SimulatedData, heteroscedastic_variance, paper_settings, simulate

SETTINGS = paper_settings()
EX1, EX2 = SETTINGS["example1"], SETTINGS["example2"]
ONE_EXPERT = Params(gamma=np.zeros((1, 1)), beta=[[2.0, -0.3]],
                    cov_re=[[[0.4, -0.03], [-0.03, 0.02]]], scale=[0.2])


def _softmax(eta):
    eta = eta - eta.max(axis=1, keepdims=True)
    p = np.exp(eta)
    return p / p.sum(axis=1, keepdims=True)


def _subject_table(data: pd.DataFrame) -> pd.DataFrame:
    return data.groupby("id").first()


def _wide(data: pd.DataFrame, column: str, n_visits: int) -> np.ndarray:
    """(N, n_visits) array of a column; rows are sorted by id then time."""
    return data[column].to_numpy().reshape(-1, n_visits)


# -- reproducibility -------------------------------------------------------------------------------

def test_same_seed_same_data_different_seed_different_data():
    kw = dict(visits=(3, 8), times="irregular", dropout=0.2, errors="t", df=4)
    a = simulate(EX2, 200, random_state=7, **kw)
    b = simulate(EX2, 200, random_state=7, **kw)
    c = simulate(EX2, 200, random_state=8, **kw)
    pd.testing.assert_frame_equal(a.data, b.data)
    pd.testing.assert_frame_equal(a.random_effects, b.random_effects)
    pd.testing.assert_series_equal(a.expert, b.expert)
    assert not a.data["y"].head(50).equals(c.data["y"].head(50))
    assert not np.allclose(a.random_effects.to_numpy(), c.random_effects.to_numpy())
    g = simulate(EX2, 200, random_state=np.random.default_rng(7), **kw)
    pd.testing.assert_frame_equal(g.data, a.data)


# -- layout ----------------------------------------------------------------------------------------

def test_layout_columns_ids_visits_and_regular_times():
    N, follow_up = 2000, 4.0
    sim = simulate(EX1, N, visits=(3, 7), follow_up=follow_up, random_state=1)
    assert isinstance(sim, SimulatedData)
    df = sim.data
    assert list(df.columns) == ["id", "time", "x1", "x2", "y", "expert"]
    assert sim.truth is EX1 or np.array_equal(sim.truth.beta, EX1.beta)
    with pytest.raises(AttributeError):
        sim.data = df                                            # frozen
    # ids: 1..N, each subject's rows contiguous, rows sorted by id then time
    assert df["id"].is_monotonic_increasing
    assert (df["id"].unique() == np.arange(1, N + 1)).all()
    assert (df.groupby("id")["time"].diff().dropna() > 0).all()
    sizes = df.groupby("id").size()
    assert sizes.between(3, 7).all() and set(sizes) == set(range(3, 8))
    # regular times: equally spaced from 0 to follow_up
    j = df.groupby("id").cumcount()
    expected = follow_up * j / (df["id"].map(sizes) - 1)
    np.testing.assert_allclose(df["time"], expected, atol=1e-12)
    # subject-level columns are constant within subject and agree with the per-subject outputs
    assert (df.groupby("id")[["x1", "x2", "expert"]].nunique() == 1).all().all()
    first = _subject_table(df)
    pd.testing.assert_series_equal(first["expert"], sim.expert, check_names=False)
    assert sim.random_effects.shape == (N, 2)
    assert list(sim.random_effects.columns) == ["Intercept", "time"]
    assert sim.random_effects.index.equals(sim.expert.index)
    np.testing.assert_allclose(sim.prior.sum(axis=1), 1.0)
    assert set(np.unique(df["expert"])) == {1, 2}
    assert sim.formula_kwargs == {"formula": "y ~ time", "groups": "id", "re_formula": "~ time",
                                  "gate_formula": "~ x1 + x2"}
    assert sim.n_subjects == N and sim.n_experts == 2


def test_fixed_number_of_visits_and_irregular_times():
    sim = simulate(EX1, 3000, visits=5, times="irregular", follow_up=5.0, random_state=2)
    df = sim.data
    assert (df.groupby("id").size() == 5).all()
    t = _wide(df, "time", 5)
    assert (t[:, 0] == 0).all() and (np.diff(t, axis=1) >= 0).all()
    later = t[:, 1:].ravel()
    assert later.min() > 0 and later.max() <= 5.0
    # the later visits are uniform on [0, 5]
    assert stats.kstest(later / 5.0, "uniform").pvalue > 1e-3


def test_dropout_reduces_visits_at_the_geometric_rate():
    N, n, h = 5000, 10, 0.2
    full = simulate(ONE_EXPERT, N, visits=n, dropout=0.0, random_state=3)
    drop = simulate(ONE_EXPERT, N, visits=n, dropout=h, random_state=3)
    sizes = drop.data.groupby("id").size()
    assert len(sizes) == N and sizes.min() >= 1 and sizes.max() <= n
    # visits attended = min(n, G), G geometric on 1, 2, ...: E = sum_{j<n} (1 - h)^j
    expected = (1 - (1 - h) ** n) / h
    se = sizes.std() / np.sqrt(N)
    assert abs(sizes.mean() - expected) < 5 * se
    assert sizes.mean() < full.data.groupby("id").size().mean() == n
    assert (sizes == 1).mean() == pytest.approx(h, abs=0.03)
    # dropout removes the later visits of the planned (regular) schedule, it does not rescale it
    grid = 5.0 * np.arange(n) / (n - 1)
    j = drop.data.groupby("id").cumcount().to_numpy()
    np.testing.assert_allclose(drop.data["time"], grid[j])


# -- moments against the truth ----------------------------------------------------------------------

def test_experts_follow_the_gating_probabilities():
    N = 20000
    sim = simulate(EX1, N, visits=1, random_state=4)
    subj = _subject_table(sim.data)
    W = np.column_stack([np.ones(N), subj[["x1", "x2"]].to_numpy()])
    p = _softmax(W @ EX1.gamma.T)[:, 1]                            # P(expert 2), computed here
    np.testing.assert_allclose(sim.prior[2].to_numpy(), p)
    is2 = (subj["expert"] == 2).to_numpy()
    # calibration within deciles of p: sum (O - E)^2 / V ~ chi-square(10)
    bins = np.digitize(p, np.quantile(p, np.linspace(0, 1, 11)[1:-1]))
    O = np.bincount(bins, weights=is2)
    E = np.bincount(bins, weights=p)
    V = np.bincount(bins, weights=p * (1 - p))
    assert stats.chi2.sf(np.sum((O - E) ** 2 / V), df=10) > 1e-3
    # the default covariates are independent standard normals
    assert stats.kstest(subj["x1"], "norm").pvalue > 1e-3
    assert abs(np.corrcoef(subj["x1"], subj["x2"])[0, 1]) < 0.03


def test_three_experts_counts_match_probabilities():
    truth = Params(gamma=[[0, 0], [0.5, 1.0], [-0.5, -1.0]], beta=[[0, 0], [1, 0], [2, 0]],
                   cov_re=np.stack([np.eye(2) * 0.1] * 3), scale=[1.0, 1.0, 1.0])
    N = 20000
    sim = simulate(truth, N, visits=1, random_state=5)
    x = _subject_table(sim.data)["x1"].to_numpy()
    p = _softmax(np.column_stack([np.ones(N), x]) @ truth.gamma.T)
    counts = np.bincount(sim.expert.to_numpy() - 1, minlength=3)
    z = (counts - p.sum(axis=0)) / np.sqrt((p * (1 - p)).sum(axis=0))
    assert np.all(np.abs(z) < 4)


@pytest.mark.parametrize("truth", [ONE_EXPERT, EX2], ids=["one_expert", "example2"])
def test_method_of_moments_per_true_expert(truth):
    """Per-subject OLS on a common schedule t = 0..5: coefficients a_i = beta_k + b_i + noise with
    E a_i = beta_k, Cov a_i = D_k + sigma2_k (X'X)^-1, and E s_i^2 = sigma2_k."""
    n_visits, N = 6, 20000
    sim = simulate(truth, N, visits=n_visits, follow_up=n_visits - 1, random_state=6)
    t = _wide(sim.data, "time", n_visits)[0]
    np.testing.assert_allclose(t, np.arange(n_visits))
    X = np.column_stack([np.ones(n_visits), t])
    XtX_inv = np.linalg.inv(X.T @ X)
    Y = _wide(sim.data, "y", n_visits)
    coef = Y @ (XtX_inv @ X.T).T                                   # (N, 2)
    s2 = ((Y - coef @ X.T) ** 2).sum(axis=1) / (n_visits - 2)
    expert = _subject_table(sim.data)["expert"].to_numpy() - 1
    for k in range(truth.n_experts):
        sel = expert == k
        n_k = sel.sum()
        assert n_k > 5000
        D, sigma2 = truth.cov_re[k], truth.scale[k]
        Sigma = D + sigma2 * XtX_inv                               # true Cov of the OLS coefficients
        se_mean = np.sqrt(np.diag(Sigma) / n_k)
        assert np.all(np.abs(coef[sel].mean(axis=0) - truth.beta[k]) < 5 * se_mean)
        assert abs(s2[sel].mean() - sigma2) < 5 * sigma2 * np.sqrt(0.5 / n_k)
        D_hat = np.cov(coef[sel].T) - s2[sel].mean() * XtX_inv
        se_cov = np.sqrt((np.outer(np.diag(Sigma), np.diag(Sigma)) + Sigma ** 2) / n_k)
        assert np.all(np.abs(D_hat - D) < 5 * se_cov + 0.002 * sigma2), (D_hat, D)
        # the reported true random effects have mean 0 and covariance D_k
        b = sim.random_effects.to_numpy()[sel]
        np.testing.assert_allclose(b.mean(axis=0), 0, atol=5 * np.sqrt(np.diag(D) / n_k).max())
        assert np.all(np.abs(np.cov(b.T) - D) < 5 * np.sqrt((np.outer(np.diag(D), np.diag(D))
                                                            + D ** 2) / n_k))


def _residuals(sim: SimulatedData) -> np.ndarray:
    """e_ij = y_ij - x_ij' beta_k - z_ij' b_i with the true expert and random effects."""
    df = sim.data
    k = df["expert"].to_numpy() - 1
    b = sim.random_effects.loc[df["id"]].to_numpy()
    beta = sim.truth.beta[k]
    t = df["time"].to_numpy()
    return df["y"].to_numpy() - (beta[:, 0] + b[:, 0] + (beta[:, 1] + b[:, 1]) * t)


def test_t_errors_have_the_expert_variance_and_heavy_tails():
    N = 20000
    normal = _residuals(simulate(EX2, N, visits=6, random_state=9))
    heavy_sim = simulate(EX2, N, visits=6, errors="t", df=5, random_state=9)
    heavy = _residuals(heavy_sim)
    k = heavy_sim.data["expert"].to_numpy() - 1
    sd = np.sqrt(EX2.scale[k])
    for e in (normal, heavy):
        assert np.mean((e / sd) ** 2) == pytest.approx(1.0, abs=0.03)
        assert abs(np.mean(e / sd)) < 0.02
    assert abs(stats.kurtosis(normal / sd)) < 0.1
    assert stats.kurtosis(heavy / sd) > 2.0                       # 6 in theory for df = 5
    with pytest.raises(ValueError, match="df must be > 2"):
        simulate(EX2, 10, errors="t", df=2)


def test_heteroscedastic_errors_grow_with_time_and_average_sigma2():
    n_visits, N = 6, 20000
    sim = simulate(ONE_EXPERT, N, visits=n_visits, errors="heteroscedastic", random_state=10)
    e2 = _wide(sim.data.assign(e=_residuals(sim)), "e", n_visits) ** 2
    var_by_visit = e2.mean(axis=0) / ONE_EXPERT.scale[0]
    t = np.linspace(0, 5, n_visits)
    np.testing.assert_allclose(var_by_visit, 0.25 + 1.5 * t / 5, rtol=0.05)
    np.testing.assert_allclose(heteroscedastic_variance(t), 0.25 + 0.3 * t)
    assert np.all(np.diff(var_by_visit) > 0)
    assert var_by_visit.mean() == pytest.approx(1.0, abs=0.03)


# -- recovery by a fit ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted():
    sim = simulate(EX1, 600, random_state=11)
    res = MEMoE.from_formula(data=sim.data, n_experts=2, **sim.formula_kwargs).fit(
        n_starts=3, random_state=0)
    return sim, res


def test_fit_recovers_the_truth(fitted):
    sim, res = fitted
    assert res.converged
    pred = res.predicted_class.to_numpy() - 1
    true = sim.expert.loc[res.predicted_class.index].to_numpy() - 1
    # match labels: fitted expert j is true expert perm[j]
    perm = max(itertools.permutations(range(2)),
               key=lambda p: np.mean(np.asarray(p)[pred] == true))
    perm = np.asarray(perm)
    assert np.mean(perm[pred] == true) > 0.9
    est = res.state
    beta = np.empty_like(est.beta)
    beta[perm] = est.beta
    np.testing.assert_allclose(beta, EX1.beta, atol=0.1)
    scale = np.empty_like(est.scale)
    scale[perm] = est.scale
    np.testing.assert_allclose(scale, EX1.scale, rtol=0.15)
    cov = np.empty_like(est.cov_re)
    cov[perm] = est.cov_re
    np.testing.assert_allclose(cov, EX1.cov_re, atol=0.08)
    gamma = np.empty_like(est.gamma)
    gamma[perm] = est.gamma
    np.testing.assert_allclose(gamma - gamma[0], EX1.gamma, atol=0.5)


# -- from a fitted results object ------------------------------------------------------------------

def test_simulate_from_results(fitted):
    _, res = fitted
    sim = simulate(res, 150, visits=(2, 4), random_state=12)
    assert sim.data["id"].nunique() == 150
    assert sim.data.groupby("id").size().between(2, 4).all()
    assert list(sim.data.columns) == ["id", "time", "x1", "x2", "y", "expert"]
    np.testing.assert_array_equal(sim.truth.beta, res.state.beta)
    # covariates are resampled from the fitted subjects
    fitted_rows = {tuple(r) for r in res.model.data.exog_gate[:, 1:]}
    assert all(tuple(r) in fitted_rows for r in _subject_table(sim.data)[["x1", "x2"]].to_numpy())
    refit = MEMoE.from_formula(data=sim.data, n_experts=2, **sim.formula_kwargs)
    assert refit.structure.exog_names == res.model.structure.exog_names
    assert refit.data.n_groups == 150


@pytest.fixture(scope="module")
def renamed():
    base = simulate(EX1, 120, visits=5, random_state=13).data
    df = base.rename(columns={"time": "year", "y": "score", "x1": "age"})
    df["sex"] = np.where(df["x2"] > 0, "f", "m")
    return df


def _fit_one(df, formula, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MEMoE.from_formula(formula, df, "id", n_experts=1, **kw).fit()


def test_results_names_and_categorical_gating(renamed):
    res = _fit_one(renamed, "score ~ year", re_formula="~ year", gate_formula="~ age + x2")
    sim = simulate(res, 30, random_state=0)
    assert list(sim.data.columns) == ["id", "year", "age", "x2", "score", "expert"]
    assert sim.formula_kwargs["formula"] == "score ~ year"
    assert list(sim.random_effects.columns) == ["Intercept", "year"]

    res = _fit_one(renamed, "score ~ year", re_formula="~ year", gate_formula="~ age + C(sex)")
    with pytest.raises(ValueError, match="gate_covariates"):
        simulate(res, 30, random_state=0)
    covs = pd.DataFrame({"age": np.zeros(30), "sex": ["f", "m"] * 15})
    sim = simulate(res, 30, gate_covariates=covs, random_state=0)
    assert sim.formula_kwargs["gate_formula"] == "~ age + C(sex)"
    assert {"age", "sex"} <= set(sim.data.columns)
    MEMoE.from_formula(data=sim.data, n_experts=1, **sim.formula_kwargs)
    with pytest.raises(ValueError, match="cannot be evaluated"):
        simulate(res, 2, gate_covariates=pd.DataFrame({"age": [0.0, 1.0],
                                                       "sex": ["f", "x"]}))


@pytest.mark.parametrize("formula, re_formula", [("score ~ year + age", "~ year"),
                                                 ("score ~ year", "~ 1"),
                                                 ("score ~ np.sqrt(year)", "~ np.sqrt(year)")])
def test_unsupported_results_raise(renamed, formula, re_formula):
    res = _fit_one(renamed, formula, re_formula=re_formula)
    with pytest.raises(ValueError, match="intercept plus one numeric time column"):
        simulate(res, 10)


def test_results_from_arrays_raise(renamed):
    X = np.column_stack([np.ones(len(renamed)), renamed["year"]])
    res = MEMoE(renamed["score"], X, renamed["id"], exog_re=X, n_experts=1).fit()
    with pytest.raises(ValueError, match="results.state"):
        simulate(res, 10)
    assert simulate(res.state, 10, random_state=0).data["id"].nunique() == 10


# -- user covariates and input checks --------------------------------------------------------------

def test_user_gate_covariates():
    covs = pd.DataFrame({"age": np.linspace(-1, 1, 40), "bmi": np.zeros(40)},
                        index=np.arange(100, 140))
    sim = simulate(EX1, 40, gate_covariates=covs, visits=2, random_state=0)
    subj = _subject_table(sim.data)
    np.testing.assert_array_equal(subj["age"], covs["age"])
    assert sim.formula_kwargs["gate_formula"] == "~ age + bmi"
    arr = simulate(EX1, 40, gate_covariates=covs.to_numpy(), visits=2, random_state=0)
    assert list(arr.data.columns) == ["id", "time", "x1", "x2", "y", "expert"]
    np.testing.assert_array_equal(arr.data["y"], sim.data["y"])   # same draws
    with pytest.raises(ValueError, match="one row per subject"):
        simulate(EX1, 41, gate_covariates=covs)
    with pytest.raises(ValueError, match="2 columns"):
        simulate(EX1, 40, gate_covariates=covs[["age"]])


@pytest.mark.parametrize("kwargs, match", [
    (dict(visits=(0, 3)), "visits"), (dict(visits=(5, 3)), "visits"),
    (dict(times="weekly"), "times"), (dict(dropout=1.0), "dropout"),
    (dict(errors="cauchy"), "errors"), (dict(follow_up=0.0), "follow_up"),
])
def test_invalid_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate(EX1, 10, **kwargs)


def test_invalid_parameters_raise():
    good = dict(gamma=EX1.gamma, beta=EX1.beta, cov_re=EX1.cov_re, scale=EX1.scale)
    assert simulate(good, 5, random_state=0).n_experts == 2             # a mapping works
    bad = [dict(gamma=EX1.gamma + 1.0), dict(beta=np.ones((2, 3))), dict(scale=[0.1, -0.1]),
           dict(cov_re=np.stack([np.diag([1.0, -1.0])] * 2)), dict(gamma=np.zeros((3, 3)))]
    for change in bad:
        with pytest.raises(ValueError):
            simulate(Params(**{**good, **change}), 5)
    with pytest.raises(ValueError, match="n_subjects"):
        simulate(EX1, 0)
    with pytest.raises(ValueError, match="Params"):
        simulate("example1", 5)


def test_paper_settings_are_valid_and_as_documented():
    s = paper_settings()
    assert s is not paper_settings()
    for name, truth in s.items():
        assert truth.n_experts == 2 and truth.gamma.shape == (2, 3), name
        np.testing.assert_array_equal(truth.beta, EX1.beta)
        assert np.all(np.linalg.eigvalsh(truth.cov_re) > 0)
    np.testing.assert_array_equal(s["example1"].cov_re[0], s["example1"].cov_re[1])
    assert s["example1"].scale[0] == s["example1"].scale[1]
    assert not np.allclose(s["example2"].cov_re[0], s["example2"].cov_re[1])
    assert s["example2"].scale[0] != s["example2"].scale[1]
    var = [s[f"example3_case{c}"].cov_re[0].diagonal() for c in (1, 2, 3)]
    assert np.all(np.diff(var, axis=0) > 0)


@pytest.mark.parametrize("options", [
    dict(formula="np.log(bili) ~ year + I(year**2)", re_formula="~ year",
         gate_formula="~ C(sex) + age", cov_re="shared", scale="shared"),
    dict(formula="logbili ~ year", re_formula="~ 1", shared_formula="~ albumin",
         gate_formula="~ C(trt)", cov_re="proportional"),
])
def test_simulate_bootstraps_any_fitted_model(pbc, options):
    options = dict(options)
    formula = options.pop("formula")
    data = pbc.dropna(subset=["albumin"])
    res = MEMoE.from_formula(formula, data, "id", n_experts=2, **options).fit(n_starts=1,
                                                                             random_state=0)
    boot = simulate(res, random_state=3)
    assert len(boot.data) == res.nobs
    assert boot.model_kwargs["cov_re"] == options["cov_re"]
    refit = MEMoE.from_formula(data=boot.data, **boot.formula_kwargs, **boot.model_kwargs)
    assert refit.structure == res.model.structure
    np.testing.assert_allclose(refit.exog, res.model.exog)
    # the simulated outcome has the model's law: over many draws, its mean is the marginal
    # prediction and its variance the marginal mixture variance (closed forms)
    outcome = boot.formula_kwargs["formula"].split("~")[0].strip()
    draws = np.column_stack([simulate(res, random_state=seed).data[outcome].to_numpy()
                             for seed in range(200)])
    mix = predictive_mixture(res, data.iloc[:40], kind="marginal")
    mean, var = mix.mean().to_numpy(), mix.variance().to_numpy()
    z = (draws[:40].mean(axis=1) - mean) / np.sqrt(var / draws.shape[1])
    assert np.abs(z).max() < 4.5
    assert np.median(draws[:40].var(axis=1) / var) == pytest.approx(1.0, abs=0.1)


def test_bootstrap_refuses_schedule_options(pbc):
    res = MEMoE.from_formula("logbili ~ year", pbc, "id", n_experts=1).fit()
    with pytest.raises(ValueError, match="keeps the fitted rows"):
        simulate(res, visits=5)
    with pytest.raises(ValueError, match="n_subjects is needed"):
        simulate(res.state)
