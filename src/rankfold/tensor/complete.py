"""Tensor completion from observed entries only: CP and Tucker by row-wise ALS.

The tensor is never formed. Each factor row is the solution of a small ridge least-squares
problem over the observed entries of its slice (the ALS of matrix completion, extended to
tensors), so one sweep costs O(nnz R^2) time for CP (O(nnz prod(R)) for Tucker) and
O(nnz R) memory.

References
----------
Tomasi, G., & Bro, R. (2005). PARAFAC and missing values. Chemometrics and Intelligent
Laboratory Systems 75(2), 163-180 (the exact weighted ALS, section 2.2).
Acar, E., Dunlavy, D. M., Kolda, T. G., & Morup, M. (2011). Scalable tensor factorizations
for incomplete data. Chemometrics and Intelligent Laboratory Systems 106(1), 41-56.
Filipovic, M., & Jukic, A. (2015). Tucker factorization with missing data with application
to low-n-rank tensor completion. Multidimensional Systems and Signal Processing 26(3).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from .._errors import ConvergenceError, ConvergenceWarning, ShapeError
from .._random import check_generator
from .._validation import check_bool, check_float, check_int, param_error
from ._common import check_ranks
from ._formats import CPTensor, TuckerTensor, check_indices
from ._rowsolve import accumulate_normal, nonneg_rows, serial, small_work_serial, solve_rows

__all__ = ["cp_complete", "tucker_complete", "CompletionResult"]

_CHUNK = 1 << 16
_PROBE_SWEEPS = 5
"""Sweeps each spectral CP start runs before the best training fit is kept."""
_PROBE_SWEEPS_TUCKER = 3
"""The same for the two spectral Tucker starts."""


class CompletionResult(NamedTuple):
    """Result of a completion fit (the estimators keep all of it)."""

    tensor: CPTensor | TuckerTensor
    history: list[float]  # fit on the observed entries, 1 - ||y - yhat|| / ||y||, per sweep
    n_iter: int
    converged: bool


def check_observations(indices: Any, values: Any, shape: Any, func: str
                       ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...], bool]:
    """Validate ``indices`` (N, K), ``values`` (N,), ``shape``; return tensors and kind."""
    if isinstance(shape, int | np.integer) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, Sequence | torch.Size | np.ndarray) or isinstance(shape, str):
        raise param_error("shape", func, "a sequence of positive ints", shape)
    shp = tuple(shape)
    if len(shp) < 2:
        raise param_error("shape", func, "a sequence of at least 2 positive ints", shape)
    for k, s in enumerate(shp):
        check_int(s, f"shape[{k}]", func, low=1)
    shp = tuple(int(s) for s in shp)
    as_np = not isinstance(values, torch.Tensor)
    if isinstance(values, torch.Tensor):
        y = values
        if not y.is_floating_point():
            y = y.to(torch.get_default_dtype())
    else:
        arr = np.asarray(values)
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise param_error("values", func, "a 1-D array of real numbers", values)
        if arr.dtype.kind != "f" or arr.dtype == np.float16:
            arr = arr.astype(np.float64)
        y = torch.from_numpy(np.ascontiguousarray(arr))
    if y.ndim != 1:
        raise ShapeError(f"The 'values' parameter of {func} must be 1-D. "
                         f"Got shape {tuple(y.shape)}.")
    if y.numel() == 0:
        raise ShapeError(f"The 'values' parameter of {func} must be non-empty. Got shape (0,).")
    if not bool(torch.isfinite(y).all()):
        raise param_error("values", func, "finite (no NaN or infinity)", "non-finite values")
    idx = check_indices(indices, shp, func, device=y.device)
    if idx.shape[0] != y.shape[0]:
        raise ShapeError(f"The 'indices' parameter of {func} must have one row per value "
                         f"({y.shape[0]}). Got {idx.shape[0]} rows.")
    return idx, y, shp, as_np


def _check_common(n_iter_max: Any, tol: Any, l2_reg: Any, func: str) -> tuple[int, float, float]:
    n = check_int(n_iter_max, "n_iter_max", func, low=1)
    t = check_float(tol, "tol", func, low=0.0)
    r = check_float(l2_reg, "l2_reg", func, low=0.0)
    return n, t, r  # type: ignore[return-value]


# --------------------------------------------------------------------------------------
# CP


def _cp_z(idx: torch.Tensor, factors: Sequence[torch.Tensor], mode: int) -> torch.Tensor:
    """Hadamard product of the other factors' rows at each entry: (nnz, R)."""
    Z = None
    for k, f in enumerate(factors):
        if k == mode:
            continue
        rows = f[idx[:, k]]
        Z = rows if Z is None else Z * rows
    return Z  # type: ignore[return-value]


