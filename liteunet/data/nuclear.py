"""A nuclear channel: one plane in which nuclei are bright on a dark background, whatever the stain.

Fluorescence gives its intensity (the brightest channel of a colour image); bright-field grey
its inverted intensity; bright-field colour the optical density of its nuclear stains (or the
fraction of light they absorb), by the colour deconvolution of Ruifrok and Johnston (2001; :mod:`liteunet.data.stains`): haematoxylin
alone (the object-size estimator's choice) or haematoxylin plus DAB, so that Ki-67-positive
(brown) and negative (blue) nuclei of IHC, H&E's nuclei and a fluorescence image's all look
alike while eosin, red cells and glass drop out.

:func:`fit_nuclear_channel` decides the modality and the scaling once, from a whole image or a
sample of its pixels; the :class:`NuclearChannel` it returns then maps any region of that image
the same way, so a tiled whole slide gets the values the whole image would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .stains import HED_FROM_RGB

__all__ = ["NUCLEAR_STAINS", "NuclearChannel", "fit_nuclear_channel", "nuclear_channel", "nuclear_plane"]

#: Stains whose optical density makes the channel of a bright-field colour image.
NUCLEAR_STAINS = {"h": 0, "dab": 2}


@dataclass(frozen=True)
class NuclearChannel:
    """The nuclear channel's rule for one image, fitted by :func:`fit_nuclear_channel`.

    Args:
        modality: ``"brightfield"`` or ``"fluorescence"``.
        colour: whether the image's channels differ (a colour image).
        stains: bright-field colour: the stains summed (keys of :data:`NUCLEAR_STAINS`).
        absorbed: bright-field colour: the fraction of light the stains absorb, ``1 - exp(-OD)``,
            instead of their optical density ``OD``: near-black DAB saturates instead of setting
            the scale, so pale haematoxylin nuclei keep their contrast.
        white: bright-field colour: the intensity taken as glass (optical density 0).
        low, high: raw channel values mapped to 0 and 1 (1 and 0 for bright-field grey).

    Shape:
        - input: :math:`(H, W)` or :math:`(H, W, C)` (C = 1, 3 or 4), any real dtype.
        - output: :math:`(H, W)` float32 in [0, 1].
    """

    modality: str
    colour: bool
    stains: tuple[str, ...] = ("h",)
    absorbed: bool = False
    white: float = 1.0
    low: float = 0.0
    high: float = 1.0

    def raw(self, image: np.ndarray) -> np.ndarray:
        """The channel before scaling: intensity, or summed stain optical density."""
        img = _channels(image)
        if self.modality == "fluorescence" and self.colour:
            return img.max(axis=2)
        if not self.colour:
            return img.mean(axis=2) if img.ndim == 3 else img
        # Only the wanted stains' columns of the deconvolution.
        od = -np.log(np.clip(img / self.white, 1e-6, 1.0)) @ HED_FROM_RGB[:, [NUCLEAR_STAINS[s] for s in self.stains]]
        density = np.maximum(od, 0.0).sum(axis=-1)
        return (-np.expm1(-density) if self.absorbed else density).astype(np.float32)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.scale(self.raw(image))

    def scale(self, raw: np.ndarray) -> np.ndarray:
        """Map a :meth:`raw` channel to ``[0, 1]``."""
        if not self.high > self.low:
            out = np.zeros(raw.shape, np.float32)
        else:
            out = np.clip((raw - self.low) / (self.high - self.low), 0.0, 1.0).astype(np.float32)
        # Bright-field grey: nuclei are the dark pixels.
        return 1.0 - out if self.modality == "brightfield" and not self.colour else out


def _channels(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] in (1, 3, 4):
        img = img[..., 0] if img.shape[2] == 1 else img[..., :3]
    elif img.ndim != 2:
        raise ValueError(f"image must be (H, W) or (H, W, C) with C in 1, 3, 4; got shape {img.shape}")
    if img.dtype.kind not in "biuf":
        raise TypeError(f"image dtype {img.dtype} is not supported: expected bool, integer or real float pixels")
    return img.astype(np.float32)


def _checked(image: np.ndarray, modality: str, stains: tuple[str, ...]) -> np.ndarray:
    if modality not in ("auto", "brightfield", "fluorescence"):
        raise ValueError(f"modality must be 'auto', 'brightfield' or 'fluorescence', got {modality!r}")
    if not stains or set(stains) - set(NUCLEAR_STAINS):
        raise ValueError(f"stains must be a non-empty choice of {sorted(NUCLEAR_STAINS)}, got {stains!r}")
    return _channels(image)


def _range(x: np.ndarray, pmin: float, pmax: float) -> tuple[float, float]:
    lo, hi = np.percentile(x, (pmin, pmax))
    return float(lo), float(hi)


def fit_nuclear_channel(
    image: np.ndarray,
    modality: str = "auto",
    stains: tuple[str, ...] = ("h",),
    percentiles: tuple[float, float] = (1.0, 99.8),
    absorbed: bool = False,
) -> NuclearChannel:
    """Decide the nuclear channel's rule from an image (or a sample of its pixels).

    Args:
        image: grey :math:`(H, W)` or :math:`(H, W, C)` (C = 1, 3 or 4; alpha is dropped).
        modality: ``"auto"`` (most of the image bright: bright-field; dark: fluorescence),
            ``"brightfield"`` or ``"fluorescence"``.
        stains: bright-field colour: stains whose optical density is summed (``"h"``, ``"dab"``).
        percentiles: raw channel percentiles mapped to 0 and 1.
        absorbed: see :class:`NuclearChannel`.

    Returns:
        A :class:`NuclearChannel` to apply to this image or any region of it.

    Example:
        >>> img = np.full((32, 32, 3), 230, np.uint8); img[10:20, 10:20] = (90, 60, 150)
        >>> rule = fit_nuclear_channel(img)
        >>> rule.modality, bool(rule(img)[15, 15] > rule(img)[2, 2])
        ('brightfield', True)
    """
    img = _checked(image, modality, stains)
    return _fit(img, modality, stains, percentiles, absorbed)[0]


def _fit(
    img: np.ndarray, modality: str, stains: tuple[str, ...], percentiles: tuple[float, float], absorbed: bool
) -> tuple[NuclearChannel, np.ndarray]:
    """The rule for a float32 image of checked channels, and the image's raw channel (reused when applied to it)."""
    colour = img.ndim == 3 and float(np.abs(img - img.mean(axis=2, keepdims=True)).mean()) > 1e-3 * (float(img.max()) or 1.0)
    grey = img.mean(axis=2) if img.ndim == 3 else img
    if modality == "auto":
        lo, hi = _range(grey, 0.5, 99.5)
        median = float(np.median(grey))
        # Bright-field: most of the image (the background) is bright.
        modality = "brightfield" if hi > lo and (median - lo) / (hi - lo) > 0.5 else "fluorescence"
    white = max(float(np.percentile(img, 99.9)), 1.0) if colour and modality == "brightfield" else 1.0
    raw = NuclearChannel(modality, bool(colour), tuple(stains), absorbed, white).raw(img)
    low, high = _range(raw, *percentiles)
    return NuclearChannel(modality, bool(colour), tuple(stains), absorbed, white, low, high), raw


