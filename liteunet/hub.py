"""Pretrained weights: offline-first loading from the Hugging Face Hub, checks, and publishing.

``create_model("lite_unet.crc", pretrained=True)`` (or ``timm.create_model``) looks for the
weights in this order and stops at the first that works:

1. a local file or folder the user names: ``pretrained_cfg_overlay=dict(file=...)``, a
   ``local-dir:PATH`` model name, or ``checkpoint_path=...``;
2. the Hugging Face Hub cache (``HF_HUB_CACHE``, ``HF_HOME``, or ``cache_dir=``), without any
   network access;
3. the Hub itself (``HF_ENDPOINT``), unless ``HF_HUB_OFFLINE=1``;
4. for the default weights only (:data:`liteunet._bundled.BUNDLED_TAGS`), the copy bundled
   inside the installed package, with a one-line log message saying so.

When none works, one :class:`PretrainedWeightsError` lists what was tried and how to fix it.
Each pretrained tag names its Hub repository in its ``pretrained_cfg``
(``hf_hub_id="ORG/NAME@REVISION"``, timm's way of pinning a revision). Only safetensors are
loaded from the Hub, the cache and folders; a ``.pth``/``.bin`` file is loaded only when the user
names it, and only with ``torch.load(weights_only=True)``. Every file is checked before use:
``config.json``'s architecture against the requested model, tensor names and shapes against the
model; a truncated or foreign file raises a clear error instead of half-loading.

A weights folder is what ``timm.models.save_for_hf`` writes (``model.safetensors``,
``config.json``) plus a ``README.md`` model card; ``config.json`` may carry a ``"localization"``
dict (``threshold``, ``min_distance``, ``sigma``) read by :func:`load_localization_settings`.
``liteunet.train.save_weights`` and ``liteunet.model_card.write_model_card`` write one;
``python -m liteunet.hub push FOLDER --repo-id ORG/NAME`` publishes it.

Example:
    >>> import liteunet
    >>> from liteunet.hub import load_localization_settings
    >>> model = liteunet.create_model("lite_unet", pretrained=True)  # doctest: +SKIP
    >>> load_localization_settings(model)  # doctest: +SKIP
    {'threshold': 0.5, 'min_distance': 3, 'sigma': 2.0}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import pickle
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn as nn
from huggingface_hub import constants as hf_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.utils import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from timm.models import build_model_with_cfg, load_pretrained
from timm.models._builder import resolve_pretrained_cfg
from timm.models._factory import parse_model_name
from timm.models._helpers import clean_state_dict
from timm.models._hub import hf_split
from timm.models._pretrained import PretrainedCfg
from timm.models._registry import get_pretrained_cfg, split_model_name_tag

from . import __version__, _bundled

__all__ = [
    "DEFAULT_LOCALIZATION",
    "PretrainedWeightsError",
    "ResolvedWeights",
    "UploadPlan",
    "add_push_parser",
    "load_inference_checks",
    "load_localization_settings",
    "load_weights_config",
    "load_weights_file",
    "main",
    "push_weights_folder",
    "read_state_dict",
    "resolve_weights",
    "settings_tuned_for",
    "validate_weights_folder",
]

_logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
# Pickle-based formats: loaded only when named, never published.
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".pkl", ".pickle", ".tar")
#: What :func:`load_localization_settings` returns when the weights store no settings.
DEFAULT_LOCALIZATION: dict[str, Any] = {"threshold": 0.5, "min_distance": 3}
_LIB = dict(library_name="liteunet", library_version=__version__)


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


class _Unavailable(Exception):
    """One source of the resolution order has nothing usable; the message says why."""

    def __init__(self, reason: str, corrupt: bool = False) -> None:
        super().__init__(reason)
        self.corrupt = corrupt


# --- reading and checking files ------------------------------------------------------------


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PretrainedWeightsError(f"{path}: not a readable JSON config ({err})") from err
    if not isinstance(config, dict):
        raise PretrainedWeightsError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def _check_architecture(
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
            f"{path}: not a state dict: {_names(not_tensors)} are not tensors "
            "(save model.state_dict())."
        )
    return clean_state_dict(obj)


def _short(obj: Any) -> str:
    return f"with keys {_names(list(obj))}" if isinstance(obj, dict) and obj else ""


def _names(keys: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(str(k) for k in list(keys)[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _check_state_dict(
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
        lines.append(f"  - missing from the file: {_names(missing)}")
    if strict and unexpected:
        lines.append(f"  - not in the model: {_names(unexpected)}")
    lines.append(
        "The file was saved from another architecture or with other model arguments (see "
        "model_args in its config.json); create the model it was saved from, or pass the "
        "matching arguments."
    )
    raise PretrainedWeightsError("\n".join(lines))


def _open_local(path: Path, expected: str | None, need_weights: bool) -> ResolvedWeights:
    """A file or folder the user named: any problem is raised at once (no fallback)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise PretrainedWeightsError(f"pretrained weights file or folder {path} does not exist")
    if path.is_dir():
        config_file = path / CONFIG_NAME if (path / CONFIG_NAME).is_file() else None
        config = _read_config(config_file) if config_file else {}
        weights: Path | None = path / WEIGHTS_NAME
        if not weights.is_file():
            candidates = sorted(path.glob("*.safetensors"))
            if len(candidates) == 1:
                weights = candidates[0]
            elif candidates:
                raise PretrainedWeightsError(
                    f"{path} holds several safetensors files "
                    f"({_names([c.name for c in candidates])}) and no "
                    f"{WEIGHTS_NAME}; name one: pretrained_cfg_overlay=dict(file='{candidates[0]}')"
                )
            else:
                pickles = sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
                hint = (
                    f" {_names([p.name for p in pickles])} are pickle files: they are loaded "
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
                candidate = _read_config(sibling)
            except PretrainedWeightsError:
                candidate = {}
            if "architecture" in candidate:
                config_file, config = sibling, candidate
    _check_architecture(config, config_file, weights, expected)
    state_dict = read_state_dict(weights) if need_weights else None
    return ResolvedWeights("file", weights, config_file, config, state_dict)


def _open_folder_files(
    source: str, config_file: Path, weights: Path | None, expected: str | None
) -> ResolvedWeights:
    config = _read_config(config_file)
    _check_architecture(config, config_file, weights, expected)
    state_dict = read_state_dict(weights) if weights is not None else None
    return ResolvedWeights(source, weights, config_file, config, state_dict)


# --- the Hub ------------------------------------------------------------------------------


def _hub_reason(err: BaseException, repo_id: str, revision: str | None, filename: str) -> str:
    """One line saying why the Hub (or its cache) did not give ``filename``."""
    rev = revision or "main"
    name = type(err).__name__
    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set"
    if isinstance(err, LocalEntryNotFoundError):
        return f"{repo_id}@{rev}/{filename} is not cached"
    if isinstance(err, GatedRepoError):
        return f"{repo_id} is gated: accept its terms on the Hub, log in (hf auth login / HF_TOKEN)"
    if isinstance(err, RepositoryNotFoundError):
        return (
            f"repository {repo_id} not found (if it is private, log in: hf auth login, or HF_TOKEN)"
        )
    if isinstance(err, RevisionNotFoundError):
        return f"revision '{rev}' not found in {repo_id}"
    if isinstance(err, EntryNotFoundError):
        return f"{repo_id}@{rev} has no {filename}"
    if isinstance(err, HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        return (
            f"HTTP {status} for {repo_id}@{rev}/{filename}"
            if status
            else f"{name}: {_first_line(err)}"
        )
    if "Timeout" in name or isinstance(err, TimeoutError):
        return (
            f"no answer within {hf_constants.HF_HUB_ETAG_TIMEOUT} s (HF_HUB_ETAG_TIMEOUT) / "
            f"{hf_constants.HF_HUB_DOWNLOAD_TIMEOUT} s (HF_HUB_DOWNLOAD_TIMEOUT)"
        )
    if "Connect" in name or "Network" in name or isinstance(err, ConnectionError):
        return f"cannot connect ({name}: {_first_line(err)})"
    return f"{name}: {_first_line(err)}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _hub_file(
    repo_id: str, revision: str | None, filename: str, cache_dir: Any, local_only: bool, force: bool
) -> Path:
    if not local_only:
        # One HEAD without retries first: hf_hub_download retries a failing Hub for minutes when
        # nothing is cached, and offline-first means falling through to the next source at once.
        get_hf_file_metadata(
            hf_hub_url(repo_id, filename, revision=revision),
            timeout=hf_constants.HF_HUB_ETAG_TIMEOUT,
            **_LIB,
        )
    return Path(
        hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_only,
            force_download=force,
            **_LIB,
        )
    )


