"""The napari plugin in a real viewer: widget, worker, points, re-threshold, cancel, errors, I/O.

Runs with napari's ``make_napari_viewer`` fixture and pytest-qt under
``QT_QPA_PLATFORM=offscreen``. napari draws with OpenGL, which the offscreen platform takes from
an X display: without ``DISPLAY`` the tests start a virtual one (``tests/virtual_display.py``,
Xvfb) and skip, saying why, when there is none or it gives no OpenGL. Images are small crops of
the bundled sample, so each run is one tile on one CPU thread.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import virtual_display

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytest.importorskip("npe2")

import liteunet  # noqa: E402
from liteunet.data import read_csv_points, read_image  # noqa: E402
from liteunet.io_formats import class_colors  # noqa: E402
from liteunet.napari import _convert, _run, _widget  # noqa: E402
from liteunet.samples import sample_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "liteunet" / "napari" / "napari.yaml"
KI67 = ROOT / "weights" / "lite_unet.ki67"
SHOT = ROOT / "docs" / "napari_widget.png"
WAIT_MS = 120_000


@pytest.fixture(scope="session", autouse=True)
def _display():
    """napari's canvas needs OpenGL from an X display; tests/virtual_display.py starts one."""
    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        why = os.environ.get(virtual_display.REASON_VARIABLE)
        pytest.skip(f"napari needs OpenGL from an X display, and none works here: {why}" if why else
                    "napari needs OpenGL from an X display: no DISPLAY and no Xvfb (apt-get install xvfb)")
    yield


def test_opengl_probe_tells_a_working_display_from_a_dead_one():
    """The start-up check that keeps a display without OpenGL from erroring every viewer test."""
    assert virtual_display.opengl_problem(os.environ["DISPLAY"]) is None
    assert "OpenGL" in virtual_display.opengl_problem(":29999")  # no server there


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small images: one thread is enough


@pytest.fixture
def plugin(npe2pm):
    """The plugin registered from its manifest (the installed metadata may be another checkout's)."""
    with npe2pm.tmp_plugin(manifest=str(MANIFEST)):
        yield npe2pm


@pytest.fixture(scope="module")
def crop():
    """A 160x200 crop of the bundled BBBC039 sample (16-bit nuclei), one tile."""
    return read_image(sample_path())[200:360, 300:500]


@pytest.fixture
def viewer_widget(make_napari_viewer, plugin, crop):
    viewer = make_napari_viewer()
    viewer.add_image(crop, name="nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("liteunet", "Localize cells")
    widget.device.value = "cpu"  # the reference below runs on CPU
    return viewer, widget


def _run_widget(qtbot, widget):
    widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)


def _xy(layer) -> np.ndarray:
    """napari's (row, col) points as liteunet's (x, y)."""
    return np.asarray(layer.data, dtype=np.float64)[:, ::-1]


def _localize(image, **kwargs):
    return liteunet.localize(image, device="cpu", progress=False, **kwargs)[0]


def test_widget_from_plugins_menu(viewer_widget):
    viewer, widget = viewer_widget
    assert isinstance(widget, _widget.LocalizeWidget)
    assert widget.image.value is viewer.layers["nuclei"]
    assert widget.weights.value == "lite_unet.generalist"
    assert set(liteunet.list_models(pretrained=True)) <= set(widget.weights.choices)


def test_points_match_localize(qtbot, viewer_widget, crop):
    viewer, widget = viewer_widget
    _run_widget(qtbot, widget)
    points = widget.last["layer"]
    assert isinstance(points, napari.layers.Points) and points in viewer.layers
    ref = _localize(crop)
    assert len(ref.xy) > 5
    np.testing.assert_allclose(_xy(points), ref.xy, atol=1e-4)
    np.testing.assert_allclose(points.features["score"], ref.scores)
    assert set(points.features["class"]) == {"cell"}
    assert f"{ref.count} cells" in widget.results.value
    assert widget.progress.value == widget.progress.max == 1
    # The stored settings are what the run used, and what the slider starts at.
    assert widget.rethreshold.value == pytest.approx(ref.settings["threshold"])
    np.testing.assert_allclose(points.face_color[:, :3], np.array(class_colors(["cell"]) * len(ref.xy)) / 255, atol=1e-6)


