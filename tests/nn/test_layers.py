"""Factorized layers: exact at full rank, round trip to dense, shape checks."""

from __future__ import annotations

import pytest
import torch
from _nn_models import gen, seeded
from torch import nn

from rankfold._errors import InvalidParameterError, ShapeError
from rankfold.nn import LowRankConv2d, LowRankEmbedding, LowRankLinear
from rankfold.nn.layers import dense_matrix, factorized_params


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_linear_full_rank_exact_and_to_dense(dtype: torch.dtype) -> None:
    dense = seeded(nn.Linear(20, 12, dtype=dtype))
    low = LowRankLinear.from_dense(dense, 12)
    x = torch.randn(7, 20, generator=gen(), dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert low.first.weight.dtype == dtype
    torch.testing.assert_close(low(x), dense(x), atol=tol, rtol=tol)
    back = low.to_dense()
    assert isinstance(back, nn.Linear)
    torch.testing.assert_close(back(x), dense(x), atol=tol, rtol=tol)


def test_linear_truncated_is_best_rank_k() -> None:
    dense = seeded(nn.Linear(30, 16, dtype=torch.float64))
    low = LowRankLinear.from_dense(dense, 4)
    W = dense.weight.detach()
    s = torch.linalg.svdvals(W)
    err = torch.linalg.norm(W - (low.second.weight @ low.first.weight).detach())
    assert abs(float(err) - float(s[4:].norm())) < 1e-10
    assert factorized_params(dense, 4) == 4 * (30 + 16) + 16


def test_linear_first_bias_to_dense() -> None:
    g = gen(1)
    A, B = torch.randn(5, 3, generator=g), torch.randn(3, 4, generator=g)
    b, fb = torch.randn(5, generator=g), torch.randn(3, generator=g)
    low = LowRankLinear.from_factors(A, B, b, fb)
    x = torch.randn(6, 4, generator=g)
    torch.testing.assert_close(low.to_dense()(x), low(x), atol=1e-5, rtol=1e-5)


def test_conv1d_of_gpt2() -> None:
    from transformers.pytorch_utils import Conv1D

    conv = Conv1D(12, 20)  # nf=12 outputs, nx=20 inputs, weight (20, 12)
    seeded(conv)
    assert dense_matrix(conv).shape == (12, 20)
    low = LowRankLinear.from_dense(conv, 12)
    x = torch.randn(3, 5, 20, generator=gen())
    torch.testing.assert_close(low(x), conv(x), atol=1e-5, rtol=1e-5)


def test_conv2d_full_rank_exact() -> None:
    conv = seeded(nn.Conv2d(3, 8, 3, padding=1, stride=2))
    low = LowRankConv2d.from_dense(conv, 8)
    x = torch.randn(2, 3, 9, 9, generator=gen())
    torch.testing.assert_close(low(x), conv(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(low.to_dense()(x), conv(x), atol=1e-5, rtol=1e-5)


def test_conv2d_groups_rejected() -> None:
    conv = nn.Conv2d(4, 8, 3, groups=2)
    with pytest.raises(InvalidParameterError, match="groups=1"):
        LowRankConv2d.from_factors(conv, torch.zeros(8, 2), torch.zeros(2, 18))


def test_embedding_full_rank_exact() -> None:
    emb = seeded(nn.Embedding(30, 6, padding_idx=0))
    low = LowRankEmbedding.from_dense(emb, 6)
    idx = torch.tensor([[1, 2, 29], [0, 5, 7]])
    torch.testing.assert_close(low(idx), emb(idx), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(low.to_dense()(idx), emb(idx), atol=1e-5, rtol=1e-5)
    assert low.codes.padding_idx == 0


def test_rank_out_of_range_and_bad_factors() -> None:
    dense = nn.Linear(10, 6)
    with pytest.raises(InvalidParameterError, match=r"'rank' parameter.*\[1, min\(m, n\)=6\]"):
        LowRankLinear.from_dense(dense, 7)
    with pytest.raises(ShapeError, match=r"\(m, n\)=\(6, 10\)"):
        LowRankLinear.from_factors(torch.zeros(6, 2), torch.zeros(3, 10))
    with pytest.raises(InvalidParameterError, match="Conv2d"):
        LowRankLinear.from_dense(nn.Conv2d(2, 2, 1), 1)
