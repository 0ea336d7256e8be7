"""Writers: a Points layer as CSV or QuPath GeoJSON, through the CLI's own writers.

The layer's data coordinates are written as image pixels: ``x`` = column, ``y`` = row, and in
GeoJSON QuPath's convention, ``(0, 0)`` at the image's top-left corner (see
:mod:`liteunet.io_formats`).
"""

from __future__ import annotations

from typing import Any

from liteunet.io_formats import write_csv, write_geojson

from ._convert import layer_to_result


def _result(data: Any, attributes: dict[str, Any]) -> Any:
    return layer_to_result(
        data,
        attributes.get("features", {}),
        attributes.get("metadata"),
        name=attributes.get("name", "points"),
    )


def write_points_csv(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write one Points layer as CSV: ``x, y, score, label, class`` per point."""
    return [str(write_csv(_result(data, attributes), path))]


def write_points_geojson(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write one Points layer as a QuPath GeoJSON FeatureCollection of detections."""
    return [str(write_geojson(_result(data, attributes), path))]
