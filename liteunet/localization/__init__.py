"""Localization: images of any size in, cell points out (``localize()`` and ``Localizer``).

Modules, from the bottom up:

- :mod:`~liteunet.localization.result`: :class:`LocalizationResult`, what one image gives;
- :mod:`~liteunet.localization.inputs`: paths, folders, globs, arrays, tensors, opened by region;
- :mod:`~liteunet.localization.normalize`: intensities, by the rule the weights were trained with;
- :mod:`~liteunet.localization.tiling`: overlapping tiles whose cores partition the image;
- :mod:`~liteunet.localization.options`: :class:`LocalizationOptions`, checked once;
- :mod:`~liteunet.localization.model`: what to load from a name;
- :mod:`~liteunet.localization.localizer`: :class:`Localizer` and :func:`localize`.
"""

from ..data.io import IMAGE_SUFFIXES
from .inputs import DEFAULT_MAX_PIXELS
from .localizer import Localizer, localize
from .options import LocalizationOptions
from .result import LocalizationResult
from .tiling import CPU_OVERLAP, CPU_TILE_SIZE, DEFAULT_OVERLAP, DEFAULT_TILE_SIZE

__all__ = [
    "CPU_OVERLAP",
    "CPU_TILE_SIZE",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE_SIZE",
    "IMAGE_SUFFIXES",
    "LocalizationOptions",
    "LocalizationResult",
    "Localizer",
    "localize",
]
