r"""Blocks of subjects held by ``dask.distributed`` workers: the fit beyond one machine.

Two objects with two jobs:

* :class:`DaskBlocks`, the *executor*: partitions of whole subjects held by the workers, and
  the passes over them. It implements the contract of :mod:`pymemoe._execution.blocks` (the
  one the EM driver, the gating Newton, the polish and the inference use) on a
  ``distributed.Client``.
* :class:`DistributedData`, the *data* of a model whose subjects stay on the workers
  (``model.data`` of a model built by :func:`pymemoe.chunked.from_dask` under a client, or by
  :meth:`pymemoe.MEMoE.from_subject_data` with it): it answers what the results ask of the
  data (``n_groups``, ``nobs``, ``subjects``, ``family``, ``k_fe``, ``k_re``, ``k_gate``), and
  hands out a per-subject array only when asked by name (:meth:`DistributedData.array`, a
  :class:`DistributedArray` that stays on the workers). Its passes run through its executor
  (:meth:`DistributedData.as_blocks`).

Layout
------
The per-subject data are cut into P *partitions* of whole subjects, each one in-memory data
object (:class:`pymemoe.families.gaussian.SubjectData` for Gaussian experts) held by one worker as a Dask
future, computed ("persisted") once. Partition p holds the subjects at global positions
``offsets[p] <= i < offsets[p + 1]``; when the subject labels can be ordered, the partitions
are ranges of sorted labels, so the global order is the sorted order of an in-memory model and
every per-subject output lines up with it.

Subjects that span input partitions (a Dask DataFrame cut anywhere) are brought together by a
shuffle (:meth:`DaskBlocks.from_partials`): every input partition is first reduced to per-subject
partial sums on its worker; a sample of at most 2,000 labels of each goes to the driver, which
picks P - 1 boundaries at the quantiles of the pooled sample (labels that cannot be ordered
are hashed instead); every partial is then split by boundary and output partition p sums the
pieces of its subjects. Only per-subject partials travel in the shuffle, never rows, and the
driver receives only the label samples.

One pass
--------
A pass of the EM, of the gating Newton, of the polish or of the inference is one call
``fn(block, cache, *args)`` per *sub-block* of cache-sized consecutive subjects and the sum of
the partial results (:func:`pymemoe._execution.blocks.tree_sum`). On the cluster one pass is::

    driver  -> worker p : fn (by reference; a closure by value) and args (the parameters, and
                          for the inference the structure and the difference steps), with the
                          keys of partition p's data and cache
    worker p            : LocalBlocks(partition_p, block_size).map_reduce(fn, caches_p, *args);
                          the new caches_p stay there (a future)
    worker p -> driver  : the partial sum of partition p (llf, expert sizes, the family's
                          M-step sums, a gradient, a Hessian, ...), fetched by a second, tiny
                          task (a task has one result, and the caches must not travel)
    driver              : tree_sum of the P partials in partition order

so the result does not depend on which worker ran which task, nor when: a distributed fit
equals an in-memory fit up to the order of floating-point summation (rounding). The payload,
whatever the number of subjects, for K = 3 experts, two fixed and two random effects and three
gating covariates (24 parameters), in bytes out / back per partition: E-step 520 / 337, variance
sums 556 / 341, a gating Newton trial 232 / 483, a polish evaluation 530 / 428, the standard
errors' two passes 720 / 9,662 and 1,144 / 3,576 (:attr:`DaskBlocks.traffic` counts them; the
scheduler adds its own messages, a few hundred bytes per task).

Gathered to the driver, and when
--------------------------------
* ``sample(n, rng)`` (the EM starts): the data of n random subjects, at most ``sample_limit``
  (default :data:`DEFAULT_SAMPLE_LIMIT`), however many the caller asks;
* ``gather(fn, ...)``: the per-sub-block outputs of ``fn`` (the EM driver asks only for one
  number per sub-block: the gating's largest logit spread; for families that can separate,
  binomial and Poisson, also two numbers per expert:
  :meth:`pymemoe.families.base.ExpertFamily.extreme_fits`);
* on first use, and then kept: the subject labels (``subjects``), and the arrays of the final
  E-step of a fit (:class:`DistributedEStep`: ``tau``, ``log_prior``, ``llf_obs``,
  ``moments.b_hat``) that ``results.posterior``, ``prior``, ``random_effects``, ``entropy``,
  ``icl``, ``summary()`` read. :meth:`DistributedEStep.to_dask` and
  :meth:`DistributedEStep.posterior_frame` give them as Dask objects instead, computed on the
  workers when asked.

Memory per worker
-----------------
The data of its partitions (Gaussian experts with p fixed and q random effects and r gating
columns: 1 + p^2 + pq + q^2 + p + q + 1 + r doubles and a label per subject, 176 bytes for
p = q = 2, r = 3) and the caches of the passes in flight: an E-step keeps 5 + 2q + q^2 doubles
per subject and expert (posterior, log prior, log density, log|M|, r'r, b_hat, Z'r, M^-1) and
one per subject, 320 bytes for K = 3, q = 2; the EM driver holds up to three sets of caches at
once (during the polish). With the work arrays of a sub-block and the allocator's slack, a
worker measured 1.3 kB per subject at 5 million subjects (``benchmarks/bench_distributed.py``).
"""
from __future__ import annotations

