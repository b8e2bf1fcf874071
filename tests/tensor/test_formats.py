import numpy as np
import pytest
import torch
from _tensor_planted import planted_cp, planted_tt, planted_tucker, random_indices, rel

from rankfold._errors import InvalidParameterError, ShapeError
from rankfold.tensor import (
    CPTensor,
    TTTensor,
    TuckerTensor,
    fold,
    khatri_rao,
    mode_dot,
    mttkrp,
    multi_mode_dot,
    unfold,
)

TOLS = {torch.float32: 1e-5, torch.float64: 1e-12}


def test_cp_to_tensor_closed_form(dtype):
    a = torch.tensor([[1.0], [2.0]], dtype=dtype)
    b = torch.tensor([[3.0], [4.0], [5.0]], dtype=dtype)
    c = torch.tensor([[1.0], [-1.0]], dtype=dtype)
    cp = CPTensor(torch.tensor([2.0], dtype=dtype), [a, b, c])
    X = cp.to_tensor()
    assert X.dtype == dtype
    assert X[1, 2, 1].item() == pytest.approx(2 * 2 * 5 * -1)
    assert cp.norm() == pytest.approx(float(torch.linalg.vector_norm(X)), rel=1e-6)


@pytest.mark.parametrize("make", ["cp", "tucker", "tt"])
def test_values_at_matches_to_tensor(make, dtype):
    shape = (4, 5, 6, 3)
    t = {"cp": lambda: planted_cp(shape, 3, dtype=dtype),
         "tucker": lambda: planted_tucker(shape, (2, 3, 2, 2), dtype=dtype),
         "tt": lambda: planted_tt(shape, (2, 3, 2), dtype=dtype)}[make]()
    X = t.to_tensor()
    idx = random_indices(shape, 50, seed=3)
    vals = t.values_at(idx)
    ref = X[tuple(torch.from_numpy(idx).T)]
    assert vals.dtype == dtype
    assert rel(vals, ref) < TOLS[dtype]
    assert t.norm() == pytest.approx(float(torch.linalg.vector_norm(X.double())), rel=1e-5)


@pytest.mark.parametrize("make", ["cp", "tucker", "tt"])
def test_normalize_arrange_and_conversions_keep_the_tensor(make):
    shape = (4, 5, 6)
    t = {"cp": lambda: planted_cp(shape, 3),
         "tucker": lambda: planted_tucker(shape, (2, 3, 2)),
         "tt": lambda: planted_tt(shape, (2, 3))}[make]()
    X = t.to_tensor()
    for other in (t.normalize(), t.arrange()):
        assert rel(other.to_tensor(), X) < 1e-12
    if make != "tt":
        assert rel(t.to_tt().to_tensor(), X) < 1e-12
    if make == "cp":
        assert rel(t.to_tucker().to_tensor(), X) < 1e-12


def test_cp_arrange_sorts_and_fixes_signs():
    cp = planted_cp((4, 5, 6), 3)
    w, fs = cp.weights, cp.factors
    flipped = CPTensor(-w.flip(0), [-fs[0].flip(1), fs[1].flip(1), fs[2].flip(1)])
    a, b = cp.arrange(), flipped.arrange()
    assert bool((a.weights[:-1] >= a.weights[1:]).all())
    assert bool((a.weights >= 0).all())
    for fa, fb in zip(a.factors, b.factors, strict=True):
        torch.testing.assert_close(fa, fb)
    for f in a.factors:
        assert torch.allclose(torch.linalg.vector_norm(f, dim=0), torch.ones(3, dtype=f.dtype))


def test_tucker_arrange_is_all_orthogonal():
    t = planted_tucker((5, 6, 7), (2, 3, 4)).arrange()
    for k in range(3):
        G = unfold(t.core, k)
        gram = G @ G.T
        off = gram - torch.diag(torch.diagonal(gram))
        assert float(off.abs().max()) < 1e-10
        d = torch.diagonal(gram)
        assert bool((d[:-1] >= d[1:] - 1e-12).all())
        torch.testing.assert_close(t.factors[k].T @ t.factors[k],
                                   torch.eye(t.ranks[k], dtype=torch.float64))


