r"""MEMoEResults: the immutable, labelled outcome of :meth:`pymemoe.MEMoE.fit`.

Everything arrives in the constructor (the model, the frozen EM fit, the options); every public
attribute is a read-only property, derived values are cached, and every array is handed out as
a copy inside a pandas object labelled by subject, expert and term (or read-only), so nothing a
user does with an output changes the results, whatever the pandas version and its copy-on-write
setting.

The module keeps the results' attributes and their inference; the summary and the paper
tables are built in :mod:`pymemoe.summary`, the predictions in :mod:`pymemoe.prediction` and the
model-checking quantities in :mod:`pymemoe.diagnostics`.

Definitions (where packages differ)
-----------------------------------
* ``bic`` = -2 llf + log(N) df with N the number of **subjects** (lcmm's convention; lme4 and
  flexmix use the number of rows).
* ``entropy`` is the **normalised** entropy of the posterior, 1 - E / (N log K) with
  E = -sum_ik tau_ik log tau_ik: 1 means perfect separation (lcmm's and Mplus's convention).
  It is 1 when K = 1.
* ``icl`` = BIC + 2 E (Biernacki, Celeux & Govaert 2000, BIC form), smaller is better.
* The gating reference is expert 1, the largest expert in the canonical order.

Saving and loading
------------------
Results pickle (with the model, its data and, for formula models, what is needed to rebuild
the designs for new data; see :mod:`pymemoe._design.formula`), so ``pickle.dumps(results)`` and
:meth:`MEMoEResults.save` / :meth:`MEMoEResults.load` (or :func:`load`) round-trip: the
unpickled results have identical parameters, log-likelihood, posteriors, standard errors and
predictions. Cached derived values are not stored; they are recomputed on demand. As with any
pickle, load only files you trust, with compatible versions of pymemoe, numpy, pandas and patsy.
"""
from __future__ import annotations

import os
import pickle
import warnings
from functools import cached_property
from typing import IO, Union

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contrast import ContrastResults

from . import diagnostics, prediction
from . import summary as _summary
from ._design.hypotheses import linear_constraint
from ._estimation.context import EMOptions
from ._estimation.driver import EMFit
from ._estimation.inference import CovEstimate
from ._estimation.starts import starts_table
from ._model.params import param_labels, to_user
from ._predictive.residuals import observed_response
from ._predictive.rows import require_rows
from ._tables import Table, format_frame, render_latex, render_markdown, tidy_table
from ._version import __version__
from .families.base import NO_EVENTS

__all__ = ["MEMoEResults", "load"]

_SAVE_FORMAT = "pymemoe.MEMoEResults"
PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]


def _copy(values) -> np.ndarray:
    """A private copy: what the user gets can never write into the results' arrays."""
    return np.array(values, dtype=float, copy=True)


