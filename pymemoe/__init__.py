"""pymemoe: mixed effects mixture of experts for longitudinal data.

A MEMoE has K latent subpopulations ("experts"), each a full mixed model with its own fixed
effects and random-effects covariance (a linear mixed model with its own residual variance, or
a generalised linear mixed model for binary and count outcomes), and a multinomial-logit gating
model that assigns each subject to the experts from its baseline covariates. It is fitted by
(Laplace) EM; for Gaussian experts on per-subject sufficient statistics, where the Laplace step
is exact.

Glossary of names (statsmodels' where they exist)
-------------------------------------------------
endog, exog, exog_re, exog_gate, exog_shared
    outcome, expert-specific fixed-effects design, random-effects design, gating covariates,
    fixed effects shared by all experts.
groups, n_groups
    subject labels, number of subjects N.
n_experts
    number of experts K.
params
    estimates labelled (block, expert, term), block in {gate, beta, re_cov, scale}.
fe_params, gate_params, cov_re, scale
    fixed effects beta_k, gating coefficients gamma_k, random-effects covariances D_k, residual
    variances sigma2_k.
posterior, prior, predicted_class
    posterior expert probabilities tau_ik, gating probabilities pi_ik, most probable expert.
random_effects
    conditional modes (BLUPs) of the random effects.
llf, aic, bic, icl, entropy
    log-likelihood and criteria (BIC with log(number of subjects)).
bse, cov_params(), conf_int(), wald_test(), t_test()
    inference, with ``fit(cov_type="oim" | "robust")``.
predict(), get_prediction(), predict_class(), prediction_set()
    predictions (marginal, per expert, conditional and dynamic), with delta-method standard
    errors, class membership of new subjects and prediction sets (highest-density regions).
fittedvalues, resid, standardized_residuals()
    subject-specific fitted values, residuals, residuals whitened within subject (model checking).
summary(), to_frame(), expert_table(), postprob()
    tables for papers (:mod:`pymemoe.summary`; ``summary_col`` puts models side by side).

Public modules beyond the model: :mod:`pymemoe.selection` (``compare_experts``: choosing K),
:mod:`pymemoe.blrt` (``bootstrap_lrt``: the bootstrap likelihood ratio test of K - 1 against K),
:mod:`pymemoe.prediction` (predictions, their standard errors, prediction sets),
:mod:`pymemoe.diagnostics` (residuals and the fit by expert), :mod:`pymemoe.summary` (tables),
:mod:`pymemoe.metrics` (adjusted Rand index, label matching), :mod:`pymemoe.crossval`
(``cross_validate``), :mod:`pymemoe.simulate` (``simulate``: data from known truth),
:mod:`pymemoe.three_step` (``distal_outcome``, ``class_predictors``: the classes related to
outcomes and predictors by bias-adjusted three-step methods),
:mod:`pymemoe.families` (what an expert is; add your own), :mod:`pymemoe.plotting` (matplotlib
figures; ``pip install pymemoe[plot]``), :mod:`pymemoe.datasets` (``load_pbcseq``),
:mod:`pymemoe.chunked` and :mod:`pymemoe.distributed` (``from_chunks``, ``from_dask``: data
larger than memory, fits on Dask workers; ``pip install pymemoe[chunked]``),
:mod:`pymemoe.exceptions` (every warning). A path with an underscore (``pymemoe._estimation``,
``pymemoe.families._glmm_kernel``) is internal: it may change between releases.

Examples
--------
>>> import numpy as np
>>> from pymemoe import MEMoE
>>> from pymemoe.datasets import load_pbcseq
>>> df = load_pbcseq()
>>> df["year"] = df["day"] / 365.25
>>> model = MEMoE.from_formula("np.log(bili) ~ year", data=df, groups="id",
...                            re_formula="~ year", gate_formula="~ age + C(sex)", n_experts=2)
>>> res = model.fit(n_starts=2, random_state=0)
>>> res.posterior.shape
(312, 2)
"""
from ._model.params import Params
from ._version import __version__
from .blrt import BootstrapLRTResult, bootstrap_lrt
from .crossval import CrossValidation, cross_validate
from .families.events import TimeToEvent
from .exceptions import (BestNotReplicatedWarning, BoundaryWarning, GLMMNumericalWarning,
                         SeparationWarning)
from .model import MEMoE
from .results import MEMoEResults, load
from .selection import ExpertComparison, compare_experts
from .simulate import SimulatedData, simulate
from .three_step import ThreeStepResults, class_predictors, distal_outcome

__all__ = ["MEMoE", "MEMoEResults", "load", "Params", "compare_experts", "ExpertComparison",
           "bootstrap_lrt", "BootstrapLRTResult", "cross_validate", "CrossValidation",
           "simulate", "SimulatedData", "distal_outcome", "class_predictors",
           "ThreeStepResults", "TimeToEvent", "BoundaryWarning", "SeparationWarning",
           "BestNotReplicatedWarning", "GLMMNumericalWarning", "__version__"]
