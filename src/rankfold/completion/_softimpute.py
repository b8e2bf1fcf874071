"""SoftImpute: nuclear-norm regularised completion by iterated soft-thresholded SVDs.

Minimises ``1/2 ||P_Omega(M - Z)||_F^2 + lambda ||Z||_*`` (Mazumder, Hastie & Tibshirani
2010, Algorithm 1)::

    Z = 0
    repeat: U S V^T = SVD_k( P_Omega(M) - P_Omega(Z) + Z )      (top rank_max triplets)
            Z = U max(S - lambda, 0) V^T
    until ||Z_new - Z_old||_F^2 / ||Z_old||_F^2 < tol

The matrix inside the SVD is "sparse plus low rank" (Sec. 5): the residual on the observed
entries (a sparse matrix) plus the current low-rank ``Z``; its products with thin blocks
cost O(|Omega| k + (m + n) k^2) and it is never formed densely. Each SVD is a randomized
subspace iteration warm-started from the previous right singular vectors. With
``biases`` the global mean and regularised user/item biases are removed first.

References
----------
Mazumder, Hastie, Tibshirani. Spectral Regularization Algorithms for Learning Large
Incomplete Matrices. JMLR 11 (2010), Algorithm 1 and Sec. 5.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from .._errors import ConvergenceError
from ._als import Callback, Problem, Validation
from ._model import CompletionModel, predict_indices, rmse_mae
from ._svd import CSRPattern, sparse_topk_svd

__all__ = ["soft_impute", "baseline_biases"]

logger = logging.getLogger("rankfold.completion")


def baseline_biases(problem: Problem, reg_bias: float, n_iter: int = 10,
                    ) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Global mean and damped user/item biases (alternating regularised means).

    ``b_u = sum_i (r_ui - mu - c_i) / (n_u + reg_bias)`` and symmetrically (Koren 2010,
    Sec. 2.1).
    """
    m, n = problem.shape
    dt, dev = problem.dtype, problem.device
    mu = float(problem.values.double().mean())
    cu = torch.bincount(problem.rows, minlength=m).to(dt)
    ci = torch.bincount(problem.cols, minlength=n).to(dt)
    bu = torch.zeros(m, dtype=dt, device=dev)
    bi = torch.zeros(n, dtype=dt, device=dev)
    for _ in range(n_iter):
        res = problem.values - mu - bi[problem.cols]
        bu = torch.zeros(m, dtype=dt, device=dev).index_add_(0, problem.rows, res) / (
            cu + reg_bias)
        res = problem.values - mu - bu[problem.rows]
        bi = torch.zeros(n, dtype=dt, device=dev).index_add_(0, problem.cols, res) / (
            ci + reg_bias)
    return mu, bu, bi


def _lowrank_diff_sq(U1: torch.Tensor, s1: torch.Tensor, V1: torch.Tensor, U2: torch.Tensor,
                     s2: torch.Tensor, V2: torch.Tensor) -> float:
    cross = ((U1.T @ U2) * s1[:, None] * s2[None, :] * (V1.T @ V2)).sum()
    return float(s1.pow(2).sum() + s2.pow(2).sum() - 2 * cross)


