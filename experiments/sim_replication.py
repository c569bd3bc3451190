"""One replication of the simulation study: draw a data set of a setting, fit every model,
score classification, prediction and parameter recovery (see :mod:`sim_design`)."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from pymemoe._estimation.inference import cov_oim, cov_robust
from pymemoe._model.params import Params
from pymemoe.metrics import (adjusted_rand_index, match_labels, relabel_matrix,
                             relabelled_variances, truth_vector)
from pymemoe.model import MEMoE
from pymemoe.simulate import simulate

from sim_design import MODELS, SETTINGS, ModelSpec, StudyConfig, replication_seed

__all__ = ["run_replication", "run_job"]


def _classification(true: np.ndarray, pred: np.ndarray, mapping: np.ndarray) -> tuple[float, float]:
    accuracy = float(np.mean(mapping[pred - 1] == true)) if true.size else np.nan
    return accuracy, adjusted_rand_index(true, pred)


def _fit_model(spec: ModelSpec, train: pd.DataFrame, test: pd.DataFrame, truth: Params,
               true_train: pd.Series, true_test: pd.Series, seed: np.random.SeedSequence,
               config: StudyConfig) -> tuple[dict, list[dict]]:
    row: dict = {"model": spec.name, "status": "ok"}
    params: list[dict] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            t0 = time.perf_counter()
            model = MEMoE.from_formula("y ~ time", train, "id", **spec.from_formula_kwargs())
            res = model.fit(n_starts=config.n_starts, random_state=seed, cov_type="none")
            t1 = time.perf_counter()
            covs = {"oim": cov_oim(model.data, model.structure, res.state).cov,
                    "robust": cov_robust(model.data, model.structure, res.state).cov}
            t2 = time.perf_counter()
            pred_marginal = res.predict(test, kind="marginal").to_numpy()
            pred_dynamic = res.predict(test, kind="conditional", landmark=config.landmark,
                                       time="time").to_numpy()
            post_test = res.predict_class(test) if spec.n_experts == truth.n_experts else None
        except (ValueError, np.linalg.LinAlgError, FloatingPointError, RuntimeError) as err:
            row["status"] = f"error: {type(err).__name__}: {err}"[:300]
            row["n_warnings"] = len(caught)
            return row, params
    y = test["y"].to_numpy()
    future = test["time"].to_numpy() > config.landmark
    row.update(converged=bool(res.converged), n_params=int(res.df_modelwc), llf=res.llf,
               bic=res.bic, pmse_marginal=float(np.mean((y - pred_marginal) ** 2)),
               pmse_dynamic=float(np.mean((y[future] - pred_dynamic[future]) ** 2)),
               n_dynamic=int(future.sum()), time_fit=t1 - t0, time_se=t2 - t1,
               n_warnings=len(caught))
    if spec.n_experts != truth.n_experts:
        return row, params          # LMM: no classes to compare, no comparable parameters

    K = spec.n_experts
    pred = res.predicted_class.reindex(true_train.index).to_numpy()
    cost = np.abs(res.fe_params.loc["Intercept"].to_numpy()[:, None] - truth.beta[None, :, 0])
    mapping = match_labels(true_train.to_numpy(), pred, K, cost=cost)
    row["accuracy"], row["ari"] = _classification(true_train.to_numpy(), pred, mapping)
    pred_test = post_test.to_numpy().argmax(axis=1) + 1
    true_t = true_test.reindex(post_test.index).to_numpy()
    row["accuracy_test"], row["ari_test"] = _classification(true_t, pred_test, mapping)

    labels = res.params.index
    order = np.argsort(mapping) + 1              # new (true) expert k <- fitted expert order[k-1]
    T = relabel_matrix(labels, order)
    estimate = T @ res.params.to_numpy()
    se = {name: np.sqrt(np.maximum(relabelled_variances(T, cov), 0.0))
          for name, cov in covs.items()}
    true_values = truth_vector(truth, model.structure)
    for j, (block, expert, term) in enumerate(labels):
        if not np.isfinite(true_values[j]):
            continue
        params.append({"model": spec.name, "param_index": j, "block": block,
                       "expert": str(expert), "term": term, "truth": true_values[j],
                       "estimate": estimate[j], "se_oim": se["oim"][j],
                       "se_robust": se["robust"][j]})
    return row, params


def run_replication(setting: str, rep: int, config: StudyConfig) -> tuple[list[dict], list[dict]]:
    """Draw one data set of ``setting`` and fit every model of ``config`` to it.

    Returns the rows of ``raw/replications.csv`` (one per model) and of ``raw/parameters.csv``
    (one per model and comparable parameter).
    """
    spec = SETTINGS[setting]
    truth = spec.params
    seeds = replication_seed(config.seed, setting, rep).spawn(1 + len(MODELS))
    n_train = config.n_subjects
    sim = simulate(truth, n_train + config.n_test, visits=config.visits,
                   follow_up=config.follow_up, errors=spec.errors, df=spec.df,
                   random_state=seeds[0])
    data = sim.data
    is_train = data["id"].to_numpy() <= n_train
    train = data[is_train].reset_index(drop=True)
    test = data[~is_train].reset_index(drop=True)
    true_train = sim.expert.iloc[:n_train]
    true_test = sim.expert.iloc[n_train:]
    model_rows, param_rows = [], []
    for m, name in enumerate(MODELS):
        if name not in config.models:
            continue
        row, params = _fit_model(MODELS[name], train, test, truth, true_train, true_test,
                                 seeds[1 + m], config)
        common = {"setting": setting, "rep": rep}
        model_rows.append({**common, **row})
        param_rows.extend({**common, **p} for p in params)
    return model_rows, param_rows


def run_job(args) -> tuple[str, int, list[dict], list[dict], float]:
    """One replication as a job of the process pool: (setting, rep, rows, params, seconds)."""
    setting, rep, config = args
    start = time.perf_counter()
    model_rows, param_rows = run_replication(setting, rep, config)
    return setting, rep, model_rows, param_rows, time.perf_counter() - start
