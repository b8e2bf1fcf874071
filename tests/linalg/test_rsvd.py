"""rsvd against float64 torch.linalg.svd on planted matrices; tolerance mode; bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from conftest import TOL, planted_matrix
from rankfold import InvalidParameterError, NotFittedError, RankfoldError, ShapeError
from rankfold.linalg import RSVD, RSVD_METHODS, SVDResult, rsvd
from rankfold.linalg._range import (
    as_linear_map,
    fro_norm_sq,
    orthonormalize,
    serial,
    thin_svd_tall,
)


def _t64(x: object) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x,
                           dtype=torch.float64)


def _recon(res: SVDResult) -> torch.Tensor:
    U, S, Vh = (_t64(x) for x in res)
    return (U * S.unsqueeze(-2)) @ Vh


def _rel_err(A: torch.Tensor, res: SVDResult) -> float:
    A64 = A.to(torch.float64)
    return float(torch.linalg.matrix_norm(A64 - _recon(res)) / torch.linalg.matrix_norm(A64))


def _opt_rank(s: torch.Tensor, tol: float) -> int:
    """Smallest r with sum_{j >= r} s_j^2 <= tol^2 ||s||^2 (the optimal rank for tol)."""
    sq = s.to(torch.float64).square()
    total = float(sq.sum())
    for r in range(1, len(s) + 1):
        if float(sq[r:].sum()) <= tol * tol * total:
            return r
    return len(s)


def _assert_orthonormal(U: torch.Tensor, Vh: torch.Tensor, tol: float) -> None:
    k = U.shape[-1]
    eye = torch.eye(k, dtype=torch.float64)
    assert torch.allclose(U.mT @ U, eye, atol=tol)
    assert torch.allclose(Vh @ Vh.mT, eye, atol=tol)


# --- fixed rank ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", sorted(RSVD_METHODS))
def test_exact_low_rank_is_recovered(method: str, dtype: torch.dtype, seed: int) -> None:
    A = planted_matrix(120, 80, rank=6, seed=seed, dtype=dtype)
    res = rsvd(A, 6, method=method, generator=seed)
    assert isinstance(res, SVDResult)
    assert res.U.dtype == dtype and res.S.dtype == dtype and res.Vh.dtype == dtype
    assert res.U.shape == (120, 6) and res.S.shape == (6,) and res.Vh.shape == (6, 80)
    s_ref = torch.linalg.svdvals(A.to(torch.float64))
    tol = TOL[dtype] * 10
    assert torch.allclose(_t64(res.S), s_ref[:6], atol=tol, rtol=tol)
    assert _rel_err(A, res) < tol
    _assert_orthonormal(_t64(res.U), _t64(res.Vh), tol)
    assert bool((res.S[:-1] >= res.S[1:]).all())


@pytest.mark.parametrize("method", sorted(RSVD_METHODS))
@pytest.mark.parametrize("decay", ["fast", "slow"])
def test_near_optimal_on_decaying_spectra(method: str, decay: str, dtype: torch.dtype,
                                          seed: int) -> None:
    A = planted_matrix(150, 100, decay=decay, seed=seed, dtype=dtype)
    k = 10
    s_ref = torch.linalg.svdvals(A.to(torch.float64))
    res = rsvd(A, k, method=method, generator=seed)
    opt = math.sqrt(float(s_ref[k:].square().sum())) / float(s_ref.norm())
    err = _rel_err(A, res)
    assert err >= opt * (1 - 1e-6)  # cannot beat the optimum
    assert err <= opt * 1.01 + TOL[dtype]
    # singular values: within 2% of the exact ones (slow decay), essentially exact (fast)
    rtol = 0.02 if decay == "slow" else 1e-3
    assert torch.allclose(_t64(res.S), s_ref[:k], rtol=rtol, atol=TOL[dtype])


@pytest.mark.parametrize("method", sorted(RSVD_METHODS))
def test_flat_top_of_the_spectrum_is_captured(method: str) -> None:
    # k equal leading singular values: a Krylov block narrower than k would span only
    # block_size of them ((A^T A)^j Omega stays in a b-dimensional subspace of the top)
    g = torch.Generator().manual_seed(0)
    m, n, k = 600, 300, 40
    U = torch.linalg.qr(torch.randn(m, n, generator=g, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
    s = torch.cat([torch.ones(k), 0.05 * (1 + torch.arange(n - k, dtype=torch.float64)) ** -0.5])
    A = (U * s) @ V.T
    opt = float(s[k:].norm() / s.norm())
    assert _rel_err(A, rsvd(A, k, method=method, generator=0)) <= 1.01 * opt


def test_leading_subspace_matches_exact_svd(seed: int) -> None:
    A = planted_matrix(100, 70, decay="fast", seed=seed)
    U, _, Vh = rsvd(A, 5, generator=seed)
    Ue, _, Vhe = torch.linalg.svd(A)
    # projectors are sign invariant
    assert torch.allclose(U @ U.mT, Ue[:, :5] @ Ue[:, :5].mT, atol=1e-8)
    assert torch.allclose(Vh.mT @ Vh, Vhe[:5].mT @ Vhe[:5], atol=1e-8)


def test_signs_are_deterministic() -> None:
    A = planted_matrix(60, 40, rank=4, seed=3)
    U, S, Vh = rsvd(A, 4, generator=0)
    idx = U.abs().argmax(dim=0)
    assert bool((U[idx, torch.arange(4)] > 0).all())
    U2, _, Vh2 = rsvd(A, 4, generator=99, method="krylov")
    assert torch.allclose(U, U2, atol=1e-8) and torch.allclose(Vh, Vh2, atol=1e-8)


@pytest.mark.parametrize("method", sorted(RSVD_METHODS))
def test_batched_dense(method: str, dtype: torch.dtype) -> None:
    A = torch.stack([torch.stack([planted_matrix(50, 30, rank=4, seed=10 * i + j, dtype=dtype)
                                  for j in range(2)]) for i in range(3)])
    res = rsvd(A, 4, method=method, generator=1)
    assert res.U.shape == (3, 2, 50, 4) and res.S.shape == (3, 2, 4)
    assert res.Vh.shape == (3, 2, 4, 30)
    ref = torch.linalg.svdvals(A.to(torch.float64))[..., :4]
    assert torch.allclose(_t64(res.S), ref, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    err = torch.linalg.matrix_norm(A.to(torch.float64) - _recon(res))
    assert float(err.max()) < TOL[dtype] * 10 * float(torch.linalg.matrix_norm(A).max())


@pytest.mark.parametrize("kind", ["numpy", "csr", "coo", "torch_coo", "torch_csr", "linop"])
def test_input_kinds(kind: str, dtype: torch.dtype) -> None:
    A = planted_matrix(80, 60, rank=5, seed=2, dtype=dtype)
    arr = A.numpy()
    inputs = {
        "numpy": lambda: arr,
        "csr": lambda: sp.csr_matrix(arr),
        "coo": lambda: sp.coo_array(arr),
        "torch_coo": lambda: A.to_sparse_coo(),
        "torch_csr": lambda: A.to_sparse_csr(),
        "linop": lambda: spla.aslinearoperator(arr),
    }
    res = rsvd(inputs[kind](), 5, generator=0)
    want = torch.Tensor if kind.startswith("torch") else np.ndarray
    assert all(isinstance(x, want) for x in res)
    assert res.U.dtype == (dtype if want is torch.Tensor else arr.dtype)
    assert _rel_err(A, res) < TOL[dtype] * 10


def test_integer_and_noncontiguous_inputs() -> None:
    rng = np.random.default_rng(0)
    A = rng.integers(-3, 4, size=(40, 6)) @ rng.integers(-3, 4, size=(6, 30))
    res = rsvd(A, 6, generator=0)
    assert res.U.dtype == np.float64
    assert np.allclose((res.U * res.S) @ res.Vh, A, atol=1e-9)
    T = planted_matrix(50, 70, rank=3, seed=4).mT  # a transposed view
    assert _rel_err(T, rsvd(T, 3, generator=0)) < 1e-10


def test_rank_equal_to_min_dimension() -> None:
    A = planted_matrix(30, 12, decay="slow", seed=0)
    res = rsvd(A, 12, generator=0, method="krylov")
    assert _rel_err(A, res) < 1e-10
    assert _rel_err(A, rsvd(A, 12, generator=0)) < 1e-10


# --- tolerance mode --------------------------------------------------------------------------

def _mid_tols(s: torch.Tensor, ranks: list[int]) -> list[float]:
    """Tolerances half-way (geometrically) between the optimal errors of r - 1 and r."""
    sq = s.to(torch.float64).square()
    total = float(sq.sum())
    errs = [math.sqrt(float(sq[r:].sum()) / total) for r in range(len(s) + 1)]
    return [math.sqrt(errs[r - 1] * errs[r]) for r in ranks]


@pytest.mark.parametrize("block_size", [None, 3])
def test_tol_finds_the_optimal_rank(block_size: int | None, dtype: torch.dtype,
                                    seed: int) -> None:
    A = planted_matrix(120, 90, decay="fast", seed=seed, dtype=dtype)
    s = torch.linalg.svdvals(A.to(torch.float64))
    ranks = [3, 9] if dtype == torch.float32 else [3, 9, 20]
    for r_opt, tol in zip(ranks, _mid_tols(s, ranks), strict=True):
        assert _opt_rank(s, tol) == r_opt
        res = rsvd(A, tol=tol, block_size=block_size, generator=seed)
        assert res.S.shape == (r_opt,)
        assert res.U.dtype == dtype
        assert _rel_err(A, res) <= tol


@pytest.mark.parametrize("decay", ["fast", "slow"])
def test_tol_rank_is_minimal_for_the_computed_basis(decay: str, seed: int) -> None:
    A = planted_matrix(100, 80, decay=decay, seed=seed)
    tol = 0.2 if decay == "slow" else 2e-3
    U, S, Vh = rsvd(A, tol=tol, generator=seed)
    r = S.shape[0]
    assert _rel_err(A, SVDResult(U, S, Vh)) <= tol
    assert r >= _opt_rank(torch.linalg.svdvals(A), tol)
    if r > 1:  # one rank less misses the tolerance
        assert _rel_err(A, SVDResult(U[:, :r - 1], S[:r - 1], Vh[:r - 1])) > tol


@pytest.mark.parametrize("kind", ["csr", "linop"])
def test_tol_sparse_and_operator(kind: str) -> None:
    A = planted_matrix(90, 70, decay="fast", seed=5)
    s = torch.linalg.svdvals(A)
    (tol,) = _mid_tols(s, [7])
    arr = A.numpy()
    inp = sp.csr_array(arr) if kind == "csr" else spla.aslinearoperator(arr)
    res = rsvd(inp, tol=tol, generator=0)
    assert isinstance(res.U, np.ndarray) and res.S.shape == (7,)
    assert _rel_err(A, res) <= tol


def test_tol_float32_below_indicator_precision() -> None:
    # the error indicator cancels in float32; the direct residual check keeps the promise
    A = planted_matrix(200, 150, decay="fast", seed=0, dtype=torch.float32)
    s = torch.linalg.svdvals(A.to(torch.float64))
    (tol,) = _mid_tols(s, [14])
    res = rsvd(A, tol=tol, generator=0)
    assert res.S.shape == (14,)
    assert _rel_err(A, res) <= tol


def test_tol_exact_low_rank_stops_at_the_rank() -> None:
    A = planted_matrix(80, 60, rank=7, seed=1)
    res = rsvd(A, tol=1e-8, generator=0)
    assert res.S.shape == (7,)


# --- reproducibility -------------------------------------------------------------------------

def test_reproducible_and_global_rng_untouched() -> None:
    A = planted_matrix(70, 50, decay="slow", seed=0)
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002
    a = rsvd(A, 5, generator=123)
    b = rsvd(A, 5, generator=123)
    c = rsvd(A, 5, generator=torch.Generator().manual_seed(5))
    d = rsvd(A, 5, generator=torch.Generator().manual_seed(5))
    e = rsvd(A, tol=0.5, generator=np.random.default_rng(3))
    f = rsvd(A, tol=0.5, generator=np.random.default_rng(3))
    for x, y in [(a, b), (c, d), (e, f)]:
        for u, v in zip(x, y, strict=True):
            assert torch.equal(u, v)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002


# --- estimator -------------------------------------------------------------------------------

def test_estimator_passes_arguments_and_transforms() -> None:
    X = planted_matrix(60, 40, decay="fast", seed=2).numpy()
    kw = dict(n_iter=1, oversample=3, method="krylov", block_size=4, generator=7)
    est = RSVD(4, **kw).fit(X)
    ref = rsvd(X, 4, **kw)
    assert np.array_equal(est.components_, ref.Vh)
    assert np.array_equal(est.singular_values_, ref.S)
    assert np.array_equal(est.U_, ref.U)
    assert est.rank_ == 4
    assert np.allclose(est.transform(X), RSVD(4, **kw).fit_transform(X))
    assert np.allclose(est.inverse_transform(est.transform(X)), (ref.U * ref.S) @ ref.Vh)
    tol_est = RSVD(tol=0.01, generator=0).fit(X)
    assert tol_est.rank_ == rsvd(X, tol=0.01, generator=0).S.shape[0]
    Xt = torch.from_numpy(X)
    assert isinstance(RSVD(3, generator=0).fit(Xt).transform(Xt), torch.Tensor)
    with pytest.raises(NotFittedError, match="not fitted"):
        RSVD(3).transform(X)


# --- helpers ---------------------------------------------------------------------------------

def test_orthonormalize_handles_rank_deficient_and_ill_conditioned() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 8, generator=g,
                                                                           dtype=torch.float64)
    Q = orthonormalize(X)
    assert torch.allclose(Q.mT @ Q, torch.eye(8, dtype=torch.float64), atol=1e-12)
    Y = torch.randn(200, 6, generator=g) * torch.logspace(0, -6, 6)
    Q = orthonormalize(Y)
    assert torch.allclose(Q.mT @ Q, torch.eye(6), atol=1e-5)
    assert torch.allclose(Q @ (Q.mT @ Y), Y, atol=1e-5)


def test_fro_norm_accumulates_in_float64() -> None:
    # a float32 reduction of 4M equal squares is off by ~1e-3, enough to fool tol mode
    A = torch.full((4096, 1024), 0.3)
    ref = float(A[0, 0].double() ** 2) * A.numel()
    assert abs(float(fro_norm_sq(as_linear_map(A, "A", "t"))) / ref - 1) < 1e-9
    Ab = torch.stack([A, 2 * A])
    got = fro_norm_sq(as_linear_map(Ab, "A", "t"))
    assert torch.allclose(got, torch.tensor([ref, 4 * ref], dtype=torch.float64), rtol=1e-9)


@pytest.mark.parametrize("cond", [1e1, 1e8])  # Cholesky path and QR fallback
def test_thin_svd_tall_matches_exact(cond: float, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    U0, _ = torch.linalg.qr(torch.randn(300, 12, generator=g, dtype=torch.float64))
    V0, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    s0 = torch.logspace(0, -math.log10(cond), 12, dtype=torch.float64)
    Y = ((U0 * s0) @ V0.mT).to(dtype)
    U, s, vh = thin_svd_tall(Y, 5)
    assert U.dtype == dtype and U.shape == (300, 5) and vh.shape == (5, 12)
    assert torch.allclose(_t64(s), s0[:5], rtol=TOL[dtype] * 10)
    P = _t64(U) @ _t64(U).mT
    assert torch.allclose(P, U0[:, :5] @ U0[:, :5].mT, atol=TOL[dtype] * 50)


def test_serial_restores_the_thread_count() -> None:
    n = torch.get_num_threads()
    with serial():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == n
    with pytest.raises(RuntimeError), serial():
        raise RuntimeError("boom")
    assert torch.get_num_threads() == n


# --- bad inputs ------------------------------------------------------------------------------

A_OK = planted_matrix(20, 10, rank=3, seed=0)


@pytest.mark.parametrize(("args", "kwargs", "exc", "match"), [
    ((A_OK,), {}, InvalidParameterError, "exactly one of 'rank' or 'tol'.*rank=None, tol=None"),
    ((A_OK, 3), {"tol": 0.1}, InvalidParameterError, "exactly one.*rank=3, tol=0.1"),
    ((A_OK, 11), {}, InvalidParameterError, r"'rank'.*\[1, min\(m, n\)=10\]. Got 11"),
    ((A_OK, 0), {}, InvalidParameterError, r"'rank'.*Got 0 instead"),
    ((A_OK, 2.5), {}, InvalidParameterError, r"'rank'.*an int.*Got 2.5"),
    ((A_OK, "3"), {}, InvalidParameterError, r"'rank'.*Got '3'"),
    ((A_OK,), {"tol": 0.0}, InvalidParameterError, r"'tol'.*\(0.0, 1.0\). Got 0.0"),
    ((A_OK,), {"tol": 1.0}, InvalidParameterError, r"'tol'.*Got 1.0"),
    ((A_OK,), {"tol": -0.5}, InvalidParameterError, r"'tol'.*Got -0.5"),
    ((A_OK,), {"tol": float("nan")}, InvalidParameterError, r"'tol'.*Got nan"),
    ((A_OK, 2), {"method": "lanczos"}, InvalidParameterError,
     r"'method'.*'subspace', 'krylov'.*Got 'lanczos'"),
    ((A_OK,), {"tol": 0.1, "method": "krylov"}, InvalidParameterError,
     r"'method'.*'subspace' when 'tol'.*Got 'krylov'"),
    ((A_OK, 2), {"n_iter": -1}, InvalidParameterError, r"'n_iter'.*Got -1"),
    ((A_OK, 2), {"oversample": -2}, InvalidParameterError, r"'oversample'.*Got -2"),
    ((A_OK, 2), {"block_size": 0}, InvalidParameterError, r"'block_size'.*Got 0"),
    ((A_OK, 8), {"method": "krylov", "block_size": 2, "n_iter": 1}, InvalidParameterError,
     r"'block_size'.*rank=8.*Got block_size=2 with n_iter=1"),
    ((A_OK, 2), {"generator": "seed"}, InvalidParameterError, r"'generator'.*Got 'seed'"),
    ((A_OK, 2), {"generator": -1}, InvalidParameterError, r"'generator'.*Got -1"),
    (("abc", 2), {}, InvalidParameterError, r"'A' parameter of rsvd.*Got 'abc'"),
    ((A_OK.to(torch.complex128), 2), {}, InvalidParameterError, r"'A'.*real matrix"),
    ((torch.zeros(0, 5), 1), {}, ShapeError, r"'A'.*non-empty.*\(0, 5\)"),
    ((sp.csr_array((0, 4)), 1), {}, ShapeError, r"'A'.*non-empty.*\(0, 4\)"),
    ((torch.ones(5), 1), {}, ShapeError, r"'A'.*at least 2 dimensions.*\(5,\)"),
    ((torch.ones(2, 5, 4),), {"tol": 0.1}, InvalidParameterError,
     r"'tol'.*single matrix.*tol=0.1.*\(2, 5, 4\)"),
    ((torch.zeros(5, 4),), {"tol": 0.1}, InvalidParameterError, r"'A'.*zero matrix"),
])
def test_bad_inputs(args: tuple, kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        rsvd(*args, **kwargs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("kind", ["torch", "numpy", "sparse"])
def test_non_finite_inputs(bad: float, kind: str) -> None:
    A = planted_matrix(12, 9, rank=2, seed=0)
    A[3, 4] = bad
    inp = {"torch": A, "numpy": A.numpy(), "sparse": sp.csr_array(A.numpy())}[kind]
    with pytest.raises(RankfoldError, match=r"'A' parameter of rsvd must not contain NaN"):
        rsvd(inp, 2, generator=0)
