r"""The summary and the paper tables of a fitted MEMoE, built from one frame of rows.

:func:`parameter_frame` is the table behind everything printed or exported: one row per
reported quantity, in the summary's order,

1. the gating coefficients (experts 2..K against expert 1; log odds),
2. per expert: its fixed effects, the SDs and correlations of its random effects and its
   residual SD,
3. the fixed effects shared by all experts, and (``cov_re="proportional"``) the SD ratios.

So ``summary()``, ``to_frame()``, ``to_latex()``, ``to_markdown()``, ``to_html()`` and
``to_csv()`` hold the same rows. The variances and covariances themselves (the parameters) are
``results.params`` / ``bse`` / ``conf_int()``.

**Intervals.** Coefficients get Wald intervals est +- z se. An SD s (or an SD ratio) gets its
interval on the log scale, exp(log s +- z se(s)/s), which never crosses 0; a correlation r on
Fisher's z scale, tanh(atanh r +- z se(r)/(1 - r^2)), which stays in (-1, 1). se(s) and se(r)
come from ``cov_params()`` by the delta method; the transformed scales are where the Wald
approximation is better (the same device as lme4's profile-free ``confint(method="Wald")`` on
the theta scale and as SAS's Satterthwaite-free log intervals). No z or p is reported for SDs
and correlations: a test of an SD against 0 is on the boundary and not a Wald test.

**Classification diagnostics** (:func:`postprob_table`), as recommended by the GRoLTS
checklist for latent trajectory studies (van de Schoot et al. 2017) and Nagin (2005): per
expert k, the share of subjects assigned to it and its estimated share (the mean posterior
probability pi_k), the average posterior probability of assignment AvePP_k (mean tau_ik over
the subjects assigned to k; >= 0.7 is Nagin's rule of thumb) and the odds of correct
classification OCC_k = [AvePP_k / (1 - AvePP_k)] / [pi_k / (1 - pi_k)] (>= 5 adequate).

References
----------
Nagin (2005), Group-Based Modeling of Development, Harvard University Press, ch. 5.
van de Schoot, Sijbrandij, Winter, Depaoli & Vermunt (2017), The GRoLTS-checklist: guidelines
for reporting on latent trajectory studies. Structural Equation Modeling 24(3).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.iolib import summary2

from ._estimation.inference import delta_method
from ._estimation.starts import LLF_TOL
from ._model.params import from_user
from ._tables import (Table, format_frame, format_number, format_pvalue, latex_escape,
                      render_latex)

__all__ = ["parameter_frame", "variance_components", "postprob_table", "build_summary",
           "expert_table", "summary_col", "MEMoESummary"]

COLUMNS = ["block", "expert", "term", "name", "coef", "std err", "z", "P>|z|", "lower", "upper"]
_COV_NAMES = {"oim": "inverse observed information",
              "robust": "robust sandwich (subject-level)"}


def _corr(D: np.ndarray, i: int, j: int) -> float:
    denom = np.sqrt(max(D[i, i], 0.0) * max(D[j, j], 0.0))
    return D[i, j] / denom if denom > 0 else np.nan


def variance_components(results) -> pd.DataFrame:
    """SDs, correlations and residual SD of every expert with delta-method standard errors.

    Index (expert, term) with terms ``SD(name)``, ``Corr(a,b)`` and ``Residual SD`` (Gaussian
    experts only: binomial and Poisson experts have no residual variance); columns ``coef``
    and ``std err``.
    """
    structure = results.model.structure
    names = list(structure.exog_re_names)
    q = structure.k_re
    labels, funcs = [], []
    for k in range(results.n_experts):
        for i, name in enumerate(names):
            labels.append((k + 1, f"SD({name})"))
            funcs.append(lambda P, k=k, i=i: np.sqrt(max(P.cov_re[k, i, i], 0.0)))
        for i in range(q):
            for j in range(i):
                labels.append((k + 1, f"Corr({names[j]},{names[i]})"))
                funcs.append(lambda P, k=k, i=i, j=j: _corr(P.cov_re[k], i, j))
        if structure.has_scale:
            labels.append((k + 1, "Residual SD"))
            funcs.append(lambda P, k=k: np.sqrt(P.scale[k]))

    def evaluate(vector):
        P = from_user(vector, structure)
        return np.array([f(P) for f in funcs])

    value, cov = delta_method(evaluate, results.params.to_numpy(), results.cov_params().to_numpy())
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.diag(cov))
    index = pd.MultiIndex.from_tuples(labels, names=["expert", "term"])
    return pd.DataFrame({"coef": value, "std err": se}, index=index)


def _positive_interval(est, se, crit):
    with np.errstate(divide="ignore", invalid="ignore"):
        half = crit * se / est
        return est * np.exp(-half), est * np.exp(half)


def _fisher_interval(est, se, crit):
    with np.errstate(divide="ignore", invalid="ignore"):
        z, half = np.arctanh(est), crit * se / (1.0 - est ** 2)
        return np.tanh(z - half), np.tanh(z + half)


def parameter_frame(results, alpha: float = 0.05) -> pd.DataFrame:
    """The rows of the summary as numbers (module docstring), full precision.

    Columns: ``block`` (gate, beta, re_cov, scale), ``expert`` (1..K or ``"all"``), ``term``,
    ``name`` (the parameter's name for :meth:`~pymemoe.MEMoEResults.t_test` and
    :meth:`~pymemoe.MEMoEResults.wald_test`, blank for SDs and correlations, which are
    functions of the parameters), ``coef``, ``std err``, ``z``, ``P>|z|``, ``lower``, ``upper``.
    """
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    crit = stats.norm.ppf(1.0 - alpha / 2.0)
    params, bse = results.params, results.bse
    names = pd.Series(results.param_names, index=params.index)
    coef = pd.DataFrame({"name": names, "coef": params, "std err": bse})
    coef["z"] = coef["coef"] / coef["std err"]
    coef["P>|z|"] = 2.0 * stats.norm.sf(np.abs(coef["z"]))
    coef["lower"] = coef["coef"] - crit * coef["std err"]
    coef["upper"] = coef["coef"] + crit * coef["std err"]
    coef = coef.reset_index()
    ratio = coef["term"] == "SD ratio"
    if ratio.any():
        lo, hi = _positive_interval(coef.loc[ratio, "coef"].to_numpy(),
                                    coef.loc[ratio, "std err"].to_numpy(), crit)
        coef.loc[ratio, ["z", "P>|z|"]] = np.nan
        coef.loc[ratio, "lower"], coef.loc[ratio, "upper"] = lo, hi

    vc = variance_components(results).reset_index()
    est, se = vc["coef"].to_numpy(), vc["std err"].to_numpy()
    is_corr = vc["term"].str.startswith("Corr(").to_numpy()
    lo, hi = _positive_interval(est, se, crit)
    lo_c, hi_c = _fisher_interval(est, se, crit)
    vc["lower"], vc["upper"] = np.where(is_corr, lo_c, lo), np.where(is_corr, hi_c, hi)
    vc["block"] = np.where(vc["term"] == "Residual SD", "scale", "re_cov")
    vc["name"] = ""
    vc["z"] = vc["P>|z|"] = np.nan

    pieces = [coef[coef["block"] == "gate"]]
    for k in range(1, results.n_experts + 1):
        pieces.append(coef[(coef["block"] == "beta") & (coef["expert"] == k)])
        pieces.append(vc[vc["expert"] == k])
    pieces.append(coef[(coef["block"] == "beta") & (coef["expert"] == "all")])
    pieces.append(coef[ratio])
    frame = pd.concat(pieces, ignore_index=True)[COLUMNS]
    frame["expert"] = frame["expert"].astype(object)
    return frame


def _sections(results, frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) of each parameter table of the summary."""
    K = results.n_experts
    sizes = results.expert_sizes
    out = []
    gate = frame[frame["block"] == "gate"]
    if len(gate):
        gate = gate.set_axis([f"expert {e}: {t}" for e, t in zip(gate["expert"], gate["term"])])
        out.append(("Gating: multinomial logit vs expert 1", gate))
    sections = results.model.family.coefficient_sections(results.model.structure)
    other = {t for section in sections for t in section.terms}
    for k in range(1, K + 1):
        mine = frame[(frame["expert"] == k) & (frame["block"] != "gate")
                     & (frame["term"] != "SD ratio")]
        rows = mine[~((mine["block"] == "beta") & mine["term"].isin(other))]
        title = (f"Expert {k}: {int(sizes['n_assigned'].loc[k])} subjects "
                 f"({sizes['pct_assigned'].loc[k]:.1f}%)")
        out.append((title, rows.set_axis(list(rows["term"]))))
        for section in sections:      # another outcome model of the expert (joint models)
            part = mine[(mine["block"] == "beta") & mine["term"].isin(section.terms)]
            out.append((f"Expert {k}: {section.title}", part.set_axis(list(part["term"]))))
    shared = frame[(frame["block"] == "beta") & (frame["expert"] == "all")]
    for section in sections:          # another outcome model's coefficients common to all
        part = shared[shared["term"].isin(section.terms)]
        if len(part):
            out.append((f"All experts: {section.title}", part.set_axis(list(part["term"]))))
    shared = shared[~shared["term"].isin(other)]
    if len(shared):
        out.append(("Fixed effects shared by all experts", shared.set_axis(list(shared["term"]))))
    ratio = frame[frame["term"] == "SD ratio"]
    if len(ratio):
        out.append(("Proportional random-effects covariance",
                    ratio.set_axis([f"expert {e}: D = w^2 D_1, w" for e in ratio["expert"]])))
    return out


