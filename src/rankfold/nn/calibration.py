"""Calibration: run the model on user batches and stream per-layer statistics.

Batches may be tensors (``model(batch)``), mappings of tensors (``model(**batch)``, e.g.
a tokenizer's output), tuples / lists (``model(*batch)``), any iterable or DataLoader of
those, or a list of strings together with a tokenizer. ``forward_fn(model, batch)``
overrides how a batch is fed (for ``(inputs, labels)`` loaders, say).

Statistics are gathered by forward hooks and accumulated batch by batch in float64, so
memory holds the statistics of the layers being processed (never the activations):
``gram = sum x x^T`` (n x n), ``sum x``, ``sum |x|`` and the token count per layer. When
the layers' statistics would exceed ``max_stats_bytes``, the layers are split into groups
and the calibration data is streamed once per group, each pass stopping right after the
last layer of its group. Padding positions (``attention_mask == 0``) are left out.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._errors import InvalidParameterError
from .layers import is_conv1d

__all__ = [
    "LayerStats",
    "Calibration",
    "prepare_calibration",
    "collect_stats",
    "fisher_rows",
    "main_output",
    "layer_inputs",
    "substitute",
]

logger = logging.getLogger("rankfold.nn")

ForwardFn = Callable[[nn.Module, Any], Any]


class _Stop(Exception):
    """Raised by a hook to end a forward pass early (all needed layers have run)."""


@dataclass
class LayerStats:
    """Streaming input statistics of one layer (float64).

    ``gram`` (n x n) = sum of x x^T, ``total`` (n,) = sum of x, ``abs_total`` (n,) = sum
    of |x|, ``count`` = number of input rows (tokens, pixels); for an embedding, ``freq``
    (V,) counts how often each row is looked up.
    """

    gram: torch.Tensor | None = None
    total: torch.Tensor | None = None
    abs_total: torch.Tensor | None = None
    count: int = 0
    freq: torch.Tensor | None = None

    @property
    def mean(self) -> torch.Tensor:
        return self.total / max(self.count, 1)

    @property
    def second_moment(self) -> torch.Tensor:
        return self.gram / max(self.count, 1)


class Calibration:
    """A re-iterable sequence of batches on the model's device, and how to feed them."""

    def __init__(self, batches: list[Any] | Iterable[Any], forward_fn: ForwardFn | None,
                 device: torch.device | None) -> None:
        self.batches = batches
        self.forward_fn = forward_fn
        self.device = device

    def __iter__(self) -> Iterator[Any]:
        for b in self.batches:
            yield _to_device(b, self.device)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def run(self, model: nn.Module, batch: Any) -> Any:
        """Forward ``batch`` through ``model``, with the padding mask made visible to hooks."""
        token = _MASK.set(_attention_mask(batch))
        try:
            if self.forward_fn is not None:
                return self.forward_fn(model, batch)
            if isinstance(batch, torch.Tensor):
                return model(batch)
            if isinstance(batch, Mapping):
                return model(**batch)
            if isinstance(batch, tuple | list):
                return model(*batch)
            return model(batch)
        finally:
            _MASK.reset(token)


import contextvars  # noqa: E402  (kept next to its single use)

_MASK: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar(
    "rankfold_nn_mask", default=None)


def _attention_mask(batch: Any) -> torch.Tensor | None:
    if isinstance(batch, Mapping):
        m = batch.get("attention_mask")
        if isinstance(m, torch.Tensor) and m.dim() == 2:
            return m
    return None


def _to_device(b: Any, device: torch.device | None) -> Any:
    if device is None:
        return b
    if isinstance(b, torch.Tensor):
        return b.to(device)
    if isinstance(b, Mapping):
        return {k: _to_device(v, device) for k, v in b.items()}
    if isinstance(b, tuple | list):
        return type(b)(_to_device(v, device) for v in b) if isinstance(b, tuple) else [
            _to_device(v, device) for v in b]
    return b


def model_device(model: nn.Module) -> torch.device | None:
    for p in model.parameters():
        return p.device
    return None


