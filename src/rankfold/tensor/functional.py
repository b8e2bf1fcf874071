"""Functional Bayesian Tucker decomposition (FunBaT) for continuous-indexed tensor data.

An observation ``y_n`` sits at real-valued coordinates ``(i_1, ..., i_K)`` (temperature,
pressure, day ...). The model is

    y_n = vec(W)^T (U^1(i_1) kron ... kron U^K(i_K)) + eps_n,   eps_n ~ N(0, 1/tau),

with a Tucker core ``W ~ N(0, core_variance I)``, ``tau ~ Gamma(a0, b0)`` and each latent
function ``u^k_r(.)`` an independent zero-mean Matern GP. FunBaT-CP (``structure="cp"``)
replaces the core by its superdiagonal (the Kronecker products become Hadamard products;
the diagonal weights get the same Gaussian update).

Inference is conditional expectation propagation (Fang et al. 2024, Algorithm 1):

1. for each mode ``k``: every entry sends a Gaussian message to ``U^k(i_nk)`` with natural
   parameters ``E[tau] E[a a^T]`` and ``E[tau] y_n E[a]`` where ``a = W_(k) z`` and ``z``
   the Kronecker product of the other modes' latent vectors; the expectations include
   the core's *covariance*.  Messages of entries that share a coordinate are summed into
   one pseudo-observation per unique coordinate, damped, and a Kalman filter + RTS
   smoother over the sorted unique coordinates (:mod:`._statespace`) gives the posterior
   of ``U^k`` there;
2. the core gets a damped Gaussian update from ``sum_n E[z z^T]`` and ``sum_n y_n E[z]``
   plus its ``N(0, core_variance I)`` prior;
3. ``tau`` gets its conjugate Gamma update.

Because damping is linear only per-coordinate sums (``I_k x R_k^2``) and global sums
(``R^K x R^K``) are stored, never per-entry messages: memory is
``O(sum_k I_k R_k^2 + prod_k R_k^2)`` plus a bounded work buffer.

Departures from the reference implementation (all deliberate): zero prior mean of the
state; the GP prior enters once (through the state-space model, not again per site); a
Gaussian prior on the core; the core covariance in every factor message; a PSD reverse
conditional before the first coordinate; per-mode lengthscale and variance chosen by
maximising the Kalman-filter likelihood of the pseudo-observations.

References
----------
S. Fang, X. Yu, Z. Wang, S. Li, M. Kirby and S. Zhe, "Functional Bayesian Tucker
decomposition for continuous-indexed tensor data", ICLR 2024, Algorithm 1.
P. Wang and S. Zhe, "Conditional expectation propagation", UAI 2019.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from .._array import as_tensor, to_numpy
from .._errors import ConvergenceError, NotFittedError, ShapeError
from .._parallel import thread_limit
from .._progress import progress
from .._random import GeneratorLike, check_generator
from .._validation import check_bool, check_float, check_int, check_option, param_error
from ._statespace import (
    KERNELS,
    SmootherResult,
    conditional_predict,
    kalman_smoother,
    pseudo_log_likelihood,
    state_transitions,
)

__all__ = [
    "FunBaTResult",
    "HYPERPARAMETER_METHODS",
    "STRUCTURES",
    "funbat",
    "funbat_predict",
    "funbat_latent",
    "FunctionalTucker",
    "FunctionalCP",
    "plot_latent_functions",
]

logger = logging.getLogger(__name__)

STRUCTURES = ("tucker", "cp")
_WORK = 1 << 21  # elements of the largest temporary per chunk (16 MB in float64)
_AGG = 1 << 23  # elements of a per-coordinate aggregation buffer (64 MB in float64)


class FunBaTResult(NamedTuple):
    """Fitted FunBaT posterior (coordinates stored in the model's scaled units).

    Attributes
    ----------
    structure : "tucker" or "cp".
    ranks : tuple of K ints.
    kernel : Matern kernel name.
    lengthscales, variances : per-mode GP hyper-parameters (scaled coordinate units,
        where each mode's training range is [0, 1]).
    coords : list of K (I_k,) sorted unique scaled training coordinates.
    smoothed : list of K :class:`~rankfold.tensor._statespace.SmootherResult`.
    core_mean : (prod R_k,) posterior mean of vec(W) (C order), or (R,) CP weights.
    core_cov : matching posterior covariance.
    tau_shape, tau_rate : Gamma posterior of the noise precision (standardised units).
    shift, scale : (K,) coordinate map ``(x - shift) / scale``.
    y_mean, y_std : target standardisation.
    history : dict of per-epoch lists ("train_rmse", "val_rmse", "noise_std", ...).
    """

    structure: str
    ranks: tuple[int, ...]
    kernel: str
    lengthscales: tuple[float, ...]
    variances: tuple[float, ...]
    coords: list[torch.Tensor]
    smoothed: list[SmootherResult]
    core_mean: torch.Tensor
    core_cov: torch.Tensor
    tau_shape: float
    tau_rate: float
    shift: torch.Tensor
    scale: torch.Tensor
    y_mean: float
    y_std: float
    history: dict[str, list[float]]


# ---------------------------------------------------------------------------------------
# Kronecker / Hadamard combinations of per-mode moments


def _combine_vec(vs: Sequence[torch.Tensor], cp: bool, n: int, like: torch.Tensor,
                 ) -> torch.Tensor:
    """(n, R_j) vectors -> (n, Q): Kronecker (C order) or Hadamard product."""
    if cp:
        out = torch.ones(n, like.shape[-1], dtype=like.dtype, device=like.device)
        for v in vs:
            out = out * v
        return out
    out = torch.ones(n, 1, dtype=like.dtype, device=like.device)
    for v in vs:
        out = (out[:, :, None] * v[:, None, :]).reshape(n, -1)
    return out


def _combine_mat(ms: Sequence[torch.Tensor], cp: bool, n: int, like: torch.Tensor,
                 ) -> torch.Tensor:
    """(n, R_j, R_j) second moments -> (n, Q, Q): Kronecker or Hadamard product."""
    if cp:
        R = like.shape[-1]
        out = torch.ones(n, R, R, dtype=like.dtype, device=like.device)
        for m in ms:
            out = out * m
        return out
    out = torch.ones(n, 1, 1, dtype=like.dtype, device=like.device)
    for m in ms:
        a, b = out.shape[-1], m.shape[-1]
        out = (out[:, :, None, :, None] * m[:, None, :, None, :]).reshape(n, a * b, a * b)
    return out


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run torch on one intra-op thread while the block runs (CPU only), then restore.

    The Kalman scans are long chains of tiny batched operations (matrices of size R d);
    thread start-up costs more than the work, and on a loaded machine multi-threaded
    tiny ops were measured 10-100x slower than single-threaded ones.
    """
    with thread_limit(1 if device.type == "cpu" else None):
        yield


def _chunks(n: int, per_row: int) -> list[slice]:
    size = max(1, _WORK // max(per_row, 1))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


# ---------------------------------------------------------------------------------------
# hyper-parameter strategies


def _hyper_fixed(t: torch.Tensor, Lam: torch.Tensor, eta: torch.Tensor, kernel: str,
                 ell: float, var: float, first: bool) -> tuple[float, float]:
    return ell, var


def _hyper_marglik(t: torch.Tensor, Lam: torch.Tensor, eta: torch.Tensor, kernel: str,
                   ell: float, var: float, first: bool) -> tuple[float, float]:
    """Climb the Kalman-filter log likelihood of the current pseudo-observations.

    The first two calls (``first=True``) scan a wide grid (lengthscale from half the
    smallest coordinate gap to twice the range, variance x0.1..x10); later calls take one
    step on a x0.6..x1.67 grid around the current values.
    """
    if t.shape[0] < 3:
        return ell, var
    dt = torch.float64
    if first:
        gap = float((t[1:] - t[:-1]).min().clamp_min(1e-6))
        lo = max(0.5 * gap, 1e-4)
        ells = torch.cat([torch.logspace(math.log10(lo), math.log10(2.0), 10, dtype=dt),
                          torch.tensor([ell], dtype=dt)])
        vars_ = var * torch.logspace(-1.0, 1.0, 3, dtype=dt)
    else:
        f = torch.tensor([0.6, 1.0, 1.0 / 0.6], dtype=dt)
        ells = (ell * f).clamp(1e-5, 1e2)
        vars_ = (var * f).clamp(1e-4, 1e4)
    E, V = torch.meshgrid(ells, vars_, indexing="ij")
    ll = pseudo_log_likelihood(t, Lam, eta, kernel=kernel, lengthscale=E, variance=V)
    ll = torch.nan_to_num(ll, nan=-math.inf)
    best = int(torch.argmax(ll))
    return float(E.reshape(-1)[best]), float(V.reshape(-1)[best])


#: name -> function(t, Lam, eta, kernel, lengthscale, variance, first) -> (lengthscale,
#: variance)
HYPERPARAMETER_METHODS: dict[str, Callable[..., tuple[float, float]]] = {
    "marglik": _hyper_marglik,
    "fixed": _hyper_fixed,
}


# ---------------------------------------------------------------------------------------
# input handling


def _per_mode(value: Any, name: str, func: str, K: int, *, integer: bool) -> tuple:
    vals = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if len(vals) == 1:
        vals = vals * K
    if len(vals) != K:
        raise param_error(name, func, f"a scalar or a sequence of K={K} values", value)
    if integer:
        return tuple(check_int(v, name, func, low=1) for v in vals)
    return tuple(check_float(v, name, func, low=0.0, closed_low=False) for v in vals)


def _coords_tensor(coords: Any, name: str, func: str, dtype: torch.dtype,
                   K: int | None = None) -> torch.Tensor:
    if isinstance(coords, torch.Tensor) and coords.ndim == 1 or (
            isinstance(coords, np.ndarray) and coords.ndim == 1):
        coords = coords[:, None]
    X, _ = as_tensor(coords, name, func, dtype=dtype, ndim=2, finite=False)
    if not bool(torch.isfinite(X).all()):
        raise param_error(name, func, "free of NaN and infinity",
                          f"{int((~torch.isfinite(X)).sum())} non-finite coordinates")
    if K is not None and X.shape[1] != K:
        raise ShapeError(
            f"The '{name}' parameter of {func} must have K={K} columns (one per mode, as "
            f"in fit). Got shape {tuple(X.shape)}."
        )
    return X


def _check_common(func: str, kernel: str, n_epochs: int, damping: float, tol: float,
                  hyperparameters: str, structure: str, core_variance: float,
                  a0: float, b0: float, patience: int | None) -> None:
    check_option(kernel, "kernel", func, KERNELS)
    check_option(structure, "structure", func, STRUCTURES)
    check_option(hyperparameters, "hyperparameters", func, HYPERPARAMETER_METHODS)
    check_int(n_epochs, "n_epochs", func, low=1)
    check_float(damping, "damping", func, low=0.0, high=1.0, closed_low=False)
    check_float(tol, "tol", func, low=0.0)
    check_float(core_variance, "core_variance", func, low=0.0, closed_low=False)
    check_float(a0, "a0", func, low=0.0, closed_low=False)
    check_float(b0, "b0", func, low=0.0, closed_low=False)
    check_int(patience, "patience", func, low=1, allow_none=True)


# ---------------------------------------------------------------------------------------
# the algorithm


def _unfolding_vectors(idx: list[torch.Tensor], y: torch.Tensor, k: int, S: int, R: int,
                       ) -> torch.Tensor:
    """Top-R left singular vectors (S, R) of the sparse zero-filled mode-k unfolding."""
    import scipy.sparse as sp

    ind = np.stack([i.detach().cpu().numpy() for i in idx], 1)
    others = [j for j in range(ind.shape[1]) if j != k]
    if others:
        dims = [int(ind[:, j].max()) + 1 for j in others]
        keys = np.ravel_multi_index(tuple(ind[:, j] for j in others), dims)
        _, col = np.unique(keys, return_inverse=True)
    else:
        col = np.zeros(ind.shape[0], dtype=np.int64)
    col = col.reshape(-1)
    M = sp.csr_array((y.detach().cpu().double().numpy(), (ind[:, k], col)),
                     shape=(S, int(col.max()) + 1))
    G = (M @ M.T).tocsr()
    if S <= max(64, 4 * R):
        _, V = np.linalg.eigh(G.toarray())
        V = V[:, ::-1][:, :min(R, S)]
    else:  # a few leading eigenvectors of a large sparse Gram matrix: Lanczos
        from scipy.sparse.linalg import eigsh

        v0 = np.abs(np.asarray(M @ np.ones(M.shape[1]))).reshape(-1) + 1.0
        _, V = eigsh(G, k=R, which="LA", v0=v0)
        V = V[:, ::-1]
    out = np.zeros((S, R))
    out[:, :V.shape[1]] = V
    return torch.from_numpy(out)


class _State:
    """Mutable working state of one fit (per-coordinate and global statistics only)."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, ranks: tuple[int, ...], cp: bool,
                 kernel: str, ells: list[float], vars_: list[float], core_variance: float,
                 a0: float, b0: float, gen: torch.Generator) -> None:
        self.N, self.K = X.shape
        self.y, self.ranks, self.cp, self.kernel = y, ranks, cp, kernel
        self.ells, self.vars = ells, vars_
        self.core_variance, self.a0, self.b0 = core_variance, a0, b0
        dt, dev = y.dtype, y.device
        self.t, self.idx = [], []
        self.Lam, self.eta, self.mu, self.S2, self.smoothed = [], [], [], [], []
        for k in range(self.K):
            tk, ik = torch.unique(X[:, k], sorted=True, return_inverse=True)
            self.t.append(tk)
            self.idx.append(ik)
            R, S = ranks[k], tk.shape[0]
            # initial posterior means: leading singular vectors of the zero-filled mode-k
            # unfolding over the unique coordinates (an HOSVD start), plus a small random
            # part; the *prior* mean stays zero.
            lead = _unfolding_vectors(self.idx, y, k, S, R) * math.sqrt(S)
            noise = torch.randn(S, R, generator=gen, dtype=dt, device=dev)
            self.mu.append((lead.to(dtype=dt, device=dev) + 0.1 * noise) * math.sqrt(vars_[k]))
            self.S2.append(self.mu[k][:, :, None] * self.mu[k][:, None, :]
                           + 0.01 * vars_[k] * torch.eye(R, dtype=dt, device=dev))
            self.Lam.append(torch.zeros(S, R, R, dtype=dt, device=dev))
            self.eta.append(torch.zeros(S, R, dtype=dt, device=dev))
            self.smoothed.append(None)
        self.trans: list[tuple | None] = [None] * self.K
        self._groups: list[tuple | None] = [None] * self.K
        self.hyper_calls = [0] * self.K
        P = ranks[0] if cp else math.prod(ranks)
        self.P = P
        self.LamW = torch.zeros(P, P, dtype=dt, device=dev)
        self.etaW = torch.zeros(P, dtype=dt, device=dev)
        self.mW = torch.zeros(P, dtype=dt, device=dev)
        self.SW = core_variance * torch.eye(P, dtype=dt, device=dev)
        # start from a noise variance of 10% of the (standardised) target variance; with
        # the prior's E[tau] = a0 / b0 the first, uninformed factors are shrunk to zero
        self.tau_a, self.tau_b = 1.0, 0.1
        self.yy = float((y * y).sum())

    @property
    def Etau(self) -> float:
        return self.tau_a / self.tau_b

    def _gather(self, modes: Sequence[int], sl: slice, second: bool) -> list[torch.Tensor]:
        src = self.S2 if second else self.mu
        return [src[j][self.idx[j][sl]] for j in modes]

    def _group(self, k: int) -> tuple:
        """Entries grouped by (coordinate of mode k, coordinates of the other modes but
        the last): inverse index (N,), mode-k coordinate per group (G,), and the
        coordinate index per group of each of those other modes."""
        if self._groups[k] is None:
            others = [j for j in range(self.K) if j != k]
            cols = [self.idx[k]] + [self.idx[j] for j in others[:-1]]
            if len(cols) == 1:
                inv = self.idx[k]
                uniq = torch.arange(self.t[k].shape[0], device=inv.device)[:, None]
            else:
                sizes = [self.t[k].shape[0]] + [self.t[j].shape[0] for j in others[:-1]]
                if math.prod(sizes) < 2**62:  # one int64 key per entry: a 1-D unique
                    key = torch.zeros_like(cols[0])
                    for c, n in zip(cols, sizes, strict=True):
                        key = key * n + c
                    ukey, inv = torch.unique(key, return_inverse=True)
                    parts = []
                    for n in reversed(sizes):
                        parts.append(ukey % n)
                        ukey = ukey // n
                    uniq = torch.stack(parts[::-1], 1)
                else:
                    uniq, inv = torch.unique(torch.stack(cols, 1), dim=0,
                                             return_inverse=True)
            self._groups[k] = (inv.reshape(-1), uniq[:, 0],
                               [uniq[:, i + 1] for i in range(len(cols) - 1)])
        return self._groups[k]

    def kron_moment_sums(self, k: int) -> torch.Tensor | None:
        """Per-coordinate sums over the entries at each unique coordinate of mode ``k``
        of the Kronecker product of the other modes' second moments: (S_k, Q, Q), C order
        over the other modes. The entries are grouped by (coordinate of mode k,
        coordinates of the other modes but the last), the last mode's moments summed per
        group first, so the Kronecker products are formed per group, not per entry.

        Returns None when the (S_k, Q^2) buffer or the per-group sums would exceed the
        work limit (the caller then contracts per entry)."""
        others = [j for j in range(self.K) if j != k]
        if not others:
            return None
        S = self.t[k].shape[0]
        Q = math.prod(self.ranks[j] for j in others)
        last = others[-1]
        Rl = self.ranks[last]
        if S * Q * Q > _AGG:
            return None
        inv, gs, gother = self._group(k)
        G = gs.shape[0]
        if G * Rl * Rl > _AGG:
            return None
        y, dt = self.y, self.y.dtype
        Bsum = torch.zeros(G, Rl * Rl, dtype=dt, device=y.device)
        for sl in _chunks(self.N, Rl * Rl):
            Bsum.index_add_(0, inv[sl], self.S2[last][self.idx[last][sl]].reshape(-1, Rl * Rl))
        Bsum = Bsum.reshape(G, Rl, Rl)
        Zs = torch.zeros(S, Q * Q, dtype=dt, device=y.device)
        for sl in _chunks(G, Q * Q):
            n = sl.stop - sl.start
            mats = [self.S2[j][g[sl]] for j, g in zip(others[:-1], gother, strict=True)]
            Z = _combine_mat(mats + [Bsum[sl]], False, n, Bsum)
            Zs.index_add_(0, gs[sl], Z.reshape(n, Q * Q))
        return Zs

    def update_mode(self, k: int, rho: float, hyper: Callable | None) -> None:
        """Damped per-coordinate sites for mode k, then Kalman/RTS smoothing."""
        others = [j for j in range(self.K) if j != k]
        R, S = self.ranks[k], self.t[k].shape[0]
        y, dt = self.y, self.y.dtype
        Eww = self.SW + self.mW[:, None] * self.mW[None, :]
        Lam_new = torch.zeros(S, R * R, dtype=dt, device=y.device)
        if self.cp:
            h = torch.zeros(S, R, dtype=dt, device=y.device)
            for sl in _chunks(self.N, R * R):
                n = sl.stop - sl.start
                Z = _combine_mat(self._gather(others, sl, True), True, n, Eww)
                Lam_new.index_add_(0, self.idx[k][sl], (Z * Eww).reshape(n, -1))
                z = _combine_vec(self._gather(others, sl, False), True, n, Eww)
                h.index_add_(0, self.idx[k][sl], z * y[sl, None])
            eta_new = h * self.mW
        else:
            Q = self.P // R
            shape = self.ranks + self.ranks
            perm = [k] + others
            Ek = Eww.reshape(shape).permute(perm + [self.K + j for j in perm])
            Ek = Ek.reshape(R, Q, R, Q).permute(1, 3, 0, 2).reshape(Q * Q, R * R)
            Mk = self.mW.reshape(self.ranks).permute(perm).reshape(R, Q)
            h = torch.zeros(S, Q, dtype=dt, device=y.device)
            # E[z z^T] summed per coordinate first and contracted with the core once per
            # coordinate (S Q^2 R^2 instead of N Q^2 R^2 flops) when that buffer is small
            Zs = self.kron_moment_sums(k)
            for sl in _chunks(self.N, Q + (0 if Zs is not None else Q * Q + R * R)):
                n = sl.stop - sl.start
                if Zs is None:
                    Z = _combine_mat(self._gather(others, sl, True), False, n, Eww)
                    Lam_new.index_add_(0, self.idx[k][sl], Z.reshape(n, Q * Q) @ Ek)
                z = _combine_vec(self._gather(others, sl, False), False, n, Eww)
                h.index_add_(0, self.idx[k][sl], z * y[sl, None])
            if Zs is not None:
                Lam_new = Zs @ Ek
            eta_new = h @ Mk.T
        tau = self.Etau
        Lam_new = Lam_new.reshape(S, R, R)
        Lam_new = 0.5 * (Lam_new + Lam_new.transpose(-1, -2)) * tau
        self.Lam[k] = (1 - rho) * self.Lam[k] + rho * Lam_new
        self.eta[k] = (1 - rho) * self.eta[k] + rho * eta_new * tau
        if hyper is not None:
            self.ells[k], self.vars[k] = hyper(self.t[k], self.Lam[k], self.eta[k],
                                               self.kernel, self.ells[k], self.vars[k],
                                               self.hyper_calls[k] < 2)
            self.hyper_calls[k] += 1
        key = (self.ells[k], self.vars[k])
        if self.trans[k] is None or self.trans[k][0] != key:
            self.trans[k] = (key, state_transitions(
                self.t[k], R, kernel=self.kernel, lengthscale=key[0], variance=key[1],
                dtype=dt, device=y.device))
        res = kalman_smoother(self.t[k], self.Lam[k], self.eta[k], kernel=self.kernel,
                              lengthscale=key[0], variance=key[1],
                              transitions=self.trans[k][1])
        if not bool(torch.isfinite(res.u_mean).all() and torch.isfinite(res.u_cov).all()):
            raise ConvergenceError(
                f"FunBaT: the Kalman smoother of mode {k} produced non-finite values; try a "
                "smaller 'damping' or a larger 'lengthscale'."
            )
        self.smoothed[k] = res
        self.mu[k] = res.u_mean
        self.S2[k] = res.u_cov + res.u_mean[:, :, None] * res.u_mean[:, None, :]

    def core_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Global sums sum_n E[z z^T] (P, P) and sum_n y_n E[z] (P,)."""
        y, dt, P = self.y, self.y.dtype, self.P
        Z2 = torch.zeros(P, P, dtype=dt, device=y.device)
        zy = torch.zeros(P, dtype=dt, device=y.device)
        modes = list(range(self.K))
        if self.cp:
            for sl in _chunks(self.N, P * P):
                n = sl.stop - sl.start
                Z2 += _combine_mat(self._gather(modes, sl, True), True, n, Z2).sum(0)
                zy += (_combine_vec(self._gather(modes, sl, False), True, n, Z2)
                       * y[sl, None]).sum(0)
            return Z2, zy
        RK = self.ranks[-1]
        Qa = P // RK
        SK = self.t[-1].shape[0]
        acc = torch.zeros(Qa * Qa, RK * RK, dtype=dt, device=y.device)
        # the last mode's second moment depends only on its coordinate: sum the other
        # modes' Kronecker moments per last-mode coordinate, then one (Qa^2, S_K) x
        # (S_K, R_K^2) product (when that buffer is small)
        Sagg = self.kron_moment_sums(self.K - 1)
        for sl in _chunks(self.N, P + (0 if Sagg is not None else Qa * Qa)):
            n = sl.stop - sl.start
            if Sagg is None:
                Sa = _combine_mat(self._gather(modes[:-1], sl, True), False, n, Z2)
                Sb = self.S2[-1][self.idx[-1][sl]]
                acc += Sa.reshape(n, Qa * Qa).T @ Sb.reshape(n, RK * RK)
            zy += (_combine_vec(self._gather(modes, sl, False), False, n, Z2)
                   * y[sl, None]).sum(0)
        if Sagg is not None:
            acc = Sagg.T @ self.S2[-1].reshape(SK, RK * RK)
        Z2 = acc.reshape(Qa, Qa, RK, RK).permute(0, 2, 1, 3).reshape(P, P)
        return 0.5 * (Z2 + Z2.T), zy

    def update_core_and_noise(self, rho: float, noise: str | None = "expected") -> None:
        """Damped Gaussian core update, then the Gamma noise update: ``noise`` is None
        (keep tau), "mean" (residuals at the posterior mean) or "expected" (the expected
        squared error, latent and core variances included)."""
        Z2, zy = self.core_stats()
        tau = self.Etau
        self.LamW = (1 - rho) * self.LamW + rho * tau * Z2
        self.etaW = (1 - rho) * self.etaW + rho * tau * zy
        P = self.P
        prec = self.LamW + torch.eye(P, dtype=Z2.dtype, device=Z2.device) / self.core_variance
        c, info = torch.linalg.cholesky_ex(0.5 * (prec + prec.T))
        if int(info) != 0:
            raise ConvergenceError("FunBaT: the core posterior precision is not positive "
                                   "definite; try a smaller 'damping'.")
        self.SW = torch.cholesky_inverse(c)
        self.mW = torch.cholesky_solve(self.etaW[:, None], c)[:, 0]
        # Gamma update of tau. Early on the expected squared error is dominated by the
        # variances of still uninformed factors and feeds a shrinkage spiral in this
        # product model (larger noise -> smaller factors), so the first epochs use the
        # residuals at the posterior mean and switch to the expected error later.
        if noise is not None:
            if noise == "mean":
                r = self.y - self.train_mean()
                sse = float(r @ r)
            else:
                Eww = self.SW + self.mW[:, None] * self.mW[None, :]
                sse = self.yy - 2.0 * float(zy @ self.mW) + float((Eww * Z2).sum())
            sse = max(sse, 1e-12 * self.N)
            self.tau_a = self.a0 + 0.5 * self.N
            self.tau_b = self.b0 + 0.5 * sse
        if not math.isfinite(self.tau_b) or not bool(torch.isfinite(self.mW).all()):
            raise ConvergenceError("FunBaT: the core or noise update produced non-finite "
                                   "values; try a smaller 'damping'.")

    def train_mean(self) -> torch.Tensor:
        out = torch.empty(self.N, dtype=self.y.dtype, device=self.y.device)
        modes = list(range(self.K))
        for sl in _chunks(self.N, self.P):
            n = sl.stop - sl.start
            out[sl] = _combine_vec(self._gather(modes, sl, False), self.cp, n, self.mW) @ self.mW
        return out

    def snapshot(self, shift: torch.Tensor, scale: torch.Tensor, y_mean: float,
                 y_std: float, history: dict[str, list[float]]) -> FunBaTResult:
        return FunBaTResult(
            "cp" if self.cp else "tucker", self.ranks, self.kernel, tuple(self.ells),
            tuple(self.vars), list(self.t), list(self.smoothed), self.mW.clone(),
            self.SW.clone(), float(self.tau_a), float(self.tau_b), shift, scale, y_mean,
            y_std, history)


def funbat(
    coords: Any,
    y: Any,
    ranks: int | Sequence[int],
    *,
    structure: str = "tucker",
    kernel: str = "matern12",
    lengthscale: float | Sequence[float] = 0.1,
    variance: float | Sequence[float] = 1.0,
    hyperparameters: str = "marglik",
    hyper_every: int = 5,
    core_variance: float = 1.0,
    a0: float = 1.0,
    b0: float = 1.0,
    n_epochs: int = 100,
    damping: float = 0.5,
    tol: float = 1e-5,
    validation: tuple[Any, Any] | None = None,
    patience: int | None = None,
    generator: GeneratorLike = None,
    dtype: torch.dtype = torch.float64,
    show_progress: bool | None = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> FunBaTResult:
    """Fit a functional Bayesian Tucker (or CP) decomposition by conditional EP.

    Parameters
    ----------
    coords : (N, K) array-like of float
        Real-valued coordinates of the observed entries (numpy, torch).
    y : (N,) array-like
        Observed values.
    ranks : int or sequence of K ints
        Number of latent functions per mode (for ``structure="cp"``: one int R).
    structure : {"tucker", "cp"}, default "tucker"
        Full Tucker core, or the superdiagonal core of FunBaT-CP.
    kernel : {"matern12", "matern32", "matern52"}, default "matern12"
        Matern smoothness of every latent function.
    lengthscale, variance : float or sequence of K floats, default 0.1 and 1.0
        Initial GP hyper-parameters per mode. Coordinates are rescaled so that each mode's
        training range is [0, 1]; the lengthscale is in those units.
    hyperparameters : {"marglik", "fixed"}, default "marglik"
        ``"marglik"`` climbs the Kalman-filter likelihood of each mode's pseudo-
        observations every ``hyper_every`` epochs (a wide grid the first two times, then
        local steps); ``"fixed"`` keeps the initial values.
    hyper_every : int, default 5
    core_variance : float, default 1.0
        Prior variance of the core entries.
    a0, b0 : float, default 1.0
        Gamma prior of the noise precision (on the standardised target).
    n_epochs : int, default 100
        Maximum number of passes (each updates every mode, the core and the noise).
    damping : float in (0, 1], default 0.5
        Weight of the new message in each damped update (1 = no damping).
    tol : float, default 1e-5
        Stop when the relative change of the training RMSE falls below ``tol``.
    validation : (coords_val, y_val), optional
        Held-out data: its RMSE is recorded in ``history["val_rmse"]``.
    patience : int, optional
        With ``validation``: stop after ``patience`` epochs without improvement of the
        validation RMSE and return the best epoch's posterior.
    generator : int, torch.Generator, numpy Generator or None
        Randomness of the initial posterior means.
    dtype : torch.dtype, default torch.float64
        Working precision.
    show_progress : bool or None, default False
        Progress bar per epoch (None: only on a terminal).
    callback : callable(epoch, record), optional
        Called after every epoch with the history record of that epoch.

    Returns
    -------
    FunBaTResult

    References
    ----------
    Fang et al., "Functional Bayesian Tucker decomposition for continuous-indexed tensor
    data", ICLR 2024, Algorithm 1.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(400, 2))
    >>> y = np.sin(2 * np.pi * X[:, 0]) * np.cos(np.pi * X[:, 1])
    >>> res = funbat(X, y, 2, n_epochs=20, generator=0)
    >>> mean, std = funbat_predict(res, X[:5], return_std=True)
    """
    func = "funbat"
    _check_common(func, kernel, n_epochs, damping, tol, hyperparameters, structure,
                  core_variance, a0, b0, patience)
    check_int(hyper_every, "hyper_every", func, low=1)
    X = _coords_tensor(coords, "coords", func, dtype)
    N, K = X.shape
    yt, _ = as_tensor(y, "y", func, dtype=dtype, device=X.device, ndim=None)
    yt = yt.reshape(-1)
    if yt.shape[0] != N:
        raise ShapeError(f"The 'y' parameter of {func} must have N={N} values (one per row "
                         f"of coords). Got {yt.shape[0]} instead.")
    if structure == "cp":
        rk = _per_mode(ranks, "ranks", func, K, integer=True)
        if len(set(rk)) != 1:
            raise param_error("ranks", func, "one int (FunBaT-CP has one rank)", ranks)
    else:
        rk = _per_mode(ranks, "ranks", func, K, integer=True)
    ells = list(_per_mode(lengthscale, "lengthscale", func, K, integer=False))
    vars_ = list(_per_mode(variance, "variance", func, K, integer=False))
    val = None
    if validation is not None:
        if not isinstance(validation, tuple | list) or len(validation) != 2:
            raise param_error("validation", func, "a pair (coords_val, y_val)", validation)
        Xv = _coords_tensor(validation[0], "validation", func, dtype, K).to(X.device)
        yv, _ = as_tensor(validation[1], "validation", func, dtype=dtype, device=X.device,
                          ndim=None)
        if yv.reshape(-1).shape[0] != Xv.shape[0]:
            raise ShapeError(f"The 'validation' parameter of {func} must hold as many values "
                             f"as coordinates. Got {Xv.shape[0]} and {yv.numel()}.")
        val = (Xv, yv.reshape(-1))
    gen = check_generator(generator, X.device, func=func)
    with _one_thread(X.device):
        return _funbat_run(X, yt, rk, structure, kernel, ells, vars_, hyperparameters,
                           hyper_every, core_variance, a0, b0, n_epochs, damping, tol, val,
                           patience, gen, show_progress, callback)


def _funbat_run(X: torch.Tensor, yt: torch.Tensor, rk: tuple[int, ...], structure: str,
                kernel: str, ells: list[float], vars_: list[float], hyperparameters: str,
                hyper_every: int, core_variance: float, a0: float, b0: float,
                n_epochs: int, damping: float, tol: float,
                val: tuple[torch.Tensor, torch.Tensor] | None, patience: int | None,
                gen: torch.Generator, show_progress: bool | None,
                callback: Callable[[int, dict[str, float]], None] | None) -> FunBaTResult:
    N, K = X.shape
    shift = X.min(0).values
    scale = X.max(0).values - shift
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    Xs = (X - shift) / scale
    y_mean = float(yt.mean())
    y_std = float(yt.std()) if N > 1 and float(yt.std()) > 0 else 1.0
    ys = (yt - y_mean) / y_std

    st = _State(Xs, ys, rk, structure == "cp", kernel, ells, vars_, core_variance, a0, b0,
                gen)
    hyper_fn = HYPERPARAMETER_METHODS[hyperparameters]
    history: dict[str, list[float]] = {"train_rmse": [], "val_rmse": [], "noise_std": []}
    for k in range(K):
        history[f"lengthscale_{k}"] = []
        history[f"variance_{k}"] = []
    best_val, best_res, since_best = math.inf, None, 0
    prev_rmse = math.inf
    st.update_core_and_noise(1.0, noise=None)
    noise_warmup = min(hyper_every, 5)
    with progress("FunBaT", total=n_epochs, enabled=show_progress) as bar:
        for epoch in range(n_epochs):
            rho = 1.0 if epoch == 0 else damping
            # hyper-parameters move only once the sites carry information (after a
            # warm-up of two periods): uninformative early sites favour flat functions
            do_hyper = epoch >= 2 * hyper_every and epoch % hyper_every == 0
            for k in range(K):
                st.update_mode(k, rho, hyper_fn if do_hyper else None)
            st.update_core_and_noise(rho, noise=None if epoch < noise_warmup else (
                "mean" if epoch < 2 * hyper_every else "expected"))
            rmse = float(torch.sqrt(((st.train_mean() - ys) ** 2).mean())) * y_std
            history["train_rmse"].append(rmse)
            history["noise_std"].append(y_std / math.sqrt(st.Etau))
            for k in range(K):
                history[f"lengthscale_{k}"].append(st.ells[k] * float(scale[k]))
                history[f"variance_{k}"].append(st.vars[k])
            rec = {"epoch": epoch + 1, "train_rmse": rmse}
            res = None
            if val is not None:
                res = st.snapshot(shift, scale, y_mean, y_std, history)
                pv = funbat_predict(res, val[0]).mean
                vr = float(torch.sqrt(((pv - val[1]) ** 2).mean()))
                history["val_rmse"].append(vr)
                rec["val_rmse"] = vr
                if vr < best_val - 1e-12:
                    best_val, best_res, since_best = vr, res, 0
                else:
                    since_best += 1
            if not math.isfinite(rmse):
                raise ConvergenceError(f"FunBaT: training RMSE became {rmse} at epoch "
                                       f"{epoch + 1}; try a smaller 'damping'.")
            bar.advance(1, **rec)
            logger.debug("FunBaT epoch %d: %s", epoch + 1, rec)
            if callback is not None:
                callback(epoch + 1, rec)
            if patience is not None and val is not None and since_best >= patience:
                break
            if epoch > 3 * hyper_every and abs(prev_rmse - rmse) <= tol * max(prev_rmse, 1e-300):
                break
            prev_rmse = rmse
    if patience is not None and best_res is not None:
        return best_res._replace(history=history)
    return st.snapshot(shift, scale, y_mean, y_std, history)


class FunBaTPrediction(NamedTuple):
    """Predictive mean and standard deviation (``std`` is None unless requested)."""

    mean: torch.Tensor
    std: torch.Tensor | None


def _latent_at(res: FunBaTResult, k: int, ts: torch.Tensor,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    return conditional_predict(res.coords[k], res.smoothed[k], ts, kernel=res.kernel,
                               lengthscale=res.lengthscales[k], variance=res.variances[k])


def funbat_predict(res: FunBaTResult, coords: Any, *, return_std: bool = False,
                   ) -> FunBaTPrediction:
    """Predictive mean (and standard deviation) of a fitted FunBaT model.

    Parameters
    ----------
    res : FunBaTResult
    coords : (M, K) array-like; any coordinates (seen, unseen, outside the range).
    return_std : bool, default False
        Also return the predictive standard deviation (latent, core and noise
        uncertainty).

    Returns
    -------
    FunBaTPrediction(mean (M,), std (M,) or None) as torch tensors in the model's dtype.
    """
    func = "funbat_predict"
    check_bool(return_std, "return_std", func)
    dt = res.core_mean.dtype
    K = len(res.ranks)
    X = _coords_tensor(coords, "coords", func, dt, K).to(res.core_mean.device)
    with _one_thread(X.device):
        return _predict_run(res, X, return_std)


def _predict_run(res: FunBaTResult, X: torch.Tensor, return_std: bool) -> FunBaTPrediction:
    dt = res.core_mean.dtype
    K = len(res.ranks)
    Xs = (X - res.shift) / res.scale
    M = X.shape[0]
    mus, covs = [], []
    for k in range(K):
        uniq, inv = torch.unique(Xs[:, k], return_inverse=True)
        m, c = _latent_at(res, k, uniq)
        mus.append((m, inv))
        covs.append(c)
    cp = res.structure == "cp"
    P = res.core_mean.shape[0]
    mean = torch.empty(M, dtype=dt, device=X.device)
    std = torch.empty(M, dtype=dt, device=X.device) if return_std else None
    Eww = res.core_cov + res.core_mean[:, None] * res.core_mean[None, :]
    noise = res.tau_rate / res.tau_shape
    for sl in _chunks(M, P * P if return_std else P):
        n = sl.stop - sl.start
        vs = [m[inv[sl]] for m, inv in mus]
        mean[sl] = _combine_vec(vs, cp, n, res.core_mean) @ res.core_mean
        if return_std:
            ss = [c[inv[sl]] + m[inv[sl], :, None] * m[inv[sl], None, :]
                  for (m, inv), c in zip(mus, covs, strict=True)]
            second = (_combine_mat(ss, cp, n, res.core_mean) * Eww).sum((-1, -2))
            std[sl] = (second - mean[sl] ** 2).clamp_min(0.0) + noise
    mean = mean * res.y_std + res.y_mean
    if std is not None:
        std = std.sqrt() * res.y_std
    return FunBaTPrediction(mean, std)


def funbat_latent(res: FunBaTResult, mode: int, grid: Any,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of mode ``mode``'s latent functions on ``grid``.

    Parameters
    ----------
    res : FunBaTResult
    mode : int in [0, K - 1]
    grid : (G,) coordinates in the original units of that mode.

    Returns
    -------
    mean, std : (G, R_mode) tensors.
    """
    func = "funbat_latent"
    K = len(res.ranks)
    k = check_int(mode, "mode", func, low=0, high=K - 1)
    dt = res.core_mean.dtype
    g, _ = as_tensor(grid, "grid", func, dtype=dt, ndim=None)
    g = g.reshape(-1).to(res.core_mean.device)
    m, c = _latent_at(res, k, (g - res.shift[k]) / res.scale[k])
    return m, c.diagonal(dim1=-2, dim2=-1).clamp_min(0.0).sqrt()


# ---------------------------------------------------------------------------------------
# estimators


def _split_frame(coords: Any, y: Any, coord_columns: Sequence[str] | None, func: str,
                 ) -> tuple[Any, Any, list[str] | None]:
    """DataFrame input: ``y`` may name the target column; coordinates are the others."""
    if not type(coords).__module__.startswith("pandas") or not hasattr(coords, "columns"):
        if isinstance(y, str):
            raise param_error("y", func, "an array of targets (a column name needs a "
                              "DataFrame for coords)", y)
        return coords, y, None
    cols = [str(c) for c in coords.columns]
    target = None
    if isinstance(y, str):
        if y not in cols:
            raise param_error("y", func, f"a column of the DataFrame {cols}", y)
        target = coords[y].to_numpy()
    if coord_columns is None:
        names = [c for c in cols if not (isinstance(y, str) and c == y)]
    else:
        names = [str(c) for c in coord_columns]
        missing = [c for c in names if c not in cols]
        if missing:
            raise param_error("coord_columns", func, f"columns of the DataFrame {cols}",
                              coord_columns)
    X = coords[names].to_numpy(dtype=np.float64)
    return X, (target if target is not None else y), names


class _FunctionalBase:
    _structure = "tucker"

    def __init__(self, ranks: int | Sequence[int], *, kernel: str = "matern12",
                 lengthscale: float | Sequence[float] = 0.1,
                 variance: float | Sequence[float] = 1.0,
                 hyperparameters: str = "marglik", hyper_every: int = 5,
                 core_variance: float = 1.0, a0: float = 1.0, b0: float = 1.0,
                 n_epochs: int = 100, damping: float = 0.5, tol: float = 1e-5,
                 patience: int | None = None, dtype: torch.dtype = torch.float64,
                 show_progress: bool | None = False,
                 generator: GeneratorLike = None) -> None:
        self.ranks = ranks
        self.kernel = kernel
        self.lengthscale = lengthscale
        self.variance = variance
        self.hyperparameters = hyperparameters
        self.hyper_every = hyper_every
        self.core_variance = core_variance
        self.a0 = a0
        self.b0 = b0
        self.n_epochs = n_epochs
        self.damping = damping
        self.tol = tol
        self.patience = patience
        self.dtype = dtype
        self.show_progress = show_progress
        self.generator = generator

    def _name(self) -> str:
        return type(self).__name__

    def fit(self, coords: Any, y: Any, *, validation: tuple[Any, Any] | None = None,
            coord_columns: Sequence[str] | None = None,
            callback: Callable[[int, dict[str, float]], None] | None = None) -> Any:
        """Fit on coordinates ``(N, K)`` (array or DataFrame) and targets ``y``.

        With a DataFrame, ``y`` may be the name of the target column; the coordinate
        columns are ``coord_columns`` or every other column. ``validation`` is a pair
        ``(coords_val, y_val)`` in the same form (a DataFrame with the target column
        named as ``y`` is accepted too).
        """
        func = f"{self._name()}.fit"
        X, yy, names = _split_frame(coords, y, coord_columns, func)
        if validation is not None and names is not None and not isinstance(
                validation, tuple | list):
            Xv, yv, _ = _split_frame(validation, y, names, func)
            validation = (Xv, yv)
        elif validation is not None and names is not None and isinstance(validation[1], str):
            Xv, yv, _ = _split_frame(validation[0], validation[1], names, func)
            validation = (Xv, yv)
        elif (validation is not None and names is not None
              and hasattr(validation[0], "columns")):
            validation = (validation[0][names].to_numpy(dtype=np.float64), validation[1])
        self.result_ = funbat(
            X, yy, self.ranks, structure=self._structure, kernel=self.kernel,
            lengthscale=self.lengthscale, variance=self.variance,
            hyperparameters=self.hyperparameters, hyper_every=self.hyper_every,
            core_variance=self.core_variance, a0=self.a0, b0=self.b0,
            n_epochs=self.n_epochs, damping=self.damping, tol=self.tol,
            validation=validation, patience=self.patience, generator=self.generator,
            dtype=self.dtype, show_progress=self.show_progress, callback=callback)
        self.feature_names_in_ = names
        self.n_features_in_ = len(self.result_.ranks)
        self.history_ = self.result_.history
        self.n_epochs_ = len(self.history_["train_rmse"])
        self.lengthscales_ = self.result_.lengthscales
        self.variances_ = self.result_.variances
        self.lengthscales_original_ = tuple(
            ell * float(s) for ell, s in zip(self.result_.lengthscales, self.result_.scale,
                                             strict=True))
        self.noise_std_ = self.result_.y_std * math.sqrt(
            self.result_.tau_rate / self.result_.tau_shape)
        return self

    def _check_fitted(self, func: str) -> FunBaTResult:
        res = getattr(self, "result_", None)
        if res is None:
            raise NotFittedError(f"This {self._name()} is not fitted yet; call fit before "
                                 f"{func}.")
        return res

    def _coords(self, coords: Any, func: str) -> Any:
        if self.feature_names_in_ is not None and hasattr(coords, "columns"):
            missing = [c for c in self.feature_names_in_ if c not in coords.columns]
            if missing:
                raise param_error("coords", func, f"a DataFrame with the columns "
                                  f"{self.feature_names_in_}", list(coords.columns))
            return coords[self.feature_names_in_].to_numpy(dtype=np.float64)
        return coords

    def predict(self, coords: Any, return_std: bool = False) -> Any:
        """Predictive mean (and std) at ``coords`` (M, K); numpy in -> numpy out."""
        func = f"{self._name()}.predict"
        res = self._check_fitted(func)
        is_torch = isinstance(coords, torch.Tensor)
        out = funbat_predict(res, self._coords(coords, func), return_std=return_std)

        def conv(t: torch.Tensor) -> Any:
            if is_torch:
                return t.to(dtype=coords.dtype if coords.is_floating_point() else t.dtype,
                            device=coords.device)
            return to_numpy(t)

        if return_std:
            return conv(out.mean), conv(out.std)
        return conv(out.mean)

    def latent_functions(self, mode: int, grid: Any) -> tuple[Any, Any]:
        """Posterior mean and std ``(G, R)`` of the latent functions of ``mode`` on ``grid``
        (original coordinate units); numpy in -> numpy out."""
        res = self._check_fitted(f"{self._name()}.latent_functions")
        m, s = funbat_latent(res, mode, grid)
        if isinstance(grid, torch.Tensor):
            return m.to(grid.device), s.to(grid.device)
        return to_numpy(m), to_numpy(s)

    @property
    def offset_(self) -> float:
        """Target mean removed before fitting: ``predict = offset_ + to_tensor(...)``."""
        return self._check_fitted("offset_").y_mean

    def to_tensor(self, grids: Sequence[Any] | None = None) -> Any:
        """Posterior-mean decomposition on coordinate grids as a discrete format object.

        Parameters
        ----------
        grids : sequence of K 1-D arrays, optional
            Coordinates per mode (original units); default the unique training ones.

        Returns
        -------
        TuckerTensor (FunctionalTucker) or CPTensor (FunctionalCP) with numpy parts whose
        entry ``(j_1, ..., j_K)`` is the predictive mean at ``(grids[0][j_1], ...)`` minus
        :attr:`offset_` (the core / weights carry the target scale).
        """
        from ._formats import CPTensor, TuckerTensor

        res = self._check_fitted("to_tensor")
        K = len(res.ranks)
        if grids is None:
            grids = [to_numpy(res.coords[k] * res.scale[k] + res.shift[k]) for k in range(K)]
        if len(grids) != K:
            raise param_error("grids", f"{self._name()}.to_tensor",
                              f"a sequence of K={K} coordinate arrays", grids)
        factors = [to_numpy(funbat_latent(res, k, g)[0]) for k, g in enumerate(grids)]
        core = to_numpy(res.core_mean) * res.y_std
        if res.structure == "cp":
            return CPTensor(core, factors)
        return TuckerTensor(core.reshape(res.ranks), factors)

    def plot_latent_functions(self, path: str | os.PathLike[str], *, n_grid: int = 200,
                              modes: Sequence[int] | None = None,
                              mode_names: Sequence[str] | None = None) -> None:
        """Save a figure of every latent function with a +-2 std band (see
        :func:`plot_latent_functions`)."""
        plot_latent_functions(self, path, n_grid=n_grid, modes=modes, mode_names=mode_names)


class FunctionalTucker(_FunctionalBase):
    """Functional Bayesian Tucker decomposition (FunBaT) estimator.

    Parameters
    ----------
    ranks : int or tuple of K ints
        Latent functions per mode.
    kernel, lengthscale, variance, hyperparameters, hyper_every, core_variance, a0, b0,
    n_epochs, damping, tol, dtype, generator :
        See :func:`funbat`.
    patience : int, optional
        Early stopping on the validation RMSE (needs ``validation=`` in ``fit``).
    show_progress : bool or None, default False
        Progress bar per epoch.

    Attributes
    ----------
    result_ : FunBaTResult
    history_ : dict of per-epoch lists ("train_rmse", "val_rmse", "noise_std", ...)
    lengthscales_, variances_ : learned per-mode hyper-parameters (scaled units)
    lengthscales_original_ : lengthscales in the original coordinate units
    noise_std_ : posterior mean noise standard deviation
    feature_names_in_ : coordinate column names when fitted on a DataFrame

    References
    ----------
    Fang et al., ICLR 2024, Algorithm 1.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(500, 3))
    >>> y = np.sin(3 * X[:, 0]) * np.cos(2 * X[:, 1]) * (1 + X[:, 2])
    >>> model = FunctionalTucker(2, n_epochs=30, generator=0).fit(X, y)
    >>> mean, std = model.predict(X[:3], return_std=True)
    >>> m, s = model.latent_functions(0, np.linspace(0, 1, 50))
    >>> m.shape
    (50, 2)
    """

    _structure = "tucker"

    @property
    def core_(self) -> Any:
        """Posterior mean core ``(R_1, ..., R_K)`` as a numpy array."""
        res = self._check_fitted("core_")
        return to_numpy(res.core_mean.reshape(res.ranks))


class FunctionalCP(_FunctionalBase):
    """FunBaT-CP: functional Bayesian CP decomposition (superdiagonal core).

    ``y = sum_r w_r prod_k u^k_r(i_k) + eps`` with GP priors on each ``u^k_r``; the weights
    ``w`` get a Gaussian posterior. Parameters as in :class:`FunctionalTucker`, with a
    single int ``rank``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(300, 2))
    >>> y = np.sin(3 * X[:, 0]) * np.cos(2 * X[:, 1])
    >>> FunctionalCP(2, n_epochs=20, generator=0).fit(X, y).predict(X[:2]).shape
    (2,)
    """

    _structure = "cp"

    def __init__(self, rank: int, **kwargs: Any) -> None:
        super().__init__(rank, **kwargs)

    @property
    def rank(self) -> int:
        return self.ranks  # type: ignore[return-value]

    @property
    def weights_(self) -> Any:
        """Posterior mean CP weights ``(R,)``."""
        return to_numpy(self._check_fitted("weights_").core_mean)


def plot_latent_functions(model: _FunctionalBase, path: str | os.PathLike[str], *,
                          n_grid: int = 200, modes: Sequence[int] | None = None,
                          mode_names: Sequence[str] | None = None) -> None:
    """Plot each mode's latent functions (mean and +-2 std band) and save atomically.

    Parameters
    ----------
    model : fitted FunctionalTucker or FunctionalCP
    path : output image path (format from the suffix, e.g. ``.png``, ``.svg``)
    n_grid : int, default 200
        Grid points per mode, spanning the training range plus 5% each side.
    modes : sequence of int, optional
        Which modes to draw (default all).
    mode_names : sequence of str, optional
        Axis labels (default the DataFrame column names, or "mode k").
    """
    func = "plot_latent_functions"
    res = model._check_fitted(func)
    check_int(n_grid, "n_grid", func, low=2)
    K = len(res.ranks)
    modes = list(range(K)) if modes is None else [
        check_int(m, "modes", func, low=0, high=K - 1) for m in modes]
    names = list(mode_names) if mode_names is not None else (
        model.feature_names_in_ or [f"mode {k}" for k in range(K)])
    if len(names) != K:
        raise param_error("mode_names", func, f"a sequence of K={K} names", mode_names)
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .._io import atomic_path

    fig, axes = plt.subplots(1, len(modes), figsize=(4.2 * len(modes), 3.2), squeeze=False)
    for ax, k in zip(axes[0], modes, strict=True):
        lo = float(res.shift[k])
        hi = lo + float(res.scale[k])
        pad = 0.05 * (hi - lo)
        grid = np.linspace(lo - pad, hi + pad, n_grid)
        m, s = model.latent_functions(k, grid)
        for r in range(m.shape[1]):
            line = ax.plot(grid, m[:, r], lw=1.5, label=f"u{r + 1}")[0]
            ax.fill_between(grid, m[:, r] - 2 * s[:, r], m[:, r] + 2 * s[:, r],
                            color=line.get_color(), alpha=0.2, lw=0)
        ax.set_xlabel(names[k])
        ax.set_title(f"latent functions, {names[k]}")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    suffix = os.path.splitext(os.fspath(path))[1] or ".png"
    with atomic_path(path, suffix=suffix) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
