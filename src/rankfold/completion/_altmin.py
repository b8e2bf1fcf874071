"""Robust alternating minimization for exact low-rank matrix completion.

Algorithm (Jain, Netrapalli & Sanghavi 2013, Alg. 2, with the approximate least-squares
updates of Gu, Song, Yin & Zhang 2023, Alg. 1)::

    p   = |Omega| / (m n)
    U_0 = top-k left singular vectors of P_Omega(M) / p       (spectral initialisation)
    clip the rows of U_0 whose norm exceeds clip_factor * sqrt(k / m), then U_0 = QR(U_0)
    for t = 1..T:
        V_t = argmin_V || P_Omega(U_{t-1} V^T - M) ||_F   (per column, approximately)
        V_t = QR(V_t)
        U_t = argmin_U || P_Omega(U V_t^T - M) ||_F       (per row, approximately)
        U_t = QR(U_t)     (except after the last step: M_hat = U_T V_T^T)

With ``sample_splitting=True`` Omega is split into 2T + 1 disjoint random parts: part 0
for the initialisation and a fresh part for each half step, as the analysis assumes
(it costs samples; in practice reusing all of Omega works better, hence off by default).
The incoherence ``mu(U) = m / k * max_i ||U_i||^2`` of each iterate is logged in
``history["incoherence_u"]`` / ``["incoherence_v"]``.

References
----------
Jain, Netrapalli, Sanghavi. Low-rank matrix completion using alternating minimization.
STOC 2013, Algorithm 2. Gu, Song, Yin, Zhang. Low Rank Matrix Completion via Robust
Alternating Minimization in Nearly Linear Time. ICLR 2024 (arXiv:2302.11068), Alg. 1.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import torch

from .._errors import ConvergenceError
from ._als import Callback, Problem, Validation
from ._model import CompletionModel, predict_indices, rmse_mae
from ._solvers import SolverOptions, build_layout, solve_side
from ._svd import sparse_topk_svd

__all__ = ["altmin", "incoherence"]

logger = logging.getLogger("rankfold.completion")


def incoherence(U: torch.Tensor) -> float:
    """``m / k * max_i ||U_i||^2`` of an orthonormal ``U`` (m, k); 1 is perfectly spread."""
    m, k = U.shape
    return float(U.pow(2).sum(1).amax()) * m / k


def _orthonormal(X: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(X).Q


def altmin(problem: Problem, rank: int, *, n_iter: int, tol: float, clip: bool,
           clip_factor: float, sample_splitting: bool, opts: SolverOptions, reg: float,
           generator: torch.Generator, validation: Validation | None = None,
           callback: Callback | None = None) -> CompletionModel:
    """Run robust alternating minimization on a prepared problem (module docstring).

    Parameters
    ----------
    problem : Problem
    rank : int
    n_iter : int
        Number of (V, U) update pairs T.
    tol : float
        Stop when the RMSE on Omega falls below ``tol`` times the RMS of the observed
        values (or stagnates within a factor 1000 of that).
    clip : bool
        Clip the rows of the spectral initialisation.
    clip_factor : float
        Row-norm bound in units of ``sqrt(k / m)`` (``2 sqrt(mu)`` in JNS13).
    sample_splitting : bool
        Fresh samples for each half step.
    opts : SolverOptions
        Row solver.
    reg : float
        Ridge added to every row problem (0 is the algorithm as published).
    generator : torch.Generator
    """
    m, n = problem.shape
    dt, dev = problem.dtype, problem.device
    k = rank
    rows = problem.rows.cpu().numpy()
    cols = problem.cols.cpu().numpy()
    vals = problem.values.cpu().numpy()
    nnz = vals.shape[0]
    if sample_splitting:
        parts = 2 * n_iter + 1
        groups = torch.randint(0, parts, (nnz,), generator=torch.Generator().manual_seed(
            int(torch.randint(0, 2**62, (1,), generator=generator, device=dev).item())))
        groups = groups.numpy()
    else:
        parts, groups = 1, np.zeros(nnz, dtype=np.int64)

    def part(j: int) -> np.ndarray:
        return np.flatnonzero(groups == (j if sample_splitting else 0))

    sel = part(0)
    p = sel.size / (m * n)
    U = sparse_topk_svd(torch.from_numpy(rows[sel]).to(dev), torch.from_numpy(cols[sel]).to(
        dev), torch.from_numpy(vals[sel]).to(dev, dt) / p, (m, n), k, generator=generator).U
    history: dict[str, Any] = {"loss": [], "time": [], "incoherence_u": [],
                               "incoherence_v": [], "val_rmse": []}
    history["incoherence_init"] = [incoherence(U)]
    if clip:
        bound = clip_factor * math.sqrt(k / m)
        norms = U.norm(dim=1)
        U = U * torch.where(norms > bound, bound / norms.clamp_min(1e-300), 1.0)[:, None]
        U = _orthonormal(U)
    zeros_m = torch.zeros(m, dtype=dt, device=dev)
    zeros_n = torch.zeros(n, dtype=dt, device=dev)
    ridge = torch.full((k,), reg, dtype=dt, device=dev)
    start = time.perf_counter()
    prev = math.inf
    scale = float(problem.values.double().pow(2).mean().sqrt()) or 1.0
    full_rows, full_cols, full_vals = problem.rows, problem.cols, problem.values
    V = torch.zeros(n, k, dtype=dt, device=dev)
    for it in range(n_iter):
        if sample_splitting:
            a, b = part(2 * it + 1), part(2 * it + 2)
            lay_v = build_layout(cols[a], rows[a], vals[a], n, m, dtype=dt, device=dev)
            lay_u = build_layout(rows[b], cols[b], vals[b], m, n, dtype=dt, device=dev)
        else:
            lay_v, lay_u = problem.items, problem.users
        ones_v = torch.ones(n, dtype=dt, device=dev)
        ones_u = torch.ones(m, dtype=dt, device=dev)
        V = solve_side(lay_v, U, None, ones_v, ridge, V, opts, generator)
        V = _orthonormal(V)
        U_basis = U
        U = solve_side(lay_u, V, None, ones_u, ridge, U_basis, opts, generator)
        if not (bool(torch.isfinite(U).all()) and bool(torch.isfinite(V).all())):
            raise ConvergenceError(f"AltMin produced non-finite factors at iteration {it + 1}.")
        model = CompletionModel(U, V, zeros_m, zeros_n, 0.0, history)
        fit = predict_indices(model, full_rows, full_cols)
        loss = float((fit.double() - full_vals.double()).pow(2).mean())
        record: dict[str, Any] = {"loss": loss, "time": time.perf_counter() - start,
                                  "incoherence_u": incoherence(_orthonormal(U)),
                                  "incoherence_v": incoherence(V)}
        for key in ("loss", "time", "incoherence_u", "incoherence_v"):
            history[key].append(record[key])
        if validation is not None:
            pred = predict_indices(model, validation.rows, validation.cols)
            record["val_rmse"] = rmse_mae(pred, validation.values)[0]
            history["val_rmse"].append(record["val_rmse"])
        logger.debug("AltMin iteration %d: %s", it + 1, record)
        if callback is not None:
            callback(it, record)
        if it + 1 < n_iter:
            # converged: residual on Omega at the tolerance, or no longer decreasing
            if math.sqrt(loss) <= tol * scale or (
                    it > 0 and not sample_splitting and loss >= prev * (1 - 1e-3)
                    and math.sqrt(loss) <= 1e3 * tol * scale):
                break
            prev = loss
            U = _orthonormal(U)
    if validation is None:
        del history["val_rmse"]
    return CompletionModel(U, V, zeros_m, zeros_n, 0.0, history)
