"""The learned scale estimate (liteunet/inference/scale_model.py) and ``object_size="auto"`` with it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn

import liteunet
from liteunet.data import Sample
from liteunet.evaluate import LocalizationSettings, evaluate
from liteunet.inference import ScaleModel, fit_scale_model, stored_scale_model
from liteunet.inference.scale_model import default_feature_layers, pooled_features, region_features
from liteunet.object_size import rescale_image

TINY = (8, 8, 16, 16, 16)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class LogBrightShare(nn.Module):
    """A feature map whose mean is the log of the share of bright pixels: a centred disc zoomed by
    ``z`` covers ``z**2`` times the share, so the feature is ``2 log z`` plus a constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        share = (x.mean(1, keepdim=True) > 0.5).float().mean((2, 3), keepdim=True).clamp_min(1e-6)
        return share.log().expand(-1, 2, 4, 4)


class DiscNet(nn.Module):
    """Shaped like the package's U-Nets (an encoder list and a bottleneck), with known features."""

    in_chans, size_divisor = 3, 16

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.ModuleList([LogBrightShare()])
        self.bottleneck = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.encoder[0](x))


def disc(radius: float, side: int = 200) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side] - (side - 1) / 2
    return np.where(yy**2 + xx**2 <= radius**2, 220, 20).astype(np.uint8)


def test_pooled_features_are_the_channel_means_of_the_layers():
    model = liteunet.create_model("lite_unet", widths=TINY).eval()
    x = torch.rand(2, 3, 32, 48)
    layers = default_feature_layers(model)
    seen = {}
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: seen.__setitem__(n, o)) for n in layers]
    model(x)
    for hook in hooks:
        hook.remove()
    direct = torch.cat([seen[n].mean((2, 3)) for n in layers], 1)
    assert torch.allclose(pooled_features(model, x, layers), direct)
    assert direct.shape == (2, sum(TINY) + TINY[-1])
    # an odd-sized region is mirrored to a multiple of 16, not refused
    assert region_features(model, np.zeros((75, 75, 3), np.uint8), layers).shape == (direct.shape[1],)
    with pytest.raises(ValueError, match="no encoder and bottleneck"):
        default_feature_layers(nn.Conv2d(3, 1, 3))


def test_a_fitted_scale_model_recovers_the_zoom_of_unseen_images():
    model = DiscNet()
    train = {"discs": [disc(r) for r in (7.0, 8.0, 9.0)]}
    held = {"discs": [disc(8.5)]}
    scale_model = fit_scale_model(model, train, held, ridges=(1e-6, 1.0), region=64, progress=False)
    assert scale_model.error["ridge"] == 1e-6 and scale_model.error["median"] < 0.1
    # four copies of the feature 2 log z + const (two channels, two layers): coefficients summing to 1/2
    assert scale_model.coef.shape == (4,) and scale_model.coef.sum() == pytest.approx(0.5, abs=0.05)
    for zoom in (0.6, 1.0, 1.7):
        image = rescale_image(disc(8.0, side=400), zoom)
        assert scale_model.predict(model, image, max_regions=1) == pytest.approx(zoom, rel=0.1)
    # read region by region (slides): the same answer
    image = rescale_image(disc(8.0, side=400), 1.7)
    by_regions = scale_model.predict(model, read=lambda y0, y1, x0, x1: image[y0:y1, x0:x1], shape=image.shape[:2], max_regions=1)
    assert by_regions == scale_model.predict(model, image, max_regions=1)
    with pytest.raises(ValueError, match="needs an image"):
        scale_model.predict(model)
    # stored and read back
    again = ScaleModel.from_config(json.loads(json.dumps(scale_model.to_config())))
    assert again.predict(model, image, max_regions=1) == pytest.approx(scale_model.predict(model, image, max_regions=1), rel=1e-4)
    with pytest.raises(ValueError, match="malformed localization.scale_model"):
        ScaleModel.from_config({"coef": [1.0]})
    with pytest.raises(ValueError, match="malformed localization.scale_model"):
        ScaleModel.from_config({"layers": ["encoder.0"], "intercept": 0.0, "coef_f32_base64": "not base64!"})
    assert scale_model.scale_for(2.0) == (0.5, False) and scale_model.scale_for(10.0) == (0.25, True)
    assert scale_model.scale_for(1.1) == (pytest.approx(1 / 1.1), False)  # no tolerance: every zoom undone


