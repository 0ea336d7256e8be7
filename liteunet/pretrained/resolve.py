"""The offline-first resolution order: which copy of a pretrained tag's weights is used.

``create_model("lite_unet.crc", pretrained=True)`` (or ``timm.create_model``) looks for the
weights in this order and stops at the first that works:

1. a local file or folder the user names: ``pretrained_cfg_overlay=dict(file=...)``, a
   ``local-dir:PATH`` model name, or ``checkpoint_path=...``;
2. the Hugging Face Hub cache (``HF_HUB_CACHE``, ``HF_HOME``, or ``cache_dir=``), without any
   network access;
3. the Hub itself (``HF_ENDPOINT``), unless ``HF_HUB_OFFLINE=1``;
4. the copy bundled inside the installed package (every tag of the zoo,
   :data:`liteunet.pretrained.bundled.BUNDLED_TAGS`, at its pinned revision), with one INFO log
   line per process saying so.

Every copy found in the cache, on the Hub or in the package is checked against the model being
built (``check``: names and shapes) before it is accepted: a cached copy that is well-formed but
does not fit (another head, other widths) is treated like a corrupt one, downloaded again, and
otherwise left for the next source, with its path named so that it can be deleted.

When none works, one :class:`~liteunet.pretrained.files.PretrainedWeightsError` lists what was
tried and how to fix it. Each pretrained tag names its Hub repository in its ``pretrained_cfg``
(``hf_hub_id="ORG/NAME@REVISION"``, timm's way of pinning a revision). Only safetensors are
loaded from the Hub, the cache and folders.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub import constants as hf_constants
from timm.models import PretrainedCfg, get_pretrained_cfg, is_model, parse_model_name, resolve_pretrained_cfg, split_model_name_tag

from .._version import __version__
from . import bundled
from .files import CONFIG_NAME, WEIGHTS_NAME, PretrainedWeightsError, ResolvedWeights, open_folder_files, open_local
from .from_hub import Unavailable, from_hub, split_repo_revision

__all__ = ["cfg_for_name", "pretrained_name", "resolve", "resolve_weights", "with_revision"]

_logger = logging.getLogger("liteunet.pretrained")
#: Tags whose bundled copy has been announced in this process.
_ANNOUNCED: set[str] = set()


def pretrained_name(variant: str | None, cfg: PretrainedCfg) -> str:
    variant = variant or cfg.architecture or (cfg.hf_hub_id or "model")
    return f"{variant}.{cfg.tag}" if cfg.tag else variant


def _bundle_eligible(name: str, cfg: PretrainedCfg) -> bool:
    """The bundled copy stands in for a tag's registered weights only (same repo, revision)."""
    if name not in bundled.BUNDLED_TAGS:
        return False
    registered = get_pretrained_cfg(name)
    return registered is not None and registered.hf_hub_id == cfg.hf_hub_id


#: Checks a copy found in the cache, on the Hub or in the package against the model being built;
#: raises PretrainedWeightsError when it does not fit.
Check = Callable[[ResolvedWeights], None]


def _accepted(found: ResolvedWeights, check: Check | None, cached: bool = False) -> ResolvedWeights:
    """``found`` once ``check`` accepts it; a copy that does not fit is Unavailable (corrupt)."""
    if check is None or found.weights_file is None:
        return found
    try:
        check(found)
    except PretrainedWeightsError as err:
        first = str(err).splitlines()[0]
        detail = "; ".join(line.strip() for line in str(err).splitlines()[1:2])
        where = found.weights_file
        target = Path(where).resolve() if cached else where
        advice = (
            f"delete the cached file {where} (it links to {target}) and its snapshot folder, "
            "or let it be downloaded again"
            if cached
            else "it is not the file this tag was published with"
        )
        raise Unavailable(f"{first} {detail}; {advice}", corrupt=True) from err
    return found


