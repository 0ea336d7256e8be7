"""Make the fixed split files of the data sets that come without one (mbm, vgg_cells, adi).

The files in ``liteunet/data/splits/`` are committed; this module documents how they were made
and lets a test check that they still match the data. Run
``python -m liteunet.data._make_splits [ROOT]`` to rewrite them.

- ``vgg_cells``: the common protocol, images 001-100 train and 101-200 validation.
- ``mbm``: each of the 11 source slides (``BM_GRAZ_HE_XXXX_YY``) has 4 crops; a seeded
  permutation of the slides puts round(25 %) of them (3 slides, 12 images) in validation, so
  no slide is on both sides.
- ``adi``: crops are grouped by GTEx donor (``GTEX-XXXX``, up to 3 crops each); donors are
  taken in a seeded random order into validation until it holds 25 % of the images (50).
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from .datasets import resolve_root

SEED = 0
VALIDATION_FRACTION = 0.25


def _grouped_split(
    names: list[str], group_of, seed: int, fraction: float, by_images: bool
) -> tuple[list[str], list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for name in sorted(names):
        groups[group_of(name)].append(name)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    validation: list[str] = []
    if by_images:
        want = round(fraction * len(names))
        for i in order:
            if len(validation) + len(groups[keys[i]]) <= want:
                validation += groups[keys[i]]
            if len(validation) == want:
                break
    else:
        for i in order[: round(fraction * len(keys))]:
            validation += groups[keys[i]]
    val_set = set(validation)
    return [n for n in sorted(names) if n not in val_set], sorted(validation)


def make_splits(root: Path) -> dict[str, dict[str, list[str]]]:
    """Compute the train/validation names of mbm, vgg_cells and adi from the files in ``root``."""
    vgg = sorted(p.name[: -len("cell.png")] for p in (root / "vgg_cells").glob("*cell.png"))
    mbm = sorted(p.stem for p in (root / "mbm").glob("BM_GRAZ_HE_*.png") if "_dots_" not in p.name)
    adi = sorted(p.stem for p in (root / "adi" / "images").glob("*.jpeg"))
    mbm_slide = lambda name: name.rsplit("_", 1)[0]  # noqa: E731
    adi_donor = lambda name: re.search(r"GTEX-[A-Z0-9]+", name).group(0)  # noqa: E731
    mbm_train, mbm_val = _grouped_split(mbm, mbm_slide, SEED, VALIDATION_FRACTION, False)
    adi_train, adi_val = _grouped_split(adi, adi_donor, SEED, VALIDATION_FRACTION, True)
    return {
        "vgg_cells": {"train": vgg[:100], "validation": vgg[100:]},
        "mbm": {"train": mbm_train, "validation": mbm_val},
        "adi": {"train": adi_train, "validation": adi_val},
    }


_HEADERS = {
    "vgg_cells": "common protocol: images 001-100 train, 101-200 validation",
    "mbm": f"seed {SEED}: 25 % of source slides (BM_GRAZ_HE_XXXX_YY) in validation, "
    "all crops of a slide on one side",
    "adi": f"seed {SEED}: donors (GTEX-XXXX) in random order into validation until it holds "
    "25 % of the images",
}


def write_splits(root: Path, out_dir: Path) -> None:
    """Write ``<name>_<split>.txt`` for each data set into ``out_dir``."""
    for name, splits in make_splits(root).items():
        for split, names in splits.items():
            header = f"# {name} {split} ({len(names)} images); {_HEADERS[name]}.\n"
            header += "# Made by python -m liteunet.data._make_splits\n"
            (out_dir / f"{name}_{split}.txt").write_text(header + "\n".join(names) + "\n")


if __name__ == "__main__":
    write_splits(resolve_root(sys.argv[1] if len(sys.argv) > 1 else None),
                 Path(__file__).resolve().parent / "splits")
