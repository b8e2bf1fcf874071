"""Tests of rankfold.linalg.sketch: exact action, subspace embedding, E[S^T S] = I, inputs."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from rankfold import InvalidParameterError, ShapeError
from rankfold.linalg import (
    SKETCHES,
    CountSketch,
    GaussianSketch,
    SparseSignSketch,
    SRHTSketch,
    make_sketch,
    sketch,
)
from rankfold.linalg.sketch import fwht

KINDS = sorted(SKETCHES)

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



def hadamard(n: int) -> torch.Tensor:
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.shape[0] < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H


@pytest.mark.parametrize("n", [1, 2, 8, 64, 128, 1024])
def test_fwht_matches_hadamard_matrix(n: int) -> None:
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    torch.testing.assert_close(fwht(x, 0), hadamard(n) @ x)
    torch.testing.assert_close(fwht(x.T.contiguous(), 1), (hadamard(n) @ x).T)


def test_fwht_rejects_non_power_of_two() -> None:
    with pytest.raises(ShapeError, match="power-of-two"):
        fwht(torch.ones(6))


@pytest.mark.parametrize("kind", KINDS)
def test_apply_equals_dense_matrix_both_sides(kind: str, dtype: torch.dtype, seed: int) -> None:
    d, size = 300, 48
    S = make_sketch(kind, d, size, generator=seed)
    D = S.to_dense()
    assert D.shape == (size, d) and S.shape == (size, d)
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, 7, generator=g, dtype=torch.float64).to(dtype)
    tol = 1e-4 if dtype == torch.float32 else 1e-12
    left = S @ A
    assert left.dtype == dtype and left.shape == (size, 7)
    torch.testing.assert_close(left.double(), D @ A.double(), atol=tol, rtol=tol)
    right = A.T @ S.T
    assert right.shape == (7, size)
    torch.testing.assert_close(right.double(), A.double().T @ D.T, atol=tol, rtol=tol)
    # the operator is reusable: applying twice gives the same answer (no redraw)
    torch.testing.assert_close(S @ A, left)
    # a vector
    torch.testing.assert_close((S @ A[:, 0]).double(), D @ A[:, 0].double(), atol=tol,
                               rtol=tol)


@pytest.mark.parametrize("kind", KINDS)
def test_batched_numpy_and_scipy_inputs(kind: str) -> None:
    d, size = 130, 32
    S = make_sketch(kind, d, size, generator=3)
    D = S.to_dense().numpy()
    rng = np.random.default_rng(0)
    B = rng.standard_normal((4, d, 5))
    out = S.apply(torch.from_numpy(B))
    np.testing.assert_allclose(out.numpy(), D @ B, atol=1e-12)
    An = rng.standard_normal((d, 6))
    res = S @ An
    assert isinstance(res, np.ndarray)
    np.testing.assert_allclose(res, D @ An, atol=1e-12)
    np.testing.assert_allclose(An.T @ S.T, An.T @ D.T, atol=1e-12)
    Asp = sp.random(d, 40, density=0.05, random_state=1, format="csc")
    np.testing.assert_allclose(S @ Asp, D @ Asp.toarray(), atol=1e-12)
    np.testing.assert_allclose(Asp.T @ S.T, Asp.toarray().T @ D.T, atol=1e-12)
    np.testing.assert_allclose(sketch(Asp.T.tocsr(), size, kind=kind, side="right",
                                      generator=3), Asp.toarray().T @ D.T, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_functional_sketch_matches_operator(kind: str, seed: int) -> None:
    A = np.random.default_rng(seed).standard_normal((257, 4)).astype(np.float32)
    out = sketch(A, 20, kind=kind, generator=seed)
    S = make_sketch(kind, 257, 20, generator=seed)
    assert out.dtype == np.float32 and out.shape == (20, 4)
    np.testing.assert_allclose(out, S @ A, rtol=1e-6, atol=1e-6)
    right = sketch(A.T, 20, kind=kind, side="right", generator=seed)
    np.testing.assert_allclose(right, (S @ A).T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_expected_gram_is_identity(kind: str) -> None:
    d, size, reps = 64, 16, 400
    acc = torch.zeros(d, d, dtype=torch.float64)
    for r in range(reps):
        D = make_sketch(kind, d, size, generator=r).to_dense()
        acc += D.T @ D
    acc /= reps
    # diagonal exactly 1 for the +-1 sketches, within sampling error for Gaussian;
    # off-diagonal entries have std about 1/sqrt(size * reps) = 0.0125
    assert (acc.diagonal() - 1).abs().max() < 0.25
    off = acc - torch.diag(acc.diagonal())
    assert off.abs().max() < 0.1
    assert off.abs().mean() < 0.03


@pytest.mark.parametrize("kind", KINDS)
def test_subspace_embedding_on_planted_subspace(kind: str, seed: int) -> None:
    # coherent subspace: a few rows carry most of the energy (hard for row sampling,
    # easy for oblivious sketches)
    d, k = 2048, 5
    g = torch.Generator().manual_seed(seed)
    U = torch.randn(d, k, generator=g, dtype=torch.float64)
    U[:k] += 30 * torch.eye(k, dtype=torch.float64)
    Q, _ = torch.linalg.qr(U)
    size = 400 if kind == "countsketch" else 120
    S = make_sketch(kind, d, size, generator=seed)
    sv = torch.linalg.svdvals(S @ Q)
    # all of ||S Q x|| / ||x|| in [1 - eps, 1 + eps] with eps well below 1
    assert float(sv.max()) < 1.6 and float(sv.min()) > 0.45


def test_sparse_sign_nnz_and_distinct_rows() -> None:
    S = SparseSignSketch(500, 30, nnz=6, generator=0)
    D = S.to_dense()
    nz = (D != 0).sum(dim=0)
    assert bool((nz == 6).all())
    assert torch.allclose(D[D != 0].abs(), torch.full((3000,), 1 / math.sqrt(6),
                                                       dtype=torch.float64))
    assert "nnz=6" in repr(S)
    dense_case = SparseSignSketch(50, 4, nnz=3, generator=1).to_dense()
    assert bool(((dense_case != 0).sum(dim=0) == 3).all())


@pytest.mark.parametrize("kind", ["sparse_sign", "countsketch"])
def test_blocked_sparse_apply_matches_dense(kind: str) -> None:
    # tall-and-wide inputs take the column-blocked path (X streamed in ~16 MB row blocks);
    # a narrow input applied afterwards reuses the cached blocks
    S = make_sketch(kind, 20_000, 300, generator=3)
    X = torch.randn(20_000, 1024, generator=torch.Generator().manual_seed(0))
    D = S.to_dense()
    assert torch.allclose(S @ X, (D @ X.double()).float(), rtol=1e-4, atol=1e-3)
    assert any(key[0] == "blocks" for key in S._csr_cache)  # noqa: SLF001
    x = X[:, :1]
    assert torch.allclose(S @ x, (D @ x.double()).float(), rtol=1e-4, atol=1e-4)


def test_countsketch_one_nonzero_per_column() -> None:
    D = CountSketch(400, 10, generator=0).to_dense()
    assert bool(((D != 0).sum(dim=0) == 1).all())
    assert set(D[D != 0].tolist()) <= {1.0, -1.0}


def test_srht_pads_and_scales() -> None:
    S = SRHTSketch(100, 16, generator=0)
    assert S.n_padded == 128
    D = S.to_dense()
    torch.testing.assert_close(D.abs(), torch.full((16, 100), 0.25, dtype=torch.float64))


def test_gaussian_float16_and_low_precision_paths() -> None:
    A = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    for kind in KINDS:
        S = make_sketch(kind, 64, 8, generator=0)
        out = S @ A.to(torch.bfloat16)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), (S.to_dense().float() @ A), atol=0.1,
                                   rtol=0.05)


def test_same_seed_same_sketch_different_seed_differs() -> None:
    for kind in KINDS:
        a = make_sketch(kind, 200, 20, generator=5).to_dense()
        b = make_sketch(kind, 200, 20, generator=5).to_dense()
        c = make_sketch(kind, 200, 20, generator=6).to_dense()
        assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------
def test_unknown_kind_lists_valid_options() -> None:
    pattern = r"'kind'.*'gaussian'.*'srht'.*'countsketch'.*'sparse_sign'.*'fourier'"
    with pytest.raises(InvalidParameterError, match=pattern):
        sketch(np.ones((4, 2)), 2, kind="fourier")
    with pytest.raises(InvalidParameterError, match="'kind'"):
        make_sketch("nope", 4, 2)


@pytest.mark.parametrize("size", [0, -3, 2.5, "4", None])
def test_bad_size(size: object) -> None:
    with pytest.raises(InvalidParameterError, match=f"'size'.*Got {size!r}"):
        sketch(np.ones((4, 2)), size)  # type: ignore[arg-type]


def test_bad_side_and_shapes() -> None:
    with pytest.raises(InvalidParameterError, match="'side'.*'top'"):
        sketch(np.ones((4, 2)), 2, side="top")
    S = GaussianSketch(10, 3, generator=0)
    with pytest.raises(ShapeError, match=r"d=10.*Got shape \(9, 2\)"):
        S @ np.ones((9, 2))
    with pytest.raises(ShapeError, match=r"d=10"):
        np.ones((2, 9)) @ S.T
    with pytest.raises(ShapeError, match="d=10"):
        S @ sp.csr_matrix(np.ones((9, 2)))


def test_nan_inf_empty_and_wrong_types() -> None:
    A = np.ones((6, 2))
    A[1, 1] = np.nan
    with pytest.raises(InvalidParameterError, match="'A'.*NaN"):
        sketch(A, 3, kind="sparse_sign", generator=0)
    with pytest.raises(InvalidParameterError, match="'A'.*NaN"):
        sketch(torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), 1, generator=0)
    Asp = sp.csr_matrix(np.eye(4))
    Asp.data[0] = np.inf
    with pytest.raises(InvalidParameterError, match="'A'"):
        sketch(Asp, 2, kind="countsketch", generator=0)
    with pytest.raises(ShapeError, match="non-empty"):
        sketch(np.ones((0, 3)), 2)
    with pytest.raises(ShapeError, match="non-empty"):
        sketch(np.ones((3, 0)), 2)
    with pytest.raises(InvalidParameterError, match="'A'"):
        sketch("matrix", 2)
    with pytest.raises(InvalidParameterError, match="'A'"):
        sketch([["a", "b"]], 2)
    with pytest.raises(InvalidParameterError, match="'generator'"):
        sketch(np.ones((4, 2)), 2, generator="seed")


def test_bad_operator_parameters() -> None:
    with pytest.raises(InvalidParameterError, match=r"'size'.*n_padded=8.*Got 9"):
        SRHTSketch(5, 9)
    with pytest.raises(InvalidParameterError, match=r"'nnz'.*size=4.*Got 5"):
        SparseSignSketch(10, 4, nnz=5)
    with pytest.raises(InvalidParameterError, match="'nnz'.*Got 0"):
        sketch(np.ones((10, 2)), 4, kind="sparse_sign", nnz=0)
    with pytest.raises(InvalidParameterError, match="'d'.*Got 0"):
        CountSketch(0, 4)
    with pytest.raises(InvalidParameterError, match="'dtype'"):
        GaussianSketch(4, 2, dtype=torch.int64)
