"""Sparse (CSR) times dense products on CPU threads, compiled with numba when present.

Internal module of :mod:`rankfold.linalg`. Both products read one canonical CSR copy of
``A`` (no transposed copy is built):

- ``A @ X`` gathers rows of ``X``: each thread owns a range of output rows with about
  equal nonzero counts;
- ``A^T @ Y`` scatters scaled rows of ``Y`` into the output. Each thread owns a range of
  *output* rows (columns of ``A``, cut at equal nonzero counts), so the threads write
  disjoint blocks with no private accumulators and no reduction: since the column
  indices of each CSR row are sorted, a thread's nonzeros in row ``i`` are one
  contiguous segment, found once by binary search and kept.

On the 200000 x 50000, 5M-nonzero benchmark matrix with 64 columns (2 threads) these
took 13 ms and 21 ms into reused outputs (21 and 22 ms into fresh ones), against 39 ms
and 72 ms for torch's CSR kernels (which need a transposed copy for the second) and 49
ms and 179 ms for scipy's single-threaded ones. Scattering into per-thread private
accumulators instead took 33 ms (twice the cache footprint plus the reduction).

numba is an optional dependency (``pip install rankfold[fast]``); without it, or off
the CPU, :class:`~rankfold.linalg._range.LinearMap` keeps using torch's CSR kernels and
:class:`~rankfold._array.MatrixOperator` scipy's.
The kernels are serial and release the GIL; :func:`rankfold._parallel.run_threads`
runs them on the CPU threads.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .._array import empty_prefaulted, torch_dtype_of
from .._parallel import cpu_workers, run_threads

__all__ = ["SparseRows", "have_kernels", "tall_workspace", "free_workspace"]

# A^T @ Y: every thread streams all of Y, so their number is capped
_SCATTER_THREADS = 8


@functools.cache
def _table_budget() -> int:
    """Bytes of the table read (``A @ X``: ``X``) or updated (``A^T @ Y``: the output) at
    random rows that a product may touch at once; wider products run in column chunks.
    About 40% of the last-level cache: on the 32 MB L3 here a 12.8 MB table ran at full
    speed, 19 MB tables 1.5-2x slower per column."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size", encoding="ascii") as f:
            text = f.read().strip().upper()
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        l3 = int(text.rstrip("KMG")) * scale
    except (OSError, ValueError):
        l3 = 32 << 20
    return max(1 << 20, int(0.42 * l3))


@functools.cache
def _kernels() -> tuple[Any, Any, Any] | None:
    try:
        import numba
    except ImportError:
        return None

    # cache=True keeps the machine code on disk: the first call in a new environment
    # compiles for ~1 s per dtype combination, later processes load it in milliseconds.
    jit = numba.njit(nogil=True, cache=True, boundscheck=False)

    # The inner loops run over rows taken once per nonzero (1-D contiguous views) with
    # unsigned column indices: a signed index gets numba's negative-index wraparound,
    # which kept LLVM from vectorising the loop (4x slower here).
    @jit
    def gather(indptr, indices, data, X, out, r0, r1, c0):  # pragma: no cover
        # out[i, c0:c0 + w] = sum_j data[j] * X[indices[j]] for rows r0 <= i < r1,
        # X of shape (n, w)
        a, b = np.uint64(c0), np.uint64(c0 + X.shape[1])
        for i in range(r0, r1):
            row = out[i]
            for q in range(a, b):
                row[q] = 0.0
            for j in range(indptr[i], indptr[i + 1]):
                v = data[j]
                x = X[indices[j]]
                for q in range(np.uint64(X.shape[1])):
                    row[a + q] += v * x[q]

    @jit
    def scatter(lo, hi, indices, data, Y, c0, acc, col0):  # pragma: no cover
        # acc[indices[j] - col0] += data[j] * Y[i, c0:c0 + w] for lo[i] <= j < hi[i],
        # acc of shape (rows, w)
        w = np.uint64(acc.shape[1])
        a = np.uint64(c0)
        for i in range(lo.shape[0]):
            if lo[i] == hi[i]:
                continue
            y = Y[i]
            for j in range(lo[i], hi[i]):
                v = data[j]
                row = acc[indices[j] - col0]
                for q in range(w):
                    row[q] += v * y[a + q]

    @jit
    def segment_starts(indptr, indices, cuts, starts, r0, r1):  # pragma: no cover
        # starts[t, i] = first position in row i whose column is >= cuts[t], r0 <= i < r1
        for i in range(r0, r1):
            lo, hi = indptr[i], indptr[i + 1]
            for t in range(cuts.shape[0]):
                c = cuts[t]
                a, b = lo, hi
                while a < b:  # binary search in the sorted row
                    mid = (a + b) >> 1
                    if indices[mid] < c:
                        a = mid + 1
                    else:
                        b = mid
                starts[t, i] = a
                lo = a

    return gather, scatter, segment_starts


