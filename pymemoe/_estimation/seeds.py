"""``random_state`` normalised once: every random draw of a fit, of a bootstrap draw and of a
cross-validation fold comes from children of one :class:`numpy.random.SeedSequence`."""
from __future__ import annotations

import numpy as np

__all__ = ["as_seed_sequence"]


def as_seed_sequence(random_state) -> np.random.SeedSequence:
    """Normalise ``random_state`` (None, int, Generator or SeedSequence) once, to a SeedSequence."""
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(random_state.integers(2 ** 63))
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.SeedSequence(random_state)
    raise ValueError(f"random_state must be None, an int, a numpy Generator or SeedSequence; got {random_state!r}")
