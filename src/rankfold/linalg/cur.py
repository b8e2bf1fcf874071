"""Interpolative decomposition, CUR and randomized Nystrom approximation.

* :func:`interpolative` -- column interpolative decomposition (ID) ``A ~ A[:, J] @ X``
  by column-pivoted QR of ``A`` (deterministic) or of a Gaussian sketch of its row space
  (randomized).
* :func:`cur` -- ``A ~ C @ U @ R`` with ``C = A[:, cols]`` and ``R = A[rows, :]`` chosen by a
  two-sided ID or by leverage-score sampling.
* :func:`nystrom` -- rank-``k`` approximation ``A ~ U diag(S) U^T`` of a symmetric positive
  semidefinite matrix from one product ``A @ Omega``, with the stabilising shift of
  Tropp et al. (2017).

References
----------
.. [1] N. Halko, P.-G. Martinsson, J. A. Tropp, "Finding structure with randomness",
   SIAM Review 53(2), 2011, Sec. 5.2 (row extraction / ID).
.. [2] P.-G. Martinsson, J. A. Tropp, "Randomized numerical linear algebra: foundations
   and algorithms", Acta Numerica 2020, Sec. 13 (interpolative and CUR decompositions).
.. [3] S. Voronin, P.-G. Martinsson, "Efficient algorithms for CUR and interpolative
   matrix decompositions", Adv. Comput. Math. 43, 2017 (CUR from a two-sided ID).
.. [4] M. W. Mahoney, P. Drineas, "CUR matrix decompositions for improved data
   analysis", PNAS 106(3), 2009 (leverage-score column/row selection).
.. [5] J. A. Tropp, A. Yurtsever, M. Udell, V. Cevher, "Fixed-rank approximation of a
   positive-semidefinite matrix from streaming data", NeurIPS 2017, Alg. 3.
.. [6] Z. Frangella, J. A. Tropp, M. Udell, "Randomized Nystrom preconditioning",
   SIAM J. Matrix Anal. Appl. 44(2), 2023, Alg. 2.1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from .._array import MatrixOperator, as_operator, as_tensor, to_output
from .._errors import ConvergenceError, InvalidParameterError, ShapeError
from .._random import GeneratorLike, check_generator
from .._validation import check_int, check_option, param_error

__all__ = ["IDResult", "CURResult", "NystromResult", "interpolative", "cur", "nystrom",
           "ID_METHODS", "CUR_METHODS", "CUR_CORES"]


class IDResult(NamedTuple):
    """Column interpolative decomposition ``A ~ A[..., :, columns] @ X``.

    Attributes
    ----------
    columns : (*, k) int64 tensor or array
        Indices of the selected columns (the "skeleton"), in pivot order.
    X : (*, k, n) tensor or array
        Interpolation matrix; ``X[..., :, columns]`` is the identity.
    """

    columns: Any
    X: Any


class CURResult(NamedTuple):
    """CUR decomposition ``A ~ C @ U @ R``.

    Attributes
    ----------
    C : (*, m, k)  the selected columns ``A[..., :, cols]``.
    U : (*, k, k)  the core matrix.
    R : (*, k, n)  the selected rows ``A[..., rows, :]``.
    rows, cols : (*, k) int64 indices.
    """

    C: Any
    U: Any
    R: Any
    rows: Any
    cols: Any


class NystromResult(NamedTuple):
    """Low-rank eigendecomposition ``A ~ U @ diag(S) @ U^T`` of a PSD matrix.

    Attributes
    ----------
    U : (*, n, k) orthonormal columns (approximate eigenvectors).
    S : (*, k) nonnegative approximate eigenvalues, in decreasing order.
    """

    U: Any
    S: Any


# ---------------------------------------------------------------------------------------
# helpers


def _eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


def _pivoted_r(Y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``k`` steps of a column-pivoted QR of ``Y`` (m x n): ``R`` (k x n), permutation.

    ``Y[:, perm] = Q R + (residual orthogonal to Q)`` with ``R[:, :k]`` upper triangular.
    Businger-Golub pivoting (largest remaining column norm) with modified Gram-Schmidt on
    the updated residual, a second orthogonalisation of each new basis vector and LAPACK's
    rule for recomputing downdated column norms. Stopping after ``k`` steps costs
    O(mnk) where a full ``geqp3`` costs O(mn min(m, n)); it runs on any device.
    """
    m, n = Y.shape
    if Y.device.type == "cpu" and min(m, n) <= 2 * k + 10:
        # short, wide inputs (sketches): one LAPACK geqp3 call costs the same O(mnk) and
        # avoids ~k rounds of small tensor operations
        Rf, pf = scipy.linalg.qr(Y.detach().numpy(), mode="r", pivoting=True,
                                 check_finite=False)
        R = torch.zeros(k, n, dtype=Y.dtype)
        kk = min(k, Rf.shape[0])
        R[:kk] = torch.from_numpy(np.ascontiguousarray(Rf[:kk]))
        return R, torch.from_numpy(pf.astype(np.int64))
    Res = Y.clone()
    R = torch.zeros(k, n, dtype=Y.dtype, device=Y.device)
    Q = torch.zeros(m, k, dtype=Y.dtype, device=Y.device)
    norms = (Res * Res).sum(dim=0)
    ref = norms.clone()
    tiny = float(norms.max()) * (torch.finfo(Y.dtype).eps * max(m, n)) ** 2
    used = torch.zeros(n, dtype=torch.bool, device=Y.device)
    chosen: list[int] = []
    neg = torch.tensor(-1.0, dtype=Y.dtype, device=Y.device)
    for j in range(min(k, m, n)):
        p = int(torch.argmax(torch.where(used, neg, norms)))
        q = Res[:, p].clone()
        if j:
            q = q - Q[:, :j] @ (Q[:, :j].mT @ q)
        nrm = torch.linalg.vector_norm(q)
        if float(nrm) ** 2 <= tiny:
            break  # the remaining columns are numerically zero: R rows stay zero
        q = q / nrm
        Q[:, j] = q
        used[p] = True
        chosen.append(p)
        row = q @ Res
        row = torch.where(used, torch.zeros_like(row), row)
        row[p] = nrm
        R[j] = row
        Res.addr_(q, row, alpha=-1)  # columns are not moved: no O(mn) permutation copies
        Res[:, p] = 0
        norms = (norms - row * row).clamp_min(0)
        stale = (norms <= 1e-6 * ref) & ~used  # cancellation: recompute (LAPACK xLAQPS)
        if bool(stale.any()):
            cols = torch.nonzero(stale).squeeze(1)
            fresh = (Res[:, cols] ** 2).sum(dim=0)
            norms[cols] = fresh
            ref[cols] = fresh
    rest = torch.nonzero(~used).squeeze(1)
    if len(chosen) < k:  # rank-deficient: fill the skeleton with unused columns
        extra = rest[: k - len(chosen)]
        rest = rest[k - len(chosen):]
        chosen.extend(int(i) for i in extra)
    perm = torch.cat([torch.tensor(chosen, dtype=torch.int64, device=Y.device), rest])
    return R[:, perm], perm


