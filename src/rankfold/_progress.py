"""One progress helper for long work: a rich progress bar on a terminal, silent otherwise."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["progress", "Progress"]

logger = logging.getLogger("rankfold")


class Progress:
    """Handle returned by :func:`progress`; call :meth:`advance` and :meth:`update`."""

    def __init__(self, bar: Any = None, task: Any = None) -> None:
        self._bar = bar
        self._task = task

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=n, info=_fields_text(fields))

    def update(self, **fields: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, info=_fields_text(fields))


def _fields_text(fields: dict[str, Any]) -> str:
    parts = []
    for k, v in fields.items():
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


@contextmanager
def progress(description: str, total: int | None = None, *, enabled: bool | None = None,
             ) -> Iterator[Progress]:
    """Show a progress bar on stderr while the block runs.

    ``enabled=None`` shows it only when stderr is a terminal and rich is installed;
    ``False`` (library default for JSON output and tests) keeps it silent.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield Progress()
        return
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress
    except ImportError:  # rich is an optional extra
        yield Progress()
        return
    bar = RichProgress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
        console=Console(stderr=True), transient=True,
    )
    with bar:
        task = bar.add_task(description, total=total, info="")
        yield Progress(bar, task)
