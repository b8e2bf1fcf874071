"""Matern Gaussian processes as linear state-space models, with Kalman / RTS smoothing.

A Matern-(p + 1/2) GP on the real line is the first coordinate of a p + 1 dimensional
linear SDE ``dx = F x dt + L dbeta`` with white-noise spectral density ``Qc``.  Between
two sorted coordinates the state moves by ``A = expm(F dt)`` plus Gaussian noise of
covariance ``Q = P_inf - A P_inf A^T`` (``P_inf`` is the stationary covariance).

This module holds the building blocks FunBaT uses for each mode's latent functions:

* :func:`matern_state_space` -- ``F, L, Qc, H, P_inf`` of one Matern component;
* :func:`discretize` -- ``A(dt), Q(dt)``, batched over the gaps;
* :func:`kalman_smoother` -- Kalman filter + Rauch-Tung-Striebel smoother of ``R``
  independent GP components observed through *pseudo-observations in natural
  parameters* (``Lambda_s`` an ``R x R`` PSD precision, ``eta_s`` a vector) at sorted
  unique coordinates.  Both passes run as parallel prefix scans (Sarkka and
  Garcia-Fernandez, 2021) so each pass costs ``O(log S)`` batched operations instead of a
  Python loop over the ``S`` coordinates; covariances use Joseph-type updates, so they
  stay symmetric positive semi-definite;
* :func:`pseudo_log_likelihood` -- the log marginal likelihood of the pseudo-
  observations (the objective for choosing lengthscale / variance), batched over a grid
  of hyper-parameters;
* :func:`conditional_predict` -- the posterior of the state at new coordinates:
  interpolation between the two smoothed neighbours, forward propagation after the last
  coordinate, the stationary reverse conditional before the first.

References
----------
J. Hartikainen and S. Sarkka, "Kalman filtering and smoothing solutions to temporal
Gaussian process regression models", MLSP 2010 (Matern state-space forms).
S. Sarkka and A. F. Garcia-Fernandez, "Temporal parallelization of Bayesian smoothers",
IEEE TAC 66(1), 2021 (Lemmas 7-10: associative filtering and smoothing elements).
S. Fang et al., "Functional Bayesian Tucker decomposition for continuous-indexed tensor
data", ICLR 2024 (Algorithm 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from .._validation import check_float, check_option

__all__ = [
    "KERNELS",
    "StateSpace",
    "SmootherResult",
    "matern_state_space",
    "matern_kernel",
    "discretize",
    "state_transitions",
    "kalman_smoother",
    "pseudo_log_likelihood",
    "conditional_predict",
]


class StateSpace(NamedTuple):
    """State-space form of one Matern GP component (state dimension ``d``).

    Attributes
    ----------
    F : (d, d) drift matrix.
    L : (d, 1) noise loading.
    Qc : (1, 1) spectral density of the white noise.
    H : (1, d) observation row (the function value is the first state coordinate).
    P_inf : (d, d) stationary covariance, the solution of ``F P + P F^T + L Qc L^T = 0``.
    """

    F: torch.Tensor
    L: torch.Tensor
    Qc: torch.Tensor
    H: torch.Tensor
    P_inf: torch.Tensor


def _matern12(ell: float, var: float) -> tuple[list, list, float]:
    lam = 1.0 / ell
    return [[-lam]], [[var]], 2.0 * var * lam


def _matern32(ell: float, var: float) -> tuple[list, list, float]:
    lam = math.sqrt(3.0) / ell
    return ([[0.0, 1.0], [-lam**2, -2.0 * lam]],
            [[var, 0.0], [0.0, lam**2 * var]], 4.0 * var * lam**3)


def _matern52(ell: float, var: float) -> tuple[list, list, float]:
    lam = math.sqrt(5.0) / ell
    kap = lam**2 * var / 3.0
    return ([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-lam**3, -3.0 * lam**2, -3.0 * lam]],
            [[var, 0.0, -kap], [0.0, kap, 0.0], [-kap, 0.0, lam**4 * var]],
            16.0 / 3.0 * var * lam**5)


#: kernel name -> function (lengthscale, variance) -> (F, P_inf, Qc) as nested lists
KERNELS: dict[str, Callable[[float, float], tuple[list, list, float]]] = {
    "matern12": _matern12,
    "matern32": _matern32,
    "matern52": _matern52,
}

_ORDER = {"matern12": 1, "matern32": 2, "matern52": 3}


def matern_state_space(kernel: str, lengthscale: float, variance: float, *,
                       dtype: torch.dtype = torch.float64,
                       device: torch.device | str | None = None) -> StateSpace:
    """State-space form of a Matern kernel.

    Parameters
    ----------
    kernel : {"matern12", "matern32", "matern52"}
    lengthscale, variance : float
        Positive kernel parameters.
    dtype, device : torch dtype and device of the matrices (default float64, CPU).

    Returns
    -------
    StateSpace
        ``F, L, Qc, H, P_inf`` with state dimension 1, 2 or 3.

    Examples
    --------
    >>> ss = matern_state_space("matern32", 0.5, 2.0)
    >>> [round(v, 6) for v in ss.P_inf.diagonal().tolist()]
    [2.0, 24.0]
    """
    func = "matern_state_space"
    check_option(kernel, "kernel", func, KERNELS)
    check_float(lengthscale, "lengthscale", func, low=0.0, closed_low=False)
    check_float(variance, "variance", func, low=0.0, closed_low=False)
    F, P, qc = KERNELS[kernel](float(lengthscale), float(variance))
    d = len(F)
    kw = {"dtype": dtype, "device": device}
    Lvec = torch.zeros(d, 1, **kw)
    Lvec[-1, 0] = 1.0
    H = torch.zeros(1, d, **kw)
    H[0, 0] = 1.0
    return StateSpace(torch.tensor(F, **kw), Lvec, torch.tensor([[qc]], **kw), H,
                      torch.tensor(P, **kw))


def matern_kernel(kernel: str, dt: torch.Tensor, lengthscale: float | torch.Tensor,
                  variance: float | torch.Tensor) -> torch.Tensor:
    """Closed-form Matern covariance ``k(dt)`` (for checks and dense references)."""
    check_option(kernel, "kernel", "matern_kernel", KERNELS)
    r = dt.abs()
    if kernel == "matern12":
        return variance * torch.exp(-r / lengthscale)
    if kernel == "matern32":
        s = math.sqrt(3.0) * r / lengthscale
        return variance * (1.0 + s) * torch.exp(-s)
    s = math.sqrt(5.0) * r / lengthscale
    return variance * (1.0 + s + s**2 / 3.0) * torch.exp(-s)


def _sym(X: torch.Tensor) -> torch.Tensor:
    return 0.5 * (X + X.transpose(-1, -2))


def _tr(X: torch.Tensor) -> torch.Tensor:
    return X.transpose(-1, -2)


def discretize(F: torch.Tensor, P_inf: torch.Tensor, dt: torch.Tensor,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Transition ``A = expm(F dt)`` and noise ``Q = P_inf - A P_inf A^T``.

    Parameters
    ----------
    F, P_inf : (*B, d, d) tensors (batch dims broadcast with ``dt``).
    dt : (*T,) non-negative gaps.

    Returns
    -------
    A, Q : (*T, *B, d, d) tensors; ``Q`` is symmetrised.
    """
    shape = dt.shape + (1,) * (F.ndim)
    A = torch.linalg.matrix_exp(F * dt.reshape(shape))
    Q = _sym(P_inf - A @ P_inf @ _tr(A))
    return A, Q


