"""CP (CANDECOMP/PARAFAC) decomposition of dense tensors by alternating least squares.

One ALS sweep touches the full tensor only twice whatever its order: the modes are split
in two halves, ``X`` is contracted once with the factors of one half (a single matrix
product) and the MTTKRPs of every mode of the other half are finished on that smaller
intermediate (Phan, Tichavsky & Cichocki 2013, dimension trees). No Khatri-Rao product is
formed, and the fit is updated from quantities the sweep already has.

References
----------
Kolda, T. G., & Bader, B. W. (2009). Tensor decompositions and applications. SIAM Review
51(3), Figure 3.3 (CP-ALS).
Phan, A.-H., Tichavsky, P., & Cichocki, A. (2013). Fast alternating LS algorithms for high
order CANDECOMP/PARAFAC tensor factorizations. IEEE Trans. Signal Process. 61(19).
Bro, R. (1998). Multi-way analysis in the food industry (PhD thesis), line search by
extrapolation, section 4.7.
Tomasi, G., & Bro, R. (2005). PARAFAC and missing values. Chemom. Intell. Lab. Syst. 75.
Cichocki, A., & Phan, A.-H. (2009). Fast local algorithms for large scale nonnegative
matrix and tensor factorizations. IEICE Trans. Fundamentals E92-A(3) (HALS).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from .._errors import ConvergenceError, ConvergenceWarning
from .._random import check_generator
from .._validation import check_bool, check_float, check_int, check_option
from ._common import as_dense_tensor, check_mask, fill_missing
from ._formats import CPTensor
from ._rowsolve import nonneg_rows, serial, small_work_serial, solve_rows
from ._unfold import contract_kept, partial_contract, sq_norm, unfolding_gram
from .complete import _check_init_cp, _random_cp

__all__ = ["cp", "CPResult", "MISSING_METHODS"]


class CPResult(NamedTuple):
    """Result of :func:`cp`."""

    cp: CPTensor
    history: list[float]  # fit 1 - ||X - M|| / ||X|| after each sweep (observed entries)
    n_iter: int
    converged: bool


class _State:
    """Factors (unit columns) and weights during the sweeps."""

    def __init__(self, weights: torch.Tensor, factors: list[torch.Tensor]) -> None:
        self.w = weights
        self.f = factors
        self.grams = [f.T @ f for f in factors]

    def set(self, n: int, A: torch.Tensor) -> None:
        w = torch.linalg.vector_norm(A, dim=0)
        safe = torch.where(w > 0, w, torch.ones_like(w))
        self.f[n] = A / safe
        self.w = w
        self.grams[n] = self.f[n].T @ self.f[n]

    def hadamard_except(self, n: int) -> torch.Tensor:
        R = self.w.shape[0]
        V = torch.ones(R, R, dtype=self.w.dtype, device=self.w.device)
        for k, g in enumerate(self.grams):
            if k != n:
                V = V * g
        return V

    def full_factors(self) -> list[torch.Tensor]:
        return [self.f[0] * self.w, *self.f[1:]]


def _als_sweep(X: torch.Tensor, st: _State, normX2: float, l2_reg: float,
               nonneg: bool) -> float:
    """One ALS sweep over all modes; returns the squared residual ||X - M||^2."""
    K = X.ndim
    m = (K + 1) // 2
    halves = [list(range(m)), list(range(m, K))]
    inner = 0.0
    for h, kept in enumerate(halves):
        other = halves[1 - h]
        P = partial_contract(X, [st.f[k] if k in other else None for k in range(K)])
        for n in kept:
            M = contract_kept(P, kept, st.f, n)
            V = st.hadamard_except(n)
            if nonneg:
                A = nonneg_rows(st.f[n] * st.w, V, M, l2_reg)
            else:
                A = solve_rows(V, M, l2_reg)
            st.set(n, A)
            if n == K - 1:
                inner = float(torch.sum(M * A))
                model2 = float(st.w @ (V * st.grams[n]) @ st.w)
    return max(normX2 - 2.0 * inner + model2, 0.0)


def _residual2(X: torch.Tensor, factors: list[torch.Tensor], normX2: float) -> float:
    """||X - [[factors]]||^2 for unnormalized factors (one pass over X)."""
    K = X.ndim
    fs: list[torch.Tensor | None] = list(factors)
    fs[K - 1] = None
    M = partial_contract(X, fs)
    inner = float(torch.sum(M * factors[K - 1]))
    V = torch.ones_like(factors[0][:1].T @ factors[0][:1])
    for f in factors:
        V = V * (f.T @ f)
    return max(normX2 - 2.0 * inner + float(V.sum()), 0.0)


def _svd_init(X: torch.Tensor, rank: int, gen: torch.Generator, nonneg: bool
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Leading left singular vectors of each unfolding (random columns beyond I_k)."""
    fs = []
    for k in range(X.ndim):
        gram = unfolding_gram(X, k)
        with serial():
            _, V = torch.linalg.eigh(gram)
        V = V.flip(-1)[:, :min(rank, X.shape[k])]
        if rank > X.shape[k]:
            extra = torch.randn(X.shape[k], rank - X.shape[k], generator=gen, dtype=X.dtype,
                                device=X.device)
            V = torch.cat([V, extra / torch.linalg.vector_norm(extra, dim=0)], 1)
        fs.append(V.abs() if nonneg else V)
    return torch.ones(rank, dtype=X.dtype, device=X.device), fs


