"""Choosing the number of experts: fit K = 1, 2, ... and compare (as lcmm's ``summarytable``).

Criteria (smaller is better except llf and entropy):

* AIC   = -2 llf + 2 df
* BIC   = -2 llf + log(N) df, N = number of **subjects** (lcmm's convention)
* SABIC = -2 llf + log((N + 2) / 24) df (sample-size adjusted BIC)
* ICL   = BIC + 2 E, E the posterior entropy
* entropy: normalised, 1 = perfectly separated experts
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd

from .model import MEMoE

__all__ = ["ExpertComparison", "compare_experts", "comparison_table"]


def comparison_table(results: dict) -> pd.DataFrame:
    """One row per fitted model: K, llf, df, AIC, BIC, SABIC, ICL, entropy, expert %, converged.

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
        from .plotting import plot_comparison
        return plot_comparison(self, criteria=criteria, ax=ax)

    def best(self, criterion: str = "BIC"):
        """The fitted results preferred by ``criterion`` (``"AIC"``, ``"BIC"``, ``"SABIC"``,
        ``"ICL"``: smallest wins)."""
        if criterion not in ("AIC", "BIC", "SABIC", "ICL"):
            raise ValueError(f"criterion must be AIC, BIC, SABIC or ICL, got {criterion!r}")
        return self.results[int(self.table[criterion].idxmin())]


def compare_experts(formula: str, data: pd.DataFrame, groups, n_experts: Iterable[int] = range(1, 5),
                    n_starts: int = 10, random_state=None, fit_kwargs: dict | None = None,
                    **model_kwargs) -> ExpertComparison:
    """Fit the same MEMoE for each K in ``n_experts`` and compare them.

    Parameters
    ----------
    formula, data, groups, **model_kwargs
        As :meth:`pymemoe.MEMoE.from_formula` (``re_formula``, ``gate_formula``, ...).
    n_experts : iterable of int
        Values of K.
    n_starts, random_state
        Passed to each fit (the same seed for every K).
    fit_kwargs : dict, optional
        Further arguments of :meth:`pymemoe.MEMoE.fit`.

    Returns
    -------
    ExpertComparison

    Examples
    --------
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.selection import compare_experts
    >>> df = load_pbcseq().assign(year=lambda d: d["day"] / 365.25)
    >>> comp = compare_experts("np.log(bili) ~ year", df, "id", n_experts=[1, 2],
    ...                        re_formula="~ year", n_starts=2, random_state=0)
    >>> list(comp.table.index)
    [1, 2]
    """
    results = {}
    for K in n_experts:
        model = MEMoE.from_formula(formula, data, groups, n_experts=int(K), **model_kwargs)
        results[int(K)] = model.fit(n_starts=n_starts, random_state=random_state,
                                    **(fit_kwargs or {}))
    return ExpertComparison(table=comparison_table(results), results=results)
