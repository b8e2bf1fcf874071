"""Planted low-rank tensors for the tensor tests."""

from __future__ import annotations

import numpy as np
import torch

from rankfold.tensor import CPTensor, TTTensor, TuckerTensor


def planted_cp(shape, rank, seed=0, dtype=torch.float64, nonneg=False) -> CPTensor:
    g = torch.Generator().manual_seed(seed)
    if nonneg:
        fs = [torch.rand(n, rank, generator=g, dtype=torch.float64) for n in shape]
    else:
        fs = [torch.linalg.qr(torch.randn(n, rank, generator=g, dtype=torch.float64))[0]
              + 0.3 * torch.randn(n, rank, generator=g, dtype=torch.float64) for n in shape]
    w = torch.linspace(2.0, 1.0, rank, dtype=torch.float64)
    return CPTensor(w, fs).to(dtype=dtype)


def planted_tucker(shape, ranks, seed=0, dtype=torch.float64) -> TuckerTensor:
    g = torch.Generator().manual_seed(seed)
    core = torch.randn(*ranks, generator=g, dtype=torch.float64)
    fs = [torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))[0]
          for n, r in zip(shape, ranks, strict=True)]
    return TuckerTensor(core, fs).to(dtype=dtype)


def planted_tt(shape, ranks, seed=0, dtype=torch.float64) -> TTTensor:
    g = torch.Generator().manual_seed(seed)
    rk = [1, *ranks, 1]
    cores = [torch.randn(rk[k], n, rk[k + 1], generator=g, dtype=torch.float64)
             for k, n in enumerate(shape)]
    return TTTensor(cores).to(dtype=dtype)


def rel(a, b) -> float:
    a = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).double()
    b = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b).double()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def random_indices(shape, n, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, n) for s in shape], axis=1)
