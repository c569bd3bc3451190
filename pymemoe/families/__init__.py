"""Expert families: what an expert is (Gaussian linear mixed models; binomial and Poisson
generalised linear mixed models), behind one interface (:mod:`pymemoe.families.base`).

:func:`get_family` turns what a user writes (``family="gaussian"``, a statsmodels family
instance) into the family object the fit uses.
"""
from __future__ import annotations

from .base import DataSummary, ExpertFamily, ExpertGradients
from .gaussian import GAUSSIAN, GaussianFamily

__all__ = ["ExpertFamily", "DataSummary", "ExpertGradients", "GaussianFamily", "GAUSSIAN",
           "get_family"]


def get_family(family) -> ExpertFamily:
    """The family object for ``family``: a name (``"gaussian"``), a statsmodels family instance
    (``statsmodels.api.families.Gaussian()``) or an :class:`ExpertFamily` (returned as is).

    Examples
    --------
    >>> get_family("gaussian").name
    'gaussian'
    """
    if isinstance(family, ExpertFamily):
        return family
    name = family
    if not isinstance(family, str):
        name = type(family).__name__.lower()      # statsmodels' families: Gaussian(), ...
        link = getattr(family, "link", None)
        if name == "gaussian" and link is not None and type(link).__name__.lower() != "identity":
            raise ValueError(f"family: only the identity link is supported for Gaussian experts, "
                             f"got {type(link).__name__}")
    if name == "gaussian":
        return GAUSSIAN
    raise ValueError(f"family must be 'gaussian' or a statsmodels Gaussian family instance; "
                     f"got {family!r}")
