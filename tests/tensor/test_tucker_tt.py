import warnings

import numpy as np
import pytest
import torch
from _tensor_planted import planted_tt, planted_tucker, rel

from rankfold._errors import InvalidParameterError, ShapeError
from rankfold.tensor import TuckerTensor, tensor_train, tucker
from rankfold.tensor.tucker import MISSING_METHODS, TUCKER_METHODS

SHAPE = (9, 10, 11)
RANKS = (2, 3, 4)


def _noise(X: torch.Tensor, level: float, seed: int) -> torch.Tensor:
    E = torch.randn(X.shape, generator=torch.Generator().manual_seed(seed), dtype=X.dtype)
    return X + level * E * torch.linalg.vector_norm(X) / torch.linalg.vector_norm(E)


@pytest.mark.filterwarnings("ignore::rankfold._errors.ConvergenceWarning")  # f32 fit noise
@pytest.mark.parametrize("method", sorted(TUCKER_METHODS))
def test_planted_tucker_recovered(method, seed, dtype):
    truth = planted_tucker(SHAPE, RANKS, seed=seed, dtype=dtype)
    X = truth.to_tensor()
    res = tucker(X, RANKS, method=method, generator=seed)
    t = res.tucker
    assert t.ranks == RANKS and t.dtype == dtype
    assert rel(t.to_tensor(), X) < (1e-10 if dtype == torch.float64 else 1e-4)
    for f in t.factors:  # orthonormal factors
        torch.testing.assert_close(f.T @ f, torch.eye(f.shape[1], dtype=dtype),
                                   atol=1e-4 if dtype == torch.float32 else 1e-10, rtol=0)


def test_hooi_improves_on_sthosvd_and_fit_never_decreases():
    X = _noise(planted_tucker(SHAPE, RANKS, seed=0).to_tensor(), 0.3, 0)
    st = tucker(X, RANKS, method="sthosvd")
    ho = tucker(X, RANKS, method="hooi", n_iter_max=30, conv_tol=0.0)
    assert ho.history[-1] >= st.history[-1] - 1e-12
    assert (np.diff(ho.history) >= -1e-12).all()
    assert ho.history[-1] == pytest.approx(1 - rel(ho.tucker.to_tensor(), X), abs=1e-9)


@pytest.mark.parametrize("tol", [0.05, 0.2, 0.5])
def test_sthosvd_meets_its_tolerance(tol, seed):
    g = torch.Generator().manual_seed(seed)
    # slowly decaying multilinear spectrum
    core = torch.randn(9, 10, 11, generator=g, dtype=torch.float64)
    core = core / (1 + torch.arange(9.0, dtype=torch.float64))[:, None, None]
    core = core / (1 + torch.arange(10.0, dtype=torch.float64))[None, :, None]
    X = core + 0.0
    res = tucker(X, tol=tol, method="sthosvd")
    err = rel(res.tucker.to_tensor(), X)
    assert err <= tol
    assert max(res.tucker.ranks) < 11 or tol <= 0.05


def test_hooi_with_tol_only_picks_ranks():
    X = planted_tucker(SHAPE, RANKS, seed=1).to_tensor()
    res = tucker(X, tol=1e-6)
    assert res.tucker.ranks == RANKS


@pytest.mark.parametrize("missing", sorted(MISSING_METHODS))
def test_masked_tucker_recovers_held_out(missing):
    truth = planted_tucker(SHAPE, RANKS, seed=3)
    X = truth.to_tensor()
    mask = torch.rand(SHAPE, generator=torch.Generator().manual_seed(3)) > 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = tucker(torch.where(mask, X, torch.nan), RANKS, mask=mask, missing=missing,
                     n_iter_max=300, conv_tol=1e-14)
    assert rel(res.tucker.to_tensor()[~mask], X[~mask]) < 1e-3
    assert (np.diff(res.history) >= -1e-9).all()


def test_tucker_all_ones_mask_equals_unmasked():
    X = _noise(planted_tucker(SHAPE, RANKS, seed=0).to_tensor(), 0.1, 0)
    a = tucker(X, RANKS, n_iter_max=5, conv_tol=0.0)
    b = tucker(X, RANKS, mask=np.ones(SHAPE, bool), n_iter_max=5, conv_tol=0.0)
    torch.testing.assert_close(a.tucker.to_tensor(), b.tucker.to_tensor())