def _id_from_r(R: torch.Tensor, perm: torch.Tensor, k: int, n: int) -> IDResult:
    """Interpolation matrix from the pivoted R factor: ``X[:, perm] = [I, R11^+ R12]``."""
    R11 = R[:, :k]
    R12 = R[:, k:]
    diag = torch.diagonal(R11).abs()
    tiny = diag.max().clamp_min(torch.finfo(R.dtype).tiny) * _eps(R.dtype) * max(R.shape)
    if bool((diag > tiny).all()):
        T = torch.linalg.solve_triangular(R11, R12, upper=True)
    else:
        # rank-deficient skeleton (rank larger than the numerical rank): minimum-norm fit
        T = torch.linalg.pinv(R11) @ R12
    X = torch.empty(k, n, dtype=R.dtype, device=R.device)
    X[:, perm[:k]] = torch.eye(k, dtype=R.dtype, device=R.device)
    X[:, perm[k:]] = T
    return IDResult(perm[:k].clone(), X)


def _check_rank(rank: Any, m: int, n: int, func: str) -> int:
    return check_int(rank, "rank", func, low=1, high=min(m, n),
                     high_name="min(m, n)")  # type: ignore[return-value]


def _batched(A: torch.Tensor, fn: Callable[[torch.Tensor], tuple]) -> tuple:
    """Apply ``fn`` to every matrix of a ``(*, m, n)`` stack and stack the fields."""
    if A.ndim == 2:
        return fn(A)
    batch = A.shape[:-2]
    flat = A.reshape(-1, *A.shape[-2:])
    outs = [fn(a) for a in flat]
    fields = list(zip(*outs, strict=True))
    stacked = [torch.stack(f).reshape(*batch, *f[0].shape) for f in fields]
    return type(outs[0])(*stacked)


