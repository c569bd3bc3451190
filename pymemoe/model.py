r"""The MEMoE model: K latent experts, each a mixed model, routed by a multinomial logit.

Subjects i = 1..N with n_i observations y_i, fixed-effects design X_i, random-effects design Z_i
and baseline covariates w_i (constant within the subject); with Gaussian experts::

    P(c_i = k | w_i) = pi_ik = exp(w_i' gamma_k) / sum_l exp(w_i' gamma_l),   gamma_1 = 0
    y_i | c_i = k, b_i  =  X_i beta_k + Z_i b_i + e_i,   b_i ~ N(0, D_k),   e_i ~ N(0, sigma2_k I)
    loglik(theta)       =  sum_i log sum_k pi_ik N(y_i; X_i beta_k, Z_i D_k Z_i' + sigma2_k I)

Options that nest the usual comparators:

==================  =========================================================================
``n_experts=1``     the linear mixed model fitted by maximum likelihood (statsmodels
                    ``MixedLM(reml=False)``, lme4 ``lmer(REML=FALSE)``)
``re_formula="0"``  no random effects: the conventional mixture of regression experts
``cov_re``          ``"expert"`` D_k free; ``"proportional"`` D_k = w_k^2 D (lcmm's
                    ``nwg=TRUE``); ``"shared"`` one D
``re_structure``    ``"unstructured"`` or ``"diagonal"`` D
``scale``           ``"expert"`` sigma2_k free or ``"shared"`` (lcmm's ``hlme`` has one)
``shared_formula``  fixed effects common to all experts (lcmm's ``fixed`` beside ``mixture``)
==================  =========================================================================

With ``cov_re="shared", scale="shared"`` the model is lcmm's ``hlme(..., mixture=, classmb=)``.

:class:`MEMoE` only assembles the data; :meth:`MEMoE.fit` wires the stages together
(formula -> sufficient statistics -> EM -> results) and never modifies the model.

References
----------
Jacobs, Jordan, Nowlan & Hinton (1991), Adaptive mixtures of local experts.
Laird & Ware (1982), Random-effects models for longitudinal data.
Proust-Lima, Philipps & Liquet (2017), Estimation of extended mixed models using latent classes
and latent processes: the R package lcmm. J. Stat. Softw. 78(2).
Liu & Rubin (1994), The ECME algorithm. Biometrika 81(4).
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Hashable, Sequence

import numpy as np
import pandas as pd

from ._design.checks import check_rank, plain_label
from ._design.events import SubjectEvents, rows_after_time, subject_covariates, subject_events
from ._design.formula import DesignSpec, build_design
from ._design.inputs import model_inputs
from ._design.subject_level import align_to_subjects
from ._design.subjects import subject_codes
from ._estimation.context import EMOptions
from ._estimation.driver import run_em
from ._estimation.inference import DeferredCov, check_cov_type
from ._execution.blocks import as_blocks
from ._model.likelihood import chain_sums, e_step, natural_score_sums, score_obs
from ._model.params import Params, Structure, from_user, param_labels
from .families import get_family
from .families.events import TimeToEvent
from .families.gaussian import SubjectData
from .families.joint import JointFamily, make_hazards
from .results import MEMoEResults

__all__ = ["MEMoE"]

# Below this many subject-expert pairs, threads slow a multi-start fit down: the Python overhead
# of small arrays keeps the interpreter lock busy (benchmarks/bench_threads.py).
PARALLEL_MIN_PAIRS = 20_000


class MEMoE:
    """Mixed effects mixture of experts for longitudinal data.

    Parameters
    ----------
    endog : array-like (n,)
        Outcome, one value per observation (row).
    exog : array-like (n, p)
        Fixed-effects design whose coefficients differ between experts (include the intercept).
    groups : array-like (n,)
        Subject label of each row (any hashable type; rows in any order).
    exog_re : array-like (n, q), optional
        Random-effects design; None gives a random intercept, a (n, 0) array none.
    exog_gate : array-like (n, r), optional
        Gating covariates, constant within subject; None gives an intercept only.
    n_experts : int
        Number of experts K >= 1.
    exog_shared : array-like (n, s), optional
        Fixed-effects design whose coefficients are common to all experts.
    cov_re : {"expert", "proportional", "shared"}
    re_structure : {"unstructured", "diagonal"}
    scale : {"expert", "shared"}
        Residual variances (Gaussian experts only).
    missing : {"drop", "raise"}
        Rows with a missing or non-finite value in any array are dropped and counted
        (``n_dropped``), or raise a ValueError.
    family : {"gaussian", "binomial", "poisson"}, a statsmodels family instance or an ExpertFamily
        The experts' outcome model (canonical links): linear mixed models, or generalised
        linear mixed models for binary/binomial outcomes (logit) and counts (log). For the
        binomial family ``endog`` is 0/1, or two columns (successes, failures). Any other
        outcome model is a :class:`~pymemoe.families.ExpertFamily` object (for instance a
        :class:`~pymemoe.families.GLMMFamily` of your own row law and link).
    offset, exposure : array-like (n,), optional
        Offset of the linear predictor, and exposure (Poisson: log(exposure) is added to the
        offset; it must be positive). GLMM families only.
    nAGQ : int
        GLMM families: 1 for the Laplace approximation, > 1 for adaptive Gauss-Hermite
        quadrature with ``nAGQ`` nodes per random effect (product grid, up to 3 random effects).
    known_class : array-like (n,), optional
        The known expert (1..``n_experts``) of each row's subject, missing where unknown; see
        :meth:`from_formula`.
    class_prior : array-like (n, n_experts), optional
        Fixed prior expert probabilities of each row's subject, missing where the gating
        gives them; see :meth:`from_formula`.

    Attributes
    ----------
    structure : pymemoe._model.params.Structure
        Dimensions, names and constraints.
    data : pymemoe.families.gaussian.SubjectData
        Per-subject sufficient statistics.
    spec : pymemoe._design.formula.DesignSpec or None
        The formulas' design information (``from_formula`` only).
    n_dropped : int
        Rows dropped for missing values.

    Examples
    --------
    >>> import numpy as np
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq()
    >>> df["year"] = df["day"] / 365.25
    >>> model = MEMoE.from_formula("np.log(bili) ~ year", data=df, groups="id",
    ...                            re_formula="~ year", n_experts=1)
    >>> res = model.fit()
    >>> round(res.llf, 2)
    -1525.93
    """

    def __init__(
        self,
        endog,
        exog,
        groups,
        exog_re=None,
        exog_gate=None,
        n_experts: int = 2,
        exog_shared=None,
        cov_re: str = "expert",
        re_structure: str = "unstructured",
        scale: str = "expert",
        missing: str = "drop",
        *,
        family="gaussian",
        offset=None,
        exposure=None,
        nAGQ: int = 1,
        known_class=None,
        class_prior=None,
        survival: TimeToEvent | None = None,
        events: SubjectEvents | None = None,
        survival_data: pd.DataFrame | None = None,
        spec: DesignSpec | None = None,
        n_dropped: int = 0,
        row_index: pd.Index | None = None,
    ) -> None:
        family = get_family(family, n_agq=nAGQ)
        if (survival is None) != (events is None):
            raise ValueError("survival= and events= go together (MEMoE.from_formula builds "
                             "both from the data)")
        inputs = model_inputs(endog, exog, groups, exog_re, exog_gate, exog_shared,
                              family=family, scale=scale, missing=missing, offset=offset,
                              exposure=exposure, spec=spec, n_dropped=n_dropped,
                              row_index=row_index, known_class=known_class,
                              class_prior=class_prior, n_experts=n_experts)
        names = inputs.names
        if survival is not None:
            # the hazards' coefficients are expert-specific columns of the structure
            # (pymemoe.families.joint): after the trajectory's own, before the shared ones
            # and those common to all experts shared columns, after the trajectory's
            hazards = make_hazards(survival, events)
            family = JointFamily(family, survival, hazards, k_shared=len(names[3]))
            labels, tied = hazards.coef_names(), hazards.tied
            names = ((tuple(names[0]) + tuple(n for n, t in zip(labels, tied) if not t),)
                     + tuple(names[1:3])
                     + (tuple(names[3]) + tuple(n for n, t in zip(labels, tied) if t),)
                     + tuple(names[4:]))
        self.structure = Structure.of_designs(n_experts, *names, cov_re=cov_re,
                                              re_structure=re_structure, scale=inputs.scale)
        data = family.make_data(inputs.endog, inputs.exog, inputs.exog_re, inputs.exog_gate,
                                inputs.groups, trials=inputs.trials, offset=inputs.offset)
        if survival is not None:
            data = dataclasses.replace(data, events=events.aligned(data.subjects))
        # the same subject order (subject_codes) as the data
        if inputs.known_class is not None:
            data = dataclasses.replace(data, known_class=inputs.known_class)
        if inputs.class_prior is not None:
            data = dataclasses.replace(data, class_prior=inputs.class_prior)
        self.data = data
        if n_experts > self.data.n_groups:
            raise ValueError(f"n_experts={n_experts} exceeds the number of subjects "
                             f"({self.data.n_groups})")
        check_rank(inputs.exog.T @ inputs.exog, tuple(inputs.names[0]) + tuple(inputs.names[3]),
                   "fixed-effects design")
        self.endog = inputs.endog
        self.trials = inputs.trials
        self.offset = inputs.offset
        self.exog = inputs.exog
        self.exog_re = inputs.exog_re
        self.exog_gate = inputs.exog_gate
        self.groups = inputs.groups
        self.endog_name = inputs.endog_name
        self.spec = spec
        self.n_dropped = inputs.n_dropped
        self.row_index = inputs.row_index
        # a joint model's hazard covariates per subject, as read (for a parametric bootstrap)
        self.survival_data = survival_data

    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: pd.DataFrame,
        groups: Hashable | Sequence,
        re_formula: str = "~1",
        gate_formula: str = "~1",
        n_experts: int = 2,
        shared_formula: str | None = None,
        cov_re: str = "expert",
        re_structure: str = "unstructured",
        scale: str = "expert",
        missing: str = "drop",
        *,
        family="gaussian",
        offset=None,
        exposure=None,
        nAGQ: int = 1,
        known_class=None,
        class_prior=None,
        survival: TimeToEvent | None = None,
    ) -> "MEMoE":
        """Build a MEMoE from patsy formulas on a long-format DataFrame.

        Parameters
        ----------
        formula : str
            ``"outcome ~ terms"``: the outcome and the expert-specific fixed effects.
        data : pandas.DataFrame
            One row per observation. Never modified.
        groups : str or array-like
            Subject identifier column (or one label per row).
        re_formula : str
            Random-effects design, e.g. ``"~ year"``; ``"0"`` for none.
        gate_formula : str
            Baseline covariates of the gating, e.g. ``"~ age + C(sex)"``.
        n_experts : int
            Number of experts K.
        shared_formula : str, optional
            Fixed effects common to all experts, e.g. ``"~ age"`` (its intercept is dropped).
        cov_re, re_structure, scale, missing
            See :class:`MEMoE`.
        family : {"gaussian", "binomial", "poisson"}, a statsmodels family or an ExpertFamily
            The experts' outcome model (canonical links; see :class:`MEMoE`). For ``"binomial"`` the outcome is
            0/1, or two columns written ``"successes + failures ~ ..."`` (statsmodels' GLM
            form).
        offset, exposure : str or array-like, optional
            Binomial and Poisson experts: a column of ``data`` (read again from new data for
            predictions) or one value per row. log(exposure) is added to the offset.
        nAGQ : int
            1: Laplace approximation; > 1: adaptive Gauss-Hermite quadrature with ``nAGQ`` nodes
            per random effect (up to 3 random effects). See :mod:`pymemoe.families.glmm`.
        known_class : str or array-like, optional
            Subjects whose expert is known: a column of ``data`` (or one value per row) holding
            the expert, 1..``n_experts``, and missing where it is unknown (lcmm's ``prior``).
            A labelled subject contributes pi_ik f(y_i | k) of its expert k alone (its labels
            are taken as missing at random among the others), its posterior is that expert,
            and the experts keep the numbering of the labels (they are not reordered by size).
        class_prior : list of str or array-like (n, K), optional
            Fixed prior expert probabilities of some subjects (lcmm's ``pprior``): K columns
            of ``data`` (or an (n, K) array) holding P(expert k) for the row's subject, summing
            to 1, missing where the gating gives them. Such a subject contributes
            sum_k p_ik f(y_i | k) and does not inform the gating.
        survival : TimeToEvent, optional
            A joint model (:mod:`pymemoe.families.joint`): each expert also has its own
            cause-specific hazards (Weibull, piecewise constant or M-splines) of the event
            that ends follow-up (the columns ``survival.time`` and ``survival.event``, one
            value per subject), independent of the trajectory given the expert (lcmm's
            ``Jointlcmm``). Gaussian, binomial or Poisson trajectories. See the user guide's
            page "Trajectories and time to event".

        Returns
        -------
        MEMoE
        """
        fam = get_family(family, n_agq=nAGQ)
        spec, arrays = build_design(formula, data, groups, re_formula=re_formula,
                                    gate_formula=gate_formula, shared_formula=shared_formula,
                                    missing=missing, eval_depth=1,
                                    outcome_columns=fam.outcome_columns, offset=offset,
                                    exposure=exposure, known_class=known_class,
                                    class_prior=class_prior)
        events = survival_data = None
        if survival is not None:
            if not isinstance(survival, TimeToEvent):
                raise ValueError(f"survival must be a TimeToEvent(time=..., event=..., ...); "
                                 f"got {type(survival).__name__}")
            _, subjects = subject_codes(arrays.groups)
            events = subject_events(data, groups, subjects, time=survival.time,
                                    event=survival.event, formula=survival.formula,
                                    causes=survival.causes, entry=survival.entry,
                                    common_formula=survival.common_formula, eval_depth=1)
            survival_data = subject_covariates(survival.formula, data, groups, subjects)
            if survival.common_formula is not None:
                more = subject_covariates(survival.common_formula, data, groups, subjects)
                survival_data = survival_data.join(more[more.columns.difference(
                    survival_data.columns)])
            if survival.visit_time is not None:
                late = rows_after_time(data, groups, subjects, survival.visit_time, events)
                if late:
                    warnings.warn(f"{late} rows are measured after their subject's follow-up "
                                  f"time {survival.time!r} (visit_time {survival.visit_time!r});"
                                  f" they are kept in the trajectory model", UserWarning,
                                  stacklevel=2)
        return cls(arrays.endog, arrays.exog, arrays.groups, exog_re=arrays.exog_re,
                   exog_gate=arrays.exog_gate, n_experts=n_experts, exog_shared=arrays.exog_shared,
                   cov_re=cov_re, re_structure=re_structure, scale=scale, missing=missing,
                   family=fam, offset=arrays.offset, exposure=arrays.exposure,
                   known_class=arrays.known_class, class_prior=arrays.class_prior,
                   survival=survival, events=events, survival_data=survival_data, spec=spec,
                   n_dropped=arrays.n_dropped,
                   row_index=arrays.row_index)

    @classmethod
    def from_subject_data(cls, data: SubjectData, structure: Structure, *,
                          spec: DesignSpec | None = None, n_dropped: int = 0,
                          endog_name: str = "y") -> "MEMoE":
        """A model from per-subject sufficient statistics alone (no row-level arrays).

        This is how data larger than memory are fitted (:mod:`pymemoe.chunked`): the fit needs
        only ``data``, in memory (:class:`pymemoe.families.gaussian.SubjectData`) or held by
        Dask workers (:class:`pymemoe.distributed.DistributedData`). Row-level outputs of the
        fitting data (``fittedvalues``, in-sample ``predict``) are then unavailable;
        predictions on ``newdata`` work when ``spec`` is given.
        """
        if structure.n_experts > data.n_groups:
            raise ValueError(f"n_experts={structure.n_experts} exceeds the number of subjects "
                             f"({data.n_groups})")
        blocks = as_blocks(data, structure.n_experts)   # data on Dask workers: summed there
        check_rank(blocks.reduce(_gram_of_fixed_effects, blocks.empty_caches()),
                   structure.exog_names, "fixed-effects design")
        model = cls.__new__(cls)
        model.structure, model.data, model.spec = structure, data, spec
        model.endog = model.exog = model.exog_re = model.exog_gate = model.groups = None
        model.trials = model.offset = None
        model.endog_name = spec.endog_name if spec is not None else endog_name
        model.n_dropped = n_dropped
        model.row_index = None
        model.survival_data = None
        return model

    # -- the objective ----------------------------------------------------------------------

    @property
    def n_experts(self) -> int:
        return self.structure.n_experts

    @property
    def family(self):
        """The experts' family (:mod:`pymemoe.families`)."""
        return self.data.family

    def structure_options(self) -> dict:
        """The keywords of :meth:`from_formula` (and of ``MEMoE(...)``) that fix the model's
        structure: ``n_experts``, ``cov_re``, ``re_structure`` and what the family needs
        (``scale`` for Gaussian experts, the family object otherwise)."""
        structure = self.structure
        return {"n_experts": structure.n_experts, "cov_re": structure.cov_re,
                "re_structure": structure.re_structure,
                **self.family.structure_options(structure)}

    def formula_options(self) -> dict:
        """The keywords of :meth:`from_formula`, beside the formula, the data and ``groups``,
        that build this model again on other data: ``re_formula``, ``gate_formula``,
        ``shared_formula``, the :meth:`structure_options` and the ``offset`` and ``exposure``
        columns (an offset given as an array is not among them: other data need their own).
        Every path that refits a model uses it (the folds of :func:`~pymemoe.cross_validate`,
        the parametric bootstrap of :func:`~pymemoe.simulate` and the check of
        :func:`~pymemoe.bootstrap_lrt` that two fits are of one model), as statsmodels'
        ``_get_init_kwds`` does.

        Raises
        ------
        ValueError
            For a model built from arrays: it has no formulas.

        Examples
        --------
        >>> from pymemoe import MEMoE
        >>> from pymemoe.datasets import load_pbcseq
        >>> df = load_pbcseq().assign(year=lambda d: d["day"] / 365.25)
        >>> MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
        ...                    n_experts=2, scale="shared").formula_options()["scale"]
        'shared'
        """
        spec = self.spec
        if spec is None:
            raise ValueError("this model was built from arrays (MEMoE(endog, exog, ...)), so "
                             "there are no formulas to refit; build it with MEMoE.from_formula")
        options = {"re_formula": spec.re_formula, "gate_formula": spec.gate_formula,
                   "shared_formula": spec.shared_formula, **self.structure_options()}
        options.update({name: getattr(spec, name) for name in ("offset", "exposure",
                                                               "known_class")
                        if getattr(spec, name) is not None})
        if spec.class_prior is not None:
            options["class_prior"] = list(spec.class_prior)
        return options

    @property
    def param_names(self) -> pd.MultiIndex:
        """(block, expert, term) labels of the user parameter vector."""
        return param_labels(self.structure)

    def _params(self, params) -> Params:
        if isinstance(params, Params):
            return params
        if isinstance(params, pd.Series):
            params = params.reindex(self.param_names).to_numpy()
        return from_user(np.asarray(params, dtype=float), self.structure)

    def _blocks(self):
        """The passes over the data (in memory or on a cluster; :mod:`pymemoe._execution.blocks`)."""
        return as_blocks(self.data, self.structure.n_experts)

    def loglike(self, params) -> float:
        """Observed-data log-likelihood at a user-scale parameter vector (``results.params``)."""
        blocks, par = self._blocks(), self._params(params)
        return float(blocks.reduce(lambda block, cache: e_step(block, par).llf, blocks.empty_caches()))

    def loglikeobs(self, params) -> np.ndarray:
        """Per-subject log-likelihood contributions, shape (N,)."""
        blocks, par = self._blocks(), self._params(params)
        return blocks.concatenate(blocks.gather(lambda block, cache: e_step(block, par).llf_obs,
                                                blocks.empty_caches()))

    def score_obs(self, params) -> np.ndarray:
        """Per-subject scores of the user-scale parameter vector, shape (N, n_params)."""
        blocks, par, structure = self._blocks(), self._params(params), self.structure
        return blocks.concatenate(blocks.gather(
            lambda block, cache: score_obs(block, structure, par), blocks.empty_caches()))

    def score(self, params) -> np.ndarray:
        """Gradient of :meth:`loglike` with respect to the user-scale parameter vector."""
        blocks, par = self._blocks(), self._params(params)
        sums = blocks.reduce(lambda block, cache: natural_score_sums(block, par, e_step(block, par)),
                             blocks.empty_caches())
        return chain_sums(par, self.structure, sums)

    # -- fitting -----------------------------------------------------------------------------

    def fit(
        self,
        n_starts: int | None = None,
        random_state=None,
        maxiter: int = 1000,
        tol: float | None = None,
        start_params=None,
        polish: bool = True,
        cov_type: str | None = None,
        cov_kwds: dict | None = None,
        n_jobs: int | None = None,
        screen_iter: int | None = None,
        n_finish: int = 3,
        progress: bool = False,
        block_size: int | None = None,
        starts: str = "auto",
        grow_from: "MEMoEResults | None" = None,
        sample_subjects: int | None = None,
        weights=None,
        weight_type: str = "sampling",
    ) -> "MEMoEResults":
        """Fit by EM from several starts, polish by quasi-Newton, return the best fit.

        The default start strategy (``starts="auto"``, :mod:`pymemoe._estimation.starts`) grows K experts
        from a fit with K - 1 (one start per expert of that fit, split in two), adds
        ``n_starts`` k-means, random-centre and random-partition starts, runs every start by
        EM with SQUAREM acceleration and polishes the best. ``res.starts`` shows what each
        start reached and ``res.n_best`` how many reached the best log-likelihood; when only
        one did, a :class:`~pymemoe.exceptions.BestNotReplicatedWarning` says so.

        Parameters
        ----------
        n_starts : int, optional
            Starts besides the split starts (``starts="auto"``) or in all
            (``starts="independent"``); None: 10. Ignored when ``n_experts=1`` or
            ``start_params`` is given. Each start has its own child of
            ``numpy.random.SeedSequence(random_state).spawn``, so a start does not depend on
            the others.
        random_state : None, int, numpy.random.Generator or numpy.random.SeedSequence
            Seed of the starts; the same seed gives identical results.
        maxiter : int
            Maximum EM iterations per start.
        tol : float, optional
            EM stops when the change of the log-likelihood is below ``tol * (1 + |llf|)``;
            then the quasi-Newton polish finishes. None: the family's default (1e-8 for
            Gaussian experts, whose M-step is exact; 1e-4 for binomial and Poisson experts,
            whose M-step is itself an iterative optimisation).
        start_params : array-like or pandas.Series, optional
            A user-scale parameter vector (labels as ``model.param_names``) to start from.
        polish : bool
            Finish each start with L-BFGS-B on the log-likelihood (analytic gradient) so the fit
            ends at a small gradient.
        cov_type : {"oim", "robust", "none"}, optional
            Covariance of the estimates: inverse observed information, the subject-level
            sandwich (robust to misspecification of the within-subject distribution), or none.
            See :mod:`pymemoe._estimation.inference`. The standard errors are computed on first use
            (``bse``, ``cov_params()``, ``summary()``, ``messages``), with their warnings then.
            None (default): ``"oim"``, or ``"robust"`` with sampling weights (the observed
            information of a pseudo-likelihood is not their variance; ``"oim"`` is then
            refused).
        cov_kwds : dict, optional
            Options of the covariance estimator: ``cov_type="robust"`` takes ``psu`` and
            ``strata``, the primary sampling unit and the stratum of each subject (a Series
            indexed by subject, or one value per subject in the order of
            ``model.data.subjects``), for design-based standard errors (a sandwich over the
            units, centred within strata, as Stata's ``svy`` and R's survey package).
        n_jobs : int, optional
            Starts, and the columns of the information matrix for the standard errors, run
            in parallel threads. None (default) uses every core (``os.cpu_count()``) when
            there are at least 20,000 subject-expert pairs (N x n_experts) and one thread
            below that, where the Python overhead of the small arrays holds the interpreter
            lock and threads slow the fit down (measured in the documentation's Performance
            page). The result does not depend on it.
        screen_iter : int, optional
            Screening as lcmm's ``gridsearch``: every start runs ``screen_iter`` EM iterations,
            then only the ``n_finish`` best are run to convergence. None (default) runs every
            start to convergence.
        n_finish : int
            Starts continued after screening.
        progress : bool
            Show progress over the starts: a tqdm bar if tqdm is installed, plain lines on
            stderr otherwise.
        block_size : int, optional
            Subjects per block of the passes over the data (:mod:`pymemoe._execution.blocks`); None picks
            a cache-sized block (about 4,000 subjects at 3 experts). Results do not depend on
            it beyond rounding.
        starts : {"auto", "independent"}
            ``"auto"``: the strategy above. ``"independent"``: the first releases' strategy, ``n_starts``
            k-means and random-centre starts each run to convergence by plain EM on all
            subjects (kept for comparison; it stops at a local maximum more often).
        grow_from : MEMoEResults, optional
            A fit of the same model with one expert fewer, whose experts the split starts
            divide (instead of fitting K - 1 experts first); what
            :func:`~pymemoe.selection.compare_experts` passes from K - 1 to K.
        sample_subjects : int, optional
            Search the starts on a random subsample of this many subjects, then run the two
            best distinct solutions on all subjects; used when there are more than twice as
            many subjects. None: 2,500 above 5,000 subjects (binomial and Poisson experts:
            2,000 above 4,000), all subjects below; 0: always all subjects.
        weights : pandas.Series or array-like, optional
            One weight per subject (a Series indexed by subject label, or an array in the
            order of ``model.data.subjects``), >= 0: the fit maximises the weighted
            log-likelihood sum_i w_i log L_i (a pseudo-likelihood for sampling weights).
        weight_type : {"sampling", "frequency"}
            ``"sampling"`` (inverse probabilities of selection, as Mplus' ``WEIGHT`` and lcmm's
            ``weight``): standard errors by the robust sandwich of the weighted scores, AIC,
            BIC and ICL not defined (NaN; the likelihood is a pseudo-likelihood).
            ``"frequency"``: subject i stands for w_i identical subjects; every result is that
            of the data with each subject repeated w_i times (BIC with log sum_i w_i).

        Returns
        -------
        MEMoEResults
        """
        subject_weights = self._subject_weights(weights, weight_type)
        sampling = subject_weights is not None and weight_type == "sampling"
        if cov_type is None:
            cov_type = "robust" if sampling else "oim"
        if sampling and cov_type == "oim":
            raise ValueError("with sampling weights the inverse observed information is not the "
                             "covariance of the estimates: use cov_type='robust' (the default "
                             "with weights), with cov_kwds psu= and strata= for a survey design")
        check_cov_type(cov_type, cov_kwds)
        n_starts = 10 if n_starts is None else n_starts
        if int(n_starts) != n_starts or n_starts < 1:
            raise ValueError(f"n_starts must be a positive integer, got {n_starts!r}")
        if int(maxiter) != maxiter or maxiter < 1:
            raise ValueError(f"maxiter must be a positive integer, got {maxiter!r}")
        if screen_iter is not None and (int(screen_iter) != screen_iter or screen_iter < 1):
            raise ValueError(f"screen_iter must be None or a positive integer, got {screen_iter!r}")
        if int(n_finish) != n_finish or n_finish < 1:
            raise ValueError(f"n_finish must be a positive integer, got {n_finish!r}")
        if n_jobs is None:
            large = self.data.n_groups * self.structure.n_experts >= PARALLEL_MIN_PAIRS
            jobs = (os.cpu_count() or 1) if large else 1
        else:
            jobs = int(n_jobs)
        if jobs < 1:
            raise ValueError(f"n_jobs must be None or a positive integer, got {n_jobs!r}")
        if block_size is not None and (int(block_size) != block_size or block_size < 1):
            raise ValueError(f"block_size must be None or a positive integer, got {block_size!r}")
        if starts not in ("auto", "independent"):
            raise ValueError(f"starts must be 'auto' or 'independent', got {starts!r}")
        if sample_subjects is not None and (int(sample_subjects) != sample_subjects
                                            or sample_subjects < 0):
            raise ValueError(f"sample_subjects must be None or a non-negative integer, "
                             f"got {sample_subjects!r}")
        prev = None if grow_from is None else self._smaller_fit(grow_from)
        tol = self.data.family.em_tol if tol is None else tol
        options = EMOptions(n_starts=int(n_starts), maxiter=int(maxiter), tol=float(tol),
                            polish=bool(polish), n_jobs=jobs, screen_iter=screen_iter,
                            n_finish=int(n_finish), progress=bool(progress),
                            block_size=None if block_size is None else int(block_size),
                            starts=starts, sample_subjects=None if sample_subjects is None
                            else int(sample_subjects))
        start = None if start_params is None else self._params(start_params)
        data = self.data
        cov_options = None if not cov_kwds else {
            name: align_to_subjects(value, data.subjects, f"cov_kwds[{name!r}]")
            for name, value in cov_kwds.items()}
        if subject_weights is not None:
            # a weighted copy of the data for this fit; the model's own data are unchanged
            data = dataclasses.replace(data, subject_weights=subject_weights)
            cov_options = dict(cov_options or {}, weight_type=weight_type)
        fit = run_em(data, self.structure, options, random_state=random_state,
                     start_params=start, grow_from=prev)
        cov = DeferredCov(cov_type, data, self.structure, fit.params, cov_options, n_jobs=jobs,
                          block_size=options.block_size)
        return MEMoEResults(model=self, fit=fit, options=options, cov=cov,
                            weight_type=None if subject_weights is None else weight_type)

    def _subject_weights(self, weights, weight_type: str) -> np.ndarray | None:
        """The subjects' weights of a fit, checked (None without weights)."""
        if weight_type not in ("sampling", "frequency"):
            raise ValueError(f"weight_type must be 'sampling' or 'frequency', got "
                             f"{weight_type!r}")
        if weights is None:
            return None
        if not dataclasses.is_dataclass(self.data):
            raise ValueError("weights are for models whose data are in memory (not on Dask "
                             "workers)")
        values = align_to_subjects(weights, self.data.subjects, "weights")
        try:
            values = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise ValueError("weights must be numbers") from None
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"weights must be finite and >= 0: subject "
                             f"{plain_label(self.data.subjects[j])!r} has {float(values[j])!r}")
        if not (values > 0).any():
            raise ValueError("weights: every subject has weight 0")
        values.setflags(write=False)
        return values

    def _smaller_fit(self, results) -> "Params":
        """The parameters of ``results`` when it fits this model with one expert fewer."""
        other = getattr(results, "model", None)
        mine = self.structure
        if other is None or not hasattr(results, "state"):
            raise ValueError("grow_from must be a fitted MEMoEResults")
        theirs = other.structure
        if theirs.n_experts != mine.n_experts - 1:
            raise ValueError(f"grow_from must have {mine.n_experts - 1} experts (one fewer than "
                             f"this model's {mine.n_experts}); it has {theirs.n_experts}")
        if dataclasses.replace(theirs, n_experts=mine.n_experts) != mine or \
                other.data.n_groups != self.data.n_groups:
            raise ValueError("grow_from must be a fit of the same formulas, options and data "
                             "with one expert fewer")
        return results.state


def _gram_of_fixed_effects(block, cache) -> np.ndarray:
    """X'X of the subjects of a block of sufficient statistics (a block function at module
    level, so that Dask workers receive it by reference)."""
    return block.xx.sum(axis=0)
