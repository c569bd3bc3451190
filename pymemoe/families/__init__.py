"""Expert families: what an expert is, behind one contract (:mod:`pymemoe.families.base`).

* :class:`GaussianFamily` (``family="gaussian"``): linear mixed models, fitted on per-subject
  sufficient statistics (:class:`SubjectData`);
* :class:`GLMMFamily` (``family="binomial"``, ``"poisson"``): generalised linear mixed
  models, integrated by Laplace or adaptive Gauss-Hermite quadrature; the law of a row is a
  :class:`Distribution` (:class:`Binomial`, :class:`Poisson`, or one of your own, with its
  :class:`Link`).

:func:`get_family` turns what a user writes (``family="gaussian"``, a statsmodels family
instance, a family object) into the family object the fit uses. A new kind of outcome model is
added by writing a family to the contract (or a :class:`Distribution` for a GLMM expert with
another link) and passing the object as ``family=``; nothing outside this subpackage changes.
"""
from __future__ import annotations

from .._model.scales import DataSummary
from .base import ExpertFamily, ExpertGradients
from .distributions import Binomial, Distribution, Poisson
from .gaussian import GAUSSIAN, GaussianFamily, SubjectData
from .glmm import GLMMFamily
from .links import Identity, Link, Log, Logit

__all__ = ["ExpertFamily", "ExpertGradients", "GaussianFamily", "GAUSSIAN", "SubjectData",
           "GLMMFamily", "Distribution", "Binomial", "Poisson", "Link", "Identity", "Logit",
           "Log", "get_family", "DataSummary"]

CANONICAL_LINKS = {"gaussian": "identity", "binomial": "logit", "poisson": "log"}


def get_family(family, n_agq: int = 1) -> ExpertFamily:
    """The family object for ``family``: a name (``"gaussian"``, ``"binomial"``,
    ``"poisson"``), a statsmodels family instance with its canonical link
    (``statsmodels.api.families.Binomial()``) or an :class:`ExpertFamily` (returned as is).
    ``n_agq`` is the quadrature of the GLMM families (1: Laplace).

    Examples
    --------
    >>> get_family("gaussian").name
    'gaussian'
    >>> import statsmodels.api as sm
    >>> get_family(sm.families.Poisson(), n_agq=7)
    GLMMFamily('poisson', n_agq=7)
    """
    if isinstance(family, ExpertFamily):
        return family
    name = family
    if not isinstance(family, str):
        name = type(family).__name__.lower()      # statsmodels' families: Binomial(), ...
        link = getattr(family, "link", None)
        link_name = type(link).__name__.lower() if link is not None else None
        if name in CANONICAL_LINKS and link_name not in (None, CANONICAL_LINKS[name]):
            raise ValueError(f"family: only the canonical link is supported ({name}: "
                             f"{CANONICAL_LINKS[name]}), got {type(link).__name__}")
    if name not in CANONICAL_LINKS:
        raise ValueError(f"family must be 'gaussian', 'binomial', 'poisson', a statsmodels "
                         f"Gaussian, Binomial or Poisson family instance or an ExpertFamily "
                         f"object; got {family!r}")
    if name == "gaussian":
        if n_agq != 1:
            raise ValueError("nAGQ is for binomial and Poisson experts (Gaussian experts are "
                             "integrated exactly)")
        return GAUSSIAN
    return GLMMFamily(name, n_agq=n_agq)
