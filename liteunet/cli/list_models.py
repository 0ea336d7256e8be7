"""``liteunet list``: the models of the zoo, optionally with their pretrained tags."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("list", help="list the models of the zoo", description="List the models of the zoo.")
    p.add_argument("filter", nargs="?", default="", help="wildcard pattern, e.g. 'lite_unet*'")
    p.add_argument("--pretrained", action="store_true", help="only models with published weights, with their tags")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..models import list_models  # loads torch: only when the command runs

    names = list_models(args.filter, pretrained=args.pretrained)
    print("\n".join(names) if names else "(no models match)")
    return 0
