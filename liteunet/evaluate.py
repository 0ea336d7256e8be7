"""Evaluation with the paper's protocol (section 4.2) and the choice of localization settings.

A model's location maps are computed once per image; peaks are then found for each candidate
minimum distance and filtered by score for each candidate threshold, so choosing the
threshold on a validation set costs one forward pass per image.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .data import Sample, match_channels, normalize_image, read_image
from .metrics import PointMetrics
from .object_size import estimate_object_size, rescale_image, rescale_points, resize_for_model, scale_to_trained
from .points import PeakResult, find_peaks
from .inference.scale_model import ScaleModel
from .inference.scale_search import search_scale
from .inference.tta import TestTimeAugmentation
from .pretrained.settings import DEFAULT_LOCALIZATION, load_localization_settings

__all__ = [
    "PRECISION_TOLERANCE",
    "precision_guard",
    "LocalizationSettings",
    "predict_maps",
    "predict_rescaled",
    "stored_normalize",
    "evaluate_maps",
    "peaks_of_maps",
    "selection_score",
    "select_settings",
    "select_settings_across",
    "settings_score_table",
    "best_shared_setting",
    "evaluate",
    "write_report",
]

DEFAULT_THRESHOLDS = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))
DEFAULT_MIN_DISTANCES = (2, 3, 4, 6, 8, 10)


@dataclass
class LocalizationSettings:
    """How a location map becomes points; stored with the weights (config.json "localization").

    Attributes:
        threshold: minimum peak height.
        min_distance: peaks closer than this (in pixels, Chebyshev) are suppressed.
        sigma: width of the Gaussian targets the weights were trained on (informative).
        normalize: how the training images were scaled (``"auto"`` or ``"percentile"``, see
            :func:`liteunet.data.io.intensity_range`); inference scales the same way.
    """

    threshold: float = DEFAULT_LOCALIZATION["threshold"]
    min_distance: int = DEFAULT_LOCALIZATION["min_distance"]
    sigma: float = 2.0
    normalize: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"threshold": float(self.threshold), "min_distance": int(self.min_distance), "sigma": float(self.sigma)}
        if self.normalize != "auto":  # older weights and their configs say nothing: "auto"
            out["normalize"] = self.normalize
        return out


def stored_normalize(model: nn.Module) -> str:
    """How the model's weights want their input scaled: the stored ``normalize``, else ``"auto"``."""
    model = model.model if isinstance(model, TestTimeAugmentation) else model
    return str(load_localization_settings(model).get("normalize", "auto"))


def _image_tensor(sample: Sample, in_chans: int, normalize: str = "auto") -> torch.Tensor:
    image = match_channels(normalize_image(read_image(sample.image_path), mode=normalize), in_chans)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


@torch.no_grad()
def predict_maps(
    model: nn.Module,
    samples: Sequence[Sample],
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    progress: bool = True,
    normalize: str | None = None,
) -> list[np.ndarray]:
    """Location maps of whole images, one forward pass each.

    Images are scaled with ``normalize``; ``None`` takes what the model's weights store
    (:func:`stored_normalize`).

    Returns:
        One float32 array ``(num_classes, H, W)`` per sample.
    """
    normalize = normalize or stored_normalize(model)
    model.eval()
    device = torch.device(device)
    maps = []
    for sample in tqdm(samples, desc="predict", disable=not progress, leave=False):
        x = _image_tensor(sample, model.in_chans, normalize).unsqueeze(0).to(device)
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            out = model(x)
        maps.append(out[0].float().cpu().numpy())
    return maps


