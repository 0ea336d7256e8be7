"""Take the napari docs' screenshots from a real viewer (run by ``test_napari.py``).

A separate process because napari's canvas renders only in a window shown on an X display
(the ``xcb`` platform; under ``offscreen`` the OpenGL canvas draws black), while the other
napari tests run offscreen. Usage: ``python tests/napari_screenshot.py OUT_DIR``; writes
``napari_widget.png`` (the window: image, points, widget) and prints the cell count.
"""

import sys
import time
from pathlib import Path

import napari
import npe2
import numpy as np
import torch
from qtpy.QtWidgets import QApplication

import liteunet
from liteunet.data import read_image
from liteunet.samples import sample_path

MANIFEST = Path(__file__).resolve().parents[1] / "liteunet" / "napari" / "napari.yaml"


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    pm = npe2.PluginManager.instance()
    if "liteunet" not in pm:  # the installed metadata may be another checkout's
        pm.register(npe2.PluginManifest.from_file(MANIFEST))
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1200, 760)
    viewer.open_sample("liteunet", "bbbc039")
    _, widget = viewer.window.add_plugin_dock_widget("liteunet", "Localize cells")
    widget.device.value = "cpu"
    widget.run()
    app, start = QApplication.instance(), time.monotonic()
    while widget.running and time.monotonic() - start < 300:
        app.processEvents()
        time.sleep(0.02)
    ref = liteunet.localize(read_image(sample_path()), device="cpu", progress=False)[0]
    points = widget.last["layer"]
    np.testing.assert_allclose(np.asarray(points.data)[:, ::-1], ref.xy, atol=1e-4)
    viewer.layers.selection.active = viewer.layers[0]  # show the image's controls
    viewer.reset_view()
    # Toasts (e.g. napari's notice about the Qt binding) would cover the canvas.
    for toast in app.allWidgets():
        if type(toast).__name__ == "NapariQtNotification":
            toast.close()
    app.processEvents()
    viewer.screenshot(str(Path(out_dir) / "napari_widget.png"), canvas_only=False, flash=False)
    print(ref.count)
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1])