def _dense_als(X: torch.Tensor, st: _State, *, n_iter_max: int, tol: float, l2_reg: float,
               nonneg: bool, line_search: bool) -> tuple[list[float], int, bool]:
    normX2 = sq_norm(X)
    normX = math.sqrt(normX2) if normX2 > 0 else 1.0
    history: list[float] = []
    prev: list[torch.Tensor] | None = None
    converged = False
    it = 0
    for it in range(1, n_iter_max + 1):
        res2 = _als_sweep(X, st, normX2, l2_reg, nonneg)
        if line_search and prev is not None and it > 2:
            cur = st.full_factors()
            jump = it ** (1.0 / 3.0)
            cand = [p + jump * (c - p) for p, c in zip(prev, cur, strict=True)]
            if nonneg:
                cand = [c.clamp_min(0) for c in cand]
            r2 = _residual2(X, cand, normX2)
            if r2 < res2:
                n = CPTensor._from_torch(torch.ones_like(st.w), cand).normalize()
                st.__init__(n._w, list(n._f))  # type: ignore[misc]
                res2 = r2
        prev = st.full_factors()
        fit = 1.0 - math.sqrt(res2) / normX
        if not math.isfinite(fit) or not bool(torch.isfinite(st.w).all()):
            raise ConvergenceError(f"cp produced non-finite factors at iteration {it}; try "
                                   f"l2_reg > 0 or a lower rank.")
        history.append(fit)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
            converged = True
            break
    return history, it, converged


def _cp_em(X: torch.Tensor, mask: torch.Tensor, st: _State, *, n_iter_max: int, tol: float,
           l2_reg: float, nonneg: bool, line_search: bool) -> tuple[list[float], int, bool]:
    """EM imputation (Tomasi & Bro 2005): fill missing entries with the model, one sweep."""
    obs = X[mask]
    normY = float(torch.linalg.vector_norm(obs)) or 1.0
    model = CPTensor._from_torch(st.w, st.f).to_tensor()
    history: list[float] = []
    converged = False
    it = 0
    for it in range(1, n_iter_max + 1):
        Xf = torch.where(mask, X, model)
        _als_sweep(Xf, st, float(torch.sum(Xf * Xf)), l2_reg, nonneg)
        model = CPTensor._from_torch(st.w, st.f).to_tensor()
        err = float(torch.linalg.vector_norm(obs - model[mask]))
        if not math.isfinite(err):
            raise ConvergenceError(f"cp produced non-finite factors at iteration {it}; try "
                                   f"l2_reg > 0 or a lower rank.")
        history.append(1.0 - err / normY)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
            converged = True
            break
    return history, it, converged


