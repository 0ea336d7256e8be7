"""``localize()``: images of any size in, cell points out, on CPU or CUDA.

Pipeline for each image: read it (lazily, region by region, for TIFF slides), normalize it the
way the weights were trained (8-bit divided by 255, 16-bit and float percentile-normalized),
bring it to the model's channel count, cut it into overlapping tiles, run the tiles through the
model in batches, find the peaks of each tile's location map in the tile's *core*, and merge.

Tiling (``tile_size`` 1024, ``overlap`` 256 by default on CUDA; 512 and 128 on CPU)
    Tiles start every ``stride = tile_size - overlap`` pixels; each tile keeps the points of its
    core, the tile minus ``overlap / 2`` on each side that touches another tile. The cores
    partition the image, so each point belongs to exactly one tile and is found with
    ``overlap / 2`` pixels of real context around it. That margin covers the receptive field of
    the convolutional path: measured by back-propagating one output pixel, it reaches 124 px
    for Lite-UNet and 122 px for the U-Net baseline (four 2x poolings, 3x3 convs and CBAM's 7x7
    spatial attention), so ``overlap / 2 = 128`` sees all of it. Tile origins are multiples of
    16, the models' pooling grid, so a tile sees the same pooling windows as one whole-image
    pass. For a purely convolutional model the tiled map then equals the whole-image map in
    every core, and the points equal one big pass. Lite-UNet also has two image-wide terms,
    CBAM's channel attention (a global average / max) and GCA (attention over all positions),
    which no tiling can reproduce exactly: there each tile is one context, as the 512x512
    crops the weights were trained on are. Images up to ``tile_size`` are a single pass.

    On CPU the default is ``tile_size`` 512 with ``overlap`` 128: the same share of repeated
    work as 1024/256 and a quarter of the activation memory (peak RSS stays under 1 GB with bf16
    on a 10000x10000 slide). It leaves 64 px of context, less than the 124-px radius, so points
    near tile borders can move slightly; measured against ground truth it costs nothing: on a
    2000x2000 mosaic of 16 CRC images (``liteunet bench --tiling``), 512/128 gave F1@5 0.586 and
    F1@10 0.674, 1024/256 0.583 and 0.674, one whole-image pass 0.575 and 0.660.

Peaks across tile borders
    Peaks are searched on the map of each tile's core plus a halo of ``min_distance`` pixels
    (plus the NMS window and one pixel for sub-pixel fitting, all inside the tile). A peak is
    *owned* by the tile whose core holds its pixel. Points closer than ``min_distance`` are then
    merged greedily, owned points first, then by score: a peak seen by two tiles is kept once,
    and where two tiles disagree slightly (Lite-UNet's image-wide attention) a peak is neither
    lost nor duplicated.

Memory
    Only a batch of tiles and their maps are in memory, never the full-resolution map of a large
    image (ask for it with ``return_map``, optionally downsampled). TIFF files are read tile by
    tile through :class:`liteunet.slides.TiffImage`; percentiles come from a bounded sample.

Points follow the package convention: ``(N, 2)`` float32 ``(x, y)`` in pixels of the input
image, x = column, y = row, ``(0, 0)`` the centre of the top-left pixel.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

from .data.io import _pil_to_array, match_channels, read_image
from .hub import load_inference_checks, settings_tuned_for
from .inference import OnnxModel, cpu_has_native_bf16, prepare_model
from .points import find_peaks
from .slides import TiffImage, is_tiff
from .tta import TTA_MODES, TestTimeAugmentation, settings_for_mode

__all__ = [
    "CPU_OVERLAP",
    "CPU_TILE_SIZE",
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE_SIZE",
    "IMAGE_SUFFIXES",
    "LocalizationResult",
    "Localizer",
    "add_localize_parser",
    "localize",
]

#: Default tile side in pixels (a multiple of 16) on CUDA; CPU uses :data:`CPU_TILE_SIZE`.
DEFAULT_TILE_SIZE = 1024
#: Default overlap on CUDA: 2 x 128 px, 128 >= the 124-px receptive radius.
DEFAULT_OVERLAP = 256
#: CPU default tile and overlap: a quarter of the memory of 1024/256 at the same redundancy
#: (cores of 384/512 = 768/1024 of the tile side), measured as accurate (see the module docstring).
CPU_TILE_SIZE, CPU_OVERLAP = 512, 128
#: File suffixes taken from a folder (other files, e.g. annotations, are ignored).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".btf", ".svs")
#: Images above this many pixels are refused before anything is allocated.
DEFAULT_MAX_PIXELS = 1 << 34  # 1.7e10: a 40x whole slide (~1e10) fits, 1e6 x 1e6 does not
_STATS_PIXELS = 1 << 24  # percentiles are exact up to this many pixels, sampled above
_STATS_LEVEL_PIXELS = 1 << 22  # a pyramid level this large is enough for the percentiles
_PRECISION_ALIASES = {
    "fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16", "int8": "int8",
}


# --- result ---------------------------------------------------------------------------------------


@dataclass
class LocalizationResult:
    """The cell points found in one image.

    Attributes:
        xy: ``(N, 2)`` float32 points ``(x, y)`` in pixels of the input image (x = column,
            y = row, ``(0, 0)`` the centre of the top-left pixel), sorted by descending score.
        scores: ``(N,)`` float32 location-map value at each point.
        labels: ``(N,)`` int64 class of each point, an index into ``label_names``.
        image_size: ``(H, W)`` of the input image (level 0 for a pyramidal TIFF).
        source: the file path, or ``"input[i]"`` for an in-memory image.
        label_names: class names, e.g. ``("positive", "negative")`` for Ki-67 models.
        settings: what was used: ``threshold``, ``min_distance``, ``tile_size``, ``overlap``,
            ``scale``, ``level``, ``normalize``, ``model``...
        location_map: ``(num_classes, h, w)`` float32 map when asked for (``return_map``), at
            ``map_scale`` map pixels per input pixel; else ``None``.
        map_scale: map pixels per input pixel (``scale / downsample``).
        error: why the image failed (``on_error="skip"``); ``None`` when it succeeded.

    Example:
        >>> res = localize(np.zeros((64, 64), np.uint8), model=model)[0]  # doctest: +SKIP
        >>> res.xy.shape, res.count, res.counts  # doctest: +SKIP
        ((0, 2), 0, {'cell': 0})
    """

    xy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    image_size: tuple[int, int]
    source: str
    label_names: tuple[str, ...] = ("cell",)
    settings: dict[str, Any] = field(default_factory=dict)
    location_map: np.ndarray | None = None
    map_scale: float = 1.0
    error: str | None = None

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    @property
    def ok(self) -> bool:
        """Whether the image was localized (``error is None``)."""
        return self.error is None

    @property
    def count(self) -> int:
        """Number of cells found."""
        return len(self)

    @property
    def counts(self) -> dict[str, int]:
        """Number of cells per class name."""
        found = np.bincount(self.labels, minlength=len(self.label_names)) if len(self) else None
        return {
            name: int(found[i]) if found is not None else 0
            for i, name in enumerate(self.label_names)
        }

    @property
    def ki67_index(self) -> float | None:
        """Ki-67 proliferation index, positive / (positive + negative) in [0, 1].

        Only for 2-class models (the class named ``"positive"``, else class 0, is positive);
        ``None`` for other models and for an image without cells.
        """
        if len(self.label_names) != 2 or len(self) == 0:
            return None
        names = [n.lower() for n in self.label_names]
        pos = names.index("positive") if "positive" in names else 0
        return float(np.count_nonzero(self.labels == pos) / len(self))

    @classmethod
    def failed(
        cls,
        source: str,
        error: str,
        label_names: tuple[str, ...] = ("cell",),
        settings: dict[str, Any] | None = None,
    ) -> LocalizationResult:
        """A result for an image that could not be localized: no points, ``error`` set."""
        return cls(
            xy=np.zeros((0, 2), np.float32),
            scores=np.zeros(0, np.float32),
            labels=np.zeros(0, np.int64),
            image_size=(0, 0),
            source=source,
            label_names=label_names,
            settings=dict(settings or {}),
            error=error,
        )

    def summary(self) -> dict[str, Any]:
        """One row of numbers: source, status, image size, counts, Ki-67 index, error."""
        row: dict[str, Any] = {
            "image": self.source,
            "status": "ok" if self.ok else "failed",
            "height": self.image_size[0],
            "width": self.image_size[1],
            "count": self.count,
        }
        row.update({f"count_{k}": v for k, v in self.counts.items()})
        if len(self.label_names) == 2:
            row["ki67_index"] = self.ki67_index
        row["error"] = self.error or ""
        return row

    def to_dict(self, points: bool = True) -> dict[str, Any]:
        """JSON-ready dict: the summary, the settings and (``points=True``) every point."""
        out: dict[str, Any] = {
            "image": self.source,
            "image_size": {"height": self.image_size[0], "width": self.image_size[1]},
            "label_names": list(self.label_names),
            "settings": _jsonable(self.settings),
            "count": self.count,
            "counts": self.counts,
        }
        if len(self.label_names) == 2:
            out["ki67_index"] = self.ki67_index
        if self.error is not None:
            out["error"] = self.error
        if points:
            out["points"] = [
                {
                    "x": round(float(x), 2),
                    "y": round(float(y), 2),
                    "score": round(float(s), 4),
                    "label": int(lab),
                    "class": self.label_names[int(lab)],
                }
                for (x, y), s, lab in zip(self.xy, self.scores, self.labels)
            ]
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# --- inputs ---------------------------------------------------------------------------------------


@dataclass
class _Item:
    """One image to localize: a name and how to open it (or why it cannot be)."""

    name: str
    payload: Any = None  # a path, an ndarray (H, W[, C]), or None when `error` is set
    error: BaseException | None = None


def _expand_inputs(images: Any) -> list[_Item]:
    """Flatten paths, folders, globs, PIL images, arrays and tensors into one item per image."""
    if isinstance(images, (list, tuple)):
        items: list[_Item] = []
        for i, image in enumerate(images):
            items += _expand_one(image, f"input[{i}]")
        return items
    return _expand_one(images, "input[0]")


def _expand_one(image: Any, name: str) -> list[_Item]:
    if isinstance(image, (str, os.PathLike)):
        return _expand_path(Path(image))
    if isinstance(image, Image.Image):
        try:
            return [_Item(name, _pil_to_array(image))]
        except ValueError as err:
            return [_Item(name, error=ValueError(f"PIL image: {err}"))]
    if isinstance(image, np.ndarray):
        if image.ndim == 4:
            return [
                _Item(
                    name,
                    error=ValueError(
                        f"4-D NumPy array of shape {image.shape}: pass one (H, W) or (H, W, C) "
                        "image, a list of them, or a (B, C, H, W) torch tensor"
                    ),
                )
            ]
        return [_Item(name, image)]
    if isinstance(image, torch.Tensor):
        return _expand_tensor(image, name)
    return [
        _Item(
            name,
            error=TypeError(
                f"unsupported input type {type(image).__name__}: expected a path, folder, glob, "
                "PIL image, NumPy array (H, W) / (H, W, C) or torch tensor (C, H, W) / (B, C, H, W)"
            ),
        )
    ]


def _expand_path(path: Path) -> list[_Item]:
    text = str(path)
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)
        )
        if not files:
            return [
                _Item(
                    text,
                    error=FileNotFoundError(
                        f"folder {text} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
                    ),
                )
            ]
        return [_Item(str(p), p) for p in files]
    if not path.exists() and glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            return [_Item(text, error=FileNotFoundError(f"no file matches {text}"))]
        return [_Item(str(p), p) for p in files]
    return [_Item(text, path)]


def _expand_tensor(t: torch.Tensor, name: str) -> list[_Item]:
    shape = tuple(t.shape)
    if t.ndim == 4:
        if shape[1] not in (1, 2, 3, 4) and shape[-1] in (1, 3, 4):
            return [
                _Item(
                    name,
                    error=ValueError(
                        f"tensor of shape {shape} looks channels-last (B, H, W, C); expected "
                        "(B, C, H, W): use t.permute(0, 3, 1, 2)"
                    ),
                )
            ]
        return [item for b in range(shape[0]) for item in _expand_tensor(t[b], f"{name}[{b}]")]
    if t.ndim == 3:
        if shape[0] not in (1, 2, 3, 4) and shape[-1] in (1, 3, 4):
            return [
                _Item(
                    name,
                    error=ValueError(
                        f"tensor of shape {shape} looks channels-last (H, W, C); expected "
                        "(C, H, W): use t.permute(2, 0, 1)"
                    ),
                )
            ]
        arr = _tensor_to_numpy(t, name)
        return [arr] if isinstance(arr, _Item) else [_Item(name, np.moveaxis(arr, 0, -1))]
    if t.ndim == 2:
        arr = _tensor_to_numpy(t, name)
        return [arr] if isinstance(arr, _Item) else [_Item(name, arr)]
    return [
        _Item(
            name,
            error=ValueError(
                f"tensor of shape {shape}: expected (H, W), (C, H, W) or (B, C, H, W)"
            ),
        )
    ]


def _tensor_to_numpy(t: torch.Tensor, name: str) -> np.ndarray | _Item:
    t = t.detach()
    if t.is_complex():
        return _Item(
            name, error=TypeError(f"tensor dtype {t.dtype} is complex; images must be real")
        )
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()  # NumPy has no bfloat16
    return t.cpu().numpy()


class _ArraySource:
    """An in-memory image with the region-reader interface of :class:`TiffImage`."""

    downsample = (1.0, 1.0)

    def __init__(self, array: np.ndarray, path: str) -> None:
        self.array = array
        self.path = path
        self.shape = array.shape
        self.dtype = array.dtype

    def read_region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.array[y0:y1, x0:x1]

    def sample(self, max_pixels: int = _STATS_PIXELS) -> np.ndarray:
        h, w = self.shape[:2]
        k = max(1, math.ceil(math.sqrt(h * w / max_pixels)))
        return self.array if k == 1 else self.array[::k, ::k]

    def close(self) -> None:
        pass


def _check_image(shape: tuple[int, ...], dtype: np.dtype, max_pixels: int | None) -> None:
    """Refuse unusable images before anything is allocated for them."""
    if dtype.kind not in "biuf":
        raise TypeError(
            f"image dtype {dtype} is not supported: expected bool, integer or real float pixels"
        )
    if len(shape) not in (2, 3):
        raise ValueError(f"image of shape {shape}: expected (H, W) or (H, W, C)")
    if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] > 4:
        raise ValueError(
            f"image of shape {shape} looks channels-first (C, H, W); NumPy images are (H, W, C): "
            "use np.moveaxis(image, 0, -1)"
        )
    if min(shape) == 0:
        raise ValueError(f"image is empty: shape {shape}")
    h, w = shape[:2]
    if max_pixels is not None and h * w > max_pixels:
        raise ValueError(
            f"image is {h} x {w} = {h * w:.3g} pixels, more than max_pixels={max_pixels:.3g}; "
            "localize a pyramid level (level=1, ...), a region, or a smaller scale, or raise "
            "max_pixels"
        )


def _available_memory() -> int:
    """Physical memory in bytes (a generous bound: half of it is the most we plan to use)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16 << 30


