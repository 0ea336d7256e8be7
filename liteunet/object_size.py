"""The typical object (nucleus or cell) diameter in an image, and rescaling images and points to it.

A model localizes best at the object size it was trained at. :func:`estimate_object_size`
measures the typical diameter of the blobs in an image, classically: the scale-normalised
Laplacian-of-Gaussian scale space (Lindeberg 1998; ``skimage.feature.blob_log``) of a nuclear
channel, whose local maxima over position and scale are blobs, a disc of diameter ``d`` answering
most strongly at ``sigma = d / (2 * sqrt(2))``. The area-weighted median diameter of the
strongest blobs is the estimate.

The nuclear channel (:func:`~liteunet.data.nuclear.nuclear_channel`) is decided from the image: bright-field colour images
(a bright background) give their haematoxylin optical density (the colour deconvolution of Ruifrok
and Johnston 2001, the matrix of ``skimage.color.rgb2hed``), bright-field grey images their
inverted intensity, and fluorescence (a dark background) its intensity.

Weights record the size they were trained at (``config.json`` ``localization.object_size``),
measured with this same estimator on their training images, so its bias cancels:
``localize(..., object_size="auto")`` rescales an image by ``trained / estimated`` before the
model. Large images are sampled by regions (:func:`estimate_object_size_regions`), never read whole.

Points follow the package convention: ``(N, 2)`` ``(x, y)`` in pixels, ``(0, 0)`` the centre of
the top-left pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from .data.augment_scale import scale_points
from .data.nuclear import nuclear_channel

__all__ = [
    "DIAMETER_PER_SIGMA",
    "MODEL_ENLARGE",
    "SCALE_LIMITS",
    "blob_diameters",
    "estimate_object_size",
    "estimate_object_size_regions",
    "nuclear_channel",
    "region_grid",
    "rescale_image",
    "rescale_points",
    "resize_for_model",
    "scale_to_trained",
]

#: ``object_size="auto"`` scales no further than this either way; beyond, the estimate is not trusted.
SCALE_LIMITS = (0.25, 4.0)

#: A disc of diameter ``d`` gives the strongest scale-normalised LoG response at ``sigma = d / DIAMETER_PER_SIGMA``.
DIAMETER_PER_SIGMA = 2.0 * math.sqrt(2.0)


def blob_diameters(
    image: np.ndarray,
    *,
    min_diameter: float = 4.0,
    max_diameter: float = 128.0,
    steps_per_octave: int = 4,
    modality: str = "auto",
    relative_threshold: float = 0.5,
) -> np.ndarray:
    """Diameters of the strongest blobs of an image's scale-normalised LoG scale space.

    Blobs are local maxima over position and scale (3 x 3 x 3) of ``-sigma^2 * LoG(sigma)`` of
    the :func:`nuclear_channel`, for sigmas ``min_diameter / 2.83`` to ``max_diameter / 2.83``,
    ``steps_per_octave`` per doubling; each octave is computed on the image averaged down by its
    power of two (a Gaussian pyramid, as SIFT does), so large scales cost little. Maxima within a
    blob's radius of the border are dropped; of the rest, those weaker than ``relative_threshold``
    times the strongest (its 99th percentile) are dropped, then every blob centred inside a
    stronger one (texture within a nucleus, its parts).

    Args:
        image: grey ``(H, W)`` or ``(H, W, C)``, any dtype.
        min_diameter, max_diameter: the range of diameters looked for, in pixels.
        steps_per_octave: scales per doubling of sigma.
        modality: see :func:`nuclear_channel`.
        relative_threshold: blobs answering less than this fraction of the strongest are dropped.

    Returns:
        ``(N,)`` float64 diameters in pixels, ``2 * sqrt(2) * sigma`` of each blob (sigma
        refined by a parabola through the responses at the neighbouring scales), strongest first;
        empty when there is no blob.

    Shape:
        - image: :math:`(H, W)` or :math:`(H, W, C)`; output: :math:`(N,)`.

    Example:
        >>> yy, xx = np.mgrid[:96, :96]
        >>> img = ((yy % 32 - 16) ** 2 + (xx % 32 - 16) ** 2 <= 8 ** 2).astype(np.uint8) * 255
        >>> float(np.round(np.median(blob_diameters(img)), 0))  # discs 17 px across
        16.0
    """
    if not 0 < min_diameter < max_diameter:
        raise ValueError(f"need 0 < min_diameter < max_diameter, got {min_diameter}, {max_diameter}")
    if not 0 <= relative_threshold <= 1:
        raise ValueError(f"relative_threshold must be in [0, 1], got {relative_threshold}")
    chan, _ = nuclear_channel(image, modality)
    n = int(steps_per_octave)
    total = max(1, int(round(n * math.log2(max_diameter / min_diameter))) + 1)
    step = 2.0 ** (1.0 / n)
    s0 = min_diameter / DIAMETER_PER_SIGMA
    foreground = _otsu(chan)
    found = []  # (x, y, sigma, response)
    level = chan
    for octave in range(0, total, n):
        f = 2 ** (octave // n)
        if octave:
            h2, w2 = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
            if h2 < 8 or w2 < 8:
                break
            level = level[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2).mean(axis=(1, 3))
        idx = np.arange(octave - 1, min(octave + n, total) + 1)  # this octave's scales and a neighbour each side
        sig = s0 * step ** idx  # in input pixels
        stack = np.stack([-((s / f) ** 2) * ndi.gaussian_laplace(level, s / f) for s in sig])
        peaks = (stack == ndi.maximum_filter(stack, size=3, mode="nearest")) & (stack > 0.02)
        peaks[0] = peaks[-1] = False
        # Outermost scales of the whole range are not maxima in scale.
        peaks[(idx <= 0) | (idx >= total - 1)] = False
        k, y, x = np.nonzero(peaks)
        if not len(k):
            continue
        left, mid, right = stack[k - 1, y, x], stack[k, y, x], stack[k + 1, y, x]
        denom = left - 2 * mid + right
        offset = np.clip(np.where(denom < 0, 0.5 * (left - right) / np.where(denom < 0, denom, -1), 0.0), -0.5, 0.5)
        # A blob is an object only where the channel is foreground (Otsu): not a spot of stroma texture.
        centre = ndi.gaussian_filter(level, 1.0)[y, x] >= foreground
        found.append(np.stack([(x + 0.5) * f - 0.5, (y + 0.5) * f - 0.5, sig[k] * step**offset, mid], axis=1)[centre])
    if not found:
        return np.zeros(0)
    blobs = np.concatenate(found)
    h, w = chan.shape
    r = blobs[:, 2] * DIAMETER_PER_SIGMA / 2
    blobs = blobs[(blobs[:, 1] >= r - 0.5) & (blobs[:, 1] <= h - 0.5 - r) & (blobs[:, 0] >= r - 0.5) & (blobs[:, 0] <= w - 0.5 - r)]
    if not len(blobs):
        return np.zeros(0)
    blobs = blobs[blobs[:, 3] >= relative_threshold * np.percentile(blobs[:, 3], 99)]
    blobs = blobs[np.argsort(-blobs[:, 3], kind="stable")]
    keep = _strongest_apart(blobs[:, :2], blobs[:, 2] * DIAMETER_PER_SIGMA / 2)
    return DIAMETER_PER_SIGMA * blobs[keep, 2]


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (as ``skimage.filters.threshold_otsu``): the cut maximising between-class variance."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)[:-1].astype(np.float64)
    w1 = w0[-1] + hist[-1] - w0 if len(w0) else w0
    m0 = np.cumsum(hist * centres)[:-1] / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)[:-1]) / np.maximum(w1, 1)
    if not len(w0):
        return float(centres[0])
    return float(centres[int(np.argmax(w0 * w1 * (m0 - m1) ** 2))])


def _strongest_apart(xy: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Indices of blobs (sorted strongest first) whose centre lies inside no stronger kept blob."""
    tree = cKDTree(xy)
    hidden = np.zeros(len(xy), bool)
    kept = []
    for i in range(len(xy)):
        if hidden[i]:
            continue
        kept.append(i)
        for j in tree.query_ball_point(xy[i], radius[i]):
            if j > i:
                hidden[j] = True
    return np.asarray(kept, dtype=np.int64)


