"""The *Localize cells* dock widget: ``localize()`` on the selected Image layer.

The run happens in a worker thread (:mod:`._run`), so the viewer stays responsive; a progress
bar counts the tiles and Cancel stops the run between two batches of tiles. The points arrive
as a Points layer (features ``score`` and ``class``, coloured by class); the location map is
kept so the threshold slider re-thresholds it without running the model again.
"""

import threading
from typing import Any

import napari
import napari.layers
import torch
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

import liteunet
from liteunet.pretrained import resolve_settings

from . import _convert, _run

DEFAULT_WEIGHTS = "lite_unet.generalist"
#: The weights choice that enables the file / folder field.
OTHER_WEIGHTS = "file or folder..."
SHARED = "(shared)"
REPLACE, ADD = "replace its points", "add a layer"


class _ProgressBridge(QObject):
    """Carries progress from the worker thread to the widget (a queued Qt signal)."""

    progressed = Signal(int, int)


def _devices() -> list[str]:
    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return ["auto", "cpu", *cuda]


class LocalizeWidget(Container):
    """Localize cells in the selected Image layer with a liteunet model.

    Args:
        napari_viewer: the viewer whose layers the widget reads and adds to.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self._cache = _run.LocalizerCache()
        self._cancel = threading.Event()
        self._bridge = _ProgressBridge()
        self._bridge.progressed.connect(self._on_progress)
        self._stored: dict[str, Any] = {}
        self.worker: Any = None
        # The last run: its points layer, full result (with the map), level factor, marker size.
        self.last: dict[str, Any] | None = None
        # Image layer -> the Points layer its last run made (for "replace").
        self._made: dict[int, napari.layers.Points] = {}

        self.image = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.channel = SpinBox(label="channel", min=0, max=0, tooltip="for a (C, H, W) layer")
        self.level = SpinBox(label="level", min=0, max=0, tooltip="multiscale level to read")
        tags = liteunet.list_models(pretrained=True)
        tags = [DEFAULT_WEIGHTS] + [t for t in tags if t != DEFAULT_WEIGHTS]
        self.weights = ComboBox(label="weights", choices=[*tags, OTHER_WEIGHTS], value=DEFAULT_WEIGHTS)
        self.weights_path = FileEdit(
            label="weights path",
            mode="r",
            filter="*.json *.safetensors *.onnx",
            tooltip="a weights folder (type it), its config.json or model.safetensors, or an .onnx file",
            enabled=False,
        )
        self.tuned_for = ComboBox(
            label="tuned for", choices=[SHARED], tooltip="settings tuned on one validation set"
        )
        self.tta = ComboBox(label="TTA", choices=["none", "flips", "d4"], value="none")
        self.use_stored = CheckBox(text="stored threshold and distance", value=True)
        self.threshold = FloatSpinBox(label="threshold", min=0.0, max=1.0, step=0.01, value=0.5, enabled=False)
        self.min_distance = SpinBox(label="min distance", min=1, max=100, value=3, enabled=False)
        self.context = ComboBox(
            label="context", choices=["exact", "tile"], value="exact",
            tooltip="exact: the points of one whole-image pass, however the image is cut (an image that fits "
            "in memory runs in one pass, which Cancel cannot stop midway); tile: each tile its own "
            "attention context, faster on large images on CPU and cancellable between tiles",
        )
        self.device = ComboBox(label="device", choices=_devices(), value="auto")
        self.mode = ComboBox(label="second run", choices=[REPLACE, ADD], value=REPLACE)
        self.run_button = PushButton(text="Localize")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="tiles", min=0, max=1, value=0)
        self.results = Label(label="result", value="")
        self.rethreshold = FloatSlider(
            label="re-threshold", min=0.0, max=1.0, step=0.01, value=0.5, enabled=False, tracking=False,
            tooltip="finds the peaks again on the stored map; the model does not run again",
        )
        self.extend(
            [
                self.image, self.channel, self.level, self.weights, self.weights_path,
                self.tuned_for, self.tta, self.use_stored, self.threshold, self.min_distance,
                self.context, self.device, self.mode, self.run_button, self.cancel_button, self.progress,
                self.results, self.rethreshold,
            ]
        )

        self.image.changed.connect(self._on_image)
        self.weights.changed.connect(self._on_weights)
        self.weights_path.changed.connect(self._on_weights)
        self.tuned_for.changed.connect(self._show_stored)
        self.tta.changed.connect(self._show_stored)
        self.use_stored.changed.connect(self._on_use_stored)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.rethreshold.changed.connect(self._on_rethreshold)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(lambda _=None: self.reset_choices())
        self.viewer.layers.selection.events.active.connect(self._on_active)

        self.reset_choices()
        self._on_active()
        self._on_weights()

    # --- choices ----------------------------------------------------------------------------------
    def _image_layers(self, _: Any = None) -> list[tuple[str, napari.layers.Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, napari.layers.Image)]

    def _on_active(self, _: Any = None) -> None:
        """Follow the viewer's selection when an Image layer is selected."""
        active = self.viewer.layers.selection.active
        if isinstance(active, napari.layers.Image):
            self.image.value = active

    def _on_image(self, _: Any = None) -> None:
        layer = self.image.value
        if layer is None:
            return
        levels = list(layer.data) if layer.multiscale else [layer.data]
        lead = len(levels[0].shape) - (3 if layer.rgb else 2)
        self.channel.max = max(0, levels[0].shape[0] - 1) if lead == 1 and not layer.rgb else 0
        self.channel.enabled = self.channel.max > 0
        self.level.max = len(levels) - 1
        self.level.enabled = layer.multiscale

    def weights_choice(self) -> str:
        """The weights the next run uses: a zoo tag, or the path typed or picked."""
        if self.weights.value == OTHER_WEIGHTS:
            return str(self.weights_path.value or "")
        return str(self.weights.value)

    def _on_weights(self, _: Any = None) -> None:
        """Read the weights' stored settings (a thread: a Hub tag may need a download)."""
        self.weights_path.enabled = self.weights.value == OTHER_WEIGHTS
        choice = self.weights_choice()
        worker = create_worker(_run.stored_settings, choice, _start_thread=False)
        worker.returned.connect(lambda stored, c=choice: self._got_stored(c, stored))
        worker.start()

    def _got_stored(self, choice: str, stored: dict[str, Any]) -> None:
        if choice != self.weights_choice():
            return  # the user has moved on
        self._stored = stored
        keep = self.tuned_for.value
        names = [SHARED, *sorted(stored.get("tuned_for") or {})]
        self.tuned_for.choices = names
        self.tuned_for.value = keep if keep in names else SHARED
        self._show_stored()

    def _tta_mode(self) -> str | None:
        return None if self.tta.value == "none" else self.tta.value

    def _tuned_name(self) -> str | None:
        return None if self.tuned_for.value in (SHARED, None) else self.tuned_for.value

    def _show_stored(self, _: Any = None) -> None:
        """Show the stored threshold and distance that a run with these choices would use."""
        if not (self.use_stored.value and self._stored):
            return
        try:
            chosen = resolve_settings(self._stored, tuned_for=self._tuned_name(), tta=self._tta_mode())
        except ValueError:
            return
        self.threshold.value = float(chosen.get("threshold", self.threshold.value))
        self.min_distance.value = int(chosen.get("min_distance", self.min_distance.value))

    def _on_use_stored(self, _: Any = None) -> None:
        self.threshold.enabled = self.min_distance.enabled = not self.use_stored.value
        self._show_stored()

    # --- running ----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self.worker is not None

    def request(self) -> _run.RunRequest:
        """The run the current choices ask for."""
        stored = self.use_stored.value
        return _run.RunRequest(
            weights=self.weights_choice(),
            device=self.device.value,
            threshold=None if stored else float(self.threshold.value),
            min_distance=None if stored else int(self.min_distance.value),
            tta=self._tta_mode(),
            tuned_for=self._tuned_name(),
            context=self.context.value,
        )

    def run(self, _: Any = None) -> None:
        """Start localizing the chosen image in a worker thread."""
        if self.running:
            return
        layer = self.image.value
        if layer is None:
            show_error("liteunet: no Image layer to localize; open an image first")
            return
        if not self.weights_choice():
            show_error("liteunet: choose the weights: a zoo tag, a weights folder or a file")
            return
        try:
            image, factor = _convert.layer_image(
                layer.data, rgb=layer.rgb, multiscale=layer.multiscale,
                channel=self.channel.value, level=self.level.value,
            )
        except ValueError as err:
            show_error(f"liteunet: {err}")
            return
        self._cancel.clear()
        self.progress.value, self.progress.max = 0, 1
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.results.value = "running..."
        worker = create_worker(
            _run.run, image, self.request(), self._cache, self._cancel,
            on_progress=self._bridge.progressed.emit, _start_thread=False,
        )
        worker.returned.connect(lambda outcome: self._finish(outcome, layer, factor))
        self.worker = worker
        worker.start()

    def cancel(self, _: Any = None) -> None:
        """Stop the run before its next batch of tiles."""
        self._cancel.set()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.max = max(total, 1)
        self.progress.value = done

    def _finish(self, outcome: _run.RunOutcome, image_layer: Any, factor: tuple[float, float]) -> None:
        self.worker = None
        self.run_button.enabled, self.cancel_button.enabled = True, False
        if outcome.cancelled:
            self.results.value = "cancelled"
            show_info("liteunet: run cancelled")
            return
        if outcome.error is not None or outcome.result is None:
            self.results.value = "failed"
            show_error(f"liteunet: {outcome.error}")
            return
        result = outcome.result
        # Marker size in level-0 pixels: the object size in pixels of the level the model saw.
        size = _convert.point_size(outcome.sigma, int(result.settings["min_distance"])) * max(factor)
        kwargs = _convert.points_layer_kwargs(result, factor, size)
        previous = self._made.get(id(image_layer))
        if self.mode.value == REPLACE and previous is not None and previous in self.viewer.layers:
            points = previous
            _update_points(points, kwargs)
        else:
            points = self.viewer.add_points(
                name=f"{image_layer.name} cells",
                scale=image_layer.scale[-2:],
                translate=image_layer.translate[-2:],
                **kwargs,
            )
            self._made[id(image_layer)] = points
        self.last = {"layer": points, "result": result, "factor": factor, "size": size}
        self._show_result(result)
        threshold = float(result.settings["threshold"])
        with self.rethreshold.changed.blocked():
            self.rethreshold.value = threshold
        self.rethreshold.enabled = result.location_map is not None

    def _show_result(self, result: liteunet.LocalizationResult) -> None:
        text = f"{result.count} cells"
        if len(result.label_names) > 1:
            text += "\n" + ", ".join(f"{k}: {v}" for k, v in result.counts.items())
        if result.ki67_index is not None:
            text += f"\nKi-67 index {100 * result.ki67_index:.1f}%"
        self.results.value = text

    def _on_rethreshold(self, value: float) -> None:
        """Find the points again on the stored map at the slider's threshold."""
        last = self.last
        if last is None or last["layer"] not in self.viewer.layers:
            return
        try:
            result = _convert.rethreshold(last["result"], float(value))
        except ValueError as err:
            show_error(f"liteunet: {err}")
            return
        _update_points(last["layer"], _convert.points_layer_kwargs(result, last["factor"], last["size"]))
        self._show_result(result)


def _update_points(layer: napari.layers.Points, kwargs: dict[str, Any]) -> None:
    """Put new points into an existing Points layer (the layer keeps its place and name)."""
    layer.selected_data = set()
    layer.data = kwargs["data"]
    layer.features = kwargs["features"]
    if len(kwargs["data"]):
        layer.face_color = kwargs["face_color"]
    layer.size = kwargs["size"]
    layer.metadata = {**layer.metadata, **kwargs["metadata"]}
    layer.refresh()