def test_tt_normalize_left_orthogonal():
    t = planted_tt((4, 5, 6), (3, 2)).normalize()
    for g in t.cores[:-1]:
        M = g.reshape(-1, g.shape[2])
        torch.testing.assert_close(M.T @ M, torch.eye(M.shape[1], dtype=torch.float64))


def test_numpy_in_numpy_out():
    rng = np.random.default_rng(0)
    cp = CPTensor(None, [rng.standard_normal((3, 2)), rng.standard_normal((4, 2))])
    assert isinstance(cp.to_tensor(), np.ndarray)
    assert isinstance(cp.weights, np.ndarray)
    assert isinstance(cp.values_at([[0, 1]]), np.ndarray)
    w, fs = cp
    assert w.shape == (2,) and len(fs) == 2
    assert isinstance(cp.as_torch().to_tensor(), torch.Tensor)


def test_unfold_fold_khatri_rao_mttkrp():
    cp = planted_cp((3, 4, 5), 2)
    X = cp.to_tensor()
    fs = cp.factors
    for n in range(3):
        others = [fs[k] for k in range(3) if k != n]
        Xn = unfold(X, n)
        torch.testing.assert_close(fold(Xn, n, X.shape), X)
        torch.testing.assert_close(Xn, (fs[n] * cp.weights) @ khatri_rao(others).T)
        torch.testing.assert_close(mttkrp(X, fs, n), Xn @ khatri_rao(others))
    M = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Y = mode_dot(X, M, 1)
    torch.testing.assert_close(unfold(Y, 1), M @ unfold(X, 1))
    torch.testing.assert_close(multi_mode_dot(X, [None, M, None]), Y)
    torch.testing.assert_close(mode_dot(X, M.T, 1, transpose=True), Y)


@pytest.mark.parametrize("bad, match", [
    (lambda: CPTensor(None, []), "'factors'"),
    (lambda: CPTensor(None, [np.ones((3, 2)), np.ones((4, 3))]), "same number of columns"),
    (lambda: CPTensor(np.ones(3), [np.ones((3, 2)), np.ones((4, 2))]), "'weights'"),
    (lambda: CPTensor(None, [np.ones((3, 0)), np.ones((4, 0))]), "rank >= 1"),
    (lambda: CPTensor(None, [np.full((3, 2), np.nan), np.ones((4, 2))]), "NaN"),
    (lambda: CPTensor(None, [np.ones(3), np.ones((4, 1))]), "factors\\[0\\]"),
    (lambda: CPTensor(None, [torch.ones(3, 1), torch.ones(4, 1, dtype=torch.float64)]),
     "same dtype"),
    (lambda: TuckerTensor(np.ones((2, 2)), [np.ones((3, 2))]), "one matrix per core mode"),
    (lambda: TuckerTensor(np.ones((2, 2)), [np.ones((3, 2)), np.ones((3, 3))]),
     "factors\\[1\\]"),
    (lambda: TTTensor([np.ones((2, 3, 1))]), "boundary ranks"),
    (lambda: TTTensor([np.ones((1, 3, 2)), np.ones((3, 3, 1))]), "matching ranks"),
    (lambda: TTTensor([np.ones((1, 3))]), "3 dimensions"),
])
def test_bad_formats(bad, match):
    with pytest.raises((InvalidParameterError, ShapeError), match=match):
        bad()


@pytest.mark.parametrize("idx, match", [
    ([[0, 0]], "shape \\(N, 3\\)"),
    ([[0, 0, 6]], "in range \\[0, 5\\] along mode 2"),
    ([[-1, 0, 0]], "along mode 0"),
    ([[0.5, 0, 0]], "integer"),
])
def test_bad_indices(idx, match):
    cp = planted_cp((4, 5, 6), 2)
    with pytest.raises((InvalidParameterError, ShapeError), match=match):
        cp.values_at(idx)