def region_grid(h: int, w: int, side: int, count: int) -> list[tuple[int, int, int, int]]:
    """Up to ``count`` regions ``(y0, y1, x0, x1)`` of ``side`` pixels on a centred grid: the image itself when it is small.

    Example:
        >>> region_grid(1000, 600, 512, 9)
        [(0, 512, 0, 512), (0, 512, 88, 600), (488, 1000, 0, 512), (488, 1000, 88, 600)]
    """
    if h <= side and w <= side:
        return [(0, h, 0, w)]
    ny, nx = max(1, min(math.ceil(h / side), int(math.sqrt(count)) or 1)), max(1, min(math.ceil(w / side), int(math.sqrt(count)) or 1))
    out = []
    for i in range(ny):
        for j in range(nx):
            cy, cx = (i + 0.5) * h / ny, (j + 0.5) * w / nx
            y0, x0 = int(max(0, min(h - side, cy - side / 2))), int(max(0, min(w - side, cx - side / 2)))
            out.append((y0, min(h, y0 + side), x0, min(w, x0 + side)))
    return out


def estimate_object_size_regions(
    read: Callable[[int, int, int, int], np.ndarray],
    shape: tuple[int, int],
    *,
    region: int = 512,
    max_regions: int = 9,
    **kwargs: object,
) -> float:
    """:func:`estimate_object_size` of an image read region by region (large images, slides).

    Args:
        read: ``read(y0, y1, x0, x1)`` returns that region, ``(h, w)`` or ``(h, w, C)``.
        shape: ``(H, W)`` of the image.
        region: side of the regions read (the whole image when it is no larger).
        max_regions: regions on a centred grid (9: 3 x 3), so a slide is never read whole.
        **kwargs: as for :func:`blob_diameters`.

    Returns:
        The area-weighted median blob diameter over all regions (each blob weighted by its
        diameter squared), in pixels; ``nan`` when no blob was found.

    Example:
        >>> yy, xx = np.mgrid[:2000, :2000]
        >>> img = ((yy % 40 - 20) ** 2 + (xx % 40 - 20) ** 2 <= 16).astype(np.uint8) * 255  # discs 9 px across
        >>> d = estimate_object_size_regions(lambda y0, y1, x0, x1: img[y0:y1, x0:x1], img.shape)
        >>> bool(7 < d < 10)
        True
    """
    h, w = int(shape[0]), int(shape[1])
    diameters = [blob_diameters(read(*r), **kwargs) for r in region_grid(h, w, region, max_regions)]  # type: ignore[arg-type]
    found = np.sort(np.concatenate(diameters)) if diameters else np.zeros(0)
    if not len(found):
        return float("nan")
    # Median weighted by area: the size of the object a typical object pixel belongs to. Many
    # small texture spots (stroma, parts of elongated nuclei) outnumber nuclei but cover little.
    cum = np.cumsum(found**2)
    return float(found[int(np.searchsorted(cum, cum[-1] / 2))])


