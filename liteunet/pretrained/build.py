"""Building a model with pretrained weights, and loading a weights file the user names.

:func:`build_pretrained` is ``timm.models.build_model_with_cfg(..., pretrained=True)`` with the
offline-first order of :mod:`liteunet.pretrained.resolve`; the model files call it, so
``timm.create_model`` and ``liteunet.create_model`` load identically.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from timm.models import PretrainedCfg, build_model_with_cfg, load_pretrained, resolve_pretrained_cfg

from .files import ResolvedWeights, check_state_dict, open_local, read_state_dict
from .resolve import pretrained_name, resolve, with_revision

_SOURCE_ARGS = "pretrained_model_args"


def _builder_takes_source_args() -> bool:
    """Whether timm's builder takes ``pretrained_model_args``.

    timm 1.0.31 records the source checkpoint's model arguments under that name; older releases
    (1.0.16-1.0.30, which setup.cfg allows) pass the keyword on to the model class, which fails.
    """
    return _SOURCE_ARGS in inspect.signature(build_model_with_cfg).parameters


__all__ = ["build_pretrained", "load_weights_file"]


def _checked_state_dict(
    model: nn.Module,
    found: ResolvedWeights,
    strict: bool = True,
    filter_fn: Callable[..., dict[str, torch.Tensor]] | None = None,
    adapt: bool = True,
) -> dict[str, torch.Tensor]:
    """The tensors of ``found``, filtered, once they fit ``model`` (else PretrainedWeightsError)."""
    state_dict = (
        found.state_dict if found.state_dict is not None else read_state_dict(found.weights_file)
    )
    if filter_fn is not None:
        try:
            state_dict = filter_fn(state_dict, model)
        except TypeError:  # timm also accepts one-argument filters
            state_dict = filter_fn(state_dict)
    cfg = model.pretrained_cfg if adapt else None
    check_state_dict(model, state_dict, found.describe(), cfg, strict)
    return state_dict


def _copy_into(
    model: nn.Module,
    found: ResolvedWeights,
    state_dict: dict[str, torch.Tensor],
    strict: bool = True,
    adapt: bool = True,
) -> None:
    cfg = model.pretrained_cfg
    if adapt:
        # timm adapts in_chans / num_classes; hand it the tensors already read and checked.
        sources = dict(source=None, file=None, url=None, hf_hub_id=None, state_dict=state_dict)
        load_pretrained(
            model,
            pretrained_cfg={**cfg, **sources},
            num_classes=getattr(model, "num_classes", cfg.get("num_classes", 1000)),
            in_chans=getattr(model, "in_chans", 3),
            strict=strict,
        )
    else:
        model.load_state_dict(state_dict, strict=strict)
    if found.weights_file is not None:
        # Where the loaded weights are (timm's field, dropped on export); config.json beside them.
        cfg["file"] = str(found.weights_file)


def build_pretrained(
    model_cls: Callable[..., nn.Module],
    variant: str,
    *,
    pretrained_cfg: Any = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    pretrained_strict: bool = True,
    pretrained_filter_fn: Callable[..., dict[str, torch.Tensor]] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """``timm.models.build_model_with_cfg(..., pretrained=True)`` with the offline-first order.

    The model files call this through ``liteunet.models._pretrained.build_localization_model``,
    so ``timm.create_model`` and ``liteunet.create_model`` load identically. The weights'
    ``config.json`` ``model_args`` (other than ``num_classes`` and ``in_chans``, which timm adapts
    to) are defaults for the model arguments, so a tag trained with another ``theta`` gets it.

    Args:
        model_cls: the model class.
        variant: registered architecture name, e.g. ``"lite_unet"``.
        pretrained_cfg, pretrained_cfg_overlay, cache_dir, pretrained_strict, pretrained_filter_fn:
            as in ``build_model_with_cfg``.
        revision: Hub revision instead of the one pinned in ``hf_hub_id``.
        **kwargs: model arguments.

    Returns:
        The model with the weights loaded; ``model.pretrained_cfg["file"]`` is the file loaded.

    Raises:
        PretrainedWeightsError: see :func:`resolve_weights`; also when the file does not fit.

    Example:
        >>> model = timm.create_model("lite_unet.crc", pretrained=True)  # doctest: +SKIP
    """
    if not _builder_takes_source_args():
        kwargs.pop(_SOURCE_ARGS, None)
    cfg = (
        pretrained_cfg
        if isinstance(pretrained_cfg, PretrainedCfg)
        else resolve_pretrained_cfg(
            variant, pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=pretrained_cfg_overlay
        )
    )
    if revision:
        cfg = with_revision(cfg, revision, pretrained_name(variant, cfg))
    if cfg.url and not (cfg.file or cfg.hf_hub_id or cfg.state_dict is not None):
        # A URL the user set: timm downloads it and reads it with weights_only=True.
        return build_model_with_cfg(
            model_cls,
            variant,
            True,
            pretrained_cfg=cfg.to_dict(),
            cache_dir=cache_dir,
            pretrained_strict=pretrained_strict,
            pretrained_filter_fn=pretrained_filter_fn,
            **kwargs,
        )
    bare_cfg = dataclasses.replace(cfg, state_dict=None)  # the tensors stay out of pretrained_cfg
    accepted: dict[str, Any] = {}

    def build_for(found: ResolvedWeights) -> nn.Module:
        model_kwargs = dict(kwargs)
        model_args = found.config.get("model_args")
        if isinstance(model_args, dict) and model_args:
            # num_classes / in_chans come from the pretrained_cfg or the caller, and timm adapts
            # the weights to them; a file that disagrees with its tag fails the shape check.
            for key, value in model_args.items():
                if key not in ("num_classes", "in_chans"):
                    model_kwargs.setdefault(key, value)
            if _builder_takes_source_args():
                model_kwargs.setdefault(_SOURCE_ARGS, dict(model_args))
        return build_model_with_cfg(
            model_cls,
            variant,
            False,
            pretrained_cfg=bare_cfg.to_dict(),
            cache_dir=cache_dir,
            **model_kwargs,
        )

    def check(found: ResolvedWeights) -> None:
        # Checked against the model before the copy is accepted, so that a cached or downloaded
        # file that does not fit falls through to the next source like a corrupt one.
        model = build_for(found)
        state_dict = _checked_state_dict(model, found, pretrained_strict, pretrained_filter_fn)
        accepted.update(found=found, model=model, state_dict=state_dict)

    found = resolve(cfg, variant, cache_dir=cache_dir, check=check)
    if accepted.get("found") is not found:  # a named file or state dict: checked here, raised
        check(found)
    _copy_into(accepted["model"], found, accepted["state_dict"], strict=pretrained_strict)
    return accepted["model"]


def load_weights_file(model: nn.Module, path: str | Path, strict: bool = True) -> None:
    """Load a weights file or folder the user names into ``model``, checked first.

    ``liteunet.create_model(..., checkpoint_path=...)`` uses this. ``.safetensors`` is read with
    safetensors, anything else with ``torch.load(weights_only=True)``; a ``config.json`` beside
    the file must name the model's architecture; names and shapes must fit exactly.

    Args:
        model: a zoo model (or any module).
        path: ``.safetensors``, ``.pth``/``.bin`` file, or a weights folder.
        strict: every tensor of the model must be in the file.

    Raises:
        PretrainedWeightsError: the file is missing, unreadable, refused, or does not fit.

    Example:
        >>> model = liteunet.create_model("lite_unet")  # doctest: +SKIP
        >>> load_weights_file(model, "runs/exp1/model.safetensors")  # doctest: +SKIP
    """
    expected = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    found = open_local(Path(path), expected, need_weights=True)
    state_dict = _checked_state_dict(model, found, strict=strict, adapt=False)
    _copy_into(model, found, state_dict, strict=strict, adapt=False)
