"""`evaluate(..., rescale=)`: a model at another magnification, scored in the resized and the original pixels.

The model here is an oracle: its map is the image itself (bright Gaussian blobs at the cells),
moved ``shift`` pixels to the right, so the distance of every found point from its cell is known
in the model's pixels and therefore in the resized and the original ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from liteunet.data import Sample
from liteunet.evaluate import LocalizationSettings, evaluate

SETTINGS = LocalizationSettings(threshold=0.3, min_distance=3)


class ShiftedImage(nn.Module):
    """The mean of the input channels, moved ``shift`` pixels along x: a map with known offsets."""

    in_chans, num_classes = 3, 1

    def __init__(self, shift: int) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x.mean(1, keepdim=True), self.shift, dims=-1)


def _blob_images(folder: Path, n: int = 2, size: int = 160) -> list[Sample]:
    """Images with Gaussian blobs (sigma 2 px) on a 40-px grid, away from the borders."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    samples = []
    for i in range(n):
        grid = np.arange(30, size - 29, 40, dtype=np.float64)
        points = np.stack(np.meshgrid(grid + 2 * i, grid), -1).reshape(-1, 2)
        image = np.zeros((size, size), np.float64)
        for x, y in points:
            image = np.maximum(image, np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2)))
        path = folder / f"blobs{i}.png"
        Image.fromarray(np.repeat((image * 255).round().astype(np.uint8)[..., None], 3, -1)).save(path)
        samples.append(Sample(path, points, np.zeros(len(points), np.int64), f"blobs{i}"))
    return samples


def test_a_native_run_has_no_native_pixel_scores(tmp_path):
    summary = evaluate(ShiftedImage(0), _blob_images(tmp_path), SETTINGS, progress=False).summary
    assert summary["f1@5"] == 1.0
    assert not any(key.endswith("/native") for key in summary)


@pytest.mark.parametrize("rescale", [0.5, 2.0])
def test_an_exact_model_scores_one_in_both_pixels(tmp_path, rescale):
    summary = evaluate(ShiftedImage(0), _blob_images(tmp_path), SETTINGS, rescale=rescale, progress=False).summary
    assert summary["f1@5"] == summary["f1@5/native"] == 1.0
    assert summary["rescale"] == rescale


@pytest.mark.parametrize(
    "rescale, shift, resized_match, native_match",
    [
        (2.0, 7, False, True),  # 7 px off in the 2x image is 3.5 px on the original
        (0.5, 3, True, False),  # 3 px off in the half-size image is 6 px on the original
    ],
)
def test_found_points_are_mapped_back_by_the_rescale(tmp_path, rescale, shift, resized_match, native_match):
    summary = evaluate(
        ShiftedImage(shift), _blob_images(tmp_path), SETTINGS, rescale=rescale, progress=False
    ).summary
    assert summary["f1@5"] == (1.0 if resized_match else 0.0)
    assert summary["f1@5/native"] == (1.0 if native_match else 0.0)
    assert summary["f1@10"] == summary["f1@10/native"] == 1.0  # within 10 px either way


def test_object_size_tuning_records_the_size_the_model_localizes_best_at(tmp_path, monkeypatch, capsys):
    import json

    import liteunet.release_object_size as object_size_module
    from liteunet.release import main, measure_object_size, tune_object_size

    data = tmp_path / "data"
    for sample in _blob_images(data):
        np.savetxt(data / f"{sample.name}.csv", sample.points, delimiter=",", header="x,y", comments="", fmt="%.1f")
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text(json.dumps({"localization": {"threshold": 0.3, "min_distance": 3, "object_size": 5.0}}))
    # 8 model pixels off: 8 / scale pixels off in the image, so the larger the size the images
    # are brought to (scale = size / estimated, the blobs measure about 5.7 px), the closer.
    monkeypatch.setattr(object_size_module, "load_model", lambda folder: ShiftedImage(8))
    monkeypatch.setattr(object_size_module, "load_localization_settings", lambda model: {"threshold": 0.3, "min_distance": 3})
    tuned = tune_object_size(weights, [str(data)], [4, 6, 15], split="all", progress=False)
    scores = tuned["scores"]
    assert scores["4"]["data"] == 0.0 and scores["6"]["data"] == 1.0 and scores["15"]["data"] == 1.0
    assert scores["15"]["selection"] == 1.0 > scores["6"]["selection"]  # F1@5 too: 8 / 2.6 = 3 px off
    assert tuned["object_size"] == 15.0
    stored = json.loads((weights / "config.json").read_text())["localization"]
    assert stored["object_size"] == 15.0 and stored["object_size_measured"] == 5.0
    assert stored["object_size_tuning"]["scores"] == scores and stored["threshold"] == 0.3
    # again: the measured size stays the first one, not the size tuned before
    tune_object_size(weights, [str(data)], [6], split="all", progress=False)
    assert json.loads((weights / "config.json").read_text())["localization"]["object_size_measured"] == 5.0
    # measuring again after tuning keeps the tuned choice and updates the measured size
    tune_object_size(weights, [str(data)], [4, 6, 15], split="all", progress=False)
    record = measure_object_size(weights, [str(data)], split="all", progress=False)
    stored = json.loads((weights / "config.json").read_text())["localization"]
    assert stored["object_size"] == 15.0 and stored["object_size_measured"] == record["object_size"] != 15.0
    with pytest.raises(ValueError, match="candidate object sizes must be positive"):
        tune_object_size(weights, [str(data)], [0, 6], split="all")
    capsys.readouterr()
    assert main([str(weights), "--object-size-tune", "4", "15", "--datasets", str(data), "--split", "all"]) == 0
    printed = capsys.readouterr().out
    assert "object size 15 px: data 1.000  selection 1.000" in printed and "chosen: 15 px" in printed
    with pytest.raises(SystemExit):
        main([str(weights), "--object-size-tune", "4"])
    # the model card shows the candidates
    from liteunet.model_card import render_model_card

    card = render_model_card(json.loads((weights / "config.json").read_text()), "lite_unet.test")
    assert "## Object size" in card and "measure 15.0 px before the model" in card
    assert "| size (px) | data | mean of F1@5 and F1@10 |" in card and "| 4 | 0.000 | 0.000 |" in card


def test_a_report_on_one_group_of_a_set_gets_a_portable_file_name(tmp_path):
    from liteunet.evaluate import EvaluationReport, write_report

    report = EvaluationReport("dsb2018:tissue_256x320", LocalizationSettings(), {"f1@10": 0.5}, [{"image": "a", "tp@10": 1}])
    csv_path, json_path = write_report(report, tmp_path)
    assert (csv_path.name, json_path.name) == ("dsb2018-tissue_256x320_per_image.csv", "dsb2018-tissue_256x320_summary.json")
    assert '"dataset": "dsb2018:tissue_256x320"' in json_path.read_text()
