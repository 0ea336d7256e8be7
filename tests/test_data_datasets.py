"""load_dataset's root resolution, errors and split files, without the real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

import liteunet
from liteunet.data import (
    DATASET_ENV_VAR,
    class_names,
    dataset_groups,
    default_root,
    list_datasets,
    load_dataset,
    read_split_file,
    resolve_root,
)
from liteunet.data.datasets import SPLIT_DIR


def _fake_crc(root: Path, split: str, names: list[str]) -> None:
    for name in names:
        folder = root / "crc" / split / name
        folder.mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / f"{name}.png")
        scipy.io.savemat(folder / f"{name}_detection.mat", {"detection": np.array([[1.0, 2.0]])})


def test_load_dataset_with_root_argument_and_natural_order(tmp_path):
    _fake_crc(tmp_path, "train", ["img10", "img2", "img1"])
    samples = load_dataset("crc", "train", root=tmp_path)
    assert [s.name for s in samples] == ["img1", "img2", "img10"]
    assert samples[0].image_path == tmp_path / "crc" / "train" / "img1" / "img1.png"
    # The .mat files are MATLAB's, 1-based: (1, 2) is the centre of pixel (0, 1).
    np.testing.assert_array_equal(samples[0].points, [[0.0, 1.0]])


def test_root_from_environment_variable(tmp_path, monkeypatch):
    _fake_crc(tmp_path, "validation", ["img7"])
    monkeypatch.setenv(DATASET_ENV_VAR, str(tmp_path))
    assert default_root() == tmp_path and resolve_root() == tmp_path
    assert [s.name for s in load_dataset("crc", "validation")] == ["img7"]


def test_default_root_is_beside_the_repo(monkeypatch):
    monkeypatch.delenv(DATASET_ENV_VAR, raising=False)
    repo_root = Path(liteunet.__file__).resolve().parents[1]
    assert default_root() == (repo_root.parent / "shared" / "datasets").resolve()


def test_missing_root_says_where_and_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv(DATASET_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=rf"nowhere.*{DATASET_ENV_VAR}="):
        load_dataset("crc", "train")
    with pytest.raises(FileNotFoundError, match="root argument"):
        resolve_root(tmp_path / "also_nowhere")


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing: .*bcdata"):
        load_dataset("bcdata", "train", root=tmp_path)


def test_unknown_name_and_split(tmp_path):
    with pytest.raises(ValueError, match="known:.*crc"):
        load_dataset("mnist", "train", root=tmp_path)
    with pytest.raises(ValueError, match="validation"):
        load_dataset("crc", "test", root=tmp_path)


def test_class_names():
    assert list_datasets() == ["adi", "bbbc039", "bcdata", "crc", "dsb2018", "mbm", "vgg_cells"]
    assert class_names("bcdata") == ("positive", "negative")
    assert all(class_names(n) == ("cell",) for n in list_datasets() if n != "bcdata")


@pytest.mark.parametrize("name, sizes", [("vgg_cells", (100, 100)), ("mbm", (32, 12)),
                                         ("adi", (150, 50))])
def test_committed_split_files(name, sizes):
    train = read_split_file(SPLIT_DIR / f"{name}_train.txt")
    validation = read_split_file(SPLIT_DIR / f"{name}_validation.txt")
    assert (len(train), len(validation)) == sizes
    assert not set(train) & set(validation) and len(set(train)) == len(train)


def test_read_split_file_skips_comments(tmp_path):
    (tmp_path / "s.txt").write_text("# header\n\na  # trailing\nb\n")
    assert read_split_file(tmp_path / "s.txt") == ["a", "b"]
    with pytest.raises(FileNotFoundError):
        read_split_file(tmp_path / "none.txt")


def _fake_dsb2018(root: Path, groups: dict[str, str], validation: list[str]) -> None:
    base = root / "dsb2018"
    (base / "images").mkdir(parents=True)
    (base / "points").mkdir()
    for stem in groups:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(base / "images" / f"{stem}.png")
        (base / "points" / f"{stem}.csv").write_text("x,y,diameter\n3,4,5\n")
    (base / "train.txt").write_text("".join(f"{s}\n" for s in groups if s not in validation))
    (base / "validation.txt").write_text("".join(f"{s}\n" for s in validation))
    (base / "manifest.csv").write_text("stem,id,group\n" + "".join(f"{s},id{s},{g}\n" for s, g in groups.items()))


def test_one_acquisition_group_of_a_set(tmp_path):
    _fake_dsb2018(tmp_path, {"a": "fluo", "b": "tissue", "c": "tissue", "d": "fluo"}, validation=["d"])
    assert dataset_groups("dsb2018", tmp_path) == {"a": "fluo", "b": "tissue", "c": "tissue", "d": "fluo"}
    assert [s.name for s in load_dataset("dsb2018:tissue", "train", tmp_path)] == ["b", "c"]
    assert [s.name for s in load_dataset("dsb2018:fluo", "validation", tmp_path)] == ["d"]
    assert [s.name for s in load_dataset("dsb2018", "train", tmp_path)] == ["a", "b", "c"]
    assert class_names("dsb2018:tissue") == ("cell",)
    with pytest.raises(ValueError, match=r"no group 'h_and_e'; its groups: \['fluo', 'tissue'\]"):
        load_dataset("dsb2018:h_and_e", "train", tmp_path)


def test_a_set_without_groups_says_so(tmp_path):
    _fake_crc(tmp_path, "train", ["img1"])
    assert dataset_groups("crc", tmp_path) == {}
    with pytest.raises(ValueError, match="records no groups"):
        load_dataset("crc:anything", "train", tmp_path)
    with pytest.raises(ValueError, match="unknown data set 'cells:fluo'"):
        load_dataset("cells:fluo", "train", tmp_path)
