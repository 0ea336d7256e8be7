"""Inference forms of a localization model: fused, channels-last, bf16, compiled, ONNX Runtime, TTA.

Every form takes a float32 ``(B, C, H, W)`` image batch and returns float32 ``(B, K, H, W)``
location maps, so :class:`~liteunet.Localizer`, :mod:`liteunet.bench` and user code can swap
them freely:

- :mod:`~liteunet.inference.fused`: :func:`fuse` (difference convolutions and BatchNorm folded
  into plain convolutions) and :func:`prepare_model` (precision, memory format, compile);
- :mod:`~liteunet.inference.onnx`: :func:`export_onnx` and :class:`OnnxModel` (ONNX Runtime,
  ``pip install 'liteunet[onnx]'``); :func:`quantize_onnx` makes the int8 form;
- :mod:`~liteunet.inference.tta`: :class:`TestTimeAugmentation`, maps averaged over flips and
  rotations;
- :mod:`~liteunet.inference.scale_model`: :class:`ScaleModel`, the zoom of an image relative to
  the training images, learned from the network's features (``object_size="auto"``);
- :mod:`~liteunet.inference.scale_search`: :func:`search_scale`, the nearby scale at which the
  network's peaks are highest, which checks that estimate.
"""

from ..models._base import copy_model_attributes
from .fused import PRECISIONS, FloatInputConv, InferenceModel, cpu_has_native_bf16, fuse, prepare_model
from .onnx import OnnxModel, calibration_images, default_calibration_images, export_onnx, quantize_onnx
from .scale_model import ScaleModel, fit_scale_model, stored_scale_model
from .scale_search import SEARCH_FACTORS, mean_peak_height, search_scale
from .tta import TTA_MODES, TestTimeAugmentation, dihedral_transform, tta_average

__all__ = [
    "PRECISIONS",
    "SEARCH_FACTORS",
    "TTA_MODES",
    "FloatInputConv",
    "InferenceModel",
    "OnnxModel",
    "TestTimeAugmentation",
    "calibration_images",
    "copy_model_attributes",
    "cpu_has_native_bf16",
    "default_calibration_images",
    "dihedral_transform",
    "export_onnx",
    "fuse",
    "prepare_model",
    "quantize_onnx",
    "ScaleModel",
    "fit_scale_model",
    "mean_peak_height",
    "search_scale",
    "stored_scale_model",
    "tta_average",
]
