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
import json
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

import numpy as np
import torch
from torch import nn

__all__ = ["FORMS", "BenchRow", "add_bench_parser", "matmul_peak", "peak_rss_mb", "run_benchmark", "to_markdown"]

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


def _load_weights(weights: str) -> nn.Module:
    from ._factory import create_model

    if Path(weights).is_dir():
        return create_model(f"local-dir:{weights}", pretrained=True).eval()
    return create_model(weights, pretrained=True).eval()


def _build_form(form: str, weights: str, size: int, tmp: Path) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module | None]:
    """A callable running ``form`` on a float32 (1, 3, size, size) batch, and the model it counts."""
    from ._factory import create_model
    from .inference import OnnxModel, calibration_images, export_onnx, fuse, prepare_model, quantize_onnx

    if form == "unet":
        model = create_model("unet").eval()
        return model, model
    if form == "smp_unet_resnet34":
        import segmentation_models_pytorch as smp

        model = smp.Unet("resnet34", encoder_weights=None, in_channels=3, classes=1).eval()
        return model, model
    model = _load_weights(weights)
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
            from .samples import sample_path

            sources = (_weights_config(model).get("training") or {}).get("datasets") or []
            try:
                images = calibration_images(sources)
            except (OSError, ValueError, KeyError):
                images = calibration_images([sample_path()])
            quantize_onnx(fp32_file, int8_file, images)
        return OnnxModel(int8_file), fuse(model)
    raise ValueError(f"unknown form {form!r}; choose from {', '.join(FORMS)}")


def _weights_config(model: nn.Module) -> dict[str, Any]:
    from .hub import load_weights_config

    return load_weights_config(model)


def _available(form: str) -> str:
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
        from .inference import cpu_has_native_bf16

        if not cpu_has_native_bf16():
            return "no native bf16 on this CPU"
    return ""


