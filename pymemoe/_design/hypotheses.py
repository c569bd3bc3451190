"""Linear hypotheses written with parameter names, turned into R theta = q (by patsy's
``DesignInfo.linear_constraint``): what ``t_test`` and ``wald_test`` of the results read."""
from __future__ import annotations

import re

import numpy as np
import patsy

__all__ = ["linear_constraint"]


_OPERATOR_TEXT = set("0123456789.+-*/()=, eE\t\n")


def linear_constraint(names: list[str], hypothesis: str | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """R and q of the linear hypotheses R theta = q written with parameter names.

    Each hypothesis is a linear equation in the names, e.g. ``"beta[1]:year = beta[2]:year"``,
    ``"2 * gate[2]:age - gate[3]:age = 0"`` or ``"beta[1]:I(year**2)"`` (meaning ``= 0``);
    several are given as a list or separated by commas. Names may be written as in the formula:
    spaces are ignored when they are matched (patsy writes ``I(year ** 2)``).

    Raises
    ------
    ValueError
        Naming the unknown name and listing the valid ones, or naming the hypothesis that is
        not a linear equation.

    Examples
    --------
    >>> names = ["beta[1]:Intercept", "beta[1]:I(year ** 2)", "beta[2]:I(year ** 2)"]
    >>> R, q = linear_constraint(names, "beta[1]:I(year**2) = beta[2]:I(year**2)")
    >>> R.tolist(), q.tolist()
    ([[0.0, 1.0, -1.0]], [0.0])
    """
    texts = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("a hypothesis is a string or a list of strings, e.g. "
                         "'beta[1]:year = beta[2]:year'")
    squeezed = ["".join(str(n).split()) for n in names]
    if len(set(squeezed)) != len(squeezed):
        raise ValueError("parameter names are not unique once spaces are removed")
    placeholder = {name: f"p{j}" for j, name in enumerate(squeezed)}
    # a name counts only between operators, so "beta[1]:year2" is not "beta[1]:year" + "2";
    # longest first, so "beta[1]:year:age" is not read as "beta[1]:year"
    alternatives = "|".join(re.escape(n) for n in sorted(squeezed, key=len, reverse=True))
    pattern = re.compile(rf"(?<![^=,+\-*/(])({alternatives})(?=$|[=,+\-*/)])")
    rewritten = []
    for text in texts:
        compact = "".join(text.split())
        parts = pattern.split(compact)
        for part in parts[::2]:                   # the text between the names
            if set(part) <= _OPERATOR_TEXT:
                continue
            bad = next(t for t in re.split(r"[=,+\-*/]", part)
                       if not set(t) <= _OPERATOR_TEXT).strip("()")
            raise ValueError(f"unknown parameter name {bad!r} in hypothesis {text!r}; valid "
                             f"names are {', '.join(map(str, names))}")
        rewritten.append("".join(f" {placeholder[part]} " if j % 2 else part
                                 for j, part in enumerate(parts)))
    info = patsy.DesignInfo(list(placeholder.values()))
    try:
        constraint = info.linear_constraint(rewritten)
    except patsy.PatsyError as err:
        raise ValueError(f"hypothesis {hypothesis!r} is not a linear equation in the parameter "
                         f"names ({str(err).splitlines()[0]})") from None
    # + 0.0 turns patsy's -0.0 constants into 0.0
    return (np.asarray(constraint.coefs, dtype=float) + 0.0,
            np.asarray(constraint.constants, dtype=float)[:, 0] + 0.0)
