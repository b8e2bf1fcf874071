"""Exact recovery of planted low-rank matrices, monotone ALS loss, solver agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankfold.completion import ALS, SOLVERS, AltMin, SoftImpute
from rankfold.completion._solvers import SolverOptions, build_layout, solve_side

from .conftest import incoherent_problem, ratings_frame


def _rel(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.linalg.norm(A - B) / np.linalg.norm(B))


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_altmin_recovers_incoherent_matrix(seed: int) -> None:
    M, obs = incoherent_problem(120, 90, 3, 0.3, seed)
    est = AltMin(3, n_iter=60, generator=seed).fit(obs)
    assert _rel(est.reconstruct(), M) <= 1e-6
    # incoherence is logged per iteration and stays small for Gaussian factors
    assert len(est.history_["incoherence_u"]) == len(est.history_["loss"])
    assert max(est.history_["incoherence_v"]) < 10


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_als_without_reg_or_biases_recovers(seed: int) -> None:
    M, obs = incoherent_problem(100, 80, 3, 0.5, seed)
    est = ALS(3, reg=1e-12, biases=False, n_iter=200, tol=0.0, generator=seed).fit(obs)
    assert _rel(est.reconstruct(), M) <= 1e-6


def test_altmin_sketch_solver_recovers() -> None:
    M, obs = incoherent_problem(100, 80, 3, 0.4, 3)
    est = AltMin(3, n_iter=40, solver="sketch", generator=0).fit(obs)
    assert _rel(est.reconstruct(), M) <= 1e-6


def test_altmin_sample_splitting_runs_and_improves() -> None:
    M, obs = incoherent_problem(300, 250, 2, 0.9, 0)
    est = AltMin(2, n_iter=4, sample_splitting=True, generator=0).fit(obs)
    err = _rel(est.reconstruct(), M)
    assert err < 1e-3
    assert est.history_["loss"][-1] < est.history_["loss"][0]


def test_altmin_clipping_of_spiky_rows() -> None:
    """A coherent spike in the initial factor is clipped; recovery still works."""
    M, obs = incoherent_problem(120, 90, 2, 0.4, 5)
    a = AltMin(2, clip=True, clip_factor=1.0, generator=0).fit(obs)
    assert a.history_["incoherence_init"][0] >= 1.0
    assert _rel(a.reconstruct(), M) <= 1e-6


@pytest.mark.parametrize("solver", ["cholesky", "sketch", "cg", "auto"])
def test_als_training_loss_never_increases(solver: str) -> None:
    df = ratings_frame(80, 60, 3, 0.4, seed=2, noise=0.3)
    est = ALS(4, reg=0.05, solver=solver, n_iter=12, tol=0.0, generator=0).fit(df)
    loss = np.array(est.history_["loss"])
    assert len(loss) == 12
    assert np.all(np.diff(loss) <= 1e-12 * loss[:-1])


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_registered_solver_matches_exact_solution(name: str) -> None:
    rng = np.random.default_rng(0)
    n_owner, n_other, d = 30, 200, 6
    owner = np.repeat(np.arange(n_owner), 60)
    other = np.concatenate([rng.choice(n_other, 60, replace=False) for _ in range(n_owner)])
    values = rng.standard_normal(owner.size)
    layout = build_layout(owner, other, values, n_owner, n_other, dtype=torch.float64,
                          device=torch.device("cpu"))
    Y = torch.from_numpy(rng.standard_normal((n_other, d)))
    w = torch.ones(n_owner, dtype=torch.float64)
    ridge = torch.full((d,), 0.1, dtype=torch.float64)
    # reference: dense normal equations per row
    ref = np.zeros((n_owner, d))
    for u in range(n_owner):
        sel = owner == u
        A = Y.numpy()[other[sel]]
        ref[u] = np.linalg.solve(A.T @ A + 0.1 * np.eye(d), A.T @ values[sel])
    opts = SolverOptions(solver=name, max_inner=100, inner_tol=1e-14, cg_steps=60)
    X0 = torch.zeros(n_owner, d, dtype=torch.float64)
    X = solve_side(layout, Y, None, w, ridge, X0, opts, torch.Generator().manual_seed(0))
    # cholesky_bf16 forms the Gram matrix from bfloat16-rounded factors (2^-8 relative)
    tol = 3e-2 if name == "cholesky_bf16" else 1e-9
    np.testing.assert_allclose(X.numpy(), ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("solver", ["cholesky", "cholesky_bf16", "sketch", "cg", "auto"])
def test_solvers_give_the_same_als_model(solver: str) -> None:
    df = ratings_frame(50, 40, 2, 0.5, seed=4)
    kw = {"reg": 0.1, "reg_bias": 0.1, "reg_exponent": 1.0, "n_iter": 60, "tol": 0.0,
          "generator": 0}
    ref = ALS(3, solver="cholesky", **kw).fit(df)
    est = ALS(3, solver=solver, **kw).fit(df)
    users, items = df.user.to_numpy(), df.item.to_numpy()
    # cholesky_bf16 solves with a Gram matrix rounded to ~2^-8 relative
    np.testing.assert_allclose(est.predict(users, items), ref.predict(users, items),
                               atol=3e-2 if solver == "cholesky_bf16" else 2e-3)


def test_softimpute_recovers_low_rank_without_biases() -> None:
    M, obs = incoherent_problem(120, 90, 3, 0.5, 0)
    est = SoftImpute(3, shrinkage=0.5, biases=False, n_iter=300, tol=1e-10,
                     generator=0).fit(obs)
    # nuclear-norm shrinkage biases the answer by about lambda / sigma_k
    assert _rel(est.reconstruct(), M) < 3e-2
    loss = np.array(est.history_["loss"])
    assert loss[-1] < loss[0]


def test_worker_threads_give_the_same_half_step(monkeypatch: pytest.MonkeyPatch) -> None:
    import rankfold.completion._solvers as solvers
    from rankfold.completion._threads import thread_limit

    monkeypatch.setattr(solvers, "_CHUNK_ELEMENTS", 2_000)  # many chunks per bucket
    rng = np.random.default_rng(3)
    n_owner, n_other, d = 120, 80, 5
    counts = rng.integers(1, 40, n_owner)
    owner = np.repeat(np.arange(n_owner), counts)
    other = np.concatenate([rng.choice(n_other, c, replace=False) for c in counts])
    values = rng.standard_normal(owner.size)
    layout = build_layout(owner, other, values, n_owner, n_other, dtype=torch.float64,
                          device=torch.device("cpu"))
    Y = torch.from_numpy(rng.standard_normal((n_other, d)))
    offset = torch.from_numpy(rng.standard_normal(n_other))
    w = torch.from_numpy(counts.astype(float)) ** 0.5
    ridge = torch.full((d,), 0.3, dtype=torch.float64)
    out = {}
    for workers in (1, 3):
        res: list[float] = []
        with thread_limit(1):  # tiny kernels: torch's thread pool only slows them down
            X = solve_side(layout, Y, offset, w, ridge, None,
                           SolverOptions(solver="cholesky", workers=workers), None,
                           sq_residual=res)
        out[workers] = (X, res[0])
    torch.testing.assert_close(out[1][0], out[3][0], rtol=0, atol=0)
    assert out[1][1] == pytest.approx(out[3][1], rel=1e-12)
    # and the solution is the exact one (dense normal equations, row 0)
    sel = owner == 0
    A = Y.numpy()[other[sel]]
    ref = np.linalg.solve(A.T @ A + 0.3 * w[0].item() * np.eye(d),
                          A.T @ (values[sel] - offset.numpy()[other[sel]]))
    np.testing.assert_allclose(out[3][0][0].numpy(), ref, rtol=1e-10, atol=1e-12)
