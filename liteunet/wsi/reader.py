"""One reader for whole-slide images: OpenSlide, tiffslide or tifffile behind one interface.

:func:`open_slide` opens ``.svs``, ``.ndpi``, ``.mrxs``, ``.scn``, generic tiled TIFF and OME-TIFF
files and returns a :class:`Slide`: its pyramid levels, their downsamples, its microns per pixel
(from the slide's own metadata) and RGB regions of any level. Backends, tried in this order with
``backend="auto"``:

- **OpenSlide** (``pip install openslide-bin openslide-python``, no system library needed): every
  vendor format OpenSlide knows (Aperio, Hamamatsu, MIRAX, Leica, ...). Generic TIFF is left to
  the next two with ``"auto"``, which also read pyramids stored as SubIFDs.
- **tiffslide** (pure Python): Aperio SVS and generic TIFF, and everything when OpenSlide is not
  installed.
- **tifffile** (:class:`liteunet.slides.TiffImage`): plain, striped and OME-TIFF, and any TIFF
  the others refuse; OME-TIFF goes here first, because only tifffile reads its OME-XML sizes.

All three are in the ``wsi`` extra (``pip install 'liteunet[wsi]'``) and imported only when used.

Example:
    >>> with open_slide("slide.svs") as slide:  # doctest: +SKIP
    ...     slide.mpp, slide.level_shapes[0], slide.backend
    (0.25, (80000, 100000), 'openslide')
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..slides import TiffImage

__all__ = ["BACKENDS", "SLIDE_SUFFIXES", "LevelView", "Slide", "is_slide", "open_slide", "tiff_mpp"]

#: Backends :func:`open_slide` knows, in the order ``"auto"`` tries them.
BACKENDS = ("openslide", "tiffslide", "tifffile")
#: File names read as whole slides (a folder given to the slide path expands to these).
SLIDE_SUFFIXES = (
    ".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide",
    ".tif", ".tiff", ".btf", ".ome.tif", ".ome.tiff",
)


def is_slide(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a whole-slide file by its suffix."""
    return str(path).lower().endswith(SLIDE_SUFFIXES)