def _coef_cells(rows: pd.DataFrame, alpha: float, float_format: str) -> pd.DataFrame:
    lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
    numbers = rows[["coef", "std err", "z", "P>|z|", "lower", "upper"]]
    return format_frame(numbers, float_format).set_axis(
        ["coef", "std err", "z", "P>|z|", lo, hi], axis=1)


def _section(title: str, cells: pd.DataFrame) -> pd.DataFrame:
    """The cells with a first row naming their section and indented row labels."""
    head = pd.DataFrame([[""] * cells.shape[1]], index=[title], columns=cells.columns)
    body = cells.copy()
    body.index = ["  " + str(i) for i in cells.index]
    return pd.concat([head, body])


#: percentages in the summary's tables (the expert headers' shares and the classification)
PERCENT_FORMAT = "%.1f"


def postprob_table(results) -> pd.DataFrame:
    """lcmm's posterior classification table with the GRoLTS diagnostics (module docstring).

    One row per expert k: ``n`` and ``% assigned`` (subjects whose most probable expert is
    k), ``% estimated`` (100 pi_k, the mean posterior probability), ``mean P(l)`` for each
    expert l (mean posterior probability of l among the subjects assigned to k; the diagonal
    is ``AvePP``), ``AvePP``, ``OCC`` (odds of correct classification), and ``% > 0.7``,
    ``% > 0.8``, ``% > 0.9`` (shares of k's subjects whose assigned probability exceeds the
    threshold).
    """
    tau = results.posterior.to_numpy()
    N, K = tau.shape
    assigned = tau.argmax(axis=1)
    share = tau.mean(axis=0)
    rows = []
    for k in range(K):
        sel = assigned == k
        n_k = int(sel.sum())
        row = {"n": n_k, "% assigned": 100.0 * n_k / N, "% estimated": 100.0 * share[k]}
        for l in range(K):
            row[f"mean P({l + 1})"] = tau[sel, l].mean() if n_k else np.nan
        ave = row[f"mean P({k + 1})"]
        row["AvePP"] = ave
        with np.errstate(divide="ignore", invalid="ignore"):
            row["OCC"] = (ave / (1.0 - ave)) / (share[k] / (1.0 - share[k])) if K > 1 else np.nan
        for cut in (0.7, 0.8, 0.9):
            row[f"% > {cut}"] = 100.0 * (tau[sel, k] > cut).mean() if n_k else np.nan
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index(range(1, K + 1), name="expert"))