@torch.no_grad()
def predict_rescaled(
    model: nn.Module,
    samples: Sequence[Sample],
    rescale: float = 1.0,
    object_size: float | str | None = None,
    trained_object_size: float | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    scale_model: ScaleModel | None = None,
    feature_model: nn.Module | None = None,
    search_with: LocalizationSettings | None = None,
) -> tuple[list[np.ndarray], list[Sample], list[dict[str, float]]]:
    """Location maps of images seen at another magnification, brought back to the trained object size.

    Each image is resized by ``rescale`` (as a user's image at 0.5x or 2x the training
    magnification would be; its true points are mapped with it), then, as ``localize()`` does
    with ``object_size``, normalized and resized by ``trained_object_size / object_size`` (or by
    ``trained / estimated`` with ``"auto"``, :func:`liteunet.object_size.estimate_object_size` on
    the rescaled image) before the model. With ``scale_model`` (the weights' learned estimate,
    read from ``feature_model``'s features, by default ``model``'s), ``"auto"`` resizes by the
    scale it gives for the zoom it predicts (:meth:`~liteunet.inference.ScaleModel.scale_for`),
    and with ``search_with`` (the settings peaks are found with) checks that scale as
    ``localize()`` does (:func:`~liteunet.inference.search_scale`).

    Returns:
        The maps (at the model's scale), the samples with points in the rescaled images' pixels,
        and per image ``{"scale", "estimated"}``: the model pixels per rescaled-image pixel and
        the estimated object size or zoom (``nan`` unless ``"auto"``).
    """
    if object_size is not None and not trained_object_size and not (object_size == "auto" and scale_model):
        raise ValueError("object_size needs the weights' trained object size (config.json localization.object_size)")
    normalize = stored_normalize(model)  # as predict_maps: what the weights store
    model.eval()
    device = torch.device(device)
    maps, scaled, info = [], [], []
    for sample in tqdm(samples, desc="predict", disable=not progress, leave=False):
        image = read_image(sample.image_path)
        if rescale != 1.0:
            image = rescale_image(image, rescale)
        estimated, scale = float("nan"), 1.0
        if object_size == "auto" and scale_model is not None:
            estimated = scale_model.predict(feature_model or model, image, device=device)
            scale = scale_model.scale_for(estimated)[0]
            if search_with is not None:
                scale = search_scale(feature_model or model, scale, search_with.threshold, search_with.min_distance,
                                     image, normalize=normalize, device=device)[0]
        elif object_size == "auto":
            estimated = estimate_object_size(image)
            scale = scale_to_trained(estimated, float(trained_object_size))[0]  # type: ignore[arg-type]
        elif object_size is not None:
            scale = float(trained_object_size) / float(object_size)  # type: ignore[arg-type]
        x = match_channels(normalize_image(image, mode=normalize), model.in_chans)
        if scale != 1.0:
            x = resize_for_model(x, scale)
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(device)
        maps.append(model(x)[0].float().cpu().numpy())
        points = rescale_points(sample.points, rescale) if rescale != 1.0 else sample.points
        scaled.append(Sample(sample.image_path, points, sample.labels, sample.name))
        info.append({"scale": scale, "estimated": estimated})
    return maps, scaled, info


def peaks_of_maps(maps: Sequence[np.ndarray], min_distance: int, floor: float) -> list[PeakResult]:
    """Peaks of each ``(num_classes, H, W)`` map at or above ``floor``; filter by score for higher thresholds."""
    return [find_peaks(torch.from_numpy(m), min_distance=min_distance, threshold=floor) for m in maps]


def selection_score(result: dict[str, Any]) -> float:
    """What settings and checkpoints are chosen by: the mean of F1 at 5 and 10 px."""
    # Both of the paper's radii count: the tight one rewards accurate centres.
    return 0.5 * (result["f1@5"] + result["f1@10"])


def evaluate_maps(
    maps: Sequence[np.ndarray],
    samples: Sequence[Sample],
    settings: LocalizationSettings,
    radii: Sequence[float] = (5, 10),
    num_classes: int = 1,
    peaks: Sequence[PeakResult] | None = None,
) -> PointMetrics:
    """Score location maps against the samples' points with :class:`PointMetrics`."""
    peaks = peaks if peaks is not None else peaks_of_maps(maps, settings.min_distance, settings.threshold)
    metrics = PointMetrics(radii=tuple(radii))
    # A one-class model on a set annotated with several classes (bcdata: Ki-67 positive and
    # negative): report which kinds of cell it finds.
    annotated = num_classes == 1 and len(np.unique(np.concatenate([s.labels for s in samples] or [[0]]))) > 1
    for sample, peak in zip(samples, peaks):
        keep = peak.scores >= settings.threshold
        if num_classes > 1:
            metrics.update(peak.xy[keep], sample.points, peak.labels[keep], sample.labels, name=sample.name)
        else:
            metrics.update(peak.xy[keep], sample.points, name=sample.name, true_classes=sample.labels if annotated else None)
    return metrics


