"""``create_model``, ``list_models`` and ``load_model``: timm's registry, narrowed to the liteunet zoo."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import timm
import timm.models._factory as _timm_factory
import torch.nn as nn

from ..pretrained import CONFIG_NAME, WEIGHTS_NAME, load_weights_file, read_config

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


def create_model(name: str | os.PathLike, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Create a zoo model; same as ``timm.create_model`` after ``import liteunet``.

    Args:
        name: model name, optionally with a pretrained tag (``"lite_unet.crc"``), a timm
            source prefix (``"hf-hub:org/name"``, ``"local-dir:/path"``), or a weights folder or
            file (its weights are loaded whatever ``pretrained`` says: see :func:`load_model`).
        pretrained: load the tag's weights.
        **kwargs: model arguments (``num_classes``, ``in_chans``, ``theta``...) and timm's
            (``pretrained_cfg_overlay``, ``checkpoint_path``, ``cache_dir``...).

    Example:
        >>> model = create_model("lite_unet", in_chans=1)
        >>> model.in_chans
        1
    """
    if _is_path(name):
        return load_model(name, **kwargs)
    name = str(name)
    base = name.split(":", 1)[-1] if ":" in name else name
    if ":" not in name and not is_model(base):
        raise ValueError(f"unknown model {name!r}; liteunet models: {', '.join(list_models())}")
    checkpoint_path = kwargs.pop("checkpoint_path", None)
    model = timm.create_model(name, pretrained=pretrained, **kwargs)
    if checkpoint_path:
        # timm's load_checkpoint neither checks architecture nor shapes; this one does, same safety.
        load_weights_file(model, checkpoint_path)
    return model


def _is_path(name: str | os.PathLike) -> bool:
    text = os.fspath(name)
    return isinstance(name, os.PathLike) or Path(text).exists() or (":" not in text and ("/" in text or os.sep in text))


def load_model(name_or_path: str | os.PathLike, **kwargs: Any) -> nn.Module:
    """A zoo model with its pretrained weights, from a tag, a name, a weights folder or a file.

    The one place that turns what a user types (``--model``, ``model=``) into a model.

    Args:
        name_or_path: a pretrained tag (``"lite_unet.crc"``), a model name (its default
            weights), an ``hf-hub:`` / ``local-dir:`` name, a weights folder (what
            ``liteunet.train.save_weights`` or timm's ``save_for_hf`` writes), or a weights file
            (``.safetensors``, or a pickle read with ``weights_only=True``) with the folder's
            ``config.json`` beside it.
        **kwargs: model arguments, as for :func:`create_model`.

    Returns:
        The model with its weights loaded.

    Raises:
        FileNotFoundError: a path that does not exist, or a folder or file without
            ``config.json`` (which says what architecture the weights are for).
        ValueError: an unknown model name.
        liteunet.pretrained.PretrainedWeightsError: the weights cannot be found or do not fit.

    Example:
        >>> model = load_model("lite_unet.multi")  # doctest: +SKIP
        >>> model = load_model("runs/exp1/best")  # doctest: +SKIP
    """
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(
                f"weights folder {path} has no {CONFIG_NAME} (expected what timm's save_for_hf or "
                "liteunet.train.save_weights writes)"
            )
        return create_model(f"local-dir:{path}", pretrained=True, **kwargs)
    if path.is_file():
        return _load_weights_file(path, **kwargs)
    if _is_path(name_or_path):
        raise FileNotFoundError(f"weights folder or file not found: {text}")
    return create_model(text, pretrained=True, **kwargs)


def _load_weights_file(path: Path, **kwargs: Any) -> nn.Module:
    """A weights file with its folder's ``config.json`` beside it: the architecture it names."""
    config_file = path.parent / CONFIG_NAME
    config = read_config(config_file) if config_file.is_file() else {}
    architecture = config.get("architecture")
    if not architecture:
        raise FileNotFoundError(
            f"{path}: no {CONFIG_NAME} beside it names the architecture; name the model and the "
            f"file: create_model('lite_unet', pretrained=True, pretrained_cfg_overlay=dict(file='{path}'))"
        )
    if path.name == WEIGHTS_NAME:
        return create_model(f"local-dir:{path.parent}", pretrained=True, **kwargs)
    # Another file of the folder (e.g. a second checkpoint): its architecture, classes and channels.
    stored = config.get("model_args") or {}
    for key in ("num_classes", "in_chans"):
        kwargs.setdefault(key, stored.get(key, config.get(key)))
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    # The file's own class count, so that timm keeps its head instead of re-initializing it.
    overlay = {k: v for k, v in (config.get("pretrained_cfg") or {}).items() if k in ("label_names", "tag", "num_classes")}
    overlay.setdefault("num_classes", kwargs.get("num_classes", 1))
    return create_model(architecture, pretrained=True, pretrained_cfg_overlay=dict(overlay, file=str(path)), **kwargs)


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