def _from_hub(
    repo_id: str,
    revision: str | None,
    filename: str,
    expected: str | None,
    cache_dir: Any,
    need_weights: bool,
    local_only: bool,
    force: bool = False,
) -> ResolvedWeights:
    """Fetch config.json, check it, then fetch and read the weights; failures are _Unavailable."""
    source = "hub-cache" if local_only else "hub"
    current = CONFIG_NAME
    try:
        config_file = _hub_file(repo_id, revision, CONFIG_NAME, cache_dir, local_only, force)
        config = _read_config(config_file)
        _check_architecture(config, config_file, None, expected)  # before downloading the weights
        if not need_weights:
            return ResolvedWeights(source, None, config_file, config)
        current = filename
        weights = _hub_file(repo_id, revision, filename, cache_dir, local_only, force)
    except PretrainedWeightsError as err:
        raise _Unavailable(str(err), corrupt=True) from err
    except Exception as err:  # every network or cache failure becomes one line
        raise _Unavailable(_hub_reason(err, repo_id, revision, current)) from err
    try:
        return ResolvedWeights(source, weights, config_file, config, read_state_dict(weights))
    except PretrainedWeightsError as err:
        raise _Unavailable(str(err), corrupt=True) from err


# --- resolution order ---------------------------------------------------------------------


