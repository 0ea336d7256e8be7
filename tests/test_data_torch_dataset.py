"""PointDataset, collate and load_folder on a tiny folder written to tmp_path."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image

from liteunet.data import (
    AugmentConfig,
    PointDataset,
    Sample,
    collate,
    gaussian_target,
    load_folder,
)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "a.csv").write_text("x,y,label\n10,5,0\n40,30,1\n")
    grey16 = rng.integers(0, 4000, (30, 20), dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "b.png")
    (tmp_path / "points").mkdir()
    (tmp_path / "points" / "b.csv").write_text("x,y\n3,4\n")
    return tmp_path


def test_load_folder(folder):
    samples = load_folder(folder)
    assert [s.name for s in samples] == ["a", "b"]
    np.testing.assert_array_equal(samples[0].points, [[10, 5], [40, 30]])
    assert samples[0].labels.tolist() == [0, 1] and samples[1].labels.tolist() == [0]


def test_load_folder_errors(tmp_path, folder):
    (folder / "c.jpg").write_bytes((folder / "a.png").read_bytes())
    with pytest.raises(FileNotFoundError, match="c.jpg"):
        load_folder(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        load_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_folder(tmp_path / "missing")


def test_items_have_documented_shapes(folder):
    ds = PointDataset(load_folder(folder), crop_size=32, num_classes=2, in_chans=3)
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["target"].shape == (2, 32, 32) and item["target"].dtype == torch.float32
    assert item["points"].ndim == 2 and item["points"].shape[1] == 2
    assert item["labels"].dtype == torch.int64 and item["name"] == "a"
    grey = ds[1]  # 16-bit grey, 30x20: padded to 32x32, repeated to 3 channels
    assert grey["image"].shape == (3, 32, 32)
    assert torch.equal(grey["image"][0], grey["image"][1])


def test_target_peaks_on_points(folder):
    ds = PointDataset(load_folder(folder), crop_size=None, augment=False, num_classes=2)
    item = ds[0]
    assert item["image"].shape == (3, 40, 50)
    assert item["target"][0, 5, 10] == 1.0 and item["target"][1, 30, 40] == 1.0
    np.testing.assert_allclose(item["image"].numpy().transpose(1, 2, 0),
                               np.asarray(Image.open(folder / "a.png")) / 255.0, atol=1e-6)


def test_deterministic_per_seed_epoch_index(folder):
    samples = load_folder(folder)
    a, b = PointDataset(samples, crop_size=24, seed=3), PointDataset(samples, crop_size=24, seed=3)
    for key in ("image", "target", "points"):
        assert torch.equal(a[0][key], b[0][key])
        assert torch.equal(a[0][key], a[0][key])
    first = a[0]["image"]
    changed = []
    for epoch in range(1, 5):
        a.set_epoch(epoch)
        changed.append(not torch.equal(a[0]["image"], first))
    assert any(changed)
    a.set_epoch(0)
    assert torch.equal(a[0]["image"], first)


def test_in_chans_conversion_and_error(folder):
    samples = load_folder(folder)
    assert PointDataset(samples, crop_size=16, in_chans=1)[0]["image"].shape == (1, 16, 16)
    with pytest.raises(ValueError, match=r"a\.png.*in_chans=2"):
        PointDataset(samples, crop_size=16, in_chans=2)[0]


def test_custom_target_fn_and_label_check(folder):
    samples = load_folder(folder)
    wide = functools.partial(gaussian_target, sigma=4.0)
    ds = PointDataset(samples, crop_size=None, augment=AugmentConfig.none(), target_fn=wide)
    assert ds[0]["target"][0, 5, 14] == pytest.approx(np.exp(-16 / 32), rel=1e-5)
    with pytest.raises(ValueError, match="num_classes"):
        PointDataset([Sample(folder / "a.png", [[1, 2]], [3], "x")], num_classes=2)


def test_collate_stacks_and_lists(folder):
    ds = PointDataset(load_folder(folder), crop_size=16)
    batch = collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 16, 16) and batch["target"].shape == (2, 1, 16, 16)
    assert isinstance(batch["points"], list) and len(batch["points"]) == 2
    assert batch["name"] == ["a", "b"]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)
    assert next(iter(loader))["image"].shape == (2, 3, 16, 16)
    whole = PointDataset(load_folder(folder), crop_size=None)
    with pytest.raises(ValueError, match="crop_size"):
        collate([whole[0], whole[1]])
