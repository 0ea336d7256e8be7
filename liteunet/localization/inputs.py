"""Inputs of ``localize()``: paths, folders, globs, PIL images, arrays and tensors, opened for reading.

Every input becomes one :class:`InputItem` per image (a folder or a glob expands to its files, a
``(B, C, H, W)`` tensor to ``B`` images); a bad input becomes an item that carries its error, so
a batch with one bad file finishes the others. Images are then opened as region readers: a
TIFF slide lazily, tile by tile (:class:`liteunet.slides.TiffImage`), anything else in memory
(:class:`ArraySource`).
"""

from __future__ import annotations

import fnmatch
import glob
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.io import IMAGE_SUFFIXES, _pil_to_array, read_image
from ..slides import TiffImage, is_tiff

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ArraySource",
    "InputItem",
    "check_image",
    "check_memory",
    "display_image",
    "expand_inputs",
    "named_error",
    "open_input",
]

#: Images above this many pixels are refused before anything is allocated.
DEFAULT_MAX_PIXELS = 1 << 34  # 1.7e10: a 40x whole slide (~1e10) fits, 1e6 x 1e6 does not
#: Percentiles are exact up to this many pixels, from a strided sample above.
STATS_PIXELS = 1 << 24


@dataclass
class InputItem:
    """One image to localize: a name and how to open it (or why it cannot be)."""

    name: str
    payload: Any = None  # a path, an ndarray (H, W[, C]), or None when `error` is set
    error: BaseException | None = None


def expand_inputs(images: Any) -> list[InputItem]:
    """Flatten paths, folders, globs, PIL images, arrays and tensors into one item per image."""
    if isinstance(images, (list, tuple)):
        items: list[InputItem] = []
        for i, image in enumerate(images):
            items += _expand_one(image, f"input[{i}]")
        return items
    return _expand_one(images, "input[0]")


def _expand_one(image: Any, name: str) -> list[InputItem]:
    if isinstance(image, (str, os.PathLike)):
        return _expand_path(Path(image))
    if isinstance(image, Image.Image):
        try:
            return [InputItem(name, _pil_to_array(image))]
        except ValueError as err:
            return [InputItem(name, error=ValueError(f"PIL image: {err}"))]
    if isinstance(image, np.ndarray):
        if image.ndim == 4:
            return [
                InputItem(
                    name,
                    error=ValueError(
                        f"4-D NumPy array of shape {image.shape}: pass one (H, W) or (H, W, C) "
                        "image, a list of them, or a (B, C, H, W) torch tensor"
                    ),
                )
            ]
        return [InputItem(name, image)]
    if isinstance(image, torch.Tensor):
        return _expand_tensor(image, name)
    return [
        InputItem(
            name,
            error=TypeError(
                f"unsupported input type {type(image).__name__}: expected a path, folder, glob, "
                "PIL image, NumPy array (H, W) / (H, W, C) or torch tensor (C, H, W) / (B, C, H, W)"
            ),
        )
    ]


def _expand_path(path: Path) -> list[InputItem]:
    text = str(path)
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)
        )
        if not files:
            return [
                InputItem(
                    text,
                    error=FileNotFoundError(
                        f"folder {text} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
                    ),
                )
            ]
        return [InputItem(str(p), p) for p in files]
    if not path.exists() and glob.has_magic(text):
        files = _glob_files(text)
        if not files:
            return [InputItem(text, error=FileNotFoundError(f"no file matches {text}"))]
        return [InputItem(str(p), p) for p in files]
    return [InputItem(text, path)]


def _glob_files(pattern: str) -> list[Path]:
    """The files ``pattern`` matches, each real file once; ``**`` walks folders once each.

    Python's own recursive glob follows symbolic links into folders it has already seen, so a
    link loop gives the same image many times, or never ends. Here every folder is entered once
    (by device and inode), and the loops skipped are reported in one warning.
    """
    parts = Path(pattern).parts
    if "**" not in parts:
        found = [Path(p) for p in glob.glob(pattern) if Path(p).is_file()]
        return _once(found)
    cut = parts.index("**")
    head, rest = Path(*parts[:cut]) if cut else Path("."), parts[cut:]
    roots = [Path(p) for p in glob.glob(str(head))] if glob.has_magic(str(head)) else [head]
    found, loops = [], []
    seen: set[tuple[int, int]] = set()
    for root in roots:
        if not root.is_dir():
            continue
        st = root.stat()
        seen.add((st.st_dev, st.st_ino))
        for dirpath, dirs, names in os.walk(root, followlinks=True):
            keep = []
            for d in sorted(dirs):
                try:
                    st = os.stat(os.path.join(dirpath, d))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    loops.append(os.path.join(dirpath, d))
                else:
                    seen.add((st.st_dev, st.st_ino))
                    keep.append(d)
            dirs[:] = keep
            rel = Path(dirpath).relative_to(root).parts
            for name in names:
                candidate = Path(dirpath, name)
                if _match(rel + (name,), rest) and candidate.is_file():
                    found.append(candidate)
    if loops:
        shown = ", ".join(loops[:3]) + (f" (+{len(loops) - 3} more)" if len(loops) > 3 else "")
        warnings.warn(
            f"{pattern}: skipped {len(loops)} linked folder(s) already visited (link loops or "
            f"aliases): {shown}; each real file is taken once",
            UserWarning,
            stacklevel=4,
        )
    return _once(found)


