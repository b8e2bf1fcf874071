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

``refine="blockwise"`` (:func:`refine_blocks`) trains the blocks one after the other
instead (each transformer layer's output matched to the dense layer's, on the inputs the
compressed model gives it): each step runs a single block, and the local objective
converges in far fewer passes than the end-to-end one (docs/nn.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._errors import ConvergenceError
from .calibration import (
    Calibration,
    _attention_mask,
    _eval_mode,
    _Stop,
    main_output,
    replay,
)

__all__ = ["find_blocks", "refine", "refine_blocks"]


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
                tot += _step(loss, params, opt, sched, "refinement")
            history.append(tot / max(len(batches), 1))
    _release(params)
    return history


# ------------------------------------------------------------------ block-wise

def _no_cache(v: Any) -> Any:
    """``None`` for a key/value cache (transformers' ``Cache``: it would grow at every
    step of a block trained on the same inputs), else ``v``."""
    if (not isinstance(v, torch.Tensor) and callable(getattr(v, "update", None))
            and callable(getattr(v, "get_seq_length", None))):
        return None
    return v


def _step(loss: torch.Tensor, params: list[torch.Tensor], opt: torch.optim.Optimizer,
          sched: Any, what: str) -> float:
    """One Adam step on ``loss`` (gradients for ``params`` only); its value, or an error
    naming ``what`` when it is not finite."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise ConvergenceError(
            f"The {what} objective became non-finite; lower refine_lr or use "
            "refine_epochs=0.")
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else g.detach()
    opt.step()
    sched.step()
    return value


def _release(params: list[torch.Tensor]) -> None:
    """Drop the trained factors' gradients; an error when one holds NaN or infinity."""
    for p in params:
        p.grad = None
        if not bool(torch.isfinite(p).all()):
            raise ConvergenceError("A refined factor holds NaN or infinity; lower refine_lr.")


def find_blocks(model: nn.Module, trained: list[str]) -> list[tuple[str, nn.Module]]:
    """The blocks of ``model``: the children of the ``nn.ModuleList`` / ``nn.Sequential``
    that holds the most of the ``trained`` modules (in separate children).

    Returns ``(qualified name, block)`` of those children that hold trained modules, in
    order; an empty list when no container has any.
    """
    best: list[tuple[str, nn.Module]] = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList | nn.Sequential):
            continue
        found = []
        for child, block in mod.named_children():
            q = f"{name}.{child}" if name else child
            if any(t == q or t.startswith(q + ".") for t in trained):
                found.append((q, block))
        if len(found) > len(best):
            best = found
    return best


