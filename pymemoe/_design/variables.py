"""Which data columns, and which names of the caller's namespace, a formula reads.

patsy keeps the Python code of every factor (``"np.log(bili)"``, ``"C(sex)"``); walking that
code with :mod:`ast` gives its bare names and the arguments of ``Q("...")``. A name that is a
column of the data is read from the data (patsy looks there first), any other from the
namespace the formulas were evaluated in. These answers serve the missing-value filter (rows
with a missing value in a used column are dropped before patsy evaluates anything), the
stored analysis sample of a spec and its pickling, and the questions of
:mod:`pymemoe._design.questions`.
"""
from __future__ import annotations

import ast

import numpy as np
import pandas as pd
import patsy

__all__ = ["factor_codes", "code_names", "data_columns", "namespace_names",
           "data_columns_of_code", "missing_in_used_columns"]


def factor_codes(info) -> list[str]:
    """The Python code of each factor of a DesignInfo, e.g. ``"np.log(bili)"``, ``"C(sex)"``."""
    if info is None:
        return []
    return [getattr(factor, "code", str(factor)) for factor in info.factor_infos]


def code_names(code: str) -> tuple[list[str], list[str]]:
    """Bare names of an expression and the string arguments of ``Q("...")`` calls."""
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError:
        return [], []
    names, quoted = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.append(node.id)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Q"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            quoted.append(node.args[0].value)
    return list(dict.fromkeys(names)), list(dict.fromkeys(quoted))


def data_columns(info, columns) -> list[str]:
    """Columns of the data that a DesignInfo's factors read, in order of appearance (names in
    the code that are data columns, patsy's lookup order: the data come first, then the
    caller's namespace; and ``Q("...")`` arguments)."""
    found: list[str] = []
    for code in factor_codes(info):
        names, quoted = code_names(code)
        found += [n for n in names + quoted if n in columns]
    return list(dict.fromkeys(found))


def namespace_names(infos, columns) -> list[str]:
    """Bare names of the factors' code that are not data columns (looked up in the caller's
    namespace, then in patsy's builtins)."""
    found: list[str] = []
    for info in infos:
        for code in factor_codes(info):
            found += [n for n in code_names(code)[0] if n not in columns]
    return list(dict.fromkeys(found))


def missing_in_used_columns(formulas: list[str], data: pd.DataFrame) -> np.ndarray:
    """Rows with a missing value (NaN, None, NaT, pd.NA) in a data column that a formula reads
    (a formula patsy cannot parse reads none here; patsy reports it when building)."""
    columns = {c for c in data.columns if isinstance(c, str)}
    used: list[str] = []
    for text in formulas:
        try:
            desc = patsy.ModelDesc.from_formula(text)
        except patsy.PatsyError:
            continue
        for term in desc.lhs_termlist + desc.rhs_termlist:
            for factor in term.factors:
                names, quoted = code_names(getattr(factor, "code", ""))
                used += [n for n in names + quoted if n in columns]
    used = list(dict.fromkeys(used))
    if not used:
        return np.zeros(len(data), dtype=bool)
    return data[used].isna().any(axis=1).to_numpy()


def data_columns_of_code(code: str, columns: set) -> list[str]:
    names, quoted = code_names(code)
    return [n for n in dict.fromkeys(names + quoted) if n in columns]
