"""ONNX forms of a localization model: export, int8 quantization, and running it in ONNX Runtime.

Needs ``pip install 'liteunet[onnx]'`` (onnx, onnxscript, onnxruntime); imported only where used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..data import load_split
from ..data.io import IMAGE_SUFFIXES, match_channels, normalize_image, read_image
from ..pretrained import load_inference_checks, load_localization_settings, load_weights_config
from ..samples import sample_path
from .fused import fuse

__all__ = ["OnnxModel", "calibration_images", "default_calibration_images", "export_onnx", "quantize_onnx"]

_ONNX_METADATA_KEY = "liteunet"


def _onnx_extra_hint() -> str:
    return "pip install 'liteunet[onnx]' (onnx, onnxscript, onnxruntime)"


def _model_metadata(model: nn.Module) -> dict[str, Any]:
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    return {
        "architecture": cfg.get("architecture", type(model).__name__),
        "tag": cfg.get("tag", ""),
        "num_classes": int(getattr(model, "num_classes", 1)),
        "in_chans": int(getattr(model, "in_chans", 3)),
        "size_divisor": int(getattr(model, "size_divisor", 16)),
        "label_names": list(cfg.get("label_names") or []),
        "localization": load_localization_settings(model),
        "inference": {"precision_guard": load_inference_checks(model)},
    }


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    example_size: int = 256,
    opset: int | None = None,
    check: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Write ``model`` (fused first) as an ONNX file with dynamic batch, height and width.

    The localization settings, classes and input channels travel in the file's metadata, so
    :class:`OnnxModel` and :func:`liteunet.localize` use it like the weights it came from.

    Args:
        model: a localization model.
        path: the ``.onnx`` file to write.
        example_size: side of the example image traced (any multiple of 16 works).
        opset: ONNX opset (default: the exporter's).
        check: run the file with ONNX Runtime on a non-multiple-of-16 image and compare with
            PyTorch; raises if the largest difference exceeds ``atol``.

    Returns:
        the path written.
    """
    try:
        import onnx
    except ImportError as err:
        raise ImportError(f"ONNX export needs the onnx packages: {_onnx_extra_hint()}") from err
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = _model_metadata(model)
    # ONNX keeps the decoders' concatenations: int8 quantizers scale each tensor on its own, and
    # the two partial sums of a split decoder conv quantized far worse than one conv over the
    # concatenation (lite_unet.multi's int8 guard went from 16 to 56 points).
    fused = fuse(model, split_decoder=False).float().cpu()
    # Batch 2: with a batch-1 example, export specializes transposed convs to batch 1.
    x = torch.rand(2, meta["in_chans"], example_size, example_size)
    side = torch.export.Dim
    dynamic = {"x": {0: side("batch", min=1, max=1024), 2: side("height", min=16, max=65536), 3: side("width", min=16, max=65536)}}
    # The forward's first argument is named x in every liteunet model; others fall back to position.
    try:
        torch.onnx.export(
            fused, (x,), str(path), dynamo=True, external_data=False, dynamic_shapes=dynamic,
            input_names=["image"], output_names=["location_map"], opset_version=opset,
        )
    except Exception as err:
        raise RuntimeError(f"ONNX export of {meta['architecture']} failed: {err}") from err
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = _ONNX_METADATA_KEY, json.dumps(meta)
    onnx.save(proto, str(path))
    if check:
        with torch.inference_mode():
            probe = torch.rand(1, meta["in_chans"], 3 * 16 + 5, 4 * 16 + 9)
            expected = fused(probe).numpy()
        got = OnnxModel(path)(probe).numpy()
        diff = float(np.abs(got - expected).max())
        if not diff <= atol:
            raise RuntimeError(f"{path}: ONNX Runtime differs from PyTorch by {diff:.2e} (> {atol:.0e})")
    return path


