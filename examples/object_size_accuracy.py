"""The object-size estimator against true nucleus diameters (docs/localize.md, "Object size").

dsb2018: the median of ``points/STEM.csv``'s ``diameter`` (equivalent-disc diameter of each
nucleus's mask) per validation image; bbbc039: the median of ``2 * sqrt(area / pi)`` over the
nuclei of each validation label image. Run from the repository root::

    python examples/object_size_accuracy.py [N_BBBC039_IMAGES]
"""

import csv
import sys

import numpy as np

from liteunet.data import read_image, resolve_root
from liteunet.object_size import estimate_object_size


def report(name: str, pairs: list) -> None:
    v = np.array(pairs)
    r = v[:, 1] / v[:, 0]
    print(f"{name}: {len(v)} images, true median {np.median(v[:, 0]):.1f} px, estimated median {np.nanmedian(v[:, 1]):.1f} px, "
          f"estimate/true median {np.nanmedian(r):.2f} (10th-90th percentile {np.nanpercentile(r, 10):.2f}-{np.nanpercentile(r, 90):.2f})")


root = resolve_root(None)
dsb = root / "dsb2018"
groups = {r["stem"]: r["group"] for r in csv.DictReader(open(dsb / "manifest.csv"))}
per_group: dict = {}
for stem in (dsb / "validation.txt").read_text().split():
    true = [float(r["diameter"]) for r in csv.DictReader(open(dsb / "points" / f"{stem}.csv"))]
    if true:
        per_group.setdefault(groups[stem], []).append((np.median(true), estimate_object_size(read_image(dsb / "images" / f"{stem}.png"))))
for group, pairs in sorted(per_group.items()):
    report(f"dsb2018 {group}", pairs)
every = np.array([p for pairs in per_group.values() for p in pairs])
print(f"dsb2018 all: log-correlation {np.corrcoef(np.log(every[:, 0]), np.log(every[:, 1]))[0, 1]:.2f}")
names = (root / "bbbc039" / "validation.txt").read_text().split()[: int(sys.argv[1]) if len(sys.argv) > 1 else None]
pairs = []
for name in names:
    labels = read_image(root / "bbbc039" / "labels" / f"{name}.png")
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    pairs.append((np.median(2 * np.sqrt(areas / np.pi)), estimate_object_size(read_image(root / "bbbc039" / "images" / f"{name}.png"))))
report("bbbc039", pairs)
