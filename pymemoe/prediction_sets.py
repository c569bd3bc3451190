"""The former home of the prediction sets, kept so that code written for it still runs.

``prediction_set`` and ``coverage`` are in :mod:`pymemoe.prediction`; the computation of the
sets in :mod:`pymemoe._predictive.sets` (internal).
"""
from ._predictive.sets import SET_METHODS, check_alpha, covered_rows, set_arrays
from .prediction import coverage, prediction_set

__all__ = ["prediction_set", "coverage", "set_arrays", "covered_rows", "check_alpha",
           "SET_METHODS"]