def test_rethreshold_without_rerun(qtbot, viewer_widget, crop):
    _, widget = viewer_widget
    _run_widget(qtbot, widget)
    points, first = widget.last["layer"], _xy(widget.last["layer"])
    cache = widget._cache
    widget._cache = None  # a model run now would fail: the slider must not need one
    # A threshold inside the run's scores (the slider's 0.01 steps), so some points must go;
    # a fixed value would depend on how confident the default weights are on this crop.
    threshold = float(np.round(np.median(widget.last["result"].scores), 2))
    widget.rethreshold.value = threshold
    high = _localize(crop, threshold=threshold)
    np.testing.assert_allclose(_xy(points), high.xy, atol=1e-4)
    assert 0 < len(high.xy) < len(first)
    assert widget.results.value.startswith(f"{len(high.xy)} cells")
    # Back at the run's threshold: the points localize gave.
    widget.rethreshold.value = widget.last["result"].settings["threshold"]
    np.testing.assert_allclose(_xy(points), first, atol=0)
    widget._cache = cache


def test_rethreshold_of_the_map_reproduces_localize(crop):
    res = _localize(crop, return_map=True)
    again = _convert.rethreshold(
        # a copy at another threshold, so rethreshold runs find_peaks instead of returning it
        liteunet.LocalizationResult(**{**res.__dict__, "settings": {**res.settings, "threshold": -1.0}}),
        res.settings["threshold"],
    )
    np.testing.assert_allclose(again.xy, res.xy, atol=1e-5)
    np.testing.assert_allclose(again.scores, res.scores)


