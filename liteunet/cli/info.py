"""``liteunet info``: a model's parameters, multiply-accumulates, pretrained tags and stored settings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "info",
        help="parameters, G MACs and pretrained tags of a model",
        description="Print a model's parameter count, multiply-accumulates (the paper's 'GFLOPs') "
        "for one image of the given size, and its pretrained tags.",
    )
    p.add_argument("model", help="model name (lite_unet, unet), pretrained tag (lite_unet.ki67), weights folder or file")
    p.add_argument("--size", type=int, nargs="+", default=[512], metavar="PX", help="image size: H [W] (default 512)")
    p.add_argument("--in-chans", type=int, help="image channels (default: the weights', else 3)")
    p.add_argument("--num-classes", type=int, help="location maps out (default: the weights', else 1)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    # Loads torch: only when the command runs.
    from ..complexity import count_macs, count_params
    from ..models import create_model, is_model, list_models
    from ..pretrained import PretrainedWeightsError, load_localization_settings
    from ..pretrained.settings import weights_config_for

    # A tag, folder or file: the architecture and its arguments as the weights store them.
    weights = Path(args.model).exists() or ("." in args.model and ":" not in args.model and is_model(args.model))
    config: dict[str, Any] = {}
    if weights:
        try:
            config = weights_config_for(args.model)[0]
        except PretrainedWeightsError as err:
            print(f"liteunet info: the weights' config.json is not available ({err}); showing the architecture's defaults")
    architecture = config.get("architecture") or args.model.split(".")[0]
    model_args = {k: v for k, v in (config.get("model_args") or {}).items() if k not in ("num_classes", "in_chans")}
    in_chans = args.in_chans or config.get("in_chans") or (config.get("model_args") or {}).get("in_chans") or 3
    num_classes = args.num_classes or config.get("num_classes") or (config.get("model_args") or {}).get("num_classes") or 1
    model = create_model(architecture, in_chans=in_chans, num_classes=num_classes, **model_args)
    size = (model.in_chans, args.size[0], args.size[1] if len(args.size) > 1 else args.size[0])
    base = architecture
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
    if weights:  # the localization settings stored with the weights
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
            if stored.get("object_size"):
                print(f"object size:  {stored['object_size']} px on the training images (--object-size auto rescales to it)")
    return 0
