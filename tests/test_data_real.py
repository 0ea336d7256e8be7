"""The readers and load_dataset on the real shared data sets (../shared/datasets).

Expected numbers are those of ../shared/datasets/README.md. Skipped, with the reason, when the
data folder is absent; point LITEUNET_DATASETS at it to run them elsewhere.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest

from liteunet.data import (
    PointDataset,
    class_names,
    list_datasets,
    load_dataset,
    normalize_image,
    read_image,
    read_split_file,
    resolve_root,
)
from liteunet.data._make_splits import make_splits
from liteunet.data.datasets import SPLIT_DIR

pytestmark = pytest.mark.data


@functools.cache
def _root():
    try:
        return resolve_root(None)
    except FileNotFoundError as err:
        pytest.skip(f"shared data sets not found: set LITEUNET_DATASETS ({err})")


@functools.cache
def _load(name, split):
    return load_dataset(name, split, _root())


@functools.cache
def _image(path):
    return read_image(path)


# name: ({split: (images, points)} or None, total images, total points, {label: total})
EXPECTED = {
    "crc": ({"train": (70, 20500), "validation": (10, 2853)}, 80, 23353, None),
    "bcdata": ({"train": (10, 1196), "validation": (3, 267)}, 13, 1463, {0: 692, 1: 771}),
    "bbbc039": ({"train": (150, None), "validation": (50, None)}, 200, 23617, None),
    "mbm": (None, 44, 5553, None),
    "vgg_cells": ({"train": (100, None), "validation": (100, None)}, 200, 35192, None),
    "adi": (None, 200, 31003, None),
    "dsb2018": ({"train": (357, None), "validation": (64, None)}, 421, 13374, None),
}


def test_every_dataset_has_expectations():
    assert sorted(EXPECTED) == list_datasets()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_match_readme(name):
    per_split, n_images, n_points, per_label = EXPECTED[name]
    samples = _load(name, "train") + _load(name, "validation")
    assert len(samples) == n_images
    assert sum(len(s.points) for s in samples) == n_points
    for split, (images, points) in (per_split or {}).items():
        assert len(_load(name, split)) == images
        if points is not None:
            assert sum(len(s.points) for s in _load(name, split)) == points
    labels = np.concatenate([s.labels for s in samples])
    if per_label:
        assert {k: int((labels == k).sum()) for k in per_label} == per_label
    assert labels.max() < len(class_names(name))
    assert len({s.name for s in samples}) == n_images  # names are unique, splits disjoint


def test_bcdata_per_split_classes():
    for split, (pos, neg) in {"train": (554, 642), "validation": (138, 129)}.items():
        labels = np.concatenate([s.labels for s in _load("bcdata", split)])
        assert (int((labels == 0).sum()), int((labels == 1).sum())) == (pos, neg)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_points_lie_inside_their_image(name):
    # CRC's 1-based coordinates, 1 subtracted, run from -0.85 to 499: five clicks land up to
    # 0.35 px beyond the first pixel's outer edge; every other set keeps within the pixel extents.
    margin = 0.5 if name == "crc" else 0.0
    for s in _load(name, "train")[:25] + _load(name, "validation")[:10]:
        img = _image(s.image_path)
        height, width = img.shape[:2]
        assert s.points.dtype == np.float64 and s.points.shape[1] == 2
        assert (s.points >= -0.5 - margin).all()
        assert (s.points[:, 0] <= width - 0.5 + margin).all()
        assert (s.points[:, 1] <= height - 0.5 + margin).all()


# Mean normalized intensity at the points is far from the image at the swapped (y, x)
# positions when x and y are the right way round: nuclei are dark in H&E/IHC, cells bright in
# fluorescence, adipocyte interiors bright.
@pytest.mark.parametrize(
    "name, darker",
    [("crc", True), ("bcdata", True), ("mbm", True), ("vgg_cells", False), ("adi", False),
     ("bbbc039", False)],
)
def test_x_and_y_not_swapped(name, darker):
    at_points, swapped = [], []
    for s in _load(name, "train")[:10]:
        img = normalize_image(_image(s.image_path))
        grey = img.mean(axis=-1) if img.ndim == 3 else img
        side = min(grey.shape)
        xy = np.round(s.points).astype(int)
        xy = xy[(xy >= 0).all(axis=1) & (xy < side).all(axis=1)]
        at_points.append(grey[xy[:, 1], xy[:, 0]].mean())
        swapped.append(grey[xy[:, 0], xy[:, 1]].mean())
    diff = np.mean(at_points) - np.mean(swapped)
    assert (diff < -0.1) if darker else (diff > 0.01)


def test_bbbc039_is_16bit_non_square_and_centroids_on_their_nucleus():
    s = _load("bbbc039", "validation")[0]
    img = _image(s.image_path)
    assert img.dtype == np.uint16 and img.shape == (520, 696)
    labels_img = _image(s.image_path.parent.parent / "labels" / s.image_path.name)
    assert labels_img.dtype == np.uint16
    assert s.points[:, 0].max() > 520  # x spans the 696 columns
    xy = np.round(s.points).astype(int)
    on_a_nucleus = labels_img[xy[:, 1], xy[:, 0]] > 0
    assert on_a_nucleus.mean() > 0.95


def test_split_files_are_disjoint_grouped_and_reproducible():
    assert make_splits(_root()) == {
        name: {split: read_split_file(SPLIT_DIR / f"{name}_{split}.txt") for split in
               ("train", "validation")}
        for name in ("vgg_cells", "mbm", "adi")
    }
    assert len(_load("mbm", "train")) == 32 and len(_load("mbm", "validation")) == 12
    assert len(_load("adi", "train")) == 150 and len(_load("adi", "validation")) == 50
    assert [s.name for s in _load("vgg_cells", "train")][::99] == ["001", "100"]
    group = {"mbm": lambda n: n.rsplit("_", 1)[0],
             "adi": lambda n: re.search(r"GTEX-[A-Z0-9]+", n).group(0)}
    for name, group_of in group.items():
        train = {group_of(s.name) for s in _load(name, "train")}
        validation = {group_of(s.name) for s in _load(name, "validation")}
        assert not train & validation, f"{name}: a source slide/donor is on both sides"


def test_point_dataset_on_real_images():
    ds = PointDataset(_load("bbbc039", "validation")[:2], crop_size=128, in_chans=3)
    item = ds[0]
    assert item["image"].shape == (3, 128, 128) and item["target"].shape == (1, 128, 128)
    assert 0.0 <= float(item["target"].min()) and float(item["target"].max()) <= 1.0
    bc = PointDataset(_load("bcdata", "validation")[:1], crop_size=None, augment=False,
                      num_classes=2)[0]
    assert bc["target"].shape == (2, 640, 640)
    assert int((bc["target"][0] == 1.0).sum()) >= int((bc["labels"] == 0).sum()) > 0


def _haematoxylin(rgb8):
    # Ruifrok & Johnston colour deconvolution (as skimage.color.rgb2hed), haematoxylin channel.
    rgb_from_hed = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
    rgb_from_hed /= np.linalg.norm(rgb_from_hed, axis=1, keepdims=True)
    density = -np.log(np.clip(rgb8[..., :3].astype(np.float64) / 255.0, 1e-6, 1.0))
    return (density @ np.linalg.inv(rgb_from_hed))[..., 0]


def _mean_offset_to_haematoxylin(samples, shift=0.0, r=5):
    """Mean (dx, dy) from each point to the haematoxylin centroid in a disc around it."""
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = xx**2 + yy**2 <= r * r
    offsets = []
    for s in samples:
        h = _haematoxylin(_image(s.image_path))
        height, width = h.shape
        for x, y in s.points + shift:
            cx, cy = int(round(x)), int(round(y))
            if not (r <= cx < width - r and r <= cy < height - r):
                continue
            w = h[cy - r : cy + r + 1, cx - r : cx + r + 1]
            w = np.clip(w - np.median(w), 0, None) * disc
            if w.sum() > 0:
                offsets.append(((w * (xx + cx)).sum() / w.sum() - x, (w * (yy + cy)).sum() / w.sum() - y))
    return np.mean(offsets, axis=0)


def test_crc_points_sit_on_their_nuclei_after_the_matlab_origin():
    # The reader subtracts MATLAB's 1-based origin. Measured with this estimator on six training
    # images: about (-0.19, -0.03) px to the haematoxylin centroid with it, (-0.50, -0.30) with
    # the raw coordinates (the datasets README: 0.46 / 0.36 px before, 0.09 / 0.03 after).
    samples = _load("crc", "train")[:6]
    fixed = _mean_offset_to_haematoxylin(samples)
    raw = _mean_offset_to_haematoxylin(samples, shift=1.0)
    assert np.abs(fixed).max() < 0.3, fixed
    assert np.hypot(*fixed) < np.hypot(*raw) - 0.2, (fixed, raw)


def test_dsb2018_points_lie_on_nuclei_of_both_modalities():
    samples = _load("dsb2018", "validation")
    kinds = set()
    for s in samples[:: max(1, len(samples) // 12)]:
        img = normalize_image(_image(s.image_path), mode="percentile")
        grey = img.mean(axis=-1) if img.ndim == 3 else img
        bright_field = np.median(grey) > 0.5  # tissue tiles: dark nuclei on a light background
        kinds.add(bright_field)
        xy = np.round(s.points).astype(int)
        at_points = grey[xy[:, 1], xy[:, 0]].mean()
        assert (at_points < np.median(grey)) if bright_field else (at_points > np.median(grey))
    assert kinds == {True, False}


def test_dsb2018_groups_split_each_group_about_15_percent_to_validation():
    from liteunet.data import dataset_groups

    groups = dataset_groups("dsb2018", _root())
    for split in ("train", "validation"):
        assert sum(len(_load(f"dsb2018:{g}", split)) for g in set(groups.values())) == len(_load("dsb2018", split))
    for g in {g for g in groups.values() if list(groups.values()).count(g) >= 20}:
        share = len(_load(f"dsb2018:{g}", "validation")) / list(groups.values()).count(g)
        assert 0.1 <= share <= 0.2, (g, share)
