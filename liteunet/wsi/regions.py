"""One huge slide split into regions: the regions run as separate tasks, one merge writes the outputs.

A slide larger than ``region_size`` x ``region_size`` pixels at the model's scale is cut into
regions of whole tile rows (bands of :func:`~liteunet.wsi.engine.prepare_slide`), each holding
about that many pixels. The regions are aligned to the tile grid, so the tiles' cores still
partition the slide: every tile runs in exactly one region, with the context it has in a run of
the whole slide.

- :func:`run_region` runs a region's tiles (the same batches as an in-process run) and saves
  each band's tile peaks to ``<stem>.regions/<b0>-<b1>.npz`` (written whole, then renamed: a
  killed task leaves nothing half-written; a region found on disk with the same signature is not
  run again).
- :func:`merge_regions` replays the in-process merge (:func:`~liteunet.wsi.engine.stream_bands`)
  over the saved bands: a cell on a region seam is kept once, exactly as on a band seam, and the
  CSV / GeoJSON are those of an in-process run, byte for byte. Memory holds one band's points.

:func:`~liteunet.wsi.cohort.localize_slides` runs the regions as Dask tasks and the merge as a
task that waits for them; the functions here also run one after another in one process.

Example:
    >>> job, regions = plan_regions("big.svs", "out", loc, region_size=8192, model_mpp=0.5)  # doctest: +SKIP
    >>> for b0, b1 in regions:  # doctest: +SKIP
    ...     run_region(job, loc, b0, b1)
    >>> merge_regions(job, loc, regions)["count"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..localization import Localizer
from .engine import band_reader, prepare_slide, stream_bands
from .reader import open_slide
from .stream import PointStream

__all__ = ["REGION_SIZE", "merge_regions", "plan_regions", "region_bands", "run_region"]

#: Default region side in pixels at the model's scale: a slide larger than this squared is split
#: (at 0.5 um/px, 8192 px is 4.1 mm, so a 20 x 15 mm section makes about 20 regions).
REGION_SIZE = 8192


def region_bands(job: dict, region_size: int) -> list[tuple[int, int]]:
    """``(b0, b1)`` per region: bands ``b0:b1``, whole tile rows holding about ``region_size**2`` pixels.

    One region (``[(0, bands)]``) when the slide at the model's scale is at most that large.

    Example:
        >>> job = {"plan": {"shape": (1000, 1000)}, "rows": [(0, 512, 0, 448), (384, 896, 448, 832), (488, 1000, 832, 1000)]}
        >>> region_bands(job, 2000), region_bands(job, 600)
        ([(0, 3)], [(0, 1), (1, 2), (2, 3)])
    """
    if region_size < 1:
        raise ValueError(f"region_size must be a positive number of pixels, got {region_size!r}")
    h, w = job["plan"]["shape"]
    n = len(job["rows"])
    if h * w <= region_size**2 or n < 2:
        return [(0, n)]
    stride = max(1, job["rows"][1][0] - job["rows"][0][0])  # model pixels per band
    per = max(1, math.ceil(region_size**2 / (w * stride)))
    return [(b, min(b + per, n)) for b in range(0, n, per)]


def plan_regions(
    path: str | os.PathLike, out_dir: str | os.PathLike, localizer: Localizer, *,
    region_size: int = REGION_SIZE, backend: str = "auto", **kwargs: Any,
) -> tuple[dict, list[tuple[int, int]]]:
    """The slide's job (:func:`~liteunet.wsi.engine.prepare_slide`) and the regions still to run.

    Regions wholly before the checkpoint of an interrupted run are left out (their bands are on
    disk already). ``job["done"]`` is set, and the list empty, when the slide was finished before.

    Args:
        path: the slide.
        out_dir: its outputs' folder.
        localizer: the model.
        region_size: region side at the model's scale (see :func:`region_bands`).
        backend: slide reader.
        **kwargs: ``mpp``, ``model_mpp``, ``scale``, ``tissue``, ``formats``, ``stem``.
    """
    with open_slide(path, backend) as slide:
        job = prepare_slide(slide, out_dir, localizer, **kwargs)
    if job["done"] is not None:
        return job, []
    stream = PointStream(Path(out_dir), job["stem"], localizer.label_names or ("cell",), tuple(job["formats"]),
                         job["signature"])
    band0 = (stream.checkpoint_state() or {}).get("band", 0)
    regions = region_bands(job, region_size)
    job["regions"] = len(regions)
    return job, [(b0, b1) for b0, b1 in regions if b1 > band0]


def _region_file(job: dict, b0: int, b1: int) -> Path:
    return Path(job["out_dir"]) / f"{job['stem']}.regions" / f"{b0:06d}-{b1:06d}.npz"


def _stamp(job: dict) -> str:
    return json.dumps({"signature": job["signature"], "rows": job["rows"], "cols": job["cols"],
                       "active": job["active"]}, sort_keys=True)


def _saved(path: Path, stamp: str) -> Any:
    """The region file opened, if it is there and made for this job; else ``None``."""
    try:
        z = np.load(path)
        if str(z["stamp"]) == stamp:
            return z
        z.close()
    except (OSError, ValueError, KeyError, EOFError):
        pass
    return None


def run_region(
    job: dict, localizer: Localizer, b0: int, b1: int, on_tiles: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Run the tissue tiles of bands ``b0:b1`` and save their peaks for :func:`merge_regions`.

    Args:
        job: the slide's job (:func:`plan_regions`).
        localizer: the model (the same settings as the job's).
        b0, b1: the region's bands.
        on_tiles: called as ``on_tiles(tiles_done, tiles)`` as the region's tiles finish.

    Returns:
        ``{"bands": (b0, b1), "tiles": n, "cached": bool}`` (``cached``: found on disk, not run).
    """
    path, stamp = _region_file(job, b0, b1), _stamp(job)
    tiles = sum(len(job["active"][b]) for b in range(b0, b1))
    if (z := _saved(path, stamp)) is not None:
        z.close()
        if on_tiles is not None:
            on_tiles(tiles, tiles)
        return {"bands": (b0, b1), "tiles": tiles, "cached": True}
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if on_tiles is not None:
            on_tiles(done[0], tiles)

    arrays: dict[str, np.ndarray] = {}
    with open_slide(job["path"], job["backend"]) as slide:
        points = band_reader(slide, job, localizer)
        for band in range(b0, b1):
            for key, a in zip(("xy", "scores", "labels", "owned"), points(band, tick)):
                arrays[f"{key}{band}"] = a
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, stamp=np.array(stamp), **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return {"bands": (b0, b1), "tiles": tiles, "cached": False}


