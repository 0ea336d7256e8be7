"""liteunet: the Lite-UNet model zoo for cell localization in microscopy and pathology images.

>>> import liteunet
>>> model = liteunet.create_model("lite_unet")
>>> liteunet.list_models("lite_unet*")
['lite_unet', 'lite_unet_ghost_cbam', 'lite_unet_ghost_cbam_ga']
"""

__version__ = "0.1.0"

from . import layers, models
from ._factory import create_model, is_model, list_models
from .complexity import count_macs, count_params
from .inference import fuse
from .localization import LocalizationResult, Localizer, localize

__all__ = [
    "__version__", "LocalizationResult", "Localizer", "count_macs", "count_params", "create_model",
    "fuse", "is_model", "layers", "list_models", "localize", "models",
]
