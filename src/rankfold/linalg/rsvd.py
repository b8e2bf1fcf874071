"""Randomized SVD: fixed rank (subspace iteration or block Krylov) and to a tolerance.

:func:`rsvd` computes a truncated SVD ``A ~ U diag(S) Vh`` of a dense, sparse or
matrix-free ``A`` from a few passes over it. With ``rank=`` it returns that many
singular triplets; with ``tol=`` it grows the approximation block by block until the
relative Frobenius error ``||A - U diag(S) Vh||_F / ||A||_F`` is at most ``tol`` and
returns the smallest rank that meets it. :class:`RSVD` is a thin estimator over it with
the fit/transform interface of scikit-learn's ``TruncatedSVD``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from .._array import empty_prefaulted, to_output
from .._errors import ConvergenceError, InvalidParameterError, NotFittedError
from .._parallel import cpu_workers, row_block_groups, run_threads
from .._random import GeneratorLike, check_generator
from .._validation import check_exactly_one, check_float, check_int, check_option
from ._range import (
    CHOLQR_MAX_COND,
    SMALL,
    LinearMap,
    as_linear_map,
    bf16_copy,
    checked_cholesky,
    cpu_has_fast_bf16,
    fro_norm_sq,
    orthonormalize,
    orthonormalize_,
    right_mul_gram_,
    serial,
    thin_svd_tall,
    triangular_inverse,
)
from ._spmm import tall_workspace

__all__ = ["SVDResult", "rsvd", "RSVD", "RSVD_METHODS"]

logger = logging.getLogger(__name__)

_DEFAULT_N_ITER = {"subspace": 4, "krylov": 2}
_DEFAULT_N_ITER_TOL = 2
_DEFAULT_OVERSAMPLE = 10
PRECISIONS = ("auto", "full", "mixed")
# "auto" takes the mixed path for dense float32 matrices with at least this many entries
_MIXED_MIN_ENTRIES = 1 << 22
# the mixed result is kept when 2 ||A - bf16(A)||_F <= 2 * 2**-9 ||A||_F (what rounding A
# can add, at most, to the error of the basis) is at most this fraction of the error reached
_MIXED_REL_BOUND = 0.01
_BF16_UNIT_ROUNDOFF = 2.0 ** -9
# tol mode: "auto" goes mixed only when the residuals it refines stay >= 100x the rounding
# (tol ||A||_F >= 100 * 2**-9 ||A||_F), so the bf16 passes cannot steer the basis
_MIXED_MIN_TOL = 0.2


class SVDResult(NamedTuple):
    """A (truncated) SVD ``A ~ U @ diag(S) @ Vh``.

    Attributes
    ----------
    U : array or tensor, shape (*, m, k)
        Left singular vectors (orthonormal columns).
    S : array or tensor, shape (*, k)
        Singular values in non-increasing order.
    Vh : array or tensor, shape (*, k, n)
        Right singular vectors as rows (orthonormal rows), as in ``torch.linalg.svd``.
    """

    U: Any
    S: Any
    Vh: Any


# --- fixed-rank algorithms -----------------------------------------------------------------

def _randn(A: LinearMap, rows: int, cols: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(*A.batch, rows, cols, generator=g, dtype=A.dtype, device=A.device)


def _random_signs(rows: int, cols: int, g: torch.Generator, *, chunks: int = 4,
                  ) -> torch.Tensor:
    """A CPU ``(rows, cols)`` int8 matrix of random signs (Rademacher), drawn in ``chunks``
    row blocks on the CPU threads, each from a generator seeded by ``g`` (the result does
    not depend on the number of threads). Each sign is the lowest bit of a random byte
    (random int64 words seen as bytes): 3x faster than ``randint(0, 2)`` per entry."""
    out = torch.empty(rows, cols, dtype=torch.int8)
    seeds = torch.randint(0, 2**62, (chunks,), generator=g).tolist()
    step = -(-rows // chunks)

    def draw(c: int) -> None:
        block = out[c * step:(c + 1) * step]
        if block.numel():
            gc = torch.Generator().manual_seed(int(seeds[c]))
            words = torch.empty(-(-block.numel() // 8), dtype=torch.int64).random_(
                generator=gc)  # uniform in [0, 2^63): every bit but the top one is fair
            bits = words.view(torch.int8)[:block.numel()].view(block.shape)
            torch.bitwise_and(bits, 1, out=block)
            block.mul_(2).sub_(1)

    workers = cpu_workers(torch.device("cpu"), chunks if out.numel() > SMALL else 1)
    run_threads(draw, range(chunks), workers)
    return out


def _subspace_range(A: LinearMap, ell: int, n_iter: int, generator: torch.Generator,
                    *, final_orth: bool = True) -> torch.Tensor:
    """Orthonormal basis ``Q`` (*, m, ell) of ``range((A A^H)^q A Omega)`` (with
    ``final_orth=False``: the last block ``(A A^H)^q A Omega``-like, not orthonormalised)."""
    Y = A.mm(_randn(A, A.n, ell, generator))
    for _ in range(n_iter):
        W = orthonormalize(A.rmm(orthonormalize(Y, rounds=1)), rounds=1)
        Y = A.mm(W)
    return orthonormalize(Y, rounds=2) if final_orth else Y


def _svd_of_projection(A: LinearMap, Q: torch.Tensor, keep: int | None = None,
                       ) -> tuple[torch.Tensor, ...]:
    """SVD of ``Q Q^H A`` from one pass ``A^H Q``: ``(Q u, s, vh)``, ell triplets, with
    only the first ``keep`` left vectors formed (the ``m x ell x keep`` product)."""
    Bh = A.rmm(Q)  # (n, ell) = (Q^H A)^H
    # Bh = u s vh => B = vh^H s u^H; the tall SVD via the Cholesky factor of the float64
    # Gram matrix (Householder fallback when ill conditioned): 33 ms -> ~6 ms for 50000 x 60
    uh, s, vh = thin_svd_tall(Bh, Bh.shape[-1], u_transposed=True)
    return Q @ vh[..., :keep, :].mH, s, uh


def _subspace(A: LinearMap, rank: int, *, n_iter: int, oversample: int,
              block_size: int | None, generator: torch.Generator,
              low: LinearMap | None = None) -> tuple[torch.Tensor, ...]:
    """Randomized subspace iteration (Halko, Martinsson, Tropp 2011, Alg. 4.4 + 5.1).

    ``2 * n_iter + 2`` passes over ``A`` with ``rank + oversample`` columns; every
    intermediate basis is re-orthonormalised (Cholesky-QR2) so float32 does not lose the
    trailing directions. ``block_size`` is not used. With ``low`` (a bfloat16 copy of
    ``A``) the range is found with ``low`` and only the final projection reads ``A``.
    """
    ell = min(rank + oversample, A.m, A.n)
    if A.sparse_rows is not None and low is None:
        # whole 64-byte SIMD registers per row in the sparse kernels (a ragged 60 columns
        # ran 1.5x slower than 64); the extra samples only add accuracy
        lanes = 64 // A.dtype.itemsize
        width = min(-(-ell // lanes) * lanes, A.m, A.n)
        if A.m >= A.n:
            out = _subspace_tall_sparse(A, rank, width, n_iter, generator)
            if out is not None:
                return out
        else:  # the tall side is A^H's: A ~ (U' S Vh')^H, signs still to be fixed
            out = _subspace_tall_sparse(A.transposed(), rank, width, n_iter, generator)
            if out is not None:
                U, S, Vh = out[:3]
                return Vh.mH, S, U.mH
    if A.dense is not None and not A.batch and A.device.type == "cpu" \
            and A.dtype in CHOLQR_MAX_COND:
        # the last block's Cholesky-QR2 folded into B and U (Q is not formed)
        Y = _subspace_range(low if low is not None else A, ell, n_iter, generator,
                            final_orth=False)
        return _finish_tall(A, Y, rank, ell)
    Q = _subspace_range(low if low is not None else A, ell, n_iter, generator)
    return _svd_of_projection(A, Q, rank)


def _subspace_tall_sparse(A: LinearMap, rank: int, ell: int, n_iter: int,
                          generator: torch.Generator) -> tuple[torch.Tensor, ...] | None:
    """:func:`_subspace` for a sparse ``A`` with ``m >= n``, with less work on the tall side.

    Returns ``(U, S, Vh, True)`` (the signs of ``U`` and ``Vh`` already fixed), or ``(U,
    S, Vh)`` when the final block was too ill conditioned for Cholesky-QR (Householder QR
    and one more pass instead), or None for dtypes without a Cholesky-QR limit.

    A pass over a sparse ``A`` costs about as much as a Cholesky-QR of the ``m x l``
    block it produces, so the tall side gets only what the result needs:

    - between passes the tall ``Y = A W`` is not orthonormalised: ``A^H Y`` is, on the
      short side. Both give the same span; their float rounding is the same order
      (``eps cond(Y)^2`` relative either way, from the product or from ``Y R^{-1}``);
    - the final basis: ``P = A^H Y`` first, so the Gram matrix ``Y^H Y = W^H P`` comes
      from the short side; Cholesky-QR2's second Gram matrix, of ``Y R_1^{-1}``, is taken
      from cache-resident blocks of that product without storing it, and
      ``Q = Y (R_1 R_2)^{-1}`` is never formed: the factor goes into ``B^H = P (R_1
      R_2)^{-1}`` (short side) and into the coefficients of ``U = Y C``;
    - the ``m x l`` block is one buffer written by every pass, kept for the thread
      between calls (:func:`~._spmm.tall_workspace`; ``free_workspace()`` releases it);
    - every torch operation runs on one thread or on :func:`~rankfold._parallel.
      run_threads` workers: after a multithreaded torch region, its OpenMP workers spin
      for several milliseconds and slowed the next sparse pass (run on our own threads)
      by 30-40% here.

    """
    limit = CHOLQR_MAX_COND.get(A.dtype)
    if limit is None:
        return None
    # Rademacher test matrix, as int8: the first pass gathers a quarter of the bytes of a
    # float32 Gaussian one (12 -> 3 MB here, 21 -> 12 ms), with the same accuracy (errors
    # equal to 3 digits on the benchmark matrix; Halko et al. 2011, Sec. 7.4)
    W = _random_signs(A.n, ell, generator)
    Y = A.mm(W, out=tall_workspace((A.m, ell), A.dtype))
    if n_iter == 0:
        W = W.to(A.dtype)
    for _ in range(n_iter):
        W = orthonormalize_(A.rmm(Y), rounds=1)  # well conditioned is enough here
        A.mm(W, out=Y)
    P = A.rmm(Y)
    with serial():
        G1 = (W.mH @ P).to(torch.float64)
    return _finish_tall(A, Y, rank, ell, P=P, gram=(G1 + G1.mH) / 2)


def _finish_tall(A: LinearMap, Y: torch.Tensor, rank: int, ell: int, *,
                 P: torch.Tensor | None = None, gram: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, ...]:
    """SVD of ``Q Q^H A`` for the range ``Q`` of a tall 2-D block ``Y`` (m, ell), without
    forming ``Q``: Cholesky-QR2 of ``Y`` (first Gram matrix ``gram`` if the caller has it,
    the second from cache-resident blocks of ``Y R_1^{-1}`` that are not stored),
    ``B^H = A^H Q = P (R_1 R_2)^{-1}`` with ``P = A^H Y`` (given or one pass), and
    ``U = Y C`` with the sign convention applied from the same blocks.

    Returns ``(U, S, Vh, True)`` (signs fixed), or ``(U, S, Vh)`` from Householder QR
    and one more pass when ``Y`` is too ill conditioned for Cholesky-QR in its dtype.
    """
    limit = CHOLQR_MAX_COND[A.dtype]
    if gram is None:
        with serial(Y.numel() <= SMALL):
            gram = (Y.mH @ Y).to(torch.float64)
    R1 = checked_cholesky(gram, limit)
    R2 = None
    if R1 is not None:
        R1inv = triangular_inverse(R1)
        # the second Gram matrix, of Q1 = Y R1^{-1} (formed block by block, not stored)
        R2 = checked_cholesky(right_mul_gram_(Y, R1inv, store=False), limit)
    if R2 is None:
        # too ill conditioned for Cholesky-QR in this dtype: Householder QR of the final
        # block (same span) and one more pass; the passes before are kept
        return _svd_of_projection(A, orthonormalize(Y), rank)
    R2inv = R1inv @ triangular_inverse(R2)  # Q = Y R1^{-1} R2^{-1}
    if P is None:
        P = A.rmm(Y)
    # B^H = A^H Q = P (R1 R2)^{-1}, formed in place with its exact Gram matrix
    gram_b = right_mul_gram_(P, R2inv, exact=True)
    with serial():
        u, s, vh, coef_b = thin_svd_tall(P, ell, gram=gram_b, coef_only=True)  # B^H = u s vh
    if coef_b is None:
        uh = u[:, :rank].mH.contiguous()
    else:  # u^H = coef_b^H P^H, its row halves on the threads (contiguous output blocks)
        uh = torch.empty(rank, P.shape[0], dtype=P.dtype, device=P.device)
        halves = [(0, rank // 2), (rank // 2, rank)] if rank > 1 else [(0, rank)]
        run_threads(lambda h: torch.mm(coef_b[:, h[0]:h[1]].mH, P.mH, out=uh[h[0]:h[1]]),
                    halves, cpu_workers(P.device, len(halves) if P.numel() > SMALL else 1))
    with serial():
        coef = (R2inv @ vh[:rank].mH.to(torch.float64)).to(A.dtype)
    U, signs = _tall_product_signed(Y, coef)
    return U, s, uh.mul_(signs[:, None]), True


def _tall_product_signed(Y: torch.Tensor, coef: torch.Tensor, *, rows: int = 4096,
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``U = Y @ coef`` for a tall 2-D ``Y`` with :func:`_fix_signs`'s convention applied
    (``U``'s columns multiplied by the returned signs): the column maxima are taken from
    the row blocks while they are hot, saving a pass over ``U``."""
    m, k = Y.shape[0], coef.shape[1]
    U = empty_prefaulted((m, k), Y.dtype) if Y.device.type == "cpu" else \
        torch.empty(m, k, dtype=Y.dtype, device=Y.device)
    groups = row_block_groups(m, rows, Y.device, Y.numel() > SMALL)

    def part(blocks: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        best = torch.full((k,), -1.0, dtype=Y.dtype, device=Y.device)
        value = torch.zeros(k, dtype=Y.dtype, device=Y.device)
        for a, b in blocks:
            blk = torch.mm(Y[a:b], coef, out=U[a:b])
            best, value = _merge_absmax(best, value, *_column_absmax(blk))
        return best, value

    best, value = None, None
    for b_, v_ in run_threads(part, groups, len(groups)):  # in row order
        best, value = (b_, v_) if best is None else _merge_absmax(best, value, b_, v_)
    signs = _signs_of(value)
    return U.mul_(signs), signs


def _project_out(Z: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    with serial(W.numel() <= SMALL):
        for _ in range(2):  # "twice is enough" (Giraud et al. 2005)
            Z = Z - W @ (W.mH @ Z)
    return Z


def _krylov(A: LinearMap, rank: int, *, n_iter: int, oversample: int,
            block_size: int | None, generator: torch.Generator,
            low: LinearMap | None = None) -> tuple[torch.Tensor, ...]:
    """Randomized block Krylov iteration (Musco & Musco 2015, Alg. 2), built on the right.

    Builds an orthonormal basis ``W`` of ``span[Om, (A^H A) Om, ..., (A^H A)^q Om]`` with
    block size ``b`` and keeps ``Y = A W`` from the same passes, so the Rayleigh-Ritz step
    (SVD of ``A W``) needs no extra pass: ``2 q + 1`` passes of ``b`` columns in total.
    The left Krylov space ``range(A W)`` is the one Musco & Musco use. The default block
    size is ``rank + oversample``. ``block_size=rank`` (Musco & Musco's choice) saves flops
    at large ranks (0.8x the time at rank 100 in benchmarks/linalg_rsvd.py) but is less
    accurate at small ranks (singular values off by more than 2% at rank 10 on a slowly
    decaying spectrum, where ``rank + oversample`` is within 2%); blocks narrower than the
    rank are faster still on slowly decaying spectra but cannot resolve a singular value
    of multiplicity above ``b`` (a flat top of the spectrum: ``(A^H A)^j Omega`` then
    spans only ``b`` of its directions).

    With ``low`` (a bfloat16 copy of ``A``) the Krylov passes read ``low``; the leading
    ``rank + oversample`` Ritz vectors then span ``Q`` and one pass ``A^H Q`` over the
    full-precision ``A`` gives the triplets.
    """
    full = A
    if low is not None:
        A = low
    if block_size is None:
        block_size = rank + oversample
    b = min(block_size, A.m, A.n)
    W = orthonormalize(_randn(A, A.n, b, generator))
    Ws, Ys = [W], []
    width = b
    for it in range(n_iter + 1):
        Ys.append(A.mm(Ws[-1]))
        if it == n_iter or width >= A.n:
            break
        with serial():
            Wall = torch.cat(Ws, dim=-1)
        Z = _project_out(A.rmm(Ys[-1]), Wall)
        take = min(b, A.n - width)
        Z = orthonormalize(Z[..., :take])
        Z = orthonormalize(_project_out(Z, Wall))
        Ws.append(Z)
        width += take
    with serial():
        W = torch.cat(Ws, dim=-1)
        Y = torch.cat(Ys, dim=-1)
    if low is not None:
        ell = min(rank + oversample, Y.shape[-1])
        U, _, _ = thin_svd_tall(Y, ell)
        return _svd_of_projection(full, orthonormalize(U, rounds=2), rank)
    U, s, vh = thin_svd_tall(Y, min(rank, Y.shape[-1]))
    return U, s, vh @ W.mH


RSVD_METHODS: dict[str, Callable[..., tuple[torch.Tensor, ...]]] = {
    "subspace": _subspace,
    "krylov": _krylov,
}


# --- adaptive rank (tolerance) -------------------------------------------------------------

def _residual_sq(A: LinearMap, Q: torch.Tensor, B: torch.Tensor, chunk: int = 1024) -> float:
    """``||A - Q B||_F^2`` formed directly in blocks and accumulated in float64.

    Dense ``A``: row blocks. Sparse or operator ``A``: column blocks ``A E_j`` (the cost of
    ``n`` matrix-vector products).
    """
    total = 0.0
    if A.dense is not None:
        for i in range(0, A.m, chunk):
            r = A.dense[i:i + chunk] - Q[i:i + chunk] @ B
            total += float(r.to(torch.float64).square().sum())
        return total
    for j in range(0, A.n, chunk):
        w = min(chunk, A.n - j)
        eye = torch.zeros(A.n, w, dtype=A.dtype, device=A.device)
        eye[j:j + w] = torch.eye(w, dtype=A.dtype, device=A.device)
        r = A.mm(eye) - Q @ B[:, j:j + w]
        total += float(r.to(torch.float64).square().sum())
    return total


def _deflate(Y: torch.Tensor, X: torch.Tensor, Q: torch.Tensor, B: torch.Tensor, *,
             left: bool) -> torch.Tensor:
    """``(A - Q B) X`` from ``Y = A X`` (left) or ``(A - Q B)^H X`` from ``Y = A^H X``."""
    if Q.shape[-1] == 0:
        return Y
    return Y - Q @ (B @ X) if left else Y - B.mH @ (Q.mH @ X)


def _adaptive(A: LinearMap, tol: float, *, n_iter: int, block_size: int | None,
              generator: torch.Generator, low: LinearMap | None = None,
              ) -> tuple[torch.Tensor, ...]:
    """Blocked randomized QB with an error indicator (Yu, Gu, Li 2018, Alg. 2, randQB_EI).

    Grows ``A ~ Q B`` by blocks of ``b`` columns (each refined by ``n_iter`` power
    iterations on the residual ``A - Q B``) while tracking the error indicator
    ``E = ||A||_F^2 - sum_i ||B_i||_F^2`` in float64. Once ``E <= tol^2 ||A||_F^2`` the
    SVD of ``B`` gives the error of every truncation, ``E + sum_{j > r} s_j^2``, and the
    smallest rank ``r`` meeting the target is returned (rank ``r - 1`` misses it). For
    tolerances below the indicator's precision (``tol^2 < 100 eps``: about 3e-3 in
    float32, 1.5e-7 in float64), where the subtraction cancels, the residual is formed
    directly (one more pass) before stopping.

    With ``low`` (a bfloat16 copy of ``A``) the range-finding passes read ``low`` and
    only ``B_i = Q_i^H A`` reads ``A``: the indicator and the returned factors stay exact
    for the basis found, so the tolerance is still met; the rounding can only make the
    basis (and so the rank found) less economical.
    """
    R = low if low is not None else A
    kmax = min(A.m, A.n)
    b = block_size if block_size is not None else min(kmax, max(8, min(64, kmax // 16)))
    norm_sq = float(fro_norm_sq(A))
    target = tol * tol * norm_sq
    if norm_sq == 0.0:
        raise InvalidParameterError(
            "The 'A' parameter of rsvd must not be the zero matrix when 'tol' is given "
            "(the relative error is undefined). Got a matrix with ||A||_F = 0."
        )
    floor = 100.0 * torch.finfo(A.dtype).eps * norm_sq  # below this, E is rounding noise
    Q = torch.empty(A.m, 0, dtype=A.dtype, device=A.device)
    B = torch.empty(0, A.n, dtype=A.dtype, device=A.device)
    err = norm_sq
    while Q.shape[-1] < kmax:
        bb = min(b, kmax - Q.shape[-1])
        first = Q.shape[-1] == 0
        Om = _randn(A, A.n, bb, generator)
        Qi = orthonormalize(_deflate(R.mm(Om), Om, Q, B, left=True), rounds=1)
        for _ in range(n_iter):
            Wi = orthonormalize(_deflate(R.rmm(Qi), Qi, Q, B, left=False), rounds=1)
            Qi = orthonormalize(_deflate(R.mm(Wi), Wi, Q, B, left=True), rounds=1)
        Qi = orthonormalize(Qi if first else _project_out(Qi, Q))
        Bi = A.rmm(Qi).mH
        with serial(Bi.numel() <= SMALL):
            if not first:
                Bi = Bi - (Qi.mH @ Q) @ B
            Q = torch.cat([Q, Qi], dim=-1)
            B = torch.cat([B, Bi], dim=-2)
            err -= float(Bi.to(torch.float64).square().sum())
        logger.debug("rsvd(tol): rank %d, error indicator %.3e", Q.shape[-1],
                     math.sqrt(max(err, 0.0) / norm_sq))
        if err <= max(target, floor) and target < floor:
            err = _residual_sq(A, Q, B)
        if err <= target:
            break
    with serial():
        u, s, vh = torch.linalg.svd(B, full_matrices=False)
    s64 = s.to(torch.float64)
    # tail[r] = sum_{j >= r} s_j^2: the extra error of truncating B to rank r
    tail = torch.flip(torch.cumsum(torch.flip(s64.square(), [0]), 0), [0])
    tail = torch.cat([tail, tail.new_zeros(1)])
    ok = (max(err, 0.0) + tail[1:]) <= target
    r = int(torch.nonzero(ok)[0]) + 1 if bool(ok.any()) else s.shape[-1]
    return (Q @ u)[:, :r], s[:r], vh[:r]


# --- public function -----------------------------------------------------------------------

def _use_mixed(precision: str, A: LinearMap, method: str, n_iter: int) -> bool:
    if precision != "auto":
        return precision == "mixed"
    # with fewer passes the cast and a possible full-precision refinement cost more than
    # the cheaper passes save
    passes = 2 * n_iter + 2 if method == "subspace" else 2 * n_iter + 1
    return (A.dense is not None and A.dtype == torch.float32 and A.device.type == "cpu"
            and A.m * A.n >= _MIXED_MIN_ENTRIES and passes >= 5 and cpu_has_fast_bf16())


def _mixed_is_accurate(S: torch.Tensor, A: LinearMap) -> bool:
    """Whether rounding ``A`` to bfloat16 is negligible against the error reached.

    For a basis ``Q`` found from ``A + E``, ``||(I - QQ^H) A||_F`` exceeds what the same
    algorithm guarantees for ``A`` by at most about ``2 ||E||_F`` (Q is near-optimal for
    ``A + E``, whose optimal error is within ``||E||_F`` of ``A``'s, plus
    ``||(I - QQ^H) E||_F <= ||E||_F``), and ``||E||_F <= 2**-9 ||A||_F``. The error
    reached is ``err^2 = ||A||_F^2 - sum_i s_i^2``, since the singular values come from
    the full-precision projection; ``||A||_F^2`` from the fast chunked dot products
    (~1e-5 relative), for which the test leaves a 1e-3 margin.
    """
    norm_a2 = fro_norm_sq(A, fast=True)
    err2 = (norm_a2 * (1 - 1e-3) - S.to(torch.float64).square().sum(-1)).clamp_min(0)
    bound = 2 * _BF16_UNIT_ROUNDOFF * norm_a2.sqrt()
    return bool((bound <= _MIXED_REL_BOUND * err2.sqrt()).all())


def _fix_signs(U: torch.Tensor, Vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the largest-magnitude entry of each column of ``U`` positive (flip Vh too).

    The column-wise argmax runs over cache-sized row blocks: one strided reduction over a
    tall ``U`` (200000 x 50) took 40 ms here, 1 MB blocks 6 ms. Ties keep the first row.
    """
    m, k = U.shape[-2], U.shape[-1]
    step = max(1, (1 << 18) // max(k, 1))
    best, value = _column_absmax(U[..., :step, :])
    for i in range(step, m, step):
        best, value = _merge_absmax(best, value, *_column_absmax(U[..., i:i + step, :]))
    signs = _signs_of(value).unsqueeze(-2)
    # in place: U and Vh are fresh results (a new tall U costs page faults here)
    return U.mul_(signs), Vh.mul_(signs.mT)


def _column_absmax(blk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per column of ``blk`` (*, r, k): the largest magnitude and the entry holding it
    (the first such row on ties)."""
    v, j = blk.abs().max(dim=-2)
    return v, blk.gather(-2, j.unsqueeze(-2)).squeeze(-2)


def _merge_absmax(best: torch.Tensor, value: torch.Tensor, v: torch.Tensor,
                  val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine :func:`_column_absmax` results of earlier rows (``best, value``) and later
    ones (``v, val``); ties keep the earlier rows."""
    better = v > best
    return torch.where(better, v, best), torch.where(better, val, value)


def _signs_of(value: torch.Tensor) -> torch.Tensor:
    """``sign(value)`` with 0 mapped to +1."""
    signs = torch.sign(value)
    return torch.where(signs == 0, torch.ones_like(signs), signs)


def rsvd(
    A: Any,
    rank: int | None = None,
    *,
    tol: float | None = None,
    n_iter: int | None = None,
    oversample: int = _DEFAULT_OVERSAMPLE,
    method: str = "subspace",
    block_size: int | None = None,
    precision: str = "auto",
    generator: GeneratorLike = None,
) -> SVDResult:
    """Randomized truncated SVD to a fixed rank or to a relative error tolerance.

    Parameters
    ----------
    A : array_like, torch.Tensor, scipy.sparse matrix or LinearOperator, shape (*, m, n)
        The matrix. Dense torch tensors may be batched ``(*, m, n)`` (fixed rank only) and
        may live on any device; scipy.sparse, sparse torch tensors and
        :class:`scipy.sparse.linalg.LinearOperator` are used only through products.
    rank : int, optional
        Number of singular triplets, in ``[1, min(m, n)]``. Exactly one of ``rank`` and
        ``tol`` must be given.
    tol : float, optional
        Relative Frobenius error target in ``(0, 1)``: the returned rank is the smallest
        ``r`` with ``||A - U diag(S) Vh||_F <= tol ||A||_F`` for the computed basis
        (randQB_EI). Not available for batched input (call rsvd per matrix).
    n_iter : int, optional
        ``"subspace"``: power (subspace) iterations, each two passes over ``A`` (default 4).
        ``"krylov"``: Krylov depth ``q``, ``2 q + 1`` passes in total (default 2).
        With ``tol``: power iterations per block (default 2).
    oversample : int, default 10
        Extra sampled directions beyond ``rank`` (fixed rank only).
    method : {"subspace", "krylov"}, default "subspace"
        Fixed-rank algorithm (see :data:`RSVD_METHODS`). Block Krylov reaches a given
        accuracy in fewer passes when the spectrum decays slowly. ``tol`` mode always uses
        the blocked QB of Yu, Gu & Li.
    block_size : int, optional
        ``"krylov"``: columns per Krylov block (default ``rank + oversample``;
        ``block_size=rank`` is faster at large ranks; values below ``rank`` miss singular
        values of multiplicity above ``block_size``).
        ``tol`` mode: columns added per step (default ``clip(min(m, n) // 16, 8, 64)``).
    precision : {"auto", "full", "mixed"}, default "auto"
        Dense ``A`` only. ``"mixed"``: the range-finding passes read a
        bfloat16 copy of ``A`` (float32 accumulation) and only the final projection
        ``A^H Q`` reads ``A`` in its own dtype, so the returned triplets are those of
        ``Q Q^H A`` in full precision. Rounding ``A`` to bfloat16 can add at most about
        ``2 ||A - bf16(A)||_F <= 2**-8 ||A||_F`` to the Frobenius error of ``Q``; when
        that bound exceeds 1% of the error reached (i.e. for errors below ~40% of
        ``||A||_F``), one more full-precision power iteration from ``Q`` is run, so the
        accuracy is never left to the rounding. ``"full"``: every pass in ``A``'s dtype.
        ``"auto"``: ``"mixed"`` for float32 matrices with at least 2**22 entries and at
        least 5 passes (``n_iter >= 2``), on CPUs with native bfloat16 dot products
        (AVX512-BF16 / AMX, where bfloat16 GEMMs ran 4-6x faster than float32 here),
        otherwise ``"full"``; sparse and operator inputs always use ``"full"``. With
        ``tol``, the error indicator and the returned factors come from full-precision
        projections ``Q_i^H A``, so the tolerance is met whatever the precision;
        ``"auto"`` picks ``"mixed"`` there only for ``tol >= 0.2`` (smaller residuals
        would be steered by the rounding, and the rank found could grow).
    generator : int, torch.Generator, numpy.random.Generator or None
        Source of the random test matrices; an int gives reproducible results. The global
        random state is never touched.

    Returns
    -------
    SVDResult
        ``U`` (*, m, k), ``S`` (*, k), ``Vh`` (*, k, n) with the dtype of ``A`` (float32
        stays float32), as numpy arrays for non-torch inputs and as tensors on ``A``'s
        device for torch inputs. Signs are fixed: the largest-magnitude entry of each
        column of ``U`` is positive.

    Raises
    ------
    InvalidParameterError
        Bad ``rank``/``tol`` (both, neither, out of range), ``n_iter``, ``oversample``,
        ``method``, ``block_size``, ``generator`` or ``A`` (NaN/inf, complex, wrong type).
    ShapeError
        ``A`` is not a (batched) matrix or is empty.
    ConvergenceError
        The result is not finite.

    Notes
    -----
    Sparse input on the CPU runs on compiled kernels when numba is installed (extra
    ``fast``); their first use in a new environment compiles them (~0.5 s per dtype,
    cached on disk). For tall (or, transposed, wide) sparse input the ``m x l`` working
    block is kept for the calling thread between calls, saving the page faults of a
    fresh block; :func:`rankfold.linalg.free_workspace` releases it.

    References
    ----------
    .. [1] N. Halko, P.-G. Martinsson, J. A. Tropp, "Finding structure with randomness",
       SIAM Review 53(2), 2011: Alg. 4.4 (subspace iteration) and Alg. 5.1.
    .. [2] C. Musco, C. Musco, "Randomized block Krylov methods for stronger and faster
       approximate singular value decomposition", NeurIPS 2015, Alg. 2.
    .. [3] W. Yu, Y. Gu, Y. Li, "Efficient randomized algorithms for the fixed-precision
       low-rank matrix approximation", SIMAX 39(3), 2018, Alg. 2 (randQB_EI).

    Examples
    --------
    >>> import numpy as np
    >>> from rankfold.linalg import rsvd
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((200, 8)) @ rng.standard_normal((8, 100))
    >>> U, S, Vh = rsvd(A, 8, generator=0)
    >>> bool(np.allclose((U * S) @ Vh, A))
    True
    >>> rsvd(A, tol=1e-6, generator=0).S.shape
    (8,)
    """
    func = "rsvd"
    mode = check_exactly_one(func, rank=rank, tol=tol)
    method = check_option(method, "method", func, RSVD_METHODS)
    oversample = check_int(oversample, "oversample", func, low=0)
    n_iter = check_int(n_iter, "n_iter", func, low=0, allow_none=True)
    block_size = check_int(block_size, "block_size", func, low=1, allow_none=True)
    precision = check_option(precision, "precision", func, PRECISIONS)
    if mode == "tol":
        tol = check_float(tol, "tol", func, low=0.0, high=1.0, closed_low=False,
                          closed_high=False)
        if method != "subspace":
            raise InvalidParameterError(
                "The 'method' parameter of rsvd must be 'subspace' when 'tol' is given "
                f"(tolerance mode uses the blocked QB). Got {method!r} instead."
            )
    Amap = as_linear_map(A, "A", func)
    kmax = min(Amap.m, Amap.n)
    if mode == "rank":
        rank = check_int(rank, "rank", func, low=1, high=kmax, high_name="min(m, n)")
    elif Amap.batch:
        raise InvalidParameterError(
            f"The 'tol' parameter of rsvd is supported for a single matrix only (each "
            f"matrix of a batch would need its own rank). Got tol={tol!r} with A of shape "
            f"{tuple(Amap.shape)}; call rsvd on each matrix or pass rank=."
        )
    if mode == "rank" and method == "krylov" and block_size is not None:
        iters = _DEFAULT_N_ITER["krylov"] if n_iter is None else n_iter
        if block_size * (iters + 1) < rank:  # type: ignore[operator]
            raise InvalidParameterError(
                f"The 'block_size' parameter of rsvd must satisfy block_size * (n_iter + 1) "
                f">= rank={rank} for method='krylov'. Got block_size={block_size} with "
                f"n_iter={iters} instead."
            )
    if precision == "mixed" and Amap.dense is None:
        raise InvalidParameterError(
            "The 'precision' parameter of rsvd may be 'mixed' only for a dense A. Got "
            "precision='mixed' with a sparse or operator A instead."
        )
    g = check_generator(generator, Amap.device, func=func)
    signed = False  # whether the method fixed the signs already
    with torch.no_grad():
        if mode == "rank":
            iters = _DEFAULT_N_ITER[method] if n_iter is None else n_iter
            mixed = _use_mixed(precision, Amap, method, iters)
            low = None
            if mixed:
                low = bf16_copy(Amap)
            U, S, Vh, *rest = RSVD_METHODS[method](
                Amap, rank, n_iter=iters, oversample=oversample, block_size=block_size,
                generator=g, low=low)
            signed = bool(rest and rest[0])
            if mixed and not _mixed_is_accurate(S[..., :rank], Amap):
                logger.debug("rsvd: bfloat16 rounding bound too large for the error "
                             "reached; one full-precision power iteration added")
                del low
                Q = orthonormalize(Amap.mm(Vh.mH), rounds=2)
                U, S, Vh = _svd_of_projection(Amap, Q, rank)
                signed = False
            U, S, Vh = U[..., :rank], S[..., :rank], Vh[..., :rank, :]
        else:
            iters = _DEFAULT_N_ITER_TOL if n_iter is None else n_iter
            mixed = precision == "mixed" or (
                precision == "auto" and float(tol) >= _MIXED_MIN_TOL  # type: ignore[arg-type]
                and _use_mixed("auto", Amap, "subspace", iters))
            U, S, Vh = _adaptive(Amap, float(tol), n_iter=iters,  # type: ignore[arg-type]
                                 block_size=block_size, generator=g,
                                 low=bf16_copy(Amap) if mixed else None)
        with serial():
            # one sum per factor (NaN and inf propagate) instead of isfinite temporaries;
            # an overflowing sum falls back to the elementwise test
            if not all(bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())
                       for x in (S, U, Vh)):
                raise ConvergenceError(
                    "rsvd produced non-finite values (overflow in the power iterations?); "
                    "rescale A or use float64."
                )
            if not signed:
                U, Vh = _fix_signs(U.contiguous(), Vh.contiguous())
    return to_output(SVDResult(U, S.contiguous(), Vh), Amap.info)


# --- estimator -----------------------------------------------------------------------------

class RSVD:
    """Truncated randomized SVD as an estimator (fit / transform, like ``TruncatedSVD``).

    Parameters are those of :func:`rsvd`. After :meth:`fit`, ``components_`` (k, n) holds
    the right singular vectors, ``singular_values_`` (k,) the singular values, ``U_``
    (m, k) the left singular vectors of the training matrix and ``rank_`` the rank (found
    adaptively with ``tol``).

    Examples
    --------
    >>> import numpy as np
    >>> from rankfold.linalg import RSVD
    >>> X = np.random.default_rng(0).standard_normal((100, 30))
    >>> est = RSVD(5, generator=0).fit(X)
    >>> est.transform(X).shape
    (100, 5)
    """

    def __init__(self, rank: int | None = None, *, tol: float | None = None,
                 n_iter: int | None = None, oversample: int = _DEFAULT_OVERSAMPLE,
                 method: str = "subspace", block_size: int | None = None,
                 precision: str = "auto", generator: GeneratorLike = None) -> None:
        self.rank = rank
        self.tol = tol
        self.n_iter = n_iter
        self.oversample = oversample
        self.method = method
        self.block_size = block_size
        self.precision = precision
        self.generator = generator

    def fit(self, X: Any, y: Any = None) -> RSVD:
        """Compute the truncated SVD of ``X`` (shape (m, n)); returns ``self``."""
        res = rsvd(X, self.rank, tol=self.tol, n_iter=self.n_iter,
                   oversample=self.oversample, method=self.method,
                   block_size=self.block_size, precision=self.precision,
                   generator=self.generator)
        self.U_, self.singular_values_, self.components_ = res
        self.rank_ = int(res.S.shape[-1])
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise NotFittedError("This RSVD instance is not fitted yet; call fit(X) first.")

    def transform(self, X: Any) -> Any:
        """Project ``X`` (shape (p, n)) onto the right singular vectors: ``X @ Vh^T``."""
        self._check_fitted()
        Vh = self.components_
        if isinstance(Vh, torch.Tensor):
            return torch.as_tensor(X, dtype=Vh.dtype, device=Vh.device) @ Vh.mT
        return X @ Vh.T

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        """``fit(X)`` then ``U_ * singular_values_`` (equal to ``transform(X)``)."""
        self.fit(X)
        return self.U_ * self.singular_values_[None, :]

    def inverse_transform(self, Z: Any) -> Any:
        """Map projections ``Z`` (shape (p, k)) back: ``Z @ Vh``."""
        self._check_fitted()
        return Z @ self.components_

