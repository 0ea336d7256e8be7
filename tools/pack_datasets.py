"""Pack the shared data sets into a folder of ~45 MB, for a GPU machine that takes 64 MiB per call.

Usage: ``python tools/pack_datasets.py [DEST]`` (default ``.devdata/datasets``, which
``.git/info/exclude`` should ignore); then ``LITEUNET_DATASETS=DEST`` there.

Same layout and file names as the shared folder, so the readers work unchanged with
LITEUNET_DATASETS=.devdata/datasets. Annotations, bcdata and adi are copied as they are.
RGB images (crc, mbm, vgg_cells, dsb2018 tissue) are re-encoded as JPEG quality 90 (under their
own names: PIL reads by content); bbbc039's 16-bit images become 8-bit JPEG over their 0.05-99.99
percentiles (training scales each image by its 1-99.8 percentiles anyway). Validation splits are
cut to their first 20 images (training validates on --val-max-images 20).
"""
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from liteunet.data.datasets import default_root

SRC = default_root()
DST = Path(sys.argv[1] if len(sys.argv) > 1 else ".devdata/datasets")
Q = 90


def jpeg_as(src, dst):
    im = Image.open(src)
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    im.save(dst, format="JPEG", quality=Q, subsampling=2)


def copy(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


if DST.exists():
    shutil.rmtree(DST)
for f in SRC.glob("*.md"):
    copy(f, DST / f.name)
# bcdata, adi: lossless copies
for name in ("bcdata", "adi"):
    shutil.copytree(SRC / name, DST / name)
# vgg_cells: cell images JPEG, dot images copied
(DST / "vgg_cells").mkdir(parents=True)
for f in (SRC / "vgg_cells").iterdir():
    if f.name.endswith("dots.png"):
        shutil.copy2(f, DST / "vgg_cells" / f.name)
    else:
        jpeg_as(f, DST / "vgg_cells" / f.name)
# crc: train all, validation all 10; images JPEG
for f in (SRC / "crc").rglob("*"):
    if f.is_dir():
        continue
    out = DST / "crc" / f.relative_to(SRC / "crc")
    out.parent.mkdir(parents=True, exist_ok=True)
    if f.suffix == ".png":
        jpeg_as(f, out)
    elif f.name.endswith("_detection.mat") or f.suffix == ".txt":
        shutil.copy2(f, out)
# mbm: images JPEG, dot masks copied
for f in (SRC / "mbm").iterdir():
    out = DST / "mbm" / f.name
    out.parent.mkdir(parents=True, exist_ok=True)
    if "_dots_" in f.name:
        shutil.copy2(f, out)
    else:
        jpeg_as(f, out)
# bbbc039: 8-bit images, labels copied, validation cut to 20
val = (SRC / "bbbc039/validation.txt").read_text().split()[:20]
train = (SRC / "bbbc039/train.txt").read_text().split()
(DST / "bbbc039/images").mkdir(parents=True)
(DST / "bbbc039/labels").mkdir(parents=True)
(DST / "bbbc039/train.txt").write_text("\n".join(train) + "\n")
(DST / "bbbc039/validation.txt").write_text("\n".join(val) + "\n")
for stem in train + val:
    img = next((SRC / "bbbc039/images").glob(stem + "*")) if not (SRC / "bbbc039/images" / stem).exists() else SRC / "bbbc039/images" / stem
    a = np.asarray(Image.open(img)).astype(np.float64)
    lo, hi = np.percentile(a, [0.05, 99.99])
    a8 = np.clip(np.round((a - lo) / max(hi - lo, 1e-6) * 255), 0, 255).astype(np.uint8)
    Image.fromarray(a8).save(DST / "bbbc039/images" / img.name, format="JPEG", quality=Q)
    lab = next((SRC / "bbbc039/labels").glob(Path(img.name).stem + "*"))
    shutil.copy2(lab, DST / "bbbc039/labels" / lab.name)
# dsb2018: points + manifest copied; RGB images JPEG, grey copied; validation cut to 20
val = (SRC / "dsb2018/validation.txt").read_text().split()[:20]
train = (SRC / "dsb2018/train.txt").read_text().split()
(DST / "dsb2018/images").mkdir(parents=True)
(DST / "dsb2018/points").mkdir(parents=True)
for f in ("manifest.csv",):
    if (SRC / "dsb2018" / f).exists():
        shutil.copy2(SRC / "dsb2018" / f, DST / "dsb2018" / f)
(DST / "dsb2018/train.txt").write_text("\n".join(train) + "\n")
(DST / "dsb2018/validation.txt").write_text("\n".join(val) + "\n")
for stem in train + val:
    src = SRC / "dsb2018/images" / (stem + ".png")
    im = Image.open(src)
    if im.mode == "RGB" or im.mode == "RGBA":
        jpeg_as(src, DST / "dsb2018/images" / src.name)
    else:
        shutil.copy2(src, DST / "dsb2018/images" / src.name)
    shutil.copy2(SRC / "dsb2018/points" / (stem + ".csv"), DST / "dsb2018/points" / (stem + ".csv"))
