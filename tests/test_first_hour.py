"""What a new user meets in the first hour: every zoo entry loads offline, by tag, folder or file;
quiet loads; a folder scored whole; results that say which weights made them; clear messages."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import liteunet
from liteunet.cli import main
from liteunet.pretrained.bundled import BUNDLED_TAGS

ROOT = Path(__file__).resolve().parents[1]
TAGS = liteunet.list_models("lite_unet*", pretrained=True)


@pytest.fixture()
def offline(tmp_path, monkeypatch):
    """No Hub and an empty cache: only what ships with the package can load."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_every_zoo_tag_ships_in_the_package():
    assert set(BUNDLED_TAGS) == set(TAGS)
    for tag in TAGS:
        assert (ROOT / "weights" / tag / "model.safetensors").is_file(), tag


@pytest.mark.parametrize("tag", TAGS)
def test_every_tag_loads_offline_by_name(tag, offline):
    model = liteunet.create_model(tag, pretrained=True)
    assert model.pretrained_cfg["file"].endswith(f"{tag}/model.safetensors")
    config = json.loads((ROOT / "weights" / tag / "config.json").read_text())
    assert model.num_classes == config["num_classes"]
    assert type(timm.create_model(tag, pretrained=True)) is type(model)


def test_a_tag_a_folder_and_a_file_load_alike(offline, tmp_path):
    by_tag = liteunet.create_model("lite_unet.ki67", pretrained=True)
    by_folder = liteunet.create_model(ROOT / "weights" / "lite_unet.ki67")
    by_file = liteunet.load_model(ROOT / "weights" / "lite_unet.ki67" / "model.safetensors")
    # Another checkpoint file of the folder: the folder's config.json says what it is.
    other = tmp_path / "ki67"
    other.mkdir()
    shutil.copy(ROOT / "weights" / "lite_unet.ki67" / "config.json", other / "config.json")
    shutil.copy(ROOT / "weights" / "lite_unet.ki67" / "model.safetensors", other / "epoch_7.safetensors")
    by_other = liteunet.load_model(other / "epoch_7.safetensors")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        ref = by_tag.eval()(x)
        for model in (by_folder, by_file, by_other):
            assert model.num_classes == 2
            torch.testing.assert_close(model.eval()(x), ref)
    with pytest.raises(FileNotFoundError, match="no config.json beside it"):
        lonely = tmp_path / "lonely.safetensors"
        shutil.copy(other / "epoch_7.safetensors", lonely)
        liteunet.load_model(lonely)


