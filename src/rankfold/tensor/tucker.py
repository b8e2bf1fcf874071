"""Tucker decomposition: sequentially truncated HOSVD, HOOI and a randomized variant.

References
----------
Vannieuwenhoven, N., Vandebril, R., & Meerbergen, K. (2012). A new truncation strategy for
the higher-order singular value decomposition. SIAM J. Sci. Comput. 34(2), A1027-A1052,
Algorithm 2 (ST-HOSVD) and Theorem 5.1 (error bound).
De Lathauwer, L., De Moor, B., & Vandewalle, J. (2000). On the best rank-1 and
rank-(R1, ..., RN) approximation of higher-order tensors. SIAM J. Matrix Anal. Appl. 21(4)
(HOOI, Algorithm 4.2).
Minster, R., Saibaba, A. K., & Kilmer, M. E. (2020). Randomized algorithms for low-rank
tensor decompositions in the Tucker format. SIAM J. Math. Data Sci. 2(1), Algorithm 3.2
(randomized ST-HOSVD).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from .._errors import ConvergenceError, ConvergenceWarning, InvalidParameterError
from .._random import check_generator
from .._validation import check_float, check_int, check_option, param_error
from ._common import as_dense_tensor, check_mask, check_ranks, fill_missing
from ._formats import TuckerTensor
from ._rowsolve import serial, small_work_serial
from ._unfold import _numpy_ok, fold, matmul, multi_mode_dot, sq_norm, unfold
from .complete import tucker_als_sparse

__all__ = ["tucker", "TuckerResult", "TUCKER_METHODS", "MISSING_METHODS"]


class TuckerResult(NamedTuple):
    """Result of :func:`tucker`."""

    tucker: TuckerTensor
    history: list[float]  # fit 1 - ||X - T|| / ||X|| per sweep (one entry for sthosvd)
    n_iter: int
    converged: bool


def _leading(Y: torch.Tensor, r: int | None, budget2: float | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Leading left singular vectors of ``Y`` (I, M) and the squared singular values.

    Keeps ``r`` vectors, or the fewest whose discarded squared singular values sum to at
    most ``budget2`` (capped by ``r`` when both are given).
    """
    I, M = Y.shape
    if I <= M and I * I * M > (1 << 22):
        gram = Y @ Y.T
        with serial():
            evals, V = torch.linalg.eigh(gram)
        s2, U = evals.flip(0).clamp_min(0), V.flip(1)
    else:
        with serial():
            U, S, _ = torch.linalg.svd(Y, full_matrices=False)
        s2 = S * S
    keep = U.shape[1] if r is None else min(r, U.shape[1])
    if budget2 is not None:
        tail = s2.double().flip(0).cumsum(0).flip(0)  # tail[j] = sum_{i >= j} s2[i]
        need = int((tail > budget2).sum())
        keep = min(keep, max(1, need))
    return U[:, :keep], s2


def _leading_subspace(Y: torch.Tensor, r: int) -> torch.Tensor:
    """Orthonormal basis of the leading ``r`` left singular vectors of ``Y`` (I, M).

    For HOOI's small projected unfoldings: eigenvectors of the smaller Gram (``Y^T Y`` when
    M < I), ``U = orth(Y V)`` by a thin QR (exactly orthonormal even where the Gram
    squares small singular values). On CPU through numpy's LAPACK (a 200 x 100 SVD in
    torch took ~3-7 ms per call on the shared machine, this ~0.5 ms).
    """
    I, M = Y.shape
    r = min(r, I, M)
    if M >= I:
        return _leading(Y, r, None)[0]
    if _numpy_ok(Y):
        y = Y.numpy()
        _, V = np.linalg.eigh(y.T @ y)
        Z = y @ V[:, ::-1][:, :r]
        Q, Rf = np.linalg.qr(Z)
        Q = Q * np.where(np.diag(Rf) < 0, -1.0, 1.0).astype(Q.dtype)
        return torch.from_numpy(np.ascontiguousarray(Q))
    with serial():
        _, V = torch.linalg.eigh(Y.T @ Y)
        Q, Rf = torch.linalg.qr(Y @ V.flip(1)[:, :r])
    return Q * torch.where(torch.diagonal(Rf) < 0, -1.0, 1.0).to(Q.dtype)


