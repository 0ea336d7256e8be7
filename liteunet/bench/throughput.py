"""``liteunet bench --throughput``: images per second in batches, Lite-UNet beside the U-Net baseline.

``liteunet bench`` answers "how long does one image take" on a CPU; a GPU serving a whole slide
or a data set is asked "how many images per second", with large batches. This module times
both networks that way on one device, in one run: each form gets untimed warm-up calls (where
compiling and CUDA graph capture happen), then several rounds of timed batches; the median
round gives images per second. On CUDA the clock stops only after ``torch.cuda.synchronize``.

Forms, each for ``lite_unet`` (the given weights) and ``unet`` (the paper's baseline):

- ``eager``: the inference form :func:`liteunet.inference.prepare_model` builds (difference
  convs and BatchNorm folded, channels-last, the requested precision);
- ``compiled``: the same through ``torch.compile`` with weight freezing;
- ``cudagraphs`` (CUDA only): compiled with ``mode="reduce-overhead"``, which replays the whole
  batch as one captured CUDA graph instead of launching each kernel from Python.

Example:
    >>> from liteunet.bench import run_throughput
    >>> result = run_throughput(device="cpu", batch=2, size=64, precision="fp32", forms=("eager",),
    ...                         repeats=1, iterations=1, warmup=1)
    >>> sorted(row["model"] for row in result["rows"])
    ['lite_unet', 'unet']
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .._device import resolve_device
from ..complexity import count_macs
from ..inference import prepare_model
from ..models import create_model
from .latency import form_unavailable, load_weights
from .report import cpu_name

__all__ = ["THROUGHPUT_FORMS", "ThroughputRow", "run_throughput"]

#: Forms ``run_throughput`` can time, in table order (``cudagraphs`` runs on CUDA only).
THROUGHPUT_FORMS = ("eager", "compiled", "cudagraphs")
_COMPILE_MODES = {"eager": None, "compiled": None, "cudagraphs": "reduce-overhead"}


@dataclass
class ThroughputRow:
    """One model in one form: images per second over ``batch``-image calls."""

    model: str
    form: str
    images_per_s: float | None = None
    ms_per_batch: float | None = None
    rounds_images_per_s: list[float] = field(default_factory=list)
    macs_per_image: int = 0
    tflops: float | None = None
    peak_memory_mb: float | None = None  # CUDA: the allocator's peak during this form
    first_call_s: float | None = None
    ratio_to_unet: float | None = None  # lite_unet images/s over unet's in the same form
    note: str = ""


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"{cpu_name()}, {threads} thread{'s' if threads != 1 else ''}"


def _synchronize(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _build(model_name: str, weights: str, precision: str, form: str, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """The runner for ``form`` and the model its multiply-adds are counted on."""
    # Speed does not depend on the weights' values: the baseline runs with random ones.
    model = load_weights(weights) if model_name == "lite_unet" else create_model(model_name).eval()
    runner = prepare_model(model, precision, device=device, compile=form != "eager", compile_mode=_COMPILE_MODES[form])
    return runner, getattr(runner, "_orig_mod", runner)


def _why_not(form: str, precision: str, device: torch.device) -> str:
    if form == "cudagraphs" and device.type != "cuda":
        return "CUDA only"
    if precision == "bf16" and device.type == "cpu":
        return form_unavailable("bf16")  # the latency bench's rule: bf16 on CPU needs native bf16
    return ""  # prepare_model refuses fp16 on CPU itself, and the row says so


def run_throughput(
    weights: str = "lite_unet",
    device: str | torch.device = "auto",
    batch: int = 32,
    size: int = 512,
    precision: str = "bf16",
    forms: Sequence[str] = THROUGHPUT_FORMS,
    models: Sequence[str] = ("lite_unet", "unet"),
    repeats: int = 5,
    iterations: int = 10,
    warmup: int = 3,
    progress: bool = True,
) -> dict[str, Any]:
    """Images per second of each model in each form on ``device``; see the module docstring.

    Args:
        weights: Lite-UNet's pretrained tag or weights folder.
        device: ``"auto"`` (CUDA when available), ``"cuda"``, ``"cuda:1"``, ``"cpu"``...
        batch: images per call.
        size: image side in pixels (square images).
        precision: ``fp32``, ``bf16`` or ``fp16`` (CUDA).
        forms: which of :data:`THROUGHPUT_FORMS` to time.
        models: ``lite_unet`` and any registered baseline (``unet``).
        repeats: timed rounds; the median round is reported.
        iterations: batches per round.
        warmup: untimed batches first (compiling and graph capture happen here).

    Returns:
        A JSON-ready dict: ``device``, the conditions, ``rows`` (one :class:`ThroughputRow` per
        model and form) and ``results`` (per-image latency records the model zoo table reads).

    Raises:
        ValueError: an unknown form, a non-positive batch or size, or a CUDA device on a
            machine without one.
    """
    device = resolve_device(device)
    unknown = [f for f in forms if f not in THROUGHPUT_FORMS]
    if unknown:
        raise ValueError(f"unknown throughput form(s) {unknown}; choose from {', '.join(THROUGHPUT_FORMS)}")
    if batch < 1 or size < 16:
        raise ValueError(f"batch must be >= 1 and size >= 16, got batch={batch}, size={size}")
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    sync = _synchronize(device)
    x = torch.rand(batch, 3, size, size, device=device)
    rows: list[ThroughputRow] = []
    for form in forms:
        for model_name in models:
            row = ThroughputRow(model_name, form)
            rows.append(row)
            row.note = _why_not(form, precision, device)
            if row.note:
                continue
            log(f"{model_name} {form}: preparing...")
            try:
                run, counted = _build(model_name, weights, precision, form, device)
                row.macs_per_image = count_macs(counted, (3, size, size))
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                with torch.inference_mode():
                    for i in range(warmup):
                        start = time.perf_counter()
                        run(x)
                        sync()
                        if i == 0:
                            row.first_call_s = time.perf_counter() - start
                    for r in range(repeats):
                        start = time.perf_counter()
                        for _ in range(iterations):
                            run(x)
                        sync()
                        row.rounds_images_per_s.append(batch * iterations / (time.perf_counter() - start))
                        log(f"{model_name} {form}: round {r + 1}/{repeats}, {row.rounds_images_per_s[-1]:.1f} images/s")
            except Exception as err:  # one form failing must not lose the others
                row.note = f"failed: {type(err).__name__}: {str(err)[:200]}"
                row.rounds_images_per_s.clear()
                continue
            finally:
                run = counted = None  # free the device memory before the next form
            row.images_per_s = statistics.median(row.rounds_images_per_s)
            row.ms_per_batch = 1000 * batch / row.images_per_s
            row.tflops = 2 * row.macs_per_image * row.images_per_s / 1e12
            if device.type == "cuda":
                row.peak_memory_mb = torch.cuda.max_memory_allocated(device) / 2**20
    by_key = {(row.model, row.form): row for row in rows}
    for row in rows:
        base = by_key.get(("unet", row.form))
        if row.images_per_s and base is not None and base.images_per_s:
            row.ratio_to_unet = row.images_per_s / base.images_per_s
    name = _device_name(device)
    return {
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "weights": weights,
        "batch_size": batch,
        "input_size": f"{size}x{size}",
        "precision": precision,
        "repeats": repeats,
        "iterations": iterations,
        "rows": [asdict(row) for row in rows],
        # Per-image latency in the best form of each model, for the model zoo table.
        "results": [
            {"model": model_name, "latency_ms": round(1000 / best.images_per_s, 3), "backend": f"PyTorch, {best.form}"}
            for model_name in models
            if (best := max((r for r in rows if r.model == model_name and r.images_per_s), key=lambda r: r.images_per_s, default=None))
        ],
    }
