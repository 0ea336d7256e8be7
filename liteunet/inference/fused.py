"""PyTorch inference forms of a localization model: fused, channels-last, bf16, compiled.

- :func:`fuse`: difference convolutions and BatchNorm folded into plain convolutions (exact up
  to float rounding);
- :func:`prepare_model`: a fused model in the chosen precision (``fp32``, ``bf16``, ``fp16``)
  and memory format, optionally ``torch.compile``-d.

Reduced precision changes the location map slightly; :func:`liteunet.evaluate.precision_guard`
measures what it does to F1 on validation data, and the weights record the result.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from ..models._base import LocalizationModel, copy_model_attributes
from ..models._fuse import stack_branches

__all__ = ["PRECISIONS", "FloatInputConv", "InferenceModel", "cpu_has_native_bf16", "fuse", "prepare_model"]

#: Precisions an inference form can run in; ``int8`` only through ONNX Runtime.
PRECISIONS = ("fp32", "bf16", "fp16", "int8")

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
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
    against each other, so rounding the image, or these convs' weights, to bf16's 8-bit mantissa
    costs more there than anywhere else. Until session 40 the weights were rounded to bf16 and
    back (the model was cast before these convs were kept), and keeping the convs lowered the
    location map's error by only 4-10% with the weights of session 36. With their exact float32
    weights the mean absolute difference of the map from float32's, ``generalist_c15`` on the
    validation images, fell from 0.00119 to 0.00042 on bcdata, 0.00066 to 0.00042 on crc, 0.00046
    to 0.00028 on mbm and 0.00168 to 0.00084 on adi; keeping all of GA in float32 as well lowered
    it by 4-7% more. The compute is the same.

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
        # Copies taken before the cast, so their weights stay exact: rounded to dtype and back,
        # they made most of bf16's error in the location map (FloatInputConv has the figures).
        exact = {name: copy.deepcopy(model.get_submodule(name)) for name in readers}
        self.model = model.to(dtype=dtype, memory_format=self.memory_format).eval()
        for name, conv in exact.items():
            parent_name, _, child = name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            setattr(parent, child, FloatInputConv(conv.to(memory_format=self.memory_format), dtype))
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


