"""What one fit needs, in two objects with distinct jobs.

* :class:`EMOptions`: the controls the user chose (``MEMoE.fit``'s keywords), frozen; kept by
  the results (``res.fit_options``) so that a refit on other data repeats them.
* :class:`FitContext`: what every pass of one fit reads: the blocks of all subjects, the
  blocks the starts run on, the model's :class:`~pymemoe._model.params.Structure`, the options
  and the :class:`~pymemoe._model.scales.DataSummary` of the data. It lives for one fit.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .._execution.blocks import LocalBlocks, as_blocks
from .._model.params import Structure
from .._model.scales import DataSummary

__all__ = ["EMOptions", "FitContext"]


@dataclass(frozen=True)
class EMOptions:
    """The controls the user chose for a fit (the keywords of :meth:`pymemoe.MEMoE.fit`),
    frozen and kept by the results so that a refit repeats them."""

    n_starts: int = 10
    maxiter: int = 1000
    tol: float = 1e-8
    polish: bool = True
    gtol: float = 1e-8
    gtol_check: float = 1e-3
    min_size: float = 1.0
    n_jobs: int = 1
    screen_iter: int | None = None
    n_finish: int = 3
    progress: bool = False
    block_size: int | None = None
    starts: str = "auto"
    sample_subjects: int | None = None


@dataclass(eq=False)
class FitContext:
    """What every pass of one fit needs: the blocks of all subjects (in memory,
    :class:`pymemoe._execution.blocks.LocalBlocks`, or distributed), the in-memory blocks the starts run
    on (the same blocks, or a random subsample of subjects when the data are large or
    distributed), the structure, the options and the data summary."""

    blocks: object
    start_blocks: LocalBlocks
    structure: Structure
    options: EMOptions
    summary: DataSummary

    @property
    def family(self):
        return self.blocks.family

    @classmethod
    def build(cls, data_or_blocks, structure: Structure, options: EMOptions) -> "FitContext":
        blocks = as_blocks(data_or_blocks, structure.n_experts, options.n_jobs, options.block_size)
        start_blocks = blocks if isinstance(blocks, LocalBlocks) else as_blocks(
            blocks.sample(blocks.n_groups, np.random.default_rng(0)), structure.n_experts,
            options.n_jobs, options.block_size)
        return cls(blocks=blocks, start_blocks=start_blocks, structure=structure,
                   options=options, summary=blocks.family.summary(blocks))

    def with_structure(self, structure: Structure) -> "FitContext":
        return dataclasses.replace(self, structure=structure)
