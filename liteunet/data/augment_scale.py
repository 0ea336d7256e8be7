"""Scale augmentation: resize an image and its points together, and crop at a random scale.

One set of weights should find nuclei from ~6 to ~60 px across; training crops are therefore
drawn at a random scale (a region ``crop / f`` pixels wide resized to ``crop``), so the model
sees each data set's objects at sizes from ``f_min`` to ``f_max`` times their own.

Points follow the pixel-centre convention of :mod:`liteunet.data.augment`: pixel ``i`` covers
``[i - 0.5, i + 0.5)``, so resizing by ``f`` maps ``x`` to ``(x + 0.5) f - 0.5``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .augment import PadMode, random_crop

__all__ = ["rescale", "random_scaled_crop", "scale_points"]

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]


def scale_points(points: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Points of an image in the pixels of that image resized by ``(sx, sy)``: centres map to centres.

    Example:
        >>> scale_points(np.array([[0.0, 1.0]]), 2.0, 2.0).tolist()
        [[0.5, 2.5]]
    """
    xy = np.asarray(points, np.float64).reshape(-1, 2)
    return (xy + 0.5) * np.array([sx, sy]) - 0.5


def rescale(
    image: np.ndarray, points: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Resize a float image to ``size`` (bilinear, antialiased when shrinking) and move its points.

    Args:
        image: float image, channels last.
        points: (x, y) pixel centres in ``image``.
        size: output ``(height, width)``.

    Returns:
        ``(image, points)``: the resized float32 image and the points in its pixels.

    Shape:
        - image: :math:`(H, W)` or :math:`(H, W, C)`; output :math:`(H', W')` or
          :math:`(H', W', C)`.
        - points: :math:`(N, 2)`.

    Example:
        >>> img, pts = rescale(np.zeros((10, 20), np.float32), np.array([[9.5, 4.5]]), (20, 40))
        >>> img.shape, pts.tolist()
        ((20, 40), [[19.5, 9.5]])
    """
    height, width = image.shape[:2]
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"rescale needs a positive output size, got {size}")
    chw = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    chw = chw[None, None] if image.ndim == 2 else chw.permute(2, 0, 1)[None]
    shrink = out_h < height or out_w < width
    resized = F.interpolate(chw, size=(out_h, out_w), mode="bilinear", align_corners=False,
                            antialias=shrink)[0]
    out = resized[0] if image.ndim == 2 else resized.permute(1, 2, 0)
    return np.ascontiguousarray(out.numpy()), scale_points(points, out_w / width, out_h / height)


def random_scaled_crop(
    image: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    size: int | tuple[int, int],
    rng: np.random.Generator,
    scale_range: tuple[float, float] = (0.5, 2.0),
    pad_mode: PadMode = "symmetric",
) -> Sample:
    """A random crop of ``size`` pixels seen at a random zoom ``f`` (log-uniform in ``scale_range``).

    A region of ``size / f`` pixels (padded by ``pad_mode`` where it leaves the image) is
    resized to ``size``: ``f > 1`` enlarges objects, ``f < 1`` shrinks them. Points outside the
    region are dropped, as by :func:`~liteunet.data.augment.random_crop`.

    Args:
        image: float image, channels last.
        points, labels: the annotations, (x, y) pixel centres.
        size: output side ``S`` or ``(H, W)``.
        rng: the only source of randomness.
        scale_range: smallest and largest zoom, ``0 < lo <= hi``.
        pad_mode: how a region leaving the image is filled.

    Returns:
        ``(image, points, labels)`` of the output size.

    Example:
        >>> img, pts, lab = random_scaled_crop(np.zeros((64, 64), np.float32), np.zeros((0, 2)),
        ...                                    np.zeros(0), 32, np.random.default_rng(0))
        >>> img.shape
        (32, 32)
    """
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {scale_range}")
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    zoom = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    src_h, src_w = max(1, round(out_h / zoom)), max(1, round(out_w / zoom))
    region, points, labels = random_crop(image, points, labels, (src_h, src_w), rng, pad_mode=pad_mode)
    if (src_h, src_w) == (out_h, out_w):
        return region, points, labels
    region, points = rescale(region, points, (out_h, out_w))
    keep = ((points >= -0.5) & (points < np.array([out_w, out_h]) - 0.5)).all(axis=1)
    return region, points[keep], labels[keep]
