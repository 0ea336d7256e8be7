"""Point-annotation readers, on tiny files written to tmp_path (the real files: test_data_real)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from liteunet.data import (
    read_bcdata_points,
    read_csv_points,
    read_dot_map,
    read_label_mask_centroids,
    read_mat_points,
)


def _check_points(points, labels, n):
    assert points.dtype == np.float64 and points.shape == (n, 2)
    assert labels.dtype == np.int64 and labels.shape == (n,)


# --- BCData ---------------------------------------------------------------------------------


def _write_bcdata(root, split="train", name="3", pos=((10, 2), (5, 7)), neg=((1, 30),)):
    h5py = pytest.importorskip("h5py")
    (root / "images" / split).mkdir(parents=True)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / "images" / split / f"{name}.png")
    for cls, xy in (("positive", pos), ("negative", neg)):
        folder = root / "annotations" / split / cls
        folder.mkdir(parents=True)
        with h5py.File(folder / f"{name}.h5", "w") as f:
            f["coordinates"] = np.asarray(xy, dtype=np.int64).reshape(-1, 2)
    return root / "images" / split / f"{name}.png"


def test_bcdata_from_image_path(tmp_path):
    image = _write_bcdata(tmp_path)
    points, labels = read_bcdata_points(image)
    _check_points(points, labels, 3)
    np.testing.assert_array_equal(points, [[10, 2], [5, 7], [1, 30]])
    np.testing.assert_array_equal(labels, [0, 0, 1])  # 0 positive, 1 negative


def test_bcdata_from_annotation_dir_and_empty_class(tmp_path):
    _write_bcdata(tmp_path, pos=())
    points, labels = read_bcdata_points(tmp_path / "annotations" / "train", name="3")
    _check_points(points, labels, 1)
    assert labels.tolist() == [1]


def test_bcdata_missing_annotation(tmp_path):
    image = _write_bcdata(tmp_path)
    (tmp_path / "annotations" / "train" / "negative" / "3.h5").unlink()
    with pytest.raises(FileNotFoundError, match=r"negative.3\.h5"):
        read_bcdata_points(image)


def test_bcdata_wrong_layout(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        read_bcdata_points(tmp_path / "somewhere" / "3.png")
    with pytest.raises(ValueError, match="name="):
        read_bcdata_points(tmp_path)


def test_bcdata_h5_without_coordinates(tmp_path):
    h5py = pytest.importorskip("h5py")
    image = _write_bcdata(tmp_path)
    with h5py.File(tmp_path / "annotations" / "train" / "positive" / "3.h5", "w") as f:
        f["points"] = np.zeros((1, 2))
    with pytest.raises(ValueError, match="no 'coordinates'"):
        read_bcdata_points(image)


def test_bcdata_without_h5py_says_how_to_install(tmp_path, monkeypatch):
    image = _write_bcdata(tmp_path)
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail
    with pytest.raises(ImportError, match=r'pip install "liteunet\[data\]"'):
        read_bcdata_points(image)


# --- MATLAB ---------------------------------------------------------------------------------


def test_mat_points_key_from_stem_and_explicit(tmp_path):
    xy = np.array([[1.5, 2.25], [499.0, 3.0]])
    path = tmp_path / "img1_detection.mat"
    scipy.io.savemat(path, {"detection": xy, "other": np.zeros((1, 2))})
    for key in (None, "detection"):
        points, labels = read_mat_points(path, key=key)
        _check_points(points, labels, 2)
        np.testing.assert_array_equal(points, xy)


def test_mat_points_errors(tmp_path):
    path = tmp_path / "a.mat"
    scipy.io.savemat(path, {"p": np.zeros((2, 2)), "q": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="several variables"):
        read_mat_points(path)
    with pytest.raises(ValueError, match="no variable 'detection'"):
        read_mat_points(path, key="detection")
    scipy.io.savemat(path, {"p": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        read_mat_points(path)
    (tmp_path / "bad.mat").write_text("not a mat file at all")
    with pytest.raises(ValueError, match="not a readable MATLAB"):
        read_mat_points(tmp_path / "bad.mat")
    with pytest.raises(FileNotFoundError):
        read_mat_points(tmp_path / "missing.mat")


def test_mat_points_empty(tmp_path):
    scipy.io.savemat(tmp_path / "e.mat", {"detection": np.zeros((0, 2))})
    _check_points(*read_mat_points(tmp_path / "e.mat"), 0)


# --- instance label masks ---------------------------------------------------------------------


def test_label_mask_centroids_hand_computed_non_square(tmp_path):
    mask = np.zeros((6, 10), np.uint16)  # 6 rows, 10 columns: a swap would be visible
    mask[1:3, 7:10] = 2  # rows 1-2, cols 7-9 -> centre (x=8, y=1.5)
    mask[4, 0] = 1  # single pixel at row 4, col 0 -> (x=0, y=4)
    mask[0, 0] = 1000  # large id, one pixel -> (0, 0)
    path = tmp_path / "labels.png"
    Image.fromarray(mask).save(path)
    points, labels = read_label_mask_centroids(path)
    _check_points(points, labels, 3)
    np.testing.assert_allclose(points, [[0.0, 4.0], [8.0, 1.5], [0.0, 0.0]])  # by id


def test_label_mask_empty_and_bad(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "empty.png")
    _check_points(*read_label_mask_centroids(tmp_path / "empty.png"), 0)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="single-channel integer"):
        read_label_mask_centroids(tmp_path / "rgb.png")


# --- dot maps -------------------------------------------------------------------------------


def test_dot_map_binary(tmp_path):
    dots = np.zeros((5, 8), bool)
    dots[1, 6] = dots[3, 2] = True
    Image.fromarray(dots).save(tmp_path / "dots.png")  # mode "1", as MBM's
    points, labels = read_dot_map(tmp_path / "dots.png")
    _check_points(points, labels, 2)
    np.testing.assert_array_equal(points, [[6, 1], [2, 3]])


def test_dot_map_red_pixels_only(tmp_path):
    img = np.zeros((5, 8, 3), np.uint8)
    img[0, 4] = (255, 0, 0)
    img[2, 1] = (255, 0, 0)
    img[4, 4] = (254, 0, 0)  # not exactly red
    img[3, 3] = (255, 0, 1)
    Image.fromarray(img).save(tmp_path / "dots.png")
    points, _ = read_dot_map(tmp_path / "dots.png", color=(255, 0, 0))
    np.testing.assert_array_equal(points, [[4, 0], [1, 2]])
    with pytest.raises(ValueError, match="color="):
        read_dot_map(tmp_path / "dots.png")
    with pytest.raises(ValueError, match="channel"):
        read_dot_map(tmp_path / "dots.png", color=(255, 0))


# --- CSV ------------------------------------------------------------------------------------


def test_csv_points_plain_and_labelled(tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n63.00,2.00\n27.5,3\n\n")
    points, labels = read_csv_points(tmp_path / "a.csv")
    _check_points(points, labels, 2)
    np.testing.assert_array_equal(points, [[63, 2], [27.5, 3]])
    assert labels.tolist() == [0, 0]
    (tmp_path / "b.csv").write_text("Y,X,Label,score\n1,2,1,0.5\n3,4,0,0.9\n")
    points, labels = read_csv_points(tmp_path / "b.csv")
    np.testing.assert_array_equal(points, [[2, 1], [4, 3]])
    assert labels.tolist() == [1, 0]
    (tmp_path / "c.csv").write_text("x,y,class\n1,2,negative\n3,4,positive\n")
    _, labels = read_csv_points(tmp_path / "c.csv", class_names=("positive", "negative"))
    assert labels.tolist() == [1, 0]


def test_csv_points_header_only(tmp_path):
    (tmp_path / "e.csv").write_text("x,y\n")
    _check_points(*read_csv_points(tmp_path / "e.csv"), 0)


def test_csv_points_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_csv_points(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_csv_points(tmp_path / "empty.csv")
    (tmp_path / "hdr.csv").write_text("col,row\n1,2\n")
    with pytest.raises(ValueError, match="'x' and 'y'"):
        read_csv_points(tmp_path / "hdr.csv")
    (tmp_path / "num.csv").write_text("x,y\n1,abc\n")
    with pytest.raises(ValueError, match="line 2"):
        read_csv_points(tmp_path / "num.csv")
    (tmp_path / "nan.csv").write_text("x,y\n1,nan\n")
    with pytest.raises(ValueError, match="NaN"):
        read_csv_points(tmp_path / "nan.csv")
    (tmp_path / "cls.csv").write_text("x,y,class\n1,2,tumour\n")
    with pytest.raises(ValueError, match="class_names="):
        read_csv_points(tmp_path / "cls.csv")