def test_info_reads_the_weights_it_is_given(offline, capsys):
    for name in ("lite_unet.ki67", str(ROOT / "weights" / "lite_unet.ki67")):
        assert main(["info", name, "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["num_classes"] == 2 and "localization" in info, name


def test_localize_command_with_the_ki67_tag(offline, tmp_path, capsys):
    image = np.asarray(Image.open(liteunet.samples.sample_path()))[:128, :128]
    Image.fromarray(image).save(tmp_path / "img.png")
    assert main(["localize", str(tmp_path / "img.png"), "-o", str(tmp_path / "out"), "--model", "lite_unet.ki67",
                 "--device", "cpu"]) == 0
    head = (tmp_path / "out" / "img.csv").read_text().splitlines()
    assert head[0].startswith("# liteunet ") and "weights lite_unet.ki67" in head[0]
    assert head[1] == "x,y,score,label,class"


def _run_quietly(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    base.update(HF_HOME=str(tmp_path / "hf-home"), **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=base, timeout=300)


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}], ids=["offline", "no-hub"])
def test_a_load_that_went_as_asked_prints_nothing(env, tmp_path):
    out = _run_quietly(
        "import liteunet; liteunet.create_model('lite_unet.crc', pretrained=True); "
        "liteunet.create_model('lite_unet', pretrained=True); print('ok')",
        tmp_path, **env,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert out.stderr == "", out.stderr


def test_the_bundled_copy_is_logged_once_at_info(offline, caplog, monkeypatch):
    monkeypatch.setattr("liteunet.pretrained.resolve._ANNOUNCED", set())
    with caplog.at_level(logging.INFO, logger="liteunet.pretrained"):
        liteunet.create_model("lite_unet.crc", pretrained=True)
        liteunet.create_model("lite_unet.crc", pretrained=True)
    said = [r for r in caplog.records if "bundled" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO


def test_eval_scores_every_image_of_a_folder(offline, tmp_path, capsys):
    folder = tmp_path / "my_cells"
    folder.mkdir()
    image = np.asarray(Image.open(liteunet.samples.sample_path()))
    for i in range(3):
        Image.fromarray(image[64 * i : 64 * i + 96, :96]).save(folder / f"img{i}.png")
        (folder / f"img{i}.csv").write_text("x,y\n10,10\n50,40\n")
    assert main(["eval", "lite_unet.multi", str(folder), "-o", str(tmp_path / "eval"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "my_cells/all:" in out
    (per_image,) = (tmp_path / "eval").glob("*.csv")
    assert len(per_image.read_text().strip().splitlines()) == 1 + 3  # header + every image
    assert main(["eval", "lite_unet.multi", str(folder), "--split", "validation", "-o", str(tmp_path / "v"),
                 "--device", "cpu"]) == 0
    assert "my_cells/validation:" in capsys.readouterr().out
    assert main(["eval", "lite_unet.multi", str(folder), "--rescale", "2", "-o", str(tmp_path / "r"),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "my_cells/all (rescaled 2x):" in out and "in the original pixels: F1@5" in out
    summary = json.loads((tmp_path / "r" / "my_cells_summary.json").read_text())
    assert {"f1@10", "f1@10/native", "recall@5/native"} <= set(summary)


def test_results_say_which_weights_made_them(offline):
    from liteunet.io_formats import to_geojson

    res = liteunet.localize(np.zeros((64, 64), np.uint8), model="lite_unet.crc", device="cpu", progress=False)[0]
    weights = res.to_dict()["settings"]["weights"]
    assert weights["name"] == "lite_unet.crc" and weights["file"].endswith("lite_unet.crc/model.safetensors")
    assert weights["revision"] == liteunet.models._pretrained.HUB_REVISION
    assert res.settings["liteunet_version"] == liteunet.__version__
    assert to_geojson(res)["liteunet"]["weights"] == weights


def test_features_only_gives_the_encoder_stages():
    feats = timm.create_model("lite_unet", features_only=True, out_indices=(1, 3)).eval()
    assert feats.feature_info.channels() == [56, 256] and feats.feature_info.reduction() == [2, 8]
    with torch.no_grad():
        out = feats(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in out] == [(1, 56, 32, 32), (1, 256, 8, 8)]


def test_features_only_keeps_the_pretrained_weights(offline):
    plain = liteunet.create_model("lite_unet.crc", pretrained=True).eval()
    feats = timm.create_model("lite_unet.crc", pretrained=True, features_only=True).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(feats(x), plain.forward_intermediates(x, intermediates_only=True)):
            torch.testing.assert_close(a, b)


def test_saved_weights_are_readable_by_others(tmp_path):
    from liteunet.evaluate import LocalizationSettings
    from liteunet.train import save_weights

    umask = os.umask(0o022)
    try:
        folder = save_weights(liteunet.create_model("lite_unet", widths=(8, 8, 16, 16, 16)), tmp_path / "best",
                              LocalizationSettings(), dict(widths=(8, 8, 16, 16, 16)))
    finally:
        os.umask(umask)
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o644


def test_a_z_stack_gets_a_message_that_says_what_to_do():
    model = liteunet.create_model("lite_unet", widths=(8, 8, 16, 16, 16))
    with pytest.raises(ValueError, match=r"stack of 5 planes.*image\.max\(axis=0\)"):
        liteunet.localize(np.zeros((5, 64, 64), np.uint16), model, progress=False)


def test_the_command_line_suggests_command_line_fixes(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("liteunet.pretrained.bundled.bundled_roots", lambda: [tmp_path / "none"])
    assert main(["localize", str(liteunet.samples.sample_path()), "-o", str(tmp_path), "--model", "lite_unet.crc"]) == 1
    assert "--model path/to/folder" in capsys.readouterr().err


@pytest.mark.parametrize("tag", TAGS)
def test_each_weights_folder_describes_its_own_tag(tag):
    config = json.loads((ROOT / "weights" / tag / "config.json").read_text())
    registered = timm.models.get_pretrained_cfg(tag)
    assert config["pretrained_cfg"]["tag"] == registered.tag == tag.split(".")[1]
    assert config["pretrained_cfg"]["description"] == registered.description