def _sketch_factors(X: torch.Tensor, ranks: Sequence[int], gen: torch.Generator,
                    oversample: int = 10) -> list[torch.Tensor]:
    """Start for HOOI: one randomized range pass per mode on the shrinking core (ST-HOSVD
    order). Each mode: ``Z = Y Omega``, ``Q = qr(Z)``, ``B = Q^T Y`` and the leading
    eigenvectors of the small ``B B^T``; every product is one GEMM on an unfolding.
    """
    core, fs = X, []
    for k, r in enumerate(ranks):
        Yk = unfold(core, k)
        I, M = Yk.shape
        if r >= min(I, M) or min(I, M) <= r + oversample:
            U, _ = _leading(Yk, r, None)
        else:
            L = r + oversample
            Om = torch.randn(M, L, generator=gen, dtype=X.dtype, device=X.device)
            with serial():
                Q, _ = torch.linalg.qr(matmul(Yk, Om))
            B = matmul(Q.T, Yk)
            with serial():
                _, V = torch.linalg.eigh(B @ B.T)
            U = Q @ V.flip(1)[:, :r]
        shape = list(core.shape)
        shape[k] = U.shape[1]
        core = fold(matmul(U.T, Yk), k, shape)
        fs.append(U)
    return fs


def _sthosvd(X: torch.Tensor, ranks: Sequence[int] | None, tol: float | None,
             gen: torch.Generator, **_: Any) -> tuple[TuckerTensor, list[float], int, bool]:
    K = X.ndim
    normX2 = sq_norm(X)
    budget = None if tol is None else tol * tol * normX2 / K
    core, fs = X, []
    for k in range(K):
        U, _ = _leading(unfold(core, k), None if ranks is None else ranks[k], budget)
        shape = list(core.shape)
        shape[k] = U.shape[1]
        core = fold(U.T @ unfold(core, k), k, shape)
        fs.append(U)
    fit = _fit_from_core(core, normX2)
    return TuckerTensor._from_torch(core, fs), [fit], 1, True


def _fit_from_core(core: torch.Tensor, normX2: float) -> float:
    res2 = max(normX2 - float(torch.sum(core.double() ** 2)), 0.0)
    return 1.0 - math.sqrt(res2) / (math.sqrt(normX2) if normX2 > 0 else 1.0)


def _range_finder(Y: torch.Tensor, r: int, gen: torch.Generator, n_iter: int = 1,
                  oversample: int = 10) -> torch.Tensor:
    """Orthonormal basis of the leading ``r`` left singular vectors of ``Y`` (randomized)."""
    try:
        from ..linalg.rsvd import rsvd
    except ImportError:
        rsvd = None
    if rsvd is not None:
        res = rsvd(Y, r, n_iter=n_iter, oversample=oversample, generator=gen)
        return res[0]
    L = min(r + oversample, min(Y.shape))
    Om = torch.randn(Y.shape[1], L, generator=gen, dtype=Y.dtype, device=Y.device)
    Z = Y @ Om
    with serial():
        Q, _ = torch.linalg.qr(Z)
    for _ in range(n_iter):
        Z = Y.T @ Q
        with serial():
            Q, _ = torch.linalg.qr(Z)
        Z = Y @ Q
        with serial():
            Q, _ = torch.linalg.qr(Z)
    B = Q.T @ Y
    with serial():
        U, _, _ = torch.linalg.svd(B, full_matrices=False)
    return (Q @ U)[:, :r]


def _randomized(X: torch.Tensor, ranks: Sequence[int] | None, tol: float | None,
                gen: torch.Generator, *, power_iter: int = 1, **_: Any
                ) -> tuple[TuckerTensor, list[float], int, bool]:
    if ranks is None:
        raise InvalidParameterError(
            "The 'ranks' parameter of tucker must be given for method='randomized'. "
            "Got None instead.")
    K = X.ndim
    normX2 = sq_norm(X)
    core, fs = X, []
    for k in range(K):
        Yk = unfold(core, k)
        if ranks[k] >= min(Yk.shape):
            U, _ = _leading(Yk, ranks[k], None)
        else:
            U = _range_finder(Yk, ranks[k], gen, n_iter=power_iter)
        shape = list(core.shape)
        shape[k] = U.shape[1]
        core = fold(U.T @ Yk, k, shape)
        fs.append(U)
    return TuckerTensor._from_torch(core, fs), [_fit_from_core(core, normX2)], 1, True


