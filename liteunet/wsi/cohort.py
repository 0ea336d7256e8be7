"""Slide cohorts: many slides, or one huge slide cut into regions, localized in parallel on Dask.

:func:`localize_slides` runs each slide:

- in this process, one slide after another (no ``client``, ``workers`` or ``scheduler``);
- on a local cluster of ``workers`` worker processes (``distributed.LocalCluster``);
- on an existing cluster, by its ``scheduler`` address or a ``distributed.Client`` you made
  (dask-jobqueue on SLURM, Dask Kubernetes, a GPU per worker with ``dask-cuda``...).

On Dask, a slide larger than ``region_size`` squared at the model's scale is planned by one task
(scale, tissue mask, tiles), cut into regions of whole tile rows that run as separate tasks, and
merged by a last task into the outputs an in-process run writes (:mod:`liteunet.wsi.regions`).

Each worker builds the model once and keeps it for the tasks it is given. A slide that fails is
a row with ``status = "failed"`` and its error in ``summary.csv`` (traceback in
``<stem>.error.txt``); the others go on. A slide finished before (its ``<stem>.done.json``
matches the settings) is not run again, and one interrupted resumes where it stopped. Progress:
a bar over slides with the time left for the whole batch, and one bar of tiles per slide in
flight with its own time left (workers send their progress to the client as Dask events).
Dask is optional: ``pip install 'liteunet[dask]'``.

Example:
    >>> from distributed import Client  # doctest: +SKIP
    >>> rows = localize_slides("slides/", "out", model="lite_unet.crc", client=Client("tcp://head:8786"),
    ...                        model_mpp=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..io_formats import write_rows_csv
from ..localization import LocalizationOptions, Localizer
from .engine import band_reader, slide_stem, stream_bands
from .reader import is_slide, open_slide
from .regions import REGION_SIZE, merge_regions, plan_regions, run_region

__all__ = ["expand_slides", "localize_slides", "write_slide_summary"]

#: Localizers made in this process, by (model, options): a worker builds each once.
_LOCALIZERS: dict[Any, Localizer] = {}


def expand_slides(inputs: Any) -> list[Path]:
    """Slide files from paths, folders (their slide files, sorted) and globs.

    Example:
        >>> expand_slides([])
        []
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.is_file() and is_slide(p))
        elif not path.exists() and any(c in str(item) for c in "*?["):
            out += sorted(Path(p) for p in glob.glob(str(item), recursive=True) if is_slide(p))
        else:
            out.append(path)
    return out


def _localizer(model: Any, options: LocalizationOptions, threads: int | None) -> Localizer:
    if threads:
        torch.set_num_threads(threads)
    key = (model if isinstance(model, (str, os.PathLike)) else id(model), options)
    if key not in _LOCALIZERS:
        _LOCALIZERS[key] = Localizer(model, options)
    return _LOCALIZERS[key]


def _failed(path: str, out_dir: str, start: float, err: BaseException) -> dict:
    """The summary row of a slide that failed; its traceback goes to ``<stem>.error.txt``."""
    (Path(out_dir) / f"{slide_stem(path)}.error.txt").write_text(traceback.format_exc(), encoding="utf-8")
    return {"image": str(path), "status": "failed", "count": "", "seconds": round(time.perf_counter() - start, 2),
            "error": f"{type(err).__name__}: {err}"}


class _Reporter:
    """``reporter(tiles_done, tiles)`` on a worker: sent to the client as a Dask event (at most one a second)."""

    def __init__(self, topic: str | None, slide: int, part: int, local: Callable | None = None) -> None:
        self.topic, self.slide, self.part, self.local, self.last = topic, slide, part, local, 0.0

    def __call__(self, done: int, total: int) -> None:
        if self.local is not None:
            self.local(self.slide, self.part, done, total)
            return
        now = time.monotonic()
        if self.topic is None or (now - self.last < 1.0 and done < total):
            return
        self.last = now
        try:
            import distributed

            distributed.get_worker().log_event(self.topic, [self.slide, self.part, int(done), int(total)])
        except (ImportError, ValueError):  # not on a worker
            pass


def _slide_task(path: str, out_dir: str, model: Any, options: LocalizationOptions, slide_kwargs: dict,
                threads: int | None, region_size: int | None, report: _Reporter) -> dict:
    """Plan one slide and run it whole, or return its regions (``status`` ``"split"``); errors caught."""
    start = time.perf_counter()
    try:
        loc = _localizer(model, options, threads)
        job, regions = plan_regions(path, out_dir, loc, region_size=region_size or 2**62, **slide_kwargs)
        if job["done"] is not None:
            return job["done"]
        if job["regions"] > 1:
            return {"image": str(path), "status": "split", "job": job, "regions": regions}
        with open_slide(path, job["backend"]) as slide:
            return stream_bands(job, loc, band_reader(slide, job, loc), on_tiles=report)
    except Exception as err:  # one bad slide must not stop the cohort
        return _failed(path, out_dir, start, err)


