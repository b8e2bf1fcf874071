"""The fitted low-rank model shared by every completion estimator.

A prediction is ``global_mean + user_bias[u] + item_bias[i] + <user_factors[u],
item_factors[i]>``; estimators without biases store zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["CompletionModel", "predict_indices", "rmse_mae"]


@dataclass
class CompletionModel:
    """Factors, biases and per-iteration history of a fitted completion model.

    Attributes
    ----------
    user_factors : Tensor, shape (n_users, rank)
    item_factors : Tensor, shape (n_items, rank)
    user_bias : Tensor, shape (n_users,)
    item_bias : Tensor, shape (n_items,)
    global_mean : float
    history : dict of lists
        ``"loss"`` (training objective / number of ratings), ``"val_rmse"`` (when
        validation data was given), ``"time"`` (seconds since the start) and
        method-specific diagnostics, one entry per iteration.
    """

    user_factors: torch.Tensor
    item_factors: torch.Tensor
    user_bias: torch.Tensor
    item_bias: torch.Tensor
    global_mean: float
    history: dict[str, list[Any]] = field(default_factory=dict)


def predict_indices(model: CompletionModel, rows: torch.Tensor, cols: torch.Tensor,
                    *, bounds: tuple[float, float] | None = None,
                    chunk: int = 1 << 20) -> torch.Tensor:
    """Predictions at index pairs; a negative index means unknown (its term is dropped).

    Unknown users or items get the bias-only prediction (global mean plus the bias of
    the side that is known), never NaN. ``bounds`` clips to the training rating range.
    """
    out = torch.empty(rows.shape[0], dtype=model.user_factors.dtype,
                      device=model.user_factors.device)
    for lo in range(0, rows.shape[0], chunk):
        r, c = rows[lo:lo + chunk], cols[lo:lo + chunk]
        ku, ki = r >= 0, c >= 0
        rr, cc = r.clamp_min(0), c.clamp_min(0)
        both = (ku & ki).to(out.dtype)
        dot = (model.user_factors[rr] * model.item_factors[cc]).sum(-1) * both
        pred = (model.global_mean + model.user_bias[rr] * ku.to(out.dtype)
                + model.item_bias[cc] * ki.to(out.dtype) + dot)
        if bounds is not None:
            pred = pred.clamp(bounds[0], bounds[1])
        out[lo:lo + chunk] = pred
    return out


def rmse_mae(pred: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Root-mean-square and mean absolute error (float64 accumulation)."""
    err = (pred.double() - truth.double())
    return float(err.pow(2).mean().sqrt()), float(err.abs().mean())
