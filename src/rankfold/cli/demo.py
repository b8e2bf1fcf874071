"""``rankfold demo``: the main job on built-in real data, one table per pillar."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ._output import hint, print_json, print_table


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="run every pillar on built-in real data and print the results",
        description="Run rankfold on real data shipped by PyPI packages and print one "
                    "table per pillar (linear algebra, completion, tensors, compression).",
    )
    p.add_argument("--sections", default=None,
                   help="comma-separated section names (default: all); see --list")
    p.add_argument("--list", action="store_true", help="list the sections and exit")
    p.add_argument("--quick", action="store_true", help="smaller problems, for a fast look")
    p.add_argument("--format", choices=["human", "json"], default="human")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..demos import DemoSkipped, discover_sections
    from .main import UsageError

    sections = discover_sections()
    if args.list:
        for name, mod in sections.items():
            print(f"{name:12s} {getattr(mod, 'TITLE', name)}")
        return 0
    chosen = list(sections)
    if args.sections:
        chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
        unknown = [s for s in chosen if s not in sections]
        if unknown:
            raise UsageError(
                f"The '--sections' option must name sections in {{{', '.join(sections)}}}. "
                f"Got {', '.join(unknown)} instead."
            )
    results: list[dict[str, Any]] = []
    failed = False
    for name in chosen:
        mod = sections[name]
        if args.format == "human":
            hint(f"[demo] {getattr(mod, 'TITLE', name)} ...")
        t0 = time.perf_counter()
        try:
            sec = mod.run(quick=args.quick)
        except DemoSkipped as exc:
            hint(f"[demo] skipped {name}: {exc}")
            results.append({"section": name, "skipped": str(exc)})
            continue
        except Exception as exc:  # report the section and go on with the others
            failed = True
            hint(f"[demo] section {name} failed: {type(exc).__name__}: {exc}")
            results.append({"section": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        elapsed = time.perf_counter() - t0
        if args.format == "human":
            print_table(f"{sec.title}  ({elapsed:.1f} s)", sec.columns, sec.rows)
            for note in sec.notes:
                print(f"  {note}")
            if sec.notes:
                print()
            sys.stdout.flush()
        results.append({"section": name, "title": sec.title, "seconds": elapsed,
                        "columns": sec.columns, "rows": sec.rows, "notes": sec.notes})
    if args.format == "json":
        print_json(results)
    return 1 if failed else 0
