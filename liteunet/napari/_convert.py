"""Conversions between napari layers and liteunet arrays and results; no Qt here.

napari stores points as ``(row, col)``; liteunet as ``(x, y)`` = ``(col, row)``. Both put
``(0, 0)`` at the centre of the top-left pixel, so the conversion is a column swap (and, for a
multiscale level, the same pixel-centre rescaling :func:`liteunet.localize` uses for pyramid
levels).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from liteunet import LocalizationResult
from liteunet.io_formats import class_colors
from liteunet.points import find_peaks, peak_confidences

#: Key of the plugin's entry in a Points layer's ``metadata``.
METADATA_KEY = "liteunet"


def layer_image(
    data: Any, *, rgb: bool, multiscale: bool, channel: int = 0, level: int = 0
) -> tuple[np.ndarray, tuple[float, float]]:
    """The 2D image to localize from an Image layer's data, and its level's downsample.

    Args:
        data: ``layer.data``: an array, or a list of arrays (one per level) when ``multiscale``.
        rgb: ``layer.rgb``: the last axis holds colour channels, given to the model as they are.
        multiscale: ``layer.multiscale``.
        channel: for a ``(C, H, W)`` (non-RGB) layer, the index of the channel to use.
        level: the multiscale level to read (0 = full resolution).

    Returns:
        ``(image, (fy, fx))``: a NumPy ``(H, W)`` or ``(H, W, C)`` array, and level-0 pixels per
        pixel of the level read (``(1, 1)`` for level 0).

    Raises:
        ValueError: the layer is not 2D (or 2D + one channel axis), or the channel or level does
            not exist.
    """
    levels = list(data) if multiscale else [data]
    if not 0 <= level < len(levels):
        raise ValueError(f"level {level} does not exist: this layer has {len(levels)} level(s)")
    arr, full = levels[level], levels[0]
    spatial = 3 if rgb else 2
    lead = len(arr.shape) - spatial
    if lead == 1 and not rgb:
        if not 0 <= channel < arr.shape[0]:
            raise ValueError(
                f"channel {channel} does not exist: the layer has {arr.shape[0]} channel(s) "
                f"(shape {tuple(arr.shape)})"
            )
        arr = arr[channel]
    elif lead != 0:
        raise ValueError(
            f"liteunet localizes 2D images; this layer has shape {tuple(arr.shape)}. Open a "
            "stack with one layer per channel (channel_axis), or pick a 2D layer"
        )
    # np.asarray reads lazy arrays (dask, zarr) of the chosen level into memory.
    image = np.asarray(arr)
    h, w = image.shape[:2]
    h0, w0 = full.shape[lead : lead + 2] if lead else full.shape[:2]
    return image, (h0 / h, w0 / w)


def to_level0(xy: np.ndarray, factor: tuple[float, float]) -> np.ndarray:
    """``(x, y)`` points of a level with downsample ``factor = (fy, fx)``, in level-0 pixels.

    Pixel centres map to pixel centres, as :func:`liteunet.localize` does for pyramid levels.
    """
    fy, fx = factor
    if (fy, fx) == (1.0, 1.0):
        return xy.astype(np.float32)
    return np.stack([(xy[:, 0] + 0.5) * fx - 0.5, (xy[:, 1] + 0.5) * fy - 0.5], axis=1).astype(
        np.float32
    ).reshape(-1, 2)


def rethreshold(result: LocalizationResult, threshold: float) -> LocalizationResult:
    """``result`` with its points found again on its stored location map at ``threshold``.

    Uses ``result.location_map`` (``localize(..., return_map=True)``) and the result's
    ``min_distance``; the model is not run again. At the result's own threshold the result is
    returned unchanged. Elsewhere the peaks come from :func:`liteunet.points.find_peaks` on the
    whole stitched map: for an image of one tile these are exactly the points ``localize`` would
    give at that threshold; for a tiled image, points near tile borders may differ slightly
    (``localize`` finds them per tile).

    Raises:
        ValueError: the result holds no location map.
    """
    if result.location_map is None:
        raise ValueError("this result has no location map to re-threshold (run with return_map)")
    if float(threshold) == float(result.settings.get("threshold", np.nan)):
        return result
    peaks = find_peaks(
        result.location_map,
        min_distance=int(result.settings.get("min_distance", 3)),
        threshold=float(threshold),
        subpixel=bool(result.settings.get("subpixel", True)),
    )
    # Map pixels -> input pixels (centres to centres); find_peaks already sorts as localize does.
    s = float(result.map_scale)
    xy = ((peaks.xy.astype(np.float64) + 0.5) / s - 0.5).astype(np.float32).reshape(-1, 2)
    return dataclasses.replace(
        result,
        xy=xy,
        scores=peak_confidences(peaks.scores),
        labels=peaks.labels.astype(np.int64),
        settings={**result.settings, "threshold": float(threshold)},
    )


def point_size(sigma: float | None, min_distance: int) -> float:
    """Marker diameter in image pixels: 4 sigma of the training targets' Gaussian, when stored.

    Weights store ``sigma``, the width of the Gaussian blobs their location maps were trained to
    draw at each cell, the closest thing to an object size they know; without it, the peak
    window ``2 * min_distance + 1``.
    """
    size = 4.0 * float(sigma) if sigma else 2.0 * min_distance + 1.0
    return max(size, 3.0)


def points_layer_kwargs(
    result: LocalizationResult, factor: tuple[float, float], size: float
) -> dict[str, Any]:
    """What a Points layer needs to show ``result``: data, features, colours, size, metadata.

    ``factor`` maps the points of a multiscale level to level-0 pixels (see :func:`layer_image`).
    Features: ``score`` (the map value) and ``class`` (the class name); each point's colour is
    its class colour (QuPath's red / blue for Ki-67 positive / negative, yellow for cells).
    """
    xy = to_level0(result.xy, factor)
    names = list(result.label_names)
    palette = np.array([(*c, 255) for c in class_colors(names)], dtype=np.float32) / 255.0
    labels = result.labels.astype(np.int64)
    return {
        "data": xy[:, ::-1].copy(),  # (x, y) -> napari's (row, col)
        "features": {
            "score": result.scores.astype(np.float32),
            "class": np.array([names[i] for i in labels], dtype=object),
        },
        "face_color": palette[labels] if len(labels) else "yellow",
        "size": size,
        "metadata": {
            METADATA_KEY: {
                "label_names": names,
                "settings": dict(result.settings),
                "counts": result.counts,
                "ki67_index": result.ki67_index,
            }
        },
    }


def layer_to_result(
    data: np.ndarray, features: Any, metadata: dict[str, Any] | None, name: str = "points"
) -> LocalizationResult:
    """A Points layer's points as a :class:`liteunet.LocalizationResult`, for the writers.

    Coordinates are the layer's data coordinates (image pixels when the layer came from the
    widget); ``score`` and ``class`` come from the features when present (points added by hand
    get score 1 and the first class). Class names: those the plugin stored in ``metadata``, else
    the classes present, else ``("cell",)``.
    """
    pts = np.asarray(data, dtype=np.float64)
    pts = pts.reshape(len(pts), -1) if pts.size else np.zeros((0, 2))
    n = len(pts)
    stored = ((metadata or {}).get(METADATA_KEY) or {}).get("label_names")
    columns = getattr(features, "columns", features.keys() if isinstance(features, dict) else ())
    classes = (
        [str(c) for c in np.asarray(features["class"], dtype=object)] if "class" in columns else []
    )
    classes = [c for c in classes if c and c != "nan"] if len(classes) == n else []
    names = list(stored) if stored else sorted(set(classes)) or ["cell"]
    for c in classes:  # a class typed in by hand: keep it
        if c not in names:
            names.append(c)
    labels = np.array([names.index(c) for c in classes] if classes else [0] * n, dtype=np.int64)
    scores = (
        np.nan_to_num(np.asarray(features["score"], dtype=np.float32), nan=1.0)
        if "score" in columns
        else np.ones(n, np.float32)
    )
    xy = pts[:, [-1, -2]]  # (..., row, col) -> (x, y)
    return LocalizationResult(
        xy=np.ascontiguousarray(xy, dtype=np.float32).reshape(-1, 2),
        scores=scores.reshape(-1),
        labels=labels,
        image_size=(0, 0),
        source=name,
        label_names=tuple(names),
    )
