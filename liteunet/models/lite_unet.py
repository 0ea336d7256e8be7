"""Lite-UNet: a lightweight and efficient network for cell localization.

Paper: Li Bo, Zhang Yong, Ren Yunhan, Zhang Chengyang, Yin Baocai, "Lite-UNet: A lightweight
and efficient network for cell localization", Engineering Applications of Artificial
Intelligence, 2024 (Fig. 2, sections 3 and 4.1, Tables 2 and 5).

Layout (Fig. 2): four down and four up stages. The first encoder block is the gradient
aggregation module (GA); every other conv block is a Ghost_CBAM block, except the up-sampling
steps, which stay 2x upsample + 3x3 conv; graph correlation attention (GCA) sits at the end of
the encoder; a 1x1 head gives one location map per class at input resolution.

The paper does not list its stage widths. ``(28, 56, 112, 256, 256)`` reproduces its Tables 2
and 5 with the same counter that gives the U-Net baseline exactly its Table 2 row
(``liteunet info lite_unet``): 1.32 M parameters and 17.4 G MACs at 512x512 for Lite-UNet
(paper 1.30 M / 17.50 G); 1.22 M / 16.4 G (Ghost_CBAM only) and 1.22 M / 17.3 G (+GA)
for the ablation rows (paper 1.25 M / 16.80 G for both).

``theta`` (eq. 3) defaults to 0.7: Fig. 7 finds 0.2 and 0.7 best for localization (0.4 best
for counting); 0.7 is also the value the difference convolution was introduced with.

Registered variants (Table 5 rows):
- ``lite_unet_ghost_cbam``: U-Net with Ghost_CBAM blocks and reduced widths.
- ``lite_unet_ghost_cbam_ga``: + GA as the first encoder block.
- ``lite_unet``: + GCA, the full model.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn
from timm.layers import ConvNormAct
from timm.layers.typing import LayerType
from timm.models import generate_default_cfgs, register_model

from ..layers import GhostCBAM, GradientAggregation, GraphCorrelationAttention
from ._base import LocalizationModel
from ._pretrained import build_localization_model, hub_weights, localization_cfg

__all__ = ["LiteUNet", "UpConv"]


class UpConv(nn.Sequential):
    """Up-sampling step of Lite-UNet and U-Net: 2x nearest upsample, then 3x3 conv + BN + ReLU.

    Shape:
        - input: :math:`(B, C_{in}, H, W)`
        - output: :math:`(B, C_{out}, 2H, 2W)`
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        bias: bool = False,
        norm_layer: LayerType = nn.BatchNorm2d,
        act_layer: LayerType = nn.ReLU,
    ) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            ConvNormAct(in_chans, out_chans, 3, bias=bias, norm_layer=norm_layer, act_layer=act_layer),
        )


