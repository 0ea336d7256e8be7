"""Lite-UNet, its Table 5 ablations and the paper's U-Net baseline, registered in timm's registry.

The model files register themselves when imported; :mod:`._factory` narrows timm's registry to
this zoo and turns a tag or a weights folder into a model (:func:`load_model`).
"""

from ._base import LocalizationModel
from .lite_unet import LiteUNet, lite_unet, lite_unet_ghost_cbam, lite_unet_ghost_cbam_ga
from .unet import UNet, unet
from ._factory import create_model, is_model, list_models, load_model  # after the registrations

__all__ = [
    "LiteUNet",
    "LocalizationModel",
    "UNet",
    "create_model",
    "is_model",
    "lite_unet",
    "lite_unet_ghost_cbam",
    "lite_unet_ghost_cbam_ga",
    "list_models",
    "load_model",
    "unet",
]