def _pretrained_name(variant: str | None, cfg: PretrainedCfg) -> str:
    variant = variant or cfg.architecture or (cfg.hf_hub_id or "model")
    return f"{variant}.{cfg.tag}" if cfg.tag else variant


def _bundle_eligible(name: str, cfg: PretrainedCfg) -> bool:
    """The bundled copy stands in for the registered default weights only (same repo, revision)."""
    if name not in _bundled.BUNDLED_TAGS:
        return False
    registered = get_pretrained_cfg(name)
    return registered is not None and registered.hf_hub_id == cfg.hf_hub_id


def _resolve(
    cfg: PretrainedCfg, variant: str | None, cache_dir: Any = None, need_weights: bool = True
) -> ResolvedWeights:
    """Find the weights ``cfg`` names, in the documented order (see the module docstring)."""
    if cfg.state_dict is not None:
        return ResolvedWeights("state_dict", None, None, {}, dict(cfg.state_dict))
    if cfg.file:  # named by the user: its problems are raised, nothing else is tried
        return _open_local(Path(cfg.file), variant, need_weights)

    name = _pretrained_name(variant, cfg)
    cache = Path(cache_dir or hf_constants.HF_HUB_CACHE)
    # (source, where, why it did not work)
    tried = [
        (
            "local file",
            "",
            "none named (pretrained_cfg_overlay=dict(file=...), 'local-dir:PATH' or "
            "checkpoint_path=...)",
        )
    ]
    repo_id = revision = None
    filename = cfg.hf_hub_filename or WEIGHTS_NAME
    if cfg.hf_hub_id:
        repo_id, revision = hf_split(cfg.hf_hub_id)
        if not filename.endswith(".safetensors"):
            raise PretrainedWeightsError(
                f"'{name}' names {repo_id}/{filename}: only safetensors are loaded from the Hub. "
                "Download it yourself and name the file: "
                f"pretrained_cfg_overlay=dict(file='path/to/{filename}')."
            )
        hub_args = (repo_id, revision, filename, variant, cache_dir, need_weights)
        corrupt = False
        try:
            return _from_hub(*hub_args, local_only=True)
        except _Unavailable as err:
            tried.append(("Hub cache", str(cache), str(err)))
            corrupt = err.corrupt
        if hf_constants.HF_HUB_OFFLINE:
            tried.append(("Hub", hf_constants.ENDPOINT, "skipped, HF_HUB_OFFLINE is set"))
        else:
            try:  # a corrupt cached copy is downloaded again
                return _from_hub(*hub_args, local_only=False, force=corrupt)
            except _Unavailable as err:
                tried.append(("Hub", hf_constants.ENDPOINT, str(err)))
    else:
        tried.append(("Hub", "", "this model names no Hub repository (pretrained_cfg hf_hub_id)"))

    if not _bundle_eligible(name, cfg):
        only = ", ".join(_bundled.BUNDLED_TAGS)
        tried.append(
            (
                "bundled copy",
                "",
                f"only the registered default weights ({only}) ship inside the package",
            )
        )
    elif (folder := _bundled.find_bundled(name)) is None:
        places = " or ".join(str(root / name) for root in _bundled.bundled_roots())
        tried.append(("bundled copy", "", f"no bundled weights in this install (no {places})"))
    else:
        try:
            weights = folder / WEIGHTS_NAME if need_weights else None
            found = _open_folder_files("bundled", folder / CONFIG_NAME, weights, variant)
        except PretrainedWeightsError as err:
            tried.append(("bundled copy", str(folder), str(err)))
        else:
            why = "; ".join(f"{source}: {reason}" for source, _, reason in tried[1:])
            _logger.warning(
                "liteunet: using the '%s' weights bundled with liteunet %s (%s) because %s",
                name,
                __version__,
                folder,
                why,
            )
            return found
    raise _not_found_error(name, tried, repo_id, revision, filename, cache)