def cp_als_sparse(idx: torch.Tensor, y: torch.Tensor, shape: Sequence[int],
                  weights: torch.Tensor, factors: list[torch.Tensor], *, n_iter_max: int,
                  tol: float, l2_reg: float, nonneg: bool, func: str,
                  history: list[float] | None = None
                  ) -> tuple[torch.Tensor, list[torch.Tensor], list[float], int, bool]:
    """Row-wise exact ALS for CP on observed entries; factors normalized, weights apart.

    ``history`` continues an earlier run (its sweeps count towards ``n_iter_max``).
    """
    K = len(shape)
    ynorm = float(torch.linalg.vector_norm(y))
    ynorm = ynorm if ynorm > 0 else 1.0
    history = [] if history is None else list(history)
    converged = False
    it = len(history)
    for it in range(len(history) + 1, n_iter_max + 1):
        resid = None
        for n in range(K):
            Z = _cp_z(idx, factors, n)
            G, b = accumulate_normal(idx[:, n], Z, y, shape[n])
            A = factors[n] * weights
            A = nonneg_rows(A, G, b, l2_reg) if nonneg else solve_rows(G, b, l2_reg)
            w = torch.linalg.vector_norm(A, dim=0)
            safe = torch.where(w > 0, w, torch.ones_like(w))
            factors[n] = A / safe
            weights = w
            if n == K - 1:
                resid = y - (Z * A[idx[:, n]]).sum(1)
        err = float(torch.linalg.vector_norm(resid))  # type: ignore[arg-type]
        if not math.isfinite(err):
            raise ConvergenceError(f"{func} produced non-finite factors at iteration {it}; "
                                   f"try l2_reg > 0 or a lower rank.")
        history.append(1.0 - err / ynorm)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
            converged = True
            break
    return weights, factors, history, it, converged


_DENSE_EIG_MAX = 4096
"""Modes up to this size use a dense ``I x I`` eigendecomposition in the spectral start;
larger modes use Lanczos (``scipy.sparse.linalg.eigsh``) on the Gram operator."""


def _sparse_unfolding(idx: torch.Tensor, y: torch.Tensor, shape: Sequence[int],
                      mode: int) -> Any:
    """Mode-``mode`` unfolding of the zero-filled sparse tensor as a scipy CSR matrix
    (only the columns that hold an observed entry)."""
    import scipy.sparse as sp

    ind = idx.detach().cpu().numpy()
    vals = y.detach().cpu().double().numpy()
    others = [k for k in range(len(shape)) if k != mode]
    dims = [int(shape[k]) for k in others]
    if math.prod(dims) < 2**62:
        keys = np.ravel_multi_index(tuple(ind[:, k] for k in others), dims)
        _, col = np.unique(keys, return_inverse=True)
    else:  # pragma: no cover - astronomically large tensors
        _, col = np.unique(ind[:, others], axis=0, return_inverse=True)
    col = col.reshape(-1)
    return sp.csr_array((vals, (ind[:, mode], col)), shape=(int(shape[mode]), int(col.max()) + 1))


def _top_offdiag_eigvecs(M: Any, r: int, gen: torch.Generator | None, like: torch.Tensor
                         ) -> torch.Tensor:
    """Leading ``r`` eigenvectors of ``M M^T`` with its diagonal deleted.

    ``M`` is a scipy sparse matrix or a dense torch tensor with ``I`` rows. With sparse
    sampling the diagonal of ``M M^T`` is dominated by each row's own squared entries (the
    sampling noise), not by the shared column space; deleting it makes the off-diagonal
    Gram an unbiased estimate of the full tensor's (up to the sampling rate squared)
    (Montanari & Sun 2018; Cai, Li, Poor & Chen 2021, Ann. Statist. 49(2)).
    """
    I = M.shape[0]
    sparse = not isinstance(M, torch.Tensor)
    # a thin dense M (I x P, P << I): Lanczos costs O(I P) per product instead of the
    # O(I^2 P + I^3) of forming and diagonalizing the I x I Gram
    thin = not sparse and I > 512 and 4 * M.shape[1] < I
    if (I <= _DENSE_EIG_MAX and not thin) or r >= I - 1:
        if sparse:
            G = torch.from_numpy((M @ M.T).toarray()).to(dtype=like.dtype, device=like.device)
        else:
            G = M @ M.T
        G.diagonal().zero_()
        with serial():
            _, V = torch.linalg.eigh(G)
        return V.flip(-1)[:, :r].contiguous()
    from scipy.sparse.linalg import LinearOperator, eigsh

    Mn = M if sparse else M.detach().cpu().double().numpy()
    d = np.asarray((Mn.multiply(Mn)).sum(axis=1)).reshape(-1) if sparse else (Mn ** 2).sum(1)

    def mv(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v).reshape(-1)
        return Mn @ (Mn.T @ v) - d * v

    v0 = torch.randn(I, generator=gen, dtype=torch.float64).numpy() if gen is not None \
        else np.ones(I)
    op = LinearOperator((I, I), matvec=mv, dtype=np.float64)
    w, V = eigsh(op, k=r, which="LA", v0=v0)
    V = V[:, np.argsort(w)[::-1]]
    return torch.from_numpy(np.ascontiguousarray(V)).to(dtype=like.dtype, device=like.device)


