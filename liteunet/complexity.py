"""Model size as the Lite-UNet paper counts it: parameters and multiply-accumulates (MACs).

The paper's "GFLOPs" are MACs of one 3x512x512 image (the U-Net baseline's 261.87 "GFLOPs"
are its 261.4 G multiply-accumulates). We count with PyTorch's own
:class:`torch.utils.flop_counter.FlopCounterMode`, which records convolutions, linear layers
and matrix products as 2 FLOPs per MAC and ignores normalization, activations, pooling and
upsampling; halving its total gives the paper's number.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_macs"]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(model: nn.Module, input_size: Sequence[int] = (3, 512, 512)) -> int:
    """Multiply-accumulates of one forward pass on one image of ``input_size`` (C, H, W).

    Example:
        >>> import liteunet
        >>> round(count_macs(liteunet.create_model("unet")) / 1e9, 1)
        261.4
    """
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (C, H, W), got {tuple(input_size)}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_size, device=device, dtype=dtype))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
