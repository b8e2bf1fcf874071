"""Incremental SVD and error bounds for concatenated matrices.

* :func:`svd_update` / :class:`IncrementalSVD` -- Brand's (2006) update of a thin SVD
  when blocks of columns are appended, truncated to a fixed rank after each update, with
  re-orthogonalisation when the left factor drifts from orthonormality.
* :func:`concatenated_error_bound` -- an upper bound on the optimal rank-``r`` Frobenius
  error of a horizontal concatenation ``[A_1 ... A_N]`` computed from the blocks' own
  truncated SVDs, without forming the concatenation.
* :func:`group_for_compression` -- greedy clustering of matrices (same number of rows)
  into groups that can share one rank-``r`` left factor under a relative error threshold,
  using the bound to avoid forming concatenations.

The bound and the grouping follow the programme of Shamrai (2026) [3]_ (bounds on the
optimal error of a concatenation from quantities of its blocks, an incremental truncated
SVD estimator, and error-constrained clustering). The exact bound used here is a
reconstruction, proved below, not a transcription of that paper's theorems.

Notation: for a matrix ``A`` with ``m`` rows, ``err_r(A)^2 = sum_{j>r} sigma_j(A)^2`` is
the squared optimal rank-``r`` error (Eckart-Young), and ``P`` ranges over orthogonal
projectors of rank ``r`` in R^m, so ``err_r(A)^2 = ||A||_F^2 - max_P ||P A||_F^2``.

**Lemma.** If ``A A^T >= W W^T`` (Loewner order) then
``err_r(A)^2 <= (||A||_F^2 - ||W||_F^2) + err_r(W)^2``.

*Proof.* For every ``P``, ``||P A||_F^2 = tr(P A A^T) >= tr(P W W^T) = ||P W||_F^2``, so
``max_P ||P A||^2 >= max_P ||P W||^2 = ||W||^2 - err_r(W)^2``; subtract from ``||A||^2``.

**Truncation keeps the order.** If ``A = U diag(s) V^T`` and ``W = U_t diag(s_t)`` keeps
the top ``t`` singular triplets, then ``A A^T = U diag(s^2) U^T >= W W^T`` and
``||A||^2 - ||W||^2 = sum_{j>t} s_j^2`` (the block's tail energy).

**Concatenation keeps the order.** ``[A_1 ... A_N][A_1 ... A_N]^T = sum_i A_i A_i^T >=
sum_i W_i W_i^T = [W_1 ... W_N][W_1 ... W_N]^T``.

Hence, with ``W_i`` the rank-``t`` truncation of block ``i`` and ``tail_i^2`` its discarded
energy, ``err_r([A_1 ... A_N])^2 <= sum_i tail_i^2 + err_r([W_1 ... W_N])^2``, where the
second term needs only the SVD of the m x Nt matrix ``[W_1 ... W_N]``. The bound is exact
when every ``t >= rank(A_i)``, and it can be applied recursively (a group's state is again
a pair ``(W, tau)`` with ``A A^T >= W W^T`` and ``tau = ||A||^2 - ||W||^2``), which is what
:func:`group_for_compression` and :class:`IncrementalSVD` maintain.

The looser "Weyl" bound ``err_r^2 <= ||A||^2 - sum_{j<=r} max_i sigma_j(A_i)^2`` (adding
columns never decreases a singular value) is also reported; for ``t >= r`` the bound
above is never larger.

References
----------
.. [1] M. Brand, "Fast low-rank modifications of the thin singular value decomposition",
   Linear Algebra Appl. 415(1), 2006, Sec. 2-3.
.. [2] L. Giraud, J. Langou, M. Rozloznik, "The loss of orthogonality in the Gram-Schmidt
   orthogonalization process", Comput. Math. Appl. 50, 2005 ("twice is enough").
.. [3] M. Shamrai, "Concatenated Matrix SVD: Compression Bounds, Incremental
   Approximation, and Error-Constrained Clustering", arXiv:2601.11626, 2026.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from .._array import InputInfo, as_tensor, to_output
from .._errors import ConvergenceError, NotFittedError, ShapeError
from .._validation import check_bool, check_float, check_int, param_error

__all__ = [
    "SVDUpdate",
    "svd_update",
    "IncrementalSVD",
    "ConcatenatedBound",
    "concatenated_error_bound",
    "group_for_compression",
]


class SVDUpdate(NamedTuple):
    """Result of :func:`svd_update`.

    ``U`` (m, k'), ``S`` (k',), ``Vh`` (k', n + c) or None, and ``discarded``: the squared
    Frobenius norm (float64) of the part of ``[U diag(S) Vh, C]`` dropped by truncation.
    """

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor | None
    discarded: float


def _orth_residual(U: torch.Tensor, C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``L = U^T C`` and ``H = (I - U U^T) C`` by two passes of Gram-Schmidt ([2]_)."""
    L = U.mT @ C
    H = C - U @ L
    L2 = U.mT @ H
    H = H - U @ L2
    return L + L2, H


def _thin_svd(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD computed on the tall orientation (LAPACK is much faster on tall inputs)."""
    if X.shape[-2] >= X.shape[-1]:
        return torch.linalg.svd(X, full_matrices=False)
    U, S, Vh = torch.linalg.svd(X.mT, full_matrices=False)
    return Vh.mT, S, U.mT


def svd_update(
    U: torch.Tensor | None,
    S: torch.Tensor | None,
    Vh: torch.Tensor | None,
    C: torch.Tensor,
    rank: int,
    *,
    keep_vh: bool = True,
) -> SVDUpdate:
    """Brand's rank-``rank`` update of a thin SVD when columns ``C`` are appended.

    Given ``X = U diag(S) Vh`` (m x n; ``U`` with orthonormal columns) and new columns
    ``C`` (m x c), returns the truncated SVD of ``[X, C]``. Since ``Vh`` has orthonormal
    rows, ``[X, C] = [U diag(S), C] blockdiag(Vh, I_c)`` and only the SVD of
    ``N = [U diag(S), C]`` (m x (k + c)) is needed:

    * ``k + c < m``: Brand's form ([1]_, Sec. 2): ``L = U^T C``,
      ``H = (I - U U^T) C = J K`` (QR, two Gram-Schmidt passes [2]_), and
      ``N = [U, J] [[diag(S), L], [0, K]]``, so an SVD of the small (k + c) square matrix
      suffices; cost O(m (k + c)^2 + (k + c)^3).
    * otherwise ``N`` is at most as tall as it is wide and its SVD is computed directly
      (on the tall transpose), cost O(m^2 (k + c)).

    Parameters
    ----------
    U, S, Vh : tensors or None
        Current factors (None for the first block). ``Vh`` may be None when right factors
        are not kept.
    C : (m, c) tensor
        New columns (same dtype and device as ``U``).
    rank : int
        Number of singular triplets kept.
    keep_vh : bool, default True
        Update and return ``Vh``.

    Returns
    -------
    SVDUpdate
    """
    m, c = C.shape
    if U is None or S is None or U.shape[1] == 0:
        Uc, Sc, Vhc = _thin_svd(C)
        k = min(rank, Sc.shape[0])
        discarded = float((Sc[k:].to(torch.float64) ** 2).sum())
        return SVDUpdate(Uc[:, :k], Sc[:k], Vhc[:k] if keep_vh else None, discarded)
    k = U.shape[1]
    if k + c < m:
        L, H = _orth_residual(U, C)
        J, K = torch.linalg.qr(H)
        M = torch.zeros(k + c, k + c, dtype=C.dtype, device=C.device)
        M[:k, :k] = torch.diag(S)
        M[:k, k:] = L
        M[k:, k:] = K
        Um, Sm, Vhm = torch.linalg.svd(M)
        r = min(rank, Sm.shape[0])
        U_new = U @ Um[:k, :r] + J @ Um[k:, :r]
    else:
        Um, Sm, Vhm = _thin_svd(torch.cat([U * S, C], dim=1))
        r = min(rank, Sm.shape[0])
        U_new = Um[:, :r]
    discarded = float((Sm[r:].to(torch.float64) ** 2).sum())
    Vh_new = None
    if keep_vh and Vh is not None:
        Vh_new = torch.cat([Vhm[:r, :k] @ Vh, Vhm[:r, k:]], dim=1)
    return SVDUpdate(U_new, Sm[:r], Vh_new, discarded)


def _reorthogonalize(U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Restore orthonormal ``U`` keeping ``U diag(S) Vh`` unchanged (QR, then a k x k SVD)."""
    Q, R = torch.linalg.qr(U)
    u, s, vh = torch.linalg.svd(R * S[None, :])
    return Q @ u, s, (vh @ Vh if Vh is not None else None)


class IncrementalSVD:
    """Rank-``k`` SVD of a matrix whose columns arrive in blocks (Brand 2006).

    Parameters
    ----------
    rank : int
        Number of singular triplets kept after every update (``>= 1``, at most the number
        of rows).
    block_size : int or None, default None
        Columns per block in :meth:`fit` (None: ``max(rank, 64)``).
    keep_vh : bool, default True
        Keep the right factor ``Vh_`` (it grows by the block width at each update). With
        False only ``U_`` and ``S_`` are kept (memory O(m k)).
    reorth_tol : float or None, default None
        Re-orthogonalise ``U_`` when ``max |U^T U - I|`` exceeds this (None:
        ``sqrt(eps)`` of the dtype).

    Attributes
    ----------
    U_ : (m, k) array or tensor
    S_ : (k,) array or tensor
    Vh_ : (k, n_columns_seen_) array or tensor, or None when ``keep_vh=False``
    n_columns_seen_ : int
    total_energy_ : float
        ``||A||_F^2`` of the columns seen (float64).
    discarded_energy_ : float
        ``tau = ||A||_F^2 - ||S_||^2``, accumulated from the truncated parts.
    error_estimate_ : float
        ``sqrt(tau)``. In exact arithmetic it equals ``||A - U_ diag(S_) Vh_||_F`` and
        bounds the projection error ``||A - U_ U_^T A||_F`` and the optimal rank-``k``
        error from above (see Notes).
    relative_error_estimate_ : float
        ``error_estimate_ / ||A||_F``.
    n_reorth_ : int
        Number of re-orthogonalisations performed.

    Notes
    -----
    Let ``E_t = A_t - U_t S_t Vh_t`` after ``t`` updates and ``D_t`` the part of
    ``[U S Vh, C]`` dropped by the truncation. Then ``E_t = [E_{t-1}, 0] + D_t`` and,
    by induction, ``E_t Vh_t^T = 0``; since the rows of ``D_t`` are orthogonal to the
    kept rows, ``<[E_{t-1}, 0], D_t> = 0`` and ``||E_t||^2 = ||E_{t-1}||^2 + ||D_t||^2``:
    the accumulated discarded energy is the reconstruction error exactly. Moreover
    ``A A^T >= U diag(S)^2 U^T`` is preserved by every update (module notes), so
    ``||A - U U^T A||^2 = ||A||^2 - tr(U^T A A^T U) <= ||A||^2 - ||S||^2 = tau``.

    Examples
    --------
    >>> import torch
    >>> from rankfold.linalg import IncrementalSVD
    >>> A = torch.randn(100, 5, dtype=torch.float64) @ torch.randn(5, 300, dtype=torch.float64)
    >>> isvd = IncrementalSVD(5)
    >>> for j in range(0, 300, 50):
    ...     _ = isvd.partial_fit(A[:, j:j + 50])
    >>> bool(torch.allclose(isvd.U_ @ torch.diag(isvd.S_) @ isvd.Vh_, A))
    True
    """

    def __init__(self, rank: int, *, block_size: int | None = None, keep_vh: bool = True,
                 reorth_tol: float | None = None) -> None:
        self.rank = rank
        self.block_size = block_size
        self.keep_vh = keep_vh
        self.reorth_tol = reorth_tol

    # -- fitted state ---------------------------------------------------------------
    def _get(self, name: str) -> Any:
        state = self.__dict__.get("_state")
        if state is None:
            raise NotFittedError(
                f"This IncrementalSVD instance is not fitted yet; call partial_fit or fit "
                f"before using '{name}'."
            )
        return state

    @property
    def U_(self) -> Any:
        st = self._get("U_")
        return to_output(st["U"], st["info"])

    @property
    def S_(self) -> Any:
        st = self._get("S_")
        return to_output(st["S"], st["info"])

    @property
    def Vh_(self) -> Any:
        st = self._get("Vh_")
        return None if st["Vh"] is None else to_output(st["Vh"], st["info"])

    @property
    def n_columns_seen_(self) -> int:
        return int(self._get("n_columns_seen_")["n"])

    @property
    def total_energy_(self) -> float:
        return float(self._get("total_energy_")["total"])

    @property
    def discarded_energy_(self) -> float:
        return float(self._get("discarded_energy_")["tau"])

    @property
    def error_estimate_(self) -> float:
        return math.sqrt(max(self.discarded_energy_, 0.0))

    @property
    def relative_error_estimate_(self) -> float:
        total = self.total_energy_
        return self.error_estimate_ / math.sqrt(total) if total > 0 else 0.0

    @property
    def n_reorth_(self) -> int:
        return int(self._get("n_reorth_")["n_reorth"])

    # -- fitting ----------------------------------------------------------------------
    def _check_params(self) -> tuple[int, bool, float | None, int | None]:
        func = "IncrementalSVD"
        rank = check_int(self.rank, "rank", func, low=1)
        keep_vh = check_bool(self.keep_vh, "keep_vh", func)
        tol = check_float(self.reorth_tol, "reorth_tol", func, low=0.0, closed_low=False,
                          allow_none=True)
        bs = check_int(self.block_size, "block_size", func, low=1, allow_none=True)
        return rank, keep_vh, tol, bs  # type: ignore[return-value]

    def partial_fit(self, block: Any) -> IncrementalSVD:
        """Append the columns ``block`` ((m, c), or (m,) for one column) and update.

        Returns
        -------
        self
        """
        func = "IncrementalSVD.partial_fit"
        state = self.__dict__.get("_state")
        if state is None:
            C, info = as_tensor(block, "block", func, ndim=None)
        else:
            C, _ = as_tensor(block, "block", func, ndim=None, dtype=state["U"].dtype,
                             device=state["U"].device)
            info = state["info"]
        return self._update(C, info.kind)

    def _update(self, C: torch.Tensor, kind: str) -> IncrementalSVD:
        func = "IncrementalSVD.partial_fit"
        rank, keep_vh, tol, _ = self._check_params()
        state = self.__dict__.get("_state")
        if C.ndim == 1:
            C = C[:, None]
        if C.ndim != 2:
            raise ShapeError(f"The 'block' parameter of {func} must have shape (m, c) or "
                             f"(m,). Got shape {tuple(C.shape)}.")
        m = C.shape[0]
        if state is None:
            if rank > m:
                raise param_error("rank", "IncrementalSVD", f"an int in [1, m={m}]", rank)
        elif m != state["U"].shape[0]:
            raise ShapeError(f"The 'block' parameter of {func} must have m={state['U'].shape[0]} "
                             f"rows like the previous blocks. Got shape {tuple(C.shape)}.")
        if state is None:
            state = {"U": None, "S": None, "Vh": None, "n": 0, "total": 0.0, "tau": 0.0,
                     "n_reorth": 0, "info": InputInfo(kind, C.dtype, C.device)}
        upd = svd_update(state["U"], state["S"], state["Vh"], C, rank, keep_vh=keep_vh)
        U, S, Vh = upd.U, upd.S, upd.Vh
        if not (bool(torch.isfinite(U).all()) and bool(torch.isfinite(S).all())):
            raise ConvergenceError(f"{func} produced non-finite values.")
        thr = tol if tol is not None else math.sqrt(torch.finfo(C.dtype).eps)
        k = U.shape[1]
        drift = float((U.mT @ U - torch.eye(k, dtype=U.dtype, device=U.device)).abs().max())
        if drift > thr:
            U, S, Vh = _reorthogonalize(U, S, Vh)
            state["n_reorth"] += 1
        state.update(U=U, S=S, Vh=Vh if keep_vh else None, n=state["n"] + C.shape[1])
        state["total"] += float((C.to(torch.float64) ** 2).sum())
        state["tau"] += upd.discarded
        self._state = state
        return self

    def fit(self, A: Any) -> IncrementalSVD:
        """Reset and process the columns of ``A`` (m, n) in blocks of ``block_size``."""
        rank, _, _, bs = self._check_params()
        T, info = as_tensor(A, "A", "IncrementalSVD.fit")
        self.__dict__.pop("_state", None)
        step = bs if bs is not None else max(rank, 64)
        for j in range(0, T.shape[1], step):
            self._update(T[:, j:j + step], info.kind)
        return self


# ---------------------------------------------------------------------------------------
# concatenated matrices


class ConcatenatedBound(NamedTuple):
    """Upper bounds on ``err_r([A_1 ... A_N])`` (Frobenius), all in float64.

    Attributes
    ----------
    bound : float  the sharper (sketch) bound, ``min`` of the two below.
    relative : float  ``bound / norm``.
    weyl : float  the Weyl-monotonicity bound.
    norm : float  ``||[A_1 ... A_N]||_F``.
    """

    bound: float
    relative: float
    weyl: float
    norm: float


def _as_blocks(blocks: Any, func: str, name: str) -> list[torch.Tensor]:
    if isinstance(blocks, torch.Tensor) or hasattr(blocks, "ndim"):
        seq: Sequence[Any] = list(blocks) if getattr(blocks, "ndim", 0) == 3 else [blocks]
    elif isinstance(blocks, Sequence) and not isinstance(blocks, str):
        seq = blocks
    else:
        raise param_error(name, func, "a non-empty sequence of 2-D arrays", blocks)
    if len(seq) == 0:
        raise param_error(name, func, "a non-empty sequence of 2-D arrays", blocks)
    out: list[torch.Tensor] = []
    for i, b in enumerate(seq):
        t, _ = as_tensor(b, f"{name}[{i}]", func, dtype=torch.float64)
        if out and t.shape[0] != out[0].shape[0]:
            raise ShapeError(
                f"The '{name}' parameter of {func} must hold matrices with the same number "
                f"of rows m={out[0].shape[0]}. Got shape {tuple(t.shape)} at index {i}."
            )
        out.append(t.to(out[0].device) if out else t)
    return out


def _block_state(A: torch.Tensor, t: int) -> tuple[torch.Tensor, float, float]:
    """``(W, tau, ||A||^2)``: rank-t truncation ``W = U_t diag(s_t)`` and tail energy."""
    U, s, _ = torch.linalg.svd(A, full_matrices=False)
    tt = min(t, s.shape[0])
    W = torch.zeros(A.shape[0], t, dtype=A.dtype, device=A.device)
    W[:, :tt] = U[:, :tt] * s[:tt]
    return W, float((s[tt:] ** 2).sum()), float((s ** 2).sum())


def _check_rank_rows(rank: Any, m: int, func: str) -> int:
    return check_int(rank, "rank", func, low=1, high=m, high_name="m")  # type: ignore[return-value]


def _block_rank(block_rank: Any, rank: int, func: str) -> int:
    t = check_int(block_rank, "block_rank", func, low=1, allow_none=True)
    return 2 * rank if t is None else t


def concatenated_error_bound(
    blocks: Any,
    rank: int,
    *,
    block_rank: int | None = None,
) -> ConcatenatedBound:
    """Upper bound on the optimal rank-``r`` error of ``[A_1 ... A_N]`` from its blocks.

    Parameters
    ----------
    blocks : sequence of (m, n_i) array_like, or an (N, m, n) stack
        Matrices with the same number of rows (numpy or torch).
    rank : int
        ``r`` in ``[1, m]``.
    block_rank : int or None, default None
        Rank ``t`` of each block's truncated SVD (None: ``2 r``). Larger is tighter; with
        ``t >= rank(A_i)`` for every block the bound is exact.

    Returns
    -------
    ConcatenatedBound
        ``bound`` (>= the true optimal error), ``relative``, ``weyl``, ``norm``.

    Notes
    -----
    ``err_r^2 <= sum_i tail_i^2 + err_r([W_1 ... W_N])^2`` with ``W_i`` the rank-``t``
    truncation of ``A_i`` (proof in the module docstring). Cost: one SVD per block plus
    one SVD of an m x Nt matrix; the m x sum(n_i) concatenation is never formed. A
    reconstruction in the spirit of Shamrai (2026), not that paper's exact theorem.

    Examples
    --------
    >>> import torch
    >>> from rankfold.linalg import concatenated_error_bound
    >>> g = torch.Generator().manual_seed(0)
    >>> blocks = [torch.randn(30, 20, generator=g, dtype=torch.float64) for _ in range(3)]
    >>> b = concatenated_error_bound(blocks, 5)
    >>> exact = torch.linalg.svdvals(torch.cat(blocks, dim=1))[5:].norm().item()
    >>> b.bound >= exact
    True
    """
    func = "concatenated_error_bound"
    mats = _as_blocks(blocks, func, "blocks")
    r = _check_rank_rows(rank, mats[0].shape[0], func)
    t = _block_rank(block_rank, r, func)
    tails = 0.0
    norm2 = 0.0
    Ws = []
    svals = []
    for A in mats:
        W, tau, n2 = _block_state(A, t)
        Ws.append(W)
        tails += tau
        norm2 += n2
        svals.append(torch.linalg.norm(W, dim=0))
    s = torch.linalg.svdvals(torch.cat(Ws, dim=1))
    sketch2 = tails + float((s[r:] ** 2).sum())
    # Weyl: sigma_j(concat) >= max_i sigma_j(A_i)
    top = torch.zeros(r, dtype=torch.float64, device=mats[0].device)
    for sv in svals:
        kk = min(r, sv.shape[0])
        top[:kk] = torch.maximum(top[:kk], sv[:kk])
    weyl2 = max(norm2 - float((top ** 2).sum()), 0.0)
    bound = math.sqrt(max(min(sketch2, weyl2), 0.0))
    norm = math.sqrt(norm2)
    return ConcatenatedBound(bound, bound / norm if norm > 0 else 0.0, math.sqrt(weyl2), norm)


def group_for_compression(
    matrices: Any,
    rank: int,
    max_error: float,
    *,
    block_rank: int | None = None,
) -> list[list[int]]:
    """Cluster matrices that can share one rank-``r`` SVD under a relative error bound.

    Greedy first-fit by decreasing Frobenius norm: each matrix joins the existing group
    whose certified relative error after the merge is smallest, provided it is at most
    ``max_error``; otherwise it starts a new group. A group is summarised by the state
    ``(W, tau)`` of the module notes (rank-``t`` sketch ``W`` and discarded energy
    ``tau``), so testing a merge costs one SVD of an m x 2t matrix (batched over all
    groups) and no concatenation is ever formed.

    Parameters
    ----------
    matrices : sequence of (m, n_i) array_like, or an (N, m, n) stack
    rank : int
        Shared rank ``r`` in ``[1, m]``.
    max_error : float
        Relative threshold in ``[0, 1]``: every group ``G`` with two or more members
        satisfies ``err_r([A_i for i in G]) <= max_error * ||[A_i for i in G]||_F``
        (certified by the bound; float64).
    block_rank : int or None, default None
        Sketch rank ``t`` (None: ``2 r``).

    Returns
    -------
    list of list of int
        Groups of indices into ``matrices`` (each sorted), ordered by their first index.
        A singleton is a matrix that shares with no other; its own rank-``r`` error is
        not constrained.

    Examples
    --------
    >>> import torch
    >>> from rankfold.linalg import group_for_compression
    >>> g = torch.Generator().manual_seed(0)
    >>> U1 = torch.linalg.qr(torch.randn(40, 3, generator=g, dtype=torch.float64)).Q
    >>> U2 = torch.linalg.qr(torch.randn(40, 3, generator=g, dtype=torch.float64)).Q
    >>> mats = [U @ torch.randn(3, 10, generator=g, dtype=torch.float64)
    ...         for U in (U1, U2, U1, U2)]
    >>> group_for_compression(mats, 3, 1e-8)
    [[0, 2], [1, 3]]
    """
    func = "group_for_compression"
    mats = _as_blocks(matrices, func, "matrices")
    r = _check_rank_rows(rank, mats[0].shape[0], func)
    eps_ = check_float(max_error, "max_error", func, low=0.0, high=1.0)
    assert eps_ is not None
    t = max(_block_rank(block_rank, r, func), r)
    states = [_block_state(A, t) for A in mats]
    order = sorted(range(len(mats)), key=lambda i: -states[i][2])
    groups: list[dict[str, Any]] = []
    for i in order:
        Wi, taui, n2i = states[i]
        best = -1
        if groups:
            Wg = torch.stack([g["W"] for g in groups])  # (G, m, t)
            cat = torch.cat([Wg, Wi.expand_as(Wg)], dim=2)  # (G, m, 2t)
            s = torch.linalg.svdvals(cat)
            tail = (s[:, r:] ** 2).sum(dim=1)
            taus = torch.tensor([g["tau"] for g in groups], dtype=torch.float64,
                                device=tail.device)
            n2 = torch.tensor([g["n2"] for g in groups], dtype=torch.float64,
                              device=tail.device) + n2i
            err2 = taus + taui + tail
            rel = torch.sqrt(err2.clamp_min(0) / n2.clamp_min(1e-300))
            ok = rel <= eps_
            if bool(ok.any()):
                best = int(torch.where(ok, rel, torch.full_like(rel, math.inf)).argmin())
        if best < 0:
            groups.append({"W": Wi, "tau": taui, "n2": n2i, "members": [i]})
            continue
        g = groups[best]
        U, s, _ = torch.linalg.svd(torch.cat([g["W"], Wi], dim=1), full_matrices=False)
        g["W"] = U[:, :t] * s[:t]
        g["tau"] += taui + float((s[t:] ** 2).sum())
        g["n2"] += n2i
        g["members"].append(i)
    out = [sorted(g["members"]) for g in groups]
    return sorted(out, key=lambda grp: grp[0])
