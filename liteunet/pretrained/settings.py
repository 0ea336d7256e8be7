"""Localization settings stored with the weights, and the one rule that resolves them.

A weights folder's ``config.json`` may carry a ``"localization"`` dict (``threshold``,
``min_distance``, ``sigma``, per-mode ``tta`` entries, per-data-set ``tuned_for`` entries,
``object_size``: the typical object diameter in pixels on the training images, measured with
:func:`liteunet.object_size.estimate_object_size`, and ``mpp`` where known) and an
``"inference"`` dict (the precision guard). This module reads and checks them;
:func:`resolve_settings` decides which apply.

Example:
    >>> import liteunet
    >>> from liteunet.pretrained import load_localization_settings
    >>> model = liteunet.create_model("lite_unet", pretrained=True)  # doctest: +SKIP
    >>> load_localization_settings(model)  # doctest: +SKIP
    {'threshold': 0.5, 'min_distance': 3, 'sigma': 2.0}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from .files import PretrainedWeightsError, config_beside, read_config
from .resolve import cfg_for_name, resolve

__all__ = [
    "DEFAULT_LOCALIZATION",
    "NORMALIZE_MODES",
    "checked_settings",
    "load_inference_checks",
    "load_localization_settings",
    "load_weights_config",
    "resolve_settings",
    "settings_for_mode",
    "settings_tuned_for",
    "weights_config_for",
    "weights_config_of",
]

#: How input intensities may be scaled (``liteunet.data.io.intensity_range``); weights trained
#: with per-image percentiles store ``"normalize": "percentile"``, older weights store none
#: (``"auto"``: 8-bit / 255, other dtypes percentiles); ``"nuclear"``: one plane in which nuclei
#: are bright, whatever the stain or modality (``liteunet.data.io.normalize_image``).
NORMALIZE_MODES = ("auto", "percentile", "none", "nuclear")

#: What :func:`load_localization_settings` returns when the weights store no settings.
DEFAULT_LOCALIZATION: dict[str, Any] = {"threshold": 0.5, "min_distance": 3}


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


def checked_settings(config: dict[str, Any], where: Path | str | None) -> dict[str, Any]:
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
    normalize = settings.get("normalize", "auto")
    if normalize not in NORMALIZE_MODES:
        problems.append(f"normalize must be one of {list(NORMALIZE_MODES)}, got {normalize!r}")
    sigma = settings.get("sigma")
    if sigma is not None and (
        isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma <= 0
    ):
        problems.append(f"sigma must be a number > 0 (pixels), got {sigma!r}")
    for name in ("object_size", "mpp"):
        value = settings.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
            problems.append(f"{name} must be a number > 0, got {value!r}")
    if problems:
        raise PretrainedWeightsError(f"{where}: bad 'localization' settings: {'; '.join(problems)}")
    return settings


def weights_config_of(model: nn.Module) -> tuple[dict[str, Any], Path | str | None]:
    """The ``config.json`` a model's weights came with (``{}`` if none), and where it is."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    loaded = cfg.get("file")
    config_file = config_beside(loaded) if loaded else None
    if config_file:
        return read_config(config_file), config_file
    # Models that carry their settings themselves (ONNX files exported by liteunet).
    return {k: cfg[k] for k in ("localization", "inference") if k in cfg}, type(model).__name__


