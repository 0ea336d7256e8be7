"""Inference-time rewrites: fold difference convolutions and BatchNorm into plain convolutions,
turn "2x nearest upsample, then 3x3 conv" into one stride-2 transposed convolution, and feed
decoder blocks their skip and up-sampled inputs apart instead of concatenated."""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import BatchNormAct2d

from ..layers.cdconv import CDConv2d
from ..layers.ghost_cbam import GhostCBAM, with_ghost_features
from ..layers.gradient_aggregation import GradientAggregation

__all__ = [
    "reparameterize_model", "fold_batchnorm", "upsample_conv_to_transposed", "stack_gradient_aggregation",
    "stack_branches", "ConcatFreeGhostCBAM", "split_decoder_inputs",
]


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv computing ``bn(conv(x))`` with eval-mode BatchNorm statistics, as one conv."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, bias=True, padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype,
    )
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((conv_bias - bn.running_mean) * scale + shift)
    return fused


# Row k of this matrix says which 3x3 taps a 4-tap transposed-conv kernel sums, per axis: with
# stride 2 and padding 1, output row 2i reads input rows i-1 (tap k=3) and i (k=1); output row
# 2i+1 reads rows i (k=2) and i+1 (k=0). On the 2x nearest-upsampled image, row 2i's 3x3 window
# covers input rows i-1, i, i and row 2i+1's covers i, i, i+1, so the taps over a repeated row add.
_NEAREST2X_TAPS = ((0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0))


def _is_nearest_2x(module: nn.Module) -> bool:
    if not isinstance(module, nn.Upsample) or module.mode != "nearest" or module.size is not None:
        return False
    scale = module.scale_factor
    return all(float(s) == 2.0 for s in (scale if isinstance(scale, tuple) else (scale, scale)))


def _is_plain_3x3(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
        and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
        and conv.padding_mode == "zeros"
    )


@torch.no_grad()
def upsample_conv_to_transposed(conv: nn.Conv2d) -> nn.ConvTranspose2d:
    """The stride-2 transposed conv equal to ``conv(2x nearest upsample(x))`` for a 3x3, padding-1 conv.

    Each output pixel of the original sees a 2x2 neighbourhood of the low-resolution input, so
    the transposed conv does 4 multiply-adds per output pixel and channel pair instead of 9, and
    never builds the upsampled tensor. Exact up to float rounding (taps are summed in advance).
    """
    if not _is_plain_3x3(conv):
        raise ValueError(f"need a 3x3, stride-1, padding-1, ungrouped, zero-padded nn.Conv2d, got {conv}")
    taps = torch.tensor(_NEAREST2X_TAPS, dtype=conv.weight.dtype, device=conv.weight.device)
    transposed = nn.ConvTranspose2d(
        conv.in_channels, conv.out_channels, 4, stride=2, padding=1, bias=conv.bias is not None,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )
    # (out, in, 3, 3) -> (in, out, 4, 4), ConvTranspose2d's weight layout.
    transposed.weight.copy_(torch.einsum("ka,lb,oiab->iokl", taps, taps, conv.weight))
    if conv.bias is not None:
        transposed.bias.copy_(conv.bias)
    return transposed


class TransposedUpConv(nn.Module):
    """Inference form of "2x nearest upsample, 3x3 conv, then ``tail``" (activation, dropout...).

    Shape:
        - input: :math:`(B, C_{in}, H, W)`
        - output: :math:`(B, C_{out}, 2H, 2W)`
    """

    def __init__(self, conv: nn.ConvTranspose2d, tail: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.tail = tail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.conv(x))


def _as_transposed_upconv(seq: nn.Sequential) -> nn.Module | None:
    """``seq`` rewritten as a :class:`TransposedUpConv` when it is a 2x nearest upsample + 3x3 conv block."""
    if len(seq) != 2 or not _is_nearest_2x(seq[0]):
        return None
    block = seq[1]
    if _is_plain_3x3(block):
        return TransposedUpConv(upsample_conv_to_transposed(block), nn.Identity())
    conv, tail = getattr(block, "conv", None), getattr(block, "bn", None)
    # timm's ConvNormAct layout, conv then ``bn`` (norm, activation; folded or not): the tail
    # only ever sees the conv's output, so it carries over unchanged.
    if _is_plain_3x3(conv) and tail is not None and set(dict(block.named_children())) == {"conv", "bn"}:
        return TransposedUpConv(upsample_conv_to_transposed(conv), tail)
    return None


