"""The nuclear channel (liteunet/data/nuclear.py) and ``normalize="nuclear"`` in training and inference."""

from __future__ import annotations

import numpy as np
import pytest

from liteunet.data.io import normalize_image
from liteunet.data.nuclear import fit_nuclear_channel, nuclear_channel
from liteunet.localization import LocalizationOptions
from liteunet.localization.inputs import ArraySource
from liteunet.localization.normalize import region_normalizer


def random_rgb(seed: int = 0) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(30, 256, (48, 40, 3), dtype=np.uint8)
    rgb[0] = 255  # glass: the white that optical density is measured against, as skimage assumes
    return rgb


def test_haematoxylin_plus_dab_is_skimages_deconvolution():
    color = pytest.importorskip("skimage.color")
    rgb = random_rgb()
    ours, modality = nuclear_channel(rgb, "brightfield", stains=("h", "dab"))
    hed = color.rgb2hed(rgb)
    theirs = np.maximum(hed[..., 0], 0) + np.maximum(hed[..., 2], 0)
    lo, hi = np.percentile(theirs, (1, 99.8))
    expected = np.clip((theirs - lo) / (hi - lo), 0, 1)
    assert modality == "brightfield"
    # Our stain vectors are scaled to unit length (skimage's are within 0.3% of it), so the sum's
    # weights differ by that much.
    np.testing.assert_allclose(ours, expected, atol=5e-3)
    assert np.abs(ours - expected).mean() < 1e-3
    # As the fraction of light absorbed: skimage's densities are natural-log ones over -log(1e-6).
    absorbed = fit_nuclear_channel(rgb, "brightfield", ("h", "dab"), absorbed=True)
    theirs = 1 - np.exp(-theirs * -np.log(1e-6))
    lo, hi = np.percentile(theirs, (1, 99.8))
    np.testing.assert_allclose(absorbed(rgb), np.clip((theirs - lo) / (hi - lo), 0, 1), atol=5e-3)


def ihc_like() -> tuple[np.ndarray, dict[str, tuple[slice, slice]]]:
    """Glass with a DAB-brown nucleus, a haematoxylin-blue one and an eosin-pink patch."""
    img = np.full((64, 64, 3), 240, np.uint8)
    parts = {"brown": (slice(8, 20), slice(8, 20)), "blue": (slice(40, 52), slice(8, 20)),
             "pink": (slice(24, 40), slice(36, 60))}
    img[parts["brown"]] = (120, 80, 50)
    img[parts["blue"]] = (120, 120, 190)
    img[parts["pink"]] = (235, 150, 200)
    return img, parts


def test_nuclear_input_shows_positive_and_negative_ihc_nuclei_and_drops_eosin():
    img, parts = ihc_like()
    chan = normalize_image(img, mode="nuclear")
    assert chan.shape == (64, 64) and chan.dtype == np.float32
    assert 0.0 <= chan.min() and chan.max() <= 1.0
    glass, pink = chan[60:, 40:].mean(), chan[parts["pink"]].mean()
    for nucleus in ("brown", "blue"):
        assert chan[parts[nucleus]].mean() > max(glass, pink) + 0.3, nucleus
    # Haematoxylin alone (the object-size estimator's channel) hardly sees the brown nucleus.
    h_only, _ = nuclear_channel(img)
    assert h_only[parts["brown"]].mean() < 0.5 * h_only[parts["blue"]].mean()


def test_fluorescence_and_grey_images_give_the_same_plane_in_any_bit_depth():
    rng = np.random.default_rng(3)
    nuclei = np.zeros((40, 40), np.float32)
    nuclei[10:20, 10:20] = 1.0
    sixteen = (500 + 30000 * nuclei + rng.normal(0, 100, nuclei.shape)).astype(np.uint16)
    dim_eight = np.round(sixteen / 65535 * 255 * 4).astype(np.uint8)  # a dim 8-bit copy
    a, b = normalize_image(sixteen, mode="nuclear"), normalize_image(dim_eight, mode="nuclear")
    assert a[15, 15] == pytest.approx(1.0, abs=0.05) and b[15, 15] == pytest.approx(1.0, abs=0.05)
    assert np.abs(a - b).mean() < 0.02
    # Saved as RGB with equal channels, the same image gives the same plane.
    np.testing.assert_array_equal(normalize_image(np.repeat(dim_eight[..., None], 3, -1), mode="nuclear"), b)


def test_regions_get_the_values_the_whole_image_gets():
    img, _ = ihc_like()
    img = np.tile(img, (3, 3, 1))
    rule = fit_nuclear_channel(img, stains=("h", "dab"))
    whole = rule(img)
    np.testing.assert_array_equal(rule(img[50:130, 70:150]), whole[50:130, 70:150])
    norm = region_normalizer(ArraySource(img, "tiled.png"), "nuclear", (1.0, 99.8))
    np.testing.assert_array_equal(norm(img[50:130, 70:150]), normalize_image(img, mode="nuclear")[50:130, 70:150])


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="NaN/infinite"):
        normalize_image(np.array([[0.0, np.nan]], np.float32), mode="nuclear")
    with pytest.raises(ValueError, match="pmin"):
        normalize_image(np.zeros((4, 4), np.uint8), mode="nuclear", pmin=50, pmax=10)
    with pytest.raises(ValueError, match="stains"):
        fit_nuclear_channel(np.zeros((4, 4, 3)), stains=("eosin",))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        normalize_image(np.zeros((2, 4, 4, 3), np.uint8), mode="nuclear")
    with pytest.raises(ValueError, match="'nuclear'"):
        LocalizationOptions(normalize="stain")
    assert LocalizationOptions(normalize="nuclear").normalize == "nuclear"
