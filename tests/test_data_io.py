"""Image reading, normalization and channel matching, on tiny files written to tmp_path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from liteunet.data import match_channels, normalize_image, read_image


def _save(path, array):
    Image.fromarray(array).save(path)
    return path


@pytest.mark.parametrize(
    "array, suffix",
    [
        (np.arange(12, dtype=np.uint8).reshape(3, 4), ".png"),
        (np.arange(36, dtype=np.uint8).reshape(3, 4, 3), ".png"),
        (np.arange(48, dtype=np.uint8).reshape(3, 4, 4), ".png"),
        (np.arange(36, dtype=np.uint8).reshape(3, 4, 3), ".bmp"),
        (np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), ".tif"),
    ],
)
def test_read_image_keeps_values_dtype_and_shape(tmp_path, array, suffix):
    img = read_image(_save(tmp_path / f"a{suffix}", array))
    assert img.dtype == array.dtype and img.shape == array.shape
    np.testing.assert_array_equal(img, array)


def test_read_image_16bit_png_stays_uint16(tmp_path):
    array = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000)  # values above 255
    path = tmp_path / "a16.png"
    Image.fromarray(array).save(path)
    img = read_image(path)
    assert img.dtype == np.uint16 and img.shape == (4, 5)
    np.testing.assert_array_equal(img, array)


def test_read_image_1bit_and_palette(tmp_path):
    mask = np.zeros((3, 5), bool)
    mask[1, 3] = True
    img = read_image(_save(tmp_path / "m.png", mask))
    assert img.dtype == np.bool_ and img.shape == (3, 5) and img[1, 3] and img.sum() == 1
    pal = Image.fromarray(np.zeros((3, 5, 3), np.uint8)).convert("P")
    pal.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (3, 5, 3)


def test_read_image_jpeg_is_rgb_uint8(tmp_path):
    path = _save(tmp_path / "a.jpg", np.full((8, 9, 3), 128, np.uint8))
    img = read_image(path)
    assert img.dtype == np.uint8 and img.shape == (8, 9, 3)


def test_read_image_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found.*nope.png"):
        read_image(tmp_path / "nope.png")


def test_read_image_directory(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        read_image(tmp_path)


def test_read_image_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.png is empty \(0 bytes\)"):
        read_image(tmp_path / "empty.png")


def test_read_image_not_an_image(tmp_path):
    (tmp_path / "text.png").write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match=r"text\.png is not an image"):
        read_image(tmp_path / "text.png")


def test_read_image_truncated(tmp_path):
    rng = np.random.default_rng(0)
    path = _save(tmp_path / "full.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = path.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.png.*truncated"):
        read_image(tmp_path / "cut.png")


def test_normalize_uint8_divides_by_255():
    out = normalize_image(np.array([[0, 51, 255]], np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.2, 1.0]])


def test_normalize_uint16_percentiles():
    img = np.arange(1001, dtype=np.uint16).reshape(1, -1) * 60  # 0 .. 60000
    out = normalize_image(img, pmin=1.0, pmax=99.0)
    assert out.dtype == np.float32
    # The 1st and 99th percentiles of 0..1000 (times 60) are 10 and 990 (times 60).
    assert out[0, 10] == pytest.approx(0.0, abs=1e-6)
    assert out[0, 990] == pytest.approx(1.0, abs=1e-6)
    assert out[0, 500] == pytest.approx(0.5, abs=1e-6)
    assert normalize_image(img, clip=True).min() == 0.0


def test_normalize_constant_image_is_zeros():
    for img in (np.full((4, 4), 7, np.uint16), np.full((4, 4, 3), 0.5, np.float32)):
        out = normalize_image(img)
        assert np.isfinite(out).all() and (out == 0).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_normalize_rejects_non_finite(bad):
    img = np.ones((4, 4), np.float32)
    img[1, 2] = bad
    with pytest.raises(ValueError, match="NaN/infinite"):
        normalize_image(img)


def test_normalize_rejects_bad_percentiles():
    with pytest.raises(ValueError, match="pmin < pmax"):
        normalize_image(np.zeros((2, 2), np.uint16), pmin=50, pmax=10)


def test_normalize_bool_mask():
    np.testing.assert_array_equal(normalize_image(np.array([[True, False]])), [[1.0, 0.0]])


def test_match_channels():
    grey = np.arange(6, dtype=np.float32).reshape(2, 3)
    rgb = match_channels(grey, 3)
    assert rgb.shape == (2, 3, 3) and (rgb == grey[..., None]).all()
    back = match_channels(rgb, 1)
    assert back.shape == (2, 3, 1)
    np.testing.assert_allclose(back[..., 0], grey)
    rgba = np.ones((2, 3, 4), np.float32)
    assert match_channels(rgba, 3).shape == (2, 3, 3)
    assert match_channels(rgba, 1).shape == (2, 3, 1)
    with pytest.raises(ValueError, match="in_chans=4"):
        match_channels(np.ones((2, 3, 3), np.float32), 4)
    with pytest.raises(ValueError, match="2 channel"):
        match_channels(np.ones((2, 3, 2), np.float32), 3)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_histogram_percentiles_are_numpys_to_the_last_bit(dtype):
    from liteunet.data.percentiles import histogram_percentiles

    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max + 1
    for trial in range(300):
        n = int(rng.integers(1, 3000)) if trial % 4 else int(rng.integers(1, 8))
        values = rng.integers(0, int(rng.integers(1, top)) + 1, n).astype(dtype)
        if trial % 9 == 0:
            values[:] = values[0]  # a constant image
        q = [0.0, 1.0, 50.0, 99.8, 100.0, float(rng.uniform(0, 100))]
        assert np.array_equal(histogram_percentiles(values, q), np.percentile(values, q)), (n, q)


def test_histogram_percentiles_refuse_what_they_cannot_count():
    from liteunet.data.percentiles import histogram_percentiles

    with pytest.raises(ValueError, match="uint8 or uint16.*int32"):
        histogram_percentiles(np.arange(5, dtype=np.int32), [1, 99])
    with pytest.raises(ValueError, match="at least one value"):
        histogram_percentiles(np.zeros(0, np.uint8), [1, 99])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_percentile_scaling_of_8_and_16_bit_images_matches_a_direct_float64_computation(dtype):
    rng = np.random.default_rng(1)
    top = np.iinfo(dtype).max + 1
    for _ in range(50):
        lo_value = int(rng.integers(0, top - 2))
        img = rng.integers(lo_value, int(rng.integers(lo_value + 2, top + 1)), (40, 30, 3)).astype(dtype)
        p1, p998 = np.percentile(img, [1.0, 99.8])  # the rule, computed directly
        expected = (img.astype(np.float64) - p1) / max(p998 - p1, 1e-6)
        out = normalize_image(img, mode="percentile")
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
