"""The Lite-UNet paper's U-Net baseline (Table 2 and Table 5, first row).

U-Net (Ronneberger et al., MICCAI 2015) as the Lite-UNet paper counts it: encoder stages of
64-128-256-512-1024 channels, each two 3x3 conv + BN + ReLU; each up step a 2x upsample then a
3x3 conv + BN + ReLU halving the channels, concatenation with the skip and two 3x3 conv blocks;
a 1x1 head. Convolutions carry a bias, as in the common PyTorch U-Net the paper's numbers come
from: 34.53 M parameters and 261.4 G MACs at 512x512 (paper: 34.53 M / 261.87 G).
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn
from timm.layers import ConvNormAct
from timm.layers.typing import LayerType
from timm.models import generate_default_cfgs, register_model

from ._base import LocalizationModel
from ._pretrained import build_localization_model, localization_cfg
from .lite_unet import UpConv

__all__ = ["UNet", "DoubleConv"]


class DoubleConv(nn.Sequential):
    """Two 3x3 conv + BN + ReLU blocks, U-Net's basic block.

    Shape:
        - input: :math:`(B, C_{in}, H, W)`
        - output: :math:`(B, C_{out}, H, W)`
    """

    def __init__(
        self, in_chans: int, out_chans: int, norm_layer: LayerType = nn.BatchNorm2d, act_layer: LayerType = nn.ReLU
    ) -> None:
        super().__init__(
            ConvNormAct(in_chans, out_chans, 3, bias=True, norm_layer=norm_layer, act_layer=act_layer),
            ConvNormAct(out_chans, out_chans, 3, bias=True, norm_layer=norm_layer, act_layer=act_layer),
        )


class UNet(LocalizationModel):
    """The paper's U-Net baseline for location-map regression.

    Args:
        in_chans: image channels.
        num_classes: location maps out.
        widths: channels of the five encoder stages.
        norm_layer, act_layer: norm and activation of every conv block.
        min_input_size: smaller images are zero-padded (centred) to this size, as the training
            crops were; 0 turns it off. Weights store it in their config.json.

    Shape:
        - input: :math:`(B, C_{in}, H, W)`, any H and W
        - output: :math:`(B, num\\_classes, H, W)`
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1,
        widths: tuple[int, ...] = (64, 128, 256, 512, 1024),
        norm_layer: LayerType = nn.BatchNorm2d,
        act_layer: LayerType = nn.ReLU,
        min_input_size: int = 0,
    ) -> None:
        super().__init__(in_chans, num_classes, tuple(widths), min_input_size)
        widths = self.widths
        nl = dict(norm_layer=norm_layer, act_layer=act_layer)
        self.encoder = nn.ModuleList(
            [DoubleConv(in_chans if i == 0 else widths[i - 1], widths[i], **nl) for i in range(5)]
        )
        self.bottleneck = nn.Identity()
        self.up = nn.ModuleList([UpConv(widths[i], widths[i - 1], bias=True, **nl) for i in range(4, 0, -1)])
        self.decoder = nn.ModuleList([DoubleConv(2 * widths[i - 1], widths[i - 1], **nl) for i in range(4, 0, -1)])
        self.head = nn.Conv2d(widths[0], num_classes, 1)


def _create_unet(variant: str, pretrained: bool = False, **kwargs: Any) -> UNet:
    return build_localization_model(UNet, variant, pretrained, **kwargs)


default_cfgs = generate_default_cfgs({"unet": localization_cfg(first_conv="encoder.0.0.conv")})


@register_model
def unet(pretrained: bool = False, **kwargs: Any) -> UNet:
    """The paper's U-Net baseline: 34.53 M params, 261 G MACs at 512x512."""
    return _create_unet("unet", pretrained, **kwargs)
