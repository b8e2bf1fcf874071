"""Tensor tests run torch single-threaded.

The machine is shared: with two OpenMP threads, each small torch op waits ~20 ms on a busy
core (measured: 12x slower suites). The thread count is restored after each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rankfold._parallel import thread_limit


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with thread_limit(1):
        yield
