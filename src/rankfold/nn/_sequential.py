"""Block-by-block propagation for the ``whiten_update`` refit.

Transformers stack their blocks in one ``nn.ModuleList`` (``encoder.layer``,
``transformer.h``, ``model.layers``). The inputs of the first block are captured once
(positional and keyword arguments, e.g. the attention mask or rotary embeddings); then,
block by block, two streams of hidden states are pushed through: the dense model's and
the partially compressed model's. Inside block ``i`` the targeted layers are
refitted stage by stage in the order the block runs them (:func:`layer_stages`): the
inputs of a stage's layers are recorded in both streams, the compressed one with the
earlier stages of the block already refitted, which gives the moments
``E[x_d x_c^T]`` and ``E[x_c x_c^T]`` the closed-form refit needs; the compressed
stream then continues through block ``i`` with its new factors. This is the layer-wise
scheme of GPTQ ("true sequential") and SVD-LLM: memory holds two streams of hidden
states and one block's statistics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .calibration import _MASK, Calibration, _attention_mask, _eval_mode, _Stop

__all__ = ["find_blocks", "capture_block_inputs", "run_block", "layer_stages"]


def find_blocks(model: nn.Module, names: list[str]) -> tuple[str, nn.ModuleList] | None:
    """The ``nn.ModuleList`` whose children contain the most of ``names`` (or None)."""
    best, best_count = None, 0
    for qname, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) < 2:
            continue
        prefix = qname + "." if qname else ""
        count = sum(1 for n in names if n.startswith(prefix) and n[len(prefix):].split(
            ".")[0].isdigit())
        if count > best_count:
            best, best_count = (qname, mod), count
    return best


@contextlib.contextmanager
def _no_cache(model: nn.Module) -> Any:
    cfg = getattr(model, "config", None)
    old = getattr(cfg, "use_cache", None)
    if cfg is not None and old is not None:
        cfg.use_cache = False
    try:
        yield
    finally:
        if cfg is not None and old is not None:
            cfg.use_cache = old


def capture_block_inputs(model: nn.Module, block: nn.Module, calib: Calibration,
                         max_batches: int | None) -> list[tuple[tuple, dict, Any]]:
    """Arguments of ``block``'s forward for each calibration batch (forward stops there)."""
    captured: list[tuple[tuple, dict, Any]] = []

    def pre_hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
        captured.append((args, dict(kwargs), _MASK.get()))
        raise _Stop

    handle = block.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        with torch.no_grad(), _eval_mode(model), _no_cache(model):
            for i, batch in enumerate(calib):
                if max_batches is not None and i >= max_batches:
                    break
                with contextlib.suppress(_Stop):
                    calib.run(model, batch)
    finally:
        handle.remove()
    return captured


def _hidden(out: Any) -> torch.Tensor:
    if isinstance(out, tuple | list):
        return out[0]
    return out


def run_block(block: nn.Module, args: tuple, kwargs: dict, mask: Any,
              hooks: dict[nn.Module, Callable[[nn.Module, torch.Tensor], Any]] | None = None,
              stop_early: bool = False) -> torch.Tensor | None:
    """Run one block; ``hooks`` maps a layer to a callback ``cb(layer, raw_input)``.

    The padding mask is visible to the callback (use :func:`layer_inputs` for its rows).
    With ``stop_early`` the block stops as soon as every hooked layer has run once (the
    rest of the block is not computed) and None is returned.
    """
    handles = []
    pending = set(hooks or {})
    for mod, cb in (hooks or {}).items():
        def hook(m: nn.Module, a: tuple, out: Any, cb=cb) -> None:
            cb(m, a[0].detach())
            pending.discard(m)
            if stop_early and not pending:
                raise _Stop
        handles.append(mod.register_forward_hook(hook))
    token = _MASK.set(mask)
    try:
        with torch.no_grad():
            return _hidden(block(*args, **kwargs))
    except _Stop:
        if not stop_early:
            raise
        return None
    finally:
        _MASK.reset(token)
        for h in handles:
            h.remove()


def layer_stages(block: nn.Module, args: tuple, kwargs: dict, mask: Any,
                 layers: dict[nn.Module, str]) -> list[list[str]]:
    """The names of ``layers`` grouped into stages, in the order the block runs them.

    Layers fed the same input tensor (q, k, v; gate and up) form one stage: refitting
    one of them cannot change the others' inputs. A later stage's inputs depend on the
    earlier stages' outputs. Layers the block does not run on ``args`` come last, alone.
    """
    seen: list[tuple[torch.Tensor, str]] = []  # the inputs stay referenced: no reuse

    def record(mod: nn.Module, x: torch.Tensor) -> None:
        if all(n != layers[mod] for _, n in seen):
            seen.append((x, layers[mod]))

    run_block(block, args, kwargs, mask, dict.fromkeys(layers, record))
    stages: list[list[str]] = []
    keys: list[tuple] = []
    for x, n in seen:
        key = (x.data_ptr(), tuple(x.shape), x.dtype)
        if key in keys:
            stages[keys.index(key)].append(n)
        else:
            keys.append(key)
            stages.append([n])
    ran = {n for _, n in seen}
    stages += [[n] for n in sorted(layers.values()) if n not in ran]
    return [sorted(st) for st in stages]


__all__ += ["_attention_mask", "_no_cache"]
