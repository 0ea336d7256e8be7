"""Settings stored per data set (config.json ``localization.tuned_for``) and their use."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch

import liteunet
from liteunet.hub import PretrainedWeightsError, load_localization_settings, settings_tuned_for

TINY = (8, 8, 16, 16, 16)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STORED = {
    "threshold": 0.2, "min_distance": 2, "sigma": 2.0,
    "tta": {"d4": {"threshold": 0.15, "min_distance": 2}},
    "tuned_for": {
        "mbm": {"threshold": 0.3, "min_distance": 8, "tta": {"d4": {"threshold": 0.25, "min_distance": 7}}},
        "crc": {"threshold": 0.1, "min_distance": 6},
    },
}


def test_a_sets_own_settings_replace_the_shared_ones():
    from liteunet.tta import settings_for_mode

    mbm = settings_tuned_for(STORED, "mbm")
    assert (mbm["threshold"], mbm["min_distance"], mbm["sigma"]) == (0.3, 8, 2.0)
    assert "tuned_for" not in mbm
    assert settings_for_mode(mbm, "d4")["threshold"] == 0.25  # the set's own d4 pair
    # crc has no d4 pair: its plain pair, never the shared d4 pair chosen over all sets
    assert settings_for_mode(settings_tuned_for(STORED, "crc"), "d4")["threshold"] == 0.1
    assert settings_tuned_for(STORED, None) is STORED


def test_an_unknown_set_names_those_stored():
    with pytest.raises(ValueError, match=r"no settings tuned for 'adi'; they have settings for crc, mbm"):
        settings_tuned_for(STORED, "adi")
    with pytest.raises(ValueError, match="they store none per data set"):
        settings_tuned_for({"threshold": 0.5, "min_distance": 3}, "crc")


@pytest.fixture(scope="module")
def weights_with_sets(tmp_path_factory):
    torch.manual_seed(0)
    model = liteunet.create_model("lite_unet", widths=TINY).eval()
    folder = tmp_path_factory.mktemp("weights") / "tiny"
    timm.models.save_for_hf(model, folder, model_args={"widths": list(TINY)}, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config["localization"] = STORED
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_localize_uses_the_named_sets_settings(weights_with_sets):
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    kw = dict(progress=False, precision="fp32")

    def used(**extra):
        s = liteunet.localize(image, weights_with_sets, **kw, **extra)[0].settings
        return s["threshold"], s["min_distance"], s["tuned_for"]

    assert used() == (0.2, 2, None)
    assert used(tuned_for="mbm") == (0.3, 8, "mbm")
    assert used(tuned_for="mbm", tta="d4") == (0.25, 7, "mbm")
    assert used(tuned_for="mbm", threshold=0.6) == (0.6, 8, "mbm")  # explicit values still win
    with pytest.raises(ValueError, match="no settings tuned for 'bbbc039'"):
        liteunet.localize(image, weights_with_sets, tuned_for="bbbc039", **kw)


def test_a_malformed_entry_is_refused(weights_with_sets, tmp_path):
    config = json.loads((weights_with_sets / "config.json").read_text())
    bad = tmp_path / "config.json"
    config["localization"]["tuned_for"] = {"mbm": {"min_distance": 0}}
    bad.write_text(json.dumps(config))
    with pytest.raises(PretrainedWeightsError, match="tuned_for mbm: min_distance must be an integer >= 1"):
        load_localization_settings(bad)
    config["localization"]["tuned_for"] = {"mbm": {"tta": {"d4": {"threshold": "low"}}}}
    bad.write_text(json.dumps(config))
    with pytest.raises(PretrainedWeightsError, match="tuned_for mbm: tta d4: threshold must be a number"):
        load_localization_settings(bad)
    config["localization"]["tuned_for"] = ["mbm"]
    bad.write_text(json.dumps(config))
    with pytest.raises(PretrainedWeightsError, match="tuned_for must map data set names"):
        load_localization_settings(bad)


def test_command_line_localize_tuned_for(weights_with_sets, tmp_path):
    from PIL import Image

    from liteunet.cli import main

    image = tmp_path / "cells.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    assert main(["localize", str(image), "-o", str(out), "--model", str(weights_with_sets), "--format", "json",
                 "--tuned-for", "crc", "--device", "cpu"]) == 0
    settings = json.loads((out / "cells.json").read_text())["settings"]
    assert (settings["threshold"], settings["min_distance"], settings["tuned_for"]) == (0.1, 6, "crc")
