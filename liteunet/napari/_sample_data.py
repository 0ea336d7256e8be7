"""Sample data: the images bundled with liteunet (:mod:`liteunet.samples`)."""

from __future__ import annotations

from typing import Any

from liteunet.data import read_image
from liteunet.samples import list_samples, sample_path

#: The sample napari's File > Open Sample menu offers (see ``napari.yaml``).
BBBC039 = "bbbc039_A02_s1.png"


def load_sample(name: str = BBBC039) -> list[tuple[Any, dict[str, Any], str]]:
    """One bundled sample image as a napari layer data tuple, pixel values unchanged.

    Raises:
        FileNotFoundError: no bundled sample of that name (the message lists those there are).
    """
    image = read_image(sample_path(name))
    return [(image, {"name": name.rsplit(".", 1)[0]}, "image")]


def bbbc039() -> list[tuple[Any, dict[str, Any], str]]:
    """BBBC039 field ``A02_s1``: Hoechst-stained U2OS nuclei, 520x696, 16-bit grey (CC0)."""
    return load_sample(BBBC039)


__all__ = ["BBBC039", "bbbc039", "list_samples", "load_sample"]
