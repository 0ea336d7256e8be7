"""The project's seven point-annotated cell data sets, and a loader for users' own folders.

``load_dataset(name, split)`` returns a list of :class:`Sample` (image path plus its points)
for one split. Images are not read here: :class:`PointDataset` reads and caches them. The data
sets without an official split (``mbm``, ``vgg_cells``, ``adi``) use fixed split files shipped
in ``liteunet/data/splits/`` (made by ``liteunet.data._make_splits``).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .annotations import (
    BCDATA_CLASS_NAMES,
    read_bcdata_points,
    read_csv_points,
    read_dot_map,
    read_label_mask_centroids,
    read_mat_points,
)

__all__ = [
    "load_split",
    "split_label",
    "Sample",
    "DATASET_ENV_VAR",
    "SPLITS",
    "list_datasets",
    "class_names",
    "dataset_groups",
    "default_root",
    "resolve_root",
    "load_dataset",
    "load_folder",
    "read_split_file",
    "evenly_spaced",
]

#: Environment variable naming the folder that holds the data sets.
DATASET_ENV_VAR = "LITEUNET_DATASETS"
#: Split names every data set has.
SPLITS: tuple[str, str] = ("train", "validation")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SPLIT_DIR = Path(__file__).resolve().parent / "splits"


@dataclass(eq=False)
class Sample:
    """One annotated image.

    Attributes:
        image_path: the image file.
        points: (N, 2) float64 cell centres as (x, y) = (column, row) pixel coordinates.
        labels: (N,) int64 class index per point (see :func:`class_names`).
        name: an identifier, unique within its data set (usually the file stem).
    """

    image_path: Path
    points: np.ndarray
    labels: np.ndarray
    name: str

    def __post_init__(self) -> None:
        self.image_path = Path(self.image_path)
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.points) != len(self.labels):
            raise ValueError(
                f"sample {self.name!r}: {len(self.points)} points but {len(self.labels)} labels"
            )


def _natural_key(text: str) -> list:
    """Sort key that orders img2 before img10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def default_root() -> Path:
    """The folder holding the shared data sets.

    ``$LITEUNET_DATASETS`` when set, else ``<repo root>/../shared/datasets`` where the repo root
    is the folder containing the ``liteunet`` package.

    Returns:
        The folder (it may not exist; :func:`load_dataset` checks).

    Example:
        >>> default_root()  # doctest: +SKIP
        PosixPath('/work/shared/datasets')
    """
    env = os.environ.get(DATASET_ENV_VAR)
    if env:
        return Path(env).expanduser()
    repo_root = Path(__file__).resolve().parents[2]
    return (repo_root.parent / "shared" / "datasets").resolve()


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The data set folder to use, checked to exist.

    Args:
        root: an explicit folder; ``None`` for :func:`default_root`.

    Returns:
        The folder.

    Raises:
        FileNotFoundError: the folder does not exist; the message says where it looked, why
            (argument, environment variable or default) and how to point elsewhere.

    Example:
        >>> resolve_root()  # doctest: +SKIP
        PosixPath('/work/shared/datasets')
    """
    if root is not None:
        path, source = Path(root).expanduser(), "the root argument"
    elif os.environ.get(DATASET_ENV_VAR):
        path, source = default_root(), f"${DATASET_ENV_VAR}"
    else:
        path, source = default_root(), "the default <repo>/../shared/datasets"
    if not path.is_dir():
        raise FileNotFoundError(
            f"data set folder not found: looked in {path} (from {source}); set "
            f"{DATASET_ENV_VAR}=/path/to/datasets or pass root="
        )
    return path


def read_split_file(path: str | os.PathLike) -> list[str]:
    """Read a split file: one sample name a line; blank lines and ``#`` comments ignored.

    Args:
        path: the text file.

    Returns:
        The names in file order.

    Example:
        >>> read_split_file(SPLIT_DIR / "vgg_cells_train.txt")[:2]
        ['001', '002']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"expected data set file or folder is missing: {path}")
    return path


#: CRCHistoPhenotypes' points come from MATLAB, 1-based: (1, 1) is the centre of the first
#: pixel. Measured on the images, the haematoxylin centroid around each raw point sits 0.46 px
#: left and 0.36 px above it, and 0.09 / 0.03 px from it after subtracting this.
CRC_ORIGIN = 1.0


def _load_crc(root: Path, split: str) -> list[Sample]:
    split_dir = _need(root / "crc" / split)
    samples = []
    for folder in sorted((p for p in split_dir.iterdir() if p.is_dir()),
                         key=lambda p: _natural_key(p.name)):
        points, labels = read_mat_points(folder / f"{folder.name}_detection.mat", "detection")
        points = points - CRC_ORIGIN
        samples.append(Sample(_need(folder / f"{folder.name}.png"), points, labels, folder.name))
    return samples


def _load_bcdata(root: Path, split: str) -> list[Sample]:
    image_dir = _need(root / "bcdata" / "images" / split)
    samples = []
    for image in sorted(image_dir.glob("*.png"), key=lambda p: _natural_key(p.stem)):
        points, labels = read_bcdata_points(image)
        samples.append(Sample(image, points, labels, image.stem))
    return samples


