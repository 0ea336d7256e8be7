"""Input scaling recorded with the weights: inference scales images the way training did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import liteunet
from liteunet import Localizer, localize
from liteunet.data import read_image
from liteunet.evaluate import LocalizationSettings, stored_normalize
from liteunet.pretrained import PretrainedWeightsError
from liteunet.samples import sample_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _weights(folder: Path, localization: dict) -> Path:
    torch.manual_seed(0)
    model = liteunet.create_model("lite_unet", widths=(8, 8, 16, 16, 16))
    timm.models.save_for_hf(model, folder, model_args={"widths": [8, 8, 16, 16, 16]}, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config["localization"] = localization
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_settings_write_normalize_only_when_it_is_not_the_old_default():
    assert "normalize" not in LocalizationSettings(0.3, 2).to_dict()
    assert LocalizationSettings(0.3, 2, normalize="percentile").to_dict()["normalize"] == "percentile"


def test_localizer_takes_the_stored_normalize_and_the_caller_overrides_it(tmp_path):
    folder = _weights(tmp_path / "w", {"threshold": 0.5, "min_distance": 3, "normalize": "percentile"})
    assert Localizer(folder, progress=False).normalize == "percentile"
    assert Localizer(folder, normalize="auto", progress=False).normalize == "auto"
    assert stored_normalize(liteunet.load_model(folder)) == "percentile"
    plain = _weights(tmp_path / "plain", {"threshold": 0.5, "min_distance": 3})
    assert Localizer(plain, progress=False).normalize == "auto"


def test_bad_stored_normalize_is_refused_naming_the_file(tmp_path):
    folder = _weights(tmp_path / "w", {"threshold": 0.5, "min_distance": 3, "normalize": "by255"})
    with pytest.raises(PretrainedWeightsError, match=r"config.json.*normalize"):
        Localizer(folder, progress=False)


def test_dim_8bit_copy_gives_the_cells_of_its_16bit_original():
    # The case: the bundled 16-bit fluorescence sample, saved as a dim 8-bit image
    # (values / 256, mean ~6 of 255). Per-image percentiles make the two inputs the same up to
    # quantisation, so the cells are the same; dividing 8-bit by 255 lost most of them.
    original = read_image(sample_path())
    dim = (original // 256).astype(np.uint8)
    assert dim.mean() < 16
    a, b = localize([original, dim], "lite_unet.multi", normalize="percentile", progress=False)
    assert len(a.xy) > 50
    d = cdist(a.xy, b.xy)
    rows, cols = linear_sum_assignment(d)
    within = int((d[rows, cols] <= 3).sum())
    assert within >= 0.8 * max(len(a.xy), len(b.xy)), (len(a.xy), len(b.xy), within)
