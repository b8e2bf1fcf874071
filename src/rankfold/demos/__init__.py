"""Sections of ``rankfold demo``: the main job, run on real data shipped by PyPI packages.

Each module here defines ``TITLE`` (str), ``ORDER`` (int, sections run in that order)
and ``run(quick: bool) -> DemoSection``. A section whose data package is missing raises
:class:`DemoSkipped` with the install hint, and the demo reports it instead of failing.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

__all__ = ["DemoSection", "DemoSkipped", "discover_sections"]


@dataclass
class DemoSection:
    """One table of the demo: a title, column names, rows and free-text notes."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)


class DemoSkipped(Exception):
    """A section cannot run here (for example its data package is not installed)."""


def discover_sections() -> dict[str, ModuleType]:
    """Map section name -> module, in ``ORDER``."""
    import rankfold.demos as pkg

    mods = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"rankfold.demos.{info.name}")
        if hasattr(mod, "run"):
            mods[info.name] = mod
    return dict(sorted(mods.items(), key=lambda kv: getattr(kv[1], "ORDER", 100)))
