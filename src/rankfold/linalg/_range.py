"""Building blocks of the randomized range finders: operators and orthonormalisation.

Internal module of :mod:`rankfold.linalg.rsvd`. It gives every kind of input the same
matrix-free interface (``mm(X) = A @ X``, ``rmm(X) = A^H @ X`` on torch tensors) and a fast
orthonormalisation (Cholesky-QR2 with a Householder fallback).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from .._array import (
    InputInfo,
    MatrixOperator,
    as_tensor,
    canonical_csr,
    empty_prefaulted,
    torch_dtype_of,
)
from .._parallel import row_block_groups, run_threads, thread_limit
from .._validation import check_finite, check_matrix_shape, param_error
from ._spmm import SparseRows, have_kernels

__all__ = ["LinearMap", "as_linear_map", "orthonormalize", "thin_svd_tall", "fro_norm_sq",
           "serial", "checked_cholesky", "CHOLQR_MAX_COND",
           "right_mul_gram_", "triangular_inverse", "gram64", "orthonormalize_"]

# Cholesky-QR is used only when the basis is this well conditioned (estimated from the
# diagonal of R); otherwise rounding would leave Q far from orthonormal.
CHOLQR_MAX_COND = {torch.float32: 1e3, torch.float64: 1e7}
# thin_svd_tall reads singular values off the Cholesky factor of a float64 Gram matrix:
# their error is about eps64 * cond^2 relative to the largest, so cond is kept small
# enough for the working precision.
_SVD_GRAM_MAX_COND = {torch.float32: 1e4, torch.float64: 1e3}


class LinearMap:
    """``A`` seen through products: ``mm(X) = A @ X`` and ``rmm(X) = A^H @ X``.

    Dense tensors may be batched ``(*, m, n)``; sparse and operator inputs are 2-D.
    Sparse inputs (scipy.sparse or sparse torch tensors) on the CPU use the compiled
    kernels of :mod:`._spmm` when numba is installed (one CSR copy serves both products);
    otherwise, and on other devices, they become torch CSR tensors with a second CSR copy
    of ``A^T``, so both products run as multithreaded row-wise kernels (scipy's sparse @
    dense is single-threaded).
    """

    def __init__(self, *, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                 info: InputInfo, dense: torch.Tensor | None = None,
                 csr: torch.Tensor | None = None, csr_t: torch.Tensor | None = None,
                 rows: SparseRows | None = None,
                 operator: MatrixOperator | None = None) -> None:
        self.shape = shape
        self.dtype = dtype
        self.device = device
        self.info = info
        self.dense = dense
        self._csr = csr
        self._csr_t = csr_t
        self._rows = rows
        self._op = operator
        self.fast_norm_sq: torch.Tensor | None = None  # set when validation computed it

    @property
    def m(self) -> int:
        return int(self.shape[-2])

    @property
    def n(self) -> int:
        return int(self.shape[-1])

    @property
    def batch(self) -> tuple[int, ...]:
        return tuple(self.shape[:-2])

    @property
    def sparse_rows(self) -> SparseRows | None:
        """The compiled-kernel form of a sparse ``A`` (None for other inputs)."""
        return self._rows

    def transposed(self) -> LinearMap:
        """``A^H`` of a sparse (compiled-kernel) real ``A``, as its own CSR copy: the
        kernels read a CSR matrix fastest when its rows are the long side (a view of
        ``A^T`` through ``A``'s CSR ran 3x slower on a wide 50000 x 200000 matrix than
        the copy, whose conversion takes ~40 ms for 5M nonzeros)."""
        rows = self._rows
        assert rows is not None
        return LinearMap(shape=(self.n, self.m), dtype=self.dtype, device=self.device,
                         info=self.info, rows=rows.transpose())

    def mm(self, X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``A @ X`` (``out``: optional buffer the sparse kernels write into)."""
        if self.dense is not None:
            return self.dense @ X
        if self._rows is not None:
            return self._rows.mm(X, out=out)
        if self._csr is not None:
            return self._csr @ X
        return self._op.mm(X)  # type: ignore[union-attr]

    def rmm(self, X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``A^H @ X`` (``out``: optional buffer the sparse kernels write into)."""
        if self.dense is not None:
            # (X^H A)^H streams the row-major A in its storage order; A^H @ X was up to
            # 1.6-1.9x slower on one thread here (MKL sgemm with a transposed A)
            return (X.mH @ self.dense).mH
        if self._rows is not None:
            return self._rows.rmm(X, out=out)
        if self._csr_t is not None:
            return self._csr_t @ X
        return self._op.rmm(X)  # type: ignore[union-attr]


class LowPrecisionMap(LinearMap):
    """A dense ``A`` stored in bfloat16, seen through products in the working dtype.

    ``mm`` and ``rmm`` round their argument to bfloat16, multiply (float32 accumulation
    inside the GEMM) and return the working dtype, so callers (orthonormalisation,
    random test matrices) are unchanged. On CPUs with native bfloat16 dot products
    (AVX512-BF16, AMX) these GEMMs ran 4-6x faster than float32 here.
    """

    def mm(self, X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return (self.dense @ X.to(self.dense.dtype)).to(self.dtype)  # type: ignore[operator]

    def rmm(self, X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        # A^T @ X through the transposed view: 37 ms against 45 ms for (X^T A)^T with
        # bfloat16 A (20000 x 5000, 110 columns; the float32 case prefers the latter)
        return (self.dense.mT @ X.to(self.dense.dtype)).to(self.dtype)  # type: ignore[union-attr]


def bf16_copy(A: LinearMap) -> LowPrecisionMap:
    """The dense ``A`` rounded to bfloat16 (round to nearest: every entry changes by at
    most ``2**-9`` of itself, so ``||A - bf16(A)||_F <= 2**-9 ||A||_F``)."""
    assert A.dense is not None
    d = A.dense
    if d.device.type == "cpu":
        # a fresh 200 MB copy of a 20000 x 5000 matrix: 58 ms through torch's allocator
        # (page faults inside the cast), 10 ms to fault in + 13 ms to cast with
        # empty_prefaulted; the GEMMs on it ran as fast
        low = empty_prefaulted(tuple(d.shape), torch.bfloat16)
        low.copy_(d)
    else:
        low = d.to(torch.bfloat16)
    return LowPrecisionMap(shape=A.shape, dtype=A.dtype, device=A.device, info=A.info,
                           dense=low)


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bfloat16 dot products (AVX512-BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = f.read()
    except OSError:  # not Linux: no cheap way to tell, stay in full precision
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _csr_from_scipy(csr: sp.csr_array, device: torch.device) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        # int32 indices take MKL's sparse kernels when the sizes allow it
        idx = np.int32 if max(csr.nnz, *csr.shape) < 2**31 - 1 else np.int64
        return torch.sparse_csr_tensor(
            torch.from_numpy(csr.indptr.astype(idx)),
            torch.from_numpy(csr.indices.astype(idx)),
            torch.from_numpy(csr.data),
            size=csr.shape, device=device, check_invariants=False,
        )


def _check_finite_fast(t: torch.Tensor, name: str, func: str) -> None:
    """NaN/inf check by one min/max reduction (NaN propagates through both), without
    the full-size boolean temporary of ``isfinite(t).all()`` (about 7x slower here)."""
    lo, hi = torch.aminmax(t)
    if not (bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))):
        check_finite(t, name, func)  # raises with the standard message


def _to_csr(coo: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return coo.to_sparse_csr()


def as_linear_map(A: Any, name: str, func: str, *, batched: bool = True) -> LinearMap:
    """Validate ``A`` and wrap it in a :class:`LinearMap` (dtype and device follow ``A``).

    Integer inputs become float64 (numpy, scipy) or the default dtype (torch).
    """
    if sp.issparse(A):
        check_matrix_shape(A.shape, name, func)
        csr = sp.csr_array(A)
        if csr.dtype.kind == "c":
            raise param_error(name, func, "a real matrix", A)
        if csr.dtype not in (np.float32, np.float64):
            csr = csr.astype(np.float64)
        if csr.data.size:
            # one min/max reduction on torch's threads (NaN propagates), not a boolean
            # temporary of isfinite: 3x faster on 5M values
            _check_finite_fast(torch.from_numpy(csr.data), name, func)
        csr = canonical_csr(csr, A)
        dtype = torch_dtype_of(csr.dtype)
        dev = torch.device("cpu")
        if have_kernels():
            return LinearMap(shape=tuple(csr.shape), dtype=dtype, device=dev,
                             info=InputInfo("sparse", dtype, dev), rows=SparseRows(csr))
        csr_t = sp.csr_array(csr.T)
        return LinearMap(shape=tuple(csr.shape), dtype=dtype, device=dev,
                         info=InputInfo("sparse", dtype, dev),
                         csr=_csr_from_scipy(csr, dev), csr_t=_csr_from_scipy(csr_t, dev))
    if isinstance(A, torch.Tensor) and A.layout != torch.strided:
        if A.ndim != 2:
            raise param_error(name, func, "a 2-D sparse tensor", A)
        check_matrix_shape(A.shape, name, func)
        dtype = A.dtype if A.dtype.is_floating_point else torch.get_default_dtype()
        if dtype not in (torch.float32, torch.float64):
            dtype = torch.float32
        coo = A.to_sparse_coo().coalesce().to(dtype)
        check_finite(coo.values(), name, func)
        if A.device.type == "cpu" and have_kernels():
            idx = coo.indices().numpy()
            csr = sp.csr_array((coo.values().numpy(), (idx[0], idx[1])), shape=tuple(A.shape))
            return LinearMap(shape=tuple(A.shape), dtype=dtype, device=A.device,
                             info=InputInfo("torch", dtype, A.device), rows=SparseRows(csr))
        return LinearMap(shape=tuple(A.shape), dtype=dtype, device=A.device,
                         info=InputInfo("torch", dtype, A.device),
                         csr=_to_csr(coo), csr_t=_to_csr(coo.t().coalesce()))
    if isinstance(A, spla.LinearOperator):
        op = MatrixOperator(A, name, func)
        if op.dtype not in (torch.float32, torch.float64):
            raise param_error(name, func, "a real float32 or float64 LinearOperator", A)
        return LinearMap(shape=tuple(op.shape), dtype=op.dtype, device=op.device,
                         info=op.info, operator=op)
    if isinstance(A, MatrixOperator):
        return LinearMap(shape=tuple(A.shape), dtype=A.dtype, device=A.device,
                         info=A.info, operator=A)
    t, info = as_tensor(A, name, func, ndim=2, batched=batched, finite=False)
    check_matrix_shape(t.shape, name, func, batched=batched)
    if t.is_complex():
        raise param_error(name, func, "a real matrix", A)
    norm_sq = None
    if t.dtype in (torch.float32, torch.float64) and t.is_contiguous() and t.device.type == "cpu":
        # the squared norm (rsvd's precision guard needs it) is one pass that also checks
        # finiteness: NaN and inf propagate into the dot products; an overflowing sum of
        # finite values falls back to the exact test
        norm_sq = _fast_norm_sq(t)
        if not bool(torch.isfinite(norm_sq).all()):
            check_finite(t, name, func)
            norm_sq = None
    else:
        _check_finite_fast(t, name, func)
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
        info = InputInfo(info.kind, t.dtype, t.device)
    out = LinearMap(shape=tuple(t.shape), dtype=t.dtype, device=t.device, info=info, dense=t)
    out.fast_norm_sq = norm_sq
    return out


def _fast_norm_sq(d: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius norms (float64, shape ``d.shape[:-2]``) of a contiguous dense
    ``d``: BLAS dot products over 2**20-entry chunks summed in float64."""
    m, n = d.shape[-2], d.shape[-1]
    flat = d.reshape(-1, m * n)
    out = torch.empty(flat.shape[0], dtype=torch.float64)
    step = 1 << 20
    for b in range(flat.shape[0]):
        total = 0.0
        for i in range(0, flat.shape[1], step):
            x = flat[b, i:i + step]
            total += float(torch.dot(x, x))
        out[b] = total
    return out.reshape(d.shape[:-2]).to(d.device)


def fro_norm_sq(A: LinearMap, chunk: int = 256, *, fast: bool = False) -> torch.Tensor:
    """Squared Frobenius norm in float64, shape ``batch`` (a 0-d tensor for 2-D ``A``).

    Dense inputs are reduced in row chunks (no float64 copy of ``A``); operators are
    applied to the identity in column blocks (the cost of ``n`` matrix-vector products).
    ``fast``: for a contiguous dense ``A``, BLAS dot products over 2**20-entry chunks
    summed in float64: about 4x faster than the float64 reduction and accurate to ~1e-5
    relative (float32 accumulation inside each chunk) -- enough for tests with a margin,
    not for the tolerance mode's error indicator.
    """
    if fast and A.fast_norm_sq is not None:
        return A.fast_norm_sq
    if fast and A.dense is not None and A.dense.is_contiguous():
        return _fast_norm_sq(A.dense)
    if A.dense is not None:
        d = A.dense
        # float64 accumulation in row blocks of about 4M entries (a float32 reduction of
        # 1e8 squares is off by ~2% here, enough to fool the tolerance mode)
        per_row = max(1, d.numel() // max(A.m, 1))
        rows = max(1, (1 << 22) // per_row)
        total = torch.zeros(A.batch, dtype=torch.float64, device=A.device)
        for i in range(0, A.m, rows):
            total += torch.linalg.vector_norm(d[..., i:i + rows, :], dim=(-2, -1),
                                              dtype=torch.float64).square()
        return total
    if A._rows is not None:
        v = torch.from_numpy(A._rows.data).to(torch.float64)
        return v.square().sum()
    if A._csr is not None:
        v = A._csr.values().to(torch.float64)
        return v.square().sum()
    total = torch.zeros((), dtype=torch.float64)
    for j in range(0, A.n, chunk):
        w = min(chunk, A.n - j)
        eye = torch.zeros(A.n, w, dtype=A.dtype, device=A.device)
        eye[j:j + w] = torch.eye(w, dtype=A.dtype, device=A.device)
        total += A.mm(eye).to(torch.float64).square().sum()
    return total


# tensors up to this many elements are processed on one thread (see serial())
SMALL = 1 << 21


@contextmanager
def serial(enabled: bool = True) -> Iterator[None]:
    """Run the enclosed small factorisations on one CPU thread, then restore the count.

    LAPACK calls on ``l x l`` or ``n x l`` matrices take microseconds, but a
    multithreaded call pays a thread fork/join; on a loaded machine that wait costs up to
    a scheduler time slice per call (measured here: a 2000 x 50 SVD took 1 ms on one
    thread and 1 s on two). The big GEMM passes stay multithreaded.
    """
    with thread_limit(1 if enabled else None):
        yield


def _householder(X: torch.Tensor) -> torch.Tensor:
    with serial():
        return torch.linalg.qr(X).Q


def orthonormalize(X: torch.Tensor, *, rounds: int = 2) -> torch.Tensor:
    """An orthonormal basis of the columns of ``X`` (shape ``(*, m, l)``, ``m >= l``).

    Cholesky-QR2 (two rounds of ``X R^{-1}`` with ``R`` the Cholesky factor of the Gram
    matrix, formed in float64) costs one GEMM-like pass instead of Householder QR's
    BLAS-2-bound panel factorisations. When ``X`` is ill conditioned or rank deficient
    the Cholesky factor fails or is untrustworthy, and Householder QR is used instead.
    ``rounds=1`` gives a well-conditioned (not exactly orthonormal) basis, enough between
    power iterations.

    References
    ----------
    Fukaya, Nakatsukasa, Yanagisawa, Yamamoto, "CholeskyQR2: a simple and
    communication-avoiding algorithm for computing a tall-skinny QR factorization",
    ScalA 2014.
    """
    m, l = X.shape[-2], X.shape[-1]
    if l > m or l == 0:
        return _householder(X)
    limit = CHOLQR_MAX_COND.get(X.dtype)
    if limit is None:
        return _householder(X)
    Q = X
    with serial(X.numel() <= SMALL):
        for _ in range(rounds):
            R = _gram_cholesky(Q, limit)
            if R is None:
                return _householder(X)
            # Q R^-1 as a GEMM with the explicit inverse of the small, well-conditioned
            # (checked above) R: a triangular solve with m right-hand sides took 2x the
            # GEMM's time on a 200000 x 60 block here. (A large m x l product keeps all
            # threads.)
            Q = Q @ triangular_inverse(R).to(X.dtype)
    return Q


def triangular_inverse(R: torch.Tensor) -> torch.Tensor:
    """``R^{-1}`` of a small upper-triangular (batched) ``R``, on one thread."""
    with serial():
        eye = torch.eye(R.shape[-1], dtype=R.dtype, device=R.device).expand_as(R)
        return torch.linalg.solve_triangular(R, eye, upper=True)


def _blocked_gram(Y: torch.Tensor, M: torch.Tensor | None, *, exact: bool,
                  store: bool = True, rows: int = 2048) -> torch.Tensor:
    """float64 Gram matrix of ``Y`` (``M`` None) or of ``Y @ M`` with ``Y <- Y @ M`` done
    in place (``store=False``: ``Y`` left unchanged), over cache-sized row blocks of a
    2-D ``Y`` split over the CPU threads.
    ``exact``: each block is converted to float64 before its Gram matrix is taken (exact
    to float64 rounding); otherwise the products run in ``Y``'s dtype."""
    m, l = Y.shape
    if M is not None:
        M = M.to(Y.dtype)
    groups = row_block_groups(m, rows, Y.device, Y.numel() > SMALL)
    wide = exact and Y.dtype != torch.float64

    def part(blocks: list[tuple[int, int]]) -> torch.Tensor:
        tmp = torch.empty(rows, l, dtype=Y.dtype, device=Y.device)
        tmp64 = torch.empty(rows, l, dtype=torch.float64, device=Y.device) if wide else None
        gram = torch.zeros(l, l, dtype=torch.float64, device=Y.device)
        for a, b in blocks:
            t = Y[a:b]
            if M is not None:
                t = torch.mm(t, M, out=tmp[:b - a])
                if store:
                    Y[a:b] = t
            if tmp64 is not None:
                t = tmp64[:b - a].copy_(t)
                gram += t.mH @ t
            else:
                gram += (t.mH @ t).to(torch.float64)
        return gram

    return sum(run_threads(part, groups, len(groups)))  # type: ignore[return-value]


def right_mul_gram_(Y: torch.Tensor, M: torch.Tensor, *, exact: bool = False,
                    store: bool = True) -> torch.Tensor:
    """``Y <- Y @ M`` in place for a tall 2-D ``Y`` (m, l) and square ``M`` (l, l); returns
    the float64 Gram matrix of ``Y @ M`` (``exact``: accumulated in float64; ``store=False``:
    the product is only used for the Gram matrix and ``Y`` is left as it was).

    Row blocks that fit in the L2 cache are multiplied and their Gram matrices taken
    while they are hot: one read and one write of ``Y`` instead of the three passes (and
    a fresh m x l block, whose page faults cost as much as the product here) of
    ``Q = Y @ M; Q^H @ Q``. The blocks are split over the CPU threads.
    """
    return _blocked_gram(Y, M, exact=exact, store=store)


def gram64(Y: torch.Tensor) -> torch.Tensor:
    """``Y^H Y`` accumulated in float64 (``(*, m, l) -> (*, l, l)``); a 2-D CPU ``Y`` is
    converted block by block (no float64 copy of ``Y``)."""
    if Y.ndim == 2 and Y.device.type == "cpu" and Y.dtype != torch.float64:
        return _blocked_gram(Y, None, exact=True)
    Y64 = Y.to(torch.float64)
    return Y64.mH @ Y64


def orthonormalize_(X: torch.Tensor, *, rounds: int = 2) -> torch.Tensor:
    """:func:`orthonormalize` of a 2-D ``X`` that may be overwritten: the
    rounds run in place over cache-sized row blocks (no new ``m x l`` blocks), each
    taking the next round's Gram matrix from the same blocks. Householder QR when
    Cholesky-QR cannot be trusted. All of it runs on :func:`~rankfold._parallel.
    run_threads` workers: no torch intra-op region is left spinning (see
    :func:`_subspace_tall_sparse`)."""
    limit = CHOLQR_MAX_COND.get(X.dtype)
    if X.ndim != 2 or limit is None or X.shape[-1] > X.shape[-2] or not X.is_contiguous():
        return orthonormalize(X, rounds=rounds)
    R = checked_cholesky(_blocked_gram(X, None, exact=False), limit)
    for r in range(rounds):
        if R is None:
            return _householder(X)
        gram = right_mul_gram_(X, triangular_inverse(R))
        if r + 1 < rounds:
            R = checked_cholesky(gram, limit)
    return X


def _gram_cholesky(Y: torch.Tensor, limit: float, *, exact_gram: bool = False,
                   ) -> torch.Tensor | None:
    """Upper Cholesky factor (float64) of ``Y^H Y``, or None when ``Y`` looks worse
    conditioned than ``limit`` (judged from the diagonal of the factor). ``exact_gram``
    forms the Gram matrix in float64 (needed when R's singular values are used)."""
    if exact_gram and Y.dtype != torch.float64:
        gram = gram64(Y)
    else:
        gram = (Y.mH @ Y).to(torch.float64)
    return checked_cholesky(gram, limit)


def checked_cholesky(gram: torch.Tensor, limit: float) -> torch.Tensor | None:
    """Upper Cholesky factor of the float64 Gram matrix ``gram``, or None when it fails or
    its diagonal spreads over more than ``limit`` (too ill conditioned)."""
    with serial():
        R, info = torch.linalg.cholesky_ex(gram, upper=True)
        if bool((info != 0).any()):
            return None
        diag = R.diagonal(dim1=-2, dim2=-1).abs()
        if bool((diag.amax(-1) > limit * diag.amin(-1)).any()):
            return None
    return R


def thin_svd_tall(Y: torch.Tensor, k: int, *, u_transposed: bool = False,
                  gram: torch.Tensor | None = None, coef_only: bool = False,
                  ) -> tuple[torch.Tensor, ...]:
    """Leading ``k`` singular triplets of a tall ``Y`` (``(*, m, L)``, ``m >= L >= k``).

    Returns ``U (*, m, k)``, ``s (*, k)``, ``vh (*, k, L)``; with ``u_transposed``,
    ``U^H`` (*, k, m) as a contiguous tensor instead (no transposed copy needed). Via
    ``Y = Q R`` with ``R`` the Cholesky factor of ``Y^H Y`` (float64): ``U = Y (R^{-1}
    u_k)``, so neither ``Q`` nor an ``m x L`` triangular solve is formed, only one
    ``m x L x k`` product. Falls back to Householder QR for ill-conditioned ``Y``.
    ``gram``: ``Y^H Y`` accumulated in float64, when the caller has it already.
    ``coef_only``: return ``(None, s, vh, C)`` with ``U = Y @ C`` left to the caller
    (``(U, s, vh, None)`` on the Householder fallback).
    """
    m, L = Y.shape[-2], Y.shape[-1]
    limit = _SVD_GRAM_MAX_COND.get(Y.dtype)
    with serial(Y.numel() <= SMALL):
        if limit is None or L > m:
            R = None
        elif gram is not None:
            R = checked_cholesky(gram, limit)
        else:
            R = _gram_cholesky(Y, limit, exact_gram=True)
    if R is None:
        Q = _householder(Y)
        Rq = Q.mH @ Y
        with serial():
            u, s, vh = torch.linalg.svd(Rq, full_matrices=False)
        U = Q @ u[..., :k]
        if coef_only:  # Y may be rank deficient: no C with U = Y C, so U itself
            return U, s[..., :k], vh[..., :k, :], None
        return (U.mH.contiguous() if u_transposed else U), s[..., :k], vh[..., :k, :]
    with serial():
        u, s, vh = torch.linalg.svd(R, full_matrices=False)
        coef = torch.linalg.solve_triangular(R, u[..., :k], upper=True).to(Y.dtype)
    if coef_only:
        return None, s[..., :k].to(Y.dtype), vh[..., :k, :].to(Y.dtype), coef
    U = (coef.mH @ Y.mH) if u_transposed else Y @ coef
    return U, s[..., :k].to(Y.dtype), vh[..., :k, :].to(Y.dtype)