def test_tucker_numpy_and_init():
    X = planted_tucker(SHAPE, RANKS, seed=0).to_tensor().numpy()
    res = tucker(X, RANKS, method="sthosvd")
    assert isinstance(res.tucker.core, np.ndarray)
    again = tucker(X, RANKS, init=res.tucker, n_iter_max=2)
    # The fit comes from ||X||^2 - ||G||^2, which resolves errors only down to about
    # sqrt(eps) ~ 1.5e-8 relative; below that the comparison is summation-order noise.
    assert again.history[0] >= res.history[0] - 1e-7
    rnd = tucker(X, RANKS, init="random", generator=0, n_iter_max=100)
    assert rnd.history[-1] > 1 - 1e-8


@pytest.mark.parametrize("kw, match", [
    ({"ranks": 0}, "'ranks\\[0\\]' parameter of tucker must be an int in \\[1, 4\\]"),
    ({"ranks": (2, 2, 2, 2)}, "'ranks'.*sequence of 3 ints"),
    ({"ranks": (2, 9, 2)}, "'ranks\\[1\\]'.*\\[1, 5\\]"),
    ({"ranks": None}, "needs 'ranks' or 'tol'"),
    ({"tol": 1.5}, "'tol'"),
    ({"method": "svd"}, "'method'.*'hooi', 'sthosvd', 'randomized'"),
    ({"mask": np.ones((4, 5))}, "'mask'.*shape of X"),
    ({"init": "nope"}, "'init'"),
    ({"init": TuckerTensor(np.ones((1, 1, 1)), [np.ones((4, 1)), np.ones((5, 1)),
                                                np.ones((6, 1))])}, "'init'.*ranks"),
    ({"missing": "x"}, "'missing'"),
    ({"n_iter_max": -1}, "'n_iter_max'"),
    ({"conv_tol": -1}, "'conv_tol'"),
])
def test_tucker_bad_inputs(kw, match):
    X = np.ones((4, 5, 6))
    args = {"ranks": 2, **kw}
    with pytest.raises((InvalidParameterError, ShapeError), match=match):
        tucker(X, **args)


def test_tucker_randomized_needs_ranks():
    with pytest.raises(InvalidParameterError, match="'ranks'.*randomized"):
        tucker(np.ones((4, 5, 6)), tol=0.1, method="randomized")


# ---------------------------------------------------------------------------- TT


def test_planted_tt_recovered(seed, dtype):
    truth = planted_tt((5, 6, 7, 4), (2, 3, 2), seed=seed, dtype=dtype)
    X = truth.to_tensor()
    tt = tensor_train(X, ranks=(2, 3, 2))
    assert tt.ranks == (1, 2, 3, 2, 1) and tt.dtype == dtype
    assert rel(tt.to_tensor(), X) < (1e-10 if dtype == torch.float64 else 1e-4)
    auto = tensor_train(X, tol=1e-5 if dtype == torch.float64 else 1e-3)
    assert auto.ranks == (1, 2, 3, 2, 1)


@pytest.mark.parametrize("tol", [0.1, 0.3])
def test_tt_meets_tolerance(tol):
    X = torch.randn(5, 6, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tt = tensor_train(X, tol=tol)
    assert rel(tt.to_tensor(), X) <= tol
    assert tt.ranks[1] * tt.ranks[2] < 5 * 7 * 6


@pytest.mark.parametrize("ranks, match", [
    (0, "'ranks'.*\\[1, inf\\)"),
    ((2, 2, 2), "'ranks'.*2 inner TT ranks"),
    ((2, 2, 2, 2), "'ranks'.*start.*1"),
    ((2, 0), "'ranks\\[1\\]'"),
    ("2", "'ranks'"),
])
def test_tt_bad_ranks(ranks, match):
    with pytest.raises(InvalidParameterError, match=match):
        tensor_train(np.ones((3, 4, 5)), ranks)


def test_tt_bad_tol_and_tensor():
    with pytest.raises(InvalidParameterError, match="'tol'"):
        tensor_train(np.ones((3, 4, 5)), tol=1.0)
    with pytest.raises(InvalidParameterError, match="NaN"):
        tensor_train(np.full((3, 4), np.nan))
