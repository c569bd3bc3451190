"""Rendering of tables for papers: number formats, p-values, Markdown, booktabs LaTeX, HTML, CSV.

One set of rules for every table pymemoe prints or exports:

* numbers use the caller's ``float_format`` (a printf format such as ``"%.3f"``); missing
  values are blank;
* p-values below 0.001 print as ``"<0.001"``, others with three decimals (or more if
  ``float_format`` has more), never as ``0.0000``;
* LaTeX tables are booktabs tabulars (``\\toprule``, ``\\midrule``, ``\\bottomrule``; they need
  ``\\usepackage{booktabs}``), with LaTeX's special characters escaped.

:class:`Table` holds a table twice, as numbers (``to_frame``, ``to_csv``) and as formatted cells
(``as_text``, ``to_latex``, ``to_markdown``, ``to_html``), so every export shows the same rows.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

__all__ = ["BLOCK_NAMES", "tidy_table", "format_number", "format_pvalue", "format_frame",
           "render_markdown", "render_latex", "render_text", "Table"]

BLOCK_NAMES = {"gate": "Gating", "beta": "Fixed effects", "re_cov": "Random effects",
               "scale": "Residual variance"}
P_COLUMNS = ("P>|z|", "p")


def tidy_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The tidy parameter table with readable block and expert labels.

    ``frame`` has columns block, expert, term, then numbers (as ``MEMoEResults.to_frame``).
    """
    out = frame.copy()
    out["block"] = out["block"].map(BLOCK_NAMES).fillna(out["block"])
    out["expert"] = out["expert"].map(lambda e: "all experts" if e == "all" else f"expert {e}")
    return out.rename(columns={"block": "Block", "expert": "Expert", "term": "Term"})


def _decimals(float_format: str) -> int:
    match = re.search(r"\.(\d+)", float_format)
    return int(match.group(1)) if match else 6


def format_number(value, float_format: str = "%.4f") -> str:
    """A number with ``float_format`` (blank when missing); other values as text."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if np.isinf(value):
            return "inf" if value > 0 else "-inf"
        return float_format % value
    return str(value)


def format_pvalue(value, float_format: str = "%.4f") -> str:
    """``"<0.001"`` below 0.001, else three decimals (more if ``float_format`` has more).

    >>> format_pvalue(3e-7), format_pvalue(0.04567), format_pvalue(0.5, "%.2f")
    ('<0.001', '0.0457', '0.500')
    """
    if isinstance(value, str):
        return value
    if value is None or np.isnan(value):
        return ""
    if value < 0.001:
        return "<0.001"
    return f"%.{max(3, _decimals(float_format))}f" % value


def format_frame(frame: pd.DataFrame, float_format: str = "%.4f",
                 pvalue_columns=P_COLUMNS) -> pd.DataFrame:
    """Every cell as text: numbers with ``float_format``, p-value columns by
    :func:`format_pvalue`, missing values blank."""
    out = pd.DataFrame(index=frame.index, columns=frame.columns, dtype=object)
    for column in frame.columns:
        fmt = format_pvalue if column in pvalue_columns else format_number
        out[column] = [fmt(v, float_format) for v in frame[column]]
    return out


def _is_numeric(frame: pd.DataFrame, column) -> bool:
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values):
        return True
    text = [v for v in values if isinstance(v, str) and v]
    # formatted numbers (also "<0.001", "(0.123)") are right-aligned
    return bool(text) and all(re.fullmatch(r"[(<\[-]?[-\d.eE+]+[)\]]?\**", v) for v in text)


def _alignment(frame: pd.DataFrame, numeric) -> list[bool]:
    if numeric is None:
        return [_is_numeric(frame, c) for c in frame.columns]
    return list(numeric)


def render_markdown(frame: pd.DataFrame, float_format: str = "%.4f", numeric=None) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned, NaN blank); ``numeric`` says
    which columns to right-align (default: those holding numbers)."""
    cells = format_frame(frame, float_format)
    numeric = _alignment(frame, numeric)

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|")   # a pipe would end the cell

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |",
             "|" + "|".join("---:" if n else ":---" for n in numeric) + "|"]
    for row in cells.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "|": r"\textbar{}", ">": r"\textgreater{}",
                  "<": r"\textless{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters (one pass, so no replacement is escaped again)."""
    return "".join(_LATEX_SPECIAL.get(char, char) for char in str(text))


