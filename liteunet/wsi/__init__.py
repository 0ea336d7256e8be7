"""Whole-slide images: one reader over OpenSlide / tiffslide / tifffile, tissue masks, streamed and
resumable per-slide localization, huge slides split into regions, and slide cohorts on Dask.

The readers and Dask are optional (``pip install 'liteunet[wsi]'``, ``'liteunet[dask]'``) and
imported only when used. See ``docs/wsi.md``.

Example:
    >>> from liteunet.wsi import localize_slides  # doctest: +SKIP
    >>> rows = localize_slides(["a.svs", "b.ndpi"], "out", model="lite_unet.crc", workers=2, model_mpp=0.5)  # doctest: +SKIP
"""

from .cohort import expand_slides, localize_slides
from .engine import localize_slide, plan_scale, prepare_slide, slide_stem, stream_bands
from .reader import BACKENDS, SLIDE_SUFFIXES, LevelView, Slide, is_slide, open_slide, tiff_mpp
from .regions import REGION_SIZE, merge_regions, plan_regions, region_bands, run_region
from .stream import PointStream
from .synthetic import demo_slides, glass_slide, write_slide
from .tissue import otsu_threshold, tissue_mask, write_mask_png

__all__ = [
    "BACKENDS", "REGION_SIZE", "SLIDE_SUFFIXES", "LevelView", "PointStream", "Slide", "demo_slides", "expand_slides",
    "glass_slide", "is_slide", "localize_slide", "localize_slides", "merge_regions", "open_slide",
    "otsu_threshold", "plan_regions", "plan_scale", "prepare_slide", "region_bands", "run_region",
    "slide_stem", "stream_bands", "tiff_mpp", "tissue_mask", "write_mask_png", "write_slide",
]
