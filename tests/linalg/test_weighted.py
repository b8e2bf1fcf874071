"""weighted_svd: closed form vs brute force, monotone iterations, completion of a planted matrix."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from rankfold import ConvergenceWarning, InvalidParameterError, ShapeError
from rankfold.linalg import weighted_svd
from rankfold.linalg.weighted import WEIGHTED_METHODS

TOL = {torch.float32: 2e-4, torch.float64: 1e-10}


def _weights(n: int, seed: int, dtype: torch.dtype, low: float = 0.2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, generator=g, dtype=torch.float64) + low).to(dtype)


def _recon(res) -> torch.Tensor:
    return (res.U * res.S[..., None, :]) @ res.Vh


def _wobj(A, B, r, c) -> float:
    d = (A - B).to(torch.float64)
    return float(((r.to(torch.float64)[:, None] * d * c.to(torch.float64)[None, :]) ** 2).sum())


def test_rowcol_matches_closed_form_optimum(planted, seed, dtype):
    A = planted(40, 30, None, decay="slow", seed=seed, dtype=dtype)
    r, c = _weights(40, seed, dtype), _weights(30, seed + 100, dtype)
    k = 6
    res = weighted_svd(A, k, row_weights=r, col_weights=c)
    B = _recon(res)
    # the optimum is the tail energy of D_r A D_c (Eckart-Young after the substitution)
    s = torch.linalg.svdvals(r.double()[:, None] * A.double() * c.double()[None, :])
    opt = float((s[k:] ** 2).sum())
    assert abs(_wobj(A, B, r, c) - opt) <= TOL[dtype] * 50 * opt
    assert abs(res.info.objective[0] - opt) <= TOL[dtype] * 50 * opt
    assert res.info.method == "closed_form" and res.info.converged
    # returned factors form a genuine SVD of a rank-k matrix
    eye = torch.eye(k, dtype=dtype)
    torch.testing.assert_close(res.U.mT @ res.U, eye, atol=TOL[dtype] * 10, rtol=0)
    torch.testing.assert_close(res.Vh @ res.Vh.mT, eye, atol=TOL[dtype] * 10, rtol=0)
    assert (res.S[:-1] >= res.S[1:]).all()


def test_rowcol_beats_random_competitors(seed):
    """Brute force: no other rank-k matrix (random, or the plain SVD) does better."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(12, 9, generator=g, dtype=torch.float64)
    r, c = _weights(12, seed, torch.float64, 0.05), _weights(9, seed + 1, torch.float64, 0.05)
    k = 3
    best = _wobj(A, _recon(weighted_svd(A, k, row_weights=r, col_weights=c)), r, c)
    U, S, Vh = torch.linalg.svd(A)
    plain = (U[:, :k] * S[:k]) @ Vh[:k]
    assert best <= _wobj(A, plain, r, c) + 1e-12
    res = weighted_svd(A, k, row_weights=r, col_weights=c)
    for scale in (1.0, 1e-3):
        for _ in range(100):
            # rank-k competitors: random ones and small perturbations of the optimum's factors
            L = torch.randn(12, k, generator=g, dtype=torch.float64)
            M = torch.randn(k, 9, generator=g, dtype=torch.float64)
            B = L @ M if scale == 1.0 else (res.U * res.S + scale * L) @ (res.Vh + scale * M)
            assert best <= _wobj(A, B, r, c)


def test_uniform_weights_equal_plain_svd(planted, dtype):
    A = planted(25, 18, None, decay="fast", seed=1, dtype=dtype)
    k = 4
    res = weighted_svd(A, k, row_weights=torch.ones(25, dtype=dtype))
    U, S, Vh = torch.linalg.svd(A.double(), full_matrices=False)
    torch.testing.assert_close(res.S.double(), S[:k], rtol=TOL[dtype] * 10, atol=0)
    torch.testing.assert_close(_recon(res).double(), (U[:, :k] * S[:k]) @ Vh[:k],
                               atol=TOL[dtype] * 10, rtol=0)
    # a constant scale does not change the minimiser
    res2 = weighted_svd(A, k, row_weights=3 * torch.ones(25, dtype=dtype),
                        col_weights=torch.full((18,), 0.5, dtype=dtype))
    torch.testing.assert_close(_recon(res2), _recon(res), atol=TOL[dtype] * 10, rtol=0)