import dataclasses
import pickle
import time
import uuid
import warnings
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ._execution.blocks import DEFAULT_BLOCK_SUBJECTS, LocalBlocks, tree_sum
from ._model.likelihood import EStep, e_step
from .families.gaussian import SubjectData

__all__ = ["DEFAULT_SAMPLE_LIMIT", "LABEL_SAMPLE", "active_client", "concatenate_subjects",
           "DaskBlocks", "DistributedData", "DistributedArray", "DistributedEStep", "Traffic"]

# The most subjects sample() brings to the driver: the EM starts run there, on this many
# subjects at most (about 17 MB of Gaussian statistics; the starts' E-steps some 50 MB more).
DEFAULT_SAMPLE_LIMIT = 100_000
# Labels each input partition sends to the driver to place the partition boundaries.
LABEL_SAMPLE = 2_000


# ---------------------------------------------------------------------------------------------
# What runs on the workers (module level, so that tasks pickle them by reference)


@dataclasses.dataclass(eq=False)
class _Held:
    """What a map_reduce task leaves on its worker: the new caches of the partition's
    sub-blocks and their summed partial (fetched by a second, tiny task)."""

    caches: list
    partial: Any


@dataclasses.dataclass(eq=False)
class _Kept:
    """The per-subject arrays of a partition's final E-step that the results read."""

    llf: float
    llf_obs: np.ndarray
    tau: np.ndarray
    log_prior: np.ndarray
    b_hat: np.ndarray


def _pass_task(kind: str, data, held: _Held | None, fn: Callable, args: tuple,
               block_size: int):
    """One pass over one partition, in cache-sized sub-blocks (one thread: the cluster's
    threads run the partitions side by side)."""
    local = LocalBlocks(data, block_size=block_size)
    caches = local.empty_caches() if held is None else held.caches
    if kind == "map_reduce":
        return _Held(*local.map_reduce(fn, caches, *args))
    if kind == "reduce":
        return local.reduce(fn, caches, *args)
    return local.gather(fn, caches, *args)


def _partial_of(held: _Held) -> Any:
    return held.partial


def _keep(held: _Held) -> _Kept:
    caches = held.caches
    if not caches:
        empty = np.empty((0, 0))
        return _Kept(llf=0.0, llf_obs=np.empty(0), tau=empty, log_prior=empty,
                     b_hat=np.empty((0, 0, 0)))
    joined = {name: np.concatenate([getattr(s, name) for s in caches])
              for name in ("llf_obs", "tau", "log_prior")}
    b_hat = np.concatenate([np.asarray(s.moments.b_hat) for s in caches])
    return _Kept(llf=float(sum(s.llf for s in caches)), b_hat=b_hat, **joined)


def _kept_info(kept: _Kept) -> tuple[float, tuple, tuple]:
    return kept.llf, kept.tau.shape[1:], kept.b_hat.shape[1:]


def _attribute(obj, name: str):
    return getattr(obj, name)


def _frame(kept: _Kept, data, name: str) -> pd.DataFrame:
    values = getattr(kept, name)
    columns = pd.Index(range(1, values.shape[1] + 1), name="expert")
    return pd.DataFrame(values, index=data.subjects, columns=columns)


def _take(data, index: np.ndarray):
    return data.take(index)


def _field_sum(block, cache, name: str) -> np.ndarray:
    return np.asarray(getattr(block, name)).sum(axis=0)


def _describe(data) -> dict | None:
    """Sizes of one partition and the shapes of its per-subject arrays (None: no subjects)."""
    if data is None or data.n_groups == 0:
        return None
    n = data.n_groups
    arrays = {name: (value.shape[1:], value.dtype) for name, value in vars(data).items()
              if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == n}
    dims = {name: getattr(data, name) for name in ("k_fe", "k_re", "k_gate") if hasattr(data, name)}
    return dict(n_groups=n, nobs=int(data.nobs), arrays=arrays, dims=dims, family=data.family)


def _labels_of(partial) -> np.ndarray:
    return np.asarray(partial.labels)


def _label_sample(partial, size: int, seed: int) -> np.ndarray:
    """Up to ``size`` distinct labels of a partial, drawn at random (boundary placement)."""
    if partial is None:
        return np.empty(0, dtype=object)
    labels = pd.unique(_labels_of(partial))
    if len(labels) > size:
        labels = labels[np.random.default_rng(seed).choice(len(labels), size, replace=False)]
    return np.asarray(labels)


def _destinations(labels: np.ndarray, boundaries: np.ndarray | None, n_out: int) -> np.ndarray:
    """Output partition of each label: its range among the sorted ``boundaries``, or a hash of
    the label when the labels cannot be ordered (``boundaries`` None)."""
    if boundaries is None:
        hashed = pd.util.hash_array(np.asarray(labels, dtype=object))
        return (hashed % np.uint64(n_out)).astype(np.intp)
    if len(boundaries) == 0:
        return np.zeros(len(labels), dtype=np.intp)
    try:
        return np.searchsorted(boundaries, labels, side="right")
    except TypeError as err:
        raise ValueError(f"the subject labels mix types that cannot be ordered ({err}); use one "
                         f"type for the subject column (e.g. all strings)") from None


