"""Methods: exact at full rank; whitening is optimal for the output error (brute force)."""

from __future__ import annotations

import pytest
import torch
from _nn_models import gen

from rankfold._errors import InvalidParameterError
from rankfold.nn.calibration import LayerStats
from rankfold.nn.methods import METHODS, LayerContext, output_error, refit_update


def _ctx(m: int = 7, n: int = 5, rows: int = 200, seed: int = 0) -> tuple[LayerContext,
                                                                          torch.Tensor]:
    g = gen(seed)
    W = torch.randn(m, n, generator=g, dtype=torch.float64)
    b = torch.randn(m, generator=g, dtype=torch.float64)
    mix = torch.randn(n, n, generator=g, dtype=torch.float64) * torch.logspace(
        0, -1.5, n, dtype=torch.float64)
    X = torch.randn(rows, n, generator=g, dtype=torch.float64) @ mix + 0.3
    st = LayerStats(X.t() @ X, X.sum(0), X.abs().sum(0), rows)
    fisher = torch.rand(m, generator=g, dtype=torch.float64) + 0.1
    return LayerContext("layer", "linear", W, b, st, fisher), X


@pytest.mark.parametrize("name", sorted(METHODS))
@pytest.mark.parametrize("shape", [(7, 5), (4, 9)])
def test_full_rank_recovers_layer(name: str, shape: tuple[int, int], seed: int) -> None:
    ctx, X = _ctx(*shape, seed=seed)
    dec = METHODS[name](ctx)
    # Nystrom keeps input channels: its full rank is n
    f = dec.factors(shape[1] if name == "nystrom" else min(shape))
    y = X @ ctx.W.t() + ctx.bias
    y2 = (X @ f.B.t()) @ f.A.t() + f.bias
    torch.testing.assert_close(y2, y, atol=1e-7, rtol=1e-7)
    assert output_error(ctx, f) < 1e-6
    assert dec.spectrum.shape[0] >= min(shape)
    assert bool((dec.spectrum[:-1] >= dec.spectrum[1:] - 1e-12).all())


def _brute_force(W: torch.Tensor, X: torch.Tensor, k: int, restarts: int = 3,
                 iters: int = 150) -> float:
    """Alternating least squares from random starts: min over rank-k M of ||X (W - M)^T||^2."""
    Y = X @ W.t()
    ZtZ = X.t() @ X
    best = float("inf")
    for r in range(restarts):
        B = torch.randn(k, X.shape[1], generator=gen(100 + r), dtype=X.dtype)
        for _ in range(iters):
            H = X @ B.t()
            A = torch.linalg.solve(H.t() @ H, H.t() @ Y).t()
            # exact B-step: B^T = (X^T X)^-1 X^T Y A (A^T A)^-1
            B = torch.linalg.solve(A.t() @ A, torch.linalg.solve(ZtZ, X.t() @ Y @ A).t())
        best = min(best, float(((Y - X @ B.t() @ A.t()) ** 2).sum()))
    return best


def test_whitening_minimises_output_error_brute_force(seed: int) -> None:
    ctx, X = _ctx(6, 5, rows=80, seed=seed)
    k = 2
    f = METHODS["whiten"](ctx).factors(k)
    err_w = float(((X @ (ctx.W - f.A @ f.B).t()) ** 2).sum())
    err_bf = _brute_force(ctx.W, X, k)
    assert err_w <= err_bf * (1 + 1e-6)
    assert err_w >= err_bf * (1 - 1e-6)  # the brute force finds the same optimum
    f_svd = METHODS["svd"](ctx).factors(k)
    err_svd = float(((X @ (ctx.W - f_svd.A @ f_svd.B).t()) ** 2).sum())
    assert err_svd > err_w * 1.01  # whitening matters on correlated inputs


def test_update_is_least_squares_given_first_factor(seed: int) -> None:
    ctx, X = _ctx(6, 5, rows=80, seed=seed)
    g = gen(seed + 50)
    Xc = X + 0.1 * torch.randn(X.shape, generator=g, dtype=X.dtype)  # "compressed" inputs
    N = X.shape[0]
    B = METHODS["whiten"](ctx).factors(2).B
    f = refit_update(ctx.W, ctx.bias, B, mean_dense=X.mean(0), mean_comp=Xc.mean(0),
                     cross=X.t() @ Xc / N, gram_comp=Xc.t() @ Xc / N, ridge=0.0)
    assert torch.equal(f.B, B)
    Y = X @ ctx.W.t() + ctx.bias
    # brute force: least squares of the dense outputs on [B x_c, 1]
    Z = torch.cat([Xc @ B.t(), torch.ones(N, 1, dtype=X.dtype)], 1)
    sol = torch.linalg.lstsq(Z, Y).solution
    torch.testing.assert_close(f.A, sol[:2].t(), atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(f.bias, sol[2], atol=1e-8, rtol=1e-8)
    # and on the calibration data it beats keeping the whitening factor A
    w = METHODS["whiten"](ctx).factors(2)
    err_u = float(((Y - (Xc @ B.t() @ f.A.t() + f.bias)) ** 2).sum())
    err_w = float(((Y - (Xc @ B.t() @ w.A.t() + w.bias)) ** 2).sum())
    assert err_u <= err_w


def test_methods_need_their_data() -> None:
    ctx, _ = _ctx()
    ctx.fisher = None
    with pytest.raises(InvalidParameterError, match="'fwsvd' needs a loss"):
        METHODS["fwsvd"](ctx)
    ctx.stats = None
    for name in ("whiten", "asvd", "afm", "nystrom"):
        with pytest.raises(InvalidParameterError, match=f"'{name}' needs calibration"):
            METHODS[name](ctx)
