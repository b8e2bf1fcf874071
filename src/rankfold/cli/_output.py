"""Shared output helpers for commands: tables for humans, JSON for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["print_table", "print_json", "hint"]


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                *, file: Any = None) -> None:
    """Print a table to stdout (rich when installed and on a terminal, plain otherwise)."""
    out = file or sys.stdout
    try:
        if not out.isatty():
            raise ImportError
        from rich.console import Console
        from rich.table import Table
    except (ImportError, AttributeError):
        cells = [[_cell(v) for v in r] for r in rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        print(title, file=out)
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), file=out)
        print("  ".join("-" * w for w in widths), file=out)
        for r in cells:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)), file=out)
        print(file=out)
        return
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[_cell(v) for v in r])
    Console(file=out).print(table)


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout."""
    json.dump(obj, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def hint(message: str) -> None:
    """A hint or progress line for humans, on stderr."""
    print(message, file=sys.stderr)
