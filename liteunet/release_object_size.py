"""The object size a weights folder records for ``localize(..., object_size="auto")``.

``auto`` estimates the typical object diameter in a user's image and brings the image to the
size the weights expect. That size is either measured on the weights' training images
(:func:`measure_object_size`, ``python -m liteunet.release WEIGHTS --object-size-only``) or chosen
as a setting, the size the weights localize best at on the validation splits
(:func:`tune_object_size`, ``--object-size-tune PX ...``). Both write the weights'
``config.json``; the weights file is not touched.

Weights may also carry a learned scale estimate (:func:`fit_and_store_scale_model`,
``--scale-model``): a regression from the network's features to the zoom of an image, which
``auto`` then uses in place of the blob estimator.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .data import evenly_spaced, load_split, read_image, split_label
from .evaluate import LocalizationSettings, evaluate, selection_score
from .inference import fit_scale_model
from .model_card import write_model_card
from .models import load_model
from .object_size import estimate_object_size
from .pretrained import load_localization_settings, resolve_settings

__all__ = ["fit_and_store_scale_model", "measure_object_size", "tune_object_size"]


def measure_object_size(
    folder: str | Path,
    datasets: Sequence[str] | None = None,
    split: str = "train",
    max_images: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure the object size a weights folder was trained at and record it in its ``config.json``.

    :func:`liteunet.object_size.estimate_object_size` (the estimator ``localize(...,
    object_size="auto")`` runs on a user's image, so its bias cancels) runs on every ``split``
    image of each data set; the recorded size is the median of the per-set medians (each set
    counts equally, as in balanced training). Writes ``localization.object_size``,
    ``localization.object_size_by_dataset`` and, for each set with its own settings, its size in
    ``localization.tuned_for.<set>.object_size`` (used with ``tuned_for=<set>``); the weights file
    is not touched. When the size was chosen by :func:`tune_object_size`, that choice stays in
    ``localization.object_size`` and the new median goes to ``localization.object_size_measured``.

    Args:
        folder: the weights folder (its ``config.json`` is updated).
        datasets: default: the config's ``training.datasets``.
        split: the split measured (default ``"train"``: the images the weights saw).
        max_images: at most this many images per set, evenly spaced (default: all).

    Returns:
        ``{"object_size": float, "object_size_by_dataset": {set: float}}``.

    Example:
        >>> measure_object_size("weights/lite_unet.multi")  # doctest: +SKIP
        {'object_size': 10.2, 'object_size_by_dataset': {'crc': 8.1, ...}}
    """
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    names = list(datasets or (config.get("training") or {}).get("datasets") or [])
    if not names:
        raise ValueError(f"{folder}/config.json names no training.datasets; pass the data sets (--datasets)")
    per_set: dict[str, float] = {}
    for name in names:
        samples = evenly_spaced(load_split(name, split), max_images)
        sizes = [estimate_object_size(read_image(s.image_path)) for s in tqdm(samples, desc=f"object size {name}", disable=not progress)]
        found = [d for d in sizes if d == d]
        if not found:
            raise ValueError(f"no objects found on the {split} images of {name}")
        per_set[split_label(name)] = round(float(np.median(found)), 3)
    record = {"object_size": round(float(np.median(list(per_set.values()))), 3), "object_size_by_dataset": per_set}
    # Read again just before writing, so a release job running meanwhile keeps its results.
    config = json.loads((folder / "config.json").read_text())
    localization = config.setdefault("localization", {})
    localization.update(record)
    if "object_size_tuning" in localization:  # a size chosen on validation outranks the median
        scores = localization["object_size_tuning"]["scores"]
        localization["object_size"] = float(max(scores, key=lambda size: scores[size]["selection"]))
        localization["object_size_measured"] = record["object_size"]
    # Each set's own size beside its own settings: localize(..., tuned_for=NAME, object_size="auto").
    for name, size in per_set.items():
        if name in (localization.get("tuned_for") or {}):
            localization["tuned_for"][name]["object_size"] = size
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return record


