"""Localize one whole slide: at the model's scale, tissue only, streamed to disk, resumable.

:func:`localize_slide` does for a slide what :func:`liteunet.localize` does for an image, and
what a slide needs besides:

1. **Scale.** The slide's microns per pixel (its metadata, or ``mpp``) over the model's
   (``model_mpp``, or what the weights record) gives the scale; the coarsest pyramid level that
   keeps at least the model's resolution is read and resampled to it (Gaussian prefilter, then
   bilinear), so a 40x and a 20x scan of the same tissue give the same cells. ``scale`` (model
   pixels per level-0 pixel) bypasses the metadata. Neither known: a clear error, no guess.
2. **Tissue.** :func:`~liteunet.wsi.tissue.tissue_mask` on a thumbnail; a tile whose core (plus
   the peak halo) holds no tissue is not run. The mask is saved as ``<stem>_tissue.png``.
3. **Tiles in bands.** The slide at the model's scale (with a mask, the bounding box of its
   tissue) is cut as ``localize()`` cuts a large image (fitted tiles, cores that partition it); tiles run one row (band) at a time. A band's
   points are merged with the points still pending from the band above
   (:func:`liteunet.points.suppress_close_points`, owned points first), so a cell on a seam is
   kept once; the band above is then final and written (:class:`~liteunet.wsi.stream.PointStream`).
   Memory holds one band, whatever the size of the slide and the number of cells.
4. **Resume.** After each band the outputs are flushed and checkpointed; the same call after a
   crash continues from the last band and writes byte-identical files. One process writes a
   slide at a time (a lock on ``<stem>.lock``).

The steps are separate functions so that a huge slide can be split: :func:`prepare_slide` (1, 2
and the tile grid: a picklable *job*), :func:`band_reader` (the model on one band's tiles) and
:func:`stream_bands` (the merge and the outputs, 3 and 4), which :mod:`liteunet.wsi.regions`
feeds from regions run elsewhere.

Points are ``(x, y)`` in level-0 pixels, ``(0, 0)`` the centre of the top-left pixel (CSV), and
the top-left corner in the GeoJSON (QuPath's convention).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.io import match_channels
from ..localization import Localizer
from ..localization.normalize import region_normalizer
from ..localization.tiling import axis_tiles, pad_to, tile_peaks
from ..points import peak_confidences, suppress_close_points
from ..pretrained import load_localization_settings
from .reader import Slide, open_slide
from .stream import PointStream
from .tissue import tissue_mask, write_mask_png

__all__ = ["band_reader", "localize_slide", "plan_scale", "prepare_slide", "slide_stem", "stream_bands", "tissue_extent"]

#: Thumbnail side (pixels) the tissue mask is computed on.
MASK_SIDE = 2048

#: A band's (or tile's) peaks: ``(xy, scores, labels, owned)``, ``xy`` an ``(N, 2)`` array of ``(x, y)``.
Points = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def slide_stem(path: str | os.PathLike) -> str:
    """The outputs' name stem: the file name without its (``.ome.tiff``-aware) suffix."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or "slide"


def weights_mpp(localizer: Localizer) -> float | None:
    """Microns per pixel the weights record (``localization.mpp`` or ``pretrained_cfg.mpp``)."""
    model = localizer.model
    for m in (model, getattr(model, "model", None), getattr(model, "_orig_mod", None)):
        if isinstance(m, torch.nn.Module):
            mpp = load_localization_settings(m).get("mpp") or (getattr(m, "pretrained_cfg", None) or {}).get("mpp")
            if mpp:
                return float(mpp)
    return None