class MEMoESummary(summary2.Summary):
    """statsmodels' ``Summary`` (text, HTML) whose ``as_latex`` writes booktabs tabulars."""

    def __init__(self) -> None:
        super().__init__()
        self._latex_blocks: list[str] = []

    def as_latex(self, label: str = "") -> str:
        """One ``table`` environment with a booktabs tabular per block (needs
        ``\\usepackage{booktabs}``)."""
        lines = [r"\begin{table}", r"\centering", r"\caption{" + latex_escape(self.title or "") + "}"]
        if label:
            lines.append(r"\label{" + label + "}")
        lines.append("\n\\medskip\n".join(self._latex_blocks).rstrip("\n"))
        if self.extra_txt:
            lines.append(r"\par\medskip\footnotesize " + " ".join(latex_escape(t)
                                                                for t in self.extra_txt))
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"


def _header(results, float_format: str) -> dict[str, str]:
    m = results.model
    structure = m.structure
    fmt = lambda v: format_number(float(v), float_format)  # noqa: E731
    header = {
        "Model:": "MEMoE",
        "Family:": m.family.description,
        "Dependent variable:": m.endog_name,
        "Experts:": str(results.n_experts),
        "Subjects:": str(results.n_groups),
        "Observations:": str(results.nobs),
        "Rows dropped (missing):": str(results.n_dropped),
        "Covariance of RE:": f"{structure.cov_re}, {structure.re_structure}",
        "Residual variance:": structure.scale,
        "Log-likelihood:": fmt(results.llf),
        "Parameters:": str(results.df_modelwc),
        "AIC:": fmt(results.aic),
        "BIC (n = subjects):": fmt(results.bic),
        "ICL:": fmt(results.icl),
        "Entropy (normalised):": fmt(results.entropy),
        "Converged:": "yes" if results.converged else "no",
        "EM iterations:": str(results.n_iter),
        "Covariance type:": results.cov_type,
    }
    if not structure.has_scale:
        del header["Residual variance:"]
    known = results.known_class
    if known is not None:
        header["Known experts:"] = f"{int(known.notna().sum())} subjects"
    fixed = getattr(m.data, "class_prior", None)
    if fixed is not None:
        header["Fixed priors:"] = f"{int(np.isfinite(fixed[:, 0]).sum())} subjects"
    if results.weight_type is not None:
        header["Weights:"] = f"{results.weight_type} (sum {results.weights.sum():.6g})"
    return header


