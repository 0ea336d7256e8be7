"""Scale and modality augmentation for generalist weights: points follow rescaling exactly."""

from __future__ import annotations

import numpy as np
import pytest

from liteunet.data import AugmentConfig, PointDataset, Sample, augment
from liteunet.data.augment_modality import gaussian_blur, gaussian_noise, is_grey, jpeg_artefacts, to_grey
from liteunet.data.augment_scale import random_scaled_crop, rescale


def _dots(height, width, xy, radius=0.0):
    """An image with a bright Gaussian blob at each (x, y) (sub-pixel centres)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.zeros((height, width))
    for x, y in xy:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * max(radius, 1.0) ** 2))
    return img.astype(np.float32)


def _centroid(img, x, y, r):
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    window = (np.abs(xx - x) <= r) & (np.abs(yy - y) <= r)
    w = img * window
    return (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()


@pytest.mark.parametrize("size", [(64, 96), (16, 24), (33, 47)])
def test_rescale_moves_points_with_the_blobs(size):
    xy = np.array([[10.3, 12.7], [30.0, 20.5]])
    img = _dots(40, 60, xy, radius=3.0)
    out, moved = rescale(img, xy, size)
    assert out.shape == size and out.dtype == np.float32
    # Direct computation of the pixel-centre rule: x' = (x + 0.5) * W'/W - 0.5.
    expected = (xy + 0.5) * np.array([size[1] / 60, size[0] / 40]) - 0.5
    np.testing.assert_allclose(moved, expected)
    r = 3 * 3.0 * size[1] / 60
    for (x, y) in moved:
        cx, cy = _centroid(out, x, y, r)
        assert abs(cx - x) < 0.25 and abs(cy - y) < 0.25


def test_rescale_keeps_channels_and_rejects_empty_sizes():
    out, _ = rescale(np.zeros((10, 12, 3), np.float32), np.zeros((0, 2)), (5, 6))
    assert out.shape == (5, 6, 3)
    with pytest.raises(ValueError, match="positive output size"):
        rescale(np.zeros((10, 12), np.float32), np.zeros((0, 2)), (0, 6))


def test_random_scaled_crop_zooms_within_range_and_points_stay_on_blobs():
    rng = np.random.default_rng(0)
    xy = rng.uniform(5, 195, size=(40, 2))
    img = _dots(200, 200, xy, radius=2.0)
    for seed in range(20):
        out, pts, lab = random_scaled_crop(img, xy, np.zeros(len(xy), np.int64), 64,
                                           np.random.default_rng(seed), (0.5, 2.0))
        assert out.shape == (64, 64) and len(pts) == len(lab)
        assert ((pts >= -0.5) & (pts < 63.5)).all()
        inner = pts[((pts > 6) & (pts < 57)).all(axis=1)]
        if len(inner):
            # Each kept point is on a local brightness maximum of the zoomed crop.
            values = out[np.round(inner[:, 1]).astype(int), np.round(inner[:, 0]).astype(int)]
            assert values.min() > 0.3


def test_random_scaled_crop_is_seeded_and_checks_its_range():
    img = np.random.default_rng(1).random((50, 50)).astype(np.float32)
    args = (img, np.zeros((0, 2)), np.zeros(0, np.int64), 32)
    a = random_scaled_crop(*args, np.random.default_rng(5))[0]
    b = random_scaled_crop(*args, np.random.default_rng(5))[0]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="scale_range"):
        random_scaled_crop(*args, np.random.default_rng(5), (2.0, 1.0))


def test_modality_functions():
    rgb = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    grey = to_grey(rgb)
    assert is_grey(grey) and not is_grey(rgb) and is_grey(rgb[..., 0])
    np.testing.assert_allclose(grey[..., 0], rgb.mean(axis=-1), rtol=1e-6)
    blurred = gaussian_blur(rgb, 1.0)
    assert blurred.std() < rgb.std() and abs(blurred.mean() - rgb.mean()) < 1e-3
    noisy = gaussian_noise(np.zeros((200, 200), np.float32), 0.1, np.random.default_rng(0))
    assert abs(noisy.std() - 0.1) < 0.005
    smooth = gaussian_blur(rgb, 3.0)
    for image in (smooth, smooth[..., 0], smooth[..., :1]):
        coded = jpeg_artefacts(image, 40)
        assert coded.shape == image.shape and coded.dtype == np.float32
        assert 0 < np.abs(coded - image).mean() < 0.02
    with pytest.raises(ValueError, match="quality"):
        jpeg_artefacts(rgb, 0)


def test_generalist_augment_is_seeded_and_keeps_points():
    cfg = AugmentConfig.generalist()
    img = np.random.default_rng(2).random((32, 32, 3)).astype(np.float32)
    pts, lab = np.array([[3.0, 4.0]]), np.array([0])
    outs = [augment(img, pts, lab, np.random.default_rng(9), cfg) for _ in range(2)]
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    seen_grey = 0
    for seed in range(40):
        out, p, _ = augment(img, pts, lab, np.random.default_rng(seed), cfg)
        assert out.shape == img.shape and len(p) == 1 and np.isfinite(out).all()
        seen_grey += is_grey(out, tol=1e-5)
    assert 0 < seen_grey < 40  # grey_prob 0.15: some, not all


def test_point_dataset_treats_grey_rgb_like_grey_and_zooms(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    plane = (rng.random((80, 80)) * 200).astype(np.uint8)
    Image.fromarray(plane).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([plane] * 3, axis=-1)).save(tmp_path / "rgb.png")
    pts = np.array([[40.0, 40.0]])
    samples = [Sample(tmp_path / f"{n}.png", pts, np.zeros(1), n) for n in ("grey", "rgb")]
    ds = PointDataset(samples, crop_size=48, augment=AugmentConfig.generalist(), normalize="percentile")
    a, b = ds.load_image(0), ds.load_image(1)
    assert a.ndim == 2 and b.ndim == 2
    np.testing.assert_array_equal(a, b)
    assert a.min() < 0.05 and 0.95 < np.percentile(a, 99.8) < 1.05
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (3, 48, 48)