def test_zooms_within_the_tolerance_are_left_at_scale_one():
    scale_model = ScaleModel(("encoder.0",), np.zeros(2, np.float32), math.log(1.2), tolerance=1.3)
    for zoom, scale in ((1.0, 1.0), (1.29, 1.0), (1 / 1.29, 1.0), (1.31, 1 / 1.31), (1 / 1.31, 1.31), (0.5, 2.0)):
        assert scale_model.scale_for(zoom) == (pytest.approx(scale), False)
    stored = json.loads(json.dumps(scale_model.to_config()))
    assert stored["tolerance"] == 1.3 and ScaleModel.from_config(stored).tolerance == 1.3
    del stored["tolerance"]
    assert ScaleModel.from_config(stored).tolerance == 1.0  # entries written before it: no tolerance
    for bad in (0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="malformed localization.scale_model.*tolerance"):
            ScaleModel.from_config({**stored, "tolerance": bad})
    # localize: an image predicted at 1.2x is localized as it is, and the prediction is still recorded
    model = liteunet.create_model("lite_unet", widths=TINY).eval()
    scale_model = ScaleModel(tuple(default_feature_layers(model)), np.zeros(sum(TINY) + TINY[-1], np.float32), math.log(1.2), tolerance=1.3)
    localizer_settings = {"threshold": 0.0, "min_distance": 3, "scale_model": scale_model.to_config()}
    model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), "localization": localizer_settings}
    result = liteunet.localize(disc(10.0, side=64), model, object_size="auto", scale_search=False, progress=False, precision="fp32")[0]
    assert result.settings["zoom_estimated"] == pytest.approx(1.2) and result.settings["scale"] == 1.0


@pytest.fixture(scope="module")
def zoom_two_weights(tmp_path_factory):
    """Random tiny weights whose stored scale model says every image is at 2x: ``auto`` halves it."""
    torch.manual_seed(0)
    model = liteunet.create_model("lite_unet", widths=TINY).eval()
    folder = tmp_path_factory.mktemp("weights") / "zoom2"
    timm.models.save_for_hf(model, folder, model_args={"widths": list(TINY)}, safe_serialization=True)
    layers = default_feature_layers(model)
    features = sum(TINY) + TINY[-1]
    config = json.loads((folder / "config.json").read_text())
    config["localization"] = {
        "threshold": 0.0, "min_distance": 3,  # no object_size: the scale model is enough for auto
        "scale_model": ScaleModel(tuple(layers), np.zeros(features, np.float32), math.log(2.0)).to_config(),
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_auto_uses_the_stored_scale_model(zoom_two_weights, tmp_path):
    image = disc(10.0, side=96)
    result = liteunet.localize(image, zoom_two_weights, object_size="auto", scale_search=False, progress=False, precision="fp32")[0]
    assert result.settings["zoom_estimated"] == pytest.approx(2.0) and result.settings["scale"] == pytest.approx(0.5)
    assert "2.0x the training magnification" in result.provenance
    assert result.image_size == (96, 96)
    model = liteunet.load_model(zoom_two_weights)
    assert stored_scale_model(liteunet.pretrained.load_localization_settings(model), model) is not None
    assert stored_scale_model({"scale_model": {"layers": ["nowhere"], "coef": [], "intercept": 0.0}}, model) is None
    # evaluate scores the same way: every image brought to half size
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "a.png")
    sample = Sample(str(tmp_path / "a.png"), np.array([[47.5, 47.5]], np.float32), np.zeros(1, np.int64), "a")
    report = evaluate(model, [sample], LocalizationSettings(threshold=0.0, min_distance=3), object_size="auto",
                      scale_model=stored_scale_model(liteunet.pretrained.load_localization_settings(model), model), progress=False,
                      scale_search=False)
    assert report.summary["model_scale_median"] == pytest.approx(0.5) and report.summary["zoom_estimated_median"] == pytest.approx(2.0)
    assert report.per_image[0]["model_scale"] == pytest.approx(0.5) and report.per_image[0]["zoom_estimated"] == pytest.approx(2.0)


