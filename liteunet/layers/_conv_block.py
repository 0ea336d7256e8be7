"""Shared conv + norm + activation block used by the paper's layers."""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import get_norm_act_layer
from timm.layers.typing import LayerType

from .cdconv import CDConv2d

__all__ = ["CDConvNormAct"]


class CDConvNormAct(nn.Module):
    """``CDConv2d`` followed by norm + activation, laid out like timm's ``ConvNormAct``.

    The attribute names (``conv``, ``bn``) match timm's ``ConvNormAct`` so that one BatchNorm
    folding routine handles both.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size.
        theta: trade-off of eq. (3).
        norm_layer: norm layer (class or timm name), fused with ``act_layer`` by timm.
        act_layer: activation (class or timm name).

    Shape:
        - input: :math:`(B, C_{in}, H, W)`
        - output: :math:`(B, C_{out}, H, W)`
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        theta: float = 0.7,
        norm_layer: LayerType = nn.BatchNorm2d,
        act_layer: LayerType = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv = CDConv2d(in_channels, out_channels, kernel_size, theta=theta, bias=False)
        self.bn = get_norm_act_layer(norm_layer, act_layer)(out_channels)

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))
