"""A dim 8-bit copy of the bundled 16-bit fluorescence sample against the original (issue 19).

The copy keeps the top 8 of 16 bits (values // 256, mean ~6 of 255), as a camera saving 8-bit
would. Prints, per model and input scaling, the cells of each and how many match within 3 px.
Run: python examples/dim_8bit_vs_16bit.py
"""
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from liteunet import localize
from liteunet.data import read_image
from liteunet.samples import sample_path
o = read_image(sample_path()); d = (o // 256).astype(np.uint8)
for model, norm in (("lite_unet.multi", None), ("lite_unet.multi", "percentile"), ("lite_unet.generalist", None)):
    a, b = localize([o, d], model, normalize=norm, progress=False)
    D = cdist(a.xy, b.xy); r, c = linear_sum_assignment(D)
    print(model, norm, "16-bit", len(a.xy), "dim 8-bit", len(b.xy), "matched within 3 px", int((D[r, c] <= 3).sum()))
