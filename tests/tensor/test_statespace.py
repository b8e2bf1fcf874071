"""Matern state-space forms, Kalman/RTS smoothing and conditional prediction against the
dense Gaussian-process answers."""

from __future__ import annotations

import pytest
import torch

from rankfold._errors import InvalidParameterError
from rankfold.tensor._statespace import (
    KERNELS,
    conditional_predict,
    discretize,
    kalman_smoother,
    matern_kernel,
    matern_state_space,
    pseudo_log_likelihood,
    state_transitions,
)

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _problem(S: int, R: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    t = torch.sort(torch.rand(S, generator=g, dtype=F64))[0] * 3.0 - 1.0
    B = torch.randn(S, R, R, generator=g, dtype=F64)
    Lam = B @ B.transpose(-1, -2)
    if S > 2:
        Lam[1] = 0.0  # a coordinate without data
    if S > 4 and R > 1:  # a rank-deficient site
        e, V = torch.linalg.eigh(Lam[3])
        e[0] = 0.0
        Lam[3] = V @ torch.diag(e) @ V.T
    eta = torch.randn(S, R, generator=g, dtype=F64)
    return t, Lam, eta


def _dense(kernel, t, Lam, eta, ell, var):
    R = Lam.shape[-1]
    K = torch.kron(matern_kernel(kernel, t[:, None] - t[None, :], ell, var),
                   torch.eye(R, dtype=F64))
    Lb = torch.block_diag(*Lam)
    post = torch.linalg.inv(torch.linalg.inv(K) + Lb)
    post = 0.5 * (post + post.T)
    mean = post @ eta.reshape(-1)
    n = K.shape[0]
    ll = -0.5 * torch.logdet(torch.eye(n, dtype=F64) + K @ Lb) + 0.5 * eta.reshape(-1) @ mean
    return K, post, mean, ll


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_stationary_covariance_solves_lyapunov(kernel):
    ss = matern_state_space(kernel, 0.7, 1.3)
    lyap = ss.F @ ss.P_inf + ss.P_inf @ ss.F.T + ss.L @ ss.Qc @ ss.L.T
    assert torch.allclose(lyap, torch.zeros_like(lyap), atol=1e-10)
    assert torch.linalg.eigvalsh(ss.P_inf).min() > 0


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_state_space_covariance_matches_kernel(kernel):
    ell, var = 0.4, 2.5
    ss = matern_state_space(kernel, ell, var)
    dt = torch.tensor([0.0, 1e-3, 0.05, 0.3, 1.0, 4.0], dtype=F64)
    A, Q = discretize(ss.F, ss.P_inf, dt)
    k_ss = (ss.H @ A @ ss.P_inf @ ss.H.T)[..., 0, 0]
    assert torch.allclose(k_ss, matern_kernel(kernel, dt, ell, var), rtol=1e-10, atol=1e-12)
    # Q is the covariance of the one-step noise: PSD, zero at dt = 0, P_inf at infinity
    assert torch.linalg.eigvalsh(Q).min() > -1e-12
    assert torch.allclose(Q[0], torch.zeros_like(Q[0]), atol=1e-12)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("S", [1, 2, 3, 8, 13])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_smoother_matches_dense_gp_posterior(kernel, S, seed):
    R, ell, var = 3, 0.6, 1.7
    t, Lam, eta = _problem(S, R, seed)
    res = kalman_smoother(t, Lam, eta, kernel=kernel, lengthscale=ell, variance=var)
    _, post, mean, ll = _dense(kernel, t, Lam, eta, ell, var)
    tol = 1e-8 if kernel != "matern52" else 1e-7  # the dense reference loses digits
    assert torch.allclose(res.u_mean.reshape(-1), mean, atol=tol, rtol=tol)
    for s in range(S):
        block = post[s * R:(s + 1) * R, s * R:(s + 1) * R]
        assert torch.allclose(res.u_cov[s], block, atol=tol, rtol=tol)
    assert torch.allclose(res.log_lik, ll, atol=1e-8, rtol=1e-8)
    # smoothed state covariances are symmetric PSD
    assert torch.linalg.eigvalsh(res.cov).min() > -1e-10


def test_smoother_cross_covariance_matches_dense():
    kernel, R, ell, var = "matern12", 2, 0.5, 1.0
    t, Lam, eta = _problem(9, R, 3)
    res = kalman_smoother(t, Lam, eta, kernel=kernel, lengthscale=ell, variance=var)
    _, post, _, _ = _dense(kernel, t, Lam, eta, ell, var)
    for s in range(8):  # Matern-1/2: the state is the function value itself
        block = post[s * R:(s + 1) * R, (s + 1) * R:(s + 2) * R]
        assert torch.allclose(res.cross[s], block, atol=1e-10)


def test_pseudo_log_likelihood_batches_over_hyperparameters():
    t, Lam, eta = _problem(10, 2, 5)
    ells = torch.tensor([[0.2, 0.5], [1.0, 3.0]], dtype=F64)
    vars_ = torch.tensor([[1.0, 0.5], [2.0, 4.0]], dtype=F64)
    ll = pseudo_log_likelihood(t, Lam, eta, kernel="matern32", lengthscale=ells,
                               variance=vars_)
    assert ll.shape == (2, 2)
    for i in range(2):
        for j in range(2):
            ref = _dense("matern32", t, Lam, eta, float(ells[i, j]), float(vars_[i, j]))[3]
            assert torch.allclose(ll[i, j], ref, atol=1e-8)


def test_precomputed_transitions_give_the_same_posterior():
    t, Lam, eta = _problem(7, 2, 2)
    a = kalman_smoother(t, Lam, eta, kernel="matern52", lengthscale=0.3, variance=2.0)
    tr = state_transitions(t, 2, kernel="matern52", lengthscale=0.3, variance=2.0)
    b = kalman_smoother(t, Lam, eta, kernel="matern52", lengthscale=0.3, variance=2.0,
                        transitions=tr)
    assert torch.equal(a.u_mean, b.u_mean)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("seed", [0, 1])
def test_conditional_prediction_matches_dense_gp(kernel, seed):
    R, ell, var = 2, 0.5, 1.3
    t, Lam, eta = _problem(10, R, seed)
    res = kalman_smoother(t, Lam, eta, kernel=kernel, lengthscale=ell, variance=var)
    t_new = torch.tensor([t[0] - 2.0, t[0] - 0.01, float(t[2]), 0.5 * (t[4] + t[5]),
                          t[6] + 0.3 * (t[7] - t[6]), t[-1] + 0.05, t[-1] + 5.0], dtype=F64)
    mean, cov = conditional_predict(t, res, t_new, kernel=kernel, lengthscale=ell,
                                    variance=var)
    K, post, m, _ = _dense(kernel, t, Lam, eta, ell, var)
    ta = torch.cat([t, t_new])
    Ka = matern_kernel(kernel, ta[:, None] - ta[None, :], ell, var)
    S = t.shape[0]
    eye = torch.eye(R, dtype=F64)
    Kx = torch.kron(Ka[S:, :S], eye)
    Kxx = torch.kron(Ka[S:, S:], eye)
    G = Kx @ torch.linalg.inv(K)
    dm = G @ m
    dc = Kxx - G @ Kx.T + G @ post @ G.T
    tol = 1e-8 if kernel != "matern52" else 1e-6
    assert torch.allclose(mean.reshape(-1), dm, atol=tol)
    for i in range(t_new.shape[0]):
        assert torch.allclose(cov[i], dc[i * R:(i + 1) * R, i * R:(i + 1) * R], atol=tol)
        assert torch.linalg.eigvalsh(cov[i]).min() > -1e-10


def test_prediction_at_training_coordinates_is_the_smoothed_posterior():
    t, Lam, eta = _problem(12, 3, 4)
    res = kalman_smoother(t, Lam, eta, kernel="matern32", lengthscale=0.4, variance=1.0)
    perm = torch.tensor([5, 0, 11, 5, 3])
    mean, cov = conditional_predict(t, res, t[perm], kernel="matern32", lengthscale=0.4,
                                    variance=1.0)
    assert torch.equal(mean, res.u_mean[perm])
    assert torch.allclose(cov, res.u_cov[perm], atol=1e-14)


def test_far_extrapolation_returns_to_the_prior():
    t, Lam, eta = _problem(6, 2, 0)
    res = kalman_smoother(t, Lam, eta, kernel="matern12", lengthscale=0.1, variance=2.0)
    mean, cov = conditional_predict(t, res, torch.tensor([-100.0, 100.0], dtype=F64),
                                    kernel="matern12", lengthscale=0.1, variance=2.0)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-12)
    assert torch.allclose(cov, 2.0 * torch.eye(2, dtype=F64).expand(2, 2, 2), atol=1e-12)


def test_bad_kernel_and_hyperparameters():
    with pytest.raises(InvalidParameterError, match="'kernel'.*'matern72'"):
        matern_state_space("matern72", 1.0, 1.0)
    with pytest.raises(InvalidParameterError, match="'lengthscale'.*-0.5"):
        matern_state_space("matern12", -0.5, 1.0)
    with pytest.raises(InvalidParameterError, match="'variance'.*0"):
        matern_state_space("matern12", 1.0, 0.0)
