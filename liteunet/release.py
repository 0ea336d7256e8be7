"""Turn a training run's best checkpoint into a published weights folder (``weights/<tag>/``).

The localization settings are chosen again on the full validation splits with a finer grid
than the per-epoch one, the folder is evaluated with them, and the model card is written from
the measured numbers. Run::

    python -m liteunet.release runs/multi/best weights/lite_unet.multi --tag lite_unet.multi \\
        --datasets crc mbm bbbc039 vgg_cells adi

Record the object size the weights were trained at (``localize(..., object_size="auto")``),
measured on the training images of the config's ``training.datasets``::

    python -m liteunet.release weights/lite_unet.multi --object-size-only

Or choose it as a setting, the size ``object_size="auto"`` localizes best at on the validation
splits (each image at native scale, brought to each candidate size)::

    python -m liteunet.release weights/lite_unet.multi --object-size-tune 8 10.5 15 --datasets crc mbm
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from timm.models import get_pretrained_cfg

from .models import load_model
from .data import class_names, list_datasets, load_split, split_label
from .evaluate import (
    DEFAULT_MIN_DISTANCES,
    DEFAULT_THRESHOLDS,
    LocalizationSettings,
    evaluate_maps,
    precision_guard,
    predict_maps,
    select_settings,
    select_settings_across,
)
from .pretrained import load_localization_settings, resolve_settings
from .inference import TTA_MODES, OnnxModel, TestTimeAugmentation, calibration_images, export_onnx, prepare_model, quantize_onnx
from .model_card import write_model_card
from .release_object_size import fit_and_store_scale_model, measure_object_size, tune_object_size

__all__ = [
    "finalize_weights", "tune_tta", "tune_per_dataset", "check_precisions", "compiling_every_shape", "measure_object_size",
    "tune_object_size", "fit_and_store_scale_model", "main",
]

#: Keys of a config's "localization" that describe the input the weights expect, not how peaks
#: are picked: kept when the peak settings are re-tuned.
INPUT_KEYS = ("normalize", "object_size", "object_size_by_dataset", "object_size_measured", "object_size_tuning", "scale_model", "mpp")


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
    model = load_model(
        run_folder, min_input_size=model_args.get("min_input_size", 0)
    ).to(device).eval()
    num_classes = model.num_classes
    samples = {split_label(name): load_split(name, split) for name in datasets}
    datasets = list(samples)
    maps = {name: _predicted_maps(model, run_folder, None, name, split, s, device) for name, s in samples.items()}
    sigma = config.get("localization", {}).get("sigma", 2.0)
    settings = _select(maps, samples, sigma, num_classes)
    evaluation = {
        name: evaluate_maps(maps[name], samples[name], settings, num_classes=num_classes).compute() for name in datasets
    }
    out_folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_folder / "model.safetensors", out_folder / "model.safetensors")
    # Re-tuning replaces the peak settings; what the weights record about their input stays.
    kept = {k: v for k, v in (config.get("localization") or {}).items() if k in INPUT_KEYS}
    config["localization"] = {**kept, **settings.to_dict()}
    # The weights describe the tag they are released as, not the tag of the model they were
    # fine-tuned from (lite_unet.crc and lite_unet.ki67 once said "multi" and "generalist").
    try:
        registered = get_pretrained_cfg(tag)
    except RuntimeError:  # a tag not (yet) registered in the zoo: nothing to take from it
        registered = None
    cfg = config.setdefault("pretrained_cfg", {})
    if registered is not None:
        cfg["tag"] = registered.tag
        if registered.description:
            cfg["description"] = registered.description
    else:
        # Not in the zoo: say what these weights are, not what they were fine-tuned from.
        cfg["tag"] = tag.split(".", 1)[-1]
        cfg["description"] = summary.split(". ")[0] if summary else ""
    if num_classes > 1:
        # Name the maps (e.g. BCData's positive / negative) so localize() labels points with them.
        names = {class_names(name) for name in datasets if name in list_datasets()}
        if len(names) == 1 and len(next(iter(names))) == num_classes:
            config.setdefault("pretrained_cfg", {})["label_names"] = list(next(iter(names)))
    config["evaluation"] = {"split": split, "settings_chosen_on": split, "metrics": evaluation}
    config["card"] = {
        "summary": summary,
        "notes": list(notes),
        "evaluation_command": command or f"liteunet eval {out_folder} {' '.join(datasets)} --split {split}",
    }
    if registered is None:  # not a zoo tag: the card shows how to load the folder itself
        config["card"]["load"] = f'liteunet.load_model("{out_folder.as_posix()}")'

    (out_folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_model_card(out_folder, tag)
    return evaluation


def tune_tta(
    folder: str | Path,
    tag: str,
    datasets: Sequence[str],
    modes: Sequence[str] = tuple(TTA_MODES),
    split: str = "validation",
    device: str = "cpu",
) -> dict[str, dict[str, Any]]:
    """Choose localization settings for each test-time augmentation mode and record them.

    Averaged maps (:mod:`liteunet.tta`) have lower peaks than single passes, so each mode gets
    its own threshold and minimum distance, chosen on ``split`` as :func:`finalize_weights`
    chooses the plain ones. Adds them to ``config.json`` ``localization.tta`` and
    ``evaluation.tta`` (modes tuned before and not named here are kept) and regenerates the
    model card.

    Returns:
        ``{mode: {data set: metrics}}`` with the chosen settings.
    """
    folder = Path(folder)
    model = load_model(folder).to(device).eval()
    sigma = load_localization_settings(model).get("sigma", 2.0)
    samples = {split_label(name): load_split(name, split) for name in datasets}
    chosen: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        maps = {name: _predicted_maps(model, folder, mode, name, split, s, device) for name, s in samples.items()}
        settings = _select(maps, samples, sigma, model.num_classes)
        chosen[mode] = {"threshold": settings.threshold, "min_distance": settings.min_distance}
        results[mode] = {
            name: evaluate_maps(maps[name], samples[name], settings, num_classes=model.num_classes).compute()
            for name in samples
        }
    # Merge, so tuning one mode keeps the others (finalize_weights starts a fresh record).
    with _updating_config(folder, tag) as config:
        config.setdefault("localization", {}).setdefault("tta", {}).update(chosen)
        config.setdefault("evaluation", {}).setdefault("tta", {}).update(results)
    return results


def tune_per_dataset(
    folder: str | Path,
    tag: str,
    datasets: Sequence[str],
    modes: Sequence[str] | None = None,
    split: str = "validation",
    device: str = "cpu",
) -> dict[str, dict[str, Any]]:
    """Choose each data set's own threshold and minimum distance and record them beside the shared ones.

    Weights tuned on several sets store one pair that is best on average; images like one set
    localize better with the pair chosen on that set alone (``localize(..., tuned_for=NAME)``).
    Chooses it without augmentation and with each test-time augmentation mode in ``modes``
    (default: the modes the folder already has settings for), writes ``config.json``
    ``localization.tuned_for`` and ``evaluation.tuned_for`` (sets not named here are kept) and
    regenerates the model card.

    Returns:
        ``{data set: metrics}`` with that set's own settings, and its TTA metrics under ``"tta"``.
    """
    folder = Path(folder)
    model = load_model(folder).to(device).eval()
    stored = load_localization_settings(model)
    if modes is None:
        modes = list(stored.get("tta") or {})
    sigma = stored.get("sigma", 2.0)
    samples = {split_label(name): load_split(name, split) for name in datasets}
    chosen: dict[str, dict[str, Any]] = {name: {} for name in samples}
    results: dict[str, dict[str, Any]] = {name: {} for name in samples}
    for mode in (None, *modes):
        for name, items in samples.items():
            maps = _predicted_maps(model, folder, mode, name, split, items, device)
            settings, metrics = select_settings(
                maps, items, DEFAULT_THRESHOLDS, DEFAULT_MIN_DISTANCES, sigma, model.num_classes
            )
            pair = {"threshold": settings.threshold, "min_distance": settings.min_distance}
            if mode:
                chosen[name].setdefault("tta", {})[mode] = pair
                results[name].setdefault("tta", {})[mode] = metrics
            else:
                chosen[name].update(pair)
                results[name].update(metrics)
    with _updating_config(folder, tag) as config:
        config.setdefault("localization", {}).setdefault("tuned_for", {}).update(chosen)
        config.setdefault("evaluation", {}).setdefault("tuned_for", {}).update(results)
    return results


# Float32 maps of the validation images, by (weights digest, input padding, TTA mode, data set,
# split): one release run that tunes the plain, TTA and per-set settings predicts each once.
_MAPS: dict[tuple[str, int, str | None, str, str], list] = {}


def _predicted_maps(
    model: torch.nn.Module, folder: Path, mode: str | None, name: str, split: str, samples: Sequence, device: str
) -> list:
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    key = (digest, int(getattr(model, "min_input_size", 0)), mode, name, split)
    if any(cached[:2] != key[:2] for cached in _MAPS):
        _MAPS.clear()  # other weights: keep one model's maps at a time
    if key not in _MAPS:
        predictor = TestTimeAugmentation(model, mode) if mode else model
        _MAPS[key] = predict_maps(predictor, samples, device=device)
    return _MAPS[key]


@contextlib.contextmanager
def _updating_config(folder: Path, tag: str) -> Iterator[dict[str, Any]]:
    """Read ``config.json``, let the caller change it, write it back and regenerate the card.

    Read at the end of a measurement rather than its start, so two release jobs measuring
    different things on one folder (minutes each) do not overwrite each other's results.
    """
    config = json.loads((folder / "config.json").read_text())
    yield config
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_model_card(folder, tag)


def _select(
    maps: dict[str, list], samples: dict[str, Sequence], sigma: float, num_classes: int
) -> LocalizationSettings:
    # One set: its best settings; several: one setting that is best on average over the sets.
    if len(maps) == 1:
        name = next(iter(maps))
        return select_settings(maps[name], samples[name], DEFAULT_THRESHOLDS, DEFAULT_MIN_DISTANCES, sigma, num_classes)[0]
    return select_settings_across(maps, samples, DEFAULT_THRESHOLDS, DEFAULT_MIN_DISTANCES, sigma, num_classes)[0]


def check_precisions(
    folder: str | Path,
    tag: str,
    datasets: Sequence[str],
    precisions: Sequence[str] = ("bf16", "int8"),
    split: str = "validation",
    device: str = "cpu",
    tta: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Measure reduced precision against float32 on ``split`` and record it with the weights.

    bf16 runs the fused model in PyTorch, ``bf16_compiled`` the same through ``torch.compile``
    (its frozen, fused kernels round differently); int8 exports to ONNX and quantizes with ONNX Runtime,
    calibrated on crops of the ``train`` split (skipped, with a message, without onnxruntime).
    Writes ``config.json`` ``inference.precision_guard`` and regenerates the model card. With
    ``tta`` (``"flips"``, ``"d4"``), every form and float32 run with that augmentation and its
    stored settings, and the result goes to ``inference.precision_guard_tta``: averaged maps have
    lower peaks, so reduced precision can move F1 differently than without.
    """
    folder = Path(folder)
    model = load_model(folder).to(device).eval()
    stored = resolve_settings(load_localization_settings(model), tta=tta)
    settings = LocalizationSettings(**{k: v for k, v in stored.items() if k in ("threshold", "min_distance", "sigma")})
    forms: dict[str, torch.nn.Module] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in precisions:
            if precision == "int8":
                try:
                    import onnxruntime  # noqa: F401
                except ImportError:
                    print("int8 skipped: needs pip install 'liteunet[onnx]'")
                    continue
                fp32_file = export_onnx(model, Path(tmp) / "model.onnx")
                int8_file = quantize_onnx(fp32_file, Path(tmp) / "model.int8.onnx", calibration_images(datasets))
                forms["int8"] = OnnxModel(int8_file)
            elif precision == "bf16_compiled":
                forms[precision] = prepare_model(model, "bf16", device=device, compile=True)
            else:
                forms[precision] = prepare_model(model, precision, device=device)
        samples = {split_label(name): load_split(name, split) for name in datasets}
        # The float32 maps are those the settings were tuned on, when this run predicted them.
        reference_maps = {name: _predicted_maps(model, folder, tta, name, split, s, device) for name, s in samples.items()}
        if tta:
            forms = {name: TestTimeAugmentation(form, tta) for name, form in forms.items()}
        with compiling_every_shape() if "bf16_compiled" in forms else contextlib.nullcontext():
            guard = precision_guard(model, forms, samples, settings, device=device, reference_maps=reference_maps)
    # Merge: measuring one form again keeps the records of the others.
    with _updating_config(folder, tag) as config:
        inference = config.setdefault("inference", {})
        record = inference.setdefault("precision_guard_tta", {}).setdefault(tta, {}) if tta else inference.setdefault("precision_guard", {})
        record.update(guard)
    return guard


