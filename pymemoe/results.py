r"""MEMoEResults: the immutable, labelled outcome of :meth:`pymemoe.MEMoE.fit`.

Everything arrives in the constructor (the model, the frozen EM fit, the options); every public
attribute is a read-only property, derived values are cached, and arrays are handed out as
copies inside pandas objects labelled by subject, expert and term.

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
the designs for new data; see :mod:`pymemoe.formula`), so ``pickle.dumps(results)`` and
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
import patsy
from scipy import stats
from statsmodels.iolib import summary2
from statsmodels.stats.contrast import ContrastResults

from . import predict as _predict
from . import prediction_sets as _sets
from .em import EMFit, EMOptions
from .inference import CovEstimate, delta_method
from .params import from_user, param_labels, to_user
from .tables import render_latex, render_markdown, tidy_table

__all__ = ["MEMoEResults", "load"]

_SAVE_FORMAT = "pymemoe.MEMoEResults"
PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]


_COV_NAMES = {"oim": "inverse observed information",
              "robust": "robust sandwich (subject-level)"}


def _section(title: str, table: pd.DataFrame) -> pd.DataFrame:
    """The table with a first row naming its section (blank cells) and indented row labels;
    missing values print as blanks."""
    head = pd.DataFrame([[""] * table.shape[1]], index=[title], columns=table.columns)
    body = table.astype(object).where(table.notna(), "")
    body.index = ["  " + str(i) for i in table.index]
    return pd.concat([head, body])


def _corr(D: np.ndarray, i: int, j: int) -> float:
    denom = np.sqrt(max(D[i, i], 0.0) * max(D[j, j], 0.0))
    return D[i, j] / denom if denom > 0 else np.nan


def _frozen(frame):
    """A copy, so callers can never change the results' state."""
    return frame.copy()


