"""The committed default weights (weights/lite_unet.generalist) do what their card says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import liteunet
from liteunet.data import default_root, read_label_mask_centroids
from liteunet.hub import load_localization_settings, validate_weights_folder
from liteunet.metrics import PointMetrics
from liteunet.samples import sample_path

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "lite_unet.generalist"
SAMPLE_LABELS = "bbbc039/labels/IXMtest_A02_s1_w1051DAA7C-7042-435F-99F0-1E847D9B42CB.png"


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    from huggingface_hub import constants

    # An empty cache and no Hub: the bundled copy is what loads.
    mp.setattr(constants, "HF_HUB_OFFLINE", True)
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
    yield
    mp.undo()


def test_weights_folder_is_a_valid_hub_repository():
    plan = validate_weights_folder(WEIGHTS)
    assert set(plan.files) == {"model.safetensors", "config.json", "README.md"}
    config = json.loads((WEIGHTS / "config.json").read_text())
    assert config["architecture"] == "lite_unet"
    assert set(config["evaluation"]["metrics"]) == {"crc", "mbm", "bbbc039", "vgg_cells", "adi", "bcdata", "dsb2018"}
    card = (WEIGHTS / "README.md").read_text()
    for name, metrics in config["evaluation"]["metrics"].items():
        assert f"| {name} | {metrics['f1@5']:.3f} | {metrics['f1@10']:.3f} |" in card


def test_default_pretrained_model_localizes_the_bundled_sample(offline):
    model = liteunet.create_model("lite_unet", pretrained=True)
    assert load_localization_settings(model)["threshold"] == json.loads((WEIGHTS / "config.json").read_text())["localization"]["threshold"]
    result = liteunet.localize(sample_path(), model, progress=False)[0]
    assert result.ok and result.xy.shape[1] == 2 and 60 <= len(result.xy) <= 160
    root = default_root()
    if not (root / SAMPLE_LABELS).exists():
        pytest.skip(f"BBBC039 labels not found under {root}: set LITEUNET_DATASETS")
    truth, _ = read_label_mask_centroids(root / SAMPLE_LABELS)
    metrics = PointMetrics()
    metrics.update(result.xy, truth)
    # measured 0.922 at 10 px (94 of 110 nuclei matched, 94 found) for generalist_c11, c12 and c15, each when it became the default
    assert metrics.compute()["f1@10"] >= 0.8


def test_the_default_weights_card_reports_the_three_left_out_sets_the_issue_names():
    card = (WEIGHTS / "README.md").read_text()
    section = card.split("## Zero-shot: one data set left out", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ")[0].strip("| ") for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert {"bcdata", "bbbc039", "crc"} <= set(rows[1:])
