"""``liteunet localize``: find the cells in images, folders, globs or slides; write points and a summary."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

#: Library defaults by value, so ``--help`` needs no torch (tests/test_cli.py checks they match
#: ``liteunet.localization.tiling`` and ``liteunet.inference.TTA_MODES``).
DEFAULT_TILE_SIZE, DEFAULT_OVERLAP, CPU_TILE_SIZE, CPU_OVERLAP, SINGLE_PASS_SIDE = 1024, 256, 512, 128, 1024
TTA_CHOICES = ("d4", "flips")
SLIDE_BACKENDS = ("openslide", "tiffslide", "tifffile")  # liteunet.wsi.BACKENDS

#: Suffixes only the whole-slide path reads (vendor formats); they switch it on by themselves.
VENDOR_SUFFIXES = (".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")

from .. import outputs  # standard library only: --help stays fast
from .evaluate import parse_object_size


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "localize",
        help="find the cells in images of any size; write CSV / JSON / GeoJSON (QuPath) points",
        description="Localize cells in images, folders, globs or TIFF slides (tiled, with "
        "overlap). Writes one points file per image and a summary.csv to OUT_DIR (it names each "
        "image's output files). Output names never collide: when two inputs share a name, the "
        "suffix stays in it (x.png -> x_png.csv, x.tif -> x_tif.csv). Existing outputs are not "
        "replaced unless --overwrite; --skip-existing keeps them and skips those images. A file "
        "that cannot be read is reported and skipped; the exit code is 1 when any failed.",
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
    existing = p.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite", action="store_true", help="replace outputs that exist already"
    )
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep outputs that exist already and skip their images (default: stop and list them)",
    )
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png")
    p.add_argument("--heatmap", action="store_true", help="also write <name>_heatmap.png")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1...")
    p.add_argument(
        "--tile-size",
        type=int,
        help="tile side, a multiple of 16 (default: one pass when it fits in memory, with --context exact; else "
        f"images up to {SINGLE_PASS_SIDE} px in one pass; larger ones in tiles of at most {DEFAULT_TILE_SIZE} on "
        f"CUDA, {CPU_TILE_SIZE} on CPU, fitted to the image)",
    )
    p.add_argument(
        "--overlap",
        type=int,
        help=f"overlap of neighbouring tiles, a multiple of 16 (default {DEFAULT_OVERLAP} on CUDA, {CPU_OVERLAP} on CPU)",
    )
    p.add_argument(
        "--context", choices=["tile", "fast", "exact"], default="exact",
        help="image-wide attention statistics: from the whole image (exact, default: one pass when it fits, "
        "else tiles with one statistics pass per attention layer, overlap >= 128), each tile its own (tile: "
        "faster on large images, but the points depend on the tile size), or one extra pass (fast); images only",
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
    p.add_argument(
        "--object-size", metavar="auto|PX",
        help="typical object (nucleus) diameter in the inputs, in pixels, or 'auto' to estimate it in each image: "
        "images are resized to the object size the weights were trained at (instead of --scale / --mpp)",
    )
    p.add_argument(
        "--no-scale-search", dest="scale_search", action="store_false",
        help="with --object-size auto: the scale model's estimate alone, without the peak-height search around it",
    )
    p.add_argument("--level", type=int, default=0, help="pyramid level of TIFF slides (default 0)")
    p.add_argument(
        "--normalize",
        default=None,
        choices=["auto", "percentile", "none", "nuclear"],
        help="intensity normalization (default: as the weights were trained, which their config "
        "records; 'auto': uint8/255, others percentiles; 'percentile' for every bit depth; "
        "'nuclear': one plane with nuclei bright, for weights trained so)",
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
        "--region-size", type=int, default=8192, metavar="PIXELS",
        help="on Dask, cut a slide larger than PIXELS x PIXELS at the model's scale into regions of whole "
        "tile rows that run as separate tasks and merge into the same outputs (default 8192; 0: never)",
    )
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
        scheduler=args.scheduler, threads_per_worker=args.threads, region_size=args.region_size or None,
        mpp=args.mpp, model_mpp=args.model_mpp,
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


def _plan(
    args: argparse.Namespace, formats: list[str], out_dir: Path
) -> tuple[list[Any], list[list[str]]]:
    """The inputs and each one's output file names, checked before any compute."""
    from .. import io_formats
    from ..localization.inputs import expand_inputs

    input_dirs = [Path(i) for i in args.inputs if Path(i).is_dir()]
    outputs.check_out_dir(out_dir, input_dirs)
    items, inside = [], 0
    resolved = out_dir.resolve()
    for item in expand_inputs(list(args.inputs)):
        payload = item.payload
        named = isinstance(payload, Path) and str(payload) in args.inputs
        if isinstance(payload, Path) and not named and resolved in payload.resolve().parents:
            inside += 1  # a glob match inside the output folder: an output of an earlier run
            continue
        items.append(item)
    if inside:
        print(
            f"liteunet localize: {inside} file(s) inside the output folder {out_dir} are not "
            "inputs (skipped)",
            file=sys.stderr,
        )
    exts = [io_formats.POINT_FORMATS[fmt][0] for fmt in formats]
    stems = outputs.output_stems([item.name for item in items])
    names = [outputs.output_names(stem, exts, args.overlay, args.heatmap) for stem in stems]
    return items, names