def render_latex(frame: pd.DataFrame, float_format: str = "%.4f",
                 section_rows: tuple = (), numeric=None) -> str:
    """A booktabs LaTeX tabular (numbers right-aligned, NaN blank); needs
    ``\\usepackage{booktabs}``. Rows whose position is in ``section_rows`` are preceded by
    ``\\midrule`` (section headings); ``numeric`` as in :func:`render_markdown`."""
    cells = format_frame(frame, float_format)
    numeric = _alignment(frame, numeric)
    lines = [r"\begin{tabular}{" + "".join("r" if n else "l" for n in numeric) + "}", r"\toprule",
             " & ".join(latex_escape(c) for c in frame.columns) + r" \\", r"\midrule"]
    for j, row in enumerate(cells.itertuples(index=False)):
        if j in section_rows and j > 0:
            lines.append(r"\midrule")
        lines.append(" & ".join(latex_escape(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def render_text(frame: pd.DataFrame, float_format: str = "%.4f", title: str | None = None,
                numeric=None) -> str:
    """A plain-text table with a rule above and below, numbers right-aligned."""
    cells = format_frame(frame, float_format)
    header = [str(c) for c in frame.columns]
    numeric = _alignment(frame, numeric)
    widths = [max([len(h)] + [len(v) for v in cells[c]]) for h, c in zip(header, frame.columns)]

    def line(values) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric)).rstrip()

    rule = "=" * (sum(widths) + 2 * (len(widths) - 1))
    out = ([title.center(len(rule)).rstrip()] if title else []) + [rule, line(header),
                                                                 "-" * len(rule)]
    out += [line(list(row)) for row in cells.itertuples(index=False)]
    out.append(rule)
    return "\n".join(out)


class Table:
    """A table for a paper: numbers and their formatted cells, with every export.

    Parameters
    ----------
    numbers : pandas.DataFrame
        The numeric table (exported by :meth:`to_frame` and :meth:`to_csv` at full precision).
    cells : pandas.DataFrame
        The same rows and columns as text (what :meth:`as_text`, :meth:`to_latex`,
        :meth:`to_markdown` and :meth:`to_html` show); the row labels become a first column.
    title : str, optional
    notes : str, optional
        A note printed under the table.
    section_rows : tuple of int
        Positions of rows that open a section (a rule above them in LaTeX).
    """

    def __init__(self, numbers: pd.DataFrame, cells: pd.DataFrame, title: str | None = None,
                 notes: str | None = None, section_rows: tuple = ()) -> None:
        self._numbers = numbers.copy()
        self._cells = cells.copy()
        self.title = title
        self.notes = notes
        self._section_rows = tuple(section_rows)

    def _with_labels(self) -> pd.DataFrame:
        cells = self._cells.copy()
        names = [n for n in cells.index.names]
        label = " ".join(str(n) for n in names if n is not None) or ""
        values = [" ".join(str(x) for x in (i if isinstance(i, tuple) else (i,)) if str(x))
                  for i in cells.index]
        cells.insert(0, label, values)
        return cells.reset_index(drop=True)

    def to_frame(self) -> pd.DataFrame:
        """The numbers (a copy)."""
        return self._numbers.copy()

    @property
    def _numeric(self) -> list[bool]:
        return [False] + [True] * self._cells.shape[1]    # labels left, cells right-aligned

    def as_text(self) -> str:
        text = render_text(self._with_labels(), title=self.title, numeric=self._numeric)
        return text + (f"\n{self.notes}" if self.notes else "")

    def to_latex(self) -> str:
        """A booktabs tabular (``\\usepackage{booktabs}``)."""
        return render_latex(self._with_labels(), section_rows=self._section_rows,
                            numeric=self._numeric)

    def to_markdown(self) -> str:
        return render_markdown(self._with_labels(), numeric=self._numeric)

    def to_html(self) -> str:
        return self._with_labels().to_html(index=False, na_rep="")

    def to_csv(self, path, **kwargs) -> None:
        """Write :meth:`to_frame` (full precision unless ``float_format=`` is given)."""
        self._numbers.to_csv(path, **kwargs)

    def __str__(self) -> str:
        return self.as_text()

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return self.as_text()
