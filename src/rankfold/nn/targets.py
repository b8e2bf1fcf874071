"""Which modules to compress: peft-style matching of module names.

A string is a full-match regular expression on the module's qualified name; a list
(or tuple / set) matches a name that equals an entry or ends with ``"." + entry``
(dotted suffix). ``exclude`` uses the same rules and wins over ``targets``.
With ``targets=None`` every ``nn.Linear`` (and transformers ``Conv1D``) is a candidate;
output heads tied to an input embedding are skipped (factorizing them would untie them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from .._errors import InvalidParameterError
from .._validation import param_error
from .layers import is_conv1d

__all__ = ["match_name", "find_targets", "supported"]

Patterns = str | Sequence[str] | None


def supported(module: nn.Module) -> bool:
    """Module types rankfold.nn can factorize."""
    if isinstance(module, nn.Conv2d):
        return module.groups == 1
    return isinstance(module, nn.Linear | nn.Embedding) or is_conv1d(module)


def _check_patterns(patterns: Patterns, name: str, func: str) -> Patterns:
    if patterns is None:
        return None
    if isinstance(patterns, str):
        try:
            re.compile(patterns)
        except re.error as exc:
            raise param_error(name, func, f"a valid regular expression ({exc})",
                              patterns) from exc
        return patterns
    if isinstance(patterns, list | tuple | set | frozenset) and all(
            isinstance(p, str) and p for p in patterns):
        if not patterns:
            raise param_error(name, func, "a regex string or a non-empty list of names",
                              patterns)
        return list(patterns)
    raise param_error(name, func, "a regex string, a list of module names or None", patterns)


def match_name(name: str, patterns: Patterns) -> bool:
    """peft rules: a string is a full-match regex, a list matches exact names or suffixes."""
    if patterns is None:
        return False
    if isinstance(patterns, str):
        return re.fullmatch(patterns, name) is not None
    return any(name == p or name.endswith("." + p) for p in patterns)


def _tied_to_embedding(model: nn.Module, module: nn.Module) -> bool:
    w = getattr(module, "weight", None)
    if w is None:
        return False
    return any(isinstance(m, nn.Embedding) and m.weight is w for m in model.modules())


def find_targets(model: nn.Module, targets: Patterns = None, exclude: Patterns = None, *,
                 func: str = "compress") -> dict[str, nn.Module]:
    """Qualified name -> module of every module to compress, in registration order.

    Raises
    ------
    InvalidParameterError
        When a pattern is malformed, when nothing matches (the message lists the
        patterns and some module names), or when a matched module cannot be factorized.
    """
    targets = _check_patterns(targets, "targets", func)
    exclude = _check_patterns(exclude, "exclude", func)
    found: dict[str, nn.Module] = {}
    unsupported: list[str] = []
    for qname, mod in model.named_modules():
        if not qname:
            continue
        if targets is None:
            ok = (isinstance(mod, nn.Linear) or is_conv1d(mod)) and not _tied_to_embedding(
                model, mod)
        else:
            ok = match_name(qname, targets)
        if not ok or match_name(qname, exclude):
            continue
        if not supported(mod):
            if targets is not None and not any(True for _ in mod.children()):
                unsupported.append(f"{qname} ({type(mod).__name__})")
            continue
        found[qname] = mod
    if unsupported:
        raise InvalidParameterError(
            f"The 'targets' parameter of {func} matched modules that cannot be factorized: "
            f"{', '.join(unsupported[:8])}. Supported: nn.Linear, transformers Conv1D, "
            "nn.Conv2d (groups=1), nn.Embedding."
        )
    if not found:
        names = [n for n, _ in model.named_modules() if n][:12]
        raise InvalidParameterError(
            f"No module of the model matches targets={targets!r} (exclude={exclude!r}). "
            f"Some module names: {', '.join(names) or '(none)'}."
        )
    return found
