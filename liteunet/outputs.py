"""Where ``liteunet localize`` writes: output names that never collide, and the overwrite rule.

Each input image gets one *stem*; its outputs are ``STEM.csv`` / ``.json`` / ``.geojson``,
``STEM_overlay.png`` and ``STEM_heatmap.png``, beside the batch's ``summary.csv``:

- the stem is the input's file name without its suffix (``x.png`` -> ``x``), unless another
  input of the batch has the same one, or it is ``summary``: then the suffix stays in it
  (``x.png`` -> ``x_png``, ``x.tif`` -> ``x_tif``), then ``_2``, ``_3``... until it is unique.
  Distinct stems give distinct files, since every output adds one of the fixed endings above;
- a name too long for the file system (255 bytes with the longest ending) is shortened and
  given a short hash of the full name, so that all of an image's outputs can be written;
- outputs that exist already are never replaced silently: ``overwrite`` replaces them (a link
  is replaced by a file, never written through), ``skip_existing`` keeps them and skips those
  images, and with neither the command stops before any compute and lists them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "NAME_MAX",
    "SUMMARY_NAME",
    "check_out_dir",
    "clear_target",
    "output_names",
    "output_stems",
]

SUMMARY_NAME = "summary.csv"
#: Longest file name (bytes) the common file systems take.
NAME_MAX = 255
_LONGEST_ENDING = len("_heatmap.png")


def _base(name: str) -> tuple[str, str]:
    """``(stem, suffix)`` of an input name: ``a/x.ome.tif`` -> ``("x", "ome_tif")``."""
    base = Path(name).name or "image"
    for suffix in (".ome.tiff", ".ome.tif"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)] or "image", suffix[1:].replace(".", "_")
    path = Path(base)
    return (path.stem or "image"), path.suffix.lstrip(".")


def _fit(stem: str, full: str) -> str:
    """``stem`` shortened, with a hash of ``full``, when its longest output name is too long."""
    room = NAME_MAX - _LONGEST_ENDING
    if len(stem.encode("utf-8")) <= room:
        return stem
    tag = "~" + hashlib.sha1(full.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    cut = stem.encode("utf-8")[: room - len(tag)].decode("utf-8", "ignore")
    return cut + tag


def output_stems(names: Sequence[str]) -> list[str]:
    """One stem per input name, unique within the batch and never ``summary`` (see above).

    Example:
        >>> output_stems(["a/x.png", "a/x.tif", "a/x_2.png", "b/summary.png", "c/y.png"])
        ['x_png', 'x_tif', 'x_2', 'summary_png', 'y']
    """
    parts = [_base(name) for name in names]
    counts = Counter(stem for stem, _ in parts)
    reserved = {Path(SUMMARY_NAME).stem}
    plain = [counts[stem] == 1 and stem not in reserved for stem, _ in parts]
    taken = set(reserved) | {_fit(stem, n) for (stem, _), n, p in zip(parts, names, plain) if p}
    stems = []
    for name, (stem, suffix), is_plain in zip(names, parts, plain):
        if is_plain:
            stems.append(_fit(stem, name))
            continue
        first = _fit(f"{stem}_{suffix}" if suffix else stem, name)
        candidate, k = first, 2
        while candidate in taken:
            candidate, k = _fit(f"{first}_{k}", f"{name}#{k}"), k + 1
        taken.add(candidate)
        stems.append(candidate)
    return stems


def output_names(stem: str, extensions: Iterable[str], overlay: bool, heatmap: bool) -> list[str]:
    """The file names one image writes: points files, then overlay and heat map when asked."""
    names = [f"{stem}{ext}" for ext in extensions]
    if heatmap:
        names.append(f"{stem}_heatmap.png")
    if overlay:
        names.append(f"{stem}_overlay.png")
    return names


def check_out_dir(out_dir: Path, input_dirs: Iterable[Path] = ()) -> None:
    """Create ``out_dir`` and make sure it can be written, before any compute.

    Raises:
        ValueError: ``out_dir`` is one of the input folders (the next run would read its own
            outputs), or it is not a folder.
        PermissionError: it cannot be created or written.
    """
    resolved = out_dir.resolve()
    for folder in input_dirs:
        if folder.resolve() == resolved:
            raise ValueError(
                f"the output folder {out_dir} is also an input folder: a later run would "
                "localize its own outputs. Choose another -o / --out-dir."
            )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"the output folder {out_dir} exists and is not a folder") from None
    except OSError as err:
        raise PermissionError(f"cannot create the output folder {out_dir}: {err}") from err
    try:
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".liteunet-write-check-"):
            pass
    except OSError as err:
        raise PermissionError(f"cannot write to the output folder {out_dir}: {err}") from err


def clear_target(path: Path) -> Path:
    """Remove a link (or an old file) at ``path`` so that the next write makes a new file."""
    if path.is_symlink() or path.is_file():
        os.unlink(path)
    return path