def _not_found_error(
    name: str,
    tried: list[tuple[str, str, str]],
    repo_id: str | None,
    revision: str | None,
    filename: str,
    cache: Path,
) -> PretrainedWeightsError:
    where = (
        f" (Hub repository {repo_id}, revision {revision or 'main'}, file {filename})"
        if repo_id
        else ""
    )
    lines = [f"Could not load pretrained weights for '{name}'{where}. Tried, in order:"]
    lines += [
        f"  {i}. {source}{' ' + at if at else ''}: {why}"
        for i, (source, at, why) in enumerate(tried, 1)
    ]
    lines.append("To fix, one of:")
    lines.append(
        f"  - name a local copy: create_model('{name}', pretrained=True, "
        f"pretrained_cfg_overlay=dict(file='path/to/folder_or_{WEIGHTS_NAME}'))"
    )
    if repo_id:
        rev = f" --revision {revision}" if revision else ""
        lines.append(
            f"  - go online once to fill the cache ({cache}), e.g. `hf download {repo_id}{rev}`, "
            "or copy a filled cache there (HF_HOME / HF_HUB_CACHE)"
        )
    lines.append(
        "  - on machines without network, set HF_HUB_OFFLINE=1 so that nothing waits on the Hub"
    )
    lines.append("  - or use pretrained=False for randomly initialized weights")
    return PretrainedWeightsError("\n".join(lines))


def _cfg_for_name(name: str, revision: str | None = None) -> tuple[str | None, PretrainedCfg]:
    source, ident = parse_model_name(str(name))
    if source == "hf-hub":
        cfg, variant = PretrainedCfg(hf_hub_id=ident, source="hf-hub"), None
    elif source == "local-dir":
        cfg, variant = PretrainedCfg(file=ident, source="local-dir"), None
    else:
        from ._factory import is_model

        variant, tag = split_model_name_tag(ident)
        if not is_model(variant):
            raise ValueError(f"unknown model {name!r}; see liteunet.list_models()")
        cfg = resolve_pretrained_cfg(variant, pretrained_cfg=tag or None)
    if revision:
        cfg = _with_revision(cfg, revision, _pretrained_name(variant, cfg))
    return variant, cfg


def _with_revision(cfg: PretrainedCfg, revision: str, name: str) -> PretrainedCfg:
    if not cfg.hf_hub_id:
        raise PretrainedWeightsError(
            f"revision={revision!r} given, but '{name}' names no Hub repository"
        )
    return dataclasses.replace(cfg, hf_hub_id=f"{hf_split(cfg.hf_hub_id)[0]}@{revision}")


def resolve_weights(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    revision: str | None = None,
    config_only: bool = False,
) -> ResolvedWeights:
    """Find (and download if needed) the weights of a pretrained name, in the documented order.

    Also the way to fill the cache on a connected machine before going offline.

    Args:
        name: ``"lite_unet"`` (default tag), ``"lite_unet.crc"``, ``"hf-hub:ORG/NAME[@REV]"`` or
            ``"local-dir:PATH"``.
        cache_dir: Hub cache folder (default: ``HF_HUB_CACHE``).
        revision: Hub revision instead of the pinned one.
        config_only: fetch ``config.json`` only, not the weights.

    Returns:
        Where the weights are, with their parsed ``config.json`` and tensors.

    Raises:
        PretrainedWeightsError: nothing usable was found; the message lists what was tried.

    Example:
        >>> found = resolve_weights("lite_unet.crc")  # doctest: +SKIP
        >>> found.source, found.weights_file.name  # doctest: +SKIP
        ('hub', 'model.safetensors')
    """
    variant, cfg = _cfg_for_name(name, revision)
    if not (cfg.has_weights or cfg.state_dict is not None):
        raise PretrainedWeightsError(f"no pretrained weights are published for '{name}'")
    return _resolve(cfg, variant, cache_dir=cache_dir, need_weights=not config_only)


# --- building models ----------------------------------------------------------------------


