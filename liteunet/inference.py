"""Inference forms of a localization model: fused, channels-last, bf16, compiled, ONNX Runtime.

Every form takes a float32 ``(B, C, H, W)`` image batch and returns float32 ``(B, K, H, W)``
location maps, so :class:`~liteunet.Localizer`, :mod:`liteunet.bench` and user code can swap
them freely:

- :func:`fuse`: difference convolutions and BatchNorm folded into plain convolutions (exact up
  to float rounding);
- :func:`prepare_model`: a fused model in the chosen precision (``fp32``, ``bf16``, ``fp16``)
  and memory format, optionally ``torch.compile``-d;
- :func:`export_onnx` and :class:`OnnxModel`: an ONNX file with dynamic height and width, run by
  ONNX Runtime (``pip install 'liteunet[onnx]'``); :func:`quantize_onnx` makes its int8 form.

Reduced precision changes the location map slightly; :func:`liteunet.evaluate.precision_guard`
measures what it does to F1 on validation data, and the weights record the result.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .models._base import LocalizationModel
from .models._fuse import stack_branches

__all__ = [
    "PRECISIONS",
    "fuse",
    "prepare_model",
    "InferenceModel",
    "cpu_has_native_bf16",
    "export_onnx",
    "quantize_onnx",
    "calibration_images",
    "OnnxModel",
]

#: Precisions an inference form can run in; ``int8`` only through ONNX Runtime.
PRECISIONS = ("fp32", "bf16", "fp16", "int8")

#: What the localizer reads off a model; every wrapper passes these through.
_MODEL_ATTRIBUTES = ("num_classes", "in_chans", "size_divisor", "pretrained_cfg")


def copy_model_attributes(source: nn.Module, wrapper: nn.Module) -> nn.Module:
    """Give ``wrapper`` the localization attributes of the model it wraps; returns ``wrapper``."""
    for name in _MODEL_ATTRIBUTES:
        if hasattr(source, name):
            setattr(wrapper, name, getattr(source, name))
    return wrapper


_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_ONNX_METADATA_KEY = "liteunet"


def _onnx_extra_hint() -> str:
    return "pip install 'liteunet[onnx]' (onnx, onnxscript, onnxruntime)"


def fuse(model: nn.Module, split_decoder: bool = True) -> nn.Module:
    """An inference copy of ``model`` with difference convs and BatchNorm folded into convs.

    Models without a ``reparameterize`` method are returned as an eval-mode deep copy. The
    original is left untouched. ``split_decoder`` (Lite-UNet models) feeds decoder blocks their
    two inputs apart instead of concatenated (see ``LocalizationModel.reparameterize``).

    Example:
        >>> import liteunet, torch
        >>> model = liteunet.create_model("lite_unet").eval()
        >>> fused = liteunet.fuse(model)
        >>> x = torch.rand(1, 3, 64, 64)
        >>> bool(torch.allclose(model(x), fused(x), atol=1e-4))
        True
    """
    if isinstance(model, LocalizationModel):
        return model.reparameterize(split_decoder=split_decoder)
    if hasattr(model, "reparameterize"):  # e.g. a single CDConv2d
        return model.reparameterize()
    return copy.deepcopy(model).eval()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX), where bf16 pays off."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch: no probe, assume not
        return False


class FloatInputConv(nn.Module):
    """A convolution that reads the image in float32 inside a reduced-precision model.

    Lite-UNet's first layers are difference convolutions (eq. 3): they weigh neighbouring pixels
    against each other, so rounding the image to bf16's 8-bit mantissa costs more there than
    anywhere else. Keeping only these convs in float32 halved the mean bf16 error of the
    location map on mbm validation images (0.00100 -> 0.00058) for 4 small convs.

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`, any float dtype.
        - Output: :math:`(B, C_{out}, H, W)` in ``dtype``.
    """

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype) -> None:
        super().__init__()
        self.conv = conv.float()
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.float()).to(self.dtype)


def _image_readers(model: nn.Module) -> list[str]:
    """Names of the modules that read the model's input tensor itself; empty if any is not a conv."""
    size_divisor = int(getattr(model, "size_divisor", 16))
    side = max(32, int(getattr(model, "min_input_size", 0) or 0))
    side = -(-side // size_divisor) * size_divisor  # no padding, so the image itself reaches them
    param = next(model.parameters(), None)
    x = torch.rand(1, int(getattr(model, "in_chans", 3)), side, side, device=param.device if param is not None else "cpu")
    readers: dict[str, nn.Module] = {}

    def record(name: str, module: nn.Module):
        def hook(_module: nn.Module, args: tuple) -> None:
            if args and isinstance(args[0], torch.Tensor) and args[0].data_ptr() == x.data_ptr():
                readers[name] = module
        return hook

    handles = [m.register_forward_pre_hook(record(n, m)) for n, m in model.named_modules() if n and not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    except Exception:  # a model that cannot run this probe simply keeps the plain cast
        readers.clear()
    finally:
        for handle in handles:
            handle.remove()
    if not readers or not all(type(m) is nn.Conv2d for m in readers.values()):
        return []
    return list(readers)


class InferenceModel(nn.Module):
    """A model run in a given dtype and memory format, with float32 NCHW in and out.

    In bf16 or fp16 the convolutions that read the image itself stay float32
    (:class:`FloatInputConv`); everything after them runs in ``dtype``.

    Args:
        model: the (usually fused) model.
        dtype: weights and activations dtype (``torch.float32``, ``bfloat16``, ``float16``).
        channels_last: store activations NHWC, the layout oneDNN's convolutions run fastest in.

    Shape:
        - Input: :math:`(B, C, H, W)` float32.
        - Output: :math:`(B, K, H, W)` float32.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.float32, channels_last: bool = False) -> None:
        super().__init__()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.dtype = dtype
        readers = _image_readers(model.eval()) if dtype != torch.float32 else []
        self.model = model.to(dtype=dtype, memory_format=self.memory_format).eval()
        for name in readers:
            parent_name, _, child = name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            setattr(parent, child, FloatInputConv(getattr(parent, child), dtype))
        self.input_dtype = torch.float32 if readers else dtype
        copy_model_attributes(model, self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype=self.input_dtype).contiguous(memory_format=self.memory_format)
        return self.model(x).float().contiguous()


def prepare_model(
    model: nn.Module,
    precision: str = "fp32",
    *,
    device: str | torch.device = "cpu",
    channels_last: bool | None = None,
    compile: bool = False,
    compile_mode: str | None = None,
    fused: bool = True,
) -> nn.Module:
    """The fastest PyTorch form of ``model`` for inference in ``precision``.

    Args:
        model: a localization model (any ``nn.Module`` mapping images to maps).
        precision: ``fp32``, ``bf16`` or ``fp16`` (``int8`` runs through :func:`quantize_onnx`).
        device: where the model runs.
        channels_last: NHWC activations; default on, the faster layout for these convolutions on
            CPU and on tensor-core GPUs (measured with ``liteunet bench``).
        compile: wrap in ``torch.compile`` with weight freezing (the weights become constants of
            the compiled graph: prepare again after changing them); each new input size compiles,
            which takes tens of seconds.
        compile_mode: ``torch.compile``'s ``mode``: ``None`` (its default), ``"reduce-overhead"``
            (on CUDA, replays each call as one captured CUDA graph) or ``"max-autotune"``.
        fused: fold difference convs and BatchNorm first (:func:`fuse`); compiled bf16 on CPU
            also stacks the gradient aggregation branches into one full-width conv per depth.

    Returns:
        an ``nn.Module`` taking float32 ``(B, C, H, W)`` and returning float32 ``(B, K, H, W)``.
    """
    if precision not in _DTYPES:
        hint = "; int8 runs through ONNX Runtime: liteunet.inference.quantize_onnx" if precision == "int8" else ""
        raise ValueError(f"precision must be one of {sorted(_DTYPES)}, got {precision!r}{hint}")
    device = torch.device(device)
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 is for CUDA; on CPU use bf16")
    base = fuse(model) if fused else copy.deepcopy(model).eval()
    if fused and compile and precision == "bf16" and device.type == "cpu":
        # One dense conv per GA depth instead of four 7-channel ones and a concatenation that
        # Inductor could not vectorize: 8% faster compiled in bf16 on 1 core (180 -> 165 ms per
        # 512 image); 4% slower eager, and far slower in fp32 (6.4x the GA's 3x3 multiply-adds).
        stack_branches(base)
    runner: nn.Module = InferenceModel(
        base.to(device), _DTYPES[precision], channels_last=True if channels_last is None else channels_last
    )
    if compile:
        # Static shapes: torch 2.15's dynamic-shape path fails on GCA's 1/N (a float of H x W);
        # localize() feeds equal-sized tiles, so each image size compiles once.
        # Freezing folds the (now constant) weights into the graph so Inductor can pre-pack them
        # for oneDNN and fuse the activations into the convolutions (_FrozenCompiled says why it
        # needs a wrapper). It applies under torch.no_grad()/inference_mode(), as localize() runs.
        runner = copy_model_attributes(runner, _FrozenCompiled(torch.compile(runner, dynamic=False, mode=compile_mode)))
    return runner


class _FrozenCompiled(nn.Module):
    """Calls a ``torch.compile``'d module with Inductor's weight freezing switched on.

    Dynamo decides while tracing whether parameters become graph constants, and it reads the
    global Inductor config to do so; ``torch.compile(options={"freezing": True})`` is applied only
    after tracing, so with it the weights stayed graph inputs and nothing was frozen (torch 2.15:
    no frozen constants in Inductor's output code). Patching the config around each call, where
    any (re)compilation happens, freezes them: compiled bf16 Lite-UNet 153 -> 116 ms per 512x512
    image, fp32 329 -> 306 ms, on one core in one A/B run.

    Shape:
        - Input: whatever the compiled module takes.
        - Output: whatever it returns.
    """

    def __init__(self, compiled: nn.Module) -> None:
        super().__init__()
        import torch._inductor.config as inductor_config

        self.compiled = compiled
        self._inductor_config = inductor_config

    @property
    def _orig_mod(self) -> nn.Module:
        """The module before compiling, as ``torch.compile``'s own wrapper names it."""
        return self.compiled._orig_mod

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self._inductor_config.patch(freezing=True):
            return self.compiled(*args, **kwargs)


# --- ONNX ---------------------------------------------------------------------------------------


def _model_metadata(model: nn.Module) -> dict[str, Any]:
    from .hub import load_inference_checks, load_localization_settings

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
    from .data import load_split
    from .data.io import match_channels, normalize_image, read_image
    from .localization import IMAGE_SUFFIXES

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