def estimate_object_size(image: np.ndarray, **kwargs: object) -> float:
    """The typical object (nucleus or cell) diameter in an image, in pixels.

    The area-weighted median diameter (each blob weighted by its diameter squared: the size of
    the object a typical object pixel belongs to) of the strongest blobs of the scale-normalised
    LoG scale space of the image's :func:`nuclear_channel` (:func:`blob_diameters`). Images larger than 512 pixels a
    side are sampled by up to nine 512-px regions (:func:`estimate_object_size_regions`).

    Args:
        image: grey ``(H, W)`` or ``(H, W, C)`` (RGB, RGBA), any dtype.
        **kwargs: ``min_diameter``, ``max_diameter`` (default 4 to 128 px), ``modality``,
            ``relative_threshold``, ``region``, ``max_regions``.

    Returns:
        The diameter in pixels, ``nan`` when the image holds no blob (e.g. a flat image).

    Shape:
        - image: :math:`(H, W)` or :math:`(H, W, C)`.

    Example:
        >>> yy, xx = np.mgrid[:128, :128]
        >>> discs = (yy % 32 - 16) ** 2 + (xx % 32 - 16) ** 2 <= 6 ** 2
        >>> round(estimate_object_size(np.where(discs, 40, 220).astype(np.uint8)))  # dark on bright, 13 px across
        12
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C); got shape {img.shape}")
    return estimate_object_size_regions(lambda y0, y1, x0, x1: img[y0:y1, x0:x1], img.shape[:2], **kwargs)


def scale_to_trained(estimated: float, trained: float, limits: tuple[float, float] = SCALE_LIMITS) -> tuple[float, bool]:
    """The scale that brings objects of ``estimated`` pixels to the ``trained`` size, within ``limits``.

    Returns:
        ``(scale, clipped)``: ``trained / estimated`` kept within ``limits``, and whether it had to
        be; ``(1.0, True)`` when the estimate is ``nan`` (no object found).

    Example:
        >>> scale_to_trained(20.0, 10.0), scale_to_trained(100.0, 10.0)
        ((0.5, False), (0.25, True))
    """
    if not (estimated == estimated and estimated > 0):
        return 1.0, True
    scale = float(trained) / float(estimated)
    low, high = limits
    return min(high, max(low, scale)), not low <= scale <= high


def rescale_image(image: np.ndarray, scale: float, enlarge: str = "bilinear") -> np.ndarray:
    """Resize an image by ``scale``: bilinear and antialiased when shrinking, ``enlarge`` when enlarging.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``; integer images are rounded back to their dtype.
        scale: the factor; the output is ``round(H * scale) x round(W * scale)`` (at least 1).
        enlarge: the interpolation used when ``scale > 1``: ``"bilinear"`` or ``"bicubic"``
            (:data:`MODEL_ENLARGE`, what :func:`resize_for_model` uses).

    Shape:
        - image: :math:`(H, W, *)`; output: :math:`(\\mathrm{round}(sH), \\mathrm{round}(sW), *)`.

    Example:
        >>> rescale_image(np.zeros((10, 20, 3), np.uint8), 0.5).shape
        (5, 10, 3)
    """
    img = np.asarray(image)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    if enlarge not in ("bilinear", "bicubic"):
        raise ValueError(f"enlarge must be 'bilinear' or 'bicubic', got {enlarge!r}")
    h, w = img.shape[:2]
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    # copy=False: localize() hands over whole normalized float32 images; one copy (below) is enough.
    chw = img.astype(np.float32, copy=False).reshape(h, w, -1).transpose(2, 0, 1)
    out = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(chw))[None], size=(nh, nw), mode=enlarge if scale > 1 else "bilinear",
        align_corners=False, antialias=scale < 1,
    )[0].numpy().transpose(1, 2, 0)
    out = out.reshape((nh, nw) + img.shape[2:])
    if img.dtype.kind in "ui" or img.dtype == bool:
        info = np.iinfo(img.dtype) if img.dtype != bool else None
        out = np.clip(np.rint(out), info.min if info else 0, info.max if info else 1)
    return out.astype(img.dtype)


#: How images are enlarged on their way into the model. Bicubic keeps the edges that bilinear
#: blurs: crc's validation images shown at 0.5x and enlarged x2 back to the trained size give
#: F1@10 0.772 (c12) and 0.762 (c14) bilinear, 0.783 and 0.778 bicubic (issue 19, session 39).
MODEL_ENLARGE = "bicubic"


def resize_for_model(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an image to the scale the model sees it at: :func:`rescale_image` with
    :data:`MODEL_ENLARGE` when enlarging (antialiased bilinear when shrinking).

    ``object_size=``, ``mpp=`` and ``scale=`` in :func:`~liteunet.localize` and ``liteunet eval``
    resize with this; the stored scale model reads its features from bilinear crops, as it
    was fitted.

    Shape:
        - image: :math:`(H, W, *)`; output: :math:`(\\mathrm{round}(sH), \\mathrm{round}(sW), *)`.

    Example:
        >>> resize_for_model(np.zeros((10, 20), np.float32), 2.0).shape
        (20, 40)
    """
    return rescale_image(image, scale, enlarge=MODEL_ENLARGE)


def rescale_points(xy: np.ndarray, scale: float | tuple[float, float]) -> np.ndarray:
    """Points of an image in the pixels of that image resized by ``scale`` (pixel centres map to centres).

    Args:
        xy: ``(N, 2)`` ``(x, y)`` points.
        scale: one factor, or ``(sx, sy)``.

    Returns:
        ``(N, 2)`` float64 ``(x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5``.

    Example:
        >>> rescale_points(np.array([[0.0, 1.0]]), 2.0).tolist()
        [[0.5, 2.5]]
    """
    sx, sy = (scale, scale) if np.isscalar(scale) else scale  # type: ignore[misc]
    return scale_points(xy, sx, sy)
