"""Independent tasks in threads (the starts of the EM, the draws of a bootstrap, the columns of
the information), and a progress bar over them.

numpy releases the interpreter lock in its array work, so threads run the array-heavy tasks of
a fit in parallel without copying the data to other processes. Each task depends only on its
own input, so the results, returned in input order, do not depend on the number of threads.

The BLAS library under numpy has threads of its own. The products of a fit are small (a
block's p x p sums, the gating's Newton system), so those threads only cost CPU (a default-
threaded BLAS used 4.2 CPU seconds for a 3.4-second fit that takes 3.2 CPU seconds with one,
docs/performance.rst) and make the rounding depend on the machine's thread count: a fit runs
with one BLAS thread (:func:`one_blas_thread`, threadpoolctl, as scikit-learn does), whatever
the user's environment, and uses cores by ``n_jobs`` instead.
"""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

from threadpoolctl import threadpool_limits

__all__ = ["thread_map", "progress_bar", "one_blas_thread"]


def one_blas_thread():
    """A context in which the BLAS library runs in one thread (module docstring)."""
    return threadpool_limits(limits=1, user_api="blas")

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


def progress_bar(iterable, total: int, label: str, enabled: bool):
    """Wrap ``iterable`` in a tqdm progress bar when asked; without tqdm, print a plain line per
    item to stderr (``label: 3/10``) so the user still sees progress."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _plain_progress(iterable, total, label)
    return tqdm(iterable, total=total, desc=label)


def _plain_progress(iterable, total: int, label: str):
    print(f"{label}: 0/{total} (install tqdm for a progress bar)", file=sys.stderr, flush=True)
    for done, item in enumerate(iterable, start=1):
        print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)
        yield item