def merge_regions(
    job: dict, localizer: Localizer, regions: list[tuple[int, int]] | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Merge the saved regions into the slide's CSV / GeoJSON (those of an in-process run) and summary.

    Resumes from the slide's checkpoint; the region files are removed once the outputs are final.

    Args:
        job: the slide's job.
        localizer: the model (its ``min_distance`` and class names).
        regions: the regions run (default: all of :func:`region_bands` that the files hold).
        callback: called as ``callback(bands_done, bands)`` after each band is on disk.

    Raises:
        FileNotFoundError: a band to merge has no saved region (its region task did not finish).
    """
    if job["done"] is not None:
        return job["done"]
    folder = Path(job["out_dir"]) / f"{job['stem']}.regions"
    stamp = _stamp(job)
    spans = regions or [tuple(int(v) for v in p.stem.split("-")) for p in sorted(folder.glob("*-*.npz"))]
    owner = {b: (b0, b1) for b0, b1 in spans for b in range(b0, b1)}
    opened: dict[tuple[int, int], Any] = {}

    def band_points(band: int, tick: Callable[[int], Any] | None = None) -> tuple:
        span = owner.get(band)
        if span not in opened:
            for z in opened.values():
                z.close()
            opened.clear()
            z = _saved(_region_file(job, *span), stamp) if span else None
            if z is None:
                raise FileNotFoundError(f"{job['path']}: band {band} has no finished region in {folder}; run it again")
            opened[span] = z
        z = opened[span]
        pts = tuple(z[f"{key}{band}"] for key in ("xy", "scores", "labels", "owned"))
        if tick is not None:
            tick(len(job["active"][band]))
        return pts

    try:
        summary = stream_bands(job, localizer, band_points, callback)
    finally:
        for z in opened.values():
            z.close()
    shutil.rmtree(folder, ignore_errors=True)
    return summary
