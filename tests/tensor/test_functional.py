"""FunBaT: messages against brute force, synthetic recovery, prediction, estimators, errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from rankfold._errors import InvalidParameterError, NotFittedError, ShapeError
from rankfold.datasets import load_funbat, load_funbat_truth
from rankfold.tensor import (
    FunctionalCP,
    FunctionalTucker,
    funbat,
    funbat_latent,
    funbat_predict,
)
from rankfold.tensor import functional as fmod
from rankfold.tensor._statespace import KERNELS

F64 = torch.float64


def _toy(n: int = 300, K: int = 3, seed: int = 0, noise: float = 0.05):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, K)).round(2)  # repeated coordinates, as in real data
    y = np.sin(3 * X[:, 0]) * np.cos(2 * X[:, 1])
    if K > 2:
        y = y * (1.0 + X[:, 2])
    return X, y + noise * rng.standard_normal(n)


def _state(structure: str, ranks: tuple[int, ...], seed: int = 0):
    X, y = _toy(60, len(ranks), seed)
    gen = torch.Generator().manual_seed(seed)
    st = fmod._State(torch.as_tensor(X), torch.as_tensor(y), ranks, structure == "cp",
                     "matern12", [0.3] * len(ranks), [1.0] * len(ranks), 1.0, 1.0, 1.0, gen)
    P = st.P
    B = torch.randn(P, P, generator=gen, dtype=F64)
    st.SW = 0.1 * B @ B.T  # a full core covariance, so its term is tested
    st.mW = torch.randn(P, generator=gen, dtype=F64)
    st.tau_a, st.tau_b = 3.0, 2.0
    for k, R in enumerate(ranks):  # random second moments (mean + PSD covariance)
        C = torch.randn(st.mu[k].shape[0], R, R, generator=gen, dtype=F64)
        st.S2[k] = st.mu[k][:, :, None] * st.mu[k][:, None, :] + 0.3 * C @ C.transpose(1, 2)
    return st


def _brute_sites(st, k):
    """Per-entry E[tau] E[a a^T], E[tau] y E[a] by explicit loops, summed per coordinate."""
    K, ranks = st.K, st.ranks
    tau = st.tau_a / st.tau_b
    Eww = (st.SW + torch.outer(st.mW, st.mW)).numpy()
    mW = st.mW.numpy()
    S = st.t[k].shape[0]
    R = ranks[k]
    Lam = np.zeros((S, R, R))
    eta = np.zeros((S, R))
    if st.cp:
        multi = [(r,) * K for r in range(R)]
    else:
        multi = list(itertools.product(*[range(r) for r in ranks]))
    for n in range(st.N):
        s = int(st.idx[k][n])
        mu = [st.mu[j][st.idx[j][n]].numpy() for j in range(K)]
        S2 = [st.S2[j][st.idx[j][n]].numpy() for j in range(K)]
        for p, a in enumerate(multi):
            w = np.prod([mu[j][a[j]] for j in range(K) if j != k])
            eta[s, a[k]] += tau * float(st.y[n]) * mW[p] * w
            for q, b in enumerate(multi):
                z2 = np.prod([S2[j][a[j], b[j]] for j in range(K) if j != k])
                Lam[s, a[k], b[k]] += tau * Eww[p, q] * z2
    return Lam, eta


@pytest.mark.parametrize("structure,ranks", [("tucker", (2, 3, 2)), ("tucker", (2, 2)),
                                              ("tucker", (2, 1, 2, 2)), ("cp", (3, 3, 3))])
@pytest.mark.parametrize("k", [0, 1])
@pytest.mark.parametrize("aggregate", [True, False])
def test_mode_messages_match_brute_force_with_core_covariance(structure, ranks, k, aggregate,
                                                               monkeypatch):
    if not aggregate:  # per-entry contraction (used when the per-coordinate buffer is big)
        monkeypatch.setattr(fmod, "_AGG", 0)
    st = _state(structure, ranks)
    Lam, eta = _brute_sites(st, k)
    st.update_mode(k, 1.0, None)
    assert np.allclose(st.Lam[k].numpy(), Lam, atol=1e-10)
    assert np.allclose(st.eta[k].numpy(), eta, atol=1e-10)


def test_damping_mixes_old_and_new_sites():
    st = _state("tucker", (2, 2, 2))
    old = torch.rand_like(st.Lam[1])
    old = old @ old.transpose(1, 2)
    st.Lam[1] = old.clone()
    new, _ = _brute_sites(st, 1)
    st.update_mode(1, 0.3, None)
    assert np.allclose(st.Lam[1].numpy(), 0.7 * old.numpy() + 0.3 * new, atol=1e-10)


@pytest.mark.parametrize("structure,ranks", [("tucker", (2, 3, 2)), ("tucker", (2, 1, 2, 2)),
                                              ("cp", (2, 2, 2))])
@pytest.mark.parametrize("aggregate", [True, False])
def test_core_statistics_match_brute_force(structure, ranks, aggregate, monkeypatch):
    if not aggregate:
        monkeypatch.setattr(fmod, "_AGG", 0)
    st = _state(structure, ranks)
    Z2, zy = st.core_stats()
    ref2 = np.zeros(Z2.shape)
    refy = np.zeros(zy.shape)
    for n in range(st.N):
        mats = [st.S2[j][st.idx[j][n]].numpy() for j in range(st.K)]
        vecs = [st.mu[j][st.idx[j][n]].numpy() for j in range(st.K)]
        if structure == "cp":
            ref2 += np.prod(mats, axis=0)
            refy += float(st.y[n]) * np.prod(vecs, axis=0)
        else:
            m, v = mats[0], vecs[0]
            for j in range(1, st.K):
                m, v = np.kron(m, mats[j]), np.kron(v, vecs[j])
            ref2 += m
            refy += float(st.y[n]) * v
    assert np.allclose(Z2.numpy(), ref2, atol=1e-10)
    assert np.allclose(zy.numpy(), refy, atol=1e-10)


def test_stored_statistics_are_per_coordinate_and_global_only():
    X, y = _toy(400, 3)
    res = funbat(X, y, 3, n_epochs=3, generator=0)
    P = 27
    for k, sm in enumerate(res.smoothed):
        S = res.coords[k].shape[0]
        assert sm.mean.shape[0] == S and sm.cov.shape[0] == S  # nothing per entry
    assert res.core_cov.shape == (P, P)


def test_synthetic_recovery_of_latent_trajectories():
    split = load_funbat("synthetic")
    grids, truth = load_funbat_truth()
    model = FunctionalTucker(1, n_epochs=60, generator=0).fit(split.coords_train,
                                                            split.y_train)
    rmse = np.sqrt(np.mean((model.predict(split.coords_test) - split.y_test) ** 2))
    assert rmse < 0.2 * split.y_test.std()
    for k in range(2):
        mean, std = model.latent_functions(k, grids[k])
        corr = abs(np.corrcoef(mean[:, 0], truth[k])[0, 1])  # sign and scale free
        assert corr >= 0.95
        assert np.all(std >= 0)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_fit_reduces_error_and_beats_the_mean(seed):
    X, y = _toy(400, 3, seed)
    model = FunctionalTucker(2, n_epochs=25, generator=seed).fit(X, y)
    h = model.history_["train_rmse"]
    assert h[-1] < 0.5 * np.std(y)
    assert h[-1] < h[0]
    assert model.noise_std_ < 0.5 * np.std(y)


def test_predict_at_training_coordinates_uses_the_smoothed_posterior():
    X, y = _toy(200, 2)
    res = funbat(X, y, 2, n_epochs=8, generator=0)
    for k in range(2):
        grid = res.coords[k] * res.scale[k] + res.shift[k]
        mean, std = funbat_latent(res, k, grid)
        assert torch.allclose(mean, res.smoothed[k].u_mean, atol=1e-12)
        ref = res.smoothed[k].u_cov.diagonal(dim1=-2, dim2=-1).sqrt()
        assert torch.allclose(std, ref, atol=1e-12)


def test_prediction_mean_is_core_times_kronecker_of_latent_means():
    X, y = _toy(150, 3)
    res = funbat(X, y, (2, 1, 2), n_epochs=5, generator=1)
    Xn = np.array([[0.3, 0.5, 0.7], [-0.2, 1.4, 0.5], [0.01, 0.99, 2.0]])
    pred = funbat_predict(res, Xn, return_std=True)
    Xs = (torch.as_tensor(Xn) - res.shift) / res.scale
    for i in range(3):
        vecs = [fmod._latent_at(res, k, Xs[i, k:k + 1])[0][0] for k in range(3)]
        z = torch.kron(torch.kron(vecs[0], vecs[1]), vecs[2])
        ref = float(z @ res.core_mean) * res.y_std + res.y_mean
        assert math.isclose(float(pred.mean[i]), ref, rel_tol=1e-10, abs_tol=1e-10)
    noise = math.sqrt(res.tau_rate / res.tau_shape) * res.y_std
    assert torch.all(pred.std >= noise * (1 - 1e-12))


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("cls", [FunctionalTucker, FunctionalCP])
@pytest.mark.parametrize("hyper", sorted(fmod.HYPERPARAMETER_METHODS))
def test_every_registered_option_runs(kernel, cls, hyper):
    X, y = _toy(120, 2)
    m = cls(2, kernel=kernel, hyperparameters=hyper, hyper_every=1, n_epochs=4,
            generator=0).fit(X, y)
    mean, std = m.predict(X[:5], return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    if hyper == "fixed":
        assert m.lengthscales_ == (0.1, 0.1)


def test_estimator_passes_every_argument_to_funbat(monkeypatch):
    seen = {}
    real = fmod.funbat

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(fmod, "funbat", spy)
    kw = dict(kernel="matern32", lengthscale=0.2, variance=2.0, hyperparameters="fixed",
              hyper_every=3, core_variance=0.5, a0=2.0, b0=0.5, n_epochs=3, damping=0.7,
              tol=1e-3, patience=None, dtype=F64, show_progress=False, generator=5)
    X, y = _toy(80, 2)
    FunctionalTucker((2, 1), **kw).fit(X, y)
    for key, value in kw.items():
        assert seen[key] == value, key
    assert seen["structure"] == "tucker"
    FunctionalCP(2, **kw).fit(X, y)
    assert seen["structure"] == "cp"


def test_same_seed_same_result_and_types_follow_input():
    X, y = _toy(150, 2)
    a = FunctionalTucker(2, n_epochs=4, generator=3).fit(X, y).predict(X)
    b = FunctionalTucker(2, n_epochs=4, generator=3).fit(X, y).predict(X)
    assert isinstance(a, np.ndarray) and np.array_equal(a, b)
    m = FunctionalTucker(2, n_epochs=4, generator=3).fit(torch.as_tensor(X), y)
    out = m.predict(torch.as_tensor(X, dtype=torch.float32))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert np.allclose(out.numpy(), a, atol=1e-4)


def test_dataframe_input_validation_and_early_stopping():
    X, y = _toy(300, 3)
    df = pd.DataFrame({"temp": X[:, 0], "pressure": X[:, 1], "day": X[:, 2], "pm25": y})
    train, val = df.iloc[:240], df.iloc[240:]
    m = FunctionalTucker(2, n_epochs=40, patience=3, generator=0)
    m.fit(train, "pm25", validation=val)
    assert m.feature_names_in_ == ["temp", "pressure", "day"]
    hv = m.history_["val_rmse"]
    assert len(hv) == m.n_epochs_ and len(hv) >= 1
    best = min(hv)
    pred = m.predict(val)  # DataFrame with the target column too: uses named columns
    assert math.isclose(np.sqrt(np.mean((pred - val["pm25"].to_numpy()) ** 2)), best,
                        rel_tol=1e-8)
    reordered = val[["day", "temp", "pressure"]]
    assert np.allclose(m.predict(reordered), pred)


def test_plot_latent_functions_writes_a_png(tmp_path):
    X, y = _toy(120, 2)
    m = FunctionalCP(2, n_epochs=3, generator=0).fit(X, y)
    path = tmp_path / "latent.png"
    m.plot_latent_functions(path, n_grid=30)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["latent.png"]  # no temp files left


def test_bad_input_raises_clear_errors():
    X, y = _toy(50, 3)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(InvalidParameterError, match="'coords'.*NaN"):
        FunctionalTucker(2, n_epochs=2).fit(Xn, y)
    with pytest.raises(InvalidParameterError, match="'ranks'.*Got 0"):
        FunctionalTucker(0, n_epochs=2).fit(X, y)
    with pytest.raises(InvalidParameterError, match="'ranks'"):
        FunctionalTucker((2, 2), n_epochs=2).fit(X, y)
    with pytest.raises(InvalidParameterError, match="'lengthscale'.*-0.1"):
        FunctionalTucker(2, lengthscale=-0.1).fit(X, y)
    with pytest.raises(InvalidParameterError, match="'kernel'.*'rbf'"):
        FunctionalTucker(2, kernel="rbf").fit(X, y)
    with pytest.raises(InvalidParameterError, match="'damping'.*0"):
        FunctionalTucker(2, damping=0.0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="'hyperparameters'.*'grid'"):
        FunctionalTucker(2, hyperparameters="grid").fit(X, y)
    with pytest.raises(ShapeError, match="'y'.*N=50"):
        FunctionalTucker(2).fit(X, y[:-1])
    with pytest.raises(NotFittedError, match="not fitted"):
        FunctionalTucker(2).predict(X)
    m = FunctionalTucker(2, n_epochs=2, generator=0).fit(X, y)
    with pytest.raises(ShapeError, match="'coords'.*K=3.*shape \\(4, 2\\)"):
        m.predict(X[:4, :2])
    bad = X[:4].copy()
    bad[0, 0] = np.inf
    with pytest.raises(InvalidParameterError, match="'coords'.*NaN"):
        m.predict(bad)
    with pytest.raises(InvalidParameterError, match="'mode'.*Got 3"):
        m.latent_functions(3, np.linspace(0, 1, 5))
    with pytest.raises(InvalidParameterError, match="'ranks'.*one int"):
        FunctionalCP((2, 3, 2), n_epochs=2).fit(X, y)


@pytest.mark.parametrize("cls", [FunctionalTucker, FunctionalCP])
def test_to_tensor_reproduces_predictions_on_the_grid(cls):
    X, y = _toy(150, 3)
    m = cls(2, n_epochs=4, generator=0).fit(X, y)
    grids = [np.array([0.1, 0.5]), np.array([0.0, 0.3, 1.2]), np.array([0.7])]
    fmt = m.to_tensor(grids)
    dense = np.asarray(fmt.to_tensor())
    assert dense.shape == (2, 3, 1)
    pts = np.array([[a, b, c] for a in grids[0] for b in grids[1] for c in grids[2]])
    assert np.allclose(dense.reshape(-1) + m.offset_, m.predict(pts), atol=1e-10)


@pytest.mark.slow
def test_beijing_full_resolution_beats_the_per_day_mean():
    """On PM2.5 the day dominates; FunBaT must beat the per-day-bin mean of the training
    targets (0.335 RMSE on fold 0) while using temperature and pressure as well."""
    split = load_funbat("beijing_pm25", 0)
    model = FunctionalTucker(3, n_epochs=40, generator=0).fit(split.coords_train,
                                                            split.y_train)
    rmse = np.sqrt(np.mean((model.predict(split.coords_test) - split.y_test) ** 2))
    day = split.indices_train[:, 2]
    sums = np.bincount(day, split.y_train, minlength=split.shape[2])
    counts = np.bincount(day, minlength=split.shape[2])
    means = np.where(counts > 0, sums / np.maximum(counts, 1), split.y_train.mean())
    baseline = np.sqrt(np.mean((means[split.indices_test[:, 2]] - split.y_test) ** 2))
    assert rmse < 0.97 * baseline