def _hooi_sweeps(X: torch.Tensor, fs: list[torch.Tensor], ranks: Sequence[int],
                 n_iter_max: int, conv_tol: float
                 ) -> tuple[torch.Tensor, list[torch.Tensor], list[float], int, bool]:
    """HOOI sweeps touching X twice per sweep (modes split in halves, partial reuse)."""
    K = X.ndim
    normX2 = sq_norm(X)
    m = (K + 1) // 2
    halves = [list(range(m)), list(range(m, K))]
    history: list[float] = []
    converged = False
    core = X
    it = 0
    for it in range(1, n_iter_max + 1):
        for h, kept in enumerate(halves):
            other = halves[1 - h]
            P = multi_mode_dot(X, [fs[k] if k in other else None for k in range(K)],
                               transpose=True)
            for n in kept:
                Y = multi_mode_dot(P, [fs[k] if (k in kept and k != n) else None
                                       for k in range(K)], transpose=True)
                U = _leading_subspace(unfold(Y, n), ranks[n])
                fs[n] = U
                if h == 1 and n == kept[-1]:
                    core = multi_mode_dot(Y, [U if k == n else None for k in range(K)],
                                          transpose=True)
        fit = _fit_from_core(core, normX2)
        if not math.isfinite(fit):
            raise ConvergenceError(f"tucker produced non-finite factors at iteration {it}.")
        history.append(fit)
        if len(history) > 1 and abs(history[-1] - history[-2]) < conv_tol:
            converged = True
            break
    return core, fs, history, it, converged


def _init_factors(X: torch.Tensor, ranks: Sequence[int], init: Any, gen: torch.Generator
                  ) -> list[torch.Tensor]:
    if isinstance(init, TuckerTensor):
        return list(init.to(dtype=X.dtype, device=X.device).normalize()._f)
    if init == "auto":
        init = "sthosvd" if X.numel() <= (1 << 21) else "randomized"
    if init == "random":
        return [torch.linalg.qr(torch.randn(s, r, generator=gen, dtype=X.dtype,
                                            device=X.device))[0]
                for s, r in zip(X.shape, ranks, strict=True)]
    if init == "randomized":  # one pass per mode: the HOOI sweeps refine it anyway
        return _sketch_factors(X, ranks, gen)
    return list(_sthosvd(X, ranks, None, gen)[0]._f)


def _hooi(X: torch.Tensor, ranks: Sequence[int] | None, tol: float | None,
          gen: torch.Generator, *, n_iter_max: int, conv_tol: float, init: Any,
          **_: Any) -> tuple[TuckerTensor, list[float], int, bool]:
    if ranks is None:  # ranks from the tolerance, then refine
        ranks = _sthosvd(X, None, tol, gen)[0].ranks
    fs = _init_factors(X, ranks, init, gen)
    core, fs, hist, it, conv = _hooi_sweeps(X, fs, ranks, n_iter_max, conv_tol)
    return TuckerTensor._from_torch(core, fs), hist, it, conv


TUCKER_METHODS: dict[str, Callable[..., tuple[TuckerTensor, list[float], int, bool]]] = {
    "hooi": _hooi,
    "sthosvd": _sthosvd,
    "randomized": _randomized,
}
"""Tucker algorithms by name."""