def tiff_mpp(tags: dict[str, Any], description: str = "") -> float | None:
    """Microns per pixel from TIFF metadata: Aperio ``MPP =``, OME ``PhysicalSizeX``, or resolution tags.

    Args:
        tags: ``{"XResolution": value, "ResolutionUnit": 2 | 3 | "INCH" | "CENTIMETER"}`` (either may
            be absent); a value may be a ``(numerator, denominator)`` pair.
        description: the ImageDescription (Aperio header or OME-XML).

    Returns:
        The microns per pixel, or ``None`` when the file does not say.

    Example:
        >>> tiff_mpp({}, "Aperio Image Library v12.0.0 |AppMag = 40|MPP = 0.2520")
        0.252
        >>> tiff_mpp({"XResolution": (20000, 1), "ResolutionUnit": 3})
        0.5
    """
    if match := re.search(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)", description):
        return float(match.group(1))
    if match := re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', description):
        unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', description)
        factor = {"nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}.get(unit.group(1) if unit else "µm", 1.0)
        return float(match.group(1)) * factor
    res, unit = tags.get("XResolution"), str(tags.get("ResolutionUnit", "")).upper()
    if isinstance(res, (tuple, list)):
        res = res[0] / res[1] if res[1] else 0
    microns = {"3": 1e4, "CENTIMETER": 1e4, "RESUNIT.CENTIMETER": 1e4, "2": 25400.0, "INCH": 25400.0}.get(unit)
    if res and microns and float(res) > 1:  # 1 px per inch / cm is the "unknown" default of writers
        return microns / float(res)
    return None


class Slide:
    """A whole slide opened for reading: pyramid levels, microns per pixel, RGB regions.

    Made by :func:`open_slide`. Regions are ``uint8`` RGB; transparent areas (outside a
    scanned region) are white glass.

    Attributes:
        path: the slide file.
        backend: ``"openslide"``, ``"tiffslide"`` or ``"tifffile"``.
        level_shapes: ``(H, W)`` of each level, level 0 (full resolution) first.
        level_downsamples: level-0 pixels per pixel of each level.
        mpp: microns per level-0 pixel from the slide's metadata, or ``None``.
    """

    def __init__(self, path: Path, backend: str, handle: Any, shapes: list, downsamples: list, mpp: float | None) -> None:
        self.path, self.backend, self._handle = path, backend, handle
        self.level_shapes = [(int(h), int(w)) for h, w in shapes]
        self.level_downsamples = [float(d) for d in downsamples]
        self.mpp = mpp
        self._levels: dict[int, TiffImage] = {}

    def __repr__(self) -> str:
        return f"Slide({str(self.path)!r}, backend={self.backend!r}, levels={self.level_shapes}, mpp={self.mpp})"

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (and the tifffile levels opened so far)."""
        for level in self._levels.values():
            level.close()
        self._levels.clear()
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def read(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows ``y0:y1`` and columns ``x0:x1`` of ``level`` as ``(h, w, 3)`` uint8 RGB.

        Args:
            level: pyramid level (0 = full resolution).
            y0, y1, x0, x1: the region in pixels of that level, inside it.

        Returns:
            ``(y1 - y0, x1 - x0, 3)`` uint8.
        """
        h, w = self.level_shapes[level]
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise ValueError(f"{self.path}: region rows {y0}:{y1}, cols {x0}:{x1} is outside level {level} ({h}x{w})")
        if self.backend == "tifffile":
            if level not in self._levels:
                self._levels[level] = TiffImage(self.path, level=level)
            return _to_rgb(self._levels[level].read_region(y0, y1, x0, x1))
        ds = self.level_downsamples[level]
        location = (int(round(x0 * ds)), int(round(y0 * ds)))
        region = self._handle.read_region(location, level, (x1 - x0, y1 - y0))
        return _to_rgb(np.asarray(region))

    def view(self, level: int) -> LevelView:
        """One level as a region reader (the interface of :class:`liteunet.slides.TiffImage`)."""
        return LevelView(self, level)

    def thumbnail(self, max_side: int = 2048) -> tuple[np.ndarray, int]:
        """The smallest level whose longer side is at least ``max_side`` (else the coarsest), strided down to it.

        Returns:
            ``(image, level)``: an RGB image at most ``max_side`` on its longer side, and the level
            it was read from (its downsample, times the stride, maps it to level 0).
        """
        level = len(self.level_shapes) - 1
        for lvl in range(len(self.level_shapes) - 1, -1, -1):
            level = lvl
            if max(self.level_shapes[lvl]) >= max_side:
                break
        view = self.view(level)
        k = max(1, math.ceil(max(self.level_shapes[level]) / max_side))
        return view.strided(k), level


class LevelView:
    """One pyramid level of a :class:`Slide`, read by region (``shape``, ``dtype``, ``read_region``, ``sample``)."""

    dtype = np.dtype(np.uint8)

    def __init__(self, slide: Slide, level: int) -> None:
        if not 0 <= level < len(slide.level_shapes):
            raise ValueError(f"{slide.path} has {len(slide.level_shapes)} level(s), asked for level {level}")
        self.slide, self.level, self.path = slide, level, slide.path
        self.shape = (*slide.level_shapes[level], 3)
        self.level_shapes = slide.level_shapes
        d = slide.level_downsamples[level]
        self.downsample = (d, d)

    def read_region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.slide.read(self.level, y0, y1, x0, x1)

    def strided(self, k: int, block: int = 2048) -> np.ndarray:
        """Every ``k``-th pixel of the level, read in blocks (memory: the result and one block)."""
        h, w = self.shape[:2]
        out = np.empty((-(-h // k), -(-w // k), 3), np.uint8)
        step = max(k, block // k * k)
        for y in range(0, h, step):
            for x in range(0, w, step):
                part = self.read_region(y, min(y + step, h), x, min(x + step, w))[::k, ::k]
                out[y // k : y // k + part.shape[0], x // k : x // k + part.shape[1]] = part
        return out

    def sample(self, max_pixels: int = 1 << 22) -> np.ndarray:
        h, w = self.shape[:2]
        return self.strided(max(1, math.ceil(math.sqrt(h * w / max_pixels))))

    def close(self) -> None:  # the slide owns the file
        pass


def _to_rgb(region: np.ndarray) -> np.ndarray:
    """RGB uint8 from grey, RGB or RGBA (transparent = white glass) regions."""
    if region.ndim == 2:
        region = region[..., None]
    if region.dtype != np.uint8:
        top = float(np.iinfo(region.dtype).max) if region.dtype.kind in "ui" else 1.0
        region = np.clip(region.astype(np.float32) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if region.shape[2] == 1:
        return np.repeat(region, 3, axis=2)
    if region.shape[2] == 4:
        alpha = region[..., 3:4].astype(np.uint16)
        rgb = (region[..., :3].astype(np.uint16) * alpha + 255 * (255 - alpha) + 127) // 255
        return rgb.astype(np.uint8)
    return np.ascontiguousarray(region[..., :3])


def _open_openslide(path: Path, auto: bool = False) -> Slide | None:
    import openslide

    vendor = openslide.OpenSlide.detect_format(str(path))
    if vendor is None or (auto and vendor == "generic-tiff"):
        return None  # generic TIFF: tiffslide and tifffile also read SubIFD pyramids
    handle = openslide.OpenSlide(str(path))
    props = handle.properties
    mpp = props.get(openslide.PROPERTY_NAME_MPP_X)
    if not mpp:
        mpp = tiff_mpp({"XResolution": props.get("tiff.XResolution"), "ResolutionUnit": props.get("tiff.ResolutionUnit")})
    shapes = [(h, w) for w, h in handle.level_dimensions]
    return Slide(path, "openslide", handle, shapes, handle.level_downsamples, float(mpp) if mpp else None)


def _open_tiffslide(path: Path, auto: bool = False) -> Slide | None:
    import tiffslide

    handle = tiffslide.TiffSlide(str(path))
    mpp = handle.properties.get("tiffslide.mpp-x")
    shapes = [(h, w) for w, h in handle.level_dimensions]
    return Slide(path, "tiffslide", handle, shapes, handle.level_downsamples, float(mpp) if mpp else None)


def _open_tifffile(path: Path, auto: bool = False) -> Slide | None:
    with TiffImage(path) as first:
        shapes = first.level_shapes
        page = first._tif.series[first.series].levels[0].pages[0]
        tags = {t.name: t.value for t in page.tags.values() if t.name in ("XResolution", "ResolutionUnit")}
        tags = {k: (v.name if hasattr(v, "name") else v) for k, v in tags.items()}
        description = first._tif.pages[0].description or ""
        if first._tif.is_ome:
            description = first._tif.ome_metadata or description
    h0, w0 = shapes[0]
    downsamples = [(h0 / h + w0 / w) / 2 for h, w in shapes]
    return Slide(path, "tifffile", None, shapes, downsamples, tiff_mpp(tags, description))


_OPENERS = {"openslide": _open_openslide, "tiffslide": _open_tiffslide, "tifffile": _open_tifffile}


def open_slide(path: str | os.PathLike, backend: str = "auto") -> Slide:
    """Open a whole slide with the first backend that is installed and reads it.

    Args:
        path: a slide file (``.svs``, ``.ndpi``, ``.mrxs``, ``.scn``, ``.tif``, ``.ome.tiff``...).
        backend: ``"auto"`` (OpenSlide, then tiffslide, then tifffile; OME-TIFF tifffile first),
            or one of :data:`BACKENDS`.

    Returns:
        An open :class:`Slide` (close it, or use it in a ``with`` block).

    Raises:
        FileNotFoundError: the file does not exist.
        ImportError: the backend asked for is not installed (the message says what to install).
        ValueError: no installed backend reads the file (each one's reason is in the message).

    Example:
        >>> with open_slide("slide.svs") as slide:  # doctest: +SKIP
        ...     rgb = slide.read(1, 0, 512, 0, 512)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"slide not found: {path}")
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    order = list(BACKENDS) if backend == "auto" else [backend]
    if backend == "auto" and path.name.lower().endswith((".ome.tif", ".ome.tiff")):
        order = ["tifffile", "openslide", "tiffslide"]
    problems = []
    for name in order:
        try:
            slide = _OPENERS[name](path, auto=backend == "auto")
        except ImportError as err:
            if backend != "auto":
                raise ImportError(f"backend {name!r} is not installed: pip install 'liteunet[wsi]' ({err})") from err
            problems.append(f"{name}: not installed")
            continue
        except Exception as err:  # each library raises its own kinds
            problems.append(f"{name}: {err}")
            continue
        if slide is not None:
            return slide
        problems.append(f"{name}: left to the others")
    raise ValueError(
        f"{path}: no slide reader could open it ({'; '.join(problems)}); "
        "install the readers with pip install 'liteunet[wsi]'"
    )
