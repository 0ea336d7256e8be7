"""Image-wide attention context for tiled inference: each tile sees the statistics of the whole image.

Lite-UNet has image-wide terms: CBAM's channel attention in every Ghost_CBAM block pools its
features over all positions (a mean and a max per channel), and GCA at the bottleneck averages
``K^T X`` over all positions (eq. 7). A tile that computes them over itself sees another context
than one pass over the whole image, and the points then depend on how the image was cut (more
cells the smaller the tiles). :class:`ImageContext` gathers those terms over the whole image
from the tiles' *cores* (which partition it), at each layer's own resolution: sums and counts
for means, a max for maxes, sums of ``K^T X`` for GCA; then injects them into every tile of
the final pass. The layers' own ``forward`` is unchanged; hooks replace their output.

Each layer's statistics depend on those of the layers before it, so they are gathered in
passes over the tiles (:attr:`ImageContext.layers` in forward order):

- ``"exact"`` (the default of :func:`liteunet.localize`): one pass per attention layer, each
  stopping after that layer and injecting the exact statistics of the earlier ones: with enough
  overlap for the receptive field, the final maps equal one whole-image pass up to float
  rounding (tests check it). The passes stop early, but it costs about five times the work of
  one pass, so the localizer runs an image that fits in memory in one pass instead, and tiles
  only larger ones.
- ``"fast"``: one statistics pass (each tile with its own context, as the plain tiled path),
  then the final pass with the gathered statistics: about twice the work of one pass. The
  statistics of the deeper layers then come from features computed with the tiles' own
  statistics, so the result is closer to the whole-image pass than ``"tile"`` but not equal
  (``liteunet bench --invariance`` measures how close).
- ``"tile"``: no statistics pass; each tile its own context, as the 256-px training crops had
  (whole slides always run this way).

A statistics pass can also read only some of the tiles (:func:`sample_tiles`): cheaper, but a
sampled maximum falls short of the image's, and on an image whose parts differ the points
move far from exact (+16% cells with 8 of 25 tiles on the CRC mosaic; ``docs/robustness.md``).

Test-time augmentation runs each view of a tile through the model in turn; each view has its own
image-wide statistics (those of the whole image in that view), so they are kept per view.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..inference import TestTimeAugmentation, dihedral_transform
from ..layers.ghost_cbam import ChannelAttention
from ..layers.graph_correlation_attention import GraphCorrelationAttention, graph_correlation_attention, key_context

__all__ = ["CONTEXT_MODES", "ImageContext", "core_mask", "sample_tiles", "stat_cores"]

#: ``"tile"``: each tile its own context (no extra pass); ``"fast"``: one statistics pass, then
#: the final pass; ``"exact"``: one statistics pass per attention layer (see the module docstring).
CONTEXT_MODES = ("tile", "fast", "exact")


class _Stop(Exception):
    """Raised by a hook to end a statistics pass once its last layer is gathered."""


def stat_cores(tiles: list[tuple[int, int, int, int]], n: int, align: int = 16) -> list[tuple[int, int]]:
    """Per tile, the ``[s0, s1)`` part of the axis whose statistics it gives.

    The tiles' cores, with inner borders rounded down to ``align`` (the pooling grid, so a core
    is whole pixels at every layer's resolution) and the last one running to ``n`` rounded up
    to ``align``: the padded image one whole-image pass sees, partitioned.
    """
    starts = [0] + [(c0 // align) * align for _, _, c0, _ in tiles[1:]]
    ends = starts[1:] + [-(-n // align) * align]
    return list(zip(starts, ends))


def core_mask(rows: tuple[int, int], cols: tuple[int, int], origin: tuple[int, int], shape: tuple[int, int]) -> torch.Tensor:
    """A ``(1, h, w)`` float mask of a tile of ``shape`` at ``origin``: 1 on its statistics core."""
    mask = torch.zeros(1, *shape)
    (s0, s1), (u0, u1), (ty, tx) = rows, cols, origin
    mask[:, max(0, s0 - ty) : max(0, s1 - ty), max(0, u0 - tx) : max(0, u1 - tx)] = 1.0
    return mask


def sample_tiles(count: int, most: int | None) -> list[int]:
    """Indices of at most ``most`` of ``count`` tiles, spread evenly (all of them when ``most`` is None)."""
    if most is None or most >= count:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, max(1, most)).round().astype(int).tolist()))


class _Sums:
    """Running sums of one layer in one view."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.peak: torch.Tensor | None = None
        self.count = 0.0

    def add(self, total: torch.Tensor, count: float, peak: torch.Tensor | None = None) -> None:
        self.total = total if self.total is None else self.total + total
        self.count += count
        if peak is not None:
            self.peak = peak if self.peak is None else torch.maximum(self.peak, peak)


