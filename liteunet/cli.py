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
    if "." in args.model:  # a pretrained tag: the localization settings stored with its weights
        from .hub import PretrainedWeightsError, load_localization_settings

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


def _cmd_train(args: argparse.Namespace) -> int:
    import logging

    from .train import config_from_args, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    best = train(config_from_args(args))
    print(json.dumps({k: v for k, v in best.items() if not k.startswith("val/") or "mean" in k}, indent=2))
    return 0


def _load_for_eval(name: str, **model_args):
    from pathlib import Path

    from . import create_model

    if Path(name).is_dir():
        return create_model(f"local-dir:{name}", pretrained=True, **model_args)
    return create_model(name, pretrained=True, **model_args)


def _cmd_eval(args: argparse.Namespace) -> int:
    from .data import load_split, split_label
    from .evaluate import LocalizationSettings, evaluate, write_report
    from .hub import load_localization_settings, settings_tuned_for
    from .tta import settings_for_mode

    model = _load_for_eval(args.model, **({} if args.min_input_size is None else {"min_input_size": args.min_input_size}))
    stored = load_localization_settings(model)

    def settings_for(name: str) -> LocalizationSettings:
        tuned_for = split_label(name) if args.tuned_for == "each" else args.tuned_for
        chosen = settings_for_mode(settings_tuned_for(stored, tuned_for), args.tta)
        return LocalizationSettings(
            threshold=args.threshold if args.threshold is not None else chosen["threshold"],
            min_distance=args.min_distance if args.min_distance is not None else chosen["min_distance"],
            sigma=chosen.get("sigma", 2.0),
        )

    settings = {name: settings_for(name) for name in args.datasets}  # fail on a bad name before any work
    device = "cuda" if args.device == "auto" and __import__("torch").cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    model.to(device)
    for name in args.datasets:
        report = evaluate(
            model, load_split(name, args.split), settings[name], dataset=split_label(name), device=device, tta=args.tta
        )
        if args.tuned_for:
            report.summary["tuned_for"] = split_label(name) if args.tuned_for == "each" else args.tuned_for
        csv_path, json_path = write_report(report, args.out_dir)
        s = report.summary
        how = ([f"tta {args.tta}"] if args.tta else []) + (
            [f"settings tuned for {s['tuned_for']}"] if "tuned_for" in s else []
        )
        print(
            f"{split_label(name)}/{args.split}{' (' + ', '.join(how) + ')' if how else ''}: F1@5 {s['f1@5']:.3f}  F1@10 {s['f1@10']:.3f}  "
            f"P@10 {s['precision@10']:.3f}  R@10 {s['recall@10']:.3f}  MAE {s['mae']:.2f}  RMSE {s['rmse']:.2f}"
            + (f"  Ki-67 index error {s['positive_index_error']:.2f} pts" if "positive_index_error" in s else "")
        )
        print(f"  wrote {csv_path} and {json_path}")
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from .inference import OnnxModel, calibration_images, export_onnx, quantize_onnx

    model = _load_for_eval(args.model)
    out = Path(args.output)
    if not args.int8:
        export_onnx(model, out, example_size=args.example_size, check=args.check)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, fp32, dynamic batch/height/width)")
        return 0
    sources = args.calibration
    if sources:
        images = calibration_images(sources)
    else:
        # The weights' own training sets when the shared data is here, else the bundled sample.
        from .hub import load_weights_config
        from .samples import sample_path

        sources = (load_weights_config(model).get("training") or {}).get("datasets") or []
        try:
            images = calibration_images(sources)
        except (OSError, ValueError, KeyError):
            sources = [str(sample_path())]
            images = calibration_images(sources)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_file = export_onnx(model, Path(tmp) / "model.onnx", example_size=args.example_size, check=args.check)
        quantize_onnx(fp32_file, out, images)
    OnnxModel(out)  # loads: fail here rather than at the user's first localize
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, int8, calibrated on {len(images)} crops of {', '.join(map(str, sources))})")
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

    from .train import add_train_arguments

    p = sub.add_parser(
        "train",
        help="train or fine-tune on shared data sets or your own folder of images + CSV points",
        description="Train (or, with --pretrained, fine-tune) a model. Validates every epoch with "
        "F1 at 5 and 10 px, keeps the best weights in OUT_DIR/best/ and resumes from OUT_DIR/last.pt.",
    )
    add_train_arguments(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "eval",
        help="evaluate weights with the paper's protocol (F1 at 5/10 px, MAE, RMSE)",
        description="Evaluate a pretrained tag or a weights folder on shared data sets: pooled "
        "precision/recall/F1 at 5 and 10 px (Hungarian matching), MAE and RMSE of counts, per class "
        "and Ki-67 index error for 2-class models. Writes a per-image CSV and a JSON summary per set.",
    )
    p.add_argument("model", help="pretrained tag (lite_unet.crc) or a weights folder (runs/x/best)")
    p.add_argument("datasets", nargs="+", help="shared data set names, or folders of images with CSV points")
    p.add_argument("--split", default="validation", help="split to evaluate (default validation)")
    p.add_argument("-o", "--out-dir", default="eval", help="folder for the CSV and JSON reports")
    p.add_argument("--threshold", type=float, help="peak threshold (default: stored with the weights)")
    p.add_argument("--min-distance", type=int, help="peak minimum distance (default: stored with the weights)")
    from .tta import TTA_MODES

    p.add_argument(
        "--tta", choices=sorted(TTA_MODES),
        help="test-time augmentation: average each map over 4 flips or 8 flips and rotations (uses the "
        "settings stored for that mode, when the weights have them)",
    )
    p.add_argument(
        "--tuned-for", metavar="DATASET",
        help="use the settings the weights store for this validation set instead of the shared ones; "
        "'each': every set with its own (as the model card's per-set table)",
    )
    p.add_argument(
        "--min-input-size", type=int,
        help="zero-pad images smaller than this before the model (default: stored with the weights)",
    )
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "export",
        help="export a model for other runtimes (ONNX, int8)",
        description="Export a model with its weights and localization settings for other runtimes.",
    )
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    q = formats.add_parser(
        "onnx",
        help="ONNX file with dynamic batch, height and width (optionally int8)",
        description="Write an ONNX file (fused, float32, dynamic batch/height/width), checked against "
        "PyTorch with ONNX Runtime. With --int8, quantize it statically (int8 weights, uint8 "
        "activations) on calibration crops. Run it with localize(model='file.onnx'). Needs "
        "pip install 'liteunet[onnx]'.",
    )
    q.add_argument("model", help="pretrained tag, model name or weights folder")
    q.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    q.add_argument("--int8", action="store_true", help="post-training int8 quantization (ONNX Runtime)")
    q.add_argument(
        "--calibration", nargs="+", metavar="SOURCE",
        help="data set names (train split), folders or images for the int8 scales "
        "(default: the weights' training sets when the shared data sets are found, else the bundled sample)",
    )
    q.add_argument("--example-size", type=int, default=256, help="side of the traced example (default 256)")
    q.add_argument("--no-check", dest="check", action="store_false", help="skip the ONNX Runtime check")
    q.set_defaults(func=_cmd_export_onnx)

    from .bench import add_bench_parser

    add_bench_parser(sub)

    from .localization import add_localize_parser

    add_localize_parser(sub)

    from .hub import add_push_parser

    add_push_parser(sub)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
