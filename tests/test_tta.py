"""Test-time augmentation (liteunet.tta): the D4 views, the averaged map, and its use."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn

import liteunet
from liteunet.tta import (
    TTA_MODES,
    TestTimeAugmentation,
    dihedral_transform,
    settings_for_mode,
    tta_average,
)

TINY = (8, 8, 16, 16, 16)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _explicit_views(x: torch.Tensor) -> list[torch.Tensor]:
    # D4 written out independently: 4 rotations of x and 4 of its mirror image.
    mirrored = x.flip(-1)
    return [torch.rot90(x, k, (-2, -1)) for k in range(4)] + [torch.rot90(mirrored, k, (-2, -1)) for k in range(4)]


def test_the_eight_views_are_the_dihedral_group_and_invert():
    x = torch.arange(2 * 3 * 5.0).reshape(2, 3, 5)  # no symmetry: all 8 views differ
    views = [dihedral_transform(x, k) for k in range(8)]

    def key(t: torch.Tensor) -> tuple:
        return tuple(t.shape), tuple(t.flatten().tolist())

    assert len({key(v) for v in views}) == 8
    assert {key(v) for v in views} == {key(v) for v in _explicit_views(x)}
    assert torch.equal(views[0], x)
    assert [tuple(v.shape[-2:]) for v in views] == [(3, 5)] * 4 + [(5, 3)] * 4
    for k, v in enumerate(views):
        assert torch.equal(dihedral_transform(v, k, inverse=True), x)
    # "flips" are the four views that keep the shape
    assert TTA_MODES == {"flips": 4, "d4": 8}


def test_average_is_the_mean_of_the_back_mapped_maps():
    torch.manual_seed(0)
    model = nn.Conv2d(3, 2, 3, padding=1)  # not symmetric, so each view gives another map
    x = torch.rand(2, 3, 12, 9)
    with torch.no_grad():
        d4 = tta_average(model, x, "d4")
        expected = torch.stack([
            torch.rot90(model(torch.rot90(x, k, (-2, -1))), -k, (-2, -1)) for k in range(4)
        ] + [
            torch.rot90(model(torch.rot90(x.flip(-1), k, (-2, -1))), -k, (-2, -1)).flip(-1) for k in range(4)
        ]).mean(0)
        torch.testing.assert_close(d4, expected)
        flips = tta_average(model, x, "flips")
        expected = torch.stack([
            model(x), model(x.flip(-1)).flip(-1), model(x.flip(-2)).flip(-2), model(x.flip(-2, -1)).flip(-2, -1)
        ]).mean(0)
        torch.testing.assert_close(flips, expected)
        assert not torch.allclose(d4, model(x), atol=1e-3)
        # The averaged model is exactly equivariant, whatever the model is.
        for k in range(8):
            torch.testing.assert_close(
                tta_average(model, dihedral_transform(x, k), "d4"), dihedral_transform(d4, k), atol=1e-6, rtol=1e-5
            )


def test_an_equivariant_model_is_unchanged():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).view(1, 1, 3, 3))
    x = torch.rand(1, 1, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(tta_average(conv, x, "d4"), conv(x))


def test_bad_arguments_are_named():
    model = nn.Identity()
    with pytest.raises(ValueError, match="'d8'"):
        tta_average(model, torch.rand(1, 1, 4, 4), "d8")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\).*\(4, 4\)"):
        tta_average(model, torch.rand(4, 4), "d4")
    with pytest.raises(ValueError, match="0-7, got 8"):
        dihedral_transform(torch.rand(2, 2), 8)
    with pytest.raises(ValueError, match="one of"):
        TestTimeAugmentation(model, "rot")
    with pytest.raises(ValueError, match="tta must be"):
        liteunet.localize(np.zeros((16, 16), np.uint8), liteunet.create_model("lite_unet", widths=TINY), tta="all")


def test_wrapper_keeps_what_the_localizer_reads():
    model = liteunet.create_model("lite_unet", widths=TINY, num_classes=2).eval()
    wrapped = TestTimeAugmentation(model, "flips")
    assert (wrapped.num_classes, wrapped.in_chans, wrapped.size_divisor) == (2, 3, model.size_divisor)
    with torch.no_grad():
        assert wrapped(torch.rand(1, 3, 48, 32)).shape == (1, 2, 48, 32)
    assert "views=4" in repr(wrapped)


def test_settings_for_a_mode_come_from_its_stored_entry():
    stored = {"threshold": 0.2, "min_distance": 3, "sigma": 2.0, "tta": {"d4": {"threshold": 0.1, "min_distance": 4}}}
    assert settings_for_mode(stored, "d4")["threshold"] == 0.1
    assert settings_for_mode(stored, "d4")["min_distance"] == 4
    assert settings_for_mode(stored, "flips")["threshold"] == 0.2  # none stored: the plain ones
    assert settings_for_mode(stored, None) is stored


@pytest.fixture(scope="module")
def weights_with_tta(tmp_path_factory) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    model = liteunet.create_model("lite_unet", widths=TINY).eval()
    folder = tmp_path_factory.mktemp("weights") / "tiny"
    timm.models.save_for_hf(model, folder, model_args={"widths": list(TINY)}, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config["localization"] = {
        "threshold": 0.3, "min_distance": 4, "sigma": 2.0, "tta": {"d4": {"threshold": 0.05, "min_distance": 2}},
    }
    (folder / "config.json").write_text(json.dumps(config))
    return model, folder


def test_localize_averages_and_uses_the_modes_settings(weights_with_tta):
    model, folder = weights_with_tta
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    kw = dict(progress=False, precision="fp32", return_map=True)
    plain = liteunet.localize(image, folder, **kw)[0]
    d4 = liteunet.localize(image, folder, tta=True, **kw)[0]
    assert (plain.settings["threshold"], plain.settings["min_distance"], plain.settings["tta"]) == (0.3, 4, None)
    assert (d4.settings["threshold"], d4.settings["min_distance"], d4.settings["tta"]) == (0.05, 2, "d4")
    flips = liteunet.localize(image, folder, tta="flips", **kw)[0]
    assert (flips.settings["threshold"], flips.settings["min_distance"]) == (0.3, 4)  # no flips entry stored
    explicit = liteunet.localize(image, folder, tta="d4", threshold=0.5, **kw)[0]
    assert explicit.settings["threshold"] == 0.5
    # The map is the model's own D4 average on the (normalized) image.
    x = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    with torch.no_grad():
        expected = tta_average(liteunet.fuse(model), x, "d4")[0].numpy()
    np.testing.assert_allclose(d4.location_map, expected, atol=1e-5)


def test_a_malformed_tta_entry_is_refused(weights_with_tta, tmp_path):
    from liteunet.hub import PretrainedWeightsError, load_localization_settings

    _, folder = weights_with_tta
    config = json.loads((folder / "config.json").read_text())
    config["localization"]["tta"] = {"d4": {"threshold": "low"}}
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps(config))
    with pytest.raises(PretrainedWeightsError, match="tta d4: threshold must be a number"):
        load_localization_settings(bad)
    config["localization"]["tta"] = [0.1]
    bad.write_text(json.dumps(config))
    with pytest.raises(PretrainedWeightsError, match="tta must map modes"):
        load_localization_settings(bad)


def test_command_line_localize_with_tta(weights_with_tta, tmp_path):
    from PIL import Image

    from liteunet.cli import main

    _, folder = weights_with_tta
    image = tmp_path / "cells.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    assert main(["localize", str(image), "-o", str(out), "--model", str(folder), "--format", "json",
                 "--tta", "d4", "--device", "cpu"]) == 0
    settings = json.loads((out / "cells.json").read_text())["settings"]
    assert (settings["tta"], settings["threshold"], settings["min_distance"]) == ("d4", 0.05, 2)


def test_model_card_names_each_tuned_mode():
    from liteunet.model_card import _tta_section

    row = {"f1@5": 0.5, "f1@10": 0.6, "mae": 1.0}
    config = {
        "localization": {"tta": {"flips": {"threshold": 0.3, "min_distance": 2}}},
        "evaluation": {"metrics": {"crc": row}, "tta": {"flips": {"crc": row}}},
    }
    section = "\n".join(_tta_section(config, "lite_unet.crc"))
    assert "| flips | 0.3 | 2 | crc | 0.500 | 0.600 |" in section
    assert "`liteunet eval lite_unet.crc crc --tta flips`" in section and "--tta d4" not in section
