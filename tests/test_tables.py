"""Tables for papers: number formats, p-values, SD and correlation intervals, the same rows in
every export, booktabs LaTeX, experts and models as columns, and the GRoLTS classification
diagnostics.

References: closed forms (se(SD) = se(Var) / (2 SD) from cov_params for one expert; the log
and Fisher-z intervals; AvePP and OCC from their definitions, Nagin 2005) and the posterior
matrix itself.
"""
import io
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pymemoe import MEMoE
from pymemoe.summary import summary_col


@pytest.fixture(scope="module")
def res(pbc):
    return MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                              gate_formula="~ age + C(sex)", n_experts=2).fit(n_starts=3,
                                                                              random_state=0)


@pytest.fixture(scope="module")
def lmm(pbc):
    return MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                              n_experts=1).fit()


def test_float_format_is_honoured_everywhere(res):
    text = res.summary(float_format="%.2f").as_text()
    # no number with four decimals anywhere (the old posterior table printed 52.8846)
    assert not re.search(r"\d\.\d{4}", text)
    assert f"{res.llf:.2f}" in text and f"{res.bic:.2f}" in text
    pp = res.postprob()
    # the classification table: percentages with one decimal, as the experts' shares in their
    # headers ("52.9%"), the probabilities and OCC with float_format
    row = next(line for line in text.splitlines() if line.strip().startswith("assigned to 1"))
    assert f"{pp.loc[1, '% assigned']:.1f}" in row and f"{pp.loc[1, '% > 0.7']:.1f}" in row
    assert f"{pp.loc[1, 'OCC']:.2f}" in row and f"{pp.loc[1, 'mean P(1)']:.2f}" in row
    assert f"{pp.loc[1, '% assigned']:.2f}" not in row
    wide = res.summary(float_format="%.5f").as_text()
    row = next(line for line in wide.splitlines() if line.strip().startswith("assigned to 1"))
    assert f"{pp.loc[1, 'OCC']:.5f}" in row and f"{pp.loc[1, '% estimated']:.1f}" in row
    for export in (res.to_latex(float_format="%.2f"), res.to_markdown(float_format="%.2f"),
                   res.to_html(float_format="%.2f"), res.summary(float_format="%.2f").as_latex()):
        assert not re.search(r"\d\.\d{4}", export)
    buffer = io.StringIO()
    res.to_csv(buffer, float_format="%.2f")
    assert not re.search(r"\d\.\d{3}", buffer.getvalue())


def test_small_p_values_print_as_below_0_001(res):
    frame = res.to_frame()
    assert (frame["P>|z|"] < 0.001).any()
    for text in (res.summary().as_text(), res.to_latex(), res.to_markdown(), res.to_html()):
        assert "0.0000" not in text
    assert "<0.001" in res.summary().as_text() and "<0.001" in res.to_markdown()
    assert r"\textless{}0.001" in res.to_latex()


def test_sd_and_correlation_intervals_on_log_and_fisher_z_scales(res, lmm):
    crit = stats.norm.ppf(0.975)
    frame = res.to_frame()
    sd = frame[frame["term"].str.startswith("SD(") | (frame["term"] == "Residual SD")]
    np.testing.assert_allclose(sd["lower"], sd["coef"] * np.exp(-crit * sd["std err"] / sd["coef"]))
    np.testing.assert_allclose(sd["upper"], sd["coef"] * np.exp(crit * sd["std err"] / sd["coef"]))
    assert (sd["lower"] > 0).all() and sd["z"].isna().all() and sd["P>|z|"].isna().all()
    corr = frame[frame["term"].str.startswith("Corr(")]
    z = np.arctanh(corr["coef"])
    half = crit * corr["std err"] / (1 - corr["coef"] ** 2)
    np.testing.assert_allclose(corr["lower"], np.tanh(z - half))
    np.testing.assert_allclose(corr["upper"], np.tanh(z + half))
    assert ((corr["lower"] > -1) & (corr["upper"] < 1)).all()
    # the delta-method SE of an SD in closed form, from the variance's SE
    rows = lmm.to_frame().set_index("term")
    var_se = lmm.bse[("re_cov", 1, "Var(year)")]
    assert rows.loc["SD(year)", "std err"] == pytest.approx(
        var_se / (2 * np.sqrt(lmm.params[("re_cov", 1, "Var(year)")])), rel=1e-5)
    s2_se = lmm.bse[("scale", 1, "sigma2")]
    assert rows.loc["Residual SD", "std err"] == pytest.approx(
        s2_se / (2 * np.sqrt(lmm.params[("scale", 1, "sigma2")])), rel=1e-5)


