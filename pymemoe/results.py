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
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd
from statsmodels.iolib import summary2

from .em import EMFit, EMOptions
from .params import param_labels, to_user

__all__ = ["MEMoEResults"]


def _section(title: str, table: pd.DataFrame) -> pd.DataFrame:
    """The table with a first row naming its section (blank cells) and indented row labels."""
    head = pd.DataFrame([[""] * table.shape[1]], index=[title], columns=table.columns)
    body = table.astype(object)
    body.index = ["  " + str(i) for i in table.index]
    return pd.concat([head, body])


def _frozen(frame):
    """A copy, so callers can never change the results' state."""
    return frame.copy()


class MEMoEResults:
    """Results of a MEMoE fit. Do not construct directly; use :meth:`pymemoe.MEMoE.fit`.

    Attributes are read-only; see the module docstring for the definitions of ``bic``, ``icl``
    and ``entropy``.
    """

    def __init__(self, model, fit: EMFit, options: EMOptions) -> None:
        self._model = model
        self._fit = fit
        self._options = options

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
        """Log-likelihood after each EM iteration of the best start (non-decreasing)."""
        return self._fit.llf_trace.copy()

    @property
    def messages(self) -> tuple[str, ...]:
        """Diagnostics of the fit (also issued as warnings)."""
        return self._fit.messages

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

    # -- summary -------------------------------------------------------------------------------

    def _header(self) -> dict[str, str]:
        m = self._model
        structure = m.structure
        return {
            "Model:": "MEMoE (mixture of linear mixed experts)",
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
        }

    def _variance_table(self, k: int) -> pd.DataFrame:
        names = list(self._model.structure.exog_re_names)
        D = self._fit.params.cov_re[k]
        rows = {}
        sd = np.sqrt(np.clip(np.diag(D), 0, None))
        for i, name in enumerate(names):
            rows[f"SD({name})"] = sd[i]
        for i in range(len(names)):
            for j in range(i):
                denom = sd[i] * sd[j]
                rows[f"Corr({names[j]},{names[i]})"] = D[i, j] / denom if denom > 0 else np.nan
        rows["Residual SD"] = np.sqrt(self._fit.params.scale[k])
        return pd.DataFrame({"estimate": pd.Series(rows)})

    def _expert_table(self, k: int) -> pd.DataFrame:
        structure = self._model.structure
        fe = self.fe_params[k + 1].iloc[: structure.k_mix]
        parts = [fe]
        parts.append(self._variance_table(k)["estimate"])
        return pd.concat(parts).to_frame("coef")

    def summary(self, float_format: str = "%.4f") -> summary2.Summary:
        """Regression-style summary: a header, the gating table and one table per expert.

        Each table starts with a row naming its section. Standard errors come with the
        inference options of ``fit``.

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
        if K > 1:
            gate = self.gate_params.iloc[:, 1:]
            rows = {f"expert {k}: {term}": gate.loc[term, k]
                    for k in gate.columns for term in gate.index}
            smry.add_df(_section("Gating (multinomial logit), reference: expert 1",
                                 pd.Series(rows).to_frame("coef")), float_format=float_format)
        for k in range(K):
            title = (f"Expert {k + 1} ({int(sizes['n_assigned'].iloc[k])} subjects assigned, "
                     f"{sizes['pct_assigned'].iloc[k]:.1f}%)")
            smry.add_df(_section(title, self._expert_table(k)), float_format=float_format)
        if structure.k_shared:
            shared = self.fe_params[1].iloc[structure.k_mix:].to_frame("coef")
            smry.add_df(_section("Fixed effects shared by all experts", shared),
                        float_format=float_format)
        smry.add_text("BIC uses log(number of subjects). Standard errors: not computed.")
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
