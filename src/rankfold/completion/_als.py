"""Explicit-feedback alternating least squares with biases and ALS-WR regularisation.

Model: ``r_ui ~ mu + b_u + c_i + x_u . y_i``. Objective (``w_u = n_u ** reg_exponent``,
``n_u`` the number of ratings of user ``u``; ``reg_exponent=1`` is ALS-WR)::

    sum_(u,i) (r_ui - mu - b_u - c_i - x_u . y_i)^2
      + sum_u w_u (reg ||x_u||^2 + reg_bias b_u^2) + sum_i w_i (reg ||y_i||^2 + reg_bias c_i^2)

The biases ride along as one extra coordinate: a user half step solves for ``[x_u, b_u]``
against the design ``[y_i, 1]`` and target ``r_ui - mu - c_i`` (and symmetrically), so
each half step minimises the objective exactly over one side (solver ``"cholesky"``) or
decreases it (``"sketch"``, ``"cg"``, warm-started): the objective never increases.

References
----------
Zhou, Wilkinson, Schreiber, Pan. Large-scale Parallel Collaborative Filtering for the
Netflix Prize. AAIM 2008 (ALS-WR, Sec. 3.1). Koren, Bell, Volinsky. Matrix factorization
techniques for recommender systems. IEEE Computer 2009 (biases, Eq. 4-5).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._errors import ConvergenceError
from ._data import Ratings
from ._model import CompletionModel, predict_indices, rmse_mae
from ._solvers import RowLayout, SolverOptions, layouts, solve_side

__all__ = ["als", "Problem", "prepare_problem", "Validation"]

logger = logging.getLogger("rankfold.completion")

Callback = Callable[[int, dict[str, Any]], None]


@dataclass
class Validation:
    """Held-out pairs as indexes into the training id maps (-1 = unknown id)."""

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor


@dataclass
class Problem:
    """Observations as tensors plus both bucketed layouts."""

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    shape: tuple[int, int]
    users: RowLayout
    items: RowLayout
    dtype: torch.dtype
    device: torch.device
    bounds: tuple[float, float]


def prepare_problem(ratings: Ratings, *, dtype: torch.dtype, device: torch.device,
                    ) -> Problem:
    """Tensors and layouts of ``ratings`` on ``device`` in ``dtype``."""
    u, i = layouts(ratings.rows, ratings.cols, ratings.values, ratings.shape, dtype=dtype,
                   device=device)
    vals = ratings.values
    return Problem(
        rows=torch.from_numpy(ratings.rows).to(device),
        cols=torch.from_numpy(ratings.cols).to(device),
        values=torch.from_numpy(vals).to(device, dtype),
        shape=ratings.shape, users=u, items=i, dtype=dtype, device=device,
        bounds=(float(np.min(vals)), float(np.max(vals))),
    )


def _check_finite_factor(X: torch.Tensor, what: str, it: int) -> None:
    if not bool(torch.isfinite(X).all()):
        raise ConvergenceError(
            f"ALS produced non-finite {what} at iteration {it + 1}; lower the rank, raise "
            f"'reg', or use float64."
        )


def als(problem: Problem, rank: int, *, reg: float, reg_bias: float, reg_exponent: float,
        biases: bool, n_iter: int, tol: float, opts: SolverOptions,
        generator: torch.Generator, init: tuple[torch.Tensor, torch.Tensor] | None = None,
        validation: Validation | None = None, callback: Callback | None = None,
        ) -> CompletionModel:
    """Run biased ALS on a prepared problem; see the module docstring.

    Parameters
    ----------
    problem : Problem
        From :func:`prepare_problem`.
    rank : int
        Number of latent factors ``k``.
    reg, reg_bias : float
        Regularisation of the factors and of the biases.
    reg_exponent : float
        Row weight ``n_u ** reg_exponent`` (1 = ALS-WR, 0 = plain ridge).
    biases : bool
        Fit the global mean and user/item biases.
    n_iter : int
        Maximum number of sweeps (user step + item step).
    tol : float
        Stop when the relative decrease of the objective falls below ``tol``.
    opts : SolverOptions
        Inner solver and its options.
    generator : torch.Generator
        Initial item factors and sketches.
    init : (user, item) tensors, optional
        Warm start: full user and item vectors (factors plus bias column when ``biases``).
    validation : Validation, optional
        Held-out ratings; their RMSE is recorded each iteration.
    callback : callable, optional
        ``callback(iteration, record)`` after each sweep.

    Returns
    -------
    CompletionModel
    """
    m, n = problem.shape
    dt, dev = problem.dtype, problem.device
    k = rank
    d = k + 1 if biases else k
    mu = float(problem.values.double().mean()) if biases else 0.0
    if init is not None:
        U, V = init[0].to(dev, dt).clone(), init[1].to(dev, dt).clone()
    else:
        U = torch.zeros(m, d, dtype=dt, device=dev)
        V = torch.zeros(n, d, dtype=dt, device=dev)
        V[:, :k] = torch.randn(n, k, generator=generator, dtype=torch.float64,
                               device=dev).to(dt) * (0.1 / math.sqrt(k))
    ridge = torch.full((d,), reg, dtype=dt, device=dev)
    if biases:
        ridge[k] = reg_bias
    wu = problem.users.counts.to(dt).pow(reg_exponent)
    wi = problem.items.counts.to(dt).pow(reg_exponent)
    ones_m = torch.ones(m, 1, dtype=dt, device=dev)
    ones_n = torch.ones(n, 1, dtype=dt, device=dev)
    history: dict[str, list[Any]] = {"loss": [], "time": [], "val_rmse": []}
    nnz = problem.values.shape[0]
    start = time.perf_counter()
    prev = math.inf

    def objective(fit: float) -> float:
        pen = float((wu[:, None] * ridge * U * U).double().sum()
                    + (wi[:, None] * ridge * V * V).double().sum())
        return (fit + pen) / nnz

    for it in range(n_iter):
        if biases:
            design, offset = torch.cat([V[:, :k], ones_n], 1), mu + V[:, k]
        else:
            design, offset = V, None
        U = solve_side(problem.users, design, offset, wu, ridge, U, opts, generator)
        _check_finite_factor(U, "user factors", it)
        if biases:
            design, offset = torch.cat([U[:, :k], ones_m], 1), mu + U[:, k]
        else:
            design, offset = U, None
        fit: list[float] = []
        V = solve_side(problem.items, design, offset, wi, ridge, V, opts, generator,
                       sq_residual=fit)
        _check_finite_factor(V, "item factors", it)
        loss = objective(fit[0])
        record: dict[str, Any] = {"loss": loss, "time": time.perf_counter() - start}
        history["loss"].append(loss)
        history["time"].append(record["time"])
        if validation is not None:
            model = _model(U, V, k, mu, biases, history)
            pred = predict_indices(model, validation.rows, validation.cols,
                                   bounds=problem.bounds)
            record["val_rmse"] = rmse_mae(pred, validation.values)[0]
            history["val_rmse"].append(record["val_rmse"])
        logger.debug("ALS iteration %d: %s", it + 1, record)
        if callback is not None:
            callback(it, record)
        if it > 0 and prev - loss <= tol * abs(prev):
            break
        prev = loss
    if validation is None:
        del history["val_rmse"]
    return _model(U, V, k, mu, biases, history)


def _model(U: torch.Tensor, V: torch.Tensor, k: int, mu: float, biases: bool,
           history: dict[str, list[Any]]) -> CompletionModel:
    if biases:
        return CompletionModel(U[:, :k], V[:, :k], U[:, k], V[:, k], mu, history)
    z = torch.zeros
    return CompletionModel(U, V, z(U.shape[0], dtype=U.dtype, device=U.device),
                           z(V.shape[0], dtype=V.dtype, device=V.device), 0.0, history)