def test_second_run_replaces_or_adds(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    _run_widget(qtbot, widget)
    first = widget.last["layer"]
    _run_widget(qtbot, widget)
    assert widget.last["layer"] is first and len(viewer.layers) == 2
    widget.mode.value = _widget.ADD
    _run_widget(qtbot, widget)
    assert widget.last["layer"] is not first and len(viewer.layers) == 3


def test_rgb_multichannel_and_multiscale(qtbot, viewer_widget, crop):
    viewer, widget = viewer_widget
    grey8 = (crop / crop.max() * 255).astype(np.uint8)
    rgb = np.stack([grey8, grey8 // 2, grey8], axis=-1)
    widget.image.value = viewer.add_image(rgb, name="rgb", rgb=True)
    _run_widget(qtbot, widget)
    np.testing.assert_allclose(_xy(widget.last["layer"]), _localize(rgb).xy, atol=1e-4)

    stack = np.stack([crop[::-1], crop])  # (C, H, W): the channel is chosen
    widget.image.value = viewer.add_image(stack, name="stack")
    assert widget.channel.enabled and widget.channel.max == 1
    widget.channel.value = 1
    _run_widget(qtbot, widget)
    np.testing.assert_allclose(_xy(widget.last["layer"]), _localize(crop).xy, atol=1e-4)

    big = np.kron(crop, np.ones((2, 2), crop.dtype))  # level 1 is the crop itself
    widget.image.value = viewer.add_image([big, crop], name="pyramid", multiscale=True)
    widget.level.value = 1
    _run_widget(qtbot, widget)
    expected = _convert.to_level0(_localize(crop).xy, (2.0, 2.0))
    np.testing.assert_allclose(_xy(widget.last["layer"]), expected, atol=1e-4)


@pytest.mark.skipif(not KI67.is_dir(), reason="the Ki-67 weights folder is not in this checkout")
def test_ki67_classes_colours_and_index(qtbot, viewer_widget, crop):
    viewer, widget = viewer_widget
    grey8 = (crop / crop.max() * 255).astype(np.uint8)[:128, :128]
    rgb = np.stack([grey8] * 3, axis=-1)
    widget.image.value = viewer.add_image(rgb, name="rgb", rgb=True)
    widget.weights.value = _widget.OTHER_WEIGHTS
    widget.weights_path.value = KI67 / "config.json"  # a file of the folder stands for it
    _run_widget(qtbot, widget)
    ref = _localize(rgb, model=str(KI67))
    points = widget.last["layer"]
    np.testing.assert_allclose(_xy(points), ref.xy, atol=1e-4)
    assert list(points.features["class"]) == [ref.label_names[i] for i in ref.labels]
    colours = np.array(class_colors(ref.label_names), dtype=float)[ref.labels] / 255
    np.testing.assert_allclose(points.face_color[:, :3], colours, atol=1e-6)
    if ref.ki67_index is not None:
        assert f"Ki-67 index {100 * ref.ki67_index:.1f}%" in widget.results.value
    for name, n in ref.counts.items():
        assert f"{name}: {n}" in widget.results.value


def test_cancel_in_widget(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    widget.run()
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=WAIT_MS)
    assert widget.results.value == "cancelled"
    assert len(viewer.layers) == 1 and widget.last is None


def test_context_choice_reaches_the_run(viewer_widget):
    _, widget = viewer_widget
    assert widget.request().context == "exact"  # localize()'s default
    widget.context.value = "tile"
    assert widget.request().context == "tile"


def test_cancel_between_tiles():
    """Cancel stops a tiled run after the batch in progress, before the next one."""
    # 1040x1392: one pass by default; each tile its own context, 3 x 4 tiles on CPU
    image = np.tile(read_image(sample_path()), (2, 2))
    cancel, calls = _run.threading.Event(), []

    def progress(done, total):
        calls.append((done, total))
        if done >= 1:
            cancel.set()

    request = _run.RunRequest("lite_unet.multi", device="cpu", context="tile")
    cache = _run.LocalizerCache()
    outcome = _run.run(image, request, cache, cancel, progress)
    assert outcome.cancelled and outcome.result is None
    assert calls == [(0, 12), (1, 12)]
    # The progress bar counts what the run does: the default runs this image in one pass.
    exact = _run.RunRequest("lite_unet.multi", device="cpu")
    assert _run.count_tiles(image.shape, cache.get(exact)) == 1


def test_errors_become_notifications(qtbot, viewer_widget, monkeypatch, tmp_path):
    viewer, widget = viewer_widget
    errors = []
    monkeypatch.setattr(_widget, "show_error", errors.append)

    widget.image.value = viewer.add_image(np.zeros((2, 3, 32, 32), np.float32), name="4d")
    widget.run()
    assert not widget.running and "2D" in errors[-1]

    bad = crop_with_nan = np.full((64, 64), np.nan, np.float32)
    widget.image.value = viewer.add_image(crop_with_nan, name="nan")
    _run_widget(qtbot, widget)
    assert "NaN" in errors[-1]  # the library's own message
    del bad

    widget.image.value = viewer.layers["nuclei"]
    widget.weights.value = _widget.OTHER_WEIGHTS
    widget.weights_path.value = tmp_path / "no_such_weights"
    _run_widget(qtbot, widget)
    assert "weights not found" in errors[-1] and "no_such_weights" in errors[-1]
    assert widget.results.value == "failed"
    assert not any(isinstance(layer, napari.layers.Points) for layer in viewer.layers)


def test_writer_round_trip(qtbot, viewer_widget, tmp_path):
    viewer, widget = viewer_widget
    _run_widget(qtbot, widget)
    points = widget.last["layer"]
    xy = _xy(points)

    (csv,) = napari.save_layers(str(tmp_path / "cells.csv"), [points], plugin="liteunet")
    back, labels = read_csv_points(csv)
    np.testing.assert_allclose(back, xy, atol=0.006)  # written with 2 decimals
    assert (labels == 0).all()

    (geojson,) = napari.save_layers(str(tmp_path / "cells.geojson"), [points], plugin="liteunet")
    features = json.loads(Path(geojson).read_text())["features"]
    coords = np.array([f["geometry"]["coordinates"] for f in features])
    np.testing.assert_allclose(coords - 0.5, xy, atol=1e-3)  # QuPath: (0, 0) is a corner
    assert {f["properties"]["classification"]["name"] for f in features} == {"cell"}
    scores = [f["properties"]["measurements"]["score"] for f in features]
    np.testing.assert_allclose(scores, points.features["score"], atol=1e-5)

    # Points drawn by hand, with no features, are written too.
    hand = viewer.add_points(np.array([[3.0, 4.0], [10.0, 20.0]]), name="by hand")
    (csv,) = napari.save_layers(str(tmp_path / "hand.csv"), [hand], plugin="liteunet")
    np.testing.assert_allclose(read_csv_points(csv)[0], [[4, 3], [20, 10]])


def test_sample_data(make_napari_viewer, plugin):
    viewer = make_napari_viewer()
    viewer.open_sample("liteunet", "bbbc039")
    (layer,) = viewer.layers
    np.testing.assert_array_equal(layer.data, read_image(sample_path()))


def test_screenshot_for_the_docs(tmp_path):
    """The docs' picture, taken from a real viewer: the sample, its points and the widget.

    In a child process on the ``xcb`` platform: napari's canvas renders only in a shown window
    on an X display (offscreen, it draws black). It is written into ``docs/`` only with
    ``LITEUNET_UPDATE_SCREENSHOTS=1``, so that a test run leaves the checkout as it was.
    """
    shot_dir = SHOT.parent if os.environ.get("LITEUNET_UPDATE_SCREENSHOTS") == "1" else tmp_path
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "napari_screenshot.py"), str(shot_dir)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    count = int(proc.stdout.split()[-1])
    assert count == _localize(read_image(sample_path())).count
    from PIL import Image

    shot = np.asarray(Image.open(shot_dir / SHOT.name).convert("RGB")).astype(int)
    assert shot.shape[:2] == (760, 1200)
    # The points are drawn: the cell colour (yellow) is on the canvas.
    yellow = np.array(class_colors(["cell"])[0])
    assert (np.abs(shot - yellow).max(axis=-1) < 40).sum() > 5 * count
