"""Run every benchmark script in this folder, then rebuild docs/benchmarks.md.

Usage: python benchmarks/run_all.py [--quick] [--only NAME[,NAME...]]

Each script runs rankfold and its peers on the same data in one process and writes
benchmarks/results/<name>.json and docs/benchmarks/<name>.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP = {"run_all", "collect"}


def scripts() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py")
                  if p.stem not in SKIP and not p.stem.startswith(("_", "train_")))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to every script")
    ap.add_argument("--only", default=None, help="comma-separated script names")
    args = ap.parse_args()
    chosen = scripts()
    if args.only:
        names = set(args.only.split(","))
        chosen = [p for p in chosen if p.stem in names]
    failed = []
    for path in chosen:
        cmd = [sys.executable, str(path)] + (["--quick"] if args.quick else [])
        print(f"== {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"== {path.stem}: exit {rc} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(path.stem)
    subprocess.call([sys.executable, str(HERE / "collect.py")])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
