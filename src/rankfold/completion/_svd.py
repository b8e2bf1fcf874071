"""Top-k SVD of a sparse matrix plus an optional low-rank term, never formed densely.

``A = S + P Q^T`` with ``S`` sparse (the observed entries) and ``P``, ``Q`` thin: the
operator SoftImpute needs (Mazumder, Hastie & Tibshirani 2010, Sec. 5) and the spectral
initialisation of alternating minimization needs (``P`` absent). Randomized subspace
iteration (Halko, Martinsson & Tropp 2011, Alg. 4.4 + 5.1), optionally warm-started from
the previous right singular vectors. Memory O(nnz + (m + n) (k + oversampling)).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch

__all__ = ["sparse_topk_svd", "SparseLowRank", "CSRPattern"]


class CSRPattern:
    """Sparsity pattern of the observations in CSR order, for ``A`` and ``A^T``.

    Built once per fit; :meth:`operator` then wraps new values without re-sorting.
    """

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, shape: tuple[int, int]) -> None:
        m, n = shape
        self.shape = shape
        self.perm = torch.argsort(rows * n + cols)
        self.permt = torch.argsort(cols * m + rows)
        self.crow = torch.zeros(m + 1, dtype=torch.int64, device=rows.device)
        self.crow[1:] = torch.cumsum(torch.bincount(rows, minlength=m), 0)
        self.col = cols[self.perm]
        self.crowt = torch.zeros(n + 1, dtype=torch.int64, device=rows.device)
        self.crowt[1:] = torch.cumsum(torch.bincount(cols, minlength=n), 0)
        self.colt = rows[self.permt]

    def operator(self, vals: torch.Tensor, P: torch.Tensor | None = None,
                 Q: torch.Tensor | None = None) -> SparseLowRank:
        m, n = self.shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR is in beta"
            S = torch.sparse_csr_tensor(self.crow, self.col, vals[self.perm], (m, n),
                                        check_invariants=False)
            St = torch.sparse_csr_tensor(self.crowt, self.colt, vals[self.permt], (n, m),
                                         check_invariants=False)
        return SparseLowRank(S, St, P, Q)


class SparseLowRank:
    """``S + P Q^T`` as an operator: ``matmul`` (A X) and ``rmatmul`` (A^T X)."""

    def __init__(self, S: torch.Tensor, St: torch.Tensor, P: torch.Tensor | None = None,
                 Q: torch.Tensor | None = None) -> None:
        self.S, self.St, self.P, self.Q = S, St, P, Q
        self.shape = tuple(S.shape)

    def matmul(self, X: torch.Tensor) -> torch.Tensor:
        out = self.S @ X
        if self.P is not None:
            out = out + self.P @ (self.Q.T @ X)
        return out

    def rmatmul(self, X: torch.Tensor) -> torch.Tensor:
        out = self.St @ X
        if self.P is not None:
            out = out + self.Q @ (self.P.T @ X)
        return out


class _SVD(NamedTuple):
    U: torch.Tensor
    S: torch.Tensor
    V: torch.Tensor


def _qr(X: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(X).Q


def sparse_topk_svd(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor,
                    shape: tuple[int, int], k: int, *, P: torch.Tensor | None = None,
                    Q: torch.Tensor | None = None, n_iter: int = 6, oversample: int = 10,
                    init: torch.Tensor | None = None,
                    generator: torch.Generator | None = None,
                    op: SparseLowRank | None = None) -> _SVD:
    """Top-``k`` singular triplets of ``S + P Q^T``.

    Returns
    -------
    (U (m, k), S (k,), V (n, k))
    """
    A = op if op is not None else CSRPattern(rows, cols, shape).operator(vals, P, Q)
    m, n = shape
    ell = min(k + oversample, m, n)
    dt, dev = vals.dtype, vals.device
    if init is not None and init.shape[1] >= 1:
        extra = ell - init.shape[1]
        G = init[:, :ell]
        if extra > 0:
            G = torch.cat([G, torch.randn(n, extra, generator=generator, dtype=dt,
                                          device=dev)], 1)
    else:
        G = torch.randn(n, ell, generator=generator, dtype=dt, device=dev)
    Y = _qr(A.matmul(G))
    for _ in range(n_iter):
        Z = _qr(A.rmatmul(Y))
        Y = _qr(A.matmul(Z))
    Bt = A.rmatmul(Y)  # (n, ell) = (Y^T A)^T
    Vb, s, Uh = torch.linalg.svd(Bt, full_matrices=False)
    U = Y @ Uh.T
    return _SVD(U[:, :k], s[:k], Vb[:, :k])
