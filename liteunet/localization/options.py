"""The options of ``localize()`` and ``Localizer``: one checked object, one place for each rule.

:class:`LocalizationOptions` holds what the caller asked for and checks everything that does
not depend on the model; :class:`~liteunet.localization.localizer.Localizer` then resolves the
rest against the model (stored settings, precision, tiling defaults).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from .._checks import check_int
from ..inference import TTA_MODES, OnnxModel, cpu_has_native_bf16
from ..pretrained import load_inference_checks
from .context import CONTEXT_MODES
from .inputs import DEFAULT_MAX_PIXELS

__all__ = ["PRECISION_ALIASES", "LocalizationOptions", "resolve_precision", "resolve_tta", "warn_unguarded"]

PRECISION_ALIASES = {
    "fp32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16", "int8": "int8",
}


@dataclass(frozen=True)
class LocalizationOptions:
    """How to localize: every keyword of :func:`~liteunet.localize` and ``Localizer``, checked.

    ``None`` means "what the weights store" (threshold, minimum distance) or "the device's
    default" (tiling, batch size). Checks that need the model (multiples of its pooling grid,
    stored settings) happen when a ``Localizer`` is made.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        threshold: minimum peak height; default: the value stored with the weights (0.5
            without one).
        min_distance: peaks closer than this (pixels, Chebyshev) are merged; default: stored
            with the weights (3 without one).
        tile_size: side of the tiles fed to the model, a multiple of 16. Default: with
            ``context="exact"`` (the default) an image runs in one pass whenever that pass fits
            (about 640 bytes per pixel in float32: in a quarter of the machine's memory on CPU,
            some 9 megapixels with 24 GB; in half the free memory of a GPU); with another
            context, images up to 1024 x 1024
            (:data:`~liteunet.localization.tiling.SINGLE_PASS_SIDE`). Larger images go in
            tiles of at most 1024 on CUDA, 512 on CPU (bounded memory), fitted to the image
            (:func:`~liteunet.localization.tiling.fit_tile`: an 1100-px side is three 464-px
            tiles, not three 512-px ones). A value given is used as is: tiles of that side.
        overlap: pixels shared by neighbouring tiles, a multiple of 16; each tile's points come
            from its core, ``overlap / 2`` away from its inner edges. Default 256 on CUDA (covers
            the 124-px receptive radius of Lite-UNet's convolutions), 128 on CPU (see :mod:`liteunet.localization.tiling`
            for why that is enough).
        batch_size: tiles per forward pass (default 4 on CUDA, 1 on CPU).
        precision: ``"auto"`` (default): the fastest precision kept within the F1 guard: bf16
            on CUDA (fp16 without bf16 support); on CPU bf16 when the CPU has native bf16 and
            the weights record that bf16 keeps F1 at 5 and 10 px within 0.5 points of float32
            (measured with the same ``tta`` mode, and compiled with ``compile=True``, where the
            weights record those), else float32. ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA)
            force one; ``"int8"`` needs an int8 ONNX file as ``model`` (``liteunet export onnx
            --int8``).
        channels_last: NHWC activations (default on: faster convolutions on CPU and GPU).
        compile: ``torch.compile`` the model (each new tile shape compiles once, slowly).
        normalize: ``None`` (default): the way the weights were trained, as their config records
            (``"percentile"`` for weights trained on per-image percentiles, else ``"auto"``).
            ``"auto"``: uint8 / 255, bool as 0/1, other dtypes percentile-normalized;
            ``"percentile"``: percentiles for uint8 too; ``"none"``: values used as given
            (already normalized floats); ``"nuclear"``: one plane in which nuclei are bright
            (light absorbed by haematoxylin and DAB in bright-field colour, intensity of fluorescence).
        percentiles: ``(pmin, pmax)`` mapped to 0 and 1 by percentile normalization.
        scale: resize factor applied before the model (e.g. 0.5 for 40x images given to a 20x
            model); points come back in input pixels.
        mpp: microns per pixel of the input, instead of ``scale``: ``scale = mpp / model_mpp``
            with the ``mpp`` stored with the weights.
        object_size: the typical object (nucleus) diameter in the input, in pixels, instead of
            ``scale``: ``scale = trained / object_size`` with the object size stored with the
            weights (``localization.object_size``); ``"auto"`` undoes the zoom the weights' learned
            scale model predicts for each image (:class:`liteunet.inference.ScaleModel`, when the
            weights store one), or else estimates the object size in each image
            (:func:`liteunet.object_size.estimate_object_size`, the estimator the stored size was
            measured with). Each result's ``settings`` records the size and the scale used.
        scale_search: with ``object_size="auto"`` and a stored scale model, also localize up to
            four regions of ~512 model pixels at five scales around its estimate (x1/1.6 to x1.6)
            and keep the scale at which the network's peaks are highest
            (:func:`liteunet.inference.search_scale`; ``settings`` records the model's estimate as
            ``scale_estimated``). ``False``: the estimate alone, five region passes cheaper.
        level: pyramid level of TIFF inputs (0 = full resolution); points come back in level-0
            pixels.
        return_map: keep the location map in each result: ``True`` at full (model) resolution,
            an integer ``k`` max-pooled by ``k`` (for large images).
        map_max_side: when set, downsample the returned map so its longer side is at most this.
        fuse: fold difference convolutions and BatchNorm first (exact; faster).
        subpixel: refine points to sub-pixel precision (see :func:`liteunet.points.find_peaks`).
        tta: test-time augmentation (:mod:`liteunet.tta`): average each tile's map over
            ``"flips"`` (4 views) or ``"d4"`` (8 views: flips and 90-degree rotations; also
            ``True``). 4 or 8 times the compute for a more accurate map; uses the threshold and
            minimum distance stored for that mode with the weights, when there are some.
        tuned_for: use the threshold and minimum distance the weights store for one of their
            validation sets (e.g. ``"mbm"`` with ``lite_unet.multi``), chosen on that set alone,
            instead of the pair shared by all; for images like that set's. The model card lists
            the names. ``threshold`` and ``min_distance`` still override.
        max_pixels: refuse images with more pixels than this before allocating anything.
        context: where the image-wide terms of the model's attention (CBAM's channel pooling,
            GCA's average over positions) come from when an image is cut into tiles.
            ``"exact"`` (default): from the whole image, so the points do not depend on the
            cut: an image that fits runs in one pass; tiles (a ``tile_size`` given, or an image
            too large) get the whole image's statistics from one statistics pass per attention
            layer (about 5x the work of one pass), and need ``overlap >= 128``. ``"tile"``:
            each tile its own terms, no extra pass (up to ~1.5x faster above 2048 px on CPU,
            but more cells the smaller the tiles); ``"fast"``: one statistics pass, then the
            final pass (about twice the work; closer to one pass than ``"tile"``, not equal).
            See :mod:`liteunet.localization.context`; ``liteunet bench --invariance`` measures
            them. Compiled and ONNX models tile with ``"tile"`` (the hooks cannot reach them),
            but still run an image that fits in one pass.
        context_tiles: gather the statistics from at most this many tiles, spread evenly over
            the image (default: all of them).
        progress: show tqdm bars (over images, and over tiles of large images).


    Raises:
        ValueError: an option out of range or of the wrong kind; the message names it.
        TypeError: an unknown option name.

    Example:
        >>> LocalizationOptions(tta=True).tta
        'd4'
        >>> LocalizationOptions(normalize="percentile", tile_size=256).tile_size
        256
    """

    device: str | torch.device = "auto"
    threshold: float | None = None
    min_distance: int | None = None
    tile_size: int | None = None
    overlap: int | None = None
    batch_size: int | None = None
    precision: str | None = "auto"
    channels_last: bool | None = None
    compile: bool = False
    normalize: str | None = None
    percentiles: tuple[float, float] = (1.0, 99.8)
    scale: float | None = None
    mpp: float | None = None
    object_size: float | str | None = None
    scale_search: bool = True
    level: int = 0
    return_map: bool | int = False
    map_max_side: int | None = None
    subpixel: bool = True
    fuse: bool = True
    tta: bool | str | None = False
    tuned_for: str | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    progress: bool = True
    context: str = "exact"
    context_tiles: int | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        if self.threshold is not None:
            if isinstance(self.threshold, bool) or not isinstance(self.threshold, numbers.Real) or math.isnan(self.threshold):
                raise ValueError(f"threshold must be a number, got {self.threshold!r}")
            set_("threshold", float(self.threshold))
        for name, minimum in (("min_distance", 1), ("tile_size", 1), ("overlap", 0), ("batch_size", 1), ("map_max_side", 1)):
            if getattr(self, name) is not None:
                set_(name, check_int(name, getattr(self, name), minimum))
        set_("level", check_int("level", self.level, 0))
        if self.normalize not in (None, "auto", "percentile", "none", "nuclear"):
            raise ValueError(
                f"normalize must be 'auto', 'percentile', 'none' or 'nuclear', got {self.normalize!r}")
        try:
            pmin, pmax = (float(p) for p in self.percentiles)
        except (TypeError, ValueError):
            raise ValueError(f"percentiles must be two numbers (pmin, pmax), got {self.percentiles!r}") from None
        if not 0.0 <= pmin < pmax <= 100.0:
            raise ValueError(f"need 0 <= pmin < pmax <= 100, got percentiles={self.percentiles}")
        set_("percentiles", (pmin, pmax))
        given = [name for name in ("scale", "mpp", "object_size") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of scale, mpp and object_size, not {' and '.join(given)}")
        size = self.object_size
        if size is not None and size != "auto" and not (
            isinstance(size, numbers.Real) and not isinstance(size, bool) and math.isfinite(size) and size > 0
        ):
            raise ValueError(f"object_size must be 'auto' or a positive number (pixels), got {size!r}")
        if self.scale is not None and not (isinstance(self.scale, numbers.Real) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive number, got {self.scale!r}")
        if self.mpp is not None and not (isinstance(self.mpp, numbers.Real) and math.isfinite(self.mpp) and self.mpp > 0):
            raise ValueError(f"mpp must be a positive number (microns per pixel), got {self.mpp!r}")
        if not isinstance(self.return_map, bool):
            check_int("return_map", self.return_map, 1)
        if self.precision is not None and self.precision != "auto" and self.precision not in PRECISION_ALIASES:
            raise ValueError(f"precision must be 'auto', 'fp32', 'bf16', 'fp16' or 'int8', got {self.precision!r}")
        set_("tta", resolve_tta(self.tta))
        if self.context not in CONTEXT_MODES:
            raise ValueError(f"context must be one of {', '.join(map(repr, CONTEXT_MODES))}, got {self.context!r}")
        if self.context_tiles is not None:
            set_("context_tiles", check_int("context_tiles", self.context_tiles, 1))

    def replace(self, **changes: Any) -> LocalizationOptions:
        """A copy with ``changes`` applied, checked again."""
        return dataclasses.replace(self, **changes)


def resolve_precision(
    precision: str | None, device: torch.device, model: nn.Module, tta: str | None = None, compiled: bool = False
) -> str:
    """The precision to run in: ``"auto"`` is the fastest one kept within the F1 guard.

    ``"auto"``: an ONNX file runs in its own precision; on CUDA bf16 (fp16 without bf16
    support); on CPU bf16 when the CPU computes bf16 natively and the weights record that bf16
    keeps F1 within the guard of float32 (``liteunet.release`` measures it; with ``tta``, the
    guard measured with that augmentation when there is one; ``compiled``, the one measured
    compiled, whose fused kernels round differently, when there is one), else float32.
    """
    if precision is None:
        return "fp32"
    if precision == "auto":
        if isinstance(model, OnnxModel):
            return model.precision
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        checks = load_inference_checks(model, tta)
        guard = (checks.get("bf16_compiled") if compiled else None) or checks.get("bf16") or {}
        return "bf16" if cpu_has_native_bf16() and guard.get("passed") else "fp32"
    if precision not in PRECISION_ALIASES:
        raise ValueError(f"precision must be 'auto', 'fp32', 'bf16', 'fp16' or 'int8', got {precision!r}")
    return PRECISION_ALIASES[precision]


def warn_unguarded(model: nn.Module, name: str, precision: str, tta: str | None, compiled: bool) -> None:
    """Warn when an explicitly asked reduced precision was never checked, or failed the F1 guard."""
    checks = load_inference_checks(model, tta)
    key = f"{precision}_compiled" if compiled and f"{precision}_compiled" in checks else precision
    guard = checks.get(key)
    form = key.replace("_", " ")
    if not guard:
        message = f"{precision} has not been checked against float32 for {name} (its weights record no precision guard); F1 may differ"
    elif not guard.get("passed"):
        # A recorded failure is the more useful warning: it says by how much.
        message = (
            f"{form}{f' with tta={tta!r}' if tta else ''} failed the precision guard of {name}: its F1 "
            f"differed from float32 by {guard.get('max_abs_diff', float('nan')):.2f} points on the validation "
            f"sets (tolerance {guard.get('tolerance', 0.5)}); on CPU precision='auto' uses float32 instead"
        )
    else:
        return
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def resolve_tta(tta: bool | str | None) -> str | None:
    """``False``/``None`` -> no augmentation, ``True`` -> ``"d4"``, or a mode of :data:`TTA_MODES`."""
    if tta is None or tta is False:
        return None
    if tta is True:
        return "d4"
    if isinstance(tta, str) and tta in TTA_MODES:
        return tta
    raise ValueError(f"tta must be True, False or one of {sorted(TTA_MODES)}, got {tta!r}")
