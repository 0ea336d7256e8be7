"""Writing pyramidal slides: Aperio-style ``.svs``, generic tiled TIFF and OME-TIFF.

For tests, benchmarks and examples: :func:`write_slide` stores an RGB image as a tiled pyramid
that OpenSlide, tiffslide and tifffile read as a real scanner's file (Aperio ImageDescription
with ``MPP``; resolution tags for generic TIFF; OME-XML ``PhysicalSizeX`` for OME-TIFF).
:func:`glass_slide` places tissue tiles on white glass; :func:`demo_slides` writes a small cohort
from the images of a data set (``python -m liteunet.wsi.synthetic slides/``, the slides the
whole-slide page measures). Needs ``tifffile`` (``liteunet[wsi]``).

Example:
    >>> canvas = glass_slide([tile] * 4, (2048, 2048), fraction=0.3)  # doctest: +SKIP
    >>> write_slide("slide.svs", canvas, mpp=0.25)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..data import load_split, read_image

__all__ = ["LAYOUTS", "demo_slides", "glass_slide", "write_slide"]

#: The colour of empty glass (a bright, faintly warm grey, as scanners see it).
GLASS = (242, 241, 238)


#: How :func:`glass_slide` places tissue: scattered pieces, or one section as a slide has.
LAYOUTS = ("scattered", "section")


def glass_slide(
    tiles: list[np.ndarray], shape: tuple[int, int], fraction: float = 0.3, seed: int = 0, layout: str = "scattered"
) -> np.ndarray:
    """Place ``tiles`` (RGB uint8) on glass of ``shape`` ``(H, W)`` until about ``fraction`` is tissue.

    Tiles are placed on a regular grid, row by row. ``layout="scattered"``: in a random choice
    of its cells (many small islands, the hardest case for skipping glass); ``"section"``: in
    the cells nearest an off-centre point, one connected piece of tissue as a section on a
    slide is.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    rng = np.random.default_rng(seed)
    h, w = shape
    th, tw = tiles[0].shape[:2]
    canvas = np.empty((h, w, 3), np.uint8)
    canvas[:] = GLASS
    canvas = np.clip(canvas.astype(np.int16) + rng.integers(-3, 4, canvas.shape), 0, 255).astype(np.uint8)
    cells = [(y, x) for y in range(0, h - th + 1, th) for x in range(0, w - tw + 1, tw)]
    n = min(len(cells), max(1, round(fraction * h * w / (th * tw))))
    if layout == "section":
        # An elliptical piece: cells by distance to a point off the centre, wider than tall.
        cy, cx = 0.45 * h, 0.55 * w
        dist = [((y + th / 2 - cy) / 0.8) ** 2 + (x + tw / 2 - cx) ** 2 for y, x in cells]
        chosen = sorted(np.argsort(dist, kind="stable")[:n])
    else:
        chosen = sorted(rng.choice(len(cells), n, replace=False))
    for k, i in enumerate(chosen):
        y, x = cells[i]
        canvas[y : y + th, x : x + tw] = tiles[k % len(tiles)][..., :3]
    return canvas


def _pyramid(image: np.ndarray, levels: int, tile: int) -> list[np.ndarray]:
    out = [image]
    while len(out) < levels and min(out[-1].shape[:2]) >= 2 * tile:
        h, w = out[-1].shape[:2]
        out.append(np.asarray(Image.fromarray(out[-1]).reduce(2)))
    return out


