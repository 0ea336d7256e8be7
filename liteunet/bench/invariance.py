"""``liteunet bench --invariance``: do the points depend on how the image is cut, or on its orientation?

On a 2000x2000 mosaic of 16 CRC images (the one ``--tiling`` scores), one whole-image pass is the
reference. For each image-context mode (:mod:`liteunet.localization.context`) and tile size it
reports the count against that pass, the share of points within 1 and 3 px of one of its
points, F1 against the annotations, and the seconds against the single pass (the cost ratio).
The flip rows localize the flipped image and flip the points back: the share of points within
3 px of the unflipped result and the mean shift of the matched pairs (signed, x and y).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import torch

from ..localization import Localizer
from ..metrics import PointMetrics, match_points
from .localize_cost import crc_mosaic

__all__ = ["agreement", "flip_agreement", "invariance"]

#: (tile_size, overlap) pairs: the CPU default, the CUDA default, and the smallest sensible one.
TILINGS = ((256, 64), (256, 128), (512, 128), (1024, 256))


def agreement(points: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Count ratio and the share of ``reference`` points matched within 1 and 3 px (one-to-one)."""
    out = {"cells": int(len(points)), "count_vs_single": round(len(points) / max(1, len(reference)) - 1.0, 4)}
    for radius in (1, 3):
        pred, _ = match_points(points, reference, radius)
        out[f"within_{radius}px"] = round(len(pred) / max(1, len(reference)), 4)
    return out


def flip_agreement(points: np.ndarray, flipped: np.ndarray, axis: int, size: int) -> dict[str, float]:
    """Points of a flipped image flipped back (along ``axis``: 0 = x, 1 = y) against the unflipped ones."""
    back = flipped.astype(np.float64).copy()
    back[:, axis] = size - 1 - back[:, axis]
    pred, ref = match_points(back, points, 3)
    shift = back[pred] - points[ref] if len(pred) else np.zeros((0, 2))
    return {
        "within_3px": round(len(pred) / max(1, len(points)), 4),
        "mean_shift_x": round(float(shift[:, 0].mean()) if len(shift) else 0.0, 3),
        "mean_shift_y": round(float(shift[:, 1].mean()) if len(shift) else 0.0, 3),
        "mean_distance": round(float(np.hypot(*shift.T).mean()) if len(shift) else 0.0, 3),
    }


def _run(weights: str, image: np.ndarray, precision: str, **options: Any) -> tuple[np.ndarray, float, Localizer]:
    loc = Localizer(weights, device="cpu", precision=precision, progress=False, **options)
    # Pixels fed to the model, statistics passes included (those that stop early count whole).
    loc.pixels_run = 0  # type: ignore[attr-defined]

    def count(_module: Any, args: tuple) -> None:
        loc.pixels_run += args[0].shape[0] * args[0].shape[-2] * args[0].shape[-1]  # type: ignore[attr-defined]

    handle = loc.model.register_forward_pre_hook(count)
    start = time.perf_counter()
    (result,) = loc([image])
    seconds = time.perf_counter() - start
    handle.remove()
    return result.xy.astype(np.float64), seconds, loc


