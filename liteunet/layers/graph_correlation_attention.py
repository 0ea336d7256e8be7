"""Graph correlation attention (GCA), section 3.3, Fig. 5 and eqs. (7)-(9) of the Lite-UNet paper.

Every spatial position of a feature map ``X`` (C x H x W) is a graph node with feature
``X_i`` in R^C, N = H*W nodes. With learned linear maps ``Wq``, ``Wk`` and ``W``:

    Corr_ij = (Wq X_i) . (Wk X_j) / N                      eq. (7), not filtered
    U       = Dropout(ReLU(Corr X W))                      eq. (8)
    out     = Sigmoid(U) * X                               eq. (9)

Scaling (the paper leaves it open): Corr is divided by the number of nodes N, so ``Corr X``
is an average over the nodes rather than a sum. Its size then does not grow with H x W: a
model trained on 256x256 crops sees the same activation scale on a 2048x2048 tile, and the
layer gives the same per-position output on a feature map tiled with copies of itself.
A 1/sqrt(C) scale would leave the sum over N unbounded as images grow.

Because nothing is filtered (no softmax), ``(Q K^T) X = Q (K^T X)``: we never build the
N x N matrix. Cost and memory are linear in N (O(N C d)) instead of quadratic, with the
same result up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_bchw

__all__ = ["graph_correlation_attention", "key_context", "GraphCorrelationAttention"]


def graph_correlation_attention(
    x: torch.Tensor,
    query_weight: torch.Tensor,
    key_weight: torch.Tensor,
    update_weight: torch.Tensor,
    drop: float = 0.0,
    training: bool = False,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """Graph correlation attention, eqs. (7)-(9), functional form.

    Args:
        x: feature map.
        query_weight: ``Wq`` of eq. (7), as an ``nn.Linear`` weight.
        key_weight: ``Wk`` of eq. (7).
        update_weight: ``W`` of eq. (8).
        drop: dropout probability of eq. (8).
        training: apply dropout (as ``F.dropout``'s ``training``).
        context: ``K^T X / N``, the average over nodes that eq. (7) correlates every node with,
            when it comes from elsewhere: a tile of a larger image takes the whole image's
            (:func:`key_context`, summed over tiles; :mod:`liteunet.localization.context`).
            Default: computed from ``x``.

    Returns:
        ``sigmoid(Dropout(ReLU(Corr X W))) * X`` with ``Corr = (X Wq^T)(X Wk^T)^T / N``.

    Shape:
        - x: :math:`(B, C, H, W)`
        - query_weight, key_weight: :math:`(D, C)`
        - update_weight: :math:`(C, C)`
        - context: :math:`(B, D, C)` or :math:`(1, D, C)`
        - output: :math:`(B, C, H, W)`

    Example:
        >>> x = torch.rand(1, 8, 4, 4)
        >>> wq, wk, w = torch.randn(2, 8), torch.randn(2, 8), torch.randn(8, 8)
        >>> graph_correlation_attention(x, wq, wk, w).shape
        torch.Size([1, 8, 4, 4])
    """
    check_bchw("graph_correlation_attention", x)
    b, c, h, w = x.shape
    if query_weight.shape[-1] != c or key_weight.shape[-1] != c or tuple(update_weight.shape) != (c, c):
        raise ValueError(
            f"weights do not fit {c} channels: Wq {tuple(query_weight.shape)}, Wk {tuple(key_weight.shape)}, "
            f"W {tuple(update_weight.shape)} (expected (D, {c}), (D, {c}), ({c}, {c}))"
        )
    nodes = x.flatten(2).transpose(1, 2)  # (B, N, C): one row per spatial position
    query = F.linear(nodes, query_weight)  # (B, N, D)
    if context is None:
        # Corr X = Q (K^T X) / N: same value as building Corr, without the N x N matrix.
        context = key_context(nodes, key_weight) / (h * w)  # (B, D, C)
    update = F.linear(torch.matmul(query, context), update_weight)  # (B, N, C)
    update = F.dropout(F.relu(update), drop, training)
    return torch.sigmoid(update).transpose(1, 2).reshape(b, c, h, w) * x


def key_context(nodes: torch.Tensor, key_weight: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``K^T X``, the sum over nodes of ``(Wk X_i) X_i^T``: eq. (7)'s context before the ``1 / N``.

    Args:
        nodes: ``(B, N, C)``, one row per spatial position.
        key_weight: ``Wk``, ``(D, C)``.
        weights: optional ``(B, N, 1)`` node weights (1 counts a node, 0 leaves it out).

    Returns:
        ``(B, D, C)``. Sums over disjoint sets of nodes add up to the sum over their union, which
        is how a tiled image gets the context of the whole image.
    """
    key = F.linear(nodes, key_weight)  # (B, N, D)
    if weights is not None:
        key = key * weights
    return torch.matmul(key.transpose(1, 2), nodes)


class GraphCorrelationAttention(nn.Module):
    """Lite-UNet's graph correlation attention (GCA), a plug-and-play attention layer.

    Input and output have the same shape, so it can follow any conv stage. Parameters:
    ``2 * C * D + C * C`` (three bias-free linear maps).

    Args:
        channels: feature channels ``C``.
        qk_chans: width ``D`` of the linear maps of eq. (7). Default ``max(1, channels // 4)``.
        drop: dropout probability of eq. (8).

    Shape:
        - input: :math:`(B, C, H, W)`, any H and W
        - output: :math:`(B, C, H, W)`

    Example:
        >>> gca = GraphCorrelationAttention(64)
        >>> gca(torch.rand(2, 64, 16, 16)).shape
        torch.Size([2, 64, 16, 16])
    """

    def __init__(self, channels: int, qk_chans: int | None = None, drop: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= drop < 1.0:
            raise ValueError(f"drop must be in [0, 1), got {drop}")
        self.channels = channels
        self.qk_chans = qk_chans or max(1, channels // 4)
        self.drop = drop
        self.query = nn.Linear(channels, self.qk_chans, bias=False)
        self.key = nn.Linear(channels, self.qk_chans, bias=False)
        self.update = nn.Linear(channels, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_bchw("GraphCorrelationAttention", x, self.channels)
        return graph_correlation_attention(
            x, self.query.weight, self.key.weight, self.update.weight, self.drop, self.training
        )

    def correlation(self, x: torch.Tensor) -> torch.Tensor:
        """The full correlation matrix of eq. (7) for inspection, ``(B, N, N)``; O(N^2) memory."""
        nodes = x.flatten(2).transpose(1, 2)
        return self.query(nodes) @ self.key(nodes).transpose(1, 2) / nodes.shape[1]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, qk_chans={self.qk_chans}, drop={self.drop}"
