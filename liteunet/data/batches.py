"""Training batches of several crop sides: each batch one side, every batch about the same pixels.

Lite-UNet has image-wide terms (CBAM's channel pooling, GCA's ``K^T X / N``) whose statistics
depend on how much of the image one forward pass sees. Weights trained on one crop side learn
the statistics of that side only, and their points then change with the tile size and with one
whole-image pass (issue 21, item 6). Drawing each batch's side from several (``crop_sizes``)
lets the weights see contexts from a small crop to a large tile; the batch size of a side keeps
the pixels per step about constant (``batch_size`` crops of ``crop_size``), so the step cost
and the loss scale stay those of the single-side recipe.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
from torch.utils.data import ConcatDataset

__all__ = ["SizedCrops", "batch_size_for", "sized_batches"]


def batch_size_for(side: int, batch_size: int, crop_size: int) -> int:
    """Crops of ``side`` per batch: about the pixels of ``batch_size`` crops of ``crop_size``, at least 1.

    Example:
        >>> batch_size_for(512, 8, 256), batch_size_for(384, 8, 256), batch_size_for(256, 8, 256)
        (2, 4, 8)
    """
    return max(1, round(batch_size * (crop_size / side) ** 2))


def sized_batches(
    indices: Sequence[int],
    batch_size: int,
    crop_size: int,
    crop_sizes: Sequence[int] | None,
    rng: np.random.Generator,
) -> list[list[tuple[int, int]]]:
    """Cut ``indices`` (already shuffled) into batches of ``(index, crop side)`` keys.

    Each batch takes one side drawn from ``crop_sizes`` (``None``: every batch ``crop_size``) and
    :func:`batch_size_for` items; a last batch too short for its side is dropped, as
    ``DataLoader(drop_last=True)`` does.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> [len(b) for b in sized_batches(range(20), 8, 256, None, rng)]
        [8, 8]
        >>> batches = sized_batches(range(40), 8, 256, [256, 512], rng)
        >>> sorted({(len(b), b[0][1]) for b in batches})
        [(2, 512), (8, 256)]
    """
    sides = [int(crop_size)] if not crop_sizes else [int(s) for s in crop_sizes]
    if min(sides) < 1:
        raise ValueError(f"crop sizes must be positive, got {sides}")
    batches, start = [], 0
    while True:
        side = sides[int(rng.integers(len(sides)))] if len(sides) > 1 else sides[0]
        size = batch_size_for(side, batch_size, crop_size)
        if start + size > len(indices):
            return batches
        batches.append([(int(i), side) for i in indices[start : start + size]])
        start += size


class SizedCrops(ConcatDataset):
    """Several :class:`~liteunet.data.PointDataset` s as one, indexed by ``(index, crop side)``.

    A ``ConcatDataset`` whose keys also carry the side each item is cut at (``index`` counts
    through the sets in order). Use with ``DataLoader(..., batch_sampler=sized_batches(...))``.

    Example:
        >>> from liteunet.data import PointDataset, Sample  # doctest: +SKIP
        >>> crops = SizedCrops([PointDataset(samples)])  # doctest: +SKIP
        >>> crops[(0, 384)]["image"].shape  # doctest: +SKIP
        torch.Size([3, 384, 384])
    """

    def __getitem__(self, key: tuple[int, int]) -> dict:  # type: ignore[override]
        index, side = key
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        which = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which].item(index - start, crop_size=side)
