"""Per-layer factorization methods (registry ``METHODS``: name -> function).

Every method takes a :class:`LayerContext` (the layer's ``m x n`` weight in float64, its
bias, calibration statistics, Fisher rows) and returns a :class:`Decomposition`: a
``spectrum`` (decreasing; what rank allocation looks at) and ``factors(rank)``, the
factors ``A`` (m x r), ``B`` (r x n) and biases at any rank from one SVD.

================  ==============================================================  =====
name              objective                                                       data
================  ==============================================================  =====
``svd``           ``min ||W - AB||_F`` (Eckart-Young)                             none
``fwsvd``         ``min ||D (W - AB)||_F``, D = sqrt(Fisher row sums) [1]_        loss
``asvd``          ``min ||(W - AB) S||_F``, S = diag(mean |x_j|)^alpha [2]_       fwd
``whiten``        ``min ||(W - AB) X||_F`` exactly, G = X X^T = L L^T [3]_        fwd
``whiten_update`` whitening, then a closed-form least-squares refit of the        fwd
                  second factor and bias on inputs propagated through the already
                  compressed layers (reduced-rank regression) [3]_, [4]_
``afm``           PCA of the layer's outputs, y ~ U U^T (y - mu) + mu [5]_, [6]_  fwd
``nystrom``       keep the k input channels of largest ridge leverage of the      fwd
                  activation correlation C; second factor W C_:K C_KK^-1 [7]_
================  ==============================================================  =====

References
----------
.. [1] Hsu et al., "Language model compression with weighted low-rank factorization",
   ICLR 2022 (FWSVD).
.. [2] Yuan et al., "ASVD: Activation-aware singular value decomposition for compressing
   large language models", 2023.
.. [3] Wang et al., "SVD-LLM: Truncation-aware singular value decomposition for large
   language model compression", ICLR 2025 (Alg. 1: whitening by Cholesky of X X^T).
.. [4] Izenman, "Reduced-rank regression for the multivariate linear model", J.
   Multivariate Anal. 1975 (the closed form used by the update).
.. [5] Kaushal et al., "LORD: Low rank decomposition of monolingual code LLMs for one-shot
   compression", 2023.
.. [6] Yu et al., "Unified low-rank compression framework for click-through rate
   prediction", KDD 2024 (AFM: PCA of output features).
.. [7] Lin et al., "MoDeGPT: Modular decomposition for large language model compression",
   ICLR 2025 (Nystrom approximation of the MLP by ridge-leverage channel selection).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from .._errors import ConvergenceError, InvalidParameterError
from .calibration import LayerStats

__all__ = [
    "METHODS",
    "NEEDS",
    "Factors",
    "LayerContext",
    "Decomposition",
    "get_method",
    "refit_update",
    "refit_projected",
    "output_error",
]


class Factors(NamedTuple):
    """``W x + b ~ A (B x + first_bias) + bias``; float64 tensors."""

    A: torch.Tensor
    B: torch.Tensor
    bias: torch.Tensor | None
    first_bias: torch.Tensor | None = None


@dataclass
class LayerContext:
    """What a method sees of one layer (all tensors float64, on the layer's device)."""

    name: str
    kind: str  # "linear" | "conv2d" | "embedding"
    W: torch.Tensor  # (m, n); for an embedding (V, d)
    bias: torch.Tensor | None
    stats: LayerStats | None = None
    fisher: torch.Tensor | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Decomposition:
    """One SVD-like decomposition that yields factors at any rank."""

    spectrum: torch.Tensor
    make: Callable[[int], Factors]
    method: str

    def factors(self, rank: int) -> Factors:
        f = self.make(rank)
        for t in f:
            if t is not None and not bool(torch.isfinite(t).all()):
                raise ConvergenceError(
                    f"The '{self.method}' factors at rank {rank} hold NaN or infinity "
                    "(ill-conditioned calibration statistics?); try method='svd' or more "
                    "calibration data.")
        return f


def _svd(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    if not bool(torch.isfinite(S).all()):
        raise ConvergenceError("SVD of a layer produced NaN or infinity.")
    return U, S, Vh


def _need_stats(ctx: LayerContext, method: str) -> LayerStats:
    if ctx.stats is None or (ctx.kind != "embedding" and ctx.stats.gram is None):
        raise InvalidParameterError(
            f"Method '{method}' needs calibration data for layer '{ctx.name}'. "
            "Pass calibration=... to compress.")
    return ctx.stats


def _split(U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor, r: int
           ) -> tuple[torch.Tensor, torch.Tensor]:
    s = S[:r].sqrt()
    return U[:, :r] * s, s[:, None] * Vh[:r]


# ---------------------------------------------------------------- embeddings (PCA form)

def _embedding(ctx: LayerContext, weighted: bool) -> Decomposition:
    E = ctx.W
    if weighted and ctx.stats is not None and ctx.stats.freq is not None:
        w = ctx.stats.freq + 1e-3 * ctx.stats.freq.mean().clamp_min(1e-12)
    else:
        w = torch.ones(E.shape[0], dtype=E.dtype, device=E.device)
    w = w / w.sum()
    mu = w @ E
    r = w.sqrt()
    U, S, Vh = _svd(r[:, None] * (E - mu))

    def make(k: int) -> Factors:
        A = (E - mu) @ Vh[:k].t()  # codes: least-squares projection of every row
        return Factors(A, Vh[:k], mu)

    return Decomposition(S, make, "pca")


# ---------------------------------------------------------------- methods

def svd_method(ctx: LayerContext) -> Decomposition:
    """Truncated SVD of the weight (Eckart-Young): no data needed."""
    if ctx.kind == "embedding":
        return _embedding(ctx, weighted=False)
    U, S, Vh = _svd(ctx.W)
    return Decomposition(S, lambda r: Factors(*_split(U, S, Vh, r), ctx.bias), "svd")


def _weighted(ctx: LayerContext, rows: torch.Tensor | None, cols: torch.Tensor | None,
              name: str) -> Decomposition:
    """Closed-form row/column-weighted SVD; factors from rankfold.linalg.weighted_svd."""
    W = ctx.W
    r = torch.ones(W.shape[0], dtype=W.dtype, device=W.device) if rows is None else rows
    c = torch.ones(W.shape[1], dtype=W.dtype, device=W.device) if cols is None else cols
    S = torch.linalg.svdvals(r[:, None] * W * c)

    def make(k: int) -> Factors:
        from ..linalg.weighted import weighted_svd

        res = weighted_svd(W, k, row_weights=rows, col_weights=cols)
        A, B = _split(res.U, res.S, res.Vh, k)
        return Factors(A, B, ctx.bias)

    return Decomposition(S, make, name)


def fwsvd_method(ctx: LayerContext) -> Decomposition:
    """Fisher-weighted SVD: rows weighted by sqrt of the summed squared loss gradients."""
    if ctx.fisher is None:
        raise InvalidParameterError(
            f"Method 'fwsvd' needs a loss for layer '{ctx.name}': pass loss_fn=... "
            "(or batches whose model output carries .loss) and calibration=...")
    if ctx.kind == "embedding":
        return _embedding(ctx, weighted=True)
    f = ctx.fisher.sqrt()
    f = f + 1e-6 * f.mean().clamp_min(1e-30)  # keep rows without gradient representable
    return _weighted(ctx, f, None, "fwsvd")


def asvd_method(ctx: LayerContext) -> Decomposition:
    """Activation-aware SVD: columns scaled by (mean |x_j|)^alpha (alpha = 0.5)."""
    st = _need_stats(ctx, "asvd")
    if ctx.kind == "embedding":
        return _embedding(ctx, weighted=True)
    alpha = float(ctx.options.get("alpha", 0.5))
    s = (st.abs_total / max(st.count, 1)) ** alpha
    s = s.clamp_min(1e-6 * s.max().clamp_min(1e-30))
    return _weighted(ctx, None, s, "asvd")


def _cholesky(G: torch.Tensor, ridge: float) -> torch.Tensor:
    scale = G.diagonal().mean().clamp_min(1e-30)
    eye = torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    for eps in (ridge, ridge * 100, ridge * 1e4, 1e-2):
        L, info = torch.linalg.cholesky_ex(G + eps * scale * eye)
        if int(info) == 0:
            return L
    raise ConvergenceError("The calibration Gram matrix is not positive definite even with "
                           "a ridge of 1e-2 of its mean diagonal.")


def whiten_method(ctx: LayerContext) -> Decomposition:
    """SVD-LLM truncation-aware whitening: SVD of W L with G = L L^T (Cholesky)."""
    st = _need_stats(ctx, "whiten")
    if ctx.kind == "embedding":
        return _embedding(ctx, weighted=True)
    L = _cholesky(st.second_moment, float(ctx.options.get("ridge", 1e-6)))
    U, S, Vh = _svd(ctx.W @ L)

    def make(r: int) -> Factors:
        A, Bw = _split(U, S, Vh, r)
        # B = Bw L^{-1}: solve L^T B^T = Bw^T
        B = torch.linalg.solve_triangular(L.t(), Bw.t(), upper=True).t()
        return Factors(A, B, ctx.bias)

    return Decomposition(S, make, "whiten")


def whiten_update_method(ctx: LayerContext) -> Decomposition:
    """Whitening; :func:`refit_update` then refits on propagated inputs (see compress)."""
    dec = whiten_method(ctx)
    dec.method = "whiten_update"
    return dec


def refit_update(W: torch.Tensor, bias: torch.Tensor | None, B: torch.Tensor, *,
                 mean_dense: torch.Tensor, mean_comp: torch.Tensor, cross: torch.Tensor,
                 gram_comp: torch.Tensor, ridge: float = 1e-6) -> Factors:
    """Closed-form least-squares update of the second factor and the bias, ``B`` fixed.

    Minimises ``E ||W x_d + b - (A B x_c + c)||^2`` over ``A`` (m x r) and ``c`` (m,),
    where ``x_d`` are the layer's inputs in the dense model and ``x_c`` in the partially
    compressed one. With ``z = B x_c`` this is ordinary least squares in ``r``
    features: ``A = Cov(y, z) Cov(z)^-1`` with ``Cov(y, z) = W C_dc B^T`` and
    ``Cov(z) = B C_cc B^T``, and ``c = W mu_d + b - A B mu_c``. Only an r x r system is
    solved, so a few thousand calibration tokens suffice even for wide layers.

    Parameters
    ----------
    W : (m, n) dense weight; bias : (m,) or None; B : (r, n) first factor
    mean_dense, mean_comp : (n,) means of the dense and the compressed-model inputs
    cross : (n, n) ``E[x_d x_c^T]``; gram_comp : (n, n) ``E[x_c x_c^T]``
    """
    Ccc = gram_comp - torch.outer(mean_comp, mean_comp)
    Cdc = cross - torch.outer(mean_dense, mean_comp)
    return refit_projected(bias, B, mean_out=W @ mean_dense, mean_z=B @ mean_comp,
                           cov_out_z=W @ (Cdc @ B.t()), cov_z=B @ Ccc @ B.t(), ridge=ridge)


def refit_projected(bias: torch.Tensor | None, B: torch.Tensor, *, mean_out: torch.Tensor,
                    mean_z: torch.Tensor, cov_out_z: torch.Tensor, cov_z: torch.Tensor,
                    ridge: float = 1e-6) -> Factors:
    """:func:`refit_update` from the projected moments (what the sequential refit stores).

    With ``y = W x_d`` (the dense layer's output without bias) and ``z = B x_c``:
    ``A = Cov(y, z) Cov(z)^-1`` and ``c = E[y] + b - A E[z]``. Storing ``Cov(y, z)``
    (m x r) and ``Cov(z)`` (r x r) instead of the n x n input moments costs ``r (n + m)``
    multiply-adds per token instead of ``n^2``.

    Parameters
    ----------
    bias : (m,) or None; B : (r, n) first factor
    mean_out : (m,) ``E[y]``; mean_z : (r,) ``E[z]``
    cov_out_z : (m, r) ``Cov(y, z)``; cov_z : (r, r) ``Cov(z)``
    """
    L = _cholesky((cov_z + cov_z.t()) / 2, ridge)
    A = torch.cholesky_solve(cov_out_z.t(), L).t()
    c = mean_out - A @ mean_z
    if bias is not None:
        c = c + bias
    return Factors(A, B, c)


def afm_method(ctx: LayerContext) -> Decomposition:
    """PCA of the layer's outputs (AFM / LoRD): y ~ U_k U_k^T (y - mu_y) + mu_y."""
    st = _need_stats(ctx, "afm")
    if ctx.kind == "embedding":
        return _embedding(ctx, weighted=True)
    W = ctx.W
    mu_x = st.mean
    cov_x = st.second_moment - torch.outer(mu_x, mu_x)
    cov_y = W @ cov_x @ W.t()
    evals, evecs = torch.linalg.eigh((cov_y + cov_y.t()) / 2)
    order = torch.argsort(evals, descending=True)
    evals, evecs = evals[order].clamp_min(0), evecs[:, order]
    b = ctx.bias if ctx.bias is not None else torch.zeros_like(W[:, 0])
    mu_y = W @ mu_x + b

    def make(k: int) -> Factors:
        Uk = evecs[:, :k]
        B = Uk.t() @ W
        c = Uk @ (Uk.t() @ b) + mu_y - Uk @ (Uk.t() @ mu_y)
        return Factors(Uk, B, c)

    return Decomposition(evals.sqrt(), make, "afm")


def nystrom_method(ctx: LayerContext) -> Decomposition:
    """Nystrom column selection (MoDeGPT, MLP form) applied to one layer's inputs.

    Input channels are ranked by ridge leverage ``diag(C (C + lambda I)^-1)`` of the
    activation correlation ``C = E[x x^T]`` (lambda = 1e-2 of its mean diagonal); the
    first factor keeps the top-k channels, the second is ``W C_:K C_KK^-1``, the
    least-squares map from the kept channels to the layer's output.
    """
    st = _need_stats(ctx, "nystrom")
    if ctx.kind == "embedding":
        return _embedding(ctx, weighted=True)
    C = st.second_moment
    n = C.shape[0]
    lam = float(ctx.options.get("ridge_lambda", 1e-2)) * C.diagonal().mean().clamp_min(1e-30)
    eye = torch.eye(n, dtype=C.dtype, device=C.device)
    lev = torch.linalg.solve(C + lam * eye, C).diagonal()
    order = torch.argsort(lev, descending=True)
    W = ctx.W

    def make(k: int) -> Factors:
        K = order[:k]
        Ckk = C[K][:, K]
        A = (W @ C[:, K]) @ torch.linalg.pinv(Ckk, hermitian=True, rtol=1e-13)
        B = torch.zeros(k, n, dtype=W.dtype, device=W.device)
        B[torch.arange(k, device=W.device), K] = 1.0
        return Factors(A, B, ctx.bias)

    return Decomposition(lev[order].clamp_min(0), make, "nystrom")


METHODS: dict[str, Callable[[LayerContext], Decomposition]] = {
    "svd": svd_method,
    "fwsvd": fwsvd_method,
    "asvd": asvd_method,
    "whiten": whiten_method,
    "whiten_update": whiten_update_method,
    "afm": afm_method,
    "nystrom": nystrom_method,
}

#: what each method needs: "stats" (forward statistics), "fisher" (loss gradients)
NEEDS: dict[str, frozenset[str]] = {
    "svd": frozenset(),
    "fwsvd": frozenset({"fisher"}),
    "asvd": frozenset({"stats"}),
    "whiten": frozenset({"stats"}),
    "whiten_update": frozenset({"stats"}),
    "afm": frozenset({"stats"}),
    "nystrom": frozenset({"stats"}),
}


def get_method(name: str, func: str = "compress") -> Callable[[LayerContext], Decomposition]:
    """The registered method ``name`` (the error lists the valid names)."""
    from .._validation import check_option

    check_option(name, "method", func, METHODS)
    return METHODS[name]


def output_error(ctx: LayerContext, f: Factors) -> float:
    """Relative output error ``sqrt(E||y - y'||^2 / E||y||^2)`` on the calibration inputs.

    Uses the layer's input moments when available (exact on the calibration data), else
    the relative Frobenius error of the weight.
    """
    W = ctx.W
    approx = f.A @ f.B
    b = ctx.bias if ctx.bias is not None else torch.zeros_like(W[:, 0])
    b2 = f.bias if f.bias is not None else torch.zeros_like(W[:, 0])
    if f.first_bias is not None:
        b2 = b2 + f.A @ f.first_bias
    st = ctx.stats
    if ctx.kind == "embedding":
        w = None if st is None or st.freq is None else st.freq / st.freq.sum().clamp_min(1)
        D = W - (approx + b2)
        num = (D ** 2).sum(1)
        den = (W ** 2).sum(1)
        if w is not None:
            num, den = w @ num, w @ den
        else:
            num, den = num.sum(), den.sum()
        return float((num / den.clamp_min(1e-300)).sqrt())
    D = W - approx
    db = b - b2
    if st is None or st.gram is None:
        return float(torch.linalg.norm(D) / torch.linalg.norm(W).clamp_min(1e-300))
    G, mu = st.second_moment, st.mean
    num = (D @ G * D).sum() + 2 * db @ (D @ mu) + db @ db
    den = (W @ G * W).sum() + 2 * b @ (W @ mu) + b @ b
    return float((num.clamp_min(0) / den.clamp_min(1e-300)).sqrt())
