"""Percentiles of 8- and 16-bit images from their histogram, equal to ``np.percentile``'s to the last bit.

Every image is scaled by its own 1st and 99.8th percentiles when the weights say so
(:func:`liteunet.data.io.intensity_range`), bright-field RGB images included. ``np.percentile``
partially sorts a copy of all the values: on a 2048x2048 RGB image that is most of the cost of
normalizing it. An 8- or 16-bit image has at most 65,536 distinct values, so one counting pass
gives every order statistic, and numpy's default ("linear") interpolation between the two that
bracket each percentile is repeated here operation for operation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["histogram_percentiles"]

#: Values counted per pass (np.bincount widens them to 8 bytes each).
_CHUNK = 1 << 22


def histogram_percentiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, q)`` for a ``uint8`` or ``uint16`` array, from one counting pass.

    Args:
        values: any shape, ``uint8`` or ``uint16``, at least one value.
        q: percentiles in ``[0, 100]``.

    Returns:
        float64 array of ``len(q)``, equal to ``np.percentile(values, q)`` (its default method).

    Example:
        >>> histogram_percentiles(np.array([0, 10, 20, 30], np.uint8), [0, 50, 100]).tolist()
        [0.0, 15.0, 30.0]
    """
    values = np.asarray(values)
    if values.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"histogram_percentiles needs uint8 or uint16 values, got {values.dtype}")
    if values.size == 0:
        raise ValueError("histogram_percentiles needs at least one value")
    flat = values.reshape(-1)
    levels = 1 << (8 * values.dtype.itemsize)
    counts = np.zeros(levels, np.int64)
    for start in range(0, flat.size, _CHUNK):
        counts += np.bincount(flat[start : start + _CHUNK], minlength=levels)
    ends = np.cumsum(counts)  # ends[v]: how many values are <= v
    n = flat.size
    # numpy's "linear" method: the virtual index (n - 1) * q / 100, its floor and the next rank.
    virtual = (n - 1) * np.true_divide(np.asarray(q, np.float64), 100)
    previous = np.floor(virtual)
    following = previous + 1
    last = virtual >= n - 1
    previous[last] = following[last] = n - 1
    previous, following = previous.astype(np.intp), following.astype(np.intp)
    # numpy reads the gamma of a last-rank index against index -1; either way both bounds are the maximum.
    gamma = virtual - np.where(last, -1, previous)
    # The value of rank k in sorted order: the first value more than k values reach.
    below = np.searchsorted(ends, previous, side="right").astype(values.dtype)
    above = np.searchsorted(ends, following, side="right").astype(values.dtype)
    diff = above - below  # never negative: ranks are in order
    out = np.add(below, diff * gamma)
    np.subtract(above, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out
