"""Shared fixtures: seeds swept by randomized tests, dtype tolerances, planted matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(max(1, torch.get_num_threads()))

SEEDS = [0, 1, 7]

# per-dtype tolerances for comparisons against float64 references
TOL = {torch.float32: 2e-4, torch.float64: 1e-10}


@pytest.fixture(params=SEEDS, ids=lambda s: f"seed{s}")
def seed(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


def planted_matrix(m: int, n: int, rank: int | None = None, *, decay: str = "fast",
                   seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A matrix with known singular values: exactly low rank, fast or slow decay."""
    g = torch.Generator().manual_seed(seed)
    k = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    i = torch.arange(k, dtype=torch.float64)
    if decay == "fast":
        s = 10.0 ** (-i / 4)
    elif decay == "slow":
        s = 1.0 / (1.0 + i) ** 0.5
    else:
        raise ValueError(decay)
    if rank is not None:
        s[rank:] = 0.0
    return ((U * s) @ V.T).to(dtype)


@pytest.fixture
def planted() -> object:
    return planted_matrix


def np_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)
