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
from ..data.io import normalize_image, read_image
from ..localization import Localizer
from ..metrics import PointMetrics
from ..models._base import copy_model_attributes
from ..samples import sample_path
from ..wsi import glass_slide, localize_slide, write_slide

__all__ = ["crc_mosaic", "demo_image", "localize_overhead", "megapixels_by_size", "slide_rss", "tiling_accuracy", "tissue_mask_cost"]


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


def demo_image(side: int, rgb8: bool = False) -> np.ndarray:
    """The bundled BBBC039 sample mirrored out to ``side`` x ``side`` (real nuclei everywhere).

    With ``rgb8``, as an 8-bit RGB image (its 99.8th percentile to 255, grey in three channels), the
    form most bright-field images arrive in: weights that scale every image by its percentiles
    compute them over three times the values there, where others divide by 255.
    """
    image = read_image(sample_path())
    if rgb8:
        # Well exposed (its 99.8th percentile to 255), so that weights dividing by 255 find the cells too.
        scaled = np.clip(image.astype(np.float64) * (255 / max(float(np.percentile(image, 99.8)), 1.0)), 0, 255)
        image = np.repeat(scaled.astype(np.uint8)[..., None], 3, axis=-1)
    reps = (-(-side // image.shape[0]), -(-side // image.shape[1])) + (1,) * (image.ndim - 2)
    return np.ascontiguousarray(np.tile(image, reps)[:side, :side])


def localize_overhead(weights: str, side: int, precision: str) -> dict[str, Any]:
    image = demo_image(side)
    # Tiles, each its own attention context: the overhead of cutting, peaks and merging.
    loc = Localizer(weights, device="cpu", precision=precision, progress=False, context="tile")
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


def crc_mosaic() -> tuple[np.ndarray, np.ndarray]:
    """A 2000x2000 mosaic of 16 CRC images (the 10 validation images first) and its annotated points.

    Raises what :func:`liteunet.data.load_split` raises when the data set is not there.
    """
    samples = (load_split("crc", "validation") + load_split("crc", "train"))[:16]
    side = 500
    mosaic = np.zeros((4 * side, 4 * side, 3), np.uint8)
    truth = []
    for k, sample in enumerate(samples):
        r, c = divmod(k, 4)
        mosaic[r * side : (r + 1) * side, c * side : (c + 1) * side] = read_image(sample.image_path)[:side, :side, :3]
        inside = (sample.points < side - 0.5).all(axis=1)
        truth.append(sample.points[inside] + (c * side, r * side))
    return mosaic, np.concatenate(truth)


def tiling_accuracy(weights: str, precision: str = "auto") -> dict[str, Any]:
    """F1 of tiled localization against ground truth on a 2000x2000 mosaic of 16 CRC images."""
    try:
        mosaic, points = crc_mosaic()
    except (OSError, ValueError, KeyError) as err:
        return {"skipped": f"needs the crc data set: {err}"}
    rows = []
    for tile, overlap in ((2048, 0), (1024, 256), (512, 128)):
        start = time.perf_counter()
        # Each tile its own attention context: what this measures is the convolutional margin.
        loc = Localizer(
            weights, device="cpu", precision=precision, tile_size=tile, overlap=overlap, progress=False, context="tile"
        )
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
            "--model", weights, "--context", "tile",
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            return {"image": f"{side}x{side}", "error": proc.stderr.strip()[-500:]}
        rss = float(proc.stdout.strip().splitlines()[-1])
    return {"image": f"{side}x{side}", "peak_rss_mb": round(rss, 1), "seconds": round(seconds, 1)}


def _auto_localizer(weights: str, device: str, precision: str, scale_search: bool = True) -> Localizer | None:
    """A localizer with ``object_size="auto"`` when the weights store a learned scale model, else ``None``."""
    try:
        auto = Localizer(weights, device=device, precision=precision, progress=False, object_size="auto", scale_search=scale_search)
    except ValueError:  # weights that record neither a scale model nor an object size
        return None
    return auto if auto.scale_model is not None else None


def megapixels_by_size(
    weights: str,
    sides: tuple[int, ...],
    precision: str = "auto",
    repeats: int = 2,
    device: str = "cpu",
    rgb8: bool = False,
) -> dict[str, Any]:
    """End-to-end megapixels/s of ``localize()`` at each image side, against one model pass on the same pixels.

    The reference is the model alone on the whole image in one forward pass (padded to 16), the
    speed ``localize()`` would have with no tiling, reading or peak finding. The two are timed in
    turn, round after round (a shared machine's drifts hit both alike); best of ``repeats`` each.
    When the weights store a learned scale model, ``object_size="auto"`` is timed too
    (``auto_ratio``: its time over the default's; the demo image is at the training scale, so this
    is what estimating the zoom costs), and without its peak-height search (``auto_no_search_ratio``,
    ``scale_search=False``). ``input_scaling_s``: the weights' input scaling of the
    whole image alone (``"auto"`` divides 8-bit images by 255, ``"percentile"`` computes their
    percentiles first), and its share of the ``localize()`` time. ``rgb8``: the demo image as
    8-bit RGB (:func:`demo_image`).
    """
    rows = []
    loc = Localizer(weights, device=device, precision=precision, progress=False)
    # Each tile its own attention context: tiles above 1024 px, where the default runs one pass.
    tiled = Localizer(weights, device=device, precision=precision, progress=False, context="tile")
    auto = _auto_localizer(weights, device, precision)
    estimate_only = _auto_localizer(weights, device, precision, scale_search=False) if auto else None
    sync = torch.cuda.synchronize if loc.device.type == "cuda" else (lambda: None)
    loc([demo_image(256, rgb8)])  # warm-up
    for side in sides:
        image = demo_image(side, rgb8)
        pad = -(-side // 16) * 16
        # The reference pass needs the pixels' shape, not their scaling.
        grey = (image[..., 0] if image.ndim == 3 else image).astype(np.float32) / 255
        x = torch.from_numpy(np.ascontiguousarray(np.resize(grey, (pad, pad, 1)).transpose(2, 0, 1)))[None]
        x = x.expand(1, loc.in_chans, pad, pad).contiguous().to(loc.device)
        rounds = []
        for _ in range(repeats):
            whole = _timed(lambda: loc([image]))
            own = _timed(lambda: tiled([image]))
            estimated = _timed(lambda: auto([image])) if auto else float("nan")
            unsearched = _timed(lambda: estimate_only([image])) if estimate_only else float("nan")
            with torch.inference_mode():
                single_pass = _timed(lambda: (loc.model(x), sync()))
            # The weights' input scaling of the whole image alone (range, then every value), as localize does it.
            scaling = _timed(lambda: normalize_image(image, *loc.percentiles, mode=loc.normalize))
            rounds.append((whole, own, estimated, unsearched, single_pass, scaling))
        best, best_tiled, best_auto, best_unsearched, single, best_scaling = (min(times) for times in zip(*rounds))
        mp = side * side / 1e6
        rows.append({
            "image": f"{side}x{side}", "tile": loc.tile_shape(side, side)[0], "localize_mp_s": round(mp / best, 3),
            "single_pass_mp_s": round(mp / single, 3), "ratio": round(single / best, 3),
            "tile_context": tiled.tile_shape(side, side)[0], "tile_context_mp_s": round(mp / best_tiled, 3),
            "tile_context_ratio": round(single / best_tiled, 3),
            "input_scaling_s": round(best_scaling, 4), "input_scaling_share": round(best_scaling / best, 4),
            **({"auto_mp_s": round(mp / best_auto, 3), "auto_ratio": round(best_auto / best, 3),
                "auto_no_search_ratio": round(best_unsearched / best, 3)} if auto else {}),
        })
    return {"device": str(loc.device), "precision": loc.precision, "threads": torch.get_num_threads(),
            "image": "8-bit RGB" if rgb8 else "16-bit grey", "normalize": loc.normalize, "rows": rows}


def tissue_mask_cost(
    weights: str, side: int = 3072, fraction: float = 0.3, precision: str = "auto", layout: str = "scattered"
) -> dict[str, Any]:
    """Seconds of :func:`liteunet.wsi.localize_slide` on a slide with ``fraction`` tissue, mask on vs off.

    ``layout``: how the tissue lies on the glass (:func:`liteunet.wsi.glass_slide`). The
    unmasked run also gives the slide's end-to-end megapixels/s (level-0 pixels at the model's
    scale per second, reading, tiles, peaks and writing included).
    """
    try:
        import tifffile  # noqa: F401
    except ImportError:
        return {"skipped": "needs tifffile: pip install 'liteunet[wsi]'"}
    tiles = [demo_image(512)]
    try:
        tiles = [read_image(s.image_path)[..., :3] for s in load_split("crc", "validation")[:8]]
    except (OSError, ValueError, KeyError):
        tiles = [np.repeat(t[..., None], 3, axis=2) if t.ndim == 2 else t[..., :3] for t in tiles]
    canvas = glass_slide(tiles, (side, side), fraction=fraction, layout=layout)
    loc = Localizer(weights, device="cpu", precision=precision, progress=False)
    out: dict[str, Any] = {"slide": f"{side}x{side} at 0.5 um/px", "layout": layout, "tissue_placed": fraction}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_slide(Path(tmp) / "slide.svs", canvas, mpp=0.5)
        for mask in (True, False):
            start = time.perf_counter()
            row = localize_slide(path, Path(tmp) / f"out_{mask}", loc, model_mpp=0.5, tissue=mask)
            out["with_mask" if mask else "without_mask"] = {
                "seconds": round(time.perf_counter() - start, 2), "tiles_run": row["tiles_run"], "tiles": row["tiles"],
                "tissue_fraction": row["tissue_fraction"], "cells": row["count"],
            }
    out["cost_ratio"] = round(out["with_mask"]["seconds"] / out["without_mask"]["seconds"], 3)
    out["without_mask"]["mp_s"] = round(side * side / 1e6 / out["without_mask"]["seconds"], 3)
    return out


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
