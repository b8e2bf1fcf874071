"""Tensor tests run torch single-threaded.

The machine is shared: with two OpenMP threads, each small torch op waits ~20 ms on a busy
core (measured: 12x slower suites). The thread count is restored after each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
