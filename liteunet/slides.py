"""Large TIFF / BigTIFF images read region by region, so a slide never has to fit in memory.

:class:`TiffImage` opens one pyramid level of a TIFF file (plain, tiled, striped, BigTIFF,
pyramids stored as SubIFDs or as series levels, OME-TIFF) with ``tifffile`` and decodes only the
tiles or strips that a requested region touches: reading stays proportional to the region,
whatever the size of the slide. :func:`liteunet.localize` streams its tiles through it.

``tifffile`` is an optional dependency (``pip install liteunet[tiff]``). Compressed slides need
the codec too: LZW, deflate and PackBits are built in, JPEG / JPEG 2000 (e.g. Aperio SVS) need
``imagecodecs`` (``pip install imagecodecs``). A level stored as several pages is read as
channels when its pages are channels (an axis ``C``, or three pages of unnamed axis, as
``tifffile.imwrite(path, stack, photometric="minisblack")`` writes a ``(3, H, W)`` array); any
other stack (z, time) is refused with a message saying how to pass one plane or a projection.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TIFF_SUFFIXES", "TiffImage", "is_tiff"]

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".svs", ".ome.tif", ".ome.tiff")
# JPEG-family compression codes: their tiles share tables stored in the page.
_JPEG_CODES = {6, 7, 33007, 34892}


def is_tiff(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a TIFF file by its suffix (``.tif``, ``.tiff``, ``.svs``...)."""
    return str(path).lower().endswith(TIFF_SUFFIXES)


def _import_tifffile() -> Any:
    try:
        import tifffile
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading TIFF slides region by region needs tifffile: pip install 'liteunet[tiff]'"
        ) from err
    return tifffile