def _load_bbbc039(root: Path, split: str) -> list[Sample]:
    base = root / "bbbc039"
    samples = []
    for name in read_split_file(_need(base / f"{split}.txt")):
        points, labels = read_label_mask_centroids(_need(base / "labels" / f"{name}.png"))
        samples.append(Sample(_need(base / "images" / f"{name}.png"), points, labels, name))
    return samples


def _load_mbm(root: Path, split: str) -> list[Sample]:
    base = root / "mbm"
    samples = []
    for name in read_split_file(SPLIT_DIR / f"mbm_{split}.txt"):
        # BM_GRAZ_HE_0001_01_000.png is annotated by BM_GRAZ_HE_0001_01_dots_000.png
        source, crop_index = name.rsplit("_", 1)
        points, labels = read_dot_map(_need(base / f"{source}_dots_{crop_index}.png"))
        samples.append(Sample(_need(base / f"{name}.png"), points, labels, name))
    return samples


def _load_vgg_cells(root: Path, split: str) -> list[Sample]:
    base = root / "vgg_cells"
    samples = []
    for name in read_split_file(SPLIT_DIR / f"vgg_cells_{split}.txt"):
        points, labels = read_dot_map(_need(base / f"{name}dots.png"), color=(255, 0, 0))
        samples.append(Sample(_need(base / f"{name}cell.png"), points, labels, name))
    return samples


def _load_adi(root: Path, split: str) -> list[Sample]:
    base = root / "adi"
    samples = []
    for name in read_split_file(SPLIT_DIR / f"adi_{split}.txt"):
        points, labels = read_csv_points(_need(base / "points" / f"{name}.csv"))
        samples.append(Sample(_need(base / "images" / f"{name}.jpeg"), points, labels, name))
    return samples


def _load_dsb2018(root: Path, split: str) -> list[Sample]:
    base = root / "dsb2018"
    samples = []
    for name in read_split_file(_need(base / f"{split}.txt")):
        points, labels = read_csv_points(_need(base / "points" / f"{name}.csv"))
        samples.append(Sample(_need(base / "images" / f"{name}.png"), points, labels, name))
    return samples


