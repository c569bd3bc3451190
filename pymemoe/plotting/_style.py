"""What every pymemoe figure shares: the optional matplotlib import, new axes, the colour of
each expert and readable axis labels. matplotlib is imported inside the functions, so importing
pymemoe never imports it."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib stays optional at run time
    from matplotlib.axes import Axes

__all__ = ["import_pyplot", "new_axes", "expert_colour", "outcome_label", "response_label"]


def import_pyplot():
    """Import and return ``matplotlib.pyplot``, or raise an ImportError that names the remedy."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "pymemoe's plotting functions need matplotlib, which is not installed; "
            "install it with: pip install pymemoe[plot]"
        ) from err
    return plt


def new_axes(ax: "Axes | None", figsize: tuple[float, float] = (7.0, 4.5)) -> "Axes":
    """``ax``, or the Axes of a new figure."""
    plt = import_pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def expert_colour(k: int) -> str:
    """matplotlib colour of expert ``k`` (1-based) in every pymemoe plot: ``"C{k-1}"``."""
    return f"C{(int(k) - 1) % 10}"


def outcome_label(name: str) -> str:
    """An axis label for the outcome of a formula: ``"np.log(bili)"`` reads ``"log(bili)"``.

    >>> outcome_label("np.log(bili)"), outcome_label("numpy.sqrt(x)"), outcome_label("y")
    ('log(bili)', 'sqrt(x)', 'y')
    """
    return re.sub(r"\b(?:np|numpy)\.", "", str(name))


def response_label(model) -> str:
    """The y-axis label of predicted means: the outcome, or (as the family words it) its
    probability, proportion or expected count."""
    name = outcome_label(model.spec.endog_name if model.spec is not None else model.endog_name)
    return model.family.response_label(name, getattr(model, "trials", None) is not None)
