"""Input checks shared by the tensor decompositions (validate before any work)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._array import InputInfo, as_tensor
from .._errors import InvalidParameterError, ShapeError
from .._validation import check_int, param_error

__all__ = ["as_dense_tensor", "check_mask", "check_ranks", "fill_missing"]


def as_dense_tensor(X: Any, func: str, *, finite: bool = True,
                    name: str = "X") -> tuple[torch.Tensor, InputInfo]:
    """A dense floating tensor of order >= 2 (no batch dimension: every axis is a mode)."""
    t, info = as_tensor(X, name, func, ndim=None, finite=False)
    if t.ndim < 2:
        raise ShapeError(f"The '{name}' parameter of {func} must be a tensor with at least 2 "
                         f"modes. Got shape {tuple(t.shape)}.")
    if t.is_complex():
        raise param_error(name, func, "a real tensor", X)
    if finite and not bool(torch.isfinite(t).all()):
        raise InvalidParameterError(
            f"The '{name}' parameter of {func} must not contain NaN or infinity. "
            f"Got non-finite values in <{type(X).__name__} of shape {tuple(t.shape)}>; "
            f"pass mask=~isnan(X) to treat them as missing."
        )
    return t, info


def _all_finite(X: torch.Tensor) -> bool:
    # numpy on CPU: one pass, no thread-pool wake-up (torch's two-thread isfinite took
    # 40-60 ms on a 1e6-entry tensor on the busy shared machine, numpy ~1 ms)
    if X.device.type == "cpu" and not X.requires_grad and \
            X.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(X.numpy()).all())
    return bool(torch.isfinite(X).all())


def check_mask(mask: Any, X: torch.Tensor, func: str) -> torch.Tensor | None:
    """Validate a mask (True/1 = observed) against ``X``; return a bool tensor or None.

    Also checks that ``X`` is finite where observed (NaN is allowed where missing) and
    that at least one entry is observed.
    """
    if mask is None:
        if not _all_finite(X):
            raise InvalidParameterError(
                f"The 'X' parameter of {func} must not contain NaN or infinity. Got "
                f"non-finite values in a tensor of shape {tuple(X.shape)}; pass "
                f"mask=~isnan(X) to treat them as missing."
            )
        return None
    if isinstance(mask, torch.Tensor):
        m = mask
    else:
        try:
            arr = np.asarray(mask)
        except Exception as exc:
            raise param_error("mask", func, "an array of booleans or 0/1", mask) from exc
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise param_error("mask", func, "an array of booleans or 0/1", mask)
        m = torch.from_numpy(np.ascontiguousarray(arr))
    if tuple(m.shape) != tuple(X.shape):
        raise ShapeError(f"The 'mask' parameter of {func} must have the shape of X "
                         f"{tuple(X.shape)}. Got shape {tuple(m.shape)}.")
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise param_error("mask", func, "boolean or 0/1 valued (1 = observed)",
                              "values other than 0 and 1")
        m = m != 0
    m = m.to(X.device)
    if not bool(m.any()):
        raise param_error("mask", func, "True (observed) somewhere", "an all-False mask")
    if not bool(torch.isfinite(X[m]).all()):
        raise InvalidParameterError(
            f"The 'X' parameter of {func} must be finite where mask is True (observed). "
            f"Got NaN or infinity outside the missing entries."
        )
    return m


def fill_missing(X: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``X`` with missing entries replaced by the mean of the observed ones."""
    if mask is None:
        return X
    mean = X[mask].mean()
    return torch.where(mask, X, mean)


def check_ranks(ranks: Any, shape: Sequence[int], func: str, *, name: str = "ranks",
                allow_none: bool = True, bound: Sequence[int] | None = None) -> list[int] | None:
    """One rank per mode (an int broadcasts); each in ``[1, bound[k]]`` when bound is given."""
    K = len(shape)
    if ranks is None:
        if allow_none:
            return None
        raise param_error(name, func, f"an int or a sequence of {K} ints", ranks)
    if isinstance(ranks, numbers.Integral) and not isinstance(ranks, bool):
        ranks = [int(ranks)] * K
    elif isinstance(ranks, np.ndarray | torch.Tensor):
        ranks = [r.item() for r in ranks.reshape(-1)]
    if not isinstance(ranks, Sequence) or isinstance(ranks, str):
        raise param_error(name, func, f"an int or a sequence of {K} ints", ranks)
    if len(ranks) != K:
        raise param_error(name, func, f"a sequence of {K} ints (one per mode)", ranks)
    out = []
    for k, r in enumerate(ranks):
        hi = None if bound is None else int(bound[k])
        check_int(r, f"{name}[{k}]", func, low=1, high=hi)
        out.append(int(r))
    return out
