"""Pretrained-config helpers shared by the model files."""

from __future__ import annotations

from typing import Any

from timm.models import get_pretrained_cfg
from timm.models._builder import resolve_pretrained_cfg

__all__ = ["localization_cfg", "check_pretrained_available"]

PAPER_NAME = "Lite-UNet: A lightweight and efficient network for cell localization"


def localization_cfg(**kwargs: Any) -> dict[str, Any]:
    """A timm ``pretrained_cfg`` for a location-map model.

    Images go in as floats in [0, 1] (8-bit divided by 255, 16-bit percentile-normalized), so
    ``mean``/``std`` are 0/1. ``classifier`` names the 1x1 head so timm drops it when the
    requested ``num_classes`` differs from the weights'.
    """
    cfg: dict[str, Any] = dict(
        num_classes=1,
        input_size=(3, 512, 512),
        fixed_input_size=False,
        interpolation="bilinear",
        crop_pct=1.0,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        classifier="head",
        paper_name=PAPER_NAME,
        license="apache-2.0",
    )
    cfg.update(kwargs)
    return cfg


def check_pretrained_available(variant: str, pretrained: bool, kwargs: dict[str, Any]) -> None:
    """Fail clearly when ``pretrained=True`` is asked of a tag without weights.

    timm itself only warns and returns a randomly initialized model, which users then mistake
    for a trained one.
    """
    if not pretrained:
        return
    cfg = resolve_pretrained_cfg(
        variant, pretrained_cfg=kwargs.get("pretrained_cfg"), pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay")
    )
    if cfg.has_weights or cfg.state_dict is not None:
        return
    name = f"{variant}.{cfg.tag}" if cfg.tag else variant
    raise RuntimeError(
        f"No pretrained weights are published for '{name}'. Use pretrained=False, pick a tag from "
        f"liteunet.list_models(pretrained=True), or name a local file with "
        f"pretrained_cfg_overlay=dict(file='model.safetensors')."
    )


def pretrained_cfg_for(name: str) -> dict[str, Any] | None:
    cfg = get_pretrained_cfg(name)
    return None if cfg is None else cfg.to_dict()
