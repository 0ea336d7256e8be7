"""``liteunet localize`` outputs: names that never collide, the overwrite rule, inputs and
outputs kept apart, and checks before any compute (a tiny random model: names, not accuracy)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liteunet.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from test_localize import tiny_model, weights_folder  # noqa: F401,E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _image(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((32, 32), value, np.uint8)
    arr[10:14, 10:14] = 255
    Image.fromarray(arr).save(path)
    return path


def _run(weights, inputs, out, *extra) -> int:
    args = ["localize", *map(str, inputs), "-o", str(out), "--model", str(weights)]
    return main(args + ["--device", "cpu", *extra])


def _summary(out: Path) -> list[dict[str, str]]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_output_names_never_collide(weights_folder, tmp_path):
    src = tmp_path / "in"
    for name, value in [("summary.png", 1), ("x.png", 2), ("x_2.png", 3), ("b.png", 4)]:
        _image(src / name, value)
    _image(src / "x.tif", 5)
    out = tmp_path / "out"
    assert _run(weights_folder, [src], out, "--format", "json,csv") == 0
    rows = _summary(out)
    assert len(rows) == 5 and {Path(r["image"]).name for r in rows} == {
        "summary.png", "x.png", "x_2.png", "b.png", "x.tif"
    }
    for row in rows:  # each points file holds the image that summary.csv says it does
        files = row["outputs"].split("; ")
        assert len(files) == 2 and all((out / f).is_file() for f in files)
        assert json.loads((out / files[0]).read_text())["image"] == row["image"]
    names = sorted(f for r in rows for f in r["outputs"].split("; "))
    assert "x_2.json" in names and "x_tif.json" in names and "summary_png.csv" in names
    assert len(names) == len(set(names)) == 10


def test_existing_outputs_are_kept_unless_overwrite(weights_folder, tmp_path, capsys):
    src, out = _image(tmp_path / "in" / "a.png", 1).parent, tmp_path / "out"
    assert _run(weights_folder, [src], out) == 0
    (out / "a.csv").write_text("mine")
    capsys.readouterr()
    assert _run(weights_folder, [src], out) == 1
    err = capsys.readouterr().err
    assert "exist already" in err and "a.csv" in err and "--overwrite" in err
    assert (out / "a.csv").read_text() == "mine"
    assert _run(weights_folder, [src], out, "--skip-existing") == 0
    assert (out / "a.csv").read_text() == "mine" and _summary(out)[0]["status"] == "skipped"
    assert _run(weights_folder, [src], out, "--overwrite") == 0
    assert (out / "a.csv").read_text().splitlines()[1].startswith("x,y")  # after the provenance line


def test_links_in_the_output_folder_are_not_written_through(weights_folder, tmp_path):
    src, out = _image(tmp_path / "in" / "a.png", 1).parent, tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (out / "a.csv").symlink_to(victim)
    assert _run(weights_folder, [src], out) == 1  # an existing output: refused
    assert _run(weights_folder, [src], out, "--overwrite") == 0
    assert victim.read_text() == "keep" and not (out / "a.csv").is_symlink()


def test_inputs_and_outputs_are_kept_apart(weights_folder, tmp_path, capsys):
    src = _image(tmp_path / "in" / "a.png", 1).parent
    assert _run(weights_folder, [src], src) == 1
    assert "also an input folder" in capsys.readouterr().err
    out = src / "out"
    assert _run(weights_folder, [f"{src}/**/*.png"], out, "--overlay") == 0
    assert (out / "a_overlay.png").is_file()
    capsys.readouterr()
    assert _run(weights_folder, [f"{src}/**/*.png"], out, "--overlay", "--overwrite") == 0
    captured = capsys.readouterr()
    assert "inside the output folder" in captured.err and "localized 1 of 1" in captured.out


def test_output_folder_is_checked_before_any_compute(weights_folder, tmp_path, capsys, monkeypatch):
    src = _image(tmp_path / "in" / "a.png", 1).parent
    blocker = tmp_path / "file"
    blocker.write_text("")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr("liteunet.localization.Localizer", no_model)  # what the command imports when it runs
    assert _run(weights_folder, [src], blocker / "out") == 1
    assert "cannot create the output folder" in capsys.readouterr().err


def test_long_file_names_get_every_output(weights_folder, tmp_path):
    name = "n" * 246 + ".png"
    src, out = _image(tmp_path / "in" / name, 1).parent, tmp_path / "out"
    assert _run(weights_folder, [src], out, "--overlay", "--heatmap") == 0
    files = _summary(out)[0]["outputs"].split("; ")
    assert len(files) == 3 and all((out / f).is_file() for f in files)
    assert all(len(f) <= 255 for f in files)
