"""Least squares by sketch-and-precondition (Blendenpik / LSRN style), sketch-and-solve or
a direct rank-revealing solver.

``lstsq(A, b)`` minimises ``||A x - b||_2`` for a tall ``A`` of shape ``(m, n)``. The default
``method="sketch_precondition"``:

1. sketches ``[A, b]`` with one sparse-sign (or SRHT, Gaussian, CountSketch) operator
   ``S`` of ``s = oversampling * n`` rows, ``O(nnz(A))`` work;
2. factors the sketch: an R-only QR of ``[S A, S b]`` gives ``R`` and ``Q^T S b``. With the
   default ``preconditioner="auto"``, ``M = R^{-1}`` (Blendenpik) when a cheap estimate of
   ``cond(R)`` (power iterations with triangular solves) is at least 100 times below the
   rank cut-off ``1 / rcond``; otherwise (rank deficient or nearly so) the SVD of ``R``,
   ``M = V_r Sigma_r^{-1}`` with singular values below ``rcond * sigma_max`` dropped
   (LSRN; ``preconditioner="svd"`` always takes this route). Either way ``A M`` has
   condition number ``(1 + sqrt(n/s)) / (1 - sqrt(n/s))``-ish whatever the conditioning
   of ``A``;
3. warm-starts from the sketch-and-solve answer ``x0 = M (Q^T S b)``;
4. solves ``min ||A M y - (b - A x0)||`` iteratively and returns ``x = x0 + M y``: for a
   dense ``A`` by conjugate gradients on the preconditioned normal equations, with
   ``A^T (A d)`` computed in one pass over ``A`` in cache-sized row blocks (LSQR needs two
   passes per iteration; squaring ``cond(A M) ~ 2`` is harmless), otherwise by LSQR.

Nothing ever forms ``A^T A``, so float32 inputs do not square the condition number, and
the dropped singular values make rank-deficient problems converge to the minimum-norm
solution (``x`` lies in the row space of ``S A``, which equals that of ``A`` with high
probability).

References
----------
.. [1] H. Avron, P. Maymounkov, S. Toledo, "Blendenpik: supercharging LAPACK's
   least-squares solver", SIAM J. Sci. Comput. 32 (2010).
.. [2] X. Meng, M. A. Saunders, M. W. Mahoney, "LSRN: a parallel iterative solver for
   strongly over- or underdetermined systems", SIAM J. Sci. Comput. 36 (2014), Alg. 1.
.. [3] C. C. Paige, M. A. Saunders, "LSQR: an algorithm for sparse linear equations and
   sparse least squares", ACM TOMS 8 (1982) (Algorithm LSQR, Sec. 4 and stopping
   rules of Sec. 6).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from .._array import MatrixOperator, as_operator, as_tensor, to_numpy
from .._errors import ConvergenceError, ConvergenceWarning, ShapeError
from .._parallel import cpu_workers, run_threads
from .._random import GeneratorLike, check_generator
from .._validation import check_float, check_int, check_option, param_error
from .sketch import SKETCHES, make_sketch

__all__ = ["LstsqResult", "LstsqInfo", "lstsq", "lsqr", "LSTSQ_METHODS"]

logger = logging.getLogger(__name__)

_DEFAULT_TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-2,
                torch.bfloat16: 1e-2}


class LstsqInfo(NamedTuple):
    """Diagnostics of a :func:`lstsq` call.

    Attributes
    ----------
    method : str
        The method used.
    iterations : int
        Iterations of the iterative solver (CG for dense ``A``, LSQR for sparse; 0 for
        ``"sketch_solve"`` and ``"direct"``).
    residual_norm : float or numpy.ndarray
        ``||A x - b||_2`` recomputed at the end (one value per column of ``b``).
    converged : bool
        Whether LSQR met its stopping rule within ``max_iter`` (True for non-iterative
        methods).
    rank : int
        Numerical rank used (of the sketch ``S A``, or from the direct solver).
    cond_estimate : float
        Estimate of ``cond(A)`` restricted to its numerical rank (from the sketch's
        singular values, or the power-iteration estimate of ``cond(R)`` when the QR
        preconditioner is used; NaN for ``"direct"`` on GPU).
    cond_preconditioned : float
        Estimate of the condition number of the preconditioned operator ``A M`` from
        Ritz values: LSQR's bidiagonal matrix or the Lanczos matrix of the CG
        coefficients (a lower bound that is accurate after a few iterations; NaN when no
        iteration ran).
    sketch_size : int
        Rows of the sketch (0 for ``"direct"``).
    """

    method: str
    iterations: int
    residual_norm: float | np.ndarray
    converged: bool
    rank: int
    cond_estimate: float
    cond_preconditioned: float
    sketch_size: int


class LstsqResult(NamedTuple):
    """``solution`` of shape ``(n,)`` or ``(n, k)`` (kind of ``A``) and :class:`LstsqInfo`."""

    solution: Any
    info: LstsqInfo


class _LsqrOut(NamedTuple):
    x: torch.Tensor
    iterations: int
    converged: bool
    acond: float
    residual: torch.Tensor | None = None  # the updated residual r0 - A M y, if kept


def lsqr(matvec: Callable[[torch.Tensor], torch.Tensor],
         rmatvec: Callable[[torch.Tensor], torch.Tensor],
         b: torch.Tensor, n: int, *, atol: float, btol: float, max_iter: int) -> _LsqrOut:
    """Batched LSQR (Paige & Saunders 1982) for ``min ||Op y - b||`` column by column.

    Parameters
    ----------
    matvec, rmatvec : callables
        ``Op @ V`` for ``V`` of shape ``(n, k)`` and ``Op^T @ U`` for ``U`` of shape
        ``(m, k)``.
    b : torch.Tensor, shape (m, k)
        Right-hand sides, solved independently (all scalars of the recurrence are
        length-``k`` vectors; a converged column stops being updated).
    n : int
        Number of unknowns.
    atol, btol : float
        Stopping rules S1 (``||r|| <= btol ||b|| + atol ||Op|| ||y||``) and S2
        (``||Op^T r|| <= atol ||Op|| ||r||``) of Paige & Saunders, Sec. 6.
    max_iter : int
        Iteration limit.

    Returns
    -------
    x, iterations, converged, acond (Ritz estimate of ``cond(Op)`` from the
    bidiagonalisation of the first column).
    """
    dtype, device = b.dtype, b.device
    k = b.shape[1]
    tiny = torch.finfo(dtype).tiny
    x = torch.zeros((n, k), dtype=dtype, device=device)
    beta = torch.linalg.vector_norm(b, dim=0)
    bnorm = beta.clone()
    u = b / torch.where(beta > 0, beta, 1.0)
    v = rmatvec(u)
    alpha = torch.linalg.vector_norm(v, dim=0)
    v = v / torch.where(alpha > 0, alpha, 1.0)
    w = v.clone()
    phibar = beta.clone()
    rhobar = alpha.clone()
    anorm2 = torch.zeros(k, dtype=dtype, device=device)
    # columns with b == 0 or Op^T b == 0 are solved by x = 0
    active = (beta > 0) & (alpha > 0)
    # Golub-Kahan bidiagonal of the largest right-hand side, for a condition estimate
    j = int(torch.argmax(torch.where(active, bnorm, -1.0)))
    alphas, betas = [float(alpha[j])], []
    recording = bool(active[j])
    it = 0
    while bool(active.any()) and it < max_iter:
        it += 1
        u = matvec(v) - alpha * u
        beta = torch.linalg.vector_norm(u, dim=0)
        u = u / torch.where(beta > tiny, beta, 1.0)
        anorm2 = anorm2 + alpha**2 + beta**2
        v = rmatvec(u) - beta * v
        alpha = torch.linalg.vector_norm(v, dim=0)
        v = v / torch.where(alpha > tiny, alpha, 1.0)
        if recording:
            betas.append(float(beta[j]))
            alphas.append(float(alpha[j]))
            recording = float(beta[j]) > tiny and float(alpha[j]) > tiny
        rho = torch.sqrt(rhobar**2 + beta**2)
        rho_safe = torch.where(rho > tiny, rho, 1.0)
        c = rhobar / rho_safe
        s = beta / rho_safe
        theta = s * alpha
        rhobar = -c * alpha
        phi = c * phibar
        phibar = s * phibar
        step = torch.where(active, phi / rho_safe, 0.0)
        x = x + step * w
        w = v - (theta / rho_safe) * w
        anorm = torch.sqrt(anorm2)
        xnorm = torch.linalg.vector_norm(x, dim=0)
        rnorm = phibar
        arnorm = phibar * alpha * c.abs()
        test1 = rnorm <= btol * bnorm + atol * anorm * xnorm
        test2 = arnorm <= atol * anorm * rnorm
        done = test1 | test2 | (alpha <= tiny) | (beta <= tiny)
        active = active & ~done
    return _LsqrOut(x, it, not bool(active.any()), _ritz_cond(alphas, betas))


def _fused_passes(A: torch.Tensor, d: torch.Tensor, b: torch.Tensor | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``q = A d`` (or ``q = b - A d``) and ``A^H q`` from one read of a dense CPU ``A``.

    Rows go in blocks of about 1 MB, so each block is still in cache when it is multiplied
    the second time (one read of ``A`` instead of two: 31 ms instead of 43 ms for
    100000 x 500 float64 here), and the row range is split over the CPU threads, each
    with its own partial ``A^H q`` (GEMVs on 1 MB blocks are too small for torch's
    intra-op pool: 18 ms instead of 29 ms on two cores). Off the CPU: two products.
    """
    if A.device.type != "cpu":
        q = A @ d if b is None else b - A @ d
        return q, A.mH @ q
    m, n = A.shape
    bs = max(16, (1 << 20) // max(1, n * A.element_size()))
    q = torch.empty((m, d.shape[1]), dtype=A.dtype, device=A.device)
    workers = cpu_workers(A.device, -(-m // bs))
    cut = [round(m * w / workers / bs) * bs for w in range(workers)] + [m]

    def part(w: int) -> torch.Tensor:
        t = torch.zeros((n, d.shape[1]), dtype=A.dtype, device=A.device)
        for i in range(cut[w], cut[w + 1], bs):
            j = min(i + bs, cut[w + 1])
            Ai = A[i:j]
            qi = q[i:j]
            if b is None:
                torch.mm(Ai, d, out=qi)
            else:
                torch.addmm(b[i:j], Ai, d, beta=1.0, alpha=-1.0, out=qi)
            t.addmm_(Ai.mH, qi)
        return t

    parts = run_threads(part, range(workers), workers)
    t = parts[0]
    for extra in parts[1:]:
        t += extra
    return q, t


def _normal_product(A: torch.Tensor) -> Callable[[torch.Tensor], tuple[torch.Tensor,
                                                                        torch.Tensor]]:
    """``d -> (A d, A^H (A d))`` in one pass over a dense ``A`` (see :func:`_fused_passes`)."""
    return lambda d: _fused_passes(A, d)


def _cg_normal(product: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
              atr0: torch.Tensor,
              apply: Callable[[torch.Tensor], torch.Tensor],
              apply_t: Callable[[torch.Tensor], torch.Tensor],
              r0: torch.Tensor, n: int, *, atol: float, btol: float,
              max_iter: int) -> _LsqrOut:
    """Conjugate gradients on the preconditioned normal equations (CGLS).

    Solves ``min ||A M y - r0||`` column by column. ``product(d)`` returns
    ``(A d, A^H A d)`` from one pass over ``A``, ``atr0 = A^H r0`` (the starting
    gradient, from the pass that formed ``r0``), ``apply`` / ``apply_t`` are ``M`` and
    ``M^H``. In exact
    arithmetic the iterates are those of LSQR; squaring the condition number is harmless
    because ``A M`` is well conditioned (about 2 with the default sketch). The residual
    ``r = r0 - A M y`` is updated explicitly, and the stopping rules are LSQR's S1
    (``||r|| <= btol ||r0|| + atol ||A M|| ||y||``) and S2
    (``||M^H A^H r|| <= atol ||A M|| ||r||``), with ``||A M||`` the largest Ritz value of
    the Lanczos matrix built from the CG coefficients.
    """
    from scipy.linalg import eigvalsh_tridiagonal

    dtype, device = r0.dtype, r0.device
    k = r0.shape[1]
    tiny = torch.finfo(dtype).tiny
    y = torch.zeros((n, k), dtype=dtype, device=device)
    r = r0.clone()
    bnorm = torch.linalg.vector_norm(r0, dim=0)
    g = apply_t(atr0)
    p = g.clone()
    gamma = torch.linalg.vector_norm(g, dim=0).square()
    active = (bnorm > 0) & (gamma > 0)
    j = int(torch.argmax(torch.where(active, bnorm, -1.0)))
    diag: list[float] = []
    off: list[float] = []
    prev: tuple[float, float] | None = None  # (alpha, beta) of the previous step, column j
    anorm = torch.ones((), dtype=dtype, device=device)
    acond = float("nan")
    it = 0
    while bool(active.any()) and it < max_iter:
        it += 1
        q, t = product(apply(p))
        qq = torch.linalg.vector_norm(q, dim=0).square()
        ok = active & (qq > tiny)
        alpha = torch.where(ok, gamma / torch.where(ok, qq, 1.0), 0.0)
        y.addcmul_(p, alpha)
        r.addcmul_(q, alpha, value=-1.0)
        g.addcmul_(apply_t(t), alpha, value=-1.0)
        gamma_new = torch.linalg.vector_norm(g, dim=0).square()
        beta = torch.where(ok, gamma_new / torch.where(gamma > 0, gamma, 1.0), 0.0)
        p = p.mul_(beta).add_(g)
        gamma = torch.where(ok, gamma_new, gamma)
        a_j, b_j = float(alpha[j]), float(beta[j])
        if a_j > 0:  # Lanczos matrix of column j from the CG coefficients
            diag.append(1.0 / a_j + (prev[1] / prev[0] if prev else 0.0))
            if prev:
                off.append(math.sqrt(prev[1]) / prev[0])
            prev = (a_j, b_j)
            ev = eigvalsh_tridiagonal(np.array(diag), np.array(off))
            anorm = torch.tensor(math.sqrt(max(ev[-1], 0.0)), dtype=dtype, device=device)
            acond = math.sqrt(ev[-1] / ev[0]) if ev[0] > 0 else float("inf")
        rnorm = torch.linalg.vector_norm(r, dim=0)
        ynorm = torch.linalg.vector_norm(y, dim=0)
        test1 = rnorm <= btol * bnorm + atol * anorm * ynorm
        test2 = gamma.sqrt() <= atol * anorm * rnorm
        active = active & ~(test1 | test2 | ~ok)
    return _LsqrOut(y, it, not bool(active.any()), acond, r)


def _ritz_cond(alphas: list[float], betas: list[float]) -> float:
    """Ratio of the extreme singular values of the lower bidiagonal ``B_k`` (diagonal
    ``alpha_1..alpha_k``, subdiagonal ``beta_2..beta_{k+1}``) built by LSQR's Golub-Kahan
    process: Ritz estimates of ``sigma_max / sigma_min`` of the operator (from below)."""
    k = len(betas)
    if k == 0:
        return float("nan")
    B = np.zeros((k + 1, k))
    B[np.arange(k), np.arange(k)] = alphas[:k]
    B[np.arange(1, k + 1), np.arange(k)] = betas
    sv = np.linalg.svd(B, compute_uv=False)
    return float(sv[0] / sv[-1]) if sv[-1] > 0 else float("inf")


class _Precond(NamedTuple):
    apply: Callable[[torch.Tensor], torch.Tensor]  # y -> M y
    apply_t: Callable[[torch.Tensor], torch.Tensor]  # z -> M^T z
    n_y: int  # columns of M
    rank: int
    cond: float  # estimate of cond(A) on its numerical rank
    x0: torch.Tensor  # sketch-and-solve solution


def _r_and_qtb(SA: torch.Tensor, Sb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``R`` and ``Q^T Sb`` of the thin QR ``SA = Q R`` without forming ``Q``: the
    triangular factor of ``[SA, Sb]`` holds ``R`` and ``Q^T Sb`` in its first ``n`` rows."""
    n = SA.shape[1]
    Rf = torch.linalg.qr(torch.cat([SA, Sb], dim=1), mode="r").R
    return Rf[:n, :n], Rf[:n, n:]


# Cholesky-QR of the sketch is accepted up to this estimated cond(R): the Gram matrix
# squares it, so R^H R = S A^H S A + E with ||E|| ~ eps64 ||SA||^2, which perturbs the
# preconditioned matrix by about eps64 cond^2 (1e-2 at cond 1e7): still a preconditioner
# whose CG converges at the same rate
_CHOL_MAX_COND = 1e7


def _cholesky_r(SA: torch.Tensor, Sb: torch.Tensor, g: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, float] | None:
    """``(R, Q^H S b, cond(R))`` of the sketch from a Cholesky factor of its float64
    Gram matrix, or None when that is not accurate enough (see ``_CHOL_MAX_COND``).

    One GEMM-rich pass over the ``s x n`` sketch instead of Householder QR's panel
    factorisations (35-45 ms for 4000-6000 x 500 here, the Gram and Cholesky ~10 ms).
    """
    SA64, Sb64 = SA.to(torch.float64), Sb.to(torch.float64)
    R, info = torch.linalg.cholesky_ex(SA64.mH @ SA64, upper=True)
    if int(info) != 0 or not bool(torch.isfinite(R).all()):
        return None
    cond = _tri_cond_estimate(R, g)
    if not cond <= _CHOL_MAX_COND:
        return None
    QtSb = torch.linalg.solve_triangular(R.mH, SA64.mH @ Sb64, upper=False)
    return R.to(SA.dtype), QtSb.to(SA.dtype), cond


def _svd_from(U: torch.Tensor | None, s: torch.Tensor, Vh: torch.Tensor,
              UtSb: torch.Tensor, rcond: float) -> _Precond:
    smax = float(s[0])
    if not math.isfinite(smax):
        raise ConvergenceError("lstsq: the sketch of A has non-finite singular values.")
    r = max(int((s > rcond * smax).sum()), 1) if smax > 0 else 1
    M = Vh[:r].mH / s[:r]
    cond = smax / float(s[r - 1]) if float(s[r - 1]) > 0 else float("inf")
    x0 = M @ UtSb[:r]
    return _Precond(lambda y: M @ y, lambda z: M.mH @ z, r, r, cond, x0)


def _svd_precond(SA: torch.Tensor, Sb: torch.Tensor, rcond: float,
                 R: tuple[torch.Tensor, torch.Tensor] | None = None) -> _Precond:
    """LSRN: ``M = V_r diag(1/s_r)`` from the thin SVD of the sketch, rank ``r``.

    ``R``: the triangular factor ``(R, Q^T S b)`` of the sketch when already computed."""
    if R is not None or SA.shape[0] >= 2 * SA.shape[1]:
        # QR first: the SVD then works on the n x n factor
        Rm, QtSb = R if R is not None else _r_and_qtb(SA, Sb)
        Ur, s, Vh = torch.linalg.svd(Rm)
        return _svd_from(None, s, Vh, Ur.mH @ QtSb, rcond)
    U, s, Vh = torch.linalg.svd(SA, full_matrices=False)
    return _svd_from(U, s, Vh, U.mH @ Sb, rcond)


def _tri_precond(R: torch.Tensor, QtSb: torch.Tensor, cond: float) -> _Precond:
    n = R.shape[0]
    x0 = torch.linalg.solve_triangular(R, QtSb, upper=True)
    return _Precond(lambda y: torch.linalg.solve_triangular(R, y, upper=True),
                    lambda z: torch.linalg.solve_triangular(R.mH, z, upper=False),
                    n, n, cond, x0)


def _qr_precond(SA: torch.Tensor, Sb: torch.Tensor, rcond: float) -> _Precond | None:
    """Blendenpik: ``M = R^{-1}`` from a QR of the sketch; None when R is singular."""
    R, QtSb = _r_and_qtb(SA, Sb)
    diag = R.diagonal().abs()
    dmax = float(diag.max())
    if not (dmax > 0 and float(diag.min()) > rcond * dmax):
        return None
    return _tri_precond(R, QtSb, dmax / float(diag.min()))


def _tri_cond_estimate(R: torch.Tensor, g: torch.Generator, steps: int = 6) -> float:
    """Estimate ``cond_2(R)`` of an upper triangular ``R`` by power iterations on
    ``R^H R`` and on ``(R^H R)^{-1}`` (two triangular solves per step, ``O(n^2)``).

    Both extremes are estimated from below, so the ratio can be low by a small factor
    when singular values cluster; inf when ``R`` is (numerically) singular."""
    n = R.shape[0]
    x = torch.randn(n, 1, generator=g, dtype=R.dtype, device=R.device)
    y = x.clone()
    smax2 = smin2_inv = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(steps):
            xn = torch.linalg.vector_norm(x)
            x = x / xn
            x = R.mH @ (R @ x)
            smax2 = float(torch.linalg.vector_norm(x))
            yn = torch.linalg.vector_norm(y)
            y = y / yn
            y = torch.linalg.solve_triangular(R.mH, y, upper=False)
            y = torch.linalg.solve_triangular(R, y, upper=True)
            smin2_inv = float(torch.linalg.vector_norm(y))
            if not math.isfinite(smin2_inv):
                return float("inf")
    if smax2 == 0.0:
        return float("inf")
    return math.sqrt(smax2 * smin2_inv)


def _sketch_and_factor(op: MatrixOperator, b: torch.Tensor, o: dict[str, Any]) -> _Precond:
    """Sketch ``A`` and ``b`` with one operator, factor ``S A``, solve the sketched problem."""
    m, _ = op.shape
    S = make_sketch(o["sketch_kind"], m, o["size"], generator=o["generator"], dtype=op.dtype,
                    device=op.device, func="lstsq", **o["sketch_options"])
    if op.is_dense:  # already validated: skip the second finiteness scan of apply()
        SA = S._apply_tensor(op.dense, "left")  # noqa: SLF001
    else:
        SA = torch.as_tensor(S.apply(o["A_sparse"]), dtype=op.dtype, device=op.device)
    Sb = S._apply_tensor(b, "left")  # noqa: SLF001
    kind = o["preconditioner"]
    if kind == "qr":
        pre = _qr_precond(SA, Sb, o["rcond"])
        if pre is not None:
            return pre
        logger.info("lstsq: R of the sketch is numerically singular; using the SVD variant")
    if kind == "auto" and SA.shape[0] >= SA.shape[1]:
        chol = _cholesky_r(SA, Sb, o["generator"])
        if chol is not None:
            R, QtSb, cond = chol
        else:
            R, QtSb = _r_and_qtb(SA, Sb)
            cond = _tri_cond_estimate(R, o["generator"])
        # R^{-1} is an accurate preconditioner while eps * cond(R) is small; near the
        # rank cut-off (within a factor 100) the SVD drops the negligible directions
        if cond * o["rcond"] < 1e-2:
            return _tri_precond(R, QtSb, cond)
        logger.info("lstsq: the sketch of A is ill conditioned (cond ~ %.2g); using the "
                    "SVD preconditioner", cond)
        return _svd_precond(SA, Sb, o["rcond"], R=(R, QtSb))
    return _svd_precond(SA, Sb, o["rcond"])


def _residual_norms(op: MatrixOperator, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(op.mm(x) - b, dim=0)


def _method_sketch_solve(op: MatrixOperator, b: torch.Tensor, o: dict[str, Any]
                         ) -> tuple[torch.Tensor, dict[str, Any]]:
    pre = _sketch_and_factor(op, b, o)
    return pre.x0, dict(iterations=0, converged=True, rank=pre.rank, cond_estimate=pre.cond,
                        cond_preconditioned=float("nan"), sketch_size=o["size"])


def _method_sketch_precondition(op: MatrixOperator, b: torch.Tensor, o: dict[str, Any]
                                ) -> tuple[torch.Tensor, dict[str, Any]]:
    pre = _sketch_and_factor(op, b, o)
    if op.is_dense:  # one fused pass over A per iteration, and one for r0 and A^H r0
        r0, atr0 = _fused_passes(op.dense, pre.x0, b)
        out = _cg_normal(_normal_product(op.dense), atr0, pre.apply, pre.apply_t, r0,
                         pre.n_y, atol=o["tol"], btol=o["tol"], max_iter=o["max_iter"])
    else:
        r0 = b - op.mm(pre.x0)
        out = lsqr(lambda y: op.mm(pre.apply(y)), lambda z: pre.apply_t(op.rmm(z)), r0,
                   pre.n_y, atol=o["tol"], btol=o["tol"], max_iter=o["max_iter"])
    x = pre.x0 + pre.apply(out.x)
    if not out.converged:
        warnings.warn(
            f"lstsq: LSQR did not reach tol={o['tol']:g} within max_iter={o['max_iter']} "
            "iterations.", ConvergenceWarning, stacklevel=3)
    meta = dict(iterations=out.iterations, converged=out.converged, rank=pre.rank,
                cond_estimate=pre.cond, cond_preconditioned=out.acond, sketch_size=o["size"])
    if out.residual is not None:
        # CG updates r = b - A x explicitly; its drift from a recomputed residual is at
        # rounding level, so the reported norm skips one more pass over A
        meta["_residual"] = out.residual
    return x, meta


def _method_direct(op: MatrixOperator, b: torch.Tensor, o: dict[str, Any]
                   ) -> tuple[torch.Tensor, dict[str, Any]]:
    A = op.to_dense().to(op.dtype)
    if A.device.type == "cpu":
        sol = torch.linalg.lstsq(A, b, rcond=o["rcond"], driver="gelsd")
        rank = int(sol.rank)
        s = sol.singular_values
        cond = float(s[0] / s[rank - 1]) if rank > 0 else float("inf")
    else:  # only the QR driver exists off CPU; it assumes full column rank
        sol = torch.linalg.lstsq(A, b, driver="gels")
        rank, cond = min(A.shape), float("nan")
    return sol.solution, dict(iterations=0, converged=True, rank=rank, cond_estimate=cond,
                              cond_preconditioned=float("nan"), sketch_size=0)


LSTSQ_METHODS: dict[str, Callable[[MatrixOperator, torch.Tensor, dict[str, Any]],
                                  tuple[torch.Tensor, dict[str, Any]]]] = {
    "sketch_precondition": _method_sketch_precondition,
    "sketch_solve": _method_sketch_solve,
    "direct": _method_direct,
}


def lstsq(A: Any, b: Any, *, method: str = "sketch_precondition", tol: float | None = None,
          max_iter: int | None = None, sketch_kind: str = "sparse_sign",
          oversampling: float | None = None, preconditioner: str = "auto",
          rcond: float | None = None, generator: GeneratorLike = None,
          **sketch_options: Any) -> LstsqResult:
    """Solve ``min_x ||A x - b||_2`` (minimum-norm ``x`` when ``A`` is rank deficient).

    Parameters
    ----------
    A : numpy array, torch.Tensor or scipy.sparse matrix, shape (m, n)
        Design matrix; the sketched methods need ``m >= n`` (``m`` a few times ``n`` to
        pay off). scipy.sparse stays sparse except for ``method="direct"``.
    b : array-like or torch.Tensor, shape (m,) or (m, k)
        Right-hand side(s); several columns are solved together (batched iterations).
    method : {"sketch_precondition", "sketch_solve", "direct"}, default "sketch_precondition"
        ``"sketch_precondition"``: sketch, QR (or SVD) preconditioner, warm start, then
        CG on the normal equations (dense ``A``) or LSQR (sparse), accurate to ``tol``.
        ``"sketch_solve"``: the warm start alone, i.e. the exact solution of the sketched
        problem ``min ||S(A x - b)||`` (residual within a factor
        ``1 + O(sqrt(n / s))`` of optimal). ``"direct"``: ``torch.linalg.lstsq`` with the
        rank-revealing SVD driver ``gelsd`` on CPU, the QR driver ``gels`` elsewhere.
    tol : float, optional
        ``atol = btol`` of the Paige-Saunders stopping rules S1/S2 on the preconditioned
        system (used by both iterative solvers).
        Default 1e-12 for float64, 1e-5 for float32.
    max_iter : int, optional
        LSQR iteration limit, default ``max(100, 4 * ceil(log(tol) / log(sqrt(n/s))))``.
    sketch_kind : {"gaussian", "srht", "countsketch", "sparse_sign"}, default "sparse_sign"
        Sketch operator (see :mod:`rankfold.linalg.sketch`).
    oversampling : float, optional
        Sketch rows ``s = ceil(oversampling * n)``, must be > 1. Default: ``m / (10 n)``
        clipped to ``[2, 12]`` (a bigger sketch costs a factorisation of ``s x n`` but
        cuts LSQR iterations: about 40 / 22 / 15 / 12 at 2 / 4 / 8 / 12 on the
        benchmark problem). ``s`` is capped at ``m``
        for non-SRHT kinds). Larger ``s`` gives a better preconditioner (fewer LSQR
        iterations) at a higher sketch/SVD cost.
    preconditioner : {"auto", "svd", "qr"}, default "auto"
        ``"auto"``: ``R^{-1}`` from the QR of ``S A`` while ``R`` is well conditioned
        (estimated condition number below ``0.01 / rcond``), else the SVD variant.
        ``"svd"`` (LSRN): drops singular values of ``S A`` below ``rcond * s_max`` and
        returns the minimum-norm solution. ``"qr"`` (Blendenpik): ``R^{-1}`` from a QR of
        ``S A``, falling back to the SVD when a diagonal entry of ``R`` is below
        ``rcond`` times the largest.
    rcond : float, optional
        Relative singular-value cut-off, default ``max(m, n) * eps`` of the dtype for
        ``"direct"`` and ``s * eps`` for the sketched methods.
    generator : int, torch.Generator, numpy.random.Generator or None
        Randomness of the sketch.
    **sketch_options
        Passed to the sketch operator (e.g. ``nnz=`` for ``"sparse_sign"``; lstsq's
        default is 4 nonzeros per column, the operator's own is 8).

    Returns
    -------
    LstsqResult
        ``solution`` (kind of ``A``: numpy or torch; shape ``(n,)`` or ``(n, k)``) and
        ``info`` (:class:`LstsqInfo`: method, iterations, residual norm, convergence,
        rank, condition estimates, sketch size).

    Raises
    ------
    InvalidParameterError, ShapeError
        Bad options, non-finite or empty input, ``b`` of the wrong length.
    ConvergenceError
        The solution is not finite.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> A = rng.standard_normal((2000, 20)); x = rng.standard_normal(20)
    >>> res = lstsq(A, A @ x, generator=0)
    >>> bool(np.allclose(res.solution, x)), res.info.converged
    (True, True)
    """
    func = "lstsq"
    check_option(method, "method", func, LSTSQ_METHODS)
    check_option(sketch_kind, "sketch_kind", func, SKETCHES)
    check_option(preconditioner, "preconditioner", func, ("auto", "svd", "qr"))
    check_float(oversampling, "oversampling", func, low=1.0, closed_low=False,
                allow_none=True)
    check_float(tol, "tol", func, low=0.0, high=1.0, closed_low=False, allow_none=True)
    check_int(max_iter, "max_iter", func, low=1, allow_none=True)
    check_float(rcond, "rcond", func, low=0.0, high=1.0, allow_none=True)
    if isinstance(A, spla.LinearOperator):
        raise param_error("A", func, "a dense array, a torch tensor or a scipy.sparse "
                          "matrix", A)
    op = as_operator(A, "A", func)
    if op.dtype.is_complex:
        raise param_error("A", func, "real-valued", A)
    m, n = op.shape
    if sp.issparse(b):
        raise param_error("b", func, "a dense array or tensor", b)
    bt, _ = as_tensor(b, "b", func, dtype=op.dtype, device=op.device, ndim=None)
    if bt.ndim not in (1, 2):
        raise ShapeError(f"The 'b' parameter of {func} must have shape (m,) or (m, k) with "
                         f"m={m}. Got shape {tuple(bt.shape)}.")
    if bt.shape[0] != m:
        raise ShapeError(f"The 'b' parameter of {func} must have shape (m,) or (m, k) with "
                         f"m={m} (rows of A). Got shape {tuple(bt.shape)}.")
    vector = bt.ndim == 1
    b2 = bt[:, None] if vector else bt
    eps = torch.finfo(op.dtype).eps
    size = 0
    if method != "direct":
        if m < n:
            raise ShapeError(f"The 'A' parameter of {func} must have at least as many rows "
                             f"as columns for method={method!r}. Got shape {(m, n)}; use "
                             "method='direct'.")
        ovs = oversampling if oversampling is not None else min(12.0, max(2.0, m / (10 * n)))
        size = math.ceil(ovs * n)
        if sketch_kind == "srht":
            size = min(size, 1 << max(0, (m - 1).bit_length()))
        else:
            size = min(size, m)
    if method != "direct" and sketch_kind == "sparse_sign" and "nnz" not in sketch_options:
        # 4 nonzeros per column: with s >= 8 n rows the preconditioned condition number
        # matched 8 nonzeros' (1.78 vs 1.78 at s = 12 n on the benchmark problem, also on
        # coherent matrices in the tests) for half the cost of the sketch, which is the
        # largest cost after the CG passes
        sketch_options = {**sketch_options, "nnz": min(4, size)}
    tol_ = tol if tol is not None else _DEFAULT_TOL.get(op.dtype, 1e-12)
    if max_iter is None:
        rate = math.sqrt(n / size) if size else 0.5
        rate = min(max(rate, 1e-3), 0.9)
        max_iter = max(100, 4 * math.ceil(math.log(tol_) / math.log(rate)))
    if rcond is None:
        rcond = max(m, n) * eps if method == "direct" else max(size, n) * eps
    gen = check_generator(generator, op.device, func=func) if method != "direct" else None
    opts = dict(tol=tol_, max_iter=max_iter, sketch_kind=sketch_kind, size=size,
                rcond=rcond, preconditioner=preconditioner, generator=gen,
                sketch_options=sketch_options,
                A_sparse=sp.csr_array(A).astype(to_numpy(torch.empty(0, dtype=op.dtype)).dtype)
                if sp.issparse(A) else None)
    x, meta = LSTSQ_METHODS[method](op, b2, opts)
    if not bool(torch.isfinite(x).all()):
        raise ConvergenceError(f"lstsq (method={method!r}) produced a non-finite solution.")
    r = meta.pop("_residual", None)
    res = (torch.linalg.vector_norm(r, dim=0) if r is not None
           else _residual_norms(op, x, b2)).to(torch.float64).cpu().numpy()
    info = LstsqInfo(method=method, residual_norm=float(res[0]) if vector else res, **meta)
    sol = x[:, 0] if vector else x
    return LstsqResult(sol.cpu().numpy() if op.info.returns_numpy else sol, info)
