"""Tensor-train decomposition by TT-SVD (Oseledets 2011, Algorithm 1)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._validation import check_float, check_int, param_error
from ._common import as_dense_tensor
from ._formats import TTTensor

__all__ = ["tensor_train"]


def _tt_svd(X: torch.Tensor, max_ranks: Sequence[int] | None, eps: float) -> list[torch.Tensor]:
    """TT-SVD cores of ``X``; ``eps`` = relative Frobenius error target (0: exact)."""
    shape = list(X.shape)
    K = len(shape)
    if K == 1:
        return [X.reshape(1, shape[0], 1)]
    norm = float(torch.linalg.vector_norm(X))
    delta2 = (eps * norm) ** 2 / (K - 1)
    C = X
    cores = []
    r_prev = 1
    for k in range(K - 1):
        C = C.reshape(r_prev * shape[k], -1)
        U, S, Vh = torch.linalg.svd(C, full_matrices=False)
        s2 = (S.double() ** 2).flip(0).cumsum(0).flip(0)  # tail sums: s2[j] = sum_{i>=j}
        if eps > 0:
            keep = int((s2 > delta2).sum())
        else:
            floor = float(S[0]) * max(C.shape) * torch.finfo(S.dtype).eps if S.numel() else 0
            keep = int((S > floor).sum())
        keep = max(1, keep)
        if max_ranks is not None:
            keep = min(keep, int(max_ranks[k]))
        cores.append(U[:, :keep].reshape(r_prev, shape[k], keep))
        C = S[:keep, None] * Vh[:keep]
        r_prev = keep
    cores.append(C.reshape(r_prev, shape[-1], 1))
    return cores


def _check_tt_ranks(ranks: Any, shape: Sequence[int], func: str) -> list[int] | None:
    K = len(shape)
    if ranks is None:
        return None
    if isinstance(ranks, numbers.Integral) and not isinstance(ranks, bool):
        check_int(ranks, "ranks", func, low=1)
        return [int(ranks)] * (K - 1)
    if isinstance(ranks, np.ndarray | torch.Tensor):
        ranks = [r.item() for r in ranks.reshape(-1)]
    if not isinstance(ranks, Sequence) or isinstance(ranks, str):
        raise param_error("ranks", func, f"an int or a sequence of {K - 1} inner TT ranks", ranks)
    ranks = list(ranks)
    if len(ranks) == K + 1:
        if ranks[0] != 1 or ranks[-1] != 1:
            raise param_error("ranks", func, "a sequence starting and ending with 1 when it "
                              f"has {K + 1} entries", ranks)
        ranks = ranks[1:-1]
    if len(ranks) != K - 1:
        raise param_error("ranks", func, f"a sequence of {K - 1} inner TT ranks (or {K + 1} "
                          "with the boundary 1s)", ranks)
    for k, r in enumerate(ranks):
        check_int(r, f"ranks[{k}]", func, low=1)
    return [int(r) for r in ranks]


def tensor_train(X: Any, ranks: Any = None, *, tol: float | None = None) -> TTTensor:
    """Tensor-train decomposition by sequential truncated SVDs (TT-SVD).

    Parameters
    ----------
    X : array or tensor of shape (I_1, ..., I_K), K >= 2
        Dense tensor (numpy in, numpy out; torch stays on its device and dtype).
    ranks : int or sequence of K-1 ints, optional
        Maximum inner TT ranks (``r_1 .. r_{K-1}``; a K+1 sequence with boundary 1s is also
        accepted). Default: no cap.
    tol : float in [0, 1), optional
        Relative error target ``||X - TT|| <= tol ||X||`` (each of the K-1 truncations
        discards at most ``tol^2 ||X||^2 / (K-1)``). Default: exact up to rounding.
        With both ``ranks`` and ``tol`` the ranks are caps.

    Returns
    -------
    TTTensor
        Cores of shapes ``(r_{k-1}, I_k, r_k)``; all but the last are left-orthogonal.

    References
    ----------
    Oseledets, I. V. (2011). Tensor-train decomposition. SIAM J. Sci. Comput. 33(5),
    2295-2317, Algorithm 1 (TT-SVD).

    Examples
    --------
    >>> import numpy as np
    >>> from rankfold.tensor import tensor_train
    >>> X = np.random.default_rng(0).standard_normal((4, 5, 6))
    >>> tt = tensor_train(X, ranks=[4, 6])
    >>> bool(np.allclose(tt.to_tensor(), X))
    True
    """
    func = "tensor_train"
    t, info = as_dense_tensor(X, func)
    r = _check_tt_ranks(ranks, t.shape, func)
    eps = check_float(tol, "tol", func, low=0.0, high=1.0, closed_high=False, allow_none=True)
    cores = _tt_svd(t, r, 0.0 if eps is None else eps)
    if any(not bool(torch.isfinite(c).all()) for c in cores):  # pragma: no cover - defensive
        from .._errors import ConvergenceError

        raise ConvergenceError("tensor_train produced non-finite cores.")
    return TTTensor._from_torch(cores, info.returns_numpy)