def refine_blocks(model: nn.Module, calib: Calibration, swap: Callable[[bool], None],
                  blocks: list[tuple[str, list[torch.Tensor]]], *, epochs: int,
                  lr: float, generator: torch.Generator | None = None,
                  max_target_bytes: int = 1 << 30) -> list[list[float]]:
    """Train the factors block by block, in order (``refine="blockwise"``).

    ``blocks`` lists ``(qualified name, factors)`` of the blocks in order (see
    :func:`find_blocks`); a block may itself be a factorized module. Block ``i``'s
    factors (``blocks[i][1]``) are trained for ``epochs`` passes so that
    the block's output, given the inputs it receives from the *compressed* model with
    the blocks before it already refined, matches the dense block's output on the dense
    model's inputs (relative squared error over non-padding positions; Adam, learning
    rate ``lr`` with a cosine decay to 0). Each step runs one block only; the inputs of
    block ``i`` come from one forward pass of the model that stops at block ``i`` and in
    which the blocks before it return their recorded outputs. The dense blocks' outputs
    and the refined blocks' outputs are kept while together they fit in
    ``max_target_bytes``; beyond that they are recomputed once per block (slower, same
    result). Key/value
    caches among a block's inputs are dropped (the block sees the whole sequence).
    Factorized layers outside the blocks are not trained. Returns the mean objective of
    each epoch, per block.

    Raises
    ------
    ConvergenceError
        The objective or a factor became non-finite (the caller restores the model).
    """
    batches = list(calib)
    names = [q for q, _ in blocks]

    def mods() -> list[nn.Module]:  # the modules at the blocks' names (dense or not)
        return [model.get_submodule(q) for q in names]
    # dense block outputs (the targets), recorded in one pass when they fit
    targets: list[list[torch.Tensor]] | None = [[] for _ in names]
    used = 0

    def rec(i: int) -> Callable:
        def hook(mod: nn.Module, args: Any, out: Any) -> None:
            nonlocal used, targets
            if targets is None:
                return
            y = main_output(out).detach()
            used += y.numel() * y.element_size()
            if used > max_target_bytes:
                targets = None
            else:
                targets[i].append(y)
        return hook

    swap(False)
    try:
        hooks = [m.register_forward_hook(rec(i)) for i, m in enumerate(mods())]
        try:
            with torch.no_grad(), _eval_mode(model):
                for b in batches:
                    calib.run(model, b)
        finally:
            for h in hooks:
                h.remove()
    finally:
        swap(True)

    def capture(i: int, b: Any, cached: list[list[Any]] | None, dense: bool
                ) -> tuple[tuple, dict]:
        """Block ``i``'s positional and keyword inputs on batch ``b``."""
        got: list[tuple[tuple, dict]] = []

        def pre(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            got.append((tuple(_no_cache(a) for a in args),
                        {k: _no_cache(v) for k, v in kwargs.items()}))
            raise _Stop

        if dense:
            swap(False)
        ms = mods()
        h = ms[i].register_forward_pre_hook(pre, with_kwargs=True)
        skip = [] if cached is None else [c[b] for c in cached[:i]]
        try:
            with torch.no_grad(), _eval_mode(model), replay(ms[:i], skip):
                try:
                    calib.run(model, batches[b])
                except _Stop:
                    pass
        finally:
            if dense:
                swap(True)
            h.remove()
        if not got:
            raise ConvergenceError(f"Block {i} of the block-wise refinement did not run.")
        return got[0]

    def dense_target(i: int, b: int) -> torch.Tensor:
        if targets is not None:
            return targets[i][b]
        args, kwargs = capture(i, b, None, True)
        swap(False)
        try:
            with torch.no_grad(), _eval_mode(model):
                return main_output(mods()[i](*args, **kwargs)).detach()
        finally:
            swap(True)

    # outputs of the refined compressed blocks (full objects), to skip them later
    cached: list[list[Any]] | None = [] if targets is not None else None
    history: list[list[float]] = []
    with _eval_mode(model):
        for i, (_, params) in enumerate(blocks):
            block = mods()[i]
            inputs = [capture(i, b, cached, False) for b in range(len(batches))]
            hist: list[float] = []
            if params:
                # this block's dense outputs, once per block (not once per step) when the
                # targets of all blocks did not fit
                tg = [dense_target(i, b) for b in range(len(batches))]
                total = epochs * len(batches)
                opt = torch.optim.Adam(params, lr=lr)
                sched = torch.optim.lr_scheduler.LambdaLR(
                    opt, lambda s, n=total: 0.5 * (1.0 + math.cos(math.pi * s / n)))
                with torch.enable_grad():
                    for _ in range(epochs):
                        tot = 0.0
                        for j in torch.randperm(len(batches), generator=generator).tolist():
                            args, kwargs = inputs[j]
                            out = main_output(block(*args, **kwargs))
                            loss = relative_error(out, tg[j], batches[j])
                            tot += _step(loss, params, opt, sched, "block-wise refinement")
                        hist.append(tot / max(len(batches), 1))
                _release(params)
            history.append(hist)
            if cached is not None and i + 1 < len(blocks):
                with torch.no_grad():
                    cached.append([block(*a, **kw) for a, kw in inputs])
                used += sum(main_output(o).numel() * main_output(o).element_size()
                            for o in cached[-1])
                if used > max_target_bytes:  # recompute the prefix from now on
                    cached = None
    return history
