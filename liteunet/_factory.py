"""``create_model`` and ``list_models``: timm's registry, narrowed to the liteunet zoo."""

from __future__ import annotations

from typing import Any

import timm
import torch.nn as nn

from . import models as _models  # noqa: F401  (registers the zoo in timm's registry)

__all__ = ["create_model", "list_models", "is_model"]

# timm keys models by the file they are defined in.
_ZOO_MODULES = ("lite_unet", "unet")


def list_models(filter: str | list[str] = "", pretrained: bool = False) -> list[str]:
    """Names in the liteunet zoo, as ``timm.list_models`` gives them.

    Args:
        filter: wildcard pattern(s), e.g. ``"lite_unet*"``.
        pretrained: list only names with published weights, with their tags
            (``lite_unet.crc``, ...).

    Example:
        >>> list_models("lite_unet*")
        ['lite_unet', 'lite_unet_ghost_cbam', 'lite_unet_ghost_cbam_ga']
    """
    return timm.list_models(filter, module=list(_ZOO_MODULES), pretrained=pretrained)


def is_model(name: str) -> bool:
    """Whether ``name`` (with or without a ``.tag``) is a model of the liteunet zoo."""
    return name.split(".")[0] in list_models()


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Create a zoo model; same as ``timm.create_model`` after ``import liteunet``.

    Args:
        name: model name, optionally with a pretrained tag (``"lite_unet.crc"``), or a timm
            source prefix (``"hf-hub:org/name"``, ``"local-dir:/path"``).
        pretrained: load the tag's weights.
        **kwargs: model arguments (``num_classes``, ``in_chans``, ``theta``...) and timm's
            (``pretrained_cfg_overlay``, ``checkpoint_path``, ``cache_dir``...).

    Example:
        >>> model = create_model("lite_unet", in_chans=1)
        >>> model.in_chans
        1
    """
    base = name.split(":", 1)[-1] if ":" in name else name
    if ":" not in name and not is_model(base):
        raise ValueError(f"unknown model {name!r}; liteunet models: {', '.join(list_models())}")
    checkpoint_path = kwargs.pop("checkpoint_path", None)
    model = timm.create_model(name, pretrained=pretrained, **kwargs)
    if checkpoint_path:
        # timm's load_checkpoint neither checks architecture nor shapes; this one does, same safety.
        from .hub import load_weights_file

        load_weights_file(model, checkpoint_path)
    return model
