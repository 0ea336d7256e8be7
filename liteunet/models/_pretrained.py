"""Pretrained-config helpers shared by the model files."""

from __future__ import annotations

from typing import Any

import torch.nn as nn
from timm.models import PretrainedCfg, build_model_with_cfg, resolve_pretrained_cfg

from ..pretrained import build_pretrained

__all__ = [
    "build_localization_model",
    "check_pretrained_available",
    "hub_weights",
    "localization_cfg",
]

PAPER_NAME = "Lite-UNet: A lightweight and efficient network for cell localization"

# Hub repositories of the pretrained tags are ``liteunet/<model>.<tag>``, pinned to this revision.
# They are not published yet: after `liteunet push weights/<tag> --repo-id
# liteunet/<tag> --tag v0.1.0`, pin the commit id it prints instead (a commit id lets a cached
# copy load without any network call).
HUB_ORG = "liteunet"
HUB_REVISION = "v0.1.0"


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


def hub_weights(name: str, revision: str = HUB_REVISION) -> dict[str, Any]:
    """``pretrained_cfg`` entries naming the Hub repository of ``name`` (e.g. ``"lite_unet.crc"``).

    timm pins a revision with ``hf_hub_id="ORG/NAME@REVISION"``; only ``model.safetensors`` is read.
    """
    return dict(hf_hub_id=f"{HUB_ORG}/{name}@{revision}", hf_hub_filename="model.safetensors")


def build_localization_model(
    model_cls: Any, variant: str, pretrained: bool = False, **kwargs: Any
) -> nn.Module:
    """``build_model_with_cfg`` with liteunet's offline-first, checked weight loading.

    Order: a file the user names, the Hub cache, the Hub, the bundled default weights
    (:mod:`liteunet.pretrained.resolve`).
    """
    revision = kwargs.pop("revision", None)
    features_only = kwargs.pop("features_only", False)
    feature_cfg = dict(feature_cls="getter", out_indices=kwargs.pop("out_indices", (0, 1, 2, 3, 4)))
    model = _build(model_cls, variant, pretrained, revision, kwargs)
    if features_only:
        # timm's own wrapper for models with forward_intermediates (FeatureGetterNet): built
        # around the finished model, so pretrained weights are loaded before it is wrapped.
        model = build_model_with_cfg(
            lambda **_: model, variant, False, pretrained_cfg=model.pretrained_cfg,
            features_only=True, feature_cfg=feature_cfg,
        )
    return model


def _build(model_cls: Any, variant: str, pretrained: bool, revision: str | None, kwargs: dict[str, Any]) -> nn.Module:
    if not pretrained:
        return build_model_with_cfg(model_cls, variant, False, **kwargs)
    # Resolved once here, then handed down: the check and the build read the same cfg.
    cfg = resolve_pretrained_cfg(
        variant,
        pretrained_cfg=kwargs.pop("pretrained_cfg", None),
        pretrained_cfg_overlay=kwargs.pop("pretrained_cfg_overlay", None),
    )
    check_pretrained_available(variant, cfg)
    return build_pretrained(model_cls, variant, revision=revision, pretrained_cfg=cfg, **kwargs)


def check_pretrained_available(variant: str, cfg: PretrainedCfg) -> None:
    """Fail clearly when ``pretrained=True`` is asked of a tag without weights.

    timm itself only warns and returns a randomly initialized model, which users then mistake
    for a trained one.
    """
    if cfg.has_weights or cfg.state_dict is not None:
        return
    name = f"{variant}.{cfg.tag}" if cfg.tag else variant
    raise RuntimeError(
        f"No pretrained weights are published for '{name}'. Use pretrained=False, pick a tag from "
        f"liteunet.list_models(pretrained=True), or name a local file with "
        f"pretrained_cfg_overlay=dict(file='model.safetensors')."
    )