class MEMoEResults:
    """Results of a MEMoE fit. Do not construct directly; use :meth:`pymemoe.MEMoE.fit`.

    Attributes are read-only; see the module docstring for the definitions of ``bic``, ``icl``
    and ``entropy``.
    """

    def __init__(self, model, fit: EMFit, options: EMOptions, cov: CovEstimate,
                 weight_type: str | None = None) -> None:
        self._model = model
        self._fit = fit
        self._options = options
        self._cov = cov
        self._weight_type = weight_type

    # -- pickling, save and load -----------------------------------------------------------

    def __getstate__(self) -> dict:
        cached = {name for name in self.__dict__
                  if isinstance(getattr(type(self), name, None), cached_property)}
        return {name: value for name, value in self.__dict__.items() if name not in cached}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, path: PathOrFile) -> None:
        """Save the results (with the model and its data) to a file by pickling.

        Parameters
        ----------
        path : str, os.PathLike or binary file object
            Where to write; read back with :meth:`MEMoEResults.load` or :func:`pymemoe.load`.

        Examples
        --------
        >>> import io
        >>> from pymemoe.datasets import load_pbcseq
        >>> from pymemoe import MEMoE, MEMoEResults
        >>> df = load_pbcseq().assign(year=lambda d: d["day"] / 365.25)
        >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
        ...                          n_experts=1).fit()
        >>> buffer = io.BytesIO()
        >>> res.save(buffer)
        >>> _ = buffer.seek(0)
        >>> MEMoEResults.load(buffer).llf == res.llf
        True
        """
        payload = {"format": _SAVE_FORMAT, "version": __version__, "results": self}
        if hasattr(path, "write"):
            pickle.dump(payload, path, protocol=pickle.HIGHEST_PROTOCOL)
            return
        with open(os.fspath(path), "wb") as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path: PathOrFile) -> "MEMoEResults":
        """Load results written by :meth:`save` (or a plain pickle of a results object).

        Only load files you trust: unpickling can run arbitrary code. A file written by another
        version of pymemoe is loaded with a ``UserWarning``.
        """
        if hasattr(path, "read"):
            payload = pickle.load(path)
        else:
            with open(os.fspath(path), "rb") as handle:
                payload = pickle.load(handle)
        if isinstance(payload, dict) and payload.get("format") == _SAVE_FORMAT:
            if payload.get("version") != __version__:
                warnings.warn(f"these results were saved by pymemoe {payload.get('version')}, "
                              f"this is pymemoe {__version__}; check them before use",
                              UserWarning, stacklevel=2)
            payload = payload["results"]
        if not isinstance(payload, cls):
            raise ValueError(f"the file does not hold pymemoe results (it holds a "
                             f"{type(payload).__name__}); write them with results.save(path)")
        return payload

    # -- fit facts -------------------------------------------------------------------------

    @property
    def model(self):
        return self._model

    @property
    def state(self):
        """The estimates as a frozen :class:`pymemoe._model.params.Params` (gamma, beta, cov_re, scale
        as arrays), for code that computes with them (prediction, simulation)."""
        return self._fit.params

    @property
    def estep(self):
        """The final E-step of the fit at :attr:`state`: posterior probabilities ``tau``
        (N, K), log gating probabilities ``log_prior``, per-subject log-likelihoods
        ``llf_obs`` and the family's random-effect ``moments`` (``b_hat``, ``b_cov``); what
        the predictive engine reads (:mod:`pymemoe._predictive`). The labelled views are
        :attr:`posterior`, :attr:`prior` and :attr:`random_effects`."""
        return self._fit.estep

    @property
    def n_experts(self) -> int:
        return self._model.structure.n_experts

    @property
    def llf(self) -> float:
        """Maximised observed-data log-likelihood (ML, not REML)."""
        return self._fit.llf

    @property
    def nobs(self) -> int:
        """Number of observations (rows) used."""
        return self._model.data.nobs

    @property
    def n_groups(self) -> int:
        """Number of subjects."""
        return self._model.data.n_groups

    @property
    def n_dropped(self) -> int:
        """Rows dropped for missing or non-finite values."""
        return self._model.n_dropped

    @property
    def df_modelwc(self) -> int:
        """Number of free parameters (with the constant), used by AIC and BIC."""
        return self._model.structure.n_params

    @property
    def converged(self) -> bool:
        return self._fit.converged

    @property
    def n_iter(self) -> int:
        """EM iterations (M-steps) of the best start."""
        return self._fit.n_iter

    @property
    def llf_trace(self) -> np.ndarray:
        """Log-likelihood of the best start at its initial values and after each EM iteration
        (non-decreasing): a plain M-step, or a SQUAREM cycle of two or three M-steps (so at
        most ``n_iter + 1`` values). The quasi-Newton polish that follows EM is not included,
        so ``llf`` may be slightly above the last value."""
        return self._fit.llf_trace.copy()

    @property
    def messages(self) -> tuple[str, ...]:
        """Diagnostics of the fit and of the standard errors (also issued as warnings)."""
        return self._fit.messages + self._cov.messages

    @property
    def start_llfs(self) -> np.ndarray:
        """Final log-likelihood of each start with ``n_experts`` experts (NaN when a start was
        not finished), in the order of ``starts``."""
        return self._fit.start_llfs.copy()

    @property
    def starts(self) -> pd.DataFrame:
        """One row per start: its kind and seed, the subjects it ran on, its log-likelihood at
        its initial values, after screening and at the end, its EM iterations, whether it
        converged, reached the best log-likelihood and was chosen (columns documented in
        :func:`pymemoe._estimation.starts.starts_table`). The rows of the smaller fits that grew the
        split starts come first (``n_experts`` < K)."""
        return starts_table(self._fit.starts)

    @property
    def fit_options(self):
        """The options of the fit (a frozen :class:`pymemoe._estimation.context.EMOptions`): what a refit on
        other data (a bootstrap draw) repeats."""
        return self._options

    @property
    def n_best(self) -> int:
        """Finished starts that reached the best log-likelihood (within
        :data:`pymemoe._estimation.starts.LLF_TOL`; on the subsample when the starts ran on one). One
        means the best value was not replicated (:class:`~pymemoe.exceptions.BestNotReplicatedWarning`)."""
        return int(self._fit.n_best)

    @property
    def n_finished(self) -> int:
        """Starts with ``n_experts`` experts run to convergence (without an empty expert)."""
        return int(self._fit.n_finished)

    # -- information criteria ------------------------------------------------------------------

    @property
    def weights(self) -> pd.Series | None:
        """The subjects' weights of the fit (``fit(weights=)``), None for an unweighted fit."""
        weights = getattr(self._fit.estep, "weights", None)
        if weights is None:
            return None
        return pd.Series(_copy(weights), index=self._subjects, name="weight")

    @property
    def weight_type(self) -> str | None:
        """``"sampling"`` or ``"frequency"`` for a weighted fit, else None."""
        return self._weight_type

    @property
    def _n_weighted(self) -> float:
        """The number of subjects, or the sum of the weights of a weighted fit."""
        weights = getattr(self._fit.estep, "weights", None)
        return float(self.n_groups if weights is None else np.sum(weights))

    @property
    def aic(self) -> float:
        """AIC = -2 llf + 2 (number of parameters); NaN with sampling weights (a
        pseudo-likelihood has no AIC)."""
        if self._weight_type == "sampling":
            return float("nan")
        return float(-2.0 * self.llf + 2.0 * self.df_modelwc)

    @property
    def bic(self) -> float:
        """BIC with penalty log(number of subjects) per parameter (lcmm's convention; the sum
        of the weights with frequency weights); NaN with sampling weights."""
        if self._weight_type == "sampling":
            return float("nan")
        return float(-2.0 * self.llf + np.log(self._n_weighted) * self.df_modelwc)

    @cached_property
    def _entropy_raw(self) -> float:
        tau = self._fit.estep.tau
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(tau > 0, tau * np.log(tau), 0.0)
        weights = getattr(self._fit.estep, "weights", None)
        if weights is None:
            return float(-terms.sum())
        return float(-(weights @ terms.sum(axis=1)))

    @property
    def entropy(self) -> float:
        """Normalised entropy 1 - E / (N log K); 1 = perfectly separated experts (weighted by
        the subjects' weights in a weighted fit)."""
        if self.n_experts == 1:
            return 1.0
        return float(1.0 - self._entropy_raw / (self._n_weighted * np.log(self.n_experts)))

    @property
    def icl(self) -> float:
        """ICL = BIC + 2 E, E the (unnormalised) posterior entropy; NaN with sampling weights."""
        return float(self.bic + 2.0 * self._entropy_raw)

    # -- parameters ----------------------------------------------------------------------------

    @cached_property
    def _theta(self) -> np.ndarray:
        values = to_user(self._fit.params, self._model.structure)
        values.setflags(write=False)
        return values

    @cached_property
    def _labels(self) -> pd.MultiIndex:
        return param_labels(self._model.structure)

    @property
    def params(self) -> pd.Series:
        """Estimates on the user's scale, labelled (block, expert, term).

        Blocks: ``gate`` (experts 2..K against expert 1), ``beta`` (expert-specific fixed effects,
        then those shared by all experts under expert ``"all"``), ``re_cov`` (variances and
        covariances of the random effects; with ``cov_re="proportional"`` expert 1's and the SD
        ratios), ``scale`` (residual variances). The same labels index ``bse``, ``zvalues``,
        ``pvalues``, ``conf_int()`` and ``cov_params()``, and ``t_test``/``wald_test`` take them
        (or their flat names ``param_names``, e.g. ``"beta[1]:year"``).
        """
        return pd.Series(_copy(self._theta), index=self._labels, name="params")

    @property
    def _experts(self) -> pd.Index:
        return pd.Index(range(1, self.n_experts + 1), name="expert")

    @property
    def fe_params(self) -> pd.DataFrame:
        """Fixed effects, terms x experts (shared terms repeated in every column)."""
        names = list(self._model.structure.exog_names)
        return pd.DataFrame(_copy(self._fit.params.beta.T), index=pd.Index(names, name="term"),
                            columns=self._experts)

    @property
    def gate_params(self) -> pd.DataFrame:
        """Gating coefficients, terms x experts; expert 1 is the reference (zeros)."""
        names = list(self._model.structure.exog_gate_names)
        return pd.DataFrame(_copy(self._fit.params.gamma.T), index=pd.Index(names, name="term"),
                            columns=self._experts)

    @property
    def cov_re(self) -> dict[int, pd.DataFrame]:
        """Random-effects covariance D_k of each expert (labelled q x q DataFrames)."""
        names = list(self._model.structure.exog_re_names)
        return {k + 1: pd.DataFrame(_copy(self._fit.params.cov_re[k]), index=names, columns=names)
                for k in range(self.n_experts)}

    @property
    def scale(self) -> pd.Series:
        """Residual variance sigma2_k of each expert."""
        return pd.Series(_copy(self._fit.params.scale), index=self._experts, name="scale")

    # -- inference -----------------------------------------------------------------------------

    @property
    def cov_type(self) -> str:
        """Name of the covariance estimator (``"oim"``, ``"robust"`` or ``"none"``)."""
        return self._cov.name

    @property
    def cov_options(self) -> tuple[str, ...]:
        """The options of the covariance estimator used (``("psu", "strata")`` for a survey
        design; empty otherwise)."""
        return tuple(getattr(self._cov, "options", ()))

    @property
    def param_names(self) -> list[str]:
        """Flat parameter names for hypotheses, ``"block[expert]:term"`` (e.g. ``"beta[1]:year"``),
        in the order of ``params``."""
        return [f"{b}[{e}]:{t}" for b, e, t in self._labels]

    def cov_params(self) -> pd.DataFrame:
        """Covariance matrix of ``params`` (labelled both ways)."""
        return pd.DataFrame(_copy(self._cov.cov), index=self._labels, columns=self._labels)

    @cached_property
    def _bse(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            values = np.sqrt(np.diag(self._cov.cov))
        values.setflags(write=False)
        return values

    @property
    def bse(self) -> pd.Series:
        """Standard errors of ``params`` (NaN where not available; see ``cov_type``)."""
        return pd.Series(_copy(self._bse), index=self._labels, name="bse")

    @property
    def zvalues(self) -> pd.Series:
        """Wald z statistics params / bse (for variance parameters rarely of interest)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return pd.Series(self._theta / self._bse, index=self._labels, name="z")

    tvalues = zvalues

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values of the z statistics (normal reference)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            z = self._theta / self._bse
        return pd.Series(2 * stats.norm.sf(np.abs(z)), index=self._labels, name="P>|z|")

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald confidence intervals of ``params``, columns ``lower`` and ``upper``.

        These are on the parameters' scale (variances included). The summary reports SDs and
        correlations instead, with intervals on the log and Fisher-z scales
        (:mod:`pymemoe.summary`).
        """
        crit = stats.norm.ppf(1 - alpha / 2)
        half = crit * self._bse
        return pd.DataFrame({"lower": self._theta - half, "upper": self._theta + half},
                            index=self._labels)

    def _contrast(self, r_matrix, q_matrix=None):
        names = self.param_names
        labels = self._labels
        if isinstance(r_matrix, str) or (isinstance(r_matrix, list) and r_matrix
                                         and all(isinstance(x, str) for x in r_matrix)):
            if q_matrix is not None:
                raise ValueError("with a hypothesis written as text, put the constants in it "
                                 "(e.g. 'beta[1]:year = 0.1'), not in q_matrix")
            R, q = linear_constraint(names, r_matrix)
        elif isinstance(r_matrix, tuple) or (isinstance(r_matrix, list) and r_matrix
                                             and all(isinstance(x, tuple) for x in r_matrix)):
            wanted = [r_matrix] if isinstance(r_matrix, tuple) else list(r_matrix)
            R = np.zeros((len(wanted), len(names)))
            for row, label in enumerate(wanted):
                if label not in labels:
                    raise ValueError(f"unknown parameter label {label!r}; valid labels are the "
                                     f"index of params, e.g. {labels[0]!r}, or the names "
                                     f"{', '.join(names)}")
                R[row, labels.get_loc(label)] = 1.0
            q = np.zeros(len(wanted)) if q_matrix is None else np.asarray(q_matrix, float).ravel()
        elif isinstance(r_matrix, pd.Series):
            unknown = [lab for lab in r_matrix.index if lab not in labels]
            if unknown:
                raise ValueError(f"the contrast has labels that are not parameters: {unknown}; "
                                 f"index it like params")
            R = r_matrix.reindex(labels, fill_value=0.0).to_numpy(dtype=float)[None, :]
            q = np.zeros(1) if q_matrix is None else np.asarray(q_matrix, float).ravel()
        else:
            R = np.atleast_2d(np.asarray(r_matrix, dtype=float))
            q = np.zeros(R.shape[0]) if q_matrix is None else np.asarray(q_matrix, dtype=float).ravel()
        if R.shape[1] != len(names):
            raise ValueError(f"r_matrix must have {len(names)} columns (one per parameter)")
        if q.shape != (R.shape[0],):
            raise ValueError(f"q_matrix must have one value per hypothesis ({R.shape[0]})")
        used = np.any(R != 0, axis=0)
        if np.isnan(self._cov.cov[np.ix_(used, used)]).any():
            raise ValueError("the hypothesis involves parameters without a covariance "
                             f"(cov_type={self.cov_type!r}); refit with cov_type='oim' or 'robust'")
        return R, q

    def t_test(self, r_matrix, q_matrix=None) -> ContrastResults:
        """Wald tests of each linear combination R theta = q separately (normal reference).

        ``r_matrix`` is a hypothesis written with the parameter names (:attr:`param_names`,
        e.g. ``"beta[1]:year = beta[2]:year"``; spaces do not matter, so names may be written
        as in the formula, ``"beta[1]:I(year**2)"``), a list of such strings, a label of
        ``params`` (``("beta", 1, "year")``, meaning ``= 0``) or a list of labels, a Series of
        coefficients indexed like ``params``, or an array with one column per parameter. An
        unknown name raises a ValueError listing the valid ones.
        """
        R, q = self._contrast(r_matrix, q_matrix)
        effect = R @ self._theta
        sd = np.sqrt(np.diag(R @ self._cov.cov @ R.T))
        return ContrastResults(effect=effect, sd=sd, statistic=(effect - q) / sd,
                               distribution="norm", df_denom=None)

    def wald_test(self, r_matrix, q_matrix=None) -> ContrastResults:
        """Joint Wald chi-square test of R theta = q, e.g. all gating coefficients of age:
        ``res.wald_test(["gate[2]:age", "gate[3]:age"])``. ``r_matrix`` as in :meth:`t_test`."""
        R, q = self._contrast(r_matrix, q_matrix)
        diff = R @ self._theta - q
        stat = float(diff @ np.linalg.solve(R @ self._cov.cov @ R.T, diff))
        # statsmodels' chi2 ContrastResults takes the degrees of freedom as df_denom
        return ContrastResults(statistic=stat, df_denom=R.shape[0], distribution="chi2")

    # -- subjects ------------------------------------------------------------------------------

    @property
    def _subjects(self) -> pd.Index:
        return self._model.data.subjects

    @property
    def posterior(self) -> pd.DataFrame:
        """Posterior expert probabilities tau_ik, subjects x experts (rows sum to 1)."""
        return pd.DataFrame(_copy(self._fit.estep.tau), index=self._subjects,
                            columns=self._experts)

    @cached_property
    def _independence(self) -> pd.DataFrame:
        return diagnostics.conditional_independence_test(self)

    @property
    def independence_test(self) -> pd.DataFrame:
        """The score test of conditional independence given the expert of a joint model
        (:func:`pymemoe.diagnostics.conditional_independence_test`), computed once per
        results and printed by the summary; a copy."""
        return self._independence.copy()

    @property
    def posterior_trajectory(self) -> pd.DataFrame:
        """Posterior expert probabilities from the trajectories alone, subjects x experts:
        pi_ik f(y_i | k) normalised, leaving out the other outcomes of a joint model (lcmm's
        ``pprobY`` beside ``pprob``, which is :attr:`posterior`). Equal to :attr:`posterior`
        for a model of trajectories only. Known experts keep their label."""
        estep = self._fit.estep
        joint = estep.log_prior + self._model.family.trajectory_logdens(estep.moments)
        tau = np.exp(joint - joint.max(axis=1, keepdims=True))
        tau /= tau.sum(axis=1, keepdims=True)
        known = getattr(self._model.data, "known_class", None)
        if known is not None:
            labelled = known >= 0
            tau[labelled] = np.eye(self.n_experts)[known[labelled]]
        return pd.DataFrame(tau, index=self._subjects, columns=self._experts)

    @property
    def event_counts(self) -> pd.DataFrame:
        """A joint model's events of each cause and person-time per expert, weighted by the
        posterior probabilities (sum_i tau_ik [d_i = c] and sum_i tau_ik T_i).

        Raises
        ------
        ValueError
            For a model without a time-to-event part.
        """
        counts = self._model.family.outcome_counts(self._model.data, self._fit.estep.tau)
        if counts is None:
            raise ValueError(NO_EVENTS)
        return counts

    def hazard_ratios(self, alpha: float = 0.05) -> pd.DataFrame:
        """Hazard ratios of a joint model's covariates, per expert and cause: exp(coef) with
        its Wald confidence interval (the exponentials of the interval of the log hazard
        ratio) and the p-value of the log hazard ratio being 0.

        Returns
        -------
        DataFrame
            Indexed by (expert, term), with columns ``hazard ratio``, ``lower``, ``upper``,
            ``P>|z|``.
        """
        sections = [s for s in self._model.family.coefficient_sections(self._model.structure)
                    if s.ratio_terms]
        if not sections:
            raise ValueError("this model has no hazard ratios (no time-to-event part with "
                             "covariates)")
        frame = self.to_frame(alpha)
        terms = [t for s in sections for t in s.ratio_terms]
        rows = frame[(frame["block"] == "beta") & frame["term"].isin(terms)]
        out = pd.DataFrame({"hazard ratio": np.exp(rows["coef"].to_numpy()),
                            "lower": np.exp(rows["lower"].to_numpy()),
                            "upper": np.exp(rows["upper"].to_numpy()),
                            "P>|z|": rows["P>|z|"].to_numpy()},
                           index=pd.MultiIndex.from_arrays([rows["expert"], rows["term"]],
                                                           names=["expert", "term"]))
        return out

    def cumulative_incidence(self, times, profile=None, gate_profile=None,
                             alpha: float = 0.05) -> pd.DataFrame:
        """Survival and cumulative incidence curves of a joint model's experts and their
        mixture at ``times``, with pointwise confidence intervals; see
        :func:`pymemoe.prediction.cumulative_incidence`."""
        return prediction.cumulative_incidence(self, times, profile=profile,
                                               gate_profile=gate_profile, alpha=alpha)

    def dynamic_prediction(self, newdata: pd.DataFrame, landmark: float, horizon: float, time,
                           **kwargs) -> pd.DataFrame:
        """The probability of each cause of event in (landmark, landmark + horizon] of
        subjects event-free at the landmark, given their measurements up to it, with
        intervals; see :func:`pymemoe.prediction.dynamic_prediction`."""
        return prediction.dynamic_prediction(self, newdata, landmark, horizon, time, **kwargs)

    @property
    def prior(self) -> pd.DataFrame:
        """Gating (prior) probabilities pi_ik from the baseline covariates, subjects x experts."""
        return pd.DataFrame(np.exp(self._fit.estep.log_prior), index=self._subjects,
                            columns=self._experts)

    @property
    def predicted_class(self) -> pd.Series:
        """Expert with the largest posterior probability, per subject (1-based)."""
        return pd.Series(self._fit.estep.tau.argmax(axis=1) + 1, index=self._subjects,
                         name="expert")

    @property
    def known_class(self) -> pd.Series | None:
        """The known expert of each subject (1-based; missing where unknown), as given by
        ``known_class`` when the model was built; None when no subject's expert is known."""
        known = getattr(self._model.data, "known_class", None)
        if known is None:
            return None
        return pd.Series(pd.array(np.where(known >= 0, known + 1, -1), dtype="Int64"),
                         index=self._subjects, name="known_class").replace(-1, pd.NA)

    @property
    def expert_sizes(self) -> pd.DataFrame:
        """Per expert: subjects assigned (and %), posterior size (sum of tau), mean prior."""
        assigned = np.bincount(self._fit.estep.tau.argmax(axis=1), minlength=self.n_experts)
        return pd.DataFrame({
            "n_assigned": assigned,
            "pct_assigned": 100.0 * assigned / self.n_groups,
            "posterior_size": self._fit.estep.tau.sum(axis=0),
            "mean_prior": np.exp(self._fit.estep.log_prior).mean(axis=0),
        }, index=self._experts)

    @cached_property
    def _random_effects(self) -> pd.DataFrame:
        names = list(self._model.structure.exog_re_names)
        b = np.asarray(self._fit.estep.moments.b_hat)             # (N, K, q)
        tau = self._fit.estep.tau
        mixed = np.einsum("nk,nkq->nq", tau, b)
        blocks = [b[:, k, :] for k in range(self.n_experts)] + [mixed]
        keys = list(range(1, self.n_experts + 1)) + ["mixture"]
        columns = pd.MultiIndex.from_tuples([(k, t) for k in keys for t in names],
                                            names=["expert", "term"])
        values = np.concatenate(blocks, axis=1) if names else np.empty((self.n_groups, 0))
        return pd.DataFrame(values, index=self._subjects, columns=columns)

    @property
    def random_effects(self) -> pd.DataFrame:
        """Predicted random effects (conditional modes, BLUPs), subjects x (expert, term).

        Columns ``(k, term)`` hold E[b_i | y_i, class k]; columns ``("mixture", term)`` the
        posterior-weighted sum_k tau_ik E[b_i | y_i, class k] = E[b_i | y_i].
        """
        return self._random_effects.copy(deep=True)

    # -- prediction ----------------------------------------------------------------------------

    def predict(self, newdata: pd.DataFrame | None = None, kind: str = "marginal", **kwargs):
        """Predictions: ``"marginal"`` (gating-weighted, from baseline covariates), ``"expert"``
        (one column per expert) or ``"conditional"`` (posterior-weighted, subject-specific,
        from the subject's observed outcomes; rows with a missing outcome are predicted from
        the others: dynamic prediction). See :func:`pymemoe.prediction.predict`."""
        return prediction.predict(self, newdata, kind, **kwargs)

    def get_prediction(self, newdata: pd.DataFrame | None = None, kind: str = "marginal",
                       **kwargs):
        """Predictions with delta-method standard errors and confidence intervals:
        ``get_prediction(...).summary_frame(alpha)`` has statsmodels' columns ``mean``,
        ``mean_se``, ``mean_ci_lower``, ``mean_ci_upper``. See
        :func:`pymemoe.prediction.get_prediction`."""
        return prediction.get_prediction(self, newdata, kind, **kwargs)

    @cached_property
    def _fittedvalues(self) -> np.ndarray:
        values = prediction.predict(self, kind="conditional").to_numpy()
        values.setflags(write=False)
        return values

    @property
    def fittedvalues(self) -> pd.Series:
        """In-sample conditional predictions sum_k tau_ik (x' beta_k + z' b_hat_ik), by row."""
        return pd.Series(_copy(self._fittedvalues), index=self._model.row_index,
                         name="predicted")

    @property
    def resid(self) -> pd.Series:
        """Residuals endog - fittedvalues by row (as statsmodels' ``MixedLM``: the fitted values
        include the predicted random effects; for binomial experts the outcome is the
        proportion of successes, as statsmodels' GLM). See :meth:`standardized_residuals` for
        model checking."""
        require_rows(self, "residuals")
        return pd.Series(observed_response(self._model) - self._fittedvalues,
                         index=self._model.row_index, name="resid")

    def standardized_residuals(self, by: str = "posterior") -> pd.Series | pd.DataFrame:
        """Within-subject whitened residuals, ~N(0, 1) under a correct model.

        ``by="posterior"``: sum_k tau_ik e_ijk; ``"assigned"``: the residuals of the subject's
        most probable expert; ``"expert"``: all of them, rows x experts. See
        :func:`pymemoe.diagnostics.standardized_residuals`.
        """
        return diagnostics.standardized_residuals(self, by=by)

    def predict_class(self, newdata: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
        """Posterior expert probabilities of (new) subjects from their outcomes and covariates
        (lcmm's ``predictClass``). See :func:`pymemoe.prediction.predict_class`."""
        return prediction.predict_class(self, newdata, **kwargs)

    def prior_class(self, newdata: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
        """Gating probabilities of (new) subjects from their baseline covariates alone."""
        return prediction.prior_class(self, newdata, **kwargs)

    def prediction_set(self, newdata: pd.DataFrame | None = None, alpha: float = 0.05,
                       kind: str = "conditional", method: str = "hdr", **kwargs) -> pd.DataFrame:
        """1 - alpha prediction sets for single observations: the highest-density region of the
        Gaussian-mixture predictive law (``"hdr"``, possibly several intervals) or its
        equal-tail interval. A tidy frame: row, interval, lower, upper, mass. See
        :func:`pymemoe.prediction.prediction_set`."""
        return prediction.prediction_set(self, newdata, alpha, kind, method, **kwargs)

    # -- summary and tables --------------------------------------------------------------------

    def postprob(self) -> pd.DataFrame:
        """Posterior classification table (lcmm's ``postprob``) with the GRoLTS diagnostics:
        n and % assigned, estimated share, mean posterior probabilities by assigned expert,
        AvePP, OCC and the shares above 0.7 / 0.8 / 0.9. See
        :func:`pymemoe.summary.postprob_table`."""
        return _summary.postprob_table(self)

    def to_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """The rows of the summary as numbers: block, expert, term, name, coef, std err, z,
        P>|z|, lower, upper (SDs and correlations of the random effects, residual SDs; see
        :func:`pymemoe.summary.parameter_frame`)."""
        return _summary.parameter_frame(self, alpha)

    def _export(self, alpha: float, float_format: str) -> pd.DataFrame:
        tidy = tidy_table(self.to_frame(alpha).drop(columns="name"))
        numbers = tidy.columns[3:]
        return pd.concat([tidy[tidy.columns[:3]], format_frame(tidy[numbers], float_format)],
                         axis=1)

    def to_latex(self, alpha: float = 0.05, float_format: str = "%.4f") -> str:
        """The summary's rows (:meth:`to_frame`) as a booktabs LaTeX tabular."""
        return render_latex(self._export(alpha, float_format))

    def to_html(self, alpha: float = 0.05, float_format: str = "%.4f") -> str:
        """The summary's rows as an HTML table."""
        return self._export(alpha, float_format).to_html(index=False)

    def to_markdown(self, alpha: float = 0.05, float_format: str = "%.4f") -> str:
        """The summary's rows as a GitHub-flavoured Markdown table."""
        return render_markdown(self._export(alpha, float_format))

    def to_csv(self, path, alpha: float = 0.05, float_format: str | None = None) -> None:
        """Write the summary's rows (:meth:`to_frame`) to a CSV file, at full precision unless
        ``float_format`` is given."""
        self.to_frame(alpha).to_csv(path, index=False, float_format=float_format)

    def expert_table(self, float_format: str = "%.3f", stars: bool = False,
                     alpha: float = 0.05) -> Table:
        """Experts as columns, estimates with standard errors below (a paper's table); export
        with ``.to_latex()``, ``.to_markdown()``, ``.to_csv(path)``. See
        :func:`pymemoe.summary.expert_table`."""
        return _summary.expert_table(self, float_format=float_format, stars=stars, alpha=alpha)

    def summary(self, alpha: float = 0.05, float_format: str = "%.4f"):
        """Regression-style summary: header, gating table, one table per expert, postprob.

        Each table starts with a row naming its section. Expert tables give the fixed effects
        (coef, std err, z, p, confidence interval), then the random-effect SDs and correlations
        and the residual SD with delta-method standard errors (intervals on the log and
        Fisher-z scales). The last table is the posterior classification table
        (:meth:`postprob`). Every number is printed with ``float_format``, p-values below
        0.001 as ``<0.001``.

        Returns
        -------
        pymemoe.summary.MEMoESummary
            A statsmodels ``summary2.Summary``: ``print()``, ``.as_text()``, ``.as_html()``,
            ``.as_latex()`` (booktabs).
        """
        return _summary.build_summary(self, alpha, float_format)

    def __str__(self) -> str:
        return self.summary().as_text()

    def _repr_html_(self) -> str:
        return self.summary().as_html()

    def __repr__(self) -> str:
        return (f"<MEMoEResults: {self.n_experts} experts, {self.n_groups} subjects, "
                f"llf={self.llf:.4f}, converged={self.converged}>")


def load(path: PathOrFile) -> MEMoEResults:
    """Load results saved with :meth:`MEMoEResults.save` (same as :meth:`MEMoEResults.load`)."""
    return MEMoEResults.load(path)