def _cp_masked_als(X: torch.Tensor, mask: torch.Tensor, st: _State, *, n_iter_max: int,
                   tol: float, l2_reg: float, nonneg: bool, line_search: bool
                   ) -> tuple[list[float], int, bool]:
    """Exact weighted ALS: each factor row solves least squares over its observed entries.

    For a dense mask the per-row normal equations are MTTKRPs: with W the 0/1 mask,
    ``G_i = sum_j W[i, j] (a_j a_j^T) o (b_j b_j^T) ...`` is the MTTKRP of W against the
    row-wise outer products ``A_k (x) A_k`` (I_k, R^2), and ``b_i`` the MTTKRP of W o X;
    both are dense contractions, no per-entry work.
    """
    K = X.ndim
    W = mask.to(X.dtype)
    Y = torch.where(mask, X, torch.zeros((), dtype=X.dtype, device=X.device))
    normY2 = float(torch.sum(Y.double() ** 2))
    normY = math.sqrt(normY2) if normY2 > 0 else 1.0
    R = st.w.shape[0]
    history: list[float] = []
    converged = False
    it = 0
    for it in range(1, n_iter_max + 1):
        res2 = 0.0
        for n in range(K):
            outer = [None if k == n else (f[:, :, None] * f[:, None, :]).reshape(-1, R * R)
                     for k, f in enumerate(st.f)]
            G = partial_contract(W, outer).reshape(-1, R, R)
            b = partial_contract(Y, [None if k == n else f for k, f in enumerate(st.f)])
            A = nonneg_rows(st.f[n] * st.w, G, b, l2_reg) if nonneg else \
                solve_rows(G, b, l2_reg)
            st.set(n, A)
            if n == K - 1:
                quad = float(torch.einsum("ir,irs,is->", A, G, A))
                res2 = max(normY2 - 2.0 * float(torch.sum(b * A)) + quad, 0.0)
        fit = 1.0 - math.sqrt(res2) / normY
        if not math.isfinite(fit) or not bool(torch.isfinite(st.w).all()):
            raise ConvergenceError(f"cp produced non-finite factors at iteration {it}; try "
                                   f"l2_reg > 0 or a lower rank.")
        history.append(fit)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
            converged = True
            break
    return history, it, converged


MISSING_METHODS: dict[str, Callable[..., tuple[list[float], int, bool]]] = {
    "als": _cp_masked_als,
    "em": _cp_em,
}
"""How :func:`cp` treats ``mask=``: exact row-wise weighted ALS, or EM imputation."""


