"""rankfold.nn: one-shot low-rank compression of PyTorch / Hugging Face models.

>>> from rankfold.nn import compress
>>> report = compress(model, ratio=0.4, calibration=batches)   # doctest: +SKIP
>>> print(report)                                               # doctest: +SKIP
"""

from __future__ import annotations

from .allocation import ALLOCATIONS
from .compress import CompressionReport, LayerReport, compress, plan
from .io import load_compressed, save_compressed
from .layers import LowRankConv2d, LowRankEmbedding, LowRankLinear
from .methods import METHODS
from .targets import find_targets

__all__ = [
    "compress",
    "plan",
    "CompressionReport",
    "LayerReport",
    "LowRankLinear",
    "LowRankConv2d",
    "LowRankEmbedding",
    "save_compressed",
    "load_compressed",
    "find_targets",
    "METHODS",
    "ALLOCATIONS",
]
