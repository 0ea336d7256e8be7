"""A learned scale estimate: how far an image's magnification is from the training images'.

``localize(..., object_size="auto")`` must bring a user's image to the scale the weights work
best at. The classical estimator (:mod:`liteunet.object_size`) measures blobs, and fails where
the blobs are not the cells (adipocytes' membranes, stroma texture). Cellpose instead learns its
size model from the network's own features. This module does the same for location maps: a
ridge regression from the channel means of the encoder's and bottleneck's feature maps to the
log of the zoom an image was seen at, fitted on training images shown at known zooms
(:func:`fit_scale_model`). On a new image it predicts the zoom ``z`` (``z = 2``: objects look
twice as large as in the training images), and ``auto`` localizes at scale ``1 / z``.

What it learns is each training set's own magnification: on an image like one of them it is
accurate, on an image unlike any of them it answers with the nearest kind's magnification.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import match_channels, normalize_image
from ..object_size import SCALE_LIMITS, region_grid, rescale_image, scale_to_trained

__all__ = ["ScaleModel", "default_feature_layers", "fit_scale_model", "pad_to_stride", "pooled_features", "region_features", "stored_scale_model"]

#: Zooms the training images are shown at when fitting (log-spaced, 0.35x to 2.8x).
FIT_ZOOMS = (0.35, 0.5, 0.71, 1.0, 1.41, 2.0, 2.83)


def default_feature_layers(model: nn.Module) -> list[str]:
    """Every encoder stage and the bottleneck of a U-Net-shaped model (``encoder.0`` ... ``bottleneck``).

    Example:
        >>> import liteunet
        >>> default_feature_layers(liteunet.create_model("lite_unet"))
        ['encoder.0', 'encoder.1', 'encoder.2', 'encoder.3', 'encoder.4', 'bottleneck']
    """
    if not (hasattr(model, "encoder") and hasattr(model, "bottleneck")):
        raise ValueError(f"{type(model).__name__} has no encoder and bottleneck to take features from; pass layers=")
    return [f"encoder.{i}" for i in range(len(model.encoder))] + ["bottleneck"]


@torch.no_grad()
def pooled_features(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> torch.Tensor:
    """The channel means of ``layers``' outputs for a batch, concatenated.

    The forward pass stops once every layer in ``layers`` has run (a U-Net's decoder is skipped).

    Args:
        model: the network (not a fused or compiled form: the layers are found by name).
        x: the normalized input batch.
        layers: module names, e.g. from :func:`default_feature_layers`.

    Shape:
        - x: :math:`(B, C, H, W)`; output: :math:`(B, F)`, ``F`` the channels of all ``layers``.
    """
    found: dict[str, torch.Tensor] = {}

    def keep(name: str, module: nn.Module, args: Any, out: Any) -> None:
        found[name] = (out if torch.is_tensor(out) else out[0]).float().mean((2, 3))
        if len(found) == len(set(layers)):
            raise _AllFeaturesFound  # the rest of the network (the decoder) is not needed

    hooks = [model.get_submodule(name).register_forward_hook(functools.partial(keep, name)) for name in layers]
    try:
        model(x)
    except _AllFeaturesFound:
        pass
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat([found[name] for name in layers], 1)


class _AllFeaturesFound(Exception):
    """Raised from the last feature hook to end the forward pass early."""


def region_features(
    model: nn.Module, region: np.ndarray, layers: Sequence[str], normalize: str = "percentile", device: str | torch.device = "cpu"
) -> np.ndarray:
    """:func:`pooled_features` of one image region as read (normalized on its own, mirrored to a multiple of 16).

    Shape:
        - region: :math:`(H, W)` or :math:`(H, W, C)`; output: :math:`(F,)`.
    """
    x = match_channels(normalize_image(np.asarray(region), mode=normalize), int(getattr(model, "in_chans", 3)))
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    t = pad_to_stride(t, int(getattr(model, "size_divisor", 16) or 1))
    return pooled_features(model, t.to(device), layers)[0].cpu().numpy()


def pad_to_stride(t: torch.Tensor, divisor: int) -> torch.Tensor:
    """``t`` mirrored at its bottom and right edges to a multiple of ``divisor`` (the network's stride).

    Mirror, not zeros: an empty frame would read as background, not as more of the same tissue.

    Shape:
        - t: :math:`(B, C, H, W)`; output: :math:`(B, C, H', W')`, each a multiple of ``divisor``.
    """
    h, w = t.shape[-2:]
    pad_h, pad_w = -h % divisor, -w % divisor
    if not (pad_h or pad_w):
        return t
    return F.pad(t, (0, pad_w, 0, pad_h), mode="reflect" if pad_h < h and pad_w < w else "replicate")


@dataclass(frozen=True)
class ScaleModel:
    """Predicts the zoom of an image relative to the training images (``exp(features . coef + intercept)``).

    Attributes:
        layers: the module names whose channel means are the features.
        coef: one weight per feature (the feature standardization folded in).
        intercept: the log zoom of an image with zero features.
        region: side of the regions read from an image (the fit used crops of this side).
        normalize: the input scaling of the features (the weights' own).
        error: how well it did on held-out images when fitted (median and 90th percentile of
            ``|log predicted zoom - log true zoom|`` per set), for the record.
        tolerance: zooms between ``1 / tolerance`` and ``tolerance`` are left at scale 1. At
            native scale the prediction is off by about that much, so resizing there trades a
            sure image for a guess (and a network trained with random zoom copes with it anyway).

    Example:
        >>> import liteunet
        >>> model = liteunet.create_model("lite_unet")
        >>> flat = ScaleModel(tuple(default_feature_layers(model)), np.zeros(964), 0.0)
        >>> flat.predict(model, np.zeros((300, 300, 3), np.uint8))  # no signal: the training scale
        1.0
    """

    layers: tuple[str, ...]
    coef: np.ndarray
    intercept: float
    region: int = 256
    normalize: str = "percentile"
    error: dict[str, Any] | None = None
    tolerance: float = 1.0

    def __post_init__(self) -> None:
        if not (self.tolerance >= 1.0 and math.isfinite(self.tolerance)):
            raise ValueError(f"ScaleModel tolerance must be a finite zoom >= 1, got {self.tolerance}")

    def predict(
        self,
        model: nn.Module,
        image: np.ndarray | None = None,
        *,
        read: Callable[[int, int, int, int], np.ndarray] | None = None,
        shape: tuple[int, int] | None = None,
        max_regions: int = 9,
        device: str | torch.device = "cpu",
    ) -> float:
        """The zoom of an image: the geometric mean of the zooms predicted on up to ``max_regions`` regions.

        Pass the image, or ``read(y0, y1, x0, x1)`` and its ``shape`` for one too large to hold
        (a slide: only the regions are read).
        """
        if image is not None:
            img = np.asarray(image)
            read, shape = (lambda y0, y1, x0, x1: img[y0:y1, x0:x1]), img.shape[:2]
        if read is None or shape is None:
            raise ValueError("ScaleModel.predict needs an image, or read= and shape=")
        was_training = model.training
        model.eval()
        try:
            logs = [
                float(region_features(model, read(*r), self.layers, self.normalize, device) @ self.coef) + self.intercept
                for r in region_grid(int(shape[0]), int(shape[1]), self.region, max_regions)
            ]
        finally:
            model.train(was_training)
        return float(math.exp(float(np.mean(logs))))

    def scale_for(self, zoom: float, limits: tuple[float, float] = SCALE_LIMITS) -> tuple[float, bool]:
        """The scale ``1 / zoom`` that undoes a predicted zoom, kept within ``limits``, and whether it had to be.

        A zoom within ``tolerance`` of 1 is left alone (scale 1).

        Example:
            >>> model = ScaleModel(("bottleneck",), np.zeros(1, np.float32), 0.0, tolerance=1.3)
            >>> model.scale_for(1.2), model.scale_for(2.0), model.scale_for(10.0)
            ((1.0, False), (0.5, False), (0.25, True))
        """
        if 1.0 / self.tolerance <= zoom <= self.tolerance:
            return 1.0, False
        return scale_to_trained(zoom, 1.0, limits)  # the blob estimator's rule, with the training scale as 1

    def to_config(self) -> dict[str, Any]:
        """What ``config.json`` ``localization.scale_model`` stores."""
        return {
            "layers": list(self.layers), "region": self.region, "normalize": self.normalize,
            # float32 little-endian, base64: 964 numbers on one line of the config, not 964 lines
            "intercept": round(float(self.intercept), 6),
            "coef_f32_base64": base64.b64encode(np.asarray(self.coef, "<f4").tobytes()).decode("ascii"),
            "tolerance": round(float(self.tolerance), 4),
            **({"error": self.error} if self.error else {}),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ScaleModel:
        """The inverse of :meth:`to_config` (``coef`` may also be a list of numbers); a clear error for a malformed entry."""
        try:
            packed = config.get("coef_f32_base64")
            coef = np.frombuffer(base64.b64decode(packed, validate=True), "<f4") if packed else np.asarray(config["coef"], np.float32)
            if coef.ndim != 1 or not np.isfinite(coef).all():
                raise ValueError(f"coef must be finite numbers, got shape {coef.shape}")
            return cls(tuple(config["layers"]), coef.astype(np.float32), float(config["intercept"]),
                       int(config.get("region", 256)), str(config.get("normalize", "percentile")), config.get("error"),
                       float(config.get("tolerance", 1.0)))
        except (KeyError, TypeError, ValueError) as err:  # binascii.Error is a ValueError
            raise ValueError(f"malformed localization.scale_model in config.json: {err!r}") from None


def stored_scale_model(stored: dict[str, Any], model: nn.Module) -> ScaleModel | None:
    """The :class:`ScaleModel` stored with the weights (``localization.scale_model``), or ``None``
    when there is none or ``model`` lacks its layers (an ONNX form: ``auto`` then measures blobs).

    Example:
        >>> import liteunet
        >>> stored_scale_model({"threshold": 0.5}, liteunet.create_model("lite_unet")) is None
        True
    """
    if not stored.get("scale_model"):
        return None
    scale_model = ScaleModel.from_config(stored["scale_model"])
    try:
        for name in scale_model.layers:
            model.get_submodule(name)
    except AttributeError:
        return None
    return scale_model


def _zoomed_crop(image: np.ndarray, zoom: float, side: int) -> np.ndarray:
    """The central ``side`` pixels of ``image`` seen at ``zoom`` (only the region needed is resized)."""
    h, w = image.shape[:2]
    src = max(1, math.ceil(side / zoom))
    y0, x0 = max(0, (h - src) // 2), max(0, (w - src) // 2)
    out = rescale_image(image[y0 : y0 + src, x0 : x0 + src], zoom)
    return out[:side, :side]


def fit_scale_model(
    model: nn.Module,
    train_images: dict[str, Sequence[np.ndarray]],
    held_out_images: dict[str, Sequence[np.ndarray]] | None = None,
    *,
    zooms: Sequence[float] = FIT_ZOOMS,
    ridges: Sequence[float] = (10.0, 30.0, 100.0, 300.0),
    layers: Sequence[str] | None = None,
    region: int = 256,
    normalize: str = "percentile",
    tolerance: float = 1.0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> ScaleModel:
    """Fit a :class:`ScaleModel`: each image's central ``region`` pixels shown at every zoom, the
    features regressed on the log zoom (ridge regression, features standardized).

    Args:
        model: the network whose features are used.
        train_images: images by data set, at their native scale (give each set as many).
        held_out_images: other images by set; when given, the ridge strength with the lowest
            median error on them is kept and their errors are recorded (else the middle strength).
        zooms: the zooms each image is shown at.
        ridges: the ridge strengths tried.
        layers: feature layers (default :func:`default_feature_layers`).
        region: the crop side (the regions :meth:`ScaleModel.predict` reads).
        tolerance: stored as :attr:`ScaleModel.tolerance` (zooms this close to 1 are left alone).

    Example:
        >>> fit_scale_model(model, {"crc": crc_train}, {"crc": crc_val})  # doctest: +SKIP
        ScaleModel(layers=('encoder.0', ...), ...)
    """
    layers = list(layers or default_feature_layers(model))
    if not train_images or not all(len(images) for images in train_images.values()):
        raise ValueError("fit_scale_model needs at least one training image per data set")
    was_training = model.training
    model.eval()

    def table(images: dict[str, Sequence[np.ndarray]], what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, targets, sets = [], [], []
        for name, items in images.items():
            for image in tqdm(items, desc=f"scale features {what} {name}", disable=not progress, leave=False):
                for zoom in zooms:
                    rows.append(region_features(model, _zoomed_crop(np.asarray(image), zoom, region), layers, normalize, device))
                    targets.append(math.log(zoom))
                    sets.append(name)
        return np.asarray(rows, np.float64), np.asarray(targets), np.asarray(sets)

    try:
        X, y, _ = table(train_images, "train")
        held = table(held_out_images, "held out") if held_out_images else None
    finally:
        model.train(was_training)
    mean, std = X.mean(0), X.std(0) + 1e-6
    Z = (X - mean) / std

    def solve(ridge: float) -> tuple[np.ndarray, float]:
        w = np.linalg.solve(Z.T @ Z + ridge * np.eye(Z.shape[1]), Z.T @ (y - y.mean()))
        coef = w / std  # standardization folded in: features . coef + intercept
        return coef, float(y.mean() - mean @ coef)

    def errors(coef: np.ndarray, intercept: float) -> dict[str, Any]:
        Xh, yh, sets = held  # type: ignore[misc]
        err = np.abs(Xh @ coef + intercept - yh)
        per_set = {name: [round(float(np.median(err[sets == name])), 3), round(float(np.percentile(err[sets == name], 90)), 3)]
                   for name in dict.fromkeys(sets)}
        return {"median": round(float(np.median(err)), 4), "p90": round(float(np.percentile(err, 90)), 4), "by_set": per_set}

    fits = {ridge: solve(ridge) for ridge in ridges}
    if held is None:
        ridge = sorted(ridges)[len(ridges) // 2]
        record = None
    else:
        scored = {r: errors(*fit) for r, fit in fits.items()}
        ridge = min(scored, key=lambda r: scored[r]["median"])
        record = {**scored[ridge], "ridge": ridge, "zooms": list(zooms),
                  "images": {name: len(items) for name, items in held_out_images.items()},  # type: ignore[union-attr]
                  "train_images": {name: len(items) for name, items in train_images.items()}}
    coef, intercept = fits[ridge]
    return ScaleModel(tuple(layers), coef.astype(np.float32), intercept, region, normalize, record, tolerance)
