"""Leverage scores, l_p Lewis weights, l_p sensitivity bounds and row sampling.

For a tall matrix ``A`` of shape ``(m, n)``:

- the *leverage score* of row ``i`` is ``tau_i = ||e_i^T U||^2`` for an orthonormal basis
  ``U`` of the column space of ``A`` (``sum_i tau_i = rank(A)``);
- the *l_p Lewis weights* are the unique ``w > 0`` with
  ``w_i = tau_i(W^{1/2 - 1/p} A)``, i.e. ``w_i^{2/p} = a_i^T (A^T W^{1-2/p} A)^+ a_i``
  (``p = 2`` gives the leverage scores; ``sum_i w_i = rank(A)``);
- the *l_p sensitivity* of row ``i`` is ``s_i = sup_x |a_i^T x|^p / ||A x||_p^p``.

:func:`sample_rows` draws rows with probabilities derived from one of these scores and
returns weights so that the reweighted sample preserves ``||A x||_p`` for every ``x``.

References
----------
.. [1] P. Drineas, M. Magdon-Ismail, M. W. Mahoney, D. P. Woodruff, "Fast approximation
   of matrix coherence and statistical leverage", JMLR 13 (2012), Alg. 1.
.. [2] M. B. Cohen, R. Peng, "l_p row sampling by Lewis weights", STOC 2015, Sec. 3
   (the fixed-point iteration, a contraction for p < 4) and Thm. 7.1 (sampling).
.. [3] D. P. Woodruff, T. Yasuda, "Sharper bounds for l_p sensitivity sampling",
   ICML 2023 (sensitivity sampling; root leverage score sampling for 1 <= p < 2).
.. [4] S. Padmanabhan, D. P. Woodruff, Q. Zhang, "Computing approximate l_p
   sensitivities", NeurIPS 2023 (sensitivities of a subspace embedding).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from .._array import as_tensor
from .._errors import ConvergenceError, ConvergenceWarning, ShapeError
from .._random import GeneratorLike, check_generator
from .._validation import check_float, check_int, check_option, param_error
from .sketch import GaussianSketch, make_sketch

__all__ = [
    "leverage_scores",
    "lewis_weights",
    "sensitivity_bounds",
    "lp_sensitivities",
    "sample_rows",
    "row_scores",
    "sample_by_scores",
    "LEVERAGE_METHODS",
    "LEWIS_METHODS",
    "SAMPLING_SCORES",
]


# --------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------
def _as_matrix(A: Any, func: str) -> tuple[torch.Tensor, bool]:
    """Dense 2-D float tensor and whether the result goes back as numpy."""
    if isinstance(A, spla.LinearOperator):
        raise param_error("A", func, "a dense array, a torch tensor or a scipy.sparse "
                          "matrix", A)
    if sp.issparse(A):
        if A.ndim != 2 or 0 in A.shape:
            raise ShapeError(f"The 'A' parameter of {func} must be a non-empty (m, n) "
                             f"matrix. Got shape {tuple(A.shape)}.")
        dense = np.asarray(A.toarray())
        t, _ = as_tensor(dense, "A", func)
        return t, True
    t, info = as_tensor(A, "A", func)
    if t.is_complex():
        raise param_error("A", func, "real-valued", A)
    return t, info.returns_numpy


def _out(t: torch.Tensor, numpy_out: bool) -> Any:
    return t.cpu().numpy() if numpy_out else t


# --------------------------------------------------------------------------------------
# leverage scores
# --------------------------------------------------------------------------------------
def _rank_cut(s: torch.Tensor, rcond: float) -> int:
    smax = float(s[0]) if s.numel() else 0.0
    return int((s > rcond * smax).sum()) if smax > 0 else 0


def _leverage_exact(A: torch.Tensor, rcond: float, _opts: dict[str, Any]) -> torch.Tensor:
    m, n = A.shape
    if m >= 2 * n:  # thin QR first: the SVD then acts on the small n x n factor
        Q, R = torch.linalg.qr(A, mode="reduced")
        Ur, s, _ = torch.linalg.svd(R)
        r = _rank_cut(s, rcond)
        U = Q @ Ur[:, :r]
    else:
        U, s, _ = torch.linalg.svd(A, full_matrices=False)
        r = _rank_cut(s, rcond)
        U = U[:, :r]
    return (U * U).sum(dim=1)


def _leverage_sketch(A: torch.Tensor, rcond: float, opts: dict[str, Any]) -> torch.Tensor:
    # Drineas et al. 2012, Alg. 1: R from a sketch Pi_1 A is a preconditioner (A R^{-1}
    # has nearly orthonormal columns); a JL projection Pi_2 then gives row norms cheaply.
    m, n = A.shape
    g = opts["generator"]
    size = opts["sketch_size"] or min(m, 20 * n)
    S1 = make_sketch(opts["sketch_kind"], m, size, generator=g, device=A.device,
                     func="leverage_scores")
    _, s, Vh = torch.linalg.svd(S1.apply(A), full_matrices=False)
    r = _rank_cut(s, rcond)
    if r == 0:
        return torch.zeros(m, dtype=A.dtype, device=A.device)
    M = Vh[:r].mH / s[:r]  # n x r, plays the role of R^{-1} (handles rank deficiency)
    jl = opts["jl_dim"] or max(20, math.ceil(8 * math.log(m)))
    G = GaussianSketch(r, jl, generator=g, device=A.device)
    proj = A @ G.apply(M, side="right")  # (m, jl): A R^{-1} Pi_2
    return (proj * proj).sum(dim=1)


LEVERAGE_METHODS: dict[str, Callable[[torch.Tensor, float, dict[str, Any]], torch.Tensor]] = {
    "exact": _leverage_exact,
    "sketch": _leverage_sketch,
}


def leverage_scores(A: Any, *, method: str = "exact", rcond: float | None = None,
                    sketch_kind: str = "sparse_sign", sketch_size: int | None = None,
                    jl_dim: int | None = None, generator: GeneratorLike = None) -> Any:
    """Statistical leverage scores of the rows of ``A``.

    Parameters
    ----------
    A : numpy array, torch.Tensor or scipy.sparse matrix, shape (m, n)
        scipy.sparse input is densified.
    method : {"exact", "sketch"}, default "exact"
        ``"exact"``: thin QR then SVD of ``R`` (or a thin SVD when ``A`` is not tall);
        singular values below ``rcond * s_max`` are dropped, so rank-deficient ``A`` gets
        the scores of its column space (they sum to the numerical rank). ``"sketch"``:
        Drineas et al. (2012), Alg. 1: SVD of a sketch ``Pi_1 A`` (``sketch_size`` rows)
        as preconditioner, then row norms of ``A V_r Sigma_r^{-1} Pi_2`` with a Gaussian
        ``Pi_2`` of ``jl_dim`` columns; constant-factor accurate with high probability.
    rcond : float, optional
        Relative rank cut-off, default ``max(m, n) * eps`` of the dtype.
    sketch_kind : str, default "sparse_sign"
        Sketch for ``Pi_1`` (``"sketch"`` method only).
    sketch_size : int, optional
        Rows of ``Pi_1``, default ``min(m, 20 n)`` (then ``A V_r Sigma_r^{-1}`` has
        singular values within about ``1 +- sqrt(1/20)`` of 1, so each score is within a
        factor of about 1.5 of the truth, up to the JL error).
    jl_dim : int, optional
        Columns of ``Pi_2``, default ``max(20, ceil(8 log m))``.
    generator : int, torch.Generator, numpy.random.Generator or None
        Randomness of the sketches.

    Returns
    -------
    scores : shape (m,), values in [0, 1] (``"exact"``), kind of ``A``.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.vstack([np.eye(2), np.zeros((3, 2))])
    >>> leverage_scores(A)
    array([1., 1., 0., 0., 0.])
    """
    func = "leverage_scores"
    check_option(method, "method", func, LEVERAGE_METHODS)
    check_option(sketch_kind, "sketch_kind", func, ("gaussian", "srht", "countsketch",
                                                    "sparse_sign"))
    check_float(rcond, "rcond", func, low=0.0, high=1.0, allow_none=True)
    check_int(sketch_size, "sketch_size", func, low=1, allow_none=True)
    check_int(jl_dim, "jl_dim", func, low=1, allow_none=True)
    X, numpy_out = _as_matrix(A, func)
    gen = check_generator(generator, X.device, func=func) if method == "sketch" else None
    rc = rcond if rcond is not None else max(X.shape) * torch.finfo(X.dtype).eps
    opts = dict(generator=gen, sketch_kind=sketch_kind, sketch_size=sketch_size,
                jl_dim=jl_dim)
    return _out(LEVERAGE_METHODS[method](X, rc, opts), numpy_out)


# --------------------------------------------------------------------------------------
# Lewis weights
# --------------------------------------------------------------------------------------
def _lewis_iterate(A: torch.Tensor, p: float, step: float, n_iter: int, tol: float,
                   rcond: float) -> tuple[torch.Tensor, int, float]:
    """Damped Cohen-Peng map ``w <- w^{1-step} T(w)^step`` in log space.

    ``T(w)_i = (a_i^T (A^T W^{1-2/p} A)^+ a_i)^{p/2} = (tau_i(W^{1/2-1/p} A) w_i^{2/p-1})^{p/2}``.
    Returns the weights, the iterations used and the last relative change.
    """
    m = A.shape[0]
    rows = torch.linalg.vector_norm(A, dim=1) > 0
    Ar = A[rows]
    w = torch.ones(Ar.shape[0], dtype=A.dtype, device=A.device)
    change = float("inf")
    it = 0
    for it in range(1, n_iter + 1):  # noqa: B007 (it is reported)
        scale = w.pow(0.5 - 1.0 / p)
        try:
            tau = _leverage_exact(Ar * scale[:, None], rcond, {})
        except (RuntimeError, torch.linalg.LinAlgError) as exc:
            raise ConvergenceError(f"lewis_weights (p={p:g}) diverged at iteration {it}: "
                                   f"{exc}") from exc
        Tw = (tau * w.pow(2.0 / p - 1.0)).clamp_min(torch.finfo(A.dtype).tiny).pow(p / 2.0)
        w_new = w.pow(1.0 - step) * Tw.pow(step) if step != 1.0 else Tw
        if not bool(torch.isfinite(w_new).all()):
            raise ConvergenceError(f"lewis_weights (p={p:g}) produced non-finite weights at "
                                   f"iteration {it}.")
        # relative change; weights below `floor` are only resolved to absolute accuracy
        # (their leverage scores carry an absolute rounding error of about eps)
        floor = 1e3 * torch.finfo(A.dtype).eps * float(w_new.max())
        change = float(((w_new - w).abs() / torch.maximum(w, w.new_tensor(floor))).max())
        w = w_new
        if change <= tol:
            break
    out = torch.zeros(m, dtype=A.dtype, device=A.device)
    out[rows] = w
    return out, it, change


def _lewis_fixed_point(A: torch.Tensor, p: float, n_iter: int, tol: float, rcond: float
                       ) -> tuple[torch.Tensor, int, float]:
    if p >= 4:
        raise param_error("p", "lewis_weights", "< 4 for method='fixed_point' (the "
                          "Cohen-Peng iteration is a contraction only for p < 4; use "
                          "method='relaxed')", p)
    return _lewis_iterate(A, p, 1.0, n_iter, tol, rcond)


def _lewis_relaxed(A: torch.Tensor, p: float, n_iter: int, tol: float, rcond: float
                   ) -> tuple[torch.Tensor, int, float]:
    # In log coordinates the Jacobian of T is (p/2 - 1) D where D has spectrum in [-1, 0]
    # (D_ij = -v_j (a_i^T M^-1 a_j)^2 / (a_i^T M^-1 a_i)), so the relaxed map
    # (1 - h) I + h (p/2 - 1) D has spectrum between 1 - h and 1 - h p/2; h = 4 / (p + 2)
    # balances the two ends: local rate |p - 2| / (p + 2) < 1 for every p > 0
    # (over-relaxation h > 1 for p < 2, damping h < 1 for p > 2).
    return _lewis_iterate(A, p, 4.0 / (p + 2.0), n_iter, tol, rcond)


LEWIS_METHODS: dict[str, Callable[..., tuple[torch.Tensor, int, float]]] = {
    "relaxed": _lewis_relaxed,
    "fixed_point": _lewis_fixed_point,
}


def lewis_weights(A: Any, p: float, *, n_iter: int = 200, tol: float | None = None,
                  method: str = "relaxed", rcond: float | None = None) -> Any:
    """l_p Lewis weights of the rows of ``A`` (Cohen & Peng 2015).

    The weights are the fixed point of ``w_i = (a_i^T (A^T W^{1-2/p} A)^+ a_i)^{p/2}``;
    each iteration computes exact leverage scores of ``W^{1/2-1/p} A`` (a thin QR).
    Rows of ``A`` that are zero get weight 0. ``p = 2`` returns the leverage scores.

    Parameters
    ----------
    A : numpy array, torch.Tensor or scipy.sparse (densified), shape (m, n)
    p : float
        Norm exponent, ``p > 0``.
    n_iter : int, default 200
        Maximum iterations.
    tol : float, optional
        Default 1e-8 for float64, 1e-5 for float32, 1e-2 otherwise.
        Stop when ``max_i |w_i^new - w_i| / max(w_i, 1e3 eps max(w)) <= tol``.
    method : {"relaxed", "fixed_point"}, default "relaxed"
        ``"fixed_point"``: the Cohen-Peng iteration ``w <- T(w)``, a contraction with
        factor ``|p/2 - 1|`` for ``p < 4`` (an error for ``p >= 4``, where it diverges).
        ``"relaxed"``: ``w <- w^{1-h} T(w)^h`` with ``h = 4/(p+2)``; the linearised map
        then contracts at rate ``|p-2|/(p+2)`` for every ``p > 0`` (e.g. 1/3 instead of
        1/2 at ``p = 1``; it converges for ``p >= 4`` where the plain iteration does
        not). The global contraction proof of Cohen & Peng covers only ``p < 4``; for
        larger ``p`` convergence is checked and a ConvergenceWarning raised if ``tol``
        is not met.
    rcond : float, optional
        Relative rank cut-off of the inner leverage scores (default ``max(m, n) eps``).

    Returns
    -------
    w : shape (m,), kind of ``A``; ``sum(w)`` equals the numerical rank of ``A``.

    Warns
    -----
    ConvergenceWarning
        When ``tol`` is not met within ``n_iter`` iterations.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.random.default_rng(0).standard_normal((200, 3))
    >>> w = lewis_weights(A, 1.0)
    >>> round(float(w.sum()), 6)
    3.0
    """
    func = "lewis_weights"
    check_float(p, "p", func, low=0.0, closed_low=False)
    check_int(n_iter, "n_iter", func, low=1)
    check_float(tol, "tol", func, low=0.0, closed_low=False, allow_none=True)
    check_option(method, "method", func, LEWIS_METHODS)
    check_float(rcond, "rcond", func, low=0.0, high=1.0, allow_none=True)
    X, numpy_out = _as_matrix(A, func)
    rc = rcond if rcond is not None else max(X.shape) * torch.finfo(X.dtype).eps
    w = _lewis_weights_tensor(X, float(p), n_iter, tol if tol is not None else _lewis_tol(X),
                              method, rc)
    return _out(w, numpy_out)


def _lewis_tol(X: torch.Tensor) -> float:
    return {torch.float64: 1e-8, torch.float32: 1e-5}.get(X.dtype, 1e-2)


def _lewis_weights_tensor(X: torch.Tensor, p: float, n_iter: int, tol: float, method: str,
                          rcond: float) -> torch.Tensor:
    if p == 2.0:
        return _leverage_exact(X, rcond, {})
    w, it, change = LEWIS_METHODS[method](X, p, n_iter, tol, rcond)
    if change > tol:
        warnings.warn(f"lewis_weights (p={p:g}, method={method!r}) stopped after {it} "
                      f"iterations with relative change {change:.2e} > tol={tol:g}.",
                      ConvergenceWarning, stacklevel=3)
    return w


# --------------------------------------------------------------------------------------
# sensitivities and sampling
# --------------------------------------------------------------------------------------
def _sensitivity_bounds_tensor(X: torch.Tensor, p: float, rcond: float) -> torch.Tensor:
    if p == 2.0:
        return _leverage_exact(X, rcond, {}).clamp(max=1.0)
    w = _lewis_weights_tensor(X, p, 200, _lewis_tol(X), "relaxed", rcond)
    d = float(w.sum())  # = numerical rank
    factor = d ** max(0.0, p / 2.0 - 1.0)
    return (factor * w).clamp(max=1.0)


def sensitivity_bounds(A: Any, p: float, *, rcond: float | None = None) -> Any:
    """Upper bounds on the l_p sensitivities ``s_i = sup_x |a_i^T x|^p / ||A x||_p^p``.

    Computed from the l_p Lewis weights ``w``: ``s_i <= w_i`` for ``p <= 2`` and
    ``s_i <= d^{p/2 - 1} w_i`` for ``p > 2`` (``d`` = rank of ``A``), then clipped at 1
    (every sensitivity is at most 1). Both follow from ``|a_i^T x| <= w_i^{1/p} ||x||_M``
    with ``M = A^T W^{1-2/p} A`` and Hoelder's inequality (see Woodruff & Yasuda 2023,
    Sec. 4). At ``p = 2`` the bound is exact (the leverage scores). Computing the exact
    sensitivities costs one l_p regression per row, which this routine avoids.

    Parameters
    ----------
    A : array-like, torch.Tensor or scipy.sparse (densified), shape (m, n)
    p : float
        ``p > 0``.
    rcond : float, optional
        Relative rank cut-off.

    Returns
    -------
    bounds : shape (m,), values in [0, 1], kind of ``A``.

    Examples
    --------
    >>> import numpy as np
    >>> s = sensitivity_bounds(np.vstack([np.eye(2), np.eye(2)]), 1.0)
    >>> bool(np.allclose(s, 0.5))
    True
    """
    func = "sensitivity_bounds"
    check_float(p, "p", func, low=0.0, closed_low=False)
    check_float(rcond, "rcond", func, low=0.0, high=1.0, allow_none=True)
    X, numpy_out = _as_matrix(A, func)
    rc = rcond if rcond is not None else max(X.shape) * torch.finfo(X.dtype).eps
    return _out(_sensitivity_bounds_tensor(X, float(p), rc), numpy_out)


def _sensitivity_estimate_tensor(X: torch.Tensor, p: float, rcond: float,
                                 gen: torch.Generator | None, embedding_rows: int | None,
                                 n_iter: int) -> torch.Tensor:
    """Estimate ``s_i = 1 / min_{a_i^T x = 1} ||E x||_p^p`` row by row (see lp_sensitivities)."""
    if p == 2.0:
        return _leverage_exact(X, rcond, {}).clamp(max=1.0)
    if p > 2.0:
        return _sensitivity_bounds_tensor(X, p, rcond)
    m, d = X.shape
    k = embedding_rows if embedding_rows is not None else 50 * d
    if k >= m:
        E = X
    else:  # l_p subspace embedding: Lewis-weight sample, reweighted
        w = _lewis_weights_tensor(X, p, 200, _lewis_tol(X), "relaxed", rcond)
        g = gen if gen is not None else check_generator(0, X.device)
        idx, wt = _draw(w, k, p, g, "lp_sensitivities")
        E = X[idx] * wt[:, None]
    # a tiny ridge keeps the weighted Gram matrices invertible on rank-deficient input
    ridge = 1e-12 * float(torch.linalg.matrix_norm(E)) ** 2 + torch.finfo(X.dtype).tiny
    eye = torch.eye(d, dtype=X.dtype, device=X.device)
    out = torch.empty(m, dtype=X.dtype, device=X.device)
    G0 = E.mT @ E + ridge * eye
    chunk = max(64, 2**22 // (E.shape[0] * d))  # rows per batch: temporaries of ~32 MB
    for start in range(0, m, chunk):
        a = X[start:start + chunk]  # (c, d)
        c = a.shape[0]
        G = G0.expand(c, d, d)
        best = torch.full((c,), float("inf"), dtype=X.dtype, device=X.device)
        for _ in range(n_iter):
            L, info = torch.linalg.cholesky_ex(G)
            if bool(info.any()):  # numerically indefinite: fall back to LU
                z = torch.linalg.solve(G, a.unsqueeze(-1)).squeeze(-1)
            else:
                z = torch.cholesky_solve(a.unsqueeze(-1), L).squeeze(-1)  # G^{-1} a_i
            x = z / (a * z).sum(dim=1, keepdim=True)  # minimiser with a_i^T x = 1
            r = (x @ E.mT).abs()  # (c, k)
            f = r.pow(p).sum(dim=1)
            best = torch.minimum(best, f)
            # majorise |r|^p by a quadratic at the current point (IRLS, monotone for p <= 2)
            delta = 1e-9 * r.amax(dim=1, keepdim=True) + torch.finfo(X.dtype).tiny
            omega = r.clamp_min(delta).pow(p - 2.0)  # (c, k)
            G = torch.matmul(E.mT, omega.unsqueeze(-1) * E) + ridge * eye
        zero = torch.linalg.vector_norm(a, dim=1) == 0
        out[start:start + c] = torch.where(zero, 0.0, 1.0 / best)
    if not bool(torch.isfinite(out).all()):
        raise ConvergenceError(f"lp_sensitivities (p={p:g}) produced non-finite values.")
    return out.clamp(max=1.0)


def lp_sensitivities(A: Any, p: float, *, embedding_rows: int | None = None,
                     n_iter: int = 30, rcond: float | None = None,
                     generator: GeneratorLike = None) -> Any:
    """Estimates of the l_p sensitivities ``s_i = sup_x |a_i^T x|^p / ||A x||_p^p``.

    For ``p < 2`` each ``s_i = 1 / min {||A x||_p^p : a_i^T x = 1}`` is estimated by
    iteratively reweighted least squares (a majorise-minimise scheme, monotone for
    ``p <= 2``; ``n_iter`` steps, all rows batched) with ``A`` replaced by an l_p
    subspace embedding ``E`` of ``embedding_rows`` rows sampled by Lewis weights (the
    full ``A`` when it has at most that many rows), following the reduction of
    Padmanabhan, Woodruff & Zhang (2023). With the full ``A`` the estimates are lower
    bounds that approach the exact sensitivities; with an embedding they are within its
    distortion. ``p = 2`` gives the leverage scores exactly; for ``p > 2`` (where this
    quadratic majoriser does not exist) the Lewis-weight bounds of
    :func:`sensitivity_bounds` are returned. All values are clipped to ``[0, 1]``.

    Parameters
    ----------
    A : array-like, torch.Tensor or scipy.sparse (densified), shape (n_rows, d)
    p : float
        ``p > 0``.
    embedding_rows : int, optional
        Rows of the embedding, default ``50 d``.
    n_iter : int, default 30
        IRLS steps.
    rcond : float, optional
    generator : int, torch.Generator, numpy.random.Generator or None
        Randomness of the embedding sample.

    Returns
    -------
    s : shape (n_rows,), kind of ``A``. Their sum is the total sensitivity, at most ``d``
    for ``p <= 2``.

    Examples
    --------
    >>> import numpy as np
    >>> s = lp_sensitivities(np.vstack([np.eye(2), np.eye(2)]), 1.0)
    >>> bool(np.allclose(s, 0.5, atol=1e-6))
    True
    """
    func = "lp_sensitivities"
    check_float(p, "p", func, low=0.0, closed_low=False)
    check_int(embedding_rows, "embedding_rows", func, low=1, allow_none=True)
    check_int(n_iter, "n_iter", func, low=1)
    check_float(rcond, "rcond", func, low=0.0, high=1.0, allow_none=True)
    X, numpy_out = _as_matrix(A, func)
    gen = check_generator(generator, X.device, func=func)
    rc = rcond if rcond is not None else max(X.shape) * torch.finfo(X.dtype).eps
    return _out(_sensitivity_estimate_tensor(X, float(p), rc, gen, embedding_rows, n_iter),
                numpy_out)


def _scores_leverage(X: torch.Tensor, p: float, rc: float, gen: Any = None) -> torch.Tensor:
    return _leverage_exact(X, rc, {})


def _scores_root_leverage(X: torch.Tensor, p: float, rc: float, gen: Any = None
                          ) -> torch.Tensor:
    return _leverage_exact(X, rc, {}).clamp_min(0.0).pow(min(p, 2.0) / 2.0)


def _scores_lewis(X: torch.Tensor, p: float, rc: float, gen: Any = None) -> torch.Tensor:
    return _lewis_weights_tensor(X, p, 200, _lewis_tol(X), "relaxed", rc)


def _scores_sensitivity(X: torch.Tensor, p: float, rc: float, gen: Any = None
                        ) -> torch.Tensor:
    return _sensitivity_estimate_tensor(X, p, rc, gen, None, 30)


SAMPLING_SCORES: dict[str, Callable[..., torch.Tensor]] = {
    "leverage": _scores_leverage,
    "root_leverage": _scores_root_leverage,
    "lewis": _scores_lewis,
    "sensitivity": _scores_sensitivity,
}


def row_scores(A: Any, *, by: str = "lewis", p: float = 2.0, rcond: float | None = None,
               generator: GeneratorLike = None) -> Any:
    """The per-row scores :func:`sample_rows` samples by (unnormalised).

    Parameters
    ----------
    A : array-like, torch.Tensor or scipy.sparse (densified), shape (n_rows, d)
    by : {"leverage", "root_leverage", "lewis", "sensitivity"}, default "lewis"
        See :func:`sample_rows`.
    p : float, default 2.0
    rcond : float, optional
    generator : int, torch.Generator, numpy.random.Generator or None
        Randomness of the embedding used by ``by="sensitivity"``.

    Returns
    -------
    scores : shape (n_rows,), non-negative, kind and dtype of ``A``.

    Examples
    --------
    >>> import numpy as np
    >>> row_scores(np.vstack([np.eye(2), np.eye(2)]), by="root_leverage", p=1.0).round(3)
    array([0.707, 0.707, 0.707, 0.707])
    """
    func = "row_scores"
    check_option(by, "by", func, SAMPLING_SCORES)
    check_float(p, "p", func, low=0.0, closed_low=False)
    check_float(rcond, "rcond", func, low=0.0, high=1.0, allow_none=True)
    X, numpy_out = _as_matrix(A, func)
    rc = rcond if rcond is not None else max(X.shape) * torch.finfo(X.dtype).eps
    gen = check_generator(generator, X.device, func=func)
    return _out(SAMPLING_SCORES[by](X, float(p), rc, gen), numpy_out)


def sample_by_scores(scores: Any, m: int, *, p: float = 2.0,
                     generator: GeneratorLike = None) -> tuple[Any, Any]:
    """Draw ``m`` rows with probabilities proportional to ``scores`` (see :func:`sample_rows`).

    Use it to draw many samples from one set of scores (:func:`row_scores`) without
    recomputing them.

    Parameters
    ----------
    scores : array-like or torch.Tensor, shape (n_rows,)
        Non-negative, finite, not all zero.
    m : int
        Number of draws.
    p : float, default 2.0
        Norm the weights are for: ``weights = (count / (m q))^{1/p}``.
    generator : int, torch.Generator, numpy.random.Generator or None

    Returns
    -------
    indices (int64, sorted, distinct), weights (dtype of ``scores``).

    Examples
    --------
    >>> import numpy as np
    >>> idx, w = sample_by_scores(np.ones(10), 5, p=1.0, generator=0)
    >>> len(idx) <= 5 and bool(np.all(w >= 2.0))  # q = 0.1: weight = count / 0.5
    True
    """
    func = "sample_by_scores"
    check_int(m, "m", func, low=1)
    check_float(p, "p", func, low=0.0, closed_low=False)
    t, info = as_tensor(scores, "scores", func, ndim=1)
    gen = check_generator(generator, t.device, func=func)
    return tuple(_out(v, info.returns_numpy) for v in _draw(t, m, float(p), gen, func))


def _draw(scores: torch.Tensor, m: int, p: float, gen: torch.Generator, func: str
          ) -> tuple[torch.Tensor, torch.Tensor]:
    s64 = scores.to(torch.float64)
    if bool((s64 < 0).any()):
        raise param_error("scores", func, "non-negative", scores)
    total = float(s64.sum())
    if not (total > 0 and math.isfinite(total)):
        raise param_error("A" if func == "sample_rows" else "scores", func,
                          "a matrix with at least one nonzero row" if func == "sample_rows"
                          else "not all zero", scores)
    q = s64 / total
    # inverse-CDF draws (torch.multinomial caps the number of categories at 2^24)
    cdf = torch.cumsum(q, 0)
    u = torch.rand(m, generator=gen, dtype=torch.float64, device=scores.device) * float(cdf[-1])
    draws = torch.searchsorted(cdf, u, right=True).clamp(max=scores.shape[0] - 1)
    counts = torch.bincount(draws, minlength=scores.shape[0])
    idx = counts.nonzero().reshape(-1)
    weights = (counts[idx].to(torch.float64) / (m * q[idx])).pow(1.0 / p).to(scores.dtype)
    return idx, weights


def sample_rows(A: Any, m: int, *, by: str = "lewis", p: float = 2.0,
                rcond: float | None = None, generator: GeneratorLike = None
                ) -> tuple[Any, Any]:
    """Sample rows of ``A`` so that the reweighted sample preserves ``||A x||_p``.

    Draws ``m`` row indices i.i.d. (with replacement) with probabilities ``q_i``
    proportional to a score of the rows, merges repeated draws, and returns the distinct
    indices with weights

    ``weights_j = (c_j / (m q_{i_j}))^{1/p}``  (``c_j`` = number of times ``i_j`` was drawn),

    so that for every ``x``

    ``||diag(weights) A[indices] x||_p^p = (1/m) sum_draws |a_i^T x|^p / q_i``,

    an unbiased estimator of ``||A x||_p^p``; with enough rows it is within ``1 +- eps``
    for all ``x`` at once (a subspace embedding). For ``p = 2`` this is ``||S A x||_2``
    with the usual ``1/sqrt(m q_i)`` rescaling. Solve a sampled regression as
    ``min_x ||diag(weights) (A[indices] x - b[indices])||_p``.

    Parameters
    ----------
    A : array-like, torch.Tensor or scipy.sparse (densified), shape (n_rows, d)
    m : int
        Number of draws, ``>= 1``. The result has at most ``m`` distinct rows.
    by : {"leverage", "root_leverage", "lewis", "sensitivity"}, default "lewis"
        Score: ``"leverage"``: ``tau_i`` (the l_2 choice); ``"root_leverage"``:
        ``tau_i^{p/2}`` for ``p < 2`` (``sqrt(tau_i)`` at ``p = 1``; Woodruff & Yasuda's
        root leverage sampling, about ``d`` samples for ``1 <= p < 2``; equals
        ``"leverage"`` for ``p >= 2``); ``"lewis"``: the l_p Lewis weights
        (Cohen & Peng, ``O(d log d)`` samples for ``p < 2``); ``"sensitivity"``: estimates of the
        l_p sensitivities from :func:`lp_sensitivities` (IRLS on a Lewis-weight embedding
        for ``p < 2``, the leverage scores at ``p = 2``, the Lewis-weight bounds of
        :func:`sensitivity_bounds` for ``p > 2``, where they sample like ``"lewis"``
        except for the clip at 1); Woodruff & Yasuda's sensitivity sampling.
    p : float, default 2.0
        Norm to preserve, ``p > 0``.
    rcond : float, optional
        Relative rank cut-off of the scores.
    generator : int, torch.Generator, numpy.random.Generator or None

    Returns
    -------
    indices : int64, shape (k,), sorted, ``k <= m`` distinct rows (kind of ``A``).
    weights : shape (k,), dtype of ``A``.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.random.default_rng(0).standard_normal((5000, 4))
    >>> idx, w = sample_rows(A, 400, by="lewis", p=1, generator=0)
    >>> x = np.ones(4)
    >>> ratio = np.abs(w * (A[idx] @ x)).sum() / np.abs(A @ x).sum()
    >>> bool(0.8 < ratio < 1.2)
    True
    """
    func = "sample_rows"
    check_int(m, "m", func, low=1)
    check_option(by, "by", func, SAMPLING_SCORES)
    check_float(p, "p", func, low=0.0, closed_low=False)
    check_float(rcond, "rcond", func, low=0.0, high=1.0, allow_none=True)
    X, numpy_out = _as_matrix(A, func)
    gen = check_generator(generator, X.device, func=func)
    rc = rcond if rcond is not None else max(X.shape) * torch.finfo(X.dtype).eps
    scores = SAMPLING_SCORES[by](X, float(p), rc, gen)
    idx, weights = _draw(scores, m, float(p), gen, func)
    return _out(idx, numpy_out), _out(weights, numpy_out)
