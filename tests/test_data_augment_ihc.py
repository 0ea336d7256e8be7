"""IHC re-staining of bright-field crops: the stain arithmetic, which pixels change, and what is left alone."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest

from liteunet.data import AugmentConfig, augment
from liteunet.data.augment_ihc import nucleus_radius, restain_as_ihc
from liteunet.data.stains import HED_FROM_RGB, RGB_FROM_HED


def _he_image(points, size=64, radius=4):
    """Pink (eosin) tissue with a purple (haematoxylin) disc at each point, built in HED optical density."""
    yy, xx = np.mgrid[:size, :size]
    hed = np.zeros((size, size, 3))
    hed[..., 1] = 0.25
    for x, y in points:
        hed[..., 0] += 0.6 * (((xx - x) ** 2 + (yy - y) ** 2) <= radius**2)
    return np.exp(-(hed @ RGB_FROM_HED)).astype(np.float32)


def _hed(image):
    return -np.log(np.clip(image[..., :3].astype(np.float64), 1e-6, 1.0)) @ HED_FROM_RGB


def test_no_positive_cell_only_scales_eosin_as_a_direct_computation():
    points = np.array([[16.0, 16.0], [44.0, 40.0]])
    image = _he_image(points)
    out = restain_as_ihc(image, points, np.random.default_rng(0), positive=(0, 0), eosin=(0.5, 0.5))
    hed = _hed(image)
    expected = np.exp(-(np.stack([np.clip(hed[..., 0], 0, None), 0.5 * hed[..., 1], hed[..., 2]], -1) @ RGB_FROM_HED))
    np.testing.assert_allclose(out, np.clip(expected, 0, 1), atol=1e-6)


def test_positive_cells_turn_brown_where_their_nucleus_is_and_nowhere_else():
    points = np.array([[16.0, 16.0], [44.0, 40.0]])
    image = _he_image(points)
    out = restain_as_ihc(image, points, np.random.default_rng(0), positive=(1, 1), eosin=(0, 0), dab=(2, 2))
    before, after = _hed(image), _hed(out)
    dab_added = after[..., 2] - before[..., 2]
    for x, y in points.astype(int):
        assert dab_added[y, x] > 1.0  # 2 x (0.6 + 0.1) at the centre, less the soft edge
        assert after[y, x, 0] < 0.5 * before[y, x, 0]  # most haematoxylin moved to DAB
        assert out[y, x, 0] > out[y, x, 2]  # brown: more red than blue left
    # Half the 28-px point spacing is the radius; the soft edge reaches a few pixels further.
    radius = nucleus_radius(points)
    yy, xx = np.mgrid[:64, :64]
    far = np.min([np.hypot(xx - x, yy - y) for x, y in points], axis=0) > radius + 3 * radius / 4 + 1
    assert np.abs(dab_added[far]).max() < 1e-3


def test_the_share_of_positive_cells_follows_its_range():
    rng = np.random.default_rng(1)
    points = np.array([[x, y] for x in range(6, 64, 12) for y in range(6, 64, 12)], dtype=float)
    image = _he_image(points, radius=3)
    shares = []
    for _ in range(20):
        out = restain_as_ihc(image, points, rng, positive=(0.4, 0.6))
        dab = _hed(out)[..., 2] - _hed(image)[..., 2]
        cols, rows = points.astype(int).T
        shares.append(np.mean(dab[rows, cols] > 0.3))
    assert 0.3 < np.mean(shares) < 0.7


def test_fluorescence_and_grey_images_are_left_alone():
    rng = np.random.default_rng(0)
    dark = np.full((32, 32, 3), 0.05, np.float32)
    dark[10:14, 10:14] = 0.9
    points = np.array([[11.5, 11.5]])
    np.testing.assert_array_equal(restain_as_ihc(dark, points, rng, positive=(1, 1)), dark)
    grey = np.full((32, 32, 3), 0.8, np.float32)
    grey[10:14, 10:14] = 0.2
    np.testing.assert_array_equal(restain_as_ihc(grey, points, rng, positive=(1, 1)), grey)


def test_points_outside_or_none_and_alpha_are_handled():
    rng = np.random.default_rng(0)
    image = np.concatenate([_he_image([[20, 20]]), np.full((64, 64, 1), 0.5, np.float32)], -1)
    out = restain_as_ihc(image, np.array([[20.0, 20.0], [-3.0, 70.0]]), rng, positive=(1, 1))
    assert out.shape == image.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 3], image[..., 3])
    assert restain_as_ihc(image, np.zeros((0, 2)), rng).shape == image.shape
    with pytest.raises(ValueError, match=r"RGB\(A\) image"):
        restain_as_ihc(image[..., 0], np.zeros((0, 2)), rng)


def test_nucleus_radius_is_half_the_typical_spacing_within_limits():
    assert nucleus_radius(np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])) == 5.0
    assert nucleus_radius(np.array([[0.0, 0.0], [2.0, 0.0]])) == 3.0  # low limit
    assert nucleus_radius(np.array([[0.0, 0.0], [100.0, 0.0]])) == 16.0  # high limit
    assert nucleus_radius(np.zeros((1, 2))) == 8.0


def test_generalist_ihc_preset_adds_only_the_restaining():
    plain, ihc = AugmentConfig.generalist(), AugmentConfig.generalist_ihc()
    assert ihc.ihc_prob == 0.25
    assert [f.name for f in fields(AugmentConfig) if getattr(plain, f.name) != getattr(ihc, f.name)] == ["ihc_prob"]
    assert AugmentConfig.preset("generalist-ihc") == ihc and AugmentConfig.preset("none") is None
    with pytest.raises(ValueError, match="unknown augment 'ihc'"):
        AugmentConfig.preset("ihc")


def test_augment_without_restaining_draws_the_same_random_numbers_as_before():
    """ihc_prob=0 draws nothing extra, so the recipes of earlier weights stay reproducible."""
    points = np.array([[16.0, 16.0], [44.0, 40.0]])
    image = _he_image(points)
    labels = np.zeros(2, np.int64)
    a = augment(image, points, labels, np.random.default_rng(5), AugmentConfig.generalist())
    b = augment(image, points, labels, np.random.default_rng(5), replace(AugmentConfig.generalist(), ihc_prob=0.0))
    np.testing.assert_array_equal(a[0], b[0])
    always = replace(AugmentConfig.generalist(), ihc_prob=1.0, grey_prob=0.0)
    c = augment(image, points, labels, np.random.default_rng(5), always)
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(c[1], a[1])  # points move with geometry only


def test_every_augment_name_of_the_command_line_is_a_preset():
    from liteunet.cli.train import AUGMENT_CHOICES

    for name in AUGMENT_CHOICES:
        assert AugmentConfig.preset(name) is None if name == "none" else isinstance(AugmentConfig.preset(name), AugmentConfig)
