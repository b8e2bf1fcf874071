import warnings

import numpy as np
import pytest
import torch
from _tensor_planted import planted_cp, rel

from rankfold._errors import InvalidParameterError, ShapeError
from rankfold.tensor import CPTensor, cp
from rankfold.tensor.cp import MISSING_METHODS

SHAPE = (8, 9, 10)


def _noisy(t: CPTensor, level: float, seed: int) -> torch.Tensor:
    X = t.to_tensor()
    g = torch.Generator().manual_seed(seed + 100)
    E = torch.randn(X.shape, generator=g, dtype=X.dtype)
    return X + level * E * torch.linalg.vector_norm(X) / torch.linalg.vector_norm(E)


@pytest.mark.parametrize("init", ["svd", "random"])
def test_planted_cp_recovered(init, seed, dtype):
    truth = planted_cp(SHAPE, 3, seed=seed, dtype=dtype)
    X = truth.to_tensor()
    f64 = dtype == torch.float64
    res = cp(X, 3, init=init, generator=seed, n_iter_max=500 if f64 else 300,
             tol=1e-12 if f64 else 0.0)
    assert res.cp.dtype == dtype
    tol = 1e-6 if dtype == torch.float64 else 2e-3
    assert rel(res.cp.to_tensor(), X) < tol
    assert res.history[-1] > 1 - tol


def test_factors_match_up_to_permutation_and_scaling():
    truth = planted_cp(SHAPE, 3, seed=1)
    res = cp(truth.to_tensor(), 3, n_iter_max=500, tol=1e-14)
    a, b = truth.arrange(), res.cp.arrange()
    torch.testing.assert_close(a.weights, b.weights, rtol=1e-6, atol=1e-8)
    for fa, fb in zip(a.factors, b.factors, strict=True):
        torch.testing.assert_close(fa, fb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [{}, {"line_search": True}, {"nonneg": True},
                                {"init": "random"}])
