"""Inference-time rewrites: fold difference convolutions and BatchNorm into plain convolutions."""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import BatchNormAct2d

from ..layers.cdconv import CDConv2d

__all__ = ["reparameterize_model", "fold_batchnorm"]


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
      gets the BatchNorm folded into the conv.

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
    return model
