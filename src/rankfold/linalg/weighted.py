"""Weighted low-rank approximation.

``weighted_svd`` minimises a weighted Frobenius error over matrices ``B`` of rank at most
``k``:

* row / column weights (``row_weights=r``, ``col_weights=c``): ``||D_r (A - B) D_c||_F``
  has the closed-form minimiser ``B = D_r^{-1} [D_r A D_c]_k D_c^{-1}`` (truncated SVD of
  the rescaled matrix). The Fisher-weighted SVD of Hsu et al. (2022) is the case
  ``row_weights = sqrt(row sums of the empirical Fisher information)``.
* elementwise weights (``weights=W``): ``sum_ij W_ij (A_ij - B_ij)^2`` has no closed form
  (it is NP-hard in general); an iterative method whose objective never increases is
  used: the EM iteration of Srebro & Jaakkola (2003) or alternating weighted least
  squares.

References
----------
.. [1] N. Srebro, T. Jaakkola, "Weighted low-rank approximations", ICML 2003 (Sec. 3, EM).
.. [2] K. R. Gabriel, S. Zamir, "Lower rank approximation of matrices by least squares
   with any choice of weights", Technometrics 21(4), 1979 (criss-cross / alternating LS).
.. [3] Y.-C. Hsu, T. Hua, S. Chang, Q. Lou, Y. Shen, H. Jin, "Language model compression
   with weighted low-rank factorization", ICLR 2022 (Fisher-weighted SVD).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from .._array import as_tensor, to_output
from .._errors import ConvergenceError, ConvergenceWarning, InvalidParameterError, ShapeError
from .._random import GeneratorLike, check_generator
from .._validation import check_float, check_int, check_option

__all__ = ["WeightedSVDInfo", "WeightedSVDResult", "weighted_svd", "WEIGHTED_METHODS",
           "SVD_BACKENDS"]


class WeightedSVDInfo(NamedTuple):
    """Diagnostics of :func:`weighted_svd`.

    Attributes
    ----------
    objective : tuple of float
        Weighted squared error ``sum W (A - B)^2`` (summed over a batch), computed in
        float64, after initialisation and after every iteration (one value for the closed
        form). Non-increasing.
    n_iter : int
        Iterations run (0 for the closed form).
    converged : bool
        Whether the relative decrease fell below ``tol`` (always True for the closed form).
    method : str
        ``"closed_form"``, ``"em"`` or ``"als"``.
    """

    objective: tuple[float, ...]
    n_iter: int
    converged: bool
    method: str


class WeightedSVDResult(NamedTuple):
    """SVD ``B = U diag(S) Vh`` of the weighted rank-``k`` approximation ``B`` of ``A``.

    ``U`` (*, m, k) and ``Vh`` (*, k, n) have orthonormal columns / rows, ``S`` (*, k) is
    nonnegative and decreasing; ``info`` is a :class:`WeightedSVDInfo`.
    """

    U: Any
    S: Any
    Vh: Any
    info: WeightedSVDInfo


# ---------------------------------------------------------------------------------------
# helpers


def _svd_of_product(L: torch.Tensor, Mt: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Thin SVD of ``L @ Mt`` (L: (*, m, k), Mt: (*, k, n)) without forming it."""
    Q1, R1 = torch.linalg.qr(L)
    Q2, R2 = torch.linalg.qr(Mt.mT)
    u, s, vh = torch.linalg.svd(R1 @ R2.mT)
    return Q1 @ u, s, vh @ Q2.mT


def _check_weight_vector(w: Any, name: str, func: str, A: torch.Tensor, axis: int
                         ) -> torch.Tensor:
    size = A.shape[axis]
    t, _ = as_tensor(w, name, func, dtype=A.dtype, device=A.device, ndim=None)
    allowed = [(size,), tuple(A.shape[:-2]) + (size,)]
    if tuple(t.shape) not in allowed:
        raise ShapeError(
            f"The '{name}' parameter of {func} must have shape {allowed[0]}"
            + (f" or {allowed[1]}" if allowed[1] != allowed[0] else "")
            + f" to match A of shape {tuple(A.shape)}. Got shape {tuple(t.shape)}."
        )
    if bool((t < 0).any()):
        raise InvalidParameterError(
            f"The '{name}' parameter of {func} must be nonnegative. "
            f"Got minimum {float(t.min()):.3g} instead."
        )
    if bool((t.amax(dim=-1) == 0).any()):
        raise InvalidParameterError(
            f"The '{name}' parameter of {func} must have at least one positive entry. "
            "Got all zeros instead."
        )
    return t.expand(*A.shape[:-2], size)


