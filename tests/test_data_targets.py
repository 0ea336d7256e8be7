"""Gaussian location-map targets."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from liteunet.data import TargetFn, gaussian_target


def _dense_reference(points, shape, sigma, normalize_peak):
    """Brute force: every pixel of the window, per point, then max."""
    height, width = shape
    rows, cols = np.mgrid[0:height, 0:width]
    radius = math.ceil(3 * sigma)
    out = np.zeros(shape)
    for x, y in points:
        blob = np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2))
        blob[(np.abs(cols - x) > radius) | (np.abs(rows - y) > radius)] = 0
        if normalize_peak:
            blob /= math.exp(-((x - round(x)) ** 2 + (y - round(y)) ** 2) / (2 * sigma**2))
        out = np.maximum(out, blob)
    return np.minimum(out, 1.0)


def test_hand_computed_values():
    t = gaussian_target(np.array([[2.0, 1.0]]), None, (4, 6), sigma=1.0)
    assert t.shape == (1, 4, 6) and t.dtype == np.float32
    assert t[0, 1, 2] == 1.0
    assert t[0, 1, 3] == pytest.approx(math.exp(-0.5), rel=1e-6)  # d^2 = 1
    assert t[0, 2, 3] == pytest.approx(math.exp(-1.0), rel=1e-6)  # d^2 = 2
    assert t[0, 3, 4] == pytest.approx(math.exp(-4.0), rel=1e-6)  # d^2 = 8
    assert t[0, 1, 5] == pytest.approx(math.exp(-4.5), rel=1e-5)  # d^2 = 9, radius 3
    assert t.min() >= 0.0 and t.max() == 1.0


def test_window_is_cut_at_three_sigma():
    t = gaussian_target(np.array([[10.0, 10.0]]), None, (21, 21), sigma=1.0)
    assert t[0, 10, 13] > 0 and t[0, 10, 14] == 0  # ceil(3 * 1) = 3 pixels each side


def test_every_cell_peaks_at_one_with_max_combination():
    points = np.array([[5.0, 5.0], [7.0, 5.0]])  # 2 px apart, sigma 2: blobs overlap a lot
    t = gaussian_target(points, None, (11, 13), sigma=2.0)[0]
    assert t[5, 5] == 1.0 and t[5, 7] == 1.0 and t.max() == 1.0
    # Between them: the max of the two blobs, not their sum (which would be ~1.56).
    assert t[5, 6] == pytest.approx(math.exp(-1 / 8), rel=1e-6)


def test_subpixel_points_still_peak_at_one():
    points = np.array([[3.3, 4.5], [10.5, 2.5]])
    t = gaussian_target(points, None, (9, 14), sigma=1.5)[0]
    assert t[4, 3] == pytest.approx(1.0) or t[5, 3] == pytest.approx(1.0)
    assert t[2, 10] == pytest.approx(1.0) and t[3, 11] == pytest.approx(1.0)  # tie: 4 pixels
    raw = gaussian_target(points, None, (9, 14), sigma=1.5, normalize_peak=False)[0]
    assert raw.max() < 1.0
    assert raw[4, 3] == pytest.approx(math.exp(-(0.3**2 + 0.5**2) / (2 * 1.5**2)), rel=1e-6)


@pytest.mark.parametrize("normalize_peak", [True, False])
def test_matches_dense_reference(normalize_peak):
    rng = np.random.default_rng(0)
    points = rng.uniform(-8, 40, size=(30, 2))  # some far outside, some over the border
    points[:5] = np.round(points[:5])
    t = gaussian_target(points, None, (30, 33), sigma=2.5, normalize_peak=normalize_peak)[0]
    ref = _dense_reference(points, (30, 33), 2.5, normalize_peak)
    np.testing.assert_allclose(t, ref, atol=1e-6)


def test_points_on_and_over_the_border():
    t = gaussian_target(np.array([[0.0, 0.0], [-2.0, 4.0], [100.0, 100.0]]), None, (6, 6),
                        sigma=1.0)[0]
    assert t[0, 0] == 1.0
    assert t[4, 0] == pytest.approx(math.exp(-2.0))  # point 2 px left of the image
    assert t[:, 5].max() < 0.02  # the far point adds nothing


def test_classes_go_to_their_channel():
    points = np.array([[1.0, 1.0], [4.0, 3.0]])
    t = gaussian_target(points, np.array([1, 0]), (5, 6), num_classes=2, sigma=1.0)
    assert t.shape == (2, 5, 6)
    assert t[1, 1, 1] == 1.0 and t[0, 3, 4] == 1.0
    assert t[0, 1, 1] < 1.0 and t[1, 3, 4] < 1.0
    one = gaussian_target(points, np.array([1, 0]), (5, 6), num_classes=1, sigma=1.0)
    np.testing.assert_array_equal(one[0], t.max(axis=0))  # labels ignored with one class


def test_empty_and_errors():
    assert gaussian_target(np.zeros((0, 2)), None, (3, 4)).sum() == 0
    assert gaussian_target(np.zeros((0, 2)), None, (3, 4), num_classes=2).shape == (2, 3, 4)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        gaussian_target(np.zeros((3, 3)), None, (3, 4))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_target(np.array([[np.nan, 1.0]]), None, (3, 4))
    with pytest.raises(ValueError, match="sigma"):
        gaussian_target(np.zeros((1, 2)), None, (3, 4), sigma=0)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        gaussian_target(np.zeros((1, 2)), np.array([2]), (3, 4), num_classes=2)
    with pytest.raises(ValueError, match="labels"):
        gaussian_target(np.zeros((2, 2)), np.array([0]), (3, 4), num_classes=2)


def test_partial_is_a_target_fn():
    fn: TargetFn = functools.partial(gaussian_target, sigma=3.0)
    t = fn(np.array([[5.0, 5.0]]), None, (11, 11), num_classes=1)
    assert t[0, 5, 8] == pytest.approx(math.exp(-9 / 18))