def _load_into(
    model: nn.Module,
    found: ResolvedWeights,
    strict: bool = True,
    filter_fn: Callable[..., dict[str, torch.Tensor]] | None = None,
    adapt: bool = True,
) -> None:
    state_dict = (
        found.state_dict if found.state_dict is not None else read_state_dict(found.weights_file)
    )
    if filter_fn is not None:
        try:
            state_dict = filter_fn(state_dict, model)
        except TypeError:  # timm also accepts one-argument filters
            state_dict = filter_fn(state_dict)
    cfg = model.pretrained_cfg
    _check_state_dict(model, state_dict, found.describe(), cfg if adapt else None, strict)
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
    cfg = resolve_pretrained_cfg(
        variant, pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=pretrained_cfg_overlay
    )
    if revision:
        cfg = _with_revision(cfg, revision, _pretrained_name(variant, cfg))
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
    found = _resolve(cfg, variant, cache_dir=cache_dir)
    model_args = found.config.get("model_args")
    if isinstance(model_args, dict) and model_args:
        # num_classes / in_chans come from the pretrained_cfg or the caller, and timm adapts the
        # weights to them; a file that disagrees with its tag fails the shape check instead.
        for key, value in model_args.items():
            if key not in ("num_classes", "in_chans"):
                kwargs.setdefault(key, value)
        kwargs.setdefault("pretrained_model_args", dict(model_args))
    cfg = dataclasses.replace(cfg, state_dict=None)  # the tensors stay out of model.pretrained_cfg
    model = build_model_with_cfg(
        model_cls, variant, False, pretrained_cfg=cfg.to_dict(), cache_dir=cache_dir, **kwargs
    )
    _load_into(model, found, strict=pretrained_strict, filter_fn=pretrained_filter_fn)
    return model


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
    found = _open_local(Path(path), expected, need_weights=True)
    _load_into(model, found, strict=strict, adapt=False)


# --- localization settings ----------------------------------------------------------------


def _config_beside(weights_file: str | Path) -> Path | None:
    path = Path(weights_file)
    config = path / CONFIG_NAME if path.is_dir() else path.parent / CONFIG_NAME
    return config if config.is_file() else None


