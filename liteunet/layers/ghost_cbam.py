"""Ghost_CBAM block, section 3.2, Fig. 4 and eqs. (4)-(6) of the Lite-UNet paper.

A Ghost module (Han et al., CVPR 2020) makes half of its output channels with a primary 1x1
convolution, eq. (4), and the other half from those by cheap depthwise 3x3 convolutions,
eq. (5). CBAM (Woo et al., ECCV 2018) then reweights channels and positions, eq. (6):

    F3 = Mc(F2) * F2,    F4 = Ms(F3) * F3

with Mc a shared MLP (1x1 convs) over average- and max-pooled channels and Ms a 7x7 conv
over the channel-wise mean and max. Lite-UNet uses it in place of U-Net's double 3x3 conv
block, so a block here holds ``depth`` (default 2) Ghost modules before CBAM.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import ConvNormAct, make_divisible
from timm.layers.typing import LayerType

from .._checks import check_bchw

__all__ = ["GhostModule", "ChannelAttention", "SpatialAttention", "CBAM", "GhostCBAM"]


class GhostModule(nn.Module):
    """Ghost module, eqs. (4)-(5): a primary conv plus cheap depthwise "ghost" features.

    Args:
        in_chans: input channels.
        out_chans: output channels.
        ratio: ``s`` of eq. (5); ``1/ratio`` of the outputs come from the primary conv.
        kernel_size: primary conv kernel (1 in the paper).
        dw_size: kernel of the cheap depthwise convs (3 in the paper).
        norm_layer, act_layer: as timm's ``ConvNormAct``.

    Shape:
        - input: :math:`(B, C_{in}, H, W)`
        - output: :math:`(B, C_{out}, H, W)`

    Example:
        >>> GhostModule(16, 32)(torch.rand(1, 16, 8, 8)).shape
        torch.Size([1, 32, 8, 8])
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        ratio: int = 2,
        kernel_size: int = 1,
        dw_size: int = 3,
        norm_layer: LayerType = nn.BatchNorm2d,
        act_layer: LayerType = nn.ReLU,
    ) -> None:
        super().__init__()
        if ratio < 2:
            raise ValueError(f"ratio must be >= 2 (1 would make no ghost features), got {ratio}")
        self.in_chans = in_chans
        self.out_chans = out_chans
        init_chans = math.ceil(out_chans / ratio)
        self.primary = ConvNormAct(in_chans, init_chans, kernel_size, norm_layer=norm_layer, act_layer=act_layer)
        self.cheap = ConvNormAct(
            init_chans, init_chans * (ratio - 1), dw_size, groups=init_chans, norm_layer=norm_layer, act_layer=act_layer
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_bchw("GhostModule", x, self.in_chans)
        return with_ghost_features(self.primary(x), self.cheap, self.out_chans)


def with_ghost_features(intrinsic: torch.Tensor, cheap: nn.Module, out_chans: int) -> torch.Tensor:
    """Eq. (5)'s output from the primary conv's maps: those maps and their cheap ghosts."""
    out = torch.cat([intrinsic, cheap(intrinsic)], dim=1)
    # ceil(out_chans / ratio) primary maps can make one channel too many for odd out_chans.
    return out if out.shape[1] == out_chans else out[:, :out_chans]


def _spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """``x.mean((2, 3), keepdim=True)``; on channels-last input as a product with ones.

    PyTorch reduces channels-last tensors over H and W with a slow strided kernel; the same sum
    as a ``(1, HW) @ (HW, C)`` product is one GEMV, ~10x faster in bf16 inference.
    """
    b, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        rows = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        return (x.new_ones(b, 1, h * w) @ rows).div_(h * w).reshape(b, c, 1, 1)
    return x.mean((2, 3), keepdim=True)


def _spatial_max(x: torch.Tensor) -> torch.Tensor:
    """``x.amax((2, 3), keepdim=True)``; on channels-last input through the pooling kernel.

    The pooling kernel is 5-15x faster on channels-last input. Elsewhere ``amax``: torch 2.11's
    ONNX exporter has no ``adaptive_max_pool2d`` (export failed on the GPU machine).
    """
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return F.adaptive_max_pool2d(x, 1)
    return x.amax((2, 3), keepdim=True)


class ChannelAttention(nn.Module):
    """CBAM channel attention ``Mc``: shared 1x1-conv MLP over avg- and max-pooled features.

    Args:
        channels: feature channels.
        rd_ratio: hidden width of the MLP relative to ``channels``.
        rd_divisor: the hidden width is rounded to a multiple of this (and at least this).

    Shape:
        - input: :math:`(B, C, H, W)`
        - output: :math:`(B, C, 1, 1)` attention weights in (0, 1).
    """

    def __init__(self, channels: int, rd_ratio: float = 1 / 16, rd_divisor: int = 8) -> None:
        super().__init__()
        hidden = make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.0)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_pooled(_spatial_mean(x), _spatial_max(x))

    def from_pooled(self, avg: torch.Tensor, mx: torch.Tensor) -> torch.Tensor:
        """The attention weights from given pooled features: ``sigmoid(MLP(avg) + MLP(max))``.

        :meth:`forward` pools ``x`` over its own positions; a tiled caller passes the mean and
        max of the whole image instead (:mod:`liteunet.localization.context`).

        Shape:
            - avg, mx: :math:`(B, C, 1, 1)` (``B`` may be 1 for a whole batch)
            - output: :math:`(B, C, 1, 1)`
        """
        return torch.sigmoid(self.fc2(self.act(self.fc1(avg))) + self.fc2(self.act(self.fc1(mx))))