# ---------------------------------------------------------------------------------------
# interpolative decomposition


def _id_qr(A: torch.Tensor, k: int, gen: torch.Generator | None, oversample: int,
           n_iter: int) -> IDResult:
    R, perm = _pivoted_r(A, k)
    return _id_from_r(R, perm, k, A.shape[-1])


def _row_sketch(op: MatrixOperator, l_: int, gen: torch.Generator, n_iter: int
                ) -> torch.Tensor:
    """Sketch ``Y = Omega (A A^T)^q A`` (l x n) with a Gaussian ``Omega``.

    With ``q = 0`` the sketch preserves all column norms in expectation (what the pivoting
    needs); power iterations (orthonormalised) sharpen the dominant row space for slowly
    decaying spectra but drop the tail energy from the column norms.
    """
    m, n = op.shape
    omega = torch.randn(m, l_, generator=gen, dtype=op.dtype, device=gen.device).to(op.device)
    for _ in range(n_iter):
        Z = torch.linalg.qr(op.rmm(omega)).Q
        omega = torch.linalg.qr(op.mm(Z)).Q
    return op.rmm(omega).mT


def _id_randomized(A: Any, k: int, gen: torch.Generator | None, oversample: int,
                   n_iter: int) -> IDResult:
    op = A if isinstance(A, MatrixOperator) else as_operator(A, "A", "interpolative")
    m, n = op.shape
    l_ = min(k + oversample, m, n)
    assert gen is not None
    Y = _row_sketch(op, max(l_, k), gen, n_iter)
    R, perm = _pivoted_r(Y, k)
    return _id_from_r(R, perm, k, n)


ID_METHODS: dict[str, Callable[..., IDResult]] = {
    "qr": _id_qr,
    "randomized": _id_randomized,
}


def interpolative(
    A: Any,
    rank: int,
    *,
    method: str = "qr",
    oversample: int | None = None,
    n_iter: int = 1,
    generator: GeneratorLike = None,
) -> IDResult:
    """Column interpolative decomposition ``A ~ A[:, columns] @ X``.

    Parameters
    ----------
    A : (*, m, n) array_like
        numpy array or torch tensor (batched for ``method="qr"`` and ``"randomized"``).
        ``method="randomized"`` also accepts a 2-D scipy.sparse matrix or a
        :class:`scipy.sparse.linalg.LinearOperator` (only ``A @ X`` and ``A^T @ X`` are
        used).
    rank : int
        Number of skeleton columns ``k``, in ``[1, min(m, n)]``.
    method : {"qr", "randomized"}, default "qr"
        ``"qr"``: column-pivoted QR of ``A`` itself (Businger-Golub pivoting, stopped
        after ``k`` steps) -- the deterministic reference, O(mnk). ``"randomized"``:
        pivoted QR of the Gaussian sketch ``Omega (A A^T)^q A`` with ``k + oversample``
        rows ([2]_, Sec. 13.2; [1]_, Sec. 5.2): O(mn(k + p)) in matrix products plus a
        pivoted QR of the small sketch.
    oversample : int or None, default None
        Extra sketch rows for ``"randomized"`` (None: ``max(10, rank)``, i.e. about
        ``2 k`` rows, which keeps the pivoting close to that of pivoted QR on ``A``).
    n_iter : int, default 1
        Power iterations ``q`` for ``"randomized"`` (helps slowly decaying spectra).
    generator : int, torch.Generator, numpy.random.Generator or None
        Randomness for ``"randomized"``.

    Returns
    -------
    IDResult
        ``columns`` (*, k) int64 and ``X`` (*, k, n) with ``X[:, columns] = I``. Numpy in,
        numpy out; torch in, torch out (same device and dtype).

    Notes
    -----
    With pivoted QR ``A P = Q [R11 R12]``, ``X P = [I, R11^{-1} R12]`` and
    ``A - A[:, J] X = Q_2 R22`` (in the pivoted order), so the error is the norm of the
    trailing block ``R22``; it is zero when ``rank`` equals the rank of ``A``.

    Examples
    --------
    >>> import torch
    >>> from rankfold.linalg import interpolative
    >>> A = torch.randn(50, 4, dtype=torch.float64) @ torch.randn(4, 30, dtype=torch.float64)
    >>> cols, X = interpolative(A, 4)
    >>> bool(torch.allclose(A[:, cols] @ X, A))
    True
    """
    func = "interpolative"
    method = check_option(method, "method", func, ID_METHODS)
    over = check_int(oversample, "oversample", func, low=0, allow_none=True)
    n_iter = check_int(n_iter, "n_iter", func, low=0)  # type: ignore[assignment]
    if method == "randomized" and (sp.issparse(A) or isinstance(A, spla.LinearOperator)):
        op = as_operator(A, "A", func)
        k = _check_rank(rank, *op.shape, func)
        gen = check_generator(generator, op.device, func=func)
        res = _id_randomized(op, k, gen, max(10, k) if over is None else over, n_iter)
        return to_output(res, op.info)
    T, info = as_tensor(A, "A", func, batched=True)
    k = _check_rank(rank, T.shape[-2], T.shape[-1], func)
    gen = check_generator(generator, T.device, func=func) if method == "randomized" else None
    fn = ID_METHODS[method]
    p = max(10, k) if over is None else over
    res = _batched(T, lambda a: fn(a, k, gen, p, n_iter))
    return to_output(res, info)


