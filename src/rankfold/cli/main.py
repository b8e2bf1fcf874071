"""Entry point of the ``rankfold`` command.

Every module in :mod:`rankfold.cli` that defines ``register(subparsers)`` is a command
group: it adds its sub-parser and sets ``handler=`` (a function taking the parsed
arguments and returning an exit code). Exit codes: 0 success, 1 runtime error,
2 usage error. Results go to stdout; progress and hints go to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from .. import __version__
from .._errors import InvalidParameterError, RankfoldError, ShapeError

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


class UsageError(RankfoldError, ValueError):
    """Bad command-line usage detected after parsing (exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rankfold",
        description="Find and exploit low-rank structure in matrices, tensors and models.",
    )
    parser.add_argument("--version", action="version", version=f"rankfold {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more to stderr (repeat for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import rankfold.cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name in {"main"} or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"rankfold.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2), stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args) or 0)
    except (UsageError, InvalidParameterError, ShapeError) as exc:
        print(f"rankfold {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RankfoldError as exc:
        print(f"rankfold {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except (OSError, MemoryError) as exc:
        print(f"rankfold {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