def _tucker_em(X: torch.Tensor, mask: torch.Tensor, method: str, ranks: Sequence[int],
               gen: torch.Generator, start: TuckerTensor, *, n_iter_max: int,
               conv_tol: float, **kw: Any) -> tuple[TuckerTensor, list[float], int, bool]:
    """EM: fill the missing entries with the model, refit (one HOOI sweep), repeat."""
    obs = X[mask]
    normY = float(torch.linalg.vector_norm(obs)) or 1.0
    model = start.to_tensor()
    fs = list(start._f)
    history: list[float] = []
    converged = False
    it = 0
    core = start._c
    for it in range(1, n_iter_max + 1):
        Xf = torch.where(mask, X, model)
        if method == "hooi":
            core, fs, _, _, _ = _hooi_sweeps(Xf, fs, ranks, 1, 0.0)
            t = TuckerTensor._from_torch(core, fs)
        else:
            t = TUCKER_METHODS[method](Xf, ranks, None, gen)[0]
        model = t.to_tensor()
        err = float(torch.linalg.vector_norm(obs - model[mask]))
        if not math.isfinite(err):
            raise ConvergenceError(f"tucker produced non-finite factors at iteration {it}.")
        history.append(1.0 - err / normY)
        if len(history) > 1 and abs(history[-1] - history[-2]) < conv_tol:
            converged = True
            break
    return t, history, it, converged


def _tucker_masked_als(X: torch.Tensor, mask: torch.Tensor, method: str,
                       ranks: Sequence[int], gen: torch.Generator, start: TuckerTensor, *,
                       n_iter_max: int, conv_tol: float, l2_reg: float = 0.0,
                       **kw: Any) -> tuple[TuckerTensor, list[float], int, bool]:
    """Exact weighted ALS over the observed entries (factor rows, then the core)."""
    idx = torch.nonzero(mask)
    core, fs, hist, it, conv = tucker_als_sparse(
        idx, X[mask], X.shape, start._c.clone(), [f.clone() for f in start._f],
        n_iter_max=n_iter_max, tol=conv_tol, l2_reg=l2_reg, func="tucker")
    return TuckerTensor._from_torch(core, fs), hist, it, conv


MISSING_METHODS: dict[str, Callable[..., tuple[TuckerTensor, list[float], int, bool]]] = {
    "als": _tucker_masked_als,
    "em": _tucker_em,
}
"""How :func:`tucker` treats ``mask=``."""


