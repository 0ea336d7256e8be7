"""Readers for point annotations in the formats cell-localization data sets use.

Every reader returns ``(points, labels)``: ``points`` a float64 array of shape (N, 2) holding
(x, y) = (column, row) pixel coordinates, (0, 0) the centre of the top-left pixel, and
``labels`` an int64 array of shape (N,) with the class index of each point (0 for one-class
data). A file with no cells gives arrays of shape (0, 2) and (0,).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from .io import _check_file, read_image

__all__ = [
    "BCDATA_CLASS_NAMES",
    "read_bcdata_points",
    "read_mat_points",
    "read_label_mask_centroids",
    "read_dot_map",
    "read_csv_points",
]

PathLike = str | os.PathLike

#: BCData's two classes, in label order: label 0 = positive (brown), 1 = negative (blue).
BCDATA_CLASS_NAMES: tuple[str, str] = ("positive", "negative")


def _as_points(xy: np.ndarray, source: Path) -> np.ndarray:
    """Return ``xy`` as float64 (N, 2), accepting an empty array of any shape."""
    xy = np.asarray(xy)
    if xy.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"{source}: expected point coordinates of shape (N, 2), got {xy.shape}")
    xy = xy.astype(np.float64)
    if not np.isfinite(xy).all():
        raise ValueError(f"{source}: point coordinates hold NaN or infinity")
    return xy


def _import_h5py():
    try:
        import h5py
    except ImportError as err:
        raise ImportError(
            'reading BCData .h5 annotations needs h5py: pip install "liteunet[data]"'
        ) from err
    return h5py


def read_bcdata_points(
    path: PathLike,
    name: str | None = None,
    class_names: Sequence[str] = BCDATA_CLASS_NAMES,
) -> tuple[np.ndarray, np.ndarray]:
    """Read the points of one BCData image (Ki-67, positive and negative tumour cells).

    BCData stores ``images/<split>/N.png`` and one HDF5 file per class,
    ``annotations/<split>/<class>/N.h5``, whose dataset ``"coordinates"`` holds (x, y) integers.
    Needs the optional ``h5py`` (``pip install "liteunet[data]"``).

    Args:
        path: the image ``.../images/<split>/N.png``, or the annotation folder
            ``.../annotations/<split>`` together with ``name``.
        name: the image stem (``"N"``) when ``path`` is the annotation folder.
        class_names: class sub-folders in label order; label ``i`` is ``class_names[i]``.

    Returns:
        ``(points, labels)``: points float64 (N, 2) as (x, y) pixel coordinates; labels int64
        (N,), 0 = positive, 1 = negative with the default ``class_names``.

    Raises:
        FileNotFoundError: an annotation file is missing.
        ValueError: the layout is not BCData's, or a file has no ``"coordinates"``.
        ImportError: h5py is not installed.

    Example:
        >>> pts, lab = read_bcdata_points("bcdata/images/train/0.png")  # doctest: +SKIP
        >>> int((lab == 0).sum()), int((lab == 1).sum())  # positive, negative  # doctest: +SKIP
        (32, 106)
    """
    path = Path(path)
    if name is None:
        if path.is_dir():
            raise ValueError(f"{path} is a folder: pass name= (the image stem) as well")
        split_dir = path.parent
        if split_dir.parent.name != "images":
            raise ValueError(
                f"{path} is not in BCData's layout images/<split>/N.png, so its annotation "
                "folder cannot be found; pass the annotation folder and name= instead"
            )
        ann_dir = split_dir.parent.parent / "annotations" / split_dir.name
        name = path.stem
    else:
        ann_dir = path
    h5py = _import_h5py()
    all_points, all_labels = [], []
    for label, cls in enumerate(class_names):
        h5_path = _check_file(ann_dir / cls / f"{name}.h5", what="BCData annotation")
        try:
            with h5py.File(h5_path, "r") as f:
                if "coordinates" not in f:
                    raise ValueError(
                        f"{h5_path} has no 'coordinates' dataset (keys: {sorted(f.keys())})"
                    )
                xy = f["coordinates"][()]
        except OSError as err:
            raise ValueError(f"{h5_path} is not a readable HDF5 file ({err})") from err
        pts = _as_points(xy, h5_path)
        all_points.append(pts)
        all_labels.append(np.full(len(pts), label, dtype=np.int64))
    return np.concatenate(all_points), np.concatenate(all_labels)


def read_mat_points(path: PathLike, key: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read (x, y) points from a MATLAB ``.mat`` file (e.g. CRCHistoPhenotypes).

    CRC stores ``imgN_detection.mat`` with key ``"detection"`` and per-class files
    ``imgN_<class>.mat`` whose key is the class name. Without ``key`` the only variable in the
    file is used, or else the one named after the part of the file stem after the last ``_``.
    The coordinates are returned as stored (CRC's are float, 0 <= x, y <= 500 on its 500x500
    images).

    Args:
        path: the ``.mat`` file (MATLAB v5/v7; v7.3 files are HDF5 and not supported).
        key: the variable holding the (N, 2) coordinates.

    Returns:
        ``(points, labels)``: points float64 (N, 2) as (x, y) pixel coordinates; labels int64
        (N,) of zeros.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: not a readable ``.mat`` file, the key is missing or ambiguous, or the
            variable is not (N, 2).

    Example:
        >>> pts, _ = read_mat_points("crc/train/img1/img1_detection.mat")  # doctest: +SKIP
        >>> pts.shape  # doctest: +SKIP
        (29, 2)
    """
    import scipy.io

    path = _check_file(path, what="MATLAB annotation")
    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError as err:  # scipy's message for v7.3 (HDF5) files
        raise ValueError(f"{path} is a MATLAB v7.3 (HDF5) file, which is not supported") from err
    except Exception as err:  # scipy raises ValueError/TypeError/OSError for non-mat bytes
        raise ValueError(f"{path} is not a readable MATLAB .mat file ({err})") from err
    variables = [k for k in mat if not k.startswith("__")]
    if key is None:
        guess = path.stem.rsplit("_", 1)[-1]
        if len(variables) == 1:
            key = variables[0]
        elif guess in variables:
            key = guess
        else:
            raise ValueError(f"{path} holds several variables {variables}: pass key=")
    if key not in mat:
        raise ValueError(f"{path} has no variable {key!r} (variables: {variables})")
    pts = _as_points(mat[key], path)
    return pts, np.zeros(len(pts), dtype=np.int64)


