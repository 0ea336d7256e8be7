"""How far flipping an image moves the points, per shared data set (docs/robustness.md, flips).

Each validation image is cropped to a multiple of 16 (so padding is the same for an image and its
mirror), localized, flipped left-right and upside-down, localized again, and the points flipped
back are matched one-to-one within 3 px to those of the unflipped image. Run from the
repository root::

    python examples/flip_agreement.py [WEIGHTS] [IMAGES_PER_SET]

(default ``lite_unet.multi``, 5 images per set; one CPU thread, fp32).
"""

import sys

import numpy as np
import torch

import liteunet
from liteunet.bench.invariance import flip_agreement
from liteunet.data import load_split, read_image

SETS = ("crc", "mbm", "bbbc039", "vgg_cells", "adi", "bcdata", "dsb2018")


def main(weights: str = "lite_unet.multi", per_set: int = 5) -> None:
    torch.set_num_threads(1)
    localize = liteunet.Localizer(weights, device="cpu", precision="fp32", progress=False)
    print("| set | images | points | within 3 px | mean shift along the flip |\n|---|---|---|---|---|")
    for name in SETS:
        counts, within, shifts = [], [], []
        samples = load_split(name, "validation")[:per_set]
        for sample in samples:
            image = read_image(sample.image_path)
            h, w = image.shape[0] // 16 * 16, image.shape[1] // 16 * 16
            image = np.ascontiguousarray(image[:h, :w])
            points = localize(image)[0].xy
            for axis, mirrored, side in ((0, image[:, ::-1], w), (1, image[::-1], h)):
                back = flip_agreement(points, localize(np.ascontiguousarray(mirrored))[0].xy, axis, side)
                counts.append(len(points))
                within.append(back["within_3px"])
                shifts.append(back["mean_shift_" + "xy"[axis]])
        n = np.asarray(counts, float)
        print(f"| {name} | {len(samples)} | {int(n.sum()) // 2:,} | {np.average(within, weights=n):.1%} | "
              f"{np.average(shifts, weights=n):+.3f} px |", flush=True)


if __name__ == "__main__":
    main(*(f(a) for f, a in zip((str, int), sys.argv[1:])))
