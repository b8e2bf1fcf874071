"""Type aliases for arguments accepted across rankfold."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from ._random import GeneratorLike

__all__ = ["ArrayLike", "GeneratorLike", "SketchKind", "RSVDMethod", "LstsqMethod"]

ArrayLike = np.ndarray | torch.Tensor | Any
SketchKind = Literal["gaussian", "srht", "countsketch", "sparse_sign"]
RSVDMethod = Literal["subspace", "krylov"]
LstsqMethod = Literal["sketch_precondition", "sketch_solve", "direct"]
