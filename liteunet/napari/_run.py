"""One localization run, as the widget's worker thread executes it; no Qt here.

The model is loaded (or reused) and run through :class:`liteunet.Localizer`, so the image goes
through exactly the library's normalization, tiling and peak merging. Progress and cancellation
hook into the model's forward calls: the library calls the model once per batch of tiles, so a
pre-hook can stop a run between batches and a post-hook can count the tiles done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import liteunet
from liteunet import LocalizationResult, Localizer
from liteunet.localization.tiling import axis_tiles
from liteunet.pretrained import load_localization_settings

#: The location map kept for re-thresholding is max-pooled to at most this many pixels a side
#: (at full resolution below it): a whole slide's full map would not fit in memory.
MAP_MAX_SIDE = 8192


class RunCancelled(Exception):
    """Raised inside the model's forward call when the user presses Cancel."""


@dataclass(frozen=True)
class RunRequest:
    """What the widget asks for: the weights and the settings of :func:`liteunet.localize`."""

    weights: str
    device: str = "auto"
    threshold: float | None = None
    min_distance: int | None = None
    tta: str | None = None
    tuned_for: str | None = None
    #: ``"exact"``: an image that fits runs in one pass (cancelled only between images);
    #: ``"tile"``: tiles above 1024 px, so a run can be cancelled between them.
    context: str = "exact"

    def localizer_key(self) -> tuple:
        """Requests with equal keys can share one loaded :class:`liteunet.Localizer`."""
        return (self.weights, self.device, self.threshold, self.min_distance, self.tta, self.tuned_for, self.context)


@dataclass
class RunOutcome:
    """The result of a run, or why there is none (the worker never raises)."""

    result: LocalizationResult | None = None
    error: str | None = None
    cancelled: bool = False
    sigma: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_weights(choice: str | Path) -> str:
    """A zoo tag as is; a weights file as what :class:`liteunet.Localizer` loads.

    A weights folder (``config.json`` + ``model.safetensors``) and an ``.onnx`` file are taken as
    they are; a file inside a weights folder (its ``config.json`` or ``model.safetensors``)
    stands for that folder.

    Raises:
        FileNotFoundError: a path that does not exist.
    """
    text = str(choice).strip()
    path = Path(text).expanduser()
    if text in liteunet.list_models(pretrained=True) or text in liteunet.list_models():
        return text
    if not path.exists():
        raise FileNotFoundError(f"weights not found: {text} (a zoo tag, a weights folder or a file)")
    if path.is_file() and path.suffix.lower() != ".onnx":
        return str(path.parent)
    return str(path)


def stored_settings(weights: str) -> dict[str, Any]:
    """The localization settings stored with the weights (threshold, min_distance, tuned_for...).

    Read without loading the model; ``{}`` when they cannot be read (an ``.onnx`` file, weights
    not downloaded yet): the run then reports what it used.
    """
    try:
        return load_localization_settings(resolve_weights(weights))
    except Exception:  # only a display default: the run reports real problems
        return {}


def count_tiles(shape: tuple[int, ...], localizer: Localizer) -> int:
    """How many tiles ``localizer`` cuts an ``(H, W[, C])`` image into (for the progress bar): one
    when the image runs in one pass."""
    h, w = int(shape[0]), int(shape[1])
    rows, cols = (axis_tiles(n, t, localizer.overlap, localizer.size_divisor) for n, t in zip((h, w), localizer.tile_shape(h, w)))
    return len(rows) * len(cols)


class LocalizerCache:
    """Keeps the last loaded :class:`liteunet.Localizer`, so a second run does not reload it."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._localizer: Localizer | None = None
        self._lock = threading.Lock()

    def get(self, request: RunRequest) -> Localizer:
        with self._lock:
            if self._localizer is None or self._key != request.localizer_key():
                self._localizer = None  # free the old model before loading the next
                self._localizer = Localizer(
                    resolve_weights(request.weights),
                    device=request.device,
                    threshold=request.threshold,
                    min_distance=request.min_distance,
                    tta=request.tta or False,
                    tuned_for=request.tuned_for,
                    context=request.context,
                    return_map=True,
                    map_max_side=MAP_MAX_SIDE,
                    progress=False,
                )
                self._key = request.localizer_key()
            return self._localizer


def run(
    image: np.ndarray,
    request: RunRequest,
    cache: LocalizerCache,
    cancel: threading.Event,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
) -> RunOutcome:
    """Localize one 2D image; errors come back as messages, never raised.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array (see :func:`._convert.layer_image`).
        request: the weights and settings.
        cache: where the loaded model is kept between runs.
        cancel: set by the Cancel button; checked before each batch of tiles.
        on_progress: called with ``(tiles done, tiles in all)`` after each batch.
    """
    try:
        if cancel.is_set():
            raise RunCancelled("cancelled")
        localizer = cache.get(request)
        total = count_tiles(image.shape, localizer)
        done = 0

        def before(module: Any, args: Any) -> None:
            if cancel.is_set():
                raise RunCancelled("cancelled")

        def after(module: Any, args: Any, output: Any) -> None:
            nonlocal done
            done = min(total, done + int(args[0].shape[0]))
            on_progress(done, total)

        on_progress(0, total)
        hooks = [
            localizer.model.register_forward_pre_hook(before),
            localizer.model.register_forward_hook(after),
        ]
        try:
            result = localizer(image)[0]
        finally:
            for hook in hooks:
                hook.remove()
        sigma = stored_settings(request.weights).get("sigma")
        return RunOutcome(result=result, sigma=sigma)
    except RunCancelled:
        return RunOutcome(cancelled=True)
    except Exception as err:  # shown to the user as a notification, with the library's message
        return RunOutcome(error=str(err) or type(err).__name__)
