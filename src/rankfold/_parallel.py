"""Run independent CPU chunks on Python worker threads with one torch thread each.

Many small torch kernels (GEMVs on cache-sized row blocks, batched solves on buckets)
are too small for torch's intra-op pool to split, and each call pays the pool's
fork/join. Running the chunks on ``torch.get_num_threads()`` Python threads, each with
one torch thread, uses every core for them instead (the GIL is released inside every
kernel). The intra-op thread count is global, so it is set to 1 for the duration and
restored afterwards.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

__all__ = ["cpu_workers", "run_threads", "row_block_groups", "thread_limit"]

T = TypeVar("T")


def cpu_workers(device: torch.device, n_jobs: int, requested: int | None = None) -> int:
    """Worker threads for ``n_jobs`` independent chunks on ``device`` (1 = run inline)."""
    if device.type != "cpu" or n_jobs < 2:
        return 1
    n = requested if requested is not None else torch.get_num_threads()
    return max(1, min(n, n_jobs))


@contextlib.contextmanager
def thread_limit(n: int | None) -> Iterator[None]:
    """Temporarily set ``torch.set_num_threads(n)``, restoring the count afterwards (a
    no-op for None or the current count)."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def row_block_groups(m: int, rows: int, device: torch.device, parallel: bool = True,
                     ) -> list[list[tuple[int, int]]]:
    """Row ranges ``[a, b)`` of ``rows`` rows covering ``[0, m)``, in one group of
    consecutive ranges per worker thread (one group when ``parallel`` is False); the
    groups are in row order."""
    blocks = [(i, min(i + rows, m)) for i in range(0, m, rows)]
    workers = cpu_workers(device, len(blocks) if parallel else 1)
    per = -(-len(blocks) // workers) if blocks else 1
    return [blocks[w * per:(w + 1) * per] for w in range(workers)]


_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0  # a forked child inherits the pool object but not its threads
_POOL_LOCK = threading.Lock()
_IN_WORKER = threading.local()


def _reset_after_fork() -> None:
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _mark_worker() -> None:
    _IN_WORKER.active = True


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool, grown on demand: creating threads per call cost ~3 ms here,
    more than some of the passes it runs."""
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL_PID != os.getpid():
            _POOL = None  # inherited through fork: its threads do not exist here
        if _POOL is None or _POOL._max_workers < workers:  # noqa: SLF001
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max(workers, os.cpu_count() or 1),
                                       thread_name_prefix="rankfold",
                                       initializer=_mark_worker)
            _POOL_PID = os.getpid()
        return _POOL


def run_threads(fn: Callable[[Any], T], jobs: Sequence[Any], workers: int) -> list[T]:
    """``[fn(j) for j in jobs]`` on ``workers`` threads (in order), one torch thread each.

    Runs inline when ``workers <= 1`` or when called from one of the pool's own threads
    (a nested call would wait for threads that are busy waiting for it).
    """
    if workers <= 1 or getattr(_IN_WORKER, "active", False):
        return [fn(j) for j in jobs]
    pool = _pool(workers)
    with thread_limit(1):
        return list(pool.map(fn, jobs))
