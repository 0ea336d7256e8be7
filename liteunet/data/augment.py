"""Augmentations that move the point annotations exactly with the image.

Layout: images are channels last, ``(H, W)`` or ``(H, W, C)`` (as :func:`read_image` and
:func:`normalize_image` give them); :class:`PointDataset` turns them to ``(C, H, W)`` tensors
only at the end. Points are ``(N, 2)`` float arrays of (x, y) = (column, row), (0, 0) the
centre of the top-left pixel, so pixel ``i`` covers ``[i - 0.5, i + 0.5)``.

Geometric functions take and return ``(image, points, labels)``; the location map is made from
the transformed points afterwards, so it matches the transformed image exactly. Every random
choice is drawn from the ``numpy.random.Generator`` passed in: the same generator state gives
the same output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from .augment_colour import color_jitter, intensity_jitter, stain_jitter
from .augment_ihc import restain_as_ihc
from .augment_modality import gaussian_blur, gaussian_noise, jpeg_artefacts, to_grey

__all__ = [
    "AUGMENT_PRESETS",
    "AugmentConfig",
    "hflip",
    "vflip",
    "rot90",
    "crop",
    "random_crop",
    "center_crop",
    "color_jitter",
    "intensity_jitter",
    "stain_jitter",
    "augment",
    "augment_geometry",
    "augment_intensity",
]

PadMode = Literal["constant", "symmetric"]
Sample = tuple[np.ndarray, np.ndarray, np.ndarray]


def _check(image: np.ndarray, points: np.ndarray, labels: np.ndarray) -> Sample:
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C) channels last, got {image.shape}")
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(points) != len(labels):
        raise ValueError(f"got {len(points)} points but {len(labels)} labels")
    return image, points, labels


def hflip(image: np.ndarray, points: np.ndarray, labels: np.ndarray) -> Sample:
    """Mirror left-right (the paper's augmentation): ``x -> W - 1 - x``.

    Args:
        image: :math:`(H, W)` or :math:`(H, W, C)`.
        points: :math:`(N, 2)` (x, y).
        labels: :math:`(N,)`.

    Returns:
        ``(image, points, labels)`` flipped; points are (N, 2) (x, y).

    Example:
        >>> img, pts, _ = hflip(np.zeros((2, 5)), np.array([[1.0, 0.0]]), np.array([0]))
        >>> pts.tolist()
        [[3.0, 0.0]]
    """
    image, points, labels = _check(image, points, labels)
    width = image.shape[1]
    points = points.copy()
    points[:, 0] = (width - 1) - points[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), points, labels


def vflip(image: np.ndarray, points: np.ndarray, labels: np.ndarray) -> Sample:
    """Mirror top-bottom: ``y -> H - 1 - y``.

    Args:
        image: :math:`(H, W)` or :math:`(H, W, C)`.
        points: :math:`(N, 2)` (x, y).
        labels: :math:`(N,)`.

    Returns:
        ``(image, points, labels)`` flipped; points are (N, 2) (x, y).

    Example:
        >>> img, pts, _ = vflip(np.zeros((4, 5)), np.array([[1.0, 0.0]]), np.array([0]))
        >>> pts.tolist()
        [[1.0, 3.0]]
    """
    image, points, labels = _check(image, points, labels)
    height = image.shape[0]
    points = points.copy()
    points[:, 1] = (height - 1) - points[:, 1]
    return np.ascontiguousarray(image[::-1]), points, labels


def rot90(image: np.ndarray, points: np.ndarray, labels: np.ndarray, k: int = 1) -> Sample:
    """Rotate by ``k`` quarter turns counter-clockwise, as ``np.rot90(image, k)``.

    One turn maps pixel (row, col) of an ``H x W`` image to (W - 1 - col, row) of the
    ``W x H`` result, so a point goes ``(x, y) -> (y, W - 1 - x)``.

    Args:
        image: :math:`(H, W)` or :math:`(H, W, C)`.
        points: :math:`(N, 2)` (x, y).
        labels: :math:`(N,)`.
        k: number of quarter turns (any integer; taken modulo 4).

    Returns:
        ``(image, points, labels)`` rotated; points are (N, 2) (x, y). H and W swap for odd k.

    Example:
        >>> img, pts, _ = rot90(np.zeros((2, 5)), np.array([[1.0, 0.0]]), np.array([0]))
        >>> img.shape, pts.tolist()
        ((5, 2), [[0.0, 3.0]])
    """
    image, points, labels = _check(image, points, labels)
    points = points.copy()
    for _ in range(k % 4):
        width = image.shape[1]
        points = np.stack([points[:, 1], (width - 1) - points[:, 0]], axis=1)
        image = np.rot90(image)
    return np.ascontiguousarray(image), points, labels


def _mirror_coords(v: np.ndarray, n: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Copies of coordinates ``v`` that ``np.pad(mode="symmetric")`` puts in ``[lo, hi)``.

    Symmetric padding mirrors about the outer pixel edges (-0.5 and n - 0.5), so the padded
    axis repeats with period 2n, holding ``v + 2kn`` and ``-1 - v + 2kn``.
    Returns (index of the source coordinate, coordinate) for each copy in range.
    """
    period = 2 * n
    k = np.arange(math.floor((lo - n) / period) - 1, math.ceil(hi / period) + 2)
    copies = np.concatenate([v[:, None] + period * k, (-1.0 - v)[:, None] + period * k], axis=1)
    source = np.repeat(np.arange(len(v)), copies.shape[1])
    copies = copies.reshape(-1)
    keep = (copies >= lo - 0.5) & (copies < hi - 0.5)
    source, copies = source[keep], copies[keep]
    # A coordinate exactly on a mirror line is its own mirror image: keep it once.
    unique = np.unique(np.stack([source.astype(np.float64), copies], axis=1), axis=0)
    return unique[:, 0].astype(np.int64), unique[:, 1]


def crop(
    image: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    top: int,
    left: int,
    height: int,
    width: int,
    pad_mode: PadMode = "constant",
    pad_value: float = 0.0,
) -> Sample:
    """Cut the window ``[top, top + height) x [left, left + width)``, padding where it leaves
    the image, and keep the points that fall inside it.

    With ``pad_mode="constant"`` the padding is ``pad_value`` and holds no cells. With
    ``"symmetric"`` the image is mirrored (``np.pad`` symmetric) and so are the points, so that
    mirrored cells are annotated too; a point lying exactly on a mirror line is kept once.

    Args:
        image: :math:`(H, W)` or :math:`(H, W, C)`.
        points: :math:`(N, 2)` (x, y).
        labels: :math:`(N,)`.
        top, left: window corner in image pixels; may be negative.
        height, width: window size, > 0.
        pad_mode: ``"constant"`` or ``"symmetric"``.
        pad_value: fill value for ``"constant"``.

    Returns:
        ``(image, points, labels)``: image :math:`(height, width[, C])`; points (M, 2) (x, y)
        in window coordinates, those in ``[-0.5, width - 0.5) x [-0.5, height - 0.5)``.

    Example:
        >>> img, pts, lab = crop(np.zeros((10, 10)), np.array([[5.0, 5.0], [1.0, 1.0]]),
        ...                      np.array([0, 0]), top=4, left=4, height=4, width=4)
        >>> img.shape, pts.tolist()
        ((4, 4), [[1.0, 1.0]])
    """
    image, points, labels = _check(image, points, labels)
    if height <= 0 or width <= 0:
        raise ValueError(f"crop size must be positive, got {height}x{width}")
    if pad_mode not in ("constant", "symmetric"):
        raise ValueError(f"pad_mode must be 'constant' or 'symmetric', got {pad_mode!r}")
    img_h, img_w = image.shape[:2]
    pad_top, pad_bottom = max(0, -top), max(0, top + height - img_h)
    pad_left, pad_right = max(0, -left), max(0, left + width - img_w)
    if pad_top or pad_bottom or pad_left or pad_right:
        pad = [(pad_top, pad_bottom), (pad_left, pad_right)] + [(0, 0)] * (image.ndim - 2)
        if pad_mode == "constant":
            image = np.pad(image, pad, mode="constant", constant_values=pad_value)
        else:
            image = np.pad(image, pad, mode="symmetric")
            points, labels = _mirror_points(
                points, labels, img_h, img_w, top, left, height, width,
                mirror_y=bool(pad_top or pad_bottom), mirror_x=bool(pad_left or pad_right),
            )
    out = image[top + pad_top : top + pad_top + height, left + pad_left : left + pad_left + width]
    shifted = points - np.array([left, top], dtype=np.float64)
    inside = (
        (shifted[:, 0] >= -0.5) & (shifted[:, 0] < width - 0.5)
        & (shifted[:, 1] >= -0.5) & (shifted[:, 1] < height - 0.5)
    )
    return np.ascontiguousarray(out), shifted[inside], labels[inside]


def _mirror_points(
    points: np.ndarray, labels: np.ndarray, img_h: int, img_w: int,
    top: int, left: int, height: int, width: int, mirror_y: bool, mirror_x: bool,
) -> tuple[np.ndarray, np.ndarray]:
    # Mirroring one axis after the other gives every (x copy, y copy) pair of a point.
    if mirror_x:
        source, xs = _mirror_coords(points[:, 0], img_w, left, left + width)
        points, labels = np.stack([xs, points[source, 1]], axis=1), labels[source]
    if mirror_y:
        source, ys = _mirror_coords(points[:, 1], img_h, top, top + height)
        points, labels = np.stack([points[source, 0], ys], axis=1), labels[source]
    return points, labels


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


def random_crop(
    image: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    size: int | tuple[int, int],
    rng: np.random.Generator,
    pad_mode: PadMode = "constant",
) -> Sample:
    """Crop a random ``size`` window; an image smaller than ``size`` is padded, at a random
    place inside the window.

    Args:
        image: :math:`(H, W)` or :math:`(H, W, C)`.
        points: :math:`(N, 2)` (x, y).
        labels: :math:`(N,)`.
        size: ``S`` or ``(height, width)``.
        rng: source of the window position.
        pad_mode: see :func:`crop`.

    Returns:
        ``(image, points, labels)`` of the window; points (M, 2) (x, y), outside ones dropped.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> img, pts, lab = random_crop(np.zeros((50, 60, 3)), np.zeros((0, 2)), np.zeros(0),
        ...                             32, rng)
        >>> img.shape
        (32, 32, 3)
    """
    height, width = _pair(size)
    img_h, img_w = image.shape[:2]
    top = _random_offset(img_h, height, rng)
    left = _random_offset(img_w, width, rng)
    return crop(image, points, labels, top, left, height, width, pad_mode=pad_mode)


def _random_offset(have: int, want: int, rng: np.random.Generator) -> int:
    if have >= want:
        return int(rng.integers(0, have - want + 1))
    return -int(rng.integers(0, want - have + 1))  # negative: the image sits inside the pad


def center_crop(
    image: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    size: int | tuple[int, int],
    pad_mode: PadMode = "constant",
) -> Sample:
    """Crop the central ``size`` window (padding evenly when the image is smaller).

    Args:
        image: :math:`(H, W)` or :math:`(H, W, C)`.
        points: :math:`(N, 2)` (x, y).
        labels: :math:`(N,)`.
        size: ``S`` or ``(height, width)``.
        pad_mode: see :func:`crop`.

    Returns:
        ``(image, points, labels)`` of the window; points (M, 2) (x, y), outside ones dropped.

    Example:
        >>> center_crop(np.zeros((10, 10)), np.zeros((0, 2)), np.zeros(0), 4)[0].shape
        (4, 4)
    """
    height, width = _pair(size)
    img_h, img_w = image.shape[:2]
    return crop(image, points, labels, (img_h - height) // 2, (img_w - width) // 2,
                height, width, pad_mode=pad_mode)


#: The names :meth:`AugmentConfig.preset` takes (``liteunet train --augment``).
AUGMENT_PRESETS = ("paper", "full", "generalist", "generalist-ihc", "none")


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations :func:`augment` applies, and how strongly.

    Attributes:
        hflip, vflip: random left-right / top-bottom mirror, each with probability 0.5.
        rot90: random quarter turns (only 0 or 2 turns when the image is not square, so the
            output keeps its shape).
        brightness, contrast, saturation, hue: :func:`color_jitter` strengths (RGB images).
        stain: :func:`stain_jitter` scale and shift (RGB images); 0 disables it.
        gain, gamma: :func:`intensity_jitter` strengths (grey images).
        scale_range, scale_prob: with probability ``scale_prob`` a training crop is drawn at a
            random zoom in ``scale_range`` (log-uniform; :func:`~liteunet.data.augment_scale.random_scaled_crop`,
            used by :class:`~liteunet.data.PointDataset`, not by :func:`augment`).
        grey_prob: probability that an RGB image is turned grey (before the colour changes).
        blur, blur_prob: Gaussian blur with sigma uniform in ``[0, blur]`` px, with probability
            ``blur_prob``.
        noise, noise_prob: Gaussian noise with std uniform in ``[0, noise]``, with probability
            ``noise_prob``.
        jpeg_prob, jpeg_quality: JPEG round trip at a quality drawn from ``jpeg_quality``, with
            probability ``jpeg_prob``.
        ihc_prob: probability that a bright-field RGB image is re-stained as nuclear IHC, some
            of its annotated cells DAB-brown (:func:`~liteunet.data.augment_ihc.restain_as_ihc`).

    Example:
        >>> cfg = AugmentConfig.paper()  # the Lite-UNet paper: horizontal flips only
        >>> cfg.hflip, cfg.vflip, cfg.brightness
        (True, False, 0.0)
    """

    hflip: bool = True
    vflip: bool = True
    rot90: bool = True
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.02
    stain: float = 0.0
    gain: float = 0.1
    gamma: float = 0.2
    scale_range: tuple[float, float] = (1.0, 1.0)
    scale_prob: float = 0.0
    grey_prob: float = 0.0
    blur: float = 0.0
    blur_prob: float = 0.0
    noise: float = 0.0
    noise_prob: float = 0.0
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 90)
    ihc_prob: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if not 0 < lo <= hi or not 0 <= self.scale_prob <= 1:
            raise ValueError(f"scale_range must satisfy 0 < lo <= hi and scale_prob lie in [0, 1], got {self.scale_range}, {self.scale_prob}")

    @classmethod
    def preset(cls, name: str, scale_range: tuple[float, float] | None = None,
               scale_prob: float | None = None) -> AugmentConfig | None:
        """The augmentation ``liteunet train --augment NAME`` means: ``paper``, ``full`` (the
        defaults), ``generalist``, ``generalist-ihc``, or ``none`` (``None``: no augmentation);
        ``scale_range`` / ``scale_prob`` replace the preset's zoom where given.

        Example:
            >>> AugmentConfig.preset("generalist-ihc").ihc_prob
            0.25
            >>> AugmentConfig.preset("generalist", scale_range=(0.7, 1.4), scale_prob=0.3).scale_range
            (0.7, 1.4)
        """
        presets = {"paper": cls.paper, "full": cls, "generalist": cls.generalist, "generalist-ihc": cls.generalist_ihc}
        zoom = {k: v for k, v in (("scale_range", scale_range), ("scale_prob", scale_prob)) if v is not None}
        if name == "none":
            if zoom:
                raise ValueError("augment 'none' cannot take a scale_range or scale_prob")
            return None
        if name not in presets:
            raise ValueError(f"unknown augment {name!r}; use one of {', '.join(AUGMENT_PRESETS)}")
        return replace(presets[name](), **{k: tuple(v) if k == "scale_range" else v for k, v in zoom.items()})

    @classmethod
    def paper(cls) -> AugmentConfig:
        """The Lite-UNet paper's training augmentation: horizontal flips only."""
        return cls(hflip=True, vflip=False, rot90=False, brightness=0.0, contrast=0.0,
                   saturation=0.0, hue=0.0, stain=0.0, gain=0.0, gamma=0.0)

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation at all."""
        return cls(hflip=False, vflip=False, rot90=False, brightness=0.0, contrast=0.0,
                   saturation=0.0, hue=0.0, stain=0.0, gain=0.0, gamma=0.0)

    @classmethod
    def generalist(cls) -> AugmentConfig:
        """For weights meant for any lab: scale 0.5x-2x, HED stain, colour and grey, blur,
        noise and JPEG, on top of the flips and rotations."""
        return cls(brightness=0.15, contrast=0.2, saturation=0.25, hue=0.04, stain=0.08,
                   gain=0.2, gamma=0.3, scale_range=(0.5, 2.0), scale_prob=0.7, grey_prob=0.15,
                   blur=1.5, blur_prob=0.2, noise=0.03, noise_prob=0.2, jpeg_prob=0.2)

    @classmethod
    def generalist_ihc(cls) -> AugmentConfig:
        """:meth:`generalist`, and a quarter of the bright-field crops re-stained as nuclear IHC
        (brown and blue nuclei), for models that must find cells in IHC they never saw."""
        return replace(cls.generalist(), ihc_prob=0.25)


def augment(
    image: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),
) -> Sample:
    """Apply the random flips, rotations and colour changes of ``config``.

    Geometry first (:func:`augment_geometry`, moving points with the image), then intensity
    (:func:`augment_intensity`): RGB(A) images may be turned grey, or else re-stained as IHC
    (``ihc_prob``), then get :func:`stain_jitter` and :func:`color_jitter`, grey ones
    :func:`intensity_jitter`; last blur, noise and JPEG artefacts, for every image.
    Cropping is separate (:func:`random_crop`), done before this to save work.

    Args:
        image: float image, :math:`(H, W)` or :math:`(H, W, C)`.
        points: :math:`(N, 2)` (x, y).
        labels: :math:`(N,)`.
        rng: the only source of randomness.
        config: what to apply.

    Returns:
        ``(image, points, labels)``: image float32, points (N, 2) (x, y).

    Example:
        >>> img, pts, lab = augment(np.zeros((8, 8, 3), np.float32), np.array([[1.0, 2.0]]),
        ...                         np.array([0]), np.random.default_rng(0))
        >>> img.shape, pts.shape
        ((8, 8, 3), (1, 2))
    """
    image, points, labels = augment_geometry(image, points, labels, rng, config)
    return augment_intensity(image, points, rng, config), points, labels


def augment_geometry(
    image: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),
) -> Sample:
    """The random flips and quarter turns of ``config``, points moved with the image.

    Channels are not interpreted, so maps stacked onto the image as extra channels (a
    teacher's location map, for instance) move exactly as the image does.

    Returns:
        ``(image, points, labels)``.

    Example:
        >>> img, pts, _ = augment_geometry(np.zeros((8, 8, 5), np.float32), np.array([[1.0, 2.0]]),
        ...                                np.array([0]), np.random.default_rng(0))
        >>> img.shape
        (8, 8, 5)
    """
    image, points, labels = _check(image, points, labels)
    if config.hflip and rng.random() < 0.5:
        image, points, labels = hflip(image, points, labels)
    if config.vflip and rng.random() < 0.5:
        image, points, labels = vflip(image, points, labels)
    if config.rot90:
        square = image.shape[0] == image.shape[1]
        k = int(rng.integers(0, 4)) if square else 2 * int(rng.integers(0, 2))
        image, points, labels = rot90(image, points, labels, k)
    return image, points, labels


def augment_intensity(
    image: np.ndarray, points: np.ndarray, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()
) -> np.ndarray:
    """The random colour, stain, blur, noise and JPEG changes of ``config`` (see :func:`augment`).

    ``points`` (the image's, (x, y)) only guide IHC re-staining; nothing moves.

    Returns:
        The changed image, float32.
    """
    image = image.astype(np.float32, copy=False)
    colour = image.ndim == 3 and image.shape[-1] in (3, 4)
    if colour and config.grey_prob > 0 and rng.random() < config.grey_prob:
        image, colour = to_grey(image), False
        if config.gain > 0 or config.gamma > 0:
            image = intensity_jitter(image, rng, config.gain, config.gamma)
    elif colour:
        if config.ihc_prob > 0 and rng.random() < config.ihc_prob:
            image = restain_as_ihc(image, points, rng)
        if config.stain > 0:
            image = stain_jitter(image, rng, config.stain, config.stain)
        if any((config.brightness, config.contrast, config.saturation, config.hue)):
            image = color_jitter(image, rng, config.brightness, config.contrast,
                                 config.saturation, config.hue)
    elif config.gain > 0 or config.gamma > 0:
        image = intensity_jitter(image, rng, config.gain, config.gamma)
    if config.blur > 0 and rng.random() < config.blur_prob:
        image = gaussian_blur(image, rng.uniform(0.0, config.blur))
    if config.noise > 0 and rng.random() < config.noise_prob:
        image = gaussian_noise(image, rng.uniform(0.0, config.noise), rng)
    if config.jpeg_prob > 0 and rng.random() < config.jpeg_prob:
        low, high = config.jpeg_quality
        image = jpeg_artefacts(image, int(rng.integers(low, high + 1)))
    return image
