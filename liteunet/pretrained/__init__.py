"""Pretrained weights: files, the offline-first resolution order, building, stored settings.

Modules, from the bottom up:

- :mod:`~liteunet.pretrained.files`: reading and checking weights files and ``config.json``;
- :mod:`~liteunet.pretrained.bundled`: the default weights that ship inside the package;
- :mod:`~liteunet.pretrained.from_hub`: the Hugging Face Hub and its cache;
- :mod:`~liteunet.pretrained.resolve`: which copy is used (file, cache, Hub, bundled);
- :mod:`~liteunet.pretrained.build`: a model built with its weights, or a named file loaded;
- :mod:`~liteunet.pretrained.settings`: the localization settings stored with the weights.

Nothing here imports the model zoo: the model files call :func:`build_pretrained`.
"""

from .build import build_pretrained, load_weights_file
from .files import (
    CARD_NAME,
    CONFIG_NAME,
    PICKLE_SUFFIXES,
    WEIGHTS_NAME,
    PretrainedWeightsError,
    ResolvedWeights,
    read_config,
    read_state_dict,
)
from .resolve import resolve_weights
from .settings import (
    DEFAULT_LOCALIZATION,
    load_inference_checks,
    load_localization_settings,
    load_weights_config,
    resolve_settings,
    settings_for_mode,
    settings_tuned_for,
)

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "DEFAULT_LOCALIZATION",
    "PICKLE_SUFFIXES",
    "WEIGHTS_NAME",
    "PretrainedWeightsError",
    "ResolvedWeights",
    "build_pretrained",
    "load_inference_checks",
    "load_localization_settings",
    "load_weights_config",
    "load_weights_file",
    "read_config",
    "read_state_dict",
    "resolve_settings",
    "resolve_weights",
    "settings_for_mode",
    "settings_tuned_for",
]
