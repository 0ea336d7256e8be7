"""Pretrained weights and the Hub, under the name the docs and notebooks have always used.

The code lives in :mod:`liteunet.pretrained` (files, the offline-first resolution order,
building, stored settings) and :mod:`liteunet.publish` (validating and uploading a weights
folder); this module re-exports their public names, so ``from liteunet.hub import
load_localization_settings`` keeps working. Publish from the command line with
``liteunet push FOLDER --repo-id ORG/NAME`` (``python -m liteunet.hub push`` still runs it).
"""

from .pretrained import (
    CARD_NAME,
    CONFIG_NAME,
    DEFAULT_LOCALIZATION,
    PICKLE_SUFFIXES,
    WEIGHTS_NAME,
    PretrainedWeightsError,
    ResolvedWeights,
    build_pretrained,
    load_inference_checks,
    load_localization_settings,
    load_weights_config,
    load_weights_file,
    read_state_dict,
    resolve_settings,
    resolve_weights,
    settings_for_mode,
    settings_tuned_for,
)
from .publish import UploadPlan, push_weights_folder, validate_weights_folder

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "DEFAULT_LOCALIZATION",
    "PICKLE_SUFFIXES",
    "WEIGHTS_NAME",
    "PretrainedWeightsError",
    "ResolvedWeights",
    "UploadPlan",
    "build_pretrained",
    "load_inference_checks",
    "load_localization_settings",
    "load_weights_config",
    "load_weights_file",
    "push_weights_folder",
    "read_state_dict",
    "resolve_settings",
    "resolve_weights",
    "settings_for_mode",
    "settings_tuned_for",
    "validate_weights_folder",
]

if __name__ == "__main__":  # pragma: no cover - `python -m liteunet.hub push ...`, kept working
    import os
    import sys

    # The command line is `liteunet push`; hand over to it in a fresh interpreter rather than
    # import the CLI into a library module.
    print("python -m liteunet.hub is deprecated: use `liteunet push ...`", file=sys.stderr)
    os.execv(sys.executable, [sys.executable, "-m", "liteunet", *sys.argv[1:]])