def _block_diag_R(X: torch.Tensor, R: int) -> torch.Tensor:
    """kron(I_R, X) for X of shape (..., d, d) -> (..., R d, R d)."""
    eye = torch.eye(R, dtype=X.dtype, device=X.device)
    d = X.shape[-1]
    out = eye[:, None, :, None] * X[..., None, :, None, :]
    return out.reshape(*X.shape[:-2], R * d, R * d)


class SmootherResult(NamedTuple):
    """Output of :func:`kalman_smoother` for ``S`` sorted coordinates, state size ``D = R d``.

    Attributes
    ----------
    mean : (S, D) smoothed state means.
    cov : (S, D, D) smoothed state covariances.
    cross : (S - 1, D, D) smoothed cross-covariances ``Cov(x_s, x_{s+1})``.
    u_mean : (S, R) posterior means of the R latent function values.
    u_cov : (S, R, R) their posterior covariances.
    log_lik : () log marginal likelihood of the pseudo-observations.
    """

    mean: torch.Tensor
    cov: torch.Tensor
    cross: torch.Tensor
    u_mean: torch.Tensor
    u_cov: torch.Tensor
    log_lik: torch.Tensor


def _site_roots(Lam: torch.Tensor) -> torch.Tensor:
    """A square root ``Lam = Lr Lr^T`` of PSD site precisions (negative eigenvalues -> 0)."""
    e, V = torch.linalg.eigh(_sym(Lam))
    return V * e.clamp_min(0.0).sqrt()[..., None, :]


