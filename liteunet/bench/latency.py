"""``liteunet bench``: every inference form of Lite-UNet and the U-Net baseline, side by side.

One process, one input, one thread count: each form is timed in turn, round after round, so
slow drifts of a shared machine hit all of them alike, and the medians are compared as ratios
within the run. Also measured in the same run: the matmul peak (FLOP/s) the forms are held
against, each form's peak memory (a child process per form on CPU), the F1 of the reduced
precision forms against float32 as the weights record it, the whole of ``localize()`` on a
2048x2048 image against the model time alone on the same tiles, and the peak RSS of
``liteunet localize`` on a 10000x10000 tiled TIFF.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..complexity import count_macs
from ..inference import OnnxModel, cpu_has_native_bf16, default_calibration_images, export_onnx, fuse, prepare_model, quantize_onnx
from ..localization.model import describe_weights
from ..models import create_model, load_model
from ..pretrained import load_inference_checks
from .localize_cost import localize_overhead, slide_rss, tiling_accuracy
from .report import cpu_name

__all__ = ["FORMS", "BenchRow", "form_unavailable", "load_weights", "matmul_peak", "peak_rss_mb", "run_benchmark"]

#: Inference forms ``liteunet bench`` can time, in table order.
FORMS = (
    "unet",
    "eager",
    "fused",
    "fused_cl",
    "compiled",
    "bf16",
    "bf16_compiled",
    "onnx",
    "onnx_int8",
    "smp_unet_resnet34",
)

_DESCRIPTIONS = {
    "unet": "paper U-Net baseline, eager fp32",
    "eager": "lite_unet as trained (eval mode), fp32",
    "fused": "lite_unet reparameterized (CD + BN folded), fp32",
    "fused_cl": "+ channels_last, fp32",
    "compiled": "+ torch.compile, fp32",
    "bf16": "reparameterized, channels_last, bf16",
    "bf16_compiled": "+ torch.compile, bf16",
    "onnx": "ONNX Runtime, fp32",
    "onnx_int8": "ONNX Runtime, int8 (static, QDQ)",
    "smp_unet_resnet34": "segmentation_models_pytorch Unet-resnet34, fp32 (peer)",
}
_PRECISION = {"bf16": "bf16", "bf16_compiled": "bf16", "onnx_int8": "int8"}


@dataclass
class BenchRow:
    """One form's measurements; times in milliseconds per image."""

    form: str
    description: str
    median_ms: float | None = None
    times_ms: list[float] = field(default_factory=list)
    macs: int = 0
    gflops: float | None = None
    peak_fraction: float | None = None
    ratio_to_unet: float | None = None
    peak_memory_mb: float | None = None
    f1_max_diff_points: float | None = None
    first_call_s: float | None = None  # the first call, where compiling and planning happen
    note: str = ""


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5) -> float:
    """Achievable GFLOP/s of a square ``n`` matmul in ``dtype`` with the current threads."""
    a, b = torch.rand(n, n).to(dtype), torch.rand(n, n).to(dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def load_weights(weights: str) -> nn.Module:
    """The benchmarked Lite-UNet: a tag or a weights folder, in eval mode."""
    return load_model(weights).eval()


def _build_form(form: str, weights: str, size: int, tmp: Path) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module | None]:
    """A callable running ``form`` on a float32 (1, 3, size, size) batch, and the model it counts."""
    if form == "unet":
        model = create_model("unet").eval()
        return model, model
    if form == "smp_unet_resnet34":
        import segmentation_models_pytorch as smp

        model = smp.Unet("resnet34", encoder_weights=None, in_channels=3, classes=1).eval()
        return model, model
    model = load_weights(weights)
    if form == "eager":
        return model, model
    # Each form counts the multiply-adds it runs: fusing turns the upsampling steps into
    # transposed convs (fewer), stacking GA's branches for compiled bf16 adds some back.
    prepared = {
        "fused": ("fp32", dict(channels_last=False)), "fused_cl": ("fp32", {}), "compiled": ("fp32", dict(compile=True)),
        "bf16": ("bf16", {}), "bf16_compiled": ("bf16", dict(compile=True)),
    }
    if form in prepared:
        precision, options = prepared[form]
        runner = prepare_model(model, precision, **options)
        return runner, getattr(runner, "_orig_mod", runner)
    if form in ("onnx", "onnx_int8"):
        fp32_file = tmp / "model.onnx"
        if not fp32_file.exists():
            export_onnx(model, fp32_file, check=False)
        if form == "onnx":
            return OnnxModel(fp32_file), fuse(model)
        int8_file = tmp / "model.int8.onnx"
        if not int8_file.exists():
            images, _ = default_calibration_images(model)
            quantize_onnx(fp32_file, int8_file, images)
        return OnnxModel(int8_file), fuse(model)
    raise ValueError(f"unknown form {form!r}; choose from {', '.join(FORMS)}")


def form_unavailable(form: str) -> str:
    """Why ``form`` cannot run here, or ``""``."""
    if form in ("onnx", "onnx_int8"):
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError:
            return "needs pip install 'liteunet[onnx]'"
    if form == "smp_unet_resnet34":
        try:
            import segmentation_models_pytorch  # noqa: F401
        except ImportError:
            return "segmentation_models_pytorch not installed"
    if form in ("bf16", "bf16_compiled"):
        if not cpu_has_native_bf16():
            return "no native bf16 on this CPU"
    return ""


