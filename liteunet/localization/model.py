"""The model side of localization: what to load from a name, and what a model tells about its input and classes."""

from __future__ import annotations

import os
from pathlib import Path

import torch.nn as nn

from ..inference import OnnxModel
from ..models import load_model

__all__ = ["describe_weights", "label_names", "load_localization_model", "model_in_chans"]


def load_localization_model(model: str | os.PathLike | nn.Module) -> tuple[nn.Module, str]:
    """The model and a short name for it (for the settings)."""
    if isinstance(model, nn.Module):
        return model, type(model).__name__
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            "model must be a name, a tag, a weights folder or an nn.Module, got "
            f"{type(model).__name__}"
        )
    text = os.fspath(model)
    if Path(text).suffix.lower() == ".onnx":
        return OnnxModel(Path(text)), text
    return load_model(text), text


def describe_weights(model: nn.Module) -> dict[str, str]:
    """Which weights a model carries, for the record every result keeps.

    Returns:
        ``name`` (``"lite_unet.multi"``, or the class name for a bare module), ``file`` (where
        the weights were read, when known) and ``revision`` (the Hub revision the tag pins).

    Example:
        >>> describe_weights(nn.Conv2d(1, 1, 1))
        {'name': 'Conv2d'}
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    architecture, tag = cfg.get("architecture"), cfg.get("tag")
    out = {"name": f"{architecture}.{tag}" if architecture and tag else architecture or type(model).__name__}
    if cfg.get("file"):
        out["file"] = str(cfg["file"])
    elif isinstance(model, OnnxModel):
        out["file"] = str(model.path)
    hub_id = cfg.get("hf_hub_id") or ""
    if "@" in hub_id:
        out["revision"] = hub_id.rpartition("@")[2]
    return out


def model_in_chans(model: nn.Module) -> int:
    chans = getattr(model, "in_chans", None)
    if isinstance(chans, int) and chans > 0:
        return chans
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ValueError(
        f"cannot tell how many image channels {type(model).__name__} expects: give it an "
        "`in_chans` attribute"
    )


def label_names(model: nn.Module, num_classes: int | None) -> tuple[str, ...] | None:
    names = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names, key=int)]
    if names and (num_classes is None or len(names) == num_classes):
        return tuple(str(n) for n in names)
    if num_classes is None:
        return None
    if num_classes == 1:
        return ("cell",)
    if num_classes == 2:
        return ("positive", "negative")  # the Ki-67 convention of lite_unet.ki67 (BCData)
    return tuple(f"class{i}" for i in range(num_classes))