class MEMoEResults:
    """Results of a MEMoE fit. Do not construct directly; use :meth:`pymemoe.MEMoE.fit`.

    Attributes are read-only; see the module docstring for the definitions of ``bic``, ``icl``
    and ``entropy``.
    """

    def __init__(self, model, fit: EMFit, options: EMOptions, cov: CovEstimate) -> None:
        self._model = model
        self._fit = fit
        self._options = options
        self._cov = cov

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
        from . import __version__
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
            from . import __version__
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
        """The estimates as a frozen :class:`pymemoe.params.Params` (gamma, beta, cov_re, scale
        as arrays), for code that computes with them (prediction, simulation)."""
        return self._fit.params

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
        """EM iterations of the best start."""
        return self._fit.n_iter

    @property
    def llf_trace(self) -> np.ndarray:
        """Log-likelihood of the best start at its initial values and after each EM iteration
        (``n_iter + 1`` values, non-decreasing). The quasi-Newton polish that follows EM is not
        included, so ``llf`` may be slightly above the last value."""
        return self._fit.llf_trace.copy()

    @property
    def messages(self) -> tuple[str, ...]:
        """Diagnostics of the fit and of the standard errors (also issued as warnings)."""
        return self._fit.messages + self._cov.messages

    @property
    def start_llfs(self) -> np.ndarray:
        """Final log-likelihood of each start."""
        return self._fit.start_llfs.copy()

    # -- information criteria ------------------------------------------------------------------

    @property
    def aic(self) -> float:
        return -2.0 * self.llf + 2.0 * self.df_modelwc

    @property
    def bic(self) -> float:
        """BIC with penalty log(number of subjects) per parameter (lcmm's convention)."""
        return -2.0 * self.llf + np.log(self.n_groups) * self.df_modelwc

    @cached_property
    def _entropy_raw(self) -> float:
        tau = self._fit.estep.tau
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(tau > 0, tau * np.log(tau), 0.0)
        return float(-terms.sum())

    @property
    def entropy(self) -> float:
        """Normalised entropy 1 - E / (N log K); 1 = perfectly separated experts."""
        if self.n_experts == 1:
            return 1.0
        return 1.0 - self._entropy_raw / (self.n_groups * np.log(self.n_experts))

    @property
    def icl(self) -> float:
        """ICL = BIC + 2 E, E the (unnormalised) posterior entropy."""
        return self.bic + 2.0 * self._entropy_raw

    # -- parameters ----------------------------------------------------------------------------

    @cached_property
    def _params_series(self) -> pd.Series:
        structure = self._model.structure
        return pd.Series(to_user(self._fit.params, structure), index=param_labels(structure),
                         name="params")

    @property
    def params(self) -> pd.Series:
        """Estimates on the user's scale, labelled (block, expert, term).

        Blocks: ``gate`` (experts 2..K against expert 1), ``beta`` (expert-specific fixed effects,
        then those shared by all experts under expert ``"all"``), ``re_cov`` (variances and
        covariances of the random effects; with ``cov_re="proportional"`` expert 1's and the SD
        ratios), ``scale`` (residual variances).
        """
        return _frozen(self._params_series)

    @property
    def _experts(self) -> pd.Index:
        return pd.Index(range(1, self.n_experts + 1), name="expert")

    @property
    def fe_params(self) -> pd.DataFrame:
        """Fixed effects, terms x experts (shared terms repeated in every column)."""
        names = list(self._model.structure.exog_names)
        return pd.DataFrame(self._fit.params.beta.T, index=pd.Index(names, name="term"),
                            columns=self._experts)

    @property
    def gate_params(self) -> pd.DataFrame:
        """Gating coefficients, terms x experts; expert 1 is the reference (zeros)."""
        names = list(self._model.structure.exog_gate_names)
        return pd.DataFrame(self._fit.params.gamma.T, index=pd.Index(names, name="term"),
                            columns=self._experts)

    @property
    def cov_re(self) -> dict[int, pd.DataFrame]:
        """Random-effects covariance D_k of each expert (labelled q x q DataFrames)."""
        names = list(self._model.structure.exog_re_names)
        return {k + 1: pd.DataFrame(self._fit.params.cov_re[k], index=names, columns=names)
                for k in range(self.n_experts)}

    @property
    def scale(self) -> pd.Series:
        """Residual variance sigma2_k of each expert."""
        return pd.Series(self._fit.params.scale, index=self._experts, name="scale")

    # -- inference -----------------------------------------------------------------------------

    @property
    def cov_type(self) -> str:
        """Name of the covariance estimator (``"oim"``, ``"robust"`` or ``"none"``)."""
        return self._cov.name

    @property
    def param_names(self) -> list[str]:
        """Flat parameter names for hypotheses, ``"block[expert]:term"`` (e.g. ``"beta[1]:year"``)."""
        return [f"{b}[{e}]:{t}" for b, e, t in self._params_series.index]

    def cov_params(self) -> pd.DataFrame:
        """Covariance matrix of ``params`` (labelled both ways)."""
        index = self._params_series.index
        return pd.DataFrame(self._cov.cov, index=index, columns=index)

    @cached_property
    def _bse(self) -> pd.Series:
        with np.errstate(invalid="ignore"):
            values = np.sqrt(np.diag(self._cov.cov))
        return pd.Series(values, index=self._params_series.index, name="bse")

    @property
    def bse(self) -> pd.Series:
        """Standard errors of ``params`` (NaN where not available; see ``cov_type``)."""
        return _frozen(self._bse)

    @property
    def zvalues(self) -> pd.Series:
        """Wald z statistics params / bse (for variance parameters rarely of interest)."""
        return (self._params_series / self._bse).rename("z")

    tvalues = zvalues

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values of the z statistics (normal reference)."""
        z = self.zvalues.to_numpy()
        return pd.Series(2 * stats.norm.sf(np.abs(z)), index=self._params_series.index, name="P>|z|")

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald confidence intervals, columns ``lower`` and ``upper``."""
        crit = stats.norm.ppf(1 - alpha / 2)
        half = crit * self._bse
        return pd.DataFrame({"lower": self._params_series - half,
                             "upper": self._params_series + half})

    def _contrast(self, r_matrix, q_matrix=None):
        names = self.param_names
        if isinstance(r_matrix, (str, list, tuple)) and (isinstance(r_matrix, str) or
                                                         all(isinstance(x, str) for x in r_matrix)):
            constraint = patsy.DesignInfo(names).linear_constraint(r_matrix)
            R, q = constraint.coefs, constraint.constants[:, 0]
        else:
            R = np.atleast_2d(np.asarray(r_matrix, dtype=float))
            q = np.zeros(R.shape[0]) if q_matrix is None else np.asarray(q_matrix, dtype=float).ravel()
        if R.shape[1] != len(names):
            raise ValueError(f"r_matrix must have {len(names)} columns (one per parameter)")
        used = np.any(R != 0, axis=0)
        if np.isnan(self._cov.cov[np.ix_(used, used)]).any():
            raise ValueError("the hypothesis involves parameters without a covariance "
                             f"(cov_type={self.cov_type!r}); refit with cov_type='oim' or 'robust'")
        return R, q

    def t_test(self, r_matrix, q_matrix=None) -> ContrastResults:
        """Wald tests of each linear combination R theta = q separately (normal reference).

        ``r_matrix`` is a string such as ``"beta[1]:year = beta[2]:year"`` (names as
        :attr:`param_names`), a list of such strings, or an array with one column per parameter.
        """
        R, q = self._contrast(r_matrix, q_matrix)
        effect = R @ self._params_series.to_numpy()
        sd = np.sqrt(np.diag(R @ self._cov.cov @ R.T))
        return ContrastResults(effect=effect, sd=sd, statistic=(effect - q) / sd,
                               distribution="norm", df_denom=None)

    def wald_test(self, r_matrix, q_matrix=None) -> ContrastResults:
        """Joint Wald chi-square test of R theta = q, e.g. all gating coefficients of age:
        ``res.wald_test(["gate[2]:age", "gate[3]:age"])``."""
        R, q = self._contrast(r_matrix, q_matrix)
        diff = R @ self._params_series.to_numpy() - q
        stat = float(diff @ np.linalg.solve(R @ self._cov.cov @ R.T, diff))
        # statsmodels' chi2 ContrastResults takes the degrees of freedom as df_denom
        return ContrastResults(statistic=stat, df_denom=R.shape[0], distribution="chi2")

    def to_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """Tidy parameter table: block, expert, term, coef, std err, z, P>|z|, lower, upper."""
        ci = self.conf_int(alpha)
        table = pd.DataFrame({"coef": self._params_series, "std err": self._bse,
                              "z": self.zvalues, "P>|z|": self.pvalues,
                              "lower": ci["lower"], "upper": ci["upper"]})
        return table.reset_index()

    def to_latex(self, alpha: float = 0.05, float_format: str = "%.4f") -> str:
        """The tidy table (:meth:`to_frame`) as a LaTeX tabular."""
        return render_latex(tidy_table(self.to_frame(alpha)), float_format)

    def to_html(self, alpha: float = 0.05, float_format: str = "%.4f") -> str:
        """The tidy table as HTML."""
        return tidy_table(self.to_frame(alpha)).to_html(index=False, float_format=lambda x: float_format % x,
                                                        na_rep="")

    def to_markdown(self, alpha: float = 0.05, float_format: str = "%.4f") -> str:
        """The tidy table as a GitHub-flavoured Markdown table."""
        return render_markdown(tidy_table(self.to_frame(alpha)), float_format)

    def to_csv(self, path, alpha: float = 0.05) -> None:
        """Write the tidy table (full precision) to a CSV file."""
        self.to_frame(alpha).to_csv(path, index=False)

    @cached_property
    def _variance_components(self) -> pd.DataFrame:
        """SDs, correlations and residual SD per expert with delta-method standard errors."""
        structure = self._model.structure
        names = list(structure.exog_re_names)
        theta = self._params_series.to_numpy()
        labels, funcs = [], []
        q = structure.k_re
        for k in range(self.n_experts):
            for i, name in enumerate(names):
                labels.append((k + 1, f"SD({name})"))
                funcs.append(lambda P, k=k, i=i: np.sqrt(max(P.cov_re[k, i, i], 0.0)))
            for i in range(q):
                for j in range(i):
                    labels.append((k + 1, f"Corr({names[j]},{names[i]})"))
                    funcs.append(lambda P, k=k, i=i, j=j: _corr(P.cov_re[k], i, j))
            labels.append((k + 1, "Residual SD"))
            funcs.append(lambda P, k=k: np.sqrt(P.scale[k]))

        def evaluate(vector):
            P = from_user(vector, structure)
            return np.array([f(P) for f in funcs])

        value, cov = delta_method(evaluate, theta, self._cov.cov)
        with np.errstate(invalid="ignore"):
            se = np.sqrt(np.diag(cov))
        index = pd.MultiIndex.from_tuples(labels, names=["expert", "term"])
        return pd.DataFrame({"coef": value, "std err": se}, index=index)

    def postprob(self) -> pd.DataFrame:
        """lcmm's posterior classification table, one row per expert (by assigned expert).

        Columns: ``n`` and ``%`` of subjects assigned; ``mean P(k)`` for each expert k, the mean
        posterior probability among the subjects assigned to the row's expert (the diagonal
        measures how well that expert is separated); ``% > 0.7``, ``% > 0.8``, ``% > 0.9``: the
        share of the row's subjects whose assigned posterior probability exceeds the threshold.
        """
        tau = self._fit.estep.tau
        assigned = tau.argmax(axis=1)
        rows = []
        for k in range(self.n_experts):
            sel = assigned == k
            n_k = int(sel.sum())
            row = {"n": n_k, "%": 100.0 * n_k / self.n_groups}
            for l in range(self.n_experts):
                row[f"mean P({l + 1})"] = tau[sel, l].mean() if n_k else np.nan
            for cut in (0.7, 0.8, 0.9):
                row[f"% > {cut}"] = 100.0 * (tau[sel, k] > cut).mean() if n_k else np.nan
            rows.append(row)
        return pd.DataFrame(rows, index=self._experts)

    # -- subjects ------------------------------------------------------------------------------

    @property
    def _subjects(self) -> pd.Index:
        return self._model.data.subjects

    @property
    def posterior(self) -> pd.DataFrame:
        """Posterior expert probabilities tau_ik, subjects x experts (rows sum to 1)."""
        return pd.DataFrame(self._fit.estep.tau, index=self._subjects, columns=self._experts)

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
        b = self._fit.estep.moments.b_hat                        # (N, K, q)
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
        return _frozen(self._random_effects)

    # -- prediction ----------------------------------------------------------------------------

    def predict(self, newdata: pd.DataFrame | None = None, kind: str = "marginal", **kwargs):
        """Predictions: ``"marginal"`` (gating-weighted, from baseline covariates), ``"expert"``
        (one column per expert) or ``"conditional"`` (posterior-weighted, subject-specific,
        from the subject's observed outcomes; rows with a missing outcome are predicted from
        the others: dynamic prediction). See :func:`pymemoe.predict.predict`."""
        return _predict.predict(self, newdata, kind, **kwargs)

    @cached_property
    def fittedvalues(self) -> pd.Series:
        """In-sample conditional predictions sum_k tau_ik (x' beta_k + z' b_hat_ik), by row."""
        return self.predict(kind="conditional")

    def predict_class(self, newdata: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
        """Posterior expert probabilities of (new) subjects from their outcomes and covariates
        (lcmm's ``predictClass``). See :func:`pymemoe.predict.predict_class`."""
        return _predict.predict_class(self, newdata, **kwargs)

    def prior_class(self, newdata: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
        """Gating probabilities of (new) subjects from their baseline covariates alone."""
        return _predict.prior_class(self, newdata, **kwargs)

    def prediction_set(self, newdata: pd.DataFrame | None = None, alpha: float = 0.05,
                       kind: str = "conditional", method: str = "hdr", **kwargs) -> pd.DataFrame:
        """1 - alpha prediction sets for single observations: the highest-density region of the
        Gaussian-mixture predictive law (``"hdr"``, possibly several intervals) or its
        equal-tail interval. A tidy frame: row, interval, lower, upper, mass. See
        :func:`pymemoe.prediction_sets.prediction_set`."""
        return _sets.prediction_set(self, newdata, alpha, kind, method, **kwargs)

    # -- summary -------------------------------------------------------------------------------

    def _header(self) -> dict[str, str]:
        m = self._model
        structure = m.structure
        return {
            "Model:": "MEMoE",
            "Dependent variable:": m.endog_name,
            "Experts:": str(self.n_experts),
            "Subjects:": str(self.n_groups),
            "Observations:": str(self.nobs),
            "Rows dropped (missing):": str(self.n_dropped),
            "Covariance of RE:": f"{structure.cov_re}, {structure.re_structure}",
            "Residual variance:": structure.scale,
            "Log-likelihood:": f"{self.llf:.4f}",
            "Parameters:": str(self.df_modelwc),
            "AIC:": f"{self.aic:.4f}",
            "BIC (n = subjects):": f"{self.bic:.4f}",
            "ICL:": f"{self.icl:.4f}",
            "Entropy (normalised):": f"{self.entropy:.4f}",
            "Converged:": "yes" if self.converged else "no",
            "EM iterations:": str(self.n_iter),
            "Covariance type:": self.cov_type,
        }

    def _coef_table(self, rows: pd.DataFrame, alpha: float) -> pd.DataFrame:
        """Regression columns for rows of :meth:`to_frame` (indexed by label)."""
        lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
        out = rows[["coef", "std err", "z", "P>|z|"]].copy()
        out[lo], out[hi] = rows["lower"], rows["upper"]
        return out

    def _expert_table(self, k: int, alpha: float) -> pd.DataFrame:
        tidy = self.to_frame(alpha)
        fe = tidy[(tidy["block"] == "beta") & (tidy["expert"] == k + 1)].set_index("term")
        vc = self._variance_components.loc[k + 1].copy()
        crit = stats.norm.ppf(1 - alpha / 2)
        vc["z"] = np.nan                   # tests of SDs against 0 are not Wald tests
        vc["P>|z|"] = np.nan
        vc["lower"] = vc["coef"] - crit * vc["std err"]
        vc["upper"] = vc["coef"] + crit * vc["std err"]
        return pd.concat([self._coef_table(fe, alpha), self._coef_table(vc, alpha)])

    def summary(self, alpha: float = 0.05, float_format: str = "%.4f") -> summary2.Summary:
        """Regression-style summary: header, gating table, one table per expert, postprob.

        Each table starts with a row naming its section. Expert tables give the fixed effects
        (coef, std err, z, p, confidence interval), then the random-effect SDs and correlations
        and the residual SD with delta-method standard errors and Wald intervals. The last
        table is lcmm's posterior classification table (:meth:`postprob`).

        Returns
        -------
        statsmodels.iolib.summary2.Summary
            Render with ``print()``, ``.as_text()``, ``.as_html()`` or ``.as_latex()``.
        """
        smry = summary2.Summary()
        smry.add_title("Mixed effects mixture of experts")
        smry.add_dict(self._header(), ncols=2)
        K = self.n_experts
        structure = self._model.structure
        sizes = self.expert_sizes
        tidy = self.to_frame(alpha)
        if K > 1:
            gate = tidy[tidy["block"] == "gate"]
            gate.index = [f"expert {e}: {t}" for e, t in zip(gate["expert"], gate["term"])]
            smry.add_df(_section("Gating: multinomial logit vs expert 1",
                                 self._coef_table(gate, alpha)), float_format=float_format)
        for k in range(K):
            title = (f"Expert {k + 1}: {int(sizes['n_assigned'].iloc[k])} subjects "
                     f"({sizes['pct_assigned'].iloc[k]:.1f}%)")
            smry.add_df(_section(title, self._expert_table(k, alpha)), float_format=float_format)
        if structure.k_shared:
            shared = tidy[(tidy["block"] == "beta") & (tidy["expert"] == "all")].set_index("term")
            smry.add_df(_section("Fixed effects shared by all experts",
                                 self._coef_table(shared, alpha)), float_format=float_format)
        if structure.cov_re == "proportional" and K > 1:
            ratio = tidy[tidy["term"] == "SD ratio"]
            ratio.index = [f"expert {e}: D = w^2 D_1, w" for e in ratio["expert"]]
            smry.add_df(_section("Proportional random-effects covariance",
                                 self._coef_table(ratio, alpha)), float_format=float_format)
        if K > 1:
            pp = self.postprob().astype(object)
            pp["n"] = pp["n"].astype(int).astype(str)
            pp.index = [f"assigned to {k}" for k in pp.index]
            smry.add_df(_section("Posterior classification", pp),
                        float_format="%.2f")
        notes = ["BIC uses log(number of subjects); expert 1 is the largest expert and the "
                 "gating reference."]
        if self.cov_type == "none":
            notes.append("Standard errors not computed (cov_type='none').")
        else:
            notes.append(f"Standard errors: {_COV_NAMES[self.cov_type]}; SDs and correlations "
                         f"by the delta method.")
        smry.add_text(" ".join(notes))
        for msg in self.messages:
            smry.add_text("Warning: " + msg)
        return smry

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