def _peak_memory_child(form: str, weights: str, size: int, threads: int) -> float | None:
    """Peak RSS (MB) of a fresh process that builds ``form`` and runs one image."""
    cmd = [
        sys.executable, "-m", "liteunet.bench.latency", "--_memory-child", form, "--weights", weights,
        "--size", str(size), "--threads", str(threads),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True).stdout
        return float(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    Linux's ``VmHWM`` rather than ``getrusage``: ``ru_maxrss`` survives ``exec``, so a child
    would report its parent's peak when that was higher.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _memory_child(form: str, weights: str, size: int, threads: int) -> None:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        run, _ = _build_form(form, weights, size, Path(tmp))
        with torch.inference_mode():
            run(torch.rand(1, 3, size, size))
    print(peak_rss_mb())


def run_benchmark(
    weights: str = "lite_unet",
    size: int = 512,
    forms: tuple[str, ...] = FORMS,
    repeats: int = 5,
    warmup: int = 2,
    threads: int | None = None,
    memory: bool = True,
    localize_side: int | None = 2048,
    slide_side: int | None = 10000,
    tiling: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Time every form on one ``size`` x ``size`` image; see the module docstring.

    Returns:
        A JSON-ready dict: ``machine``, ``peaks`` (GFLOP/s), ``rows`` (one :class:`BenchRow`
        per form), ``localize`` and ``slide``.
    """
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    peaks = {"fp32": matmul_peak(torch.float32)}
    if cpu_has_native_bf16():
        peaks["bf16"] = matmul_peak(torch.bfloat16)
    log(f"matmul peak: {', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in peaks.items())}")
    x = torch.rand(1, 3, size, size)
    rows: list[BenchRow] = []
    runners: dict[str, Callable] = {}
    benchmarked = load_weights(weights)
    guard = load_inference_checks(benchmarked)
    with tempfile.TemporaryDirectory() as tmp:
        for form in forms:
            row = BenchRow(form, _DESCRIPTIONS.get(form, form))
            rows.append(row)
            why = form_unavailable(form)
            if why:
                row.note = why
                continue
            log(f"preparing {form}...")
            try:
                run, counted = _build_form(form, weights, size, Path(tmp))
                row.macs = count_macs(counted, (3, size, size)) if counted is not None else 0
                with torch.inference_mode():
                    for i in range(warmup):  # compiles and plans happen here
                        start = time.perf_counter()
                        run(x)
                        if i == 0:
                            row.first_call_s = time.perf_counter() - start
            except Exception as err:  # one form failing must not lose the others
                row.note = f"failed: {type(err).__name__}: {str(err)[:200]}"
                continue
            runners[form] = run
            # The compiled form's own record where the weights have one, else its precision's.
            precision = form if form in guard else _PRECISION.get(form)
            if precision and precision in guard:
                row.f1_max_diff_points = guard[precision].get("max_abs_diff")
        for r in range(repeats):
            log(f"round {r + 1}/{repeats}")
            for row in rows:
                if row.form in runners:
                    with torch.inference_mode():
                        start = time.perf_counter()
                        runners[row.form](x)
                        row.times_ms.append(1000 * (time.perf_counter() - start))
    runners.clear()
    base = next((row for row in rows if row.form == "unet" and row.times_ms), None)
    for row in rows:
        if not row.times_ms:
            continue
        row.median_ms = statistics.median(row.times_ms)
        row.gflops = 2 * row.macs / (row.median_ms / 1000) / 1e9 if row.macs else None
        peak = peaks.get(_PRECISION.get(row.form, "fp32"), peaks["fp32"]) if _PRECISION.get(row.form) != "int8" else None
        row.peak_fraction = row.gflops / peak if (row.gflops and peak) else None
        row.ratio_to_unet = row.median_ms / base.median_ms if base else None
        if memory and row.form not in ("compiled", "bf16_compiled"):
            log(f"peak memory of {row.form}...")
            row.peak_memory_mb = _peak_memory_child(row.form, weights, size, threads)
    result: dict[str, Any] = {
        "machine": {
            "cpu": cpu_name(),
            "threads": threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "bf16_native": cpu_has_native_bf16(),
        },
        "weights": describe_weights(benchmarked)["name"],  # the tag "lite_unet" resolves to, not the alias
        "image": f"1x3x{size}x{size}",
        "repeats": repeats,
        "peaks_gflops": {k: round(v, 1) for k, v in peaks.items()},
        "rows": [asdict(row) for row in rows],
    }
    # Records the model zoo table reads (liteunet.zoo.read_benchmarks): the default localize()
    # form of Lite-UNet here, and the baseline.
    default_form = "bf16" if guard.get("bf16", {}).get("passed") and cpu_has_native_bf16() else "fused_cl"
    result["device"] = f"{result['machine']['cpu']}, {threads} threads"
    result["input_size"] = f"{size}x{size}"
    result["results"] = [
        {"model": model, "latency_ms": round(row.median_ms, 1), "precision": _PRECISION.get(row.form, "fp32"), "backend": "PyTorch"}
        for row in rows
        for model, form in (("lite_unet", default_form), ("unet", "unet"))
        if row.form == form and row.median_ms is not None
    ]
    if localize_side:
        log(f"localize() on {localize_side}x{localize_side}...")
        result["localize"] = localize_overhead(weights, localize_side, "auto")
    if tiling:
        log("tiling accuracy on a CRC mosaic...")
        result["tiling"] = tiling_accuracy(weights)
    if slide_side:
        log(f"peak RSS of liteunet localize on a {slide_side}x{slide_side} TIFF...")
        result["slide"] = slide_rss(weights, slide_side, threads)
    return result


def _memory_child_main(argv: list[str] | None = None) -> int:
    """``python -m liteunet.bench.latency --_memory-child FORM ...``: one form's peak memory."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--_memory-child", dest="form")
    parser.add_argument("--weights")
    parser.add_argument("--size", type=int)
    parser.add_argument("--threads", type=int)
    a = parser.parse_args(argv)
    _memory_child(a.form, a.weights, a.size, a.threads)
    return 0


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.exit(_memory_child_main())