def nuclear_plane(
    image: np.ndarray,
    modality: str = "auto",
    stains: tuple[str, ...] = ("h",),
    percentiles: tuple[float, float] = (1.0, 99.8),
    absorbed: bool = False,
) -> tuple[np.ndarray, NuclearChannel]:
    """:func:`fit_nuclear_channel` on an image and its channel, the deconvolution done once.

    Shape:
        - image: :math:`(H, W)` or :math:`(H, W, C)`; plane: :math:`(H, W)` float32 in [0, 1].
    """
    rule, raw = _fit(_checked(image, modality, stains), modality, stains, percentiles, absorbed)
    return rule.scale(raw), rule


def nuclear_channel(
    image: np.ndarray, modality: str = "auto", stains: tuple[str, ...] = ("h",)
) -> tuple[np.ndarray, str]:
    """One channel in which the objects are bright on a dark background, in ``[0, 1]``.

    Args:
        image: grey ``(H, W)`` or ``(H, W, C)`` (C = 1, 3 or 4; alpha is dropped), any dtype.
        modality: ``"auto"`` (bright background: bright-field; dark: fluorescence),
            ``"brightfield"`` or ``"fluorescence"``.
        stains: bright-field colour: stains whose optical density is summed.

    Returns:
        The channel (float32, percentile-scaled to ``[0, 1]``) and the modality used. Bright-field
        colour: haematoxylin optical density (``skimage.color.rgb2hed``'s first channel; plus DAB's
        with ``stains=("h", "dab")``); bright-field grey: inverted intensity; fluorescence:
        intensity (the brightest channel of a colour image).

    Shape:
        - image: :math:`(H, W)` or :math:`(H, W, C)`; output: :math:`(H, W)`.

    Example:
        >>> img = np.full((32, 32, 3), 230, np.uint8); img[10:20, 10:20] = (90, 60, 150)
        >>> chan, modality = nuclear_channel(img)
        >>> modality, bool(chan[15, 15] > chan[2, 2])
        ('brightfield', True)
    """
    plane, rule = nuclear_plane(image, modality, stains)
    return plane, rule.modality