def soft_impute(problem: Problem, rank: int, *, shrinkage: float | None, n_iter: int,
                tol: float, biases: bool, reg_bias: float, svd_iter: int,
                generator: torch.Generator, validation: Validation | None = None,
                callback: Callback | None = None) -> CompletionModel:
    """Run SoftImpute on a prepared problem (see the module docstring).

    Parameters
    ----------
    problem : Problem
    rank : int
        Largest rank of the iterate (the SVD computes this many triplets).
    shrinkage : float or None
        ``lambda``; None uses ``0.3 sigma_1`` of the observed centred matrix (best of
        0.05-0.3 on a MovieLens-100K validation split; fancyimpute uses sigma_1 / 50,
        which overfits ratings).
    n_iter, tol : int, float
        Iteration cap and relative-change tolerance.
    biases : bool
        Remove global mean and damped biases before the nuclear-norm fit.
    reg_bias : float
        Damping of the biases.
    svd_iter : int
        Power iterations of each warm-started SVD.
    generator : torch.Generator
    """
    m, n = problem.shape
    dt, dev = problem.dtype, problem.device
    if biases:
        mu, bu, bi = baseline_biases(problem, reg_bias)
    else:
        mu, bu, bi = 0.0, torch.zeros(m, dtype=dt, device=dev), torch.zeros(n, dtype=dt,
                                                                             device=dev)
    target = problem.values - mu - bu[problem.rows] - bi[problem.cols]
    rows, cols = problem.rows, problem.cols
    pattern = CSRPattern(rows, cols, (m, n))
    if shrinkage is None:
        top = sparse_topk_svd(rows, cols, target, (m, n), 1, n_iter=4, oversample=5,
                              generator=generator, op=pattern.operator(target))
        shrinkage = 0.3 * float(top.S[0])
    U = torch.zeros(m, 0, dtype=dt, device=dev)
    V = torch.zeros(n, 0, dtype=dt, device=dev)
    s = torch.zeros(0, dtype=dt, device=dev)
    history: dict[str, Any] = {"loss": [], "time": [], "rank": [], "val_rmse": [],
                               "shrinkage": shrinkage}
    nnz = target.shape[0]
    start = time.perf_counter()
    zero_m = torch.zeros(m, dtype=dt, device=dev)
    zero_n = torch.zeros(n, dtype=dt, device=dev)
    for it in range(n_iter):
        fitted = (U[rows] * s * V[cols]).sum(-1) if s.numel() else torch.zeros_like(target)
        resid = target - fitted
        op = pattern.operator(resid, U * s if s.numel() else None, V if s.numel() else None)
        svd = sparse_topk_svd(rows, cols, resid, (m, n), rank, n_iter=svd_iter,
                              init=V if s.numel() else None, generator=generator, op=op)
        s_new = (svd.S - shrinkage).clamp_min(0)
        keep = s_new > 0
        U_new, s_new, V_new = svd.U[:, keep], s_new[keep], svd.V[:, keep]
        if not bool(torch.isfinite(s_new).all()):
            raise ConvergenceError(f"SoftImpute produced non-finite values at iteration "
                                   f"{it + 1}.")
        old_sq = float(s.pow(2).sum())
        change = _lowrank_diff_sq(U, s, V, U_new, s_new, V_new)
        U, s, V = U_new, s_new, V_new
        fitted = (U[rows] * s * V[cols]).sum(-1) if s.numel() else torch.zeros_like(target)
        loss = (0.5 * float((target - fitted).double().pow(2).sum())
                + shrinkage * float(s.sum())) / nnz
        record: dict[str, Any] = {"loss": loss, "time": time.perf_counter() - start,
                                  "rank": int(s.numel())}
        for key in ("loss", "time", "rank"):
            history[key].append(record[key])
        root = s.clamp_min(0).sqrt()
        model = CompletionModel(U * root, V * root, bu, bi, mu, history)
        if validation is not None:
            pred = predict_indices(model, validation.rows, validation.cols,
                                   bounds=problem.bounds)
            record["val_rmse"] = rmse_mae(pred, validation.values)[0]
            history["val_rmse"].append(record["val_rmse"])
        logger.debug("SoftImpute iteration %d: %s", it + 1, record)
        if callback is not None:
            callback(it, record)
        if it > 0 and change <= tol * max(old_sq, 1e-300):
            break
    if validation is None:
        del history["val_rmse"]
    root = s.clamp_min(0).sqrt()
    if s.numel() == 0:  # everything shrunk away: keep a rank-1 zero factor
        return CompletionModel(zero_m[:, None].clone(), zero_n[:, None].clone(), bu, bi, mu,
                               history)
    return CompletionModel(U * root, V * root, bu, bi, mu, history)
