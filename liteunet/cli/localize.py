"""``liteunet localize``: find the cells in images, folders, globs or slides; write points and a summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

#: Library defaults by value, so ``--help`` needs no torch (tests/test_cli.py checks they match
#: ``liteunet.localization.tiling`` and ``liteunet.inference.TTA_MODES``).
DEFAULT_TILE_SIZE, DEFAULT_OVERLAP, CPU_TILE_SIZE, CPU_OVERLAP = 1024, 256, 512, 128
TTA_CHOICES = ("d4", "flips")
SLIDE_BACKENDS = ("openslide", "tiffslide", "tifffile")  # liteunet.wsi.BACKENDS

#: Suffixes only the whole-slide path reads (vendor formats); they switch it on by themselves.
VENDOR_SUFFIXES = (".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "localize",
        help="find the cells in images of any size; write CSV / JSON / GeoJSON (QuPath) points",
        description="Localize cells in images, folders, globs or TIFF slides (tiled, with "
        "overlap). Writes one points file per image and a summary.csv to OUT_DIR. A file that "
        "cannot be read is reported and skipped; the exit code is 1 when any failed.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument("-o", "--out-dir", required=True, help="folder for the outputs")
    p.add_argument(
        "--model",
        default="lite_unet",
        help="model name, pretrained tag or weights folder (default lite_unet)",
    )
    p.add_argument(
        "--format",
        default=None,
        help="points format(s), comma-separated: csv, json, geojson (default csv; whole slides: csv,geojson)",
    )
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png")
    p.add_argument("--heatmap", action="store_true", help="also write <name>_heatmap.png")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1...")
    p.add_argument(
        "--tile-size",
        type=int,
        help=f"tile side, a multiple of 16 (default {DEFAULT_TILE_SIZE} on CUDA, {CPU_TILE_SIZE} on CPU)",
    )
    p.add_argument(
        "--overlap",
        type=int,
        help=f"overlap of neighbouring tiles, a multiple of 16 (default {DEFAULT_OVERLAP} on CUDA, {CPU_OVERLAP} on CPU)",
    )
    p.add_argument(
        "--threshold", type=float, help="peak threshold (default: stored with the weights)"
    )
    p.add_argument(
        "--min-distance", type=int, help="peak minimum distance (default: stored with the weights)"
    )
    p.add_argument(
        "--batch-size", type=int, help="tiles per forward pass (default 4 on CUDA, 1 on CPU)"
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16", "int8"],
        help="auto (default): the fastest kept within the weights' F1 guard (bf16 on CUDA; on CPU "
        "bf16 where native and checked, else fp32); int8 needs an int8 .onnx model",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow first tile)")
    p.add_argument(
        "--tta",
        choices=TTA_CHOICES,
        help="test-time augmentation: average the map over 4 flips or all 8 flips and rotations (d4); 4x / 8x slower",
    )
    p.add_argument(
        "--tuned-for",
        metavar="DATASET",
        help="use the threshold and minimum distance stored for images like this validation set "
        "(e.g. mbm with lite_unet.multi; the model card lists them) instead of the shared ones",
    )
    p.add_argument("--scale", type=float, help="resize factor before the model")
    p.add_argument("--mpp", type=float, help="microns per pixel of the inputs (instead of --scale)")
    p.add_argument("--level", type=int, default=0, help="pyramid level of TIFF slides (default 0)")
    p.add_argument(
        "--normalize",
        default="auto",
        choices=["auto", "percentile", "none"],
        help="intensity normalization (default auto: uint8/255, others percentiles)",
    )
    p.add_argument(
        "--percentiles",
        type=float,
        nargs=2,
        default=(1.0, 99.8),
        metavar=("PMIN", "PMAX"),
        help="percentile normalization range (default 1 99.8)",
    )
    wsi = p.add_argument_group(
        "whole slides",
        "--wsi (or --workers / --scheduler, or a vendor file such as .ndpi / .mrxs) reads the inputs as "
        "whole slides (OpenSlide / tiffslide / tifffile; pip install 'liteunet[wsi]'): at the model's "
        "microns per pixel, tissue only, streamed to <stem>.csv / .geojson with <stem>_tissue.png, resumable "
        "(run the same command again after an interruption), one summary.csv",
    )
    wsi.add_argument("--wsi", action="store_true", help="read the inputs as whole slides")
    wsi.add_argument("--workers", type=int, help="run slides on a local Dask cluster of N worker processes")
    wsi.add_argument("--scheduler", metavar="ADDRESS", help="run slides on an existing Dask cluster (tcp://host:8786)")
    wsi.add_argument("--threads", type=int, help="torch threads per slide task (default 1 per local worker)")
    wsi.add_argument(
        "--model-mpp", type=float,
        help="microns per pixel the model was trained at, when its weights do not record it (e.g. 0.5)",
    )
    wsi.add_argument("--no-tissue-mask", action="store_true", help="run every tile, glass included")
    wsi.add_argument("--slide-backend", default="auto", choices=["auto", *SLIDE_BACKENDS], help="slide reader (default auto)")
    p.set_defaults(func=run)
    return p


def _slide_mode(args: argparse.Namespace) -> bool:
    vendor = any(str(i).lower().endswith(VENDOR_SUFFIXES) for i in args.inputs)
    return bool(args.wsi or args.workers or args.scheduler or vendor)


def _run_slides(args: argparse.Namespace, formats: list[str]) -> int:
    from ..localization import LocalizationOptions
    from ..wsi import localize_slides

    if args.level or args.overlay or args.heatmap:
        raise ValueError("--level, --overlay and --heatmap apply to images, not to whole slides (--wsi)")
    bad = [f for f in formats if f not in ("csv", "geojson")]
    if bad:
        raise ValueError(f"--format {','.join(bad)}: whole slides stream csv and geojson only")
    options = LocalizationOptions(
        device=args.device, threshold=args.threshold, min_distance=args.min_distance, tile_size=args.tile_size,
        overlap=args.overlap, batch_size=args.batch_size, precision=args.precision, compile=args.compile,
        tta=args.tta, tuned_for=args.tuned_for, normalize=args.normalize, percentiles=tuple(args.percentiles),
    )
    rows = localize_slides(
        list(args.inputs), args.out_dir, args.model, options=options, workers=args.workers,
        scheduler=args.scheduler, threads_per_worker=args.threads, mpp=args.mpp, model_mpp=args.model_mpp,
        scale=args.scale, tissue=not args.no_tissue_mask, formats=tuple(formats), backend=args.slide_backend,
    )
    failed = [r for r in rows if r.get("status") == "failed"]
    for r in failed:
        print(f"liteunet localize: {r['image']}: {r['error']} (skipped)", file=sys.stderr)
    cells = sum(int(r.get("count") or 0) for r in rows)
    print(
        f"localized {len(rows) - len(failed)} of {len(rows)} slide(s), {cells} cell(s); outputs in {args.out_dir}"
        + (f"; {len(failed)} failed (see above and summary.csv)" if failed else "")
    )
    return 1 if failed or not rows else 0


def _output_stem(name: str, used: set[str]) -> str:
    base = Path(name).name
    for suffix in (".ome.tiff", ".ome.tif"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    else:
        base = Path(base).stem or "image"
    stem, i = base, 2
    while stem in used:  # two inputs with one name (a/x.png, b/x.png): x, x_2
        stem, i = f"{base}_{i}", i + 1
    used.add(stem)
    return stem


def run(args: argparse.Namespace) -> int:
    # Loads torch: only when the command runs.
    from tqdm.auto import tqdm

    from .. import io_formats
    from ..localization import LocalizationResult, Localizer
    from ..localization.inputs import display_image, expand_inputs, named_error

    slides = _slide_mode(args)
    text = args.format if args.format is not None else ("csv,geojson" if slides else "csv")
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in io_formats.POINT_FORMATS]
    if unknown or not formats:
        raise ValueError(f"--format: unknown {unknown or text!r}; use csv, json, geojson")
    if slides:
        return _run_slides(args, formats)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    localizer = Localizer(
        args.model,
        device=args.device,
        threshold=args.threshold,
        min_distance=args.min_distance,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        precision=args.precision,
        compile=args.compile,
        tta=args.tta,
        tuned_for=args.tuned_for,
        normalize=args.normalize,
        percentiles=tuple(args.percentiles),
        scale=args.scale,
        mpp=args.mpp,
        level=args.level,
        return_map=args.heatmap,
        map_max_side=io_formats.MAX_PNG_SIDE if args.heatmap else None,
        progress=True,
    )
    items = expand_inputs(list(args.inputs))
    used: set[str] = set()
    summaries, failed, cells = [], 0, 0
    bar = tqdm(items, desc="localize", unit="image", file=sys.stderr)
    for item in bar:
        result, err = localizer.run_item(item, keep_source=args.overlay)
        src = getattr(result, "_source", None)
        try:
            if err is None:
                stem = _output_stem(item.name, used)
                for fmt in formats:
                    ext, writer = io_formats.POINT_FORMATS[fmt]
                    writer(result, out_dir / f"{stem}{ext}")
                if args.heatmap and result.location_map is not None:
                    io_formats.write_heatmap(
                        result.location_map, out_dir / f"{stem}_heatmap.png", result.label_names
                    )
                if args.overlay and src is not None:
                    image, factor = display_image(src, io_formats.MAX_PNG_SIDE)
                    io_formats.write_overlay(
                        image, result, out_dir / f"{stem}_overlay.png", image_scale=factor
                    )
                cells += result.count
        except Exception as write_err:  # a full disk or an unwritable folder: report, go on
            err = named_error(write_err, item.name)
            result = LocalizationResult.failed(
                item.name, str(err), result.label_names, result.settings
            )
        finally:
            if src is not None:
                src.close()
        if err is not None:
            failed += 1
            tqdm.write(f"liteunet localize: {err} (skipped)", file=sys.stderr)
        summaries.append(result)
    io_formats.write_summary_csv(summaries, out_dir / "summary.csv")
    done = len(items) - failed
    print(
        f"localized {done} of {len(items)} image(s), {cells} cell(s); outputs in {out_dir}"
        + (f"; {failed} failed (see above and summary.csv)" if failed else "")
    )
    return 1 if failed else 0