@contextlib.contextmanager
def compiling_every_shape(limit: int = 64) -> Iterator[None]:
    """Let ``torch.compile`` compile each new input shape instead of falling back to eager.

    A compiled form is compiled once per input shape (and memory layout: the transposed views of
    test-time augmentation count apart). Validation sets of several image sizes exceed Dynamo's
    default limit of 8 compilations, after which it silently runs the model eagerly, and the guard
    would measure eager bf16 under the compiled form's name. Inside this block the limit is
    ``limit``, and reaching it raises instead.
    """
    import torch._dynamo.config as dynamo_config

    options = {"recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit": limit}
    if hasattr(dynamo_config, "fail_on_recompile_limit_hit"):
        options["fail_on_recompile_limit_hit"] = True
    with dynamo_config.patch(**options):
        yield


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m liteunet.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_folder", nargs="?", help="a training run's best/ folder (omit with --check-precision-only)")
    parser.add_argument("out_folder", help="the weights folder to write, e.g. weights/lite_unet.multi")
    parser.add_argument(
        "--check-precision", nargs="*", metavar="PRECISION", default=None,
        help="after writing, measure these reduced precisions against fp32 (default bf16 int8; also bf16_compiled) and record them",
    )
    parser.add_argument(
        "--check-precision-only", action="store_true",
        help="only measure and record reduced precision for an existing weights folder",
    )
    parser.add_argument(
        "--tta", nargs="+", choices=sorted(TTA_MODES), metavar="MODE",
        help="after writing, choose and record localization settings for these test-time augmentation modes (flips, d4)",
    )
    parser.add_argument(
        "--guard-tta", choices=sorted(TTA_MODES), metavar="MODE",
        help="measure the precision guard with this test-time augmentation mode and its settings (recorded beside the plain guard)",
    )
    parser.add_argument(
        "--tta-only", action="store_true", help="only tune and record --tta settings for an existing weights folder",
    )
    parser.add_argument(
        "--per-dataset", action="store_true",
        help="after writing (and --tta), also choose and record each data set's own settings, plain and "
        "for every tuned TTA mode (localize(..., tuned_for=NAME))",
    )
    parser.add_argument(
        "--per-dataset-only", action="store_true",
        help="only choose and record per-data-set settings for an existing weights folder",
    )
    parser.add_argument(
        "--object-size", action="store_true",
        help="after writing, measure the typical object diameter on the training images of --object-size-datasets "
        "(default: the config's training.datasets) and record it (localize(..., object_size='auto'))",
    )
    parser.add_argument(
        "--object-size-only", action="store_true", help="only measure and record the object size of an existing weights folder",
    )
    parser.add_argument(
        "--object-size-tune", nargs="+", type=float, metavar="PX",
        help="only choose, among these sizes, the object size object_size='auto' localizes best at on --datasets "
        "(--split, native scale) and record it (with --tag, the model card is written again)",
    )
    parser.add_argument(
        "--scale-model", action="store_true",
        help="only fit the learned scale estimate object_size='auto' uses (features of --scale-train-images train images per "
        "--datasets set at 7 zooms; error measured on 8 validation images each) and record it (with --tag, the card is written again)",
    )
    parser.add_argument("--scale-train-images", type=int, default=16, metavar="N", help="--scale-model: train images per set (default 16)")
    parser.add_argument(
        "--scale-tolerance", type=float, default=1.0, metavar="ZOOM",
        help="--scale-model: leave images whose predicted zoom is within this factor of 1 at scale 1 (default 1: none)",
    )
    parser.add_argument("--object-size-datasets", nargs="+", metavar="DATASET", help="data sets to measure the object size on")
    parser.add_argument("--object-size-split", default="train", help="split the object size is measured on (default train)")
    parser.add_argument("--max-images", type=int, help="object size: at most this many images per set")
    parser.add_argument("--tag", help="pretrained tag, e.g. lite_unet.multi (needed except with --object-size-only)")
    parser.add_argument("--datasets", nargs="+", help="data sets to tune and report on (needed except with --object-size-only)")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--summary", default="", help="one paragraph for the model card")
    parser.add_argument("--note", action="append", default=[], dest="notes", help="a recipe line for the card (repeatable)")
    parser.add_argument("--min-input-size", type=int, help="store this min_input_size with the weights")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.object_size_only:
        record = measure_object_size(args.out_folder, args.object_size_datasets, args.object_size_split, args.max_images)
        print(f"object size {record['object_size']} px; by data set: {record['object_size_by_dataset']}")
        return 0
    if args.scale_model:
        if not args.datasets:
            parser.error("--scale-model needs --datasets to fit on")
        error = fit_and_store_scale_model(
            args.out_folder, args.datasets, args.scale_train_images, tolerance=args.scale_tolerance, device=args.device, tag=args.tag,
        )
        for name, (median, p90) in error["by_set"].items():
            print(f"scale model, {name} validation: median |log zoom error| {median:.3f}, 90th percentile {p90:.3f}")
        print(f"all: median {error['median']:.3f}, 90th percentile {error['p90']:.3f} (ridge {error['ridge']:g}); "
              f"recorded in {args.out_folder}/config.json localization.scale_model")
        return 0
    if args.object_size_tune:
        if not args.datasets:
            parser.error("--object-size-tune needs --datasets to score on")
        tuned = tune_object_size(
            args.out_folder, args.datasets, args.object_size_tune, args.split, args.max_images, args.device, tag=args.tag
        )
        for size, row in tuned["scores"].items():
            print(f"object size {size} px: " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
        print(f"chosen: {tuned['object_size']:g} px (recorded in {args.out_folder}/config.json localization.object_size)")
        return 0
    if not (args.tag and args.datasets):
        parser.error("--tag and --datasets are needed (except with --object-size-only)")
    if args.tta_only and not args.tta:
        parser.error("--tta-only needs --tta MODE...")
    if not (args.check_precision_only or args.tta_only or args.per_dataset_only):
        if not args.run_folder:
            parser.error("run_folder is needed unless --check-precision-only, --tta-only or --per-dataset-only")
        evaluation = finalize_weights(
            args.run_folder, args.out_folder, args.tag, args.datasets, args.split, args.summary, device=args.device,
            notes=args.notes, min_input_size=args.min_input_size,
        )
        for name, metrics in evaluation.items():
            print(f"{name}: F1@5 {metrics['f1@5']:.3f}  F1@10 {metrics['f1@10']:.3f}  MAE {metrics['mae']:.2f}")
    if args.tta:
        for mode, per_set in tune_tta(args.out_folder, args.tag, args.datasets, args.tta, args.split, args.device).items():
            for name, metrics in per_set.items():
                print(f"tta {mode} {name}: F1@5 {metrics['f1@5']:.3f}  F1@10 {metrics['f1@10']:.3f}  MAE {metrics['mae']:.2f}")
    if args.per_dataset or args.per_dataset_only:
        for name, metrics in tune_per_dataset(args.out_folder, args.tag, args.datasets, split=args.split, device=args.device).items():
            for mode, row in [(None, metrics), *(metrics.get("tta") or {}).items()]:
                print(f"tuned for {name}{' (tta ' + mode + ')' if mode else ''}: F1@5 {row['f1@5']:.3f}  F1@10 {row['f1@10']:.3f}  MAE {row['mae']:.2f}")
    if args.object_size:
        record = measure_object_size(args.out_folder, args.object_size_datasets, args.object_size_split, args.max_images)
        print(f"object size {record['object_size']} px; by data set: {record['object_size_by_dataset']}")
    if args.check_precision_only or args.check_precision is not None:
        precisions = args.check_precision or ["bf16", "int8"]
        guard = check_precisions(args.out_folder, args.tag, args.datasets, precisions, args.split, args.device, args.guard_tta)
        for form, result in guard.items():
            print(f"{form}{' with ' + args.guard_tta + ' TTA' if args.guard_tta else ''}: largest F1 difference {result['max_abs_diff']:.2f} points -> "
                  f"{'within' if result['passed'] else 'outside'} the {result['tolerance']} guard")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