def _summary_row_labels(res) -> list[str]:
    labels = []
    for table in res.summary().tables[1:]:
        if "coef" not in table.columns:
            continue
        labels += [str(i).strip() for i in table.index[1:]]          # after the section row
    return labels


def test_every_export_holds_the_summary_rows(res, tmp_path):
    frame = res.to_frame()
    expected = [f"expert {e}: {t}" if b == "gate" else t
                for b, e, t in zip(frame["block"], frame["expert"], frame["term"])]
    assert _summary_row_labels(res) == expected
    n = len(frame)
    latex = res.to_latex()
    body = latex.split("\\midrule\n")[1].split("\\bottomrule")[0]
    assert len(body.strip().splitlines()) == n
    assert len(res.to_markdown().strip().splitlines()) == n + 2
    assert res.to_html().count("<tr") == n + 1
    res.to_csv(tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv", keep_default_na=False)
    assert list(back["term"]) == list(frame["term"])
    np.testing.assert_allclose(back["coef"].astype(float), frame["coef"])
    # SDs and correlations, not variances, in every export
    assert not frame["term"].str.startswith("Var(").any()
    assert "SD(year)" in latex and "Var(year)" not in latex


def test_latex_uses_booktabs_rules(res):
    for latex in (res.to_latex(), res.summary().as_latex(), res.expert_table().to_latex()):
        assert "\\toprule" in latex and "\\midrule" in latex and "\\bottomrule" in latex
        assert "\\hline" not in latex
        assert latex.count("\\begin{tabular}") == latex.count("\\end{tabular}")


def test_expert_table_has_experts_as_columns(res):
    table = res.expert_table(float_format="%.3f")
    numbers = table.to_frame()
    assert list(numbers["coef"].columns) == ["Expert 1", "Expert 2"]
    frame = res.to_frame()
    for _, row in frame[frame["block"] != "gate"].iterrows():
        section = "Fixed effects" if row["block"] == "beta" else "Variance components (SD, correlation)"
        assert numbers.loc[(section, row["term"]), ("coef", f"Expert {row['expert']}")] == row["coef"]
    gate = numbers.xs("Gating (log odds vs expert 1)", level="section")
    assert gate[("coef", "Expert 1")].isna().all()           # the reference expert
    text = table.as_text()
    assert "(0." in text and "Subjects" in text
    assert text.count(f"{res.fe_params.loc['year', 2]:.3f}") >= 1
    starred = res.expert_table(stars=True).as_text()
    assert "***" in starred and "p < 0.001" in starred


def test_summary_col_puts_models_side_by_side(res, lmm):
    table = summary_col([lmm, res], model_names=["LMM", "MEMoE"])
    numbers = table.to_frame()
    assert list(numbers.columns.get_level_values(0).unique()) == ["LMM", "MEMoE"]
    for name, fit in (("LMM", lmm), ("MEMoE", res)):
        frame = fit.to_frame().set_index(["block", "expert", "term"])
        np.testing.assert_allclose(numbers.loc[frame.index, (name, "coef")], frame["coef"])
        np.testing.assert_allclose(numbers.loc[frame.index, (name, "std err")], frame["std err"])
    # a gating row exists for the mixture only
    assert np.isnan(numbers.loc[("gate", 2, "age"), ("LMM", "coef")])
    text = table.as_text()
    assert f"{lmm.llf:.3f}" in text and f"{res.bic:.3f}" in text
    assert "\\toprule" in table.to_latex()
    with pytest.raises(ValueError, match="distinct names"):
        summary_col([lmm, res], model_names=["a", "a"])


def test_postprob_has_the_grolts_classification_diagnostics(res):
    pp = res.postprob()
    tau = res.posterior.to_numpy()
    assigned = tau.argmax(axis=1)
    share = tau.mean(axis=0)
    for k in (1, 2):
        sel = assigned == k - 1
        ave = tau[sel, k - 1].mean()
        assert pp.loc[k, "n"] == sel.sum()
        assert pp.loc[k, "AvePP"] == pytest.approx(ave)
        assert pp.loc[k, f"mean P({k})"] == pytest.approx(ave)
        assert pp.loc[k, "% estimated"] == pytest.approx(100 * share[k - 1])
        assert pp.loc[k, "% assigned"] == pytest.approx(100 * sel.mean())
        occ = (ave / (1 - ave)) / (share[k - 1] / (1 - share[k - 1]))
        assert pp.loc[k, "OCC"] == pytest.approx(occ)
        assert pp.loc[k, "% > 0.7"] == pytest.approx(100 * (tau[sel, k - 1] > 0.7).mean())
    assert "OCC" in res.summary().as_text()