def _peak_memory_child(form: str, weights: str, size: int, threads: int) -> float | None:
    """Peak RSS (MB) of a fresh process that builds ``form`` and runs one image."""
    cmd = [
        sys.executable, "-m", "liteunet.bench", "--_memory-child", form, "--weights", weights,
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


class _TimedModel(nn.Module):
    """Wraps a localizer's model and adds up the time spent in it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seconds = 0.0
        from .inference import copy_model_attributes

        copy_model_attributes(model, self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.model(x)
        self.seconds += time.perf_counter() - start
        return out


def _demo_image(side: int) -> np.ndarray:
    """The bundled BBBC039 sample mirrored out to ``side`` x ``side`` (real nuclei everywhere)."""
    from .data.io import read_image
    from .samples import sample_path

    image = read_image(sample_path())
    reps = (-(-side // image.shape[0]), -(-side // image.shape[1])) + (1,) * (image.ndim - 2)
    return np.ascontiguousarray(np.tile(image, reps)[:side, :side])


def _localize_overhead(weights: str, side: int, precision: str) -> dict[str, Any]:
    from .localization import Localizer

    image = _demo_image(side)
    loc = Localizer(weights, device="cpu", precision=precision, progress=False)
    loc.model = _TimedModel(loc.model)
    loc([image[:512, :512]])  # warm-up
    loc.model.seconds = 0.0
    start = time.perf_counter()
    (result,) = loc([image])
    total = time.perf_counter() - start
    model_s = loc.model.seconds
    return {
        "image": f"{side}x{side}",
        "precision": loc.precision,
        "tile_size": loc.tile_size,
        "overlap": loc.overlap,
        "cells": int(len(result)),
        "total_s": round(total, 3),
        "model_s": round(model_s, 3),
        "overhead_fraction": round((total - model_s) / model_s, 4),
    }


def _tiling_accuracy(weights: str, precision: str = "auto") -> dict[str, Any]:
    """F1 of tiled localization against ground truth on a 2000x2000 mosaic of 16 CRC images."""
    from .data import load_split
    from .data.io import read_image
    from .localization import Localizer
    from .metrics import PointMetrics

    try:
        samples = (load_split("crc", "validation") + load_split("crc", "train"))[:16]
    except (OSError, ValueError, KeyError) as err:
        return {"skipped": f"needs the crc data set: {err}"}
    side = 500
    mosaic = np.zeros((4 * side, 4 * side, 3), np.uint8)
    truth = []
    for k, sample in enumerate(samples):
        r, c = divmod(k, 4)
        mosaic[r * side : (r + 1) * side, c * side : (c + 1) * side] = read_image(sample.image_path)[:side, :side, :3]
        inside = (sample.points < side - 0.5).all(axis=1)
        truth.append(sample.points[inside] + (c * side, r * side))
    points = np.concatenate(truth)
    rows = []
    for tile, overlap in ((2048, 0), (1024, 256), (512, 128)):
        start = time.perf_counter()
        loc = Localizer(weights, device="cpu", precision=precision, tile_size=tile, overlap=overlap, progress=False)
        (result,) = loc([mosaic])
        metrics = PointMetrics(radii=(5, 10))
        metrics.update(result.xy, points)
        scores = metrics.compute()
        rows.append({
            "tile_size": tile, "overlap": overlap, "cells": len(result), "f1@5": round(float(scores["f1@5"]), 4),
            "f1@10": round(float(scores["f1@10"]), 4), "seconds": round(time.perf_counter() - start, 2),
        })
    return {"image": "2000x2000 mosaic of 16 crc images", "truth": int(len(points)), "rows": rows}


def _slide_rss(weights: str, side: int, threads: int) -> dict[str, Any]:
    """Peak RSS of ``liteunet localize`` on a ``side`` x ``side`` tiled TIFF, in a child process."""
    try:
        import tifffile
    except ImportError:
        return {"skipped": "needs tifffile: pip install 'liteunet[tiff]'"}
    tile = _demo_image(512)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"slide_{side}.tif"

        def tiles():
            for _y in range(0, side, 512):
                for _x in range(0, side, 512):
                    yield tile

        tifffile.imwrite(path, tiles(), shape=(side, side) + tile.shape[2:], dtype=tile.dtype, tile=(512, 512), bigtiff=True)
        cmd = [
            sys.executable, "-c",
            "import sys, torch; torch.set_num_threads(int(sys.argv[1])); "
            "from liteunet.cli import main; from liteunet.bench import peak_rss_mb; code = main(sys.argv[2:]); "
            "print(peak_rss_mb()); sys.exit(code)",
            str(threads), "localize", str(path), "-o", str(Path(tmp) / "out"), "--format", "csv",
            "--model", weights,
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            return {"image": f"{side}x{side}", "error": proc.stderr.strip()[-500:]}
        rss = float(proc.stdout.strip().splitlines()[-1])
    return {"image": f"{side}x{side}", "peak_rss_mb": round(rss, 1), "seconds": round(seconds, 1)}


def run_benchmark(
    weights: str = "lite_unet.multi",
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
    from .complexity import count_macs
    from .hub import load_inference_checks

    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    peaks = {"fp32": matmul_peak(torch.float32)}
    from .inference import cpu_has_native_bf16

    if cpu_has_native_bf16():
        peaks["bf16"] = matmul_peak(torch.bfloat16)
    log(f"matmul peak: {', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in peaks.items())}")
    x = torch.rand(1, 3, size, size)
    rows: list[BenchRow] = []
    runners: dict[str, Callable] = {}
    guard = load_inference_checks(_load_weights(weights))
    with tempfile.TemporaryDirectory() as tmp:
        for form in forms:
            row = BenchRow(form, _DESCRIPTIONS.get(form, form))
            rows.append(row)
            why = _available(form)
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
            "cpu": _cpu_name(),
            "threads": threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "bf16_native": cpu_has_native_bf16(),
        },
        "weights": weights,
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
        result["localize"] = _localize_overhead(weights, localize_side, "auto")
    if tiling:
        log("tiling accuracy on a CRC mosaic...")
        result["tiling"] = _tiling_accuracy(weights)
    if slide_side:
        log(f"peak RSS of liteunet localize on a {slide_side}x{slide_side} TIFF...")
        result["slide"] = _slide_rss(weights, slide_side, threads)
    return result


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fmt(value: Any, pattern: str) -> str:
    return pattern.format(value) if value is not None else "—"


def to_markdown(result: dict[str, Any]) -> str:
    """The benchmark as the Markdown table the README and docs include."""
    m = result["machine"]
    peaks = ", ".join(f"{k} {v:.0f}" for k, v in result["peaks_gflops"].items())
    lines = [
        f"Measured with `liteunet bench` on {m['cpu']}, {m['threads']} threads, torch {m['torch']}; "
        f"one {result['image']} image, median of {result['repeats']} interleaved rounds; "
        f"matmul peak in the same run: {peaks} GFLOP/s.",
        "",
        "| form | ms / image | vs unet | G MACs | GFLOP/s | of peak | peak memory (MB) | F1 vs fp32 (pts) | first call (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if row["median_ms"] is None:
            lines.append(f"| {row['description']} | {row['note'] or '—'} | | | | | | | |")
            continue
        lines.append(
            f"| {row['description']} | {row['median_ms']:.1f} | {_fmt(row['ratio_to_unet'], '{:.3f}')} | "
            f"{row['macs'] / 1e9:.1f} | {_fmt(row['gflops'], '{:.0f}')} | {_fmt(row['peak_fraction'], '{:.0%}')} | "
            f"{_fmt(row['peak_memory_mb'], '{:.0f}')} | {_fmt(row['f1_max_diff_points'], '{:.2f}')} | "
            f"{_fmt(row.get('first_call_s'), '{:.1f}')} |"
        )
    lines.append("")
    lines.append(
        "Peak memory: peak RSS of a fresh process running one image (PyTorch itself is most of it). "
        "F1 vs fp32: the largest difference in F1 at 5 or 10 px over the validation sets, as the "
        "weights record it (`python -m liteunet.release --check-precision`). First call: the "
        "first image through a freshly prepared form, where compiling and planning happen."
    )
    if "localize" in result:
        loc = result["localize"]
        lines += [
            "",
            f"`localize()` on a {loc['image']} image ({loc['precision']}, tiles {loc['tile_size']}, overlap "
            f"{loc['overlap']}): {loc['total_s']:.2f} s in all, {loc['model_s']:.2f} s in the model; reading, "
            f"tiling, peak finding and merging add {loc['overhead_fraction']:.1%}.",
        ]
    if "tiling" in result and "rows" in result["tiling"]:
        tiling = result["tiling"]
        lines += ["", f"Tiling against ground truth ({tiling['image']}, {tiling['truth']} cells):", "",
                  "| tile | overlap | cells | F1@5 | F1@10 | s |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['tile_size']} | {r['overlap']} | {r['cells']} | {r['f1@5']:.3f} | {r['f1@10']:.3f} | {r['seconds']:.1f} |" for r in tiling["rows"]]
    if "slide" in result:
        slide = result["slide"]
        if "peak_rss_mb" in slide:
            lines += ["", f"`liteunet localize` on a {slide['image']} tiled TIFF: peak RSS {slide['peak_rss_mb']:.0f} MB, {slide['seconds']:.0f} s."]
        else:
            lines += ["", f"Large TIFF: {slide.get('skipped') or slide.get('error')}"]
    return "\n".join(lines) + "\n"


def _print_table(result: dict[str, Any]) -> None:
    print(f"{'form':58s} {'ms':>9s} {'vs unet':>8s} {'GFLOP/s':>8s} {'of peak':>8s} {'mem MB':>7s}")
    for row in result["rows"]:
        if row["median_ms"] is None:
            print(f"{row['description']:58s} {row['note']}")
            continue
        print(
            f"{row['description']:58s} {row['median_ms']:9.1f} {_fmt(row['ratio_to_unet'], '{:.3f}'):>8s} "
            f"{_fmt(row['gflops'], '{:.0f}'):>8s} {_fmt(row['peak_fraction'], '{:.0%}'):>8s} "
            f"{_fmt(row['peak_memory_mb'], '{:.0f}'):>7s}"
        )
    for key in ("localize", "tiling", "slide"):
        if key in result:
            print(f"{key}: {json.dumps(result[key])}")


def _cmd_throughput(args: argparse.Namespace) -> int:
    from .throughput import THROUGHPUT_FORMS, run_throughput, throughput_markdown

    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_throughput(
        args.weights, args.device, args.batch, args.size, args.precision,
        tuple(args.forms) if args.forms else THROUGHPUT_FORMS, repeats=args.repeats, iterations=args.iterations,
        warmup=args.warmup,
    )
    markdown = throughput_markdown(result)
    print(markdown)
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"throughput_{result['device_type']}"
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / f"{stem}.md").write_text(markdown)
        print(f"wrote {out / (stem + '.json')} and {out / (stem + '.md')}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.throughput:
        return _cmd_throughput(args)
    forms = tuple(args.forms) if args.forms else FORMS
    unknown = [f for f in forms if f not in FORMS]
    if unknown:
        raise ValueError(f"unknown form(s) {unknown}; choose from {', '.join(FORMS)}")
    result = run_benchmark(
        args.weights, args.size, forms, args.repeats, args.warmup, args.threads, args.memory,
        None if args.no_localize else args.localize_size, None if args.no_slide else args.slide_size,
        args.tiling,
    )
    _print_table(result)
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "latest.md").write_text(to_markdown(result))
        print(f"wrote {out / 'latest.json'} and {out / 'latest.md'}")
    return 0


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``liteunet bench`` to a ``build_parser()`` sub-command group."""
    p = subparsers.add_parser(
        "bench",
        help="time every inference form of lite_unet against the unet baseline, side by side",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    p.add_argument("--weights", default="lite_unet.multi", help="pretrained tag or weights folder (default lite_unet.multi)")
    p.add_argument("--size", type=int, default=512, help="image side (default 512)")
    p.add_argument(
        "--forms", nargs="+", metavar="FORM",
        help=f"forms to time (default all): {' '.join(FORMS)}; with --throughput: eager compiled cudagraphs",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per form first (default 2)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the per-form peak memory")
    p.add_argument("--localize-size", type=int, default=2048, help="image side for the localize() overhead (default 2048)")
    p.add_argument("--no-localize", action="store_true", help="skip the localize() overhead")
    p.add_argument("--slide-size", type=int, default=10000, help="TIFF side for the peak RSS check (default 10000)")
    p.add_argument("--no-slide", action="store_true", help="skip the large TIFF check")
    p.add_argument("--tiling", action="store_true", help="also score CPU tiling against ground truth on a CRC mosaic")
    p.add_argument("-o", "--out-dir", help="write latest.json and latest.md here (e.g. docs/benchmarks)")
    group = p.add_argument_group(
        "throughput", "--throughput times images per second in batches instead (lite_unet and unet; forms eager, "
        "compiled, cudagraphs) and writes throughput_<device>.json/.md to --out-dir",
    )
    group.add_argument("--throughput", action="store_true", help="images per second in batches, on --device")
    group.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cuda:N or cpu")
    group.add_argument("--batch", type=int, default=32, help="images per batch (default 32)")
    group.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"], help="default bf16")
    group.add_argument("--iterations", type=int, default=10, help="batches per timed round (default 10)")
    p.set_defaults(func=_cmd_bench)
    return p


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_memory-child"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--_memory-child", dest="form")
        parser.add_argument("--weights")
        parser.add_argument("--size", type=int)
        parser.add_argument("--threads", type=int)
        a = parser.parse_args(argv)
        _memory_child(a.form, a.weights, a.size, a.threads)
        return 0
    from .cli import main

    return main(["bench", *argv])


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.exit(_main())
