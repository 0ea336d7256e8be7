"""Slide cohorts: many slides localized in parallel on Dask distributed, one summary.

:func:`localize_slides` runs :func:`~liteunet.wsi.engine.localize_slide` for each slide:

- in this process, one slide after another (no ``client``, ``workers`` or ``scheduler``);
- on a local cluster of ``workers`` worker processes (``distributed.LocalCluster``);
- on an existing cluster, by its ``scheduler`` address or a ``distributed.Client`` you made
  (dask-jobqueue on SLURM, Dask Kubernetes, a GPU per worker with ``dask-cuda``...).

Each worker builds the model once and keeps it for the slides it is given. A slide that fails is
a row with ``status = "failed"`` and its error in ``summary.csv``; the others go on. A slide
finished before (its ``<stem>.done.json`` matches the settings) is not run again, and one
interrupted resumes where it stopped. Dask is optional: ``pip install 'liteunet[dask]'``.

Example:
    >>> from distributed import Client  # doctest: +SKIP
    >>> rows = localize_slides("slides/", "out", model="lite_unet.crc", client=Client("tcp://head:8786"),
    ...                        model_mpp=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import os
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..io_formats import write_rows_csv
from ..localization import LocalizationOptions, Localizer
from .engine import localize_slide, slide_stem
from .reader import is_slide

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


def _run_one(path: str, out_dir: str, model: Any, options: LocalizationOptions, slide_kwargs: dict, threads: int | None) -> dict:
    """One slide, errors caught: the task each worker runs."""
    start = time.perf_counter()
    try:
        if threads:
            torch.set_num_threads(threads)
        key = (model if isinstance(model, (str, os.PathLike)) else id(model), options)
        if key not in _LOCALIZERS:
            _LOCALIZERS[key] = Localizer(model, options)
        return localize_slide(path, out_dir, _LOCALIZERS[key], **slide_kwargs)
    except Exception as err:  # one bad slide must not stop the cohort
        (Path(out_dir) / f"{slide_stem(path)}.error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        return {"image": str(path), "status": "failed", "count": "", "seconds": round(time.perf_counter() - start, 2),
                "error": f"{type(err).__name__}: {err}"}


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
    progress: bool = True,
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
        progress: a bar over slides with the time left for the whole batch.
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
    options = (options or LocalizationOptions()).replace(progress=False) if given else (options or LocalizationOptions())
    paths = expand_slides(slides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stems = [slide_stem(p) for p in paths]
    if len(set(stems)) != len(stems):
        dupes = sorted({s for s in stems if stems.count(s) > 1})
        raise ValueError(f"slides with the same name would write the same outputs: {dupes}; rename or split them")
    rows: list[dict | None] = [None] * len(paths)
    bar = tqdm(total=len(paths), desc="slides", unit="slide", disable=not progress)
    if not given:
        for i, p in enumerate(paths):
            rows[i] = _run_one(str(p), str(out), model, options, slide_kwargs, threads_per_worker)
            bar.update(1)
    else:
        try:
            import distributed
        except ImportError as err:
            raise ImportError("slide cohorts on Dask need distributed: pip install 'liteunet[dask]'") from err
        cluster = None
        if workers is not None:
            cluster = distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                               dashboard_address=None)
            client = distributed.Client(cluster)
            threads_per_worker = threads_per_worker or 1
        elif scheduler is not None:
            client = distributed.Client(scheduler)
        try:
            futures = {
                client.submit(_run_one, str(p), str(out), model, options, slide_kwargs, threads_per_worker,
                              key=f"liteunet-slide-{i}-{slide_stem(p)}", pure=False): i
                for i, p in enumerate(paths)
            }
            for future in distributed.as_completed(futures):
                i = futures[future]
                try:
                    rows[i] = future.result()
                except Exception as err:  # the worker itself died (memory, a killed process)
                    rows[i] = {"image": str(paths[i]), "status": "failed", "error": f"{type(err).__name__}: {err}"}
                bar.update(1)
        finally:
            if cluster is not None or scheduler is not None:
                client.close()
            if cluster is not None:
                cluster.close()
    bar.close()
    done = [r for r in rows if r is not None]
    write_slide_summary(done, out / "summary.csv")
    return done