class LiteUNet(LocalizationModel):
    """Lite-UNet (Fig. 2) and its Table 5 ablations.

    Args:
        in_chans: image channels (3 for RGB, 1 for fluorescence).
        num_classes: location maps out (1 = all cells, 2 = Ki-67 positive / negative).
        widths: channels of the five encoder stages (the decoder mirrors them).
        theta: trade-off of the difference convolutions in GA, eq. (3).
        use_ga: GA as the first encoder block (else a Ghost_CBAM block).
        use_gca: GCA at the end of the encoder.
        gca_qk_ratio: width of GCA's query/key maps relative to the bottleneck width.
        gca_drop: dropout of eq. (8).
        ghost_depth: Ghost modules per Ghost_CBAM block (2, like U-Net's double conv).
        norm_layer, act_layer: norm and activation of every conv block.
        min_input_size: smaller images are zero-padded (centred) to this size, as the training
            crops were; 0 turns it off. Weights store it in their config.json.

    Shape:
        - input: :math:`(B, C_{in}, H, W)`, any H and W (see :class:`LocalizationModel`)
        - output: :math:`(B, num\\_classes, H, W)`, the location map

    Example:
        >>> import liteunet, torch
        >>> model = liteunet.create_model("lite_unet")
        >>> model(torch.rand(1, 3, 100, 120)).shape
        torch.Size([1, 1, 100, 120])
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1,
        widths: tuple[int, ...] = (28, 56, 112, 256, 256),
        theta: float = 0.7,
        use_ga: bool = True,
        use_gca: bool = True,
        gca_qk_ratio: float = 0.25,
        gca_drop: float = 0.1,
        ghost_depth: int = 2,
        norm_layer: LayerType = nn.BatchNorm2d,
        act_layer: LayerType = nn.ReLU,
        min_input_size: int = 0,
    ) -> None:
        super().__init__(in_chans, num_classes, tuple(widths), min_input_size)
        widths = self.widths
        block_args = dict(depth=ghost_depth, norm_layer=norm_layer, act_layer=act_layer)
        first = (
            GradientAggregation(in_chans, widths[0], theta=theta, norm_layer=norm_layer, act_layer=act_layer)
            if use_ga
            else GhostCBAM(in_chans, widths[0], **block_args)
        )
        self.encoder = nn.ModuleList(
            [first] + [GhostCBAM(widths[i - 1], widths[i], **block_args) for i in range(1, 5)]
        )
        self.bottleneck = (
            GraphCorrelationAttention(widths[4], max(1, round(widths[4] * gca_qk_ratio)), drop=gca_drop)
            if use_gca
            else nn.Identity()
        )
        self.up = nn.ModuleList(
            [UpConv(widths[i], widths[i - 1], norm_layer=norm_layer, act_layer=act_layer) for i in range(4, 0, -1)]
        )
        self.decoder = nn.ModuleList([GhostCBAM(2 * widths[i - 1], widths[i - 1], **block_args) for i in range(4, 0, -1)])
        self.head = nn.Conv2d(widths[0], num_classes, 1)


def _create_lite_unet(variant: str, pretrained: bool = False, **kwargs: Any) -> LiteUNet:
    return build_localization_model(LiteUNet, variant, pretrained, **kwargs)


# The GA module's four difference convs all read the image: timm adapts each of them when
# pretrained RGB weights are loaded with another in_chans.
_GA_INPUT_CONVS = tuple(f"encoder.0.branches.{i}.0.conv" for i in range(4))


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return localization_cfg(**{"first_conv": _GA_INPUT_CONVS, **kwargs})


default_cfgs = generate_default_cfgs(
    {
        # Pretrained tags; their weights are trained on ../shared/datasets (see weights/), published
        # on the Hub as liteunet/<tag> (hub_weights); every tag also ships inside the wheel.
        # The starred tag is the default of create_model("lite_unet", pretrained=True).
        "lite_unet.generalist*": _cfg(
            **hub_weights("lite_unet.generalist"),
            description="the default: nuclei and cells in H&E, IHC, fluorescence and bright-field, all seven shared sets",
        ),
        "lite_unet.multi": _cfg(
            **hub_weights("lite_unet.multi"),
            description="H&E nuclei, bone marrow, adipocytes, fluorescence nuclei and cells (the default before lite_unet.generalist)",
        ),
        "lite_unet.crc": _cfg(
            **hub_weights("lite_unet.crc"), description="H&E colorectal nuclei (CRCHistoPhenotypes)"
        ),
        "lite_unet.ki67": _cfg(
            **hub_weights("lite_unet.ki67"),
            num_classes=2,
            label_names=("positive", "negative"),
            description="Ki-67 IHC, BCData",
        ),
        "lite_unet_ghost_cbam": _cfg(first_conv="encoder.0.ghost.0.primary.conv"),
        "lite_unet_ghost_cbam_ga": _cfg(),
    }
)


@register_model
def lite_unet(pretrained: bool = False, **kwargs: Any) -> LiteUNet:
    """Lite-UNet: GA + Ghost_CBAM + GCA (Table 5, last row). 1.32 M params, 17.4 G MACs at 512x512."""
    return _create_lite_unet("lite_unet", pretrained, **kwargs)


@register_model
def lite_unet_ghost_cbam(pretrained: bool = False, **kwargs: Any) -> LiteUNet:
    """Table 5 row "+Ghost_CBAM": U-Net with Ghost_CBAM blocks, no GA, no GCA."""
    return _create_lite_unet("lite_unet_ghost_cbam", pretrained, **dict(kwargs, use_ga=False, use_gca=False))


@register_model
def lite_unet_ghost_cbam_ga(pretrained: bool = False, **kwargs: Any) -> LiteUNet:
    """Table 5 row "+GA": Ghost_CBAM blocks with GA as the first encoder block, no GCA."""
    return _create_lite_unet("lite_unet_ghost_cbam_ga", pretrained, **dict(kwargs, use_ga=True, use_gca=False))