def write_slide(
    path: str | os.PathLike, image: np.ndarray, mpp: float, kind: str | None = None, tile: int = 256,
    levels: int = 3, compression: str | None = "zlib",
) -> Path:
    """Write ``image`` as a tiled pyramidal slide at ``mpp`` microns per pixel.

    Args:
        path: the file; its suffix chooses ``kind`` when not given (``.svs``; ``.ome.tif(f)``;
            anything else a generic TIFF).
        image: ``(H, W, 3)`` uint8 RGB, level 0.
        mpp: microns per level-0 pixel.
        kind: ``"svs"`` (Aperio), ``"ome"`` or ``"tiff"``.
        tile: tile side (a multiple of 16).
        levels: pyramid levels at most, each half the one before.
        compression: tifffile compression (lossless ``"zlib"`` by default; ``"jpeg"`` as scanners do).

    Returns:
        The path written.
    """
    import tifffile

    path = Path(path)
    name = path.name.lower()
    kind = kind or ("svs" if name.endswith(".svs") else "ome" if name.endswith((".ome.tif", ".ome.tiff")) else "tiff")
    pyramid = _pyramid(image, levels, tile)
    h, w = image.shape[:2]
    mag = round(10 / mpp)
    opts = {"tile": (tile, tile), "photometric": "rgb", "compression": compression}
    res = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path, bigtiff=False, ome=kind == "ome") as tif:
        if kind == "svs":
            head = "Aperio Image Library v12.0.16\r\n"
            tags = f"|AppMag = {mag}|MPP = {mpp:.4f}"
            tif.write(pyramid[0], description=f"{head}{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}) RGB{tags}", metadata=None, **opts)
            thumb = np.asarray(Image.fromarray(image).reduce(max(1, max(h, w) // 512)))
            tif.write(thumb, photometric="rgb", description=f"{head}{w}x{h} -> {thumb.shape[1]}x{thumb.shape[0]} - ", metadata=None)
            for lvl in pyramid[1:]:
                lh, lw = lvl.shape[:2]
                tif.write(lvl, description=f"{head}{w}x{h} -> {lw}x{lh} - {tags}", metadata=None, subfiletype=1, **opts)
        elif kind == "ome":
            meta = {"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeY": mpp, "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"}
            tif.write(pyramid[0], subifds=len(pyramid) - 1, metadata=meta, **opts, **res)
            for lvl in pyramid[1:]:
                tif.write(lvl, subfiletype=1, metadata=None, **opts)
        else:
            tif.write(pyramid[0], subifds=len(pyramid) - 1, metadata=None, **opts, **res)
            for lvl in pyramid[1:]:
                tif.write(lvl, subfiletype=1, metadata=None, **opts)
    return path


def demo_slides(
    folder: str | os.PathLike, data_set: str = "crc", split: str = "validation", side: int = 4096,
    fraction: float = 0.3, tiles: int = 16, seed: int = 0,
) -> list[Path]:
    """A cohort of three slides of real tissue on glass: ``s40.svs``, ``t20.tiff``, ``o40.ome.tiff``.

    The images of ``data_set`` (taken as 20x, 0.5 um/px) are placed on a ``side`` x ``side``
    canvas of glass (about ``fraction`` tissue): ``t20.tiff`` is that canvas, a generic pyramidal
    TIFF at 0.5 um/px; ``s40.svs`` (Aperio) and ``o40.ome.tiff`` are it at 40x (0.25 um/px,
    resized bicubically to twice the side), each with a different placement (``seed``).

    Returns:
        The slides written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = [read_image(s.image_path)[..., :3] for s in load_split(data_set, split)[:tiles]]
    if not images:
        raise ValueError(f"{data_set} {split} holds no images")
    out = []
    for k, (name, mpp) in enumerate((("s40.svs", 0.25), ("t20.tiff", 0.5), ("o40.ome.tiff", 0.25))):
        canvas = glass_slide(images, (side, side), fraction, seed=seed + k)
        if mpp != 0.5:
            canvas = np.asarray(Image.fromarray(canvas).resize((2 * side, 2 * side), Image.BICUBIC))
        out.append(write_slide(folder / name, canvas, mpp, levels=4))
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="write a demo cohort of slides (s40.svs, t20.tiff, o40.ome.tiff)")
    parser.add_argument("folder")
    parser.add_argument("--data-set", default="crc")
    parser.add_argument("--side", type=int, default=4096, help="side of the 20x canvas (default 4096)")
    parser.add_argument("--fraction", type=float, default=0.3, help="share of tissue (default 0.3)")
    args = parser.parse_args()
    for path in demo_slides(args.folder, args.data_set, side=args.side, fraction=args.fraction):
        print(path)
