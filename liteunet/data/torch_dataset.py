"""A ``torch.utils.data.Dataset`` of annotated images: crops, augmentation and location maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .augment import AugmentConfig, PadMode, augment_geometry, augment_intensity, center_crop, random_crop
from .augment_modality import is_grey
from .augment_scale import random_scaled_crop
from .datasets import Sample
from .io import match_channels, normalize_image, read_image
from .targets import TargetFn, gaussian_target

__all__ = ["PointDataset", "collate"]


class PointDataset(Dataset):
    """Images with point annotations, as (image, location-map target) training pairs.

    Each item is built as: cached normalized image -> crop (random with ``augment``, at a random
    zoom when the config's ``scale_prob`` says so; central otherwise; padded when the image is
    smaller) -> :func:`augment` -> channels matched to ``in_chans`` -> ``target_fn`` rendered
    from the transformed points. Images are read once, normalized with :func:`normalize_image`
    (``normalize`` mode), an RGB image whose channels are equal is kept as grey (so grey images
    are treated alike whether saved with 1 or 3 channels), and kept in memory (the data sets are small; with
    ``DataLoader`` workers each worker fills its own cache, so use ``persistent_workers=True``).

    Randomness is a ``numpy.random.Generator`` seeded with ``(seed, epoch, index)``, so an item
    is the same whatever worker builds it; call :meth:`set_epoch` once per epoch to get new
    crops and flips.

    Args:
        samples: the annotated images (:func:`load_dataset`, :func:`load_folder`).
        crop_size: output size ``S`` or ``(H, W)``; ``None`` keeps whole images (then batch
            them one at a time or all of one size).
        augment: ``True`` for the default :class:`AugmentConfig`, ``False`` for none, or a
            config (e.g. ``AugmentConfig.paper()``: horizontal flips only).
        target_fn: makes the location map from points; default :func:`gaussian_target`
            (sigma 2). Bind options with ``functools.partial``.
        num_classes: target channels; with 1 every point goes to channel 0 whatever its label.
        in_chans: image channels the model expects (grey is repeated to RGB, RGB averaged to
            grey).
        seed: base seed.
        pad_mode: padding of crops that leave the image, see :func:`liteunet.data.augment.crop`.
        normalize: :func:`normalize_image` mode, ``"auto"`` or ``"percentile"`` (the weights
            record it, and inference normalizes the same way).
        soft_targets: optional maps to learn beside the points (distillation), one per sample
            or ``None`` for a sample without: float arrays :math:`(num\\_classes, H, W)` (or
            :math:`(H, W)` with one class) aligned with the image, values in [0, 1], such as a
            teacher model's location map of the whole image. They are cut, zoomed, flipped and
            turned with the image, never colour-changed.
        soft_target_weight: each item's target is ``(1 - w) * target_fn(points) + w * map``
            where a sample has a map.

    Returns (per item):
        A dict with ``image`` float32 tensor :math:`(in\\_chans, H, W)`, ``target`` float32
        tensor :math:`(num\\_classes, H, W)`, ``points`` float32 tensor :math:`(N, 2)` as (x, y)
        pixel coordinates in the output image, ``labels`` int64 tensor :math:`(N,)` and
        ``name`` str.

    Example:
        >>> from liteunet.data import load_dataset, PointDataset, collate
        >>> ds = PointDataset(load_dataset("crc", "train"), crop_size=256)  # doctest: +SKIP
        >>> loader = torch.utils.data.DataLoader(ds, batch_size=12, shuffle=True,
        ...                                      collate_fn=collate)  # doctest: +SKIP
        >>> batch = next(iter(loader)); batch["image"].shape  # doctest: +SKIP
        torch.Size([12, 3, 256, 256])
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        crop_size: int | tuple[int, int] | None = 256,
        augment: bool | AugmentConfig = True,
        target_fn: TargetFn = gaussian_target,
        num_classes: int = 1,
        in_chans: int = 3,
        seed: int = 0,
        pad_mode: PadMode = "constant",
        normalize: str = "auto",
        soft_targets: Sequence[np.ndarray | None] | None = None,
        soft_target_weight: float = 0.5,
    ) -> None:
        self.samples = list(samples)
        if not self.samples:
            raise ValueError("PointDataset needs at least one sample")
        if soft_targets is not None and len(soft_targets) != len(self.samples):
            raise ValueError(f"got {len(soft_targets)} soft targets for {len(self.samples)} samples")
        if not 0.0 <= soft_target_weight <= 1.0:
            raise ValueError(f"soft_target_weight must be in [0, 1], got {soft_target_weight}")
        self.soft_targets = list(soft_targets) if soft_targets is not None else [None] * len(self.samples)
        self.soft_target_weight = float(soft_target_weight)
        if num_classes > 1:
            for s in self.samples:
                if len(s.labels) and s.labels.max() >= num_classes:
                    raise ValueError(
                        f"sample {s.name!r} has label {s.labels.max()} but num_classes="
                        f"{num_classes}"
                    )
        self.crop_size = crop_size
        if augment is True:
            augment = AugmentConfig()
        self.augment_config: AugmentConfig | None = augment or None
        self.target_fn = target_fn
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.seed = seed
        self.pad_mode = pad_mode
        self.normalize = normalize
        self.epoch = 0
        self._cache: dict[int, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random crops and flips the items use."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> np.ndarray:
        """The normalized float32 image of sample ``index``, channels last (read once)."""
        if index not in self._cache:
            image = normalize_image(read_image(self.samples[index].image_path), mode=self.normalize)
            if image.ndim == 3 and is_grey(image):
                image = np.ascontiguousarray(image[..., 0])
            # Fail now, with the file name, rather than after cropping and augmenting.
            try:
                match_channels(image[:1, :1], self.in_chans)
            except ValueError as err:
                raise ValueError(f"{self.samples[index].image_path}: {err}") from None
            self._cache[index] = image
        return self._cache[index]

    def _soft_target(self, index: int, shape: tuple[int, int]) -> np.ndarray | None:
        """Sample ``index``'s soft target as float32 ``(num_classes, H, W)``, checked against its image."""
        soft = self.soft_targets[index]
        if soft is None:
            return None
        soft = np.asarray(soft, dtype=np.float32)
        soft = soft[None] if soft.ndim == 2 else soft
        if soft.shape != (self.num_classes, *shape):
            raise ValueError(f"{self.samples[index].image_path}: soft target {soft.shape} does not match "
                             f"the image's {(self.num_classes, *shape)} (num_classes, H, W)")
        return soft

    def __getitem__(self, index: int) -> dict:
        return self.item(index)

    def item(self, index: int, crop_size: int | tuple[int, int] | None = None) -> dict:
        """Item ``index`` cut at ``crop_size`` instead of the dataset's own (``None``: its own).

        Training with several crop sides (:mod:`liteunet.data.batches`) picks the side per batch.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        crop_size = self.crop_size if crop_size is None else crop_size
        sample = self.samples[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, points, labels = self.load_image(index), sample.points, sample.labels
        soft = self._soft_target(index, image.shape[:2])
        channels = image.shape[-1] if image.ndim == 3 else 0
        if soft is not None:  # ride along as extra channels through every geometric change
            image = np.concatenate([image if channels else image[..., None], soft.transpose(1, 2, 0)], axis=-1)
        if crop_size is not None:
            cfg = self.augment_config
            if cfg is not None and cfg.scale_prob > 0 and rng.random() < cfg.scale_prob:
                image, points, labels = random_scaled_crop(
                    image, points, labels, crop_size, rng, cfg.scale_range, self.pad_mode)
            elif cfg is not None:
                image, points, labels = random_crop(image, points, labels, crop_size, rng,
                                                    pad_mode=self.pad_mode)
            else:
                image, points, labels = center_crop(image, points, labels, crop_size,
                                                    pad_mode=self.pad_mode)
        if self.augment_config is not None:
            image, points, labels = augment_geometry(image, points, labels, rng, self.augment_config)
        if soft is not None:
            soft = image[..., max(channels, 1):].transpose(2, 0, 1)
            image = image[..., :channels] if channels else image[..., 0]
        if self.augment_config is not None:
            image = augment_intensity(image, points, rng, self.augment_config)
        image = match_channels(image, self.in_chans)
        target = self.target_fn(points, labels, image.shape[:2], num_classes=self.num_classes)
        if soft is not None:
            target = (1 - self.soft_target_weight) * target + self.soft_target_weight * soft
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1),
                                                          dtype=np.float32)),
            "target": torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)),
            "points": torch.from_numpy(points.astype(np.float32)),
            "labels": torch.from_numpy(labels.astype(np.int64)),
            "name": sample.name,
        }


def collate(items: Sequence[dict]) -> dict:
    """Batch :class:`PointDataset` items: stack images and targets, keep points as lists.

    Args:
        items: dicts from :meth:`PointDataset.__getitem__`, all of one image size.

    Returns:
        ``image`` :math:`(B, C, H, W)`, ``target`` :math:`(B, K, H, W)`, and lists of length B
        for ``points`` (each :math:`(N_i, 2)` (x, y)), ``labels`` and ``name``.

    Example:
        >>> item = {"image": torch.zeros(3, 4, 4), "target": torch.zeros(1, 4, 4),
        ...         "points": torch.zeros(0, 2), "labels": torch.zeros(0), "name": "a"}
        >>> collate([item, item])["image"].shape
        torch.Size([2, 3, 4, 4])
    """
    sizes = {tuple(item["image"].shape) for item in items}
    if len(sizes) > 1:
        raise ValueError(
            f"cannot stack images of different sizes {sorted(sizes)}: set crop_size in "
            "PointDataset or use batch_size=1"
        )
    return {
        "image": torch.stack([item["image"] for item in items]),
        "target": torch.stack([item["target"] for item in items]),
        "points": [item["points"] for item in items],
        "labels": [item["labels"] for item in items],
        "name": [item["name"] for item in items],
    }