def starts_note(results) -> str:
    """The footer line on the starts: how many finished starts reached the best log-likelihood
    (``results.n_best`` of ``results.n_finished``, within :data:`pymemoe._estimation.starts.LLF_TOL`)."""
    n, of = results.n_best, results.n_finished
    where = " of the subsample" if (results.starts["kind"] == "from sample").any() else ""
    return (f"Starts: {n} of {of} finished starts{where} reached the best log-likelihood "
            f"(within {LLF_TOL}); see res.starts.")


def _header_latex(header: dict[str, str]) -> str:
    """The header block as a four-column booktabs tabular (label, value, label, value)."""
    items = list(header.items())
    half = (len(items) + 1) // 2
    left, right = items[:half], items[half:] + [("", "")] * (2 * half - len(items))
    lines = [r"\begin{tabular}{llll}", r"\toprule"]
    lines += [" & ".join(latex_escape(x) for x in (a, b, c, d)) + r" \\"
              for (a, b), (c, d) in zip(left, right)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _independence_note(results) -> str:
    """The score test of conditional independence of a joint model with random effects
    (:func:`pymemoe.diagnostics.conditional_independence_test`), or "" for other models."""
    model = results.model
    if not model.family.has_events or model.structure.k_re == 0 or results.weight_type:
        return ""
    row = results.independence_test.loc["all"]      # computed once per results
    return (f"Conditional independence given the expert (score test of the random effects in "
            f"the hazards): chi2 = {row['chi2']:.2f}, df = {int(row['df'])}, "
            f"p = {format_pvalue(row['P>chi2'])}.")


def _outcome_tables(results, alpha: float, float_format: str) -> list[pd.DataFrame]:
    """The tables of a joint model's other outcomes: posterior-weighted events and
    person-time per expert, and the hazard ratios with their confidence intervals."""
    family = results.model.family
    sections = [s for s in family.coefficient_sections(results.model.structure)
                if s.ratio_terms]
    counts = family.outcome_counts(results.model.data, results.estep.tau)
    out = []
    if counts is not None:
        cells = format_frame(counts, "%.1f")
        cells.index = [f"expert {k}" for k in counts.index]
        out.append(_section("Events and person-time by expert (posterior-weighted)", cells))
    if sections:
        ratios = results.hazard_ratios(alpha)
        lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
        cells = format_frame(ratios[["hazard ratio", "lower", "upper"]], float_format)
        cells.columns = [sections[0].ratio_name, lo, hi]
        cells["P>|z|"] = [format_pvalue(p) for p in ratios["P>|z|"]]
        cells.index = [f"all experts: {t}" if k == "all" else f"expert {k}: {t}"
                       for k, t in ratios.index]
        out.append(_section(f"{sections[0].ratio_name.capitalize()}s (exp(coef))", cells))
    return out


def build_summary(results, alpha: float = 0.05, float_format: str = "%.4f") -> MEMoESummary:
    """The summary of :meth:`~pymemoe.MEMoEResults.summary` (every number in ``float_format``,
    p-values by :func:`pymemoe._tables.format_pvalue`)."""
    smry = MEMoESummary()
    smry.add_title("Mixed effects mixture of experts")
    header = _header(results, float_format)
    smry.add_dict(header, ncols=2)
    smry._latex_blocks.append(_header_latex(header))
    frame = parameter_frame(results, alpha)
    for title, rows in _sections(results, frame):
        cells = _section(title, _coef_cells(rows, alpha, float_format))
        smry.add_df(cells)
        smry._latex_blocks.append(render_latex(cells.reset_index(names="")))
    for cells in _outcome_tables(results, alpha, float_format):
        smry.add_df(cells)
        smry._latex_blocks.append(render_latex(cells.reset_index(names="")))
    if results.n_experts > 1:
        pp = postprob_table(results)       # the diagonal of mean P is AvePP; one cut-off less
        pp = pp.drop(columns=["AvePP", "% > 0.8"]).rename(
            columns={"% assigned": "% assig.", "% estimated": "% est."})
        cells = format_frame(pp, float_format)
        percent = [c for c in pp.columns if c.startswith("%")]
        cells[percent] = format_frame(pp[percent], PERCENT_FORMAT)     # as "52.9%" above
        cells.index = [f"assigned to {k}" for k in pp.index]
        cells = _section("Posterior classification", cells)
        smry.add_df(cells)
        smry._latex_blocks.append(render_latex(cells.reset_index(names="")))
    reference = ("expert 1 is the gating reference (the experts keep the numbering of the "
                 "known experts)." if results.known_class is not None else
                 "expert 1 is the largest expert and the gating reference.")
    notes = [f"BIC uses log(number of subjects); {reference}"]
    if results.weight_type == "sampling":
        notes = ["Sampling weights: the estimates maximise a pseudo-likelihood (weighted "
                 "log-likelihood), so AIC, BIC and ICL are not defined; standard errors are "
                 f"robust. {reference[0].upper()}{reference[1:]}"]
    elif results.weight_type == "frequency":
        notes = [f"Frequency weights: each subject counts its weight; BIC uses log(sum of the "
                 f"weights). {reference[0].upper()}{reference[1:]}"]
    if results.cov_type == "none":
        notes.append("Standard errors not computed (cov_type='none').")
    else:
        name = _COV_NAMES[results.cov_type]
        if results.cov_options:
            name = ("design-based sandwich over "
                    + " within ".join(n for n, k in (("primary sampling units", "psu"),
                                                     ("strata", "strata"))
                                      if k in results.cov_options))
        notes.append(f"Standard errors: {name}; SDs and correlations "
                     f"by the delta method, their intervals on the log and Fisher-z scales.")
    if results.n_experts > 1:
        notes.append(starts_note(results))
    independence = _independence_note(results)
    if independence:
        notes.append(independence)
    smry.add_text(" ".join(notes))
    for msg in results.messages:
        smry.add_text("Warning: " + msg)
    return smry


# ---------------------------------------------------------------------------------------------
# Tables with experts, or models, as columns


def _stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def _coef_se_cells(coef: pd.DataFrame, se: pd.DataFrame, p: pd.DataFrame, float_format: str,
                   stars: bool) -> pd.DataFrame:
    """Two text rows per term: the estimate (with stars) and its standard error in brackets."""
    rows, labels = [], []
    for j, label in enumerate(coef.index):
        rows.append([format_number(v, float_format) + (_stars(pv) if stars else "")
                     for v, pv in zip(coef.iloc[j], p.iloc[j])])
        rows.append([f"({format_number(v, float_format)})" if np.isfinite(v) else ""
                     for v in se.iloc[j]])
        labels += [label, ""]
    return pd.DataFrame(rows, index=labels, columns=coef.columns)


_SECTION_TITLES = {"beta": "Fixed effects", "re_cov": "Variance components (SD, correlation)",
                   "scale": "Variance components (SD, correlation)",
                   "gate": "Gating (log odds vs expert 1)"}


def expert_table(results, float_format: str = "%.3f", stars: bool = False,
                 alpha: float = 0.05) -> Table:
    """Experts as columns (a paper's "Table 2"): estimates with standard errors below.

    Rows: the fixed effects, the SDs and correlations of the random effects, the residual SD
    and the gating coefficients of each expert (expert 1, the reference, blank), then the
    subjects assigned (n and %) and the estimated share (%). A shared quantity (a fixed
    effect of ``shared_formula``) is in an "all experts" column.
    """
    frame = parameter_frame(results, alpha)
    K = results.n_experts
    frame = frame[frame["term"] != "SD ratio"]       # the SDs already show the proportionality
    frame = frame.assign(column=[f"Expert {e}" if e != "all" else "All experts"
                                 for e in frame["expert"]])
    order = [f"Expert {k}" for k in range(1, K + 1)]
    if (frame["column"] == "All experts").any():
        order.append("All experts")
    block_order = ["beta", "re_cov", "scale", "gate"]
    frame = frame.assign(rank=frame["block"].map(block_order.index))
    keys = list(dict.fromkeys(zip(frame["rank"], frame["block"], frame["term"])))
    keys.sort(key=lambda key: key[0])       # stable: terms keep their order within a block
    index = pd.MultiIndex.from_tuples([(_SECTION_TITLES[b], t) for _, b, t in keys],
                                      names=["section", "term"])

    def pivot(column: str) -> pd.DataFrame:
        out = pd.DataFrame(np.nan, index=index, columns=order)
        for _, row in frame.iterrows():
            out.loc[(_SECTION_TITLES[row["block"]], row["term"]), row["column"]] = row[column]
        return out

    coef, se, p = pivot("coef"), pivot("std err"), pivot("P>|z|")
    blocks, sections = [], []
    for section in dict.fromkeys(index.get_level_values("section")):
        sections.append(sum(len(b) for b in blocks))
        sel = index.get_level_values("section") == section
        terms = [f"  {t}" for t in index[sel].get_level_values("term")]
        part = _coef_se_cells(coef[sel].set_axis(terms), se[sel].set_axis(terms),
                              p[sel].set_axis(terms), float_format, stars)
        head = pd.DataFrame([[""] * len(order)], index=[section], columns=order)
        blocks.append(pd.concat([head, part]))
    sizes = results.expert_sizes
    counts = pd.DataFrame([[""] * K,
                           [f"{int(n)} ({pct:.1f}%)" for n, pct in
                            zip(sizes["n_assigned"], sizes["pct_assigned"])],
                           [format_number(100 * s / results.n_groups, "%.1f")
                            for s in sizes["posterior_size"]]],
                          index=["Subjects", "  assigned, n (%)", "  estimated share (%)"],
                          columns=order[:K]).reindex(columns=order, fill_value="")
    sections.append(sum(len(b) for b in blocks))
    cells = pd.concat(blocks + [counts])
    numbers = pd.concat({"coef": coef, "std err": se, "P>|z|": p}, axis=1)
    note = "Standard errors in parentheses"
    if stars:
        note += "; * p < 0.05, ** p < 0.01, *** p < 0.001"
    note += "; SDs and correlations of the random effects by the delta method."
    return Table(numbers, cells, title=f"MEMoE with {K} experts", notes=note,
                 section_rows=tuple(sections))


def summary_col(results, model_names=None, float_format: str = "%.3f", stars: bool = False,
                alpha: float = 0.05) -> Table:
    """Several fitted models as columns (as statsmodels' ``summary_col``).

    Rows are the union of the models' summary rows (:func:`parameter_frame`: gating, then the
    fixed effects, SDs, correlations and residual SD of each expert) labelled (block, expert,
    term), each estimate with its standard error below, then the fit statistics: K, subjects,
    observations, log-likelihood, parameters, AIC, BIC, ICL, entropy.

    Parameters
    ----------
    results : sequence of MEMoEResults
    model_names : sequence of str, optional
        Column titles (default ``"(1)"``, ``"(2)"``, ...).
    float_format : str
    stars : bool
        Mark p < 0.05, 0.01, 0.001 with ``*``, ``**``, ``***`` (coefficients only; no test
        of an SD).
    alpha : float

    Returns
    -------
    pymemoe._tables.Table

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> from pymemoe.summary import summary_col
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> fits = [MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula=re,
    ...                            n_experts=1).fit() for re in ("~ 1", "~ year")]
    >>> table = summary_col(fits, model_names=["intercept", "intercept + slope"])
    >>> table.to_frame().loc[("beta", 1, "year"), "intercept + slope"].round(3).tolist()
    [0.177, 0.013, 0.0]
    """
    results = list(results)
    if not results:
        raise ValueError("summary_col needs at least one fitted model")
    names = [f"({j + 1})" for j in range(len(results))] if model_names is None else list(model_names)
    if len(names) != len(results) or len(set(names)) != len(names):
        raise ValueError(f"model_names must be {len(results)} distinct names, got {names!r}")
    frames = [parameter_frame(r, alpha).set_index(["block", "expert", "term"]) for r in results]
    labels = list(dict.fromkeys(label for f in frames for label in f.index))
    first = {label: j for j, label in enumerate(labels)}
    # experts in order (each: fixed effects, then SDs), shared effects, then the gating
    rank = {"beta": 0, "re_cov": 1, "scale": 2}
    labels.sort(key=lambda lab: (2, 0, first[lab]) if lab[0] == "gate" else
                (1, rank[lab[0]], first[lab]) if lab[1] == "all" else
                (0, lab[1], rank[lab[0]], first[lab]))
    index = pd.MultiIndex.from_tuples(labels, names=["block", "expert", "term"])
    coef = pd.DataFrame({n: f["coef"].reindex(index) for n, f in zip(names, frames)})
    se = pd.DataFrame({n: f["std err"].reindex(index) for n, f in zip(names, frames)})
    p = pd.DataFrame({n: f["P>|z|"].reindex(index) for n, f in zip(names, frames)})
    display = [(f"Gating, expert {e}: {t}" if b == "gate" else
                "All experts: " + t if e == "all" else f"Expert {e}: {t}") for b, e, t in labels]
    cells = _coef_se_cells(coef.set_axis(display), se.set_axis(display),
                           p.set_axis(display), float_format, stars)
    stats_rows = {
        "Experts": [str(r.n_experts) for r in results],
        "Subjects": [str(r.n_groups) for r in results],
        "Observations": [str(r.nobs) for r in results],
        "Log-likelihood": [format_number(r.llf, float_format) for r in results],
        "Parameters": [str(r.df_modelwc) for r in results],
        "AIC": [format_number(r.aic, float_format) for r in results],
        "BIC": [format_number(r.bic, float_format) for r in results],
        "ICL": [format_number(r.icl, float_format) for r in results],
        "Entropy": [format_number(r.entropy, float_format) for r in results],
    }
    info = pd.DataFrame(stats_rows, index=names).T
    numbers = pd.concat({n: pd.concat({"coef": coef[n], "std err": se[n], "P>|z|": p[n]}, axis=1)
                         for n in names}, axis=1)
    cells = pd.concat([cells, info])
    note = "Standard errors in parentheses"
    if stars:
        note += "; * p < 0.05, ** p < 0.01, *** p < 0.001"
    note += "; BIC with log(number of subjects)."
    return Table(numbers, cells, notes=note, section_rows=(len(cells) - len(info),))
