"""Test-time augmentation: the location map averaged over flips and 90-degree rotations.

Cells have no preferred orientation, so a flipped image should give the flipped map. A trained
network is only roughly equivariant; averaging its maps over the symmetries of the square (the
dihedral group D4: 4 flips, each with and without a transpose) removes part of its
orientation-dependent error. On ``lite_unet.crc`` the ``d4`` mode raised F1 at 5 px on
crc/validation from 0.755 to 0.763, at 8 times the compute (numbers and commands in
``docs/localize.md``).

The localization settings change with it: averaged maps have lower, smoother peaks, so the
weights may store a threshold and minimum distance chosen for each mode (``config.json``
``localization.tta``; :func:`liteunet.localize` uses them when the caller gives none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from ..models._base import copy_model_attributes
from ..pretrained.settings import settings_for_mode

__all__ = ["TTA_MODES", "dihedral_transform", "tta_average", "TestTimeAugmentation", "settings_for_mode"]

#: Number of views averaged by each mode: ``flips`` (identity, horizontal, vertical, both) and
#: ``d4`` (those four, each also transposed: every flip and 90-degree rotation of the square).
TTA_MODES: dict[str, int] = {"flips": 4, "d4": 8}


def _check_mode(mode: str) -> int:
    if mode not in TTA_MODES:
        raise ValueError(f"test-time augmentation mode must be one of {sorted(TTA_MODES)}, got {mode!r}")
    return TTA_MODES[mode]


def dihedral_transform(x: torch.Tensor, index: int, inverse: bool = False) -> torch.Tensor:
    """Apply view ``index`` (0-7) of the dihedral group D4 to the last two dimensions.

    View ``index`` transposes height and width when ``index >= 4``, then flips width when bit 0
    of ``index`` is set and height when bit 1 is set; ``inverse=True`` undoes it (flips, then
    the transpose). Index 0 is the identity.

    Args:
        x: image or map batch.
        index: which view, ``0 <= index < 8``.
        inverse: map a view back to the original orientation.

    Returns:
        The transformed tensor (a new tensor; ``x`` itself for index 0).

    Shape:
        - x: :math:`(*, H, W)`
        - output: :math:`(*, H, W)`, or :math:`(*, W, H)` for ``index >= 4``.

    Example:
        >>> x = torch.arange(6.0).reshape(1, 2, 3)
        >>> y = dihedral_transform(x, 5)
        >>> y.shape, torch.equal(dihedral_transform(y, 5, inverse=True), x)
        (torch.Size([1, 3, 2]), True)
    """
    if not 0 <= index < 8:
        raise ValueError(f"a D4 view index is 0-7, got {index}")
    if x.ndim < 2:
        raise ValueError(f"need at least 2 dimensions (H, W), got shape {tuple(x.shape)}")
    dims = [d for d, bit in ((-1, 1), (-2, 2)) if index & bit]
    transpose = index >= 4
    if transpose and not inverse:
        x = x.transpose(-1, -2)
    if dims:
        x = x.flip(dims)
    if transpose and inverse:
        x = x.transpose(-1, -2)
    return x


def tta_average(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: str = "d4") -> torch.Tensor:
    """The mean of ``model``'s maps over the views of ``mode``, each mapped back first.

    Views run one after another (peak memory of one forward pass plus the float32 sum). For
    ``d4`` the transposed views have shape ``(W, H)``, so the model must accept both
    orientations (any size that is a multiple of its pooling grid).

    Args:
        model: a localization model, or any callable from images to same-sized maps.
        x: image batch.
        mode: ``"flips"`` (4 views) or ``"d4"`` (8 views).

    Returns:
        The averaged map, float32.

    Shape:
        - x: :math:`(B, C, H, W)`
        - output: :math:`(B, K, H, W)`

    Example:
        >>> conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        >>> y = tta_average(conv, torch.rand(2, 1, 16, 16), "flips")
        >>> y.shape
        torch.Size([2, 1, 16, 16])
    """
    views = _check_mode(mode)
    if x.ndim != 4:
        raise ValueError(f"test-time augmentation expects (B, C, H, W) images, got shape {tuple(x.shape)}")
    total: torch.Tensor | None = None
    for index in range(views):
        out = dihedral_transform(model(dihedral_transform(x, index)), index, inverse=True).float()
        # In place after the first view: one float32 map lives at a time besides the model's.
        total = out.clone() if total is None else total.add_(out)
    assert total is not None
    return total.div_(views)


class TestTimeAugmentation(nn.Module):
    """Wrap a localization model so that it returns its map averaged over flips and rotations.

    The module form of :func:`tta_average`; it keeps the wrapped model's localization
    attributes (``num_classes``, ``in_chans``, ``size_divisor``, ``pretrained_cfg``) so
    :class:`~liteunet.Localizer` and :func:`liteunet.evaluate.evaluate` take it as the model.

    Args:
        model: the model (any inference form: fused, bf16, compiled, ONNX Runtime).
        mode: ``"flips"`` (4 views) or ``"d4"`` (8 views).

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, K, H, W)` float32.

    Example:
        >>> import liteunet
        >>> model = TestTimeAugmentation(liteunet.create_model("lite_unet").eval(), "flips")
        >>> model(torch.rand(1, 3, 64, 64)).shape
        torch.Size([1, 1, 64, 64])
    """

    __test__ = False  # not a pytest class, despite the name

    def __init__(self, model: nn.Module, mode: str = "d4") -> None:
        super().__init__()
        _check_mode(mode)
        self.model = model
        self.mode = mode
        copy_model_attributes(model, self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tta_average(self.model, x, self.mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, views={TTA_MODES[self.mode]}"

