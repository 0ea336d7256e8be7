"""``liteunet eval``: score weights with the paper's protocol (F1 at 5/10 px, MAE, RMSE)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

#: ``liteunet.inference.TTA_MODES`` by name, so ``--help`` needs no torch (tests/test_cli.py checks).
TTA_CHOICES = ("d4", "flips")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval",
        help="evaluate weights with the paper's protocol (F1 at 5/10 px, MAE, RMSE)",
        description="Evaluate a pretrained tag or a weights folder on shared data sets: pooled "
        "precision/recall/F1 at 5 and 10 px (Hungarian matching), MAE and RMSE of counts, per class "
        "and Ki-67 index error for 2-class models, the recall of each annotated class for a one-class model on "
        "a set annotated with classes (bcdata). Writes a per-image CSV and a JSON summary per set.",
    )
    p.add_argument("model", help="pretrained tag (lite_unet.crc) or a weights folder (runs/x/best)")
    p.add_argument("datasets", nargs="+", help="shared data set names (NAME:GROUP for one acquisition group, e.g. dsb2018:tissue_256x320), or folders of images with CSV points")
    p.add_argument(
        "--split", choices=("train", "validation", "all"),
        help="split to evaluate (default: a folder of your own is scored whole ('all'); a shared data set, its validation split)",
    )
    p.add_argument("-o", "--out-dir", default="eval", help="folder for the CSV and JSON reports")
    p.add_argument("--threshold", type=float, help="peak threshold (default: stored with the weights)")
    p.add_argument("--min-distance", type=int, help="peak minimum distance (default: stored with the weights)")
    p.add_argument(
        "--tta", choices=TTA_CHOICES,
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
    p.add_argument(
        "--rescale", type=float, default=1.0, metavar="FACTOR",
        help="resize every image and its points by FACTOR first (e.g. 0.5 or 2: the model at another magnification); "
        "scored in the resized pixels and, mapped back, in the original ones",
    )
    p.add_argument(
        "--object-size", metavar="auto|PX",
        help="bring images to the object size the weights were trained at before the model: 'auto' estimates "
        "each image's typical object diameter, a number gives it in pixels (as liteunet localize --object-size)",
    )
    p.add_argument(
        "--auto-by", choices=["scale-model", "blobs"],
        help="what --object-size auto measures: 'scale-model', the zoom the weights' learned scale model predicts from "
        "the network's features (the default when the weights store one, as localize does), or 'blobs', the classical "
        "blob-size estimator (the default otherwise)",
    )
    p.add_argument(
        "--no-scale-search", dest="scale_search", action="store_false",
        help="with --object-size auto and a scale model: its estimate alone, without the peak-height search around it",
    )
    p.add_argument("--max-images", type=int, metavar="N", help="score at most N images per set, evenly spaced (quick checks)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)
    return p


def parse_object_size(value: str | None) -> float | str | None:
    """``--object-size``: ``"auto"``, a positive number of pixels, or ``None``; a clear error otherwise."""
    if value is None or value == "auto":
        return value
    try:
        size = float(value)
    except ValueError:
        size = float("nan")
    if not size > 0 or size == float("inf"):
        raise ValueError(f"--object-size must be 'auto' or a positive number of pixels, got {value!r}")
    return size


def run(args: argparse.Namespace) -> int:
    # Loads torch: only when the command runs.
    from .._device import resolve_device
    from ..data import class_names, evenly_spaced, load_split, split_label
    from ..evaluate import LocalizationSettings, evaluate, write_report
    from ..inference import stored_scale_model
    from ..models import load_model
    from ..pretrained import load_localization_settings, resolve_settings

    model = load_model(args.model, **({} if args.min_input_size is None else {"min_input_size": args.min_input_size}))
    stored = load_localization_settings(model)

    def settings_for(name: str) -> LocalizationSettings:
        tuned_for = split_label(name) if args.tuned_for == "each" else args.tuned_for
        chosen = resolve_settings(
            stored, tuned_for=tuned_for, tta=args.tta, threshold=args.threshold, min_distance=args.min_distance
        )
        return LocalizationSettings(
            threshold=chosen["threshold"], min_distance=chosen["min_distance"], sigma=chosen.get("sigma", 2.0)
        )

    settings = {name: settings_for(name) for name in args.datasets}  # fail on a bad name before any work
    object_size = parse_object_size(args.object_size)

    def trained_size(name: str) -> float | None:  # with --tuned-for, that set's own size when stored
        tuned_for = split_label(name) if args.tuned_for == "each" else args.tuned_for
        return resolve_settings(stored, tuned_for=tuned_for).get("object_size")

    if args.auto_by and object_size != "auto":
        raise ValueError(f"--auto-by {args.auto_by} says how --object-size auto measures; it needs --object-size auto")
    scale_model = stored_scale_model(stored, model) if object_size == "auto" and args.auto_by != "blobs" else None
    if args.auto_by == "scale-model" and scale_model is None:
        raise ValueError(f"--auto-by scale-model: the weights of {args.model} store no scale model "
                         "(add one with `python -m liteunet.release WEIGHTS_FOLDER --scale-model --datasets ...`)")
    if object_size is not None and not scale_model and not all(trained_size(name) for name in args.datasets):
        raise ValueError(
            f"--object-size {args.object_size}: the weights of {args.model} do not record the object size they were "
            "trained at (config.json localization.object_size); add it with "
            "`python -m liteunet.release WEIGHTS_FOLDER --object-size-only`"
        )
    if not args.rescale > 0:
        raise ValueError(f"--rescale must be a positive number, got {args.rescale}")
    device = resolve_device(args.device)
    model.to(device)
    for name in args.datasets:
        split = args.split or ("all" if Path(name).is_dir() else "validation")
        samples = evenly_spaced(load_split(name, split), args.max_images)
        report = evaluate(
            model, samples, settings[name], dataset=split_label(name), device=device, tta=args.tta,
            rescale=args.rescale, object_size=object_size, trained_object_size=trained_size(name), scale_model=scale_model,
            scale_search=args.scale_search,
        )
        if args.tuned_for:
            report.summary["tuned_for"] = split_label(name) if args.tuned_for == "each" else args.tuned_for
        csv_path, json_path = write_report(report, args.out_dir)
        s = report.summary
        how = ([f"tta {args.tta}"] if args.tta else []) + (
            [f"settings tuned for {s['tuned_for']}"] if "tuned_for" in s else []
        ) + ([f"rescaled {args.rescale:g}x"] if args.rescale != 1.0 else []) + (
            [f"object size {args.object_size}{' by the scale model' if scale_model else ''} (model scale median {s['model_scale_median']:.3g})"]
            if object_size is not None else []
        ) + ([f"{len(samples)} images"] if args.max_images else [])
        print(
            f"{split_label(name)}/{split}{' (' + ', '.join(how) + ')' if how else ''}: F1@5 {s['f1@5']:.3f}  F1@10 {s['f1@10']:.3f}  "
            f"P@10 {s['precision@10']:.3f}  R@10 {s['recall@10']:.3f}  MAE {s['mae']:.2f}  RMSE {s['rmse']:.2f}"
            + (f"  Ki-67 index error {s['positive_index_error']:.2f} pts" if "positive_index_error" in s else "")
        )
        if "f1@10/native" in s:  # --rescale: the same points matched in the original images' pixels
            print(f"  in the original pixels: F1@5 {s['f1@5/native']:.3f}  F1@10 {s['f1@10/native']:.3f}  "
                  f"P@10 {s['precision@10/native']:.3f}  R@10 {s['recall@10/native']:.3f}")
        found = {int(k.rsplit("annotated", 1)[1]): v for k, v in s.items() if k.startswith("recall@10/annotated")}
        if found:  # a one-class model on a set annotated with classes
            names = class_names(name) if not Path(name).is_dir() else ()
            print("  R@10 by annotated class: " + ", ".join(
                f"{names[c] if c < len(names) else c} {v:.3f}" for c, v in sorted(found.items())))
        print(f"  wrote {csv_path} and {json_path}")
    return 0
