"""Colour deconvolution of bright-field stains (Ruifrok & Johnston 2001), the one copy of its matrix.

Haematoxylin, eosin and DAB each absorb light with a fixed colour: the optical density of a
pixel, ``-log(rgb)``, is a sum of the three stains' vectors. Used by stain augmentation
(:func:`liteunet.data.augment.stain_jitter`) and by the object-size estimator's nuclear channel.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RGB_FROM_HED", "HED_FROM_RGB"]

#: Optical-density vectors of haematoxylin, eosin and DAB (rows), unit length, as in
#: scikit-image's ``rgb_from_hed``.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64)
RGB_FROM_HED /= np.linalg.norm(RGB_FROM_HED, axis=1, keepdims=True)
#: Optical density (row vector) @ HED_FROM_RGB = stain amounts (as ``skimage.color.rgb2hed``).
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
