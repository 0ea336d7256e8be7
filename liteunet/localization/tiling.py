"""Cutting an image into overlapping tiles whose cores partition it, and merging what they give.

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
    every core, and the points equal one big pass. Lite-UNet also has image-wide terms, CBAM's
    channel attention (a global average / max, in eight blocks) and GCA (an average over all
    positions). With ``context="tile"`` each tile computes them over itself, as the 256-px crops
    the weights were trained on did, and the points depend on the tile size. The default,
    ``context="exact"``, takes them from the whole image: an image whose one pass fits in memory
    is not cut at all, and tiles get the terms gathered over the whole image from their cores,
    layer by layer (:mod:`~liteunet.localization.context`). Measured with ``liteunet bench
    --invariance --threads 1 --contexts exact tile`` (2000x2000 mosaic of 16 CRC images,
    ``lite_unet.multi``, fp32, CPU; one whole-image pass: 3,245 cells, F1@10 0.726), cells
    against that pass / F1@10 / time against it:

    ==============  ====================  ====================  ====================
    context         256 / 128             512 / 128             1024 / 256
    ==============  ====================  ====================  ====================
    ``"exact"``     -0.2% / 0.724 / 10.6  -0.2% / 0.725 / 4.6   +0.0% / 0.726 / 10.4
    ``"tile"``      +41.4% / 0.766 / 2.1  +30.6% / 0.772 / 1.1  +20.0% / 0.763 / 2.0
    ==============  ====================  ====================  ====================

    ``"exact"`` needs an overlap of at least 128 (with 256 / 64 it still found 24% more cells:
    32-px margins are too little context for the deep features). ``docs/robustness.md`` has
    the rest.

One pass up to 1024 px (:data:`SINGLE_PASS_SIDE`), or whenever it fits with ``context="exact"``
    An image no larger than 1024 x 1024 runs in one pass on any device, whatever ``tile_size``
    the default tiling would cut it with: the same map ``liteunet eval`` scores, and on CPU the
    fastest layout at those sizes. With the default ``context="exact"``, a larger image also
    runs in one pass when that fits in memory (:meth:`liteunet.Localizer.one_pass_fits`).
    Measured with ``liteunet bench --speed --threads 2 --repeats 3 --sides 256 500 640 768 1024
    1100 1280 1536 2048 3072 --no-slide`` (fp32, 2 CPU cores): one model pass runs at 1.05 MP/s
    on 500 x 500, 0.81 on 1024 x 1024, 0.52 on 2048 x 2048 and 0.46 on 3072 x 3072 (a larger
    pass fits the caches worse), while ``localize()`` with 512-px tiles and 128 px of overlap
    (1.78x the work, ``context="tile"``) gives 0.76 MP/s on 2048 x 2048: up to about 1024 px one
    pass wins, above it the tiles do, at the price of points that depend on the cut.

    On CPU the default is ``tile_size`` 512 with ``overlap`` 128: the same share of repeated
    work as 1024/256 and a quarter of the activation memory (peak RSS stays under 1 GB with bf16
    on a 10000x10000 slide). It leaves 64 px of context, less than the 124-px radius, so points
    near tile borders can move slightly; measured against ground truth it costs nothing (F1 of
    512/128, 1024/256 and one whole-image pass on a mosaic of CRC images: ``liteunet bench
    --tiling``, whose latest figures the localize page of the documentation quotes).

Peaks across tile borders
    Peaks are searched on the map of each tile's core plus a halo of ``min_distance`` pixels
    (plus the NMS window and one pixel for sub-pixel fitting, all inside the tile). A peak is
    *owned* by the tile whose core holds its pixel. Points closer than ``min_distance`` are then
    merged greedily, owned points first, then by score: a peak seen by two tiles is kept once,
    and where two tiles disagree slightly (Lite-UNet's image-wide attention) a peak is neither
    lost nor duplicated.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np
import torch

from ..points import find_peaks

__all__ = [
    "CPU_OVERLAP",
    "CPU_TILE_SIZE",
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE_SIZE",
    "SINGLE_PASS_SIDE",
    "axis_tiles",
    "fit_tile",
    "tile_peaks",
    "tile_sides",
    "pad_to",
    "pool_into",
    "tile_batches",
]

#: Default tile side in pixels (a multiple of 16) on CUDA; CPU uses :data:`CPU_TILE_SIZE`.
DEFAULT_TILE_SIZE = 1024
#: Default overlap on CUDA: 2 x 128 px, 128 >= the 124-px receptive radius.
DEFAULT_OVERLAP = 256
#: CPU default tile and overlap: a quarter of the memory of 1024/256 at the same redundancy
#: (cores of 384/512 = 768/1024 of the tile side), measured as accurate (see above).
CPU_TILE_SIZE, CPU_OVERLAP = 512, 128
#: With the default tiling, an image up to this side (both sides) is one pass on any device.
SINGLE_PASS_SIDE = 1024


def axis_tiles(n: int, tile: int, overlap: int, align: int = 16) -> list[tuple[int, int, int, int]]:
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


def fit_tile(n: int, max_tile: int, overlap: int, align: int = 16) -> int:
    """The smallest tile side (a multiple of ``align``, at most ``max_tile``) that covers ``n``
    with as few tiles as ``max_tile`` needs.

    :func:`axis_tiles` with ``max_tile`` itself cuts an image slightly larger than one tile into
    two full tiles (a 640-px side: two 512-px tiles, 1024 px of model work per 640 px). Choosing
    the tile count first, then the smallest tile that still covers the side with ``overlap``,
    gives two 384-px tiles (768 px of work) and the same context around every core.

    Args:
        n: image side in pixels.
        max_tile: the largest tile side memory allows (a multiple of ``align``).
        overlap: pixels shared by neighbouring tiles (a multiple of ``align``).
        align: the model's pooling grid.

    Returns:
        The tile side to pass to :func:`axis_tiles`; ``n`` itself when one tile covers it.

    Example:
        >>> fit_tile(640, 512, 128), fit_tile(500, 512, 128), fit_tile(1000, 512, 128)
        (384, 500, 432)
    """
    if n <= max_tile:
        return n
    count = -(-(n - overlap) // (max_tile - overlap))
    need = -(-(n + (count - 1) * overlap) // count)
    return min(max_tile, -(-need // align) * align)


def tile_sides(h: int, w: int, max_tile: int, overlap: int, align: int = 16, single_pass: int = SINGLE_PASS_SIDE) -> tuple[int, int]:
    """The default tile ``(height, width)`` for an ``h`` x ``w`` image.

    The whole image when both sides are at most ``single_pass`` (one pass); otherwise
    :func:`fit_tile` along each axis with ``max_tile`` as the largest side.

    Example:
        >>> tile_sides(640, 640, 512, 128), tile_sides(1100, 3000, 512, 128)
        ((640, 640), (464, 496))
    """
    if h <= single_pass and w <= single_pass:
        return h, w
    return fit_tile(h, max_tile, overlap, align), fit_tile(w, max_tile, overlap, align)


def tile_peaks(
    tile_map: torch.Tensor,
    rows: tuple[int, int, int, int],
    cols: tuple[int, int, int, int],
    min_distance: int,
    threshold: float,
    subpixel: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The peaks of one tile's map in its core plus a halo of ``min_distance`` pixels.

    Args:
        tile_map: ``(C, h, w)`` location map of the tile.
        rows, cols: the tile's ``(t0, t1, c0, c1)`` along each axis (:func:`axis_tiles`).
        min_distance, threshold, subpixel: as for :func:`liteunet.points.find_peaks`.

    Returns:
        ``(xy, scores, labels, owned)``: ``xy`` an ``(N, 2)`` float64 array of ``(x, y)`` in image
        pixels, and ``owned`` whether the point's pixel lies in this tile's core.
    """
    (ty0, ty1, cy0, cy1), (tx0, tx1, cx0, cx1) = rows, cols
    md = min_distance
    ctx = 2 * md + 1  # halo (md) + NMS window (md) + 1 pixel for the sub-pixel fit
    # Peaks of the core plus its halo; the crop gives their windows real context.
    y0, y1 = max(ty0, cy0 - ctx), min(ty1, cy1 + ctx)
    x0, x1 = max(tx0, cx0 - ctx), min(tx1, cx1 + ctx)
    peaks = find_peaks(
        tile_map[:, y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0],
        min_distance=md,
        threshold=threshold,
        subpixel=subpixel,
    )
    xy = peaks.xy.astype(np.float64) + (x0, y0)
    px, py = np.floor(xy[:, 0] + 0.5), np.floor(xy[:, 1] + 0.5)
    in_halo = (px >= cx0 - md) & (px < cx1 + md) & (py >= cy0 - md) & (py < cy1 + md)
    owned = (px >= cx0) & (px < cx1) & (py >= cy0) & (py < cy1)
    return xy[in_halo], peaks.scores[in_halo], peaks.labels[in_halo], owned[in_halo]


def tile_batches(rows: list, cols: list, batch_size: int) -> Iterator[list]:
    """Batches of tiles in row-major order, made lazily (a slide has many tiles)."""
    tiles = itertools.product(rows, cols)
    while batch := list(itertools.islice(tiles, batch_size)):
        yield batch


def pad_to(tile: np.ndarray, height: int, width: int) -> np.ndarray:
    """Edge-pad an ``(h, w, C)`` tile at the bottom/right to ``height`` x ``width``.

    The models pad their input to a multiple of 16 the same way, so the map over the tile is
    unchanged; the tile only takes the shape all the others have.
    """
    h, w = tile.shape[:2]
    if (h, w) == (height, width):
        return tile
    return np.pad(tile, ((0, height - h), (0, width - w), (0, 0)), mode="edge")


def pool_into(out: np.ndarray, piece: np.ndarray, y0: int, x0: int, k: int) -> None:
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