# ---------------------------------------------------------------------------------------
# CUR


def _cur_id(A: torch.Tensor, k: int, gen: torch.Generator, core: str, oversample: int,
            n_iter: int) -> CURResult:
    """Two-sided ID (Voronin & Martinsson 2017, Alg. "CUR from ID")."""
    if k + oversample < min(A.shape):
        cols, X = _id_randomized(MatrixOperator(A), k, gen, oversample, n_iter)
    else:
        cols, X = _id_qr(A, k, None, 0, 0)
    C = A[:, cols]
    # row ID of C: C^T ~ C^T[:, rows] W  <=>  C ~ W^T C[rows, :]
    _, perm = _pivoted_r(C.mT, k)
    rows = perm[:k].clone()
    R = A[rows, :]
    if core == "interpolative":
        U = X @ torch.linalg.pinv(R)
    else:
        U = torch.linalg.pinv(C) @ A @ torch.linalg.pinv(R)
    return CURResult(C, U, R, rows, cols)


def _leverage_pick(V: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Sample ``k`` distinct indices with probability proportional to the leverage scores."""
    lev = (V * V).sum(dim=1).to(torch.float64)
    lev = lev.clamp_min(0)
    if int((lev > 0).sum()) < k:  # degenerate: fall back to uniform on ties
        lev = lev + 1e-12 * lev.sum().clamp_min(1.0)
    idx = torch.multinomial(lev.to(gen.device), k, replacement=False, generator=gen)
    return idx.to(V.device)


def _cur_leverage(A: torch.Tensor, k: int, gen: torch.Generator, core: str, oversample: int,
                  n_iter: int) -> CURResult:
    """Columns and rows sampled by rank-k leverage scores (Mahoney & Drineas 2009)."""
    U_, _, Vh = torch.linalg.svd(A, full_matrices=False)
    cols = _leverage_pick(Vh[:k].mT, k, gen)
    rows = _leverage_pick(U_[:, :k], k, gen)
    C = A[:, cols]
    R = A[rows, :]
    U = torch.linalg.pinv(C) @ A @ torch.linalg.pinv(R)
    return CURResult(C, U, R, rows, cols)


CUR_METHODS: dict[str, Callable[..., CURResult]] = {
    "id": _cur_id,
    "leverage": _cur_leverage,
}
CUR_CORES = ("pinv", "interpolative")


def cur(
    A: Any,
    rank: int,
    *,
    method: str = "id",
    core: str = "pinv",
    oversample: int | None = None,
    n_iter: int = 1,
    generator: GeneratorLike = None,
) -> CURResult:
    """CUR decomposition ``A ~ C @ U @ R`` from actual columns and rows of ``A``.

    Parameters
    ----------
    A : (*, m, n) array_like
        Dense numpy array or torch tensor (batched stacks are processed matrix by matrix).
    rank : int
        Number of columns and of rows ``k``, in ``[1, min(m, n)]``.
    method : {"id", "leverage"}, default "id"
        ``"id"``: two-sided interpolative decomposition ([3]_; [2]_, Sec. 13.3): a
        randomized column ID picks the columns ``C``, a pivoted-QR row ID of ``C`` picks
        the rows. ``"leverage"``: columns and rows sampled without replacement with
        probabilities proportional to the rank-``k`` leverage scores ([4]_; uses an exact
        SVD, so it is the O(mn min(m, n)) statistical reference).
    core : {"pinv", "interpolative"}, default "pinv"
        ``"pinv"``: ``U = C^+ A R^+``, the Frobenius-optimal core for the chosen ``C`` and
        ``R`` (one more pass over ``A``). ``"interpolative"``: ``U = X R^+`` with ``X``
        the column-ID interpolation matrix ([3]_), which avoids that pass; only with
        ``method="id"``.
    oversample : int or None, default None
        Sketch oversampling of the randomized column ID (None: ``max(10, rank)``).
    n_iter : int, default 1
        Power iterations of the randomized column ID.
    generator : int, torch.Generator, numpy.random.Generator or None

    Returns
    -------
    CURResult
        ``C`` (*, m, k), ``U`` (*, k, k), ``R`` (*, k, n), ``rows`` and ``cols`` (*, k).

    Notes
    -----
    When ``rank`` equals the rank of ``A`` both methods reproduce ``A`` exactly (with
    probability one for the random choices): ``C`` and ``R`` then span the column and row
    spaces and ``C C^+ A R^+ R = A``.

    Examples
    --------
    >>> import torch
    >>> from rankfold.linalg import cur
    >>> A = torch.randn(40, 3, dtype=torch.float64) @ torch.randn(3, 25, dtype=torch.float64)
    >>> C, U, R, rows, cols = cur(A, 3, generator=0)
    >>> bool(torch.allclose(C @ U @ R, A))
    True
    """
    func = "cur"
    method = check_option(method, "method", func, CUR_METHODS)
    core = check_option(core, "core", func, CUR_CORES)
    if method == "leverage" and core == "interpolative":
        raise InvalidParameterError(
            "The 'core' parameter of cur must be 'pinv' when method='leverage' (the "
            "interpolative core needs method='id'). Got 'interpolative' instead."
        )
    over = check_int(oversample, "oversample", func, low=0, allow_none=True)
    n_iter = check_int(n_iter, "n_iter", func, low=0)  # type: ignore[assignment]
    T, info = as_tensor(A, "A", func, batched=True)
    k = _check_rank(rank, T.shape[-2], T.shape[-1], func)
    oversample = max(10, k) if over is None else over
    gen = check_generator(generator, T.device, func=func)
    fn = CUR_METHODS[method]
    res = _batched(T, lambda a: fn(a, k, gen, core, oversample, n_iter))
    return to_output(res, info)


# ---------------------------------------------------------------------------------------
# Nystrom


def _nystrom_core(Y: torch.Tensor, Omega: torch.Tensor, k: int, func: str
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stable Nystrom from ``Y = A @ Omega`` (batched), Tropp et al. 2017, Alg. 3."""
    n = Y.shape[-2]
    eps = _eps(Y.dtype)
    norm = torch.linalg.matrix_norm(Y, ord=2)
    nu = (eps * max(n, 1) ** 0.5) * norm
    nu = torch.where(nu > 0, nu, torch.full_like(nu, torch.finfo(Y.dtype).tiny))
    for _attempt in range(6):
        Ynu = Y + nu[..., None, None] * Omega
        B = Omega.mT @ Ynu
        B = 0.5 * (B + B.mT)
        L, info_ = torch.linalg.cholesky_ex(B)
        if not bool((info_ != 0).any()):
            break
        nu = nu * 100.0  # B is PSD only up to rounding: shift harder and retry
    else:
        raise ConvergenceError(
            f"{func}: the Cholesky factorisation of Omega^T (A + nu I) Omega failed even "
            "with an enlarged shift; is 'A_psd' symmetric positive semidefinite?"
        )
    F = torch.linalg.solve_triangular(L, Ynu.mT, upper=False).mT  # Ynu L^{-T}
    Uf, Sf, _ = torch.linalg.svd(F, full_matrices=False)
    lam = (Sf * Sf - nu[..., None]).clamp_min(0)
    U, S = Uf[..., :, :k], lam[..., :k]
    if not (bool(torch.isfinite(U).all()) and bool(torch.isfinite(S).all())):
        raise ConvergenceError(f"{func} produced non-finite values.")
    return U, S


def nystrom(
    A_psd: Any,
    rank: int,
    *,
    oversample: int = 10,
    n_iter: int = 0,
    generator: GeneratorLike = None,
    check_symmetric: bool = True,
) -> NystromResult:
    """Randomized Nystrom approximation ``A ~ U diag(S) U^T`` of a PSD matrix.

    One product ``Y = A Omega`` with a Gaussian test matrix ``Omega`` (n x l,
    ``l = rank + oversample``, orthonormalised), the stabilising shift
    ``nu = sqrt(n) eps ||Y||_2``, Cholesky of ``Omega^T (Y + nu Omega)``, a thin SVD and
    removal of the shift ([5]_, Alg. 3; [6]_, Alg. 2.1).

    Parameters
    ----------
    A_psd : (*, n, n) array_like, scipy.sparse matrix or LinearOperator
        Symmetric positive semidefinite. Dense torch/numpy inputs may be batched; sparse
        and LinearOperator inputs are accessed only through ``A @ X``.
    rank : int
        Number of eigenpairs returned, in ``[1, n]``.
    oversample : int, default 10
        Extra test vectors (clipped so that ``l <= n``).
    n_iter : int, default 0
        Subspace iterations ``Omega <- orth(A Omega)`` before the final product (each one
        more pass over ``A``). 0 is the single-pass method of [5]_; 1 or 2 sharpen the
        approximation when the spectrum decays slowly (the result is still a Nystrom
        approximation, with the test matrix ``A^q Omega``).
    generator : int, torch.Generator, numpy.random.Generator or None
    check_symmetric : bool, default True
        For dense input, reject matrices with ``||A - A^T||_F > 100 eps ||A||_F``.

    Returns
    -------
    NystromResult
        ``U`` (*, n, k) orthonormal, ``S`` (*, k) nonnegative, decreasing.

    Notes
    -----
    The Nystrom approximation ``A Omega (Omega^T A Omega)^+ Omega^T A`` is exact when
    ``rank(A) <= l``; with the shift the error is O(nu). Indefinite inputs can make the
    Cholesky fail; the shift is then enlarged a few times before a
    :class:`~rankfold.ConvergenceError` is raised.

    Examples
    --------
    >>> import torch
    >>> from rankfold.linalg import nystrom
    >>> G = torch.randn(100, 5, dtype=torch.float64)
    >>> U, S = nystrom(G @ G.T, 5, generator=0)
    >>> bool(torch.allclose(U @ torch.diag(S) @ U.T, G @ G.T, atol=1e-8))
    True
    """
    func = "nystrom"
    from .._validation import check_bool

    check_symmetric = check_bool(check_symmetric, "check_symmetric", func)
    oversample = check_int(oversample, "oversample", func, low=0)  # type: ignore[assignment]
    n_iter = check_int(n_iter, "n_iter", func, low=0)  # type: ignore[assignment]
    if sp.issparse(A_psd) or isinstance(A_psd, spla.LinearOperator):
        op = as_operator(A_psd, "A_psd", func)
        n = op.shape[0]
        if op.shape[0] != op.shape[1]:
            raise ShapeError(f"The 'A_psd' parameter of {func} must be square. "
                             f"Got shape {tuple(op.shape)}.")
        k = check_int(rank, "rank", func, low=1, high=n, high_name="n")
        gen = check_generator(generator, op.device, func=func)
        l_ = min(k + oversample, n)
        Om = torch.randn(n, l_, generator=gen, dtype=op.dtype, device=gen.device)
        Om = torch.linalg.qr(Om.to(op.device)).Q
        for _ in range(n_iter):
            Om = torch.linalg.qr(op.mm(Om)).Q
        U, S = _nystrom_core(op.mm(Om), Om, k, func)
        return to_output(NystromResult(U, S), op.info)
    T, info = as_tensor(A_psd, "A_psd", func, batched=True)
    if T.shape[-1] != T.shape[-2]:
        raise ShapeError(f"The 'A_psd' parameter of {func} must be square. "
                         f"Got shape {tuple(T.shape)}.")
    n = T.shape[-1]
    k = check_int(rank, "rank", func, low=1, high=n, high_name="n")
    if check_symmetric:
        asym = torch.linalg.matrix_norm(T - T.mT)
        ref = torch.linalg.matrix_norm(T)
        if bool((asym > 100 * _eps(T.dtype) * ref * n ** 0.5).any()):
            raise param_error("A_psd", func, "symmetric (positive semidefinite)",
                              A_psd)
    gen = check_generator(generator, T.device, func=func)
    l_ = min(k + oversample, n)
    Om = torch.randn(*T.shape[:-2], n, l_, generator=gen, dtype=T.dtype, device=gen.device)
    Om = torch.linalg.qr(Om.to(T.device)).Q
    for _ in range(n_iter):
        Om = torch.linalg.qr(T @ Om).Q
    U, S = _nystrom_core(T @ Om, Om, k, func)
    return to_output(NystromResult(U, S), info)