def select_settings(
    maps: Sequence[np.ndarray],
    samples: Sequence[Sample],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    min_distances: Sequence[int] = DEFAULT_MIN_DISTANCES,
    sigma: float = 2.0,
    num_classes: int = 1,
) -> tuple[LocalizationSettings, dict[str, Any]]:
    """Choose the threshold and minimum distance that maximize mean(F1@5, F1@10) on ``samples``.

    Returns:
        The best settings and their metrics (``PointMetrics.compute()``).
    """
    best: tuple[float, LocalizationSettings, dict[str, Any]] | None = None
    for min_distance in min_distances:
        peaks = peaks_of_maps(maps, min_distance, min(thresholds))
        for threshold in thresholds:
            settings = LocalizationSettings(float(threshold), int(min_distance), sigma)
            result = evaluate_maps(maps, samples, settings, num_classes=num_classes, peaks=peaks).compute()
            if best is None or selection_score(result) > best[0]:
                best = (selection_score(result), settings, result)
    assert best is not None
    return best[1], best[2]


def settings_score_table(
    maps: dict[str, Sequence[np.ndarray]],
    samples: dict[str, Sequence[Sample]],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    min_distances: Sequence[int] = DEFAULT_MIN_DISTANCES,
    sigma: float = 2.0,
    num_classes: int = 1,
) -> tuple[list[LocalizationSettings], dict[str, np.ndarray]]:
    """Score every candidate setting on every data set.

    Returns:
        The candidate settings, and for each set an array of their scores (mean of F1@5 and
        F1@10), in the same order.
    """
    candidates: list[LocalizationSettings] = []
    scores: dict[str, list[float]] = {name: [] for name in maps}
    for min_distance in min_distances:
        # Peaks depend on min_distance only; each threshold just filters them by score.
        peaks = {n: peaks_of_maps(maps[n], min_distance, float(min(thresholds))) for n in maps}
        for threshold in thresholds:
            settings = LocalizationSettings(float(threshold), int(min_distance), sigma)
            candidates.append(settings)
            for n in maps:
                result = evaluate_maps(maps[n], samples[n], settings, num_classes=num_classes, peaks=peaks[n]).compute()
                scores[n].append(selection_score(result))
    return candidates, {n: np.asarray(v) for n, v in scores.items()}


def select_settings_across(
    maps: dict[str, Sequence[np.ndarray]],
    samples: dict[str, Sequence[Sample]],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    min_distances: Sequence[int] = DEFAULT_MIN_DISTANCES,
    sigma: float = 2.0,
    num_classes: int = 1,
) -> tuple[LocalizationSettings, float]:
    """One setting for several data sets: maximize the mean over sets of mean(F1@5, F1@10).

    Each set counts equally, however many cells it has (a pooled score would let the densest
    set decide). Returns the settings and their mean score.
    """
    return best_shared_setting(*settings_score_table(maps, samples, thresholds, min_distances, sigma, num_classes))


def best_shared_setting(
    candidates: Sequence[LocalizationSettings], scores: dict[str, np.ndarray]
) -> tuple[LocalizationSettings, float]:
    """The candidate of :func:`settings_score_table` with the best mean score over sets, and that mean."""
    mean = np.mean(np.stack(list(scores.values())), axis=0)
    # argmax keeps the first of equal scores, as the loop it replaced did.
    best = int(np.argmax(mean))
    return candidates[best], float(mean[best])


