"""``liteunet info``: a model's parameters, multiply-accumulates, pretrained tags and stored settings."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..complexity import count_macs, count_params
from ..models import create_model, list_models
from ..pretrained import PretrainedWeightsError, load_localization_settings


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
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
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
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
    if "." in args.model:  # a pretrained tag: the localization settings stored with its weights
        try:
            info["localization"] = load_localization_settings(args.model)
        except PretrainedWeightsError as err:
            info["localization_error"] = str(err)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        tags = ", ".join(info["pretrained_tags"]) or "none published yet"
        print(f"model:        {info['model']} ({info['class']})")
        print(f"parameters:   {info['params'] / 1e6:.2f} M")
        print(f"G MACs:       {info['macs'] / 1e9:.2f} at {size[0]}x{size[1]}x{size[2]} (the paper's 'GFLOPs')")
        print(f"in_chans:     {info['in_chans']}    num_classes: {info['num_classes']}")
        print(f"pretrained:   {tags}")
        if "localization_error" in info:
            print(f"settings:     not available: {info['localization_error']}")
        if "localization" in info:
            stored = info["localization"]

            def pair(entry: dict) -> str:
                return f"{entry.get('threshold', stored['threshold'])} / {entry.get('min_distance', stored['min_distance'])}"

            tta = "".join(f"; tta={mode}: {pair(entry)}" for mode, entry in (stored.get("tta") or {}).items())
            print(f"settings:     threshold / min distance {pair(stored)}{tta}")
            tuned = stored.get("tuned_for") or {}
            if tuned:
                print(f"tuned_for:    {', '.join(f'{name} ({pair(entry)})' for name, entry in tuned.items())}")
    return 0
