"""Checking the scale estimate with the network itself: keep the nearby scale its peaks are highest at.

The scale model (:mod:`.scale_model`) reads an image's zoom from pooled features, and on some
images it falls short (issue 19: crc's halved images read as 0.6x-0.8x instead of 0.5x, so
they are enlarged 1.3x-1.7x instead of 2x and lose 7-10 points of F1). A network trained to
draw Gaussians of height 1 on objects of its trained size is surest when the objects have that
size: its peaks are highest there and lower on objects shrunk or enlarged. So ``auto`` also
localizes a few regions of the image at scales around the estimate (:data:`SEARCH_FACTORS`)
and keeps the scale whose found peaks are highest on average (:func:`search_scale`), as
scale-space detectors select the scale of the strongest response. The cost: one pass over at
most :data:`SEARCH_REGIONS` regions of :data:`SEARCH_SIDE` model pixels (or the whole image, when
it is smaller) per factor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..data import match_channels, normalize_image
from ..object_size import SCALE_LIMITS, region_grid, resize_for_model
from ..points import find_peaks
from .scale_model import pad_to_stride

__all__ = ["SEARCH_FACTORS", "SEARCH_REGIONS", "SEARCH_SIDE", "mean_peak_height", "search_scale"]

#: Scales tried, as factors of the estimated one (log-spaced, 1.6x either way).
SEARCH_FACTORS = (1 / 1.6, 1 / 1.3, 1.0, 1.3, 1.6)
#: Regions of an image localized at each factor (a centred grid), and their side in model pixels.
SEARCH_REGIONS = 4
SEARCH_SIDE = 512


def mean_peak_height(location_maps: Sequence[np.ndarray | torch.Tensor], threshold: float, min_distance: int) -> tuple[float, int]:
    """The mean height of the peaks found in some location maps, and how many there are.

    Args:
        location_maps: maps of one image's regions, each :math:`(K, H, W)`.
        threshold, min_distance: what :func:`liteunet.points.find_peaks` counts as a peak.

    Returns:
        ``(mean height, count)``; ``(0.0, 0)`` when no map has a peak.

    Example:
        >>> m = np.zeros((1, 20, 20), np.float32); m[0, 5, 5], m[0, 14, 14] = 0.9, 0.5
        >>> mean_peak_height([m], threshold=0.3, min_distance=2)
        (0.7, 2)
    """
    heights = np.concatenate([
        np.asarray(find_peaks(torch.as_tensor(m), min_distance=min_distance, threshold=threshold, subpixel=False).scores, np.float64)
        for m in location_maps
    ] or [np.zeros(0)])
    return (round(float(heights.mean()), 6) if len(heights) else 0.0), int(len(heights))


@torch.no_grad()
def search_scale(
    model: nn.Module,
    scale: float,
    threshold: float,
    min_distance: int,
    image: np.ndarray | None = None,
    *,
    read: Callable[[int, int, int, int], np.ndarray] | None = None,
    shape: tuple[int, int] | None = None,
    normalize: str = "percentile",
    factors: Sequence[float] = SEARCH_FACTORS,
    max_regions: int = SEARCH_REGIONS,
    side: int = SEARCH_SIDE,
    limits: tuple[float, float] = SCALE_LIMITS,
    device: str | torch.device = "cpu",
) -> tuple[float, dict[float, tuple[float, int]]]:
    """The scale near ``scale`` at which ``model`` finds the highest peaks in an image.

    The same regions of the image (up to ``max_regions``, each ``side / scale`` image pixels, so
    about ``side`` model pixels; the whole image when it is no larger than they are together) are
    normalized on their own, resized by ``scale * factor`` for each factor and localized; the
    factor with the highest :func:`mean_peak_height` wins. When no factor finds a peak,
    ``scale`` is kept.

    Args:
        model: the network, any module mapping a float32 :math:`(1, C, H, W)` batch to maps (a
            reduced-precision form from :func:`~liteunet.inference.prepare_model` too).
        scale: the estimated scale (model pixels per image pixel), e.g. from
            :meth:`~liteunet.inference.ScaleModel.scale_for`.
        threshold, min_distance: the localization settings the points will be found with.
        image: the image; or ``read(y0, y1, x0, x1)`` and its ``shape`` for one too large to hold.
        normalize: input scaling (the weights' own).
        factors: scales tried, as factors of ``scale``; each kept within ``limits``.
        max_regions, side: how much of the image is looked at.

    Returns:
        The chosen scale, and for each scale tried its ``(mean peak height, peak count)``.
    """
    if image is not None:
        img = np.asarray(image)
        read, shape = (lambda y0, y1, x0, x1: img[y0:y1, x0:x1]), img.shape[:2]
    if read is None or shape is None:
        raise ValueError("search_scale needs an image, or read= and shape=")
    h, w = int(shape[0]), int(shape[1])
    # An image no larger than the regions together is looked at whole: on bcdata's halved images
    # four overlapping 256-px regions chose x2.89 where the whole image chooses x1.39 (issue 19).
    whole = h * w * scale**2 <= max_regions * side**2
    boxes = [(0, h, 0, w)] if whole else region_grid(h, w, max(16, math.ceil(side / scale)), max_regions)
    regions = [normalize_image(np.asarray(read(*box)), mode=normalize) for box in boxes]
    in_chans = int(getattr(model, "in_chans", 3))
    divisor = int(getattr(model, "size_divisor", 16) or 1)
    was_training = model.training
    model.eval()
    found: dict[float, tuple[float, int]] = {}
    try:
        for factor in factors:
            tried = min(limits[1], max(limits[0], scale * factor))
            if tried in found:
                continue
            maps = [_localize_region(model, region, tried, in_chans, divisor, device) for region in regions]
            found[tried] = mean_peak_height(maps, threshold, min_distance)
    finally:
        model.train(was_training)
    best = max(found, key=lambda s: found[s][0])
    return (best if found[best][1] else scale), found


def _localize_region(model: nn.Module, region: np.ndarray, scale: float, in_chans: int, divisor: int, device: str | torch.device) -> np.ndarray:
    x = match_channels(resize_for_model(region, scale) if scale != 1.0 else region, in_chans)
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    h, w = t.shape[-2:]
    return model(pad_to_stride(t, divisor).to(device))[0, :, :h, :w].float().cpu().numpy()
