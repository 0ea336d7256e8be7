"""liteunet: the Lite-UNet model zoo for cell localization in microscopy and pathology images.

Importing the package registers the zoo in timm's registry, so ``timm.create_model("lite_unet")``
works after ``import liteunet``. ``docs/architecture.md`` maps the modules.

>>> import liteunet
>>> model = liteunet.create_model("lite_unet")
>>> liteunet.list_models("lite_unet*")
['lite_unet', 'lite_unet_ghost_cbam', 'lite_unet_ghost_cbam_ga']
"""

from ._version import __version__
from . import layers, models
from .complexity import count_macs, count_params
from .inference import fuse
from .localization import LocalizationOptions, LocalizationResult, Localizer, localize
from .models import create_model, is_model, list_models, load_model

__all__ = [
    "__version__", "LocalizationOptions", "LocalizationResult", "Localizer", "count_macs",
    "count_params", "create_model", "fuse", "is_model", "layers", "list_models", "load_model",
    "localize", "models",
]
