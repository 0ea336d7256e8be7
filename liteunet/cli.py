"""The ``liteunet`` command line: one entry point, one sub-command per job."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def _cmd_list(args: argparse.Namespace) -> int:
    from . import list_models

    names = list_models(args.filter, pretrained=args.pretrained)
    print("\n".join(names) if names else "(no models match)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from . import count_macs, count_params, create_model, list_models

    model = create_model(args.model, in_chans=args.in_chans, num_classes=args.num_classes)
    size = (model.in_chans, args.size[0], args.size[1] if len(args.size) > 1 else args.size[0])
    base = args.model.split(".")[0]
    info = {
        "model": args.model,
        "class": type(model).__name__,
        "params": count_params(model),
        "macs": count_macs(model, size),
        "input_size": list(size),
        "in_chans": model.in_chans,
        "num_classes": model.num_classes,
        "pretrained_tags": [n for n in list_models(base, pretrained=True) if n.split(".")[0] == base],
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        tags = ", ".join(info["pretrained_tags"]) or "none published yet"
        print(f"model:        {info['model']} ({info['class']})")
        print(f"parameters:   {info['params'] / 1e6:.2f} M")
        print(f"G MACs:       {info['macs'] / 1e9:.2f} at {size[0]}x{size[1]}x{size[2]} (the paper's 'GFLOPs')")
        print(f"in_chans:     {info['in_chans']}    num_classes: {info['num_classes']}")
        print(f"pretrained:   {tags}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liteunet", description="Lite-UNet model zoo for cell localization."
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"liteunet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list the models of the zoo", description="List the models of the zoo.")
    p.add_argument("filter", nargs="?", default="", help="wildcard pattern, e.g. 'lite_unet*'")
    p.add_argument("--pretrained", action="store_true", help="only models with published weights, with their tags")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser(
        "info",
        help="parameters, G MACs and pretrained tags of a model",
        description="Print a model's parameter count, multiply-accumulates (the paper's 'GFLOPs') "
        "for one image of the given size, and its pretrained tags.",
    )
    p.add_argument("model", help="model name, e.g. lite_unet or unet")
    p.add_argument("--size", type=int, nargs="+", default=[512], metavar="PX", help="image size: H [W] (default 512)")
    p.add_argument("--in-chans", type=int, default=3, help="image channels (default 3)")
    p.add_argument("--num-classes", type=int, default=1, help="location maps out (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_info)
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
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"liteunet {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
