"""Command line: ``mssfs <command> ...``; ``mssfs <command> --help`` explains each.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("data", "train", "export", "sample", "analyze", "depth", "report", "evaluate", "demo")


class UsageError(Exception):
    """A problem with the user's request; printed as ``mssfs: error: ...``, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mssfs",
        description="Multistable shape from shading: sample a distribution of surface normals "
        "from one shading image with a guided patch-diffusion model.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"mssfs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"mssfs {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mssfs: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the error edge: user errors in one line, bugs keep their traceback
        from .errors import describe

        line = describe(exc)
        if line is None or os.environ.get("MSSFS_DEBUG"):
            raise
        print(f"mssfs {args.command}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
