"""Standard errors of predicted means (get_prediction) against independent computations.

References: for ``kind="expert"`` the closed form sqrt(x' V_k x) from the covariance block of
the expert's coefficients; for ``"marginal"`` and ``"conditional"`` a finite-difference gradient
(statsmodels' ``approx_fprime``, central) of a dense, one-subject-at-a-time implementation of
the prediction written here from the parameter vector's labels (softmax gating, and for the
conditional mean scipy's multivariate normal density and the BLUP D Z' V^-1 (y - X beta)), then
sqrt(g' V g). None of it calls pymemoe's prediction code.
"""
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import logsumexp
from statsmodels.tools.numdiff import approx_fprime

from pymemoe import MEMoE, simulate
from pymemoe.simulate import paper_settings


@pytest.fixture(scope="module")
def fit(pbc):
    return MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                              gate_formula="~ age + C(sex)", n_experts=2).fit(n_starts=4,
                                                                              random_state=1)


@pytest.fixture(scope="module")
def new_patients():
    return pd.DataFrame({"id": [901, 901, 901, 902, 902, 903],
                         "year": [0.0, 1.0, 3.0, 0.0, 2.5, 6.0],
                         "age": [45.0, 45.0, 45.0, 62.0, 62.0, 50.0],
                         "sex": ["f", "f", "f", "m", "m", "f"],
                         "logbili": [0.3, 0.5, np.nan, 1.4, 1.9, np.nan]})


def _unpack(theta, labels):
    """gamma (K, r), beta (K, 2), D (K, 2, 2), sigma2 (K,) from a labelled user vector of the
    fixture's model (written from the labels, not with pymemoe._model.params)."""
    p = pd.Series(theta, index=labels)
    K = 2
    gamma = np.zeros((K, 3))
    gamma[1] = p.loc[("gate", 2)].loc[["Intercept", "C(sex)[T.m]", "age"]].to_numpy()
    beta = np.array([p.loc[("beta", k)].loc[["Intercept", "year"]].to_numpy() for k in (1, 2)])
    D = np.array([[[p[("re_cov", k, "Var(Intercept)")], p[("re_cov", k, "Cov(Intercept,year)")]],
                   [p[("re_cov", k, "Cov(Intercept,year)")], p[("re_cov", k, "Var(year)")]]]
                  for k in (1, 2)])
    sigma2 = np.array([p[("scale", k, "sigma2")] for k in (1, 2)])
    return gamma, beta, D, sigma2


def _design(frame):
    x = np.column_stack([np.ones(len(frame)), frame["year"]])
    w = np.column_stack([np.ones(len(frame)), (frame["sex"] == "m").astype(float), frame["age"]])
    return x, w


def _dense_marginal(theta, labels, frame):
    gamma, beta, _, _ = _unpack(theta, labels)
    x, w = _design(frame)
    eta = w @ gamma.T
    pi = np.exp(eta - logsumexp(eta, axis=1, keepdims=True))
    return (pi * (x @ beta.T)).sum(axis=1)


def _dense_conditional(theta, labels, frame):
    gamma, beta, D, sigma2 = _unpack(theta, labels)
    x, w = _design(frame)
    out = np.empty(len(frame))
    for subject, rows in frame.groupby("id").indices.items():   # a loop: this is the reference
        xs, y = x[rows], frame["logbili"].to_numpy()[rows]
        seen = np.isfinite(y)
        eta = w[rows[0]] @ gamma.T
        log_joint, means = np.log(np.exp(eta) / np.exp(eta).sum()), []
        log_joint = log_joint.copy()
        for k in range(2):
            Xh = xs[seen]
            V = Xh @ D[k] @ Xh.T + sigma2[k] * np.eye(seen.sum())
            resid = y[seen] - Xh @ beta[k]
            if seen.any():
                log_joint[k] += stats.multivariate_normal.logpdf(y[seen], Xh @ beta[k], V)
                b = D[k] @ Xh.T @ np.linalg.solve(V, resid)
            else:
                b = np.zeros(2)
            means.append(xs @ beta[k] + xs @ b)          # z = x here (random intercept + slope)
        tau = np.exp(log_joint - logsumexp(log_joint))
        out[rows] = tau[0] * means[0] + tau[1] * means[1]
    return out


def _fd_se(func, res, frame):
    theta, cov = res.params.to_numpy(), res.cov_params().to_numpy()
    jac = approx_fprime(theta, lambda t: func(t, res.params.index, frame), centered=True)
    return np.sqrt(np.einsum("np,pq,nq->n", jac, cov, jac))


def test_expert_se_is_exactly_sqrt_x_v_x(fit, new_patients):
    pred = fit.get_prediction(new_patients, kind="expert")
    x, _ = _design(new_patients)
    for k in (1, 2):
        block = fit.cov_params().loc[("beta", k), ("beta", k)].to_numpy()
        expected = np.sqrt(np.einsum("np,pq,nq->n", x, block, x))
        np.testing.assert_allclose(pred.se_mean[k].to_numpy(), expected, rtol=1e-12)
        np.testing.assert_allclose(pred.predicted_mean[k].to_numpy(), x @ fit.fe_params[k].to_numpy())


