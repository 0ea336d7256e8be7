"""Base class for the U-shaped localization models: input checks, any-size inputs, predict().

Both the paper's U-Net baseline and Lite-UNet are an encoder of five stages (a stride-2 max
pool before stages 2-5), an optional attention layer at the end of the encoder, four decoder
steps (2x upsample + 3x3 conv, concatenation with the skip, a conv block) and a 1x1 head that
gives the location map at input resolution. Subclasses only build the blocks.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._fuse import ConcatFreeGhostCBAM, reparameterize_model, split_decoder_inputs

__all__ = ["LocalizationModel", "copy_model_attributes"]

#: What the localizer reads off a model; every wrapper passes these through.
_MODEL_ATTRIBUTES = ("num_classes", "in_chans", "size_divisor", "pretrained_cfg")


def copy_model_attributes(source: nn.Module, wrapper: nn.Module) -> nn.Module:
    """Give ``wrapper`` the localization attributes of the model it wraps; returns ``wrapper``."""
    for name in _MODEL_ATTRIBUTES:
        if hasattr(source, name):
            setattr(wrapper, name, getattr(source, name))
    return wrapper


class LocalizationModel(nn.Module):
    """A U-shaped network mapping an image to a per-class location map of the same size.

    Inputs of any height and width are accepted: the image is padded at the bottom and right
    by edge replication up to a multiple of :attr:`size_divisor` (16, four 2x poolings), and
    the location map is cropped back, so it always matches the input size pixel for pixel.
    Images smaller than ``min_input_size`` are first zero-padded (centred) up to it: the
    weights saw small images that way in training (random crops padded with zeros), and the
    image-wide attention of CBAM and GCA depends on that context.

    Subclasses fill ``encoder`` (5 modules), ``bottleneck`` (attention or ``nn.Identity``),
    ``up`` and ``decoder`` (4 modules each, deepest first) and ``head``.

    Capability flags, read by the test-suite: ``supports_jit_trace``, ``supports_compile``,
    ``supports_export``.
    """

    size_divisor: int = 16
    supports_jit_trace: bool = True
    supports_compile: bool = True
    supports_export: bool = True

    encoder: nn.ModuleList
    bottleneck: nn.Module
    up: nn.ModuleList
    decoder: nn.ModuleList
    head: nn.Module

    def __init__(self, in_chans: int, num_classes: int, widths: tuple[int, ...], min_input_size: int = 0) -> None:
        super().__init__()
        if in_chans < 1 or num_classes < 1:
            raise ValueError(f"in_chans and num_classes must be >= 1, got {in_chans} and {num_classes}")
        if len(widths) != 5:
            raise ValueError(f"widths must give 5 stage widths (four down, four up stages), got {widths}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.widths = tuple(widths)
        self.num_features = widths[0]  # channels entering the head (timm's contract)
        self.min_input_size = int(min_input_size)
        self.pretrained_cfg: dict[str, Any] = {}
        # The encoder stages, for timm's features_only=True: the deepest one after the bottleneck
        # (GCA sits at the end of the encoder in the paper).
        self.feature_info = [
            dict(num_chs=w, reduction=2**i, module=f"encoder.{i}" if i < 4 else "bottleneck")
            for i, w in enumerate(self.widths)
        ]

    # --- timm contract -------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the 1x1 head with a freshly initialized one for ``num_classes`` location maps."""
        self.num_classes = num_classes
        old = self.head
        self.head = nn.Conv2d(self.num_features, num_classes, 1).to(old.weight.device, old.weight.dtype)

    # --- forward -------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error unless ``x`` is a float ``(B, in_chans, H, W)`` tensor."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"{type(self).__name__} expects input (B, {self.in_chans}, H, W), got shape {tuple(x.shape)}"
                + (" (channels last? use x.permute(0, 3, 1, 2))" if x.ndim == 4 and x.shape[-1] == self.in_chans else "")
            )
        if not x.is_floating_point():
            raise TypeError(f"{type(self).__name__} expects a floating point input, got {x.dtype}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder-decoder on an input whose size is a multiple of :attr:`size_divisor`."""
        skips = []
        for i, stage in enumerate(self.encoder):
            if i:
                x = F.max_pool2d(x, 2)
            x = stage(x)
            skips.append(x)
        skips.pop()  # the deepest stage feeds only the bottleneck
        x = self.bottleneck(x)
        for up, block in zip(self.up, self.decoder):
            if isinstance(block, ConcatFreeGhostCBAM):  # inference form: no concatenated tensor
                x = block([skips.pop(), up(x)])
            else:
                # Popping frees each skip once it is concatenated: the full-resolution one is
                # gone before the last (largest) decoder block runs.
                x = block(torch.cat([skips.pop(), up(x)], dim=1))
        return x

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The encoder's stage outputs, timm's way (``features_only=True`` calls this).

        Args:
            x: ``(B, in_chans, H, W)``; H and W multiples of :attr:`size_divisor` keep every
                stage's size exact.
            indices: stages to return (0-4; an int ``n``: the last ``n``); default all five.
            norm, stop_early: timm's arguments; there is no final norm, and the encoder always
                stops at the deepest stage asked for.
            output_fmt: ``"NCHW"`` only.
            intermediates_only: return only the stage outputs, not also the location map.

        Returns:
            The stage outputs ``(B, widths[i], H / 2**i, W / 2**i)``; with
            ``intermediates_only=False``, ``(location_map, stage_outputs)``.

        Example:
            >>> import liteunet
            >>> m = liteunet.create_model("lite_unet").eval()
            >>> [f.shape[1] for f in m.forward_intermediates(torch.rand(1, 3, 64, 64), intermediates_only=True)]
            [28, 56, 112, 256, 256]
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        self.check_input(x)
        take = self._stage_indices(indices)
        features = []
        y = x
        for i, stage in enumerate(self.encoder[: max(take) + 1]):
            y = stage(F.max_pool2d(y, 2) if i else y)
            if i == len(self.encoder) - 1:
                y = self.bottleneck(y)
            if i in take:
                features.append(y)
        return features if intermediates_only else (self(x), features)

    def prune_intermediate_layers(
        self, indices: int | list[int] | tuple[int, ...] = 5, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """The stage indices ``indices`` stands for; nothing is removed (the decoder stays usable)."""
        return self._stage_indices(indices)

    def _stage_indices(self, indices: int | list[int] | tuple[int, ...] | None) -> list[int]:
        n = len(self.encoder)
        if indices is None:
            return list(range(n))
        if isinstance(indices, int):
            if not 1 <= indices <= n:
                raise ValueError(f"indices={indices}: the encoder has {n} stages")
            return list(range(n - indices, n))
        take = [i % n for i in indices]
        if any(not -n <= i < n for i in indices):
            raise ValueError(f"indices {list(indices)}: the encoder has stages 0-{n - 1}")
        return take

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Location map, ``(B, num_classes, H, W)`` for input ``(B, in_chans, H, W)``."""
        self.check_input(x)
        h, w = x.shape[-2:]
        # Exporters and compilers trace one example size: the padding must not depend on a branch
        # taken for that size, so when tracing it is always applied (often as a zero-width pad).
        tracing = torch.jit.is_tracing() or torch.compiler.is_compiling()
        top = left = 0
        if self.min_input_size and (tracing or h < self.min_input_size or w < self.min_input_size):
            grow_h, grow_w = torch.sym_max(0, self.min_input_size - h), torch.sym_max(0, self.min_input_size - w)
            top, left = grow_h // 2, grow_w // 2
            x = F.pad(x, (left, grow_w - left, top, grow_h - top))  # zeros, as in training
        pad_h, pad_w = (-x.shape[-2]) % self.size_divisor, (-x.shape[-1]) % self.size_divisor
        if tracing or pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        out = self.forward_head(self.forward_features(x))
        if tracing or top or left or pad_h or pad_w:
            out = out[..., top : top + h, left : left + w]
        return out

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: switch to eval mode and return the location map without gradients."""
        self.eval()
        return self(x)

    def reparameterize(self, split_decoder: bool = True) -> LocalizationModel:
        """An inference copy: difference convs folded into plain convs, BatchNorm folded into convs,
        and (``split_decoder``) decoder blocks fed skip and up-sampled input apart
        (:func:`split_decoder_inputs`).

        The original model is left untouched. Outputs match the eval-mode original up to float
        rounding.
        """
        fused = reparameterize_model(copy.deepcopy(self).eval())
        return split_decoder_inputs(fused) if split_decoder else fused