def test_randomized_backend_close_to_exact(planted, seed):
    A = planted(120, 80, None, decay="fast", seed=seed)
    r, c = _weights(120, seed, torch.float64), _weights(80, seed + 1, torch.float64)
    exact = weighted_svd(A, 8, row_weights=r, col_weights=c)
    rand = weighted_svd(A, 8, row_weights=r, col_weights=c, svd="randomized", generator=seed)
    opt = exact.info.objective[0]
    got = _wobj(A, _recon(rand), r, c)
    assert abs(rand.info.objective[0] - got) <= 1e-8 * got
    assert opt * (1 - 1e-10) <= got <= opt * (1 + 1e-3)


def test_zero_row_and_column_weights(seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(15, 12, generator=g, dtype=torch.float64)
    r, c = _weights(15, seed, torch.float64), _weights(12, seed + 1, torch.float64)
    r[[0, 4]] = 0.0
    c[3] = 0.0
    k = 3
    res = weighted_svd(A, k, row_weights=r, col_weights=c)
    B = _recon(res)
    pos_r, pos_c = r > 0, c > 0
    sub = r[pos_r][:, None] * A[pos_r][:, pos_c] * c[pos_c]
    opt = float((torch.linalg.svdvals(sub)[k:] ** 2).sum())
    assert abs(_wobj(A, B, r, c) - opt) <= 1e-9 * opt
    assert torch.linalg.matrix_rank(B) <= k
    # a zero-weight row is the least-squares fit of A's row onto the kept row space
    Vk = torch.linalg.svd(sub)[2][:k]  # rows span (weighted) kept row space
    M = Vk / c[pos_c]  # kept row space of B on the positive columns
    coef = torch.linalg.lstsq((M * c[pos_c]).T, (A[0, pos_c] * c[pos_c])[:, None]).solution
    torch.testing.assert_close(B[0, pos_c], (coef.T @ M)[0], atol=1e-9, rtol=0)


def test_rowcol_batched_numpy():
    g = np.random.default_rng(0)
    A = g.standard_normal((3, 10, 8))
    r = g.random((3, 10)) + 0.1
    res = weighted_svd(A, 2, row_weights=r)
    assert isinstance(res.U, np.ndarray) and res.U.shape == (3, 10, 2)
    for b in range(3):
        single = weighted_svd(A[b], 2, row_weights=r[b])
        np.testing.assert_allclose((res.U[b] * res.S[b]) @ res.Vh[b],
                                   (single.U * single.S) @ single.Vh, atol=1e-10)


@pytest.mark.parametrize("method", list(WEIGHTED_METHODS))
def test_elementwise_objective_monotone(method, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(30, 20, generator=g, dtype=torch.float64).to(dtype)
    W = (torch.rand(30, 20, generator=g, dtype=torch.float64) ** 2).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = weighted_svd(A, 4, weights=W, method=method, n_iter=40)
    h = np.array(res.info.objective)
    assert len(h) == res.info.n_iter + 1 and res.info.method == method
    slack = 1e-10 if dtype == torch.float64 else 1e-4
    assert (np.diff(h) <= slack * h[0]).all()
    assert h[-1] < h[0]
    # the reported objective is the objective of the returned factors
    B = _recon(res).double()
    final = float((W.double() * (A.double() - B) ** 2).sum())
    assert abs(final - h[-1]) <= (1e-8 if dtype == torch.float64 else 1e-3) * h[-1]


@pytest.mark.parametrize("method", list(WEIGHTED_METHODS))
def test_elementwise_rank_one_weights_reach_closed_form(method):
    """W = r^2 c^2 (outer) is the row/column problem: the iteration finds its optimum."""
    g = torch.Generator().manual_seed(5)
    A = torch.randn(20, 15, generator=g, dtype=torch.float64)
    r, c = _weights(20, 1, torch.float64), _weights(15, 2, torch.float64)
    k = 3
    opt = weighted_svd(A, k, row_weights=r, col_weights=c).info.objective[0]
    W = (r[:, None] ** 2) * (c[None, :] ** 2)
    res = weighted_svd(A, k, weights=W, method=method, n_iter=3000, tol=1e-13)
    assert res.info.objective[-1] <= opt * (1 + 1e-5)


@pytest.mark.parametrize("method", list(WEIGHTED_METHODS))
def test_binary_weights_complete_planted_matrix(planted, method, seed):
    A = planted(40, 30, 3, seed=seed)
    g = torch.Generator().manual_seed(seed + 10)
    mask = (torch.rand(40, 30, generator=g) < 0.6).double()
    corrupted = torch.where(mask > 0, A, torch.full_like(A, 1e3))  # missing = garbage
    n_iter = 200 if method == "als" else 2000
    res = weighted_svd(corrupted, 3, weights=mask, method=method, n_iter=n_iter, tol=1e-14)
    assert float(torch.linalg.matrix_norm(_recon(res) - A) / torch.linalg.matrix_norm(A)) < 1e-5


def test_elementwise_batched_and_broadcast_weights():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(2, 12, 10, generator=g, dtype=torch.float64)
    W = torch.rand(12, 10, generator=g, dtype=torch.float64)
    res = weighted_svd(A, 2, weights=W, n_iter=60, tol=1e-9)
    assert res.U.shape == (2, 12, 2)
    h = np.array(res.info.objective)
    assert (np.diff(h) <= 1e-10 * h[0]).all()


def test_not_converged_warns():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(20, 15, generator=g, dtype=torch.float64)
    W = torch.rand(20, 15, generator=g, dtype=torch.float64)
    with pytest.warns(ConvergenceWarning, match="n_iter=1"):
        res = weighted_svd(A, 3, weights=W, n_iter=1, tol=0.0)
    assert not res.info.converged


# ---------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("kwargs,exc,match", [
    ({}, InvalidParameterError, "needs 'row_weights'/'col_weights' or 'weights'"),
    ({"row_weights": np.ones(8), "weights": np.ones((8, 6))}, InvalidParameterError,
     "not both"),
    ({"row_weights": np.ones(7)}, ShapeError, r"'row_weights'.*\(8,\).*Got shape \(7,\)"),
    ({"col_weights": np.ones((2, 6))}, ShapeError, r"'col_weights'.*Got shape \(2, 6\)"),
    ({"row_weights": -np.ones(8)}, InvalidParameterError, "'row_weights'.*nonnegative.*-1"),
    ({"col_weights": np.zeros(6)}, InvalidParameterError, "'col_weights'.*positive entry"),
    ({"row_weights": np.full(8, np.nan)}, InvalidParameterError, "'row_weights'.*NaN"),
    ({"weights": np.ones((6, 8))}, ShapeError, r"'weights'.*Got shape \(6, 8\)"),
    ({"weights": -np.ones((8, 6))}, InvalidParameterError, "'weights'.*nonnegative"),
    ({"weights": np.zeros((8, 6))}, InvalidParameterError, "'weights'.*positive entry"),
    ({"weights": np.full((8, 6), np.inf)}, InvalidParameterError, "'weights'.*infinity"),
    ({"weights": np.ones((8, 6)), "method": "newton"}, InvalidParameterError,
     r"'method'.*'als', 'em'.*'newton'"),
    ({"weights": np.ones((8, 6)), "n_iter": 0}, InvalidParameterError, "'n_iter'.*Got 0"),
    ({"weights": np.ones((8, 6)), "tol": -1.0}, InvalidParameterError, "'tol'.*-1.0"),
    ({"weights": np.ones((8, 6)), "generator": "seed"}, InvalidParameterError,
     "'generator'"),
    ({"row_weights": np.ones(8), "svd": "lanczos"}, InvalidParameterError,
     r"'svd'.*'exact', 'randomized'.*'lanczos'"),
])
def test_bad_parameters(kwargs, exc, match):
    A = np.random.default_rng(0).standard_normal((8, 6))
    with pytest.raises(exc, match=match):
        weighted_svd(A, 2, **kwargs)


def test_bad_rank_and_matrix():
    A = np.random.default_rng(0).standard_normal((8, 6))
    w = np.ones(8)
    with pytest.raises(InvalidParameterError, match=r"'rank'.*min\(m, n\)=6.*Got 7"):
        weighted_svd(A, 7, row_weights=w)
    with pytest.raises(InvalidParameterError, match=r"'rank'.*Got 0"):
        weighted_svd(A, 0, row_weights=w)
    B = A.copy()
    B[1, 1] = np.nan
    with pytest.raises(InvalidParameterError, match="'A'.*NaN"):
        weighted_svd(B, 2, row_weights=w)
    with pytest.raises(ShapeError, match="'A'.*non-empty"):
        weighted_svd(np.zeros((0, 6)), 1, row_weights=np.ones(0))
