"""Small synthetic problems shared by the completion tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def incoherent_problem(m: int, n: int, k: int, p: float, seed: int,
                       dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """A rank-k matrix with Gaussian (incoherent) factors and its observed version."""
    rng = np.random.default_rng(seed)
    M = (rng.standard_normal((m, k)) @ rng.standard_normal((k, n))).astype(dtype)
    mask = rng.random((m, n)) < p
    # every row and column needs at least k observations to be identifiable
    for i in range(m):
        if mask[i].sum() < k + 1:
            mask[i, rng.choice(n, k + 1, replace=False)] = True
    for j in range(n):
        if mask[:, j].sum() < k + 1:
            mask[rng.choice(m, k + 1, replace=False), j] = True
    return M, np.where(mask, M, np.nan).astype(dtype)


def ratings_frame(n_users: int = 60, n_items: int = 40, k: int = 3, p: float = 0.4,
                  seed: int = 0, noise: float = 0.1) -> pd.DataFrame:
    """A small ratings table with string item ids, biases and noise."""
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((n_users, k)) * 0.5
    V = rng.standard_normal((n_items, k)) * 0.5
    bu = rng.standard_normal(n_users) * 0.3
    bi = rng.standard_normal(n_items) * 0.3
    r, c = np.nonzero(rng.random((n_users, n_items)) < p)
    vals = 3.0 + bu[r] + bi[c] + (U[r] * V[c]).sum(1) + noise * rng.standard_normal(r.size)
    return pd.DataFrame({"user": r + 100, "item": [f"i{j}" for j in c], "rating": vals})


@pytest.fixture
def frame() -> pd.DataFrame:
    return ratings_frame()
