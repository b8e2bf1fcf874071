"""Tensor algebra shared by the decompositions: unfoldings, mode products, MTTKRP.

Conventions follow TensorLy (C order): ``unfold(X, n)`` is
``moveaxis(X, n, 0).reshape(I_n, -1)``, and for a CP tensor with factors ``A_k``
``unfold(X, n) = A_n diag(w) khatri_rao([A_k for k != n]).T`` with the first matrix of the
Khatri-Rao product varying slowest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "unfold",
    "fold",
    "khatri_rao",
    "mode_dot",
    "multi_mode_dot",
    "mttkrp",
    "partial_contract",
    "contract_kept",
]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _numpy_ok(*ts: torch.Tensor) -> bool:
    """True when the product can go through numpy (CPU, real float, no autograd)."""
    d = ts[0].dtype
    return all(t.device.type == "cpu" and t.dtype == d and not t.requires_grad
               for t in ts) and d in (torch.float32, torch.float64)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.matmul`` for the big contractions; on CPU through numpy's BLAS.

    Measured on the shared 2-core machine (200^3 float64 times a 200 x 10 matrix): torch's
    GEMM 20-32 ms on two threads, 8-15 ms on one; numpy/OpenBLAS 8-9 ms on one thread, for
    every mode (no orientation penalty, batched middle mode included). The operands are
    shared with numpy without copying; the result is a fresh C-contiguous tensor.
    """
    if _numpy_ok(a, b):
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))
    return torch.matmul(a, b)


def sq_norm(X: torch.Tensor) -> float:
    """Squared Frobenius norm as a Python float (accumulated in float64), no temporary."""
    v = X.reshape(-1)
    if _numpy_ok(v):
        a = v.numpy()
        return float(np.dot(a, a)) if a.dtype == np.float64 else \
            float(np.dot(a.astype(np.float64), a.astype(np.float64)))
    return float(torch.dot(v.double(), v.double()))


def unfolding_gram(X: torch.Tensor, mode: int) -> torch.Tensor:
    """``unfold(X, mode) @ unfold(X, mode).T`` without forming a permuted copy of ``X``.

    End modes are one GEMM on a view; a middle mode is a batched product on the 3-D view
    ``(prod before, I_mode, prod after)`` summed over the batch.
    """
    shape = list(X.shape)
    a = math.prod(shape[:mode])
    b = math.prod(shape[mode + 1:])
    X3 = X.reshape(a, shape[mode], b)
    if a == 1:
        Y = X3.reshape(shape[mode], b)
        return matmul(Y, Y.T)
    if b == 1:
        Y = X3.reshape(a, shape[mode])
        return matmul(Y.T, Y)
    return matmul(X3, X3.transpose(1, 2)).sum(0)


