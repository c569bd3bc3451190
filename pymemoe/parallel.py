"""Independent tasks in threads: the starts of the EM and the columns of the information.

numpy releases the interpreter lock in its array work, so threads run the array-heavy tasks of
a fit in parallel without copying the data to other processes. Each task depends only on its
own input, so the results, returned in input order, do not depend on the number of threads.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

__all__ = ["thread_map"]

Item = TypeVar("Item")
Result = TypeVar("Result")


def thread_map(fn: Callable[[Item], Result], items: Iterable[Item], n_jobs: int) -> Iterator[Result]:
    """``fn`` over ``items`` in up to ``n_jobs`` threads, yielding the results in input order.

    With one job (or one item) the tasks run in the calling thread, where profilers and
    debuggers see them.
    """
    items = list(items)
    if n_jobs <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=min(n_jobs, len(items))) as pool:
        yield from pool.map(fn, items)
