"""Optional short refinement of the factorized layers (``compress(..., refine_epochs=k)``).

After the one-shot factorization, the factors of every low-rank module are trained for a
few passes over the calibration batches so that the *model's* output matches the dense
model's (knowledge distillation on the calibration data, teacher = the model before
compression). One-shot methods fit each layer alone; the errors of the layers interact
(each layer sees the already degraded outputs of the ones before it), and this step lets
the factors compensate for each other.

Objective: the relative squared error of the model's main output (logits or last hidden
state, :func:`~rankfold.nn.calibration.main_output`) over the non-padding positions of a
batch, ``sum ||y - y_dense||^2 / sum ||y_dense||^2``, minimised by Adam with a learning
rate decaying linearly to zero. The model runs in eval mode (no dropout); gradients are
taken with :func:`torch.autograd.grad` on the factors only, so the model's ``.grad``
attributes and every other parameter are left as they were. Dense outputs are recorded
once when they fit in ``max_target_bytes``, else recomputed per step with the dense
modules swapped back in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._errors import ConvergenceError
from .calibration import Calibration, _attention_mask, _eval_mode, main_output

__all__ = ["refine"]


def _valid(batch: Any, out: torch.Tensor) -> torch.Tensor | None:
    mask = _attention_mask(batch)
    if mask is None or out.dim() < 2 or tuple(out.shape[:2]) != tuple(mask.shape):
        return None
    return mask.to(torch.bool)


def relative_error(out: torch.Tensor, ref: torch.Tensor, batch: Any) -> torch.Tensor:
    """``sum ||out - ref||^2 / sum ||ref||^2`` over the non-padding positions."""
    keep = _valid(batch, ref)
    if keep is not None:
        out, ref = out[keep], ref[keep]
    diff = (out - ref).to(torch.float32)
    return (diff * diff).sum() / (ref.to(torch.float32) ** 2).sum().clamp_min(1e-30)


def refine(model: nn.Module, calib: Calibration, swap: Callable[[bool], None],
           params: list[torch.Tensor], *, epochs: int, lr: float,
           generator: torch.Generator | None = None,
           max_target_bytes: int = 1 << 30) -> list[float]:
    """Train ``params`` (the factors, already swapped in) for ``epochs`` passes.

    ``swap(True)`` puts the factorized modules in, ``swap(False)`` the dense ones back;
    it is called with ``False`` to record (or recompute) the dense outputs and the
    factorized modules are in when this returns. The order of the batches is shuffled
    with ``generator``. Returns the mean objective of each epoch.

    Raises
    ------
    ConvergenceError
        The objective or a factor became non-finite (the caller restores the model).
    """
    batches = list(calib)
    targets: list[torch.Tensor] | None = []
    swap(False)
    try:
        with torch.no_grad(), _eval_mode(model):
            used = 0
            for b in batches:
                y = main_output(calib.run(model, b)).detach()
                used += y.numel() * y.element_size()
                if used > max_target_bytes:
                    targets = None
                    break
                targets.append(y)
    finally:
        swap(True)
    total = epochs * len(batches)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / total)
    history: list[float] = []
    with _eval_mode(model), torch.enable_grad():
        for _ in range(epochs):
            tot = 0.0
            for j in torch.randperm(len(batches), generator=generator).tolist():
                b = batches[j]
                if targets is not None:
                    ref = targets[j]
                else:
                    swap(False)
                    try:
                        with torch.no_grad():
                            ref = main_output(calib.run(model, b)).detach()
                    finally:
                        swap(True)
                loss = relative_error(main_output(calib.run(model, b)), ref, b)
                if not math.isfinite(float(loss.detach())):
                    raise ConvergenceError(
                        "The refinement objective became non-finite; lower refine_lr or "
                        "use refine_epochs=0.")
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for p, g in zip(params, grads, strict=True):
                    p.grad = None if g is None else g.detach()
                opt.step()
                sched.step()
                tot += float(loss.detach())
            history.append(tot / max(len(batches), 1))
    for p in params:
        p.grad = None
        if not bool(torch.isfinite(p).all()):
            raise ConvergenceError("A refined factor holds NaN or infinity; lower refine_lr.")
    return history
