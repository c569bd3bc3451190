r"""Design of the simulation study: the MEMoE against a shared-variance mixture, a MoE without random effects
and the linear mixed model, on data with known truth.

The study lives beside ``benchmarks/`` (it is research code, not part of the library; the
metrics it reuses, the adjusted Rand index and the label matching, are in
:mod:`pymemoe.metrics`). Modules: ``sim_design`` (this one: settings, models, configuration,
seeds), ``sim_replication`` (one data set, every model), ``sim_report`` (tables, plots,
README) and ``simulation`` (the study and its command line).

Run it from the command line (small ``--reps`` for a smoke test, the default for the study)::

    python experiments/simulation.py --reps 100 --out DIR [--workers 2]
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
(:func:`pymemoe._estimation.inference.cov_oim` and :func:`~pymemoe._estimation.inference.cov_robust`).

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
setting (in the fixed order of ``SETTINGS``) and each of those into one child per
replication; a replication's child is spawned again into the data seed and one seed per model
(in the order of ``MODELS``). Replication r of a setting therefore gets the same data and
fits whatever the number of replications, the subset of settings or the number of workers.
Replications run in a process pool (``--workers``); the per-replication raw results are
appended to ``raw/*.csv`` as they finish, so the tables can be rebuilt (``--tables-only``) and an
interrupted study continued (``--resume``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from pymemoe._model.params import Params
from pymemoe.simulate import paper_settings

__all__ = ["Setting", "ModelSpec", "StudyConfig", "SETTINGS", "MODELS", "Z95", "MODEL_COLUMNS",
           "PARAM_COLUMNS", "replication_seed", "raw_paths", "sorted_raw"]

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



# -- raw results ------------------------------------------------------------------------------

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



def raw_paths(out: Path) -> tuple[Path, Path]:
    """The two raw result files of a study folder."""
    return out / "raw" / "replications.csv", out / "raw" / "parameters.csv"


def sorted_raw(frame: pd.DataFrame, extra: Sequence[str] = ()) -> pd.DataFrame:
    """Raw rows in the order of SETTINGS, replications and MODELS."""
    settings = [s for s in SETTINGS if s in set(frame["setting"])]
    models = [m for m in MODELS if m in set(frame["model"])]
    key = pd.DataFrame({
        "s": pd.Categorical(frame["setting"], categories=settings, ordered=True).codes,
        "m": pd.Categorical(frame["model"], categories=models, ordered=True).codes,
    }, index=frame.index)
    cols = ["s", "rep", "m", *extra]
    order = pd.concat([key, frame[["rep", *extra]]], axis=1).sort_values(cols, kind="stable")
    return frame.loc[order.index].reset_index(drop=True)
