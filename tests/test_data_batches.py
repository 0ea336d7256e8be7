"""Batches of several crop sides (liteunet.data.batches): one side per batch, constant pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from liteunet.data import PointDataset, collate, load_folder
from liteunet.data.batches import SizedCrops, batch_size_for, sized_batches


def test_each_batch_has_one_side_and_about_the_pixels_of_the_base_batch():
    batches = sized_batches(list(range(500)), 8, 256, [256, 384, 512], np.random.default_rng(0))
    sides = [batch[0][1] for batch in batches]
    assert set(sides) == {256, 384, 512}
    for batch, side in zip(batches, sides):
        assert {s for _, s in batch} == {side}
        assert len(batch) == {256: 8, 384: 4, 512: 2}[side]
        assert 0.85 <= len(batch) * side**2 / (8 * 256**2) <= 1.15
    used = [i for batch in batches for i, _ in batch]
    assert used == list(range(len(used))) and 500 - len(used) < 8  # in order, only a short tail dropped


def test_one_side_is_the_plain_batching_and_draws_are_seeded():
    assert sized_batches(list(range(10)), 4, 64, None, np.random.default_rng(1)) == [
        [(i, 64) for i in range(4)], [(i, 64) for i in range(4, 8)]]
    a = sized_batches(list(range(64)), 8, 256, [256, 512], np.random.default_rng(3))
    assert a == sized_batches(list(range(64)), 8, 256, [256, 512], np.random.default_rng(3))
    assert a != sized_batches(list(range(64)), 8, 256, [256, 512], np.random.default_rng(4))
    assert batch_size_for(1024, 8, 256) == 1  # never an empty batch
    with pytest.raises(ValueError, match="positive"):
        sized_batches([1, 2], 2, 64, [0], np.random.default_rng(0))


def test_sized_crops_cut_each_item_at_the_asked_side_across_sets(tmp_path):
    sets = []
    for name, n in (("a", 2), ("b", 3)):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(n):
            Image.fromarray(np.full((80, 90, 3), 40 * i, np.uint8)).save(folder / f"{name}{i}.png")
            (folder / f"{name}{i}.csv").write_text("x,y\n40,40\n")
        sets.append(PointDataset(load_folder(folder), crop_size=32, augment=False))
    crops = SizedCrops(sets)
    assert len(crops) == 5
    items = [crops[(index, side)] for index, side in ((0, 48), (4, 48))]
    assert [item["name"] for item in items] == ["a0", "b2"]
    batch = collate(items)
    assert batch["image"].shape == (2, 3, 48, 48) and batch["target"].shape == (2, 1, 48, 48)
    assert torch.equal(crops[(3, 32)]["image"], sets[1][1]["image"])  # the set's own side, same crop
    with pytest.raises(IndexError):
        crops[(5, 32)]