def test_fit_never_decreases(kw, seed):
    truth = planted_cp(SHAPE, 4, seed=seed, nonneg=kw.get("nonneg", False))
    X = _noisy(truth, 0.1, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cp(X, 3, n_iter_max=40, tol=0.0, generator=seed, **kw)
    h = np.array(res.history)
    assert len(h) == 40
    assert (np.diff(h) >= -1e-10).all()
    # the reported fit is the true fit of the returned model
    assert h[-1] == pytest.approx(1 - rel(res.cp.to_tensor(), X), abs=1e-9)


@pytest.mark.parametrize("missing", sorted(MISSING_METHODS))
def test_masked_fit_never_decreases_and_matches_observed_error(missing):
    truth = planted_cp(SHAPE, 3, seed=2)
    X = _noisy(truth, 0.05, 2)
    mask = torch.rand(SHAPE, generator=torch.Generator().manual_seed(5)) > 0.3
    res = cp(torch.where(mask, X, torch.nan), 3, mask=mask, missing=missing, n_iter_max=30,
             tol=0.0)
    h = np.array(res.history)
    assert (np.diff(h) >= -1e-10).all()
    M = res.cp.to_tensor()
    assert h[-1] == pytest.approx(1 - rel(M[mask], X[mask]), abs=1e-9)


@pytest.mark.parametrize("missing", sorted(MISSING_METHODS))
def test_all_ones_mask_equals_unmasked(missing):
    X = _noisy(planted_cp(SHAPE, 3, seed=0), 0.05, 0)
    a = cp(X, 3, n_iter_max=15, tol=0.0)
    b = cp(X, 3, mask=torch.ones(SHAPE, dtype=torch.bool), missing=missing, n_iter_max=15,
           tol=0.0)
    torch.testing.assert_close(a.cp.to_tensor(), b.cp.to_tensor())
    assert a.history == b.history


@pytest.mark.parametrize("missing", sorted(MISSING_METHODS))
@pytest.mark.parametrize("frac", [0.1, 0.5])
def test_held_out_entries_recovered(missing, frac, seed):
    truth = planted_cp(SHAPE, 3, seed=seed)
    X = truth.to_tensor()
    mask = torch.rand(SHAPE, generator=torch.Generator().manual_seed(seed)) >= frac
    Xm = X.clone()
    Xm[~mask] = torch.nan
    res = cp(Xm, 3, mask=mask, missing=missing, n_iter_max=1000, tol=1e-13, generator=seed)
    assert rel(res.cp.to_tensor()[~mask], X[~mask]) < 1e-4


def test_nonneg_factors_are_nonnegative():
    truth = planted_cp(SHAPE, 3, seed=0, nonneg=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cp(truth.to_tensor(), 3, nonneg=True, n_iter_max=300, tol=1e-12, init="random",
                 generator=0)
    assert all(bool((f >= 0).all()) for f in res.cp.factors)
    assert res.history[-1] > 0.99


def test_l2_reg_shrinks():
    X = planted_cp(SHAPE, 3, seed=0).to_tensor()
    a = cp(X, 3, n_iter_max=20, tol=0.0)
    b = cp(X, 3, n_iter_max=20, tol=0.0, l2_reg=5.0)
    assert b.cp.norm() < a.cp.norm()


def test_seeds_reproducible_and_cptensor_init():
    X = _noisy(planted_cp(SHAPE, 3, seed=0), 0.2, 0)
    a = cp(X, 3, init="random", generator=11, n_iter_max=5, tol=0.0)
    b = cp(X, 3, init="random", generator=11, n_iter_max=5, tol=0.0)
    c = cp(X, 3, init="random", generator=12, n_iter_max=5, tol=0.0)
    torch.testing.assert_close(a.cp.to_tensor(), b.cp.to_tensor(), rtol=0, atol=0)
    assert not torch.allclose(a.cp.to_tensor(), c.cp.to_tensor())
    d = cp(X, 3, init=a.cp, n_iter_max=5, tol=0.0)
    assert d.history[0] >= a.history[-1] - 1e-12


def test_numpy_in_numpy_out_and_rank_above_dims():
    X = np.random.default_rng(0).standard_normal((3, 4, 5))
    res = cp(X, 6, n_iter_max=5, tol=0.0, generator=0)
    assert isinstance(res.cp.weights, np.ndarray)
    assert res.cp.rank == 6


def test_matrix_case_matches_svd():
    A = torch.randn(12, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    res = cp(A, 2, n_iter_max=2000, tol=1e-15)
    U, S, Vh = torch.linalg.svd(A)
    best = (U[:, :2] * S[:2]) @ Vh[:2]
    assert rel(res.cp.to_tensor(), best) < 1e-5


X0 = np.random.default_rng(0).standard_normal((4, 5, 6))


@pytest.mark.parametrize("kw, match", [
    ({"rank": 0}, "'rank' parameter of cp must be an int in \\[1, inf\\)"),
    ({"rank": 2.5}, "'rank'"),
    ({"mask": np.ones((4, 5))}, "'mask' parameter of cp must have the shape"),
    ({"mask": np.full((4, 5, 6), 2)}, "'mask'.*0 and 1"),
    ({"mask": np.zeros((4, 5, 6), bool)}, "'mask'.*all-False"),
    ({"init": "nope"}, "'init'.*'svd', 'random'"),
    ({"init": CPTensor(None, [np.ones((4, 3)), np.ones((5, 3)), np.ones((6, 3))])},
     "'init'.*rank 2"),
    ({"n_iter_max": 0}, "'n_iter_max'"),
    ({"tol": -1.0}, "'tol'"),
    ({"l2_reg": -1.0}, "'l2_reg'"),
    ({"nonneg": "yes"}, "'nonneg'"),
    ({"missing": "magic"}, "'missing'.*'als', 'em'"),
    ({"generator": "seed"}, "'generator'"),
])
def test_bad_inputs(kw, match):
    args = {"rank": 2, **kw}
    with pytest.raises((InvalidParameterError, ShapeError), match=match):
        cp(X0, **args)


def test_bad_tensors():
    with pytest.raises(ShapeError, match="at least 2 modes"):
        cp(np.ones(5), 1)
    bad = X0.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InvalidParameterError, match="mask=~isnan"):
        cp(bad, 2)
    mask = np.ones(X0.shape, bool)
    mask[1, 1, 1] = False
    with pytest.raises(InvalidParameterError, match="finite where mask is True"):
        cp(bad, 2, mask=mask)
    with pytest.raises(ShapeError, match="non-empty"):
        cp(np.ones((0, 3, 2)), 1)