def _norm_tail(bn: nn.BatchNorm2d) -> nn.Module:
    # timm's BatchNormAct2d applies dropout and activation after normalizing: keep those.
    if isinstance(bn, BatchNormAct2d):
        return nn.Sequential(bn.drop, bn.act)
    return nn.Identity()


@torch.no_grad()
def reparameterize_model(model: nn.Module) -> nn.Module:
    """Rewrite ``model`` in place for inference and return it.

    - every :class:`~liteunet.layers.CDConv2d` becomes the equivalent ``nn.Conv2d``;
    - every block with a ``conv`` followed by a BatchNorm ``bn`` (timm's ``ConvNormAct`` layout)
      gets the BatchNorm folded into the conv;
    - every ``nn.Sequential`` of a 2x nearest ``nn.Upsample`` and such a 3x3 conv block becomes
      a :class:`TransposedUpConv` (:func:`upsample_conv_to_transposed`): 4/9 of the
      multiply-adds, and no upsampled tensor.

    The model should be in eval mode: the folding uses the running statistics.
    """
    for name, child in list(model.named_children()):
        if isinstance(child, CDConv2d):
            setattr(model, name, child.reparameterize())
        else:
            reparameterize_model(child)
    conv, bn = getattr(model, "conv", None), getattr(model, "bn", None)
    if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
        model.conv = fold_batchnorm(conv, bn)
        model.bn = _norm_tail(bn)
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Sequential) and (rewritten := _as_transposed_upconv(child)) is not None:
            setattr(model, name, rewritten)
    return model


def _relu_tail(block: nn.Module) -> bool:
    # After BatchNorm folding a ConvNormAct tail is (dropout or Identity, activation).
    tail = getattr(block, "bn", None)
    if tail is None:
        return False
    ops = [m for m in tail.modules() if not isinstance(m, (nn.Sequential, nn.Identity))]
    return len(ops) == 1 and isinstance(ops[0], nn.ReLU)


class StackedGradientAggregation(nn.Sequential):
    """A folded :class:`~liteunet.layers.GradientAggregation` as one chain of full-width convs.

    Layer ``j`` runs the ``j``-th 3x3 conv of every branch at once, as one block-diagonal conv
    over all branch channels; a branch that has already ended passes through an identity kernel
    (exact: ReLU of a ReLU output is itself). The last layer's output is the branch
    concatenation, which goes to the module's 1x1 ``fuse`` block.

    Shape:
        - input: :math:`(B, C_{in}, H, W)`
        - output: :math:`(B, C_{out}, H, W)`
    """


@torch.no_grad()
def stack_gradient_aggregation(ga: GradientAggregation) -> StackedGradientAggregation:
    """Rewrite a folded GA module (see :func:`reparameterize_model`) as stacked full-width convs.

    Does more multiply-adds than the branches (each layer is a dense conv over all branch
    channels) but runs one well-shaped conv per depth instead of one narrow conv per branch
    and depth: on CPUs with bf16 matrix units the narrow convs and the concatenation cost more
    than the extra arithmetic (``liteunet bench``). Exact up to float rounding.
    """
    branches = [list(branch) for branch in ga.branches]
    blocks = [block for branch in branches for block in branch]
    if not all(_is_plain_3x3(getattr(b, "conv", None)) and b.conv.bias is not None and _relu_tail(b) for b in blocks):
        raise ValueError(
            "stack_gradient_aggregation needs a folded GA module of 3x3 conv + ReLU blocks (run fuse first)"
        )
    width = branches[0][0].conv.out_channels
    if any(b.conv.out_channels != width for b in blocks):
        raise ValueError("stack_gradient_aggregation needs branches of equal width")
    total = width * len(branches)
    ref = branches[0][0].conv.weight
    layers: list[nn.Module] = []
    for depth in range(max(len(branch) for branch in branches)):
        in_chans = ga.in_chans if depth == 0 else total
        conv = nn.Conv2d(in_chans, total, 3, padding=1, device=ref.device, dtype=ref.dtype)
        conv.weight.zero_()
        conv.bias.zero_()
        for i, branch in enumerate(branches):
            rows = slice(i * width, (i + 1) * width)
            cols = slice(None) if depth == 0 else rows
            if depth < len(branch):
                conv.weight[rows, cols] = branch[depth].conv.weight
                conv.bias[rows] = branch[depth].conv.bias
            else:  # this branch has ended: carry its output through unchanged
                conv.weight[rows, cols, 1, 1] = torch.eye(width, dtype=ref.dtype, device=ref.device)
        layers += [conv, nn.ReLU(inplace=True)]
    return StackedGradientAggregation(*layers, ga.fuse)


