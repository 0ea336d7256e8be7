"""Argument checks shared by the layers of the package, with messages that name the argument."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["check_bchw", "check_int"]


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an ``int`` when it is an integer (not a bool) ``>= minimum``; else ValueError.

    Example:
        >>> check_int("tile_size", 512, 16)
        512
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_bchw(name: str, x: torch.Tensor, channels: int | None = None) -> None:
    """Raise unless ``x`` is a ``(B, C, H, W)`` batch, with ``channels`` channels when given.

    The one shape check of the layers (kornia's ``KORNIA_CHECK_SHAPE`` idea): the message names
    the layer, the expected shape and the shape it got.

    Example:
        >>> check_bchw("CBAM", torch.zeros(1, 3, 4, 4), 3)
    """
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        expected = f"(B, {channels}, H, W)" if channels is not None else "(B, C, H, W)"
        raise ValueError(f"{name} expects {expected}, got shape {tuple(x.shape)}")
