"""Re-stain bright-field training crops as immunohistochemistry: brown (DAB) and blue nuclei.

Ki-67 and other nuclear IHC stains show a cell as a brown (DAB) nucleus when it is positive and a
blue (haematoxylin counterstain) one when it is not, with little eosin. A model trained on H&E
and fluorescence alone has never seen a brown nucleus and misses most of them (issue 19: the
model trained without bcdata found 6% of its cells). :func:`restain_as_ihc` turns an H&E crop
into such an image using its own point annotations: it removes most of the eosin and, for a
random share of the annotated cells, moves the haematoxylin of the nucleus around the point into
DAB. No IHC image is needed, so a model can be measured on IHC it never saw. Measured so far, it
did not help: a model trained without bcdata found more of its positive cells at native scale
and still almost none of its negative ones (docs/generalist.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .augment_modality import is_grey
from .stains import HED_FROM_RGB, RGB_FROM_HED

__all__ = ["restain_as_ihc", "nucleus_radius"]

#: Median background intensity above which an image is bright-field (stained tissue on a bright
#: background); fluorescence (dark background) is returned unchanged.
BRIGHT_FIELD_MEDIAN = 0.5


def nucleus_radius(points: np.ndarray, low: float = 3.0, high: float = 16.0) -> float:
    """Half the median distance from each point to its nearest neighbour, within ``[low, high]``:
    how far a nucleus reaches around its point when nuclei are packed as densely as the points.

    Example:
        >>> nucleus_radius(np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]]))
        5.0
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) < 2:
        return high / 2
    distances, _ = cKDTree(points).query(points, k=2)
    return float(np.clip(np.median(distances[:, 1]) / 2, low, high))


def restain_as_ihc(
    image: np.ndarray,
    points: np.ndarray,
    rng: np.random.Generator,
    positive: tuple[float, float] = (0.0, 0.8),
    eosin: tuple[float, float] = (0.0, 0.3),
    dab: tuple[float, float] = (0.8, 3.0),
) -> np.ndarray:
    """An H&E image re-stained as nuclear IHC (DAB-positive and haematoxylin-negative nuclei).

    In haematoxylin-eosin-DAB optical density (Ruifrok & Johnston's colour deconvolution, as
    :func:`~liteunet.data.augment.stain_jitter`): eosin is scaled by a factor drawn from
    ``eosin``; a share drawn from ``positive`` of the annotated cells become positive: within
    :func:`nucleus_radius` of such a point (the pixels nearer to it than to any other point),
    DAB gets ``k`` times the haematoxylin plus a little (``k`` drawn from ``dab``) and most of the
    haematoxylin goes, with a soft edge. Cells are chosen at random, so positive and negative
    nuclei look alike in shape and the model learns to find both. Images whose median is below
    ``BRIGHT_FIELD_MEDIAN`` (fluorescence: objects bright on dark) are returned unchanged, as
    are grey ones.

    Args:
        image: float RGB(A) image, values about [0, 1], channels last.
        points: ``(N, 2)`` (x, y) cell points in the image's pixels.
        rng: source of every random choice.
        positive: range of the share of cells made DAB-positive.
        eosin: range of the factor on eosin (IHC has little or none).
        dab: range of the DAB optical density per unit of haematoxylin in a positive nucleus.

    Returns:
        The re-stained image, float32, same shape (alpha kept).

    Shape:
        - image: :math:`(H, W, C)`, :math:`C \\in \\{3, 4\\}`.
        - points: :math:`(N, 2)`.

    Example:
        >>> img = np.full((32, 32, 3), 0.9, np.float32); img[12:20, 12:20] = (0.3, 0.2, 0.5)
        >>> out = restain_as_ihc(img, np.array([[15.5, 15.5]]), np.random.default_rng(0), positive=(1, 1))
        >>> bool(out[16, 16, 0] > out[16, 16, 2])  # the nucleus turned brown: more red than blue
        True
    """
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"restain_as_ihc needs an RGB(A) image (H, W, 3|4), got {image.shape}")
    rgb = image[..., :3].astype(np.float64)
    if is_grey(image) or np.median(rgb) < BRIGHT_FIELD_MEDIAN:
        return image.astype(np.float32, copy=True)
    hed = -np.log(np.clip(rgb, 1e-6, 1.0)) @ HED_FROM_RGB
    haem, eos, dab_od = np.clip(hed[..., 0], 0.0, None), hed[..., 1], hed[..., 2]
    eos = eos * rng.uniform(*eosin)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    h, w = rgb.shape[:2]
    inside = (points[:, 0] > -0.5) & (points[:, 0] < w - 0.5) & (points[:, 1] > -0.5) & (points[:, 1] < h - 0.5)
    share = rng.uniform(*positive)
    chosen = rng.random(len(points)) < share
    if inside.any() and chosen[inside].any():
        owner = np.zeros((h, w), dtype=np.int64)  # 1 + index of the point a pixel belongs to
        cols, rows = np.rint(points[inside]).astype(np.int64).T
        owner[rows, cols] = np.flatnonzero(inside) + 1
        distance, (near_r, near_c) = ndimage.distance_transform_edt(owner == 0, return_indices=True)
        nearest = owner[near_r, near_c] - 1
        radius = nucleus_radius(points[inside])
        weight = (chosen[nearest] & (distance <= radius)).astype(np.float64)
        weight = ndimage.gaussian_filter(weight, sigma=max(radius / 4, 0.5))
        k = rng.uniform(*dab)
        dab_od = dab_od + weight * k * (haem + 0.1)
        haem = haem * (1.0 - 0.8 * weight)
    out = image.astype(np.float32, copy=True)
    restained = np.exp(-(np.stack([haem, eos, dab_od], axis=-1) @ RGB_FROM_HED))
    out[..., :3] = np.clip(restained, 0.0, 1.0)
    return out
