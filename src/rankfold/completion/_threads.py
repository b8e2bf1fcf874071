"""Thread count for the many small batched kernels of a completion fit.

Alternating methods run thousands of small batched operations (one per bucket of rows
per half step). On small problems the intra-op thread pool costs more than it saves,
and on a busy machine waking idle threads dominates (measured here: 60 AltMin sweeps on
a 120 x 90 matrix took 0.7 s on one thread and 42 s on two, with other jobs running).
``n_threads=None`` therefore uses one thread below :data:`SMALL_WORK` (``|Omega| (k+1)``
multiply-adds per sweep) and torch's setting above it. The setting is restored after
the fit. With more than one thread, each half step of the exact solvers runs its
chunks of rows on that many Python worker threads, each kernel single-threaded
(:func:`rankfold.completion._solvers.solve_side`): on the 10M-rating benchmark torch's
own two intra-op threads were several times slower than one thread on a busy machine,
the worker threads were not.
"""

from __future__ import annotations

from .._parallel import thread_limit

__all__ = ["thread_limit", "SMALL_WORK", "threads_for"]

SMALL_WORK = 20_000_000


def threads_for(n_threads: int | None, nnz: int, rank: int) -> int | None:
    """Threads to use (None = leave torch's setting)."""
    if n_threads is not None:
        return n_threads
    return 1 if nnz * (rank + 1) < SMALL_WORK else None
