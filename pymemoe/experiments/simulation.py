r"""Simulation study: the MEMoE against a shared-variance mixture, a MoE without random effects
and the linear mixed model, on data with known truth.

Run it from the command line (small ``--reps`` for a smoke test, the default for the study)::

    python -m pymemoe.experiments.simulation --reps 100 --out DIR [--workers 2]
        [--settings example1 example2 ...] [--n-subjects 200] [--n-test 100] [--n-starts 5]
        [--seed 20250101] [--resume] [--tables-only]

Design
------
The study follows the design of the MEMoE paper (of which only the abstract is available to
us): data are drawn from a two-expert MEMoE with known parameters
(:func:`pymemoe.simulate.paper_settings`), four models are fitted to every data set, and the
models are compared on parameter recovery, classification of the subjects, prediction of
held-out subjects and fit. The paper's claims under test are that the MEMoE recovers the
parameters and the latent classes better than the linear mixed model (LMM) and the
conventional mixture of experts (MoE), predicts better, fits better, stays reliable as the
random-effect variance grows, and that its sandwich standard errors remain valid when the
error distribution is misspecified.

**Data.** Each replication draws ``n_subjects + n_test`` subjects with
:func:`pymemoe.simulate.simulate`: 6 to 10 regular visits over 5 years, gating covariates
x1, x2 independent standard normals, intercept + time fixed and random effects, K = 2 experts
(expert 2 is chosen with probability 0.41 on average). The first ``n_subjects`` subjects are the
training set; the others are held out.

**Settings** (what each one tests):

``example1``
    Experts differ in fixed effects only (equal D_k and sigma2_k). The shared-variance mixture
    is then the true model with fewer parameters: the MEMoE's extra variance parameters can
    only cost precision here.
``example2``
    Experts differ in fixed effects, in the random-effects covariance and in the residual
    variance. The shared-variance mixture is misspecified; the MEMoE is the true model.
``example3_case1``, ``example3_case2``, ``example3_case3``
    Increasing random-effect variance (SDs of the random intercept and slope 0.25/0.05,
    0.5/0.1, 1.0/0.2; equal in both experts). Case 2 has the same truth as example 1 (so the
    two give independent replicates of one setting). The experts overlap more and more, so
    classification gets harder, and a MoE that ignores the random effects loses more. The
    paper reports the MEMoE robust to it.
``misspecified_t5``
    The parameters of example 2 with Student-t errors (5 degrees of freedom, scaled to the same
    residual variances; excess kurtosis 6). The Gaussian likelihood is misspecified: the
    model-based (inverse observed information) standard errors of the variance parameters are
    too small, the subject-level sandwich should keep its coverage. t5 rather than t3 so that
    the fourth moments, hence the sandwich's meat for the variances, are finite.

**Models** fitted to the training subjects (``y ~ time``, subjects ``id``):

``memoe``
    The full MEMoE: random intercept and slope with an unrestricted D_k and a residual
    variance per expert, gating on x1 + x2 (``cov_re="expert", scale="expert"``).
``shared``
    The shared-variance mixture of lcmm's ``hlme(mixture=, classmb=)``: one D and one
    residual variance for both experts (``cov_re="shared", scale="shared"``).
``moe``
    The conventional mixture of (regression) experts without random effects
    (``re_formula="0"``): observations of a subject are independent given its expert.
``lmm``
    The linear mixed model (``n_experts=1``): no latent classes.

Every fit uses ``n_starts`` EM starts; both standard errors come from the same fit
(:func:`pymemoe.inference.cov_oim` and :func:`~pymemoe.inference.cov_robust`).

**Metrics.**

* Parameters (K = 2 models only): the fitted experts are matched to the true ones by the
  permutation that maximises the agreement of the predicted classes with the true classes
  (ties broken by the distance of the intercepts), the gating is re-expressed against the
  matched reference expert, then bias, empirical SD, RMSE, mean model-based and robust SE and
  the coverage of the 95% Wald intervals est +/- 1.96 SE are computed over the replications.
  Only parameters that have a true counterpart are reported: the shared D and sigma2 of the
  ``shared`` model only when the truth has equal D_k (resp. sigma2_k), the residual variance
  of the ``moe`` model never (it absorbs the random-effect variance). The LMM has no parameter
  metrics: its single set of fixed effects estimates a population average that is not a
  parameter of the truth.
* Classification (K = 2 models): accuracy of the most probable expert after matching the labels,
  and the adjusted Rand index (label-free), on the training subjects (posterior from the fit)
  and on the held-out subjects (posterior from their outcomes, ``predict_class``).
* Prediction of the held-out subjects: PMSE of the marginal prediction from the baseline
  covariates alone (``predict(kind="marginal")``, all visits), and PMSE of the dynamic
  prediction of the visits after the landmark (time > 2.5) from the visits up to it
  (``predict(kind="conditional", landmark=2.5)``).
* Fit: BIC (log(number of subjects) penalty) and the share of replications in which each
  model has the smallest BIC. Run time of the fit (EM + polish) and of the two covariances.

**Reproducibility.** One ``numpy.random.SeedSequence(seed)`` is spawned into one child per
setting (in the fixed order of :data:`SETTINGS`) and each of those into one child per
replication; a replication's child is spawned again into the data seed and one seed per model
(in the order of :data:`MODELS`). Replication r of a setting therefore gets the same data and
fits whatever the number of replications, the subset of settings or the number of workers.
Replications run in a process pool (``--workers``); the per-replication raw results are
appended to ``raw/*.csv`` as they finish, so the tables can be rebuilt (``--tables-only``) and an
interrupted study continued (``--resume``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..inference import cov_oim, cov_robust
from ..model import MEMoE
from ..params import Params, Structure, param_labels
from ..simulate import paper_settings, simulate
from ..tables import render_markdown

__all__ = [
    "Setting", "ModelSpec", "StudyConfig", "SETTINGS", "MODELS", "adjusted_rand_index",
    "contingency_table", "match_labels", "relabel_matrix", "truth_vector", "replication_seed",
    "run_replication", "run_study", "summarise_models", "summarise_parameters",
    "write_outputs", "main",
]

Z95 = 1.959963984540054


# -- settings and models --------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """A data-generating setting: a parameter set of ``paper_settings`` and the error law."""

    name: str
    truth: str                  # key of pymemoe.simulate.paper_settings()
    title: str
    tests: str
    errors: str = "normal"
    df: float = 3.0

    @property
    def params(self) -> Params:
        return paper_settings()[self.truth]


@dataclass(frozen=True)
class ModelSpec:
    """A fitted model: options of :meth:`pymemoe.MEMoE.from_formula`."""

    name: str
    label: str
    n_experts: int
    description: str
    re_formula: str = "~ time"
    gate_formula: str = "~ x1 + x2"
    cov_re: str = "expert"
    scale: str = "expert"

    def from_formula_kwargs(self) -> dict:
        return dict(re_formula=self.re_formula, gate_formula=self.gate_formula,
                    n_experts=self.n_experts, cov_re=self.cov_re, scale=self.scale)


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("example1", "example1", "Example 1: experts differ in fixed effects only",
            "recovery and classification when the experts share D and sigma2 (the shared-"
            "variance mixture is the true model here)"),
    Setting("example2", "example2",
            "Example 2: experts differ in fixed effects, random-effects covariance and "
            "residual variance",
            "the benefit of expert-specific variance components (the shared-variance mixture "
            "is misspecified)"),
    Setting("example3_case1", "example3_case1",
            "Example 3, case 1: small random-effect variance (SD 0.25 / 0.05)",
            "robustness to the random-effect variance: well separated experts"),
    Setting("example3_case2", "example3_case2",
            "Example 3, case 2: medium random-effect variance (SD 0.5 / 0.1)",
            "robustness to the random-effect variance (the same truth as example 1 in "
            "paper_settings; its data are independent of example 1's)"),
    Setting("example3_case3", "example3_case3",
            "Example 3, case 3: large random-effect variance (SD 1.0 / 0.2)",
            "robustness to the random-effect variance: overlapping experts"),
    Setting("misspecified_t5", "example2",
            "Misspecified: example 2 with Student-t(5) errors of the same variance",
            "model-based against sandwich standard errors under heavy-tailed errors",
            errors="t", df=5.0),
)}

MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("memoe", "MEMoE", 2, "full MEMoE: D_k and sigma2_k per expert, gating ~ x1 + x2"),
    ModelSpec("shared", "Shared-variance mixture (hlme)", 2,
              "lcmm hlme's model: one D and one sigma2 for both experts, gating ~ x1 + x2",
              cov_re="shared", scale="shared"),
    ModelSpec("moe", "MoE without random effects", 2,
              "mixture of regression experts without random effects (re_formula='0'), "
              "sigma2_k per expert, gating ~ x1 + x2", re_formula="0"),
    ModelSpec("lmm", "LMM (K = 1)", 1,
              "linear mixed model, random intercept and slope (n_experts=1)",
              gate_formula="~ 1"),
)}


@dataclass(frozen=True)
class StudyConfig:
    """Everything that determines the study's numbers (saved as ``config.json``)."""

    reps: int = 100
    n_subjects: int = 200
    n_test: int = 100
    n_starts: int = 5
    seed: int = 20250101
    settings: tuple[str, ...] = tuple(SETTINGS)
    models: tuple[str, ...] = tuple(MODELS)
    visits: tuple[int, int] = (6, 10)
    follow_up: float = 5.0
    landmark: float = 2.5

    def __post_init__(self) -> None:
        for name in ("reps", "n_subjects", "n_test", "n_starts"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_subjects < 10:
            raise ValueError(f"n_subjects must be at least 10, got {self.n_subjects}")
        object.__setattr__(self, "settings", tuple(self.settings))
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "visits", tuple(int(v) for v in self.visits))
        unknown = set(self.settings) - set(SETTINGS)
        if unknown or not self.settings:
            raise ValueError(f"settings must be a non-empty subset of {list(SETTINGS)}, "
                             f"got {list(self.settings)}")
        unknown = set(self.models) - set(MODELS)
        if unknown or not self.models:
            raise ValueError(f"models must be a non-empty subset of {list(MODELS)}, "
                             f"got {list(self.models)}")
        if not 0 < self.landmark < self.follow_up:
            raise ValueError(f"landmark must be inside (0, follow_up), got {self.landmark}")

    def to_json(self) -> dict:
        out = asdict(self)
        out["settings"], out["models"], out["visits"] = (list(self.settings), list(self.models),
                                                         list(self.visits))
        return out

    @classmethod
    def from_json(cls, values: dict) -> "StudyConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# -- classification: contingency table, adjusted Rand index, label matching -------------------