def prepare_calibration(calibration: Any, model: nn.Module, *, tokenizer: Any = None,
                        max_length: int = 128, batch_size: int = 16,
                        forward_fn: ForwardFn | None = None,
                        func: str = "compress") -> Calibration:
    """Normalise the user's calibration data into a re-iterable :class:`Calibration`.

    A one-shot iterator (a generator) is materialised into a list, since methods may
    stream the data more than once. Strings need ``tokenizer``.
    """
    if calibration is None:
        raise InvalidParameterError(f"{func} needs 'calibration' data here. Got None.")
    if isinstance(calibration, str | bytes):
        raise InvalidParameterError(
            f"The 'calibration' parameter of {func} must be an iterable of batches or a list "
            f"of texts, not a single string. Got {calibration[:40]!r} instead.")
    if isinstance(calibration, torch.Tensor):
        calibration = [calibration]
    elif isinstance(calibration, Mapping):
        calibration = [calibration]
    if not isinstance(calibration, Iterable):
        raise InvalidParameterError(
            f"The 'calibration' parameter of {func} must be an iterable of batches "
            f"(tensors or dicts of tensors), a DataLoader or a list of texts. "
            f"Got {type(calibration).__name__} instead.")
    if iter(calibration) is calibration:  # one-shot iterator: keep the batches
        calibration = list(calibration)
    if isinstance(calibration, list | tuple) and calibration and all(
            isinstance(t, str) for t in calibration):
        if tokenizer is None:
            raise InvalidParameterError(
                f"The 'calibration' parameter of {func} holds texts, so 'tokenizer' must be "
                "given (a Hugging Face tokenizer or any callable returning dicts of tensors).")
        texts = list(calibration)
        batches = []
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                            truncation=True, max_length=max_length)
            batches.append(dict(enc))
        calibration = batches
    if isinstance(calibration, list | tuple) and not calibration:
        raise InvalidParameterError(
            f"The 'calibration' parameter of {func} must hold at least one batch. Got an "
            "empty sequence instead.")
    return Calibration(calibration, forward_fn, model_device(model))


