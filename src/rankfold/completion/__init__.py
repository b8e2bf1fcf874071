"""rankfold.completion: low-rank matrix completion (ALS with biases, robust alternating
minimization, SoftImpute); ratings tables in, predictions and recommendations out."""

from __future__ import annotations

__all__: list[str] = []