def contingency_table(labels_a, labels_b) -> np.ndarray:
    """Counts n_ij of items with label i in ``labels_a`` and label j in ``labels_b``.

    Rows and columns are the sorted distinct labels of each partition.

    Examples
    --------
    >>> contingency_table([1, 1, 2, 2], [1, 2, 2, 2]).tolist()
    [[1, 1], [0, 2]]
    """
    a, b = np.asarray(labels_a), np.asarray(labels_b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"the two labellings must be 1-d of the same length, got shapes "
                         f"{a.shape} and {b.shape}")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max(initial=-1) + 1, ib.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    return table


def _pairs(x) -> np.ndarray | float:
    x = np.asarray(x, dtype=float)
    return x * (x - 1.0) / 2.0


def adjusted_rand_index(labels_true, labels_pred) -> float:
    r"""Adjusted Rand index of two partitions (Hubert & Arabie 1985), from the contingency table.

    With n_ij the contingency table, a_i and b_j its row and column sums and C(m) = m (m - 1) / 2::

        index    = sum_ij C(n_ij)
        expected = sum_i C(a_i) sum_j C(b_j) / C(n)
        maximum  = (sum_i C(a_i) + sum_j C(b_j)) / 2
        ARI      = (index - expected) / (maximum - expected)

    1 for identical partitions (whatever the labels), about 0 for independent ones, negative
    below chance. When the denominator is 0 (both partitions a single cluster, or both all
    singletons) the partitions are identical and the ARI is 1.

    Examples
    --------
    >>> adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    >>> round(adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 2]), 6)   # 4 / 7
    0.571429
    >>> round(adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]), 6)    # below chance
    -0.5
    """
    table = contingency_table(labels_true, labels_pred)
    n = table.sum()
    if n < 2:
        return 1.0
    index = float(_pairs(table).sum())
    sum_a = float(_pairs(table.sum(axis=1)).sum())
    sum_b = float(_pairs(table.sum(axis=0)).sum())
    expected = sum_a * sum_b / float(_pairs(n))
    maximum = (sum_a + sum_b) / 2.0
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def match_labels(labels_true, labels_pred, n_experts: int | None = None,
                 cost=None) -> np.ndarray:
    """The true expert of each fitted expert: the permutation maximising the agreement.

    Labels are 1..K in both partitions. Among all permutations of the K experts, the one that
    maximises the number of subjects whose mapped predicted label equals the true label is
    chosen (brute force over the K! permutations: meant for small K); ties are broken by the
    smallest total ``cost`` (a K x K array, cost[j, k] of mapping fitted expert j + 1 to true
    expert k + 1, e.g. the distance between the fitted and true intercepts), then by the
    order of the permutations.

    Returns
    -------
    numpy.ndarray of int, shape (K,)
        ``mapping[j - 1]`` is the true expert (1-based) matched to fitted expert j.

    Examples
    --------
    >>> match_labels([1, 1, 1, 2, 2], [2, 2, 1, 1, 1]).tolist()
    [2, 1]
    >>> match_labels([1, 2], [1, 1], cost=[[1.0, 0.0], [0.0, 1.0]]).tolist()   # a tie
    [2, 1]
    """
    t = np.asarray(labels_true).astype(int)
    p = np.asarray(labels_pred).astype(int)
    if t.shape != p.shape:
        raise ValueError("labels_true and labels_pred must have the same length")
    K = int(n_experts) if n_experts is not None else int(max(t.max(initial=1),
                                                              p.max(initial=1)))
    if t.size and (t.min() < 1 or p.min() < 1 or t.max() > K or p.max() > K):
        raise ValueError(f"labels must be integers in 1..{K}")
    counts = np.zeros((K, K), dtype=np.int64)           # counts[fitted j, true k]
    np.add.at(counts, (p - 1, t - 1), 1)
    cost = np.zeros((K, K)) if cost is None else np.asarray(cost, dtype=float)
    if cost.shape != (K, K):
        raise ValueError(f"cost must have shape ({K}, {K}), got {cost.shape}")
    rows = np.arange(K)
    best, best_key = None, None
    for perm in itertools.permutations(range(K)):
        perm = np.asarray(perm)
        key = (-int(counts[rows, perm].sum()), float(cost[rows, perm].sum()))
        if best_key is None or key < best_key:
            best, best_key = perm, key
    return best + 1