_LOADERS: dict[str, tuple[Callable[[Path, str], list[Sample]], tuple[str, ...]]] = {
    "crc": (_load_crc, ("cell",)),
    "bcdata": (_load_bcdata, BCDATA_CLASS_NAMES),
    "bbbc039": (_load_bbbc039, ("cell",)),
    "mbm": (_load_mbm, ("cell",)),
    "vgg_cells": (_load_vgg_cells, ("cell",)),
    "adi": (_load_adi, ("cell",)),
    "dsb2018": (_load_dsb2018, ("cell",)),
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`.

    Example:
        >>> list_datasets()
        ['adi', 'bbbc039', 'bcdata', 'crc', 'dsb2018', 'mbm', 'vgg_cells']
    """
    return sorted(_LOADERS)


def _check_name(name: str) -> str:
    base = name.partition(":")[0]
    if base not in _LOADERS:
        raise ValueError(f"unknown data set {name!r}; known: {list_datasets()}")
    return base


def dataset_groups(name: str, root: str | os.PathLike | None = None) -> dict[str, str]:
    """The acquisition group of each image of a shared set that records them (``manifest.csv``: stem, group).

    dsb2018 records its groups (``fluo_256x256``, ``tissue_256x320``, ...); the other sets none
    (an empty dict). ``"NAME:GROUP"`` in :func:`load_dataset` selects one group, so a training run
    can give it a share of its own (``--samples-per-epoch dsb2018:tissue_256x320=96``).

    Example:
        >>> sorted(set(dataset_groups("dsb2018").values()))  # doctest: +SKIP
        ['fluo_256x256', 'fluo_256x320', 'tissue_256x320']
    """
    manifest = resolve_root(root) / _check_name(name) / "manifest.csv"
    if not manifest.is_file():
        return {}
    with manifest.open(newline="") as f:
        return {row["stem"]: row["group"] for row in csv.DictReader(f) if row.get("group")}


def class_names(name: str) -> tuple[str, ...]:
    """Class names of a data set, in label order (label ``i`` is ``class_names(name)[i]``).

    Args:
        name: a name from :func:`list_datasets`.

    Returns:
        ``("cell",)`` for one-class sets, ``("positive", "negative")`` for BCData.

    Example:
        >>> class_names("bcdata")
        ('positive', 'negative')
    """
    return _LOADERS[_check_name(name)][1]


def load_dataset(
    name: str, split: str, root: str | os.PathLike | None = None
) -> list[Sample]:
    """List the annotated images of one split of a shared data set.

    Splits: ``crc`` and ``bcdata`` use their train/validation folders, ``bbbc039`` and
    ``dsb2018`` their ``train.txt``/``validation.txt``; ``vgg_cells`` takes images 1-100 as train and 101-200 as
    validation (the usual protocol), ``mbm`` and ``adi`` a fixed seeded 75/25 split that keeps
    all crops of one source slide (MBM) or donor (ADI, GTEx id) on one side.

    Args:
        name: one of :func:`list_datasets`, or ``"NAME:GROUP"`` for the images of one
            acquisition group of a set that records them (:func:`dataset_groups`), e.g.
            ``"dsb2018:tissue_256x320"``.
        split: ``"train"`` or ``"validation"``.
        root: the folder holding the data sets; default :func:`default_root`.

    Returns:
        The samples, in a fixed order; each has points (N, 2) as (x, y) pixel coordinates.

    Raises:
        ValueError: unknown name, group or split.
        FileNotFoundError: the root or a file of the data set is missing.

    Example:
        >>> train = load_dataset("crc", "train")  # doctest: +SKIP
        >>> len(train), sum(len(s.points) for s in train)  # doctest: +SKIP
        (70, 20500)
    """
    loader = _LOADERS[_check_name(name)][0]
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {list(SPLITS)}")
    samples = loader(resolve_root(root), split)
    group = name.partition(":")[2] if ":" in name else None
    if group is None:
        return samples
    groups = dataset_groups(name, root)
    if group not in set(groups.values()):
        known = sorted(set(groups.values()))
        raise ValueError(f"data set {name!r}: no group {group!r}; " + (f"its groups: {known}" if known else "it records no groups"))
    return [s for s in samples if groups.get(s.name) == group]


def load_folder(folder: str | os.PathLike) -> list[Sample]:
    """List the images of a folder of your own data, each with a CSV of its points.

    Every image (png, jpg, jpeg, tif, tiff, bmp) in ``folder`` needs a points file with the
    same stem, ``folder/NAME.csv`` or ``folder/points/NAME.csv``, read by
    :func:`read_csv_points` (header ``x,y`` and an optional integer ``label`` column).

    Args:
        folder: the folder.

    Returns:
        One sample per image, sorted by name; points (N, 2) as (x, y) pixel coordinates.

    Raises:
        FileNotFoundError: the folder is missing, holds no images, or an image has no CSV.

    Example:
        >>> samples = load_folder("my_cells/")  # doctest: +SKIP
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    images = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: _natural_key(p.name),
    )
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder}")
    samples, missing = [], []
    for image in images:
        candidates = [folder / f"{image.stem}.csv", folder / "points" / f"{image.stem}.csv"]
        csv_path = next((c for c in candidates if c.is_file()), None)
        if csv_path is None:
            missing.append(image.name)
            continue
        points, labels = read_csv_points(csv_path)
        samples.append(Sample(image, points, labels, image.stem))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FileNotFoundError(
            f"{len(missing)} image(s) in {folder} have no points file NAME.csv beside them or "
            f"in points/: {shown}"
        )
    return samples


def _is_folder(name: str) -> bool:
    return os.sep in name or Path(name).is_dir()


def load_split(name_or_folder: str, split: str, root: str | os.PathLike | None = None) -> list[Sample]:
    """One split of a shared data set (by name) or of a folder of your own images.

    A folder has no split of its own: every fifth image (in file order) is held out for
    ``validation``, the rest is ``train``; fixed, so runs stay comparable. ``"all"`` is every
    image (of a folder: a test set scored whole; of a shared set: train and validation).

    Args:
        name_or_folder: a name from :func:`list_datasets` (or ``"NAME:GROUP"``, see
            :func:`load_dataset`), or a folder for :func:`load_folder`.
        split: ``"train"``, ``"validation"`` or ``"all"``.
        root: the shared data sets' root (names only).

    Returns:
        The samples; points (N, 2) as (x, y) pixel coordinates.
    """
    if split == "all":
        if _is_folder(name_or_folder):
            return load_folder(name_or_folder)
        return [s for part in SPLITS for s in load_dataset(name_or_folder, part, root)]
    if not _is_folder(name_or_folder):
        return load_dataset(name_or_folder, split, root)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {[*SPLITS, 'all']}")
    samples = load_folder(name_or_folder)
    held_out = [s for i, s in enumerate(samples) if i % 5 == 4]
    if split == "train":
        return [s for i, s in enumerate(samples) if i % 5 != 4] or samples
    return held_out or samples[:1]


def split_label(name_or_folder: str) -> str:
    """Short name of a data set or folder, for logs and reports."""
    return Path(name_or_folder).name if _is_folder(name_or_folder) else name_or_folder


def evenly_spaced(samples: list, count: int | None) -> list:
    """At most ``count`` of ``samples``, evenly spaced, first and last included (all when ``count`` is None).

    A quick look at a split that still spans it (``liteunet eval --max-images``, object-size
    measurements), rather than its first images, which often come from one acquisition.

    Example:
        >>> evenly_spaced(list(range(10)), 3)
        [0, 4, 9]
    """
    if not count or len(samples) <= count:
        return samples
    return [samples[round(i * (len(samples) - 1) / (count - 1 or 1))] for i in range(count)]
