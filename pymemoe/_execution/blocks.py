r"""Every pass over subjects is a reduction over blocks of subjects.

The log-likelihood of a MEMoE is a sum over subjects, and so is every quantity the fit needs:
the E-step's log-likelihood and expert sizes, the M-step's weighted sums, the gating Newton's
gradient and Hessian, the polish's score, the information and the sandwich's meat. Each of them
is computed by a *block function* ``fn(block, cache, *args) -> partial`` on one block of
consecutive subjects (its data and the per-subject cache the previous E-step left for it), and
the partials are summed. One block function serves every scheduler:

* :class:`LocalBlocks` (this module): cache-sized blocks of the in-memory data, run in a loop
  or in ``n_jobs`` threads (numpy releases the interpreter lock in its array work). The
  partials are summed in block order whatever the number of threads, so a fit does not depend
  on ``n_jobs`` (bit for bit); a different block size changes only the order of floating-point
  summation (results agree to rounding).
* ``pymemoe.distributed.DaskBlocks``: the blocks are partitions held by ``dask.distributed``
  workers; the same block functions run there as tasks and only the partials travel.

A *block* is any object with the data interface of :class:`pymemoe.families.gaussian.SubjectData` (or of a
family's row data) restricted to a range of subjects; a *cache* is whatever the last pass left
for the block (:class:`pymemoe._model.likelihood.EStep`: posterior probabilities, random-effect
moments), or None before the first E-step.

**Block size.** Per (subject, expert) pair the Gaussian E-step touches some 40 doubles, so a
block of 4096 subjects and 3 experts keeps its working set (~4 MB) in the 32 MB level-3 cache
of this kind of machine, where the kernels run at cache rather than memory speed; larger blocks
fall out of the cache, smaller ones pay numpy's per-call overhead more often (measured:
:ref:`defaults-measured`; ``benchmarks/bench_scale.py --fit-kwargs block_size=B`` times a
block size B).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["DEFAULT_BLOCK_SUBJECTS", "default_block_size", "block_bounds", "tree_sum",
           "LocalBlocks", "as_blocks"]

# subjects per block for K = 3 experts and q <= 2 random effects; scaled by 3 / K (see above)
DEFAULT_BLOCK_SUBJECTS = 4096


def default_block_size(n_experts: int) -> int:
    """Subjects per block: :data:`DEFAULT_BLOCK_SUBJECTS` for 3 experts, scaled so that a
    block's (subject, expert) pairs stay about the same."""
    return max(256, int(DEFAULT_BLOCK_SUBJECTS * 3 / max(n_experts, 1)))


def as_blocks(data_or_blocks, n_experts: int, n_jobs: int = 1, block_size: int | None = None):
    """``data_or_blocks`` if it already runs passes (has ``map_reduce``: :class:`LocalBlocks`
    or distributed blocks), the blocks of data that run their own passes (``as_blocks()``:
    :class:`pymemoe.distributed.DistributedData`), else in-memory blocks of it."""
    if hasattr(data_or_blocks, "map_reduce"):
        return data_or_blocks
    if hasattr(data_or_blocks, "as_blocks"):
        return data_or_blocks.as_blocks()
    return LocalBlocks(data_or_blocks, block_size=block_size or default_block_size(n_experts),
                       n_jobs=n_jobs)