class SpatialAttention(nn.Module):
    """CBAM spatial attention ``Ms``: a ``kernel_size`` conv over channel mean and max.

    Shape:
        - input: :math:`(B, C, H, W)`
        - output: :math:`(B, 1, H, W)` attention weights in (0, 1).
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the size, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The channel mean as a 1x1 conv with unit weights: the conv kernel sums channels in
        # float32 and is ~10x faster than mean(1) on channels-last input (bf16 inference).
        total = F.conv2d(x, x.new_ones(1, x.shape[1], 1, 1))
        pooled = torch.cat([total / x.shape[1], x.amax(1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Convolutional block attention module, eq. (6): channel attention, then spatial attention.

    Shape:
        - input: :math:`(B, C, H, W)`
        - output: :math:`(B, C, H, W)`

    Example:
        >>> CBAM(32)(torch.rand(2, 32, 16, 16)).shape
        torch.Size([2, 32, 16, 16])
    """

    def __init__(self, channels: int, rd_ratio: float = 1 / 16, spatial_kernel: int = 7) -> None:
        super().__init__()
        self.channels = channels
        self.channel = ChannelAttention(channels, rd_ratio)
        self.spatial = SpatialAttention(spatial_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_bchw("CBAM", x, self.channels)
        x = x * self.channel(x)
        attention = self.spatial(x)
        # x is this block's own tensor; without autograd scale it in place: one full-size
        # activation less at the decoder's memory peak. (The TorchScript tracer checks its trace
        # without grad, so it keeps the out-of-place form.)
        if torch.is_grad_enabled() or torch.jit.is_tracing():
            return x * attention
        return x.mul_(attention)


class GhostCBAM(nn.Module):
    """Lite-UNet's Ghost_CBAM block: ``depth`` Ghost modules, then CBAM (Fig. 4).

    A drop-in for a U-Net double-conv block (and for any conv stage that keeps the spatial size).

    Args:
        in_chans: input channels.
        out_chans: output channels.
        depth: Ghost modules in a row (2 replaces U-Net's two 3x3 convs).
        ratio: Ghost ratio ``s``.
        dw_size: cheap depthwise kernel (3).
        rd_ratio: CBAM channel-MLP reduction.
        spatial_kernel: CBAM spatial kernel (7).
        norm_layer, act_layer: as timm's ``ConvNormAct``.

    Shape:
        - input: :math:`(B, C_{in}, H, W)`
        - output: :math:`(B, C_{out}, H, W)`

    Example:
        >>> block = GhostCBAM(64, 128)
        >>> block(torch.rand(2, 64, 32, 32)).shape
        torch.Size([2, 128, 32, 32])
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        depth: int = 2,
        ratio: int = 2,
        dw_size: int = 3,
        rd_ratio: float = 1 / 16,
        spatial_kernel: int = 7,
        norm_layer: LayerType = nn.BatchNorm2d,
        act_layer: LayerType = nn.ReLU,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.in_chans = in_chans
        self.out_chans = out_chans
        self.ghost = nn.Sequential(
            *[
                GhostModule(in_chans if i == 0 else out_chans, out_chans, ratio, 1, dw_size, norm_layer, act_layer)
                for i in range(depth)
            ]
        )
        self.cbam = CBAM(out_chans, rd_ratio, spatial_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_bchw("GhostCBAM", x, self.in_chans)
        return self.cbam(self.ghost(x))