def _split(partial, boundaries: np.ndarray | None, n_out: int) -> list:
    """The pieces of a partial bound for each output partition (None where there are none)."""
    if partial is None:
        return [None] * n_out
    where = _destinations(_labels_of(partial), boundaries, n_out)
    return [partial.subset(np.flatnonzero(where == j)) if np.any(where == j) else None
            for j in range(n_out)]


def _build(build: Callable, build_args: tuple, *pieces):
    """Output partition from its pieces (each subject's pieces all arrive here)."""
    present = [p for p in pieces if p is not None]
    return build(present, *build_args) if present else None


def _nbytes(obj, depth: int = 0) -> int:
    """Bytes of the arrays an object holds (dataclasses, lists, tuples, dicts, arrays, pandas
    indexes), for the workers' memory accounting."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, pd.Index):
        return int(obj.memory_usage(deep=False))
    if depth > 4:
        return 64
    if isinstance(obj, (list, tuple)):
        return 64 + sum(_nbytes(item, depth + 1) for item in obj)
    if isinstance(obj, dict):
        return 64 + sum(_nbytes(item, depth + 1) for item in obj.values())
    if hasattr(obj, "__dict__"):
        return 64 + sum(_nbytes(item, depth + 1) for item in vars(obj).values())
    return 64


def _register_sizeof() -> None:
    """Tell Dask the real size of what pymemoe keeps on workers (it would count a dataclass as
    a few dozen bytes and so never spill it, nor weigh it when placing tasks)."""
    try:
        from dask.sizeof import sizeof
    except ImportError:                         # dask is optional; without it nothing to tell
        return
    for cls in (_Held, _Kept, SubjectData, EStep):
        sizeof.register(cls)(_nbytes)


_register_sizeof()


# ---------------------------------------------------------------------------------------------
# The driver's side


def active_client(client=None):
    """``client`` if given, else the active ``distributed.Client`` of this process, else None
    (also when ``distributed`` is not installed)."""
    if client is not None:
        return client
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:                          # no client has been started
        return None


def concatenate_subjects(parts: Sequence):
    """In-memory data of consecutive groups of subjects as one object (subjects in order).

    Uses the data class's ``concatenate`` classmethod when it has one; otherwise joins the
    fields of the dataclass: arrays with a row per subject along their first axis, pandas
    indexes (the labels) by ``append``, empty arrays (``row_codes``: rows are not kept) empty.

    Examples
    --------
    >>> import numpy as np
    >>> from pymemoe.families.gaussian import SubjectData
    >>> y = np.arange(6.0); x = np.ones((6, 1)); g = np.repeat([1, 2, 3], 2)
    >>> data = SubjectData.from_arrays(y, x, x, x, g)
    >>> whole = concatenate_subjects([data.subject_slice(0, 1), data.subject_slice(1, 3)])
    >>> whole.subjects.tolist(), whole.yy.tolist()
    ([1, 2, 3], [1.0, 13.0, 41.0])
    """
    parts = [p for p in parts if p is not None]
    if not parts:
        raise ValueError("no data to concatenate")
    if len(parts) == 1:
        return parts[0]
    cls = type(parts[0])
    if hasattr(cls, "concatenate"):
        return cls.concatenate(list(parts))
    joined = {}
    for field in dataclasses.fields(cls):
        values = [getattr(p, field.name) for p in parts]
        first = values[0]
        if isinstance(first, pd.Index):
            joined[field.name] = first.append(values[1:])
        elif isinstance(first, np.ndarray) and all(v.shape[:1] == (0,) for v in values):
            joined[field.name] = first
        elif isinstance(first, np.ndarray) and all(
                v.ndim and v.shape[0] == p.n_groups for v, p in zip(values, parts)):
            joined[field.name] = np.concatenate(values, axis=0)
        else:
            raise ValueError(f"cannot concatenate the field {field.name!r} of {cls.__name__}: "
                             f"it is neither per subject nor empty")
    return cls(**joined)


@dataclasses.dataclass
class Traffic:
    """What travelled between the driver and the workers (payload bytes as pickled, the way
    ``distributed`` sends them; the scheduler's own messages are not counted).

    Attributes
    ----------
    passes : int
        Passes over all partitions (map_reduce, reduce, gather and the lazy per-subject gathers).
    tasks : int
        Tasks submitted (one per partition and pass; a map_reduce adds one per partition to
        fetch the partial).
    bytes_out : int
        Bytes of the functions and arguments sent to the workers.
    bytes_in : int
        Bytes of the results received from the workers.
    largest_in : int
        The largest single result received.
    wait_s : float
        Seconds the driver waited for results (the workers' share of the wall time, with the
        scheduling and the transfers).
    """

    passes: int = 0
    tasks: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    largest_in: int = 0
    wait_s: float = 0.0

    def reset(self) -> None:
        """Set every counter back to 0."""
        self.passes = self.tasks = self.bytes_out = self.bytes_in = self.largest_in = 0
        self.wait_s = 0.0


def _pickled_size(obj) -> int:
    """Bytes of ``obj`` as pickle protocol 5 with out-of-band buffers (arrays not copied)."""
    buffers: list = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return len(head) + sum(memoryview(b).nbytes for b in buffers)


def _function_size(fn: Callable, args: tuple) -> int:
    try:
        import cloudpickle
        return len(cloudpickle.dumps((fn, args)))
    except Exception:                           # an argument cloudpickle cannot measure
        return 0


class DaskBlocks:
    """Partitions of whole subjects held by ``dask.distributed`` workers; passes as tasks there.

    Build it with :meth:`from_partials` (what :func:`pymemoe.chunked.from_dask` does) or
    :meth:`from_subject_data` (in-memory data spread over the workers). See the module
    docstring for what travels per pass and what is gathered when.

    Parameters
    ----------
    client : distributed.Client
    parts : list of distributed.Future
        One future per partition, each in-memory data of whole subjects (e.g.
        :class:`pymemoe.families.gaussian.SubjectData`), in the global order of the subjects.
    block_size : int, optional
        Subjects per sub-block inside a partition (default
        :data:`pymemoe._execution.blocks.DEFAULT_BLOCK_SUBJECTS`; cache-sized).
    sample_limit : int or None
        The most subjects :meth:`sample` brings to the driver (None: as many as asked).

    Attributes
    ----------
    traffic : Traffic
        Counters of what travelled between the driver and the workers.

    Examples
    --------
    >>> import pytest; distributed = pytest.importorskip("distributed")
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq().assign(year=lambda d: d["day"] / 365.25)
    >>> model = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                            n_experts=1)
    >>> with distributed.Client(processes=False, n_workers=1, dashboard_address=None) as client:
    ...     blocks = DaskBlocks.from_subject_data(client, model.data, npartitions=3)
    ...     print(blocks.npartitions, blocks.n_groups, blocks.nobs, blocks.partition_sizes)
    ...     print(blocks.array("xx").sum(axis=0).round(1))       # summed on the workers
    3 312 1945 [104 104 104]
    [[ 1945.   6099.1]
     [ 6099.1 37744.3]]

    ``MEMoE.from_subject_data(DistributedData(blocks), model.structure).fit()`` then fits on the
    workers (see :doc:`/beyond_one_machine`).
    """

    def __init__(self, client, parts: Sequence, *, block_size: int | None = None,
                 sample_limit: int | None = DEFAULT_SAMPLE_LIMIT) -> None:
        if block_size is not None and (int(block_size) != block_size or block_size < 1):
            raise ValueError(f"block_size must be None or a positive integer, got {block_size!r}")
        if sample_limit is not None and (int(sample_limit) != sample_limit or sample_limit < 1):
            raise ValueError(f"sample_limit must be None or a positive integer, got "
                             f"{sample_limit!r}")
        self.client = client
        self.block_size = int(block_size or DEFAULT_BLOCK_SUBJECTS)
        self.sample_limit = None if sample_limit is None else int(sample_limit)
        self.traffic = Traffic()
        parts = list(parts)
        described = client.gather([client.submit(_describe, part, pure=False) for part in parts])
        keep = [j for j, d in enumerate(described) if d is not None]   # drop empty partitions
        self._parts = [parts[j] for j in keep]
        self._meta = [described[j] for j in keep]
        who = client.who_has(self._parts)
        self._workers = [who[part.key][0] if who.get(part.key) else None for part in self._parts]
        sizes = np.array([m["n_groups"] for m in self._meta], dtype=np.int64)
        self.partition_sizes = sizes
        self.offsets = np.r_[0, np.cumsum(sizes)].astype(np.int64)

    # -- building --------------------------------------------------------------------------

    @classmethod
    def from_subject_data(cls, client, data, npartitions: int | None = None,
                          **kwargs) -> "DaskBlocks":
        """In-memory data cut into ``npartitions`` consecutive ranges of subjects (default: one
        per worker thread) and scattered to the workers, in turn; the subject order is kept."""
        n_out = npartitions or _total_threads(client)
        if int(n_out) != n_out or n_out < 1:
            raise ValueError(f"npartitions must be a positive integer, got {npartitions!r}")
        edges = np.linspace(0, data.n_groups, int(n_out) + 1).round().astype(int)
        workers = _worker_cycle(client)
        parts = [client.scatter(data.subject_slice(a, b), workers=[workers[j % len(workers)]],
                                hash=False)
                 for j, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]
        return cls(client, parts, **kwargs)

    @classmethod
    def from_partials(cls, client, partials: Sequence, build: Callable,
                      build_args: tuple = (), npartitions: int | None = None, seed: int = 0,
                      **kwargs) -> "DaskBlocks":
        """Partitions of whole subjects from per-input-partition partial data (a shuffle on
        the workers; see the module docstring).

        Parameters
        ----------
        client : distributed.Client
        partials : list of distributed.Future
            Each an object (or None) with ``labels`` (the subject label of each entry; a subject
            may have entries in several partials, and several entries in one) and
            ``subset(positions)`` (the partial restricted to those entries).
        build : callable
            ``build(pieces, *build_args) -> data``: the in-memory data (or None) of one output
            partition from the pieces of its subjects, every piece of each of its subjects
            included. This is the one function an expert family with other data (row
            segments) replaces.
        build_args : tuple
            Further arguments of ``build``; futures among them (e.g. something scattered to
            every worker once) are resolved on the worker.
        npartitions : int, optional
            Output partitions (default: one per worker thread).
        seed : int
            Seed of the label samples that place the boundaries.
        **kwargs
            ``block_size``, ``sample_limit`` of :class:`DaskBlocks`.
        """
        n_out = npartitions or _total_threads(client)
        if int(n_out) != n_out or n_out < 1:
            raise ValueError(f"npartitions must be a positive integer, got {npartitions!r}")
        n_out = int(n_out)
        samples = client.gather([client.submit(_label_sample, part, LABEL_SAMPLE, seed + j,
                                               pure=False)
                                 for j, part in enumerate(partials)])
        boundaries = _boundaries([s for s in samples if len(s)], n_out)
        if boundaries is not None:
            n_out = len(boundaries) + 1
        splits = [client.submit(_split, part, boundaries, n_out, pure=False) for part in partials]
        workers = _worker_cycle(client)
        parts = []
        for j in range(n_out):
            pieces = [client.submit(_item, split, j, pure=False) for split in splits]
            parts.append(client.submit(_build, build, tuple(build_args), *pieces, pure=False,
                                       workers=[workers[j % len(workers)]],
                                       allow_other_workers=True))
        return cls(client, parts, **kwargs)

    # -- the data interface ----------------------------------------------------------------

    @property
    def npartitions(self) -> int:
        return len(self._parts)

    @property
    def n_groups(self) -> int:
        return int(self.offsets[-1])

    @property
    def nobs(self) -> int:
        return int(sum(m["nobs"] for m in self._meta))

    @property
    def family(self):
        if not self._meta:
            raise ValueError("the distributed data hold no subjects")
        return self._meta[0]["family"]

    def _dim(self, name: str) -> int:
        if not self._meta or name not in self._meta[0]["dims"]:
            raise AttributeError(name)
        return self._meta[0]["dims"][name]

    @property
    def k_fe(self) -> int:
        return self._dim("k_fe")

    @property
    def k_re(self) -> int:
        return self._dim("k_re")

    @property
    def k_gate(self) -> int:
        return self._dim("k_gate")

    @property
    def row_codes(self) -> np.ndarray:
        """Empty: the rows are not kept (as for every model built from chunks)."""
        return np.empty(0, dtype=np.intp)

    @cached_property
    def subjects(self) -> pd.Index:
        """The subject labels in the global order, gathered on first use (then kept)."""
        labels = self._collect([self._submit(_attribute, part, "subjects", part=p, label="labels")
                                for p, part in enumerate(self._parts)], passes=1)
        return labels[0].append(labels[1:]) if len(labels) > 1 else labels[0]

    @property
    def array_names(self) -> tuple[str, ...]:
        """The names of the partitions' per-subject arrays (what :meth:`array` accepts)."""
        return tuple(sorted(self._meta[0]["arrays"])) if self._meta else ()

    def array(self, name: str) -> "DistributedArray":
        """The per-subject array ``name`` of the partitions' data (``"xx"``, ``"xy"``,
        ``"n_obs"``, ``"exog_gate"``, ...), left on the workers."""
        if not self._meta or name not in self._meta[0]["arrays"]:
            known = sorted(self._meta[0]["arrays"]) if self._meta else []
            raise ValueError(f"the distributed data have no per-subject array {name!r}; "
                             f"they have {known}")
        shape, dtype = self._meta[0]["arrays"][name]
        return DistributedArray(self, name, (self.n_groups,) + tuple(shape), dtype)

    def to_subject_data(self):
        """All subjects' data gathered into the driver as one in-memory object (for a model
        that must outlive the cluster, e.g. to save results: ``MEMoE.from_subject_data(
        model.data.to_subject_data(), model.structure, spec=model.spec)``)."""
        parts = self._collect(list(self._parts), passes=1)
        return concatenate_subjects(parts)

    def take(self, index: np.ndarray):
        """The data of the subjects at global positions ``index`` (sorted), gathered."""
        index = np.asarray(index, dtype=np.int64)
        futures = []
        for p, part in enumerate(self._parts):
            lo, hi = self.offsets[p], self.offsets[p + 1]
            local = index[(index >= lo) & (index < hi)] - lo
            if local.size:
                futures.append(self._submit(_take, part, local, part=p, label="take"))
        return concatenate_subjects(self._collect(futures, passes=1))

    def __reduce__(self):
        raise TypeError(
            "distributed data (DaskBlocks) do not pickle: they are a handle on partitions held "
            "by the cluster's workers. Gather them first: MEMoE.from_subject_data("
            "model.data.to_subject_data(), model.structure, spec=model.spec)")

    def __repr__(self) -> str:
        return (f"<DaskBlocks: {self.n_groups} subjects in {self.npartitions} partitions on "
                f"{len(set(self._workers))} workers>")

    # -- the blocks contract ---------------------------------------------------------------

    def empty_caches(self) -> list:
        """One cache per partition before the first pass."""
        return [None] * self.npartitions

    def serial(self) -> "DaskBlocks":
        """The same blocks: the passes run on the workers whatever the driver's threads."""
        return self

    def map_reduce(self, fn: Callable, caches: Sequence, *args) -> tuple[list, Any]:
        """For ``fn(block, cache, *args) -> (new_cache, partial)``: the new caches (futures,
        left on the workers) and the sum of the partials in partition order."""
        held = self._run("map_reduce", fn, caches, args)
        partials = self._collect([self._submit(_partial_of, h, part=p, label="partial")
                                  for p, h in enumerate(held)])
        return held, tree_sum(partials)

    def reduce(self, fn: Callable, caches: Sequence, *args) -> Any:
        """The sum over all sub-blocks of ``fn(block, cache, *args)`` (partition order)."""
        return tree_sum(self._collect(self._run("reduce", fn, caches, args)))

    def gather(self, fn: Callable, caches: Sequence, *args) -> list:
        """``fn(block, cache, *args)`` of every sub-block, brought to the driver, in order."""
        return [out for part in self._collect(self._run("gather", fn, caches, args))
                for out in part]

    def map(self, fn: Callable, caches: Sequence, *args) -> list:
        """As :meth:`gather` (the outputs of in-memory blocks are the caller's too)."""
        return self.gather(fn, caches, *args)

    def joined(self, caches: Sequence) -> "DistributedEStep":
        """The caches of all partitions as one E-step over all subjects, kept on the workers
        (:class:`DistributedEStep`); only the log-likelihood is computed now."""
        kept = [self._submit(_keep, h, part=p, label="keep") for p, h in enumerate(caches)]
        info = self._collect([self._submit(_kept_info, k, part=p, label="keep-info")
                              for p, k in enumerate(kept)])
        return DistributedEStep(self, kept, llf=float(tree_sum([i[0] for i in info]) or 0.0),
                                shapes={"tau": info[0][1], "log_prior": info[0][1],
                                        "llf_obs": (), "b_hat": info[0][2]})

    def e_step(self, params) -> "DistributedEStep":
        """The E-step at ``params`` (e.g. ``results.state``) on the workers: a
        :class:`DistributedEStep` whose arrays stay there until asked for."""
        caches, _ = self.map_reduce(_estep_block, self.empty_caches(), params)
        return self.joined(caches)

    def concatenate(self, values: Sequence[np.ndarray]) -> np.ndarray:
        """Per-sub-block arrays (subjects on the first axis, from :meth:`gather`) as one."""
        return values[0] if len(values) == 1 else np.concatenate(values, axis=0)

    def sample(self, n_subjects: int, rng: np.random.Generator):
        """The data of ``min(n_subjects, sample_limit)`` subjects drawn at random without
        replacement (kept in their order), gathered into the driver as in-memory data; all
        subjects when that is at least ``n_groups`` (the same draw as
        :meth:`pymemoe._execution.blocks.LocalBlocks.sample` on the same subjects)."""
        n = n_subjects if self.sample_limit is None else min(n_subjects, self.sample_limit)
        if n >= self.n_groups:
            return self.to_subject_data()
        return self.take(np.sort(rng.choice(self.n_groups, size=n, replace=False)))

    def close(self) -> None:
        """Nothing to release after a fit: the partitions stay persisted for the next one
        (:meth:`release` drops them)."""

    def release(self) -> None:
        """Drop the partitions from the cluster; this object is unusable afterwards."""
        self._parts = []
        self._meta = []
        self._workers = []
        self.offsets = np.zeros(1, dtype=np.int64)
        self.partition_sizes = np.zeros(0, dtype=np.int64)

    # -- tasks -----------------------------------------------------------------------------

    def _submit(self, fn: Callable, *args, part: int, label: str):
        """One task on partition ``part``'s worker (preferred, not required: if that worker
        is lost the scheduler may run it elsewhere)."""
        worker = self._workers[part]
        self.traffic.tasks += 1
        return self.client.submit(fn, *args, pure=False, key=f"pymemoe-{label}-{uuid.uuid4().hex}",
                                  workers=None if worker is None else [worker],
                                  allow_other_workers=True)

    def _run(self, kind: str, fn: Callable, caches: Sequence, args: tuple) -> list:
        if len(caches) != self.npartitions:
            raise ValueError(f"expected one cache per partition ({self.npartitions}), got "
                             f"{len(caches)}")
        name = getattr(fn, "__name__", "block").strip("<>")
        futures = [self._submit(_pass_task, kind, part, cache, fn, args, self.block_size,
                                part=p, label=name)
                   for p, (part, cache) in enumerate(zip(self._parts, caches))]
        self.traffic.bytes_out += _function_size(fn, args) * len(futures)
        return futures

    def _collect(self, futures: list, passes: int = 1) -> list:
        """Gather results to the driver (the one place where anything comes back)."""
        start = time.perf_counter()
        results = self.client.gather(futures)
        traffic = self.traffic
        traffic.wait_s += time.perf_counter() - start
        traffic.passes += passes
        for result in results:
            size = _pickled_size(result)
            traffic.bytes_in += size
            traffic.largest_in = max(traffic.largest_in, size)
        return results


