"""Sufficient statistics by chunks: data larger than memory, and Dask DataFrames.

The fit needs each subject's data only through the cross-products of ``[X_i  Z_i  y_i]``, its
number of observations and its row of gating covariates (:mod:`pymemoe.families.gaussian`). These are sums
over rows, so they can be built from the rows a piece at a time: per-subject partial sums of each
chunk (one vectorised :meth:`SubjectData.from_arrays` per chunk), summed across chunks for the
subjects that appear in several of them. Only the per-subject partials are kept, never the rows,
so memory is O(subjects + one chunk), not O(rows); the EM then runs on the small (N, m, m)
arrays exactly as in memory.

* :func:`from_chunks` reads any iterable of DataFrames: ``pandas.read_csv(..., chunksize=)``,
  a generator over Parquet row groups (``pyarrow.parquet.ParquetFile.iter_batches``), a list.
* :func:`from_dask` reduces the partitions of a Dask DataFrame in parallel. Without a
  ``distributed`` client, a tree reduction of the per-partition partials inside the Dask graph
  brings all subjects' statistics into memory. Under a client, the partials are shuffled on
  the workers into partitions of whole subjects (ranges of sorted labels) that stay there, and
  the model's data are :class:`pymemoe.distributed.DistributedData`: the fit runs on the workers
  (see that module). Dask is optional: ``pip install "dask[dataframe]" distributed``.

Both return a :class:`~pymemoe.model.MEMoE` built by :meth:`MEMoE.from_subject_data`. Its
per-subject statistics are those of :meth:`MEMoE.from_formula` on all rows at once (same
subjects in the same, sorted, order; the sums agree up to the order of floating-point
summation, about 1e-16 relative), so the fit is the same (on a cluster too, to rounding).

**The design is learnt once.** The formulas' patsy design information (categorical levels,
the parameters of stateful transforms such as ``center()`` and ``standardize()``) is learnt
from ``spec_data`` when given, otherwise from the first non-empty chunk, and then applied
unchanged to every chunk (:func:`pymemoe._design.new_data.build_new_design`). Consequences when it is
learnt from the first chunk:

* a categorical level absent from the first chunk cannot be coded in a later one: a
  ``ValueError`` names the formula and the level, and advises ``spec_data`` (a small DataFrame
  holding every level) or a pandas ``Categorical`` dtype with all categories (e.g.
  ``pd.read_csv(..., dtype={"sex": pd.CategoricalDtype(["f", "m"])})``), whose categories
  patsy takes as the levels;
* ``center(x)`` and ``standardize(x)`` use the mean (and SD) of the first chunk, not of all
  rows: the model is the same reparameterised, but coefficients differ from an in-memory fit.
  Pass ``spec_data=`` (e.g. the full columns the transforms read, or a random sample) or write
  the centring constant into the formula (``I(age - 50)``) to control it;
* the input checks that :func:`pymemoe._design.formula.build_design` runs on the analysis sample (a
  numeric, non-constant outcome, gating covariates constant within subject) run on that sample;
  the checks that need all rows run on the statistics: gating covariates are checked within
  every chunk and across chunks (a subject whose gating covariates differ between two chunks
  raises a ``ValueError`` naming the column and the subject), and the fixed-effects design's
  rank on the pooled X'X.

**Missing values.** As in :func:`~pymemoe._design.formula.build_design`, a row with a missing value in
a column that a formula reads or in the subject identifier, or with a non-finite design or
outcome value (``np.log(0)``), is dropped and counted in ``model.n_dropped``
(``missing="drop"``), or raises (``missing="raise"``). A non-numeric NaN produced by a
right-hand-side transform of a present value (``np.log(x)`` for ``x < 0``) raises instead of
being dropped: patsy reports it when the stored design is applied.

Without the rows, the model has no row-level arrays: ``model.endog`` is None,
``model.data.row_codes`` is empty, and in-sample row-level outputs (fitted values, in-sample
``predict``) are unavailable; everything per subject (posteriors, random effects, scores,
standard errors) and predictions on ``newdata`` work.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any, Hashable, Iterable

import numpy as np
import pandas as pd

from ._design.checks import check_constant_within, finite_rows, plain_label
from ._design.formula import DesignSpec, build_design
from ._design.new_data import build_new_design, build_new_endog
from ._design.questions import required_variables
from ._design.subjects import subject_codes
from ._model.params import Structure
from .distributed import DEFAULT_SAMPLE_LIMIT, DaskBlocks, DistributedData, active_client
from .families import get_family
from .families.gaussian import GAUSSIAN, SubjectData
from .model import MEMoE

__all__ = ["from_chunks", "from_dask"]

# The partials of several chunks are summed once they hold at least this many subject rows
# (and at least as many as the running total): memory stays O(subjects + chunk) and the total
# work of combining O(subjects) per doubling of the running total.
COMBINE_MIN_ROWS = 100_000
_SUMS = ("n_obs", "xx", "xz", "zz", "xy", "zy", "yy")


@dataclass
class _Partial:
    """Per-subject sums over some rows: one entry per distinct subject label."""

    labels: pd.Index
    sums: dict[str, np.ndarray]
    gate: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, positions: np.ndarray) -> "_Partial":
        """The sums of the subjects at ``positions`` (a piece of the distributed shuffle)."""
        return _Partial(labels=self.labels[positions],
                        sums={name: value[positions] for name, value in self.sums.items()},
                        gate=self.gate[positions])


@dataclass
class _Context:
    """What every chunk needs to become a partial (picklable for Dask's process schedulers)."""

    spec: DesignSpec
    groups: Hashable
    missing: str
    columns: list[str]
    source: str


def check_family(family) -> None:
    """A ValueError for a family whose data cannot be reduced to per-subject statistics."""
    if not get_family(family).sufficient_statistics:
        raise ValueError(f"family={get_family(family).name!r}: data read in chunks are reduced to "
                         f"per-subject sufficient statistics, which exist for Gaussian experts "
                         f"only; these experts need each subject's rows: build the model with "
                         f"MEMoE.from_formula on the rows")


def _context(spec: DesignSpec, groups: Hashable, missing: str, source: str) -> _Context:
    columns = list(dict.fromkeys(c for cols in required_variables(spec).values() for c in cols))
    return _Context(spec=spec, groups=groups, missing=missing, columns=columns, source=source)


def _check_options(groups: Hashable, missing: str) -> None:
    if missing not in ("drop", "raise"):
        raise ValueError(f"missing must be 'drop' or 'raise', got {missing!r}")
    if (groups is None or not isinstance(groups, Hashable)
            or isinstance(groups, (tuple, list, np.ndarray, pd.Series, pd.Index))):
        raise ValueError(
            f"groups must be the name of the subject column of the chunks, got "
            f"{type(groups).__name__}; chunked data carry their subject labels in a column")


def _learn_spec(sample: pd.DataFrame, source: str, formula: str, groups: Hashable, missing: str,
                eval_depth: int, **formulas: Any) -> DesignSpec:
    """The DesignSpec learnt from ``sample`` (spec_data or the first chunk), as build_design
    learns it from all rows in memory."""
    if not isinstance(sample, pd.DataFrame):
        raise ValueError(f"spec_data and the chunks must be pandas DataFrames, got "
                         f"{type(sample).__name__}")
    # spec_data may come without the subject column: then every row is its own subject there.
    labels = groups if groups in sample.columns else np.arange(len(sample))
    try:
        spec, arrays = build_design(formula, sample, labels, missing=missing,
                                    eval_depth=eval_depth + 1, **formulas)
        GAUSSIAN.check_outcome(arrays.endog, None,
                               np.column_stack([arrays.exog, arrays.exog_shared]),
                               spec.endog_name, formula)
    except ValueError as err:
        raise ValueError(f"learning the designs from {source}: {err}") from None
    return spec if spec.groups == groups else replace(spec, groups=groups)


def _chunk_partial(chunk: Any, ctx: _Context, number: int) -> tuple[_Partial | None, int]:
    """Per-subject partial sums of one chunk and the number of rows dropped from it."""
    if not isinstance(chunk, pd.DataFrame):
        raise ValueError(f"chunk {number}: expected a pandas DataFrame, got {type(chunk).__name__}")
    if len(chunk) == 0:
        return None, 0
    absent = [c for c in [ctx.groups, *ctx.columns] if c not in chunk.columns]
    if absent:
        raise ValueError(f"chunk {number} lacks the column(s) {absent} that the formulas or the "
                         f"subject identifier use; its columns are {list(chunk.columns)}")
    chunk = chunk.set_axis(pd.RangeIndex(len(chunk)), axis=0)   # a new frame; patsy aligns by index
    bad = chunk[ctx.groups].isna().to_numpy()
    if ctx.columns:
        bad = bad | chunk[ctx.columns].isna().any(axis=1).to_numpy()
    kept = chunk.loc[~bad] if bad.any() else chunk
    n_dropped = int(bad.sum())
    if len(kept):
        try:
            parts = build_new_design(ctx.spec, kept)
        except ValueError as err:
            raise ValueError(_design_error(err, ctx, number)) from None
        parts["endog"] = build_new_endog(ctx.spec, kept)
        finite = finite_rows(parts["endog"], parts["exog"], parts["exog_re"], parts["exog_gate"],
                             parts["exog_shared"])
        n_dropped += int((~finite).sum())
    if n_dropped and ctx.missing == "raise":
        raise ValueError(
            f"with missing='raise': chunk {number} has {n_dropped} rows with a missing or "
            f"non-finite value (in a column the formulas use, in a design column or in the "
            f"subject identifier {ctx.groups!r})")
    if len(kept) == 0 or not finite.any():
        return None, n_dropped
    labels = kept[ctx.groups].to_numpy()
    if not finite.all():
        parts = {key: value[finite] for key, value in parts.items()}
        labels = labels[finite]
    spec = ctx.spec
    check_constant_within(parts["exog_gate"], labels, spec.exog_gate_names,
                          f"gate_formula {spec.gate_formula!r} (chunk {number})")
    data = SubjectData.from_arrays(parts["endog"],
                                   np.column_stack([parts["exog"], parts["exog_shared"]]),
                                   parts["exog_re"], parts["exog_gate"], labels)
    sums = {name: getattr(data, name) for name in _SUMS}
    return _Partial(labels=data.subjects, sums=sums, gate=data.exog_gate), n_dropped


def _design_error(err: ValueError, ctx: _Context, number: int) -> str:
    text = f"chunk {number}: {err}"
    if "level" in str(err):
        text += (
            f"\nThe designs (categorical levels, and the parameters of center()/standardize()) "
            f"were learnt from {ctx.source}, which does not hold this level. Pass spec_data=, "
            f"a DataFrame holding every level of every categorical variable, or give the column "
            f"a pandas Categorical dtype with all categories (e.g. pd.read_csv(..., "
            f"dtype={{'col': pd.CategoricalDtype([...])}}) or df['col'].astype(pd."
            f"CategoricalDtype([...]))), whose categories patsy takes as the levels.")
    return text


def _combine(partials: list[_Partial | None], spec: DesignSpec) -> _Partial | None:
    """Sum the partials of the same subject (vectorised: sort by subject, ``add.reduceat``),
    keep the first gating row and check that the gating rows agree across partials."""
    partials = [p for p in partials if p is not None and len(p)]
    if len(partials) <= 1:
        return partials[0] if partials else None
    labels = partials[0].labels.append([p.labels for p in partials[1:]])
    codes, uniques = pd.factorize(labels)          # order of first appearance
    order = np.argsort(codes, kind="stable")       # within a subject, in the order of the chunks
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    sums = {name: np.add.reduceat(np.concatenate([p.sums[name] for p in partials])[order],
                                  starts, axis=0)
            for name in _SUMS}
    gate = np.concatenate([p.gate for p in partials])[order]
    first = gate[starts]
    if gate.shape[1] and len(starts) < len(gate):
        differs = gate != first[sorted_codes]
        if differs.any():
            row, col = np.argwhere(differs)[0]
            subject = plain_label(uniques[sorted_codes[row]])
            earlier, later = float(first[sorted_codes[row], col]), float(gate[row, col])
            raise ValueError(
                f"gate_formula {spec.gate_formula!r}: column {spec.exog_gate_names[col]!r} "
                f"differs between chunks for subject {subject!r} ({earlier!r} in an earlier "
                f"chunk, {later!r} in a later one); gating covariates must be baseline values, "
                f"constant within each subject")
    return _Partial(labels=uniques, sums=sums, gate=first)


def _combine_results(results: list[tuple[_Partial | None, int]],
                     spec: DesignSpec) -> tuple[_Partial | None, int]:
    """Combine (partial, n_dropped) pairs: the reduction step of :func:`from_dask`."""
    return _combine([r[0] for r in results], spec), sum(r[1] for r in results)


class _Accumulator:
    """Running per-subject sums; combines pending partials once they are as large as the total."""

    def __init__(self, spec: DesignSpec) -> None:
        self.spec = spec
        self.total: _Partial | None = None
        self.pending: list[_Partial] = []
        self.n_pending = 0

    def add(self, partial: _Partial | None) -> None:
        if partial is None:
            return
        self.pending.append(partial)
        self.n_pending += len(partial)
        if self.n_pending >= max(COMBINE_MIN_ROWS, len(self.total or ())):
            self.flush()

    def flush(self) -> _Partial | None:
        if self.pending:
            self.total = _combine([self.total, *self.pending], self.spec)
            self.pending, self.n_pending = [], 0
        return self.total


def _subject_data(total: _Partial | None) -> SubjectData:
    """The final SubjectData: subjects sorted as :func:`pymemoe._design.subjects.subject_codes` sorts them."""
    if total is None:
        raise ValueError("no rows left after dropping rows with missing or non-finite values")
    codes, subjects = subject_codes(total.labels.to_numpy())
    where = np.empty_like(codes)
    where[codes] = np.arange(len(codes))          # position in total of each sorted subject
    sums = {name: value[where] for name, value in total.sums.items()}
    return SubjectData(**sums, exog_gate=total.gate[where], subjects=subjects,
                       row_codes=np.empty(0, dtype=np.intp))


def _statistics(pieces: list[_Partial], ctx: _Context) -> SubjectData | None:
    """The statistics of one partition of a distributed model from the pieces of its subjects
    (the data builder :meth:`pymemoe.distributed.DaskBlocks.from_partials` calls on a worker)."""
    total = _combine(pieces, ctx.spec)
    return None if total is None else _subject_data(total)


def _model(data, spec: DesignSpec, n_dropped: int, n_experts: int, cov_re: str,
           re_structure: str, scale: str) -> MEMoE:
    """The model, with its Structure built as ``MEMoE.__init__`` builds it."""
    structure = Structure.of_designs(n_experts, spec.exog_names, spec.exog_re_names,
                                     spec.exog_gate_names, spec.exog_shared_names,
                                     cov_re=cov_re, re_structure=re_structure,
                                     scale=GAUSSIAN.scale_structure(scale))
    return MEMoE.from_subject_data(data, structure, spec=spec, n_dropped=n_dropped)


def from_chunks(
    formula: str,
    chunks: Iterable[pd.DataFrame],
    groups: Hashable,
    *,
    re_formula: str = "~1",
    gate_formula: str = "~1",
    shared_formula: str | None = None,
    n_experts: int = 2,
    cov_re: str = "expert",
    re_structure: str = "unstructured",
    scale: str = "expert",
    missing: str = "drop",
    spec_data: pd.DataFrame | None = None,
    family="gaussian",
) -> MEMoE:
    """A MEMoE from data read in chunks: per-subject statistics summed over the chunks.

    Parameters
    ----------
    formula, re_formula, gate_formula, shared_formula : str
        As in :meth:`MEMoE.from_formula`.
    chunks : iterable of pandas.DataFrame
        The rows, in any order and cut anywhere: a subject's rows may lie in several chunks.
        E.g. ``pd.read_csv(path, chunksize=100_000)``, a generator over Parquet batches, a list.
        It is consumed once.
    groups : str
        Name of the subject column of the chunks.
    n_experts, cov_re, re_structure, scale, missing
        As in :class:`MEMoE`.
    family : str
        Only ``"gaussian"``: chunks are reduced to per-subject sufficient statistics, which
        exist for linear mixed model experts only; binomial and Poisson experts need each
        subject's rows (fit them with :meth:`MEMoE.from_formula`).
    spec_data : pandas.DataFrame, optional
        A representative sample from which the designs are learnt: it must hold every level of
        every categorical variable, and stateful transforms (``center``, ``standardize``) learn
        their parameters from it. It may lack the subject column. Default: the first
        non-empty chunk (see the module docstring for the consequences).

    Returns
    -------
    MEMoE
        Built by :meth:`MEMoE.from_subject_data`; ``model.n_dropped`` counts the rows dropped
        for missing values over all chunks.

    Examples
    --------
    >>> from pymemoe.chunked import from_chunks
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq()
    >>> df["year"] = df["day"] / 365.25
    >>> chunks = (df.iloc[i:i + 400] for i in range(0, len(df), 400))   # or read_csv(chunksize=)
    >>> model = from_chunks("np.log(bili) ~ year", chunks, "id", re_formula="~ year",
    ...                     n_experts=1)
    >>> model.data.n_groups, model.data.nobs
    (312, 1945)
    >>> round(model.fit().llf, 2)
    -1525.93
    """
    check_family(family)
    _check_options(groups, missing)
    formulas = dict(re_formula=re_formula, gate_formula=gate_formula,
                    shared_formula=shared_formula)
    iterator = iter(chunks)
    if spec_data is not None:
        source = "spec_data"
        spec = _learn_spec(spec_data, source, formula, groups, "drop", 1, **formulas)
    else:
        leading = []                   # empty chunks before the first non-empty one
        for chunk in iterator:
            leading.append(chunk)
            if isinstance(chunk, pd.DataFrame) and len(chunk) == 0:
                continue
            break
        if not leading:
            raise ValueError("chunks is empty: there are no rows")
        if not isinstance(leading[-1], pd.DataFrame):
            raise ValueError(f"chunk {len(leading) - 1}: expected a pandas DataFrame, got "
                             f"{type(leading[-1]).__name__}")
        if len(leading[-1]) == 0:
            raise ValueError("every chunk is empty: there are no rows")
        if groups not in leading[-1].columns:
            raise ValueError(f"groups={groups!r} is not a column of the first chunk; its columns "
                             f"are {list(leading[-1].columns)}")
        source = "the first chunk (spec_data was not given)"
        spec = _learn_spec(leading[-1], source, formula, groups, missing, 1, **formulas)
        iterator = itertools.chain(leading, iterator)
    ctx = _context(spec, groups, missing, source)
    acc = _Accumulator(spec)
    n_dropped = 0
    for number, chunk in enumerate(iterator):
        partial, dropped = _chunk_partial(chunk, ctx, number)
        acc.add(partial)
        n_dropped += dropped
    data = _subject_data(acc.flush())
    return _model(data, spec, n_dropped, n_experts, cov_re, re_structure, scale)


def from_dask(
    formula: str,
    ddf: Any,
    groups: Hashable,
    *,
    re_formula: str = "~1",
    gate_formula: str = "~1",
    shared_formula: str | None = None,
    n_experts: int = 2,
    cov_re: str = "expert",
    re_structure: str = "unstructured",
    scale: str = "expert",
    missing: str = "drop",
    spec_data: pd.DataFrame | None = None,
    family="gaussian",
    split_every: int = 8,
    scheduler: str | None = None,
    client: Any = None,
    npartitions: int | None = None,
    block_size: int | None = None,
    sample_limit: int | None = DEFAULT_SAMPLE_LIMIT,
) -> MEMoE:
    """A MEMoE from a Dask DataFrame: per-partition statistics computed and summed in parallel.

    Each partition becomes per-subject partial sums (as a chunk of :func:`from_chunks`).
    Subjects may span partitions; the frame need not be sorted or indexed by subject. Then:

    * **under a distributed client** (``client=``, or an active ``distributed.Client`` and no
      ``scheduler``): the partials are shuffled on the workers into ``npartitions`` partitions
      of whole subjects, kept there, and ``model.data`` is the handle on them, a
      :class:`pymemoe.distributed.DaskBlocks`: every pass of the fit and of the standard
      errors runs as tasks on the workers and only small sums come back (see
      :doc:`/beyond_one_machine`);
    * **otherwise**: the partials are summed by subject in a tree reduction inside the Dask
      graph (``split_every`` partials per step) and ``model.data`` is the in-memory
      :class:`pymemoe.families.gaussian.SubjectData` of all subjects.

    Parameters
    ----------
    formula, ddf, groups
        The formulas, a ``dask.dataframe.DataFrame`` and the name of its subject column.
    re_formula, gate_formula, shared_formula, n_experts, cov_re, re_structure, scale, missing,
    spec_data, family
        As in :func:`from_chunks`; without ``spec_data`` the designs are learnt from the first
        non-empty partition (computed once more for that purpose).
    split_every : int
        Number of partials summed per step of the in-memory reduction.
    scheduler : str, optional
        Passed to ``dask.compute`` (e.g. ``"threads"``, ``"processes"``, ``"sync"``); None uses
        Dask's default or the active ``distributed`` client. Given (and no ``client``), the
        statistics are gathered in memory even if a distributed client is active.
    client : distributed.Client, optional
        Keep the statistics on this client's workers (default: the active client, if any and
        ``scheduler`` is None).
    npartitions : int, optional
        Partitions of whole subjects on the workers (default: one per worker thread).
    block_size : int, optional
        Subjects per sub-block of a partition in the passes (default: cache-sized).
    sample_limit : int or None
        The most subjects whose statistics the driver receives for the EM starts
        (:meth:`pymemoe.distributed.DaskBlocks.sample`); None: no limit.

    Returns
    -------
    MEMoE

    Examples
    --------
    >>> import dask.dataframe as dd                          # doctest: +SKIP
    >>> from distributed import Client                       # doctest: +SKIP
    >>> client = Client(n_workers=2, threads_per_worker=1)   # doctest: +SKIP
    >>> ddf = dd.read_parquet("visits/*.parquet")            # doctest: +SKIP
    >>> model = from_dask("np.log(bili) ~ year", ddf, "id", re_formula="~ year",
    ...                   gate_formula="~ age + C(sex)")     # doctest: +SKIP
    >>> model.data                                           # doctest: +SKIP
    <DistributedData: <DaskBlocks: 312 subjects in 2 partitions on 2 workers>>
    >>> res = model.fit(n_starts=5, random_state=0)          # doctest: +SKIP
    """
    check_family(family)
    try:
        import dask
        import dask.dataframe as dd
    except ImportError as err:
        raise ImportError('from_dask needs dask: pip install "dask[dataframe]"') from err
    _check_options(groups, missing)
    if not isinstance(ddf, dd.DataFrame):
        raise ValueError(f"ddf must be a dask.dataframe.DataFrame, got {type(ddf).__name__}")
    if int(split_every) != split_every or split_every < 2:
        raise ValueError(f"split_every must be an integer >= 2, got {split_every!r}")
    if npartitions is not None and (int(npartitions) != npartitions or npartitions < 1):
        raise ValueError(f"npartitions must be None or a positive integer, got {npartitions!r}")
    if groups not in ddf.columns:
        raise ValueError(f"groups={groups!r} is not a column of ddf; its columns are "
                         f"{list(ddf.columns)}")
    cluster = active_client(client) if client is not None or scheduler is None else None
    formulas = dict(re_formula=re_formula, gate_formula=gate_formula,
                    shared_formula=shared_formula)
    if spec_data is not None:
        source = "spec_data"
        spec = _learn_spec(spec_data, source, formula, groups, "drop", 1, **formulas)
    else:
        sample = None
        for i in range(ddf.npartitions):
            part = ddf.get_partition(i)
            sample = (cluster.compute(part).result() if cluster is not None
                      else part.compute(scheduler=scheduler))
            if len(sample):
                break
        if sample is None or len(sample) == 0:
            raise ValueError("ddf has no rows")
        source = f"the first non-empty partition ({i}; spec_data was not given)"
        spec = _learn_spec(sample, source, formula, groups, missing, 1, **formulas)
    ctx = _context(spec, groups, missing, source)
    # pure=False: keys are not derived by hashing the arguments (the spec holds patsy objects).
    chunk_task = dask.delayed(_chunk_partial, pure=False)
    if cluster is not None:
        data, n_dropped = _distributed_statistics(cluster, ddf, ctx, chunk_task, npartitions,
                                                  block_size, sample_limit)
    else:
        tasks = [chunk_task(part, ctx, number) for number, part in enumerate(ddf.to_delayed())]
        combine_task = dask.delayed(_combine_results, pure=False)
        while len(tasks) > 1:
            tasks = [combine_task(tasks[j:j + split_every], spec)
                     for j in range(0, len(tasks), split_every)]
        (total, n_dropped), = dask.compute(tasks[0], scheduler=scheduler)
        data = _subject_data(total)
    return _model(data, spec, n_dropped, n_experts, cov_re, re_structure, scale)


def _distributed_statistics(client: Any, ddf: Any, ctx: _Context, chunk_task: Any,
                            npartitions: int | None, block_size: int | None,
                            sample_limit: int | None) -> tuple[DistributedData, int]:
    """The per-subject statistics as partitions of whole subjects on the workers, and the
    number of rows dropped: each input partition's partial sums stay on its worker, and the
    shuffle of :meth:`DaskBlocks.from_partials` brings each subject's pieces together."""
    # The context holds the spec, and the spec the sample its designs were learnt from (a
    # whole partition without spec_data): sent once to each worker, not once per task.
    shared = client.scatter(ctx, hash=False)
    tasks = [chunk_task(part, shared, number) for number, part in enumerate(ddf.to_delayed())]
    results = client.compute(tasks)                      # (partial, n_dropped) per partition
    partials = [client.submit(_first, r, pure=False) for r in results]
    dropped = [client.submit(_second, r, pure=False) for r in results]
    data = DistributedData(DaskBlocks.from_partials(
        client, partials, _statistics, build_args=(shared,), npartitions=npartitions,
        block_size=block_size, sample_limit=sample_limit))
    n_dropped = int(sum(client.gather(dropped)))
    if data.n_groups == 0:
        raise ValueError("no rows left after dropping rows with missing or non-finite values")
    return data, n_dropped


def _first(pair: tuple) -> Any:
    return pair[0]


def _second(pair: tuple) -> Any:
    return pair[1]
