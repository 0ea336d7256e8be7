"""The Lite-UNet paper's layers, each usable on its own in any network.

- :class:`CDConv2d` / :func:`cd_conv2d`: difference convolution, eq. (3).
- :class:`GradientAggregation`: the GA module, Fig. 3.
- :class:`GhostCBAM` (with :class:`GhostModule`, :class:`CBAM`): Fig. 4, eqs. (4)-(6).
- :class:`GraphCorrelationAttention` / :func:`graph_correlation_attention`: eqs. (7)-(9).

:func:`create_layer` builds one by its short name, like timm's ``create_attn``.
"""

from __future__ import annotations

import torch.nn as nn

from ._conv_block import CDConvNormAct
from .cdconv import CDConv2d, cd_conv2d, fold_difference_weight
from .ghost_cbam import CBAM, ChannelAttention, GhostCBAM, GhostModule, SpatialAttention
from .gradient_aggregation import GradientAggregation
from .graph_correlation_attention import GraphCorrelationAttention, graph_correlation_attention

_LAYERS: dict[str, type[nn.Module]] = {
    "cdconv": CDConv2d,
    "ga": GradientAggregation,
    "ghost": GhostModule,
    "cbam": CBAM,
    "ghost_cbam": GhostCBAM,
    "gca": GraphCorrelationAttention,
}


def list_layers() -> list[str]:
    """Short names accepted by :func:`create_layer`."""
    return sorted(_LAYERS)


def create_layer(name: str, *args, **kwargs) -> nn.Module:
    """Build one of the paper's layers by short name.

    Args:
        name: one of :func:`list_layers` (``"cdconv"``, ``"ga"``, ``"ghost"``, ``"cbam"``,
            ``"ghost_cbam"``, ``"gca"``).
        *args, **kwargs: the layer's constructor arguments.

    Example:
        >>> create_layer("gca", 64)
        GraphCorrelationAttention(
          channels=64, qk_chans=16, drop=0.1
          (query): Linear(in_features=64, out_features=16, bias=False)
          (key): Linear(in_features=64, out_features=16, bias=False)
          (update): Linear(in_features=64, out_features=64, bias=False)
        )
    """
    try:
        cls = _LAYERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown layer {name!r}; known layers: {', '.join(list_layers())}") from None
    return cls(*args, **kwargs)


__all__ = [
    "CBAM",
    "CDConv2d",
    "CDConvNormAct",
    "ChannelAttention",
    "GhostCBAM",
    "GhostModule",
    "GradientAggregation",
    "GraphCorrelationAttention",
    "SpatialAttention",
    "cd_conv2d",
    "create_layer",
    "fold_difference_weight",
    "graph_correlation_attention",
    "list_layers",
]