def main_output(out: Any) -> torch.Tensor:
    """The tensor a model's output leads with (logits, last_hidden_state, or the tensor)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        for key in ("logits", "last_hidden_state"):
            if key in out and isinstance(out[key], torch.Tensor):
                return out[key]
        for v in out.values():
            if isinstance(v, torch.Tensor):
                return v
    if isinstance(out, tuple | list):
        for v in out:
            if isinstance(v, torch.Tensor):
                return v
    raise InvalidParameterError(
        f"Cannot find a tensor in the model's output of type {type(out).__name__}; "
        "pass loss_fn=... to compare outputs.")


def layer_inputs(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rows a layer multiplies by its weight's transpose: (tokens, n)."""
    if isinstance(module, nn.Conv2d):
        cols = torch.nn.functional.unfold(x, module.kernel_size, dilation=module.dilation,
                                          padding=module.padding, stride=module.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    mask = _MASK.get()
    if mask is not None and x.dim() == 3 and tuple(x.shape[:2]) == tuple(mask.shape):
        x = x[mask.to(torch.bool)]
    return x.reshape(-1, x.shape[-1])


def _stats_bytes(module: nn.Module) -> int:
    if isinstance(module, nn.Embedding):
        return 8 * module.num_embeddings
    n = module.weight.shape[0] if is_conv1d(module) else module.weight[0].numel()
    return 8 * (n * n + 2 * n)


def sym_gram(X: torch.Tensor) -> torch.Tensor:
    """``X^T X`` computing only the upper block triangle (about 30% fewer FLOPs)."""
    n = X.shape[1]
    k = 4 if n >= 1024 else 2 if n >= 256 else 1
    if k == 1:
        return X.t() @ X
    h = [i * n // k for i in range(k + 1)]
    G = X.new_empty(n, n)
    for i in range(k):
        a, b = h[i], h[i + 1]
        Gi = X[:, a:b].t() @ X[:, a:]
        G[a:b, a:] = Gi
        G[b:, a:b] = Gi[:, b - a:].t()
    return G


def _accumulate(module: nn.Module, st: LayerStats, x: torch.Tensor,
                cache: dict[tuple, torch.Tensor]) -> None:
    if isinstance(module, nn.Embedding):
        idx = x.reshape(-1)
        mask = _MASK.get()
        if mask is not None and x.dim() == 2 and tuple(x.shape) == tuple(mask.shape):
            idx = x[mask.to(torch.bool)]
        counts = torch.bincount(idx, minlength=module.num_embeddings).to(torch.float64)
        st.freq = counts if st.freq is None else st.freq + counts
        st.count += int(idx.numel())
        return
    # layers fed the same tensor (q, k, v) share one Gram computation; the cache holds the
    # input itself, so its id cannot be reused by another tensor during the batch
    key = (id(x), _geometry(module))
    if key in cache and cache[key][0] is x:
        _, g, s, a, rows = cache[key]
    else:
        X = layer_inputs(module, x.detach())
        work = X if X.dtype == torch.float64 else X.to(torch.float32)
        g = sym_gram(work).to(torch.float64)
        s = work.sum(0, dtype=torch.float64)
        a = work.abs().sum(0, dtype=torch.float64)
        rows = X.shape[0]
        cache[key] = (x, g, s, a, rows)
    if st.gram is None:
        st.gram, st.total, st.abs_total = g.clone(), s.clone(), a.clone()
    else:
        st.gram += g
        st.total += s
        st.abs_total += a
    st.count += rows


def _geometry(module: nn.Module) -> tuple:
    """What, besides the input, decides a layer's input rows (convolution patches)."""
    if isinstance(module, nn.Conv2d):
        return ("conv", module.kernel_size, module.stride, module.padding, module.dilation)
    return ("rows",)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, t in flags:
            m.training = t


def _run_checked(calib: Calibration, model: nn.Module, batch: Any, first: bool,
                 func: str) -> Any:
    if not first:
        return calib.run(model, batch)
    try:
        return calib.run(model, batch)
    except _Stop:
        raise
    except Exception as exc:
        raise InvalidParameterError(
            f"The 'calibration' parameter of {func} holds batches the model cannot run: "
            f"{type(exc).__name__}: {exc}. Give tensors or dicts the model's forward "
            "accepts, or pass forward_fn=lambda model, batch: ...") from exc


def check_batches(model: nn.Module, calib: Calibration, func: str = "compress") -> None:
    """Run the first batch once (no hooks) to give a clear error when it does not fit."""
    with torch.no_grad(), _eval_mode(model):
        for batch in calib:
            _run_checked(calib, model, batch, True, func)
            break


def collect_stats(model: nn.Module, modules: dict[str, nn.Module], calib: Calibration, *,
                  max_stats_bytes: int = 2 << 30, func: str = "compress",
                  ) -> dict[str, LayerStats]:
    """Stream the calibration data through ``model`` and return per-layer statistics.

    Layers are grouped so that one group's statistics fit in ``max_stats_bytes``; each
    group takes one pass over the data that stops after the group's last layer has run.
    """
    groups: list[list[str]] = [[]]
    used = 0
    for name, mod in modules.items():
        b = _stats_bytes(mod)
        if groups[-1] and used + b > max_stats_bytes:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += b
    if len(groups) > 1:
        logger.info("collecting statistics in %d passes to bound memory", len(groups))
    stats: dict[str, LayerStats] = {}
    first = True
    with torch.no_grad(), _eval_mode(model):
        for group in groups:
            gstats = {n: LayerStats() for n in group}
            seen: set[str] = set()
            cache: dict[tuple, torch.Tensor] = {}
            last_group = group is groups[-1]

            def make_hook(name: str, gstats=gstats, seen=seen, cache=cache,
                          last_group=last_group, group=group) -> Callable:
                def hook(mod: nn.Module, args: tuple, out: Any) -> None:
                    _accumulate(mod, gstats[name], args[0], cache)
                    seen.add(name)
                    if not last_group and len(seen) == len(group):
                        raise _Stop
                return hook

            handles = [modules[n].register_forward_hook(make_hook(n)) for n in group]
            try:
                for batch in calib:
                    seen.clear()
                    cache.clear()
                    with contextlib.suppress(_Stop):
                        _run_checked(calib, model, batch, first, func)
                    first = False
            finally:
                for h in handles:
                    h.remove()
            for n in group:
                if gstats[n].count == 0:
                    raise InvalidParameterError(
                        f"The layer '{n}' never ran on the calibration batches of {func}; "
                        "exclude it or give batches that reach it.")
            stats.update(gstats)
    return stats


def fisher_rows(model: nn.Module, modules: dict[str, nn.Module], calib: Calibration,
                loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None, *,
                func: str = "compress") -> dict[str, torch.Tensor]:
    """Empirical Fisher information summed per output row: ``sum_b sum_j (dL/dW_ij)^2``.

    Gradients are taken with ``torch.autograd.grad`` on the weights only, so the model's
    ``.grad`` attributes and ``requires_grad`` flags are left as they were.
    """
    names = list(modules)
    weights = [modules[n].weight for n in names]
    flags = [w.requires_grad for w in weights]
    rows = {n: torch.zeros(_out_dim(modules[n]), dtype=torch.float64,
                           device=modules[n].weight.device) for n in names}
    try:
        for w in weights:
            w.requires_grad_(True)
        with _eval_mode(model), torch.enable_grad():
            for i, batch in enumerate(calib):
                loss = compute_loss(model, batch, calib, loss_fn, first=i == 0, func=func)
                grads = torch.autograd.grad(loss, weights, allow_unused=True)
                for n, g in zip(names, grads, strict=True):
                    if g is None:
                        continue
                    g2 = g.detach().to(torch.float64) ** 2
                    mod = modules[n]
                    if is_conv1d(mod):
                        rows[n] += g2.sum(0)
                    else:
                        rows[n] += g2.reshape(g2.shape[0], -1).sum(1)
    finally:
        for w, f in zip(weights, flags, strict=True):
            w.requires_grad_(f)
    return rows


def _out_dim(mod: nn.Module) -> int:
    return mod.weight.shape[1] if is_conv1d(mod) else mod.weight.shape[0]


def compute_loss(model: nn.Module, batch: Any, calib: Calibration,
                 loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None, *, first: bool,
                 func: str) -> torch.Tensor:
    """``loss_fn(model, batch)``, else the ``.loss`` the model's output carries."""
    if loss_fn is not None:
        loss = loss_fn(model, batch)
    else:
        out = _run_checked(calib, model, batch, first, func)
        loss = getattr(out, "loss", None)
        if loss is None and isinstance(out, Mapping):
            loss = out.get("loss")
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise InvalidParameterError(
            f"{func} needs a scalar loss here: pass loss_fn=lambda model, batch: ... or "
            "batches whose model output carries .loss (e.g. with labels). "
            f"Got {type(loss).__name__} instead.")
    return loss.reshape(())


_UNSET = object()


@contextlib.contextmanager
def substitute(replacements: dict[nn.Module, nn.Module | Callable[..., Any]]
               ) -> Iterator[None]:
    """Temporarily route each module's forward through its replacement (a module, whose
    ``forward`` is used, or any callable taking the module's arguments).

    The module's own ``forward`` is shadowed by the replacement (an instance attribute,
    restored on exit), so the dense computation does not run; the module's hooks still
    fire with its inputs and the replacement's output. Parameters and buffers are not
    touched.
    """
    saved: list[tuple[nn.Module, Any]] = []
    try:
        for mod, rep in replacements.items():
            saved.append((mod, mod.__dict__.get("forward", _UNSET)))
            mod.forward = rep.forward if isinstance(rep, nn.Module) else rep
        yield
    finally:
        for mod, old in reversed(saved):
            if old is _UNSET:
                del mod.forward
            else:
                mod.forward = old


def replay(blocks: list[nn.Module], outputs: list[Any]) -> contextlib.AbstractContextManager:
    """Blocks return their recorded outputs (``outputs[i]`` for ``blocks[i]``) instead of
    computing them (see :func:`substitute`)."""
    return substitute({blk: (lambda *a, _out=out, **k: _out)
                       for blk, out in zip(blocks, outputs, strict=False)})
