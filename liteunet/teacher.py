"""Teachers for distillation: a trained model's location maps of training images, learned beside the points.

A model trained on one data set fits that set's annotation style better than a generalist that
shares its 1.3 M parameters with six others (issue 19: F1@10 0.840 against 0.797 on crc's
training images). With ``liteunet train --teacher SET=WEIGHTS`` the generalist's target on
that set's crops becomes ``(1 - w) * gaussians(points) + w * teacher map``
(:class:`liteunet.data.PointDataset`'s ``soft_targets``): the teacher's map of each whole
training image, computed once here, at native scale with the teacher's own input scaling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .data import Sample
from .evaluate import predict_maps
from .models import load_model

__all__ = ["teacher_maps", "teachers_per_set"]


def teachers_per_set(teachers: Mapping[str, str] | None, names: Sequence[str]) -> list[str | None]:
    """The teacher weights of each training set: by name, ``*`` for the sets not named, else none.

    Example:
        >>> teachers_per_set({"crc": "weights/lite_unet.crc"}, ["crc", "mbm"])
        ['weights/lite_unet.crc', None]
    """
    teachers = dict(teachers or {})
    unknown = set(teachers) - set(names) - {"*"}
    if unknown:
        raise ValueError(f"teacher names {sorted(unknown)}, which are not among the training sets {list(names)}")
    return [teachers.get(name, teachers.get("*")) for name in names]


def teacher_maps(
    weights: str,
    samples: Sequence[Sample],
    num_classes: int = 1,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
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

    Returns:
        One float32 array :math:`(num\\_classes, H, W)` per sample.
    """
    model = load_model(weights).to(device)
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