def _project_others(idx: torch.Tensor, y: torch.Tensor, factors: Sequence[torch.Tensor],
                    mode: int, n_rows: int) -> torch.Tensor:
    """Zero-filled sparse tensor contracted with the other modes' factors, unfolded:
    ``Y x_{k != mode} U_k^T`` as an ``(I_mode, prod_{k != mode} R_k)`` matrix, in chunks
    (O(nnz prod R) time, O(I prod R) memory)."""
    others = [k for k in range(len(factors)) if k != mode]
    P = math.prod(factors[k].shape[1] for k in others)
    out = torch.zeros(n_rows, P, dtype=y.dtype, device=y.device)
    chunk = max(256, (1 << 22) // max(1, P))
    with serial() if y.device.type == "cpu" else contextlib.nullcontext():
        for s in range(0, idx.shape[0], chunk):
            ch = idx[s:s + chunk]
            rows = [factors[k][ch[:, k]] for k in others]
            rows[0] = rows[0] * y[s:s + chunk, None]  # y folded into the smallest factor
            out.index_add_(0, ch[:, mode], _kron_rows(rows))
    return out


def _max_sin(U: torch.Tensor, V: torch.Tensor) -> float:
    """Largest principal-angle sine between span(U) and span(V) (orthonormal columns,
    ``U`` with at most as many as ``V``): how far ``U`` sticks out of ``V``'s span."""
    with serial():
        s = torch.linalg.svdvals(U.T @ V)
    return math.sqrt(max(0.0, 1.0 - float(s.min()) ** 2))


def first_spectral(idx: torch.Tensor, y: torch.Tensor, shape: Sequence[int],
                   ranks: Sequence[int], gen: torch.Generator | None = None
                   ) -> list[torch.Tensor]:
    """Leading eigenvectors of each diagonal-deleted unfolding Gram (ranks capped)."""
    return [_top_offdiag_eigvecs(_sparse_unfolding(idx, y, shape, k), min(int(r), int(s)),
                                 gen, y) for k, (r, s) in enumerate(zip(ranks, shape, strict=True))]


def spectral_subspaces(idx: torch.Tensor, y: torch.Tensor, shape: Sequence[int],
                       ranks: Sequence[int], gen: torch.Generator | None = None, *,
                       n_power: int = 10, power_tol: float = 1e-2,
                       first: Sequence[torch.Tensor] | None = None,
                       lead: int | None = None) -> list[torch.Tensor]:
    """Orthonormal estimates of the factor subspaces of a sparsely observed tensor.

    1. For each mode, the leading eigenvectors of the diagonal-deleted Gram matrix of the
       zero-filled unfolding (unbiased under uniform sampling, where the plain SVD of the
       zero-filled tensor is dominated by the sampling noise once fewer than about
       ``sqrt(prod I)`` entries are observed per row).
    2. Power iterations (HOOI on the zero-filled tensor): ``U_k`` <- the leading
       eigenvectors of the diagonal-deleted Gram of ``Y x_{j != k} U_j^T``, until no
       subspace moves by more than ``power_tol`` (sine of the largest principal angle) or
       ``n_power`` sweeps. Projecting on the other modes' subspaces removes most of the
       noise: on a planted 1000^3 rank-10 tensor from 1M entries the largest principal
       angle sine went from 0.67-0.999 (step 1) to 0.16 after 2 sweeps (Xia, Yuan & Zhang
       2021, Ann. Statist. 49(1), use the same power iteration with sample splitting).

    Ranks larger than a mode's size are capped at the size. ``first``: step 1's
    eigenvectors, computed earlier (at least as many columns as the ranks). ``lead``:
    with oversampled ranks, only the leading ``lead`` directions must stay inside the new
    subspace for the iteration to stop (the extra, noise-dominated ones keep moving).
    """
    rk = [min(int(r), int(s)) for r, s in zip(ranks, shape, strict=True)]
    if first is None:
        first = first_spectral(idx, y, shape, rk, gen)
    U = [f[:, :r].contiguous() for f, r in zip(first, rk, strict=True)]
    if len(shape) < 2:  # pragma: no cover - validated earlier
        return U
    for _ in range(n_power):
        moved = 0.0
        for k, r in enumerate(rk):
            new = _top_offdiag_eigvecs(_project_others(idx, y, U, k, int(shape[k])), r, gen, y)
            keep = U[k] if lead is None else U[k][:, :min(lead, r)]
            moved = max(moved, _max_sin(keep, new))
            U[k] = new
        if moved < power_tol:
            break
    return U


def _projected_core(idx: torch.Tensor, y: torch.Tensor, shape: Sequence[int],
                    U: Sequence[torch.Tensor]) -> torch.Tensor:
    """Core estimate ``(prod I / nnz) Y x_k U_k^T`` (unbiased under uniform sampling)."""
    M = _project_others(idx, y, U, 0, int(shape[0]))
    scale = math.prod(int(s) for s in shape) / idx.shape[0]
    core = (U[0].T @ M) * scale
    return core.reshape([u.shape[1] for u in U])


def _cp_from_subspaces(idx: torch.Tensor, y: torch.Tensor, shape: Sequence[int], rank: int,
                       U: Sequence[torch.Tensor], gen: torch.Generator, restarts: int
                       ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    from .cp import cp as dense_cp

    core = _projected_core(idx, y, shape, U)
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for s in range(restarts + 1):
            try:
                res = dense_cp(core, rank, init="svd" if s == 0 else "random",
                               n_iter_max=300, tol=1e-10, generator=gen)
            except ConvergenceError:  # pragma: no cover - degenerate core
                continue
            if best is None or res.history[-1] > best.history[-1]:
                best = res
    if best is None:  # pragma: no cover - degenerate core
        raise ConvergenceError("cp_complete: the spectral start failed on a degenerate core; "
                               "try init='random'.")
    fs = [u @ c for u, c in zip(U, best.cp._f, strict=True)]
    n = CPTensor._from_torch(best.cp._w, fs).normalize()
    return n._w, n._f


def spectral_cp_starts(idx: torch.Tensor, y: torch.Tensor, shape: Sequence[int], rank: int,
                       gen: torch.Generator, restarts: int = 4
                       ) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    """CP starts from spectral subspaces (compression before CP: Carroll, Pruzansky &
    Kruskal 1980; Bro & Andersson 1998).

    For subspace dimensions ``R`` and ``R + min(R, 10)`` (capped at each mode's size; the
    second only when it differs): estimate the subspaces (:func:`spectral_subspaces`) and
    the small core ``G`` in them, fit a rank-``rank`` CP to ``G`` (dense ALS from an SVD
    start plus ``restarts`` random starts, the best fit kept) and map its factors back,
    ``A_k = U_k C_k``. The oversampled subspaces still contain a weak component that the
    rank-``R`` estimate can miss at high sparsity; neither start wins every time, so
    :func:`cp_complete` probes both.
    """
    dims = []
    for r in (rank, rank + min(rank, 10)):
        d = [min(r, int(s)) for s in shape]
        if d not in dims:
            dims.append(d)
    first = first_spectral(idx, y, shape, dims[-1], gen)
    return [_cp_from_subspaces(idx, y, shape, rank,
                               spectral_subspaces(idx, y, shape, d, gen, first=first,
                                                  lead=rank),
                               gen, restarts) for d in dims]


def sparse_hosvd_factors(idx: torch.Tensor, y: torch.Tensor, shape: Sequence[int],
                         ranks: Sequence[int], gen: torch.Generator | None = None
                         ) -> list[torch.Tensor]:
    """Spectral subspaces; columns beyond ``I_k`` (ranks larger than a dimension) are
    random unit vectors."""
    U = spectral_subspaces(idx, y, shape, ranks, gen)
    out = []
    for V, s, r in zip(U, shape, ranks, strict=True):
        if r > s:
            extra = torch.randn(s, r - s, generator=gen, dtype=y.dtype, device=y.device)
            V = torch.cat([V, extra / torch.linalg.vector_norm(extra, dim=0)], 1)
        out.append(V)
    return out


def _random_cp(shape: Sequence[int], rank: int, y: torch.Tensor, gen: torch.Generator,
               nonneg: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    K = len(shape)
    rms = float(torch.sqrt((y.double() ** 2).mean()))
    rms = rms if rms > 0 else 1.0
    scale = (rms / math.sqrt(rank)) ** (1.0 / K)
    factors = []
    for s in shape:
        if nonneg:
            f = torch.rand(s, rank, generator=gen, dtype=y.dtype, device=y.device)
            f = f * (scale * math.sqrt(3.0))
        else:
            f = torch.randn(s, rank, generator=gen, dtype=y.dtype, device=y.device) * scale
        factors.append(f)
    w = torch.ones(rank, dtype=y.dtype, device=y.device)
    n = CPTensor._from_torch(w, factors).normalize()
    return n._w, n._f


def _check_init_cp(init: Any, shape: Sequence[int], rank: int, func: str,
                   options: Sequence[str]) -> Any:
    if isinstance(init, CPTensor):
        if init.shape != tuple(shape) or init.rank != rank:
            raise param_error("init", func, f"a CPTensor of shape {tuple(shape)} and rank "
                              f"{rank}", f"CPTensor(shape={init.shape}, rank={init.rank})")
        return init
    if isinstance(init, str) and init in options:
        return init
    listed = ", ".join(repr(o) for o in options)
    raise param_error("init", func, f"one of {{{listed}}} or a CPTensor", init)


def cp_complete(indices: Any, values: Any, shape: Sequence[int], rank: int, *,
                n_iter_max: int = 100, tol: float = 1e-6, l2_reg: float = 0.0,
                nonneg: bool = False, init: str | CPTensor = "svd",
                generator: Any = None) -> CPTensor:
    """CP completion from observed entries (the full tensor is never formed).

    Alternating least squares where each factor row solves a ridge least-squares problem
    over the observed entries in its slice.

    Parameters
    ----------
    indices : int array of shape (N, K)
        Coordinates of the observed entries.
    values : array of shape (N,)
        Observed values (their dtype and device set the computation's).
    shape : sequence of K ints
        Shape of the full tensor.
    rank : int >= 1
        CP rank R.
    n_iter_max : int, default 100
        Maximum ALS sweeps.
    tol : float, default 1e-6
        Stop when the training fit ``1 - ||y - yhat|| / ||y||`` changes by less.
    l2_reg : float, default 0
        Ridge penalty on each factor row as it is updated (weights absorbed). Rows with
        fewer observations than ``rank`` need it (otherwise they get the minimum-norm
        solution).
    nonneg : bool, default False
        Non-negative factors (exact coordinate descent per row).
    init : {"svd", "random"} or CPTensor, default "svd"
        "svd": spectral start. Factor subspaces from the diagonal-deleted Gram matrices
        of the zero-filled unfoldings, refined by power iterations (HOOI on the
        zero-filled tensor, diagonal deleted); a small core estimated in them is CP
        decomposed and mapped back (:func:`spectral_cp_starts`). Two such starts
        (subspaces of dimension R and R + min(R, 10)) run 5 sweeps each and the one with
        the better training fit continues. "random": Gaussian factors scaled to the data
        (from ``generator``); cheaper but it can stall in a local minimum at high
        sparsity. On planted tensors the spectral start reached the noise level from
        1M entries of a 1000^3 rank-10 tensor (0.1% density) and from 5% of a 60^3
        rank-10 tensor, where taking the unfoldings' singular vectors directly as CP
        factors stalled. Below about ``R * I^1.5`` observed entries (for ``I^3`` tensors)
        no start is reliable.
    generator : int, torch.Generator, numpy Generator or None
        Randomness of the random initialization.

    Returns
    -------
    CPTensor
        Arranged (unit-norm factors, sorted weights); numpy parts when ``values`` is numpy.
        Cost per sweep: O(nnz R^2 + sum_k I_k R^3) time, O(nnz R + sum_k I_k R^2) memory.

    Examples
    --------
    >>> import numpy as np
    >>> from rankfold.tensor import cp_complete
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = (rng.standard_normal((n, 2)) for n in (30, 40, 50))
    >>> idx = np.stack([rng.integers(0, n, 6000) for n in (30, 40, 50)], axis=1)
    >>> vals = np.einsum("nr,nr,nr->n", A[idx[:, 0]], B[idx[:, 1]], C[idx[:, 2]])
    >>> est = cp_complete(idx, vals, (30, 40, 50), 2, generator=0)
    >>> bool(np.abs(est.values_at(idx) - vals).max() < 1e-4)
    True
    """
    return _cp_complete(indices, values, shape, rank, n_iter_max=n_iter_max, tol=tol,
                        l2_reg=l2_reg, nonneg=nonneg, init=init, generator=generator).tensor


def _cp_complete(indices: Any, values: Any, shape: Sequence[int], rank: Any, *,
                 n_iter_max: Any, tol: Any, l2_reg: Any, nonneg: Any, init: Any,
                 generator: Any) -> CompletionResult:
    func = "cp_complete"
    idx, y, shp, as_np = check_observations(indices, values, shape, func)
    R = check_int(rank, "rank", func, low=1)
    n_iter_max, tol, l2_reg = _check_common(n_iter_max, tol, l2_reg, func)
    if tol > 0:  # changes below the dtype's resolution are noise
        tol = max(tol, 4 * torch.finfo(y.dtype).eps)
    nonneg = check_bool(nonneg, "nonneg", func)
    init = _check_init_cp(init, shp, R, func, ["svd", "random"])  # type: ignore[arg-type]
    gen = check_generator(generator, y.device, func=func)
    if isinstance(init, CPTensor):
        n = init.to(dtype=y.dtype, device=y.device).normalize()
        starts = [(n._w.clone(), [f.clone() for f in n._f])]
    elif init == "svd":
        starts = spectral_cp_starts(idx, y, shp, R, gen)  # type: ignore[arg-type]
    else:
        starts = [_random_cp(shp, R, y, gen, nonneg)]  # type: ignore[arg-type]
    if nonneg and not isinstance(init, CPTensor):
        starts = [(w0, [f.abs() for f in f0]) for w0, f0 in starts]
    kw = dict(tol=tol, l2_reg=l2_reg, nonneg=nonneg, func=func)
    with small_work_serial(idx.shape[0] * (R + 1) ** 2 * len(shp), y.device):
        hist: list[float] = []
        if len(starts) > 1:  # probe each start for a few sweeps, keep the best fit
            probe = min(n_iter_max, _PROBE_SWEEPS)
            runs = [cp_als_sparse(idx, y, shp, w0, f0, n_iter_max=probe, **kw)  # type: ignore[arg-type]
                    for w0, f0 in starts]
            w, fs, hist, it, conv = max(runs, key=lambda r: r[2][-1])
        else:
            w, fs = starts[0]
        if not hist or (it < n_iter_max and not conv):
            w, fs, hist, it, conv = cp_als_sparse(idx, y, shp, w, fs, n_iter_max=n_iter_max,
                                                  history=hist, **kw)  # type: ignore[arg-type]
    if tol > 0 and not conv:
        warnings.warn(f"{func} stopped after n_iter_max={n_iter_max} sweeps before the fit "
                      f"changed by less than tol={tol}.", ConvergenceWarning, stacklevel=3)
    out = CPTensor._from_torch(w, fs, as_np).arrange()
    return CompletionResult(out, hist, it, conv)


# --------------------------------------------------------------------------------------
# Tucker


def _tucker_z(core: torch.Tensor, rows: Sequence[torch.Tensor | None], mode: int) -> torch.Tensor:
    """``z_e = core x_{k != mode} rows_k[e]`` for every entry: (N, R_mode)."""
    G = torch.movedim(core, mode, -1)
    others = [r for k, r in enumerate(rows) if k != mode]
    dims = [core.shape[k] for k in range(core.ndim) if k != mode]
    N = others[0].shape[0]  # type: ignore[union-attr]
    T = others[0] @ G.reshape(dims[0], -1)  # type: ignore[operator]
    for r, d in zip(others[1:], dims[1:], strict=True):
        T = torch.einsum("nrs,nr->ns", T.reshape(N, d, -1), r)
    return T.reshape(N, core.shape[mode])


def _kron_rows(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """Row-wise Kronecker product (C order), shape (N, prod R_k)."""
    W = rows[0]
    for r in rows[1:]:
        W = (W[:, :, None] * r[:, None, :]).reshape(W.shape[0], -1)
    return W


_CORE_NORMAL_MAX = 64
"""Cores up to this many entries are solved by normal equations (O(nnz P^2) per sweep);
larger ones by conjugate gradients warm-started from the current core (O(nnz P) per
iteration; each iterate lowers the objective, so the fit still never decreases)."""


def _core_update(idx: torch.Tensor, y: torch.Tensor, factors: Sequence[torch.Tensor],
                 core: torch.Tensor, l2_reg: float) -> torch.Tensor:
    """Least-squares core over the observed entries (normal equations or CG)."""
    P = core.numel()
    chunk = max(256, (1 << 22) // P)

    def rows(s: int) -> torch.Tensor:
        ch = idx[s:s + chunk]
        return _kron_rows([f[ch[:, k]] for k, f in enumerate(factors)])

    if P <= _CORE_NORMAL_MAX:
        A = torch.zeros(P, P, dtype=y.dtype, device=y.device)
        b = torch.zeros(P, dtype=y.dtype, device=y.device)
        for s in range(0, idx.shape[0], chunk):
            W = rows(s)
            A += W.T @ W
            b += W.T @ y[s:s + chunk]
        return solve_rows(A, b[None, :], l2_reg)[0].reshape(core.shape)

    # CG without forming the (chunk, P) Kronecker rows: with u0 the first mode's rows and
    # Kr the row-wise Kronecker product of the others, W v = rowsum((u0 @ V) * Kr) and
    # W^T r = u0^T (r * Kr), two matrix products per chunk (V = v as R_0 x P / R_0)
    R0 = core.shape[0]
    crest = max(256, (1 << 22) // max(1, P // R0))

    def parts(s: int) -> tuple[torch.Tensor, torch.Tensor]:
        ch = idx[s:s + crest]
        rest = [f[ch[:, k]] for k, f in enumerate(factors) if k > 0]
        return factors[0][ch[:, 0]], _kron_rows(rest)

    def normal_mv(v: torch.Tensor) -> torch.Tensor:
        V = v.reshape(R0, -1)
        out = l2_reg * V
        for s in range(0, idx.shape[0], crest):
            u0, Kr = parts(s)
            wv = ((u0 @ V) * Kr).sum(1)
            out = out + u0.T @ (wv[:, None] * Kr)
        return out.reshape(-1)

    b = torch.zeros(R0, P // R0, dtype=y.dtype, device=y.device)
    for s in range(0, idx.shape[0], crest):
        u0, Kr = parts(s)
        b += u0.T @ (y[s:s + crest, None] * Kr)
    b = b.reshape(-1)
    x = core.reshape(-1).clone()
    r = b - normal_mv(x)
    p = r.clone()
    rs = float(r @ r)
    # relative to this solve's starting residual (a floor relative to b would stop a warm
    # start near the optimum before any step and cap the attainable accuracy)
    eps = torch.finfo(y.dtype).eps
    stop = max(1e-12 * rs, (eps ** 2) * float(b @ b))
    for _ in range(25):
        if rs <= stop:
            break
        Ap = normal_mv(p)
        alpha = rs / float(p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = float(r @ r)
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x.reshape(core.shape)


def _balance(core: torch.Tensor, factors: list[torch.Tensor]) -> torch.Tensor:
    """Rescale the factors (in place) and the core, leaving the model unchanged, so that
    ``||core||^2 = ||U_1||^2 = ... = ||U_K||^2`` (Frobenius).

    Of all scalar gauges ``U_k -> s_k U_k``, ``core -> core / prod s_k`` this one minimises
    the ridge penalty ``||core||^2 + sum_k ||U_k||^2`` (at the optimum every term equals
    ``(||core||^2 prod_k ||U_k||^2)^(1/(K+1))``), so applying it between the exact ridge
    solves never raises the regularised objective. Orthonormal factors instead put the
    whole scale into the core: the ridge then acts on parameters of wildly different
    sizes, and re-orthonormalising after each ridge solve changes the objective (the fit
    oscillated and stalled near the mean on non-centred, non-uniformly sampled data).
    """
    K = len(factors)
    g2 = float(torch.linalg.vector_norm(core)) ** 2
    f2 = [float(torch.linalg.vector_norm(f)) ** 2 for f in factors]
    if not (g2 > 0 and all(v > 0 for v in f2)) or not math.isfinite(g2 * math.prod(f2)):
        return core
    logt = (math.log(g2) + sum(math.log(v) for v in f2)) / (K + 1)
    total = 0.0
    for k in range(K):
        ls = 0.5 * (logt - math.log(f2[k]))  # log s_k
        factors[k] = factors[k] * math.exp(ls)
        total += ls
    return core * math.exp(-total)


def _orthonormalize(core: torch.Tensor, factors: Sequence[torch.Tensor]
                    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Orthonormal factors (thin QR), the triangular parts moved into the core."""
    out = list(factors)
    for n, A in enumerate(factors):
        if A.shape[0] >= A.shape[1]:
            with serial():
                Q, Rm = torch.linalg.qr(A)
            out[n] = Q
            core = torch.movedim(torch.tensordot(Rm, core, dims=([1], [n])), 0, n)
    return core, out


def tucker_als_sparse(idx: torch.Tensor, y: torch.Tensor, shape: Sequence[int],
                      core: torch.Tensor, factors: list[torch.Tensor], *, n_iter_max: int,
                      tol: float, l2_reg: float, func: str,
                      history: list[float] | None = None
                      ) -> tuple[torch.Tensor, list[torch.Tensor], list[float], int, bool]:
    """Row-wise ALS for Tucker on observed entries (ridge ``l2_reg`` on the core and the
    factor rows, in the balanced gauge of :func:`_balance`); orthonormal factors returned.

    ``history`` continues an earlier run (its sweeps count towards ``n_iter_max``).
    """
    K = len(shape)
    ynorm = float(torch.linalg.vector_norm(y))
    ynorm = ynorm if ynorm > 0 else 1.0
    history = [] if history is None else list(history)
    converged = False
    it = len(history)
    chunk = max(256, (1 << 22) // max(1, math.prod(core.shape)))
    factors = list(factors)
    core = _balance(core, factors)
    for it in range(len(history) + 1, n_iter_max + 1):
        for n in range(K):
            Zs = []
            for s in range(0, idx.shape[0], chunk):
                ch = idx[s:s + chunk]
                Zs.append(_tucker_z(core, [f[ch[:, k]] if k != n else None
                                           for k, f in enumerate(factors)], n))
            Z = torch.cat(Zs)
            G, b = accumulate_normal(idx[:, n], Z, y, shape[n])
            factors[n] = solve_rows(G, b, l2_reg)
            core = _balance(core, factors)
        core = _core_update(idx, y, factors, core, l2_reg)
        core = _balance(core, factors)
        pred = torch.empty_like(y)
        for s in range(0, idx.shape[0], chunk):
            ch = idx[s:s + chunk]
            z = _tucker_z(core, [f[ch[:, k]] if k != 0 else None
                                 for k, f in enumerate(factors)], 0)
            pred[s:s + chunk] = (z * factors[0][ch[:, 0]]).sum(1)
        err = float(torch.linalg.vector_norm(y - pred))
        if not math.isfinite(err):
            raise ConvergenceError(f"{func} produced non-finite factors at iteration {it}; "
                                   f"try l2_reg > 0 or lower ranks.")
        history.append(1.0 - err / ynorm)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
            converged = True
            break
    core, factors = _orthonormalize(core, factors)
    return core, factors, history, it, converged


def tucker_complete(indices: Any, values: Any, shape: Sequence[int], ranks: Any, *,
                    n_iter_max: int = 50, tol: float = 1e-6, l2_reg: float = 0.0,
                    init: str | TuckerTensor = "svd", generator: Any = None) -> TuckerTensor:
    """Tucker completion from observed entries (the full tensor is never formed).

    Alternating least squares: each factor row solves a ridge least-squares problem over
    its slice's observed entries, and the core solves the ridge least-squares problem over
    all observed entries (normal equations when ``prod(ranks) <= 64``, conjugate gradients
    otherwise, warm-started from the current core). Between the solves the core and the
    factors are rescaled to equal Frobenius norms (the scalar gauge that minimises the
    ridge penalty, so the regularised objective never increases); the factors are
    orthonormalised (QR, the triangular parts moving into the core) only at the end.

    Parameters
    ----------
    indices : int array of shape (N, K)
    values : array of shape (N,)
    shape : sequence of K ints
    ranks : int or sequence of K ints
        Multilinear ranks ``(R_1, ..., R_K)``, each in ``[1, I_k]``.
    n_iter_max : int, default 50
    tol : float, default 1e-6
        Stop when the training fit changes by less.
    l2_reg : float, default 0
        Ridge penalty on factor rows and on the core.
    init : {"svd", "random"} or TuckerTensor, default "svd"
        "svd": spectral subspaces (the leading eigenvectors of the diagonal-deleted Gram
        matrices of the zero-filled unfoldings, and the same refined by power iterations,
        see :func:`spectral_subspaces`); each start runs 3 sweeps and the better
        training fit continues. "random": orthonormal random factors. The core is solved
        by least squares (warm-started from the zero-filled projection).
    generator : int, torch.Generator, numpy Generator or None

    Returns
    -------
    TuckerTensor
        Orthonormal factors; numpy parts when ``values`` is numpy. Cost per sweep:
        O(nnz prod(R)) time and O(nnz max R_k) memory.

    Examples
    --------
    >>> import numpy as np
    >>> from rankfold.tensor import TuckerTensor, tucker_complete
    >>> rng = np.random.default_rng(0)
    >>> truth = TuckerTensor(rng.standard_normal((2, 2, 2)),
    ...                      [rng.standard_normal((n, 2)) for n in (20, 25, 30)])
    >>> idx = np.stack([rng.integers(0, n, 4000) for n in (20, 25, 30)], axis=1)
    >>> est = tucker_complete(idx, truth.values_at(idx), truth.shape, 2, generator=0)
    >>> bool(np.abs(est.values_at(idx) - truth.values_at(idx)).max() < 1e-4)
    True
    """
    return _tucker_complete(indices, values, shape, ranks, n_iter_max=n_iter_max, tol=tol,
                            l2_reg=l2_reg, init=init, generator=generator).tensor


def _tucker_complete(indices: Any, values: Any, shape: Sequence[int], ranks: Any, *,
                     n_iter_max: Any, tol: Any, l2_reg: Any, init: Any,
                     generator: Any) -> CompletionResult:
    func = "tucker_complete"
    idx, y, shp, as_np = check_observations(indices, values, shape, func)
    rk = check_ranks(ranks, shp, func, allow_none=False, bound=shp)
    n_iter_max, tol, l2_reg = _check_common(n_iter_max, tol, l2_reg, func)
    if tol > 0:  # changes below the dtype's resolution are noise
        tol = max(tol, 4 * torch.finfo(y.dtype).eps)
    if isinstance(init, TuckerTensor):
        if init.shape != shp or init.ranks != tuple(rk):  # type: ignore[arg-type]
            raise param_error("init", func, f"a TuckerTensor of shape {shp} and ranks "
                              f"{tuple(rk)}", f"TuckerTensor(shape={init.shape}, "  # type: ignore[arg-type]
                              f"ranks={init.ranks})")
        n = init.to(dtype=y.dtype, device=y.device).normalize()
        core, fs = n._c.clone(), [f.clone() for f in n._f]
    elif isinstance(init, str) and init in ("svd", "random"):
        gen = check_generator(generator, y.device, func=func)
        if init == "svd":
            # two starts: step 1's subspaces and the power-iterated ones (the power
            # iterations help at high sparsity and can hurt at high density, where deleting
            # the Gram diagonal also deletes signal)
            first = first_spectral(idx, y, shp, rk, gen)  # type: ignore[arg-type]
            bases = [first, spectral_subspaces(idx, y, shp, rk, gen,  # type: ignore[arg-type]
                                               first=first)]
            starts = [(_core_update(idx, y, U, _projected_core(idx, y, shp, U), l2_reg), U)
                      for U in bases]
        else:
            fs = [torch.linalg.qr(torch.randn(s, r, generator=gen, dtype=y.dtype,
                                              device=y.device))[0]
                  for s, r in zip(shp, rk, strict=True)]  # type: ignore[arg-type]
            core = torch.zeros(rk, dtype=y.dtype, device=y.device)  # type: ignore[arg-type]
            starts = [(_core_update(idx, y, fs, core, l2_reg), fs)]
    else:
        raise param_error("init", func, "one of {'svd', 'random'} or a TuckerTensor", init)
    if isinstance(init, TuckerTensor):
        starts = [(core, fs)]
    kw = dict(tol=tol, l2_reg=l2_reg, func=func)
    with small_work_serial(idx.shape[0] * math.prod(rk) * len(shp), y.device):  # type: ignore[arg-type]
        hist: list[float] = []
        if len(starts) > 1:  # probe each start for a few sweeps, keep the best fit
            probe = min(n_iter_max, _PROBE_SWEEPS_TUCKER)
            runs = [tucker_als_sparse(idx, y, shp, c0, list(f0), n_iter_max=probe,
                                      **kw)  # type: ignore[arg-type]
                    for c0, f0 in starts]
            core, fs, hist, it, conv = max(runs, key=lambda r: r[2][-1])
        else:
            core, fs = starts[0]
        if not hist or (it < n_iter_max and not conv):
            core, fs, hist, it, conv = tucker_als_sparse(
                idx, y, shp, core, list(fs), n_iter_max=n_iter_max, history=hist,
                **kw)  # type: ignore[arg-type]
    if tol > 0 and not conv:
        warnings.warn(f"{func} stopped after n_iter_max={n_iter_max} sweeps before the fit "
                      f"changed by less than tol={tol}.", ConvergenceWarning, stacklevel=3)
    return CompletionResult(TuckerTensor._from_torch(core, fs, as_np), hist, it, conv)