def read_label_mask_centroids(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Turn an instance label image into one point per instance, at its centroid.

    This is how the Lite-UNet paper turns segmentation data into point annotations. Pixel value
    0 is background and each other value is one instance (an instance split into several
    pieces still gives one point, the centroid of all its pixels). Points are ordered by
    instance id.

    Args:
        path: an integer label image (e.g. BBBC039's uint16 ``labels/NAME.png``).

    Returns:
        ``(points, labels)``: points float64 (N, 2) as (x, y) pixel coordinates, N = number of
        distinct non-zero values; labels int64 (N,) of zeros.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: not an image, or not a single-channel integer image.

    Example:
        >>> pts, _ = read_label_mask_centroids("bbbc039/labels/NAME.png")  # doctest: +SKIP
    """
    mask = read_image(path)
    if mask.ndim != 2 or not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_):
        raise ValueError(
            f"{path}: expected a single-channel integer label image, got dtype {mask.dtype} "
            f"and shape {mask.shape}"
        )
    if mask.size and mask.min() < 0:
        raise ValueError(f"{path}: label image holds negative values")
    # Per-label pixel count and coordinate sums in one pass each: the same centroids as
    # scipy.ndimage.center_of_mass, without its per-label overhead (BBBC039 has ~120 labels).
    flat = mask.ravel().astype(np.intp)
    rows, cols = np.indices(mask.shape).reshape(2, -1)
    counts = np.bincount(flat)
    ids = np.flatnonzero(counts)
    ids = ids[ids != 0]
    if len(ids) == 0:
        return np.zeros((0, 2), dtype=np.float64), np.zeros(0, dtype=np.int64)
    x = np.bincount(flat, weights=cols)[ids] / counts[ids]
    y = np.bincount(flat, weights=rows)[ids] / counts[ids]
    return np.stack([x, y], axis=1), np.zeros(len(ids), dtype=np.int64)


def read_dot_map(
    path: PathLike, color: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read a dot-annotation image: each marked pixel is one cell centre.

    Without ``color`` the file must be a binary / grey mask (e.g. MBM's 1-bit
    ``*_dots_*.png``) and every non-zero pixel is a centre. With ``color`` the file is an RGB(A)
    image and every pixel exactly equal to ``color`` is a centre (e.g. VGG cells' pure red
    ``(255, 0, 0)`` dots). Points are ordered row by row.

    Args:
        path: the dot image.
        color: the marker colour, one value per channel of the image (alpha ignored).

    Returns:
        ``(points, labels)``: points float64 (N, 2) as (x, y) pixel coordinates; labels int64
        (N,) of zeros.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: not an image, a colour image without ``color``, or ``color`` of the wrong
            length.

    Example:
        >>> pts, _ = read_dot_map("vgg_cells/001dots.png", color=(255, 0, 0))  # doctest: +SKIP
    """
    img = read_image(path)
    if color is None:
        if img.ndim != 2:
            raise ValueError(
                f"{path} is a colour image ({img.shape[-1]} channels): pass color=(r, g, b) "
                "to say which pixel colour marks a cell"
            )
        marked = img != 0
    else:
        if img.ndim == 2:
            img = img[..., None]
        if len(color) not in (img.shape[-1], min(img.shape[-1], 3)):
            raise ValueError(
                f"{path}: color={tuple(color)} has {len(color)} values but the image has "
                f"{img.shape[-1]} channel(s)"
            )
        marked = np.all(img[..., : len(color)] == np.asarray(color), axis=-1)
    rows, cols = np.nonzero(marked)
    xy = np.stack([cols, rows], axis=1).astype(np.float64)
    return xy.reshape(-1, 2), np.zeros(len(xy), dtype=np.int64)


def read_csv_points(
    path: PathLike, class_names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read points from a CSV file with a header naming the columns ``x`` and ``y``.

    An optional ``label`` (or ``class``) column gives each point's class: an integer index, or
    a class name when ``class_names`` is given (its position is the label). Column names are
    case-insensitive; other columns are ignored. Without a class column all labels are 0.

    Args:
        path: the CSV file.
        class_names: names that class-column values may use, in label order.

    Returns:
        ``(points, labels)``: points float64 (N, 2) as (x, y) pixel coordinates; labels int64
        (N,).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: no ``x``/``y`` header, a value that is not a number, or a class value
            that is neither an integer nor one of ``class_names``.

    Example:
        >>> pts, lab = read_csv_points("adi/points/0-11900_GTEX-13QJC.csv")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"points file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: tolerate Excel's BOM
        # Lines starting with '#' are comments (liteunet's own CSVs say what made them there).
        reader = csv.reader(line for line in f if not line.startswith("#"))
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty: expected a header line 'x,y'")
        columns = [h.strip().lower() for h in header]
        if "x" not in columns or "y" not in columns:
            raise ValueError(f"{path}: header {header} must name the columns 'x' and 'y'")
        ix, iy = columns.index("x"), columns.index("y")
        class_col = next((c for c in ("label", "class") if c in columns), None)
        ic = columns.index(class_col) if class_col else None
        xy, labels = [], []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not v.strip() for v in row):
                continue
            try:
                xy.append((float(row[ix]), float(row[iy])))
            except (ValueError, IndexError) as err:
                raise ValueError(f"{path} line {line_no}: cannot read x,y from {row}") from err
            if ic is not None:
                labels.append(_parse_label(row[ic] if ic < len(row) else "", class_names,
                                           f"{path} line {line_no}"))
    pts = _as_points(np.asarray(xy, dtype=np.float64), path)
    lab = np.asarray(labels, dtype=np.int64) if ic is not None else np.zeros(len(pts), np.int64)
    return pts, lab


def _parse_label(value: str, class_names: Sequence[str] | None, where: str) -> int:
    value = value.strip()
    if class_names is not None and value in class_names:
        return list(class_names).index(value)
    try:
        return int(value)
    except ValueError:
        known = f" or one of {list(class_names)}" if class_names else ""
        raise ValueError(
            f"{where}: class value {value!r} is not an integer{known}"
            + ("" if class_names else "; pass class_names= to map names to labels")
        ) from None