def block_bounds(n_groups: int, block_size: int) -> list[tuple[int, int]]:
    """Consecutive subject ranges [start, stop) of at most ``block_size`` subjects covering
    ``range(n_groups)``; sizes differ by at most one subject."""
    if n_groups <= 0:
        return []
    n_blocks = max(1, -(-n_groups // max(int(block_size), 1)))
    edges = np.linspace(0, n_groups, n_blocks + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def tree_sum(partials: Sequence[Any]) -> Any:
    """Sum partial results in the given order: numbers, arrays, or tuples/lists/dicts of them
    (summed entry by entry); ``None`` entries are skipped."""
    partials = [p for p in partials if p is not None]
    if not partials:
        return None
    first = partials[0]
    if isinstance(first, tuple):
        return tuple(tree_sum([p[j] for p in partials]) for j in range(len(first)))
    if isinstance(first, list):
        return [tree_sum([p[j] for p in partials]) for j in range(len(first))]
    if isinstance(first, dict):
        return {key: tree_sum([p[key] for p in partials]) for key in first}
    total = first.copy() if isinstance(first, np.ndarray) else first
    for p in partials[1:]:
        total = total + p
    return total


@dataclass(eq=False)
class LocalBlocks:
    """In-memory data split into consecutive blocks of subjects, the passes run in threads.

    Parameters
    ----------
    data : SubjectData or a family's row data
        Anything with ``n_groups`` and ``subject_slice(start, stop)``.
    block_size : int
        Subjects per block.
    n_jobs : int
        Threads for the passes (1: the calling thread).

    Examples
    --------
    >>> import numpy as np
    >>> from pymemoe.families.gaussian import SubjectData
    >>> y = np.arange(6.0); x = np.ones((6, 1)); g = np.repeat([1, 2, 3], 2)
    >>> blocks = LocalBlocks(SubjectData.from_arrays(y, x, x, x, g), block_size=2)
    >>> blocks.n_blocks, float(blocks.reduce(lambda block, cache: block.yy.sum(), [None] * 2))
    (2, 55.0)
    """

    data: Any
    block_size: int = DEFAULT_BLOCK_SUBJECTS
    n_jobs: int = 1

    def __post_init__(self) -> None:
        self.block_size = int(self.block_size)
        self.bounds = block_bounds(self.data.n_groups, self.block_size)
        self.blocks = [self.data.subject_slice(a, b) for a, b in self.bounds]
        self._pool: ThreadPoolExecutor | None = None

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def empty_caches(self) -> list:
        """One cache per block before the first pass."""
        return [None] * self.n_blocks

    @property
    def n_groups(self) -> int:
        return self.data.n_groups

    @property
    def family(self):
        return self.data.family

    def serial(self) -> "LocalBlocks":
        """The same blocks, their passes in the calling thread (for work that already runs in
        parallel threads, such as several starts at once)."""
        if self.n_jobs <= 1:
            return self
        view = LocalBlocks.__new__(LocalBlocks)
        view.__dict__.update(self.__dict__, n_jobs=1, _pool=None)
        return view

    def map(self, fn: Callable, caches: Sequence, *args) -> list:
        """``[fn(block, cache, *args) for each block]``, in ``n_jobs`` threads, in block order."""
        if self.n_jobs <= 1 or self.n_blocks <= 1:
            return [fn(block, cache, *args) for block, cache in zip(self.blocks, caches)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.n_jobs)
        futures = [self._pool.submit(fn, block, cache, *args)
                   for block, cache in zip(self.blocks, caches)]
        return [f.result() for f in futures]

    def reduce(self, fn: Callable, caches: Sequence, *args) -> Any:
        """The sum over blocks of ``fn(block, cache, *args)`` (see :func:`tree_sum`)."""
        return tree_sum(self.map(fn, caches, *args))

    def map_reduce(self, fn: Callable, caches: Sequence, *args) -> tuple[list, Any]:
        """For ``fn(block, cache, *args) -> (new_cache, partial)``: the new caches (they stay
        with their blocks) and the sum of the partials."""
        out = self.map(fn, caches, *args)
        return [cache for cache, _ in out], tree_sum([partial for _, partial in out])

    def gather(self, fn: Callable, caches: Sequence, *args) -> list:
        """``fn(block, cache, *args)`` of every block, brought to the caller, in block order
        (per-subject outputs; :meth:`map` for in-memory blocks)."""
        return self.map(fn, caches, *args)

    def joined(self, caches: Sequence):
        """The caches of all blocks as one object over all subjects (``concatenate`` of the
        caches' class: :meth:`pymemoe._model.likelihood.EStep.concatenate`)."""
        return type(caches[0]).concatenate(list(caches))

    def concatenate(self, values: Sequence[np.ndarray]) -> np.ndarray:
        """Per-block arrays (subjects on the first axis) as one array over all subjects."""
        return values[0] if len(values) == 1 else np.concatenate(values, axis=0)

    def sample(self, n_subjects: int, rng: np.random.Generator):
        """The data of ``n_subjects`` subjects drawn at random without replacement (kept in
        their order), as in-memory data; all of them when ``n_subjects >= n_groups``."""
        if n_subjects >= self.n_groups:
            return self.data
        index = np.sort(rng.choice(self.n_groups, size=n_subjects, replace=False))
        return self.data.take(index)

    def close(self) -> None:
        """Release the threads (also done when the object is garbage collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __getstate__(self) -> dict:      # a thread pool does not pickle; it is rebuilt on use
        state = self.__dict__.copy()
        state["_pool"] = None
        return state

    def __del__(self) -> None:
        pool = self.__dict__.get("_pool")
        if pool is not None:
            pool.shutdown(wait=False)