def tune_object_size(
    folder: str | Path,
    datasets: Sequence[str],
    sizes: Sequence[float],
    split: str = "validation",
    max_images: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    tag: str | None = None,
) -> dict[str, Any]:
    """Choose the object size ``object_size="auto"`` brings images to, on ``split``, and record it.

    A model trained with scale augmentation over sets whose objects differ five-fold need not
    localize best at the median of their sizes (what :func:`measure_object_size` records). Each
    candidate size is scored as a user would meet it: every image at its native scale, its object
    size estimated and the image brought to the candidate (:func:`liteunet.evaluate.evaluate`
    with ``object_size="auto"``), with the weights' shared peak settings. The size with the best
    mean :func:`~liteunet.evaluate.selection_score` over the data sets is written to
    ``localization.object_size``; the measured size it replaces is kept in
    ``localization.object_size_measured`` and every candidate's F1@10 per set in
    ``localization.object_size_tuning``.

    Args:
        folder: the weights folder (its ``config.json`` is updated; the weights are not touched).
        datasets: the data sets scored, each counting equally.
        sizes: the candidate sizes in pixels.
        split: the split scored (default ``"validation"``, as for the peak settings).
        max_images: at most this many images per set, evenly spaced (default: all).
        tag: the pretrained tag; when given, the model card is written again (its object-size table).

    Returns:
        ``{"object_size": chosen, "scores": {size: {set: F1@10, ..., "selection": mean score}}}``.

    Example:
        >>> tune_object_size("weights/lite_unet.multi", ["crc", "mbm"], [8, 12])  # doctest: +SKIP
        {'object_size': 8.0, 'scores': {...}}
    """
    if not sizes or not all(float(size) > 0 for size in sizes):
        raise ValueError(f"candidate object sizes must be positive numbers of pixels, got {list(sizes)}")
    folder = Path(folder)
    model = load_model(folder).to(device).eval()
    chosen = resolve_settings(load_localization_settings(model))
    settings = LocalizationSettings(threshold=chosen["threshold"], min_distance=chosen["min_distance"])
    samples = {split_label(name): evenly_spaced(load_split(name, split), max_images) for name in datasets}
    scores: dict[str, dict[str, float]] = {}
    for size in sorted(float(size) for size in sizes):
        summaries = {
            name: evaluate(model, s, settings, dataset=name, device=device, progress=progress, object_size="auto",
                           trained_object_size=size).summary
            for name, s in samples.items()
        }
        row = {name: round(summary["f1@10"], 4) for name, summary in summaries.items()}
        row["selection"] = round(float(np.mean([selection_score(summary) for summary in summaries.values()])), 4)
        scores[f"{size:g}"] = row
    best = max(scores, key=lambda size: scores[size]["selection"])
    config = json.loads((folder / "config.json").read_text())
    localization = config.setdefault("localization", {})
    if "object_size" in localization and "object_size_measured" not in localization:
        localization["object_size_measured"] = localization["object_size"]
    localization["object_size"] = float(best)
    localization["object_size_tuning"] = {"split": split, "datasets": list(samples), "scores": scores}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if tag:
        write_model_card(folder, tag)
    return {"object_size": float(best), "scores": scores}


def fit_and_store_scale_model(
    folder: str | Path,
    datasets: Sequence[str],
    train_images: int = 16,
    held_out_images: int = 8,
    tolerance: float = 1.0,
    device: str = "cpu",
    progress: bool = True,
    tag: str | None = None,
) -> dict[str, Any]:
    """Fit the weights' scale model (:func:`liteunet.inference.fit_scale_model`) and store it.

    Fitted on ``train_images`` evenly spaced ``train`` images of each set (the images the
    weights saw), its ridge strength chosen and its error measured on ``held_out_images`` of
    each ``validation`` split. Writes ``localization.scale_model`` (with the error record and
    ``tolerance``, :attr:`liteunet.inference.ScaleModel.tolerance`); ``object_size="auto"`` then
    uses it.

    Returns:
        The stored entry's error record.
    """
    folder = Path(folder)
    model = load_model(folder).to(device).eval()
    normalize = str(load_localization_settings(model).get("normalize", "percentile"))

    def images(split: str, count: int) -> dict[str, list[np.ndarray]]:
        return {split_label(name): [read_image(s.image_path) for s in evenly_spaced(load_split(name, split), count)]
                for name in datasets}

    scale_model = fit_scale_model(
        model, images("train", train_images), images("validation", held_out_images),
        normalize=normalize, tolerance=tolerance, device=device, progress=progress,
    )
    config = json.loads((folder / "config.json").read_text())
    config.setdefault("localization", {})["scale_model"] = scale_model.to_config()
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if tag:
        write_model_card(folder, tag)
    return scale_model.error or {}