def _peak_setting_problems(settings: dict[str, Any]) -> list[str]:
    problems = []
    threshold, min_distance = settings["threshold"], settings["min_distance"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        problems.append(f"threshold must be a number, got {threshold!r}")
    if isinstance(min_distance, bool) or not isinstance(min_distance, int) or min_distance < 1:
        problems.append(f"min_distance must be an integer >= 1 (pixels), got {min_distance!r}")
    return problems


def _tta_problems(settings: dict[str, Any]) -> list[str]:
    tta = settings.get("tta")
    if tta is None:
        return []
    # Settings chosen with test-time augmentation, one entry per mode (liteunet.tta).
    if not isinstance(tta, dict) or not all(isinstance(v, dict) for v in tta.values()):
        return [f"tta must map modes to {{threshold, min_distance}} objects, got {tta!r}"]
    return [f"tta {mode}: {p}" for mode, entry in tta.items() for p in _peak_setting_problems({**settings, **entry})]


def settings_tuned_for(stored: dict[str, Any], name: str | None) -> dict[str, Any]:
    """The stored settings chosen on data set ``name`` alone, in place of the shared ones.

    Generalist weights (``lite_unet.multi``) store one threshold and minimum distance chosen
    over all their validation sets, and under ``tuned_for`` the pair that is best on each set
    alone, with its own ``tta`` entries. Images like one of those sets localize better with
    that set's pair (the model card lists them with their F1).

    Args:
        stored: what :func:`load_localization_settings` returns.
        name: a data set named under ``tuned_for``, or ``None`` for the shared settings.

    Raises:
        ValueError: the weights store no settings for ``name``; the message lists those they do.

    Example:
        >>> stored = {"threshold": 0.2, "min_distance": 2, "tuned_for": {"mbm": {"threshold": 0.3, "min_distance": 8}}}
        >>> settings_tuned_for(stored, "mbm")["min_distance"], settings_tuned_for(stored, None)["min_distance"]
        (8, 2)
    """
    if name is None:
        return stored
    tuned = stored.get("tuned_for") or {}
    if name not in tuned:
        have = f"they have settings for {', '.join(sorted(tuned))}" if tuned else "they store none per data set"
        raise ValueError(f"tuned_for={name!r}: these weights have no settings tuned for {name!r}; {have}")
    # The set's own TTA entries replace the shared ones: shared TTA settings were chosen over all sets.
    return {**{k: v for k, v in stored.items() if k not in ("tuned_for", "tta")}, **tuned[name]}


def _localization(config: dict[str, Any], where: Path | str | None) -> dict[str, Any]:
    stored = config.get("localization") or {}
    if not isinstance(stored, dict):
        raise PretrainedWeightsError(
            f"{where}: 'localization' must be a JSON object, got {stored!r}"
        )
    settings = {**DEFAULT_LOCALIZATION, **stored}
    problems = _peak_setting_problems(settings)
    problems += _tta_problems(settings)
    tuned_for = settings.get("tuned_for")
    if tuned_for is not None:
        # Settings chosen on one data set each, for users whose images resemble it.
        if not isinstance(tuned_for, dict) or not all(isinstance(v, dict) for v in tuned_for.values()):
            problems.append(f"tuned_for must map data set names to {{threshold, min_distance}} objects, got {tuned_for!r}")
        else:
            for name, entry in tuned_for.items():
                own = {**settings, "tta": None, **entry}
                problems += [f"tuned_for {name}: {p}" for p in _peak_setting_problems(own) + _tta_problems(own)]
    sigma = settings.get("sigma")
    if sigma is not None and (
        isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma <= 0
    ):
        problems.append(f"sigma must be a number > 0 (pixels), got {sigma!r}")
    if problems:
        raise PretrainedWeightsError(f"{where}: bad 'localization' settings: {'; '.join(problems)}")
    return settings


def _module_config(model: nn.Module) -> tuple[dict[str, Any], Path | str | None]:
    """The ``config.json`` a model's weights came with (``{}`` if none), and where it is."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    loaded = cfg.get("file")
    config_file = _config_beside(loaded) if loaded else None
    if config_file:
        return _read_config(config_file), config_file
    # Models that carry their settings themselves (ONNX files exported by liteunet).
    return {k: cfg[k] for k in ("localization", "inference") if k in cfg}, type(model).__name__


def load_weights_config(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` a model's pretrained weights came with; ``{}`` for a model without one.

    For a model loaded from an exported ONNX file, what the file carries (``localization``,
    ``inference``).

    Example:
        >>> load_weights_config(liteunet.create_model("lite_unet"))
        {}
    """
    return _module_config(model)[0]


def load_inference_checks(model: nn.Module, tta: str | None = None) -> dict[str, Any]:
    """What the weights record about reduced precision: ``{"bf16": {"passed": bool, ...}, ...}``.

    Written by ``liteunet.release`` from :func:`liteunet.evaluate.precision_guard` (F1 at 5 and
    10 px of each precision against float32 on the validation sets); ``{}`` when never measured.
    With ``tta`` (``"flips"``, ``"d4"``): the guard measured with that test-time augmentation
    and its settings (``inference.precision_guard_tta``), when recorded, else the plain one.
    """
    config, _ = _module_config(model)
    inference = config.get("inference") or {}
    with_tta = (inference.get("precision_guard_tta") or {}).get(tta) if tta else None
    return dict(with_tta or inference.get("precision_guard") or {})


def load_localization_settings(
    model_or_name: nn.Module | str | Path, cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """The localization settings stored with a model's weights, or the defaults.

    Args:
        model_or_name: a model created with ``pretrained=True`` (its weights' ``config.json`` is
            read), a pretrained name (``"lite_unet.crc"``, resolved like the weights, config only),
            or a weights folder / ``config.json`` path.
        cache_dir: Hub cache folder for names.

    Returns:
        ``{"threshold", "min_distance", ...}``: what ``config.json``'s ``"localization"`` holds
        (e.g. ``sigma``) over :data:`DEFAULT_LOCALIZATION` (``threshold`` 0.5, ``min_distance``
        3). A model without pretrained weights, or weights without settings, gives the defaults.

    Raises:
        PretrainedWeightsError: a name's config cannot be found, or the settings are malformed.

    Example:
        >>> load_localization_settings(liteunet.create_model("lite_unet"))
        {'threshold': 0.5, 'min_distance': 3}
    """
    if isinstance(model_or_name, nn.Module):
        return _localization(*_module_config(model_or_name))
    path = Path(model_or_name)
    if path.exists():
        config_file = (
            path if path.is_file() and path.name.endswith(".json") else _config_beside(path)
        )
        return _localization(_read_config(config_file) if config_file else {}, config_file)
    variant, cfg = _cfg_for_name(str(model_or_name))
    if not (cfg.has_weights or cfg.state_dict is not None):
        return dict(DEFAULT_LOCALIZATION)
    found = _resolve(cfg, variant, cache_dir=cache_dir, need_weights=False)
    return _localization(found.config, found.config_file)


# --- saving and publishing ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UploadPlan:
    """What :func:`push_weights_folder` uploads: ``files`` (relative to ``folder``), and notes."""

    folder: Path
    files: list[str]
    notes: list[str]
    summary: str


def validate_weights_folder(folder: str | Path) -> UploadPlan:
    """Check that a weights folder is ready to publish; return what would be uploaded.

    Checks: ``config.json`` is timm's format naming a liteunet architecture, with valid
    ``localization`` settings; ``README.md`` is a non-empty card; ``model.safetensors`` loads
    into that architecture (through the same path users load it by); no pickle files.

    Args:
        folder: the weights folder, e.g. ``weights/lite_unet.multi``.

    Returns:
        The plan: files to upload (relative paths, hidden files skipped), notes, a summary line.

    Raises:
        PretrainedWeightsError: listing every problem found.

    Example:
        >>> validate_weights_folder("weights/lite_unet.multi").files  # doctest: +SKIP
        ['README.md', 'config.json', 'model.safetensors']
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PretrainedWeightsError(f"{folder} is not a folder")
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file()
        and not any(
            part.startswith(".") or part == "__pycache__" for part in p.relative_to(folder).parts
        )
    )
    problems: list[str] = []
    notes: list[str] = []
    arch = None
    pickles = [f for f in files if Path(f).suffix in PICKLE_SUFFIXES]
    if pickles:
        problems.append(
            f"pickle files are never published (only safetensors): remove {_names(pickles)}"
        )
    if CONFIG_NAME not in files:
        problems.append(
            f"no {CONFIG_NAME} (write the folder with liteunet.train.save_weights or timm's "
            "save_for_hf)"
        )
    else:
        try:
            config = _read_config(folder / CONFIG_NAME)
            arch = config.get("architecture")
            from ._factory import is_model

            if not arch or not is_model(arch):
                problems.append(
                    f"{CONFIG_NAME}: 'architecture' must name a liteunet model, got {arch!r}"
                )
                arch = None
            if "localization" in config:
                _localization(config, folder / CONFIG_NAME)
            else:
                notes.append(
                    f"{CONFIG_NAME} stores no 'localization' settings: users get "
                    f"{DEFAULT_LOCALIZATION}"
                )
        except PretrainedWeightsError as err:
            problems.append(str(err))
    if (
        CARD_NAME not in files
        or not (folder / CARD_NAME).read_text(encoding="utf-8", errors="replace").strip()
    ):
        problems.append(f"no {CARD_NAME} model card (liteunet.model_card.write_model_card)")
    elif not (folder / CARD_NAME).read_text(encoding="utf-8", errors="replace").startswith("---"):
        notes.append(
            f"{CARD_NAME} has no metadata header (---), so the Hub shows no license or library"
        )
    summary = ""
    if WEIGHTS_NAME not in files:
        problems.append(f"no {WEIGHTS_NAME}")
    elif arch:
        import timm

        try:
            model = timm.create_model(f"local-dir:{folder.resolve()}", pretrained=True)
            params = sum(p.numel() for p in model.parameters())
            summary = f"{WEIGHTS_NAME} loads into {arch} ({params / 1e6:.2f} M parameters)"
        except Exception as err:  # any failure to load is a problem to report
            problems.append(f"{WEIGHTS_NAME} does not load into {arch}: {err}")
    if problems:
        raise PretrainedWeightsError(
            f"{folder} is not ready to publish:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return UploadPlan(folder, files, notes, summary)


def push_weights_folder(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    tag: str | None = None,
    commit_message: str | None = None,
    private: bool = False,
    create_pr: bool = False,
    token: str | None = None,
    dry_run: bool = False,
    echo: Callable[[str], Any] = print,
) -> str | None:
    """Validate a weights folder and upload it to a Hub repository (huggingface_hub's upload API).

    Args:
        folder: the weights folder, e.g. ``weights/lite_unet.multi``.
        repo_id: ``ORG/NAME``; created if missing.
        revision: branch to commit to (default ``main``).
        tag: also tag the new commit (e.g. ``v0.1.0``).
        commit_message: defaults to "Upload <folder name> weights (liteunet <version>)".
        private: create the repository private.
        create_pr: open a pull request instead of committing.
        token: Hub token (default: ``HF_TOKEN`` or the one saved by ``hf auth login``).
        dry_run: validate and list what would be uploaded; upload nothing.
        echo: where progress lines go.

    Returns:
        The commit id (pin it: ``hf_hub_id="ORG/NAME@<commit>"``), or ``None`` for a dry run.

    Raises:
        PretrainedWeightsError: the folder is not ready (every problem listed).
        ValueError: ``repo_id`` is malformed.

    Example:
        >>> push_weights_folder(
        ...     "weights/lite_unet.multi", "liteunet/lite_unet.multi", dry_run=True
        ... )  # doctest: +SKIP
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import validate_repo_id

    if "/" not in repo_id:
        raise ValueError(f"repo_id must be ORG/NAME, got {repo_id!r}")
    validate_repo_id(repo_id)
    plan = validate_weights_folder(folder)
    tagged = f", tag {tag}" if tag else ""
    target = f"{hf_constants.ENDPOINT}/{repo_id} (revision {revision or 'main'}{tagged})"
    sizes = {f: (plan.folder / f).stat().st_size for f in plan.files}
    width = max(len(f) for f in plan.files)
    verb = "Would upload" if dry_run else "Uploading"
    echo(
        f"{verb} {len(plan.files)} files ({_size(sum(sizes.values()))}) from {plan.folder} to "
        f"{target}:"
    )
    for f in plan.files:
        echo(f"  {f:<{width}}  {_size(sizes[f]):>9}")
    echo(f"Checked: {CONFIG_NAME}, {CARD_NAME}, {plan.summary}.")
    for note in plan.notes:
        echo(f"Note: {note}")
    if dry_run:
        return None
    api = HfApi(token=token, **_LIB)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(plan.folder),
        revision=revision,
        create_pr=create_pr,
        commit_message=commit_message
        or f"Upload {plan.folder.name} weights (liteunet {__version__})",
        allow_patterns=plan.files,
    )
    commit = getattr(info, "oid", None)
    if tag and commit and not create_pr:
        api.create_tag(repo_id, tag=tag, revision=commit, tag_message=f"liteunet {__version__}")
    echo(f"Done: {getattr(info, 'commit_url', repo_id)}")
    if commit:
        echo(f"Pin it in the tag's pretrained_cfg: hf_hub_id='{repo_id}@{tag or commit}'")
    return commit


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _cmd_push(args: argparse.Namespace) -> int:
    push_weights_folder(
        args.folder,
        args.repo_id,
        revision=args.revision,
        tag=args.tag,
        commit_message=args.commit_message,
        private=args.private,
        create_pr=args.create_pr,
        token=args.token,
        dry_run=args.dry_run,
    )
    return 0


def add_push_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``push`` sub-command to an ``argparse`` sub-parser group.

    Args:
        subparsers: what ``parser.add_subparsers()`` returned.

    Returns:
        The ``push`` parser; ``args.func(args)`` runs it and returns the exit code.

    Example:
        >>> parser = argparse.ArgumentParser(prog="liteunet")
        >>> _ = add_push_parser(parser.add_subparsers(dest="command"))
        >>> args = ["push", "weights/lite_unet.multi", "--repo-id", "org/name", "--dry-run"]
        >>> parser.parse_args(args).dry_run
        True
    """
    p = subparsers.add_parser(
        "push",
        help="validate a weights folder and upload it to the Hugging Face Hub",
        description="Validate a weights folder (config.json, README.md, model.safetensors loadable "
        "into its architecture) and upload it with huggingface_hub. Log in (hf auth login) or "
        "set HF_TOKEN.",
    )
    p.add_argument("folder", help="weights folder, e.g. weights/lite_unet.multi")
    p.add_argument("--repo-id", required=True, help="Hub repository, ORG/NAME (created if missing)")
    p.add_argument("--revision", default=None, help="branch to commit to (default main)")
    p.add_argument("--tag", default=None, help="also tag the commit, e.g. v0.1.0")
    p.add_argument("--commit-message", default=None, help="commit message")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument(
        "--create-pr", action="store_true", help="open a pull request instead of committing"
    )
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or hf auth login)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and list what would be uploaded; upload nothing",
    )
    p.set_defaults(func=_cmd_push)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m liteunet.hub push FOLDER --repo-id ORG/NAME [--dry-run]``; returns exit code."""
    # One dispatcher for every command: ``python -m liteunet.hub push ...`` is ``liteunet push ...``.
    from .cli import main as cli_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "push":
        print("usage: python -m liteunet.hub push FOLDER --repo-id ORG/NAME [--dry-run] (see liteunet push --help)",
              file=sys.stderr)
        return 2
    return cli_main(argv)


if __name__ == "__main__":  # pragma: no cover
    # Run the package's copy of this module, so that its exceptions are the ones caught.
    from liteunet.hub import main as _main

    sys.exit(_main())
