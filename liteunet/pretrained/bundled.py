"""The weights of every zoo tag ship inside the package, for machines that cannot reach the Hub.

One copy lives in git, in the top-level ``weights/<tag>/`` folder. The wheel gets its own
copy at build time (``setup.py`` copies it to ``liteunet/_bundled_weights/<tag>/``); an editable
install or a source checkout reads ``weights/<tag>/`` directly. When the folder is absent at
build time (the weights are still being trained), the wheel is built without them and
:func:`find_bundled` returns ``None``.

This module uses the standard library only: ``setup.py`` loads it by path at build time, where
torch may not be installed.

Example:
    >>> from liteunet.pretrained.bundled import BUNDLED_TAGS, find_bundled
    >>> BUNDLED_TAGS
    ('lite_unet.generalist', 'lite_unet.multi', 'lite_unet.crc', 'lite_unet.ki67')
    >>> find_bundled("lite_unet.other") is None  # only the zoo's tags ship
    True
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = [
    "BUNDLED_TAGS",
    "WEIGHTS_FILES",
    "bundled_roots",
    "copy_bundled",
    "find_bundled",
    "source_files",
]

# Every tag of the zoo ships (5 MB each), so each loads after `pip install` with no network;
# the Hub, when it has them, still comes first.
BUNDLED_TAGS: tuple[str, ...] = ("lite_unet.generalist", "lite_unet.multi", "lite_unet.crc", "lite_unet.ki67")
# What a weights folder holds; the wheel carries exactly these files of each bundled tag.
WEIGHTS_FILES: tuple[str, ...] = ("model.safetensors", "config.json", "README.md")
# Folder inside the installed package that holds the bundled copies.
PACKAGE_DIR = "_bundled_weights"


def bundled_roots() -> list[Path]:
    """Folders searched for ``<tag>/model.safetensors``, first match wins.

    Returns:
        ``liteunet/_bundled_weights`` (wheel installs), then the checkout's ``weights/`` when
        liteunet runs from a source checkout or an editable install.
    """
    package = Path(__file__).resolve().parent.parent  # liteunet/, this file is in pretrained/
    roots = [package / PACKAGE_DIR]
    checkout = package.parent
    # pyproject.toml beside the package means a checkout, not site-packages.
    if (checkout / "pyproject.toml").is_file() and (checkout / "weights").is_dir():
        roots.append(checkout / "weights")
    return roots


def find_bundled(tag: str) -> Path | None:
    """The bundled weights folder of ``tag`` (e.g. ``"lite_unet.multi"``), or ``None``.

    Args:
        tag: full pretrained name, ``<architecture>.<tag>``.

    Returns:
        The folder holding ``model.safetensors`` (and ``config.json``), or ``None`` when ``tag``
        is not bundled or this install was built without it.
    """
    if tag not in BUNDLED_TAGS:
        return None
    for root in bundled_roots():
        if (root / tag / "model.safetensors").is_file():
            return root / tag
    return None


def copy_bundled(weights_dir: Path, package_dir: Path) -> list[Path]:
    """Copy ``weights_dir/<tag>/`` of every bundled tag to ``package_dir/_bundled_weights/<tag>/``.

    Used by ``setup.py`` at build time. The destination is emptied first, so a wheel never
    carries weights left over from an earlier build.

    Args:
        weights_dir: the checkout's top-level ``weights/`` folder.
        package_dir: ``liteunet/`` inside the build directory.

    Returns:
        The files written (empty when no bundled tag has a ``model.safetensors``).
    """
    dest_root = Path(package_dir) / PACKAGE_DIR
    shutil.rmtree(dest_root, ignore_errors=True)
    written: list[Path] = []
    for tag in BUNDLED_TAGS:
        src = Path(weights_dir) / tag
        if not (src / "model.safetensors").is_file():
            continue
        (dest_root / tag).mkdir(parents=True, exist_ok=True)
        for name in WEIGHTS_FILES:
            if (src / name).is_file():
                written.append(Path(shutil.copyfile(src / name, dest_root / tag / name)))
    return written


def source_files(weights_dir: Path) -> list[Path]:
    """The files of ``weights_dir`` that :func:`copy_bundled` would copy (for the sdist)."""
    return [
        Path(weights_dir) / tag / name
        for tag in BUNDLED_TAGS
        if (Path(weights_dir) / tag / "model.safetensors").is_file()
        for name in WEIGHTS_FILES
        if (Path(weights_dir) / tag / name).is_file()
    ]