def cp(X: Any, rank: int, *, mask: Any = None, init: str | CPTensor = "svd",
       n_iter_max: int = 100, tol: float = 1e-8, l2_reg: float = 0.0, nonneg: bool = False,
       line_search: bool = False, missing: str = "als", generator: Any = None) -> CPResult:
    """CP decomposition by alternating least squares (CP-ALS).

    Parameters
    ----------
    X : array or tensor of shape (I_1, ..., I_K), K >= 2
        Dense tensor; numpy in gives numpy parts out, torch keeps dtype and device. NaN is
        allowed only where ``mask`` is False.
    rank : int >= 1
        Number of components R.
    mask : bool array of X's shape, optional
        True (or 1) where ``X`` is observed. The fit then uses the observed entries only.
    init : {"svd", "random"} or CPTensor, default "svd"
        "svd": leading left singular vectors of each unfolding (missing entries filled with
        the observed mean); "random": Gaussian factors (uniform with ``nonneg``) scaled to
        the data, drawn from ``generator``; a CPTensor of matching shape and rank.
    n_iter_max : int, default 100
        Maximum number of ALS sweeps.
    tol : float, default 1e-8
        Stop when the fit ``1 - ||X - M|| / ||X||`` changes by less than ``tol``
        (0: run ``n_iter_max`` sweeps).
    l2_reg : float, default 0
        Ridge penalty ``l2_reg ||A_n||^2`` on each factor as it is updated (the weights are
        absorbed into that factor).
    nonneg : bool, default False
        Non-negative factors by HALS (exact coordinate descent per column).
    line_search : bool, default False
        Extrapolate the factors along the last step by ``iteration^(1/3)`` and keep the
        extrapolation when it lowers the error (Bro 1998). Unmasked fits only.
    missing : {"als", "em"}, default "als"
        With ``mask``: "als" solves each factor row's least-squares problem over its
        observed entries (exact, O(nnz R^2) per sweep); "em" imputes the missing entries
        with the current model before each dense sweep (Tomasi & Bro 2005).
    generator : int, torch.Generator, numpy Generator or None
        Randomness of the random initialization (and of padding columns when ``rank``
        exceeds a dimension).

    Returns
    -------
    CPResult
        ``cp`` (a :class:`CPTensor`, arranged: unit-norm factors, decreasing weights, fixed
        signs), ``history`` (fit after each sweep; never decreases for plain ALS), ``n_iter``
        and ``converged``.

    Examples
    --------
    >>> import numpy as np
    >>> from rankfold.tensor import CPTensor, cp
    >>> rng = np.random.default_rng(0)
    >>> X = CPTensor(None, [rng.standard_normal((n, 3)) for n in (10, 11, 12)]).to_tensor()
    >>> res = cp(X, 3, generator=0)
    >>> res.history[-1] > 0.999
    True
    """
    func = "cp"
    t, info = as_dense_tensor(X, func, finite=False)
    R = check_int(rank, "rank", func, low=1)
    m = check_mask(mask, t, func)
    init = _check_init_cp(init, t.shape, R, func, ["svd", "random"])  # type: ignore[arg-type]
    n_iter_max = check_int(n_iter_max, "n_iter_max", func, low=1)
    tol = check_float(tol, "tol", func, low=0.0)
    l2_reg = check_float(l2_reg, "l2_reg", func, low=0.0)
    nonneg = check_bool(nonneg, "nonneg", func)
    line_search = check_bool(line_search, "line_search", func)
    missing = check_option(missing, "missing", func, MISSING_METHODS)
    gen = check_generator(generator, t.device, func=func)
    if tol > 0:  # changes below the dtype's resolution are noise
        tol = max(tol, 4 * torch.finfo(t.dtype).eps)

    opts = dict(n_iter_max=n_iter_max, tol=tol, l2_reg=l2_reg, nonneg=nonneg,
                line_search=line_search)
    masked = m is not None and not bool(m.all())
    work = t.numel() * R * t.ndim * (R if masked and missing == "als" else 2)
    with small_work_serial(work, t.device):
        Xf = fill_missing(t, m)
        if isinstance(init, CPTensor):
            n = init.to(dtype=t.dtype, device=t.device).normalize()
            w, fs = n._w.clone(), [f.clone() for f in n._f]
        elif init == "svd":
            w, fs = _svd_init(Xf, R, gen, nonneg)  # type: ignore[arg-type]
        else:
            w, fs = _random_cp(t.shape, R, Xf.reshape(-1), gen, nonneg)  # type: ignore[arg-type]
        st = _State(w, fs)
        if not masked:
            hist, it, conv = _dense_als(t, st, **opts)  # type: ignore[arg-type]
        else:
            hist, it, conv = MISSING_METHODS[missing](t, m, st, **opts)  # type: ignore[arg-type]
    if tol > 0 and not conv:
        warnings.warn(f"cp stopped after n_iter_max={n_iter_max} sweeps before the fit "
                      f"changed by less than tol={tol}.", ConvergenceWarning, stacklevel=2)
    out = CPTensor._from_torch(st.w, st.f, info.returns_numpy).arrange()
    return CPResult(out, hist, it, conv)