@dataclass
class EvaluationReport:
    """Summary and per-image rows of one evaluation."""

    dataset: str
    settings: LocalizationSettings
    summary: dict[str, Any]
    per_image: list[dict[str, Any]] = field(default_factory=list)


def evaluate(
    model: nn.Module,
    samples: Sequence[Sample],
    settings: LocalizationSettings,
    dataset: str = "",
    device: str | torch.device = "cpu",
    progress: bool = True,
    tta: str | None = None,
    rescale: float = 1.0,
    object_size: float | str | None = None,
    trained_object_size: float | None = None,
    scale_model: ScaleModel | None = None,
    scale_search: bool = True,
) -> EvaluationReport:
    """Evaluate ``model`` on ``samples`` with the paper's protocol (F1 at 5 and 10 px, MAE, RMSE).

    Scores are pooled over the data set: TP/FP/FN are summed over images, then P/R/F1 are
    computed once (as the paper and BCData do); MAE/RMSE are over per-image counts. With
    ``tta`` (``"flips"`` or ``"d4"``, see :mod:`liteunet.tta`) each map is averaged over those
    views, and the summary records the mode.

    With ``rescale`` (e.g. 0.5 or 2) every image and its points are first resized by it, to
    measure the model at another magnification; with ``object_size`` (``"auto"`` or pixels) and
    the weights' ``trained_object_size`` each image is brought to the trained size before the
    model and the points mapped back, as ``localize(..., object_size=...)`` does
    (:func:`predict_rescaled`). Points are matched in the rescaled images' pixels (the user's
    pixels at that magnification); the summary then also holds the scores matched in the original
    images' pixels, the found points mapped back by ``1 / rescale`` (``f1@10/native`` and so on:
    10 px is then the same distance on the tissue as at native scale, so these compare with the
    native run). ``scale_model`` makes ``"auto"`` use the weights' learned scale estimate
    (:class:`~liteunet.inference.ScaleModel`) rather than the blob estimator, checked with
    :func:`~liteunet.inference.search_scale` unless ``scale_search`` is ``False``.
    """
    feature_model = model  # the plain module: TTA below wraps it
    num_classes = getattr(model, "num_classes", 1)
    if tta:
        model = TestTimeAugmentation(model, tta)
    native: dict[str, float] = {}
    if rescale == 1.0 and object_size is None:
        maps = predict_maps(model, samples, device=device, progress=progress)
        metrics = evaluate_maps(maps, samples, settings, num_classes=num_classes)
        info: list[dict[str, float]] = []
    else:
        maps, resized, info = predict_rescaled(
            model, samples, rescale, object_size, trained_object_size, device, progress, scale_model, feature_model,
            settings if scale_search else None,
        )
        peaks = peaks_of_maps(maps, settings.min_distance, settings.threshold)
        for peak, row in zip(peaks, info):
            peak.xy = rescale_points(peak.xy, 1.0 / row["scale"]).astype(np.float32)
        metrics = evaluate_maps(maps, resized, settings, num_classes=num_classes, peaks=peaks)
        if rescale != 1.0:
            native = _native_pixel_scores(maps, samples, peaks, settings, num_classes, rescale)
    summary = metrics.compute() | native
    if tta:
        summary["tta"] = tta
    if info:
        summary["rescale"] = float(rescale)
        summary["object_size"] = object_size
        summary["model_scale_median"] = float(np.median([row["scale"] for row in info]))
        if object_size == "auto":
            estimated = float(np.nanmedian([row["estimated"] for row in info]))
            summary["zoom_estimated_median" if scale_model else "object_size_estimated_median"] = estimated
    rows = metrics.per_image()
    for row, extra in zip(rows, info):  # each image's own scale (and estimate), for studying `auto`
        row["model_scale"] = round(extra["scale"], 4)
        if object_size == "auto":
            row["zoom_estimated" if scale_model else "object_size_estimated"] = round(extra["estimated"], 4)
    return EvaluationReport(dataset, settings, summary, rows)


