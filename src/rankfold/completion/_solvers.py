"""Batched per-row regularised least squares, the inner step of every alternating method.

Each half step of ALS or alternating minimization solves, for every row ``u`` of one
side, a small ridge problem with its own design matrix::

    x_u = argmin_x || Y[Omega_u] x - v_u ||^2 + sum_j w_uj x_j^2 ,

where ``Y[Omega_u]`` holds the other side's factors at the ``c_u`` observed entries.
Rows are bucketed by ``c_u`` (counts within a factor ``bucket_ratio`` share a bucket and
are zero-padded to the bucket's largest count), so each bucket is one batched tensor
operation. Three solvers share that layout (the registry :data:`SOLVERS`):

``"cholesky"``
    exact: batched Gram ``Y^T Y + W`` (``c k^2`` per row) and batched Cholesky.
``"sketch"``
    the nearly-linear-time solve of Gu, Song, Yin & Zhang (2023): a sparse sign sketch
    ``S Y`` (``zeta c k`` per row), ``R`` from the QR of ``[S Y; W^(1/2)]`` as a
    preconditioner (its condition number is O(1) for a subspace embedding), then a few
    preconditioned CG steps on the normal equations, warm-started from the previous
    factor (or from the sketch-and-solve answer when there is none). Cost
    ``O(c k + k^3)`` per row against ``O(c k^2)``: it wins when ``c >> k``.
``"cholesky_bf16"``
    the same, with the Gram matrix ``Y^T Y`` formed from bfloat16-rounded factors
    (float32 accumulation; the right-hand side and the solve stay in the input
    precision). About 3x faster Gram GEMMs on CPUs with AVX512-BF16 / AMX (and
    slower without them); the solve is exact for a Gram perturbed by ~2^-8 relative,
    so the loss decreases only up to that rounding. On the 10M-rating benchmark the
    test RMSE agreed with ``"cholesky"`` to 1e-5. Opt-in; "auto" never picks it.
``"cg"``
    Jacobi-preconditioned CG, a fixed small number of steps from the warm start (the
    choice of the ``implicit`` package), ``O(c k)`` per step.

Every solver reduces the row's quadratic objective monotonically from the warm start
(CG and PCG minimise it over growing Krylov spaces containing ``x0``), so ALS's training
loss never increases whichever solver runs.

References
----------
Gu, Song, Yin, Zhang. Low Rank Matrix Completion via Robust Alternating Minimization in
Nearly Linear Time. ICLR 2024 (arXiv:2302.11068), the regression solver of Sec. 5.
Rokhlin & Tygert (2008), Avron, Maymounkov & Toledo (2010, Blendenpik):
sketch-and-precondition least squares.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .._parallel import cpu_workers, run_threads

__all__ = ["RowLayout", "build_layout", "solve_side", "SOLVERS", "SolverOptions", "layouts",
           "residual_sq_sum", "auto_threshold"]

# elements of the gathered design (B, c, d) plus the Gram matrices (B, d, d) per chunk:
# bounds the working memory (4 MB in float32 per worker), and a chunk this size stays
# in cache between the gather and the Gram GEMM (measured fastest of 2^18 .. 2^22 on the
# 10M-rating benchmark)
_CHUNK_ELEMENTS = 1 << 20
# from this many observations on, rows are bucketed within a factor 1.1 (else 1.3)
_FINE_BUCKETS_NNZ = 1 << 20


class Bucket(NamedTuple):
    """Rows with similar counts: ``owners`` (B,), padded ``index``/``values`` (B, c).

    Padding entries point at row ``n_other`` (one past the end): the solvers append a
    zero row to the design, so a padded entry contributes nothing and no mask is needed.
    Their ``values`` are zero.
    """

    owners: torch.Tensor
    index: torch.Tensor
    values: torch.Tensor
    count: int


@dataclass
class RowLayout:
    """Bucketed CSR view of the observations of one side (users or items)."""

    n_owners: int
    n_other: int
    counts: torch.Tensor
    buckets: list[Bucket]


@dataclass
class SolverOptions:
    """Options of the inner solvers (see the module docstring)."""

    solver: str = "cholesky"
    auto_factor: float = 64.0
    auto_min_rank: int = 1024
    auto_min_count: int = 65536
    sketch_factor: float = 3.0
    sketch_nnz: int = 4
    max_inner: int = 20
    inner_tol: float = 1e-8
    cg_steps: int = 3
    workers: int | None = None


def build_layout(owner: np.ndarray, other: np.ndarray, values: np.ndarray, n_owners: int,
                 n_other: int, *, dtype: torch.dtype, device: torch.device,
                 bucket_ratio: float = 1.3) -> RowLayout:
    """Bucket the observations by owner (row) count; memory is O(nnz) (padding <= ratio)."""
    index_dtype = np.int32 if n_other < 2**31 - 1 else np.int64
    # by (owner, other): deterministic for unique pairs (duplicates are merged before)
    # and about twice as fast as a stable sort by owner on 1e7 observations
    order = np.argsort(owner.astype(np.int64) * max(n_other, 1) + other)
    owner_s, other_s, values_s = owner[order], other[order], values[order]
    counts = np.bincount(owner_s, minlength=n_owners).astype(np.int64)
    starts = np.zeros(n_owners + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    active = np.flatnonzero(counts > 0)
    active = active[np.argsort(counts[active], kind="stable")]
    buckets: list[Bucket] = []
    i = 0
    while i < len(active):
        c_lo = counts[active[i]]
        limit = max(int(math.floor(c_lo * bucket_ratio)), c_lo + 1)
        j = int(np.searchsorted(counts[active], limit, side="right"))
        j = max(j, i + 1)
        owners = active[i:j]
        c = int(counts[owners].max())
        ar = np.arange(c)
        mask = ar[None, :] < counts[owners][:, None]
        pos = np.where(mask, starts[owners][:, None] + ar[None, :], 0)
        buckets.append(Bucket(
            owners=torch.from_numpy(owners).to(device),
            index=torch.from_numpy(np.where(mask, other_s[pos], n_other).astype(index_dtype)
                                   ).to(device),
            values=torch.from_numpy(np.where(mask, values_s[pos], 0.0)).to(device, dtype),
            count=c,
        ))
        i = j
    return RowLayout(n_owners, n_other, torch.from_numpy(counts).to(device), buckets)


def _bmv(A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # (B, c, d) x (B, d): a broadcast multiply and a row sum is ~3x faster on CPU than a
    # bmm with one output column (measured on the 10M-rating benchmark's chunks)
    return (A * x.unsqueeze(-2)).sum(-1)


def _bmtv(A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.bmm(x.unsqueeze(1), A).squeeze(1)


def _cholesky_solve(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    L, info = torch.linalg.cholesky_ex(A)
    if bool((info > 0).any()):
        # singular rows (fewer observations than unknowns and no ridge): tiny jitter
        scale = A.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp_min(1.0)
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        jitter = torch.finfo(A.dtype).eps * A.shape[-1] * 10
        L = torch.linalg.cholesky(A + (jitter * scale)[:, None, None] * eye)
    return torch.cholesky_solve(b.unsqueeze(-1), L).squeeze(-1)


def _solve_cholesky(Yg: torch.Tensor, v: torch.Tensor, W: torch.Tensor,
                    x0: torch.Tensor | None, opts: SolverOptions,
                    generator: torch.Generator | None) -> torch.Tensor:
    A = torch.bmm(Yg.transpose(1, 2), Yg)
    A.diagonal(dim1=-2, dim2=-1).add_(W)
    return _cholesky_solve(A, _bmtv(Yg, v))


def _solve_cholesky_bf16(Yg: torch.Tensor, v: torch.Tensor, W: torch.Tensor,
                         x0: torch.Tensor | None, opts: SolverOptions,
                         generator: torch.Generator | None) -> torch.Tensor:
    Yb = Yg.to(torch.bfloat16)
    A = torch.bmm(Yb.transpose(1, 2), Yb).to(Yg.dtype)
    A.diagonal(dim1=-2, dim2=-1).add_(W)
    return _cholesky_solve(A, _bmtv(Yg, v))


def _pcg(Yg: torch.Tensor, v: torch.Tensor, W: torch.Tensor, x: torch.Tensor,
         precond: Callable[[torch.Tensor], torch.Tensor], n_iter: int,
         tol: float) -> torch.Tensor:
    """Batched preconditioned CG on (Y^T Y + diag W) x = Y^T v from x (monotone objective)."""
    x = x.clone()
    r = _bmtv(Yg, v - _bmv(Yg, x)) - W * x
    r0 = r.norm(dim=-1).amax()
    if float(r0) == 0.0:
        return x
    z = precond(r)
    p = z
    rz = (r * z).sum(-1)
    for _ in range(n_iter):
        q = _bmtv(Yg, _bmv(Yg, p)) + W * p
        pq = (p * q).sum(-1)
        alpha = torch.where(pq > 0, rz / torch.where(pq > 0, pq, 1), 0)
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * q
        if float(r.norm(dim=-1).amax()) <= tol * float(r0):
            break
        z = precond(r)
        rz_new = (r * z).sum(-1)
        beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, 1), 0)
        p = z + beta[:, None] * p
        rz = rz_new
    return x


def _solve_sketch(Yg: torch.Tensor, v: torch.Tensor, W: torch.Tensor,
                  x0: torch.Tensor | None, opts: SolverOptions,
                  generator: torch.Generator | None) -> torch.Tensor:
    B, c, d = Yg.shape
    s = min(c, max(d + 1, int(math.ceil(opts.sketch_factor * d))))
    zeta = min(opts.sketch_nnz, s)
    dev = Yg.device
    scale = 1.0 / math.sqrt(zeta)
    # sparse sign embedding S (s x c, zeta nonzeros per column), shared by the batch and
    # applied as one sparse x dense product over the (c, B d) view of the designs (2.7x
    # faster than zeta scatter-adds along dim 1 on CPU)
    rows = torch.randint(0, s, (zeta * c,), generator=generator, device=dev)
    sign = (torch.randint(0, 2, (zeta * c,), generator=generator, device=dev) * 2 - 1)
    sign = sign.to(Yg.dtype) * scale
    cols = torch.arange(c, device=dev).repeat(zeta)
    S = torch.sparse_coo_tensor(torch.stack([rows, cols]), sign, (s, c),
                                check_invariants=False).coalesce()
    SY = torch.sparse.mm(S, Yg.permute(1, 0, 2).reshape(c, B * d)).view(s, B, d)
    SY = SY.permute(1, 0, 2)
    Sv = torch.sparse.mm(S, v.T.contiguous()).T if x0 is None else None
    eye = torch.diag_embed(W.clamp_min(0).sqrt())
    R = torch.linalg.qr(torch.cat([SY, eye], dim=1), mode="r").R
    # guard exactly singular R (a row with too few observations and no ridge)
    diag = R.diagonal(dim1=-2, dim2=-1)
    tiny = diag.abs() <= torch.finfo(R.dtype).eps * diag.abs().amax(-1, keepdim=True).clamp_min(1)
    if bool(tiny.any()):
        R = R + torch.diag_embed(torch.where(tiny, torch.ones_like(diag), 0))

    def precond(r: torch.Tensor) -> torch.Tensor:
        y = torch.linalg.solve_triangular(R.transpose(1, 2), r.unsqueeze(-1), upper=False)
        return torch.linalg.solve_triangular(R, y, upper=True).squeeze(-1)

    if x0 is None:  # sketch-and-solve start
        x0 = precond(_bmtv(SY, Sv))
    return _pcg(Yg, v, W, x0, precond, opts.max_inner, opts.inner_tol)


def _solve_cg(Yg: torch.Tensor, v: torch.Tensor, W: torch.Tensor, x0: torch.Tensor | None,
              opts: SolverOptions, generator: torch.Generator | None) -> torch.Tensor:
    diag = (Yg * Yg).sum(1) + W
    diag = torch.where(diag > 0, diag, torch.ones_like(diag))
    if x0 is None:
        x0 = torch.zeros(Yg.shape[0], Yg.shape[2], dtype=Yg.dtype, device=Yg.device)
    return _pcg(Yg, v, W, x0, lambda r: r / diag, opts.cg_steps, 0.0)


SolverFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None,
                     SolverOptions, torch.Generator | None], torch.Tensor]

#: name -> batched row solver ``(Yg (B,c,d), v (B,c), W (B,d), x0 (B,d)|None, opts, gen)``
SOLVERS: dict[str, SolverFn] = {
    "cholesky": _solve_cholesky,
    "cholesky_bf16": _solve_cholesky_bf16,
    "sketch": _solve_sketch,
    "cg": _solve_cg,
}


def auto_threshold(d: int, n_other: int, opts: SolverOptions) -> int:
    """Smallest row count for which ``solver="auto"`` uses the sketched solve.

    Measured on CPU (benchmarks/completion.py, part "sketch"): the exact batched solve
    was faster at every tested size (ranks 16-512, 256-65,536 observations per row;
    closest at rank 256 with 4,096 per row, sketch / exact = 1.18). The Gram matrix is
    one GEMM near peak, while the sketch, each PCG step and the ``4k x k`` QR are
    further passes or ``k^3`` work; the ratio fell with the rank up to 256 and rose
    again at 512. The sketch can only win asymptotically (``c >> k`` with a large
    ``k``), so "auto" uses it only for rank >= ``auto_min_rank`` and rows with at least
    ``max(auto_min_count, auto_factor k log n)`` observations.
    """
    if d < opts.auto_min_rank:
        return 2**62
    return max(opts.auto_min_count,
               int(math.ceil(opts.auto_factor * d * math.log(max(n_other, 2)))))


def solve_side(layout: RowLayout, Y: torch.Tensor, offset: torch.Tensor | None,
               row_weight: torch.Tensor, ridge: torch.Tensor, X0: torch.Tensor | None,
               opts: SolverOptions, generator: torch.Generator | None = None,
               out: torch.Tensor | None = None, sq_residual: list[float] | None = None,
               ) -> torch.Tensor:
    """Solve every row's ridge problem of one side.

    Parameters
    ----------
    layout : RowLayout
        Bucketed observations of this side (owner rows x other side).
    Y : Tensor, shape (n_other, d)
        Design rows of the other side.
    offset : Tensor, shape (n_other,), optional
        Subtracted from each observed value (global mean + the other side's bias).
    row_weight : Tensor, shape (n_owners,)
        Per-row regularisation multiplier (``count ** exponent`` for ALS-WR).
    ridge : Tensor, shape (d,)
        Per-coordinate regularisation; row ``u`` uses ``row_weight[u] * ridge``.
    X0 : Tensor, shape (n_owners, d), optional
        Warm start (the previous factor).
    opts : SolverOptions
        ``opts.solver`` in ``{"cholesky", "sketch", "cg", "auto"}``.

    sq_residual : list, optional
        When given, ``sum ||Y[Omega_u] x_u - v_u||^2`` at the solution is appended (the
        data term of the objective, without a second pass over the observations).

    Returns
    -------
    Tensor, shape (n_owners, d)
        Rows without observations are zero (the minimiser of the ridge alone).
    """
    d = Y.shape[1]
    X = out if out is not None else torch.zeros(layout.n_owners, d, dtype=Y.dtype,
                                                device=Y.device)
    threshold = auto_threshold(d, layout.n_other, opts)
    # one zero row past the end: padded entries gather zeros (see Bucket)
    Ye = torch.cat([Y, Y.new_zeros(1, d)])
    off = None if offset is None else torch.cat([offset, offset.new_zeros(1)])
    jobs: list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for b in layout.buckets:
        if opts.solver == "auto":
            name = "sketch" if b.count >= threshold else "cholesky"
        else:
            name = opts.solver
        step = max(1, _CHUNK_ELEMENTS // ((b.count + d) * d))
        for lo in range(0, b.owners.shape[0], step):
            jobs.append((name, b.owners[lo:lo + step], b.index[lo:lo + step],
                         b.values[lo:lo + step]))

    def run(job: tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor | None:
        name, owners, idx, v = job
        B, c = idx.shape
        flat = idx.reshape(-1)
        Yg = Ye.index_select(0, flat).view(B, c, d)
        if off is not None:
            v = v - off.index_select(0, flat).view(B, c)
        W = row_weight[owners].unsqueeze(-1) * ridge
        x0 = X0[owners] if X0 is not None else None
        x = SOLVERS[name](Yg, v, W, x0, opts, generator)
        X[owners] = x
        if sq_residual is None:
            return None
        return (v - _bmv(Yg, x)).double().pow(2).sum()

    workers = _workers(opts, Y.device, len(jobs),
                       any(j[0] == "sketch" for j in jobs))
    if workers > 1:
        results = run_threads(run, jobs, workers)
    else:
        results = [run(j) for j in jobs]
    if sq_residual is not None:
        total = sum((float(r) for r in results if r is not None), 0.0)
        sq_residual.append(total)
    return X


def _workers(opts: SolverOptions, device: torch.device, n_jobs: int, random: bool) -> int:
    """Number of worker threads for the chunks of one half step (1 = run inline).

    On CPU the chunks are independent; running them on ``torch.get_num_threads()``
    Python threads with one torch thread each avoids the intra-op pool's fork/join on
    each of the many small batched kernels (see :mod:`rankfold._parallel`).
    The sketched solver draws from the shared generator and stays sequential.
    """
    if random:
        return 1
    return cpu_workers(device, n_jobs, opts.workers)


def layouts(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int],
            *, dtype: torch.dtype, device: torch.device) -> tuple[RowLayout, RowLayout]:
    """User-side and item-side layouts of the same observations."""
    # large problems: finer buckets (less zero padding, 1.1 instead of 1.3); small ones:
    # fewer buckets (fewer kernel launches, which dominate there)
    ratio = 1.1 if rows.size >= _FINE_BUCKETS_NNZ else 1.3
    users = build_layout(rows, cols, values, shape[0], shape[1], dtype=dtype, device=device,
                         bucket_ratio=ratio)
    items = build_layout(cols, rows, values, shape[1], shape[0], dtype=dtype, device=device,
                         bucket_ratio=ratio)
    return users, items


def residual_sq_sum(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
                    U: torch.Tensor, V: torch.Tensor, offset: torch.Tensor | None = None,
                    chunk: int = 1 << 20) -> float:
    """sum over observations of (value - offset - <U[row], V[col]>)^2, in chunks, float64."""
    total = 0.0
    for lo in range(0, rows.shape[0], chunk):
        r, c = rows[lo:lo + chunk], cols[lo:lo + chunk]
        pred = (U[r] * V[c]).sum(-1)
        res = values[lo:lo + chunk] - pred
        if offset is not None:
            res = res - offset[lo:lo + chunk]
        total += float((res.double() ** 2).sum())
    return total