def test_marginal_se_matches_finite_differences_of_a_dense_prediction(fit, new_patients):
    pred = fit.get_prediction(new_patients, kind="marginal")
    np.testing.assert_allclose(pred.predicted_mean.to_numpy(),
                               _dense_marginal(fit.params.to_numpy(), fit.params.index,
                                               new_patients), rtol=1e-10)
    np.testing.assert_allclose(pred.se_mean.to_numpy(), _fd_se(_dense_marginal, fit, new_patients),
                               rtol=1e-5)


def test_conditional_se_matches_finite_differences_of_a_dense_prediction(fit, new_patients):
    pred = fit.get_prediction(new_patients, kind="conditional")
    np.testing.assert_allclose(pred.predicted_mean.to_numpy(),
                               _dense_conditional(fit.params.to_numpy(), fit.params.index,
                                                  new_patients), rtol=1e-8)
    np.testing.assert_allclose(pred.se_mean.to_numpy(),
                               _fd_se(_dense_conditional, fit, new_patients), rtol=1e-4)
    # patient 903 has no observed outcome: its conditional prediction is its marginal one
    marginal = fit.get_prediction(new_patients, kind="marginal")
    assert pred.se_mean.iloc[5] == pytest.approx(marginal.se_mean.iloc[5], rel=1e-4)


def test_summary_frame_has_statsmodels_columns_and_wald_limits(fit, new_patients):
    frame = fit.get_prediction(new_patients, kind="marginal").summary_frame(alpha=0.1)
    assert list(frame.columns) == ["mean", "mean_se", "mean_ci_lower", "mean_ci_upper"]
    assert frame.index.equals(new_patients.index)
    z = stats.norm.ppf(0.95)
    np.testing.assert_allclose(frame["mean_ci_upper"] - frame["mean"], z * frame["mean_se"])
    np.testing.assert_allclose(frame["mean"] - frame["mean_ci_lower"], z * frame["mean_se"])
    long = fit.get_prediction(new_patients, kind="expert").summary_frame()
    assert long.index.names[-1] == "expert" and len(long) == 2 * len(new_patients)
    ci = fit.get_prediction(new_patients, kind="expert").conf_int()
    assert list(ci.columns) == ["lower", "upper"]


def test_prediction_sets_from_the_prediction_object(fit, new_patients):
    pred = fit.get_prediction(new_patients, kind="conditional")
    sets = pred.prediction_set(alpha=0.1)
    pd.testing.assert_frame_equal(sets, fit.prediction_set(new_patients, alpha=0.1,
                                                           kind="conditional"))
    with pytest.raises(ValueError, match="kind='marginal' or 'conditional'"):
        fit.get_prediction(new_patients, kind="expert").prediction_set()


def test_fitting_data_conditional_se_and_no_standard_errors(fit, pbc):
    pred = fit.get_prediction(kind="conditional")
    np.testing.assert_allclose(pred.predicted_mean.to_numpy(), fit.fittedvalues.to_numpy())
    assert np.isfinite(pred.se_mean).all() and (pred.se_mean > 0).all()
    none = MEMoE.from_formula("logbili ~ year", pbc, "id", n_experts=1).fit(cov_type="none")
    with pytest.raises(ValueError, match="cov_type='oim' or 'robust'"):
        none.get_prediction(kind="expert")


@pytest.mark.slow
def test_confidence_intervals_of_expert_means_cover_the_truth():
    """Simulation with known truth (paper setting example 1, N = 300): the 95% intervals of the
    expert mean at t = 2.5 and of the marginal mean of a typical subject cover the true values
    at about the nominal rate over 100 data sets."""
    truth = paper_settings()["example1"]
    grid = pd.DataFrame({"time": [2.5], "x1": [0.3], "x2": [-0.2]})
    true_expert = truth.beta @ np.array([1.0, 2.5])
    eta = truth.gamma @ np.array([1.0, 0.3, -0.2])
    true_marginal = float(np.exp(eta - logsumexp(eta)) @ true_expert)
    hits_expert, hits_marginal = [], []
    for rep in range(100):
        sim = simulate(truth, 300, random_state=1000 + rep)
        res = MEMoE.from_formula(data=sim.data, n_experts=2, **sim.formula_kwargs).fit(
            n_starts=3, random_state=rep)
        # expert labels: match by intercept (the truth's intercepts are 1 and 2)
        order = np.argsort(res.fe_params.loc["Intercept"].to_numpy())
        ci = res.get_prediction(grid, kind="expert").summary_frame()
        lower, upper = ci["mean_ci_lower"].to_numpy()[order], ci["mean_ci_upper"].to_numpy()[order]
        hits_expert += list((lower <= true_expert) & (true_expert <= upper))
        m = res.get_prediction(grid, kind="marginal").summary_frame()
        hits_marginal.append(bool(m["mean_ci_lower"].iloc[0] <= true_marginal
                                  <= m["mean_ci_upper"].iloc[0]))
    assert 0.90 <= np.mean(hits_expert) <= 0.985
    assert 0.88 <= np.mean(hits_marginal) <= 0.99
