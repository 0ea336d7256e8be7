"""``create_model``, ``list_models`` and ``load_model``: timm's registry, narrowed to the liteunet zoo."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import timm
import timm.models._factory as _timm_factory
import torch.nn as nn

from ..pretrained import CONFIG_NAME, load_weights_file

__all__ = ["create_model", "is_model", "list_models", "load_model"]

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
        load_weights_file(model, checkpoint_path)
    return model


def load_model(name_or_folder: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """A zoo model with its pretrained weights, from a tag, a name or a weights folder.

    The one place that turns what a user types (``--model``, ``model=``) into a model.

    Args:
        name_or_folder: a pretrained tag (``"lite_unet.crc"``), a model name (its default
            weights), an ``hf-hub:`` / ``local-dir:`` name, or a weights folder (what
            ``liteunet.train.save_weights`` or timm's ``save_for_hf`` writes).
        **kwargs: model arguments, as for :func:`create_model`.

    Returns:
        The model with its weights loaded.

    Raises:
        FileNotFoundError: a path that does not exist, or a folder without ``config.json``.
        ValueError: an unknown model name.
        liteunet.pretrained.PretrainedWeightsError: the weights cannot be found or do not fit.

    Example:
        >>> model = load_model("lite_unet.multi")  # doctest: +SKIP
        >>> model = load_model("runs/exp1/best")  # doctest: +SKIP
    """
    text = os.fspath(name_or_folder)
    path = Path(text)
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(
                f"weights folder {path} has no {CONFIG_NAME} (expected what timm's save_for_hf or "
                "liteunet.train.save_weights writes)"
            )
        return create_model(f"local-dir:{path}", pretrained=True, **kwargs)
    if ":" not in text and (os.sep in text or "/" in text):
        raise FileNotFoundError(f"weights folder not found: {text}")
    return create_model(text, pretrained=True, **kwargs)


_timm_load_checkpoint = _timm_factory.load_checkpoint


def _load_checkpoint(model: nn.Module, checkpoint_path: str, *args: Any, **kwargs: Any) -> Any:
    """``timm.create_model(..., checkpoint_path=...)`` for a liteunet model: the checked reader.

    timm reads the file with ``torch.load`` and lets its errors through; for liteunet's models
    the file is read like ``liteunet.create_model`` reads it (:func:`load_weights_file`), so a
    pickle with Python objects, a truncated file or a foreign one raises
    :class:`~liteunet.pretrained.PretrainedWeightsError`. Other models keep timm's loader.
    """
    if type(model).__module__.startswith("liteunet.") and not args and not kwargs:
        load_weights_file(model, checkpoint_path)
        return None
    return _timm_load_checkpoint(model, checkpoint_path, *args, **kwargs)


if _timm_factory.load_checkpoint is _timm_load_checkpoint:  # once, however often imported
    _timm_factory.load_checkpoint = _load_checkpoint
