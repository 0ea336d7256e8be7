"""``liteunet bench``: inference forms side by side (latency), or images per second (``--throughput``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: ``liteunet.bench.FORMS`` and ``THROUGHPUT_FORMS``, so ``--help`` needs no torch (tests/test_cli.py checks).
FORMS = ("unet", "eager", "fused", "fused_cl", "compiled", "bf16", "bf16_compiled", "onnx", "onnx_int8", "smp_unet_resnet34")
THROUGHPUT_FORMS = ("eager", "compiled", "cudagraphs")
#: ``liteunet.wsi.synthetic.LAYOUTS``: how the tissue of the --speed slide lies on the glass.
TISSUE_LAYOUTS = ("scattered", "section")
DESCRIPTION = (
    "One process, one input, one thread count: each form is timed in turn, round after round, so slow "
    "drifts of a shared machine hit all of them alike, and the medians are compared as ratios within the run."
)


def _cmd_throughput(args: argparse.Namespace) -> int:
    import torch

    from ..bench import run_throughput, throughput_markdown

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


def _cmd_speed(args: argparse.Namespace) -> int:
    import torch

    from ..bench.localize_cost import megapixels_by_size, tissue_mask_cost

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cpu" if args.device == "auto" else args.device  # CPU unless asked: the figures the docs quote
    result: dict = {"megapixels_by_size": megapixels_by_size(
        args.weights, tuple(args.sides), repeats=args.repeats, device=device, rgb8=args.rgb8
    )}
    if not args.no_slide:
        result["tissue_mask_cost"] = [
            tissue_mask_cost(args.weights, side=args.tissue_slide_size, layout=layout) for layout in args.tissue_layouts
        ]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "speed_cpu.json").write_text(text + "\n")
        print(f"wrote {out / 'speed_cpu.json'}")
    return 0


def _cmd_invariance(args: argparse.Namespace) -> int:
    import torch

    from ..bench.invariance import invariance, invariance_markdown

    if args.threads:
        torch.set_num_threads(args.threads)
    default_tiling = args.tilings is None
    if default_tiling:
        from ..bench.invariance import TILINGS

        args.tilings = TILINGS
    result = invariance(
        args.weights, precision=args.invariance_precision, modes=tuple(args.contexts), flips=not args.no_flips,
        sample_sizes=tuple(args.context_tiles), tilings=tuple(tuple(t) for t in args.tilings),
        default_tiling=default_tiling,
    )
    markdown = invariance_markdown(result)
    print(markdown)
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "invariance_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "invariance_cpu.md").write_text(markdown)
        print(f"wrote {out / 'invariance_cpu.json'} and {out / 'invariance_cpu.md'}")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..bench import run_benchmark, to_markdown  # loads torch: only when the command runs
    from ..bench.report import print_table

    if args.throughput:
        return _cmd_throughput(args)
    if args.speed:
        return _cmd_speed(args)
    if args.invariance:
        return _cmd_invariance(args)
    forms = tuple(args.forms) if args.forms else FORMS
    unknown = [f for f in forms if f not in FORMS]
    if unknown:
        raise ValueError(f"unknown form(s) {unknown}; choose from {', '.join(FORMS)}")
    result = run_benchmark(
        args.weights, args.size, forms, args.repeats, args.warmup, args.threads, args.memory,
        None if args.no_localize else args.localize_size, None if args.no_slide else args.slide_size,
        args.tiling,
    )
    print_table(result)
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "latest.md").write_text(to_markdown(result))
        print(f"wrote {out / 'latest.json'} and {out / 'latest.md'}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "bench",
        help="time every inference form of lite_unet against the unet baseline, side by side",
        description=DESCRIPTION,
    )
    p.add_argument("--weights", default="lite_unet", help="pretrained tag or weights folder (default lite_unet: the default weights, as localize uses)")
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
    speed = p.add_argument_group(
        "speed", "--speed: end-to-end megapixels/s of localize() by image side against one model pass on the same "
        "pixels (on CPU, or --device cuda), object_size='auto' against the default when the weights store a scale model, "
        "and the cost of a slide with 30%% tissue with the tissue mask against without",
    )
    speed.add_argument("--speed", action="store_true", help="megapixels/s by image size and the tissue-mask cost")
    speed.add_argument("--sides", type=int, nargs="+", default=[256, 500, 640, 1024, 1100, 1536, 2048], help="image sides")
    speed.add_argument(
        "--rgb8", action="store_true",
        help="time the demo image as 8-bit RGB, as bright-field images arrive, not as its 16-bit grey original",
    )
    speed.add_argument("--tissue-slide-size", type=int, default=6144, help="side of the 30%% tissue slide (default 6144)")
    speed.add_argument(
        "--tissue-layouts", nargs="+", choices=TISSUE_LAYOUTS, default=["section", "scattered"],
        help="how the tissue lies on the slide: one section (as on a slide) and/or scattered pieces (default both)",
    )
    inv = p.add_argument_group(
        "invariance", "--invariance: on a 2000x2000 mosaic of CRC images (needs the crc data set), the count and "
        "points of each image-context mode and tile size (256, 512, 1024 and the default) against one whole-image "
        "pass, F1, the cost against that pass, and flip agreement (CPU)",
    )
    inv.add_argument("--invariance", action="store_true", help="tiling and flip invariance of the points")
    inv.add_argument("--contexts", nargs="+", default=["exact", "tile"], choices=["tile", "fast", "exact"],
                     help="image-context modes to compare (default: exact tile)")
    inv.add_argument("--invariance-precision", default="fp32", choices=["fp32", "bf16", "auto"], help="default fp32")
    inv.add_argument("--context-tiles", type=int, nargs="*", default=[], metavar="N",
                     help="also rows of context 'fast' with statistics from at most N tiles")
    inv.add_argument("--tilings", type=int, nargs=2, action="append", metavar=("TILE", "OVERLAP"),
                     default=None, help="tile size and overlap to compare (repeatable; default 256 64, 256 128, 512 128, 1024 256)")
    inv.add_argument("--no-flips", action="store_true", help="skip the flip agreement rows")
    p.set_defaults(func=run)
    return p