def load_weights_config(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` a model's pretrained weights came with; ``{}`` for a model without one.

    For a model loaded from an exported ONNX file, what the file carries (``localization``,
    ``inference``).

    Example:
        >>> import liteunet
        >>> load_weights_config(liteunet.create_model("lite_unet"))
        {}
    """
    return weights_config_of(model)[0]


def load_inference_checks(model: nn.Module, tta: str | None = None) -> dict[str, Any]:
    """What the weights record about reduced precision: ``{"bf16": {"passed": bool, ...}, ...}``.

    Written by ``liteunet.release`` from :func:`liteunet.evaluate.precision_guard` (F1 at 5 and
    10 px of each precision against float32 on the validation sets); ``{}`` when never measured.
    With ``tta`` (``"flips"``, ``"d4"``): the guard measured with that test-time augmentation
    and its settings (``inference.precision_guard_tta``), when recorded, else the plain one.
    """
    config, _ = weights_config_of(model)
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
        >>> import liteunet
        >>> load_localization_settings(liteunet.create_model("lite_unet"))
        {'threshold': 0.5, 'min_distance': 3}
    """
    if isinstance(model_or_name, nn.Module):
        return checked_settings(*weights_config_of(model_or_name))
    return checked_settings(*weights_config_for(model_or_name, cache_dir=cache_dir))


def weights_config_for(
    name_or_path: str | Path, cache_dir: str | Path | None = None
) -> tuple[dict[str, Any], Path | None]:
    """The ``config.json`` of a pretrained tag, a weights folder or a weights file, and where it is.

    A tag is resolved like its weights (config only: nothing large is downloaded). A model name
    without published weights, or a path without a ``config.json``, gives ``({}, None)``.

    Example:
        >>> weights_config_for("lite_unet.ki67")[0]["num_classes"]  # doctest: +SKIP
        2
    """
    path = Path(name_or_path)
    if path.exists():
        config_file = path if path.is_file() and path.name.endswith(".json") else config_beside(path)
        return (read_config(config_file) if config_file else {}), config_file
    variant, cfg = cfg_for_name(str(name_or_path))
    if not (cfg.has_weights or cfg.state_dict is not None):
        return {}, None
    found = resolve(cfg, variant, cache_dir=cache_dir, need_weights=False)
    return found.config, found.config_file


def settings_for_mode(stored: dict[str, Any], mode: str | None) -> dict[str, Any]:
    """The stored localization settings to use with ``mode``: its own entry over the plain ones.

    Args:
        stored: what :func:`load_localization_settings` returns (``config.json``
            ``localization``), whose optional ``tta`` maps modes to ``threshold`` and
            ``min_distance`` chosen with that augmentation.
        mode: ``None`` (no augmentation), ``"flips"`` or ``"d4"``.

    Example:
        >>> stored = {"threshold": 0.15, "min_distance": 3, "tta": {"d4": {"threshold": 0.1}}}
        >>> settings_for_mode(stored, "d4")["threshold"], settings_for_mode(stored, None)["threshold"]
        (0.1, 0.15)
    """
    if not mode:
        return stored
    return {**stored, **(stored.get("tta") or {}).get(mode, {})}


def resolve_settings(
    stored: dict[str, Any],
    *,
    tuned_for: str | None = None,
    tta: str | None = None,
    threshold: float | None = None,
    min_distance: int | None = None,
) -> dict[str, Any]:
    """The one rule for which stored settings apply: data set, then TTA mode, then the caller.

    ``Localizer``, ``liteunet eval`` and the release all call this, so a threshold means the
    same thing everywhere.

    Args:
        stored: what :func:`load_localization_settings` returns.
        tuned_for: a data set named under ``tuned_for`` (see :func:`settings_tuned_for`).
        tta: a test-time augmentation mode; its own entry wins (averaged maps peak lower).
        threshold, min_distance: the caller's values, which override what is stored.

    Returns:
        The settings with ``threshold`` and ``min_distance`` resolved.

    Example:
        >>> stored = {"threshold": 0.2, "min_distance": 3, "tta": {"d4": {"threshold": 0.1}}}
        >>> resolve_settings(stored, tta="d4")["threshold"], resolve_settings(stored, min_distance=5)["min_distance"]
        (0.1, 5)
    """
    chosen = settings_for_mode(settings_tuned_for(stored, tuned_for), tta)
    overrides = {"threshold": threshold, "min_distance": min_distance}
    return {**chosen, **{k: v for k, v in overrides.items() if v is not None}}
