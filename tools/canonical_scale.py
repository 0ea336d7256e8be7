"""Train at one object size: every image brought to SIZE px by its own estimated object size.

An experiment of session 28 (docs/generalist.md, "Training at one object size"), kept so its
figures can be reproduced; not a library feature. Each training and validation image is resized
by ``SIZE / estimate``, ``estimate`` its own ``liteunet.object_size.estimate_object_size`` (the
blob estimator that ``object_size="auto"`` uses at inference), clipped to ``SCALE_LIMITS``; its
points likewise. Then ``liteunet train`` runs unchanged. Validation during training is scored in
the resized pixels, so its figures are not comparable with a native-scale run's: evaluate the
result with ``liteunet eval WEIGHTS SETS --object-size auto --auto-by blobs`` on a weights folder
that records SIZE (the ``weights`` command).

Usage:
    python tools/canonical_scale.py --size 8 train crc bcdata ... -o runs/canon8 [liteunet train options]
    python tools/canonical_scale.py --size 8 weights runs/canon8/best runs/canon8_weights

Estimates are cached in ``--cache`` (default ``runs/object_sizes.json``; bbbc039's 200 images
take about 3 minutes on 2 cores).
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

import liteunet.data.torch_dataset as torch_dataset
import liteunet.evaluate as evaluate
import liteunet.train as training
from liteunet.data.datasets import Sample
from liteunet.data.io import read_image
from liteunet.object_size import estimate_object_size, rescale_image, rescale_points, scale_to_trained


def patch_training(size: float, cache: Path) -> None:
    """Make ``liteunet train`` read every image and its points at ``size`` px objects."""
    estimates = json.loads(cache.read_text()) if cache.exists() else {}
    zoom_by_path: dict[str, float] = {}
    load_split = training.load_split

    def zoom_of(path: Path) -> float:
        key = str(path)
        if key not in estimates:
            estimates[key] = estimate_object_size(read_image(path))
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(estimates))
        return scale_to_trained(estimates[key], size)[0]

    def load_split_resized(name: str, split: str) -> list[Sample]:
        out = []
        for s in load_split(name, split):
            zoom = zoom_by_path[str(s.image_path)] = zoom_of(s.image_path)
            out.append(Sample(s.image_path, rescale_points(s.points, zoom), s.labels, s.name))
        zooms = [zoom_by_path[str(s.image_path)] for s in out]
        print(f"{name}/{split}: median zoom {np.median(zooms):.2f}", flush=True)
        return out

    def read_resized(path, *args, **kwargs):
        image = read_image(path, *args, **kwargs)
        zoom = zoom_by_path.get(str(path), 1.0)
        return image if zoom == 1.0 else rescale_image(image, zoom)

    training.load_split = load_split_resized
    torch_dataset.read_image = read_resized
    evaluate.read_image = read_resized


def write_weights(src: Path, dst: Path, size: float) -> None:
    """Copy a run's ``best/`` folder as weights that record ``size`` and no scale model."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    loc = config.setdefault("localization", {})
    loc["object_size"] = size
    loc.pop("scale_model", None)
    loc.pop("object_size_by_dataset", None)
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, required=True, help="object size (px) every image is brought to")
    parser.add_argument("--cache", type=Path, default=Path("runs/object_sizes.json"))
    parser.add_argument("command", choices=["train", "weights"])
    args, rest = parser.parse_known_args()
    if args.command == "weights":
        src, dst = rest
        write_weights(Path(src), Path(dst), args.size)
        return 0
    patch_training(args.size, args.cache)
    from liteunet.cli.main import main as liteunet_main

    return liteunet_main(["train", *rest])


if __name__ == "__main__":
    sys.exit(main())
