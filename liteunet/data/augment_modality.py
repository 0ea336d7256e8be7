"""Augmentations that imitate other microscopes, cameras and files: greyscale, blur, noise, JPEG.

A generalist must not learn the look of its training labs: the same nuclei arrive as colour or
grey, sharp or slightly out of focus, clean or noisy, lossless or JPEG-compressed. These act on
float images (channels last, values about [0, 1]) and never move points.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["to_grey", "gaussian_blur", "gaussian_noise", "jpeg_artefacts", "is_grey"]


def is_grey(image: np.ndarray, tol: float = 1e-6) -> bool:
    """True for a 2-D image, or a 3-channel one whose channels are equal (grey saved as RGB).

    Example:
        >>> is_grey(np.stack([np.eye(3)] * 3, axis=-1))
        True
    """
    if image.ndim == 2:
        return True
    if image.ndim == 3 and image.shape[-1] == 1:
        return True
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        rgb = image[..., :3]
        return bool(np.abs(rgb[..., 1:] - rgb[..., :1]).max(initial=0.0) <= tol)
    return False


def to_grey(image: np.ndarray) -> np.ndarray:
    """The channel mean, repeated to the image's channels (an RGB image that looks grey).

    Shape:
        - image: :math:`(H, W, C)`; output the same.

    Example:
        >>> to_grey(np.array([[[0.0, 0.3, 0.6]]], np.float32)).tolist()
        [[[0.30000001192092896, 0.30000001192092896, 0.30000001192092896]]]
    """
    if image.ndim != 3:
        return image.astype(np.float32, copy=True)
    grey = image[..., :3].mean(axis=-1, keepdims=True, dtype=np.float32)
    out = image.astype(np.float32, copy=True)
    out[..., :3] = grey
    return out


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each channel with a Gaussian of ``sigma`` pixels (a slightly defocused microscope).

    Example:
        >>> float(gaussian_blur(np.pad(np.ones((1, 1), np.float32), 4), 1.0).sum())  # doctest: +ELLIPSIS
        1.0...
    """
    if sigma <= 0:
        return image.astype(np.float32, copy=True)
    sigmas = (sigma, sigma) + (0.0,) * (image.ndim - 2)
    return ndimage.gaussian_filter(image.astype(np.float32), sigmas, mode="reflect")


def gaussian_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise of standard deviation ``std`` (camera read noise).

    Example:
        >>> gaussian_noise(np.zeros((4, 4), np.float32), 0.0, np.random.default_rng(0)).max().item()
        0.0
    """
    noise = rng.normal(0.0, std, size=image.shape).astype(np.float32) if std > 0 else 0.0
    return (image.astype(np.float32) + noise).astype(np.float32)


def jpeg_artefacts(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip the image through 8-bit JPEG at ``quality`` (1-95); values are clipped to [0, 1].

    Grey (2-D) images are coded as grey JPEG, colour ones as RGB (alpha is kept as it was).

    Example:
        >>> jpeg_artefacts(np.full((8, 8, 3), 0.5, np.float32), 50).shape
        (8, 8, 3)
    """
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be in [1, 95], got {quality}")
    squeeze = image.ndim == 3 and image.shape[-1] == 1
    plane = image[..., 0] if squeeze else image
    rgb = plane if plane.ndim == 2 else plane[..., :3]
    as_bytes = np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(as_bytes).save(buffer, format="JPEG", quality=int(quality))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue()))).astype(np.float32) / 255.0
    if plane.ndim == 3:
        out = plane.astype(np.float32, copy=True)
        out[..., :3] = decoded
        decoded = out
    return decoded[..., None] if squeeze else decoded
