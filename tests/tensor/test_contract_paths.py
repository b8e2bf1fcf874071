"""The numpy-backed contraction paths (unfolding Grams, HOOI subspaces, sketch start)."""

import importlib

import numpy as np
import pytest
import torch

from rankfold.tensor import tucker
from rankfold.tensor._unfold import matmul, sq_norm, unfold, unfolding_gram

tm = importlib.import_module("rankfold.tensor.tucker")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(5, 6, 7), (3, 4, 5, 6), (6, 7)])
def test_unfolding_gram_and_norm_match_unfold(shape, dtype):
    X = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for k in range(len(shape)):
        Xk = unfold(X, k)
        G = unfolding_gram(X, k)
        assert G.dtype == dtype
        torch.testing.assert_close(G, Xk @ Xk.T, rtol=tol, atol=tol)
    assert sq_norm(X) == pytest.approx(float((X.double() ** 2).sum()), rel=1e-6)


def test_matmul_autograd_falls_back_to_torch():
    a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 2, dtype=torch.float64)
    out = matmul(a, b)
    out.sum().backward()
    torch.testing.assert_close(a.grad, b.sum(1).expand(3, 4))


@pytest.mark.parametrize("shape", [(40, 12), (12, 40)])
def test_leading_subspace_is_orthonormal_svd_subspace(shape):
    rng = np.random.default_rng(1)
    Y = torch.from_numpy(rng.standard_normal(shape) * np.linspace(3, 0.1, shape[1]))
    U = tm._leading_subspace(Y, 4)
    Us = torch.linalg.svd(Y, full_matrices=False)[0][:, :4]
    torch.testing.assert_close(U.T @ U, torch.eye(4, dtype=Y.dtype), atol=1e-12, rtol=0)
    # same subspace: projector difference ~ 0
    torch.testing.assert_close(U @ U.T, Us @ Us.T, atol=1e-9, rtol=0)
    torch.testing.assert_close(U.abs(), Us.abs(), atol=1e-9, rtol=0)


def test_hooi_sketch_start_reaches_sthosvd_start_fit():
    rng = np.random.default_rng(3)
    core = rng.standard_normal((3, 4, 5))
    fs = [np.linalg.qr(rng.standard_normal((n, r)))[0]
          for n, r in zip((30, 31, 32), (3, 4, 5), strict=True)]
    X = np.einsum("abc,ia,jb,kc->ijk", core, *fs)
    X = X + 0.01 * rng.standard_normal(X.shape) * np.linalg.norm(X) / np.sqrt(X.size)
    a = tucker(X, (3, 4, 5), method="hooi", init="randomized", n_iter_max=10, conv_tol=0.0,
               generator=0)
    b = tucker(X, (3, 4, 5), method="hooi", init="sthosvd", n_iter_max=10, conv_tol=0.0)
    assert a.history[-1] == pytest.approx(b.history[-1], abs=1e-9)
    best = 1 - np.linalg.norm(X - np.einsum("abc,ia,jb,kc->ijk", core, *fs)) / np.linalg.norm(X)
    assert a.history[-1] >= best - 1e-9
    f = tm._sketch_factors(torch.from_numpy(X), (3, 4, 5), torch.Generator().manual_seed(0))
    for U, r in zip(f, (3, 4, 5), strict=True):
        torch.testing.assert_close(U.T @ U, torch.eye(r, dtype=U.dtype), atol=1e-10, rtol=0)