def _objective(A: torch.Tensor, B: torch.Tensor, W: torch.Tensor) -> float:
    d = (A - B).to(torch.float64)
    return float((W.to(torch.float64) * d * d).sum())


# ---------------------------------------------------------------------------------------
# row / column weights: closed form


def _rowcol(A: torch.Tensor, k: int, r: torch.Tensor, c: torch.Tensor, svd: str,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    Aw = r[..., :, None] * A * c[..., None, :]
    if svd == "exact":
        U, S, Vh = torch.linalg.svd(Aw, full_matrices=False)
        Uk, Sk, Vhk = U[..., :k], S[..., :k], Vh[..., :k, :]
        objective = float((S[..., k:].to(torch.float64) ** 2).sum())
    else:
        from .rsvd import rsvd

        Uk, Sk, Vhk = rsvd(Aw, k, generator=gen)
        d = (Aw - (Uk * Sk[..., None, :]) @ Vhk).to(torch.float64)
        objective = float((d * d).sum())
    # Positive weights: unscale. A zero-weight row (column) is unconstrained; it gets its
    # weighted least-squares fit onto the kept row (column) space, which leaves the
    # objective unchanged and gives the natural extension B = A D_c V S^+ U^T D_r A.
    safe_r = torch.where(r > 0, r, torch.ones_like(r))
    safe_c = torch.where(c > 0, c, torch.ones_like(c))
    L = Uk * Sk[..., None, :] / safe_r[..., :, None]
    Mt = Vhk / safe_c[..., None, :]
    if bool((r == 0).any()):
        L_fit = (A * c[..., None, :]) @ Vhk.mT
        L = torch.where((r > 0)[..., :, None], L, L_fit)
    if bool((c == 0).any()):
        cutoff = Sk.amax(dim=-1, keepdim=True) * max(A.shape[-2:]) * torch.finfo(A.dtype).eps
        s_inv = torch.where(Sk > cutoff, 1.0 / Sk.clamp_min(torch.finfo(A.dtype).tiny),
                            torch.zeros_like(Sk))
        M_fit = s_inv[..., :, None] * (Uk.mT @ (r[..., :, None] * A))
        Mt = torch.where((c > 0)[..., None, :], Mt, M_fit)
    Uo, So, Vho = _svd_of_product(L, Mt)
    return Uo, So, Vho, objective


# ---------------------------------------------------------------------------------------
# elementwise weights: iterative


def _truncated(Z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    U, S, Vh = torch.linalg.svd(Z, full_matrices=False)
    return U[..., :k], S[..., :k], Vh[..., :k, :]


def _em_step(A: torch.Tensor, Wn: torch.Tensor, X: torch.Tensor, k: int
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Srebro & Jaakkola EM: X <- [W A + (1 - W) X]_k with weights scaled into [0, 1]."""
    U, S, Vh = _truncated(Wn * A + (1 - Wn) * X, k)
    return (U * S[..., None, :]) @ Vh, (U, S, Vh)


def _pinv_solve(G: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Minimum-norm solution of the batched symmetric PSD systems ``G x = b``."""
    lam, Q = torch.linalg.eigh(G)
    cutoff = lam.amax(dim=-1, keepdim=True).clamp_min(0) * G.shape[-1] * \
        torch.finfo(G.dtype).eps * 10
    inv = torch.where(lam > cutoff, 1.0 / lam.clamp_min(torch.finfo(G.dtype).tiny),
                      torch.zeros_like(lam))
    return (Q @ (inv * (Q.mT @ b[..., None]).squeeze(-1))[..., None]).squeeze(-1)


def _weighted_ls_rows(A: torch.Tensor, W: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Rows u_i = argmin sum_j W_ij (A_ij - u_i . v_j)^2 (all rows at once)."""
    k = V.shape[-1]
    VV = (V[..., :, :, None] * V[..., :, None, :]).flatten(-2)  # (*, n, k*k)
    G = (W @ VV).unflatten(-1, (k, k))  # (*, m, k, k)
    rhs = (W * A) @ V  # (*, m, k)
    return _pinv_solve(G, rhs)


def _als_init(A: torch.Tensor, Wn: torch.Tensor, k: int) -> torch.Tensor:
    _, _, Vh = _truncated(Wn * A, k)
    return Vh.mT


def _stop(history: list[float], tol: float, scale: float) -> bool:
    prev, cur = history[-2], history[-1]
    if cur <= 1e-30 * scale:
        return True
    return (prev - cur) <= tol * max(prev, 1e-300)


def _iterate(step: Callable[[], float], first: float, n_iter: int, tol: float,
             scale: float) -> tuple[list[float], int, bool]:
    history = [first]
    for it in range(1, n_iter + 1):
        history.append(step())
        if not math.isfinite(history[-1]):
            raise ConvergenceError("weighted_svd produced non-finite values.")
        if _stop(history, tol, scale):
            return history, it, True
    return history, n_iter, False


def _run_em(A: torch.Tensor, W: torch.Tensor, k: int, n_iter: int, tol: float, scale: float
            ) -> tuple[tuple[torch.Tensor, ...], list[float], int, bool]:
    """EM of Srebro & Jaakkola (2003), Sec. 3, with the weights scaled into [0, 1]."""
    Wn = W / W.amax(dim=(-2, -1), keepdim=True)
    state = {}
    state["X"], state["f"] = _em_step(A, Wn, torch.zeros_like(A), k)

    def step() -> float:
        state["X"], state["f"] = _em_step(A, Wn, state["X"], k)
        return _objective(A, state["X"], W)

    history, it, conv = _iterate(step, _objective(A, state["X"], W), n_iter, tol, scale)
    return state["f"], history, it, conv


def _run_als(A: torch.Tensor, W: torch.Tensor, k: int, n_iter: int, tol: float, scale: float
             ) -> tuple[tuple[torch.Tensor, ...], list[float], int, bool]:
    """Alternating weighted least squares (Gabriel & Zamir 1979), exact batched row solves."""
    Wn = W / W.amax(dim=(-2, -1), keepdim=True)
    V = _als_init(A, Wn, k)
    state = {"V": V, "U": _weighted_ls_rows(A, W, V)}

    def step() -> float:
        V = _weighted_ls_rows(A.mT, W.mT, state["U"])
        U = _weighted_ls_rows(A, W, V)
        # rebalance (U V^T unchanged): orthonormal V keeps the k x k systems well posed
        Qv, Rv = torch.linalg.qr(V)
        state["V"], state["U"] = Qv, U @ Rv.mT
        return _objective(A, state["U"] @ state["V"].mT, W)

    first = _objective(A, state["U"] @ state["V"].mT, W)
    history, it, conv = _iterate(step, first, n_iter, tol, scale)
    return _svd_of_product(state["U"], state["V"].mT), history, it, conv


_ELEMENTWISE: dict[str, Callable[..., tuple[tuple[torch.Tensor, ...], list[float], int,
                                            bool]]] = {"als": _run_als, "em": _run_em}
WEIGHTED_METHODS = tuple(_ELEMENTWISE)
SVD_BACKENDS = ("exact", "randomized")


def weighted_svd(
    A: Any,
    rank: int,
    *,
    row_weights: Any = None,
    col_weights: Any = None,
    weights: Any = None,
    method: str = "als",
    n_iter: int = 100,
    tol: float = 1e-7,
    svd: str = "exact",
    generator: GeneratorLike = None,
) -> WeightedSVDResult:
    """Weighted rank-``k`` approximation of ``A``, returned as an SVD.

    Parameters
    ----------
    A : (*, m, n) array_like
        numpy array or torch tensor; batched stacks are supported.
    rank : int
        Target rank ``k`` in ``[1, min(m, n)]``.
    row_weights : (m,) or (*, m) array_like, optional
        Nonnegative ``r``; minimise ``||diag(r) (A - B) diag(c)||_F`` (closed form).
    col_weights : (n,) or (*, n) array_like, optional
        Nonnegative ``c``; either or both of ``row_weights`` / ``col_weights`` may be given
        (a missing one is all ones).
    weights : (m, n) or (*, m, n) array_like, optional
        Nonnegative elementwise weights ``W``; minimise ``sum W (A - B)^2`` iteratively.
        Zero weights mark missing entries (their values in ``A`` are ignored but must be
        finite). Not together with ``row_weights`` / ``col_weights``.
    method : {"als", "em"}, default "als"
        Iterative method for ``weights``: alternating weighted least squares ([2]_; every
        row solve is exact, so each half step cannot increase the objective) or the EM
        iteration of [1]_ (weights scaled into [0, 1]; monotone, slower when many weights
        are small).
    n_iter : int, default 100
        Maximum iterations for ``weights``.
    tol : float, default 1e-7
        Stop when the relative decrease of the objective falls below ``tol``.
    svd : {"exact", "randomized"}, default "exact"
        SVD used by the row/column closed form: LAPACK's full thin SVD, or
        :func:`~rankfold.linalg.rsvd` (much faster for large matrices and small ``rank``;
        the objective reported is then the actual weighted error, slightly above the
        optimum).
    generator : int, torch.Generator, numpy.random.Generator or None
        Randomness of ``svd="randomized"`` (the iterative methods start from the
        deterministic SVD of ``W * A``).

    Returns
    -------
    WeightedSVDResult
        ``U`` (*, m, k), ``S`` (*, k), ``Vh`` (*, k, n): the SVD of the approximation
        ``B``; ``info`` holds the objective history.

    Notes
    -----
    Closed form: with ``r, c > 0`` the substitution ``B' = D_r B D_c`` turns the problem
    into an unweighted one, so ``B = D_r^{-1} [D_r A D_c]_k D_c^{-1}`` is optimal and the
    minimum is the tail energy ``sum_{j > k} sigma_j(D_r A D_c)^2``. Zero-weight rows or
    columns do not enter the objective; they are filled by their least-squares fit onto
    the kept column / row space (``B = A D_c V S^+ U^T D_r A``).

    Examples
    --------
    >>> import torch
    >>> from rankfold.linalg import weighted_svd
    >>> A = torch.randn(30, 20, dtype=torch.float64)
    >>> r = torch.rand(30, dtype=torch.float64) + 0.5
    >>> U, S, Vh, info = weighted_svd(A, 5, row_weights=r)
    >>> U.shape, S.shape, Vh.shape
    (torch.Size([30, 5]), torch.Size([5]), torch.Size([5, 20]))
    """
    func = "weighted_svd"
    has_rc = row_weights is not None or col_weights is not None
    if has_rc and weights is not None:
        raise InvalidParameterError(
            f"{func} takes either 'row_weights'/'col_weights' or 'weights', not both. "
            "Got both instead."
        )
    if not has_rc and weights is None:
        raise InvalidParameterError(
            f"{func} needs 'row_weights'/'col_weights' or 'weights'. Got none instead."
        )
    method = check_option(method, "method", func, WEIGHTED_METHODS)
    svd = check_option(svd, "svd", func, SVD_BACKENDS)
    n_iter = check_int(n_iter, "n_iter", func, low=1)  # type: ignore[assignment]
    tol = check_float(tol, "tol", func, low=0.0)  # type: ignore[assignment]
    T, info = as_tensor(A, "A", func, batched=True)
    m, n = T.shape[-2:]
    k = check_int(rank, "rank", func, low=1, high=min(m, n), high_name="min(m, n)")
    gen = check_generator(generator, T.device, func=func)
    if has_rc:
        r = (_check_weight_vector(row_weights, "row_weights", func, T, -2)
             if row_weights is not None else torch.ones(*T.shape[:-1], dtype=T.dtype,
                                                        device=T.device))
        c = (_check_weight_vector(col_weights, "col_weights", func, T, -1)
             if col_weights is not None else torch.ones(*T.shape[:-2], n, dtype=T.dtype,
                                                        device=T.device))
        U, S, Vh, obj = _rowcol(T, k, r, c, svd, gen)  # type: ignore[arg-type]
        res_info = WeightedSVDInfo((obj,), 0, True, "closed_form")
    else:
        W, _ = as_tensor(weights, "weights", func, dtype=T.dtype, device=T.device,
                         ndim=None)
        if tuple(W.shape) not in {tuple(T.shape), (m, n)}:
            raise ShapeError(
                f"The 'weights' parameter of {func} must have the shape of A "
                f"{tuple(T.shape)}. Got shape {tuple(W.shape)}."
            )
        if bool((W < 0).any()):
            raise InvalidParameterError(
                f"The 'weights' parameter of {func} must be nonnegative. "
                f"Got minimum {float(W.min()):.3g} instead."
            )
        W = W.expand_as(T)
        if bool((W.amax(dim=(-2, -1)) == 0).any()):
            raise InvalidParameterError(
                f"The 'weights' parameter of {func} must have at least one positive entry "
                "per matrix. Got all zeros instead."
            )
        scale = max(_objective(T, torch.zeros_like(T), W), 1e-300)
        (U, S, Vh), hist, it, conv = _ELEMENTWISE[method](T, W, k, n_iter, tol, scale)
        res_info = WeightedSVDInfo(tuple(hist), it, conv, method)
        if not res_info.converged:
            warnings.warn(
                f"weighted_svd (method={method!r}) stopped after n_iter={n_iter} "
                f"iterations before the relative decrease reached tol={tol:g}.",
                ConvergenceWarning, stacklevel=2,
            )
    if not (bool(torch.isfinite(U).all()) and bool(torch.isfinite(S).all())
            and bool(torch.isfinite(Vh).all())):
        raise ConvergenceError(f"{func} produced non-finite values.")
    out = to_output((U, S, Vh), info)
    return WeightedSVDResult(out[0], out[1], out[2], res_info)
