"""Colour augmentations: brightness, contrast, saturation and hue; grey gain and gamma; H&E-DAB stain.

They act on float images (channels last, values about [0, 1]) and never move points;
:func:`liteunet.data.augment.augment` applies them after the geometric changes.
"""

from __future__ import annotations

import math

import numpy as np

from .stains import HED_FROM_RGB, RGB_FROM_HED

__all__ = ["color_jitter", "intensity_jitter", "stain_jitter"]


def color_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.1,
    contrast: float = 0.1,
    saturation: float = 0.1,
    hue: float = 0.02,
) -> np.ndarray:
    """Random brightness, contrast, saturation and hue change of an RGB(A) float image.

    Each factor is drawn uniformly: brightness multiplies by ``1 +- brightness``, contrast and
    saturation scale the distance to the image mean / the pixel's grey value by
    ``1 +- contrast`` / ``1 +- saturation``, and hue rotates colours about the grey axis by up
    to ``hue`` of a full turn (grey pixels are unchanged). Alpha is left alone. No clipping,
    since percentile-normalized images may exceed [0, 1] slightly by design.

    Args:
        image: float RGB(A) image, channels last.
        rng: source of the factors.
        brightness, contrast, saturation: maximum relative change, >= 0.
        hue: maximum rotation as a fraction of a turn, in [0, 0.5].

    Returns:
        The jittered image, float32, same shape.

    Shape:
        - image: :math:`(H, W, C)`, :math:`C \\in \\{3, 4\\}`.

    Example:
        >>> out = color_jitter(np.full((4, 4, 3), 0.5, np.float32), np.random.default_rng(0))
        >>> out.shape, out.dtype
        ((4, 4, 3), dtype('float32'))
    """
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"color_jitter needs an RGB(A) image (H, W, 3|4), got {image.shape}")
    out = image.astype(np.float32, copy=True)
    rgb = out[..., :3]
    b = rng.uniform(1 - brightness, 1 + brightness)
    c = rng.uniform(1 - contrast, 1 + contrast)
    s = rng.uniform(1 - saturation, 1 + saturation)
    angle = rng.uniform(-hue, hue) * 2 * math.pi
    rgb *= b
    mean = rgb.mean()
    rgb[:] = (rgb - mean) * c + mean
    grey = rgb.mean(axis=-1, keepdims=True)
    rgb[:] = grey + (rgb - grey) * s
    rgb[:] = rgb @ _grey_axis_rotation(angle).T
    return out


def _grey_axis_rotation(angle: float) -> np.ndarray:
    """Rodrigues rotation about the unit grey axis (1, 1, 1) / sqrt(3)."""
    axis = np.full(3, 1 / math.sqrt(3))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross
    return rot.astype(np.float32)


def intensity_jitter(
    image: np.ndarray, rng: np.random.Generator, gain: float = 0.1, gamma: float = 0.2
) -> np.ndarray:
    """Random gain and gamma for grey (e.g. fluorescence) float images.

    ``out = g * sign(x) * |x| ** p`` with ``g`` in ``1 +- gain`` and ``p`` in ``1 +- gamma``;
    the sign keeps the few slightly negative pixels of a percentile-normalized image finite.

    Args:
        image: float image, any number of channels (all get the same change).
        rng: source of the factors.
        gain: maximum relative gain change, >= 0.
        gamma: maximum relative gamma change, in [0, 1).

    Returns:
        The jittered image, float32, same shape.

    Example:
        >>> float(intensity_jitter(np.zeros((4, 4), np.float32), np.random.default_rng(0)).max())
        0.0
    """
    g = rng.uniform(1 - gain, 1 + gain)
    p = rng.uniform(1 - gamma, 1 + gamma)
    x = image.astype(np.float32)
    return (g * np.sign(x) * np.abs(x) ** p).astype(np.float32)


def stain_jitter(
    image: np.ndarray, rng: np.random.Generator, scale: float = 0.05, shift: float = 0.05
) -> np.ndarray:
    """Random stain change for H&E / IHC RGB images (Tellez et al. 2018 HED jitter).

    The image is split into haematoxylin, eosin and DAB optical densities; each stain is
    scaled by ``1 +- scale`` and shifted by ``+- shift`` (uniform), then recombined. Values
    are clipped to [0, 1], where optical density is defined.

    Args:
        image: float RGB(A) image in [0, 1], channels last.
        rng: source of the factors.
        scale: maximum relative change of each stain.
        shift: maximum additive change of each stain's optical density.

    Returns:
        The jittered image, float32, same shape.

    Shape:
        - image: :math:`(H, W, C)`, :math:`C \\in \\{3, 4\\}`.

    Example:
        >>> stain_jitter(np.ones((2, 2, 3), np.float32), np.random.default_rng(0)).shape
        (2, 2, 3)
    """
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"stain_jitter needs an RGB(A) image (H, W, 3|4), got {image.shape}")
    alpha = rng.uniform(1 - scale, 1 + scale, size=3)
    beta = rng.uniform(-shift, shift, size=3)
    out = image.astype(np.float32, copy=True)
    rgb = np.clip(out[..., :3].astype(np.float64), 1e-6, 1.0)
    hed = (-np.log(rgb)) @ HED_FROM_RGB
    hed = hed * alpha + beta
    out[..., :3] = np.clip(np.exp(-(hed @ RGB_FROM_HED)), 0.0, 1.0)
    return out