class TiffImage:
    """One pyramid level of a TIFF file, read lazily region by region.

    Args:
        path: the TIFF file.
        level: pyramid level, 0 = full resolution; levels are listed by :attr:`level_shapes`.
        series: image series in the file (0 = the first, the main image for slides).

    Attributes:
        shape: ``(H, W)`` for grey or ``(H, W, C)`` (C samples per pixel) of the chosen level.
        dtype: the stored sample type (``uint8``, ``uint16``, ``float32``...).
        level_shapes: ``(H, W)`` of every level, level 0 first.
        downsample: ``(sy, sx)``, level-0 pixels per pixel of the chosen level.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not a TIFF file, a level that does not exist, or a layout this reader does
            not support (volumetric tiles, subsampled YCbCr without JPEG).

    Example:
        >>> with TiffImage("slide.tif", level=1) as slide:  # doctest: +SKIP
        ...     patch = slide.read_region(0, 512, 0, 512)   # rows 0-511, columns 0-511
        >>> patch.shape  # doctest: +SKIP
        (512, 512, 3)
    """

    def __init__(self, path: str | os.PathLike, level: int = 0, series: int = 0) -> None:
        tifffile = _import_tifffile()
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"image file not found: {self.path}")
        if self.path.is_dir():
            raise ValueError(f"expected a TIFF file but {self.path} is a directory")
        if self.path.stat().st_size == 0:
            raise ValueError(f"image file {self.path} is empty (0 bytes)")
        try:
            self._tif = tifffile.TiffFile(self.path)
        except Exception as err:  # tifffile raises TiffFileError, ValueError, struct.error...
            raise ValueError(f"{self.path} is not a TIFF file tifffile can read ({err})") from err
        try:
            self._open_level(level, series)
        except Exception:
            self._tif.close()
            raise

    def _open_level(self, level: int, series: int) -> None:
        if not self._tif.series:
            raise ValueError(f"{self.path} holds no image")
        if not 0 <= series < len(self._tif.series):
            raise ValueError(f"{self.path} has {len(self._tif.series)} series, asked for {series}")
        levels = self._tif.series[series].levels
        pages = [lvl.pages[0] for lvl in levels]
        self.level_shapes = [(int(p.imagelength), int(p.imagewidth)) for p in pages]
        if (
            isinstance(level, bool)
            or not isinstance(level, (int, np.integer))
            or not (0 <= level < len(levels))
        ):
            raise ValueError(
                f"{self.path} has {len(levels)} pyramid level(s) "
                f"({', '.join(f'{h}x{w}' for h, w in self.level_shapes)}), "
                f"asked for level {level!r}"
            )
        self.level = int(level)
        self.series = int(series)
        self._channel_pages = self._pages_as_channels(levels[self.level])
        page = self._channel_pages[0] if self._channel_pages else pages[self.level]
        if hasattr(page, "aspage"):
            page = page.aspage()  # a TiffFrame shares its keyframe's layout; decode needs a page
        if page.imagedepth > 1:
            raise ValueError(f"{self.path}: volumetric (3-D) TIFF pages are not supported")
        self.dtype = np.dtype(page.dtype)
        h, w, spp = int(page.imagelength), int(page.imagewidth), int(page.samplesperpixel)
        self.shape: tuple[int, ...] = (h, w) if spp == 1 else (h, w, spp)
        if self._channel_pages:
            self.shape = (h, w, len(self._channel_pages))
        h0, w0 = self.level_shapes[0]
        self.downsample = (h0 / h if h else 1.0, w0 / w if w else 1.0)
        #: Segments (tiles or strips) decoded so far; tests read it to check laziness.
        self.segments_read = 0
        self._use_page(page)

    def _pages_as_channels(self, level: Any) -> list[Any]:
        """The pages of a multi-page level when they are channels; [] for one page; else refuse."""
        pages = list(level.pages)
        if len(pages) <= 1:
            return []
        axes, shape = str(level.axes), tuple(level.shape)
        extra = [a for a in axes if a not in "YXS"]
        first = pages[0].aspage() if hasattr(pages[0], "aspage") else pages[0]
        same = all(
            (p.shape, p.dtype) == (first.shape, first.dtype) for p in pages if hasattr(p, "shape")
        )
        grey = int(first.samplesperpixel) == 1
        if same and grey and len(extra) == 1 and (
            (extra[0] == "C" and len(pages) <= 4) or (extra[0] in "QI" and len(pages) == 3)
        ):
            return [p.aspage() if hasattr(p, "aspage") else p for p in pages]
        raise ValueError(
            f"{self.path} holds a stack of {len(pages)} pages (axes {axes}, shape {shape}); "
            "liteunet localizes one 2-D image (grey, or up to 4 channels stored as channels). "
            "Pass one plane as an array (tifffile.imread(path, key=K)), a projection "
            "(tifffile.imread(path).max(axis=0)), or save the channels in one page "
            "(tifffile.imwrite(out, np.moveaxis(stack, 0, -1), photometric='rgb'))"
        )

    def _use_page(self, page: Any) -> None:
        """Read segments from ``page`` from now on (one page, or one channel page at a time)."""
        self._page = page
        w, spp = int(page.imagewidth), int(page.samplesperpixel)
        self._spp = spp
        self._separate = page.planarconfig == 2 and spp > 1
        self._tiled = bool(page.is_tiled)
        self._chunked = tuple(int(c) for c in page.chunked)
        self._seg_h = int(page.tilelength) if self._tiled else int(page.rowsperstrip)
        self._seg_w = int(page.tilewidth) if self._tiled else w
        self._decodeargs: dict[str, Any] = {"_fullsize": self._tiled}
        if page.compression in _JPEG_CODES:
            self._decodeargs["jpegtables"] = page.jpegtables
            self._decodeargs["jpegheader"] = page.jpegheader

    # --- context manager --------------------------------------------------------------------------
    def close(self) -> None:
        """Close the file."""
        self._tif.close()

    def __enter__(self) -> TiffImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"TiffImage({str(self.path)!r}, level={self.level}, shape={self.shape}, "
            f"dtype={self.dtype})"
        )

    @property
    def num_levels(self) -> int:
        """Number of pyramid levels in the file's series."""
        return len(self.level_shapes)

    # --- reading ----------------------------------------------------------------------------------
    def read_region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows ``y0:y1``, columns ``x0:x1`` of the level, decoding only the segments they touch.

        Args:
            y0, y1: first and one-past-last row, ``0 <= y0 < y1 <= H``.
            x0, x1: first and one-past-last column, ``0 <= x0 < x1 <= W``.

        Returns:
            The region in the stored dtype.

        Shape:
            - output: ``(y1 - y0, x1 - x0)`` for grey, ``(y1 - y0, x1 - x0, C)`` otherwise.

        Raises:
            ValueError: the region is empty or outside the image, or a tile cannot be decoded.
        """
        h, w = self.shape[:2]
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise ValueError(
                f"{self.path}: region rows {y0}:{y1}, cols {x0}:{x1} is outside {h}x{w}"
            )
        if self._channel_pages:  # one page per channel
            planes = []
            for page in self._channel_pages:
                self._use_page(page)
                planes.append(self._read_page(y0, y1, x0, x1)[..., 0])
            return np.stack(planes, axis=-1)
        out = self._read_page(y0, y1, x0, x1)
        return out[..., 0] if len(self.shape) == 2 else out

    def _read_page(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The region of the current page, ``(rows, columns, samples)``."""
        spp = self._spp
        out = np.zeros((y1 - y0, x1 - x0, spp), dtype=self.dtype)
        rows = range(y0 // self._seg_h, (y1 - 1) // self._seg_h + 1)
        cols = range(x0 // self._seg_w, (x1 - 1) // self._seg_w + 1)
        samples = range(spp) if self._separate else range(1)
        # Index of each segment in the page's flat segment list (tifffile's `chunked` layout:
        # [separate samples,] rows, columns [, 1 for contiguous samples]).
        grid = np.meshgrid(samples, rows, cols, indexing="ij")
        multi: list[np.ndarray] = []
        dims = list(self._chunked)
        if self._separate:
            multi.append(grid[0].ravel())
            dims = dims[1:]
        multi += [grid[1].ravel(), grid[2].ravel()]
        if len(dims) == 3:  # trailing contiguous-samples axis of size 1
            multi.append(np.zeros_like(grid[1].ravel()))
        indices = np.ravel_multi_index(tuple(multi), self._chunked).tolist()
        page = self._page
        offsets = [page.dataoffsets[i] for i in indices]
        counts = [page.databytecounts[i] for i in indices]
        fh = self._tif.filehandle
        for segment, index in fh.read_segments(
            offsets, counts, indices=indices, sort=True, flat=True
        ):
            try:
                data, (s, _, sy, sx, _), _shape = page.decode(segment, index, **self._decodeargs)
            except Exception as err:
                raise ValueError(
                    f"{self.path}: cannot decode segment {index} (compression {page.compression}); "
                    f"a truncated file or a missing codec (pip install imagecodecs)? ({err})"
                ) from err
            self.segments_read += 1
            if data is None:  # an empty segment: tifffile's convention is the fill value, 0
                continue
            data = data[0]  # (length, width, contiguous samples)
            ty0, tx0 = max(y0, sy), max(x0, sx)
            ty1, tx1 = min(y1, sy + data.shape[0]), min(x1, sx + data.shape[1])
            if ty1 <= ty0 or tx1 <= tx0:
                continue
            block = data[ty0 - sy : ty1 - sy, tx0 - sx : tx1 - sx]
            if self._separate:
                out[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0, s] = block[..., 0]
            else:
                out[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0] = block[..., :spp]
        return out

    def read(self) -> np.ndarray:
        """The whole level in memory (use :meth:`read_region` for large levels)."""
        return self.read_region(0, self.shape[0], 0, self.shape[1])

    def sample(self, max_pixels: int = 1 << 22) -> np.ndarray:
        """A strided sample of at most about ``max_pixels`` pixels, for intensity statistics.

        The level is read in bands of whole segments and every ``k``-th row and column is kept,
        so memory stays bounded by one band plus the sample.

        Returns:
            ``(h, w)`` or ``(h, w, C)`` array in the stored dtype.
        """
        h, w = self.shape[:2]
        return self._strided(max(1, math.ceil(math.sqrt(h * w / max_pixels))))

    def _strided(self, k: int) -> np.ndarray:
        """Every ``k``-th row and column, read block by block (memory: the result + one block)."""
        h, w = self.shape[:2]
        if k == 1:
            return self.read()
        out = np.empty((-(-h // k), -(-w // k), *self.shape[2:]), dtype=self.dtype)
        # Blocks of whole segments, their sides multiples of k so the stride stays aligned.
        bh, bw = (-(-max(s, k) // k) * k for s in (self._seg_h, min(self._seg_w, 4096)))
        for y in range(0, h, bh):
            for x in range(0, w, bw):
                block = self.read_region(y, min(y + bh, h), x, min(x + bw, w))[::k, ::k]
                out[y // k : y // k + block.shape[0], x // k : x // k + block.shape[1]] = block
        return out

    def thumbnail(self, max_side: int = 2048) -> tuple[np.ndarray, float]:
        """A small image of the whole slide for overlays, and its scale.

        Uses the largest pyramid level whose longer side is at most ``max_side``; without one,
        a strided sample of this level.

        Returns:
            ``(image, factor)``: thumbnail pixels per pixel of *this* level (``<= 1``).
        """
        h, w = self.shape[:2]
        for lvl in range(self.level, self.num_levels):
            lh, lw = self.level_shapes[lvl]
            if max(lh, lw) <= max_side:
                if lvl == self.level:
                    return self.read(), 1.0
                with TiffImage(self.path, level=lvl, series=self.series) as small:
                    return small.read(), lw / w
        img = self._strided(math.ceil(max(h, w) / max_side))
        return img, img.shape[1] / w
