"""Teachers for distillation: a trained model's location maps of training images, learned beside the points.

A model trained on one data set fits that set's annotation style better than a generalist that
shares its 1.3 M parameters with six others (issue 19: F1@10 0.840 against 0.797 on crc's
training images). With ``liteunet train --teacher SET=WEIGHTS`` the generalist's target on
that set's crops becomes ``(1 - w) * gaussians(points) + w * teacher map``
(:class:`liteunet.data.PointDataset`'s ``soft_targets``): the teacher's map of each whole
training image, computed once here, at native scale with the teacher's own input scaling.

Maps carry the teacher's confidence: ``lite_unet.crc`` peaks low (its threshold is 0.15) and
``lite_unet.ki67`` high (0.3), and a student taught both inherits thresholds that disagree.
``--teacher-targets points`` teaches the teacher's *points* instead (:func:`teacher_targets`:
its peaks at its own stored settings, drawn as Gaussians of height 1), the same height on
every set.

``--teacher-tta flips`` (or ``d4``) averages each teacher map over mirrored copies of the image
(:class:`liteunet.inference.tta.TestTimeAugmentation`), and its points use the threshold stored
for that mode: pseudo-labels as good as the teacher gets with test-time augmentation, learned
by a student that localizes in one pass (issue 19's run 25).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .data import Sample
from .data.per_set import values_per_set
from .data.targets import TargetFn, gaussian_target
from .evaluate import predict_maps
from .inference.tta import TestTimeAugmentation
from .models import load_model
from .points import find_peaks
from .pretrained.settings import load_localization_settings, resolve_settings

__all__ = ["TEACHER_TARGETS", "teacher_maps", "teacher_targets", "teachers_per_set"]

#: What a student learns from its teacher: the teacher's maps or its points.
TEACHER_TARGETS = ("maps", "points")


def teachers_per_set(teachers: Mapping[str, str] | None, names: Sequence[str]) -> list[str | None]:
    """The teacher weights of each training set: by name, ``*`` for the sets not named, else none.

    Example:
        >>> teachers_per_set({"crc": "weights/lite_unet.crc"}, ["crc", "mbm"])
        ['weights/lite_unet.crc', None]
    """
    return values_per_set(dict(teachers or {}), names, "teacher")


def teacher_maps(
    weights: str,
    samples: Sequence[Sample],
    num_classes: int = 1,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    tta: str | None = None,
) -> list[np.ndarray]:
    """A teacher's location map of every sample, whole image at native scale, clipped to [0, 1].

    Args:
        weights: the teacher, anything :func:`liteunet.load_model` takes (tag or weights folder);
            its stored input scaling is used.
        samples: the training images.
        num_classes: maps the student learns. A teacher with as many maps gives them as they
            are; for a one-map student the teacher's maps are combined by their maximum (a
            two-class Ki-67 model teaches "a cell" that way).
        device, amp_dtype: where and in which precision the teacher runs.
        tta: ``"flips"`` or ``"d4"`` averages each map over that many mirrored copies.

    Returns:
        One float32 array :math:`(num\\_classes, H, W)` per sample.
    """
    model = load_model(weights).to(device)
    if tta:
        model = TestTimeAugmentation(model, tta)
    maps = predict_maps(model, samples, device=device, amp_dtype=amp_dtype, progress=False)
    out = []
    for sample, teacher in zip(samples, maps):
        if teacher.shape[0] != num_classes:
            if num_classes != 1:
                raise ValueError(f"teacher {weights} gives {teacher.shape[0]} maps for "
                                 f"{sample.image_path}; the model learns {num_classes}")
            teacher = teacher.max(axis=0, keepdims=True)
        out.append(np.clip(teacher, 0.0, 1.0).astype(np.float32))
    return out


def teacher_targets(
    weights: str,
    samples: Sequence[Sample],
    kind: str = "maps",
    set_name: str | None = None,
    target_fn: TargetFn = gaussian_target,
    num_classes: int = 1,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    tta: str | None = None,
) -> list[np.ndarray]:
    """What a student learns from its teacher on one set: its maps, or its points drawn as a map.

    ``kind="maps"`` gives :func:`teacher_maps`. ``kind="points"`` reduces each map to its peaks
    with the threshold and minimum distance the teacher stores, those tuned for ``set_name``
    when it stores them (a generalist teacher's ``tuned_for``), and draws them with
    ``target_fn`` as the annotated points are drawn: every cell the teacher finds reaches 1,
    however sure the teacher was (pseudo-labels).

    Args:
        weights: the teacher, a tag or weights folder.
        samples: the training images.
        kind: ``"maps"`` or ``"points"`` (:data:`TEACHER_TARGETS`).
        set_name: the data set the samples come from, to pick the teacher's settings for it.
        target_fn: draws points as a map (the set's own ``sigma`` bound).
        num_classes, device, amp_dtype, tta: as for :func:`teacher_maps`; with ``tta`` the
            points use the settings stored for that mode.

    Returns:
        One float32 array :math:`(num\\_classes, H, W)` per sample, values in [0, 1].
    """
    if kind not in TEACHER_TARGETS:
        raise ValueError(f"teacher targets must be one of {', '.join(map(repr, TEACHER_TARGETS))}, got {kind!r}")
    maps = teacher_maps(weights, samples, num_classes, device, amp_dtype, tta)
    if kind == "maps":
        return maps
    stored = load_localization_settings(weights)
    chosen = resolve_settings(stored, tuned_for=set_name if set_name in (stored.get("tuned_for") or {}) else None, tta=tta)
    threshold, min_distance = float(chosen["threshold"]), int(chosen["min_distance"])
    drawn = []
    for teacher in maps:
        peaks = find_peaks(teacher, min_distance=min_distance, threshold=threshold)
        drawn.append(target_fn(peaks.xy, peaks.labels, tuple(teacher.shape[-2:]), num_classes).astype(np.float32))
    return drawn