def _check_memory(nbytes: int, what: str, hint: str) -> None:
    limit = _available_memory() // 2
    if nbytes > limit:
        raise ValueError(
            f"{what} would need {nbytes / 2**30:.1f} GiB, more than half of this machine's "
            f"{2 * limit / 2**30:.1f} GiB of memory; {hint}"
        )


# --- normalization --------------------------------------------------------------------------------


def _normalizer(
    src: Any, mode: str, percentiles: tuple[float, float]
) -> Callable[[np.ndarray], np.ndarray]:
    """A function raw region -> float32 region, matching :func:`liteunet.data.normalize_image`.

    The percentiles are computed once per image (over all pixels and channels, as
    ``normalize_image`` does; from a strided sample above 16 M pixels), then applied per tile.
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

    if mode == "none" or dtype == np.bool_:
        return lambda r: finite(r).astype(np.float32)
    if mode == "auto" and dtype == np.uint8:
        return lambda r: r.astype(np.float32) / np.float32(255.0)
    pmin, pmax = percentiles
    sample = _stats_sample(src)
    if is_float and not np.isfinite(sample).all():
        bad = int((~np.isfinite(sample)).sum())
        raise ValueError(
            f"image holds NaN/infinite value(s) ({bad} in the {sample.size}-value sample used for "
            "percentiles); replace them (e.g. np.nan_to_num) first"
        )
    lo, hi = np.percentile(sample, [pmin, pmax])
    denom = max(float(hi - lo), 1e-6)
    # float64 for the subtraction, as normalize_image: uint16 / int32 ranges lose nothing.
    return lambda r: ((finite(r).astype(np.float64) - lo) / denom).astype(np.float32)


def _stats_sample(src: Any) -> np.ndarray:
    """Pixels to compute percentiles on: the image itself, or a bounded sample of it."""
    if isinstance(src, TiffImage) and src.num_levels > 1:
        h, w = src.shape[:2]
        need = min(h * w, _STATS_LEVEL_PIXELS)
        # The coarsest pyramid level with enough pixels: reading it is cheap.
        for lvl in range(src.num_levels - 1, src.level, -1):
            lh, lw = src.level_shapes[lvl]
            if lh * lw >= need:
                with TiffImage(src.path, level=lvl, series=src.series) as coarse:
                    return coarse.sample(_STATS_PIXELS)
    return src.sample(_STATS_PIXELS)


# --- tiling ---------------------------------------------------------------------------------------


def _axis_tiles(n: int, tile: int, overlap: int, align: int = 16) -> list[tuple[int, int, int, int]]:
    """``(t0, t1, c0, c1)`` per tile along one axis: tile ``[t0, t1)``, core ``[c0, c1)``.

    The cores partition ``[0, n)``; a core is at least ``overlap / 2`` away from its tile's inner
    edges. The last tile is moved back to end at ``n`` (its origin rounded up to ``align``, the
    pooling grid), so it is as long as the others, less at most ``align - 1`` pixels that the
    caller pads: every tile has one shape, which ``torch.compile`` compiles once, and the last
    core gets real context instead of padding.
    """
    if n <= tile:
        return [(0, n, 0, n)]
    stride, margin = tile - overlap, overlap // 2
    count = math.ceil((n - tile) / stride) + 1
    out = []
    for k in range(count):
        last = k == count - 1
        # ceil((n - tile) / align) * align <= k * stride, so the last core keeps its margin.
        t0 = -(-(n - tile) // align) * align if last else k * stride
        out.append((t0, min(t0 + tile, n), 0 if k == 0 else k * stride + margin, n if last else k * stride + tile - margin))
    return out


def _tile_batches(rows: list, cols: list, batch_size: int) -> Iterator[list]:
    """Batches of tiles in row-major order, made lazily (a slide has many tiles)."""
    tiles = itertools.product(rows, cols)
    while batch := list(itertools.islice(tiles, batch_size)):
        yield batch


def _pad_to(tile: np.ndarray, height: int, width: int) -> np.ndarray:
    """Edge-pad an ``(h, w, C)`` tile at the bottom/right to ``height`` x ``width``.

    The models pad their input to a multiple of 16 the same way, so the map over the tile is
    unchanged; the tile only takes the shape all the others have.
    """
    h, w = tile.shape[:2]
    if (h, w) == (height, width):
        return tile
    return np.pad(tile, ((0, height - h), (0, width - w), (0, 0)), mode="edge")


def _pool_into(out: np.ndarray, piece: np.ndarray, y0: int, x0: int, k: int) -> None:
    """Max-pool ``piece`` (C, h, w), placed at ``(y0, x0)``, by ``k`` into ``out``.

    Blocks cut by a core border are completed by the neighbouring core (max is associative).
    """
    if k == 1:
        out[:, y0 : y0 + piece.shape[1], x0 : x0 + piece.shape[2]] = piece
        return
    ys = np.unique(np.r_[0, np.arange((-y0) % k, piece.shape[1], k)])
    xs = np.unique(np.r_[0, np.arange((-x0) % k, piece.shape[2], k)])
    pooled = np.maximum.reduceat(np.maximum.reduceat(piece, ys, axis=1), xs, axis=2)
    oy, ox = (y0 + ys[0]) // k, (x0 + xs[0]) // k
    view = out[:, oy : oy + pooled.shape[1], ox : ox + pooled.shape[2]]
    np.maximum(view, pooled, out=view)


def _merge_points(
    xy: np.ndarray, scores: np.ndarray, owned: np.ndarray, min_distance: int
) -> np.ndarray:
    """Indices to keep: greedy suppression of points within ``min_distance`` (Chebyshev).

    Priority: owned by the tile whose core holds the point, then higher score, then raster
    order. Only points gathered from two tiles can be that close (one tile's peaks already
    respect ``min_distance``), so this touches only the few points near tile borders.
    """
    n = len(xy)
    keep = np.ones(n, dtype=bool)
    if n < 2:
        return keep
    pairs = cKDTree(xy).query_pairs(r=min_distance, p=np.inf, output_type="ndarray")
    if len(pairs) == 0:
        return keep
    order = np.lexsort((xy[:, 0], xy[:, 1], -scores, ~owned))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    neighbours: dict[int, list[int]] = {}
    for a, b in pairs.tolist():
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    for i in sorted(neighbours, key=rank.__getitem__):
        if keep[i]:
            for j in neighbours[i]:
                if rank[j] > rank[i]:
                    keep[j] = False
    return keep


# --- model ----------------------------------------------------------------------------------------


def _load_model(model: str | os.PathLike | nn.Module) -> tuple[nn.Module, str]:
    """The model and a short name for it (for the settings)."""
    from ._factory import create_model

    if isinstance(model, nn.Module):
        return model, type(model).__name__
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            "model must be a name, a tag, a weights folder or an nn.Module, got "
            f"{type(model).__name__}"
        )
    text = str(model)
    path = Path(text)
    if path.suffix.lower() == ".onnx":
        return OnnxModel(path), text
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"weights folder {path} has no config.json (expected what timm's save_for_hf or "
                "liteunet.hub.save_weights_folder writes)"
            )
        return create_model(f"local-dir:{path}", pretrained=True), text
    if ":" not in text and (os.sep in text or "/" in text):
        raise FileNotFoundError(f"weights folder not found: {text}")
    return create_model(text, pretrained=True), text


_DEFAULT_SETTINGS = {"threshold": 0.5, "min_distance": 3}


def _stored_settings(model: nn.Module) -> dict[str, Any]:
    """Threshold and min_distance stored with the weights (config.json "localization")."""
    try:
        from .hub import load_localization_settings
    except ImportError:  # pragma: no cover - liteunet.hub is optional at import time
        cfg = getattr(model, "pretrained_cfg", None) or {}
        stored = cfg.get("localization")
        if not stored and cfg.get("file"):
            path = Path(cfg["file"])
            config = (path if path.is_dir() else path.parent) / "config.json"
            if config.is_file():
                import json

                stored = json.loads(config.read_text()).get("localization")
        return {**_DEFAULT_SETTINGS, **(stored or {})}
    return load_localization_settings(model)


def _model_in_chans(model: nn.Module) -> int:
    chans = getattr(model, "in_chans", None)
    if isinstance(chans, int) and chans > 0:
        return chans
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ValueError(
        f"cannot tell how many image channels {type(model).__name__} expects: give it an "
        "`in_chans` attribute"
    )


def _label_names(model: nn.Module, num_classes: int | None) -> tuple[str, ...] | None:
    names = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names, key=int)]
    if names and (num_classes is None or len(names) == num_classes):
        return tuple(str(n) for n in names)
    if num_classes is None:
        return None
    if num_classes == 1:
        return ("cell",)
    if num_classes == 2:
        return ("positive", "negative")  # the Ki-67 convention of lite_unet.ki67 (BCData)
    return tuple(f"class{i}" for i in range(num_classes))


def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} asked for, but CUDA is not available here")
    return device


def _resolve_precision(
    precision: str | None, device: torch.device, model: nn.Module, tta: str | None = None, compiled: bool = False
) -> str:
    """The precision to run in: ``"auto"`` is the fastest one kept within the F1 guard.

    ``"auto"``: an ONNX file runs in its own precision; on CUDA bf16 (fp16 without bf16
    support); on CPU bf16 when the CPU computes bf16 natively and the weights record that bf16
    keeps F1 within the guard of float32 (``liteunet.release`` measures it; with ``tta``, the
    guard measured with that augmentation when there is one; ``compiled``, the one measured
    compiled, whose fused kernels round differently, when there is one), else float32.
    """
    if precision is None:
        return "fp32"
    if precision == "auto":
        if isinstance(model, OnnxModel):
            return model.precision
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        checks = load_inference_checks(model, tta)
        guard = (checks.get("bf16_compiled") if compiled else None) or checks.get("bf16") or {}
        return "bf16" if cpu_has_native_bf16() and guard.get("passed") else "fp32"
    if precision not in _PRECISION_ALIASES:
        raise ValueError(f"precision must be 'auto', 'fp32', 'bf16', 'fp16' or 'int8', got {precision!r}")
    return _PRECISION_ALIASES[precision]


def _warn_unguarded(model: nn.Module, name: str, precision: str, tta: str | None, compiled: bool) -> None:
    """Warn when an explicitly asked reduced precision was never checked, or failed the F1 guard."""
    checks = load_inference_checks(model, tta)
    key = f"{precision}_compiled" if compiled and f"{precision}_compiled" in checks else precision
    guard = checks.get(key)
    form = key.replace("_", " ")
    if not guard:
        message = f"{precision} has not been checked against float32 for {name} (its weights record no precision guard); F1 may differ"
    elif not guard.get("passed"):
        # A recorded failure is the more useful warning: it says by how much.
        message = (
            f"{form}{f' with tta={tta!r}' if tta else ''} failed the precision guard of {name}: its F1 "
            f"differed from float32 by {guard.get('max_abs_diff', float('nan')):.2f} points on the validation "
            f"sets (tolerance {guard.get('tolerance', 0.5)}); on CPU precision='auto' uses float32 instead"
        )
    else:
        return
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _resolve_tta(tta: bool | str | None) -> str | None:
    """``False``/``None`` -> no augmentation, ``True`` -> ``"d4"``, or a mode of :data:`TTA_MODES`."""
    if tta is None or tta is False:
        return None
    if tta is True:
        return "d4"
    if isinstance(tta, str) and tta in TTA_MODES:
        return tta
    raise ValueError(f"tta must be True, False or one of {sorted(TTA_MODES)}, got {tta!r}")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _named(err: BaseException, name: str) -> BaseException:
    """The same kind of error, its message starting with the input's name."""
    text = str(err)
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    message = text if name in text else f"{name}: {text}"
    try:
        new = type(err)(message)
    except Exception:  # an exception class with a different constructor
        new = RuntimeError(message)
    return new


