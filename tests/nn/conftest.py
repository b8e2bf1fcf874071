"""Fixtures of the rankfold.nn tests (models live in _nn_models.py)."""

from __future__ import annotations

import pytest
from _nn_models import MLP, seeded
from torch import nn


@pytest.fixture
def mlp() -> nn.Module:
    return seeded(MLP(), 3)
