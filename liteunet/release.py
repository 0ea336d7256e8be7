"""Turn a training run's best checkpoint into a published weights folder (``weights/<tag>/``).

The localization settings are chosen again on the full validation splits with a finer grid
than the per-epoch one, the folder is evaluated with them, and the model card is written from
the measured numbers. Run::

    python -m liteunet.release runs/multi/best weights/lite_unet.multi --tag lite_unet.multi \\
        --datasets crc mbm bbbc039 vgg_cells adi
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ._factory import create_model
from .data import load_split, split_label
from .evaluate import (
    DEFAULT_MIN_DISTANCES,
    DEFAULT_THRESHOLDS,
    evaluate_maps,
    predict_maps,
    select_settings,
    select_settings_across,
)
from .model_card import write_model_card

__all__ = ["finalize_weights", "main"]


def finalize_weights(
    run_folder: str | Path,
    out_folder: str | Path,
    tag: str,
    datasets: Sequence[str],
    split: str = "validation",
    summary: str = "",
    command: str = "",
    device: str = "cpu",
    notes: Sequence[str] = (),
    min_input_size: int | None = None,
) -> dict[str, Any]:
    """Copy a run's ``best/`` weights to ``out_folder`` with settings tuned on ``split`` and a card.

    Returns:
        Per data set, the metrics of the published settings on ``split``.
    """
    run_folder, out_folder = Path(run_folder), Path(out_folder)
    config = json.loads((run_folder / "config.json").read_text())
    model_args = config.setdefault("model_args", {})
    if min_input_size is not None:
        model_args["min_input_size"] = min_input_size
    model = create_model(
        f"local-dir:{run_folder}", pretrained=True, min_input_size=model_args.get("min_input_size", 0)
    ).to(device).eval()
    num_classes = model.num_classes
    samples = {split_label(name): load_split(name, split) for name in datasets}
    datasets = list(samples)
    maps = {name: predict_maps(model, s, device=device) for name, s in samples.items()}
    sigma = config.get("localization", {}).get("sigma", 2.0)
    if len(datasets) == 1:
        name = datasets[0]
        settings, _ = select_settings(maps[name], samples[name], DEFAULT_THRESHOLDS, DEFAULT_MIN_DISTANCES, sigma, num_classes)
    else:
        settings, _ = select_settings_across(maps, samples, DEFAULT_THRESHOLDS, DEFAULT_MIN_DISTANCES, sigma, num_classes)
    evaluation = {
        name: evaluate_maps(maps[name], samples[name], settings, num_classes=num_classes).compute() for name in datasets
    }
    out_folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_folder / "model.safetensors", out_folder / "model.safetensors")
    config["localization"] = settings.to_dict()
    config["evaluation"] = {"split": split, "settings_chosen_on": split, "metrics": evaluation}
    (out_folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_model_card(
        out_folder, tag, summary, evaluation,
        command or f"liteunet eval {out_folder} {' '.join(datasets)} --split {split}", list(notes),
    )
    return evaluation


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m liteunet.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_folder", help="a training run's best/ folder")
    parser.add_argument("out_folder", help="the weights folder to write, e.g. weights/lite_unet.multi")
    parser.add_argument("--tag", required=True, help="pretrained tag, e.g. lite_unet.multi")
    parser.add_argument("--datasets", nargs="+", required=True, help="data sets to tune and report on")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--summary", default="", help="one paragraph for the model card")
    parser.add_argument("--note", action="append", default=[], dest="notes", help="a recipe line for the card (repeatable)")
    parser.add_argument("--min-input-size", type=int, help="store this min_input_size with the weights")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    evaluation = finalize_weights(
        args.run_folder, args.out_folder, args.tag, args.datasets, args.split, args.summary, device=args.device,
        notes=args.notes, min_input_size=args.min_input_size,
    )
    for name, metrics in evaluation.items():
        print(f"{name}: F1@5 {metrics['f1@5']:.3f}  F1@10 {metrics['f1@10']:.3f}  MAE {metrics['mae']:.2f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
