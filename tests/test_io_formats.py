"""Writers of localization results: CSV, JSON, GeoJSON (RFC 7946 + QuPath), overlay, heatmap."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

from liteunet import LocalizationResult
from liteunet.data import read_csv_points
from liteunet.io_formats import (
    MAX_PNG_SIDE,
    class_colors,
    render_heatmap,
    render_overlay,
    to_geojson,
    write_csv,
    write_geojson,
    write_heatmap,
    write_json,
    write_overlay,
    write_points,
    write_summary_csv,
)


def make_result(
    n: int = 5, names: tuple[str, ...] = ("positive", "negative"), seed: int = 0
) -> LocalizationResult:
    rng = np.random.default_rng(seed)
    return LocalizationResult(
        xy=(rng.random((n, 2)) * [90, 60]).astype(np.float32),
        scores=np.sort(rng.random(n).astype(np.float32))[::-1].copy(),
        labels=rng.integers(0, len(names), n),
        image_size=(60, 90),
        source="slide_01.png",
        label_names=names,
        settings={"threshold": 0.5, "min_distance": 3, "model": "lite_unet.ki67"},
    )


def validate_geojson(obj: object) -> None:
    """Structural checks of RFC 7946 for a FeatureCollection of Points, plus QuPath's properties."""
    assert isinstance(obj, dict) and obj.get("type") == "FeatureCollection"
    assert isinstance(obj.get("features"), list)
    for feature in obj["features"]:
        assert isinstance(feature, dict) and feature.get("type") == "Feature"  # RFC 7946 3.2
        geometry = feature.get("geometry")
        assert isinstance(geometry, dict) and geometry.get("type") == "Point"  # 3.1.2
        coords = geometry.get("coordinates")
        assert isinstance(coords, list) and len(coords) in (2, 3)  # a position: 3.1.1
        assert all(
            isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c)
            for c in coords
        )
        props = feature.get("properties")
        assert props is None or isinstance(props, dict)  # 3.2: an object or null
        if "id" in feature:
            assert isinstance(feature["id"], (str, int, float))
        # QuPath (v0.4+): a detection with a class and numeric measurements.
        assert props["objectType"] == "detection"
        cls = props["classification"]
        assert isinstance(cls["name"], str) and cls["name"]
        assert len(cls["color"]) == 3 and all(
            isinstance(c, int) and 0 <= c <= 255 for c in cls["color"]
        )
        assert all(isinstance(v, (int, float)) for v in props["measurements"].values())


def test_csv_round_trips_through_read_csv_points(tmp_path):
    res = make_result()
    path = write_csv(res, tmp_path / "sub" / "points.csv")
    with open(path, newline="") as f:
        assert f.readline().startswith("# liteunet ")  # what made the points
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["x", "y", "score", "label", "class"]
    assert [r["class"] for r in rows] == [res.label_names[i] for i in res.labels]
    pts, labels = read_csv_points(path)
    np.testing.assert_allclose(pts, res.xy, atol=0.006)
    np.testing.assert_array_equal(labels, res.labels)


def test_json_holds_summary_settings_and_points(tmp_path):
    res = make_result()
    data = json.loads(write_json(res, tmp_path / "points.json").read_text())
    assert data["image"] == "slide_01.png" and data["image_size"] == {"height": 60, "width": 90}
    assert data["count"] == 5 and sum(data["counts"].values()) == 5
    assert data["ki67_index"] == pytest.approx(res.ki67_index)
    assert data["settings"]["model"] == "lite_unet.ki67"
    assert [p["label"] for p in data["points"]] == res.labels.tolist()
    np.testing.assert_allclose([[p["x"], p["y"]] for p in data["points"]], res.xy, atol=0.006)


def test_geojson_is_valid_and_qupath_shaped(tmp_path):
    res = make_result()
    fc = to_geojson(res)
    validate_geojson(fc)
    coords = np.array([f["geometry"]["coordinates"] for f in fc["features"]])
    np.testing.assert_allclose(coords, res.xy + 0.5, atol=1e-3)  # QuPath: (0, 0) is a corner
    names = [f["properties"]["classification"]["name"] for f in fc["features"]]
    assert names == [res.label_names[i] for i in res.labels]
    colors = [f["properties"]["classification"]["color"] for f in fc["features"]]
    assert colors == [list(class_colors(res.label_names)[i]) for i in res.labels]
    scores = [f["properties"]["measurements"]["score"] for f in fc["features"]]
    np.testing.assert_allclose(scores, res.scores, atol=1e-4)
    on_disk = json.loads(write_geojson(res, tmp_path / "a.geojson").read_text())
    validate_geojson(on_disk)
    assert on_disk == fc
    centred = to_geojson(res, pixel_offset=0.0)
    np.testing.assert_allclose(
        centred["features"][0]["geometry"]["coordinates"], res.xy[0], atol=1e-3
    )