def relabel_matrix(labels: pd.MultiIndex, order: Sequence[int]) -> np.ndarray:
    """Linear map of a user parameter vector to the experts in a new order.

    New expert k (1-based) is old expert ``order[k - 1]`` (1-based), as
    :func:`pymemoe.params.reorder` with ``perm = order - 1``. Fixed effects, covariances and
    residual variances are permuted; the gating coefficients are re-expressed against the new
    reference expert, gamma'_k = gamma_{order[k]} - gamma_{order[1]} (gamma_1 = 0): also
    linear, so the covariance of the relabelled vector is T Cov T'. Parameters shared by all
    experts are unchanged. (SD ratios of ``cov_re="proportional"`` are not linear in the
    order; their rows are NaN.)

    Examples
    --------
    >>> import pandas as pd
    >>> labels = pd.MultiIndex.from_tuples([("gate", 2, "Intercept"), ("beta", 1, "Intercept"),
    ...                                     ("beta", 2, "Intercept"), ("scale", "all", "sigma2")])
    >>> relabel_matrix(labels, [2, 1]).tolist()
    [[-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    """
    order = [int(k) for k in order]
    pos = {tuple(label): i for i, label in enumerate(labels)}
    T = np.zeros((len(labels), len(labels)))
    for i, (block, expert, term) in enumerate(labels):
        if expert == "all":
            T[i, i] = 1.0
        elif term == "SD ratio":
            T[i, :] = np.nan
        elif block == "gate":
            src, ref = order[int(expert) - 1], order[0]
            if src != 1:
                T[i, pos[("gate", src, term)]] += 1.0
            if ref != 1:
                T[i, pos[("gate", ref, term)]] -= 1.0
        else:
            T[i, pos[(block, order[int(expert) - 1], term)]] = 1.0
    return T