def _region_task(job: dict, model: Any, options: LocalizationOptions, threads: int | None, b0: int, b1: int,
                 report: _Reporter) -> dict:
    """One region of a split slide; an error is returned (the merge reports it), not raised."""
    try:
        return run_region(job, _localizer(model, options, threads), b0, b1, on_tiles=report)
    except Exception as err:
        return {"bands": (b0, b1), "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}


def _merge_task(job: dict, model: Any, options: LocalizationOptions, threads: int | None,
                regions: list, results: list) -> dict:
    """The last task of a split slide: the regions' points merged into its outputs and summary."""
    start = time.perf_counter()
    try:
        bad = [r for r in results if "error" in r]
        if bad:
            raise RuntimeError(f"region bands {bad[0]['bands'][0]}:{bad[0]['bands'][1]} failed: {bad[0]['error']}\n"
                               f"{bad[0]['traceback']}")
        return merge_regions(job, _localizer(model, options, threads), regions)
    except Exception as err:
        return _failed(job["path"], job["out_dir"], start, err)


class _Progress:
    """A bar over slides (time left for the batch) and a bar of tiles per slide in flight (its time left)."""

    def __init__(self, stems: list[str], show: bool, hook: Callable[[str, int, int], Any] | None) -> None:
        self.stems, self.show, self.hook = stems, show, hook
        self.batch = tqdm(total=len(stems), desc="slides", unit="slide", disable=not show)
        self.parts: dict[int, dict[int, tuple[int, int]]] = {}
        self.bars: dict[int, Any] = {}
        self.finished: set[int] = set()
        self.lock = threading.RLock()

    def tiles(self, slide: int, part: int, done: int, total: int) -> None:
        with self.lock:
            if slide in self.finished:
                return
            parts = self.parts.setdefault(slide, {})
            parts[part] = (done, total)
            self._show(slide, sum(p[0] for p in parts.values()), sum(p[1] for p in parts.values()))

    def split(self, slide: int, regions: list[tuple[int, int]]) -> None:
        """A split slide: ``(first band, tiles)`` of each region, known before they run."""
        with self.lock:
            self.parts[slide] = {b0: (0, n) for b0, n in regions}

    def _show(self, slide: int, done: int, total: int) -> None:
        bar = self.bars.get(slide)
        if bar is None:
            bar = self.bars[slide] = tqdm(total=total, desc=self.stems[slide], unit="tile", leave=False,
                                          disable=not self.show)
        bar.total = total
        bar.update(done - bar.n)
        if self.hook is not None:
            self.hook(self.stems[slide], done, total)

    def event(self, event: Any) -> None:
        """A Dask event from a worker's :class:`_Reporter`."""
        self.tiles(*event[1])

    def slide_done(self, slide: int, row: dict) -> None:
        with self.lock:
            if row.get("status") in ("ok", "done before") and isinstance(row.get("tiles_run"), int):
                self._show(slide, row["tiles_run"], row["tiles_run"])
            self.finished.add(slide)
            if slide in self.bars:
                self.bars.pop(slide).close()
            self.batch.update(1)

    def close(self) -> None:
        with self.lock:
            for bar in self.bars.values():
                bar.close()
            self.batch.close()


def write_slide_summary(rows: list[dict], path: str | os.PathLike) -> Path:
    """``summary.csv``: one row per slide (status, counts, tissue, timing, error)."""
    return write_rows_csv(rows, path)


def localize_slides(
    slides: Any,
    out_dir: str | os.PathLike,
    model: Any = "lite_unet",
    *,
    options: LocalizationOptions | None = None,
    client: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    threads_per_worker: int | None = None,
    region_size: int | None = REGION_SIZE,
    progress: bool = True,
    on_progress: Callable[[str, int, int], Any] | None = None,
    **slide_kwargs: Any,
) -> list[dict]:
    """Localize a cohort of slides (in parallel on Dask); write per-slide outputs and ``summary.csv``.

    Args:
        slides: slide paths, folders or globs (see :func:`expand_slides`).
        out_dir: the outputs: per slide ``<stem>.csv``, ``<stem>.geojson``, ``<stem>_tissue.png``,
            and one ``summary.csv``.
        model: model name, pretrained tag, weights folder or ``nn.Module`` (sent to the workers).
        options: :class:`~liteunet.LocalizationOptions` for the model (device, threshold, tiling...);
            ``scale`` / ``mpp`` belong in ``slide_kwargs`` here.
        client: a ``distributed.Client`` to submit to.
        workers: start a ``LocalCluster`` of this many worker processes (one thread each).
        scheduler: address of a running Dask scheduler (``tcp://host:8786``).
        threads_per_worker: torch threads in each task (default: one per worker process on a
            local cluster, torch's default otherwise).
        region_size: on Dask, a slide larger than this squared (pixels at the model's scale) is
            cut into regions that run as separate tasks (see :mod:`liteunet.wsi.regions`);
            ``None`` runs each slide as one task. In this process slides always run whole.
        progress: bars with the time left: over slides, and over the tiles of each slide.
        on_progress: called as ``on_progress(stem, tiles_done, tiles)`` as a slide's tiles finish
            (from a background thread on Dask).
        **slide_kwargs: passed to :func:`~liteunet.wsi.engine.localize_slide` (``mpp``,
            ``model_mpp``, ``scale``, ``tissue``, ``formats``, ``backend``).

    Returns:
        One summary row (dict) per slide, in input order.

    Example:
        >>> rows = localize_slides("slides/", "out", "lite_unet.crc", workers=2, model_mpp=0.5)  # doctest: +SKIP
        >>> [r["status"] for r in rows]  # doctest: +SKIP
        ['ok', 'ok', 'failed']
    """
    given = sum(x is not None for x in (client, workers, scheduler))
    if given > 1:
        raise ValueError("give one of client, workers, scheduler")
    # Slide tiles each keep their own attention context (a slide's features do not fit in memory
    # for the whole-slide statistics of context="exact"; docs/wsi.md).
    options = (options or LocalizationOptions()).replace(progress=False, context="tile")
    paths = expand_slides(slides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stems = [slide_stem(p) for p in paths]
    if len(set(stems)) != len(stems):
        dupes = sorted({s for s in stems if stems.count(s) > 1})
        raise ValueError(f"slides with the same name would write the same outputs: {dupes}; rename or split them")
    rows: list[dict | None] = [None] * len(paths)
    bars = _Progress(stems, progress, on_progress)
    try:
        if not given:
            for i, p in enumerate(paths):
                rows[i] = _slide_task(str(p), str(out), model, options, slide_kwargs, threads_per_worker, None,
                                      _Reporter(None, i, 0, local=bars.tiles))
                bars.slide_done(i, rows[i])
        else:
            _on_dask(paths, str(out), model, options, slide_kwargs, rows, bars, client=client, workers=workers,
                     scheduler=scheduler, threads=threads_per_worker, region_size=region_size)
    finally:
        bars.close()
    done = [r for r in rows if r is not None]
    write_slide_summary(done, out / "summary.csv")
    return done


def _on_dask(paths: list[Path], out: str, model: Any, options: LocalizationOptions, slide_kwargs: dict,
             rows: list, bars: _Progress, *, client: Any, workers: int | None, scheduler: str | None,
             threads: int | None, region_size: int | None) -> None:
    """Submit the slides (and the regions of split ones) to Dask; fill ``rows`` as they finish."""
    try:
        import distributed
    except ImportError as err:
        raise ImportError("slide cohorts on Dask need distributed: pip install 'liteunet[dask]'") from err
    cluster = None
    if workers is not None:
        cluster = distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
        threads = threads or 1
    elif scheduler is not None:
        client = distributed.Client(scheduler)
    topic = f"liteunet-progress-{uuid.uuid4().hex}"
    client.subscribe_topic(topic, bars.event)
    try:
        tasks = distributed.as_completed()
        which: dict[Any, int] = {}
        for i, p in enumerate(paths):
            f = client.submit(_slide_task, str(p), out, model, options, slide_kwargs, threads, region_size,
                              _Reporter(topic, i, 0), key=f"liteunet-slide-{i}-{slide_stem(p)}", pure=False)
            which[f] = i
            tasks.add(f)
        for future in tasks:
            i = which.pop(future)
            try:
                row = future.result()
            except Exception as err:  # the worker itself died (memory, a killed process)
                row = {"image": str(paths[i]), "status": "failed", "error": f"{type(err).__name__}: {err}"}
            if row.get("status") == "split":
                job, regions = row["job"], row["regions"]
                bars.split(i, [(b0, sum(len(job["active"][b]) for b in range(b0, b1))) for b0, b1 in regions])
                parts = [client.submit(_region_task, job, model, options, threads, b0, b1, _Reporter(topic, i, b0),
                                       key=f"liteunet-region-{i}-{job['stem']}-{b0}", pure=False)
                         for b0, b1 in regions]
                merge = client.submit(_merge_task, job, model, options, threads, regions, parts,
                                      key=f"liteunet-merge-{i}-{job['stem']}", pure=False)
                which[merge] = i
                tasks.add(merge)
                continue
            rows[i] = row
            bars.slide_done(i, row)
    finally:
        client.unsubscribe_topic(topic)
        if cluster is not None or scheduler is not None:
            client.close()
        if cluster is not None:
            cluster.close()
