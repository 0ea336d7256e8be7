"""Reading images from disk and bringing them to a common float range and channel count.

``read_image`` keeps the stored dtype (a 16-bit fluorescence image stays ``uint16``), so the
choice of how to scale it is made once, in ``normalize_image``, and not hidden in the reader.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import NoReturn

import numpy as np
from PIL import Image, UnidentifiedImageError

from .nuclear import NuclearChannel, fit_nuclear_channel, nuclear_plane
from .percentiles import histogram_percentiles

__all__ = ["IMAGE_SUFFIXES", "NUCLEAR_INPUT_STAINS", "fit_nuclear_input", "intensity_range", "match_channels", "normalize_image", "read_image", "scale_intensity"]

PathLike = str | os.PathLike
#: File suffixes taken from a folder of images (other files, e.g. annotations, are ignored).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".btf", ".svs")
#: ``normalize="nuclear"``: bright-field colour images become the light absorbed by these
#: stains (IHC's positive nuclei are DAB-brown, its negative ones haematoxylin-blue).
NUCLEAR_INPUT_STAINS = ("h", "dab")
_NUCLEAR_INPUT = {"stains": NUCLEAR_INPUT_STAINS, "absorbed": True}


def _check_file(path: PathLike, what: str = "image") -> Path:
    """Return ``path`` as a Path, raising a message that names it when it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if path.is_dir():
        raise ValueError(f"expected a {what} file but {path} is a directory")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} file {path} is empty (0 bytes)")
    return path


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file into a numpy array, keeping its stored dtype.

    Pillow reads the file (png, jpg, bmp, tif and the other formats it knows). Of a multi-frame
    file (animated GIF, multi-page TIFF read without tifffile) only the first frame is read, with
    a ``UserWarning`` that says so and how to pass the others. 16-bit grey PNG/TIFF come back as
    ``uint16``, 32-bit float TIFF as ``float32``, 1-bit masks as ``bool``. Palette images become
    RGB (RGBA when they carry transparency), grey+alpha becomes grey, CMYK/YCbCr/LAB become RGB.

    Args:
        path: the image file.

    Returns:
        The pixels, ``uint8``, ``uint16``, ``int32``, ``float32`` or ``bool``.

    Shape:
        - output: :math:`(H, W)` for grey, :math:`(H, W, C)` with :math:`C \\in \\{3, 4\\}` for
          RGB / RGBA.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the path is a directory, the file is empty, is not an image Pillow can
            read, or is truncated / corrupt.

    Example:
        >>> img = read_image("bbbc039/images/IXMtest_A02_s1_w1051DAA7C.png")  # doctest: +SKIP
        >>> img.dtype, img.shape  # doctest: +SKIP
        (dtype('uint16'), (520, 696))
    """
    path = _check_file(path)
    im = None
    try:
        im = Image.open(path)
        im.load()  # decode now, so a truncated file fails here and not later
    except BaseException as err:
        if im is not None:
            im.close()  # a file that fails to decode is not left open
        _raise_read_error(err, path)
    with im:
        frames = int(getattr(im, "n_frames", 1) or 1)
        if frames > 1:
            warnings.warn(
                f"{path} holds {frames} frames/pages; only the first is read. To localize the "
                "others, pass each as an array (PIL: im.seek(k); np.asarray(im)), or for a TIFF "
                "stack install tifffile (pip install 'liteunet[tiff]'), which reads page "
                "channels as channels",
                UserWarning,
                stacklevel=2,
            )
        try:
            return _pil_to_array(im)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None


def _raise_read_error(err: BaseException, path: Path) -> NoReturn:
    """Raise the reading error of ``path`` as a message that says what to do."""
    if isinstance(err, Image.DecompressionBombError):
        limit = Image.MAX_IMAGE_PIXELS
        raise ValueError(
            f"{path} is larger than Pillow's decompression-bomb limit ({err}). liteunet reads "
            "images of any size as TIFF, region by region: convert it to a tiled TIFF (e.g. "
            "vips tiffsave IN OUT.tif --tile --bigtiff) and pip install 'liteunet[tiff]'; or, "
            "if you trust the file, raise Pillow's limit before localizing: "
            f"PIL.Image.MAX_IMAGE_PIXELS = None (now {limit})"
        ) from err
    if isinstance(err, UnidentifiedImageError):
        raise ValueError(f"{path} is not an image file Pillow can read ({err})") from err
    if isinstance(err, PermissionError) or not isinstance(err, (OSError, SyntaxError, ValueError)):
        raise err
    # Pillow reports truncated/corrupt data as OSError ("image file is truncated"),
    # SyntaxError (broken PNG chunks) or ValueError, depending on the format.
    raise ValueError(f"{path} could not be decoded: truncated or corrupt image ({err})") from err


def _pil_to_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im).astype(np.uint16, copy=False)
    if mode == "I":
        # Pillow may open 16-bit grey PNGs as 32-bit "I"; give them back as uint16.
        arr = np.asarray(im)
        if arr.size and arr.min() >= 0 and arr.max() <= np.iinfo(np.uint16).max:
            return arr.astype(np.uint16)
        return arr.astype(np.int32, copy=False)
    if mode in ("1", "L", "F", "RGB", "RGBA"):
        return np.asarray(im).copy()
    if mode == "LA":
        return np.asarray(im.convert("L")).copy()
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        return np.asarray(im.convert("RGBA" if has_alpha else "RGB")).copy()
    if mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
        return np.asarray(im.convert("RGB")).copy()
    raise ValueError(f"unsupported image mode {mode!r}")


def intensity_range(
    sample: np.ndarray, mode: str = "auto", pmin: float = 1.0, pmax: float = 99.8
) -> tuple[float, float] | None:
    """The values that map to 0 and 1: the one normalisation rule of training and inference.

    ``"auto"``: ``uint8`` and ``bool`` images use their full range (255 or 1), since their range
    is fixed and stain colours are meaningful; other integer and float images use the
    ``pmin``-th and ``pmax``-th percentiles over all pixels and channels (as StarDist and
    Cellpose do), so colour ratios are kept. ``"percentile"``: percentiles for ``uint8`` too.
    ``"none"``: no scaling (``None``).

    Args:
        sample: the image, or a sample of its pixels (large images), with the image's dtype.
        mode: ``"auto"``, ``"percentile"`` or ``"none"``.
        pmin, pmax: percentiles, ``0 <= pmin < pmax <= 100``.

    Returns:
        ``(low, high)``, or ``None`` for ``"none"``.

    Raises:
        ValueError: NaN or infinite values, bad percentiles, an unknown mode or dtype.

    Example:
        >>> intensity_range(np.array([0, 7, 255], np.uint8))
        (0.0, 255.0)
    """
    sample = np.asarray(sample)
    if mode not in ("auto", "percentile", "none"):
        raise ValueError(f"normalize must be 'auto', 'percentile' or 'none', got {mode!r}")
    if not 0.0 <= pmin < pmax <= 100.0:
        raise ValueError(f"need 0 <= pmin < pmax <= 100, got pmin={pmin}, pmax={pmax}")
    if not (np.issubdtype(sample.dtype, np.integer) or np.issubdtype(sample.dtype, np.floating) or sample.dtype == np.bool_):
        raise ValueError(f"cannot normalize an image of dtype {sample.dtype}")
    if mode == "none":
        return None
    if sample.dtype == np.bool_:
        return 0.0, 1.0
    if mode == "auto" and sample.dtype == np.uint8:
        return 0.0, 255.0
    _check_finite(sample)
    if sample.size == 0:
        return 0.0, 1.0
    # 8- and 16-bit images (most of them): the same figures from one counting pass, no sort.
    percentiles = histogram_percentiles if sample.dtype in (np.uint8, np.uint16) else np.percentile
    lo, hi = percentiles(sample, [pmin, pmax])
    return float(lo), float(hi)


def _check_finite(sample: np.ndarray) -> None:
    if np.issubdtype(sample.dtype, np.floating) and not np.isfinite(sample).all():
        bad = int((~np.isfinite(sample)).sum())
        raise ValueError(
            f"image holds {bad} NaN/infinite value(s); replace them (e.g. np.nan_to_num) "
            "before normalizing"
        )


def scale_intensity(
    region: np.ndarray, value_range: tuple[float, float] | None, eps: float = 1e-6
) -> np.ndarray:
    """Map ``value_range`` (from :func:`intensity_range`) to 0 and 1, as float32.

    A constant image (``high == low``) maps to zeros, not NaN.

    Example:
        >>> scale_intensity(np.array([0, 255], np.uint8), (0.0, 255.0)).tolist()
        [0.0, 1.0]
    """
    region = np.asarray(region)
    if value_range is None or region.dtype == np.bool_:
        return region.astype(np.float32)
    lo, hi = value_range
    if region.dtype == np.uint8 and (lo, hi) == (0.0, 255.0):
        return region.astype(np.float32) / np.float32(255.0)
    if region.dtype in (np.uint8, np.uint16):
        # float32 holds every 8- and 16-bit value, and the whole part of ``lo``, exactly: a third of
        # the float64 path's time, and within 1e-6 of it (tests/test_data_io.py).
        whole = np.floor(lo)
        out = region.astype(np.float32)
        out -= np.float32(whole)
        out -= np.float32(lo - whole)
        out /= np.float32(max(hi - lo, eps))
        return out
    # float64 for the subtraction: int32 ranges and large floats lose nothing.
    return ((region.astype(np.float64) - lo) / max(hi - lo, eps)).astype(np.float32)


def normalize_image(
    img: np.ndarray,
    pmin: float = 1.0,
    pmax: float = 99.8,
    clip: bool = False,
    eps: float = 1e-6,
    mode: str = "auto",
) -> np.ndarray:
    """Scale an image to float32 in roughly [0, 1] (:func:`intensity_range`, then :func:`scale_intensity`).

    ``uint8`` (and ``bool``) images are divided by their full range (255 or 1): their range is
    fixed and pathology stain colours are meaningful. ``uint16``, other integer and float
    images are percentile-normalized (as StarDist and Cellpose do): the ``pmin``-th percentile
    maps to 0 and the ``pmax``-th to 1, computed over all pixels and channels together so that
    colour ratios are kept. A few pixels may land slightly outside [0, 1] unless ``clip``.
    A constant image maps to all zeros.

    Args:
        img: the image as read by :func:`read_image`.
        pmin: low percentile, in [0, 100).
        pmax: high percentile, in (pmin, 100].
        clip: clip the result to [0, 1].
        eps: smallest denominator, so a constant image gives zeros and not NaN.
        mode: ``"auto"`` (the rule above), ``"percentile"`` (percentiles for ``uint8`` too),
            ``"none"`` (values kept, as float32) or ``"nuclear"`` (one plane, nuclei bright: the
            channel of :func:`fit_nuclear_input`, its percentiles mapped to 0 and 1 and clipped;
            grey output whatever the input's channels).

    Returns:
        The normalized image, ``float32``.

    Shape:
        - img: :math:`(H, W)` or :math:`(H, W, C)`.
        - output: same as ``img`` (``"nuclear"``: :math:`(H, W)`).

    Raises:
        ValueError: the image holds NaN or infinity, or the percentiles are invalid.

    Example:
        >>> x = normalize_image(np.array([[0, 255]], dtype=np.uint8))
        >>> x.tolist(), x.dtype
        ([[0.0, 1.0]], dtype('float32'))
    """
    img = np.asarray(img)
    if mode == "nuclear":
        intensity_range(img, "none", pmin, pmax)  # the same checks of dtype and percentiles
        _check_finite(img)
        return nuclear_plane(img, percentiles=(pmin, pmax), **_NUCLEAR_INPUT)[0]
    out = scale_intensity(img, intensity_range(img, mode, pmin, pmax), eps)
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out


def fit_nuclear_input(sample: np.ndarray, pmin: float = 1.0, pmax: float = 99.8) -> NuclearChannel:
    """``normalize="nuclear"``'s rule for one image, fitted on it or on a sample of its pixels.

    The :mod:`~liteunet.data.nuclear` channel of :data:`NUCLEAR_INPUT_STAINS`, as the fraction
    of light they absorb (dark DAB saturates; pale haematoxylin keeps its contrast).
    """
    return fit_nuclear_channel(sample, percentiles=(pmin, pmax), **_NUCLEAR_INPUT)


def match_channels(img: np.ndarray, in_chans: int) -> np.ndarray:
    """Bring an image to ``in_chans`` channels, channels last.

    Grey to RGB repeats the grey plane; RGB to grey takes the channel mean; RGBA drops alpha.

    Args:
        img: a grey :math:`(H, W)` / :math:`(H, W, 1)` or colour :math:`(H, W, C)` image.
        in_chans: channels the model expects (1 or 3 are the usual; any C matches itself).

    Returns:
        The image with exactly ``in_chans`` channels, same dtype.

    Shape:
        - output: :math:`(H, W, in\\_chans)`.

    Raises:
        ValueError: there is no sensible conversion (e.g. 2 channels to 3, RGB to 4).

    Example:
        >>> match_channels(np.zeros((4, 5), np.float32), 3).shape
        (4, 5, 3)
    """
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got {img.shape}")
    c = img.shape[-1]
    if c == in_chans:
        return img
    if c == 4 and in_chans in (1, 3):
        img, c = img[..., :3], 3  # alpha carries no stain information
        if in_chans == 3:
            return img
    if c == 1 and in_chans == 3:
        return np.repeat(img, 3, axis=-1)
    if c == 3 and in_chans == 1:
        return img.mean(axis=-1, keepdims=True, dtype=np.float64).astype(img.dtype)
    raise ValueError(
        f"cannot convert an image with {img.shape[-1]} channel(s) to in_chans={in_chans}: "
        "supported are grey<->RGB and RGBA->RGB/grey"
    )