def _relabelled_variances(T: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """diag(T Cov T') without letting a NaN spread through the zeros of T."""
    out = np.full(T.shape[0], np.nan)
    for i in range(T.shape[0]):
        idx = np.flatnonzero(T[i] != 0)
        if idx.size and np.isfinite(T[i, idx]).all():
            out[i] = T[i, idx] @ cov[np.ix_(idx, idx)] @ T[i, idx]
    return out


def truth_vector(truth: Params, structure: Structure) -> np.ndarray:
    """True value of each parameter of a fitted model (labels ``param_labels(structure)``).

    NaN where the fitted model's parameter has no true counterpart: the number of experts
    differs, a shared D (sigma2) when the true D_k (sigma2_k) differ, the residual variance of a
    model without random effects when the truth has random effects, SD ratios.
    """
    labels = param_labels(structure)
    out = np.full(len(labels), np.nan)
    if truth.n_experts != structure.n_experts:
        return out
    fe, re, gate = structure.exog_names, structure.exog_re_names, structure.exog_gate_names
    true_re = ("Intercept", "time")
    has_true_re = bool(np.any(truth.cov_re != 0))
    D_equal = bool(np.allclose(truth.cov_re, truth.cov_re[0]))
    s_equal = bool(np.allclose(truth.scale, truth.scale[0]))
    for i, (block, expert, term) in enumerate(labels):
        k = 0 if expert == "all" else int(expert) - 1
        if block == "gate" and term in gate:
            j = gate.index(term)
            out[i] = truth.gamma[k, j] if j < truth.gamma.shape[1] else np.nan
        elif block == "beta" and term in fe and fe.index(term) < truth.beta.shape[1]:
            out[i] = truth.beta[k, fe.index(term)]
        elif block == "re_cov" and term != "SD ratio":
            if expert == "all" and not D_equal:
                continue
            inner = term[term.index("(") + 1:-1].split(",")
            if all(name in true_re for name in inner) and all(name in re for name in inner):
                a, b = (true_re.index(inner[0]), true_re.index(inner[-1]))
                out[i] = truth.cov_re[k, a, b]
        elif block == "scale":
            if (structure.k_re == 0 and has_true_re) or (expert == "all" and not s_equal):
                continue
            out[i] = truth.scale[k]
    return out


# -- one replication ------------------------------------------------------------------------------

MODEL_COLUMNS = ["setting", "rep", "model", "status", "converged", "n_params", "llf", "bic",
                 "accuracy", "ari", "accuracy_test", "ari_test", "pmse_marginal",
                 "pmse_dynamic", "n_dynamic", "time_fit", "time_se", "n_warnings"]
PARAM_COLUMNS = ["setting", "rep", "model", "param_index", "block", "expert", "term", "truth",
                 "estimate", "se_oim", "se_robust"]


def replication_seed(seed: int, setting: str, rep: int) -> np.random.SeedSequence:
    """The SeedSequence of replication ``rep`` (0-based) of ``setting``.

    ``SeedSequence(seed).spawn(len(SETTINGS))[s].spawn(rep + 1)[rep]`` with s the position of
    the setting in :data:`SETTINGS`: independent of the number of replications and of the
    subset of settings run.
    """
    s = list(SETTINGS).index(setting)
    return np.random.SeedSequence(seed).spawn(len(SETTINGS))[s].spawn(rep + 1)[rep]


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
    se = {name: np.sqrt(np.maximum(_relabelled_variances(T, cov), 0.0))
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


def _run_job(args) -> tuple[str, int, list[dict], list[dict], float]:
    setting, rep, config = args
    start = time.perf_counter()
    model_rows, param_rows = run_replication(setting, rep, config)
    return setting, rep, model_rows, param_rows, time.perf_counter() - start


# -- the study --------------------------------------------------------------------------------------

def _raw_paths(out: Path) -> tuple[Path, Path]:
    return out / "raw" / "replications.csv", out / "raw" / "parameters.csv"


def _append(path: Path, rows: list[dict], columns: list[str]) -> None:
    if not rows:
        return
    frame = pd.DataFrame(rows).reindex(columns=columns)
    frame.to_csv(path, mode="a", header=not path.exists(), index=False)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _ThreadLimits:
    """Single-threaded BLAS in the worker processes (set before they import numpy)."""

    NAMES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.NAMES}
        for k in self.NAMES:
            os.environ.setdefault(k, "1")
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return False


def _sorted_raw(frame: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    settings = [s for s in SETTINGS if s in set(frame["setting"])]
    models = [m for m in MODELS if m in set(frame["model"])]
    key = pd.DataFrame({
        "s": pd.Categorical(frame["setting"], categories=settings, ordered=True).codes,
        "m": pd.Categorical(frame["model"], categories=models, ordered=True).codes,
    }, index=frame.index)
    cols = ["s", "rep", "m", *extra]
    order = pd.concat([key, frame[["rep", *extra]]], axis=1).sort_values(cols, kind="stable")
    return frame.loc[order.index].reset_index(drop=True)


def run_study(out, config: StudyConfig | None = None, workers: int = 2, progress: bool = True,
              resume: bool = False) -> dict[str, pd.DataFrame]:
    """Run the simulation study and write every output into the folder ``out``.

    Parameters
    ----------
    out : str or Path
        Output folder (created). ``raw/replications.csv`` and ``raw/parameters.csv`` grow as
        replications finish; the tables, plots and README are written at the end.
    config : StudyConfig, optional
        Replications, sample sizes, starts, seed, settings and models (default
        ``StudyConfig()``: 100 replications of every setting).
    workers : int
        Processes of the pool (1: run in this process).
    progress : bool
        Print one line per finished replication (with the elapsed time and an estimate of the
        time left).
    resume : bool
        Keep the replications already in ``out/raw`` (same configuration) and run the others.

    Returns
    -------
    dict of str to DataFrame
        ``"models"`` and ``"parameters"`` (the summary tables) and ``"replications"``,
        ``"raw_parameters"`` (the raw results).
    """
    config = config or StudyConfig()
    out = Path(out)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    reps_path, params_path = _raw_paths(out)
    config_path = out / "config.json"
    done: set[tuple[str, int]] = set()
    if resume and reps_path.exists() and config_path.exists():
        old = StudyConfig.from_json(json.loads(config_path.read_text()))
        same = {k: v for k, v in old.to_json().items() if k not in ("reps", "settings")}
        new = {k: v for k, v in config.to_json().items() if k not in ("reps", "settings")}
        if same != new:
            raise ValueError(f"--resume: the configuration in {config_path} differs from this "
                             f"one ({same} against {new}); use another --out")
        previous = pd.read_csv(reps_path)
        counts = previous.groupby(["setting", "rep"])["model"].nunique()
        done = {key for key, n in counts.items() if n == len(config.models)}
        # drop partial replications (an interruption while writing)
        keep = previous.set_index(["setting", "rep"]).index.isin(list(done))
        previous[keep].to_csv(reps_path, index=False)
        if params_path.exists():
            p = pd.read_csv(params_path)
            p[p.set_index(["setting", "rep"]).index.isin(list(done))].to_csv(params_path,
                                                                              index=False)
    else:
        for path in (reps_path, params_path):
            if path.exists():
                path.unlink()
    config_path.write_text(json.dumps(config.to_json(), indent=2) + "\n")

    jobs = [(s, r, config) for s in config.settings for r in range(config.reps)
            if (s, r) not in done]
    total = len(jobs)
    if progress:
        print(f"simulation study: {len(config.settings)} settings x {config.reps} replications "
              f"({total} to run, {len(done)} kept), {config.n_subjects} training + "
              f"{config.n_test} held-out subjects, {config.n_starts} starts, models "
              f"{', '.join(config.models)}, {workers} worker(s); output {out}", flush=True)
    start = time.perf_counter()

    def record(result, finished: int) -> None:
        setting, rep, model_rows, param_rows, seconds = result
        _append(reps_path, model_rows, MODEL_COLUMNS)
        _append(params_path, param_rows, PARAM_COLUMNS)
        if progress:
            elapsed = time.perf_counter() - start
            eta = elapsed / finished * (total - finished)
            failed = sum(r["status"] != "ok" for r in model_rows)
            note = f", {failed} failed fit(s)" if failed else ""
            print(f"[{finished:>{len(str(total))}}/{total}] {setting} rep {rep} "
                  f"({seconds:.1f} s{note}) | elapsed {_clock(elapsed)} | "
                  f"left ~{_clock(eta)}", flush=True)

    if workers <= 1:
        for i, job in enumerate(jobs, start=1):
            record(_run_job(job), i)
    elif jobs:
        with _ThreadLimits(), ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_job, job) for job in jobs]
            for i, future in enumerate(as_completed(futures), start=1):
                record(future.result(), i)
    if progress:
        print(f"done in {_clock(time.perf_counter() - start)}; writing tables", flush=True)
    return write_outputs(out, config, progress=progress)


