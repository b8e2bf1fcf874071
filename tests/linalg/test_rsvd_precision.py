"""rsvd(precision=...): bfloat16 range finding with a float32 projection, and its guard."""

from __future__ import annotations

import importlib
import logging

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from rankfold import InvalidParameterError
from rankfold.linalg import RSVD, RSVD_METHODS, _range, rsvd

rsvd_module = importlib.import_module("rankfold.linalg.rsvd")  # the module, not the function
LOGGER = "rankfold.linalg.rsvd"


def _slow_decay(m: int, n: int, seed: int, dtype: torch.dtype = torch.float32,
                decay: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, n, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    s = (1.0 + torch.arange(n, dtype=torch.float64)) ** -decay
    return ((U * s) @ V.T).to(dtype), s


def _err(A: torch.Tensor, res: tuple) -> float:
    U, S, Vh = (x.to(torch.float64) for x in res)
    return float(torch.linalg.matrix_norm(A.to(torch.float64) - (U * S) @ Vh))


@pytest.mark.parametrize("method", sorted(RSVD_METHODS))
def test_mixed_matches_full_accuracy_on_slow_decay(method: str, seed: int,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    # the error here is ~70% of ||A||_F, so the bf16 bound passes and no refinement runs
    A, s = _slow_decay(600, 300, seed)
    k = 20
    opt = float(s[k:].square().sum().sqrt())
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        mixed = rsvd(A, k, method=method, n_iter=3, precision="mixed", generator=seed)
    assert not any("full-precision power iteration" in r.message for r in caplog.records)
    full = rsvd(A, k, method=method, n_iter=3, precision="full", generator=seed)
    assert mixed.U.dtype == torch.float32 and mixed.S.shape == (k,)
    e_mixed, e_full = _err(A, mixed), _err(A, full)
    # rounding A to bf16 is a second-order effect on the error of the basis
    assert e_mixed <= e_full * (1 + 2e-3)
    assert e_mixed <= 1.01 * opt
    # singular values: as close to the exact ones as the float32 run's
    dev_mixed = (mixed.S.double() - s[:k]).abs().max()
    dev_full = (full.S.double() - s[:k]).abs().max()
    assert dev_mixed <= 1.5 * dev_full + 1e-4
    assert torch.allclose(mixed.S[:5].double(), s[:5], rtol=1e-3)


def test_mixed_refines_when_rounding_would_matter(seed: int,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    # rank 8 plus tiny noise: the error is ~1e-4 of ||A||_F, far below the bf16 rounding
    # (2**-9 ||A||_F), so a bf16-only basis would be ~1e-3 off; the guard adds a float32
    # power iteration and the result is as accurate as a float32 run
    g = torch.Generator().manual_seed(seed)
    L = torch.randn(400, 8, generator=g) @ torch.randn(8, 300, generator=g)
    A = L + 1e-5 * torch.randn(400, 300, generator=g)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        res = rsvd(A, 8, precision="mixed", generator=seed)
    assert any("full-precision power iteration" in r.message for r in caplog.records)
    full = rsvd(A, 8, precision="full", generator=seed)
    noise = float(torch.linalg.matrix_norm((A - L).double()))
    assert _err(A, res) <= 1.05 * max(_err(A, full), noise)
    # and without the guard the bf16 basis alone is clearly worse: the guard is needed
    low = _range.bf16_copy(_range.as_linear_map(A, "A", "t"))
    Q = rsvd_module._subspace_range(low, 18, 4, torch.Generator().manual_seed(seed))
    U, S, Vh = rsvd_module._svd_of_projection(_range.as_linear_map(A, "A", "t"), Q)
    assert _err(A, (U[:, :8], S[:8], Vh[:8])) > 3 * _err(A, res)


def test_mixed_batched_and_float64(seed: int) -> None:
    A = torch.stack([_slow_decay(300, 120, seed + i)[0] for i in range(3)])
    res = rsvd(A, 10, precision="mixed", generator=seed)
    full = rsvd(A, 10, precision="full", generator=seed)
    assert res.U.shape == (3, 300, 10)
    for i in range(3):
        ri = (res.U[i], res.S[i], res.Vh[i])
        fi = (full.U[i], full.S[i], full.Vh[i])
        assert _err(A[i], ri) <= _err(A[i], fi) * (1 + 2e-3)
    A64, s = _slow_decay(300, 120, seed, dtype=torch.float64)
    r64 = rsvd(A64, 10, precision="mixed", generator=seed)
    assert r64.S.dtype == torch.float64
    assert _err(A64, r64) <= 1.01 * float(s[10:].square().sum().sqrt())


def test_full_rank_is_exact_with_mixed(seed: int) -> None:
    A, _ = _slow_decay(200, 50, seed)
    res = rsvd(A, 50, precision="mixed", generator=seed)
    assert _err(A, res) <= 1e-5 * float(torch.linalg.matrix_norm(A.double()))


def test_auto_picks_mixed_only_where_it_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []
    real = rsvd_module.bf16_copy

    def spy(A: _range.LinearMap) -> _range.LowPrecisionMap:
        calls.append(tuple(A.shape))
        return real(A)

    monkeypatch.setattr(rsvd_module, "bf16_copy", spy)
    monkeypatch.setattr(rsvd_module, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(rsvd_module, "_MIXED_MIN_ENTRIES", 10_000)
    A, _ = _slow_decay(200, 100, 0)
    rsvd(A, 5, generator=0)                                    # 20000 entries, 10 passes
    assert calls == [(200, 100)]
    rsvd(A, 5, n_iter=1, generator=0)                          # 4 passes: not worth it
    rsvd(A.double(), 5, generator=0)                           # float64: full precision
    rsvd(A[:50, :100], 5, generator=0)                         # below the size threshold
    rsvd(A, tol=0.1, generator=0)                              # small tol: full precision
    rsvd(sp.csr_array(A.numpy()), 5, generator=0)              # sparse: full precision
    assert len(calls) == 1
    rsvd(A, tol=0.5, generator=0)                              # large tol: mixed
    assert len(calls) == 2
    monkeypatch.setattr(rsvd_module, "cpu_has_fast_bf16", lambda: False)
    rsvd(A, 5, generator=0)
    assert len(calls) == 2
    # auto without bf16 hardware is exactly the full-precision result
    a, f = rsvd(A, 5, generator=3), rsvd(A, 5, precision="full", generator=3)
    assert torch.equal(a.S, f.S) and torch.equal(a.U, f.U)


@pytest.mark.parametrize("tol", [0.6, 0.3, 0.05])
def test_mixed_tol_mode_meets_the_tolerance(tol: float, seed: int) -> None:
    # the indicator comes from float32 projections: the tolerance holds at any tol, and
    # the rank found stays close to the full-precision one where auto would use mixed
    A, s = _slow_decay(800, 400, seed)
    mixed = rsvd(A, tol=tol, precision="mixed", generator=seed)
    full = rsvd(A, tol=tol, precision="full", generator=seed)
    nA = float(torch.linalg.matrix_norm(A.double()))
    assert _err(A, mixed) <= tol * nA * (1 + 1e-4)
    r_m, r_f = mixed.S.shape[0], full.S.shape[0]
    if tol >= rsvd_module._MIXED_MIN_TOL:
        assert r_m <= r_f + max(2, r_f // 20)
    sq = s.square()
    r_opt = int(next(r for r in range(1, len(s) + 1) if sq[r:].sum() <= tol**2 * sq.sum()))
    assert r_m >= r_opt


def test_precision_bad_input() -> None:
    A = np.random.default_rng(0).standard_normal((50, 40))
    with pytest.raises(InvalidParameterError, match="'precision'.*'half'"):
        rsvd(A, 3, precision="half")
    with pytest.raises(InvalidParameterError, match="'precision'.*sparse"):
        rsvd(sp.random(50, 40, density=0.2, random_state=0), 3, precision="mixed")


def test_estimator_passes_precision(seed: int) -> None:
    A, _ = _slow_decay(300, 100, seed)
    est = RSVD(5, precision="mixed", generator=seed).fit(A.numpy())
    assert est.components_.shape == (5, 100)
    assert est.precision == "mixed"


def test_validation_norm_is_reused_and_exact_enough() -> None:
    from rankfold.linalg._range import as_linear_map, fro_norm_sq

    A = torch.randn(300, 200, generator=torch.Generator().manual_seed(0))
    Amap = as_linear_map(A, "A", "test")
    assert Amap.fast_norm_sq is not None
    exact = float((A.double() ** 2).sum())
    assert abs(float(fro_norm_sq(Amap, fast=True)) - exact) <= 1e-5 * exact
    assert float(fro_norm_sq(Amap, fast=True)) == float(Amap.fast_norm_sq)


def test_huge_finite_values_are_not_reported_as_nan() -> None:
    # the squared norm overflows float32 here: validation must fall back to the exact
    # finiteness test instead of calling the input non-finite
    from rankfold.linalg._range import as_linear_map

    A = torch.full((64, 32), 3e19)
    Amap = as_linear_map(A, "A", "test")
    assert Amap.fast_norm_sq is None
    A[0, 0] = float("nan")
    with pytest.raises(InvalidParameterError, match="NaN"):
        as_linear_map(A, "A", "test")
