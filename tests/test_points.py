"""Tests for liteunet.points.find_peaks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.ndimage import maximum_filter

from liteunet.points import PeakResult, find_peaks


def gaussian_map(points, shape=(64, 64), sigma=2.0, amplitudes=None) -> torch.Tensor:
    """Sum of Gaussians centred at (x, y) points on an (H, W) float64 grid."""
    h, w = shape
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    out = torch.zeros(h, w, dtype=torch.float64)
    amplitudes = [1.0] * len(points) if amplitudes is None else amplitudes
    for (x, y), a in zip(points, amplitudes):
        out += a * torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return out


def sort_xy(xy: np.ndarray) -> np.ndarray:
    return xy[np.lexsort((xy[:, 0], xy[:, 1]))]


def check_result(res: PeakResult) -> None:
    assert res.xy.dtype == np.float32 and res.xy.ndim == 2 and res.xy.shape[1] == 2
    assert res.scores.dtype == np.float32 and res.scores.shape == (len(res),)
    assert res.labels.dtype == np.int64 and res.labels.shape == (len(res),)
    assert np.all(np.diff(res.scores) <= 0), "not sorted by descending score"


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_subpixel_gaussians_recovered(sigma):
    pts = [(10.3, 12.7), (40.0, 20.45), (25.8, 50.1), (52.5, 48.6), (7.0, 40.0)]
    res = find_peaks(gaussian_map(pts, sigma=sigma), min_distance=3, threshold=0.5)
    check_result(res)
    assert len(res) == len(pts)
    np.testing.assert_allclose(sort_xy(res.xy), sort_xy(np.array(pts)), atol=0.1)


def test_subpixel_off_gives_integer_pixels():
    res = find_peaks(gaussian_map([(10.3, 12.7)]), subpixel=False)
    np.testing.assert_array_equal(res.xy, [[10.0, 13.0]])


def test_min_distance_suppresses_weaker_close_peak():
    m = torch.zeros(32, 32)
    m[10, 10] = 1.0
    m[12, 11] = 0.8  # 2 px away (Chebyshev): inside a min_distance=3 window
    m[20, 25] = 0.7
    res = find_peaks(m, min_distance=3, threshold=0.5, subpixel=False)
    np.testing.assert_array_equal(res.xy, [[10, 10], [25, 20]])
    np.testing.assert_allclose(res.scores, [1.0, 0.7])
    # With a smaller window both close peaks survive.
    assert len(find_peaks(m, min_distance=1, threshold=0.5)) == 3


def test_flat_plateau_gives_one_point_at_its_centre():
    m = torch.zeros(40, 40)
    m[10:17, 20:25] = 1.0  # saturated 7x5 blob: rows 10..16, cols 20..24
    res = find_peaks(m, min_distance=2, threshold=0.5)
    assert len(res) == 1
    np.testing.assert_allclose(res.xy, [[22.0, 13.0]])
    # Even-sized plateau: the centroid lies between pixels; without subpixel we get a pixel.
    m = torch.zeros(20, 20)
    m[5:7, 5:7] = 1.0
    np.testing.assert_allclose(find_peaks(m, min_distance=1).xy, [[5.5, 5.5]])
    np.testing.assert_allclose(find_peaks(m, min_distance=1, subpixel=False).xy, [[5.0, 5.0]])


def test_equal_separate_maxima_keep_first_in_raster_order():
    m = torch.zeros(20, 20)
    m[8, 12] = 1.0
    m[10, 9] = 1.0  # tie, 3 px away (Chebyshev) from the first: same window
    res = find_peaks(m, min_distance=3, subpixel=False)
    np.testing.assert_array_equal(res.xy, [[12, 8]])  # row 8 comes first in raster order


def test_threshold_filters_and_is_inclusive():
    pts = [(10.0, 10.0), (30.0, 30.0), (50.0, 50.0)]
    m = gaussian_map(pts, amplitudes=[0.9, 0.5, 0.3])
    res = find_peaks(m, threshold=0.5)
    np.testing.assert_allclose(res.scores, [0.9, 0.5], rtol=1e-6)
    np.testing.assert_allclose(res.xy, [[10, 10], [30, 30]], atol=1e-4)
    assert len(find_peaks(m, threshold=0.95)) == 0


def test_multiclass_labels_by_argmax():
    pos = gaussian_map([(10.0, 10.0)], shape=(32, 32), amplitudes=[0.9])
    neg = gaussian_map([(24.0, 20.0)], shape=(32, 32), amplitudes=[0.8])
    # Both classes peak at (10, 10); the positive class is stronger there: one point, label 0.
    neg += gaussian_map([(10.0, 10.0)], shape=(32, 32), amplitudes=[0.6])
    res = find_peaks(torch.stack([pos, neg]), threshold=0.5)
    check_result(res)
    np.testing.assert_allclose(res.xy, [[10, 10], [24, 20]], atol=1e-3)
    np.testing.assert_array_equal(res.labels, [0, 1])
    np.testing.assert_allclose(res.scores, [0.9, 0.8], rtol=1e-5)


def test_batched_input_returns_one_result_per_image():
    a = gaussian_map([(10.0, 10.0), (40.0, 40.0)])
    b = gaussian_map([(20.5, 30.0)])
    batch = torch.stack([a, b, torch.zeros_like(a)])[:, None]  # (3, 1, H, W)
    res = find_peaks(batch)
    assert isinstance(res, list) and len(res) == 3
    for r in res:
        check_result(r)
    assert [len(r) for r in res] == [2, 1, 0]
    np.testing.assert_allclose(res[1].xy, [[20.5, 30.0]], atol=0.05)
    # Same as one image at a time.
    np.testing.assert_array_equal(res[0].xy, find_peaks(a).xy)


def test_empty_maps_give_0x2_points():
    res = find_peaks(torch.zeros(16, 16))
    check_result(res)
    assert res.xy.shape == (0, 2) and res.scores.shape == (0,) and res.labels.shape == (0,)
    assert find_peaks(np.zeros((2, 0, 5))).xy.shape == (0, 2)
    assert find_peaks(torch.zeros(0, 1, 8, 8)) == []


def test_numpy_input_and_exclude_border():
    m = gaussian_map([(1.0, 20.0), (30.0, 30.0)]).numpy()
    assert len(find_peaks(m)) == 2
    res = find_peaks(m, exclude_border=True)  # border width = min_distance = 3
    np.testing.assert_allclose(res.xy, [[30, 30]], atol=1e-4)
    assert len(find_peaks(m, exclude_border=1)) == 2


def test_border_peak_has_no_subpixel_bias():
    m = gaussian_map([(0.0, 20.3)])
    res = find_peaks(m)
    np.testing.assert_allclose(res.xy, [[0.0, 20.3]], atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_dtypes_agree_on_separated_peaks(dtype):
    pts = [(10.3, 12.7), (40.0, 20.45), (25.8, 50.1)]
    m = gaussian_map(pts)
    ref = find_peaks(m)
    res = find_peaks(m.to(dtype))
    assert len(res) == len(ref) == 3
    np.testing.assert_array_equal(res.labels, ref.labels)
    np.testing.assert_allclose(sort_xy(res.xy), sort_xy(ref.xy), atol=0.1)


@pytest.mark.parametrize("shape", [(5,), (1, 1, 1, 4, 4), ()])
def test_bad_shapes_raise(shape):
    with pytest.raises(ValueError, match=r"\(H,W\), \(C,H,W\) or \(B,C,H,W\)"):
        find_peaks(torch.zeros(shape))


def test_bad_inputs_raise_clearly():
    m = torch.zeros(8, 8)
    m[2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        find_peaks(m)
    with pytest.raises(TypeError, match="torch.Tensor or numpy.ndarray"):
        find_peaks([[0.0, 1.0]])
    with pytest.raises(ValueError, match="min_distance"):
        find_peaks(torch.zeros(8, 8), min_distance=0)
    with pytest.raises(ValueError, match="no channels"):
        find_peaks(torch.zeros(0, 8, 8))
    with pytest.raises(ValueError, match="threshold"):
        find_peaks(torch.zeros(8, 8), threshold=float("nan"))


def test_gradients_and_requires_grad_are_fine():
    m = gaussian_map([(10.0, 10.0)]).float().requires_grad_(True)
    assert len(find_peaks(m)) == 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    m = torch.stack([gaussian_map([(10.3, 12.7), (40.0, 20.45)])] * 2)[:, None].float()
    cpu = find_peaks(m)
    gpu = find_peaks(m.cuda())
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(a.xy, b.xy, atol=1e-5)
        np.testing.assert_array_equal(a.labels, b.labels)


# --------------------------------------------------------------------------- property tests

@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.floats(0.0, 0.9))
def test_untied_maps_match_scipy_maximum_filter(seed, md, threshold):
    m = np.random.default_rng(seed).random((13, 17))  # continuous values: no ties
    ref = (m == maximum_filter(m, size=2 * md + 1, mode="constant", cval=-np.inf)) & (
        m >= threshold
    )
    res = find_peaks(m, min_distance=md, threshold=threshold, subpixel=False)
    got = {(int(x), int(y)) for x, y in res.xy}
    assert got == {(int(x), int(y)) for y, x in zip(*np.nonzero(ref))}


@settings(max_examples=40, deadline=None)
@given(arrays(np.int64, (12, 12), elements=st.integers(0, 3)), st.integers(1, 3))
def test_tied_maps_give_separated_local_maxima(m, md):
    res = find_peaks(m, min_distance=md, threshold=1, subpixel=False)
    check_result(res)
    px = res.xy.astype(int)
    local_max = m == maximum_filter(m, size=2 * md + 1, mode="constant", cval=-1)
    assert all(local_max[y, x] and m[y, x] >= 1 for x, y in px)
    # No two points within min_distance (Chebyshev): every tie was resolved.
    if len(px) > 1:
        d = np.abs(px[:, None] - px[None]).max(axis=2)
        assert d[np.triu_indices(len(px), 1)].min() > md
    assert (len(px) == 0) == (not (local_max & (m >= 1)).any())
    # Sub-pixel refinement moves each point by at most half a pixel per axis, same order.
    sub = find_peaks(m, min_distance=md, threshold=1, subpixel=True)
    assert len(sub) == len(res)
    assert np.all(np.abs(sub.xy - res.xy) <= 0.5)


@pytest.mark.parametrize("md", [1, 3, 6])
@pytest.mark.parametrize("path", ["scipy on CPU", "pooling (other devices)"])
def test_window_max_is_the_max_of_each_square_window(md, path):
    from liteunet.points import _window_max, _window_max_pooling

    score = torch.rand(2, 23, 31, generator=torch.Generator().manual_seed(md))
    score[score > 0.8] = 0.8  # plateaus
    got = _window_max(score, md) if path.startswith("scipy") else _window_max_pooling(score, md)
    padded = np.pad(score.numpy(), ((0, 0), (md, md), (md, md)), constant_values=-np.inf)
    for b in range(2):
        for y in range(23):
            for x in range(31):
                window = padded[b, y : y + 2 * md + 1, x : x + 2 * md + 1]
                assert got[b, y, x].item() == window.max()