def _match(names: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Path components against glob components, ``**`` matching any number of folders."""
    if not pattern:
        return not names
    if pattern[0] == "**":
        return any(_match(names[i:], pattern[1:]) for i in range(len(names) + 1))
    if not names:
        return False
    hidden = names[0].startswith(".") and not pattern[0].startswith(".")
    if hidden or not fnmatch.fnmatchcase(names[0], pattern[0]):
        return False
    return _match(names[1:], pattern[1:])


def _once(files: list[Path]) -> list[Path]:
    """Sorted, each real file once (a link to a file already listed is dropped)."""
    out, real = [], set()
    for p in sorted(files):
        key = os.path.realpath(p)
        if key not in real:
            real.add(key)
            out.append(p)
    return out


def _expand_tensor(t: torch.Tensor, name: str) -> list[InputItem]:
    shape = tuple(t.shape)
    if t.ndim == 4:
        if shape[1] not in (1, 2, 3, 4) and shape[-1] in (1, 3, 4):
            return [
                InputItem(
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
                InputItem(
                    name,
                    error=ValueError(
                        f"tensor of shape {shape} looks channels-last (H, W, C); expected "
                        "(C, H, W): use t.permute(2, 0, 1)"
                    ),
                )
            ]
        arr = _tensor_to_numpy(t, name)
        return [arr] if isinstance(arr, InputItem) else [InputItem(name, np.moveaxis(arr, 0, -1))]
    if t.ndim == 2:
        arr = _tensor_to_numpy(t, name)
        return [arr] if isinstance(arr, InputItem) else [InputItem(name, arr)]
    return [
        InputItem(
            name,
            error=ValueError(
                f"tensor of shape {shape}: expected (H, W), (C, H, W) or (B, C, H, W)"
            ),
        )
    ]


def _tensor_to_numpy(t: torch.Tensor, name: str) -> np.ndarray | InputItem:
    t = t.detach()
    if t.is_complex():
        return InputItem(
            name, error=TypeError(f"tensor dtype {t.dtype} is complex; images must be real")
        )
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()  # NumPy has no bfloat16
    return t.cpu().numpy()


class ArraySource:
    """An in-memory image with the region-reader interface of :class:`TiffImage`."""

    downsample = (1.0, 1.0)

    def __init__(self, array: np.ndarray, path: str) -> None:
        self.array = array
        self.path = path
        self.shape = array.shape
        self.dtype = array.dtype

    def read_region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.array[y0:y1, x0:x1]

    def sample(self, max_pixels: int = STATS_PIXELS) -> np.ndarray:
        h, w = self.shape[:2]
        k = max(1, math.ceil(math.sqrt(h * w / max_pixels)))
        return self.array if k == 1 else self.array[::k, ::k]

    def close(self) -> None:
        pass


def check_image(shape: tuple[int, ...], dtype: np.dtype, max_pixels: int | None) -> None:
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
    if len(shape) == 3 and shape[2] > 4 and shape[0] < min(shape[1:]):
        # (5, 256, 256): planes first, too many for colour channels.
        raise ValueError(
            f"image of shape {shape} looks like a stack of {shape[0]} planes (Z or channels, then "
            f"H, W); the models take one 2-D image (grey, RGB or RGBA): pass one plane "
            f"(image[k]), a projection (image.max(axis=0)), or each plane as its own image "
            f"(list(image))"
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


def available_memory() -> int:
    """Physical memory in bytes (a generous bound: half of it is the most we plan to use)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16 << 30


def check_memory(nbytes: int, what: str, hint: str) -> None:
    limit = available_memory() // 2
    if nbytes > limit:
        raise ValueError(
            f"{what} would need {nbytes / 2**30:.1f} GiB, more than half of this machine's "
            f"{2 * limit / 2**30:.1f} GiB of memory; {hint}"
        )


def open_input(item: InputItem, level: int = 0) -> Any:
    """Open one input for reading by region: a TIFF slide lazily, anything else in memory."""
    payload = item.payload
    if isinstance(payload, Path):
        tiff = is_tiff(payload) and payload.is_file()
        if tiff:
            try:
                import tifffile  # noqa: F401
            except ImportError:
                pass  # no tifffile: Pillow reads ordinary TIFFs, whole
            else:
                return TiffImage(payload, level=level)
        if level:
            raise ValueError(
                f"level={level} applies to pyramidal TIFF files only"
                + (" (install tifffile: pip install 'liteunet[tiff]')" if tiff else "")
            )
        try:
            return ArraySource(read_image(payload), item.name)
        except ValueError as err:
            if tiff:  # BigTIFF, tiled or compressed slides: Pillow cannot, tifffile can
                raise ValueError(f"{err}; pip install 'liteunet[tiff]' to read it") from err
            raise
    if level:
        raise ValueError(f"level={level} applies to pyramidal TIFF files only")
    return ArraySource(np.asarray(payload), item.name)


def named_error(err: BaseException, name: str) -> BaseException:
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


def display_image(src: Any, max_side: int) -> tuple[np.ndarray, float]:
    """The image to draw an overlay on and its pixels per input (level-0) pixel."""
    if isinstance(src, TiffImage):
        image, factor = src.thumbnail(max_side)
        return image, factor / src.downsample[1]
    return src.array, 1.0
