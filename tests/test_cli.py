"""The liteunet command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from liteunet.cli import build_parser, main


def test_info_prints_paper_sizes(capsys):
    assert main(["info", "lite_unet"]) == 0
    out = capsys.readouterr().out
    assert "1.32 M" in out and "17.43 at 3x512x512" in out
    assert "pretrained:" in out


def test_info_of_a_tag_shows_its_stored_settings(capsys):
    from liteunet.hub import load_localization_settings

    stored = load_localization_settings("lite_unet.multi")  # the bundled default weights, offline too
    assert main(["info", "lite_unet.multi"]) == 0
    out = capsys.readouterr().out
    assert f"threshold / min distance {stored['threshold']} / {stored['min_distance']}" in out
    mbm = stored["tuned_for"]["mbm"]
    assert f"mbm ({mbm['threshold']} / {mbm['min_distance']})" in out
    assert main(["info", "lite_unet.multi", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["localization"] == json.loads(json.dumps(stored))


def test_info_json_and_size(capsys):
    assert main(["info", "unet", "--json", "--size", "256"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 34_527_041
    assert info["macs"] == pytest.approx(261.389e9 / 4, rel=1e-3)  # MACs scale with the pixel count
    assert info["input_size"] == [3, 256, 256]


def test_list_and_unknown_model(capsys):
    assert main(["list", "lite_unet*"]) == 0
    assert capsys.readouterr().out.split() == ["lite_unet", "lite_unet_ghost_cbam", "lite_unet_ghost_cbam_ga"]
    assert main(["info", "no_such_model"]) == 1
    assert "unknown model 'no_such_model'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["list", "info", "train", "eval"])
def test_every_command_explains_its_options(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: liteunet " + command in capsys.readouterr().out


def test_entry_point_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "liteunet", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("liteunet ")
