"""Rebuild docs/benchmarks.md from the per-benchmark pages in docs/benchmarks/."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "docs" / "benchmarks"
ORDER = ["linalg_rsvd", "linalg_lstsq", "linalg_sampling", "linalg_factorizations",
         "completion", "tensor", "funbat", "nn"]

HEADER = """# Benchmarks

Every table below was produced by the script named in it, which runs rankfold and its
peers on the same data in one process and reports medians of several runs and ratios
(peer time / rankfold time: above 1 means rankfold is faster, unless a table says
otherwise). Machine: 2 cores, 24 GB, no GPU; torch 2.13.0 CPU build. Timings on this
machine are noisy: compare the ratios, not the absolute seconds. Re-run everything with
`make bench` (or one script: `.venv/bin/python benchmarks/NAME.py`).

This page is assembled by `benchmarks/collect.py` from `docs/benchmarks/*.md`.
"""


def main() -> None:
    pages = {p.stem: p for p in PAGES.glob("*.md")}
    names = [n for n in ORDER if n in pages] + sorted(set(pages) - set(ORDER))
    parts = [HEADER]
    if names:
        parts.append("## Contents\n\n" + "\n".join(f"- [{n}](benchmarks/{n}.md)" for n in names))
    for n in names:
        text = pages[n].read_text(encoding="utf-8").strip()
        # demote the page's headings by one level so they nest under this page
        text = "\n".join("#" + line if line.startswith("#") else line
                         for line in text.splitlines())
        parts.append(text)
    out = ROOT / "docs" / "benchmarks.md"
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".benchmarks.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n\n".join(parts) + "\n")
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