def invariance(
    weights: str = "lite_unet",
    precision: str = "fp32",
    modes: tuple[str, ...] = ("exact", "tile"),
    tilings: tuple[tuple[int, int], ...] = TILINGS,
    flips: bool = True,
    sample_sizes: tuple[int, ...] = (),
    default_tiling: bool = True,
) -> dict[str, Any]:
    """Counts and points against one whole-image pass for each context mode and tiling, and flip agreement.

    Args:
        weights: pretrained tag or weights folder.
        precision: ``"fp32"`` (default) so that nothing but the tiling differs.
        modes: context modes to compare (``"tile"``, ``"fast"``, ``"exact"``).
        tilings: ``(tile_size, overlap)`` pairs.
        default_tiling: add a row for the CPU default tiling (tiles fitted to the image).
        flips: also measure flip agreement (single pass and default tiling).
        sample_sizes: also ``"fast"`` with statistics from at most this many tiles (``context_tiles``).

    Returns:
        A dict with the image, the single pass (cells, seconds) and one row per mode and
        tiling: cells, ``count_vs_single`` (a fraction), ``within_1px`` / ``within_3px``,
        ``f1@5`` / ``f1@10`` against the annotations, ``seconds`` and ``cost_vs_single``.
    """
    try:
        image, truth = crc_mosaic()
    except (OSError, ValueError, KeyError) as err:
        return {"skipped": f"needs the crc data set: {err}"}
    side = image.shape[0]
    whole = -(-side // 16) * 16
    _run(weights, image[:512, :512], precision)  # warm-up
    single, single_s, loc = _run(weights, image, precision, tile_size=whole, overlap=256)
    single_px = loc.pixels_run

    def f1(points: np.ndarray) -> dict[str, float]:
        metrics = PointMetrics(radii=(5, 10))
        metrics.update(points, truth)
        scores = metrics.compute()
        return {"f1@5": round(float(scores["f1@5"]), 4), "f1@10": round(float(scores["f1@10"]), 4)}

    rows = []
    runs = [(mode, None) for mode in modes] + [("fast", n) for n in sample_sizes]
    for mode, most in runs:
        for tile, overlap in ((None, None),) * default_tiling + tuple(tilings):
            try:
                points, seconds, loc = _run(
                    weights, image, precision, tile_size=tile, overlap=overlap, context=mode, context_tiles=most
                )
            except ValueError as err:  # e.g. an overlap too small for context="exact": a row saying so
                rows.append({"context": mode, "tile_size": tile, "overlap": overlap, "default": False, "refused": str(err)})
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
                continue
            rows.append({
                "context": loc.context, "context_tiles": most, "tile_size": loc.tile_shape(side, side)[0], "overlap": loc.overlap,
                "default": tile is None, **agreement(points, single), **f1(points),
                "seconds": round(seconds, 2), "cost_vs_single": round(seconds / single_s, 3),
                "work_vs_single": round(loc.pixels_run / single_px, 3),
            })
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    out: dict[str, Any] = {
        "image": f"{side}x{side} mosaic of 16 crc images", "weights": weights, "precision": precision,
        "threads": torch.get_num_threads(), "truth": int(len(truth)),
        "single_pass": {"cells": int(len(single)), **f1(single), "seconds": round(single_s, 2)},
        "rows": rows,
    }
    if flips:
        out["flips"] = []
        # The default runs an image that fits in one pass: its flips are then the single pass's.
        default = Localizer(weights, device="cpu", precision=precision, progress=False)
        default_one_pass = default.tile_shape(side, side) == (side, side)
        single_label = "single pass (the default)" if default_one_pass else "single pass"
        runs = [(single_label, {"tile_size": whole, "overlap": 256})]
        if not default_one_pass:
            runs.append(("default", {}))
        if "tile" in modes:
            runs.append(("default tiling", {"context": "tile"}))
        for label, options in runs:
            base, _, loc = _run(weights, image, precision, **options)
            for axis, name in ((0, "x"), (1, "y")):
                flipped = np.ascontiguousarray(np.flip(image, axis=1 - axis))
                points, _, _ = _run(weights, flipped, precision, **options)
                out["flips"].append({
                    "run": label, "context": loc.context, "flip": name, **flip_agreement(base, points, axis, side)
                })
    return out


def invariance_markdown(result: dict[str, Any]) -> str:
    """The result of :func:`invariance` as the Markdown tables the docs quote."""
    if "skipped" in result:
        return f"skipped: {result['skipped']}\n"
    s = result["single_pass"]
    lines = [
        f"{result['image']}, {result['weights']}, {result['precision']}, {result['threads']} thread(s); "
        f"single pass: {s['cells']} cells, F1@5 {s['f1@5']}, F1@10 {s['f1@10']}, {s['seconds']} s",
        "",
        "| context | tile / overlap | count vs single | within 1 px | within 3 px | F1@5 | F1@10 | model pixels vs single | time vs single |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        tiling = f"{r['tile_size']} / {r['overlap']}" + (" (default)" if r["default"] else "")
        context = r["context"] + (f", {r['context_tiles']} tiles" if r.get("context_tiles") else "")
        if "refused" in r:
            lines.append(f"| {context} | {tiling} | refused: {r['refused'].split(':')[0]} | | | | | | |")
            continue
        lines.append(
            f"| {context} | {tiling} | {r['count_vs_single']:+.1%} | {r['within_1px']:.1%} | "
            f"{r['within_3px']:.1%} | {r['f1@5']} | {r['f1@10']} | {r['work_vs_single']:.2f}x | {r['cost_vs_single']:.2f}x |"
        )
    if result.get("flips"):
        lines += ["", "| run | context | flip | within 3 px | mean shift x | mean shift y | mean distance |",
                  "|---|---|---|---|---|---|---|"]
        for r in result["flips"]:
            lines.append(
                f"| {r['run']} | {r['context']} | {r['flip']} | {r['within_3px']:.1%} | {r['mean_shift_x']:+.3f} | "
                f"{r['mean_shift_y']:+.3f} | {r['mean_distance']:.3f} |"
            )
    return "\n".join(lines) + "\n"