# --- the localizer --------------------------------------------------------------------------------


class Localizer:
    """A model made ready to localize many images: weights, settings, device, tiling.

    :func:`localize` is ``Localizer(model, ...)(images)``; keep a ``Localizer`` to run several
    batches without loading and preparing the model again. Arguments are those of
    :func:`localize`.

    Example:
        >>> loc = Localizer("lite_unet.crc", device="cpu")  # doctest: +SKIP
        >>> results = loc(["a.png", "b.png"])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike | nn.Module = "lite_unet",
        *,
        device: str | torch.device = "auto",
        threshold: float | None = None,
        min_distance: int | None = None,
        tile_size: int | None = None,
        overlap: int | None = None,
        batch_size: int | None = None,
        precision: str | None = "auto",
        channels_last: bool | None = None,
        compile: bool = False,
        normalize: str = "auto",
        percentiles: tuple[float, float] = (1.0, 99.8),
        scale: float | None = None,
        mpp: float | None = None,
        level: int = 0,
        return_map: bool | int = False,
        map_max_side: int | None = None,
        subpixel: bool = True,
        fuse: bool = True,
        tta: bool | str = False,
        tuned_for: str | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        progress: bool = True,
    ) -> None:
        self.device = _resolve_device(device)
        module, self.model_name = _load_model(model)
        self.tta = _resolve_tta(tta)
        self.precision = _resolve_precision(precision, self.device, module, self.tta, compile)
        self.tuned_for = tuned_for
        stored = settings_tuned_for(_stored_settings(module), tuned_for)
        # Averaged maps have lower peaks: prefer settings tuned with the mode, if stored.
        stored = settings_for_mode(stored, self.tta)
        self.threshold = float(stored["threshold"] if threshold is None else threshold)
        if math.isnan(self.threshold):
            raise ValueError("threshold must be a number, got NaN")
        self.min_distance = _check_int(
            "min_distance", stored["min_distance"] if min_distance is None else min_distance, 1
        )
        self.size_divisor = int(getattr(module, "size_divisor", 16) or 1)
        on_cpu = self.device.type == "cpu"
        if tile_size is None:
            tile_size = CPU_TILE_SIZE if on_cpu else DEFAULT_TILE_SIZE
        if overlap is None:
            overlap = CPU_OVERLAP if on_cpu else DEFAULT_OVERLAP
        self.tile_size = _check_int("tile_size", tile_size, self.size_divisor)
        self.overlap = _check_int("overlap", overlap, 0)
        if self.tile_size % self.size_divisor or self.overlap % self.size_divisor:
            raise ValueError(
                f"tile_size ({tile_size}) and overlap ({overlap}) must be multiples of "
                f"{self.size_divisor}, the model's pooling grid, so tiles align with one whole pass"
            )
        if self.overlap >= self.tile_size:
            raise ValueError(f"overlap ({overlap}) must be smaller than tile_size ({tile_size})")
        if 2 * self.min_distance + 1 > self.overlap // 2 and self.overlap > 0:
            # The halo and NMS window of a core point must stay inside its tile.
            raise ValueError(
                f"overlap ({overlap}) is too small for min_distance={self.min_distance}: need "
                f"overlap >= {2 * (2 * self.min_distance + 1)}"
            )
        self.batch_size = _check_int(
            "batch_size",
            batch_size if batch_size is not None else (4 if self.device.type == "cuda" else 1),
            1,
        )
        if normalize not in ("auto", "percentile", "none"):
            raise ValueError(f"normalize must be 'auto', 'percentile' or 'none', got {normalize!r}")
        self.normalize = normalize
        pmin, pmax = (float(p) for p in percentiles)
        if not 0.0 <= pmin < pmax <= 100.0:
            raise ValueError(f"need 0 <= pmin < pmax <= 100, got percentiles={percentiles}")
        self.percentiles = (pmin, pmax)
        if scale is not None and mpp is not None:
            raise ValueError("give scale or mpp, not both")
        model_mpp = stored.get("mpp") or (getattr(module, "pretrained_cfg", None) or {}).get("mpp")
        if mpp is not None:
            if not model_mpp:
                raise ValueError(
                    f"mpp={mpp} given, but the weights of {self.model_name} do not say at which "
                    "microns per pixel they were trained; pass scale= instead"
                )
            scale = float(mpp) / float(model_mpp)
        self.scale = float(scale) if scale is not None else 1.0
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.level = _check_int("level", level, 0)
        self.return_map = return_map
        self.map_max_side = map_max_side
        if not isinstance(return_map, bool):
            _check_int("return_map", return_map, 1)
        self.subpixel = bool(subpixel)
        self.max_pixels = max_pixels
        self.progress = progress

        if isinstance(module, OnnxModel):
            if self.precision != module.precision:
                raise ValueError(
                    f"{self.model_name} is a {module.precision} ONNX model; precision={precision!r} "
                    "cannot change it (export another: liteunet export onnx --help)"
                )
            self.model: nn.Module = module
        elif self.precision == "int8":
            raise ValueError(
                "int8 runs through ONNX Runtime: make an int8 file with "
                "`liteunet export onnx MODEL --int8 -o model.int8.onnx` and pass it as the model"
            )
        else:
            if precision not in ("auto", None, "fp32", "float32"):
                _warn_unguarded(module, self.model_name, self.precision, self.tta, compile)
            self.model = prepare_model(
                module, self.precision, device=self.device, channels_last=channels_last,
                compile=compile, fused=fuse,
            )
        if self.tta:
            self.model = TestTimeAugmentation(self.model, self.tta)
        self.in_chans = _model_in_chans(self.model)
        self.num_classes: int | None = getattr(self.model, "num_classes", None)
        self.label_names = _label_names(self.model, self.num_classes)

    @property
    def settings(self) -> dict[str, Any]:
        """What every result records in ``settings``."""
        return {
            "model": self.model_name,
            "threshold": self.threshold,
            "min_distance": self.min_distance,
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "scale": self.scale,
            "level": self.level,
            "normalize": self.normalize,
            "percentiles": list(self.percentiles),
            "subpixel": self.subpixel,
            "device": str(self.device),
            "precision": self.precision,
            "tta": self.tta,
            "tuned_for": self.tuned_for,
        }

    # --- public -----------------------------------------------------------------------------------
    def __call__(self, images: Any, on_error: str = "raise") -> list[LocalizationResult]:
        """Localize ``images``; see :func:`localize`."""
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        items = _expand_inputs(images)
        results = []
        bar = tqdm(
            items, desc="localize", unit="image", disable=not self.progress or len(items) < 2
        )
        for item in bar:
            result, err = self.run_item(item)
            if err is not None:
                if on_error == "raise":
                    raise err
                warnings.warn(f"liteunet.localize skipped {err}", RuntimeWarning, stacklevel=2)
            results.append(result)
        return results

    def run_item(
        self, item: _Item, keep_source: bool = False
    ) -> tuple[LocalizationResult, BaseException | None]:
        """Localize one expanded input; errors are returned (named), never raised.

        With ``keep_source`` the opened image stays attached as ``result._source`` (closed by
        the caller), for overlays.
        """
        src = None
        try:
            if item.error is not None:
                raise item.error
            src = self._open(item)
            result = self._localize_source(src, item.name)
            if keep_source:
                result._source = src  # type: ignore[attr-defined]
                src = None
            return result, None
        except Exception as err:
            named = _named(err, item.name)
            named.__cause__ = err
            failed = LocalizationResult.failed(
                item.name, str(named), self.label_names or ("cell",), self.settings
            )
            return failed, named
        finally:
            if src is not None:
                src.close()

    # --- steps ------------------------------------------------------------------------------------
    def _open(self, item: _Item) -> Any:
        payload = item.payload
        if isinstance(payload, Path):
            tiff = is_tiff(payload) and payload.is_file()
            if tiff:
                try:
                    import tifffile  # noqa: F401
                except ImportError:
                    pass  # no tifffile: Pillow reads ordinary TIFFs, whole
                else:
                    return TiffImage(payload, level=self.level)
            if self.level:
                raise ValueError(
                    f"level={self.level} applies to pyramidal TIFF files only"
                    + (" (install tifffile: pip install 'liteunet[tiff]')" if tiff else "")
                )
            try:
                return _ArraySource(read_image(payload), item.name)
            except ValueError as err:
                if tiff:  # BigTIFF, tiled or compressed slides: Pillow cannot, tifffile can
                    raise ValueError(f"{err}; pip install 'liteunet[tiff]' to read it") from err
                raise
        if self.level:
            raise ValueError(f"level={self.level} applies to pyramidal TIFF files only")
        return _ArraySource(np.asarray(payload), item.name)

    def _localize_source(self, src: Any, name: str) -> LocalizationResult:
        _check_image(tuple(src.shape), np.dtype(src.dtype), self.max_pixels)
        h, w = src.shape[:2]
        chans = src.shape[2] if len(src.shape) == 3 else 1
        # Fail on an impossible channel conversion before any work.
        match_channels(np.zeros((1, 1, chans), np.float32), self.in_chans)
        norm = _normalizer(src, self.normalize, self.percentiles)

        def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            return match_channels(norm(src.read_region(y0, y1, x0, x1)), self.in_chans)

        if self.scale != 1.0:
            read, h, w = self._rescaled(read, h, w, name)

        rows, cols = (_axis_tiles(n, self.tile_size, self.overlap, self.size_divisor) for n in (h, w))
        n_tiles = len(rows) * len(cols)
        # Every tile is fed at the first one's shape (the last row/column are padded to it).
        tile_h, tile_w = rows[0][1] - rows[0][0], cols[0][1] - cols[0][0]
        num_classes = self.num_classes
        md = self.min_distance
        ctx = 2 * md + 1  # halo (md) + NMS window (md) + 1 pixel for the sub-pixel fit
        k = self._map_downsample(h, w)
        full_map = None
        if self.return_map:
            shape = (num_classes or 1, -(-h // k), -(-w // k))
            _check_memory(
                4 * math.prod(shape),
                f"the location map of {name} ({shape})",
                "ask for a downsampled map: return_map=4 (or map_max_side=...)",
            )
        pts, scs, labs, own = [], [], [], []
        bar = tqdm(
            total=n_tiles,
            desc=Path(name).name,
            unit="tile",
            leave=False,
            disable=not self.progress or n_tiles < 8,
        )
        for batch in _tile_batches(rows, cols, self.batch_size):
            x = np.stack([_pad_to(read(r[0], r[1], c[0], c[1]), tile_h, tile_w).transpose(2, 0, 1) for r, c in batch])
            maps = self._forward(torch.from_numpy(np.ascontiguousarray(x)), name)
            if num_classes is None:
                num_classes = maps.shape[1]
                self.label_names = self.label_names or _label_names(self.model, num_classes)
            if self.return_map and full_map is None:
                shape = (num_classes, -(-h // k), -(-w // k))
                _check_memory(
                    4 * math.prod(shape),
                    f"the location map of {name} ({shape})",
                    "ask for a downsampled map: return_map=4 (or map_max_side=...)",
                )
                full_map = np.full(shape, -np.inf, dtype=np.float32)
            for (r, c), m in zip(batch, maps):
                (ty0, ty1, cy0, cy1), (tx0, tx1, cx0, cx1) = r, c
                # Peaks of the core plus its halo; the crop gives their windows real context.
                y0, y1 = max(ty0, cy0 - ctx), min(ty1, cy1 + ctx)
                x0, x1 = max(tx0, cx0 - ctx), min(tx1, cx1 + ctx)
                peaks = find_peaks(
                    m[:, y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0],
                    min_distance=md,
                    threshold=self.threshold,
                    subpixel=self.subpixel,
                )
                xy = peaks.xy.astype(np.float64) + (x0, y0)
                px, py = np.floor(xy[:, 0] + 0.5), np.floor(xy[:, 1] + 0.5)
                in_halo = (px >= cx0 - md) & (px < cx1 + md) & (py >= cy0 - md) & (py < cy1 + md)
                pts.append(xy[in_halo])
                scs.append(peaks.scores[in_halo])
                labs.append(peaks.labels[in_halo])
                own.append(((px >= cx0) & (px < cx1) & (py >= cy0) & (py < cy1))[in_halo])
                if full_map is not None:
                    core = m[:, cy0 - ty0 : cy1 - ty0, cx0 - tx0 : cx1 - tx0].float().cpu().numpy()
                    _pool_into(full_map, core, cy0, cx0, k)
            bar.update(len(batch))
        bar.close()

        xy = np.concatenate(pts) if pts else np.zeros((0, 2))
        scores = np.concatenate(scs) if scs else np.zeros(0, np.float32)
        labels = np.concatenate(labs) if labs else np.zeros(0, np.int64)
        owned = np.concatenate(own) if own else np.zeros(0, bool)
        keep = _merge_points(xy, scores, owned, md)
        xy, scores, labels = xy[keep], scores[keep], labels[keep]
        order = np.lexsort((xy[:, 0], xy[:, 1], -scores))
        xy, scores, labels = xy[order], scores[order], labels[order]

        # Back to input pixels: undo the scale and the pyramid level (pixel centres map to centres).
        sy, sx = src.downsample
        fx, fy = sx / self.scale, sy / self.scale
        xy = np.stack([(xy[:, 0] + 0.5) * fx - 0.5, (xy[:, 1] + 0.5) * fy - 0.5], axis=1)
        h0, w0 = src.level_shapes[0] if isinstance(src, TiffImage) else src.shape[:2]
        settings = self.settings
        return LocalizationResult(
            xy=np.ascontiguousarray(xy, dtype=np.float32).reshape(-1, 2),
            scores=np.ascontiguousarray(scores, dtype=np.float32),
            labels=np.ascontiguousarray(labels, dtype=np.int64),
            image_size=(int(h0), int(w0)),
            source=name,
            label_names=self.label_names or ("cell",),
            settings=settings,
            location_map=full_map,
            map_scale=1.0 / (k * fx) if full_map is not None else self.scale / sx,
        )

    def _map_downsample(self, h: int, w: int) -> int:
        k = 1 if isinstance(self.return_map, bool) else int(self.return_map)
        if self.map_max_side:
            k = max(k, math.ceil(max(h, w) / self.map_max_side))
        return k

    def _rescaled(self, read: Callable, h: int, w: int, name: str) -> tuple[Callable, int, int]:
        """Resize the whole normalized image by ``scale``; returns a reader of the result."""
        nh, nw = max(1, round(h * self.scale)), max(1, round(w * self.scale))
        _check_memory(
            4 * self.in_chans * (h * w + nh * nw),
            f"resizing {name} to {nh}x{nw}",
            "localize a pyramid level (level=...) instead of scale=",
        )
        img = torch.from_numpy(np.ascontiguousarray(read(0, h, 0, w).transpose(2, 0, 1)))[None]
        img = (
            torch.nn.functional.interpolate(
                img, size=(nh, nw), mode="bilinear", align_corners=False, antialias=self.scale < 1
            )[0]
            .numpy()
            .transpose(1, 2, 0)
        )
        return (lambda y0, y1, x0, x1: img[y0:y1, x0:x1]), nh, nw

    def _forward(self, x: torch.Tensor, name: str) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        with torch.inference_mode():
            out = self.model(x)
        if (
            not isinstance(out, torch.Tensor)
            or out.ndim != 4
            or out.shape[0] != x.shape[0]
            or (out.shape[-2:] != x.shape[-2:])
        ):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise RuntimeError(
                f"the model returned {got} for a {tuple(x.shape)} input; a localization model "
                "must return (B, num_classes, H, W) maps of the input's size"
            )
        return out.float()


def localize(
    images: Any,
    model: str | os.PathLike | nn.Module = "lite_unet",
    *,
    device: str | torch.device = "auto",
    threshold: float | None = None,
    min_distance: int | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    precision: str | None = "auto",
    channels_last: bool | None = None,
    compile: bool = False,
    normalize: str = "auto",
    percentiles: tuple[float, float] = (1.0, 99.8),
    scale: float | None = None,
    mpp: float | None = None,
    level: int = 0,
    return_map: bool | int = False,
    map_max_side: int | None = None,
    subpixel: bool = True,
    tta: bool | str = False,
    tuned_for: str | None = None,
    on_error: str = "raise",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> list[LocalizationResult]:
    """Find the cells in images of any size: one :class:`LocalizationResult` per image.

    Args:
        images: a path, a folder (its image files, sorted), a glob (``"slides/*.tif"``), a PIL
            image, a NumPy array ``(H, W)`` / ``(H, W, C)`` (uint8, uint16, other integers,
            float, bool), a torch tensor ``(C, H, W)`` / ``(B, C, H, W)``, or a list of these.
            Grey, RGB and RGBA (alpha is dropped); TIFF / BigTIFF files are read tile by tile
            (needs ``tifffile``: ``pip install liteunet[tiff]``).
        model: a model name (``"lite_unet"``: its default pretrained weights), a pretrained tag
            (``"lite_unet.crc"``), a weights folder (``save_for_hf`` layout), an ``hf-hub:`` /
            ``local-dir:`` name, an ``.onnx`` file from ``liteunet export onnx`` (run by ONNX
            Runtime), or an ``nn.Module`` (used as is, put in eval mode).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        threshold: minimum peak height; default: the value stored with the weights (0.5
            without one).
        min_distance: peaks closer than this (pixels, Chebyshev) are merged; default: stored
            with the weights (3 without one).
        tile_size: side of the tiles fed to the model, a multiple of 16. Images up to this size
            are one pass. Default 1024 on CUDA, 512 on CPU (bounded memory).
        overlap: pixels shared by neighbouring tiles, a multiple of 16; each tile's points come
            from its core, ``overlap / 2`` away from its inner edges. Default 256 on CUDA (covers
            the 124-px receptive radius of Lite-UNet's convolutions), 128 on CPU (see the module
            docstring for why that is enough).
        batch_size: tiles per forward pass (default 4 on CUDA, 1 on CPU).
        precision: ``"auto"`` (default): the fastest precision kept within the F1 guard: bf16
            on CUDA (fp16 without bf16 support); on CPU bf16 when the CPU has native bf16 and
            the weights record that bf16 keeps F1 at 5 and 10 px within 0.5 points of float32
            (measured with the same ``tta`` mode, and compiled with ``compile=True``, where the
            weights record those), else float32. ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA)
            force one; ``"int8"`` needs an int8 ONNX file as ``model`` (``liteunet export onnx
            --int8``).
        channels_last: NHWC activations (default on: faster convolutions on CPU and GPU).
        compile: ``torch.compile`` the model (each new tile shape compiles once, slowly).
        normalize: ``"auto"``: uint8 / 255, bool as 0/1, other dtypes percentile-normalized (how
            the weights were trained); ``"percentile"``: percentiles for uint8 too; ``"none"``:
            values used as given (already normalized floats).
        percentiles: ``(pmin, pmax)`` mapped to 0 and 1 by percentile normalization.
        scale: resize factor applied before the model (e.g. 0.5 for 40x images given to a 20x
            model); points come back in input pixels.
        mpp: microns per pixel of the input, instead of ``scale``: ``scale = mpp / model_mpp``
            with the ``mpp`` stored with the weights.
        level: pyramid level of TIFF inputs (0 = full resolution); points come back in level-0
            pixels.
        return_map: keep the location map in each result: ``True`` at full (model) resolution,
            an integer ``k`` max-pooled by ``k`` (for large images).
        map_max_side: when set, downsample the returned map so its longer side is at most this.
        subpixel: refine points to sub-pixel precision (see :func:`liteunet.points.find_peaks`).
        tta: test-time augmentation (:mod:`liteunet.tta`): average each tile's map over
            ``"flips"`` (4 views) or ``"d4"`` (8 views: flips and 90-degree rotations; also
            ``True``). 4 or 8 times the compute for a more accurate map; uses the threshold and
            minimum distance stored for that mode with the weights, when there are some.
        tuned_for: use the threshold and minimum distance the weights store for one of their
            validation sets (e.g. ``"mbm"`` with ``lite_unet.multi``), chosen on that set alone,
            instead of the pair shared by all; for images like that set's. The model card lists
            the names. ``threshold`` and ``min_distance`` still override.
        on_error: ``"raise"`` (default): the first bad input raises, its message naming the
            input; ``"skip"``: a bad input gives a result with ``error`` set and no points (so
            indices line up with the inputs) and a warning, and the others are localized.
        max_pixels: refuse images with more pixels than this before allocating anything.
        progress: show tqdm bars (over images, and over tiles of large images).

    Returns:
        One :class:`LocalizationResult` per image, in input order (a folder or glob expands to
        its files, a ``(B, C, H, W)`` tensor to ``B`` images). Each has ``xy``, an ``(N, 2)``
        float32 array of ``(x, y)`` points in input pixels (x = column, y = row, ``(0, 0)`` the
        centre of the top-left pixel), ``scores`` ``(N,)``, ``labels`` ``(N,)``, ``counts``,
        ``ki67_index`` (2-class models), ``image_size`` and ``settings``.

    Raises:
        ValueError, TypeError, FileNotFoundError: bad arguments or model (always), or a bad input
            with ``on_error="raise"``; the message names the input and the problem.
        RuntimeError: the model has no published weights, or returns maps of the wrong shape.

    Shape:
        - numpy input: :math:`(H, W)` or :math:`(H, W, C)`; torch: :math:`(C, H, W)` or
          :math:`(B, C, H, W)`.
        - ``xy``: :math:`(N, 2)` as ``(x, y)``.

    Example:
        >>> import liteunet, numpy as np
        >>> model = liteunet.create_model("lite_unet", widths=(8, 8, 16, 16, 16))
        >>> res = liteunet.localize(np.zeros((100, 120, 3), np.uint8), model, progress=False)
        >>> len(res), res[0].xy.shape[1], res[0].image_size
        (1, 2, (100, 120))
    """
    localizer = Localizer(
        model,
        device=device,
        threshold=threshold,
        min_distance=min_distance,
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        normalize=normalize,
        percentiles=percentiles,
        scale=scale,
        mpp=mpp,
        level=level,
        return_map=return_map,
        map_max_side=map_max_side,
        subpixel=subpixel,
        tta=tta,
        tuned_for=tuned_for,
        max_pixels=max_pixels,
        progress=progress,
    )
    return localizer(images, on_error=on_error)


# --- command line ---------------------------------------------------------------------------------


def add_localize_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``liteunet localize`` to a ``build_parser()`` sub-command group."""
    p = subparsers.add_parser(
        "localize",
        help="find the cells in images of any size; write CSV / JSON / GeoJSON (QuPath) points",
        description="Localize cells in images, folders, globs or TIFF slides (tiled, with "
        "overlap). Writes one points file per image and a summary.csv to OUT_DIR. A file that "
        "cannot be read is reported and skipped; the exit code is 1 when any failed.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument("-o", "--out-dir", required=True, help="folder for the outputs")
    p.add_argument(
        "--model",
        default="lite_unet",
        help="model name, pretrained tag or weights folder (default lite_unet)",
    )
    p.add_argument(
        "--format",
        default="csv",
        help="points format(s), comma-separated: csv, json, geojson (default csv)",
    )
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png")
    p.add_argument("--heatmap", action="store_true", help="also write <name>_heatmap.png")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1...")
    p.add_argument(
        "--tile-size",
        type=int,
        help=f"tile side, a multiple of 16 (default {DEFAULT_TILE_SIZE} on CUDA, {CPU_TILE_SIZE} on CPU)",
    )
    p.add_argument(
        "--overlap",
        type=int,
        help=f"overlap of neighbouring tiles, a multiple of 16 (default {DEFAULT_OVERLAP} on CUDA, {CPU_OVERLAP} on CPU)",
    )
    p.add_argument(
        "--threshold", type=float, help="peak threshold (default: stored with the weights)"
    )
    p.add_argument(
        "--min-distance", type=int, help="peak minimum distance (default: stored with the weights)"
    )
    p.add_argument(
        "--batch-size", type=int, help="tiles per forward pass (default 4 on CUDA, 1 on CPU)"
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16", "int8"],
        help="auto (default): the fastest kept within the weights' F1 guard (bf16 on CUDA; on CPU "
        "bf16 where native and checked, else fp32); int8 needs an int8 .onnx model",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow first tile)")
    p.add_argument(
        "--tta",
        choices=sorted(TTA_MODES),
        help="test-time augmentation: average the map over 4 flips or all 8 flips and rotations (d4); 4x / 8x slower",
    )
    p.add_argument(
        "--tuned-for",
        metavar="DATASET",
        help="use the threshold and minimum distance stored for images like this validation set "
        "(e.g. mbm with lite_unet.multi; the model card lists them) instead of the shared ones",
    )
    p.add_argument("--scale", type=float, help="resize factor before the model")
    p.add_argument("--mpp", type=float, help="microns per pixel of the inputs (instead of --scale)")
    p.add_argument("--level", type=int, default=0, help="pyramid level of TIFF slides (default 0)")
    p.add_argument(
        "--normalize",
        default="auto",
        choices=["auto", "percentile", "none"],
        help="intensity normalization (default auto: uint8/255, others percentiles)",
    )
    p.add_argument(
        "--percentiles",
        type=float,
        nargs=2,
        default=(1.0, 99.8),
        metavar=("PMIN", "PMAX"),
        help="percentile normalization range (default 1 99.8)",
    )
    p.set_defaults(func=_cmd_localize)
    return p


def _output_stem(name: str, used: set[str]) -> str:
    base = Path(name).name
    for suffix in (".ome.tiff", ".ome.tif"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    else:
        base = Path(base).stem or "image"
    stem, i = base, 2
    while stem in used:  # two inputs with one name (a/x.png, b/x.png): x, x_2
        stem, i = f"{base}_{i}", i + 1
    used.add(stem)
    return stem


def _cmd_localize(args: argparse.Namespace) -> int:
    from . import io_formats

    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in io_formats.POINT_FORMATS]
    if unknown or not formats:
        raise ValueError(f"--format: unknown {unknown or args.format!r}; use csv, json, geojson")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    localizer = Localizer(
        args.model,
        device=args.device,
        threshold=args.threshold,
        min_distance=args.min_distance,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        precision=args.precision,
        compile=args.compile,
        tta=args.tta,
        tuned_for=args.tuned_for,
        normalize=args.normalize,
        percentiles=tuple(args.percentiles),
        scale=args.scale,
        mpp=args.mpp,
        level=args.level,
        return_map=args.heatmap,
        map_max_side=io_formats.MAX_PNG_SIDE if args.heatmap else None,
        progress=True,
    )
    items = _expand_inputs(list(args.inputs))
    used: set[str] = set()
    summaries, failed, cells = [], 0, 0
    bar = tqdm(items, desc="localize", unit="image", file=sys.stderr)
    for item in bar:
        result, err = localizer.run_item(item, keep_source=args.overlay)
        src = getattr(result, "_source", None)
        try:
            if err is None:
                stem = _output_stem(item.name, used)
                for fmt in formats:
                    ext, writer = io_formats.POINT_FORMATS[fmt]
                    writer(result, out_dir / f"{stem}{ext}")
                if args.heatmap and result.location_map is not None:
                    io_formats.write_heatmap(
                        result.location_map, out_dir / f"{stem}_heatmap.png", result.label_names
                    )
                if args.overlay and src is not None:
                    image, factor = _display_image(src)
                    io_formats.write_overlay(
                        image, result, out_dir / f"{stem}_overlay.png", image_scale=factor
                    )
                cells += result.count
        except Exception as write_err:  # a full disk or an unwritable folder: report, go on
            err = _named(write_err, item.name)
            result = LocalizationResult.failed(
                item.name, str(err), result.label_names, result.settings
            )
        finally:
            if src is not None:
                src.close()
        if err is not None:
            failed += 1
            tqdm.write(f"liteunet localize: {err} (skipped)", file=sys.stderr)
        summaries.append(result)
    io_formats.write_summary_csv(summaries, out_dir / "summary.csv")
    done = len(items) - failed
    print(
        f"localized {done} of {len(items)} image(s), {cells} cell(s); outputs in {out_dir}"
        + (f"; {failed} failed (see above and summary.csv)" if failed else "")
    )
    return 1 if failed else 0


def _display_image(src: Any) -> tuple[np.ndarray, float]:
    """The image to draw an overlay on and its pixels per input (level-0) pixel."""
    from .io_formats import MAX_PNG_SIDE

    if isinstance(src, TiffImage):
        image, factor = src.thumbnail(MAX_PNG_SIDE)
        return image, factor / src.downsample[1]
    return src.array, 1.0