def quantize_onnx(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    calibration: Iterable[np.ndarray],
    *,
    per_channel: bool = True,
) -> Path:
    """Post-training static int8 quantization of an exported model with ONNX Runtime.

    Weights become int8 per channel and activations uint8 (the u8s8 pairing x86 VNNI runs
    natively), with scales calibrated on ``calibration`` images.

    Args:
        src: an ONNX file from :func:`export_onnx`.
        dst: the int8 ONNX file to write.
        calibration: float32 ``(C, H, W)`` or ``(B, C, H, W)`` images normalized as the model
            sees them (crops of the training or validation data); a few dozen suffice.
        per_channel: one scale per output channel for weights (more accurate).

    Returns:
        the path written; its metadata says ``"precision": "int8"``.
    """
    try:
        import onnx
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as err:
        raise ImportError(f"int8 quantization needs ONNX Runtime: {_onnx_extra_hint()}") from err
    src, dst = Path(src), Path(dst)
    proto = onnx.load(str(src))
    input_name = proto.graph.input[0].name
    meta = _read_metadata(proto)

    batches = []
    for image in calibration:
        arr = np.asarray(image, dtype=np.float32)
        batches.append({input_name: arr[None] if arr.ndim == 3 else arr})
    if not batches:
        raise ValueError("calibration gave no images; int8 scales need a few real images")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    dst.parent.mkdir(parents=True, exist_ok=True)
    pre = dst.with_name(dst.stem + ".pre.onnx")
    try:
        # ORT's symbolic shape inference cannot follow the dynamic padding; ONNX's own can.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(dst), _Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
    finally:
        pre.unlink(missing_ok=True)
    out = onnx.load(str(dst))
    meta["precision"] = "int8"
    del out.metadata_props[:]
    entry = out.metadata_props.add()
    entry.key, entry.value = _ONNX_METADATA_KEY, json.dumps(meta)
    onnx.save(out, str(dst))
    return dst


def calibration_images(sources: Sequence[str | os.PathLike], per_source: int = 8, size: int = 256) -> list[np.ndarray]:
    """Centre crops of real images, normalized as the model sees them, to calibrate int8 scales.

    Args:
        sources: shared data set names (their ``train`` split is used), folders of images, or
            image files.
        per_source: images taken from each data set or folder.
        size: crop side (smaller images are used whole).

    Returns:
        float32 ``(3, h, w)`` arrays.
    """
    paths: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:per_source]
        elif path.is_file():
            paths.append(path)
        else:
            paths += [Path(s.image_path) for s in load_split(str(source), "train")[:per_source]]
    images = []
    for path in paths:
        image = match_channels(normalize_image(read_image(path)), 3).transpose(2, 0, 1)
        h, w = image.shape[1:]
        y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
        images.append(np.ascontiguousarray(image[:, y : y + size, x : x + size], dtype=np.float32))
    if not images:
        raise ValueError(f"no calibration images found in {list(map(str, sources))}")
    return images


def default_calibration_images(model: nn.Module) -> tuple[list[np.ndarray], list[str]]:
    """Calibration crops for ``model``'s int8 form: its training sets where the shared data sets
    are found (what its weights' ``config.json`` names), else the bundled sample image.

    Returns:
        The crops (see :func:`calibration_images`) and the sources they came from.
    """
    sources = [str(s) for s in (load_weights_config(model).get("training") or {}).get("datasets") or []]
    try:
        return calibration_images(sources), sources
    except (OSError, ValueError, KeyError):
        sources = [str(sample_path())]
        return calibration_images(sources), sources


def _read_metadata(proto: Any) -> dict[str, Any]:
    for entry in proto.metadata_props:
        if entry.key == _ONNX_METADATA_KEY:
            return json.loads(entry.value)
    return {}


class OnnxModel(nn.Module):
    """An exported model run by ONNX Runtime, called like the PyTorch model it came from.

    Args:
        path: an ``.onnx`` file from :func:`export_onnx` or :func:`quantize_onnx`.
        providers: ONNX Runtime execution providers (default: CUDA when available, then CPU).
        threads: intra-op threads (default: ``torch.get_num_threads()``, the same as PyTorch).

    Shape:
        - Input: :math:`(B, C, H, W)` float32, any H and W.
        - Output: :math:`(B, K, H, W)` float32.
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError(f"running an ONNX model needs ONNX Runtime: {_onnx_extra_hint()}") from err
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        available = ort.get_available_providers()
        providers = list(providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available])
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as err:
            raise ValueError(f"{self.path}: ONNX Runtime cannot load it: {err}") from err
        meta = json.loads(self.session.get_modelmeta().custom_metadata_map.get(_ONNX_METADATA_KEY, "{}"))
        self.metadata = meta
        self.input_name = self.session.get_inputs()[0].name
        self.in_chans = int(meta.get("in_chans", self.session.get_inputs()[0].shape[1]))
        self.num_classes = int(meta.get("num_classes", 1))
        # The graph pads any size to its pooling grid itself, as the PyTorch model does; the grid
        # still tells localize() where tiles must start to see the pooling windows of one pass.
        self.size_divisor = int(meta.get("size_divisor", 1))
        self.precision = meta.get("precision", "fp32")
        self.pretrained_cfg = {
            "architecture": meta.get("architecture", "onnx"),
            "tag": meta.get("tag", ""),
            "label_names": meta.get("label_names") or None,
            "localization": meta.get("localization") or {},
            "inference": meta.get("inference") or {},
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"{self.path.name} expects input (B, {self.in_chans}, H, W), got shape {tuple(x.shape)}")
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        (out,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(out)