# -- summaries ------------------------------------------------------------------------------------

def _ordered(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Rows in the order of SETTINGS and MODELS."""
    settings = [s for s in SETTINGS if s in set(frame.index.get_level_values("setting"))]
    models = [m for m in MODELS if m in set(frame.index.get_level_values("model"))]
    full = pd.MultiIndex.from_product([settings, models], names=list(keys))
    return frame.reindex(full[full.isin(frame.index)])


def _best_share(ok: pd.DataFrame, column: str) -> pd.Series:
    """Share of replications of each setting in which each model has the smallest value."""
    valid = ok[np.isfinite(ok[column].to_numpy(dtype=float))]
    if valid.empty:
        return pd.Series(dtype=float)
    winners = valid.loc[valid.groupby(["setting", "rep"])[column].idxmin()]
    wins = winners.groupby(["setting", "model"]).size()
    n_reps = valid.groupby("setting")["rep"].nunique()
    share = wins / n_reps.reindex(wins.index.get_level_values("setting")).to_numpy()
    return share


def summarise_models(replications: pd.DataFrame) -> pd.DataFrame:
    """Per setting x model: fits, convergence, BIC, classification, PMSE and run time.

    Columns: ``fits`` (successful), ``failed``, ``converged`` (share), ``n_params``,
    ``bic_mean``, ``bic_sd``, ``bic_best`` (share of replications in which the model has the
    smallest BIC of the models fitted), ``accuracy`` / ``ari`` (training subjects, mean) and
    their SDs, ``accuracy_test`` / ``ari_test`` (held-out subjects), ``pmse_marginal_mean`` /
    ``_sd`` / ``_best`` and the same for ``pmse_dynamic``, ``time_fit`` and ``time_se``
    (mean seconds).
    """
    frame = replications.copy()
    ok = frame[frame["status"] == "ok"].copy()
    for col in MODEL_COLUMNS[4:]:
        if col in ok:
            ok[col] = pd.to_numeric(ok[col], errors="coerce")
    ok["converged"] = ok["converged"].astype(float)
    g = ok.groupby(["setting", "model"])
    failed = (frame["status"] != "ok").groupby([frame["setting"], frame["model"]]).sum()
    table = pd.DataFrame({
        "fits": g.size(),
        "failed": failed,
        "converged": g["converged"].mean(),
        "n_params": g["n_params"].median(),
        "bic_mean": g["bic"].mean(),
        "bic_sd": g["bic"].std(),
        "bic_best": _best_share(ok, "bic"),
        "accuracy": g["accuracy"].mean(),
        "accuracy_sd": g["accuracy"].std(),
        "ari": g["ari"].mean(),
        "ari_sd": g["ari"].std(),
        "accuracy_test": g["accuracy_test"].mean(),
        "ari_test": g["ari_test"].mean(),
        "pmse_marginal_mean": g["pmse_marginal"].mean(),
        "pmse_marginal_sd": g["pmse_marginal"].std(),
        "pmse_marginal_best": _best_share(ok, "pmse_marginal"),
        "pmse_dynamic_mean": g["pmse_dynamic"].mean(),
        "pmse_dynamic_sd": g["pmse_dynamic"].std(),
        "pmse_dynamic_best": _best_share(ok, "pmse_dynamic"),
        "time_fit": g["time_fit"].mean(),
        "time_se": g["time_se"].mean(),
    })
    table.index.names = ["setting", "model"]
    table["fits"] = table["fits"].fillna(0).astype(int)
    table["failed"] = table["failed"].fillna(0).astype(int)
    for col in ("bic_best", "pmse_marginal_best", "pmse_dynamic_best"):
        table[col] = table[col].where(table["fits"] == 0, table[col].fillna(0.0))
    return _ordered(table, ["setting", "model"])


def summarise_parameters(raw_parameters: pd.DataFrame) -> pd.DataFrame:
    """Per setting x model x parameter (true expert labels): truth, mean estimate, bias,
    empirical SD, RMSE, mean SE (oim, robust), coverage of the 95% Wald intervals (oim,
    robust; over the replications with a finite SE), ``n`` replications and ``n_se`` of them
    with a finite model-based SE."""
    d = raw_parameters.copy()
    d["expert"] = d["expert"].astype(str)
    d = _sorted_raw(d, extra=["param_index"])
    d["error"] = d["estimate"] - d["truth"]
    d["sq_error"] = d["error"] ** 2
    for name in ("oim", "robust"):
        se = d[f"se_{name}"].to_numpy(dtype=float)
        finite = np.isfinite(se) & (se > 0)
        covered = np.abs(d["error"].to_numpy()) <= Z95 * np.where(finite, se, 0.0)
        d[f"cover_{name}"] = np.where(finite, covered.astype(float), np.nan)
        d[f"se_{name}"] = np.where(finite, se, np.nan)
    keys = ["setting", "model", "block", "expert", "term"]
    g = d.groupby(keys, sort=False)
    table = pd.DataFrame({
        "n": g.size(),
        "truth": g["truth"].first(),
        "mean": g["estimate"].mean(),
        "bias": g["error"].mean(),
        "sd": g["estimate"].std(),
        "rmse": np.sqrt(g["sq_error"].mean()),
        "se_oim": g["se_oim"].mean(),
        "se_robust": g["se_robust"].mean(),
        "cover_oim": g["cover_oim"].mean(),
        "cover_robust": g["cover_robust"].mean(),
        "n_se": g["se_oim"].count(),
    })
    return table


# -- rendering ------------------------------------------------------------------------------------

def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    return format(value, spec)


def _mean_sd(mean, sd, spec: str) -> str:
    if not np.isfinite(mean):
        return ""
    return f"{format(mean, spec)} ({format(sd, spec)})" if np.isfinite(sd) else format(mean, spec)


def models_markdown(table: pd.DataFrame) -> str:
    """The model table as Markdown, one section per setting."""
    parts = []
    for setting, block in table.groupby(level="setting", sort=False):
        rows = []
        for (_, model), r in block.iterrows():
            rows.append({
                "Model": MODELS[model].label if model in MODELS else model,
                "fits": f"{int(r['fits'])}" + (f" ({int(r['failed'])} failed)"
                                                 if r["failed"] else ""),
                "converged": _fmt(r["converged"], ".2f"),
                "df": _fmt(r["n_params"], ".0f"),
                "BIC mean (SD)": _mean_sd(r["bic_mean"], r["bic_sd"], ".1f"),
                "BIC best": _fmt(r["bic_best"], ".2f"),
                "accuracy": _fmt(r["accuracy"], ".3f"),
                "ARI": _fmt(r["ari"], ".3f"),
                "accuracy (test)": _fmt(r["accuracy_test"], ".3f"),
                "ARI (test)": _fmt(r["ari_test"], ".3f"),
                "PMSE marginal mean (SD)": _mean_sd(r["pmse_marginal_mean"],
                                                    r["pmse_marginal_sd"], ".4f"),
                "PMSE dynamic mean (SD)": _mean_sd(r["pmse_dynamic_mean"],
                                                   r["pmse_dynamic_sd"], ".4f"),
                "dyn. best": _fmt(r["pmse_dynamic_best"], ".2f"),
                "time (s)": _fmt(r["time_fit"], ".2f"),
            })
        title = SETTINGS[setting].title if setting in SETTINGS else setting
        parts.append(f"### {setting}: {title}\n\n" + _markdown(rows, 1))
    return "\n".join(parts)


def _markdown(rows: list[dict], n_text: int) -> str:
    """A Markdown table of pre-formatted cells: the first ``n_text`` columns left-aligned (labels),
    the others right-aligned (numbers)."""
    if not rows:
        return "(no rows)\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join(":---" if j < n_text else "---:" for j in range(len(columns))) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _param_name(block: str, expert: str, term: str) -> str:
    return f"{block}[{expert}]:{term}"


def parameters_markdown(table: pd.DataFrame) -> str:
    """The parameter table as Markdown, one section per setting."""
    parts = []
    for setting, block in table.groupby(level="setting", sort=False):
        rows = []
        for (_, model, b, e, t), r in block.iterrows():
            rows.append({
                "Model": MODELS[model].label if model in MODELS else model,
                "Parameter": _param_name(b, e, t),
                "truth": _fmt(r["truth"], ".3f"),
                "bias": _fmt(r["bias"], ".4f"),
                "SD": _fmt(r["sd"], ".4f"),
                "SE (oim)": _fmt(r["se_oim"], ".4f"),
                "SE (robust)": _fmt(r["se_robust"], ".4f"),
                "coverage (oim)": _fmt(r["cover_oim"], ".3f"),
                "coverage (robust)": _fmt(r["cover_robust"], ".3f"),
                "n": f"{int(r['n'])}",
            })
        title = SETTINGS[setting].title if setting in SETTINGS else setting
        parts.append(f"### {setting}: {title}\n\n" + _markdown(rows, 2))
    return "\n".join(parts)


def plot_pmse(replications: pd.DataFrame, column: str, path: Path, title: str) -> bool:
    """Box plots of ``column`` per setting (one panel each) and model; False without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    ok = replications[replications["status"] == "ok"]
    settings = [s for s in SETTINGS if s in set(ok["setting"])]
    models = [m for m in MODELS if m in set(ok["model"])]
    if not settings:
        return False
    ncol = min(3, len(settings))
    nrow = math.ceil(len(settings) / ncol)
    fig = Figure(figsize=(4.2 * ncol, 3.6 * nrow), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    short = {"memoe": "MEMoE", "shared": "shared", "moe": "MoE", "lmm": "LMM"}
    for ax, setting in zip(axes, settings):
        sub = ok[ok["setting"] == setting]
        values = [pd.to_numeric(sub.loc[sub["model"] == m, column], errors="coerce").dropna()
                  .to_numpy() for m in models]
        names = [short.get(m, m) for m in models]
        ax.boxplot(values, **({"tick_labels": names} if _has_tick_labels() else {"labels": names}))
        ax.set_title(setting, fontsize=10)
        ax.set_ylabel("PMSE")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(settings):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    return True


def _has_tick_labels() -> bool:
    import matplotlib
    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    return (major, minor) >= (3, 9)


def _truth_table(settings: Iterable[str]) -> pd.DataFrame:
    rows = []
    for name in settings:
        s = SETTINGS[name]
        p = s.params
        row = {"setting": name, "gamma_2 (Int, x1, x2)": ", ".join(f"{v:g}" for v in p.gamma[1]),
               "errors": "normal" if s.errors == "normal" else f"{s.errors}({s.df:g})"}
        for k in range(p.n_experts):
            D = p.cov_re[k]
            sd = np.sqrt(np.diag(D))
            corr = D[0, 1] / (sd[0] * sd[1]) if sd.all() else np.nan
            row[f"beta_{k + 1} (Int, time)"] = ", ".join(f"{v:g}" for v in p.beta[k])
            row[f"SD(Int), SD(time), Corr [{k + 1}]"] = f"{sd[0]:g}, {sd[1]:g}, {corr:.2g}"
            row[f"sigma2_{k + 1}"] = f"{p.scale[k]:g}"
        rows.append(row)
    return pd.DataFrame(rows)


def _readme(config: StudyConfig, replications: pd.DataFrame, plots: dict[str, bool]) -> str:
    n_done = replications.groupby("setting")["rep"].nunique()
    done = ", ".join(f"{s}: {int(n_done.get(s, 0))}" for s in config.settings)
    model_lines = "\n".join(f"* `{m}` -- {MODELS[m].label}: {MODELS[m].description}."
                            for m in config.models)
    setting_lines = "\n".join(f"* `{s}` -- {SETTINGS[s].title}. Tests {SETTINGS[s].tests}."
                              for s in config.settings)
    plot_note = ("" if all(plots.values()) else
                 "\n(matplotlib is not installed: the box plots were skipped.)\n")
    return f"""# MEMoE simulation study

Written by `python -m pymemoe.experiments.simulation` (module `pymemoe.experiments.simulation`,
whose docstring describes the design). Rebuild every table, plot and this file from the raw
results with `python -m pymemoe.experiments.simulation --out {{this folder}} --tables-only`.

## Design

* Replications per setting: {config.reps} (finished: {done}); seed {config.seed}
  (one `numpy.random.SeedSequence`, spawned per setting, replication and model).
* Subjects per replication: {config.n_subjects} for fitting + {config.n_test} held out.
  Visits: {config.visits[0]} to {config.visits[1]} per subject (uniform), regular over
  [0, {config.follow_up:g}] years; gating covariates x1, x2 ~ N(0, 1).
* Every model: `y ~ time`, fitted with {config.n_starts} EM starts (best kept, then polished).
* Dynamic prediction landmark: visits with time <= {config.landmark:g} are the history,
  visits after it are predicted.

### Settings (truth from `pymemoe.simulate.paper_settings()`; K = 2, expert 1 is the reference of the gating)

{setting_lines}

{render_markdown(_truth_table(config.settings))}
### Models

{model_lines}

## Files

* `config.json` -- the configuration of the run (reproduces the numbers).
* `raw/replications.csv` -- one row per setting x replication x model: `status` ("ok" or the
  error of a failed fit), `converged`, `n_params`, `llf`, `bic`, `accuracy`, `ari` (training
  subjects), `accuracy_test`, `ari_test` (held-out subjects), `pmse_marginal`, `pmse_dynamic`
  (held-out subjects), `n_dynamic` (visits scored dynamically), `time_fit`, `time_se`
  (seconds), `n_warnings` (warnings issued by the fit and the covariances, e.g. a variance at
  the boundary).
* `raw/parameters.csv` -- one row per setting x replication x model x comparable parameter,
  after matching the fitted experts to the true ones: `truth`, `estimate`, `se_oim`,
  `se_robust`.
* `summary_models.csv` / `summary_models.md` -- **model table**, per setting x model:
  successful fits (and failed ones), share converged, number of parameters (`df`), BIC mean
  (SD) and `BIC best` (share of replications in which the model has the smallest BIC of the
  four), classification accuracy and adjusted Rand index (ARI) on the training and on the
  held-out subjects, PMSE of the marginal and of the dynamic predictions of the held-out
  subjects (mean and SD over replications; `dyn. best`: share of replications with the
  smallest dynamic PMSE), mean fitting time.
* `summary_parameters.csv` / `summary_parameters.md` -- **parameter table**, per setting x
  model x parameter: truth, mean estimate, bias, empirical SD over replications, RMSE, mean
  model-based (inverse observed information) SE, mean robust (subject-level sandwich) SE,
  coverage of the 95% Wald intervals est +/- 1.96 SE with each SE, `n` replications (and
  `n_se` with a finite model-based SE; a variance at the boundary has none). Parameters are
  `block[expert]:term`: `gate[2]:x1` the gating coefficient of expert 2 against expert 1,
  `beta[k]:time` expert k's slope, `re_cov[k]:Var(Intercept)` etc. the entries of D_k
  (`all` = shared by both experts), `scale[k]:sigma2` the residual variance.
* `pmse_marginal.png`, `pmse_dynamic.png` -- box plots of the held-out PMSE over replications,
  one panel per setting, one box per model.
{plot_note}
## How to read the tables

* **Which parameters are compared.** The fitted experts are matched to the true experts by the
  permutation that maximises the agreement of the predicted classes (ties: nearest
  intercepts); the gating is then re-expressed against the matched expert 1 (with its SEs).
  The shared-variance model's D and sigma2 are compared only in settings where the truth has
  equal D_k and sigma2_k (examples 1 and 3); the MoE without random effects has no D and its
  residual variance absorbs the random-effect variance, so only its gating and fixed effects
  are compared; the **LMM has no parameter rows**: its one set of fixed effects is a
  population average, not a parameter of the two-expert truth. For the same reason the LMM's
  accuracy and ARI are blank (one class: its ARI would be 0, its accuracy the share of the
  larger expert).
* **Monte Carlo error.** With R replications a coverage near 0.95 has a Monte Carlo SE of
  sqrt(0.95 x 0.05 / R) = {math.sqrt(0.95 * 0.05 / max(config.reps, 1)):.3f}; a bias is
  significant when it exceeds about 2 SD / sqrt(R).
* **Coverage** near 0.95 with SE (mean) close to SD means the standard errors are right. In
  the misspecified (t errors) setting the model-based SEs of the variance parameters are
  expected to be too small and the robust ones not.
* **PMSE marginal** predicts a held-out subject from its gating covariates alone (the
  gating-weighted expert means); **PMSE dynamic** predicts its visits after the landmark from
  its visits up to it (posterior expert probabilities and random effects). The MoE without
  random effects can only use the history through the class probabilities; the LMM only
  through its random effects.
"""


def write_outputs(out, config: StudyConfig | None = None,
                  progress: bool = False) -> dict[str, pd.DataFrame]:
    """(Re)build the tables, plots and README of ``out`` from its ``raw/*.csv``."""
    out = Path(out)
    if config is None:
        config = StudyConfig.from_json(json.loads((out / "config.json").read_text()))
    reps_path, params_path = _raw_paths(out)
    if not reps_path.exists():
        raise FileNotFoundError(f"{reps_path} does not exist: run the study first")
    replications = _sorted_raw(pd.read_csv(reps_path))
    replications.to_csv(reps_path, index=False)
    if params_path.exists() and params_path.stat().st_size:
        raw_params = _sorted_raw(pd.read_csv(params_path, dtype={"expert": str}),
                                 extra=["param_index"])
        raw_params.to_csv(params_path, index=False)
    else:
        raw_params = pd.DataFrame(columns=PARAM_COLUMNS)
    models = summarise_models(replications)
    models.to_csv(out / "summary_models.csv")
    (out / "summary_models.md").write_text(
        "# Model comparison (per setting x model)\n\n" + models_markdown(models))
    parameters = (summarise_parameters(raw_params) if len(raw_params)
                  else pd.DataFrame(columns=["n"]))
    parameters.to_csv(out / "summary_parameters.csv")
    (out / "summary_parameters.md").write_text(
        "# Parameter recovery and standard errors (per setting x model x parameter)\n\n"
        + (parameters_markdown(parameters) if len(raw_params) else "(no parameters)\n"))
    plots = {
        "pmse_marginal": plot_pmse(replications, "pmse_marginal", out / "pmse_marginal.png",
                                   "Held-out PMSE, marginal prediction (gating covariates)"),
        "pmse_dynamic": plot_pmse(replications, "pmse_dynamic", out / "pmse_dynamic.png",
                                  f"Held-out PMSE, dynamic prediction after t = "
                                  f"{config.landmark:g}"),
    }
    if not all(plots.values()):
        print("matplotlib is not available: the PMSE box plots were skipped", file=sys.stderr,
              flush=True)
    (out / "README.md").write_text(_readme(config, replications, plots))
    if progress:
        print(f"tables, plots and README written to {out}", flush=True)
    return {"models": models, "parameters": parameters, "replications": replications,
            "raw_parameters": raw_params}


# -- command line ---------------------------------------------------------------------------------

def _settings_arg(values: Sequence[str] | None) -> tuple[str, ...]:
    if not values:
        return tuple(SETTINGS)
    names = [v for value in values for v in value.split(",") if v]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown settings {unknown}; choose from "
                                         f"{list(SETTINGS)}")
    return tuple(dict.fromkeys(names))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pymemoe.experiments.simulation",
        description="Simulation study of the MEMoE against a shared-variance mixture, a MoE "
                    "without random effects and the LMM (see the module docstring).")
    default = StudyConfig()
    parser.add_argument("--reps", type=int, default=default.reps,
                        help=f"replications per setting (default {default.reps})")
    parser.add_argument("--out", default="simulation_study", help="output folder")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--settings", nargs="+", metavar="NAME",
                        help=f"subset of {', '.join(SETTINGS)} (space or comma separated)")
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help=f"subset of {', '.join(MODELS)}")
    parser.add_argument("--n-subjects", type=int, default=default.n_subjects,
                        help=f"training subjects per replication (default {default.n_subjects})")
    parser.add_argument("--n-test", type=int, default=None,
                        help="held-out subjects per replication (default n_subjects / 2)")
    parser.add_argument("--n-starts", type=int, default=default.n_starts,
                        help=f"EM starts per fit (default {default.n_starts})")
    parser.add_argument("--seed", type=int, default=default.seed,
                        help=f"root seed (default {default.seed})")
    parser.add_argument("--resume", action="store_true",
                        help="keep the finished replications in --out and run the others")
    parser.add_argument("--tables-only", action="store_true",
                        help="rebuild tables, plots and README from --out/raw without fitting")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.tables_only:
        write_outputs(args.out, progress=not args.quiet)
        return 0
    try:
        settings = _settings_arg(args.settings)
        models = (tuple(dict.fromkeys(v for value in args.models for v in value.split(",") if v))
                  if args.models else tuple(MODELS))
        config = StudyConfig(reps=args.reps, n_subjects=args.n_subjects,
                             n_test=args.n_test or max(args.n_subjects // 2, 1),
                             n_starts=args.n_starts, seed=args.seed, settings=settings,
                             models=models)
    except (ValueError, argparse.ArgumentTypeError) as err:
        parser.error(str(err))
    run_study(args.out, config, workers=args.workers, progress=not args.quiet,
              resume=args.resume)
    return 0


if __name__ == "__main__":
    # Run the imported module's main, so that the worker processes unpickle the jobs from
    # pymemoe.experiments.simulation rather than from __main__.
    from pymemoe.experiments import simulation as _module
    sys.exit(_module.main())
