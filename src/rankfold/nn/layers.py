"""Factorized layers: a dense layer replaced by two thinner ones.

``LowRankLinear``   x -> first (n -> r) -> second (r -> m, original bias)
``LowRankConv2d``   k x k convolution to r channels, then a 1 x 1 convolution
``LowRankEmbedding`` lookup of r-dimensional codes, then Linear(r -> d) (output-feature
                    PCA form: E ~ codes @ proj.T + mean)

Each is built from its dense module (:meth:`from_dense`, plain truncated SVD, or from
explicit factors with :meth:`from_factors`) and turned back into a dense module with
:meth:`to_dense`. The weight of the dense layer is seen as an ``m x n`` matrix
``W`` (out x in, the ``nn.Linear`` layout; transformers' ``Conv1D`` stores the transpose;
a convolution is reshaped to ``out x (in * kh * kw)``), and factors are ``A`` (m x r) and
``B`` (r x n) with ``W ~ A @ B``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._errors import InvalidParameterError, ShapeError
from .._validation import check_int

__all__ = [
    "LowRankLinear",
    "LowRankConv2d",
    "LowRankEmbedding",
    "is_conv1d",
    "dense_matrix",
    "svd_factors",
    "factorized_params",
    "dense_params",
]


def is_conv1d(module: nn.Module) -> bool:
    """True for transformers' ``Conv1D`` (GPT-2): ``y = x @ weight + bias``, weight (in, out)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(
        module, "weight") and module.weight.dim() == 2


def dense_matrix(module: nn.Module) -> torch.Tensor:
    """The weight of ``module`` as an ``out x in`` matrix (a view where possible)."""
    if isinstance(module, nn.Linear):
        return module.weight
    if is_conv1d(module):
        return module.weight.t()
    if isinstance(module, nn.Conv2d):
        return module.weight.reshape(module.out_channels, -1)
    if isinstance(module, nn.Embedding):
        return module.weight  # rows are tokens: V x d, factorized as E ~ codes @ proj.T
    raise InvalidParameterError(
        f"Cannot factorize a {type(module).__name__}: rankfold.nn handles nn.Linear, "
        "transformers' Conv1D, nn.Conv2d (groups=1) and nn.Embedding."
    )


def dense_params(module: nn.Module) -> int:
    """Number of parameters of a dense layer (weight and bias)."""
    return sum(p.numel() for p in module.parameters(recurse=False))


def factorized_params(module: nn.Module, rank: int) -> int:
    """Parameters of the factorized replacement of ``module`` at ``rank``."""
    W = dense_matrix(module)
    m, n = W.shape
    bias = getattr(module, "bias", None)
    if isinstance(module, nn.Embedding):
        return rank * (m + n) + n  # codes, projection, mean
    return rank * (m + n) + (bias.numel() if bias is not None else 0)


