"""Whole slides: readers and mpp, tissue masks, slide points = tile points, 40x = 20x, resume after kill -9, Dask cohorts.

Slides are built here from real CRC tiles placed on white glass (never committed): an
Aperio-style .svs, a generic pyramidal TIFF and an OME-TIFF, at 40x (0.25 um/px) and 20x (0.5).
The "model" is a fixed dark-blob detector (a Gaussian blur of 1 - brightness, 6-px receptive
radius), so points are exact functions of the pixels and the tests are fast.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

pytest.importorskip("tifffile")
from liteunet import Localizer  # noqa: E402
from liteunet.cli import main  # noqa: E402
from liteunet.wsi import glass_slide, localize_slide, open_slide, plan_scale, tiff_mpp, tissue_mask, write_slide  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SETTINGS = {"threshold": 0.35, "min_distance": 4}


class DarkBlobs(nn.Module):
    """Location map = Gaussian blur of (1 - mean RGB): a peak on each dark nucleus."""

    in_chans, num_classes = 3, 1

    def __init__(self) -> None:
        super().__init__()
        g = torch.exp(-(torch.arange(-6, 7.0) ** 2) / 8.0)
        self.register_buffer("kernel", ((g[:, None] * g[None]) / g.sum() ** 2)[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(1 - x.mean(1, keepdim=True), self.kernel, padding=6)


def localizer(**kw) -> Localizer:
    return Localizer(DarkBlobs(), device="cpu", progress=False, **{**SETTINGS, **kw})


def read_points(path: Path) -> np.ndarray:
    with open(path, newline="") as f:
        return np.array([[float(r["x"]), float(r["y"])] for r in csv.DictReader(f)]).reshape(-1, 2)


def matched(a: np.ndarray, b: np.ndarray, radius: float) -> int:
    if len(a) == 0 or len(b) == 0:
        return 0
    d = cdist(a, b)
    r, c = linear_sum_assignment(d)
    return int((d[r, c] <= radius).sum())


@pytest.fixture(scope="module")
def tissue():
    """20x canvas (1024^2, 0.5 um/px) with 4 real CRC tiles on glass, its 40x version, tile positions."""
    data = pytest.importorskip("liteunet.data")
    try:
        samples = data.load_split("crc", "validation")[:4]
    except (OSError, ValueError, KeyError) as err:
        pytest.skip(f"needs the crc data set: {err}")
    tiles = [data.io.read_image(s.image_path)[..., :3] for s in samples]
    canvas = glass_slide(tiles, (1024, 1024), fraction=0.3)
    big = np.asarray(Image.fromarray(canvas).resize((2048, 2048), Image.BICUBIC))
    return canvas, big


@pytest.fixture(scope="module")
def slides(tissue, tmp_path_factory):
    canvas, big = tissue
    d = tmp_path_factory.mktemp("slides")
    return {
        "svs40": write_slide(d / "s40.svs", big, 0.25),
        "tif20": write_slide(d / "t20.tiff", canvas, 0.5),
        "ome40": write_slide(d / "o40.ome.tiff", big, 0.25),
    }


def test_mpp_from_metadata():
    assert tiff_mpp({}, "Aperio Image Library |AppMag = 40|MPP = 0.2500") == 0.25
    assert tiff_mpp({}, '<Pixels PhysicalSizeX="0.5" PhysicalSizeXUnit="µm"') == 0.5
    assert tiff_mpp({"XResolution": (40000, 1), "ResolutionUnit": "CENTIMETER"}) == 0.25
    assert tiff_mpp({"XResolution": (1, 1), "ResolutionUnit": 2}) is None


def test_every_format_opens_with_its_mpp_and_levels(slides, tissue):
    canvas, big = tissue
    for key, path in slides.items():
        with open_slide(path) as slide:
            assert slide.mpp == (0.25 if "40" in key else 0.5), key
            image = big if "40" in key else canvas
            assert slide.level_shapes[0] == image.shape[:2]
            assert np.array_equal(slide.read(0, 100, 300, 200, 456), image[100:300, 200:456])
            assert len(slide.level_shapes) >= 2, (key, slide.backend)


def test_level_closest_to_the_model_scale(slides):
    with open_slide(slides["svs40"]) as slide:
        plan = plan_scale(slide, model_mpp=0.5)
        assert plan["level"] == 1 and plan["factor"] == 1.0 and plan["shape"] == (1024, 1024)
        assert plan_scale(slide, model_mpp=0.25)["level"] == 0
        assert plan_scale(slide, None, scale=0.5)["level"] == 1
        with pytest.raises(ValueError, match="--model-mpp"):
            plan_scale(slide, model_mpp=None)
        slide.mpp = None
        with pytest.raises(ValueError, match="does not record its microns per pixel"):
            plan_scale(slide, model_mpp=0.5)


def test_tissue_mask_finds_the_tiles(tissue):
    canvas, _ = tissue
    mask = tissue_mask(canvas)
    truth = (np.abs(canvas.astype(int) - (242, 241, 238)).max(axis=2) > 10)
    assert 0.15 < mask.mean() < 0.35
    assert (mask == truth).mean() > 0.95


def test_slide_points_equal_tiles_alone_and_40x_equals_20x(slides, tissue, tmp_path):
    canvas, _ = tissue
    loc = localizer()
    out = {k: localize_slide(p, tmp_path, loc, model_mpp=0.5) for k, p in slides.items()}
    assert all(r["status"] == "ok" for r in out.values())
    assert out["svs40"]["tiles_run"] < out["svs40"]["tiles"]  # glass is skipped
    pts = {k: read_points(tmp_path / f"{Path(p).name.split('.')[0]}.csv") for k, p in slides.items()}
    # No duplicates at seams.
    for p in pts.values():
        d = cdist(p, p) + np.eye(len(p)) * 99
        assert len(p) > 100 and d.min() > SETTINGS["min_distance"] / 2
    # The 20x slide's points = the canvas localized alone as one image (within 1 px).
    whole = loc([canvas])[0].xy
    assert matched(pts["tif20"], whole, 1.0) >= 0.98 * len(whole)
    # 40x slides (read at level 1) give the same cells, in level-0 (40x) pixels.
    for key in ("svs40", "ome40"):
        assert matched(pts[key] / 2, pts["tif20"], 1.0) >= 0.9 * len(pts["tif20"]), key
    # GeoJSON is valid and holds the same points, shifted to QuPath's corner origin.
    fc = json.loads((tmp_path / "s40.geojson").read_text())
    xy = np.array([f["geometry"]["coordinates"] for f in fc["features"]]) - 0.5
    assert np.allclose(xy, pts["svs40"], atol=0.006)


class BrightBlobs(DarkBlobs):
    """DarkBlobs' map four times over: its peaks overshoot 1, as a trained model's may."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 4 * super().forward(x)


