"""Tests of rankfold.linalg.lstsq against numpy.linalg.lstsq in float64."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from rankfold import ConvergenceWarning, InvalidParameterError, ShapeError
from rankfold.linalg import LSTSQ_METHODS, SKETCHES, LstsqInfo, lstsq


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # these problems are small: threads only add synchronisation cost (and under heavy
    # CPU contention OpenMP barriers dominate)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - numpy then keeps its threads
        threadpool_limits = contextlib.nullcontext
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)



def problem(m: int, n: int, *, cond: float, rank: int | None = None, seed: int = 0,
            noise: float = 1e-2, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A = U diag(s) V^T with log-spaced s (condition number ``cond``), b = A x + noise."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.logspace(0, -np.log10(cond), n)
    if rank is not None:
        s[rank:] = 0.0
    A = (U * s) @ V.T
    shape = (n,) if k is None else (n, k)
    x = rng.standard_normal(shape)
    b = A @ x + noise * rng.standard_normal((m,) if k is None else (m, k))
    return A, b


def reference(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(A.astype(np.float64), b.astype(np.float64), rcond=None)[0]


def rel(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


@pytest.mark.parametrize("kind", sorted(SKETCHES))
def test_sketch_precondition_matches_numpy_ill_conditioned(kind: str, seed: int) -> None:
    A, b = problem(2000, 30, cond=1e6, seed=seed)
    res = lstsq(A, b, sketch_kind=kind, generator=seed)
    xs = reference(A, b)
    assert isinstance(res.solution, np.ndarray) and res.solution.shape == (30,)
    # forward error of a backward-stable solver is about cond * eps (+ cond^2 eps r)
    assert rel(res.solution, xs) < 1e-6
    info = res.info
    assert isinstance(info, LstsqInfo) and info.converged and info.method == "sketch_precondition"
    assert 0 < info.iterations < 100
    assert info.rank == 30 and 1e5 < info.cond_estimate < 1e7
    assert 1.0 <= info.cond_preconditioned < 10  # the preconditioned system is well conditioned
    np.testing.assert_allclose(info.residual_norm, np.linalg.norm(A @ xs - b), rtol=1e-9)


@pytest.mark.parametrize("preconditioner", ["svd", "qr"])
def test_float32_does_not_square_the_condition_number(preconditioner: str, seed: int) -> None:
    # cond 1e3: normal equations in float32 would lose all digits (cond^2 eps ~ 0.1);
    # a QR/SVD-based solver keeps about cond * eps ~ 1e-4
    A, b = problem(3000, 20, cond=1e3, seed=seed)
    A32, b32 = A.astype(np.float32), b.astype(np.float32)
    res = lstsq(torch.from_numpy(A32), torch.from_numpy(b32), preconditioner=preconditioner,
                generator=seed)
    assert isinstance(res.solution, torch.Tensor) and res.solution.dtype == torch.float32
    assert rel(res.solution.numpy(), reference(A, b)) < 2e-3
    assert res.info.converged


def test_rank_deficient_gives_minimum_norm_solution(dtype: torch.dtype, seed: int) -> None:
    A, b = problem(1500, 25, cond=10.0, rank=12, seed=seed)
    xs = reference(A, b)
    At = torch.from_numpy(A).to(dtype)
    bt = torch.from_numpy(b).to(dtype)
    tol = 1e-3 if dtype == torch.float32 else 1e-9
    for method in LSTSQ_METHODS:
        if method == "sketch_solve":
            continue
        res = lstsq(At, bt, method=method, generator=seed)
        assert res.info.rank == 12, method
        assert rel(res.solution.double().numpy(), xs) < tol, method


def test_sketch_solve_is_near_optimal(seed: int) -> None:
    A, b = problem(4000, 20, cond=1e2, seed=seed, noise=1.0)
    res = lstsq(A, b, method="sketch_solve", oversampling=8.0, generator=seed)
    opt = np.linalg.norm(A @ reference(A, b) - b)
    assert res.info.iterations == 0 and res.info.sketch_size == 160
    # residual within (1 + eps) of optimal, eps ~ n / s for a subspace embedding
    assert opt <= res.info.residual_norm < 1.5 * opt


def test_direct_matches_numpy(dtype: torch.dtype) -> None:
    A, b = problem(300, 15, cond=1e4, seed=1)
    res = lstsq(torch.from_numpy(A).to(dtype), torch.from_numpy(b).to(dtype), method="direct")
    tol = 5e-2 if dtype == torch.float32 else 1e-8
    assert rel(res.solution.double().numpy(), reference(A, b)) < tol
    assert res.info.method == "direct" and res.info.iterations == 0 and res.info.rank == 15


def test_multiple_right_hand_sides_and_zero_column(seed: int) -> None:
    A, B = problem(1200, 10, cond=1e4, seed=seed, k=3)
    B[:, 1] = 0.0
    res = lstsq(A, B, generator=seed)
    assert res.solution.shape == (10, 3)
    np.testing.assert_allclose(res.solution, reference(A, B), rtol=0, atol=1e-7)
    assert res.solution[:, 1].tolist() == [0.0] * 10
    assert res.info.residual_norm.shape == (3,)
    assert res.info.residual_norm[1] == 0.0


def test_sparse_input(seed: int) -> None:
    rng = np.random.default_rng(seed)
    A = sp.random(3000, 20, density=0.05, random_state=seed, format="csr")
    A = A + sp.vstack([sp.eye(20), sp.csr_matrix((2980, 20))])
    b = rng.standard_normal(3000)
    res = lstsq(A, b, generator=seed)
    assert isinstance(res.solution, np.ndarray)
    assert rel(res.solution, reference(A.toarray(), b)) < 1e-9
    res_d = lstsq(A, b, method="direct")
    assert rel(res_d.solution, reference(A.toarray(), b)) < 1e-9


def test_consistent_system_and_zero_rhs() -> None:
    A, _ = problem(500, 8, cond=10.0)
    x = np.arange(8.0)
    res = lstsq(A, A @ x, generator=0)
    np.testing.assert_allclose(res.solution, x, atol=1e-9)
    zero = lstsq(A, np.zeros(500), generator=0)
    assert np.all(zero.solution == 0) and zero.info.residual_norm == 0.0


def test_reproducible_with_seed() -> None:
    A, b = problem(800, 10, cond=1e3)
    r1 = lstsq(A, b, method="sketch_solve", generator=3)
    r2 = lstsq(A, b, method="sketch_solve", generator=3)
    np.testing.assert_array_equal(r1.solution, r2.solution)


def test_max_iter_warns_when_not_converged() -> None:
    A, b = problem(1000, 20, cond=1e6, noise=1.0)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        res = lstsq(A, b, max_iter=2, tol=1e-14, generator=0)
    assert not res.info.converged and res.info.iterations == 2


def test_every_registered_method_runs() -> None:
    A, b = problem(600, 6, cond=10.0)
    xs = reference(A, b)
    for method in LSTSQ_METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = lstsq(A, b, method=method, generator=0)
        tol = 0.5 if method == "sketch_solve" else 1e-9
        assert rel(res.solution, xs) < tol, method


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------
def test_bad_inputs() -> None:
    A, b = problem(100, 5, cond=10.0)
    with pytest.raises(InvalidParameterError,
                       match=r"'method'.*'sketch_precondition'.*'direct'.*Got 'qr'"):
        lstsq(A, b, method="qr")
    with pytest.raises(InvalidParameterError, match=r"'sketch_kind'.*Got 'fft'"):
        lstsq(A, b, sketch_kind="fft")
    with pytest.raises(InvalidParameterError, match=r"'preconditioner'.*Got 'chol'"):
        lstsq(A, b, preconditioner="chol")
    with pytest.raises(InvalidParameterError, match=r"'oversampling'.*Got 1\.0"):
        lstsq(A, b, oversampling=1.0)
    with pytest.raises(InvalidParameterError, match=r"'tol'.*Got -1"):
        lstsq(A, b, tol=-1)
    with pytest.raises(InvalidParameterError, match=r"'max_iter'.*Got 0"):
        lstsq(A, b, max_iter=0)
    with pytest.raises(InvalidParameterError, match=r"'generator'"):
        lstsq(A, b, generator=1.5)
    with pytest.raises(ShapeError, match=r"'b'.*m=100.*Got shape \(99,\)"):
        lstsq(A, b[:99])
    with pytest.raises(ShapeError, match=r"'b'.*Got shape \(100, 1, 1\)"):
        lstsq(A, b[:, None, None])
    with pytest.raises(ShapeError, match=r"at least as many rows.*\(5, 100\)"):
        lstsq(A.T, b[:5])
    bad = A.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidParameterError, match="'A'.*NaN"):
        lstsq(bad, b)
    with pytest.raises(InvalidParameterError, match="'b'.*NaN"):
        lstsq(A, np.full(100, np.inf))
    with pytest.raises(ShapeError, match="'A'.*non-empty"):
        lstsq(np.ones((0, 3)), np.ones(0))
    with pytest.raises(InvalidParameterError, match="'A'"):
        lstsq("A", b)
    with pytest.raises(InvalidParameterError, match="'b'"):
        lstsq(A, sp.csr_matrix(b[:, None]))
    with pytest.raises(InvalidParameterError, match="'A'"):
        lstsq(sp.linalg.aslinearoperator(A), b)


@pytest.mark.parametrize("m", [7, 1000, 12345])
def test_fused_passes_match_two_products(m: int) -> None:
    from rankfold.linalg.lstsq import _fused_passes

    g = torch.Generator().manual_seed(m)
    A = torch.randn(m, 300, generator=g, dtype=torch.float64)
    d = torch.randn(300, 2, generator=g, dtype=torch.float64)
    b = torch.randn(m, 2, generator=g, dtype=torch.float64)
    q, t = _fused_passes(A, d)
    torch.testing.assert_close(q, A @ d)
    torch.testing.assert_close(t, A.T @ (A @ d))
    r, t2 = _fused_passes(A, d, b)
    torch.testing.assert_close(r, b - A @ d)
    torch.testing.assert_close(t2, A.T @ (b - A @ d))


def test_reported_residual_is_the_true_residual() -> None:
    rng = np.random.default_rng(5)
    A = rng.standard_normal((3000, 40)) @ np.diag(np.logspace(0, -5, 40))
    b = rng.standard_normal(3000)
    res = lstsq(A, b, generator=0)
    true = np.linalg.norm(A @ res.solution - b)
    np.testing.assert_allclose(res.info.residual_norm, true, rtol=1e-10)


def test_default_sketch_handles_coherent_rows() -> None:
    # n rows carry (almost) all the leverage: a sparse sketch with few nonzeros per
    # column must still embed them, or CG on the preconditioned system slows down
    rng = np.random.default_rng(3)
    n = 60
    A = np.vstack([np.diag(np.logspace(0, 4, n)), 1e-3 * rng.standard_normal((20000, n))])
    x = rng.standard_normal(n)
    b = A @ x
    res = lstsq(A, b, tol=1e-12, generator=1)
    assert res.info.cond_preconditioned < 3.0
    assert res.info.iterations <= 40
    np.testing.assert_allclose(res.solution, x, rtol=1e-8)
