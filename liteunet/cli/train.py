"""``liteunet train``: train or fine-tune on shared data sets or a folder of images + CSV points."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from typing import Any

#: ``liteunet.train.PRESETS`` and ``CHECKPOINT_BY`` by name, so ``--help`` needs no torch
#: (tests/test_cli.py checks they match).
PRESET_NAMES = ("cpu", "paper")
CHECKPOINT_CHOICES = ("shared", "per-dataset")
TEACHER_TARGET_CHOICES = ("maps", "points")  # liteunet.teacher.TEACHER_TARGETS
TEACHER_TTA_CHOICES = ("flips", "d4")  # liteunet.inference.TTA_MODES
AUGMENT_CHOICES = ("paper", "full", "generalist", "generalist-ihc", "none")  # liteunet.data.augment.AUGMENT_PRESETS


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune on shared data sets or your own folder of images + CSV points",
        description="Train (or, with --pretrained, fine-tune) a model. Validates every epoch with "
        "F1 at 5 and 10 px, keeps the best weights in OUT_DIR/best/ and resumes from OUT_DIR/last.pt.",
    )
    add_train_arguments(p)
    p.set_defaults(func=run)
    return p


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``liteunet train`` options."""
    parser.add_argument(
        "datasets", nargs="+",
        help="shared data set names (crc, mbm, bbbc039, vgg_cells, adi, bcdata, dsb2018), NAME:GROUP for one acquisition "
        "group of a set that records them (dsb2018:tissue_256x320, given its own share of crops), or folders of images with CSV points",
    )
    parser.add_argument("-o", "--out-dir", default="runs/lite_unet", help="run folder: checkpoints, best weights, logs")
    parser.add_argument("--model", default="lite_unet", help="model name (default lite_unet)")
    parser.add_argument("--preset", default="cpu", choices=PRESET_NAMES, help="recipe: 'paper' (MSE, Adam 1e-4, batch 12, flips, 512px) or 'cpu' (default)")
    parser.add_argument("--pretrained", help="fine-tune from a pretrained tag or a weights folder")
    parser.add_argument("--val-datasets", nargs="+", help="validation sets (default: the validation split of each training set)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--crop-size", type=int)
    parser.add_argument(
        "--crop-sizes", type=int, nargs="+", metavar="SIDE",
        help="draw each batch's crop side from these (e.g. 256 384 512), with about the pixels of --batch-size crops "
        "of --crop-size per batch: points then depend less on the tile size (default: every batch --crop-size)",
    )
    parser.add_argument("--lr", type=float)
    parser.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], help="autocast dtype (default from the preset; 'auto': bf16 on CUDA and on CPUs with native bf16, else off)")
    parser.add_argument(
        "--augment", nargs="+", type=_augment_argument, metavar="NAME|SET=NAME",
        help=f"one of {', '.join(AUGMENT_CHOICES)}. 'generalist': + scale 0.5x-2x, HED stain, grey, blur, noise, JPEG; "
        "'generalist-ihc': + a quarter of bright-field crops re-stained as nuclear IHC (default from the preset); "
        "SET=NAME sets one data set's (e.g. generalist bcdata=full)",
    )
    parser.add_argument("--scale-range", type=float, nargs=2, metavar=("LO", "HI"), help="random zoom of the training crops, smallest and largest factor (default from --augment; generalist: 0.5 2)")
    parser.add_argument("--scale-prob", type=float, metavar="P", help="share of training crops zoomed (default from --augment; generalist: 0.7)")
    parser.add_argument("--normalize", choices=["auto", "percentile", "nuclear"], default=None, help="input scaling: 'auto' (8-bit / 255, others percentiles), 'percentile' (per-image percentiles for every bit depth) or 'nuclear' (one plane in which nuclei are bright: light absorbed by haematoxylin and DAB in bright-field colour, intensity of fluorescence); stored with the weights (default: the --pretrained weights' own, else auto)")
    parser.add_argument(
        "--sigma", nargs="+", type=_sigma_argument, metavar="S|SET=S",
        help="Gaussian target width in pixels (default 2); SET=S sets one data set's width (e.g. 2 bcdata=4 for its large nuclei)",
    )
    parser.add_argument(
        "--teacher", nargs="+", type=_teacher_argument, dest="teachers", metavar="[SET=]WEIGHTS",
        help="distillation: learn these weights' location maps of a set's training images beside its points (e.g. crc=weights/lite_unet.crc); without SET=, of every set",
    )
    parser.add_argument("--teacher-weight", type=float, help="the teacher's share of each target (its maps or its points), 0-1 (default 0.5)")
    parser.add_argument(
        "--teacher-targets", choices=TEACHER_TARGET_CHOICES,
        help="'maps' (default): learn the teacher's maps; 'points': its peaks at its own stored settings, drawn as Gaussians of height 1",
    )
    parser.add_argument(
        "--teacher-tta", choices=TEACHER_TTA_CHOICES,
        help="average each teacher map over mirrored copies of the image ('flips': 4, 'd4': 8); its points use the settings stored for that mode",
    )
    parser.add_argument("--model-args", type=json.loads, default={}, help="extra model arguments as JSON, e.g. '{\"theta\": 0.4}'")
    parser.add_argument("--num-classes", type=int, default=1)
    parser.add_argument("--in-chans", type=int, default=3)
    parser.add_argument(
        "--samples-per-epoch", nargs="+", type=_samples_argument, metavar="N|SET=N",
        help="random crops per data set per epoch; SET=N sets one data set's count (e.g. 128 crc=384)",
    )
    parser.add_argument("--val-max-images", type=int, help="validate on at most this many images per set")
    parser.add_argument(
        "--checkpoint-by", choices=CHECKPOINT_CHOICES,
        help="keep the checkpoint that scores best with one setting for all sets ('shared', default) or with each set's own ('per-dataset')",
    )
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    parser.add_argument("--time-limit", type=float, dest="time_limit_min", help="stop at the first epoch end after this many minutes (counted over resumes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, dest="num_workers", help="DataLoader workers")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="start over even if OUT_DIR/last.pt exists")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def _per_set_argument(convert: Any, form: str) -> Any:
    """An argparse ``type`` for ``VALUE`` or ``SET=VALUE``: returns ``(SET or "*", convert(VALUE))``."""

    def parse(text: str) -> tuple[str, Any]:
        name, _, value = text.rpartition("=")
        try:
            return name or "*", convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {form}, got {text!r}") from None

    return parse


_samples_argument = _per_set_argument(int, "N or SET=N")
_sigma_argument = _per_set_argument(float, "S or SET=S (pixels)")
_teacher_argument = _per_set_argument(str, "WEIGHTS or SET=WEIGHTS")


def _augment_name(text: str) -> str:
    if text not in AUGMENT_CHOICES:
        raise ValueError(text)
    return text


_augment_argument = _per_set_argument(_augment_name, f"NAME or SET=NAME, NAME one of {', '.join(AUGMENT_CHOICES)}")


def _per_set(pairs: list[tuple[str, Any]]) -> Any:
    """``[("*", 2)]`` -> ``2``; anything naming a set -> a dict with ``*`` for the rest."""
    values = dict(pairs)
    return values["*"] if list(values) == ["*"] else values


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`liteunet.train.TrainConfig` the parsed options describe."""
    from ..train import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    for key in ("samples_per_epoch", "sigma", "augment"):
        if getattr(args, key):
            setattr(args, key, _per_set(getattr(args, key)))
    if args.teachers:
        args.teachers = dict(args.teachers)
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names and (v is not None or k == "pretrained")})


def run(args: argparse.Namespace) -> int:
    import logging

    from ..train import train  # loads torch: only when the command runs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    best = train(config_from_args(args))
    print(json.dumps({k: v for k, v in best.items() if not k.startswith("val/") or "mean" in k}, indent=2))
    return 0
