"""The ``liteunet`` command line: one entry point, one sub-command per module of this package.

Only ``liteunet/__main__.py`` and the ``liteunet`` console script import this package; the
library never does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from . import bench, evaluate, export, info, list_models, localize, push, train

__all__ = ["build_parser", "main"]

#: Sub-command modules, in the order ``liteunet --help`` lists them.
COMMANDS = (list_models, info, train, evaluate, export, bench, localize, push)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line's parser: ``liteunet COMMAND ...``."""
    parser = argparse.ArgumentParser(prog="liteunet", description="Lite-UNet model zoo for cell localization.")
    parser.add_argument("--version", action="version", version=f"liteunet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"liteunet {args.command}: error: {err}", file=sys.stderr)
        return 1