def unfold(X: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-``mode`` unfolding, shape ``(I_mode, prod of the other dims)`` (C order)."""
    return torch.movedim(X, mode, 0).reshape(X.shape[mode], -1)


def fold(M: torch.Tensor, mode: int, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`unfold`: refold ``M`` into a tensor of ``shape``."""
    shape = list(shape)
    full = [shape[mode]] + shape[:mode] + shape[mode + 1:]
    return torch.movedim(M.reshape(full), 0, mode)


def khatri_rao(matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Column-wise Kronecker product; rows indexed C order (first matrix slowest)."""
    out = matrices[0]
    rank = out.shape[1]
    for m in matrices[1:]:
        out = (out[:, None, :] * m[None, :, :]).reshape(-1, rank)
    return out


def mode_dot(X: torch.Tensor, M: torch.Tensor, mode: int, *,
             transpose: bool = False) -> torch.Tensor:
    """Mode-``mode`` product ``X x_mode M`` (``M`` of shape ``(J, I_mode)``).

    With ``transpose=True`` multiplies by ``M.T`` instead (``M`` of shape ``(I_mode, J)``).
    Computed as one (batched) matrix product on a reshaped view: no permutation copy, and
    the result is contiguous.
    """
    Mt = M.T if transpose else M  # (J, I_mode)
    shape = list(X.shape)
    a = math.prod(shape[:mode])
    b = math.prod(shape[mode + 1:])
    X3 = X.reshape(a, shape[mode], b)
    if b == 1:
        out = matmul(X3.reshape(a, shape[mode]), Mt.T)
    elif a == 1:
        out = matmul(Mt, X3.reshape(shape[mode], b))
    else:
        out = matmul(Mt, X3)
    shape[mode] = Mt.shape[0]
    return out.reshape(shape)


def multi_mode_dot(X: torch.Tensor, matrices: Sequence[torch.Tensor | None], *,
                   transpose: bool = False) -> torch.Tensor:
    """Apply :func:`mode_dot` for every mode whose matrix is not None.

    Modes that shrink the tensor most are applied first; among ties an end mode first
    (one plain GEMM on a view rather than a batched product on the largest tensor).
    """
    K = X.ndim
    order = sorted(
        (k for k, m in enumerate(matrices) if m is not None),
        key=lambda k: (matrices[k].shape[1 if transpose else 0]  # type: ignore[union-attr]
                       / X.shape[k], k not in (0, K - 1)),
    )
    for k in order:
        X = mode_dot(X, matrices[k], k, transpose=transpose)  # type: ignore[arg-type]
    return X


def _hadamard_contract(T: torch.Tensor, axis: int, A: torch.Tensor) -> torch.Tensor:
    """Sum over ``axis`` of ``T[..., i, ..., r] * A[i, r]`` (``r`` is T's last axis)."""
    nd = T.ndim
    src = _LETTERS[:nd]
    out = src[:axis] + src[axis + 1:]
    return torch.einsum(f"{src},{src[axis]}{src[-1]}->{out}", T, A)


def partial_contract(X: torch.Tensor, factors: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """Contract every mode ``k`` of ``X`` whose ``factors[k]`` is given, keeping the rank.

    Returns a tensor with the uncontracted modes (in order) followed by a rank axis ``R``:
    ``T[i_kept..., r] = sum_{i_contracted} X[i] prod_k A_k[i_k, r]``. The first contraction
    is one matrix product (the only pass over all of ``X``); later ones are Hadamard-sums
    on the smaller intermediate, so no Khatri-Rao product is formed.
    """
    modes = [k for k, f in enumerate(factors) if f is not None]
    if not modes:
        raise ValueError("partial_contract needs at least one factor")
    K = X.ndim
    # largest mode first; among ties prefer an end mode (a GEMM on a view, no copy), mode 0
    # first. Both GEMMs are written as A^T @ (view), the orientation MKL runs fastest for
    # a short-and-wide result (measured: 100^3 x rank 10 on one thread, 0.9-1.1 ms vs
    # 1.7-2.9 ms for X_(n)^T @ A)
    first = max(modes, key=lambda k: (X.shape[k], k in (0, K - 1), -k))
    A = factors[first]
    if first == K - 1:
        if _numpy_ok(X, A):  # type: ignore[arg-type]
            T = matmul(X.reshape(-1, X.shape[-1]), A).reshape(*X.shape[:-1], A.shape[1])  # type: ignore[union-attr, arg-type]
        else:
            T = (A.T @ X.reshape(-1, X.shape[-1]).T).T.reshape(*X.shape[:-1], A.shape[1])  # type: ignore[union-attr]
    elif first == 0:
        T = matmul(A.T, X.reshape(X.shape[0], -1)).T.reshape(*X.shape[1:], A.shape[1])  # type: ignore[union-attr]
    else:
        T = torch.tensordot(X, A, dims=([first], [0]))  # type: ignore[arg-type]
    kept = [k for k in range(K) if k != first]
    for k in sorted((m for m in modes if m != first), key=lambda m: -X.shape[m]):
        axis = kept.index(k)
        T = _hadamard_contract(T, axis, factors[k])  # type: ignore[arg-type]
        kept.pop(axis)
    return T


def contract_kept(T: torch.Tensor, kept: Sequence[int], factors: Sequence[torch.Tensor],
                  mode: int) -> torch.Tensor:
    """From ``T = partial_contract(...)`` with modes ``kept`` left, finish the MTTKRP of ``mode``.

    Contracts every kept mode except ``mode`` against ``factors``; returns ``(I_mode, R)``.
    """
    kept = list(kept)
    for k in [k for k in kept if k != mode]:
        axis = kept.index(k)
        T = _hadamard_contract(T, axis, factors[k])
        kept.pop(axis)
    return T


def mttkrp(X: torch.Tensor, factors: Sequence[torch.Tensor], mode: int) -> torch.Tensor:
    """Matricized tensor times Khatri-Rao product ``unfold(X, mode) @ khatri_rao(others)``.

    Computed by successive contractions (no Khatri-Rao product is formed). Returns
    ``(I_mode, R)``.
    """
    fs: list[torch.Tensor | None] = list(factors)
    fs[mode] = None
    return partial_contract(X, fs)