def _selector(R: int, d: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    H = torch.zeros(R, R * d, dtype=dtype, device=device)
    H[torch.arange(R), torch.arange(R) * d] = 1.0
    return H


def _transitions(t: torch.Tensor, ss: StateSpace, R: int,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Block-diagonal ``A_s, Q_s`` for the gaps of sorted ``t`` and the stationary ``P0``.

    ``ss`` fields may carry hyper-parameter batch dims ``(*B, d, d)``. Returns
    ``A, Q`` of shape (S - 1, *B, D, D) and ``P0`` of shape (*B, D, D).
    """
    A, Q = discretize(ss.F, ss.P_inf, t[1:] - t[:-1])
    return _block_diag_R(A, R), _block_diag_R(Q, R), _block_diag_R(ss.P_inf, R)


def _update(m0: torch.Tensor, P0: torch.Tensor, H: torch.Tensor, Lr: torch.Tensor,
            eta: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Condition N(m0, P0) on a natural-parameter site (Lambda = Lr Lr^T, eta).

    Returns the posterior mean and covariance (Joseph form) and, for re-use, the
    quantities ``I - K H``, ``B`` (Cholesky), ``S = H P0 H^T`` and ``Ph = P0 H^T``.
    """
    Ph = P0 @ H.T                                        # (..., D, R)
    S = H @ Ph                                           # (..., R, R)
    R = S.shape[-1]
    eye = torch.eye(R, dtype=S.dtype, device=S.device)
    B = eye + _tr(Lr) @ S @ Lr
    Bc = torch.linalg.cholesky(_sym(B))
    PhL = Ph @ Lr                                        # (..., D, R)
    Ws = _tr(torch.cholesky_solve(_tr(PhL), Bc))          # Ph L B^{-1}
    K = Ws @ _tr(Lr)                                     # Ph L B^{-1} L^T
    IKH = torch.eye(P0.shape[-1], dtype=S.dtype, device=S.device) - K @ H
    # Joseph form: (I - K H) P0 (I - K H)^T + K Lam^+ K^T, with K Lam^+ K^T = Ws Ws^T
    P = _sym(IKH @ P0 @ _tr(IKH) + Ws @ _tr(Ws))
    m = m0 + (Ph @ eta[..., None])[..., 0] - (K @ (H @ m0[..., None] + S @ eta[..., None]))[..., 0]
    return m, P, IKH, Bc, S, Ph


def _filter_elements(A: torch.Tensor, Q: torch.Tensor, P0: torch.Tensor, H: torch.Tensor,
                     Lr: torch.Tensor, eta: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Associative filtering elements (A_k, b_k, C_k, eta_k, J_k), Sarkka 2021 Lemma 7."""
    S_len = Lr.shape[0]
    D = P0.shape[-1]
    batch = P0.shape[:-2]
    z = torch.zeros(batch + (D,), dtype=P0.dtype, device=P0.device)
    m1, P1, *_ = _update(z, P0, H, Lr[0], eta[0])
    A_el = torch.zeros((S_len,) + batch + (D, D), dtype=P0.dtype, device=P0.device)
    b_el = torch.zeros((S_len,) + batch + (D,), dtype=P0.dtype, device=P0.device)
    C_el = torch.zeros_like(A_el)
    e_el = torch.zeros_like(b_el)
    J_el = torch.zeros_like(A_el)
    b_el[0], C_el[0] = m1, P1
    if S_len > 1:
        zs = torch.zeros_like(b_el[1:])
        Lr_, eta_ = Lr[1:], eta[1:]
        while Lr_.ndim < A.ndim:  # broadcast sites over hyper-parameter batch dims
            Lr_ = Lr_.unsqueeze(1)
            eta_ = eta_.unsqueeze(1)
        eta_ = eta_.expand(zs.shape[:-1] + eta_.shape[-1:])
        mq, Pq, IKH, Bc, S, Ph = _update(zs, Q, H, Lr_, eta_)
        A_el[1:] = IKH @ A
        b_el[1:] = mq
        C_el[1:] = Pq
        # p(site_k | x_{k-1}) in information form: J = A^T H^T L B^{-1} L^T H A,
        # eta = A^T H^T (I + Lambda S)^{-1} eta_site
        HA = H @ A                                       # (..., R, D)
        LtHA = _tr(Lr_) @ HA
        J_el[1:] = _sym(_tr(LtHA) @ torch.cholesky_solve(LtHA, Bc))
        e_site = eta_ - (Lr_ @ torch.cholesky_solve(_tr(Lr_) @ (S @ eta_[..., None]), Bc))[..., 0]
        e_el[1:] = (_tr(HA) @ e_site[..., None])[..., 0]
    return A_el, b_el, C_el, e_el, J_el


def _assoc_scan(elems: tuple[torch.Tensor, ...],
                combine: Callable[[tuple, tuple], tuple]) -> tuple[torch.Tensor, ...]:
    """Inclusive prefix scan along dim 0 with an associative ``combine(earlier, later)``.

    Work-efficient recursive (Blelloch-type) form: pairs are combined, the half-length
    sequence is scanned, and the even positions are filled in; about ``2 S`` combinations
    in ``2 log2 S`` batched calls.
    """
    n = elems[0].shape[0]
    if n == 1:
        return elems
    pairs = combine(tuple(e[0:n - 1:2] for e in elems), tuple(e[1:n:2] for e in elems))
    sp = _assoc_scan(pairs, combine)
    out = tuple(torch.empty_like(e) for e in elems)
    for o, e, q in zip(out, elems, sp, strict=True):
        o[1::2] = q
        o[0] = e[0]
    if n > 2:
        m = (n - 1) // 2
        rest = combine(tuple(q[:m] for q in sp), tuple(e[2::2] for e in elems))
        for o, r in zip(out, rest, strict=True):
            o[2::2] = r
    return out


def _filter_combine(ei: tuple, ej: tuple) -> tuple:
    """(A, b, C, eta, J)_i (x) (A, b, C, eta, J)_j, Sarkka and Garcia-Fernandez Lemma 8."""
    Ai, bi, Ci, etai, Ji = ei
    Aj, bj, Cj, etaj, Jj = ej
    D = Ai.shape[-1]
    eye = torch.eye(D, dtype=Ai.dtype, device=Ai.device)
    LU, piv = torch.linalg.lu_factor(eye + Ci @ Jj)
    rhs = torch.cat([Ai, (bi + (Ci @ etaj[..., None])[..., 0])[..., None], Ci @ _tr(Aj)], -1)
    X = torch.linalg.lu_solve(LU, piv, rhs)
    An = Aj @ X[..., :D]
    bn = (Aj @ X[..., D:D + 1])[..., 0] + bj
    Cn = _sym(Aj @ X[..., D + 1:] + Cj)
    # I + J_j C_i is the transpose of I + C_i J_j (C, J symmetric): reuse the LU
    rhs2 = torch.cat([(etaj - (Jj @ bi[..., None])[..., 0])[..., None], Jj @ Ai], -1)
    Y = torch.linalg.lu_solve(LU, piv, rhs2, adjoint=True)
    etan = (_tr(Ai) @ Y[..., :1])[..., 0] + etai
    Jn = _sym(_tr(Ai) @ Y[..., 1:] + Ji)
    return An, bn, Cn, etan, Jn


def _scan_filter(A: torch.Tensor, b: torch.Tensor, C: torch.Tensor, e: torch.Tensor,
                 J: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward scan of filtering elements; returns the filtered (m, P)."""
    out = _assoc_scan((A, b, C, e, J), _filter_combine)
    return out[1], out[2]


def _smoother_combine_rev(ej: tuple, ei: tuple) -> tuple:
    """Reversed-order combination of smoothing elements (E, g, L), Lemma 10:
    (E_i, g_i, L_i) (x) (E_j, g_j, L_j) with i before j."""
    Ei, gi, Li = ei
    Ej, gj, Lj = ej
    return (Ei @ Ej, (Ei @ gj[..., None])[..., 0] + gi, _sym(Ei @ Lj @ _tr(Ei) + Li))


def _scan_smoother(E: torch.Tensor, g: torch.Tensor, L: torch.Tensor,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward (suffix) scan of smoothing elements; returns the smoothed (m, P)."""
    out = _assoc_scan((E.flip(0), g.flip(0), L.flip(0)), _smoother_combine_rev)
    return out[1].flip(0), out[2].flip(0)


def _solve_psd(M: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve ``M X = rhs`` for symmetric PSD ``M`` with a tiny relative jitter."""
    D = M.shape[-1]
    scale = M.diagonal(dim1=-2, dim2=-1).abs().amax(-1, keepdim=True)[..., None]
    eye = torch.eye(D, dtype=M.dtype, device=M.device)
    tiny = torch.finfo(M.dtype).eps * 10
    Mj = _sym(M) + eye * (scale * tiny + torch.finfo(M.dtype).tiny)
    c, info = torch.linalg.cholesky_ex(Mj)
    if bool((info > 0).any()):
        return torch.linalg.lstsq(Mj, rhs).solution
    return torch.cholesky_solve(rhs, c)


def _log_lik_terms(mp: torch.Tensor, Pp: torch.Tensor, H: torch.Tensor, Lr: torch.Tensor,
                   eta: torch.Tensor) -> torch.Tensor:
    """log of the integral of exp(-u^T Lam u / 2 + eta^T u) N(u; H mp, H Pp H^T), per site."""
    mu = (H @ mp[..., None])[..., 0]
    S = H @ Pp @ H.T
    R = S.shape[-1]
    eye = torch.eye(R, dtype=S.dtype, device=S.device)
    B = _sym(eye + _tr(Lr) @ S @ Lr)
    Bc = torch.linalg.cholesky(B)
    logdet = 2.0 * torch.log(Bc.diagonal(dim1=-2, dim2=-1)).sum(-1)
    Lam = Lr @ _tr(Lr)
    r = eta - (Lam @ mu[..., None])[..., 0]
    Sr = (S @ r[..., None])
    LtSr = _tr(Lr) @ Sr
    quad = (r[..., None] * Sr).sum((-1, -2)) - (LtSr * torch.cholesky_solve(LtSr, Bc)).sum((-1, -2))
    lin = (eta * mu).sum(-1) - 0.5 * (mu[..., None] * (Lam @ mu[..., None])).sum((-1, -2))
    return -0.5 * logdet + lin + 0.5 * quad


def _predicted(m: torch.Tensor, P: torch.Tensor, A: torch.Tensor, Q: torch.Tensor,
               P0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-step predictions N(A m_{s-1}, A P_{s-1} A^T + Q) (the first is the prior)."""
    mp = torch.cat([torch.zeros_like(m[:1]), (A @ m[:-1, ..., None])[..., 0]])
    Pp = torch.cat([P0.expand_as(P[:1]), _sym(A @ P[:-1] @ _tr(A) + Q)])
    return mp, Pp


def _ss_from(kernel: str, lengthscale: torch.Tensor, variance: torch.Tensor,
             dtype: torch.dtype, device: torch.device) -> StateSpace:
    """Batched state-space matrices for tensors of lengthscales / variances (same shape)."""
    lengthscale = lengthscale.to(dtype=dtype, device=device)
    variance = variance.to(dtype=dtype, device=device)
    flat = [matern_state_space(kernel, float(ell), float(v), dtype=dtype, device=device)
            for ell, v in zip(lengthscale.reshape(-1).tolist(), variance.reshape(-1).tolist(),
                              strict=True)]
    shape = tuple(lengthscale.shape)
    return StateSpace(*[torch.stack([getattr(s, f) for s in flat]).reshape(
        shape + getattr(flat[0], f).shape) for f in StateSpace._fields])


def state_transitions(t: torch.Tensor, R: int, *, kernel: str, lengthscale: float,
                      variance: float, dtype: torch.dtype = torch.float64,
                      device: torch.device | str | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Block-diagonal transitions of ``R`` components over sorted ``t``.

    Returns ``A, Q`` of shape (S - 1, R d, R d) and the stationary covariance ``P0``
    (R d, R d); pass them to :func:`kalman_smoother` (``transitions=``) to reuse them
    while the hyper-parameters do not change.
    """
    ss = matern_state_space(kernel, lengthscale, variance, dtype=dtype, device=device)
    return _transitions(t.to(dtype=dtype, device=device), ss, R)


def kalman_smoother(t: torch.Tensor, Lam: torch.Tensor, eta: torch.Tensor, *,
                    kernel: str, lengthscale: float, variance: float,
                    transitions: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                    ) -> SmootherResult:
    """Posterior of ``R`` independent Matern GPs given natural-parameter sites.

    The prior of each of the ``R`` components is a zero-mean GP with the given Matern
    kernel; at each sorted unique coordinate ``t_s`` the likelihood contributes the
    Gaussian site ``exp(-u_s^T Lam_s u_s / 2 + eta_s^T u_s)`` on the vector ``u_s`` of
    the ``R`` function values (``Lam_s`` may couple the components and may be singular).

    Parameters
    ----------
    t : (S,) strictly increasing coordinates.
    Lam : (S, R, R) PSD site precisions.
    eta : (S, R) site linear terms.
    kernel, lengthscale, variance : the Matern prior of every component.
    transitions : (A, Q, P0), optional
        Precomputed :func:`state_transitions` for these coordinates and hyper-parameters.

    Returns
    -------
    SmootherResult
        Smoothed state means / covariances / neighbour cross-covariances, the marginals of
        the function values, and the log marginal likelihood of the sites.

    Notes
    -----
    Equivalent to the dense GP posterior ``(K^{-1} + Lam)^{-1}`` but linear in ``S``.
    Filtering and smoothing are parallel prefix scans (Sarkka and Garcia-Fernandez 2021,
    Lemmas 7-10) with Joseph-form covariance updates.

    Examples
    --------
    >>> t = torch.linspace(0, 1, 5, dtype=torch.float64)
    >>> Lam = torch.eye(1, dtype=torch.float64).expand(5, 1, 1) * 4.0
    >>> res = kalman_smoother(t, Lam, 4.0 * torch.ones(5, 1, dtype=torch.float64),
    ...                       kernel="matern12", lengthscale=0.5, variance=1.0)
    >>> res.u_mean.shape
    torch.Size([5, 1])
    """
    dtype, device = Lam.dtype, Lam.device
    R = Lam.shape[-1]
    ss = matern_state_space(kernel, lengthscale, variance, dtype=dtype, device=device)
    d = ss.F.shape[-1]
    H = _selector(R, d, dtype, device)
    A, Q, P0 = _transitions(t.to(dtype), ss, R) if transitions is None else transitions
    Lr = _site_roots(Lam)
    els = _filter_elements(A, Q, P0, H, Lr, eta)
    mf, Pf = _scan_filter(*els)
    mp, Pp = _predicted(mf, Pf, A, Q, P0)
    log_lik = _log_lik_terms(mp, Pp, H, Lr, eta).sum(0)
    S_len = t.shape[0]
    if S_len > 1:
        # E_s = P_s A^T (P^-_{s+1})^{-1}; g_s = m_s - E_s A m_s; Joseph-form L_s
        E = _tr(_solve_psd(Pp[1:], A @ Pf[:-1]))
        IEA = torch.eye(R * d, dtype=dtype, device=device) - E @ A
        g = (IEA @ mf[:-1, ..., None])[..., 0]
        Lc = _sym(IEA @ Pf[:-1] @ _tr(IEA) + E @ Q @ _tr(E))
        E_all = torch.cat([E, torch.zeros_like(E[:1])])
        ms, Ps = _scan_smoother(E_all, torch.cat([g, mf[-1:]]), torch.cat([Lc, Pf[-1:]]))
        cross = E @ Ps[1:]                                 # Cov(x_s, x_{s+1} | all sites)
    else:
        ms, Ps = mf, Pf
        cross = torch.zeros((0, R * d, R * d), dtype=dtype, device=device)
    u_mean = (H @ ms[..., None])[..., 0]
    u_cov = _sym(H @ Ps @ H.T)
    return SmootherResult(ms, Ps, cross, u_mean, u_cov, log_lik)


def pseudo_log_likelihood(t: torch.Tensor, Lam: torch.Tensor, eta: torch.Tensor, *,
                          kernel: str, lengthscale: torch.Tensor, variance: torch.Tensor,
                          ) -> torch.Tensor:
    """Log marginal likelihood of natural-parameter sites for a batch of hyper-parameters.

    Parameters
    ----------
    t, Lam, eta : as in :func:`kalman_smoother`.
    lengthscale, variance : (*B,) tensors of candidate hyper-parameters.

    Returns
    -------
    (*B,) tensor: ``log integral prod_s site_s(u_s) p(u) du`` for each candidate.
    """
    dtype, device = Lam.dtype, Lam.device
    R = Lam.shape[-1]
    ss = _ss_from(kernel, lengthscale, variance, dtype, device)
    d = ss.F.shape[-1]
    H = _selector(R, d, dtype, device)
    A, Q, P0 = _transitions(t.to(dtype), ss, R)
    Lr = _site_roots(Lam)
    els = _filter_elements(A, Q, P0, H, Lr, eta)
    mf, Pf = _scan_filter(*els)
    mp, Pp = _predicted(mf, Pf, A, Q, P0)
    nb = mp.ndim - 2
    Lr_b = Lr.reshape(Lr.shape[:1] + (1,) * nb + Lr.shape[1:])
    eta_b = eta.reshape(eta.shape[:1] + (1,) * nb + eta.shape[1:])
    return _log_lik_terms(mp, Pp, H, Lr_b, eta_b).sum(0)


def conditional_predict(t: torch.Tensor, smoothed: SmootherResult, t_new: torch.Tensor, *,
                        kernel: str, lengthscale: float, variance: float,
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior of the ``R`` function values at new coordinates.

    Uses the Markov property of the state: between two training coordinates the state
    depends only on the two smoothed neighbours (joint posterior including their cross-
    covariance); after the last coordinate the prior is propagated forward; before the
    first, the stationary reverse conditional ``p(x* | x_1)`` is used. Every covariance
    is built as a sum of ``M C M^T`` terms, so it is PSD.

    Parameters
    ----------
    t : (S,) the sorted training coordinates of ``smoothed``.
    smoothed : SmootherResult from :func:`kalman_smoother`.
    t_new : (M,) query coordinates (any order, may repeat or equal training ones).

    Returns
    -------
    mean : (M, R) and cov : (M, R, R).
    """
    dtype, device = smoothed.mean.dtype, smoothed.mean.device
    R = smoothed.u_mean.shape[-1]
    ss = matern_state_space(kernel, lengthscale, variance, dtype=dtype, device=device)
    d = ss.F.shape[-1]
    D = R * d
    H = _selector(R, d, dtype, device)
    t = t.to(dtype=dtype, device=device)
    t_new = t_new.to(dtype=dtype, device=device)
    S_len = t.shape[0]
    M = t_new.shape[0]
    mean = torch.empty(M, D, dtype=dtype, device=device)
    cov = torch.empty(M, D, D, dtype=dtype, device=device)
    eye = torch.eye(D, dtype=dtype, device=device)
    P_inf = _block_diag_R(ss.P_inf, R)
    pos = torch.searchsorted(t, t_new)                     # t[pos-1] < t_new <= t[pos]
    exact = (pos < S_len) & (t[pos.clamp_max(S_len - 1)] == t_new)
    before = (pos == 0) & ~exact
    after = pos >= S_len
    inside = ~(exact | before | after)
    if bool(exact.any()):
        idx = pos[exact]
        mean[exact], cov[exact] = smoothed.mean[idx], smoothed.cov[idx]
    if bool(after.any()):
        dt = t_new[after] - t[-1]
        A, Q = discretize(ss.F, ss.P_inf, dt)
        A, Q = _block_diag_R(A, R), _block_diag_R(Q, R)
        mean[after] = (A @ smoothed.mean[-1][:, None])[..., 0]
        cov[after] = _sym(A @ smoothed.cov[-1] @ _tr(A) + Q)
    if bool(before.any()):
        # stationary reverse conditional: x_1 = A x* + q, x* ~ N(0, P_inf)
        dt = t[0] - t_new[before]
        A, Q = discretize(ss.F, ss.P_inf, dt)
        A, Q = _block_diag_R(A, R), _block_diag_R(Q, R)
        G = _tr(_solve_psd(P_inf.expand_as(A), A @ P_inf))   # P_inf A^T P_inf^{-1}
        IGA = eye - G @ A
        C = IGA @ P_inf @ _tr(IGA) + G @ Q @ _tr(G)
        mean[before] = (G @ smoothed.mean[0][:, None])[..., 0]
        cov[before] = _sym(G @ smoothed.cov[0] @ _tr(G) + C)
    if bool(inside.any()):
        hi = pos[inside]
        lo = hi - 1
        tq = t_new[inside]
        A1, Q1 = discretize(ss.F, ss.P_inf, tq - t[lo])
        A2, Q2 = discretize(ss.F, ss.P_inf, t[hi] - tq)
        A1, Q1, A2, Q2 = (_block_diag_R(X, R) for X in (A1, Q1, A2, Q2))
        As = A2 @ A1
        Qs = _sym(A2 @ Q1 @ _tr(A2) + Q2)                 # noise over the full gap
        G = _tr(_solve_psd(Qs, A2 @ Q1))                  # Q1 A2^T Qs^{-1}
        IGA = eye - G @ A2
        C = IGA @ Q1 @ _tr(IGA) + G @ Q2 @ _tr(G)
        Mlo = A1 - G @ As
        m_lo, m_hi = smoothed.mean[lo], smoothed.mean[hi]
        P_lo, P_hi, X = smoothed.cov[lo], smoothed.cov[hi], smoothed.cross[lo]
        mean[inside] = (Mlo @ m_lo[..., None] + G @ m_hi[..., None])[..., 0]
        # joint posterior covariance of (x_lo, x_hi) is PSD, so M Sigma M^T is
        cross_term = Mlo @ X @ _tr(G)
        cov[inside] = _sym(Mlo @ P_lo @ _tr(Mlo) + G @ P_hi @ _tr(G)
                           + cross_term + _tr(cross_term) + C)
    u_mean = (H @ mean[..., None])[..., 0]
    u_cov = _sym(H @ cov @ H.T)
    return u_mean, u_cov
