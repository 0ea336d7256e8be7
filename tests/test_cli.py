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


# --- start-up: the command answers --version and --help without loading torch -----------------


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["localize", "--help"], ["bench", "--help"]])
def test_version_and_help_do_not_import_torch(argv):
    """``liteunet --version`` and ``--help`` import no torch (they took ~7 s when they did)."""
    code = (
        "import sys, runpy; sys.argv = ['liteunet'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('liteunet', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('TORCH_LOADED' if 'torch' in sys.modules else 'NO_TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "NO_TORCH", out.stdout + out.stderr


def test_the_console_script_name_defers_the_zoo_and_python_gets_it_at_once():
    probe = "import sys, liteunet; print('models' in vars(liteunet), 'torch' in sys.modules)"
    as_user = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert as_user.stdout.split() == ["True", "True"]  # `import liteunet` registers the zoo in timm
    as_command = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv = ['/usr/bin/liteunet']; " + probe.replace("import sys, ", "import ")],
        capture_output=True, text=True, timeout=120,
    )
    assert as_command.stdout.split() == ["False", "False"]
    lazily = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv = ['/usr/bin/liteunet']; import liteunet, timm; "
         "print(type(liteunet.create_model('lite_unet')).__name__, 'lite_unet' in timm.list_models())"],
        capture_output=True, text=True, timeout=120,
    )
    assert lazily.stdout.split() == ["LiteUNet", "True"]


def test_parser_choices_match_the_library():
    """The command keeps a few library constants by value so that --help needs no torch."""
    from liteunet import inference, train
    from liteunet.bench import FORMS, THROUGHPUT_FORMS
    from liteunet.cli import bench as bench_cli
    from liteunet.cli import evaluate as eval_cli
    from liteunet.cli import localize as localize_cli
    from liteunet.cli import train as train_cli
    from liteunet.localization import tiling

    assert set(localize_cli.TTA_CHOICES) == set(eval_cli.TTA_CHOICES) == set(inference.TTA_MODES)
    assert (localize_cli.DEFAULT_TILE_SIZE, localize_cli.DEFAULT_OVERLAP) == (tiling.DEFAULT_TILE_SIZE, tiling.DEFAULT_OVERLAP)
    assert (localize_cli.CPU_TILE_SIZE, localize_cli.CPU_OVERLAP) == (tiling.CPU_TILE_SIZE, tiling.CPU_OVERLAP)
    assert localize_cli.SINGLE_PASS_SIDE == tiling.SINGLE_PASS_SIDE
    assert bench_cli.FORMS == FORMS and bench_cli.THROUGHPUT_FORMS == THROUGHPUT_FORMS
    assert set(train_cli.PRESET_NAMES) == set(train.PRESETS) and train_cli.CHECKPOINT_CHOICES == train.CHECKPOINT_BY
    from liteunet.teacher import TEACHER_TARGETS

    assert train_cli.TEACHER_TARGET_CHOICES == TEACHER_TARGETS
    assert set(train_cli.TEACHER_TTA_CHOICES) == set(inference.TTA_MODES)
    from liteunet.data.augment import AUGMENT_PRESETS

    assert train_cli.AUGMENT_CHOICES == AUGMENT_PRESETS
    from liteunet.wsi import BACKENDS

    assert localize_cli.SLIDE_BACKENDS == BACKENDS
    from liteunet.wsi.synthetic import LAYOUTS

    assert bench_cli.TISSUE_LAYOUTS == LAYOUTS
