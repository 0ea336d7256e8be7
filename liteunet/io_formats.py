"""Writing localization results: CSV, JSON, GeoJSON for QuPath, overlay and heatmap PNGs.

Every writer takes a :class:`liteunet.localization.LocalizationResult` (or its location map) and a
path. Points are written as ``(x, y)`` in pixels of the input image, ``(0, 0)`` the centre of the
top-left pixel, except in GeoJSON, which follows QuPath: ``(0, 0)`` is the top-left *corner* of
the image, so the centre of the top-left pixel is ``(0.5, 0.5)``.

Example:
    >>> res = liteunet.localize("cells.png", model="lite_unet")[0]  # doctest: +SKIP
    >>> write_points(res, "cells.geojson")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .data.io import normalize_image
from .localization.result import LocalizationResult

__all__ = [
    "MAX_PNG_SIDE",
    "POINT_FORMATS",
    "class_colors",
    "render_heatmap",
    "render_overlay",
    "to_geojson",
    "write_csv",
    "write_geojson",
    "write_heatmap",
    "write_json",
    "write_overlay",
    "write_points",
    "write_summary_csv",
]

PathLike = str | os.PathLike
#: Overlay and heatmap PNGs are downsampled to at most this many pixels on their longer side.
MAX_PNG_SIDE = 4096

# QuPath's own class colours for Ki-67 (Positive red, Negative blue), a yellow that stands out on
# H&E and on dark fluorescence for plain cells, then tab10 for anything else.
_NAMED_COLORS = {"positive": (200, 0, 0), "negative": (112, 112, 225), "cell": (255, 215, 0)}
_PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]
# A perceptually ordered dark-to-bright ramp (inferno's anchors) for one-class heatmaps.
_RAMP = np.array(
    [
        (0, 0, 4),
        (40, 11, 84),
        (101, 21, 110),
        (159, 42, 99),
        (212, 72, 66),
        (245, 125, 21),
        (250, 193, 39),
        (252, 255, 164),
    ],
    dtype=np.float64,
)


def class_colors(label_names: Sequence[str]) -> list[tuple[int, int, int]]:
    """An RGB colour per class: QuPath's red/blue for positive/negative, yellow for cells.

    Example:
        >>> class_colors(["positive", "negative"])
        [(200, 0, 0), (112, 112, 225)]
    """
    return [
        _NAMED_COLORS.get(n.lower(), _PALETTE[i % len(_PALETTE)]) for i, n in enumerate(label_names)
    ]


def _parent(path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# --- points ---------------------------------------------------------------------------------------


def write_csv(result: LocalizationResult, path: PathLike) -> Path:
    """One row per point: ``x, y, score, label, class`` (readable by ``read_csv_points``).

    ``x``, ``y`` are input pixels, ``(0, 0)`` the centre of the top-left pixel; ``label`` the
    class index, ``class`` its name. A first line starting with ``#`` says what made the points
    (:attr:`LocalizationResult.provenance`; pandas: ``read_csv(path, comment="#")``).

    Example:
        >>> write_csv(res, "cells.csv")  # doctest: +SKIP
    """
    path = _parent(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(f"# {result.provenance}\n")
        writer = csv.writer(f)
        writer.writerow(["x", "y", "score", "label", "class"])
        for (x, y), s, lab in zip(
            result.xy.tolist(), result.scores.tolist(), result.labels.tolist()
        ):
            writer.writerow([f"{x:.2f}", f"{y:.2f}", f"{s:.4f}", lab, result.label_names[lab]])
    return path


def write_json(result: LocalizationResult, path: PathLike) -> Path:
    """The summary (image, size, settings, counts, Ki-67 index) and every point, one per line.

    Example:
        >>> write_json(res, "cells.json")  # doctest: +SKIP
    """
    path = _parent(path)
    meta = result.to_dict(points=False)
    points = result.to_dict(points=True)["points"]
    head = json.dumps(meta, indent=2)
    assert head.endswith("\n}")
    body = ",\n    ".join(json.dumps(p) for p in points)
    text = head[:-2] + ',\n  "points": [' + (f"\n    {body}\n  " if points else "") + "]\n}\n"
    path.write_text(text, encoding="utf-8")
    return path


def to_geojson(result: LocalizationResult, pixel_offset: float = 0.5) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of Point detections that QuPath imports (v0.4 and later).

    Each point is a ``Feature`` with a ``Point`` geometry and QuPath's properties:
    ``objectType: "detection"``, ``classification: {"name", "color": [r, g, b]}`` and
    ``measurements: {"score": ...}``. QuPath puts ``(0, 0)`` at the image's top-left corner, so
    ``pixel_offset`` (0.5) is added to our pixel-centre coordinates.

    Args:
        result: the points of one image.
        pixel_offset: added to x and y; 0 keeps pixel-centre coordinates.

    Returns:
        The FeatureCollection as a dict (RFC 7946 structure; coordinates are image pixels).

    Example:
        >>> fc = to_geojson(res)  # doctest: +SKIP
        >>> fc["features"][0]["geometry"]  # doctest: +SKIP
        {'type': 'Point', 'coordinates': [10.8, 20.5]}
    """
    colors = class_colors(result.label_names)
    classes = [{"name": n, "color": list(c)} for n, c in zip(result.label_names, colors)]
    features = [
        {
            "type": "Feature",
            "geometry": {
                "type": "Point",
                "coordinates": [round(x + pixel_offset, 3), round(y + pixel_offset, 3)],
            },
            "properties": {
                "objectType": "detection",
                "classification": classes[lab],
                "measurements": {"score": round(s, 5)},
            },
        }
        for (x, y), s, lab in zip(
            result.xy.tolist(), result.scores.tolist(), result.labels.tolist()
        )
    ]
    # A foreign member (RFC 7946, 6.1): QuPath reads the features and leaves it alone.
    return {"type": "FeatureCollection", "liteunet": _provenance(result), "features": features}