def resolve(
    cfg: PretrainedCfg,
    variant: str | None,
    cache_dir: Any = None,
    need_weights: bool = True,
    check: Check | None = None,
) -> ResolvedWeights:
    """Find the weights ``cfg`` names, in the documented order (see the module docstring).

    ``check`` (optional) is called on each copy from the cache, the Hub or the package and raises
    :class:`PretrainedWeightsError` when it does not fit the model; such a copy is skipped like a
    corrupt one. A file the user named or an in-memory state dict is not checked here (its
    problems are raised by the caller, with no fallback).
    """
    if cfg.state_dict is not None:
        return ResolvedWeights("state_dict", None, None, {}, dict(cfg.state_dict))
    if cfg.file:  # named by the user: its problems are raised, nothing else is tried
        return open_local(Path(cfg.file), variant, need_weights)

    name = pretrained_name(variant, cfg)
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
        repo_id, revision = split_repo_revision(cfg.hf_hub_id)
        if not filename.endswith(".safetensors"):
            raise PretrainedWeightsError(
                f"'{name}' names {repo_id}/{filename}: only safetensors are loaded from the Hub. "
                "Download it yourself and name the file: "
                f"pretrained_cfg_overlay=dict(file='path/to/{filename}')."
            )
        hub_args = (repo_id, revision, filename, variant, cache_dir, need_weights)
        corrupt = False
        try:
            return _accepted(from_hub(*hub_args, local_only=True), check, cached=True)
        except Unavailable as err:
            tried.append(("Hub cache", str(cache), str(err)))
            corrupt = err.corrupt
        if hf_constants.HF_HUB_OFFLINE:
            tried.append(("Hub", hf_constants.ENDPOINT, "skipped, HF_HUB_OFFLINE is set"))
        else:
            try:  # a corrupt cached copy is downloaded again
                return _accepted(from_hub(*hub_args, local_only=False, force=corrupt), check)
            except Unavailable as err:
                tried.append(("Hub", hf_constants.ENDPOINT, str(err)))
    else:
        tried.append(("Hub", "", "this model names no Hub repository (pretrained_cfg hf_hub_id)"))

    if not _bundle_eligible(name, cfg):
        only = ", ".join(bundled.BUNDLED_TAGS)
        tried.append(
            (
                "bundled copy",
                "",
                f"only the registered weights of the zoo's tags ({only}, at their pinned revision) "
                "ship inside the package",
            )
        )
    elif (folder := bundled.find_bundled(name)) is None:
        places = " or ".join(str(root / name) for root in bundled.bundled_roots())
        tried.append(("bundled copy", "", f"no bundled weights in this install (no {places})"))
    else:
        try:
            weights = folder / WEIGHTS_NAME if need_weights else None
            found = _accepted(
                open_folder_files("bundled", folder / CONFIG_NAME, weights, variant), check
            )
        except (PretrainedWeightsError, Unavailable) as err:
            tried.append(("bundled copy", str(folder), str(err)))
        else:
            if name not in _ANNOUNCED:
                # The bundled copy is the tag's registered weights, what was asked for: said once
                # per process, at INFO (a warning would be noise on every offline run).
                _ANNOUNCED.add(name)
                why = "; ".join(f"{source}: {reason}" for source, _, reason in tried[1:])
                _logger.info(
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
        f"  - name a local copy of the weights (a folder, or its {WEIGHTS_NAME}): on the command "
        "line `--model path/to/folder`; in Python create_model('path/to/folder'), or "
        f"create_model('{name}', pretrained=True, pretrained_cfg_overlay=dict(file='path/to/folder'))"
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
    lines.append("  - or, in Python, pretrained=False for randomly initialized weights")
    return PretrainedWeightsError("\n".join(lines))


def cfg_for_name(name: str, revision: str | None = None) -> tuple[str | None, PretrainedCfg]:
    source, ident = parse_model_name(str(name))
    if source == "hf-hub":
        cfg, variant = PretrainedCfg(hf_hub_id=ident, source="hf-hub"), None
    elif source == "local-dir":
        cfg, variant = PretrainedCfg(file=ident, source="local-dir"), None
    else:
        variant, tag = split_model_name_tag(ident)
        if not is_model(variant):
            raise ValueError(f"unknown model {name!r}; see liteunet.list_models()")
        cfg = resolve_pretrained_cfg(variant, pretrained_cfg=tag or None)
    if revision:
        cfg = with_revision(cfg, revision, pretrained_name(variant, cfg))
    return variant, cfg


def with_revision(cfg: PretrainedCfg, revision: str, name: str) -> PretrainedCfg:
    if not cfg.hf_hub_id:
        raise PretrainedWeightsError(
            f"revision={revision!r} given, but '{name}' names no Hub repository"
        )
    return dataclasses.replace(cfg, hf_hub_id=f"{split_repo_revision(cfg.hf_hub_id)[0]}@{revision}")


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
    variant, cfg = cfg_for_name(name, revision)
    if not (cfg.has_weights or cfg.state_dict is not None):
        raise PretrainedWeightsError(f"no pretrained weights are published for '{name}'")
    return resolve(cfg, variant, cache_dir=cache_dir, need_weights=not config_only)