def _native_pixel_scores(
    maps: Sequence[np.ndarray],
    samples: Sequence[Sample],
    peaks: Sequence[PeakResult],
    settings: LocalizationSettings,
    num_classes: int,
    rescale: float,
) -> dict[str, float]:
    """Precision, recall and F1 of points found in images resized by ``rescale``, mapped back and
    matched against ``samples`` in their own pixels: keys ``"f1@10/native"`` and so on."""
    back = [PeakResult(rescale_points(p.xy, 1.0 / rescale).astype(np.float32), p.scores, p.labels) for p in peaks]
    native = evaluate_maps(maps, samples, settings, num_classes=num_classes, peaks=back).compute()
    return {
        f"{kind}@{radius}/native": native[f"{kind}@{radius}"]
        for kind in ("precision", "recall", "f1") for radius in (5, 10)
    }


def write_report(report: EvaluationReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``<dataset>_per_image.csv`` and ``<dataset>_summary.json`` into ``out_dir`` (``NAME:GROUP`` as ``NAME-GROUP``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # One group of a set (dsb2018:tissue_256x320): ':' is not allowed in a Windows file name.
    stem = (report.dataset or "eval").replace(":", "-")
    csv_path, json_path = out / f"{stem}_per_image.csv", out / f"{stem}_summary.json"
    if report.per_image:
        keys = list(report.per_image[0])
        with csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(report.per_image)
    json_path.write_text(
        json.dumps({"dataset": report.dataset, "settings": report.settings.to_dict(), **report.summary}, indent=2)
    )
    return csv_path, json_path


#: Reduced precision is offered only when F1 at 5 and 10 px stays this close to float32 (points).
PRECISION_TOLERANCE = 0.5


def precision_guard(
    reference: nn.Module,
    forms: dict[str, nn.Module],
    samples: dict[str, Sequence[Sample]],
    settings: LocalizationSettings,
    tolerance: float = PRECISION_TOLERANCE,
    device: str | torch.device = "cpu",
    progress: bool = True,
    reference_maps: dict[str, Sequence[np.ndarray]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Measure what reduced-precision forms of a model do to F1, against float32.

    Each form (e.g. ``{"bf16": prepare_model(model, "bf16"), "int8": OnnxModel("m.int8.onnx")}``)
    localizes every validation image with the same ``settings`` as the float32 ``reference``;
    a form passes when F1 at 5 and at 10 px differ from float32 by at most ``tolerance`` points
    on every data set. ``reference_maps`` (per set, the float32 maps already predicted) saves
    predicting them again.

    Returns:
        ``{form: {"passed", "tolerance", "max_abs_diff", "per_dataset": {set: {"f1@5", "f1@10",
        "fp32_f1@5", "fp32_f1@10"}}}}``; F1 values are fractions, ``max_abs_diff`` in points.
    """
    num_classes = getattr(reference, "num_classes", 1)
    reference_scores = {}
    for name, items in samples.items():
        if reference_maps is not None and name in reference_maps:
            maps = reference_maps[name]
        else:
            maps = predict_maps(reference, items, device=device, progress=progress)
        reference_scores[name] = evaluate_maps(maps, items, settings, num_classes=num_classes).compute()
    report: dict[str, dict[str, Any]] = {}
    for form_name, form in forms.items():
        per_dataset, worst = {}, 0.0
        for name, items in samples.items():
            maps = predict_maps(form, items, device=device, progress=progress)
            got = evaluate_maps(maps, items, settings, num_classes=num_classes).compute()
            ref = reference_scores[name]
            per_dataset[name] = {
                "f1@5": float(got["f1@5"]), "f1@10": float(got["f1@10"]),
                "fp32_f1@5": float(ref["f1@5"]), "fp32_f1@10": float(ref["f1@10"]),
            }
            worst = max(worst, *(100 * abs(got[k] - ref[k]) for k in ("f1@5", "f1@10")))
        report[form_name] = {
            "passed": bool(worst <= tolerance),
            "tolerance": float(tolerance),
            "max_abs_diff": round(float(worst), 4),
            "per_dataset": per_dataset,
        }
    return report
