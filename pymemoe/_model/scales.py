"""Scalars of the whole data that the fit's tolerances and boundary rules use.

A family computes them in one reduction over the blocks
(:meth:`pymemoe.families.base.ExpertFamily.summary`); the EM driver, the boundary rules
(:mod:`pymemoe._model.boundary`) and the polish read them. They depend on the data only, not
on the parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DataSummary"]


@dataclass(frozen=True)
class DataSummary:
    """Scalars of the whole data that the fit's tolerances and boundary rules use.

    Attributes
    ----------
    n_groups, nobs : int
        Subjects and observations (rows).
    outcome_scale : float
        A typical squared size of the outcome (Gaussian: mean of y^2), the unit of the residual
        variance's floor; 1 for families without a residual variance.
    z_scale : ndarray (q,)
        Mean of each random-effect column's square over the rows: a random-effect variance d
        is "about 0" when d * z_scale is negligible against the family's ``re_scale``.
    """

    n_groups: int
    nobs: int
    outcome_scale: float
    z_scale: np.ndarray

    @property
    def scale_floor(self) -> float:
        """Lower bound of a residual variance (1e-10 of the outcome's scale)."""
        return 1e-10 * self.outcome_scale + 1e-300

    @property
    def scale_boundary(self) -> float:
        """A residual variance at or below this is reported at the boundary."""
        return 1e-8 * self.outcome_scale