def _estep_block(data, cache, params):
    estep = e_step(data, params)
    return estep, estep.llf


def _item(sequence, j: int):
    return sequence[j]


def _boundaries(samples: list[np.ndarray], n_out: int) -> np.ndarray | None:
    """At most ``n_out - 1`` distinct labels at the quantiles of the pooled label samples, or
    None when the labels cannot be ordered (they are hashed then)."""
    if not samples:
        return np.empty(0)
    try:
        ordered = np.unique(np.concatenate(samples))
    except TypeError:                          # labels of several types that do not compare
        return None
    cuts = np.unique(np.linspace(0, len(ordered), n_out + 1).round().astype(int)[1:-1])
    return ordered[cuts[(cuts > 0) & (cuts < len(ordered))]]


def _total_threads(client) -> int:
    workers = client.scheduler_info()["workers"]
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))


def _worker_cycle(client) -> list[str]:
    """Worker addresses, each repeated once per thread, interleaved (placement in turn)."""
    workers = client.scheduler_info()["workers"]
    threads = {addr: int(w.get("nthreads", 1)) for addr, w in sorted(workers.items())}
    cycle = []
    for round_ in range(max(threads.values(), default=1)):
        cycle += [addr for addr, n in threads.items() if n > round_]
    if not cycle:
        raise ValueError("the distributed client has no workers")
    return cycle


