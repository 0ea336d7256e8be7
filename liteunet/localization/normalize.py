"""Intensity normalisation of images read region by region, by the rule the weights were trained with.

The rule itself is :func:`liteunet.data.io.intensity_range` (training uses it through
``normalize_image``); here its range is computed once per image, on all pixels or a bounded
sample of a large one, and applied to every tile. ``"nuclear"`` fits its channel's rule
(:func:`liteunet.data.io.fit_nuclear_input`) the same way, once per image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..data.io import fit_nuclear_input, intensity_range, scale_intensity
from ..slides import TiffImage
from .inputs import STATS_PIXELS

__all__ = ["STATS_LEVEL_PIXELS", "region_normalizer"]

#: A pyramid level this large is enough for the percentiles.
STATS_LEVEL_PIXELS = 1 << 22


def region_normalizer(
    src: Any, mode: str, percentiles: tuple[float, float]
) -> Callable[[np.ndarray], np.ndarray]:
    """A function raw region -> float32 region, matching :func:`liteunet.data.normalize_image`.

    The range is computed once per image (over all pixels and channels, as ``normalize_image``
    does; from a strided sample above 16 M pixels), then applied per tile.

    Args:
        src: a region reader (``dtype``, ``shape``, ``sample()``, ``read_region()``).
        mode: ``"auto"``, ``"percentile"``, ``"none"`` (see ``intensity_range``) or ``"nuclear"``
            (``normalize_image``'s nuclear channel: the function returns :math:`(H, W)` regions).
        percentiles: ``(pmin, pmax)``.
    """
    dtype = np.dtype(src.dtype)
    is_float = dtype.kind == "f"

    def finite(region: np.ndarray) -> np.ndarray:
        if is_float and not np.isfinite(region).all():
            bad = int((~np.isfinite(region)).sum())
            raise ValueError(
                f"image holds {bad} NaN/infinite value(s) in this region; replace them "
                "(e.g. np.nan_to_num) first"
            )
        return region

    nuclear = mode == "nuclear"
    needs_sample = nuclear or (mode != "none" and dtype != np.bool_ and not (mode == "auto" and dtype == np.uint8))
    # uint8 / bool / "none" need no statistics: a one-pixel stand-in has the dtype the rule reads.
    sample = _stats_sample(src) if needs_sample else np.zeros(1, dtype)
    if is_float and not np.isfinite(sample).all():
        bad = int((~np.isfinite(sample)).sum())
        raise ValueError(
            f"image holds NaN/infinite value(s) ({bad} in the {sample.size}-value sample used for "
            "its statistics); replace them (e.g. np.nan_to_num) first"
        )
    value_range = intensity_range(sample, "none" if nuclear else mode, *percentiles)  # checks dtype, percentiles
    if nuclear:
        rule = fit_nuclear_input(sample, *percentiles)
        return lambda region: rule(finite(region))
    return lambda region: scale_intensity(finite(region), value_range)


def _stats_sample(src: Any) -> np.ndarray:
    """Pixels to compute percentiles on: the image itself, or a bounded sample of it."""
    if isinstance(src, TiffImage) and src.num_levels > 1:
        h, w = src.shape[:2]
        need = min(h * w, STATS_LEVEL_PIXELS)
        # The coarsest pyramid level with enough pixels: reading it is cheap.
        for lvl in range(src.num_levels - 1, src.level, -1):
            lh, lw = src.level_shapes[lvl]
            if lh * lw >= need:
                with TiffImage(src.path, level=lvl, series=src.series) as coarse:
                    return coarse.sample(STATS_PIXELS)
    return src.sample(STATS_PIXELS)