def test_slide_scores_are_confidences_at_most_one_as_localize_gives_them(slides, tissue, tmp_path):
    loc = Localizer(BrightBlobs(), device="cpu", progress=False, **SETTINGS)
    assert localize_slide(slides["tif20"], tmp_path, loc, model_mpp=0.5)["status"] == "ok"
    with open(tmp_path / "t20.csv", newline="") as f:
        scores = np.array([float(r["score"]) for r in csv.DictReader(f)])
    assert len(scores) > 100 and scores.max() == 1.0 and (scores == 1.0).sum() > 1
    assert loc([tissue[0]])[0].scores.max() == 1.0


def test_resume_after_kill_is_byte_identical(slides, tmp_path):
    whole = tmp_path / "whole"
    localize_slide(slides["svs40"], whole, localizer(tile_size=256, overlap=64), model_mpp=0.5)
    killed = tmp_path / "killed"
    script = (
        "import os, signal, sys; sys.path.insert(0, sys.argv[3]); import test_wsi as t; "
        "from liteunet.wsi import localize_slide\n"
        "def stop(done, total):\n"
        "    if done == 2: os.kill(os.getpid(), signal.SIGKILL)\n"
        "localize_slide(sys.argv[1], sys.argv[2], t.localizer(tile_size=256, overlap=64), model_mpp=0.5, callback=stop)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script, str(slides["svs40"]), str(killed), str(Path(__file__).parent)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (killed / "s40.progress.json").exists() and not (killed / "s40.csv").exists()
    assert json.loads((killed / "s40.progress.json").read_text())["state"]["band"] == 2
    row = localize_slide(slides["svs40"], killed, localizer(tile_size=256, overlap=64), model_mpp=0.5)
    assert row["status"] == "ok"
    for suffix in (".csv", ".geojson"):
        assert (killed / f"s40{suffix}").read_bytes() == (whole / f"s40{suffix}").read_bytes()
    # Finished: a third run skips it.
    assert localize_slide(slides["svs40"], killed, localizer(tile_size=256, overlap=64), model_mpp=0.5)["status"] == "done before"


def test_no_tissue_mask_runs_every_tile(slides, tmp_path):
    row = localize_slide(slides["tif20"], tmp_path, localizer(), model_mpp=0.5, tissue=False)
    assert row["tiles_run"] == row["tiles"] and not (tmp_path / "t20_tissue.png").exists()


def test_tiles_cover_the_tissue_box_not_the_glass_around_it():
    from liteunet.wsi.engine import tissue_extent

    mask = np.zeros((100, 200), bool)
    mask[30:41, 50:151] = True  # mask pixels; 2 model pixels per mask pixel
    assert tissue_extent(mask, 0.5, (200, 400), margin=8, align=16) == ((48, 90), (80, 310))
    assert tissue_extent(None, 0.5, (200, 400), 8, 16) == ((0, 200), (0, 400))
    assert tissue_extent(np.zeros_like(mask), 0.5, (200, 400), 8, 16) == ((0, 200), (0, 400))


@pytest.mark.parametrize("layout", ["section", "scattered"])
def test_tissue_mask_cost_bench_runs_fewer_tiles_for_the_same_cells(layout):
    # `liteunet bench --speed`'s slide: 30% tissue, as one section or scattered; the mask skips
    # glass, and with a translation-equivariant model finds exactly the cells of the unmasked run.
    from liteunet.bench.localize_cost import tissue_mask_cost

    out = tissue_mask_cost(DarkBlobs(), side=2048, layout=layout, precision="fp32")
    masked, full = out["with_mask"], out["without_mask"]
    assert masked["cells"] == full["cells"] > 100
    assert full["tiles_run"] == full["tiles"] == masked["tiles"]
    assert masked["tiles_run"] < (0.6 if layout == "section" else 0.8) * masked["tiles"]
    assert out["layout"] == layout and full["mp_s"] > 0


def test_cohort_reports_a_bad_slide_and_skips_finished_ones(slides, tmp_path):
    from liteunet import LocalizationOptions
    from liteunet.wsi import localize_slides

    folder = tmp_path / "slides"
    folder.mkdir()
    for p in slides.values():
        os.symlink(p, folder / Path(p).name)
    (folder / "broken.svs").write_bytes(b"not a slide")
    out = tmp_path / "out"
    opts = LocalizationOptions(device="cpu", progress=False, **SETTINGS)
    rows = localize_slides(folder, out, DarkBlobs(), options=opts, model_mpp=0.5, progress=False)
    status = {Path(r["image"]).name: r["status"] for r in rows}
    assert status == {"broken.svs": "failed", "o40.ome.tiff": "ok", "s40.svs": "ok", "t20.tiff": "ok"}
    summary = list(csv.DictReader(open(out / "summary.csv")))
    assert len(summary) == 4 and "tissue_fraction" in summary[0] and "no slide reader" in summary[0]["error"]
    again = localize_slides(folder, out, DarkBlobs(), options=opts, model_mpp=0.5, progress=False)
    assert sorted(r["status"] for r in again) == ["done before"] * 3 + ["failed"]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A small random Lite-UNet saved as a weights folder (fast)."""
    import timm

    import liteunet

    weights = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    timm.models.save_for_hf(liteunet.create_model("lite_unet", widths=(8, 8, 16, 16, 16)).eval(), weights,
                            model_args={"widths": [8, 8, 16, 16, 16]}, safe_serialization=True)
    return weights


def test_cli_slide_folder_on_a_dask_local_cluster(slides, tmp_path, capsys, tiny_weights):
    # The command: a folder of svs, tiff and ome.tiff slides, 2 Dask worker processes.
    pytest.importorskip("distributed")
    folder = tmp_path / "slides"
    folder.mkdir()
    for p in slides.values():
        os.symlink(p, folder / Path(p).name)
    weights = tiny_weights
    out, here = tmp_path / "out", tmp_path / "here"
    common = ["--model", str(weights), "--model-mpp", "0.5", "--device", "cpu", "--threshold", "0.5"]
    assert main(["localize", str(folder), "-o", str(here), "--wsi", *common]) == 0  # in this process
    # Each slide is 1024 x 1024 at the model's scale, its tissue ~500 px: --region-size 300 cuts
    # it into the 2 tile rows over its tissue, run as separate tasks on the 2 workers and merged.
    args = ["localize", str(folder), "-o", str(out), "--workers", "2", "--region-size", "300", *common]
    assert main(args) == 0, capsys.readouterr().err
    for stem in ("s40", "t20", "o40"):
        for suffix in (".csv", ".geojson", "_tissue.png"):
            assert (out / f"{stem}{suffix}").exists(), stem + suffix
        for suffix in (".csv", ".geojson"):  # the regions merged = the in-process run, byte for byte
            assert (out / f"{stem}{suffix}").read_bytes() == (here / f"{stem}{suffix}").read_bytes(), stem + suffix
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert sorted(r["status"] for r in rows) == ["ok"] * 3
    assert {int(r["level"]) for r in rows} == {0, 1}  # 40x slides read at level 1
    assert {int(r["regions"]) for r in rows} == {2}
    assert main(args) == 0  # again: every slide finished before, skipped
    assert "3 of 3 slide(s)" in capsys.readouterr().out


def test_no_level_at_the_model_scale_reads_the_closest_and_resamples(slides, tissue, tmp_path):
    # Slides of one level only: 40x (0.25 um/px) and 0.3 um/px (a scanner's odd 33x), for a
    # model at 0.5 um/px: level 0 is read and resampled (factor 0.5 and 0.6), and the cells are
    # those of the 20x slide. Measured on this canvas (160 cells at 20x): 159 and 158 matched
    # within 1 px of the 20x points (in 20x pixels), median distance 0.02 and 0.16 px.
    canvas, big = tissue
    loc = localizer()
    localize_slide(slides["tif20"], tmp_path, loc, model_mpp=0.5)
    ref_pts = read_points(tmp_path / "t20.csv")
    odd = np.asarray(Image.fromarray(canvas).resize((1707, 1707), Image.BICUBIC))
    for name, image, mpp, factor in (("only40", big, 0.25, 0.5), ("only30", odd, 0.3, 0.6)):
        path = write_slide(tmp_path / f"{name}.tiff", image, mpp, levels=1)
        with open_slide(path) as slide:
            assert len(slide.level_shapes) == 1
            plan = plan_scale(slide, model_mpp=0.5)
        assert plan["level"] == 0 and plan["factor"] == pytest.approx(factor) and plan["shape"] == (1024, 1024)
        row = localize_slide(path, tmp_path, loc, model_mpp=0.5)
        assert row["level"] == 0 and row["scale"] == pytest.approx(factor)
        pts = (read_points(tmp_path / f"{name}.csv") + 0.5) * (mpp / 0.5) - 0.5  # level-0 pixels -> 20x pixels
        assert abs(len(pts) - len(ref_pts)) <= 0.02 * len(ref_pts), name
        assert matched(pts, ref_pts, 1.0) >= 0.98 * len(ref_pts), name
        d = cdist(pts, ref_pts).min(axis=1)
        assert np.median(d) < 0.3, name


def test_slide_without_a_scale_is_an_error_naming_the_options(slides, tmp_path, capsys):
    # Weights that record no microns per pixel (as the bundled ones) and no --model-mpp / --scale:
    # the slide fails with a message that names the options; nothing is guessed.
    from liteunet.wsi import localize_slides

    rows = localize_slides([slides["tif20"]], tmp_path, DarkBlobs(), progress=False)
    assert rows[0]["status"] == "failed"
    for option in ("--model-mpp", "--scale"):
        assert option in rows[0]["error"]
    assert not (tmp_path / "t20.csv").exists()


def test_regions_merge_into_the_in_process_output_and_resume(slides, tmp_path):
    # A slide cut into regions of whole tile rows (here 3 regions of one band each), run one by
    # one and merged: the CSV and GeoJSON are those of one in-process run, byte for byte. An
    # interrupted merge resumes: only the regions after its checkpoint run again.
    from liteunet.wsi.regions import merge_regions, plan_regions, run_region

    loc = localizer(tile_size=256, overlap=64)
    localize_slide(slides["svs40"], tmp_path / "whole", loc, model_mpp=0.5)
    out = tmp_path / "regions"
    job, regions = plan_regions(slides["svs40"], out, loc, region_size=300, model_mpp=0.5)
    assert len(regions) == job["regions"] == len(job["rows"]) == 3  # the rows over the tissue
    for b0, b1 in regions:
        run_region(job, loc, b0, b1)

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        merge_regions(job, loc, regions, callback=stop)
    assert not (out / "s40.csv").exists()
    job, left = plan_regions(slides["svs40"], out, loc, region_size=300, model_mpp=0.5)
    assert left == regions[2:]
    assert all(run_region(job, loc, b0, b1)["cached"] for b0, b1 in left)
    row = merge_regions(job, loc, left)
    assert row["status"] == "ok" and row["regions"] == 3 and not (out / "s40.regions").exists()
    for suffix in (".csv", ".geojson"):
        assert (out / f"s40{suffix}").read_bytes() == (tmp_path / "whole" / f"s40{suffix}").read_bytes()


def test_progress_with_time_left_per_slide_and_for_the_batch(slides, tmp_path, capsys):
    from liteunet import LocalizationOptions
    from liteunet.wsi import localize_slides

    seen = []
    opts = LocalizationOptions(device="cpu", **SETTINGS)
    rows = localize_slides([slides["tif20"], slides["svs40"]], tmp_path, DarkBlobs(), options=opts, model_mpp=0.5,
                           on_progress=lambda *a: seen.append(a))
    err = capsys.readouterr().err
    for row in rows:
        stem = Path(row["image"]).name.split(".")[0]
        mine = [s for s in seen if s[0] == stem]
        assert mine[-1] == (stem, row["tiles_run"], row["tiles_run"]) and len(mine) > 1
        assert f"{stem}:" in err  # its tile bar
    assert "slides: 100%" in err and "2/2" in err
    assert "<" in err and "tile/s" in err  # elapsed<left, and the rate the time left comes from


def test_huge_slide_split_into_regions_on_dask_with_progress(slides, tmp_path):
    # Slides (1024 x 1024 at the model's scale) cut into regions of one tile row, run as Dask
    # tasks on 2 workers and merged: the outputs of an in-process run, byte for byte; the
    # workers' progress reaches the client. (Thread workers, to start fast; the command-line
    # test below runs regions on 2 worker processes.)
    distributed = pytest.importorskip("distributed")

    from liteunet import LocalizationOptions
    from liteunet.wsi import localize_slides

    opts = LocalizationOptions(device="cpu", tile_size=256, overlap=64, **SETTINGS)
    inputs = [slides["svs40"], slides["tif20"]]
    here = localize_slides(inputs, tmp_path / "here", DarkBlobs(), options=opts, model_mpp=0.5, progress=False)
    seen = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            there = localize_slides(inputs, tmp_path / "dask", DarkBlobs(), options=opts, client=client,
                                    region_size=300, model_mpp=0.5, progress=False,
                                    on_progress=lambda *a: seen.append(a))
    assert [r["status"] for r in there] == ["ok", "ok"] and [r["regions"] for r in there] == [3, 3]
    assert [r["regions"] for r in here] == [1, 1]
    for stem in ("s40", "t20"):
        for suffix in (".csv", ".geojson"):
            assert (tmp_path / "dask" / f"{stem}{suffix}").read_bytes() == (tmp_path / "here" / f"{stem}{suffix}").read_bytes()
        assert not (tmp_path / "dask" / f"{stem}.regions").exists()
    assert {s[0] for s in seen} == {"s40", "t20"}


def test_one_writer_per_slide(slides, tmp_path):
    # A second writer of a slide's outputs (a worker of a killed Dask run still finishing it)
    # waits for the first; when that one finished the slide, the second finds it done.
    from liteunet.wsi.stream import PointStream

    fcntl = pytest.importorskip("fcntl")
    holder = open(tmp_path / "t20.lock", "a+b")
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
    stream = PointStream(tmp_path, "t20", ("cell",), ("csv",), {})
    with pytest.raises(TimeoutError, match="another process is writing"):
        stream.lock(wait=0.3)
    holder.close()
    loc = localizer()
    first = localize_slide(slides["tif20"], tmp_path, loc, model_mpp=0.5)
    assert first["status"] == "ok" and not (tmp_path / "t20.lock").exists()


def test_cli_scheduler_address_of_a_running_cluster(slides, tmp_path, capsys, tiny_weights):
    # --scheduler ADDRESS: the command submits to a cluster started elsewhere (here thread
    # workers of this process, reached over TCP as a SLURM or Kubernetes cluster would be).
    distributed = pytest.importorskip("distributed")
    folder = tmp_path / "slides"
    folder.mkdir()
    os.symlink(slides["tif20"], folder / "t20.tiff")
    (folder / "broken.svs").write_bytes(b"not a slide")
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        args = ["localize", str(folder), "-o", str(out), "--scheduler", cluster.scheduler_address,
                "--model-mpp", "0.5", "--device", "cpu", "--model", str(tiny_weights), "--threshold", "0.5"]
        assert main(args) == 1  # the broken slide failed, the other is done
    err = capsys.readouterr().err
    assert "broken.svs" in err and "no slide reader" in err
    rows = {Path(r["image"]).name: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows["t20.tiff"]["status"] == "ok" and rows["broken.svs"]["status"] == "failed"
    assert (out / "t20.csv").exists() and (out / "broken.error.txt").exists()


def _dots(side: int, pitch: int) -> np.ndarray:
    """White glass with a dark dot every ``pitch`` pixels: ``(side / pitch)^2`` cells."""
    canvas = np.full((side, side, 3), 240, np.uint8)
    yy, xx = np.mgrid[:side, :side] % pitch
    canvas[(np.abs(yy - pitch // 2) <= 2) & (np.abs(xx - pitch // 2) <= 2)] = 40
    return canvas


@pytest.mark.slow
def test_memory_stays_bounded_as_the_cells_stream_to_disk(tmp_path):
    # 147,456 cells on a 3072 x 3072 slide, 7 bands of tiles: the memory in use after each band
    # stays flat (one band of tiles and the points waiting at its seam are held, the rest is on
    # disk). Holding the slide's points would grow it by over 3 MB (x, y, score and label of
    # about 21,000 cells a band).
    import tracemalloc

    side = 3072
    path = write_slide(tmp_path / "dots.tiff", _dots(side, 8), 0.5, compression=None)
    loc = localizer(tile_size=512, overlap=128, threshold=0.4, min_distance=2)
    in_use = []
    tracemalloc.start()
    try:
        row = localize_slide(path, tmp_path / "out", loc, model_mpp=0.5, tissue=False, formats=("csv",),
                             callback=lambda done, total: in_use.append(tracemalloc.get_traced_memory()[0] / 2**20))
    finally:
        tracemalloc.stop()
    assert row["count"] == (side // 8) ** 2 and len(in_use) == 8
    assert max(in_use) - in_use[0] < 1.0, in_use