def plan_scale(
    slide: Slide, model_mpp: float | None, mpp: float | None = None, scale: float | None = None
) -> dict[str, Any]:
    """Which level to read and how much to resample it.

    Args:
        slide: the open slide.
        model_mpp: microns per pixel the model works at (``None``: not known).
        mpp: microns per level-0 pixel of the slide, overriding its metadata.
        scale: model pixels per level-0 pixel, instead of microns (e.g. 0.5 for a 40x slide and
            a 20x model).

    Returns:
        ``{"scale", "level", "factor", "mpp", "model_mpp", "shape"}``: model pixels per
        level-0 pixel, the level read, model pixels per pixel of that level, and the slide's
        ``(H, W)`` at the model's scale.

    Raises:
        ValueError: no scale given and the slide's or the model's microns per pixel unknown.
    """
    slide_mpp = mpp if mpp is not None else slide.mpp
    if scale is None:
        if slide_mpp is None:
            raise ValueError(
                f"{slide.path}: the slide does not record its microns per pixel; pass mpp= "
                "(--mpp, e.g. 0.25 for 40x, 0.5 for 20x) or scale= (--scale)"
            )
        if model_mpp is None:
            raise ValueError(
                f"{slide.path} is at {slide_mpp} um/px but the weights do not record the microns per "
                "pixel they were trained at; pass model_mpp= (--model-mpp, e.g. 0.5 for 20x-trained "
                "weights) or scale= (--scale)"
            )
        scale = slide_mpp / model_mpp
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    # The coarsest level that keeps (within 5%) the resolution the model wants.
    level = 0
    for lvl, d in enumerate(slide.level_downsamples):
        if scale * d <= 1.05:
            level = lvl
    factor = scale * slide.level_downsamples[level]
    if abs(factor - 1) < 1e-3:
        factor = 1.0
    h0, w0 = slide.level_shapes[0]
    if factor == 1.0:
        shape = slide.level_shapes[level]
    else:
        shape = (max(1, round(h0 * scale)), max(1, round(w0 * scale)))
    return {"scale": scale if factor != 1.0 else 1.0 / slide.level_downsamples[level], "level": level,
            "factor": factor, "mpp": slide_mpp, "model_mpp": model_mpp, "shape": tuple(int(v) for v in shape)}