class ImageContext:
    """Gathers the image-wide terms of a model's attention layers from tile cores and injects them.

    Args:
        model: the model as it runs (fused, any dtype, channels-last, wrapped in
            :class:`~liteunet.inference.TestTimeAugmentation`); not compiled, not ONNX.

    Example:
        >>> import liteunet, torch
        >>> model = liteunet.create_model("lite_unet", widths=(8, 8, 16, 16, 16)).eval()
        >>> ctx = ImageContext(model)
        >>> len(ctx.layers)  # 8 channel attentions and GCA
        9
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers: list[nn.Module] = [
            m for m in model.modules() if isinstance(m, (ChannelAttention, GraphCorrelationAttention))
        ]
        self._index = {id(m): i for i, m in enumerate(self.layers)}
        base = model.model if isinstance(model, TestTimeAugmentation) else model
        self.views = 8 if isinstance(model, TestTimeAugmentation) and model.mode == "d4" else (
            4 if isinstance(model, TestTimeAugmentation) else 1
        )
        self._base = base
        self.stats: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}
        self._sums: dict[tuple[int, int], _Sums] = {}
        self._collect: set[int] = set()
        self._stop_after: int | None = None
        self._mask: torch.Tensor | None = None
        self._view = -1
        self._fixed_view: int | None = None
        self._handles: list[Any] = []

    def __len__(self) -> int:
        return len(self.layers)

    # --- hooks ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def hooked(self) -> Iterator[ImageContext]:
        """Hooks in place while the block runs: gather (:meth:`run_pass`) and inject (:attr:`stats`)."""
        self._handles = [self._base.register_forward_pre_hook(self._next_view)]
        if self._base is not self.model:  # test-time augmentation: each call starts at view 0
            self._handles.append(self.model.register_forward_pre_hook(self._first_view))
        self._handles += [m.register_forward_hook(self._hook) for m in self.layers]
        try:
            yield self
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles = []

    def _first_view(self, _module: nn.Module, _args: tuple) -> None:
        self._view = -1

    def _next_view(self, _module: nn.Module, _args: tuple) -> None:
        self._view += 1

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        i = self._index[id(module)]
        view = self._fixed_view if self._fixed_view is not None else max(self._view, 0) % self.views
        x = args[0]
        if i in self._collect and self._mask is not None:
            self._gather(i, view, module, x)
        if self._stop_after is not None and i >= self._stop_after:
            raise _Stop
        stats = self.stats.get((i, view))
        if stats is None:
            return None
        if isinstance(module, ChannelAttention):
            avg, peak = (s.to(x.dtype).reshape(1, -1, 1, 1) for s in stats)
            return module.from_pooled(avg, peak).expand(x.shape[0], -1, -1, -1)
        context = stats[0].to(x.dtype)[None]
        return graph_correlation_attention(
            x, module.query.weight, module.key.weight, module.update.weight, module.drop, module.training, context=context
        )

    def _gather(self, i: int, view: int, module: nn.Module, x: torch.Tensor) -> None:
        mask = self._mask
        step = mask.shape[-2] // x.shape[-2]
        if mask.shape[-2] != step * x.shape[-2] or mask.shape[-1] != step * x.shape[-1]:
            raise RuntimeError(
                f"attention layer {i} sees {tuple(x.shape[-2:])} features for a {tuple(mask.shape[-2:])} tile; "
                "image context needs tiles whose sides are multiples of the pooling grid"
            )
        m = mask[..., ::step, ::step].to(x.device)
        count = float(m.sum())
        if count == 0:
            return
        sums = self._sums.setdefault((i, view), _Sums())
        xf = x.float()
        if isinstance(module, ChannelAttention):
            total = (xf * m).sum((0, 2, 3))
            peak = xf.masked_fill(m == 0, float("-inf")).amax((0, 2, 3))
            sums.add(total, count, peak)
        else:
            nodes = xf.flatten(2).transpose(1, 2)
            weights = m.expand(x.shape[0], 1, -1, -1).flatten(2).transpose(1, 2)
            sums.add(key_context(nodes, module.key.weight.float(), weights).sum(0), count)

    # --- passes -----------------------------------------------------------------------------
    def run_pass(self, batches: Any, layers: set[int], stop_after: int | None = None) -> None:
        """One statistics pass: gather ``layers`` over the cores of the tiles ``batches()`` yields.

        Args:
            batches: a callable giving an iterable of ``(tiles, masks)``: ``(B, C, H, W)`` tiles as
                the model takes them and their ``(B, 1, H, W)`` statistics-core masks.
            layers: indices into :attr:`layers` to gather; the statistics already in
                :attr:`stats` are injected meanwhile.
            stop_after: end each forward after this layer (the rest of it is not needed).
        """
        self._collect, self._stop_after, self._sums = set(layers), stop_after, {}
        try:
            for view in range(self.views):
                self._fixed_view = view
                for x, masks in batches():
                    self._mask = dihedral_transform(masks, view) if view else masks
                    try:
                        self._base(dihedral_transform(x, view) if view else x)
                    except _Stop:
                        pass
        finally:
            self._fixed_view, self._mask = None, None
            for key, sums in self._sums.items():
                if sums.count and sums.total is not None:
                    self.stats[key] = (sums.total / sums.count,) + ((sums.peak,) if sums.peak is not None else ())
            self._collect, self._stop_after, self._sums = set(), None, {}

    def gather(self, batches: Any, mode: str = "fast", passes: int = 1) -> None:
        """Gather every layer's image-wide statistics: ``"fast"`` (``passes`` passes, each injecting
        what the one before gathered) or ``"exact"`` (one pass per layer)."""
        self.stats = {}
        last = len(self.layers) - 1
        if mode == "exact":
            for j in range(len(self.layers)):
                self.run_pass(batches, {j}, stop_after=j)
        elif mode == "fast":
            for _ in range(passes):
                self.run_pass(batches, set(range(len(self.layers))), stop_after=last)
        else:
            raise ValueError(f"context mode must be one of {CONTEXT_MODES[1:]} to gather, got {mode!r}")

    def clear(self) -> None:
        """Forget the statistics: tiles use their own context again."""
        self.stats = {}
