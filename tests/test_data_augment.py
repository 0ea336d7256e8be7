"""Augmentation: determinism, and points that move exactly with the image."""

from __future__ import annotations

import numpy as np
import pytest

from liteunet.data import (
    AugmentConfig,
    augment,
    augment_geometry,
    center_crop,
    color_jitter,
    crop,
    gaussian_target,
    hflip,
    intensity_jitter,
    random_crop,
    rot90,
    stain_jitter,
    vflip,
)


def _points(rng, n, height, width):
    """Random sub-pixel points inside an image, a few of them exactly on .5 or integers."""
    pts = rng.uniform([-0.5, -0.5], [width - 0.51, height - 0.51], size=(n, 2))
    pts[:3] = np.round(pts[:3] * 2) / 2
    return pts


def _dot_image(points, labels, height, width):
    """An image whose pixel under each integer point holds label + 1: geometry made visible."""
    img = np.zeros((height, width), np.float32)
    xy = np.round(points).astype(int)
    img[xy[:, 1], xy[:, 0]] = labels + 1
    return img


def _dots_of(img):
    rows, cols = np.nonzero(img)
    return sorted(zip(cols.tolist(), rows.tolist(), (img[rows, cols] - 1).astype(int).tolist()))


def _as_set(points, labels):
    return sorted(zip(np.round(points[:, 0]).astype(int).tolist(),
                      np.round(points[:, 1]).astype(int).tolist(), labels.tolist()))


@pytest.mark.parametrize(
    "transform",
    [hflip, vflip, rot90, lambda i, p, l: rot90(i, p, l, k=2), lambda i, p, l: rot90(i, p, l, 3)],
    ids=["hflip", "vflip", "rot90", "rot180", "rot270"],
)
def test_target_of_transformed_points_equals_transformed_target(transform):
    rng = np.random.default_rng(1)
    height, width = 23, 31  # non-square, so a swapped axis shows
    points, labels = _points(rng, 40, height, width), rng.integers(0, 2, 40)
    target = gaussian_target(points, labels, (height, width), num_classes=2, sigma=2.0)
    image = np.moveaxis(target, 0, -1)  # transform the target as an (H, W, 2) image
    moved_target, moved_points, moved_labels = transform(image, points, labels)
    expected = gaussian_target(moved_points, moved_labels, moved_target.shape[:2],
                               num_classes=2, sigma=2.0)
    np.testing.assert_allclose(np.moveaxis(moved_target, -1, 0), expected, atol=1e-6)


def test_rot90_matches_numpy_and_point_formula():
    img = np.arange(12).reshape(3, 4)
    out, pts, _ = rot90(img, np.array([[3.0, 0.0]]), np.array([0]))
    np.testing.assert_array_equal(out, np.rot90(img))
    assert out[int(pts[0, 1]), int(pts[0, 0])] == img[0, 3]


def test_flips_on_dot_images():
    rng = np.random.default_rng(2)
    points = np.unique(np.round(_points(rng, 20, 9, 14)).clip(0, [13, 8]), axis=0)
    labels = rng.integers(0, 3, len(points))
    img = _dot_image(points, labels, 9, 14)
    for transform in (hflip, vflip, rot90):
        out, pts, lab = transform(img, points, labels)
        assert _dots_of(out) == _as_set(pts, lab)


def test_crop_keeps_inside_points_only():
    points = np.array([[5.0, 5.0], [1.0, 1.0], [7.49, 4.0], [7.5, 4.0], [3.5, 3.5]])
    labels = np.arange(5)
    img, pts, lab = crop(np.zeros((10, 10)), points, labels, top=4, left=4, height=4, width=4)
    assert img.shape == (4, 4)
    np.testing.assert_array_equal(pts, [[1.0, 1.0], [3.49, 0.0], [-0.5, -0.5]])
    assert lab.tolist() == [0, 2, 4]


@pytest.mark.parametrize("pad_mode", ["constant", "symmetric"])
@pytest.mark.parametrize("window", [(-3, -5, 12, 20), (2, 1, 5, 6), (-20, -30, 40, 50)])
def test_crop_with_padding_moves_points_with_pixels(pad_mode, window):
    rng = np.random.default_rng(3)
    height, width = 7, 9
    points = np.unique(rng.integers([0, 0], [width, height], size=(15, 2)), axis=0).astype(float)
    labels = rng.integers(0, 3, len(points))
    img = _dot_image(points, labels, height, width)
    top, left, h, w = window
    out, pts, lab = crop(img, points, labels, top, left, h, w, pad_mode=pad_mode)
    assert out.shape == (h, w)
    assert _dots_of(out) == _as_set(pts, lab)  # every (mirrored) dot is annotated, once


