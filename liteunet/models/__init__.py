"""Lite-UNet, its Table 5 ablations and the paper's U-Net baseline, registered in timm's registry."""

from ._base import LocalizationModel
from .lite_unet import LiteUNet, lite_unet, lite_unet_ghost_cbam, lite_unet_ghost_cbam_ga
from .unet import UNet, unet

__all__ = [
    "LiteUNet",
    "LocalizationModel",
    "UNet",
    "lite_unet",
    "lite_unet_ghost_cbam",
    "lite_unet_ghost_cbam_ga",
    "unet",
]
