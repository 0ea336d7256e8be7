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


def _dotted(tmp_path, size=(96, 112), grey=False, n=14):
    """An image with random points, and the Gaussian map of those points as its soft target."""
    rng = np.random.default_rng(3)
    shape = size if grey else (*size, 3)
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(tmp_path / "d.png")
    points = rng.integers(2, min(size) - 2, size=(n, 2)).astype(float)
    (tmp_path / "d.csv").write_text("x,y\n" + "".join(f"{x:g},{y:g}\n" for x, y in points))
    samples = load_folder(tmp_path)
    return samples, gaussian_target(samples[0].points, samples[0].labels, size)


@pytest.mark.parametrize("grey", [False, True])
def test_soft_targets_are_cut_flipped_and_turned_with_the_image(tmp_path, grey):
    """With weight 1 the target is the soft map alone; a map of Gaussians at the points, carried
    through crops, flips and quarter turns, must equal the Gaussians of the moved points."""
    samples, soft = _dotted(tmp_path, grey=grey)
    config = AugmentConfig(hflip=True, vflip=True, rot90=True)
    ds = PointDataset(samples, crop_size=64, augment=config, soft_targets=[soft], soft_target_weight=1.0)
    for epoch in range(6):
        ds.set_epoch(epoch)
        item = ds[0]
        expected = gaussian_target(item["points"].numpy(), item["labels"].numpy(), (64, 64))
        # Away from the crop's edge, where blobs of points just outside it differ.
        np.testing.assert_allclose(item["target"][:, 7:-7, 7:-7], expected[:, 7:-7, 7:-7], atol=1e-5)


def test_soft_targets_are_zoomed_with_the_image(tmp_path):
    samples, soft = _dotted(tmp_path)
    config = AugmentConfig(hflip=True, vflip=True, rot90=True, scale_range=(0.7, 1.4), scale_prob=1.0)
    ds = PointDataset(samples, crop_size=64, augment=config, soft_targets=[soft], soft_target_weight=1.0)
    for epoch in range(6):
        ds.set_epoch(epoch)
        item = ds[0]
        expected = gaussian_target(item["points"].numpy(), item["labels"].numpy(), (64, 64))[0, 7:-7, 7:-7]
        zoomed = item["target"][0, 7:-7, 7:-7].numpy()  # blobs 0.7-1.4x as wide as the points' own
        assert np.corrcoef(zoomed.ravel(), expected.ravel())[0, 1] > 0.85
        assert np.corrcoef(zoomed[::-1].ravel(), expected.ravel())[0, 1] < 0.3  # misplaced would fail


def test_soft_targets_leave_the_images_and_their_random_draws_alone(tmp_path):
    samples, soft = _dotted(tmp_path)
    config = AugmentConfig.preset("generalist")
    plain = PointDataset(samples, crop_size=64, augment=config, normalize="percentile")
    half = PointDataset(samples, crop_size=64, augment=config, normalize="percentile",
                        soft_targets=[soft], soft_target_weight=0.5)
    none = PointDataset(samples, crop_size=64, augment=config, normalize="percentile",
                        soft_targets=[soft], soft_target_weight=0.0)
    for epoch in range(4):
        for ds in (plain, half, none):
            ds.set_epoch(epoch)
        a, b, c = plain[0], half[0], none[0]
        torch.testing.assert_close(b["image"], a["image"])
        torch.testing.assert_close(c["target"], a["target"])
        torch.testing.assert_close(b["points"], a["points"])
        assert not torch.equal(b["target"], a["target"])


def test_soft_targets_must_match_their_images(tmp_path):
    samples, soft = _dotted(tmp_path)
    with pytest.raises(ValueError, match="1 samples"):
        PointDataset(samples, soft_targets=[soft, soft])
    with pytest.raises(ValueError, match="soft_target_weight"):
        PointDataset(samples, soft_targets=[soft], soft_target_weight=1.5)
    ds = PointDataset(samples, crop_size=32, soft_targets=[soft[:, :-1]])
    with pytest.raises(ValueError, match=r"d\.png: soft target \(1, 95, 112\)"):
        ds[0]