def _provenance(result: LocalizationResult) -> dict[str, Any]:
    s = result.settings
    return {
        "liteunet_version": s.get("liteunet_version"),
        "weights": s.get("weights"),
        "settings": {k: s[k] for k in ("threshold", "min_distance", "tta", "tuned_for", "precision", "scale") if k in s},
    }


def write_geojson(result: LocalizationResult, path: PathLike, pixel_offset: float = 0.5) -> Path:
    """Write :func:`to_geojson` to ``path`` (QuPath: File > Import objects from file).

    Example:
        >>> write_geojson(res, "cells.geojson")  # doctest: +SKIP
    """
    path = _parent(path)
    fc = to_geojson(result, pixel_offset)
    # One feature per line: readable, diff-able, and still a single JSON document.
    body = ",\n".join(json.dumps(f, separators=(",", ":")) for f in fc["features"])
    head = json.dumps({k: v for k, v in fc.items() if k != "features"}, separators=(",", ":"))[:-1]
    path.write_text(head + ',"features":[\n' + body + "\n]}\n", encoding="utf-8")
    return path


#: ``--format`` name -> (file suffix, writer).
POINT_FORMATS: dict[str, tuple[str, Callable[[Any, PathLike], Path]]] = {
    "csv": (".csv", write_csv),
    "json": (".json", write_json),
    "geojson": (".geojson", write_geojson),
}


def write_points(result: LocalizationResult, path: PathLike, format: str | None = None) -> Path:
    """Write points as CSV, JSON or GeoJSON, chosen by ``format`` or the file suffix.

    Example:
        >>> write_points(res, "out/cells.geojson")  # doctest: +SKIP
    """
    fmt = (format or Path(path).suffix.lstrip(".")).lower()
    if fmt not in POINT_FORMATS:
        raise ValueError(f"unknown points format {fmt!r} for {path}: use csv, json or geojson")
    return POINT_FORMATS[fmt][1](result, path)


