"""liteunet: the Lite-UNet model zoo for cell localization in microscopy and pathology images.

Importing the package registers the zoo in timm's registry, so ``timm.create_model("lite_unet")``
works after ``import liteunet``. ``docs/architecture.md`` maps the modules.

>>> import liteunet
>>> model = liteunet.create_model("lite_unet")
>>> liteunet.list_models("lite_unet*")
['lite_unet', 'lite_unet_ghost_cbam', 'lite_unet_ghost_cbam_ga']
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from ._version import __version__

#: Public names and the module that defines each; loaded on first use when not loaded already.
_EXPORTS = {
    "LocalizationOptions": "localization",
    "LocalizationResult": "localization",
    "Localizer": "localization",
    "localize": "localization",
    "count_macs": "complexity",
    "count_params": "complexity",
    "create_model": "models",
    "is_model": "models",
    "list_models": "models",
    "load_model": "models",
    "fuse": "inference",
    "layers": None,
    "models": None,
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'liteunet' has no attribute {name!r}")
    module = importlib.import_module(f".{_EXPORTS[name] or name}", __name__)
    value = module if _EXPORTS[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def _started_as_the_command() -> bool:
    """Whether this import is the ``liteunet`` command starting (console script or ``python -m liteunet``).

    The command imports what each sub-command needs itself, so ``liteunet --version`` and
    ``--help`` answer without loading torch; everyone else gets the registered zoo at once.
    """
    script = os.path.splitext(os.path.basename(sys.argv[0] if sys.argv else ""))[0]
    orig = list(getattr(sys, "orig_argv", []))
    as_module = "-m" in orig and orig[orig.index("-m") + 1 : orig.index("-m") + 2] == ["liteunet"]
    return script == "liteunet" or as_module


if not _started_as_the_command():
    # Registers Lite-UNet, its ablations and U-Net in timm's registry.
    from . import layers, models  # noqa: E402
    from .complexity import count_macs, count_params  # noqa: E402
    from .inference import fuse  # noqa: E402
    from .localization import LocalizationOptions, LocalizationResult, Localizer, localize  # noqa: E402
    from .models import create_model, is_model, list_models, load_model  # noqa: E402
