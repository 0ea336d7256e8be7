"""What ``localize()`` costs around the model: overhead on a large image, tiling accuracy, slide memory."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import load_split
from ..data.io import read_image
from ..localization import Localizer
from ..metrics import PointMetrics
from ..models._base import copy_model_attributes
from ..samples import sample_path

__all__ = ["demo_image", "localize_overhead", "slide_rss", "tiling_accuracy"]


class _TimedModel(nn.Module):
    """Wraps a localizer's model and adds up the time spent in it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seconds = 0.0
        copy_model_attributes(model, self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.model(x)
        self.seconds += time.perf_counter() - start
        return out


def demo_image(side: int) -> np.ndarray:
    """The bundled BBBC039 sample mirrored out to ``side`` x ``side`` (real nuclei everywhere)."""
    image = read_image(sample_path())
    reps = (-(-side // image.shape[0]), -(-side // image.shape[1])) + (1,) * (image.ndim - 2)
    return np.ascontiguousarray(np.tile(image, reps)[:side, :side])


def localize_overhead(weights: str, side: int, precision: str) -> dict[str, Any]:
    image = demo_image(side)
    loc = Localizer(weights, device="cpu", precision=precision, progress=False)
    loc.model = _TimedModel(loc.model)
    loc([image[:512, :512]])  # warm-up
    loc.model.seconds = 0.0
    start = time.perf_counter()
    (result,) = loc([image])
    total = time.perf_counter() - start
    model_s = loc.model.seconds
    return {
        "image": f"{side}x{side}",
        "precision": loc.precision,
        "tile_size": loc.tile_size,
        "overlap": loc.overlap,
        "cells": int(len(result)),
        "total_s": round(total, 3),
        "model_s": round(model_s, 3),
        "overhead_fraction": round((total - model_s) / model_s, 4),
    }


def tiling_accuracy(weights: str, precision: str = "auto") -> dict[str, Any]:
    """F1 of tiled localization against ground truth on a 2000x2000 mosaic of 16 CRC images."""
    try:
        samples = (load_split("crc", "validation") + load_split("crc", "train"))[:16]
    except (OSError, ValueError, KeyError) as err:
        return {"skipped": f"needs the crc data set: {err}"}
    side = 500
    mosaic = np.zeros((4 * side, 4 * side, 3), np.uint8)
    truth = []
    for k, sample in enumerate(samples):
        r, c = divmod(k, 4)
        mosaic[r * side : (r + 1) * side, c * side : (c + 1) * side] = read_image(sample.image_path)[:side, :side, :3]
        inside = (sample.points < side - 0.5).all(axis=1)
        truth.append(sample.points[inside] + (c * side, r * side))
    points = np.concatenate(truth)
    rows = []
    for tile, overlap in ((2048, 0), (1024, 256), (512, 128)):
        start = time.perf_counter()
        loc = Localizer(weights, device="cpu", precision=precision, tile_size=tile, overlap=overlap, progress=False)
        (result,) = loc([mosaic])
        metrics = PointMetrics(radii=(5, 10))
        metrics.update(result.xy, points)
        scores = metrics.compute()
        rows.append({
            "tile_size": tile, "overlap": overlap, "cells": len(result), "f1@5": round(float(scores["f1@5"]), 4),
            "f1@10": round(float(scores["f1@10"]), 4), "seconds": round(time.perf_counter() - start, 2),
        })
    return {"image": "2000x2000 mosaic of 16 crc images", "truth": int(len(points)), "rows": rows}


def slide_rss(weights: str, side: int, threads: int) -> dict[str, Any]:
    """Peak RSS of ``liteunet localize`` on a ``side`` x ``side`` tiled TIFF, in a child process."""
    try:
        import tifffile
    except ImportError:
        return {"skipped": "needs tifffile: pip install 'liteunet[tiff]'"}
    tile = demo_image(512)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"slide_{side}.tif"

        def tiles():
            for _y in range(0, side, 512):
                for _x in range(0, side, 512):
                    yield tile

        tifffile.imwrite(path, tiles(), shape=(side, side) + tile.shape[2:], dtype=tile.dtype, tile=(512, 512), bigtiff=True)
        cmd = [
            sys.executable, "-c",
            "import sys, torch; torch.set_num_threads(int(sys.argv[1])); "
            "from liteunet.cli import main; from liteunet.bench import peak_rss_mb; code = main(sys.argv[2:]); "
            "print(peak_rss_mb()); sys.exit(code)",
            str(threads), "localize", str(path), "-o", str(Path(tmp) / "out"), "--format", "csv",
            "--model", weights,
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            return {"image": f"{side}x{side}", "error": proc.stderr.strip()[-500:]}
        rss = float(proc.stdout.strip().splitlines()[-1])
    return {"image": f"{side}x{side}", "peak_rss_mb": round(rss, 1), "seconds": round(seconds, 1)}