def test_empty_results_write_valid_files(tmp_path):
    res = make_result(n=0, names=("cell",))
    validate_geojson(json.loads(write_geojson(res, tmp_path / "e.geojson").read_text()))
    assert json.loads(write_json(res, tmp_path / "e.json").read_text())["points"] == []
    assert read_csv_points(write_csv(res, tmp_path / "e.csv"))[0].shape == (0, 2)
    assert res.ki67_index is None and res.counts == {"cell": 0}


def test_write_points_by_suffix(tmp_path):
    res = make_result()
    for suffix in ("csv", "json", "geojson"):
        assert write_points(res, tmp_path / f"p.{suffix}").is_file()
    with pytest.raises(ValueError, match="unknown points format"):
        write_points(res, tmp_path / "p.xml")


def test_summary_csv_lists_failures(tmp_path):
    ok = make_result()
    bad = LocalizationResult.failed("broken.png", "broken.png: not an image", ok.label_names)
    with open(write_summary_csv([ok, bad], tmp_path / "summary.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert rows[0]["count"] == "5" and rows[1]["error"] == "broken.png: not an image"
    assert {"count_positive", "count_negative", "ki67_index"} <= set(rows[0])


def test_class_colors():
    assert class_colors(["positive", "negative"]) == [(200, 0, 0), (112, 112, 225)]
    assert len(set(class_colors([f"c{i}" for i in range(10)]))) == 10


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((60, 90), np.uint8),
        np.zeros((60, 90, 3), np.uint8),
        np.zeros((60, 90, 4), np.uint8),
        np.linspace(0, 4000, 60 * 90).reshape(60, 90).astype(np.uint16),
        np.zeros((60, 90, 1), np.float32),
    ],
    ids=["grey", "rgb", "rgba", "uint16", "float"],
)
def test_overlay_draws_class_colours(tmp_path, image):
    res = make_result(n=3)
    res.xy[:] = [[20, 20], [50, 30], [70, 45]]
    res.labels[:] = [0, 1, 0]
    path = write_overlay(image, res, tmp_path / "o.png", radius=4)
    drawn = np.asarray(Image.open(path))
    assert drawn.shape == (60, 90, 3)
    colors = class_colors(res.label_names)
    for (x, y), lab in zip(res.xy.astype(int), res.labels):
        ring = drawn[y - 5 : y + 6, x - 5 : x + 6].reshape(-1, 3)
        assert (ring == colors[lab]).all(1).any()


def test_overlay_of_large_images_is_downsampled():
    res = make_result(n=1, names=("cell",))
    img = np.broadcast_to(np.zeros((1, 1), np.uint8), (MAX_PNG_SIDE * 2 + 10, 100))
    out = render_overlay(img, res)
    assert max(out.size) <= MAX_PNG_SIDE


def test_heatmap_single_and_two_class(tmp_path):
    m = np.zeros((1, 40, 50), np.float32)
    m[0, 10, 20] = 1.0
    img = np.asarray(Image.open(write_heatmap(m, tmp_path / "h.png")))
    assert img.shape == (40, 50, 3)
    assert img[10, 20].sum() > img[0, 0].sum()  # the peak is the brightest
    two = np.zeros((2, 40, 50), np.float32)
    two[0, 5, 5] = two[1, 30, 30] = 1.0
    rgb = np.asarray(render_heatmap(two, ("positive", "negative")))
    assert rgb[5, 5, 0] > rgb[5, 5, 2] and rgb[30, 30, 2] > rgb[30, 30, 0]
    big = np.zeros((1, MAX_PNG_SIDE + 100, 20), np.float32)
    big[0, -1, -1] = 1.0
    pooled = render_heatmap(big)
    assert max(pooled.size) <= MAX_PNG_SIDE
    assert np.asarray(pooled)[-1, -1].sum() > 0  # max-pooling keeps the peak
    with pytest.raises(ValueError, match="location map"):
        render_heatmap(np.zeros((1, 2, 3, 4)))
