"""Tissue detection on a low-resolution level: which parts of a slide are worth localizing.

Most of a slide is glass. :func:`tissue_mask` finds tissue on a thumbnail the way pathology
pipelines do (TIAToolbox's Otsu masker, CLAM's segmentation): Otsu's threshold on the
saturation (glass is grey-white, stained tissue is coloured) together with the optical density
(dark, unsaturated pen marks and debris aside), then a morphological clean-up: closing, holes
filled, specks smaller than ``min_area`` removed. Tiles of the slide whose core touches no
tissue are not run.

Example:
    >>> import numpy as np
    >>> thumb = np.full((64, 64, 3), 240, np.uint8); thumb[16:48, 16:48] = (150, 60, 160)
    >>> mask = tissue_mask(thumb, min_area=4)
    >>> round(float(mask.mean()), 2)
    0.25
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["otsu_threshold", "tissue_mask", "write_mask_png"]

#: Below this saturation / optical density a pixel is glass whatever Otsu says (an all-glass or
#: all-tissue thumbnail has no two classes to split).
MIN_SATURATION, MIN_DENSITY = 0.05, 0.05


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` in ``[0, 1]``: the split maximizing between-class variance.

    Example:
        >>> v = np.r_[np.full(100, 0.1), np.full(100, 0.8)]
        >>> 0.1 < otsu_threshold(v) < 0.8
        True
    """
    hist, edges = np.histogram(np.clip(values, 0, 1), bins=bins, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mean0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mean1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def tissue_mask(thumbnail: np.ndarray, min_area: int = 64, closing: int = 2) -> np.ndarray:
    """Tissue (``True``) and glass (``False``) of an RGB thumbnail.

    Args:
        thumbnail: ``(h, w, 3)`` uint8 RGB, a low-resolution image of the whole slide.
        min_area: connected pieces of tissue smaller than this (thumbnail pixels) are dropped.
        closing: radius (thumbnail pixels) of the closing that joins nearby pieces of tissue.

    Returns:
        ``(h, w)`` bool mask.

    Shape:
        - thumbnail: :math:`(h, w, 3)`; output :math:`(h, w)`.
    """
    if thumbnail.ndim != 3 or thumbnail.shape[2] < 3:
        raise ValueError(f"expected an (h, w, 3) RGB thumbnail, got shape {thumbnail.shape}")
    rgb = thumbnail[..., :3].astype(np.float32) / 255.0
    top, low = rgb.max(axis=2), rgb.min(axis=2)
    saturation = np.divide(top - low, top, out=np.zeros_like(top), where=top > 0)
    density = -np.log(np.clip(rgb, 1 / 255, 1)).mean(axis=2) / np.log(255.0)  # optical density in [0, 1]
    mask = np.zeros(top.shape, bool)
    for channel, floor in ((saturation, MIN_SATURATION), (density, MIN_DENSITY)):
        mask |= channel > max(otsu_threshold(channel.ravel()), floor)
    if closing > 0:
        disk = _disk(closing)
        mask = ndimage.binary_closing(np.pad(mask, closing), structure=disk)[closing:-closing, closing:-closing]
    mask = ndimage.binary_fill_holes(mask)
    if min_area > 1 and mask.any():
        labels, n = ndimage.label(mask)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        mask = (sizes >= min_area)[labels] & mask
    return mask


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return xx**2 + yy**2 <= radius**2


def write_mask_png(mask: np.ndarray, path: str | os.PathLike) -> Path:
    """Save a mask as an 8-bit PNG (255 = tissue) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return path
