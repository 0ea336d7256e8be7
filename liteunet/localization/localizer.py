"""``localize()`` and ``Localizer``: images of any size in, cell points out, on CPU or CUDA.

Pipeline for each image: read it (lazily, region by region, for TIFF slides;
:mod:`~liteunet.localization.inputs`), normalize it the way the weights were trained
(:mod:`~liteunet.localization.normalize`), bring it to the model's channel count, cut it into
overlapping tiles (:mod:`~liteunet.localization.tiling`), run the tiles through the model in
batches, find the peaks of each tile's location map in the tile's *core*, and merge them
(:func:`liteunet.points.suppress_close_points`).

Memory
    Only a batch of tiles and their maps are in memory, never the full-resolution map of a large
    image (ask for it with ``return_map``, optionally downsampled). TIFF files are read tile by
    tile through :class:`liteunet.slides.TiffImage`; percentiles come from a bounded sample.

Points follow the package convention: ``(N, 2)`` float32 ``(x, y)`` in pixels of the input
image, x = column, y = row, ``(0, 0)`` the centre of the top-left pixel.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .._checks import check_int
from .._version import __version__
from .._device import resolve_device
from ..data.io import match_channels
from ..inference import OnnxModel, TestTimeAugmentation, fuse, prepare_model, search_scale, stored_scale_model
from ..object_size import SCALE_LIMITS, estimate_object_size_regions, resize_for_model, scale_to_trained
from ..points import peak_confidences, suppress_close_points
from ..pretrained import load_localization_settings, resolve_settings
from ..slides import TiffImage
from .context import ImageContext, core_mask, sample_tiles, stat_cores
from .inputs import InputItem, available_memory, check_image, check_memory, expand_inputs, named_error, open_input
from .model import describe_weights, label_names, load_localization_model, model_in_chans
from .normalize import region_normalizer
from .options import LocalizationOptions, resolve_precision, warn_unguarded
from .result import LocalizationResult
from .tiling import (
    CPU_OVERLAP, CPU_TILE_SIZE, DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, SINGLE_PASS_SIDE, axis_tiles, pad_to, pool_into,
    tile_batches, tile_peaks, tile_sides,
)

__all__ = ["Localizer", "localize"]

#: Peak memory of one float32 pass of the published Lite-UNet weights per image pixel (the
#: process's peak RSS less what it held before, on 1024-3072 px images: 621, 505 and 491 bytes),
#: with a margin; half as much in bf16 / fp16. ``context="exact"`` runs an image in one pass
#: when this fits (:meth:`Localizer.one_pass_fits`).
ONE_PASS_BYTES_PER_PIXEL = 640
#: The smallest overlap ``context="exact"`` accepts: tiles with 64-px margins (512 / 128) find
#: the cells of one pass to 0.2%, with 32-px margins (256 / 64) 24% more
#: (``liteunet bench --invariance --contexts exact``; docs/robustness.md).
EXACT_MIN_OVERLAP = 128


class Localizer:
    """A model made ready to localize many images: weights, settings, device, tiling.

    :func:`localize` is ``Localizer(model, ...)(images)``; keep a ``Localizer`` to run several
    batches without loading and preparing the model again.

    Args:
        model: as for :func:`localize`.
        options: a :class:`~liteunet.localization.options.LocalizationOptions`; default: all
            defaults.
        **kwargs: options to set (or to change in ``options``), e.g. ``device="cpu"``.

    Example:
        >>> loc = Localizer("lite_unet.crc", device="cpu")  # doctest: +SKIP
        >>> results = loc(["a.png", "b.png"])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike | nn.Module = "lite_unet",
        options: LocalizationOptions | None = None,
        **kwargs: Any,
    ) -> None:
        opts = options if options is not None else LocalizationOptions()
        opts = opts.replace(**kwargs) if kwargs else opts
        self.options = opts
        self.device = resolve_device(opts.device)
        module, self.model_name = load_localization_model(model)
        self.weights = describe_weights(module)
        self.tta = opts.tta
        self.precision = resolve_precision(opts.precision, self.device, module, self.tta, opts.compile)
        self.tuned_for = opts.tuned_for
        # One rule for which stored settings apply (data set, TTA mode, then the caller's).
        stored = load_localization_settings(module)
        chosen = resolve_settings(
            stored, tuned_for=opts.tuned_for, tta=self.tta, threshold=opts.threshold, min_distance=opts.min_distance
        )
        self.threshold = float(chosen["threshold"])
        self.min_distance = check_int("min_distance", chosen["min_distance"], 1)
        self.size_divisor = int(getattr(module, "size_divisor", 16) or 1)
        self.tile_size, self.overlap = self._tiling(opts)
        #: Default tiling fits the tiles to each image (:func:`~.tiling.fit_tile`); a tile_size
        #: the caller gave is used as is.
        self.fit_tiles = opts.tile_size is None
        default_batch = 4 if self.device.type == "cuda" else 1
        self.batch_size = opts.batch_size if opts.batch_size is not None else default_batch
        self.normalize = opts.normalize or str(stored.get("normalize", "auto"))
        self.percentiles = opts.percentiles
        #: The object size the weights were trained at (``localization.object_size``), or None.
        #: With ``tuned_for``, that set's own size when the weights store one.
        self.trained_object_size: float | None = chosen.get("object_size")
        self.object_size = opts.object_size
        #: The weights' learned scale estimate, which ``object_size="auto"`` uses when stored. It reads
        #: features by layer name, so from an fp32 fused copy of the module (same names, same
        #: features), never from the reduced-precision or compiled form that localizes.
        self.scale_model = stored_scale_model(stored, module) if opts.object_size == "auto" else None
        self._module = module if self.scale_model is not None else None  # kept only when auto needs its features
        self._feature_model: nn.Module | None = None  # that copy, on self.device, made on first use
        self.scale_search = bool(opts.scale_search)
        self._search_model: nn.Module | None = None  # the module as it localizes, without TTA: made on first use
        self.scale = self._scale(opts, stored, module)
        self.level = opts.level
        self.return_map = opts.return_map
        self.map_max_side = opts.map_max_side
        self.subpixel = bool(opts.subpixel)
        self.max_pixels = opts.max_pixels
        self.progress = opts.progress
        self.model = self._runner(module, opts)
        self.context_tiles = opts.context_tiles
        self.min_input_size = int(getattr(module, "min_input_size", 0) or 0)
        #: Hooks that give every tile the image-wide attention statistics (None: each tile its own).
        self.image_context = self._image_context(module, opts)
        self.context = opts.context if self.image_context is not None else "tile"
        #: ``context="exact"`` with the default tiling: an image whose one pass fits in memory runs
        #: in one pass (its exact result, with no statistics passes); only larger ones are tiled.
        #: Models without image-wide terms tile as before (their tiles are exact already);
        #: compiled and ONNX ones cannot be hooked, but one pass still gives them the exact result.
        self.whole_image_pass = opts.context == "exact" and (
            self.image_context is not None or isinstance(module, OnnxModel) or bool(opts.compile)
        )
        if self.context == "exact" and self.overlap < EXACT_MIN_OVERLAP:
            raise ValueError(
                f"overlap ({self.overlap}) is too small for context='exact': tiles need margins of "
                f"{EXACT_MIN_OVERLAP // 2} px (overlap >= {EXACT_MIN_OVERLAP}) for their deep features, and so "
                "the image-wide statistics, to match one whole-image pass; raise the overlap, or pass "
                "context='tile' (faster, but the points then depend on the tile size)"
            )
        self.in_chans = model_in_chans(self.model)
        self.num_classes: int | None = getattr(self.model, "num_classes", None)
        self.label_names = label_names(self.model, self.num_classes)

    def _tiling(self, opts: LocalizationOptions) -> tuple[int, int]:
        on_cpu = self.device.type == "cpu"
        tile_size = opts.tile_size if opts.tile_size is not None else (CPU_TILE_SIZE if on_cpu else DEFAULT_TILE_SIZE)
        overlap = opts.overlap if opts.overlap is not None else (CPU_OVERLAP if on_cpu else DEFAULT_OVERLAP)
        check_int("tile_size", tile_size, self.size_divisor)
        if tile_size % self.size_divisor or overlap % self.size_divisor:
            raise ValueError(
                f"tile_size ({tile_size}) and overlap ({overlap}) must be multiples of "
                f"{self.size_divisor}, the model's pooling grid, so tiles align with one whole pass"
            )
        if overlap >= tile_size:
            raise ValueError(f"overlap ({overlap}) must be smaller than tile_size ({tile_size})")
        if 2 * self.min_distance + 1 > overlap // 2 and overlap > 0:
            # The halo and NMS window of a core point must stay inside its tile.
            raise ValueError(
                f"overlap ({overlap}) is too small for min_distance={self.min_distance}: need "
                f"overlap >= {2 * (2 * self.min_distance + 1)}"
            )
        return tile_size, overlap

    def _image_context(self, module: nn.Module, opts: LocalizationOptions) -> ImageContext | None:
        if opts.context == "tile" or isinstance(module, OnnxModel) or opts.compile:
            return None
        ctx = ImageContext(self.model)
        return ctx if len(ctx) else None

    def _gather_context(self, ctx: ImageContext, read: Callable, rows: list, cols: list, h: int, w: int) -> None:
        """The statistics passes of :mod:`~liteunet.localization.context` over this image's tiles."""
        tile_h, tile_w = rows[0][1] - rows[0][0], cols[0][1] - cols[0][0]
        srows, scols = stat_cores(rows, h, self.size_divisor), stat_cores(cols, w, self.size_divisor)
        tiles = list(itertools.product(range(len(rows)), range(len(cols))))
        picked = [tiles[k] for k in sample_tiles(len(tiles), self.context_tiles)]

        def batches():
            for i in range(0, len(picked), self.batch_size):
                chunk = picked[i : i + self.batch_size]
                x = np.stack([
                    pad_to(read(rows[a][0], rows[a][1], cols[b][0], cols[b][1]), tile_h, tile_w).transpose(2, 0, 1)
                    for a, b in chunk
                ])
                masks = torch.stack([core_mask(srows[a], scols[b], (rows[a][0], cols[b][0]), (tile_h, tile_w)) for a, b in chunk])
                yield torch.from_numpy(np.ascontiguousarray(x)).to(self.device), masks.to(self.device)

        with torch.inference_mode():
            ctx.gather(batches, self.context)

    def tile_shape(self, h: int, w: int, one_pass: bool = True) -> tuple[int, int]:
        """The tile ``(height, width)`` used on an ``h`` x ``w`` image (at the model's scale).

        Default tiling: one pass up to :data:`~.tiling.SINGLE_PASS_SIDE` (``one_pass=False``:
        only up to ``tile_size``; whole slides are always tiled, so that glass can be skipped),
        else tiles fitted to the image with ``tile_size`` as the largest
        (:func:`~.tiling.tile_sides`). A ``tile_size`` the caller gave is used as is.
        """
        if not self.fit_tiles:
            return self.tile_size, self.tile_size
        single = max(SINGLE_PASS_SIDE, self.tile_size) if one_pass else self.tile_size
        if one_pass and self.whole_image_pass and self.one_pass_fits(h, w):
            single = max(h, w)
        return tile_sides(h, w, self.tile_size, self.overlap, self.size_divisor, single)

    def one_pass_fits(self, h: int, w: int) -> bool:
        """Whether one pass over an ``h`` x ``w`` image fits (:data:`ONE_PASS_BYTES_PER_PIXEL`): in
        half the free memory of a GPU, in a quarter of the machine's memory on CPU (which other
        programs share, and which holds the image and the points too)."""
        pixels = -(-h // self.size_divisor) * self.size_divisor * -(-w // self.size_divisor) * self.size_divisor
        nbytes = ONE_PASS_BYTES_PER_PIXEL * pixels * (2 if self.precision in ("bf16", "fp16") else 4) // 4
        if self.device.type == "cuda":
            return nbytes <= torch.cuda.mem_get_info(self.device)[0] // 2
        return nbytes <= available_memory() // 4

    def _scale(self, opts: LocalizationOptions, stored: dict[str, Any], module: nn.Module) -> float:
        if opts.object_size is not None:
            if not self.trained_object_size and self.scale_model is None:
                raise ValueError(
                    f"object_size={opts.object_size!r} given, but the weights of {self.model_name} do not record "
                    "the object size they were trained at (config.json localization.object_size; add it with "
                    "`python -m liteunet.release WEIGHTS_FOLDER --object-size-only --tag TAG`); pass scale= instead"
                )
            # "auto": estimated in each image (scale_for); a number: one scale for all.
            return 1.0 if opts.object_size == "auto" else float(self.trained_object_size) / float(opts.object_size)
        if opts.mpp is None:
            return float(opts.scale) if opts.scale is not None else 1.0
        model_mpp = stored.get("mpp") or (getattr(module, "pretrained_cfg", None) or {}).get("mpp")
        if not model_mpp:
            raise ValueError(
                f"mpp={opts.mpp} given, but the weights of {self.model_name} do not say at which "
                "microns per pixel they were trained; pass scale= instead"
            )
        return float(opts.mpp) / float(model_mpp)

    def _runner(self, module: nn.Module, opts: LocalizationOptions) -> nn.Module:
        """The model in the form it runs in: precision, memory format, compiled, TTA."""
        if isinstance(module, OnnxModel):
            if self.precision != module.precision:
                raise ValueError(
                    f"{self.model_name} is a {module.precision} ONNX model; precision={opts.precision!r} "
                    "cannot change it (export another: liteunet export onnx --help)"
                )
            runner: nn.Module = module
        elif self.precision == "int8":
            raise ValueError(
                "int8 runs through ONNX Runtime: make an int8 file with "
                "`liteunet export onnx MODEL --int8 -o model.int8.onnx` and pass it as the model"
            )
        else:
            if opts.precision not in ("auto", None, "fp32", "float32"):
                warn_unguarded(module, self.model_name, self.precision, self.tta, opts.compile)
            runner = prepare_model(
                module, self.precision, device=self.device, channels_last=opts.channels_last,
                compile=opts.compile, fused=opts.fuse,
            )
        return TestTimeAugmentation(runner, self.tta) if self.tta else runner

    def scale_for(self, src: Any, name: str, norm: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[float, dict[str, Any]]:
        """The scale to localize an opened image at, and what to record about its object size.

        With ``object_size="auto"`` and weights that store a scale model, the zoom it predicts
        from the network's features (at most nine 256-px regions) is undone, then checked by
        :func:`~liteunet.inference.search_scale` (``scale_search``; regions scaled with ``norm``,
        the image's input scaling); otherwise the typical
        object diameter is estimated on the image as read (at most nine 512-px regions of a large
        one), and the scale brings it to the trained size. Either way the scale is kept within
        :data:`~liteunet.object_size.SCALE_LIMITS` (outside them the estimate is not trusted; a
        warning says so).
        """
        if self.object_size is None:
            return self.scale, {}
        record: dict[str, Any] = {"object_size_trained": float(self.trained_object_size or 0.0)}
        if self.object_size != "auto":
            return self.scale, {**record, "object_size": float(self.object_size)}
        h, w = src.shape[:2]
        if self.scale_model is not None:
            if self._feature_model is None:  # a fused copy (same layer names, same features), the caller's module untouched
                self._feature_model = fuse(self._module).to(self.device).eval()  # type: ignore[arg-type]
            zoom = self.scale_model.predict(self._feature_model, read=src.read_region, shape=(h, w), device=self.device)
            scale, clipped = self.scale_model.scale_for(zoom)
            if clipped:
                warnings.warn(
                    f"{name}: object_size='auto' found the image at {zoom:.3g}x the training images' magnification; localized at "
                    f"scale {scale:.3g} (kept within {SCALE_LIMITS[0]} to {SCALE_LIMITS[1]}; pass object_size= or scale= to override)",
                    RuntimeWarning, stacklevel=4,
                )
            record.update(object_size="auto", zoom_estimated=round(zoom, 3))
            if self.scale_search:
                norm = norm or region_normalizer(src, self.normalize, self.percentiles)
                record["scale_estimated"] = round(scale, 4)  # the scale model's, before the search
                if self._search_model is None:  # in the precision that localizes (bf16: about 3x fp32's speed on CPU)
                    self._search_model = prepare_model(self._module, self.precision, device=self.device)  # type: ignore[arg-type]
                scale, _ = search_scale(
                    self._search_model, scale, self.threshold, self.min_distance, read=lambda *r: norm(src.read_region(*r)),
                    shape=(h, w), normalize="none", device=self.device,
                )
            return scale, record
        size = estimate_object_size_regions(src.read_region, (h, w))
        scale, clipped = scale_to_trained(size, float(self.trained_object_size))  # type: ignore[arg-type]
        record["object_size"] = "auto"
        record["object_size_estimated"] = round(size, 3) if size == size else None
        if clipped:
            found = f"estimated {size:.1f} px against {self.trained_object_size} px trained" if size == size else "found no objects to measure"
            warnings.warn(
                f"{name}: object_size='auto' {found}; localized at scale {scale:.3g} (the scale is kept within "
                f"{SCALE_LIMITS[0]} to {SCALE_LIMITS[1]}; pass object_size= or scale= to override)", RuntimeWarning, stacklevel=4,
            )
        return scale, record

    @property
    def settings(self) -> dict[str, Any]:
        """What every result records in ``settings``."""
        return {
            "model": self.model_name,
            "weights": dict(self.weights),
            "liteunet_version": __version__,
            "threshold": self.threshold,
            "min_distance": self.min_distance,
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "scale": self.scale,
            **({"object_size": self.object_size} if self.object_size is not None else {}),
            "level": self.level,
            "normalize": self.normalize,
            "percentiles": list(self.percentiles),
            "subpixel": self.subpixel,
            "device": str(self.device),
            "precision": self.precision,
            "tta": self.tta,
            "tuned_for": self.tuned_for,
            "context": self.context,
        }

    # --- public -----------------------------------------------------------------------------------
    def __call__(self, images: Any, on_error: str = "raise") -> list[LocalizationResult]:
        """Localize ``images``; see :func:`localize`."""
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        items = expand_inputs(images)
        results = []
        bar = tqdm(
            items, desc="localize", unit="image", disable=not self.progress or len(items) < 2
        )
        for item in bar:
            result, err = self.run_item(item)
            if err is not None:
                if on_error == "raise":
                    raise err
                warnings.warn(f"liteunet.localize skipped {err}", RuntimeWarning, stacklevel=2)
            results.append(result)
        return results

    def run_item(
        self, item: InputItem, keep_source: bool = False
    ) -> tuple[LocalizationResult, BaseException | None]:
        """Localize one expanded input; errors are returned (named), never raised.

        With ``keep_source`` the opened image stays attached as ``result._source`` (closed by
        the caller), for overlays.
        """
        src = None
        try:
            if item.error is not None:
                raise item.error
            src = open_input(item, self.level)
            result = self._localize_source(src, item.name)
            if keep_source:
                result._source = src  # type: ignore[attr-defined]
                src = None
            return result, None
        except Exception as err:
            named = named_error(err, item.name)
            named.__cause__ = err
            failed = LocalizationResult.failed(
                item.name, str(named), self.label_names or ("cell",), self.settings
            )
            return failed, named
        finally:
            if src is not None:
                src.close()

    # --- steps ------------------------------------------------------------------------------------
    def _localize_source(self, src: Any, name: str) -> LocalizationResult:
        check_image(tuple(src.shape), np.dtype(src.dtype), self.max_pixels)
        h, w = src.shape[:2]
        chans = src.shape[2] if len(src.shape) == 3 else 1
        # Fail on an impossible channel conversion before any work.
        match_channels(np.zeros((1, 1, chans), np.float32), self.in_chans)
        norm = region_normalizer(src, self.normalize, self.percentiles)
        scale, size_record = self.scale_for(src, name, norm)

        def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            return match_channels(norm(src.read_region(y0, y1, x0, x1)), self.in_chans)

        if scale != 1.0:
            read, h, w = self._rescaled(read, h, w, name, scale)

        rows, cols = (axis_tiles(n, t, self.overlap, self.size_divisor) for n, t in zip((h, w), self.tile_shape(h, w)))
        n_tiles = len(rows) * len(cols)
        # Every tile is fed at the first one's shape (the last row/column are padded to it).
        tile_h, tile_w = rows[0][1] - rows[0][0], cols[0][1] - cols[0][0]
        num_classes = self.num_classes
        md = self.min_distance
        k = self._map_downsample(h, w)
        full_map = None
        if self.return_map:
            shape = (num_classes or 1, -(-h // k), -(-w // k))
            check_memory(
                4 * math.prod(shape),
                f"the location map of {name} ({shape})",
                "ask for a downsampled map: return_map=4 (or map_max_side=...)",
            )
        pts, scs, labs, own = [], [], [], []
        bar = tqdm(
            total=n_tiles,
            desc=Path(name).name,
            unit="tile",
            leave=False,
            disable=not self.progress or n_tiles < 8,
        )
        # A tile the model would zero-pad (min_input_size) keeps its own context.
        ctx = self.image_context if n_tiles > 1 and min(tile_h, tile_w) >= self.min_input_size else None
        with ctx.hooked() if ctx is not None else contextlib.nullcontext():
            if ctx is not None:
                self._gather_context(ctx, read, rows, cols, h, w)
            for batch in tile_batches(rows, cols, self.batch_size):
                x = np.stack([pad_to(read(r[0], r[1], c[0], c[1]), tile_h, tile_w).transpose(2, 0, 1) for r, c in batch])
                maps = self._forward(torch.from_numpy(np.ascontiguousarray(x)), name)
                if num_classes is None:
                    num_classes = maps.shape[1]
                    self.label_names = self.label_names or label_names(self.model, num_classes)
                if self.return_map and full_map is None:
                    shape = (num_classes, -(-h // k), -(-w // k))
                    check_memory(
                        4 * math.prod(shape),
                        f"the location map of {name} ({shape})",
                        "ask for a downsampled map: return_map=4 (or map_max_side=...)",
                    )
                    full_map = np.full(shape, -np.inf, dtype=np.float32)
                for (r, c), m in zip(batch, maps):
                    (ty0, ty1, cy0, cy1), (tx0, tx1, cx0, cx1) = r, c
                    xy, sc, lab, owned = tile_peaks(m, r, c, md, self.threshold, self.subpixel)
                    pts.append(xy)
                    scs.append(sc)
                    labs.append(lab)
                    own.append(owned)
                    if full_map is not None:
                        core = m[:, cy0 - ty0 : cy1 - ty0, cx0 - tx0 : cx1 - tx0].float().cpu().numpy()
                        pool_into(full_map, core, cy0, cx0, k)
                bar.update(len(batch))
        bar.close()

        xy = np.concatenate(pts) if pts else np.zeros((0, 2))
        scores = np.concatenate(scs) if scs else np.zeros(0, np.float32)
        labels = np.concatenate(labs) if labs else np.zeros(0, np.int64)
        owned = np.concatenate(own) if own else np.zeros(0, bool)
        keep = suppress_close_points(xy, scores, md, preferred=owned)
        xy, scores, labels = xy[keep], scores[keep], labels[keep]
        order = np.lexsort((xy[:, 0], xy[:, 1], -scores))
        xy, scores, labels = xy[order], scores[order], labels[order]

        # Back to input pixels: undo the scale and the pyramid level (pixel centres map to centres).
        sy, sx = src.downsample
        fx, fy = sx / scale, sy / scale
        xy = np.stack([(xy[:, 0] + 0.5) * fx - 0.5, (xy[:, 1] + 0.5) * fy - 0.5], axis=1)
        h0, w0 = src.level_shapes[0] if isinstance(src, TiffImage) else src.shape[:2]
        settings = {**self.settings, "scale": scale, **size_record}
        return LocalizationResult(
            xy=np.ascontiguousarray(xy, dtype=np.float32).reshape(-1, 2),
            scores=np.ascontiguousarray(peak_confidences(scores)),
            labels=np.ascontiguousarray(labels, dtype=np.int64),
            image_size=(int(h0), int(w0)),
            source=name,
            label_names=self.label_names or ("cell",),
            settings=settings,
            location_map=full_map,
            map_scale=1.0 / (k * fx) if full_map is not None else scale / sx,
        )

    def _map_downsample(self, h: int, w: int) -> int:
        k = 1 if isinstance(self.return_map, bool) else int(self.return_map)
        if self.map_max_side:
            k = max(k, math.ceil(max(h, w) / self.map_max_side))
        return k

    def _rescaled(self, read: Callable, h: int, w: int, name: str, scale: float) -> tuple[Callable, int, int]:
        """Resize the whole normalized image by ``scale``; returns a reader of the result."""
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        check_memory(
            4 * self.in_chans * (h * w + nh * nw),
            f"resizing {name} to {nh}x{nw}",
            "localize a pyramid level (level=...) instead of scale=",
        )
        img = resize_for_model(read(0, h, 0, w), scale).reshape(nh, nw, -1)
        return (lambda y0, y1, x0, x1: img[y0:y1, x0:x1]), nh, nw

    def _forward(self, x: torch.Tensor, name: str) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        with torch.inference_mode():
            out = self.model(x)
        if (
            not isinstance(out, torch.Tensor)
            or out.ndim != 4
            or out.shape[0] != x.shape[0]
            or (out.shape[-2:] != x.shape[-2:])
        ):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise RuntimeError(
                f"the model returned {got} for a {tuple(x.shape)} input; a localization model "
                "must return (B, num_classes, H, W) maps of the input's size"
            )
        return out.float()


def localize(
    images: Any,
    model: str | os.PathLike | nn.Module = "lite_unet",
    *,
    on_error: str = "raise",
    options: LocalizationOptions | None = None,
    **kwargs: Any,
) -> list[LocalizationResult]:
    """Find the cells in images of any size: one :class:`LocalizationResult` per image.

    Args:
        images: a path, a folder (its image files, sorted), a glob (``"slides/*.tif"``), a PIL
            image, a NumPy array ``(H, W)`` / ``(H, W, C)`` (uint8, uint16, other integers,
            float, bool), a torch tensor ``(C, H, W)`` / ``(B, C, H, W)``, or a list of these.
            Grey, RGB and RGBA (alpha is dropped); TIFF / BigTIFF files are read tile by tile
            (needs ``tifffile``: ``pip install liteunet[tiff]``).
        model: a model name (``"lite_unet"``: its default pretrained weights), a pretrained tag
            (``"lite_unet.crc"``), a weights folder (``save_for_hf`` layout), an ``hf-hub:`` /
            ``local-dir:`` name, an ``.onnx`` file from ``liteunet export onnx`` (run by ONNX
            Runtime), or an ``nn.Module`` (used as is, put in eval mode).
        on_error: ``"raise"`` (default): the first bad input raises, its message naming the
            input; ``"skip"``: a bad input gives a result with ``error`` set and no points (so
            indices line up with the inputs) and a warning, and the others are localized.
        options: a :class:`~liteunet.localization.options.LocalizationOptions` to start from.
        **kwargs: the options, by name: ``device``, ``threshold``, ``min_distance``,
            ``tile_size``, ``overlap``, ``batch_size``, ``precision``, ``channels_last``,
            ``compile``, ``normalize``, ``percentiles``, ``scale``, ``mpp``, ``object_size``, ``scale_search``, ``level``,
            ``return_map``, ``map_max_side``, ``subpixel``, ``fuse``, ``tta``, ``tuned_for``,
            ``max_pixels``, ``progress``; each is documented in
            :class:`~liteunet.localization.options.LocalizationOptions`.

    Returns:
        One :class:`LocalizationResult` per image, in input order (a folder or glob expands to
        its files, a ``(B, C, H, W)`` tensor to ``B`` images). Each has ``xy``, an ``(N, 2)``
        float32 array of ``(x, y)`` points in input pixels (x = column, y = row, ``(0, 0)`` the
        centre of the top-left pixel), ``scores`` ``(N,)``, ``labels`` ``(N,)``, ``counts``,
        ``ki67_index`` (2-class models), ``image_size`` and ``settings``.

    Raises:
        ValueError, TypeError, FileNotFoundError: bad options (an unknown name is a TypeError) or model (always), or a bad input
            with ``on_error="raise"``; the message names the input and the problem.
        RuntimeError: the model has no published weights, or returns maps of the wrong shape.

    Shape:
        - numpy input: :math:`(H, W)` or :math:`(H, W, C)`; torch: :math:`(C, H, W)` or
          :math:`(B, C, H, W)`.
        - ``xy``: :math:`(N, 2)` as ``(x, y)``.

    Example:
        >>> import liteunet, numpy as np
        >>> model = liteunet.create_model("lite_unet", widths=(8, 8, 16, 16, 16))
        >>> res = liteunet.localize(np.zeros((100, 120, 3), np.uint8), model, progress=False)
        >>> len(res), res[0].xy.shape[1], res[0].image_size
        (1, 2, (100, 120))
    """
    return Localizer(model, options, **kwargs)(images, on_error=on_error)
