"""Location-map targets: the image-sized maps a localization network regresses.

Lite-UNet (like most point-regression models) is trained with an MSE loss against a location
map with a blob at each cell centre, and cells are read back as the map's local maxima. Any
function with the :class:`TargetFn` signature can be given to
:class:`liteunet.data.PointDataset`; :func:`gaussian_target` is the default.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

__all__ = ["TargetFn", "gaussian_target"]


class TargetFn(Protocol):
    """Signature of a target maker: points in, a (num_classes, H, W) float32 map out.

    Extra parameters (``sigma`` ...) are bound beforehand, e.g.
    ``functools.partial(gaussian_target, sigma=3.0)``.
    """

    def __call__(
        self,
        points: np.ndarray,
        labels: np.ndarray | None,
        shape: tuple[int, int],
        num_classes: int = 1,
    ) -> np.ndarray: ...


def gaussian_target(
    points: np.ndarray,
    labels: np.ndarray | None,
    shape: tuple[int, int],
    num_classes: int = 1,
    sigma: float = 2.0,
    normalize_peak: bool = True,
) -> np.ndarray:
    """Render points as Gaussian blobs of peak height 1, combined with a pixel-wise max.

    Each point ``(x, y)`` contributes ``exp(-d^2 / (2 sigma^2))`` at every pixel centre at
    distance ``d``, in the channel of its label. Why these choices:

    - *Peak 1, not unit mass*: the peak finder thresholds peak height, so every cell should
      reach the same height whatever ``sigma`` is. With ``normalize_peak`` each blob is also
      divided by its value at the pixel centre nearest the point, so a point that falls
      between pixel centres (sub-pixel annotations, centroids ending in .5) still gives a
      pixel of exactly 1, while the blob keeps its sub-pixel position. Integer points are
      unaffected.
    - *Max, not sum*: two close cells would sum into one higher, merged blob whose single
      maximum the peak finder would report as one cell; with max every cell keeps its own peak
      of exactly 1 and the map stays in [0, 1].

    Only a square window of half-width ``ceil(3 sigma)`` around each point is computed (beyond
    it the Gaussian is below 0.011); blobs are clipped at the image border, and points outside the
    image still contribute the part of their blob that falls inside.

    Args:
        points: (x, y) pixel coordinates, (0, 0) the centre of the top-left pixel.
        labels: class index of each point; ignored when ``num_classes == 1`` (all points go to
            the single channel). ``None`` means all zeros.
        shape: ``(H, W)`` of the map.
        num_classes: number of output channels.
        sigma: Gaussian standard deviation in pixels, > 0.
        normalize_peak: scale each blob so its highest pixel is exactly 1 (see above).

    Returns:
        The location map, float32, values in [0, 1].

    Shape:
        - points: :math:`(N, 2)`; labels: :math:`(N,)`.
        - output: :math:`(num\\_classes, H, W)`.

    Raises:
        ValueError: bad shapes, non-finite points, ``sigma <= 0`` or a label outside
            ``[0, num_classes)``.

    Example:
        >>> t = gaussian_target(np.array([[2.0, 1.0]]), None, (3, 5), sigma=1.0)
        >>> t.shape, float(t[0, 1, 2]), round(float(t[0, 1, 3]), 4)
        ((1, 3, 5), 1.0, 0.6065)
    """
    points = np.asarray(points, dtype=np.float64)
    if points.size == 0:
        points = points.reshape(0, 2)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be (N, 2) as (x, y), got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points hold NaN or infinity")
    if len(shape) != 2 or min(shape) < 0:
        raise ValueError(f"shape must be (H, W), got {shape}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if labels is None or num_classes == 1:
        labels = np.zeros(len(points), dtype=np.int64)
    else:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(points):
            raise ValueError(f"got {len(points)} points but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"labels must lie in [0, {num_classes}) for num_classes={num_classes}, "
                f"got range [{labels.min()}, {labels.max()}]"
            )

    height, width = int(shape[0]), int(shape[1])
    target = np.zeros((num_classes, height, width), dtype=np.float32)
    radius = int(math.ceil(3.0 * sigma))
    inv_two_var = 1.0 / (2.0 * sigma * sigma)
    for (x, y), label in zip(points, labels):
        # Pixel centres within `radius` of the point along each axis, clipped to the image.
        # The window is symmetric about the point itself, so a flipped or rotated point
        # gets exactly the flipped or rotated blob.
        x0, x1 = max(math.ceil(x - radius), 0), min(math.floor(x + radius) + 1, width)
        y0, y1 = max(math.ceil(y - radius), 0), min(math.floor(y + radius) + 1, height)
        if x0 >= x1 or y0 >= y1:
            continue
        gx = np.exp(-((np.arange(x0, x1) - x) ** 2) * inv_two_var)
        gy = np.exp(-((np.arange(y0, y1) - y) ** 2) * inv_two_var)
        blob = np.outer(gy, gx)  # the 2-D Gaussian is separable
        if normalize_peak:
            # Squared distance to the nearest pixel centre; min over both neighbours so that
            # a point exactly half-way gets the same scale whichever way it is mirrored.
            fx, fy = x - math.floor(x), y - math.floor(y)
            d2 = min(fx, 1.0 - fx) ** 2 + min(fy, 1.0 - fy) ** 2
            blob *= math.exp(d2 * inv_two_var)
        window = target[int(label), y0:y1, x0:x1]
        np.maximum(window, blob.astype(np.float32), out=window)
    # The peak scaling can overshoot 1 by a rounding error; keep the documented range.
    np.minimum(target, 1.0, out=target)
    return target
