"""Every warning pymemoe issues, in one place.

The classes subclass statsmodels' warnings where one applies, so ``warnings.filterwarnings``
rules written for statsmodels (``ConvergenceWarning``, ``HessianInversionWarning``) also catch
pymemoe's. Each warning's message names its remedy; the troubleshooting page of the
documentation lists them all.
"""
from __future__ import annotations

from statsmodels.tools.sm_exceptions import ConvergenceWarning, HessianInversionWarning

__all__ = ["ConvergenceWarning", "HessianInversionWarning", "BoundaryWarning",
           "SeparationWarning", "GLMMNumericalWarning", "BestNotReplicatedWarning"]


class BoundaryWarning(ConvergenceWarning):
    """A variance parameter or an expert size is at (or near) the boundary of the parameter space."""


class SeparationWarning(ConvergenceWarning):
    """The gating covariates separate the experts (near) perfectly, or (binomial and Poisson
    experts) an expert's fixed effects fit some of its rows perfectly."""


class GLMMNumericalWarning(RuntimeWarning):
    """A GLMM log-density or gradient is not finite (overflow of the data or the parameters),
    or Newton's method for the random-effect modes did not converge for some subjects."""


class BestNotReplicatedWarning(ConvergenceWarning):
    """The best log-likelihood was reached by a single start (within 0.01): nothing shows it is
    the global maximum (Mplus: "the best loglikelihood value was not replicated"). Refit with
    more starts (``fit(n_starts=...)``) and read ``res.starts``."""
