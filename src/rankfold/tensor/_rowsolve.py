"""Batched small least-squares solves shared by the ALS updates (dense, masked, sparse)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from .._parallel import thread_limit

__all__ = ["solve_rows", "nonneg_rows", "accumulate_normal", "small_work_serial", "SMALL_WORK",
           "serial"]


def _jitter(G: torch.Tensor, l2_reg: float) -> torch.Tensor:
    """Ridge added to the diagonal: ``l2_reg`` plus a rounding-level floor."""
    diag = torch.diagonal(G, dim1=-2, dim2=-1)
    scale = diag.mean(dim=-1, keepdim=True).clamp_min(0)
    floor = 10 * torch.finfo(G.dtype).eps * scale
    return torch.clamp_min(floor, 0) + l2_reg


def solve_rows(G: torch.Tensor, B: torch.Tensor, l2_reg: float = 0.0) -> torch.Tensor:
    """Solve ``(G + l2_reg I) a_i = b_i`` for every row.

    ``G`` is ``(R, R)`` (shared) or ``(I, R, R)`` (one per row); ``B`` is ``(I, R)``.
    Positive definite systems are solved directly; when a system is not numerically
    positive definite (a row with fewer observations than the rank and no ridge) the
    pseudo-inverse (minimum-norm) solution is used.
    """
    R = G.shape[-1]
    eye = torch.eye(R, dtype=G.dtype, device=G.device)
    jit = _jitter(G, l2_reg)
    Gr = G + (jit * eye if G.ndim == 2 else jit[..., None] * eye)
    if G.device.type == "cpu":
        return _solve_rows_numpy(Gr, B)
    if G.ndim == 2:
        L, info = torch.linalg.cholesky_ex(Gr)
        if int(info) == 0:
            return torch.cholesky_solve(B.T, L).T
        return B @ torch.linalg.pinv(Gr, hermitian=True)
    L, info = torch.linalg.cholesky_ex(Gr)
    out = torch.cholesky_solve(B[..., None], L)[..., 0]
    bad = info != 0
    if bool(bad.any()):
        out[bad] = (torch.linalg.pinv(Gr[bad], hermitian=True) @ B[bad][..., None])[..., 0]
    return out


def _solve_rows_numpy(Gr: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    # On CPU, numpy's LAPACK: torch's OpenMP-threaded LAPACK spends ~20 ms per tiny
    # factorization when the cores are busy (measured on a shared 2-core machine).
    g = Gr.detach().numpy()
    b = B.detach().numpy()
    try:
        np.linalg.cholesky(g)
        if g.ndim == 2:
            x = np.linalg.solve(g, b.T).T
        else:
            x = np.linalg.solve(g, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        pinv = np.linalg.pinv(g, hermitian=True)
        x = b @ pinv if g.ndim == 2 else (pinv @ b[..., None])[..., 0]
    return torch.from_numpy(np.ascontiguousarray(x, dtype=g.dtype))


def nonneg_rows(A: torch.Tensor, G: torch.Tensor, B: torch.Tensor, l2_reg: float = 0.0,
                sweeps: int = 1) -> torch.Tensor:
    """Non-negative update of ``A`` (I, R) by exact coordinate descent (HALS).

    Minimizes ``a_i^T (G_i + l2 I) a_i / 2 - b_i^T a_i`` over ``a_i >= 0`` one column at a
    time (Cichocki & Phan 2009); each step is exact, so the objective never increases.
    ``G`` is ``(R, R)`` or ``(I, R, R)``.
    """
    A = A.clamp_min(0).clone()
    R = A.shape[1]
    tiny = torch.finfo(A.dtype).tiny
    for _ in range(sweeps):
        for r in range(R):
            if G.ndim == 2:
                g = G[:, r]
                num = B[:, r] - A @ g - l2_reg * A[:, r]
                den = g[r] + l2_reg
                A[:, r] = (A[:, r] + num / max(float(den), tiny)).clamp_min(0)
            else:
                g = G[:, :, r]
                num = B[:, r] - (A * g).sum(1) - l2_reg * A[:, r]
                den = (G[:, r, r] + l2_reg).clamp_min(tiny)
                step = torch.where(G[:, r, r] + l2_reg > 0, num / den, torch.zeros_like(num))
                A[:, r] = (A[:, r] + step).clamp_min(0)
    return A


def accumulate_normal(rows: torch.Tensor, Z: torch.Tensor, y: torch.Tensor,
                      n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row normal equations ``G_i = sum z z^T``, ``b_i = sum y z`` over entries of row i.

    ``rows`` (nnz,) row index of each entry, ``Z`` (nnz, R), ``y`` (nnz,). The outer
    products are formed in chunks so memory stays O(chunk * R^2) beyond O(nnz * R).
    """
    R = Z.shape[1]
    G = torch.zeros(n_rows, R, R, dtype=Z.dtype, device=Z.device)
    b = torch.zeros(n_rows, R, dtype=Z.dtype, device=Z.device)
    chunk = max(1024, (1 << 22) // max(1, R * R))
    # index_add_ on CPU: one thread was ~15x faster than two on the shared machine
    with serial() if Z.device.type == "cpu" else contextlib.nullcontext():
        b.index_add_(0, rows, Z * y[:, None])
        for s in range(0, Z.shape[0], chunk):
            z = Z[s:s + chunk]
            G.index_add_(0, rows[s:s + chunk], z[:, :, None] * z[:, None, :])
    return G, b


SMALL_WORK = 100_000_000
"""Below this many multiply-adds per sweep a fit runs on one CPU thread."""


@contextlib.contextmanager
def small_work_serial(work: float, device: torch.device) -> Iterator[None]:
    """Run a fit whose sweeps cost fewer than :data:`SMALL_WORK` flops on one CPU thread.

    ALS sweeps on small tensors are thousands of tiny kernels; each multithreaded kernel
    pays a fork/join that on a busy machine costs up to a scheduler slice (measured here: a
    Tucker completion took 7.8 s on two threads and 0.7 s on one; masked CP on Kinetic 7.3 s
    vs 1.8 s; CP-ALS of a 100^3 tensor 5.5 s vs 3.8 s). The thread count is restored
    afterwards.
    """
    with thread_limit(1 if device.type == "cpu" and work < SMALL_WORK else None):
        yield


@contextlib.contextmanager
def serial() -> Iterator[None]:
    """Run the enclosed small dense factorizations (SVD/eigh/QR of thin matrices) on one
    CPU thread; the big contractions around them stay multithreaded.

    Measured on the shared 2-core machine: a 200 x 100 SVD took ~125 ms on two threads
    (fork/join waits) and a few ms on one.
    """
    with thread_limit(1):
        yield
