"""Rendering of parameter tables for papers: readable labels, Markdown without extra packages."""
from __future__ import annotations

import pandas as pd

__all__ = ["tidy_table", "render_markdown", "render_latex"]

BLOCK_NAMES = {"gate": "Gating", "beta": "Fixed effects", "re_cov": "Random effects",
               "scale": "Residual variance"}


def tidy_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The tidy parameter table with readable block and expert labels.

    ``frame`` has columns block, expert, term, then numbers (as ``MEMoEResults.to_frame``).
    """
    out = frame.copy()
    out["block"] = out["block"].map(BLOCK_NAMES).fillna(out["block"])
    out["expert"] = out["expert"].map(lambda e: "all experts" if e == "all" else f"expert {e}")
    return out.rename(columns={"block": "Block", "expert": "Expert", "term": "Term"})


def render_markdown(frame: pd.DataFrame, float_format: str = "%.4f") -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned, NaN blank)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else float_format % value
        return str(value).replace("|", "\\|")   # a pipe would end the cell

    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |",
             "|" + "|".join("---:" if n else ":---" for n in numeric) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "|": r"\textbar{}", ">": r"\textgreater{}",
                  "<": r"\textless{}"}


def _latex_escape(text: str) -> str:
    # one pass, so the braces of a replacement are never escaped again
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def render_latex(frame: pd.DataFrame, float_format: str = "%.4f") -> str:
    """A booktabs LaTeX tabular (numbers right-aligned, NaN blank); needs ``\\usepackage{booktabs}``."""
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]

    def cell(value) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else float_format % value
        return _latex_escape(str(value))

    lines = [r"\begin{tabular}{" + "".join("r" if n else "l" for n in numeric) + "}", r"\toprule",
             " & ".join(_latex_escape(str(c)) for c in frame.columns) + r" \\", r"\midrule"]
    for row in frame.itertuples(index=False):
        lines.append(" & ".join(cell(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