def have_kernels() -> bool:
    """Whether the compiled kernels are available (numba importable)."""
    return _kernels() is not None


def _balanced_cuts(counts_cumsum: np.ndarray, parts: int) -> list[int]:
    """``parts + 1`` boundaries in ``[0, len]`` splitting a cumulative count evenly."""
    size = len(counts_cumsum) - 1
    cuts = np.searchsorted(counts_cumsum, np.linspace(0, counts_cumsum[-1], parts + 1)[1:-1])
    return sorted({0, *(int(c) for c in np.clip(cuts, 0, size)), size})


def _empty(shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """An uninitialised block from torch's allocator, for results updated at random rows
    (and gathered from by the next pass): numpy's allocator (transparent huge pages)
    faults a fresh block in faster, but random-row gathers from such a block ran 30%
    slower here (18.6 vs 14.4 ms)."""
    return torch.empty(shape, dtype=torch_dtype_of(dtype)).numpy()


def _column_chunks(width: int, bytes_per_column: int, budget: int, itemsize: int,
                   ) -> list[tuple[int, int]]:
    """Column ranges of at most ``budget`` bytes (``bytes_per_column`` each), in multiples
    of a 64-byte SIMD register where possible (a ragged width ran 1.5x slower here)."""
    if width == 0:
        return []
    lanes = 64 // itemsize
    w = (budget // max(bytes_per_column, 1)) // lanes * lanes
    w = min(width, max(w, 2 * lanes))
    return [(c, min(c + w, width)) for c in range(0, width, w)]


class SparseRows:
    """A 2-D CSR matrix (numpy arrays) with threaded ``A @ X`` and ``A^T @ Y``.

    Parameters
    ----------
    csr : scipy.sparse CSR array or matrix
        Canonical (sorted indices, no duplicates) float32 or float64 CSR matrix of shape
        (m, n). Its arrays are used as they are, not copied.
    """

    def __init__(self, csr: sp.csr_array | sp.csr_matrix) -> None:
        self.shape = (int(csr.shape[0]), int(csr.shape[1]))
        self.indptr = csr.indptr
        self.indices = csr.indices
        self.data = csr.data
        self._segments: dict[int, tuple[list[int], np.ndarray]] = {}

    def transpose(self) -> SparseRows:
        """``A^T`` as its own canonical CSR matrix (scipy's CSC-to-CSR conversion)."""
        csr = sp.csr_array((self.data, self.indices, self.indptr), shape=self.shape)
        return SparseRows(csr.T.tocsr())

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def _workers(self, width: int) -> int:
        # below ~1e6 multiply-adds a second thread costs more than it saves
        jobs = self.shape[0] if self.nnz * width > 1_000_000 else 1
        return cpu_workers(torch.device("cpu"), jobs)

    def mm(self, X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``A @ X`` for ``X`` of shape (n, k) on the CPU, in ``A``'s dtype.

        ``X`` may also be an integer tensor (e.g. int8 random signs: a quarter of the bytes
        to gather). ``out``: an optional contiguous (m, k) tensor of ``A``'s dtype to write
        the result into (reusing one saves the page faults of a fresh large block).
        """
        gather = _kernels()[0]  # type: ignore[index]
        x = np.ascontiguousarray(X.detach().numpy())
        # a fresh result is faulted in before the threads write it: page faults taken
        # inside the kernel cost 24-110 ms for 200000 x 64 here, against ~4 ms up front
        # (the pass itself: 15 ms)
        res = empty_prefaulted((self.shape[0], x.shape[1]), torch_dtype_of(self.data.dtype)
                               ).numpy() if out is None else out.numpy()
        bounds = _balanced_cuts(self.indptr, self._workers(x.shape[1]))
        ranges = list(zip(bounds[:-1], bounds[1:], strict=True))
        chunks = _column_chunks(x.shape[1], self.shape[1] * x.itemsize, _table_budget(),
                                res.itemsize)
        for c0, c1 in chunks:
            # a chunk of X is made contiguous: its rows are then whole cache lines
            xc = x if (c0, c1) == (0, x.shape[1]) else np.ascontiguousarray(x[:, c0:c1])
            args = (self.indptr, self.indices, self.data, xc, res)
            run_threads(lambda r, args=args, c0=c0: gather(*args, *r, c0), ranges,
                        len(ranges))
        return torch.from_numpy(res) if out is None else out

    def _column_segments(self, parts: int) -> tuple[list[int], np.ndarray]:
        """Column cuts with about equal nonzero counts and, for every row, where each
        part's segment starts (``starts[t]``, with ``starts[-1] = indptr[1:]``)."""
        if parts not in self._segments:
            # the cuts only balance the work: counts from a sample of the nonzeros do
            step = max(1, self.nnz // (1 << 18))
            counts = np.bincount(self.indices[::step], minlength=self.shape[1])
            cuts = _balanced_cuts(np.concatenate([[0], np.cumsum(counts)]), parts)
            starts = np.empty((len(cuts), self.shape[0]), dtype=self.indptr.dtype)
            starts[0], starts[-1] = self.indptr[:-1], self.indptr[1:]
            if len(cuts) > 2:
                args = (self.indptr, self.indices,
                        np.asarray(cuts[1:-1], dtype=self.indices.dtype), starts[1:-1])
                bounds = _balanced_cuts(self.indptr, parts)
                ranges = list(zip(bounds[:-1], bounds[1:], strict=True))
                run_threads(lambda r: _kernels()[2](*args, *r),  # type: ignore[index]
                            ranges, len(ranges))
            self._segments[parts] = (cuts, starts)
        return self._segments[parts]

    def rmm(self, Y: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``A^T @ Y`` for ``Y`` of shape (m, k) on the CPU, in ``A``'s dtype (``Y`` may be an
        integer tensor too)."""
        scatter = _kernels()[1]  # type: ignore[index]
        y = np.ascontiguousarray(Y.detach().numpy())
        n = self.shape[1]
        res = _empty((n, y.shape[1]), self.data.dtype) if out is None else out.numpy()
        cuts, starts = self._column_segments(min(self._workers(y.shape[1]),
                                                 _SCATTER_THREADS))
        parts = len(cuts) - 1
        chunks = _column_chunks(y.shape[1], n * res.itemsize, _table_budget(), res.itemsize)

        whole = len(chunks) == 1

        def work(t: int) -> None:
            block = res[cuts[t]:cuts[t + 1]]
            for c0, c1 in chunks:
                # the updated table must be contiguous (whole cache lines): a column chunk
                # is accumulated apart and copied in
                acc = block if whole else np.empty((len(block), c1 - c0), dtype=res.dtype)
                acc.fill(0)
                scatter(starts[t], starts[t + 1], self.indices, self.data, y, c0, acc,
                        cuts[t])
                if not whole:
                    block[:, c0:c1] = acc

        run_threads(work, range(parts), parts)
        return torch.from_numpy(res) if out is None else out


_WORKSPACE = threading.local()


def tall_workspace(shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """A scratch CPU block of this shape and dtype, kept for the calling thread.

    Sparse rsvd writes its tall ``m x l`` block here instead of a fresh allocation: glibc
    hands blocks above 32 MB back to the kernel on every free, and the page faults of a
    fresh 51 MB block cost 5-20 ms on this machine, 10% of a 200000 x 50000 rsvd. One
    block per thread is kept (a new shape or dtype replaces it); :func:`free_workspace`
    releases it. The block never reaches the caller: results are separate tensors.
    """
    buf = getattr(_WORKSPACE, "block", None)
    if buf is None or tuple(buf.shape) != tuple(shape) or buf.dtype != dtype:
        _WORKSPACE.block = None  # release the old block before allocating the new one
        buf = _WORKSPACE.block = torch.empty(shape, dtype=dtype)
    return buf


def free_workspace() -> None:
    """Release the scratch block :func:`tall_workspace` keeps for the calling thread."""
    _WORKSPACE.block = None