class DistributedData:
    """The data of a model whose subjects are held by Dask workers (see the module docstring).

    Parameters
    ----------
    blocks : DaskBlocks
        The partitions and their passes.

    Examples
    --------
    >>> import pytest; distributed = pytest.importorskip("distributed")
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq().assign(year=lambda d: d["day"] / 365.25)
    >>> local = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                            n_experts=1)
    >>> with distributed.Client(processes=False, n_workers=1, dashboard_address=None) as client:
    ...     data = DistributedData(DaskBlocks.from_subject_data(client, local.data, npartitions=2))
    ...     res = MEMoE.from_subject_data(data, local.structure).fit()
    ...     print(data.n_groups, round(res.llf, 2))
    312 -1525.93
    """

    def __init__(self, blocks: DaskBlocks) -> None:
        self.blocks = blocks

    def as_blocks(self) -> DaskBlocks:
        """The executor that runs this data's passes (:func:`pymemoe._execution.blocks.as_blocks`)."""
        return self.blocks

    @property
    def n_groups(self) -> int:
        return self.blocks.n_groups

    @property
    def nobs(self) -> int:
        return self.blocks.nobs

    @property
    def family(self):
        return self.blocks.family

    @property
    def k_fe(self) -> int:
        return self.blocks.k_fe

    @property
    def k_re(self) -> int:
        return self.blocks.k_re

    @property
    def k_gate(self) -> int:
        return self.blocks.k_gate

    @property
    def row_codes(self) -> np.ndarray:
        """Empty: the rows are not kept (as for every model built from chunks)."""
        return self.blocks.row_codes

    @property
    def subjects(self) -> pd.Index:
        """The subject labels in the global order, gathered on first use (then kept)."""
        return self.blocks.subjects

    @property
    def npartitions(self) -> int:
        return self.blocks.npartitions

    @property
    def traffic(self) -> Traffic:
        """What travelled between the driver and the workers (:class:`Traffic`)."""
        return self.blocks.traffic

    def array(self, name: str) -> "DistributedArray":
        """The per-subject array ``name`` (``"xx"``, ``"xy"``, ``"n_obs"``, ...), left on the
        workers (:class:`DistributedArray`: ``.sum(axis=0)`` there, ``.compute()`` here)."""
        return self.blocks.array(name)

    def e_step(self, params) -> "DistributedEStep":
        """The E-step at ``params`` (e.g. ``results.state``) on the workers."""
        return self.blocks.e_step(params)

    def to_subject_data(self):
        """All subjects' data gathered into the driver as one in-memory object."""
        return self.blocks.to_subject_data()

    def __getattr__(self, name: str):
        # Kept for code written before the data and the executor were two objects, when the
        # per-subject arrays were attributes (``model.data.xx``); they are asked for by name
        # now, so that reading an attribute never starts work on the cluster unannounced.
        blocks = self.__dict__.get("blocks")
        if blocks is not None and name in blocks.array_names:
            warnings.warn(f"model.data.{name} is deprecated: write model.data.array({name!r}) "
                          f"(a per-subject array left on the workers)", FutureWarning,
                          stacklevel=2)
            return self.array(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __reduce__(self):
        raise TypeError(
            "distributed data do not pickle: they are a handle on partitions held by the "
            "cluster's workers. Gather them first: MEMoE.from_subject_data("
            "model.data.to_subject_data(), model.structure, spec=model.spec)")

    def __repr__(self) -> str:
        return f"<DistributedData: {self.blocks!r}>"


class DistributedArray:
    """One per-subject array of distributed data (``model.data.array("xx")``), left on the
    workers.

    ``sum(axis=0)`` is a reduction on the workers; ``compute()`` (and ``numpy.asarray``,
    indexing) gathers the whole array into the driver; :meth:`to_dask` gives a Dask array.
    """

    def __init__(self, blocks: DaskBlocks, name: str, shape: tuple, dtype) -> None:
        self._blocks, self.name, self.shape, self.dtype = blocks, name, shape, np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def sum(self, axis: int = 0) -> np.ndarray:
        """Sum over subjects (``axis=0`` only), computed on the workers."""
        if axis != 0:
            raise ValueError(f"{self.name}: only the sum over subjects (axis=0) runs on the "
                             f"workers; use {self.name}.compute().sum(axis={axis!r})")
        blocks = self._blocks
        return np.asarray(blocks.reduce(_field_sum, blocks.empty_caches(), self.name))

    def compute(self) -> np.ndarray:
        """The whole array, gathered into the driver."""
        blocks = self._blocks
        values = blocks._collect([blocks._submit(_attribute, part, self.name, part=p,
                                                 label=f"gather-{self.name}")
                                  for p, part in enumerate(blocks._parts)])
        return np.concatenate(values, axis=0)

    def to_dask(self):
        """A Dask array of the values, one chunk per partition (nothing is computed)."""
        import dask
        import dask.array as da
        blocks = self._blocks
        chunks = [da.from_delayed(dask.delayed(_attribute)(part, self.name),
                                  shape=(int(n),) + self.shape[1:], dtype=self.dtype)
                  for part, n in zip(blocks._parts, blocks.partition_sizes)]
        return da.concatenate(chunks, axis=0)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self.compute()
        return values if dtype is None else values.astype(dtype)

    def __getitem__(self, key):
        return self.compute()[key]

    def __repr__(self) -> str:
        return f"<DistributedArray {self.name!r}: shape {self.shape}, {self.dtype}>"


class _Moments:
    """The random-effect modes of a distributed E-step (``b_hat``, gathered on first use)."""

    def __init__(self, estep: "DistributedEStep") -> None:
        self._estep = estep

    @cached_property
    def b_hat(self) -> np.ndarray:
        return self._estep._kept_array("b_hat")


class DistributedEStep:
    """The final E-step of a distributed fit, left on the workers until asked for.

    Has the attributes of :class:`pymemoe._model.likelihood.EStep` that results read: ``llf`` (known
    at once), and ``llf_obs`` (N,), ``tau`` (N, K), ``log_prior`` (N, K), ``moments.b_hat``
    (N, K, q), each gathered into the driver on first use and then kept (so
    ``results.posterior`` is a pandas DataFrame as for an in-memory fit). Without gathering:
    :meth:`to_dask` (a Dask array) and :meth:`posterior_frame` (a Dask DataFrame indexed by
    subject), computed on the workers when asked. Get one for any parameters with
    ``model.data.e_step(results.state)``.
    """

    def __init__(self, blocks: DaskBlocks, kept: list, llf: float, shapes: dict) -> None:
        self._blocks, self._kept, self.llf, self._shapes = blocks, kept, llf, shapes
        self.moments = _Moments(self)

    def gathered(self, name: str) -> np.ndarray:
        """The array ``name`` (``"tau"``, ``"log_prior"``, ``"llf_obs"``, ``"b_hat"``) of all
        subjects, gathered into the driver (not kept: the attributes keep theirs)."""
        self._check(name)
        blocks = self._blocks
        values = blocks._collect([blocks._submit(_attribute, k, name, part=p,
                                                 label=f"gather-{name}")
                                  for p, k in enumerate(self._kept)])
        return np.concatenate(values, axis=0)

    def _kept_array(self, name: str) -> np.ndarray:
        values = self.gathered(name)
        values.setflags(write=False)          # kept by the results: nothing may change it
        return values

    @cached_property
    def tau(self) -> np.ndarray:
        return self._kept_array("tau")

    @cached_property
    def log_prior(self) -> np.ndarray:
        return self._kept_array("log_prior")

    @cached_property
    def llf_obs(self) -> np.ndarray:
        return self._kept_array("llf_obs")

    def to_dask(self, name: str = "tau"):
        """The array ``name`` as a Dask array, one chunk per partition (not computed)."""
        import dask
        import dask.array as da
        self._check(name)
        blocks = self._blocks
        chunks = [da.from_delayed(dask.delayed(_attribute)(k, name),
                                  shape=(int(n),) + tuple(self._shapes[name]), dtype=float)
                  for k, n in zip(self._kept, blocks.partition_sizes)]
        return da.concatenate(chunks, axis=0)

    def posterior_frame(self):
        """The posterior probabilities as a Dask DataFrame, subjects (index ``subject``) x
        experts (columns 1..K), one partition per partition of the data (not computed)."""
        import dask
        import dask.dataframe as dd
        K = self._shapes["tau"][0]
        meta = pd.DataFrame(np.empty((0, K)), columns=pd.Index(range(1, K + 1), name="expert"),
                            index=pd.Index([], name="subject"))
        parts = [dask.delayed(_frame)(k, part, "tau")
                 for k, part in zip(self._kept, self._blocks._parts)]
        return dd.from_delayed(parts, meta=meta)

    def _check(self, name: str) -> None:
        if name not in self._shapes:
            raise ValueError(f"unknown E-step array {name!r}; choose from {sorted(self._shapes)}")

    def __reduce__(self):
        raise TypeError("a distributed E-step does not pickle (its arrays are on the workers); "
                        "gather what you need first, e.g. results.posterior")
