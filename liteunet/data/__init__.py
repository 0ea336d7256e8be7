"""Data for cell localization: image and annotation readers, the shared data sets, location-map
targets, augmentation and a PyTorch dataset.

Points are always ``(N, 2)`` float arrays of (x, y) = (column, row) pixel coordinates, (0, 0)
the centre of the top-left pixel.
"""

from .annotations import (
    BCDATA_CLASS_NAMES,
    read_bcdata_points,
    read_csv_points,
    read_dot_map,
    read_label_mask_centroids,
    read_mat_points,
)
from .augment import (
    AugmentConfig,
    augment,
    augment_geometry,
    augment_intensity,
    center_crop,
    color_jitter,
    crop,
    hflip,
    intensity_jitter,
    random_crop,
    rot90,
    stain_jitter,
    vflip,
)
from .datasets import (
    DATASET_ENV_VAR,
    Sample,
    class_names,
    dataset_groups,
    default_root,
    evenly_spaced,
    list_datasets,
    load_dataset,
    load_folder,
    load_split,
    read_split_file,
    resolve_root,
    split_label,
)
from .io import match_channels, normalize_image, read_image
from .targets import TargetFn, gaussian_target
from .torch_dataset import PointDataset, collate

__all__ = [
    # io
    "read_image",
    "normalize_image",
    "match_channels",
    # annotations
    "BCDATA_CLASS_NAMES",
    "read_bcdata_points",
    "read_mat_points",
    "read_label_mask_centroids",
    "read_dot_map",
    "read_csv_points",
    # datasets
    "Sample",
    "DATASET_ENV_VAR",
    "list_datasets",
    "class_names",
    "default_root",
    "resolve_root",
    "dataset_groups",
    "load_dataset",
    "load_folder",
    "load_split",
    "split_label",
    "read_split_file",
    "evenly_spaced",
    # targets
    "TargetFn",
    "gaussian_target",
    # augment
    "AugmentConfig",
    "augment",
    "augment_geometry",
    "augment_intensity",
    "hflip",
    "vflip",
    "rot90",
    "crop",
    "random_crop",
    "center_crop",
    "color_jitter",
    "intensity_jitter",
    "stain_jitter",
    # torch
    "PointDataset",
    "collate",
]