def svd_factors(W: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced factors of the truncated SVD: ``A = U_r sqrt(S_r)``, ``B = sqrt(S_r) Vh_r``."""
    U, S, Vh = torch.linalg.svd(W.detach().to(torch.float64), full_matrices=False)
    s = S[:rank].sqrt()
    return (U[:, :rank] * s).to(W.dtype), (s[:, None] * Vh[:rank]).to(W.dtype)


def _check_factors(A: torch.Tensor, B: torch.Tensor, m: int, n: int, func: str) -> int:
    if A.dim() != 2 or B.dim() != 2 or A.shape[0] != m or B.shape[1] != n or (
            A.shape[1] != B.shape[0]):
        raise ShapeError(
            f"The factors given to {func} must have shapes (m, r) and (r, n) with "
            f"(m, n)=({m}, {n}). Got {tuple(A.shape)} and {tuple(B.shape)} instead."
        )
    return int(A.shape[1])


class LowRankLinear(nn.Module):
    """``y = second(first(x))``: ``Linear(n -> r, bias optional)`` then ``Linear(r -> m)``.

    Parameters
    ----------
    in_features, out_features : int
        ``n`` and ``m`` of the dense layer it replaces.
    rank : int
        Inner dimension ``r``.
    bias : bool, default True
        Whether the second factor has a bias (the dense layer's bias).
    first_bias : bool, default False
        Whether the first factor has a bias (used by the output-PCA method "afm").

    Examples
    --------
    >>> import torch
    >>> dense = torch.nn.Linear(64, 32)
    >>> low = LowRankLinear.from_dense(dense, rank=32)   # full rank: exact
    >>> x = torch.randn(5, 64)
    >>> bool(torch.allclose(low(x), dense(x), atol=1e-5))
    True
    """

    def __init__(self, in_features: int, out_features: int, rank: int, *, bias: bool = True,
                 first_bias: bool = False, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        kw = {"device": device, "dtype": dtype}
        self.first = nn.Linear(in_features, rank, bias=first_bias, **kw)
        self.second = nn.Linear(rank, out_features, bias=bias, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    @classmethod
    def from_factors(cls, A: torch.Tensor, B: torch.Tensor, bias: torch.Tensor | None = None,
                     first_bias: torch.Tensor | None = None) -> LowRankLinear:
        """Build from ``A`` (m x r), ``B`` (r x n) and optional biases (m,) and (r,)."""
        m, n = A.shape[0], B.shape[1]
        r = _check_factors(A, B, m, n, "LowRankLinear.from_factors")
        layer = cls(n, m, r, bias=bias is not None, first_bias=first_bias is not None,
                    device=A.device, dtype=A.dtype)
        with torch.no_grad():
            layer.first.weight.copy_(B)
            layer.second.weight.copy_(A)
            if bias is not None:
                layer.second.bias.copy_(bias)
            if first_bias is not None:
                layer.first.bias.copy_(first_bias)
        return layer

    @classmethod
    def from_dense(cls, module: nn.Module, rank: int) -> LowRankLinear:
        """Truncated SVD of an ``nn.Linear`` or transformers ``Conv1D`` at ``rank``."""
        if not (isinstance(module, nn.Linear) or is_conv1d(module)):
            raise InvalidParameterError(
                "The 'module' parameter of LowRankLinear.from_dense must be an nn.Linear "
                f"or transformers Conv1D. Got {type(module).__name__} instead.")
        W = dense_matrix(module)
        check_int(rank, "rank", "LowRankLinear.from_dense", low=1, high=min(W.shape),
                  high_name="min(m, n)")
        A, B = svd_factors(W, rank)
        return cls.from_factors(A, B, None if module.bias is None else module.bias.detach())

    def to_dense(self) -> nn.Linear:
        """The equivalent ``nn.Linear`` (weight ``A @ B``, bias ``A b1 + b2``)."""
        A, B = self.second.weight, self.first.weight
        has_bias = self.second.bias is not None or self.first.bias is not None
        out = nn.Linear(self.in_features, self.out_features, bias=has_bias,
                        device=A.device, dtype=A.dtype)
        with torch.no_grad():
            out.weight.copy_(A @ B)
            if has_bias:
                b = torch.zeros(self.out_features, device=A.device, dtype=A.dtype)
                if self.first.bias is not None:
                    b = b + A @ self.first.bias
                if self.second.bias is not None:
                    b = b + self.second.bias
                out.bias.copy_(b)
        return out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"rank={self.rank}"


class LowRankConv2d(nn.Module):
    """A ``k x k`` convolution to ``r`` channels followed by a ``1 x 1`` convolution.

    Same stride, padding and dilation as the dense convolution (``groups=1`` only).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 rank: int, *, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                 padding_mode: str = "zeros", bias: bool = True, first_bias: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.rank = in_channels, out_channels, rank
        kw = {"device": device, "dtype": dtype}
        self.first = nn.Conv2d(in_channels, rank, kernel_size, stride=stride, padding=padding,
                               dilation=dilation, padding_mode=padding_mode,
                               bias=first_bias, **kw)
        self.second = nn.Conv2d(rank, out_channels, 1, bias=bias, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    @classmethod
    def from_factors(cls, conv: nn.Conv2d, A: torch.Tensor, B: torch.Tensor,
                     bias: torch.Tensor | None = None,
                     first_bias: torch.Tensor | None = None) -> LowRankConv2d:
        """Build from the dense ``conv`` (geometry) and factors of its reshaped weight."""
        if conv.groups != 1:
            raise InvalidParameterError(
                "LowRankConv2d needs a convolution with groups=1. "
                f"Got groups={conv.groups} instead.")
        m, n = conv.out_channels, conv.weight[0].numel()
        r = _check_factors(A, B, m, n, "LowRankConv2d.from_factors")
        layer = cls(conv.in_channels, m, conv.kernel_size, r, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation,
                    padding_mode=conv.padding_mode, bias=bias is not None,
                    first_bias=first_bias is not None, device=A.device, dtype=A.dtype)
        with torch.no_grad():
            layer.first.weight.copy_(B.reshape(r, *conv.weight.shape[1:]))
            layer.second.weight.copy_(A.reshape(m, r, 1, 1))
            if bias is not None:
                layer.second.bias.copy_(bias)
            if first_bias is not None:
                layer.first.bias.copy_(first_bias)
        return layer

    @classmethod
    def from_dense(cls, conv: nn.Conv2d, rank: int) -> LowRankConv2d:
        """Truncated SVD of the ``out x (in kh kw)`` weight matrix at ``rank``."""
        W = dense_matrix(conv)
        check_int(rank, "rank", "LowRankConv2d.from_dense", low=1, high=min(W.shape),
                  high_name="min(m, n)")
        A, B = svd_factors(W, rank)
        return cls.from_factors(conv, A, B, None if conv.bias is None else conv.bias.detach())

    def to_dense(self) -> nn.Conv2d:
        """The equivalent dense ``nn.Conv2d``."""
        f, s = self.first, self.second
        A = s.weight.reshape(self.out_channels, self.rank)
        has_bias = s.bias is not None or f.bias is not None
        out = nn.Conv2d(self.in_channels, self.out_channels, f.kernel_size, stride=f.stride,
                        padding=f.padding, dilation=f.dilation, padding_mode=f.padding_mode,
                        bias=has_bias, device=A.device, dtype=A.dtype)
        with torch.no_grad():
            out.weight.copy_((A @ f.weight.reshape(self.rank, -1)).reshape(out.weight.shape))
            if has_bias:
                b = torch.zeros(self.out_channels, device=A.device, dtype=A.dtype)
                if f.bias is not None:
                    b = b + A @ f.bias
                if s.bias is not None:
                    b = b + s.bias
                out.bias.copy_(b)
        return out

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, " \
               f"rank={self.rank}"


class LowRankEmbedding(nn.Module):
    """``E[i] ~ proj(codes[i])``: r-dimensional codes, then ``Linear(r -> d)`` with a bias.

    With ``codes = (E - mu) U_r`` and ``proj = Linear(U_r, bias=mu)`` this is PCA of the
    embedding rows (the output features), the form of the unified CTR compression
    framework. ``padding_idx`` and ``max_norm`` of the dense embedding are kept.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, rank: int, *,
                 padding_idx: int | None = None, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.rank = num_embeddings, embedding_dim, rank
        self.padding_idx = padding_idx
        kw = {"device": device, "dtype": dtype}
        self.codes = nn.Embedding(num_embeddings, rank, padding_idx=padding_idx, **kw)
        self.proj = nn.Linear(rank, embedding_dim, bias=True, **kw)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.proj(self.codes(idx))

    @classmethod
    def from_factors(cls, emb: nn.Embedding, A: torch.Tensor, B: torch.Tensor,
                     mean: torch.Tensor | None = None) -> LowRankEmbedding:
        """``E ~ A @ B + mean``: ``A`` (V x r) are the codes, ``B`` (r x d) the projection."""
        V, d = emb.weight.shape
        r = _check_factors(A, B, V, d, "LowRankEmbedding.from_factors")
        layer = cls(V, d, r, padding_idx=emb.padding_idx, device=A.device, dtype=A.dtype)
        with torch.no_grad():
            layer.codes.weight.copy_(A)
            layer.proj.weight.copy_(B.t())
            layer.proj.bias.copy_(mean if mean is not None else torch.zeros_like(B[0]))
        return layer

    @classmethod
    def from_dense(cls, emb: nn.Embedding, rank: int) -> LowRankEmbedding:
        """PCA of the embedding rows at ``rank`` (centred truncated SVD)."""
        E = emb.weight.detach()
        check_int(rank, "rank", "LowRankEmbedding.from_dense", low=1, high=min(E.shape),
                  high_name="min(V, d)")
        mu = E.to(torch.float64).mean(0)
        A, B = svd_factors((E.to(torch.float64) - mu), rank)
        return cls.from_factors(emb, A.to(E.dtype), B.to(E.dtype), mu.to(E.dtype))

    def to_dense(self) -> nn.Embedding:
        """The equivalent dense ``nn.Embedding``."""
        W = self.codes.weight @ self.proj.weight.t() + self.proj.bias
        out = nn.Embedding(self.num_embeddings, self.embedding_dim,
                           padding_idx=self.padding_idx, device=W.device, dtype=W.dtype)
        with torch.no_grad():
            out.weight.copy_(W)
        return out

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, rank={self.rank}"