def write_summary_csv(
    results: Sequence[LocalizationResult],
    path: PathLike,
    extra: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """One row per image: status, size, counts per class, Ki-67 index, error.

    ``extra`` (one dict per result) adds or replaces columns, e.g. the ``outputs`` written for
    each image.

    Example:
        >>> write_summary_csv(results, "out/summary.csv")  # doctest: +SKIP
    """
    rows = [r.summary() for r in results]
    for row, more in zip(rows, extra or ()):
        row.update(more)
    return write_rows_csv(rows, path)


def write_rows_csv(rows: Sequence[dict[str, Any]], path: PathLike) -> Path:
    """A CSV of dict rows; its columns are every key in first-seen order (missing cells empty).

    Example:
        >>> write_rows_csv([{"image": "a.png", "count": 3}], "out/summary.csv")  # doctest: +SKIP
    """
    path = _parent(path)
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields or ["image"], restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


# --- images ---------------------------------------------------------------------------------------


def _display_rgb(image: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """uint8 RGB for display and the stride it was subsampled by (1 when small enough)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (1, 3, 4) and img.shape[2] > 4:
        img = np.moveaxis(img, 0, -1)  # a (C, H, W) tensor-like array
    if img.ndim not in (2, 3) or img.size == 0:
        raise ValueError(f"cannot draw on an image of shape {img.shape}")
    k = max(1, math.ceil(max(img.shape[:2]) / max_side))
    img = img[::k, ::k]
    if img.dtype != np.uint8:
        img = (
            (
                normalize_image(
                    np.nan_to_num(img.astype(np.float32) if img.dtype.kind == "f" else img),
                    clip=True,
                )
                * 255
            )
            .round()
            .astype(np.uint8)
        )
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] != 3:
        img = img[..., :3] if img.shape[2] >= 3 else np.repeat(img[..., :1], 3, axis=2)
    return np.ascontiguousarray(img), k


def render_overlay(
    image: np.ndarray,
    result: LocalizationResult,
    image_scale: float = 1.0,
    radius: float = 4.0,
    max_side: int = MAX_PNG_SIDE,
) -> Image.Image:
    """The image with a circle at each point, coloured by class (see :func:`class_colors`).

    Args:
        image: the image, ``(H, W)`` or ``(H, W, C)`` of any dtype (non-uint8 is percentile
            scaled for display).
        result: its points.
        image_scale: pixels of ``image`` per input pixel (e.g. for a slide thumbnail).
        radius: circle radius in pixels of the drawn image.
        max_side: images larger than this are subsampled first.

    Returns:
        An RGB PIL image.

    Example:
        >>> render_overlay(img, res).save("overlay.png")  # doctest: +SKIP
    """
    rgb, k = _display_rgb(image, max_side)
    s = image_scale / k
    canvas = Image.fromarray(rgb)
    draw = ImageDraw.Draw(canvas)
    colors = class_colors(result.label_names)
    width = 1 if max(rgb.shape[:2]) < 512 else 2
    for (x, y), lab in zip(result.xy.tolist(), result.labels.tolist()):
        cx, cy = (x + 0.5) * s - 0.5, (y + 0.5) * s - 0.5
        draw.ellipse(
            (cx - radius, cy - radius, cx + radius, cy + radius), outline=colors[lab], width=width
        )
    return canvas


def write_overlay(
    image: np.ndarray,
    result: LocalizationResult,
    path: PathLike,
    image_scale: float = 1.0,
    radius: float = 4.0,
    max_side: int = MAX_PNG_SIDE,
) -> Path:
    """Save :func:`render_overlay` as a PNG.

    Example:
        >>> write_overlay(img, res, "cells_overlay.png")  # doctest: +SKIP
    """
    path = _parent(path)
    render_overlay(image, result, image_scale, radius, max_side).save(path)
    return path


def render_heatmap(
    location_map: np.ndarray,
    label_names: Sequence[str] | None = None,
    vmax: float | None = None,
    vmin: float | None = None,
    max_side: int = MAX_PNG_SIDE,
) -> Image.Image:
    """A colour image of a location map.

    One class: a dark-to-bright ramp (inferno's colours). Several classes: each class's map
    tints its class colour and the tints add up (Ki-67: red positive, blue negative).

    Args:
        location_map: ``(C, H, W)`` or ``(H, W)`` map (a result's ``location_map``).
        label_names: class names, for the colours (default: Ki-67's for 2 classes).
        vmax: the map value shown brightest; default the map's maximum.
        vmin: the value shown darkest; default ``max(0, map minimum)`` (a trained map's
            background is about 0; an offset map still gets contrast).
        max_side: larger maps are max-pooled to at most this side (peaks stay visible).

    Returns:
        An RGB PIL image.

    Example:
        >>> render_heatmap(res.location_map).save("heatmap.png")  # doctest: +SKIP
    """
    m = np.asarray(location_map, dtype=np.float32)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or m.size == 0:
        raise ValueError(f"expected a (C, H, W) or (H, W) location map, got shape {m.shape}")
    m = np.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0)
    k = max(1, math.ceil(max(m.shape[1:]) / max_side))
    if k > 1:  # max-pool, padding with zeros to a multiple of k
        c, h, w = m.shape
        padded = np.zeros((c, -(-h // k) * k, -(-w // k) * k), np.float32)
        padded[:, :h, :w] = m
        m = padded.reshape(c, padded.shape[1] // k, k, padded.shape[2] // k, k).max(axis=(2, 4))
    top = float(m.max()) if vmax is None else float(vmax)
    bottom = max(0.0, float(m.min())) if vmin is None else float(vmin)
    v = np.clip((m - bottom) / (top - bottom if top > bottom else 1.0), 0.0, 1.0)
    if v.shape[0] == 1:
        pos = v[0] * (len(_RAMP) - 1)
        lo = np.floor(pos).astype(np.int64).clip(0, len(_RAMP) - 2)
        frac = (pos - lo)[..., None]
        rgb = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    else:
        if label_names is None or len(label_names) != v.shape[0]:
            label_names = (
                ["positive", "negative"]
                if v.shape[0] == 2
                else [f"class{i}" for i in range(v.shape[0])]
            )
        colors = np.array(class_colors(label_names), dtype=np.float64)
        rgb = np.einsum("chw,cd->hwd", v.astype(np.float64), colors)
    return Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8))


def write_heatmap(
    location_map: np.ndarray,
    path: PathLike,
    label_names: Sequence[str] | None = None,
    vmax: float | None = None,
) -> Path:
    """Save :func:`render_heatmap` as a PNG.

    Example:
        >>> write_heatmap(res.location_map, "cells_heatmap.png")  # doctest: +SKIP
    """
    path = _parent(path)
    render_heatmap(location_map, label_names, vmax).save(path)
    return path
