"""Model cards for weights folders: written from what the training run recorded in config.json.

Every number on a card comes from the folder's ``config.json`` (``training`` and
``localization``, written by :func:`liteunet.train.save_weights`) or from an evaluation JSON
passed in; nothing is typed by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["DATASET_TERMS", "render_model_card", "write_model_card"]

# name: (description, licence / terms, citation)
DATASET_TERMS: dict[str, tuple[str, str, str]] = {
    "crc": (
        "CRCHistoPhenotypes, H&E colorectal adenocarcinoma nuclei, 500x500",
        "research use only",
        "Sirinukunwattana et al., IEEE TMI 2016",
    ),
    "bcdata": (
        "BCData, Ki-67 IHC breast tumour cells (positive/negative), 640x640",
        "research use",
        "Huang et al., MICCAI 2020",
    ),
    "bbbc039": (
        "BBBC039v1, Hoechst-stained U2OS nuclei (fluorescence, 16-bit), 520x696",
        "CC0 1.0",
        "Caicedo et al., Cytometry A 2019",
    ),
    "mbm": (
        "MBM, H&E bone marrow, 600x600",
        "research use",
        "Kainz et al., MICCAI 2015",
    ),
    "vgg_cells": (
        "VGG synthetic fluorescence cells, 256x256",
        "academic use",
        "Lempitsky & Zisserman, NIPS 2010",
    ),
    "adi": (
        "ADI, H&E subcutaneous adipocytes (GTEx), 150x150",
        "research use",
        "Cohen et al., ICCV Workshops 2017",
    ),
    "dsb2018": (
        "DSB2018 (BBBC038 stage1_train, community mask fixes), fluorescence and H&E-like nuclei, 256x256-256x320",
        "CC0 1.0",
        "Caicedo et al., Nature Methods 2019",
    ),
}


def _eval_target(config: dict[str, Any], tag: str) -> str:
    """What ``liteunet eval`` is given: the tag, or the folder for weights outside the zoo."""
    load = config.get("card", {}).get("load") or ""
    return load.split('"')[1] if load.count('"') == 2 else tag


def _release_target(config: dict[str, Any], tag: str) -> str:
    """What ``python -m liteunet.release`` is given: the weights folder (``weights/<tag>`` in the zoo's repository)."""
    target = _eval_target(config, tag)
    return f"weights/{tag}" if target == tag else target


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render_model_card(
    config: dict[str, Any], tag: str, summary: str = "", evaluation: dict[str, dict[str, Any]] | None = None,
    evaluation_command: str = "", notes: list[str] | None = None,
) -> str:
    """Markdown (with Hugging Face YAML front matter) for a weights folder's ``config.json``.

    Args:
        config: the folder's config.json.
        tag: the pretrained tag (``lite_unet.multi``).
        summary: one paragraph about the weights.
        evaluation: per data set, the JSON summary ``liteunet eval`` wrote (full validation
            splits); without it the card shows the validation the training run recorded.
        evaluation_command: the command that produced ``evaluation``.
        notes: extra recipe lines (the exact training command, interruptions...).
    """
    training = config.get("training", {})
    loc = config.get("localization", {})
    datasets = [Path(d).name for d in training.get("datasets", [])]
    licences = sorted({DATASET_TERMS[d][1] for d in datasets if d in DATASET_TERMS})
    lines = [
        "---",
        "library_name: timm",
        "license: other" if any(t != "CC0 1.0" for t in licences) else "license: cc0-1.0",
        "tags: [liteunet, cell-localization, timm, image-segmentation]",
        "---",
        f"# {tag}",
        "",
        summary or f"Lite-UNet weights for cell localization, trained with liteunet on {', '.join(datasets)}.",
        "",
        "```python",
        "import liteunet",
        "model = " + (config.get("card", {}).get("load") or f'liteunet.create_model("{tag}", pretrained=True)'),
        "```",
        "",
        "## Model",
        f"- architecture: `{config.get('architecture')}`, {config.get('num_classes')} location map(s)"
        + (f" ({', '.join(config['pretrained_cfg'].get('label_names') or [])})" if config.get("pretrained_cfg", {}).get("label_names") else ""),
        f"- parameters: {training.get('params', 0) / 1e6:.2f} M; "
        f"{training.get('macs_512', 0) / 1e9:.2f} G MACs per 3x512x512 image (the paper's 'GFLOPs')",
        f"- localization settings chosen on validation: threshold {loc.get('threshold')}, "
        f"min_distance {loc.get('min_distance')} px (Gaussian targets, {_target_widths(loc, training)})",
        (
            "- input: RGB floats, each image scaled by its own 1st and 99.8th percentiles whatever its bit depth "
            "(`normalize` \"percentile\", stored with the weights); grey images are repeated to 3 channels"
            if loc.get("normalize") == "percentile"
            else "- input: RGB floats in [0, 1] (8-bit / 255; 16-bit percentile-normalized); grey images are repeated to 3 channels"
        ),
        "",
        "## Training data and its terms",
        "",
        "| data set | what | terms | cite |",
        "|---|---|---|---|",
    ]
    for d in datasets:
        what, terms, cite = DATASET_TERMS.get(d, ("user data", "see its owner", ""))
        lines.append(f"| `{d}` | {what} | {terms} | {cite} |")
    lines += [
        "",
        "Training used the `train` split of each set (fixed splits shipped in `liteunet/data/splits/`"
        " for the sets that give none); settings and the checkpoint were chosen on the `validation` split.",
        "Because several sets are for research use only, **these weights are for research use**.",
        "",
        "## Recipe",
        f"- preset `{training.get('preset')}` of `liteunet train` (see `liteunet/train.py`); "
        f"best epoch {training.get('epoch')} (step {training.get('step')})",
        f"- wall time to the best epoch: {training.get('minutes')} min on {training.get('hardware')}",
        *[f"- {note}" for note in notes or []],
        "",
        "## Validation metrics",
        "Paper protocol (section 4.2): one-to-one Hungarian matching, a match within 5 or 10 px, "
        "precision/recall/F1 pooled over the set; MAE/RMSE of per-image counts.",
        "",
    ]
    validation = training.get("validation", {})
    if evaluation:
        validation = {f"val/{n}/{k}": v for n, summary_ in evaluation.items() for k, v in summary_.items()}
        lines.append(
            f"Full validation splits, measured with `{evaluation_command}`. The threshold and minimum "
            "distance were chosen on these same images (one setting for all sets), so the numbers are "
            "slightly optimistic:"
        )
        lines.append("")
    else:
        lines.append("As recorded by the training run at its best epoch (at most `val_max_images` images per set):")
        lines.append("")
    names = sorted({k.split("/")[1] for k in validation if k.count("/") == 2})
    if names:
        metrics = ["f1@5", "f1@10", "precision@10", "recall@10", "mae", "rmse"]
        if any(k.endswith("/positive_index_error") for k in validation):
            metrics.append("positive_index_error")  # Ki-67 index error, in points
        headers = {"positive_index_error": "Ki-67 index error (points)"}
        lines.append("| set | " + " | ".join(headers.get(m, m) for m in metrics) + " |")
        lines.append("|---|" + "---|" * len(metrics))
        for n in names:
            lines.append(f"| {n} | " + " | ".join(_fmt(validation.get(f"val/{n}/{m}", "")) for m in metrics) + " |")
        lines.append("")
    lines += [
        "Reproduce: `liteunet eval " + _eval_target(config, tag) + " " + " ".join(names or datasets) + "`.",
        "",
        *_tta_section(config, tag),
        *_per_dataset_section(config, tag),
        *_object_size_section(config, tag),
        *_zero_shot_section(config),
        *_precision_section(config),
        "## Intended use and limitations",
        "- Research on cell/nucleus localization and counting in microscopy and pathology images "
        "similar to the training data. Not a medical device; not for diagnosis.",
        "- Trained on small public sets: expect lower accuracy on other stains, scanners and magnifications; "
        "fine-tune with `liteunet train --pretrained " + tag + "` on a few annotated images of your own.",
        "",
    ]
    return "\n".join(lines)


def _tta_section(config: dict[str, Any], tag: str) -> list[str]:
    chosen = (config.get("localization") or {}).get("tta") or {}
    results = (config.get("evaluation") or {}).get("tta") or {}
    plain = (config.get("evaluation") or {}).get("metrics") or {}
    if not chosen or not results:
        return []
    lines = [
        "## Test-time augmentation",
        "`localize(..., tta=\"flips\")` averages each map over 4 flips, `tta=\"d4\"` over 8 flips and "
        "90-degree rotations (4x / 8x the compute). Each mode has its own threshold and minimum distance, "
        "chosen on the validation split like the plain ones and stored in `config.json`; the same "
        "optimism applies.",
        "",
    ]
    ki67 = any("positive_index_error" in row for per_set in results.values() for row in per_set.values())
    extra = " Ki-67 index error (points) |" if ki67 else ""
    lines += [
        "| mode | threshold | min distance | set | F1@5 | F1@10 | MAE |" + extra + " without TTA F1@5 | without TTA F1@10 |",
        "|---|---|---|---|---|---|---|" + ("---|" if ki67 else "") + "---|---|",
    ]
    for mode, per_set in results.items():
        settings = chosen.get(mode, {})
        for name, row in per_set.items():
            base = plain.get(name, {})
            lines.append(
                f"| {mode} | {settings.get('threshold')} | {settings.get('min_distance')} | {name} | "
                f"{row['f1@5']:.3f} | {row['f1@10']:.3f} | {_fmt(row['mae'])} |"
                + (f" {_fmt(row.get('positive_index_error', ''))} |" if ki67 else "")
                + f" {_fmt(base.get('f1@5', ''))} | {_fmt(base.get('f1@10', ''))} |"
            )
    names = " ".join(next(iter(results.values())))
    target = _eval_target(config, tag)
    commands = ", ".join(f"`liteunet eval {target} {names} --tta {mode}`" for mode in results)
    lines += ["", f"Reproduce: {commands}.", ""]
    return lines


def _per_dataset_section(config: dict[str, Any], tag: str) -> list[str]:
    chosen = (config.get("localization") or {}).get("tuned_for") or {}
    results = (config.get("evaluation") or {}).get("tuned_for") or {}
    shared = (config.get("evaluation") or {}).get("metrics") or {}
    if not chosen or not results:
        return []
    lines = [
        "## Settings for one kind of image",
        "The threshold and minimum distance above are shared by all the validation sets. Each set's own "
        "pair, chosen on that set alone, is stored too: `localize(images, \"" + tag + "\", tuned_for=NAME)` "
        "or `liteunet localize ... --tuned-for NAME` uses it, for images like that set's (with `tta=`, the "
        "set's pair for that mode). Chosen and measured on the same validation images, so optimistic too:",
        "",
        "| tuned for | TTA | threshold | min distance | F1@5 | F1@10 | MAE | F1@10 with the shared settings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    shared_tta = (config.get("evaluation") or {}).get("tta") or {}
    modes: list[str] = []
    for name, row in results.items():
        for mode, metrics in [(None, row), *(row.get("tta") or {}).items()]:
            pair = chosen.get(name, {}) if mode is None else (chosen.get(name, {}).get("tta") or {}).get(mode, {})
            before = shared.get(name, {}) if mode is None else shared_tta.get(mode, {}).get(name, {})
            if mode and mode not in modes:
                modes.append(mode)
            lines.append(
                f"| {name} | {mode or 'none'} | {pair.get('threshold')} | {pair.get('min_distance')} | "
                f"{metrics['f1@5']:.3f} | {metrics['f1@10']:.3f} | {_fmt(metrics['mae'])} | {_fmt(before.get('f1@10', ''))} |"
            )
    names = " ".join(results)
    target = _eval_target(config, tag)
    commands = [f"`liteunet eval {target} {names} --tuned-for each`"]
    commands += [f"`liteunet eval {target} {names} --tuned-for each --tta {mode}`" for mode in modes]
    lines += ["", f"Reproduce: {', '.join(commands)}.", ""]
    return lines


def _zero_shot_section(config: dict[str, Any]) -> list[str]:
    """Leave-one-data-set-out runs (``evaluation.leave_one_out``) beside these weights' own figure on the left-out set."""
    runs = (config.get("evaluation") or {}).get("leave_one_out") or []
    if not runs:
        return []
    own = (config.get("evaluation") or {}).get("metrics") or {}
    lines = [
        "## Zero-shot: one data set left out",
        "Validation on a set's own split does not show how the weights do on images from another lab. "
        "Each row is a model trained without one data set (neither its train split, nor its validation "
        "split for the checkpoint and settings), then scored on that set's validation split, which it never "
        "saw. They were trained with these weights' augmentation and input scaling but an earlier, smaller "
        "recipe (no distillation, a fraction of the steps), and were not kept; the last column is these "
        "weights, which trained on the set.",
        "",
        "| left out | started from | budget | F1@10 | F1@10 with `object_size=\"auto\"` | these weights (trained on it) |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        name = run["left_out"]
        lines.append(
            f"| {name} | {run['start']} | {run['budget']} | {_fmt(run['f1@10'])} | {_fmt(run.get('f1@10_auto', ''))} | "
            f"{_fmt(own.get(name, {}).get('f1@10', ''))} |"
        )
    lines += ["", "Reproduce (training, then scoring):"]
    for run in runs:
        evals = " and ".join(f"`{command}`" for command in run["eval_commands"])
        note = f" ({run['note']})" if run.get("note") else ""
        lines.append(f"- {run['left_out']}, {run['start']}: `{run['train_command']}`; {evals}{note}")
    lines.append("")
    return lines


def _object_size_section(config: dict[str, Any], tag: str) -> list[str]:
    localization = config.get("localization") or {}
    size = localization.get("object_size")
    scale_model = localization.get("scale_model") or {}
    if not size and not scale_model:
        return []
    target = _eval_target(config, tag)
    lines = ["## Object size", *_scale_model_lines(scale_model, _release_target(config, tag))]
    if not size:
        return lines
    lines += [
        ("Without the scale model (`liteunet eval ... --auto-by blobs`, and for ONNX forms), `auto` " if scale_model
         else "`localize(..., object_size=\"auto\")` (`--object-size auto`) ")
        + f"estimates the typical object diameter in each image and resizes the image so that its objects measure "
        f"{_fmt(float(size), 1)} px before the model; the points come back in the image's own pixels. It is meant "
        "for images at another magnification than the training sets'.",
        "",
    ]
    by_set = localization.get("object_size_by_dataset") or {}
    if by_set:
        sizes = ", ".join(f"{name} {_fmt(float(value), 1)}" for name, value in by_set.items())
        lines += [f"Median estimated diameter on each training set (px): {sizes}.", ""]
    tuning = localization.get("object_size_tuning") or {}
    scores = tuning.get("scores") or {}
    if scores:
        names = [name for name in next(iter(scores.values())) if name != "selection"]
        measured = localization.get("object_size_measured")
        lines += [
            f"The size was chosen like the peak settings, on the {tuning.get('split', 'validation')} images at "
            "their native scale"
            + (f" (the median of the training sets' sizes is {_fmt(float(measured), 1)} px)" if measured else "")
            + ": F1@10 with `object_size=\"auto\"` at each candidate size, and the mean of F1@5 and F1@10 it was "
            "chosen by:",
            "",
            "| size (px) | " + " | ".join(names) + " | mean of F1@5 and F1@10 |",
            "|---|" + "---|" * (len(names) + 1),
        ]
        for candidate, row in scores.items():
            lines.append(f"| {candidate} | " + " | ".join(_fmt(row.get(n, "")) for n in names) + f" | {_fmt(row.get('selection', ''))} |")
        lines += [
            "",
            f"Reproduce: `python -m liteunet.release {_release_target(config, tag)} --object-size-tune {' '.join(scores)} --datasets "
            f"{' '.join(names)}`; the chosen size alone: `liteunet eval {target} {' '.join(names)} --object-size auto`.",
            "",
        ]
    return lines


def _scale_model_lines(scale_model: dict[str, Any], target: str) -> list[str]:
    if not scale_model:
        return []
    error = scale_model.get("error") or {}
    lines = [
        "`localize(..., object_size=\"auto\")` (`--object-size auto`) uses these weights' learned scale model: a "
        "ridge regression from the network's own features (channel means of the encoder stages and the bottleneck) "
        "to the zoom of an image relative to the training images, fitted on training images shown at known zooms. "
        "The image is resized by the inverse of the predicted zoom before the model, and the points come back in "
        "the image's own pixels. It learns each training set's magnification: on images unlike all of them it "
        "answers with the nearest kind's.",
        "",
    ]
    tolerance = float(scale_model.get("tolerance", 1.0))
    if tolerance > 1.0:
        lines += [
            f"An image whose predicted zoom is within {tolerance:g}x of 1 is taken to be at the training magnification: "
            "on images at it the prediction is off by about as much, and undoing a small wrong zoom costs more than "
            "it saves.",
            "",
        ]
    lines += [
        "The estimate is then checked with the network itself: the image (or up to four regions of about 512 model "
        "pixels of a large one) is localized at five scales around it, from x1/1.6 to x1.6, and the scale at which "
        "the found peaks are highest on average is kept (`scale_search=False`, `--no-scale-search`: the estimate "
        "alone).",
        "",
    ]
    options = "".join(
        [f" --scale-train-images {max(counts.values())}" if (counts := error.get("train_images")) else "",
         f" --scale-tolerance {tolerance:g}" if tolerance > 1.0 else ""]
    )
    by_set = error.get("by_set") or {}
    if by_set:
        zooms = ", ".join(f"{z:g}" for z in error.get("zooms", []))
        images = error.get("images") or {}
        lines += [
            f"Error of the predicted zoom on validation images never used in the fit (each shown at {zooms}x), "
            "as a factor (1.10: 10% too large or too small):",
            "",
            "| set | images | median | 90th percentile |",
            "|---|---|---|---|",
            *(f"| {name} | {images.get(name, '')} | {math.exp(median):.2f} | {math.exp(p90):.2f} |"
              for name, (median, p90) in by_set.items()),
            f"| all | | {math.exp(error['median']):.2f} | {math.exp(error['p90']):.2f} |",
            "",
            f"Reproduce: `python -m liteunet.release {target} --scale-model --datasets {' '.join(by_set)}{options}`.",
            "",
        ]
    return lines


def _precision_section(config: dict[str, Any]) -> list[str]:
    inference = config.get("inference") or {}
    guard = dict(inference.get("precision_guard") or {})
    for mode, per_form in (inference.get("precision_guard_tta") or {}).items():
        guard.update({f"{form} with {mode} TTA": result for form, result in per_form.items()})
    if not guard:
        return []
    tolerance = next(iter(guard.values())).get("tolerance", 0.5)
    lines = [
        "## Inference precision",
        f"Reduced precision is used only where F1 at 5 and 10 px stays within {tolerance} points of "
        "float32 on every validation set (same settings; `liteunet.evaluate.precision_guard`, run by "
        "`python -m liteunet.release --check-precision`). `localize(precision=\"auto\")` picks bf16 on "
        "CPUs with native bf16 only when it passed here (with `tta=`, when it passed with that mode, "
        "where that was measured).",
        "",
        "| precision | set | F1@5 | F1@10 | fp32 F1@5 | fp32 F1@10 | largest difference (points) | within guard |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for form, result in guard.items():
        for name, row in result.get("per_dataset", {}).items():
            diff = 100 * max(abs(row["f1@5"] - row["fp32_f1@5"]), abs(row["f1@10"] - row["fp32_f1@10"]))
            lines.append(
                f"| {form} | {name} | {row['f1@5']:.3f} | {row['f1@10']:.3f} | {row['fp32_f1@5']:.3f} | "
                f"{row['fp32_f1@10']:.3f} | {diff:.2f} | {'yes' if diff <= tolerance else 'no'} |"
            )
    lines.append("")
    return lines


def _target_widths(localization: dict[str, Any], training: dict[str, Any]) -> str:
    """``sigma 2.0 px``, or the sets whose targets were wider or narrower (``training.sigma``)."""
    base = localization.get("sigma")
    own = {name: width for name, width in (training.get("sigma") or {}).items() if width != base}
    if not own:
        return f"sigma {base} px"
    return f"sigma {base} px; " + ", ".join(f"{name} {width} px" for name, width in own.items())


def write_model_card(
    folder: str | Path, tag: str, summary: str | None = None, evaluation: dict[str, dict[str, Any]] | None = None,
    evaluation_command: str | None = None, notes: list[str] | None = None,
) -> Path:
    """Write ``README.md`` into a weights folder from its ``config.json``.

    Arguments left as ``None`` come from the config: ``card`` (summary, notes, evaluation
    command, saved by ``liteunet.release``) and ``evaluation.metrics``.
    """
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    card = config.get("card") or {}
    summary = card.get("summary", "") if summary is None else summary
    notes = card.get("notes", []) if notes is None else notes
    evaluation_command = card.get("evaluation_command", "") if evaluation_command is None else evaluation_command
    if evaluation is None:
        evaluation = (config.get("evaluation") or {}).get("metrics")
    path = folder / "README.md"
    path.write_text(render_model_card(config, tag, summary, evaluation, evaluation_command, notes))
    return path
