"""Tests of rankfold.linalg.sampling: leverage scores, Lewis weights, sampling."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp
import torch

from rankfold import ConvergenceWarning, InvalidParameterError, ShapeError
from rankfold.linalg import (
    LEVERAGE_METHODS,
    LEWIS_METHODS,
    SAMPLING_SCORES,
    leverage_scores,
    lewis_weights,
    lp_sensitivities,
    row_scores,
    sample_by_scores,
    sample_rows,
    sensitivity_bounds,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # small problems: threads only add synchronisation cost
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        threadpool_limits = contextlib.nullcontext
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def heavy(m: int, n: int, seed: int) -> np.ndarray:
    """Heavy-tailed design: Student-t(2) entries times log-normal row scales."""
    rng = np.random.default_rng(seed)
    return rng.standard_t(2, (m, n)) * np.exp(rng.standard_normal((m, 1)))


def exact_leverage(A: np.ndarray, rank: int | None = None) -> np.ndarray:
    U, s, _ = np.linalg.svd(A.astype(np.float64), full_matrices=False)
    r = rank if rank is not None else int((s > s[0] * max(A.shape) * 1e-15).sum())
    return (U[:, :r] ** 2).sum(axis=1)


def test_exact_leverage_matches_svd(dtype: torch.dtype, seed: int) -> None:
    A = heavy(400, 8, seed)
    tau = leverage_scores(torch.from_numpy(A).to(dtype))
    assert isinstance(tau, torch.Tensor) and tau.dtype == dtype and tau.shape == (400,)
    tol = 1e-4 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(tau.double().numpy(), exact_leverage(A), atol=tol)
    # wide / square path (thin SVD instead of QR first)
    B = heavy(12, 8, seed)
    np.testing.assert_allclose(leverage_scores(B), exact_leverage(B), atol=1e-12)


def test_leverage_rank_deficient_sums_to_rank(seed: int) -> None:
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((300, 4)) @ rng.standard_normal((4, 10))
    tau = leverage_scores(A)
    assert abs(tau.sum() - 4) < 1e-9
    np.testing.assert_allclose(tau, exact_leverage(A, rank=4), atol=1e-10)
    tau_s = leverage_scores(A, method="sketch", generator=seed)
    assert abs(tau_s.sum() - 4) < 1.5


def test_sketched_leverage_is_constant_factor_accurate(seed: int) -> None:
    A = heavy(3000, 10, seed)
    exact = exact_leverage(A)
    approx = leverage_scores(A, method="sketch", generator=seed, jl_dim=200)
    big = exact > 1e-3
    ratio = approx[big] / exact[big]
    assert np.median(np.abs(ratio - 1)) < 0.15
    assert 0.4 < ratio.min() and ratio.max() < 2.2
    # sparse input works through the sketch operator
    approx_sp = leverage_scores(sp.csr_matrix(A), method="sketch", generator=seed, jl_dim=200)
    assert np.median(np.abs(approx_sp[big] / exact[big] - 1)) < 0.15


def test_leverage_of_identity_block() -> None:
    A = np.vstack([np.eye(3), np.zeros((4, 3))])
    np.testing.assert_allclose(leverage_scores(A), [1, 1, 1, 0, 0, 0, 0], atol=1e-12)


def lewis_residual(A: np.ndarray, w: np.ndarray, p: float) -> float:
    """max relative violation of w_i^{2/p} = a_i^T (A^T W^{1-2/p} A)^{-1} a_i."""
    M = A.T @ (w[:, None] ** (1 - 2 / p) * A)
    q = np.einsum("ij,jk,ik->i", A, np.linalg.inv(M), A)
    big = w > 1e-8 * w.max()
    return float(np.abs(q[big] ** (p / 2) / w[big] - 1).max())


@pytest.mark.parametrize("p", [0.5, 1.0, 1.5, 3.0, 4.0, 6.0])
def test_lewis_weights_satisfy_fixed_point(p: float, seed: int) -> None:
    A = heavy(500, 5, seed)
    w = lewis_weights(A, p, tol=1e-10)
    assert abs(w.sum() - 5) < 1e-6
    assert lewis_residual(A, w, p) < 1e-7


def test_lewis_p2_is_leverage_and_methods_agree(dtype: torch.dtype) -> None:
    A = torch.from_numpy(heavy(300, 4, 1)).to(dtype)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(lewis_weights(A, 2), leverage_scores(A), atol=tol, rtol=tol)
    for method in LEWIS_METHODS:
        w = lewis_weights(A, 1.0, method=method,
                          tol=1e-5 if dtype == torch.float32 else 1e-10)
        assert w.dtype == dtype
        assert lewis_residual(A.double().numpy(), w.double().numpy(), 1.0) < (
            1e-3 if dtype == torch.float32 else 1e-7)


def test_lewis_zero_rows_and_rank_deficiency() -> None:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((200, 3)) @ rng.standard_normal((3, 6))
    A[:10] = 0.0
    w = lewis_weights(A, 1.0, tol=1e-10)
    assert np.all(w[:10] == 0)
    assert abs(w.sum() - 3) < 1e-6


def test_lewis_fixed_point_rejects_p_at_least_4() -> None:
    with pytest.raises(InvalidParameterError, match=r"'p'.*< 4.*'relaxed'.*Got 4"):
        lewis_weights(np.ones((5, 2)) + np.eye(5, 2), 4, method="fixed_point")


def test_lewis_warns_when_not_converged() -> None:
    with pytest.warns(ConvergenceWarning, match="stopped after 2 iterations"):
        lewis_weights(heavy(200, 4, 0), 1.0, n_iter=2, tol=1e-12)


def test_sensitivity_bounds_dominate_true_sensitivities() -> None:
    # compare with the sensitivity of random directions: |a_i x|^p / ||Ax||_p^p <= s_i
    A = heavy(300, 4, 2)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 2000))
    for p in (1.0, 2.0, 3.0):
        s = sensitivity_bounds(A, p)
        ratio = np.abs(A @ X) ** p / (np.abs(A @ X) ** p).sum(axis=0)
        assert np.all(ratio.max(axis=1) <= s + 1e-12)
        assert np.all(s <= 1.0)
    np.testing.assert_allclose(sensitivity_bounds(A, 2.0), exact_leverage(A), atol=1e-12)


def exact_l1_sensitivities(A: np.ndarray) -> np.ndarray:
    """s_i = 1 / min {||A x||_1 : a_i^T x = 1}, one linear program per row."""
    n, d = A.shape
    eye = np.eye(n)
    out = []
    for i in range(n):
        res = so.linprog(np.concatenate([np.zeros(d), np.ones(n)]),
                         A_ub=np.block([[A, -eye], [-A, -eye]]), b_ub=np.zeros(2 * n),
                         A_eq=np.concatenate([A[i], np.zeros(n)])[None], b_eq=[1.0],
                         bounds=[(None, None)] * d + [(0, None)] * n, method="highs")
        out.append(1.0 / res.fun)
    return np.array(out)


def test_lp_sensitivities_match_linear_programs() -> None:
    A = heavy(40, 3, 4)
    exact = exact_l1_sensitivities(A)
    est = lp_sensitivities(A, 1.0, n_iter=60)
    # IRLS values are feasible points: the estimates are lower bounds, and close
    assert np.all(est <= exact * (1 + 1e-9))
    np.testing.assert_allclose(est, exact, rtol=1e-2)
    assert np.all(est <= sensitivity_bounds(A, 1.0) + 1e-9)  # s_i <= w_i for p <= 2
    np.testing.assert_allclose(lp_sensitivities(A, 2.0), exact_leverage(A), atol=1e-12)
    np.testing.assert_allclose(lp_sensitivities(A, 3.0), sensitivity_bounds(A, 3.0))


def test_lp_sensitivities_with_embedding_are_close() -> None:
    A = heavy(600, 3, 5)
    full = lp_sensitivities(A, 1.0, embedding_rows=600)
    emb = lp_sensitivities(A, 1.0, embedding_rows=150, generator=0)
    ratio = emb / full
    assert np.median(np.abs(ratio - 1)) < 0.15 and ratio.min() > 0.4 and ratio.max() < 2.5
    with pytest.raises(InvalidParameterError, match="'embedding_rows'.*Got 0"):
        lp_sensitivities(A, 1.0, embedding_rows=0)
    with pytest.raises(InvalidParameterError, match="'n_iter'.*Got -1"):
        lp_sensitivities(A, 1.0, n_iter=-1)
    with pytest.raises(InvalidParameterError, match="'p'.*Got 0"):
        lp_sensitivities(A, 0)


@pytest.mark.parametrize("by", sorted(SAMPLING_SCORES))
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_sample_rows_preserves_lp_norm(by: str, p: float) -> None:
    A = heavy(2000, 4, 3)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4, 50))
    full = (np.abs(A @ X) ** p).sum(axis=0)
    ratios = []
    scores = row_scores(A, by=by, p=p, generator=0)  # score once, draw many times
    for s in range(8):
        idx, w = (sample_rows(A, 400, by=by, p=p, generator=s) if s == 0
                  else sample_by_scores(scores, 400, p=p, generator=s))
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0) and len(idx) <= 400
        est = (np.abs(w[:, None] * (A[idx] @ X)) ** p).sum(axis=0)
        ratios.append(est / full)
    ratios = np.array(ratios)
    # unbiased: the mean over draws and directions is close to 1 ...
    assert abs(ratios.mean() - 1) < 0.1
    # ... and each draw embeds every direction within a constant factor
    assert ratios.min() > 0.5 and ratios.max() < 1.6


def test_sample_rows_exact_weights_formula() -> None:
    A = np.vstack([np.eye(2), np.eye(2)])  # leverage 1/2 each: q = 1/4
    idx, w = sample_rows(A, 8, by="leverage", p=2.0, generator=0)
    counts = np.bincount(
        np.searchsorted(idx, idx), minlength=len(idx))  # one entry per distinct row
    assert counts.sum() == len(idx)
    # w^p = c / (m q): sum of w^2 over rows equals sum of counts / (m q) = 8 / (8/4) = 4
    assert abs((w**2).sum() - 4.0) < 1e-12


def test_row_scores_and_sample_by_scores_compose_to_sample_rows() -> None:
    A = heavy(120, 3, 1)  # <= 50 d rows: the sensitivity estimate is deterministic
    for by in SAMPLING_SCORES:
        sc = row_scores(A, by=by, p=1.5)
        assert sc.shape == (120,) and np.all(sc >= 0)
        i1, w1 = sample_by_scores(sc, 60, p=1.5, generator=9)
        i2, w2 = sample_rows(A, 60, by=by, p=1.5, generator=9)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_allclose(w1, w2, rtol=1e-12)
    tau = leverage_scores(A)
    np.testing.assert_allclose(row_scores(A, by="root_leverage", p=1.0), np.sqrt(tau),
                               atol=1e-12)
    np.testing.assert_allclose(row_scores(A, by="root_leverage", p=3.0), tau, atol=1e-12)
    with pytest.raises(InvalidParameterError, match="'scores'.*non-negative"):
        sample_by_scores(np.array([1.0, -1.0]), 3)
    with pytest.raises(InvalidParameterError, match="'scores'.*not all zero"):
        sample_by_scores(np.zeros(4), 3)
    with pytest.raises(ShapeError, match="'scores'"):
        sample_by_scores(np.ones((2, 2)), 3)
    with pytest.raises(InvalidParameterError, match="'scores'.*NaN"):
        sample_by_scores(np.array([1.0, np.nan]), 3)
    with pytest.raises(InvalidParameterError, match="'by'.*Got 'x'"):
        row_scores(A, by="x")


def test_sample_rows_reproducible_and_torch_io() -> None:
    A = torch.from_numpy(heavy(300, 3, 0)).float()
    i1, w1 = sample_rows(A, 50, by="lewis", p=1, generator=4)
    i2, w2 = sample_rows(A, 50, by="lewis", p=1, generator=4)
    assert isinstance(i1, torch.Tensor) and i1.dtype == torch.int64 and w1.dtype == torch.float32
    assert torch.equal(i1, i2) and torch.equal(w1, w2)


def test_every_registered_method_runs() -> None:
    A = heavy(100, 3, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in LEVERAGE_METHODS:
            assert leverage_scores(A, method=method, generator=0).shape == (100,)
        for method in LEWIS_METHODS:
            assert lewis_weights(A, 1.5, method=method).shape == (100,)
        for by in SAMPLING_SCORES:
            assert len(sample_rows(A, 20, by=by, p=1.5, generator=0)[0]) <= 20


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------
def test_bad_inputs() -> None:
    A = heavy(20, 3, 0)
    with pytest.raises(InvalidParameterError, match=r"'method'.*'exact'.*'sketch'.*Got 'qr'"):
        leverage_scores(A, method="qr")
    with pytest.raises(InvalidParameterError, match=r"'by'.*'leverage'.*'root_leverage'.*"
                                                    r"'lewis'.*'sensitivity'.*Got 'norm'"):
        sample_rows(A, 5, by="norm")
    for p in (0, -1.0, float("nan"), "1"):
        with pytest.raises(InvalidParameterError, match="'p'"):
            lewis_weights(A, p)  # type: ignore[arg-type]
        with pytest.raises(InvalidParameterError, match="'p'"):
            sample_rows(A, 5, p=p)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match=r"'m'.*Got 0"):
        sample_rows(A, 0)
    with pytest.raises(InvalidParameterError, match=r"'m'.*Got 2\.5"):
        sample_rows(A, 2.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="'n_iter'.*Got 0"):
        lewis_weights(A, 1, n_iter=0)
    with pytest.raises(InvalidParameterError, match="'tol'.*Got 0"):
        lewis_weights(A, 1, tol=0)
    with pytest.raises(InvalidParameterError, match="'method'.*Got 'newton'"):
        lewis_weights(A, 1, method="newton")
    with pytest.raises(InvalidParameterError, match="'jl_dim'.*Got 0"):
        leverage_scores(A, method="sketch", jl_dim=0)
    with pytest.raises(InvalidParameterError, match="'generator'"):
        sample_rows(A, 5, generator="x")
    bad = A.copy()
    bad[3, 1] = np.inf
    for f in (leverage_scores, lambda X: lewis_weights(X, 1), lambda X: sample_rows(X, 3)):
        with pytest.raises(InvalidParameterError, match="'A'.*NaN"):
            f(bad)
    with pytest.raises(ShapeError, match="non-empty"):
        leverage_scores(np.ones((0, 3)))
    with pytest.raises(ShapeError, match=r"'A'.*2 dimensions"):
        leverage_scores(np.ones(5))
    with pytest.raises(InvalidParameterError, match="'A'"):
        sample_rows("A", 3)
    with pytest.raises(InvalidParameterError, match="'A'.*nonzero row"):
        sample_rows(np.zeros((5, 2)), 3)
    with pytest.raises(InvalidParameterError, match="'A'"):
        leverage_scores(sp.linalg.aslinearoperator(A))
