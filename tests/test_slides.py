"""TIFF slides read region by region: exact regions, laziness, pyramids, localize() on slides."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

tifffile = pytest.importorskip("tifffile")

from liteunet import localize
from liteunet.cli import main
from liteunet.slides import TiffImage, is_tiff

import liteunet.localization.normalize as normalize_module


class Blur(nn.Module):
    """Gaussian blur of a grey image: a deterministic, position-equivariant location map."""

    in_chans = num_classes = 1

    def __init__(self, sigma: float = 1.5) -> None:
        super().__init__()
        g = torch.exp(-(torch.arange(-6, 7.0) ** 2) / (2 * sigma**2))
        self.register_buffer("kernel", ((g[:, None] * g[None]) / g.sum() ** 2)[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, padding=6)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cells(h: int, w: int, step: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A uint16 image with a Gaussian blob (sigma 2) every ``step`` px, and the blob centres."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[8 : h - 8 : step, 8 : w - 8 : step]
    pts = np.stack([xs.ravel(), ys.ravel()], 1) + rng.uniform(-2, 2, (xs.size, 2))
    img = np.zeros((h, w))
    for x, y in pts:  # each blob only in its own 15x15 window: fast on large images
        y0, x0 = max(0, int(y) - 7), max(0, int(x) - 7)
        yy, xx = np.mgrid[y0 : min(h, int(y) + 8), x0 : min(w, int(x) + 8)]
        patch = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0)
        img[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = np.maximum(
            img[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]], patch
        )
    return (img * 50000 + 1000).astype(np.uint16), pts


def write_pyramid(path, img: np.ndarray, levels: int = 3, **kw) -> None:
    """A BigTIFF with the full image and ``levels - 1`` 2x-downsampled SubIFDs."""
    kw = {"tile": (64, 64), "compression": "zlib", **kw}
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(img, subifds=levels - 1, **kw)
        for i in range(1, levels):
            tw.write(img[:: 2**i, :: 2**i], subfiletype=1, **kw)


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    img, pts = cells(300, 340)
    path = tmp_path_factory.mktemp("slides") / "slide.tif"
    write_pyramid(path, img)
    return path, img, pts


@pytest.mark.parametrize(
    "layout",
    [
        {"tile": (64, 64)},
        {"tile": (32, 48)},
        {"rowsperstrip": 16},
        {"tile": (64, 64), "planarconfig": "separate"},
    ],
    ids=["tiled", "tiled-rect", "strips", "planar"],
)
def test_regions_equal_array_slices(tmp_path, layout):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 65535, (150, 170, 3), dtype=np.uint16)
    data = np.moveaxis(img, -1, 0) if layout.get("planarconfig") else img
    with tifffile.TiffWriter(tmp_path / "a.tif", bigtiff=True) as tw:
        tw.write(data, photometric="rgb", subifds=1, compression="zlib", **layout)
        tw.write(
            data[..., ::2, ::2, :] if data is img else data[:, ::2, ::2],
            subfiletype=1,
            photometric="rgb",
            compression="zlib",
            **layout,
        )
    for level, ref in ((0, img), (1, img[::2, ::2])):
        with TiffImage(tmp_path / "a.tif", level=level) as t:
            assert t.shape == ref.shape and t.dtype == np.uint16 and t.num_levels == 2
            h, w = ref.shape[:2]
            for y0, y1, x0, x1 in [
                (0, h, 0, w),
                (0, 1, 0, 1),
                (h - 1, h, w - 1, w),
                (5, h - 5, 40, w - 3),
            ]:
                np.testing.assert_array_equal(t.read_region(y0, y1, x0, x1), ref[y0:y1, x0:x1])
            for _ in range(10):
                y0, x0 = rng.integers(0, h - 1), rng.integers(0, w - 1)
                y1, x1 = rng.integers(y0 + 1, h + 1), rng.integers(x0 + 1, w + 1)
                np.testing.assert_array_equal(t.read_region(y0, y1, x0, x1), ref[y0:y1, x0:x1])
            assert t.downsample == (img.shape[0] / h, img.shape[1] / w)


def test_reads_only_the_tiles_a_region_touches(slide):
    path, _, _ = slide
    with TiffImage(path) as t:
        t.read_region(70, 100, 70, 120)  # inside tile (1, 1) of 64x64 tiles
        assert t.segments_read == 1
        t.read_region(60, 70, 60, 70)  # a corner shared by four tiles
        assert t.segments_read == 5
        assert t.level_shapes == [(300, 340), (150, 170), (75, 85)]
        assert is_tiff(path) and not is_tiff("a.png")


def test_bad_tiffs_raise_clearly(tmp_path, slide):
    path, _, _ = slide
    with pytest.raises(ValueError, match="3 pyramid level.*asked for level 5"):
        TiffImage(path, level=5)
    (tmp_path / "text.tif").write_text("no tiff here")
    with pytest.raises(ValueError, match="text.tif is not a TIFF"):
        TiffImage(tmp_path / "text.tif")
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        TiffImage(tmp_path / "missing.tif")
    data = path.read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 3])
    with pytest.warns(RuntimeWarning, match="cut.tif"):
        res = localize(
            [tmp_path / "cut.tif", path],
            Blur(),
            progress=False,
            on_error="skip",
            tile_size=128,
            overlap=32,
        )
    assert "cut.tif" in res[0].error and res[1].ok and res[1].count > 0
    with TiffImage(path) as t, pytest.raises(ValueError, match="outside"):
        t.read_region(0, 301, 0, 10)


def test_localize_tiff_equals_localize_array(slide):
    path, img, pts = slide
    kw = {"progress": False, "threshold": 0.3, "tile_size": 128, "overlap": 32}
    from_file = localize(path, Blur(), **kw)[0]
    from_array = localize(img, Blur(), **kw)[0]
    assert from_file.image_size == (300, 340)
    np.testing.assert_array_equal(from_file.xy, from_array.xy)
    np.testing.assert_array_equal(from_file.scores, from_array.scores)
    assert from_file.count == len(pts)


def test_pyramid_level_points_come_back_in_level0_pixels(slide):
    path, _, pts = slide
    res = localize(
        path,
        Blur(sigma=0.8),
        progress=False,
        threshold=0.3,
        level=1,
        tile_size=64,
        overlap=32,
        min_distance=2,
    )[0]
    assert res.image_size == (300, 340) and res.settings["level"] == 1
    d = np.sqrt(((res.xy[:, None] - pts[None]) ** 2).sum(-1))
    assert res.count >= 0.95 * len(pts)
    assert np.median(d.min(1)) < 1.5  # level-1 pixels are 2 level-0 pixels wide
    with pytest.raises(ValueError, match="level=1 applies to pyramidal TIFF"):
        localize(np.zeros((8, 8), np.uint8), Blur(), progress=False, level=1)


def test_streaming_memory_does_not_grow_with_the_slide(tmp_path, monkeypatch):
    # Statistics from a small sample, so only the tiles in flight are in memory.
    monkeypatch.setattr(normalize_module, "STATS_PIXELS", 1 << 14)
    monkeypatch.setattr(normalize_module, "STATS_LEVEL_PIXELS", 1 << 14)
    peaks = {}
    for side in (256, 1024, 2048):  # 256: a warm-up that pays the one-time allocations
        img, pts = cells(side, side, step=48)
        path = tmp_path / f"s{side}.tif"
        write_pyramid(path, img, levels=2, tile=(128, 128))
        del img
        tracemalloc.start()
        res = localize(path, Blur(), progress=False, threshold=0.3, tile_size=256, overlap=64)[0]
        peaks[side] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert res.count == len(pts)
    slide_bytes = 2048 * 2048 * 2  # the slide as stored (uint16); as float32 it is twice that
    assert peaks[2048] < slide_bytes / 4, peaks
    assert peaks[2048] < 1.5 * peaks[1024], peaks  # 4x the pixels, about the same peak


def test_thumbnail_uses_a_pyramid_level(slide):
    path, img, _ = slide
    with TiffImage(path) as t:
        thumb, factor = t.thumbnail(100)
        np.testing.assert_array_equal(thumb, img[::4, ::4])
        assert factor == 85 / 340
        thumb, factor = t.thumbnail(50)  # no level that small: strided
        assert max(thumb.shape) <= 50 and factor == thumb.shape[1] / 340


def test_cli_on_a_slide_with_overlay(slide, tmp_path):
    path, _, _ = slide
    out = tmp_path / "out"
    model_dir = tmp_path / "blur"  # the CLI takes folders: save a 1-channel tiny Lite-UNet
    import json

    import timm

    import liteunet

    torch.manual_seed(0)
    m = liteunet.create_model("lite_unet", in_chans=1, widths=(8, 8, 16, 16, 16))
    timm.models.save_for_hf(
        m,
        model_dir,
        model_args={"widths": [8, 8, 16, 16, 16], "in_chans": 1},
        safe_serialization=True,
    )
    rc = main(
        [
            "localize",
            str(path),
            "-o",
            str(out),
            "--model",
            str(model_dir),
            "--format",
            "geojson",
            "--overlay",
            "--heatmap",
            "--tile-size",
            "128",
            "--overlap",
            "64",
            "--context",
            "tile",
            "--threshold",
            "-1000",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    fc = json.loads((out / "slide.geojson").read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) > 0
    assert (out / "slide_overlay.png").is_file() and (out / "slide_heatmap.png").is_file()
