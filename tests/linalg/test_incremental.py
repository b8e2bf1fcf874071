"""IncrementalSVD against the batch SVD; concatenated-matrix bound and grouping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rankfold import InvalidParameterError, NotFittedError, ShapeError
from rankfold.linalg import (
    IncrementalSVD,
    concatenated_error_bound,
    group_for_compression,
    svd_update,
)

TOL = {torch.float32: 5e-4, torch.float64: 1e-9}


def _rel(A: torch.Tensor, B: torch.Tensor) -> float:
    A64, B64 = A.to(torch.float64), B.to(torch.float64)
    return float(torch.linalg.matrix_norm(A64 - B64) / torch.linalg.matrix_norm(A64))


def _opt_err(A: torch.Tensor, r: int) -> float:
    return float(torch.linalg.svdvals(A.to(torch.float64))[r:].norm())


# ---------------------------------------------------------------------------------------
# IncrementalSVD


@pytest.mark.parametrize("block", [4, 40])
def test_incremental_equals_batch_svd_at_true_rank(planted, seed, dtype, block):
    A = planted(50, 80, 5, seed=seed, dtype=dtype)
    isvd = IncrementalSVD(8, block_size=block).fit(A)  # rank >= true rank
    assert isvd.n_columns_seen_ == 80
    U, S, Vh = isvd.U_, isvd.S_, isvd.Vh_
    assert U.dtype == dtype and Vh.shape == (8, 80)
    assert _rel(A, (U * S) @ Vh) < TOL[dtype]
    s = torch.linalg.svdvals(A.to(torch.float64))[:5]
    torch.testing.assert_close(S[:5].to(torch.float64), s, rtol=TOL[dtype], atol=0)
    # projector onto the top-5 left singular space agrees with the batch one
    Ub = torch.linalg.svd(A.to(torch.float64))[0][:, :5]
    P = U[:, :5].to(torch.float64)
    torch.testing.assert_close(P @ P.T, Ub @ Ub.T, atol=TOL[dtype] * 10, rtol=0)
    assert isvd.error_estimate_ <= 10 * TOL[dtype] * math.sqrt(isvd.total_energy_)


def test_incremental_error_estimate_is_exact_and_bounds(planted, seed, dtype):
    A = planted(40, 150, None, decay="slow", seed=seed, dtype=dtype)
    k = 6
    isvd = IncrementalSVD(k, block_size=20).fit(A)
    U, S, Vh = (t.to(torch.float64) for t in (isvd.U_, isvd.S_, isvd.Vh_))
    A64 = A.to(torch.float64)
    recon = float(torch.linalg.matrix_norm(A64 - (U * S) @ Vh))
    proj = float(torch.linalg.matrix_norm(A64 - U @ (U.T @ A64)))
    opt = _opt_err(A, k)
    est = isvd.error_estimate_
    rtol = 1e-8 if dtype == torch.float64 else 1e-3
    assert abs(recon - est) <= rtol * est  # exact: sum of discarded energies
    assert opt <= proj * (1 + rtol) and proj <= est * (1 + rtol)
    assert est < 1.5 * opt  # and not far from optimal on this matrix
    total = float((A64 ** 2).sum())
    assert abs(isvd.total_energy_ - total) <= 1e-6 * total
    assert abs(isvd.relative_error_estimate_ - est / math.sqrt(total)) < 1e-12


def test_partial_fit_numpy_single_columns_and_keep_vh_false():
    g = np.random.default_rng(0)
    A = g.standard_normal((30, 4)) @ g.standard_normal((4, 25))
    a = IncrementalSVD(4, keep_vh=False)
    b = IncrementalSVD(4)
    for j in range(25):
        a.partial_fit(A[:, j])  # 1-D column
        b.partial_fit(A[:, j:j + 1])
    assert a.Vh_ is None and isinstance(a.U_, np.ndarray)
    np.testing.assert_allclose(a.S_, b.S_, rtol=1e-10)
    np.testing.assert_allclose(a.U_ @ a.U_.T, b.U_ @ b.U_.T, atol=1e-10)
    np.testing.assert_allclose((b.U_ * b.S_) @ b.Vh_, A, atol=1e-10)
    # before n_columns_seen_ reaches rank fewer triplets are kept
    c = IncrementalSVD(4).partial_fit(A[:, :2])
    assert c.S_.shape == (2,)


def test_reorthogonalization_triggers_and_keeps_product():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(30, 60, generator=g, dtype=torch.float64)
    isvd = IncrementalSVD(5, reorth_tol=1e-300).fit(A)  # every update re-orthogonalises
    assert isvd.n_reorth_ > 0
    U = isvd.U_
    torch.testing.assert_close(U.T @ U, torch.eye(5, dtype=torch.float64), atol=1e-12, rtol=0)
    ref = IncrementalSVD(5).fit(A)
    torch.testing.assert_close((U * isvd.S_) @ isvd.Vh_, (ref.U_ * ref.S_) @ ref.Vh_,
                               atol=1e-10, rtol=0)


def test_long_stream_stays_orthonormal_float32(planted):
    A = planted(64, 1000, None, decay="fast", seed=3, dtype=torch.float32)
    isvd = IncrementalSVD(10, block_size=8, keep_vh=False).fit(A)
    U = isvd.U_
    drift = float((U.T @ U - torch.eye(10)).abs().max())
    assert drift < 1e-3
    assert isvd.error_estimate_ <= 1.01 * _opt_err(A, 10) + 1e-3 * math.sqrt(
        isvd.total_energy_)


def test_svd_update_function_matches_class():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(20, 30, generator=g, dtype=torch.float64)
    u1 = svd_update(None, None, None, A[:, :15], 4)
    u2 = svd_update(u1.U, u1.S, u1.Vh, A[:, 15:], 4)
    isvd = IncrementalSVD(4, block_size=15).fit(A)
    torch.testing.assert_close(u2.S, isvd.S_)
    assert abs(u1.discarded + u2.discarded - isvd.discarded_energy_) < 1e-9


def test_incremental_bad_inputs():
    with pytest.raises(NotFittedError, match="'U_'"):
        _ = IncrementalSVD(3).U_
    with pytest.raises(NotFittedError, match="'error_estimate_'|'discarded_energy_'"):
        _ = IncrementalSVD(3).error_estimate_
    with pytest.raises(InvalidParameterError, match=r"'rank' parameter of IncrementalSVD.*0"):
        IncrementalSVD(0).partial_fit(np.ones((5, 2)))
    with pytest.raises(InvalidParameterError, match=r"'rank'.*m=5.*Got 6"):
        IncrementalSVD(6).partial_fit(np.ones((5, 2)))
    with pytest.raises(InvalidParameterError, match=r"'keep_vh'.*'no'"):
        IncrementalSVD(2, keep_vh="no").partial_fit(np.ones((5, 2)))
    with pytest.raises(InvalidParameterError, match=r"'reorth_tol'.*-1"):
        IncrementalSVD(2, reorth_tol=-1.0).partial_fit(np.ones((5, 2)))
    with pytest.raises(InvalidParameterError, match=r"'block_size'.*Got 0"):
        IncrementalSVD(2, block_size=0).fit(np.ones((5, 2)))
    isvd = IncrementalSVD(2).partial_fit(np.ones((5, 2)))
    with pytest.raises(ShapeError, match=r"'block'.*m=5 rows.*\(6, 2\)"):
        isvd.partial_fit(np.ones((6, 2)))
    with pytest.raises(ShapeError, match=r"'block'.*\(5, 2, 1\)"):
        isvd.partial_fit(np.ones((5, 2, 1)))
    bad = np.ones((5, 2))
    bad[0, 0] = np.nan
    with pytest.raises(InvalidParameterError, match="'block'.*NaN"):
        isvd.partial_fit(bad)
    with pytest.raises(ShapeError, match="'block'.*non-empty"):
        isvd.partial_fit(np.ones((5, 0)))
    assert isvd.n_columns_seen_ == 2  # failed calls left the state untouched


# ---------------------------------------------------------------------------------------
# concatenated bound


def _blocks(seed: int, m: int, widths: list[int], decay: float) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for w in widths:
        k = min(m, w)
        U = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64)).Q
        V = torch.linalg.qr(torch.randn(w, k, generator=g, dtype=torch.float64)).Q
        s = decay ** torch.arange(k, dtype=torch.float64) * (1 + torch.rand(1, generator=g,
                                                                           dtype=torch.float64))
        out.append((U * s) @ V.T)
    return out


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(2, 25),
       widths=st.lists(st.integers(1, 12), min_size=1, max_size=5),
       rank=st.integers(1, 25), block_rank=st.one_of(st.none(), st.integers(1, 12)),
       decay=st.floats(0.3, 1.0))
def test_bound_is_an_upper_bound(seed, m, widths, rank, block_rank, decay):
    rank = min(rank, m)
    blocks = _blocks(seed, m, widths, decay)
    res = concatenated_error_bound(blocks, rank, block_rank=block_rank)
    exact = _opt_err(torch.cat(blocks, dim=1), rank)
    assert res.bound >= exact * (1 - 1e-9) - 1e-12
    assert res.weyl >= res.bound * (1 - 1e-12) - 1e-12
    assert abs(res.norm - float(torch.cat(blocks, dim=1).norm())) < 1e-9 * res.norm
    assert res.relative == pytest.approx(res.bound / res.norm)


def test_bound_is_exact_with_full_block_rank_and_tight_otherwise():
    blocks = _blocks(0, 30, [10, 15, 8, 20], 0.8)
    exact = _opt_err(torch.cat(blocks, dim=1), 6)
    full = concatenated_error_bound(blocks, 6, block_rank=30)
    assert full.bound == pytest.approx(exact, rel=1e-10)
    default = concatenated_error_bound(blocks, 6)
    assert exact <= default.bound < 1.2 * exact
    assert default.bound < default.weyl


def test_bound_accepts_numpy_list_and_stack(dtype):
    blocks = [b.to(dtype) for b in _blocks(1, 12, [6, 6, 6], 0.7)]
    a = concatenated_error_bound([b.numpy() for b in blocks], 3)
    b = concatenated_error_bound(torch.stack(blocks), 3)
    assert a.bound == pytest.approx(b.bound, rel=1e-12)


# ---------------------------------------------------------------------------------------
# grouping


def _families(seed: int, noise: float) -> tuple[list[torch.Tensor], list[int]]:
    g = torch.Generator().manual_seed(seed)
    bases = [torch.linalg.qr(torch.randn(40, 3, generator=g, dtype=torch.float64)).Q
             for _ in range(3)]
    labels = [0, 1, 2, 0, 1, 0, 2, 1, 0]
    mats = [bases[lab] @ torch.randn(3, 12, generator=g, dtype=torch.float64)
            + noise * torch.randn(40, 12, generator=g, dtype=torch.float64) for lab in labels]
    return mats, labels


def test_grouping_recovers_shared_subspaces(seed):
    mats, labels = _families(seed, 0.0)
    groups = group_for_compression(mats, 3, 1e-6)
    want = sorted(sorted(i for i, lab in enumerate(labels) if lab == c) for c in range(3))
    assert groups == want


@pytest.mark.parametrize("max_error", [0.05, 0.15, 0.3, 0.6])
def test_grouping_respects_max_error(seed, max_error):
    mats, _ = _families(seed, 0.08)
    groups = group_for_compression(mats, 3, max_error)
    assert sorted(i for grp in groups for i in grp) == list(range(len(mats)))
    for grp in groups:
        assert grp == sorted(grp)
        if len(grp) < 2:
            continue
        cat = torch.cat([mats[i] for i in grp], dim=1)
        assert _opt_err(cat, 3) <= max_error * float(cat.norm()) * (1 + 1e-12)
    if max_error >= 0.6:
        assert len(groups) < len(mats)  # loose thresholds do share


def test_grouping_larger_rank_merges_more():
    mats, _ = _families(2, 0.02)
    assert len(group_for_compression(mats, 9, 0.1)) == 1
    assert len(group_for_compression(mats, 3, 0.1)) == 3
    assert len(group_for_compression(mats, 3, 0.0)) == len(mats)


@pytest.mark.parametrize("call,exc,match", [
    (lambda M: concatenated_error_bound([], 2), InvalidParameterError, "'blocks'.*non-empty"),
    (lambda M: concatenated_error_bound("abc", 2), InvalidParameterError, "'blocks'"),
    (lambda M: concatenated_error_bound([M, np.ones((7, 3))], 2), ShapeError,
     r"same number of rows m=6.*\(7, 3\) at index 1"),
    (lambda M: concatenated_error_bound([M], 7), InvalidParameterError, r"'rank'.*m=6.*7"),
    (lambda M: concatenated_error_bound([M], 2, block_rank=0), InvalidParameterError,
     "'block_rank'.*0"),
    (lambda M: concatenated_error_bound([M, np.full((6, 2), np.nan)], 2), InvalidParameterError,
     r"'blocks\[1\]'.*NaN"),
    (lambda M: group_for_compression([M, M], 2, 1.5), InvalidParameterError,
     r"'max_error'.*\[0.0, 1.0\].*1.5"),
    (lambda M: group_for_compression([M, M], 2, -0.1), InvalidParameterError, "'max_error'"),
    (lambda M: group_for_compression([M, M], 0, 0.1), InvalidParameterError, "'rank'.*0"),
    (lambda M: group_for_compression([], 2, 0.1), InvalidParameterError, "'matrices'"),
    (lambda M: group_for_compression([M, np.ones(6)], 2, 0.1), ShapeError,
     r"'matrices\[1\]'.*2 dimensions"),
])
def test_concatenated_bad_inputs(call, exc, match):
    M = np.random.default_rng(0).standard_normal((6, 4))
    with pytest.raises(exc, match=match):
        call(M)