def _write(
    result: Any,
    src: Any,
    args: argparse.Namespace,
    formats: list[str],
    paths: list[Path],
) -> None:
    """Write one image's outputs; on any failure, remove those already written for it."""
    from .. import io_formats
    from ..localization.inputs import display_image

    written: list[Path] = []
    try:
        for fmt, path in zip(formats, paths):
            written.append(io_formats.POINT_FORMATS[fmt][1](result, outputs.clear_target(path)))
        extra = iter(paths[len(formats) :])
        if args.heatmap:
            path = outputs.clear_target(next(extra))
            if result.location_map is not None:
                written.append(
                    io_formats.write_heatmap(result.location_map, path, result.label_names)
                )
        if args.overlay:
            path = outputs.clear_target(next(extra))
            if src is not None:
                image, factor = display_image(src, io_formats.MAX_PNG_SIDE)
                written.append(io_formats.write_overlay(image, result, path, image_scale=factor))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    # Loads torch: only when the command runs.
    from tqdm.auto import tqdm

    from .. import io_formats
    from ..localization import LocalizationResult, Localizer
    from ..localization.inputs import named_error

    slides = _slide_mode(args)
    text = args.format if args.format is not None else ("csv,geojson" if slides else "csv")
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in io_formats.POINT_FORMATS]
    if unknown or not formats:
        raise ValueError(f"--format: unknown {unknown or text!r}; use csv, json, geojson")
    object_size = parse_object_size(getattr(args, "object_size", None))
    if slides:
        if object_size is not None:
            raise ValueError("--object-size applies to images; whole slides (--wsi) are scaled by --mpp or --scale")
        return _run_slides(args, formats)
    formats = list(dict.fromkeys(formats))
    out_dir = Path(args.out_dir)
    items, names = _plan(args, formats, out_dir)
    overwrite, skip = getattr(args, "overwrite", False), getattr(args, "skip_existing", False)
    exists = [[n for n in item_names if os.path.lexists(out_dir / n)] for item_names in names]
    if not (overwrite or skip) and any(exists):
        found = [n for e in exists for n in e]
        shown = ", ".join(found[:5]) + (f" (+{len(found) - 5} more)" if len(found) > 5 else "")
        raise FileExistsError(
            f"{len(found)} output file(s) exist already in {out_dir}: {shown}. Pass --overwrite "
            "to replace them, or --skip-existing to keep them and skip their images."
        )
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
        object_size=object_size,
        scale_search=args.scale_search,
        level=args.level,
        return_map=args.heatmap,
        map_max_side=io_formats.MAX_PNG_SIDE if args.heatmap else None,
        progress=True,
        context=args.context,
    )
    summaries, extra, failed, skipped, cells = [], [], 0, 0, 0
    bar = tqdm(list(zip(items, names, exists)), desc="localize", unit="image", file=sys.stderr)
    for item, item_names, item_exists in bar:
        if skip and len(item_exists) == len(item_names):
            skipped += 1
            summaries.append(LocalizationResult.failed(item.name, "", ("cell",), {}))
            extra.append(
                {
                    "status": "skipped",
                    "error": "outputs exist (--skip-existing)",
                    "outputs": "; ".join(item_names),
                }
            )
            continue
        result, err = localizer.run_item(item, keep_source=args.overlay)
        src = getattr(result, "_source", None)
        try:
            if err is None:
                _write(result, src, args, formats, [out_dir / n for n in item_names])
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
        extra.append({"outputs": "" if err is not None else "; ".join(item_names)})
    summary = outputs.clear_target(out_dir / outputs.SUMMARY_NAME)
    io_formats.write_summary_csv(summaries, summary, extra)
    done = len(items) - failed - skipped
    print(
        f"localized {done} of {len(items)} image(s), {cells} cell(s); outputs in {out_dir}"
        + (f"; {skipped} skipped, their outputs exist" if skipped else "")
        + (f"; {failed} failed (see above and summary.csv)" if failed else "")
    )
    return 1 if failed else 0
