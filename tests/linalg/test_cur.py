"""Interpolative decomposition, CUR and Nystrom against exact answers on planted matrices."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from rankfold import ConvergenceError, InvalidParameterError, ShapeError
from rankfold.linalg import cur, interpolative, nystrom
from rankfold.linalg.cur import CUR_CORES, CUR_METHODS, ID_METHODS

# relative reconstruction tolerance for exactly low-rank inputs
EXACT = {torch.float32: 5e-4, torch.float64: 1e-9}


def _rel(A: torch.Tensor, B: torch.Tensor) -> float:
    A64, B64 = A.to(torch.float64), B.to(torch.float64)
    return float(torch.linalg.matrix_norm(A64 - B64) / torch.linalg.matrix_norm(A64))


def _opt_rel(A: torch.Tensor, k: int) -> float:
    s = torch.linalg.svdvals(A.to(torch.float64))
    return float(s[k:].norm() / s.norm())


# ---------------------------------------------------------------------------------------
# interpolative


@pytest.mark.parametrize("method", list(ID_METHODS))
def test_id_exact_at_true_rank(planted, seed, dtype, method):
    A = planted(60, 45, 6, seed=seed, dtype=dtype)
    cols, X = interpolative(A, 6, method=method, generator=seed)
    assert cols.shape == (6,) and X.shape == (6, 45)
    assert cols.dtype == torch.int64 and X.dtype == dtype
    assert len(set(cols.tolist())) == 6
    torch.testing.assert_close(X[:, cols], torch.eye(6, dtype=dtype))
    assert _rel(A, A[:, cols] @ X) < EXACT[dtype]


@pytest.mark.parametrize("method", list(ID_METHODS))
def test_id_close_to_optimal(planted, seed, method):
    A = planted(80, 60, None, decay="fast", seed=seed)
    k = 10
    cols, X = interpolative(A, k, method=method, generator=seed)
    err, opt = _rel(A, A[:, cols] @ X), _opt_rel(A, k)
    # ID is within a modest factor of the optimal rank-k error (theory: sqrt(1 + k(n-k)))
    assert opt < err < 10 * opt


def test_id_numpy_in_numpy_out_and_batched(planted):
    A = planted(30, 20, 4, seed=3)
    cols, X = interpolative(A.numpy(), 4)
    assert isinstance(cols, np.ndarray) and isinstance(X, np.ndarray)
    np.testing.assert_allclose(A.numpy()[:, cols] @ X, A.numpy(), atol=1e-10)
    B = torch.stack([A, planted(30, 20, 4, seed=4)])
    for method in ID_METHODS:
        cols, X = interpolative(B, 4, method=method, generator=0)
        assert cols.shape == (2, 4) and X.shape == (2, 4, 20)
        for b in range(2):
            assert _rel(B[b], B[b][:, cols[b]] @ X[b]) < 1e-9


def test_id_randomized_sparse_and_operator(planted):
    A = planted(50, 40, 5, seed=2).numpy()
    for M in (sp.csr_matrix(A), spla.aslinearoperator(A)):
        cols, X = interpolative(M, 5, method="randomized", generator=1)
        assert isinstance(X, np.ndarray)
        np.testing.assert_allclose(A[:, cols] @ X, A, atol=1e-9)


def test_id_randomized_reproducible(planted):
    A = planted(50, 40, None, decay="slow", seed=2)
    a = interpolative(A, 5, method="randomized", generator=11)
    b = interpolative(A, 5, method="randomized", generator=11)
    assert torch.equal(a.columns, b.columns) and torch.equal(a.X, b.X)


def test_id_rank_larger_than_numerical_rank(planted):
    A = planted(30, 20, 3, seed=0)
    cols, X = interpolative(A, 8)
    assert torch.isfinite(X).all()
    assert _rel(A, A[:, cols] @ X) < 1e-9


# ---------------------------------------------------------------------------------------
# CUR


@pytest.mark.parametrize("method,core", [(m, c) for m in CUR_METHODS for c in CUR_CORES
                                         if not (m == "leverage" and c == "interpolative")])
def test_cur_exact_at_true_rank(planted, seed, dtype, method, core):
    A = planted(50, 40, 5, seed=seed, dtype=dtype)
    C, U, R, rows, cols = cur(A, 5, method=method, core=core, generator=seed)
    assert C.shape == (50, 5) and U.shape == (5, 5) and R.shape == (5, 40)
    torch.testing.assert_close(C, A[:, cols])
    torch.testing.assert_close(R, A[rows, :])
    tol = EXACT[dtype] * (20 if dtype == torch.float32 else 1)
    assert _rel(A, C @ U @ R) < tol


def test_cur_close_to_optimal(planted, seed):
    A = planted(70, 50, None, decay="fast", seed=seed)
    k = 8
    C, U, R, _, _ = cur(A, k, generator=seed)
    err, opt = _rel(A, C @ U @ R), _opt_rel(A, k)
    assert opt < err < 30 * opt


def test_cur_batched_numpy(planted):
    A = np.stack([planted(20, 15, 3, seed=s).numpy() for s in range(3)])
    C, U, R, rows, cols = cur(A, 3, generator=0)
    assert isinstance(C, np.ndarray) and C.shape == (3, 20, 3) and rows.shape == (3, 3)
    np.testing.assert_allclose(C @ U @ R, A, atol=1e-9)


# ---------------------------------------------------------------------------------------
# Nystrom


def _psd(n: int, k: int, seed: int, dtype: torch.dtype, decay: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64)).Q
    lam = (0.7 ** torch.arange(k, dtype=torch.float64)) if decay else \
        torch.linspace(3.0, 1.0, k, dtype=torch.float64)
    A = (Q * lam) @ Q.T
    return (0.5 * (A + A.T)).to(dtype)


def test_nystrom_exact_for_low_rank_psd(seed, dtype):
    A = _psd(80, 7, seed, dtype)
    U, S = nystrom(A, 7, generator=seed)
    assert U.shape == (80, 7) and S.shape == (7,) and U.dtype == dtype
    assert _rel(A, (U * S) @ U.T) < EXACT[dtype] * 10
    lam = torch.linalg.eigvalsh(A.to(torch.float64)).flip(0)[:7]
    torch.testing.assert_close(S.to(torch.float64), lam, rtol=EXACT[dtype] * 10, atol=0)
    torch.testing.assert_close(U.mT @ U, torch.eye(7, dtype=dtype), atol=EXACT[dtype] * 10,
                               rtol=0)


def test_nystrom_close_to_eigh_on_decaying_spectrum(seed):
    A = _psd(100, 50, seed, torch.float64, decay=True)
    k = 10
    lam = torch.linalg.eigvalsh(A).flip(0)
    opt = float(lam[k:].norm() / lam.norm())
    errs = []
    for n_iter in (0, 2):
        U, S = nystrom(A, k, oversample=5, n_iter=n_iter, generator=seed)
        errs.append(_rel(A, (U * S) @ U.T))
        assert (S[:-1] >= S[1:]).all() and (S >= 0).all()
    assert opt <= errs[0] < 3 * opt
    assert opt <= errs[1] < 1.05 * opt  # subspace iterations approach the optimum


def test_nystrom_batched_numpy_sparse_operator():
    A = _psd(40, 4, 0, torch.float64)
    U, S = nystrom(torch.stack([A, 2 * A]), 4, generator=1)
    assert U.shape == (2, 40, 4)
    torch.testing.assert_close(S[1], 2 * S[0], rtol=1e-8, atol=0)
    An = A.numpy()
    for M in (An, sp.csr_matrix(An), spla.aslinearoperator(An)):
        U, S = nystrom(M, 4, n_iter=1, generator=1)
        assert isinstance(U, np.ndarray)
        np.testing.assert_allclose((U * S) @ U.T, An, atol=1e-9)


def test_nystrom_indefinite_raises():
    # a clearly indefinite symmetric matrix: Cholesky of the sketched core must fail
    A = torch.diag(torch.tensor([5.0, -5.0, 4.0, -4.0], dtype=torch.float64))
    with pytest.raises(ConvergenceError, match="positive semidefinite"):
        nystrom(A, 2, oversample=2, generator=0)


# ---------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("call,match", [
    (lambda A: interpolative(A, 0), r"'rank' parameter of interpolative.*Got 0"),
    (lambda A: interpolative(A, 21), r"'rank'.*min\(m, n\)=20.*Got 21"),
    (lambda A: interpolative(A, 2.5), r"'rank'.*Got 2.5"),
    (lambda A: interpolative(A, 3, method="svd"), r"'method'.*'qr', 'randomized'.*'svd'"),
    (lambda A: interpolative(A, 3, oversample=-1), r"'oversample'.*Got -1"),
    (lambda A: interpolative(A, 3, n_iter=-2), r"'n_iter'.*Got -2"),
    (lambda A: interpolative(A, 3, method="randomized", generator="x"), r"'generator'"),
    (lambda A: cur(A, 31), r"'rank' parameter of cur.*Got 31"),
    (lambda A: cur(A, 3, method="random"), r"'method' parameter of cur.*'random'"),
    (lambda A: cur(A, 3, core="qr"), r"'core' parameter of cur.*'qr'"),
    (lambda A: cur(A, 3, method="leverage", core="interpolative"), r"'core'.*'pinv'"),
])
def test_bad_parameters(call, match):
    A = torch.randn(30, 20, dtype=torch.float64)
    with pytest.raises(InvalidParameterError, match=match):
        call(A)


@pytest.mark.parametrize("fn", [interpolative, cur])
def test_bad_matrices(fn):
    A = torch.randn(10, 8)
    A[2, 3] = float("nan")
    with pytest.raises(InvalidParameterError, match="'A'.*NaN or infinity"):
        fn(A, 2)
    A[2, 3] = float("inf")
    with pytest.raises(InvalidParameterError, match="'A'.*NaN or infinity"):
        fn(A, 2)
    with pytest.raises(ShapeError, match="'A'.*non-empty"):
        fn(torch.zeros(0, 5), 1)
    with pytest.raises(ShapeError, match="'A'.*at least 2 dimensions"):
        fn(torch.ones(5), 1)
    with pytest.raises(InvalidParameterError, match="'A'.*array-like of numbers"):
        fn([["a", "b"], ["c", "d"]], 1)


def test_qr_id_rejects_sparse():
    A = sp.random(20, 10, density=0.3, random_state=0)
    with pytest.raises(InvalidParameterError, match="'A'.*dense"):
        interpolative(A, 2)


def test_nystrom_bad_inputs():
    A = _psd(10, 3, 0, torch.float64)
    with pytest.raises(ShapeError, match="'A_psd'.*square"):
        nystrom(torch.ones(4, 5), 2)
    with pytest.raises(ShapeError, match="'A_psd'.*square"):
        nystrom(spla.aslinearoperator(np.ones((4, 5))), 2)
    with pytest.raises(InvalidParameterError, match=r"'A_psd'.*symmetric"):
        nystrom(torch.triu(torch.ones(5, 5)), 2)
    with pytest.raises(InvalidParameterError, match=r"'rank' parameter of nystrom.*n=10.*11"):
        nystrom(A, 11)
    with pytest.raises(InvalidParameterError, match="'oversample'.*-3"):
        nystrom(A, 2, oversample=-3)
    with pytest.raises(InvalidParameterError, match="'n_iter' parameter of nystrom.*-1"):
        nystrom(A, 2, n_iter=-1)
    with pytest.raises(InvalidParameterError, match="'check_symmetric'.*'yes'"):
        nystrom(A, 2, check_symmetric="yes")
    B = A.clone()
    B[0, 0] = float("nan")
    with pytest.raises(InvalidParameterError, match="'A_psd'.*NaN"):
        nystrom(B, 2)
