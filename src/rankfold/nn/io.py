"""Save and load compressed models: safetensors weights + a JSON config of the surgery.

``save_compressed(model, dir)`` writes ``model.safetensors`` (the whole state dict,
shared tensors stored once), ``rankfold_compression.json`` (every factorized module:
its type, rank, bias flags and the method that made it; every layer pruned by the
"nystrom" MLP-pair form: "PrunedLinear" / "PrunedConv1D" with its new shape; plus the
model class) and, for
a transformers model, its ``config.json``. Every file is written atomically.

``load_compressed(base, dir)`` rebuilds the factorized modules onto a freshly built
base model (any ``nn.Module``, a transformers config, or ``None`` to build the
transformers model from the saved ``config.json``) and loads the weights.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from torch import nn

from .._errors import DataFileError, InvalidParameterError
from .._io import atomic_path, atomic_write_text
from .layers import LowRankConv2d, LowRankEmbedding, LowRankLinear, dense_matrix, is_conv1d

__all__ = ["save_compressed", "load_compressed", "CONFIG_NAME", "WEIGHTS_NAME"]

CONFIG_NAME = "rankfold_compression.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "rankfold.nn/1"
_TYPES = {"LowRankLinear": LowRankLinear, "LowRankConv2d": LowRankConv2d,
          "LowRankEmbedding": LowRankEmbedding}


def _entry(mod: nn.Module) -> dict[str, Any]:
    if getattr(mod, "rankfold_pruned", False):  # a pruned MLP layer (method "nystrom")
        m, n = dense_matrix(mod).shape
        return {"type": "PrunedConv1D" if is_conv1d(mod) else "PrunedLinear",
                "out_features": int(m), "in_features": int(n),
                "bias": getattr(mod, "bias", None) is not None,
                "method": getattr(mod, "rankfold_method", None)}
    e: dict[str, Any] = {"type": type(mod).__name__, "rank": int(mod.rank),
                         "method": getattr(mod, "rankfold_method", None)}
    if isinstance(mod, LowRankEmbedding):
        return e
    e["bias"] = mod.second.bias is not None
    e["first_bias"] = mod.first.bias is not None
    return e


def save_compressed(model: nn.Module, directory: str | Path) -> Path:
    """Write the compressed ``model`` to ``directory`` (created if needed).

    Examples
    --------
    >>> import tempfile, torch
    >>> from rankfold.nn import compress, save_compressed, load_compressed
    >>> net = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.Linear(32, 8))
    >>> _ = compress(net, ratio=0.5, method="svd", allocation="uniform")
    >>> d = tempfile.mkdtemp()
    >>> _ = save_compressed(net, d)
    >>> fresh = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.Linear(32, 8))
    >>> back = load_compressed(fresh, d)
    >>> x = torch.randn(4, 32)
    >>> bool(torch.equal(back(x), net(x)))
    True
    """
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            "The 'model' parameter of save_compressed must be a torch.nn.Module. "
            f"Got {type(model).__name__} instead.")
    from safetensors.torch import save_model

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    modules = {n: _entry(m) for n, m in model.named_modules()
               if type(m) in _TYPES.values() or getattr(m, "rankfold_pruned", False)}
    cls = type(model)
    meta = {"format": FORMAT, "model_class": f"{cls.__module__}.{cls.__qualname__}",
            "modules": modules}
    with atomic_path(out / WEIGHTS_NAME, suffix=".safetensors") as tmp:
        save_model(model, str(tmp), metadata={"format": "pt"})
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        atomic_write_text(out / "config.json", config.to_json_string())
    atomic_write_text(out / CONFIG_NAME, json.dumps(meta, indent=2))
    return out


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_NAME
    if not path.exists():
        raise DataFileError(f"'{path}' does not exist: not a directory written by "
                            "save_compressed.")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataFileError(f"'{path}' is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(
            meta.get("modules"), dict):
        raise DataFileError(f"'{path}' is not a {FORMAT} file.")
    return meta


def _build_base(model_or_config: Any, directory: Path, meta: dict[str, Any]) -> nn.Module:
    if isinstance(model_or_config, nn.Module):
        return model_or_config
    mod_name, _, cls_name = meta.get("model_class", "").rpartition(".")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise DataFileError(f"Cannot import the saved model class {meta.get('model_class')!r};"
                            " pass a freshly built model instead.") from exc
    config = model_or_config
    if config is None:
        if not (directory / "config.json").exists() or not hasattr(cls, "config_class"):
            raise InvalidParameterError(
                "The 'model_or_config' parameter of load_compressed must be a freshly built "
                "model (or a transformers config) when the directory holds no transformers "
                "config.json. Got None instead.")
        config = cls.config_class.from_pretrained(str(directory))
    if not hasattr(cls, "_from_config"):
        raise InvalidParameterError(
            "The 'model_or_config' parameter of load_compressed must be an nn.Module, a "
            f"transformers config or None. Got {type(model_or_config).__name__} instead.")
    return cls._from_config(config)


def _empty(base: nn.Module, e: dict[str, Any], name: str) -> nn.Module:
    W = dense_matrix(base)
    kw = {"device": W.device, "dtype": W.dtype}
    t = e.get("type")
    if t in ("PrunedLinear", "PrunedConv1D"):
        m, n = e.get("out_features"), e.get("in_features")
        if not all(isinstance(v, int) and v >= 1 for v in (m, n)):
            raise DataFileError(f"Bad shape {m!r} x {n!r} for module '{name}' in "
                                f"{CONFIG_NAME}.")
        if t == "PrunedConv1D" and is_conv1d(base):
            new = type(base)(m, n).to(**kw)
        elif t == "PrunedLinear" and isinstance(base, nn.Linear):
            new = nn.Linear(n, m, bias=bool(e.get("bias")), **kw)
        else:
            raise DataFileError(f"Module '{name}' in {CONFIG_NAME} has type {t!r}, which "
                                f"does not fit the base model's {type(base).__name__}.")
        new.rankfold_pruned = True
        return new
    r = e.get("rank")
    if not isinstance(r, int) or r < 1:
        raise DataFileError(f"Bad rank {r!r} for module '{name}' in {CONFIG_NAME}.")
    if t == "LowRankLinear":
        m, n = W.shape
        return LowRankLinear(n, m, r, bias=bool(e.get("bias")),
                             first_bias=bool(e.get("first_bias")), **kw)
    if t == "LowRankConv2d" and isinstance(base, nn.Conv2d):
        return LowRankConv2d(base.in_channels, base.out_channels, base.kernel_size, r,
                             stride=base.stride, padding=base.padding,
                             dilation=base.dilation, padding_mode=base.padding_mode,
                             bias=bool(e.get("bias")), first_bias=bool(e.get("first_bias")),
                             **kw)
    if t == "LowRankEmbedding" and isinstance(base, nn.Embedding):
        return LowRankEmbedding(base.num_embeddings, base.embedding_dim, r,
                                padding_idx=base.padding_idx, **kw)
    raise DataFileError(f"Module '{name}' in {CONFIG_NAME} has type {t!r}, which does not "
                        f"fit the base model's {type(base).__name__}.")


def load_compressed(model_or_config: Any, directory: str | Path) -> nn.Module:
    """Rebuild a model saved by :func:`save_compressed`.

    Parameters
    ----------
    model_or_config : nn.Module, transformers config, or None
        A freshly built base model (dense; modified in place and returned), a transformers
        config to build one from, or ``None`` to use the saved ``config.json``.
    directory : path
        Written by :func:`save_compressed`.

    Raises
    ------
    DataFileError
        Missing or corrupt files, or modules that do not fit the base model; the base
        model is then left as it was.
    """
    from safetensors.torch import load_model

    d = Path(directory)
    meta = _read_meta(d)
    if not (d / WEIGHTS_NAME).exists():
        raise DataFileError(f"'{d / WEIGHTS_NAME}' does not exist.")
    base = _build_base(model_or_config, d, meta)
    new: dict[str, nn.Module] = {}
    for name, e in meta["modules"].items():
        try:
            old = base.get_submodule(name)
        except AttributeError as exc:
            raise DataFileError(f"The base model has no module '{name}' named in "
                                f"{CONFIG_NAME}.") from exc
        if type(old) in _TYPES.values() or getattr(old, "rankfold_pruned", False):
            raise DataFileError(f"Module '{name}' of the base model is already factorized; "
                                "pass a freshly built dense model.")
        new[name] = _empty(old, e, name)
        if e.get("method"):
            new[name].rankfold_method = e["method"]
    olds: dict[str, nn.Module] = {}
    try:
        for name, mod in new.items():
            parent_name, _, child = name.rpartition(".")
            parent = base.get_submodule(parent_name) if parent_name else base
            olds[name] = getattr(parent, child)
            setattr(parent, child, mod)
        missing, unexpected = load_model(base, str(d / WEIGHTS_NAME), strict=False)
        if unexpected or missing:
            raise DataFileError(
                f"The weights in '{d / WEIGHTS_NAME}' do not fit the rebuilt model: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}.")
    except BaseException:
        for name, old in olds.items():
            parent_name, _, child = name.rpartition(".")
            parent = base.get_submodule(parent_name) if parent_name else base
            setattr(parent, child, old)
        raise
    return base
