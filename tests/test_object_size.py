"""The object-size estimator (liteunet/object_size.py) and ``object_size=`` at inference."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import timm
import torch

import liteunet
from liteunet.localization import LocalizationOptions
from liteunet.object_size import (
    blob_diameters,
    estimate_object_size,
    estimate_object_size_regions,
    nuclear_channel,
    rescale_image,
    rescale_points,
    resize_for_model,
    scale_to_trained,
)

TINY = (8, 8, 16, 16, 16)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def discs(diameter: float, side: int = 192, seed: int = 0) -> tuple[np.ndarray, float]:
    """A grid of jittered discs of one diameter (a float mask), and their equivalent-disc diameter."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((side, side), bool)
    pitch = int(diameter * 2.2)
    r = int(diameter)  # half-width of the window each disc is drawn in
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    areas = []
    for cy in range(pitch // 2, side - pitch // 2, pitch):
        for cx in range(pitch // 2, side - pitch // 2, pitch):
            jy, jx = rng.uniform(-0.2, 0.2, 2) * diameter
            one = (yy - jy) ** 2 + (xx - jx) ** 2 <= (diameter / 2) ** 2
            areas.append(one.sum())
            mask[cy - r : cy + r + 1, cx - r : cx + r + 1] |= one
    # The direct computation: the diameter of a disc of each object's area.
    return mask.astype(np.float32), float(np.median(2 * np.sqrt(np.asarray(areas) / np.pi)))


@pytest.mark.parametrize("diameter", [7, 14, 30])
def test_discs_of_known_diameter_bright_and_dark(diameter):
    mask, direct = discs(diameter)
    noise = np.random.default_rng(1).normal(0, 0.05, mask.shape)
    fluorescence = np.clip(1000 + 20000 * mask + 2000 * noise, 0, 65535).astype(np.uint16)  # bright on dark, 16 bit
    brightfield = np.clip(230 - 150 * mask + 10 * noise, 0, 255).astype(np.uint8)  # dark on bright, grey
    stained = np.stack([255 - 140 * mask, 255 - 180 * mask, 255 - 70 * mask], -1).astype(np.uint8)  # H&E-like
    for image, modality in ((fluorescence, "fluorescence"), (brightfield, "brightfield"), (stained, "brightfield")):
        assert nuclear_channel(image)[1] == modality
        assert estimate_object_size(image) == pytest.approx(direct, rel=0.08), (diameter, modality)


def test_the_estimate_follows_a_rescaled_image():
    mask, _ = discs(10, side=160)
    image = (mask * 200 + 20).astype(np.uint8)
    native = estimate_object_size(image)
    for scale in (0.5, 2.0):
        assert estimate_object_size(rescale_image(image, scale)) == pytest.approx(scale * native, rel=0.1)


def test_haematoxylin_channel_is_skimages():
    color = pytest.importorskip("skimage.color")
    rgb = np.random.default_rng(0).integers(30, 256, (32, 32, 3), dtype=np.uint8)
    rgb[0, 0] = 255  # a white reference pixel, as skimage's optical density assumes 255
    ours, modality = nuclear_channel(rgb, "brightfield")
    theirs = np.maximum(color.rgb2hed(rgb)[..., 0], 0)
    lo, hi = np.percentile(theirs, (1, 99.8))
    expected = np.clip((theirs - lo) / (hi - lo), 0, 1)
    assert modality == "brightfield"
    assert np.corrcoef(ours.ravel(), expected.ravel())[0, 1] > 0.99


def test_flat_images_and_bad_arguments():
    assert math.isnan(estimate_object_size(np.zeros((64, 64), np.uint8)))
    assert len(blob_diameters(np.full((32, 32, 3), 7, np.uint8))) == 0
    with pytest.raises(ValueError, match="min_diameter"):
        blob_diameters(np.zeros((8, 8)), min_diameter=10, max_diameter=5)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        estimate_object_size(np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="modality"):
        nuclear_channel(np.zeros((8, 8)), "phase")


def test_large_images_are_read_by_regions():
    mask, direct = discs(12, side=1200)
    image = (mask * 200).astype(np.uint8)
    regions = []

    def read(y0, y1, x0, x1):
        regions.append((y1 - y0) * (x1 - x0))
        return image[y0:y1, x0:x1]

    assert estimate_object_size_regions(read, image.shape, region=256, max_regions=4) == pytest.approx(direct, rel=0.1)
    assert len(regions) == 4 and sum(regions) < image.size / 4


def test_rescaled_points_round_trip():
    xy = np.random.default_rng(0).uniform(0, 100, (20, 2))
    for scale in (0.5, 2.0, 0.37):
        assert np.allclose(rescale_points(rescale_points(xy, scale), 1 / scale), xy)
    # pixel centres map to centres: pixel 0 of a 2x-upsampled image spans input x -0.5..0
    assert rescale_points(np.array([[0.0, 0.0]]), 2.0).tolist() == [[0.5, 0.5]]
    # a point on a bright pixel stays on it after rescaling image and point
    image = np.zeros((40, 60), np.uint8)
    image[11, 23] = 255
    big = rescale_image(image, 3.0)
    x, y = rescale_points(np.array([[23.0, 11.0]]), 3.0)[0]
    assert np.unravel_index(np.argmax(big), big.shape) == (round(y), round(x))
    assert rescale_image(image, 0.5).shape == (20, 30) and rescale_image(image, 0.5).dtype == np.uint8


def test_resize_for_model_enlarges_bicubic_and_shrinks_antialiased():
    image = np.random.default_rng(0).random((24, 30, 3)).astype(np.float32)
    chw = torch.from_numpy(image.transpose(2, 0, 1).copy())[None]

    def direct(size, **kw):
        return torch.nn.functional.interpolate(chw, size=size, align_corners=False, **kw)[0].numpy().transpose(1, 2, 0)

    assert np.allclose(resize_for_model(image, 2.0), direct((48, 60), mode="bicubic"), atol=1e-6)
    assert np.allclose(resize_for_model(image, 0.5), direct((12, 15), mode="bilinear", antialias=True), atol=1e-6)
    assert np.array_equal(resize_for_model(image, 0.5), rescale_image(image, 0.5))
    # rescale_image stays bilinear unless asked: stored scale models were fitted on its crops
    assert np.allclose(rescale_image(image, 2.0), direct((48, 60), mode="bilinear"), atol=1e-6)
    with pytest.raises(ValueError, match="enlarge must be 'bilinear' or 'bicubic', got 'nearest'"):
        rescale_image(image, 2.0, enlarge="nearest")


def test_localize_and_eval_enlarge_with_resize_for_model(sized_weights, tmp_path, monkeypatch):
    import liteunet.evaluate as evaluate_module
    import liteunet.localization.localizer as localizer_module
    from liteunet.data import Sample
    from liteunet.models import load_model
    from PIL import Image

    calls = []

    def spy(image, scale):
        calls.append((image.shape[:2], scale))
        return resize_for_model(image, scale)

    monkeypatch.setattr(localizer_module, "resize_for_model", spy)
    monkeypatch.setattr(evaluate_module, "resize_for_model", spy)
    mask, _ = discs(24, side=96)
    image = (mask * 200 + 20).astype(np.uint8)
    liteunet.localize(image, sized_weights, object_size=6, progress=False, precision="fp32")
    assert calls == [((96, 96), 2.0)]
    Image.fromarray(image).save(tmp_path / "cells.png")
    model = load_model(str(sized_weights))
    evaluate_module.predict_rescaled(model, [Sample(tmp_path / "cells.png", np.zeros((0, 2)), np.zeros(0, int), "cells")],
                                     1.0, 6.0, 12.0, "cpu", False)
    assert calls[1] == ((96, 96), 2.0) and len(calls) == 2


def test_scale_to_trained_keeps_within_limits():
    assert scale_to_trained(20.0, 10.0) == (0.5, False)
    assert scale_to_trained(1.0, 10.0) == (4.0, True)
    assert scale_to_trained(float("nan"), 10.0) == (1.0, True)


def test_dsb2018_true_diameters():
    """The estimator against the nuclei's equivalent-disc diameters in dsb2018 (fluorescence)."""
    from liteunet.data import resolve_root

    try:
        root = resolve_root(None) / "dsb2018"
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"shared data sets not found: set LITEUNET_DATASETS ({err})")
    if not (root / "manifest.csv").exists():
        pytest.skip(f"dsb2018 not found in {root.parent}")
    from liteunet.data import read_image

    validation = set((root / "validation.txt").read_text().split())
    stems = [r["stem"] for r in csv.DictReader(open(root / "manifest.csv")) if r["group"] == "fluo_256x256" and r["stem"] in validation]
    ratios = []
    for stem in stems[:5]:
        true = np.median([float(r["diameter"]) for r in csv.DictReader(open(root / "points" / f"{stem}.csv"))])
        ratios.append(estimate_object_size(read_image(root / "images" / f"{stem}.png")) / true)
    # Measured on all 49 fluo_256x256 validation images: median ratio 1.01, 10th-90th percentile 0.89-1.28.
    assert 0.8 < np.median(ratios) < 1.2
    assert all(0.6 < r < 1.5 for r in ratios), ratios


# --- object_size at inference ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sized_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = liteunet.create_model("lite_unet", widths=TINY).eval()
    folder = tmp_path_factory.mktemp("weights") / "sized"
    timm.models.save_for_hf(model, folder, model_args={"widths": list(TINY)}, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config["localization"] = {
        "threshold": 0.0, "min_distance": 3, "object_size": 12.0,
        "tuned_for": {"big": {"threshold": 0.0, "min_distance": 3, "object_size": 24.0}},
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_options_refuse_two_scales_and_bad_sizes():
    with pytest.raises(ValueError, match="one of scale, mpp and object_size, not scale and object_size"):
        LocalizationOptions(scale=0.5, object_size="auto")
    with pytest.raises(ValueError, match="mpp and object_size"):
        LocalizationOptions(mpp=0.5, object_size=10)
    for bad in ("big", -3, 0, float("nan"), True):
        with pytest.raises(ValueError, match="object_size must be 'auto' or a positive number"):
            LocalizationOptions(object_size=bad)


def test_auto_needs_a_stored_size():
    model = liteunet.create_model("lite_unet", widths=TINY)
    with pytest.raises(ValueError, match="do not record the object size they were trained at"):
        liteunet.localize(np.zeros((32, 32, 3), np.uint8), model, object_size="auto", progress=False)


def test_object_size_sets_the_scale_and_is_recorded(sized_weights):
    mask, _ = discs(24, side=96)
    image = (mask * 200 + 20).astype(np.uint8)
    kw = dict(progress=False, precision="fp32")
    fixed = liteunet.localize(image, sized_weights, object_size=6, **kw)[0]
    assert fixed.settings["scale"] == 2.0 and fixed.settings["object_size"] == 6.0
    auto = liteunet.localize(image, sized_weights, object_size="auto", **kw)[0]
    estimated = auto.settings["object_size_estimated"]
    assert estimated == pytest.approx(24, rel=0.1)
    assert auto.settings["scale"] == pytest.approx(12.0 / estimated, rel=1e-3)
    assert auto.settings["object_size_trained"] == 12.0
    assert "object size estimated" in auto.provenance and f"scale {auto.settings['scale']:.4g}" in auto.provenance
    tuned = liteunet.localize(image, sized_weights, object_size="auto", tuned_for="big", **kw)[0]
    assert tuned.settings["scale"] == pytest.approx(24.0 / estimated, rel=1e-3)  # the set's own trained size
    # points come back in input pixels, whatever the scale
    for result in (fixed, auto):
        assert result.image_size == (96, 96)
        assert (result.xy >= -0.5).all() and (result.xy <= 95.5).all()


def test_command_line_object_size(sized_weights, tmp_path, capsys):
    from PIL import Image

    from liteunet.cli import main

    mask, _ = discs(24, side=96)
    Image.fromarray((mask * 200 + 20).astype(np.uint8)).save(tmp_path / "cells.png")
    out = tmp_path / "out"
    args = ["localize", str(tmp_path / "cells.png"), "-o", str(out), "--model", str(sized_weights), "--format", "json", "--device", "cpu"]
    assert main([*args, "--object-size", "auto"]) == 0
    settings = json.loads((out / "cells.json").read_text())["settings"]
    assert settings["object_size"] == "auto" and settings["scale"] == pytest.approx(0.5, rel=0.1)
    assert main([*args, "--object-size", "tiny", "--overwrite"]) == 1
    assert "--object-size must be 'auto' or a positive number" in capsys.readouterr().err
    assert main([*args, "--object-size", "10", "--scale", "2", "--overwrite"]) == 1
    assert "not scale and object_size" in capsys.readouterr().err
