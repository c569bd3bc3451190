"""The former home of :class:`~pymemoe.prediction.PredictionResults`, kept so that code written
for it still runs; new code should import it from :mod:`pymemoe.prediction`."""
from .prediction import PredictionResults

__all__ = ["PredictionResults"]
