"""Weights files: reading safetensors (and, when named, pickles) and checking them against a model.

Nothing here touches the network. Every file is checked before use: ``config.json``'s
architecture against the requested model, tensor names and shapes against the model, so a
truncated or foreign file raises a clear :class:`PretrainedWeightsError` instead of half-loading.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn as nn
from timm.models import clean_state_dict

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "PICKLE_SUFFIXES",
    "WEIGHTS_NAME",
    "PretrainedWeightsError",
    "ResolvedWeights",
    "check_architecture",
    "check_state_dict",
    "config_beside",
    "short_list",
    "open_folder_files",
    "open_local",
    "read_config",
    "read_state_dict",
]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
# Pickle-based formats: loaded only when named, never published.
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".pkl", ".pickle", ".tar")


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be found, read or used; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class ResolvedWeights:
    """Where pretrained weights were found.

    Attributes:
        source: ``"file"`` (named by the user), ``"hub-cache"``, ``"hub"``, ``"bundled"`` or
            ``"state_dict"`` (passed in memory).
        weights_file: the weights file (``None`` for an in-memory state dict or a config-only
            lookup).
        config_file: the ``config.json`` that describes them, if any.
        config: its parsed content (``{}`` when there is none).
        state_dict: the tensors, once read.
    """

    source: str
    weights_file: Path | None
    config_file: Path | None
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor] | None = dataclasses.field(default=None, repr=False)

    def describe(self) -> str:
        where = {
            "file": "named file",
            "hub-cache": "Hub cache",
            "hub": "Hub",
            "bundled": "bundled copy",
        }
        return (
            f"{self.weights_file} ({where.get(self.source, self.source)})"
            if self.weights_file
            else "state dict"
        )


def read_config(path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` at ``path``, read once per file version and copied out.

    The settings, the precision guard and the model arguments all live in one file; caching
    it by (path, size, mtime) makes every later lookup of the same load free.

    Raises:
        PretrainedWeightsError: the file is unreadable or not a JSON object.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as err:
        raise PretrainedWeightsError(f"{path}: not a readable JSON config ({err})") from err
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CONFIGS:
        _CONFIGS[key] = _parse_config(path)
    return copy.deepcopy(_CONFIGS[key])


_CONFIGS: dict[tuple[str, int, int], dict[str, Any]] = {}


def _parse_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PretrainedWeightsError(f"{path}: not a readable JSON config ({err})") from err
    if not isinstance(config, dict):
        raise PretrainedWeightsError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def check_architecture(
    config: dict[str, Any], config_file: Path | None, weights: Path | None, expected: str | None
) -> None:
    arch = config.get("architecture")
    if expected and arch and arch != expected:
        raise PretrainedWeightsError(
            f"{weights or config_file} holds weights for '{arch}' ({config_file} says so), "
            f"not for the requested '{expected}'. Create the model they belong to "
            f"(create_model('{arch}', ...)) or name weights saved from '{expected}'."
        )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file into a state dict of tensors, with clear errors.

    ``.safetensors`` files are read with safetensors. Any other file is a pickle and is read only
    with ``torch.load(weights_only=True)``, which refuses arbitrary Python objects; training
    checkpoints (``{"state_dict": ...}``, ``{"model": ...}``, EMA) are unwrapped the way timm does.

    Args:
        path: the weights file.

    Returns:
        Parameter and buffer names mapped to CPU tensors.

    Raises:
        PretrainedWeightsError: the file is missing, truncated, not in the format its name says,
            holds non-tensor objects, or holds no tensors.

    Example:
        >>> sd = read_state_dict("weights/lite_unet.multi/model.safetensors")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            obj: Any = safetensors.torch.load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own error types for bad headers/sizes
            raise PretrainedWeightsError(
                f"{path}: not a valid safetensors file ({err}). It is truncated or corrupted, "
                "or not safetensors at all (a renamed .pth/.bin?). Delete it and download it again."
            ) from err
    else:
        try:
            safe_globals = getattr(torch.serialization, "safe_globals", None)
            if safe_globals is not None:  # timm's training checkpoints store their argparse args
                with safe_globals([argparse.Namespace]):
                    obj = torch.load(path, map_location="cpu", weights_only=True)
            else:
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PretrainedWeightsError(
                f"{path}: refused to unpickle it: it holds Python objects besides tensors "
                f"({first}). liteunet reads pickle files only with torch.load(weights_only=True). "
                "If you trust this file, load it yourself (torch.load(path, weights_only=False)) "
                "and pass the tensors with pretrained_cfg_overlay=dict(state_dict=...), or "
                "convert it to safetensors."
            ) from err
        except Exception as err:
            raise PretrainedWeightsError(
                f"{path}: not a readable PyTorch file ({type(err).__name__}: {err}); it may be "
                "truncated."
            ) from err
        if isinstance(obj, dict):
            for key in ("state_dict_ema", "model_ema", "state_dict", "model"):  # timm's order
                if isinstance(obj.get(key), dict):
                    obj = obj[key]
                    break
    if not isinstance(obj, dict) or not obj:
        raise PretrainedWeightsError(
            f"{path}: holds no tensors (got {type(obj).__name__} {_short(obj)})"
        )
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise PretrainedWeightsError(
            f"{path}: not a state dict: {short_list(not_tensors)} are not tensors "
            "(save model.state_dict())."
        )
    return clean_state_dict(obj)


def _short(obj: Any) -> str:
    return f"with keys {short_list(list(obj))}" if isinstance(obj, dict) and obj else ""


def short_list(keys: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(str(k) for k in list(keys)[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    where: str,
    pretrained_cfg: dict[str, Any] | None = None,
    strict: bool = True,
) -> None:
    """Raise unless every tensor fits the model (names and shapes), before anything is copied.

    With ``pretrained_cfg``, the tensors timm adapts are let through: the first convs when the
    model's ``in_chans`` differs from the weights', the head when ``num_classes`` differs.
    """
    own = model.state_dict()
    adapted: set[str] = set()
    if pretrained_cfg:

        def _keys(names: Any) -> list[str]:
            names = (names,) if isinstance(names, str) else (names or ())
            return [f"{n}.{p}" for n in names for p in ("weight", "bias")]

        if getattr(model, "num_classes", None) != pretrained_cfg.get("num_classes"):
            adapted.update(_keys(pretrained_cfg.get("classifier")))
        in_chans = (pretrained_cfg.get("input_size") or (3,))[0]
        if getattr(model, "in_chans", in_chans) != in_chans:
            adapted.update(
                k for k in _keys(pretrained_cfg.get("first_conv")) if k.endswith("weight")
            )
    missing = [k for k in own if k not in state_dict and k not in adapted]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k} is {tuple(state_dict[k].shape)} in the file, {tuple(own[k].shape)} in the model"
        for k in state_dict
        if k in own and k not in adapted and state_dict[k].shape != own[k].shape
    ]
    if not (mismatched or (strict and (missing or unexpected))):
        return
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("architecture") or type(model).__name__
    lines = [
        f"{where} does not fit '{name}' as created ({len(state_dict)} tensors in the file, "
        f"{len(own)} in the model):"
    ]
    if mismatched:
        lines.append(
            f"  - {len(mismatched)} shape mismatch(es): {'; '.join(mismatched[:3])}"
            + (" ..." if len(mismatched) > 3 else "")
        )
    if strict and missing:
        lines.append(f"  - missing from the file: {short_list(missing)}")
    if strict and unexpected:
        lines.append(f"  - not in the model: {short_list(unexpected)}")
    lines.append(
        "The file was saved from another architecture or with other model arguments (see "
        "model_args in its config.json); create the model it was saved from, or pass the "
        "matching arguments."
    )
    raise PretrainedWeightsError("\n".join(lines))


def open_local(path: Path, expected: str | None, need_weights: bool) -> ResolvedWeights:
    """A file or folder the user named: any problem is raised at once (no fallback)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise PretrainedWeightsError(f"pretrained weights file or folder {path} does not exist")
    if path.is_dir():
        config_file = path / CONFIG_NAME if (path / CONFIG_NAME).is_file() else None
        config = read_config(config_file) if config_file else {}
        weights: Path | None = path / WEIGHTS_NAME
        if not weights.is_file():
            candidates = sorted(path.glob("*.safetensors"))
            if len(candidates) == 1:
                weights = candidates[0]
            elif candidates:
                raise PretrainedWeightsError(
                    f"{path} holds several safetensors files "
                    f"({short_list([c.name for c in candidates])}) and no "
                    f"{WEIGHTS_NAME}; name one: pretrained_cfg_overlay=dict(file='{candidates[0]}')"
                )
            else:
                pickles = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
                hint = (
                    f" {short_list([p.name for p in pickles])} are pickle files: they are loaded "
                    "only when named, with torch.load(weights_only=True): "
                    f"pretrained_cfg_overlay=dict(file='{pickles[0]}')"
                    if pickles
                    else ""
                )
                raise PretrainedWeightsError(
                    f"{path} holds no {WEIGHTS_NAME} (only safetensors are read from a "
                    f"folder).{hint}"
                )
    else:
        weights = path
        config_file, config = None, {}
        sibling = path.parent / CONFIG_NAME
        if sibling.is_file():
            try:  # a config.json beside the file describes it when it is a timm config
                candidate = read_config(sibling)
            except PretrainedWeightsError:
                candidate = {}
            if "architecture" in candidate:
                config_file, config = sibling, candidate
    check_architecture(config, config_file, weights, expected)
    state_dict = read_state_dict(weights) if need_weights else None
    return ResolvedWeights("file", weights, config_file, config, state_dict)


def open_folder_files(
    source: str, config_file: Path, weights: Path | None, expected: str | None
) -> ResolvedWeights:
    config = read_config(config_file)
    check_architecture(config, config_file, weights, expected)
    state_dict = read_state_dict(weights) if weights is not None else None
    return ResolvedWeights(source, weights, config_file, config, state_dict)


def config_beside(weights_file: str | Path) -> Path | None:
    """The ``config.json`` in a weights folder or beside a weights file, if there is one."""
    path = Path(weights_file)
    config = path / CONFIG_NAME if path.is_dir() else path.parent / CONFIG_NAME
    return config if config.is_file() else None
