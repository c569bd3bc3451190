"""Choosing the number of experts: fit K = 1, 2, ... and compare (as lcmm's ``summarytable``).

Criteria (smaller is better except llf and entropy):

* AIC   = -2 llf + 2 df
* BIC   = -2 llf + log(N) df, N = number of **subjects** (lcmm's convention)
* SABIC = -2 llf + log((N + 2) / 24) df (sample-size adjusted BIC)
* ICL   = BIC + 2 E, E the posterior entropy
* entropy: normalised, 1 = perfectly separated experts
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd

from .model import MEMoE
from .plotting import plot_comparison

__all__ = ["ExpertComparison", "compare_experts", "comparison_table"]


def comparison_table(results: dict) -> pd.DataFrame:
    """One row per fitted model: K, llf, df, AIC, BIC, SABIC, ICL, entropy, expert %,
    converged, and the starts: ``n_best`` of ``n_finished`` finished starts reached the best
    log-likelihood (within :data:`pymemoe._estimation.starts.LLF_TOL`; 1 of several: not replicated).

    ``results`` maps K to a fitted :class:`pymemoe.MEMoEResults`.
    """
    k_max = max(results)
    rows = []
    for K, res in sorted(results.items()):
        n = res.n_groups
        row = {
            "K": K, "llf": res.llf, "df": res.df_modelwc, "AIC": res.aic, "BIC": res.bic,
            "SABIC": -2 * res.llf + np.log((n + 2) / 24) * res.df_modelwc,
            "ICL": res.icl, "entropy": res.entropy,
        }
        pct = res.expert_sizes["pct_assigned"].to_numpy()
        for k in range(k_max):
            row[f"%{k + 1}"] = pct[k] if k < K else np.nan
        row["converged"] = res.converged
        row["n_best"] = res.n_best
        row["n_finished"] = res.n_finished
        rows.append(row)
    return pd.DataFrame(rows).set_index("K")


@dataclass(frozen=True)
class ExpertComparison:
    """Fits over a range of K and their comparison table.

    Attributes
    ----------
    table : pandas.DataFrame
        See :func:`comparison_table`.
    results : dict
        K -> MEMoEResults.
    """

    table: pd.DataFrame
    results: dict

    def plot(self, criteria=("AIC", "BIC", "ICL"), ax=None):
        """Criteria against K (matplotlib; see :func:`pymemoe.plotting.plot_comparison`)."""
        return plot_comparison(self.table, criteria=criteria, ax=ax)

    def best(self, criterion: str = "BIC"):
        """The fitted results preferred by ``criterion`` (``"AIC"``, ``"BIC"``, ``"SABIC"``,
        ``"ICL"``: smallest wins)."""
        if criterion not in ("AIC", "BIC", "SABIC", "ICL"):
            raise ValueError(f"criterion must be AIC, BIC, SABIC or ICL, got {criterion!r}")
        return self.results[int(self.table[criterion].idxmin())]


def _fit_options(fit_kwargs) -> dict:
    """``fit_kwargs`` checked against the options of :meth:`MEMoE.fit`."""
    if fit_kwargs is None:
        return {}
    if not isinstance(fit_kwargs, dict):
        raise ValueError(f"fit_kwargs must be a dict of MEMoE.fit options, got "
                         f"{type(fit_kwargs).__name__}")
    allowed = [name for name in inspect.signature(MEMoE.fit).parameters if name != "self"]
    given_apart = {"n_starts", "random_state", "grow_from"} & set(fit_kwargs)
    if given_apart:
        raise ValueError(f"pass {sorted(given_apart)} to compare_experts itself, not in "
                         f"fit_kwargs (grow_from: compare_experts passes each K - 1 fit)")
    if "start_params" in fit_kwargs:
        raise ValueError("fit_kwargs cannot hold start_params: the parameter vector differs "
                         "between numbers of experts")
    unknown = sorted(set(fit_kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"fit_kwargs has unknown options {unknown}; MEMoE.fit takes "
                         f"{[a for a in allowed if a not in ('n_starts', 'random_state')]}")
    return dict(fit_kwargs)


def _model_options(model_kwargs: dict) -> dict:
    allowed = [name for name in inspect.signature(MEMoE.from_formula).parameters
               if name not in ("cls", "formula", "data", "groups", "n_experts")]
    unknown = sorted(set(model_kwargs) - set(allowed))
    if unknown:
        fit_names = set(inspect.signature(MEMoE.fit).parameters)
        hint = [u for u in unknown if u in fit_names]
        raise ValueError(f"compare_experts got unknown model options {unknown}; "
                         f"MEMoE.from_formula takes {allowed}"
                         + (f" (fit options such as {hint} go in fit_kwargs=)" if hint else ""))
    return model_kwargs


def compare_experts(formula: str, data: pd.DataFrame, groups, n_experts: Iterable[int] = range(1, 5),
                    n_starts: int | None = None, random_state=None,
                    fit_kwargs: dict | None = None,
                    **model_kwargs) -> ExpertComparison:
    """Fit the same MEMoE for each K in ``n_experts`` and compare them.

    Parameters
    ----------
    formula, data, groups, **model_kwargs
        As :meth:`pymemoe.MEMoE.from_formula` (``re_formula``, ``gate_formula``, ...); an
        unknown keyword raises a ValueError listing the valid ones.
    n_experts : iterable of int
        Values of K.
    n_starts, random_state
        Passed to each fit (the same seed for every K). The values of K are fitted in
        increasing order, and the fit with K - 1 experts, when in the list, seeds the split
        starts of the fit with K (``MEMoE.fit(grow_from=...)``; with
        ``fit_kwargs={"starts": "independent"}`` every K starts afresh).
    fit_kwargs : dict, optional
        Further options of :meth:`pymemoe.MEMoE.fit`, forwarded to every fit, e.g.
        ``{"cov_type": "robust", "screen_iter": 30}``; an unknown option raises a ValueError
        listing the valid ones.

    Returns
    -------
    ExpertComparison

    Examples
    --------
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.selection import compare_experts
    >>> df = load_pbcseq().assign(year=lambda d: d["day"] / 365.25)
    >>> comp = compare_experts("np.log(bili) ~ year", df, "id", n_experts=[1, 2],
    ...                        re_formula="~ year", n_starts=2, random_state=0,
    ...                        fit_kwargs={"cov_type": "none"})
    >>> list(comp.table.index), comp.results[2].cov_type
    ([1, 2], 'none')
    """
    options = _fit_options(fit_kwargs)
    model_kwargs = _model_options(model_kwargs)
    values = [int(K) for K in n_experts]
    if not values or any(K < 1 for K in values) or len(set(values)) != len(values):
        raise ValueError(f"n_experts must be distinct positive integers, got {values!r}")

    grow = options.get("starts", "auto") == "auto"
    results: dict = {}
    for K in sorted(values):
        model = MEMoE.from_formula(formula, data, groups, n_experts=K, **model_kwargs)
        smaller = results.get(K - 1) if grow and K > 1 else None
        results[K] = model.fit(n_starts=n_starts, random_state=random_state, grow_from=smaller,
                               **options)
    results = {K: results[K] for K in values}
    return ExpertComparison(table=comparison_table(results), results=results)