def stack_branches(model: nn.Module) -> nn.Module:
    """Replace, in place, every folded GA module in ``model`` by :func:`stack_gradient_aggregation`."""
    for name, child in list(model.named_children()):
        if isinstance(child, GradientAggregation):
            setattr(model, name, stack_gradient_aggregation(child))
        else:
            stack_branches(child)
    return model


class ConcatFreeGhostCBAM(nn.Module):
    """A :class:`~liteunet.layers.GhostCBAM` decoder block that computes
    ``block(torch.cat([skip, x], 1))`` as ``ConcatFreeGhostCBAM(block, C_skip)([skip, x])``,
    without building the concatenation.

    The block's first layer is a 1x1 conv, which is linear in its input channels: it splits into
    one conv over ``skip`` and one over ``x`` whose outputs add. The concatenation is the largest
    tensor of a U-Net forward pass (two full-resolution maps), so leaving it out lowers the peak
    memory of a forward pass. Exact up to float rounding.

    The forward takes ``[skip, x]`` as a list and empties it, so that each input is freed as
    soon as its conv has read it (the caller keeps no reference).

    Shape:
        - inputs[0], skip: :math:`(B, C_{skip}, H, W)`
        - inputs[1], x: :math:`(B, C_{in} - C_{skip}, H, W)`
        - output: :math:`(B, C_{out}, H, W)`
    """

    def __init__(self, block: GhostCBAM, skip_chans: int) -> None:
        super().__init__()
        first = block.ghost[0]
        conv = first.primary.conv
        if conv.kernel_size != (1, 1) or conv.groups != 1 or not 0 < skip_chans < conv.in_channels:
            raise ValueError(
                f"ConcatFreeGhostCBAM needs a 1x1 primary conv over more than {skip_chans} channels, got {conv}"
            )
        with torch.no_grad():
            self.skip_conv = nn.Conv2d(skip_chans, conv.out_channels, 1, bias=conv.bias is not None,
                                       device=conv.weight.device, dtype=conv.weight.dtype)
            self.skip_conv.weight.copy_(conv.weight[:, :skip_chans])
            if conv.bias is not None:
                self.skip_conv.bias.copy_(conv.bias)
            self.up_conv = nn.Conv2d(conv.in_channels - skip_chans, conv.out_channels, 1, bias=False,
                                     device=conv.weight.device, dtype=conv.weight.dtype)
            self.up_conv.weight.copy_(conv.weight[:, skip_chans:])
        self.primary_tail = first.primary.bn  # norm (or its folded remains) and activation
        self.cheap = first.cheap
        self.first_out_chans = first.out_chans
        self.rest = block.ghost[1:]
        self.cbam = block.cbam

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        skip, x = inputs
        inputs.clear()
        summed = self.skip_conv(skip)
        del skip
        summed = summed + self.up_conv(x)
        del x
        out = with_ghost_features(self.primary_tail(summed), self.cheap, self.first_out_chans)
        return self.cbam(self.rest(out))


def split_decoder_inputs(model: nn.Module) -> nn.Module:
    """Replace, in place, each :class:`~liteunet.layers.GhostCBAM` decoder block of a U-shaped
    ``model`` (``up``, ``decoder`` and ``widths`` attributes, as :class:`LocalizationModel`) by a
    :class:`ConcatFreeGhostCBAM`; the model's forward passes such blocks skip and input apart."""
    depth = len(model.decoder)
    for i, block in enumerate(model.decoder):
        if isinstance(block, GhostCBAM) and block.ghost[0].primary.conv.kernel_size == (1, 1):
            model.decoder[i] = ConcatFreeGhostCBAM(block, skip_chans=model.widths[depth - 1 - i])
    return model
