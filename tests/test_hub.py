"""Pretrained weights: offline-first resolution, file checks, bundled copy, publishing, wheel.

Never the real network: every test points huggingface_hub at a refused local port, or at the
fake Hub of ``tests/fake_hub.py`` on 127.0.0.1, with its cache in ``tmp_path``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from huggingface_hub import constants as hf_constants

import liteunet
from liteunet import hub
from liteunet.cli import main as cli_main
from liteunet.cli import push as push_command
from liteunet.pretrained import bundled as _bundled
from liteunet.pretrained import from_hub as _from_hub
from liteunet.hub import PretrainedWeightsError, load_localization_settings

sys.path.insert(0, str(Path(__file__).parent))
from fake_hub import FakeHub

ROOT = Path(__file__).resolve().parents[1]
REVISION = liteunet.models._pretrained.HUB_REVISION
LOCALIZATION = {"threshold": 0.35, "min_distance": 4, "sigma": 2.0}


def _seeded(name: str, seed: int, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = liteunet.create_model(name, **kwargs)
    with torch.no_grad():  # BN statistics too, so that every tensor differs from a fresh model
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.1)
    return model


def _digest(model_or_sd) -> str:
    sd = model_or_sd.state_dict() if isinstance(model_or_sd, torch.nn.Module) else model_or_sd
    h = hashlib.sha256()
    for key in sorted(sd):
        h.update(key.encode())
        h.update(sd[key].detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def _save(model: torch.nn.Module, folder: Path, localization: dict | None = None) -> Path:
    """A weights folder: timm's save_for_hf, plus localization settings and a model card."""
    timm.models.save_for_hf(model, folder, safe_serialization=True)
    if localization:
        config = json.loads((folder / "config.json").read_text())
        config["localization"] = localization
        (folder / "config.json").write_text(json.dumps(config))
    (folder / "README.md").write_text("---\nlibrary_name: timm\nlicense: apache-2.0\n---\n# card\n")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Weights folders keyed by tag (crc2: another revision of crc; ghost: another architecture)."""
    root = tmp_path_factory.mktemp("weights")
    out = {}
    for key, name, seed in [
        ("crc", "lite_unet.crc", 1),
        ("crc2", "lite_unet.crc", 2),
        ("ki67", "lite_unet.ki67", 3),
        ("multi", "lite_unet.multi", 4),
        ("generalist", "lite_unet.generalist", 7),
    ]:
        out[key] = _save(_seeded(name, seed), root / key, localization=LOCALIZATION)
    out["ghost"] = _save(_seeded("lite_unet_ghost_cbam", 5), root / "ghost")
    return out


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """An empty Hub cache, no token, no bundled weights, and a Hub endpoint that refuses at once."""
    home = tmp_path / "hf-home"
    monkeypatch.setattr(hf_constants, "HF_HOME", str(home))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", 2)
    monkeypatch.setattr(hf_constants, "HF_HUB_DOWNLOAD_TIMEOUT", 2)
    _point_at(monkeypatch, "http://127.0.0.1:9")  # discard port: connection refused
    for var in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "HF_ENDPOINT",
        "HF_HUB_CACHE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(_bundled, "bundled_roots", lambda: [tmp_path / "bundled"])
    monkeypatch.setattr(_from_hub, "_WAITED", {}, raising=False)  # each test starts with a Hub not yet waited on
    monkeypatch.delenv("LITEUNET_HUB_DEADLINE", raising=False)
    return tmp_path


def _point_at(monkeypatch, endpoint: str) -> None:
    monkeypatch.setattr(hf_constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        hf_constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )


@pytest.fixture
def fake_hub(monkeypatch):
    with FakeHub() as server:
        _point_at(monkeypatch, server.endpoint)
        yield server


def _publish(
    server: FakeHub, folder: Path, tag: str = "lite_unet.crc", revision: str = REVISION
) -> None:
    server.add_folder(f"liteunet/{tag}", folder, revision=revision)


# --- the registry ---------------------------------------------------------------------------


def test_each_tag_names_its_pinned_hub_repository():
    tags = liteunet.list_models("lite_unet*", pretrained=True)
    assert set(tags) == {"lite_unet.generalist", "lite_unet.multi", "lite_unet.crc", "lite_unet.ki67"}
    for name in tags:
        cfg = timm.models.get_pretrained_cfg(name)
        assert cfg.hf_hub_id == f"liteunet/{name}@{REVISION}"
        assert cfg.hf_hub_filename == "model.safetensors"
    assert _bundled.BUNDLED_TAGS == ("lite_unet.generalist", "lite_unet.multi", "lite_unet.crc", "lite_unet.ki67")
    # The default tag is the bundled one.
    assert timm.models.get_pretrained_cfg("lite_unet").tag == "generalist"


# --- Hub, cache, offline ----------------------------------------------------------------------


def test_download_into_cache_then_offline_reload(fake_hub, folders, isolated, monkeypatch):
    _publish(fake_hub, folders["crc"])
    model = timm.create_model("lite_unet.crc", pretrained=True)
    assert _digest(model) == _digest(_seeded("lite_unet.crc", 1))
    cached = Path(model.pretrained_cfg["file"])
    assert cached.name == "model.safetensors" and (isolated / "hf-home" / "hub") in cached.parents
    assert "models--liteunet--lite_unet.crc" in str(cached)
    assert load_localization_settings(model) == LOCALIZATION
    assert any(m == "GET" for m, _ in fake_hub.requests)

    # Cache first: a second load asks the Hub nothing, online or not.
    fake_hub.requests.clear()
    again = liteunet.create_model("lite_unet.crc", pretrained=True)
    assert fake_hub.requests == [] and _digest(again) == _digest(model)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    offline = liteunet.create_model("lite_unet.crc", pretrained=True)
    assert fake_hub.requests == [] and _digest(offline) == _digest(model)
    assert load_localization_settings("lite_unet.crc") == LOCALIZATION
    found = hub.resolve_weights("lite_unet.crc", config_only=True)
    assert found.source == "hub-cache" and found.weights_file is None
    assert found.config["architecture"] == "lite_unet"


def test_cache_dir_revision_and_hf_hub_prefix(fake_hub, folders, isolated):
    _publish(fake_hub, folders["crc"])
    _publish(fake_hub, folders["crc2"], revision="v2")
    other = isolated / "other-cache"
    model = liteunet.create_model("lite_unet.crc", pretrained=True, cache_dir=other, revision="v2")
    assert _digest(model) == _digest(_seeded("lite_unet.crc", 2))
    assert other in Path(model.pretrained_cfg["file"]).parents
    assert not (isolated / "hf-home" / "hub").exists()
    pinned = timm.create_model(f"hf-hub:liteunet/lite_unet.crc@{REVISION}", pretrained=True)
    assert _digest(pinned) == _digest(_seeded("lite_unet.crc", 1))


def test_offline_without_cache_lists_every_source_and_the_fixes(monkeypatch, isolated):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedWeightsError) as info:
        liteunet.create_model("lite_unet.crc", pretrained=True)
    msg = str(info.value)
    for expected in [
        "Could not load pretrained weights for 'lite_unet.crc'",
        f"liteunet/lite_unet.crc, revision {REVISION}",
        "1. local file: none named",
        "2. Hub cache",
        "is not cached",
        "3. Hub http://127.0.0.1:9: skipped, HF_HUB_OFFLINE is set",
        "4. bundled copy: no bundled weights in this install",
        "pretrained_cfg_overlay=dict(file=",
        f"hf download liteunet/lite_unet.crc --revision {REVISION}",
        "set HF_HUB_OFFLINE=1",
    ]:
        assert expected in msg, msg
    with pytest.raises(PretrainedWeightsError, match="no bundled weights in this install"):
        liteunet.create_model("lite_unet", pretrained=True)


@pytest.mark.parametrize(
    "fault, expected",
    [
        ("no-repo", "repository liteunet/lite_unet.crc not found"),
        ("no-file", f"liteunet/lite_unet.crc@{REVISION} has no model.safetensors"),
        ("500", "HTTP 500"),
        ("refused", "cannot connect"),
    ],
)
def test_hub_failures_end_in_one_clear_error(fake_hub, folders, monkeypatch, fault, expected):
    if fault == "no-file":
        fake_hub.add_file(
            "liteunet/lite_unet.crc",
            "config.json",
            (folders["crc"] / "config.json").read_bytes(),
            REVISION,
        )
    elif fault == "500":
        _publish(fake_hub, folders["crc"])
        fake_hub.fault("liteunet/lite_unet.crc", "*", "500")
    elif fault == "refused":
        _point_at(monkeypatch, "http://127.0.0.1:9")
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsError) as info:
        liteunet.create_model("lite_unet.crc", pretrained=True)
    assert time.perf_counter() - start < 5  # no retry storm before falling through
    msg = str(info.value)
    assert "3. Hub http://127.0.0.1:" in msg and expected in msg, msg


def test_slow_hub_times_out_quickly(fake_hub, folders, monkeypatch):
    _publish(fake_hub, folders["crc"])
    fake_hub.fault("liteunet/lite_unet.crc", "config.json", ("slow", 10))
    monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", 0.5)
    start = time.perf_counter()
    with pytest.raises(
        PretrainedWeightsError, match=r"no answer within 0.5 s \(HF_HUB_ETAG_TIMEOUT\)"
    ):
        liteunet.create_model("lite_unet.crc", pretrained=True)
    assert time.perf_counter() - start < 4


def test_truncated_file_on_the_hub(fake_hub, folders):
    _publish(fake_hub, folders["crc"])
    data = (folders["crc"] / "model.safetensors").read_bytes()
    fake_hub.add_file(
        "liteunet/lite_unet.crc", "model.safetensors", data[: len(data) // 2], REVISION
    )
    with pytest.raises(
        PretrainedWeightsError, match=r"model.safetensors: not a valid safetensors file .*truncated"
    ):
        liteunet.create_model("lite_unet.crc", pretrained=True)


def test_wrong_architecture_on_the_hub(fake_hub, folders):
    # lite_unet_ghost_cbam weights in the lite_unet.crc repository
    _publish(fake_hub, folders["ghost"])
    with pytest.raises(
        PretrainedWeightsError,
        match="holds weights for 'lite_unet_ghost_cbam'.*not for the requested 'lite_unet'",
    ):
        liteunet.create_model("lite_unet.crc", pretrained=True)
    # config.json is checked before the weights are downloaded
    assert not any("model.safetensors" in path for _, path in fake_hub.requests)


def test_corrupt_cached_copy_is_downloaded_again(fake_hub, folders):
    _publish(fake_hub, folders["crc"])
    cached = Path(liteunet.create_model("lite_unet.crc", pretrained=True).pretrained_cfg["file"])
    cached.resolve().write_bytes(b"\0" * 10)  # the blob behind the snapshot link
    model = liteunet.create_model("lite_unet.crc", pretrained=True)
    assert _digest(model) == _digest(_seeded("lite_unet.crc", 1))


# --- the bundled copy ---------------------------------------------------------------------------


def test_bundled_default_weights_when_the_hub_fails(
    fake_hub, folders, isolated, monkeypatch, caplog
):
    shutil.copytree(folders["generalist"], isolated / "bundled" / "lite_unet.generalist")
    fake_hub.fault("liteunet/lite_unet.generalist", "*", "500")
    monkeypatch.setattr("liteunet.pretrained.resolve._ANNOUNCED", set())
    with caplog.at_level(logging.INFO, logger="liteunet.pretrained"):
        model = liteunet.create_model("lite_unet", pretrained=True)
        again = liteunet.create_model("lite_unet", pretrained=True)
    assert _digest(model) == _digest(_seeded("lite_unet.generalist", 7)) == _digest(again)
    lines = [r for r in caplog.records if "bundled" in r.getMessage()]
    # Said once per process, at INFO: the bundled copy is the weights that were asked for.
    assert len(lines) == 1 and "'lite_unet.generalist' weights bundled with liteunet" in lines[0].getMessage()
    assert lines[0].levelno == logging.INFO and "\n" not in lines[0].getMessage()
    # Only for the registered default: not for another repository or revision of it.
    with pytest.raises(
        PretrainedWeightsError, match="4. bundled copy: only the registered weights of the zoo's tags"
    ):
        liteunet.create_model("lite_unet", pretrained=True, revision="v9")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert _digest(timm.create_model("lite_unet.generalist", pretrained=True)) == _digest(model)


def test_source_checkout_finds_top_level_weights(tmp_path, monkeypatch):
    monkeypatch.undo()  # the real bundled_roots
    roots = _bundled.bundled_roots()
    assert roots[0] == ROOT / "liteunet" / "_bundled_weights"
    # editable install / checkout: weights/ is read in place (git keeps no empty folder)
    assert (ROOT / "weights" in roots) == (ROOT / "weights").is_dir()


# --- local files ----------------------------------------------------------------------------------


def test_named_file_or_folder_comes_first(fake_hub, folders):
    _publish(fake_hub, folders["crc2"])
    by_folder = liteunet.create_model(
        "lite_unet.crc", pretrained=True, pretrained_cfg_overlay=dict(file=str(folders["crc"]))
    )
    by_file = timm.create_model(
        "lite_unet.crc",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(folders["crc"] / "model.safetensors")),
    )
    by_dir = timm.create_model(f"local-dir:{folders['crc']}", pretrained=True)
    assert (
        _digest(by_folder)
        == _digest(by_file)
        == _digest(by_dir)
        == _digest(_seeded("lite_unet.crc", 1))
    )
    assert fake_hub.requests == []
    assert (
        load_localization_settings(by_file)
        == LOCALIZATION
        == load_localization_settings(folders["crc"])
    )


def test_weights_config_is_the_folders_config_json(folders):
    model = liteunet.create_model(
        "lite_unet.crc", pretrained=True, pretrained_cfg_overlay=dict(file=str(folders["crc"]))
    )
    expected = json.loads((folders["crc"] / "config.json").read_text())
    assert hub.load_weights_config(model) == expected
    assert hub.load_weights_config(liteunet.create_model("lite_unet")) == {}


def test_in_memory_state_dict(folders):
    sd = safetensors.torch.load_file(folders["crc"] / "model.safetensors")
    model = timm.create_model(
        "lite_unet", pretrained=True, pretrained_cfg_overlay=dict(state_dict=sd)
    )
    assert _digest(model) == _digest(sd) and "state_dict" not in model.pretrained_cfg


def test_named_file_adapts_to_in_chans_and_num_classes(folders):
    model = liteunet.create_model(
        "lite_unet.crc",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(folders["crc"])),
        in_chans=1,
        num_classes=3,
    )
    assert model.in_chans == 1 and model.head.out_channels == 3
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 3, 32, 32)


def test_missing_mismatched_and_foreign_files(folders, tmp_path):
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        liteunet.create_model(
            "lite_unet", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "nope"))
        )
    # Ki-67 weights (2 maps) named for the 1-map crc tag: a shape error, not a half-loaded head.
    with pytest.raises(
        PretrainedWeightsError,
        match=r"shape mismatch.*head.weight is \(2, 28, 1, 1\) in the file, \(1, 28, 1, 1\)",
    ):
        liteunet.create_model(
            "lite_unet.crc", pretrained=True, pretrained_cfg_overlay=dict(file=str(folders["ki67"]))
        )
    # A lone safetensors file of another architecture (no config.json beside it).
    lone = tmp_path / "lone" / "weights.safetensors"
    lone.parent.mkdir()
    shutil.copy(folders["ghost"] / "model.safetensors", lone)
    with pytest.raises(
        PretrainedWeightsError,
        match=r"(?s)does not fit 'lite_unet'.*missing from the file: encoder.0.branches",
    ):
        liteunet.create_model(
            "lite_unet", pretrained=True, pretrained_cfg_overlay=dict(file=str(lone))
        )
    # Truncated.
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((folders["crc"] / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(
        PretrainedWeightsError, match="cut.safetensors: not a valid safetensors file"
    ):
        liteunet.create_model(
            "lite_unet", pretrained=True, pretrained_cfg_overlay=dict(file=str(cut))
        )


def test_pickles_only_when_named_and_only_weights_only(folders, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    evil = tmp_path / "evil" / "pytorch_model.bin"
    evil.parent.mkdir()
    torch.save({"head.weight": Evil()}, evil)
    with pytest.raises(
        PretrainedWeightsError,
        match="holds no model.safetensors.*pytorch_model.bin are pickle files",
    ):
        liteunet.create_model(
            "lite_unet", pretrained=True, pretrained_cfg_overlay=dict(file=str(evil.parent))
        )
    with pytest.raises(PretrainedWeightsError, match="refused to unpickle it"):
        liteunet.create_model(
            "lite_unet", pretrained=True, pretrained_cfg_overlay=dict(file=str(evil))
        )
    with pytest.raises(PretrainedWeightsError, match="refused to unpickle it"):
        liteunet.create_model("lite_unet", checkpoint_path=evil)
    assert not marker.exists()
    renamed = tmp_path / "renamed" / "model.safetensors"
    renamed.parent.mkdir()
    shutil.copy(evil, renamed)
    with pytest.raises(PretrainedWeightsError, match="not a valid safetensors file"):
        liteunet.create_model(
            "lite_unet", pretrained=True, pretrained_cfg_overlay=dict(file=str(renamed.parent))
        )
    assert not marker.exists()
    # A plain tensor checkpoint the user names loads (training checkpoints are unwrapped).
    good = tmp_path / "ckpt.pth"
    torch.save(
        {
            "epoch": 3,
            "state_dict": safetensors.torch.load_file(folders["crc"] / "model.safetensors"),
        },
        good,
    )
    model = liteunet.create_model("lite_unet", checkpoint_path=good)
    assert _digest(model) == _digest(_seeded("lite_unet.crc", 1))


def test_checkpoint_path_is_checked(folders):
    with pytest.raises(PretrainedWeightsError, match="holds weights for 'lite_unet_ghost_cbam'"):
        liteunet.create_model("lite_unet", checkpoint_path=folders["ghost"] / "model.safetensors")
    model = liteunet.create_model("lite_unet_ghost_cbam", checkpoint_path=folders["ghost"])
    assert model.pretrained_cfg["file"] == str(folders["ghost"] / "model.safetensors")


# --- localization settings ----------------------------------------------------------------------


def test_localization_settings_defaults_and_checks(folders, tmp_path):
    assert load_localization_settings(liteunet.create_model("lite_unet")) == {
        "threshold": 0.5,
        "min_distance": 3,
    }
    assert load_localization_settings("lite_unet_ghost_cbam") == hub.DEFAULT_LOCALIZATION
    # saved without settings
    assert load_localization_settings(folders["ghost"]) == hub.DEFAULT_LOCALIZATION
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"architecture": "lite_unet", "localization": {"min_distance": 0}}))
    with pytest.raises(PretrainedWeightsError, match="min_distance must be an integer >= 1"):
        load_localization_settings(bad)


# --- publishing -----------------------------------------------------------------------------------


def test_push_dry_run_lists_what_would_be_uploaded(folders, capsys):
    assert (
        cli_main(["push", str(folders["crc"]), "--repo-id", "liteunet/lite_unet.crc", "--dry-run"])
        == 0
    )
    out = capsys.readouterr().out
    assert "Would upload 3 files" in out and "liteunet/lite_unet.crc (revision main)" in out
    for name in ("README.md", "config.json", "model.safetensors"):
        assert f"  {name}" in out
    assert "model.safetensors loads into lite_unet (1.3" in out


def test_folder_from_the_training_code_is_ready_to_publish(tmp_path):
    from liteunet.evaluate import LocalizationSettings
    from liteunet.model_card import write_model_card
    from liteunet.train import save_weights

    folder = tmp_path / "lite_unet.multi"
    settings = LocalizationSettings(threshold=0.4, min_distance=5, sigma=2.5)
    save_weights(_seeded("lite_unet.multi", 6), folder, settings, dict(num_classes=1, in_chans=3))
    write_model_card(folder, "lite_unet.multi")
    assert hub.validate_weights_folder(folder).files == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    model = liteunet.create_model(
        "lite_unet", pretrained=True, pretrained_cfg_overlay=dict(file=str(folder))
    )
    assert load_localization_settings(model) == settings.to_dict()


def test_push_refuses_a_folder_that_is_not_ready(folders, tmp_path, capsys):
    folder = tmp_path / "bad"
    shutil.copytree(folders["crc"], folder)
    (folder / "README.md").unlink()
    (folder / "model.safetensors").write_bytes(b"\0" * 100)
    torch.save({}, folder / "pytorch_model.bin")
    assert cli_main(["push", str(folder), "--repo-id", "org/name", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "is not ready to publish" in err
    assert "pickle files are never published" in err and "no README.md" in err
    assert (
        "model.safetensors does not load into lite_unet" in err
        and "not a valid safetensors file" in err
    )


def test_push_uploads_with_huggingface_hub(folders, monkeypatch):
    calls = []

    class FakeApi:
        def __init__(self, token=None, **kw):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))
            return type("Info", (), {"oid": "a" * 40, "commit_url": "url"})()

        def create_tag(self, repo_id, tag, revision, **kw):
            calls.append(("create_tag", repo_id, tag, revision))

    monkeypatch.setattr("liteunet.publish.HfApi", FakeApi)
    commit = hub.push_weights_folder(
        folders["crc"], "org/name", tag="v0.1.0", token="t", echo=lambda s: None
    )
    assert commit == "a" * 40
    upload = next(c[1] for c in calls if c[0] == "upload_folder")
    assert upload["repo_id"] == "org/name" and upload["allow_patterns"] == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    assert ("create_tag", "org/name", "v0.1.0", "a" * 40) in calls and ("init", "t") in calls


def test_push_parser_plugs_into_a_cli():
    parser = argparse.ArgumentParser(prog="liteunet")
    push_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["push", "w/lite_unet.multi", "--repo-id", "o/n", "--dry-run", "--tag", "v1"]
    )
    assert args.func is push_command.run and args.dry_run
    assert args.tag == "v1" and args.repo_id == "o/n"


# --- the wheel ----------------------------------------------------------------------------------


def test_build_hook_without_weights_builds_without_bundle(tmp_path):
    assert _bundled.copy_bundled(tmp_path / "weights", tmp_path / "pkg") == []
    assert not (tmp_path / "pkg" / "_bundled_weights").exists()


@pytest.mark.slow
def test_wheel_carries_default_weights_and_loads_them_offline(folders, tmp_path):
    pytest.importorskip("build", reason="python -m build is needed (pip install build)")
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "liteunet",
        src / "liteunet",
        ignore=shutil.ignore_patterns("__pycache__", "_bundled_weights", "*.pyc"),
    )
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    shutil.copytree(folders["generalist"], src / "weights" / "lite_unet.generalist")
    shutil.copytree(folders["crc"], src / "weights" / "lite_unet.crc")
    # lite_unet.multi and lite_unet.ki67 left out: the wheel is built with what weights/ holds

    dist = tmp_path / "dist"
    run = dict(capture_output=True, text=True, timeout=240)
    # sdist, then the wheel from the sdist, as `python -m build` does; offline: no isolated env.
    res = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "-x", "--outdir", dist, src], **run
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    bundled = sorted(n for n in names if "/_bundled_weights/" in n)
    assert bundled == [
        f"liteunet/_bundled_weights/{tag}/{f}"
        for tag in ("lite_unet.crc", "lite_unet.generalist")
        for f in ("README.md", "config.json", "model.safetensors")
    ]
    with tarfile.open(sdist) as tar:
        in_sdist = [n for n in tar.getnames() if "/weights/" in n]
    assert any(n.endswith("weights/lite_unet.generalist/model.safetensors") for n in in_sdist)
    assert any(n.endswith("weights/lite_unet.crc/model.safetensors") for n in in_sdist)
    assert not any("lite_unet.ki67" in n for n in in_sdist)

    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", site]
    res = subprocess.run([*pip, wheel], **run)
    assert res.returncode == 0, res.stderr[-3000:]
    code = (
        "import hashlib, liteunet, timm, sys\n"
        f"assert liteunet.__file__.startswith({str(site)!r}), liteunet.__file__\n"
        "m = liteunet.create_model('lite_unet', pretrained=True)\n"
        "t = timm.create_model('lite_unet.generalist', pretrained=True)\n"
        "h = lambda sd: hashlib.sha256(b''.join(k.encode() + sd[k].contiguous().numpy().tobytes() "
        "for k in sorted(sd))).hexdigest()\n"
        "assert h(m.state_dict()) == h(t.state_dict())\n"
        "c = liteunet.create_model('lite_unet.crc', pretrained=True)\n"
        "assert c.pretrained_cfg['file'].endswith('_bundled_weights/lite_unet.crc/model.safetensors')\n"
        "print(h(m.state_dict()))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHON"))}
    env.update(
        PYTHONPATH=str(site),
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "empty-home"),
        HF_ENDPOINT="http://127.0.0.1:9",
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, **run)
    assert res.returncode == 0, res.stderr[-3000:]
    expected = _seeded("lite_unet.generalist", 7).state_dict()
    digest = hashlib.sha256(
        b"".join(k.encode() + expected[k].contiguous().numpy().tobytes() for k in sorted(expected))
    )
    assert res.stdout.strip() == digest.hexdigest()
    assert res.stderr == ""  # the bundled copy is the weights asked for: nothing to warn about
