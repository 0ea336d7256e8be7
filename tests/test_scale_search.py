"""The peak-height check of ``object_size="auto"``: the nearby scale at which the network is surest."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn

import liteunet
from liteunet.inference import SEARCH_FACTORS, ScaleModel, mean_peak_height, search_scale
from liteunet.inference.scale_model import default_feature_layers

TINY = (8, 8, 16, 16, 16)


class SizeTunedNet(nn.Module):
    """A stand-in network whose one peak is highest when its input is ``best`` pixels wide.

    Its peak height is ``exp(-log(width / best)^2)``, as a network's confidence falls off on
    objects shrunk or enlarged from its trained size.
    """

    in_chans, num_classes, size_divisor = 3, 1, 1

    def __init__(self, best: float) -> None:
        super().__init__()
        self.best = best
        self.widths: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.widths.append(int(x.shape[-1]))
        out = torch.zeros(x.shape[0], 1, *x.shape[-2:])
        out[..., x.shape[-2] // 2, x.shape[-1] // 2] = math.exp(-math.log(x.shape[-1] / self.best) ** 2)
        return out


def test_mean_peak_height_is_the_mean_of_the_peaks_found():
    a = np.zeros((1, 30, 30), np.float32)
    a[0, 5, 5], a[0, 20, 20], a[0, 25, 5] = 0.9, 0.5, 0.1  # the last is under the threshold
    b = np.zeros((1, 30, 30), np.float32)
    b[0, 10, 10] = 0.7
    assert mean_peak_height([a, b], threshold=0.3, min_distance=2) == (pytest.approx(0.7), 3)
    assert mean_peak_height([np.zeros((1, 8, 8), np.float32)], 0.3, 2) == (0.0, 0)
    assert mean_peak_height([], 0.3, 2) == (0.0, 0)


def test_the_search_keeps_the_scale_the_peaks_are_highest_at():
    image = np.full((100, 100, 3), 128, np.uint8)
    net = SizeTunedNet(best=130)
    scale, found = search_scale(net, 1.0, threshold=0.1, min_distance=2, image=image)
    assert scale == pytest.approx(1.3)  # 130 px wide
    assert sorted(found) == pytest.approx(sorted(SEARCH_FACTORS))
    assert found[scale][0] == max(height for height, _ in found.values()) and all(n == 1 for _, n in found.values())
    # around another estimate, within the factors tried: the nearest to the best width wins
    assert search_scale(SizeTunedNet(best=70), 1.0, 0.1, 2, image)[0] == pytest.approx(1 / 1.3)
    assert search_scale(SizeTunedNet(best=70), 0.5, 0.1, 2, image)[0] == pytest.approx(0.5 * 1.3)
    # no peak at any scale tried: the estimate is kept
    assert search_scale(SizeTunedNet(best=130), 1.7, threshold=2.0, min_distance=2, image=image)[0] == 1.7


def test_the_search_stays_within_the_scale_limits_and_reads_regions_of_a_large_image():
    net = SizeTunedNet(best=1000)
    scale, found = search_scale(net, 3.5, 0.1, 2, np.zeros((60, 60), np.uint8), limits=(0.25, 4.0))
    assert max(found) == 4.0 and scale == 4.0
    big = np.random.default_rng(0).integers(0, 255, (3000, 2000, 3), np.uint8)
    reads = []
    net = SizeTunedNet(best=512)
    scale, _ = search_scale(net, 1.0, 0.1, 2, read=lambda *r: reads.append(r) or big[r[0]:r[1], r[2]:r[3]], shape=big.shape[:2])
    assert len(reads) == 4 and all(y1 - y0 == 512 and x1 - x0 == 512 for y0, y1, x0, x1 in reads)  # 4 regions of 512 px
    assert scale == 1.0 and set(net.widths) == {round(512 * f) for f in SEARCH_FACTORS}
    # at scale 0.25 the same image is no larger than the regions together: looked at whole
    reads.clear()
    search_scale(net, 0.25, 0.1, 2, read=lambda *r: reads.append(r) or big[r[0]:r[1], r[2]:r[3]], shape=big.shape[:2])
    assert reads == [(0, 3000, 0, 2000)]
    with pytest.raises(ValueError, match="needs an image"):
        search_scale(net, 1.0, 0.1, 2)


@pytest.fixture()
def weights_at_two(tmp_path):
    """Tiny random weights whose stored scale model says every image is at 2x."""
    torch.manual_seed(0)
    model = liteunet.create_model("lite_unet", widths=TINY).eval()
    folder = tmp_path / "zoom2"
    timm.models.save_for_hf(model, folder, model_args={"widths": list(TINY)}, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    features = sum(TINY) + TINY[-1]
    config["localization"] = {
        "threshold": 0.3, "min_distance": 3,
        "scale_model": ScaleModel(tuple(default_feature_layers(model)), np.zeros(features, np.float32), math.log(2.0)).to_config(),
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_localize_and_eval_check_the_scale_models_estimate(weights_at_two, tmp_path, monkeypatch):
    import liteunet.evaluate as evaluate_module
    import liteunet.localization.localizer as localizer_module
    from liteunet.cli import main

    asked = []

    def fake_search(model, scale, threshold, min_distance, image=None, **kwargs):
        asked.append((scale, threshold, min_distance, kwargs.get("normalize")))
        return 0.4, {}

    monkeypatch.setattr(localizer_module, "search_scale", fake_search)
    image = np.random.default_rng(1).integers(0, 255, (96, 96, 3), np.uint8)
    result = liteunet.localize(image, weights_at_two, object_size="auto", threshold=0.25, progress=False, precision="fp32")[0]
    assert result.settings["scale_estimated"] == pytest.approx(0.5) and result.settings["scale"] == pytest.approx(0.4)
    assert asked == [(pytest.approx(0.5), 0.25, 3, "none")]  # the regions come scaled as the image is
    plain = liteunet.localize(image, weights_at_two, object_size="auto", scale_search=False, progress=False, precision="fp32")[0]
    assert plain.settings["scale"] == pytest.approx(0.5) and "scale_estimated" not in plain.settings and len(asked) == 1
    # eval does the same, with its settings; --no-scale-search turns it off
    monkeypatch.setattr(evaluate_module, "search_scale", fake_search)
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(image).save(data / "a.png")
    (data / "a.csv").write_text("x,y\n47.5,47.5\n")
    args = ["eval", str(weights_at_two), str(data), "--split", "all", "--object-size", "auto", "--device", "cpu", "-o", str(tmp_path / "e")]
    assert main(args) == 0
    summary = lambda: json.loads(next((tmp_path / "e").glob("*_summary.json")).read_text())  # noqa: E731
    assert summary()["model_scale_median"] == pytest.approx(0.4)
    assert asked[-1] == (pytest.approx(0.5), 0.3, 3, "auto")  # the stored settings; the weights' input scaling
    assert main([*args, "--no-scale-search"]) == 0 and len(asked) == 2
    assert summary()["model_scale_median"] == pytest.approx(0.5)


def test_the_localize_command_searches_unless_told_not_to(weights_at_two, tmp_path, monkeypatch):
    import liteunet.localization.localizer as localizer_module
    from PIL import Image

    from liteunet.cli import main

    asked = []
    monkeypatch.setattr(localizer_module, "search_scale", lambda model, scale, *a, **k: asked.append(scale) or (0.4, {}))
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (80, 80, 3), np.uint8)).save(tmp_path / "cells.png")
    args = ["localize", str(tmp_path / "cells.png"), "-o", str(tmp_path / "out"), "--model", str(weights_at_two),
            "--object-size", "auto", "--format", "json", "--device", "cpu"]
    assert main(args) == 0 and asked == [pytest.approx(0.5)]
    assert main([*args, "--no-scale-search", "--overwrite"]) == 0 and len(asked) == 1
