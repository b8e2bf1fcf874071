"""rankfold.nn: one-shot low-rank compression of PyTorch / Hugging Face models."""

from __future__ import annotations

__all__: list[str] = []