def tucker(X: Any, ranks: Any = None, *, tol: float | None = None, method: str = "hooi",
           mask: Any = None, n_iter_max: int = 50, conv_tol: float = 1e-8,
           init: str | TuckerTensor = "auto", missing: str = "als",
           generator: Any = None) -> TuckerResult:
    """Tucker decomposition ``X ~ G x_1 U_1 ... x_K U_K`` with orthonormal factors.

    Parameters
    ----------
    X : array or tensor of shape (I_1, ..., I_K), K >= 2
        Dense tensor (numpy in, numpy parts out; torch keeps dtype and device). NaN only
        where ``mask`` is False.
    ranks : int or sequence of K ints, optional
        Multilinear ranks, each in ``[1, I_k]``. With ``tol`` they are caps.
    tol : float in [0, 1), optional
        Relative error target for ``method="sthosvd"``: each of the K truncations
        discards at most ``tol^2 ||X||^2 / K``, so ``||X - T|| <= tol ||X||``
        (Vannieuwenhoven et al. 2012, Thm 5.1). For "hooi" without ``ranks``, the ranks
        are chosen this way and then refined.
    method : {"hooi", "sthosvd", "randomized"}, default "hooi"
        "sthosvd": sequentially truncated HOSVD; "hooi": higher-order orthogonal
        iteration (two passes over X per sweep); "randomized": ST-HOSVD with randomized
        range finders (``rankfold.linalg.rsvd`` when available).
    mask : bool array of X's shape, optional
        True where observed. The fit then uses the observed entries only.
    n_iter_max : int, default 50
        Maximum HOOI / missing-data sweeps.
    conv_tol : float, default 1e-8
        Stop when the fit changes by less between sweeps.
    init : {"auto", "sthosvd", "randomized", "random"} or TuckerTensor, default "auto"
        Starting factors for HOOI and for masked fits. "auto": ST-HOSVD up to 2^21
        entries, otherwise the randomized ST-HOSVD without power iterations (one pass
        over the data per mode; the HOOI sweeps refine it).
    missing : {"als", "em"}, default "als"
        With ``mask``: "als" = exact row-wise ALS over the observed entries (the engine of
        :func:`tucker_complete`); "em" = impute with the model and refit with ``method``.
    generator : int, torch.Generator, numpy Generator or None
        Randomness for "randomized" and ``init="random"``.

    Returns
    -------
    TuckerResult
        ``tucker`` (:class:`TuckerTensor`), ``history`` (fit per sweep), ``n_iter``,
        ``converged``.

    Examples
    --------
    >>> import numpy as np
    >>> from rankfold.tensor import tucker
    >>> X = np.random.default_rng(0).standard_normal((20, 30, 40))
    >>> res = tucker(X, tol=0.5, method="sthosvd")
    >>> bool(np.linalg.norm(res.tucker.to_tensor() - X) <= 0.5 * np.linalg.norm(X))
    True
    """
    func = "tucker"
    t, info = as_dense_tensor(X, func, finite=False)
    method = check_option(method, "method", func, TUCKER_METHODS)
    rk = check_ranks(ranks, t.shape, func, bound=t.shape)
    tol = check_float(tol, "tol", func, low=0.0, high=1.0, closed_high=False, allow_none=True)
    if rk is None and tol is None:
        raise InvalidParameterError(
            "tucker needs 'ranks' or 'tol' (or both). Got ranks=None, tol=None instead.")
    m = check_mask(mask, t, func)
    n_iter_max = check_int(n_iter_max, "n_iter_max", func, low=1)
    conv_tol = check_float(conv_tol, "conv_tol", func, low=0.0)
    if isinstance(init, TuckerTensor):
        if rk is None or init.shape != tuple(t.shape) or init.ranks != tuple(rk):
            raise param_error("init", func, f"a TuckerTensor of shape {tuple(t.shape)} and "
                              f"ranks {None if rk is None else tuple(rk)}",
                              f"TuckerTensor(shape={init.shape}, ranks={init.ranks})")
    elif not isinstance(init, str) or init not in ("auto", "sthosvd", "randomized", "random"):
        raise param_error("init", func, "one of {'auto', 'sthosvd', 'randomized', 'random'} "
                          "or a TuckerTensor", init)
    missing = check_option(missing, "missing", func, MISSING_METHODS)
    gen = check_generator(generator, t.device, func=func)
    if conv_tol > 0:  # changes below the dtype's resolution are noise
        conv_tol = max(conv_tol, 4 * torch.finfo(t.dtype).eps)

    opts = dict(n_iter_max=n_iter_max, conv_tol=conv_tol, init=init)
    work = t.numel() * (max(rk) if rk else min(t.shape)) * t.ndim
    with small_work_serial(work, t.device):
        return _tucker_work(t, info, m, method, rk, tol, gen, init, missing, n_iter_max,
                            conv_tol, opts)


def _tucker_work(t: torch.Tensor, info: Any, m: torch.Tensor | None, method: str,
                 rk: list[int] | None, tol: float | None, gen: torch.Generator, init: Any,
                 missing: str, n_iter_max: int, conv_tol: float,
                 opts: dict[str, Any]) -> TuckerResult:
    if m is None or bool(m.all()):
        res, hist, it, conv = TUCKER_METHODS[method](t, rk, tol, gen, **opts)
    else:
        Xf = fill_missing(t, m)
        if rk is None:
            rk = list(_sthosvd(Xf, None, tol, gen)[0].ranks)
        fs = _init_factors(Xf, rk, init, gen)
        start = TuckerTensor._from_torch(multi_mode_dot(Xf, fs, transpose=True), fs)
        res, hist, it, conv = MISSING_METHODS[missing](t, m, method, rk, gen, start,
                                                       n_iter_max=n_iter_max,
                                                       conv_tol=conv_tol)
    if conv_tol > 0 and not conv and (method == "hooi" or m is not None):
        warnings.warn(f"tucker stopped after n_iter_max={n_iter_max} sweeps before the fit "
                      f"changed by less than conv_tol={conv_tol}.", ConvergenceWarning,
                      stacklevel=3)
    out = TuckerTensor._from_torch(res._c, res._f, info.returns_numpy)
    return TuckerResult(out, hist, it, conv)