def test_eval_command_chooses_what_auto_measures(zoom_two_weights, tmp_path, capsys):
    from PIL import Image

    from liteunet.cli import main

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(disc(10.0, side=96)).save(data / "a.png")
    (data / "a.csv").write_text("x,y\n47.5,47.5\n")
    args = ["eval", str(zoom_two_weights), str(data), "--split", "all", "--object-size", "auto", "--no-scale-search", "--device", "cpu", "-o", str(tmp_path / "e")]
    assert main(args) == 0
    assert "by the scale model (model scale median 0.5)" in capsys.readouterr().out
    # the blob estimator needs the trained object size, which these weights do not record
    assert main([*args, "--auto-by", "blobs"]) == 1
    assert "do not record the object size" in capsys.readouterr().err
    assert main([*args[:-7], "-o", str(tmp_path / "e"), "--auto-by", "blobs"]) == 1  # without --object-size auto
    assert "it needs --object-size auto" in capsys.readouterr().err


def test_release_fits_stores_and_reports_the_scale_model(tmp_path, monkeypatch, capsys):
    from PIL import Image

    import liteunet.release_object_size as release_object_size
    from liteunet.model_card import render_model_card
    from liteunet.release import main

    data = tmp_path / "discs"
    data.mkdir()
    for i, radius in enumerate((6, 7, 8, 9, 10, 7.5, 8.5, 9.5, 6.5, 10.5)):
        Image.fromarray(disc(radius)).save(data / f"d{i}.png")
        (data / f"d{i}.csv").write_text("x,y\n99.5,99.5\n")
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text(json.dumps({"localization": {"threshold": 0.3, "min_distance": 3, "object_size": 9.0}}))
    monkeypatch.setattr(release_object_size, "load_model", lambda folder: DiscNet())
    assert main([str(weights), "--scale-model", "--datasets", str(data), "--scale-tolerance", "1.25"]) == 0
    printed = capsys.readouterr().out
    assert "scale model, discs validation: median |log zoom error|" in printed and "localization.scale_model" in printed
    stored = json.loads((weights / "config.json").read_text())
    entry = stored["localization"]["scale_model"]
    assert entry["layers"] == ["encoder.0", "bottleneck"] and ScaleModel.from_config(entry).coef.shape == (4,)
    assert entry["error"]["images"] == {"discs": 2} and entry["error"]["median"] < 0.25  # 2 of 10 held out, larger discs than most
    assert entry["error"]["train_images"] == {"discs": 8} and entry["tolerance"] == 1.25
    assert stored["localization"]["object_size"] == 9.0 and stored["localization"]["threshold"] == 0.3  # kept
    card = render_model_card(stored, "lite_unet.test")
    assert "uses these weights' learned scale model" in card and "--auto-by blobs" in card
    assert "| discs | 2 |" in card and "--scale-model --datasets discs --scale-train-images 8 --scale-tolerance 1.25" in card
    assert "within 1.25x of 1 is taken to be at the training magnification" in card
    assert "the scale at which the found peaks are highest on average is kept" in card
    assert "python -m liteunet.release weights/lite_unet.test --scale-model" in card  # a folder, not the tag
    with pytest.raises(SystemExit):
        main([str(weights), "--scale-model"])  # no data sets to fit on
