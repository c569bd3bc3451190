"""Data sets shipped with pymemoe.

Each loader returns a fresh :class:`pandas.DataFrame`; the description of each data set (source,
licence, column meanings) lies beside its CSV file as Markdown and is exposed through
:func:`describe`.
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load_pbcseq", "describe"]


def load_pbcseq() -> pd.DataFrame:
    """Mayo Clinic primary biliary cholangitis trial, repeated laboratory measurements.

    312 patients, 1945 visits, long format (one row per visit). Taken from the R package
    ``survival`` (``pbcseq``, LGPL >= 2); see ``describe("pbcseq")`` for the source, the licence
    and the meaning of each column. ``trt`` is coded 1 = D-penicillamine, 0 = placebo.

    Returns
    -------
    pandas.DataFrame
        Columns ``id, futime, status, trt, age, sex, day, ascites, hepato, spiders, edema, bili,
        chol, albumin, alk.phos, ast, platelet, protime, stage``.

    Examples
    --------
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq()
    >>> df.shape
    (1945, 19)
    >>> int(df["id"].nunique())
    312
    """
    with resources.files(__package__).joinpath("pbcseq.csv").open("r") as fh:
        return pd.read_csv(fh)


def describe(name: str = "pbcseq") -> str:
    """Return the Markdown description (source, licence, columns) of a shipped data set."""
    path = resources.files(__package__).joinpath(f"{name}.md")
    if not path.is_file():
        raise ValueError(f"no data set called {name!r}; available: 'pbcseq'")
    return path.read_text()