def _reader(view: Any, norm: Callable, factor: float, in_chans: int) -> Callable:
    """``read(y0, y1, x0, x1)`` of the level resampled by ``factor``: ``(h, w, C)`` float32."""
    if factor == 1.0:
        return lambda y0, y1, x0, x1: match_channels(norm(view.read_region(y0, y1, x0, x1)), in_chans)
    hl, wl = view.shape[:2]
    sigma = max(0.0, (1.0 / factor - 1.0) / 2.0)  # anti-aliasing before downsampling
    pad = math.ceil(3 * sigma) + 2
    kernel = None
    if sigma > 0:
        r = math.ceil(3 * sigma)
        g = torch.exp(-(torch.arange(-r, r + 1.0) ** 2) / (2 * sigma**2))
        kernel = g / g.sum()

    def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        ys = (np.arange(y0, y1) + 0.5) / factor - 0.5
        xs = (np.arange(x0, x1) + 0.5) / factor - 0.5
        ly0, ly1 = max(0, math.floor(ys[0]) - pad), min(hl, math.ceil(ys[-1]) + pad + 1)
        lx0, lx1 = max(0, math.floor(xs[0]) - pad), min(wl, math.ceil(xs[-1]) + pad + 1)
        region = np.asarray(norm(view.read_region(ly0, ly1, lx0, lx1)), np.float32)
        t = torch.from_numpy(np.ascontiguousarray(region.transpose(2, 0, 1)))[None]
        if kernel is not None:
            c, k = t.shape[1], kernel.numel()
            t = F.conv2d(F.pad(t, (0, 0, k // 2, k // 2), mode="replicate"), kernel.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
            t = F.conv2d(F.pad(t, (k // 2, k // 2, 0, 0), mode="replicate"), kernel.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
        h, w = t.shape[-2:]
        gy = torch.from_numpy((2 * (ys - ly0) + 1) / h - 1).float()
        gx = torch.from_numpy((2 * (xs - lx0) + 1) / w - 1).float()
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]
        out = F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return match_channels(out[0].numpy().transpose(1, 2, 0), in_chans)

    return read


def prepare_slide(
    slide: Slide,
    out_dir: str | os.PathLike,
    localizer: Localizer,
    *,
    mpp: float | None = None,
    model_mpp: float | None = None,
    scale: float | None = None,
    tissue: bool = True,
    formats: tuple[str, ...] = ("csv", "geojson"),
    stem: str | None = None,
) -> dict[str, Any]:
    """Everything decided before a slide's tiles run: scale, tiles, tissue, the run's signature.

    The result (a *job*: plain values, picklable, sent to Dask workers as is) is what
    :func:`run_bands` and the region tasks of :mod:`liteunet.wsi.regions` work from. The tissue
    mask is saved here as ``<stem>_tissue.png``. A slide finished before with the same signature
    gives ``job["done"]``, its summary.

    Returns:
        ``{"path", "stem", "out_dir", "formats", "plan", "signature", "rows", "cols", "active",
        "tiles", "tissue_fraction", "tissue_mm2", "done"}``: ``rows`` / ``cols`` the tiles along
        each axis over the tissue's bounding box (:func:`~liteunet.localization.tiling.axis_tiles`,
        in model pixels of the whole slide), ``active[band]`` the tiles of that row (band) that
        hold tissue, ``tiles`` how many tiles the whole slide would take without the mask.
    """
    started = time.time()
    path, out_dir = Path(slide.path), Path(out_dir)
    stem = stem or slide_stem(path)
    plan = plan_scale(slide, model_mpp if model_mpp is not None else weights_mpp(localizer), mpp, scale)
    s = localizer.settings
    signature = {
        "slide": path.name, "bytes": path.stat().st_size, "plan": plan,
        "tissue": bool(tissue), "formats": list(formats),
        **{k: s[k] for k in ("model", "threshold", "min_distance", "tile_size", "overlap", "normalize",
                              "percentiles", "subpixel", "precision", "tta")},
    }
    job: dict[str, Any] = {"path": str(path), "stem": stem, "out_dir": str(out_dir), "formats": list(formats),
                           "plan": plan, "signature": signature, "done": None, "started": started}
    stream = PointStream(out_dir, stem, localizer.label_names or ("cell",), tuple(formats), signature)
    if (summary := stream.finished()) is not None:
        job["done"] = {**summary, "status": "done before"}
        return job
    h0, w0 = slide.level_shapes[0]
    # Tissue mask on a thumbnail; its pixels per level-0 pixel.
    mask, mask_scale = None, 1.0
    tissue_fraction = 1.0
    if tissue:
        thumb, _ = slide.thumbnail(MASK_SIDE)
        mask_scale = thumb.shape[1] / w0
        mask = tissue_mask(thumb, min_area=max(4, round(thumb.size / 3 * 1e-4)))
        write_mask_png(mask, out_dir / f"{stem}_tissue.png")
        tissue_fraction = float(mask.mean())
    mpp0 = plan["mpp"]
    tissue_mm2 = tissue_fraction * h0 * w0 * mpp0**2 * 1e-6 if mpp0 else None
    h, w = plan["shape"]
    md = localizer.min_distance
    m = 2 * md + 2  # a core's peak halo and NMS window
    to_mask = mask_scale / plan["scale"]  # mask pixels per model pixel
    # The tiles cover the tissue's bounding box (the whole slide without a mask): a grid laid
    # from the slide's corner would cut the tissue's edges into partly used tiles.
    (y0, y1), (x0, x1) = tissue_extent(mask, to_mask, (h, w), m, localizer.size_divisor)
    tile_h, tile_w = localizer.tile_shape(y1 - y0, x1 - x0, one_pass=False)  # tiles, so that glass can be skipped
    rows = [tuple(y0 + v for v in r) for r in axis_tiles(y1 - y0, tile_h, localizer.overlap, localizer.size_divisor)]
    cols = [tuple(x0 + v for v in c) for c in axis_tiles(x1 - x0, tile_w, localizer.overlap, localizer.size_divisor)]

    def has_tissue(r: tuple, c: tuple) -> bool:
        if mask is None:
            return True
        y0, y1 = math.floor((r[2] - m) * to_mask), math.ceil((r[3] + m) * to_mask)
        x0, x1 = math.floor((c[2] - m) * to_mask), math.ceil((c[3] + m) * to_mask)
        return bool(mask[max(0, y0) : max(0, y1) + 1, max(0, x0) : max(0, x1) + 1].any())

    # What the slide costs without the mask, for the summary's "tiles run of tiles".
    full_h, full_w = localizer.tile_shape(h, w, one_pass=False)
    unmasked = len(axis_tiles(h, full_h, localizer.overlap, localizer.size_divisor)) * len(
        axis_tiles(w, full_w, localizer.overlap, localizer.size_divisor))
    job.update(rows=[tuple(r) for r in rows], cols=[tuple(c) for c in cols], tiles=unmasked,
               active=[[k for k, c in enumerate(cols) if has_tissue(r, c)] for r in rows],
               tissue_fraction=tissue_fraction, tissue_mm2=tissue_mm2,
               size=(h0, w0), backend=slide.backend)
    return job


def tissue_extent(
    mask: np.ndarray | None, to_mask: float, shape: tuple[int, int], margin: int, align: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((y0, y1), (x0, x1))``: the bounding box of the tissue in model pixels, plus ``margin``.

    The start is rounded down to ``align`` (the pooling grid, so tiles stay on the slide's grid);
    the box is clipped to ``shape``. No mask, or no tissue: the whole slide.
    """
    h, w = shape
    if mask is None or not mask.any():
        return (0, h), (0, w)
    out = []
    for axis, n in ((0, h), (1, w)):
        hit = np.flatnonzero(mask.any(axis=1 - axis))
        start = max(0, math.floor(hit[0] / to_mask) - margin) // align * align
        end = min(n, math.ceil((hit[-1] + 1) / to_mask) + margin)
        out.append((start, end))
    return out[0], out[1]


def band_reader(slide: Slide, job: dict, localizer: Localizer) -> Callable[..., Points]:
    """``points(band, tick=None)``: run the model on the tissue tiles of one band, return their peaks.

    ``tick(n)`` is called as each batch of ``n`` tiles finishes.

    The peaks are those of :func:`~liteunet.localization.tiling.tile_peaks`, tile after tile in
    column order, in pixels at the model's scale: a pure function of the band, whichever
    process runs it (a slide's regions on Dask give the points of an in-process run).
    """
    plan = job["plan"]
    view = slide.view(plan["level"])
    norm = region_normalizer(view, localizer.normalize, localizer.percentiles)
    read = _reader(view, norm, plan["factor"], localizer.in_chans)
    rows, cols = job["rows"], job["cols"]
    tile_h, tile_w = rows[0][1] - rows[0][0], cols[0][1] - cols[0][0]

    def points(band: int, tick: Callable[[int], Any] | None = None) -> Points:
        r, found = rows[band], []
        active = [cols[k] for k in job["active"][band]]
        for i in range(0, len(active), localizer.batch_size):
            batch = active[i : i + localizer.batch_size]
            x = np.stack([pad_to(read(r[0], r[1], c[0], c[1]), tile_h, tile_w).transpose(2, 0, 1) for c in batch])
            maps = localizer._forward(torch.from_numpy(np.ascontiguousarray(x)), job["path"])
            found += [tile_peaks(m, r, c, localizer.min_distance, localizer.threshold, localizer.subpixel)
                      for c, m in zip(batch, maps)]
            if tick is not None:
                tick(len(batch))
        return _concat(found)

    return points


def stream_bands(
    job: dict,
    localizer: Localizer,
    band_points: Callable[..., Points],
    callback: Callable[[int, int], None] | None = None,
    on_tiles: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Merge the bands' points in order, stream them to the outputs, checkpoint after each band.

    The one merge of a slide, whoever computed the bands (:func:`band_reader` in this process,
    or the region files of :mod:`liteunet.wsi.regions`): a band's points are merged with those
    pending from the band above (:func:`liteunet.points.suppress_close_points`, owned points
    first), so a cell on a seam is kept once; the band above is then final and written. Resumes
    from the last checkpoint. ``band_points(band, tick)`` gives a band's points and calls
    ``tick(n)`` as ``n`` of its tiles finish; ``callback(bands_done, bands)`` follows each band on
    disk, ``on_tiles(tiles_done, tiles)`` each tick. Returns the slide's summary (``status`` ``"ok"``).
    """
    names = localizer.label_names or ("cell",)
    stream = PointStream(Path(job["out_dir"]), job["stem"], names, tuple(job["formats"]), job["signature"])
    rows, active, plan = job["rows"], job["active"], job["plan"]
    total = sum(map(len, active))
    stream.lock()  # one writer per slide; then the slide may have been finished while we waited
    if (done_before := stream.finished()) is not None:
        stream.close()
        return {**done_before, "status": "done before"}
    try:
        state = stream.resume() or {"band": 0, "pending": [], "counts": {}}
    except BaseException:
        stream.close()
        raise
    band0 = state["band"]
    pending = _points_from(state["pending"])
    counts: dict[str, int] = dict(state["counts"])
    bar = tqdm(total=total, initial=sum(map(len, active[:band0])), desc=job["stem"], unit="tile",
               disable=not localizer.progress, leave=False)
    md = localizer.min_distance
    done = [bar.n]

    def tick(n: int) -> None:
        bar.update(n)
        done[0] += n
        if on_tiles is not None:
            on_tiles(done[0], total)

    try:
        for band in range(band0, len(rows)):
            both = _concat([pending, band_points(band, tick)])
            keep = suppress_close_points(both[0], both[1], md, preferred=both[3])
            n_old = len(pending[0])
            final = tuple(a[:n_old][keep[:n_old]] for a in both)
            pending = tuple(a[n_old:][keep[n_old:]] for a in both)
            _write(stream, final, plan["scale"], counts, names)
            state = {"band": band + 1, "pending": _points_to(pending), "counts": counts}
            if band == len(rows) - 1:
                _write(stream, pending, plan["scale"], counts, names)
                state = {"band": band + 1, "pending": [], "counts": counts}
            stream.checkpoint(state)
            if callback is not None:
                callback(band + 1, len(rows))
    except BaseException:
        stream.close()
        raise
    finally:
        bar.close()
    h0, w0 = job["size"]
    summary = {
        "image": job["path"], "status": "ok", "count": int(sum(counts.values())),
        **{f"count_{n}": int(counts.get(n, 0)) for n in names},
        "width": w0, "height": h0, "mpp": plan["mpp"], "model_mpp": plan["model_mpp"], "level": plan["level"],
        "scale": round(plan["scale"], 6), "backend": job["backend"],
        "tissue_fraction": round(job["tissue_fraction"], 4),
        "tissue_mm2": round(job["tissue_mm2"], 3) if job["tissue_mm2"] else "",
        "tiles": job["tiles"], "tiles_run": total, "regions": job.get("regions", 1),
        "seconds": round(time.time() - job["started"], 2), "error": "",
    }
    try:
        stream.finish(summary)
    except BaseException:
        stream.close()
        raise
    return summary


def localize_slide(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    localizer: Localizer,
    *,
    mpp: float | None = None,
    model_mpp: float | None = None,
    scale: float | None = None,
    tissue: bool = True,
    formats: tuple[str, ...] = ("csv", "geojson"),
    backend: str = "auto",
    stem: str | None = None,
    callback: Callable[[int, int], None] | None = None,
    on_tiles: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Localize the cells of one whole slide into ``out_dir``; resumes an interrupted run.

    Args:
        path: the slide (any format :func:`~liteunet.wsi.reader.open_slide` reads).
        out_dir: folder for ``<stem>.csv``, ``<stem>.geojson``, ``<stem>_tissue.png``,
            ``<stem>.done.json``.
        localizer: the model, ready (:class:`liteunet.Localizer`, made without ``scale`` / ``mpp``).
        mpp: microns per level-0 pixel, overriding the slide's metadata.
        model_mpp: microns per pixel of the model, overriding what its weights record.
        scale: model pixels per level-0 pixel, instead of ``mpp`` / ``model_mpp``.
        tissue: run only the tiles that hold tissue (default); ``False`` runs every tile.
        formats: ``"csv"`` and / or ``"geojson"``.
        backend: slide reader, see :func:`~liteunet.wsi.reader.open_slide`.
        stem: outputs' name stem (default: the slide's file name).
        callback: called as ``callback(bands_done, bands)`` after each band is on disk.
        on_tiles: called as ``on_tiles(tiles_done, tiles)`` as tiles finish (progress, ETA).

    Returns:
        The slide's summary: ``image``, ``status`` (``"ok"``, or ``"done before"`` when a finished
        run was found), ``count`` and ``count_<class>``, ``width`` / ``height`` (level 0),
        ``mpp``, ``level``, ``scale``, ``tissue_fraction``, ``tissue_mm2``, ``tiles`` (of the whole
        slide without the mask), ``tiles_run``, ``seconds``.

    Raises:
        ValueError: the slide cannot be read, or its scale is unknown (see :func:`plan_scale`).

    Example:
        >>> loc = liteunet.Localizer("lite_unet.crc", device="cpu")  # doctest: +SKIP
        >>> localize_slide("slide.svs", "out", loc, model_mpp=0.5)["count"]  # doctest: +SKIP
        123456
    """
    with open_slide(path, backend) as slide:
        job = prepare_slide(slide, out_dir, localizer, mpp=mpp, model_mpp=model_mpp, scale=scale,
                            tissue=tissue, formats=formats, stem=stem)
        if job["done"] is not None:
            return job["done"]
        return stream_bands(job, localizer, band_reader(slide, job, localizer), callback, on_tiles)


def _concat(parts: list) -> Points:
    if not parts:
        return np.zeros((0, 2)), np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, bool)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(4))  # type: ignore[return-value]


def _write(stream: PointStream, pts: Points, scale: float, counts: dict, names: tuple) -> None:
    xy, scores, labels, _ = pts
    order = np.lexsort((xy[:, 0], xy[:, 1]))
    xy, scores, labels = xy[order], scores[order], labels[order]
    # Model pixels back to level-0 pixels (pixel centres map to centres).
    xy0 = (xy + 0.5) / scale - 0.5
    stream.append(xy0, peak_confidences(scores), labels)
    for lab, n in zip(*np.unique(labels, return_counts=True)):
        counts[names[lab]] = counts.get(names[lab], 0) + int(n)


def _points_to(pts: Points) -> list:
    xy, scores, labels, owned = pts
    return [[float(x), float(y), float(s), int(lab), bool(o)] for (x, y), s, lab, o in zip(xy.tolist(), scores.tolist(), labels.tolist(), owned.tolist())]


def _points_from(rows: list) -> Points:
    if not rows:
        return _concat([])
    xy = np.array([[r[0], r[1]] for r in rows], np.float64)
    return xy, np.array([r[2] for r in rows], np.float32), np.array([r[3] for r in rows], np.int64), np.array([r[4] for r in rows], bool)
