"""What the prediction tests share: simulated MEMoE data with known truth (and well-separated
experts), a fit, and the references computed by hand from the labelled results (the marginal
mixture, and the dense posterior of one subject's history)."""
import numpy as np
import pandas as pd
from scipy.special import softmax
from scipy.stats import multivariate_normal

from pymemoe import MEMoE

TRUTH = {
    "gamma": np.array([[0.0, 0.0, 0.0], [-0.3, 1.0, -0.8]]),   # gating on (1, x1, x2)
    "beta": np.array([[1.0, 0.2], [3.0, -0.4]]),                # (Intercept, time)
    "cov_re": np.array([[[0.5, 0.05], [0.05, 0.04]], [[0.2, -0.02], [-0.02, 0.01]]]),
    "scale": np.array([0.25, 0.1]),
}


SEPARATED = {                                                   # intercepts 0 and 10
    "gamma": np.array([[0.0, 0.0, 0.0], [0.2, 0.5, -0.5]]),
    "beta": np.array([[0.0, 0.1], [10.0, -0.1]]),
    "cov_re": np.array([[[0.1, 0.0], [0.0, 0.01]], [[0.1, 0.0], [0.0, 0.01]]]),
    "scale": np.array([0.1, 0.1]),
}


MODEL = dict(re_formula="~ time", gate_formula="~ x1 + x2", n_experts=2)


def simulate(n, truth=TRUTH, seed=0, visits=(4, 8), first_id=0):
    """Long-format data from a MEMoE (intercept + time fixed and random effects), vectorised."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.binomial(1, 0.5, size=n).astype(float)
    prob = softmax(np.column_stack([np.ones(n), x1, x2]) @ truth["gamma"].T, axis=1)
    k = (rng.random(n)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1)
    n_i = rng.integers(visits[0], visits[1] + 1, size=n)
    sid = np.repeat(np.arange(n), n_i)
    t = rng.uniform(0, 5, size=sid.size)
    b = np.einsum("nab,nb->na", np.linalg.cholesky(truth["cov_re"])[k], rng.normal(size=(n, 2)))
    ks = k[sid]
    y = (truth["beta"][ks, 0] + b[sid, 0] + (truth["beta"][ks, 1] + b[sid, 1]) * t
         + rng.normal(size=sid.size) * np.sqrt(truth["scale"][ks]))
    return pd.DataFrame({"id": sid + first_id, "time": t, "x1": x1[sid], "x2": x2[sid], "y": y})


def fit(data, n_starts=2, **kwargs):
    return MEMoE.from_formula("y ~ time", data, "id", **{**MODEL, **kwargs}).fit(
        n_starts=n_starts, random_state=0)


def design(df):
    X = np.column_stack([np.ones(len(df)), df["time"]])
    return X, X.copy(), np.column_stack([np.ones(len(df)), df["x1"], df["x2"]])


def hand_params(res):
    K = res.n_experts
    return (res.gate_params.to_numpy().T, res.fe_params.to_numpy().T,
            np.stack([res.cov_re[k + 1].to_numpy() for k in range(K)]), res.scale.to_numpy())


def hand_marginal_mixture(res, df):
    """Weights, means and variances of the marginal predictive mixture, by hand."""
    gamma, beta, D, s2 = hand_params(res)
    X, Z, W = design(df)
    w = softmax(W @ gamma.T, axis=1)
    var = np.einsum("nq,kqr,nr->nk", Z, D, Z) + s2
    return w, X @ beta.T, var


def hand_posterior(res, hist):
    """Dense per-subject posterior: tau_k, b_hat_k and Sigma_k from the history rows of one subject."""
    gamma, beta, D, s2 = hand_params(res)
    X, Z, W = design(hist)
    y = hist["y"].to_numpy()
    log_w = np.log(softmax(W[0] @ gamma.T))
    logf, b_hat, b_cov = [], [], []
    for k in range(beta.shape[0]):
        V = Z @ D[k] @ Z.T + s2[k] * np.eye(len(y))
        logf.append(multivariate_normal.logpdf(y, X @ beta[k], V))
        b_hat.append(D[k] @ Z.T @ np.linalg.solve(V, y - X @ beta[k]))
        b_cov.append(D[k] - D[k] @ Z.T @ np.linalg.solve(V, Z @ D[k]))
    return softmax(log_w + np.array(logf)), np.array(b_hat), np.array(b_cov)