def test_random_crop_pads_small_images_and_is_seeded():
    img = np.ones((20, 30, 3), np.float32)
    points = np.array([[0.0, 0.0], [29.0, 19.0]])
    a = random_crop(img, points, np.zeros(2), 64, np.random.default_rng(5))
    b = random_crop(img, points, np.zeros(2), 64, np.random.default_rng(5))
    assert a[0].shape == (64, 64, 3) and a[0].sum() == 20 * 30 * 3
    np.testing.assert_array_equal(a[1], b[1])
    assert len(a[1]) == 2
    c = center_crop(img, points, np.zeros(2), (10, 10))
    assert c[0].shape == (10, 10, 3) and len(c[1]) == 0


def test_color_jitter_keeps_grey_and_is_seeded():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (6, 7, 3)).astype(np.float32)
    a = color_jitter(img, np.random.default_rng(9), 0.2, 0.2, 0.2, 0.1)
    b = color_jitter(img, np.random.default_rng(9), 0.2, 0.2, 0.2, 0.1)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and not np.allclose(a, img)
    grey = np.full((3, 3, 3), 0.4, np.float32)
    out = color_jitter(grey, np.random.default_rng(1), brightness=0, contrast=0, saturation=0.5,
                       hue=0.5)
    np.testing.assert_allclose(out, grey, atol=1e-6)  # hue and saturation leave grey alone
    np.testing.assert_allclose(color_jitter(img, np.random.default_rng(1), 0, 0, 0, 0), img,
                               atol=1e-6)


def test_intensity_and_stain_jitter():
    grey = np.linspace(-0.02, 1.1, 20, dtype=np.float32).reshape(4, 5)
    out = intensity_jitter(grey, np.random.default_rng(0))
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert (np.sign(out) == np.sign(grey)).all()
    rgb = np.random.default_rng(1).uniform(0, 1, (5, 5, 3)).astype(np.float32)
    out = stain_jitter(rgb, np.random.default_rng(0))
    assert out.shape == rgb.shape and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(stain_jitter(rgb, np.random.default_rng(0), 0, 0), rgb, atol=1e-5)
    with pytest.raises(ValueError, match="RGB"):
        stain_jitter(grey, np.random.default_rng(0))


@pytest.mark.parametrize("shape", [(16, 16, 3), (12, 20), (12, 20, 1)])
def test_augment_same_seed_same_output(shape):
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, shape).astype(np.float32)
    points, labels = _points(rng, 10, *shape[:2]), rng.integers(0, 2, 10)
    cfg = AugmentConfig(stain=0.05)
    outs = [augment(img, points, labels, np.random.default_rng(42), cfg) for _ in range(2)]
    for a, b in zip(outs[0], outs[1]):
        np.testing.assert_array_equal(a, b)
    assert outs[0][0].shape == shape  # non-square images are only turned by 0 or 180 degrees
    others = [augment(img, points, labels, np.random.default_rng(s), cfg)[0] for s in range(8)]
    assert any(not np.array_equal(o, outs[0][0]) for o in others)


def test_augment_moves_points_with_image():
    rng = np.random.default_rng(4)
    points = np.unique(rng.integers(0, 16, size=(25, 2)), axis=0).astype(float)
    labels = rng.integers(0, 2, len(points))
    img = _dot_image(points, labels, 16, 16)
    geometric = AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0, gain=0, gamma=0)
    for seed in range(8):
        out, pts, lab = augment(img, points, labels, np.random.default_rng(seed), geometric)
        assert _dots_of(out) == _as_set(pts, lab)


def test_augment_geometry_moves_extra_channels_as_the_image():
    """Maps stacked on as extra channels (a teacher's location map) follow every flip and turn."""
    rng = np.random.default_rng(5)
    img = rng.uniform(0, 1, (16, 16, 5)).astype(np.float32)
    points, labels = _points(rng, 6, 16, 16), np.zeros(6, int)
    config = AugmentConfig.preset("generalist")
    for seed in range(8):
        stacked, pts, _ = augment_geometry(img, points, labels, np.random.default_rng(seed), config)
        alone, pts_alone, _ = augment_geometry(img[..., :3], points, labels, np.random.default_rng(seed), config)
        extra, _, _ = augment_geometry(img[..., 3:], points, labels, np.random.default_rng(seed), config)
        np.testing.assert_array_equal(stacked, np.concatenate([alone, extra], axis=-1))
        np.testing.assert_array_equal(pts, pts_alone)


def test_paper_and_none_configs():
    img = np.random.default_rng(0).uniform(0, 1, (8, 8, 3)).astype(np.float32)
    out, _, _ = augment(img, np.zeros((0, 2)), np.zeros(0), np.random.default_rng(0),
                        AugmentConfig.none())
    np.testing.assert_array_equal(out, img)
    flipped = [augment(img, np.zeros((0, 2)), np.zeros(0), np.random.default_rng(s),
                       AugmentConfig.paper())[0] for s in range(6)]
    assert all(np.array_equal(o, img) or np.array_equal(o, img[:, ::-1]) for o in flipped)
