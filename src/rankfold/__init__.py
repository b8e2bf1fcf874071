"""rankfold: find and exploit low-rank structure.

Pillars (imported lazily, so ``import rankfold`` stays fast and optional extras stay
optional): :mod:`rankfold.linalg`, :mod:`rankfold.completion`, :mod:`rankfold.tensor`,
:mod:`rankfold.nn`, :mod:`rankfold.cluster`, :mod:`rankfold.datasets`.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._errors import (
    ConvergenceError,
    ConvergenceWarning,
    DataFileError,
    InvalidParameterError,
    NotFittedError,
    RankfoldError,
    RankfoldWarning,
    ShapeError,
)

__version__ = "0.1.0"

_SUBMODULES = {"linalg", "completion", "tensor", "nn", "cluster", "datasets", "distributed"}

__all__ = [
    "__version__",
    "ConvergenceError",
    "ConvergenceWarning",
    "DataFileError",
    "InvalidParameterError",
    "NotFittedError",
    "RankfoldError",
    "RankfoldWarning",
    "ShapeError",
    *sorted(_SUBMODULES),
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'rankfold' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
