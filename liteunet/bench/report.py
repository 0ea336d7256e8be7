"""The benchmark results as the tables the README and docs include, and the machine they ran on."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

__all__ = ["cpu_name", "fmt", "print_table", "throughput_markdown", "to_markdown"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fmt(value: Any, pattern: str) -> str:
    return pattern.format(value) if value is not None else "—"


def to_markdown(result: dict[str, Any]) -> str:
    """The benchmark as the Markdown table the README and docs include."""
    m = result["machine"]
    peaks = ", ".join(f"{k} {v:.0f}" for k, v in result["peaks_gflops"].items())
    weights = f" (weights `{result['weights']}`)" if result.get("weights") else ""
    lines = [
        f"Measured with `liteunet bench`{weights} on {m['cpu']}, {m['threads']} threads, torch {m['torch']}; "
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
            f"| {row['description']} | {row['median_ms']:.1f} | {fmt(row['ratio_to_unet'], '{:.3f}')} | "
            f"{row['macs'] / 1e9:.1f} | {fmt(row['gflops'], '{:.0f}')} | {fmt(row['peak_fraction'], '{:.0%}')} | "
            f"{fmt(row['peak_memory_mb'], '{:.0f}')} | {fmt(row['f1_max_diff_points'], '{:.2f}')} | "
            f"{fmt(row.get('first_call_s'), '{:.1f}')} |"
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
            f"`localize()` on a {loc['image']} image ({loc['precision']}, `context=\"tile\"`, tiles {loc['tile_size']}, overlap "
            f"{loc['overlap']}): {loc['total_s']:.2f} s in all, {loc['model_s']:.2f} s in the model; reading, "
            f"tiling, peak finding and merging add {loc['overhead_fraction']:.1%}.",
        ]
    if "tiling" in result and "rows" in result["tiling"]:
        tiling = result["tiling"]
        lines += ["", f"Tiling against ground truth ({tiling['image']}, {tiling['truth']} cells; each tile its own "
                  "attention context, `context=\"tile\"`):", "",
                  "| tile | overlap | cells | F1@5 | F1@10 | s |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['tile_size']} | {r['overlap']} | {r['cells']} | {r['f1@5']:.3f} | {r['f1@10']:.3f} | {r['seconds']:.1f} |" for r in tiling["rows"]]
    if "slide" in result:
        slide = result["slide"]
        if "peak_rss_mb" in slide:
            lines += ["", f"`liteunet localize --context tile` on a {slide['image']} tiled TIFF: peak RSS {slide['peak_rss_mb']:.0f} MB, {slide['seconds']:.0f} s."]
        else:
            lines += ["", f"Large TIFF: {slide.get('skipped') or slide.get('error')}"]
    return "\n".join(lines) + "\n"


def print_table(result: dict[str, Any]) -> None:
    print(f"{'form':58s} {'ms':>9s} {'vs unet':>8s} {'GFLOP/s':>8s} {'of peak':>8s} {'mem MB':>7s}")
    for row in result["rows"]:
        if row["median_ms"] is None:
            print(f"{row['description']:58s} {row['note']}")
            continue
        print(
            f"{row['description']:58s} {row['median_ms']:9.1f} {fmt(row['ratio_to_unet'], '{:.3f}'):>8s} "
            f"{fmt(row['gflops'], '{:.0f}'):>8s} {fmt(row['peak_fraction'], '{:.0%}'):>8s} "
            f"{fmt(row['peak_memory_mb'], '{:.0f}'):>7s}"
        )
    for key in ("localize", "tiling", "slide"):
        if key in result:
            print(f"{key}: {json.dumps(result[key])}")


def throughput_markdown(result: dict[str, Any]) -> str:
    """The throughput run as the Markdown table the docs include."""
    lines = [
        f"Measured with `liteunet bench --throughput` on {result['device']}, torch {result['torch']}; "
        f"batches of {result['batch_size']} images of {result['input_size']}, {result['precision']}; "
        f"median of {result['repeats']} rounds of {result['iterations']} batches.",
        "",
        "| model | form | images / s | ms / batch | vs unet | G MACs / image | TFLOP/s | peak memory (MB) | first call (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if row["images_per_s"] is None:
            lines.append(f"| {row['model']} | {row['form']} | {row['note'] or '—'} | | | | | | |")
            continue
        lines.append(
            f"| {row['model']} | {row['form']} | {row['images_per_s']:.1f} | {row['ms_per_batch']:.1f} | "
            f"{fmt(row['ratio_to_unet'], '{:.2f}x')} | {row['macs_per_image'] / 1e9:.1f} | {row['tflops']:.2f} | "
            f"{fmt(row['peak_memory_mb'], '{:.0f}')} | {fmt(row['first_call_s'], '{:.1f}')} |"
        )
    return "\n".join(lines) + "\n"
