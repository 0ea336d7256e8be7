"""Gradient aggregation (GA) module, section 3.1 and Fig. 3 of the Lite-UNet paper.

Four branches of different depth read the same input. Each branch starts with a difference
convolution (DC) block, eq. (3), that turns pixel values into local gradients, then adds
vanilla 3x3 conv blocks (VC) so the branches see different scales. The branch outputs are
concatenated and a 1x1 block sets the channel count. All kernels except the 1x1 are 3x3.

Why DC only here: the paper notes that DC weakens semantic information while it strengthens
gradient information, so it is used only at the front of the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from timm.layers import ConvNormAct
from timm.layers.typing import LayerType

from ._conv_block import CDConvNormAct

from .._checks import check_bchw

__all__ = ["GradientAggregation"]


class GradientAggregation(nn.Module):
    """Lite-UNet's gradient aggregation module (GA), built on difference convolution.

    Branch ``i`` is one DC block followed by ``depths[i] - 1`` vanilla 3x3 blocks; the branch
    outputs are concatenated and mixed by a 1x1 conv block.

    Args:
        in_chans: input channels (3 for RGB, 1 for fluorescence).
        out_chans: output channels.
        branch_chans: channels of each branch. Default ``max(1, out_chans // len(depths))``,
            so the concatenation has about ``out_chans`` channels.
        depths: number of 3x3 blocks in each branch (the first one is the DC block).
            The paper's Fig. 3 has four branches of increasing depth, ``(1, 2, 3, 4)``.
        theta: trade-off of eq. (3) for the DC blocks; 0 turns GA into a plain multi-branch block.
        norm_layer: norm layer (class or timm name).
        act_layer: activation (class or timm name).

    Shape:
        - input: :math:`(B, C_{in}, H, W)`
        - output: :math:`(B, C_{out}, H, W)`

    Example:
        >>> ga = GradientAggregation(3, 28)
        >>> ga(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 28, 64, 64])
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        branch_chans: int | None = None,
        depths: Sequence[int] = (1, 2, 3, 4),
        theta: float = 0.7,
        norm_layer: LayerType = nn.BatchNorm2d,
        act_layer: LayerType = nn.ReLU,
    ) -> None:
        super().__init__()
        if len(depths) == 0 or any(int(d) < 1 for d in depths):
            raise ValueError(f"depths must be a non-empty list of integers >= 1, got {tuple(depths)}")
        self.in_chans = in_chans
        self.out_chans = out_chans
        branch_chans = branch_chans or max(1, out_chans // len(depths))
        self.branches = nn.ModuleList()
        for depth in depths:
            blocks: list[nn.Module] = [
                CDConvNormAct(in_chans, branch_chans, 3, theta=theta, norm_layer=norm_layer, act_layer=act_layer)
            ]
            blocks += [
                ConvNormAct(branch_chans, branch_chans, 3, norm_layer=norm_layer, act_layer=act_layer)
                for _ in range(int(depth) - 1)
            ]
            self.branches.append(nn.Sequential(*blocks))
        self.fuse = ConvNormAct(branch_chans * len(depths), out_chans, 1, norm_layer=norm_layer, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_bchw("GradientAggregation", x, self.in_chans)
        return self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))
