"""localize(): inputs of every kind, tiling equal to one big pass, settings, bad inputs, the CLI.

Models are tiny: a fixed Gaussian blur (a position-equivariant "model" whose location map has a
peak at each synthetic cell) and random-init Lite-UNets with small widths.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import liteunet
from liteunet import LocalizationResult, Localizer, localize
from liteunet.cli import main
from liteunet.layers.ghost_cbam import ChannelAttention

import liteunet.localization.inputs as inputs_module
import liteunet.localization.localizer as localizer_module
import liteunet.localization.tiling as tiling
TINY = (8, 8, 16, 16, 16)


class Blur(nn.Module):
    """A deterministic stand-in for a trained model: Gaussian blur of each input channel.

    Position-equivariant with a 6-px receptive radius, so tiles with a 16-px margin see
    everything one whole-image pass sees.
    """

    def __init__(self, in_chans: int = 1, sigma: float = 1.5) -> None:
        super().__init__()
        self.in_chans = self.num_classes = in_chans
        r = 6
        g = torch.exp(-(torch.arange(-r, r + 1.0) ** 2) / (2 * sigma**2))
        k = (g[:, None] * g[None, :]) / g.sum() ** 2
        self.register_buffer("kernel", k.expand(in_chans, 1, 2 * r + 1, 2 * r + 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, padding=self.kernel.shape[-1] // 2, groups=self.in_chans)


def cells_image(
    h: int, w: int, centres: np.ndarray, sigma: float = 2.0, chans: int = 0
) -> np.ndarray:
    """uint8 image with a Gaussian blob at each (x, y) centre; (H, W) or (H, W, chans)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w))
    for x, y in centres:
        img = np.maximum(img, np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)))
    img = (img * 255).round().astype(np.uint8)
    return np.repeat(img[..., None], chans, axis=2) if chans else img


def grid_centres(h: int, w: int, step: int = 11, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[6 : h - 6 : step, 6 : w - 6 : step]
    pts = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    return pts + rng.uniform(-1.5, 1.5, pts.shape)  # neighbours stay > 7 px apart


def matched(a: np.ndarray, b: np.ndarray, radius: float) -> tuple[int, float]:
    """Hungarian matches within ``radius`` and the largest matched distance."""
    if len(a) == 0 or len(b) == 0:
        return 0, 0.0
    d = cdist(a, b)
    r, c = linear_sum_assignment(d)
    ok = d[r, c] <= radius
    return int(ok.sum()), float(d[r, c][ok].max()) if ok.any() else 0.0


def local_lite_unet() -> nn.Module:
    """Random-init Lite-UNet without its two image-wide terms (channel attention, GCA)."""

    class Ones(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ones_like(x[:, :, :1, :1])

    torch.manual_seed(0)
    m = liteunet.create_model("lite_unet", widths=TINY)
    m.bottleneck = nn.Identity()
    for mod in list(m.modules()):
        if isinstance(getattr(mod, "channel", None), ChannelAttention):
            mod.channel = Ones()
    return m.eval()


KW = {"progress": False, "tile_size": 64, "overlap": 32}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return liteunet.create_model("lite_unet", widths=TINY).eval()


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory, tiny_model) -> Path:
    # What training writes: timm's save_for_hf plus the chosen settings in config.json.
    folder = tmp_path_factory.mktemp("weights") / "tiny"
    timm.models.save_for_hf(
        tiny_model, folder, model_args={"widths": list(TINY)}, safe_serialization=True
    )
    config = json.loads((folder / "config.json").read_text())
    config["localization"] = {"threshold": 0.3, "min_distance": 4, "sigma": 2.0}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# --- tiling = one big pass ------------------------------------------------------------------------


def test_tiles_give_the_points_of_one_big_pass():
    h, w = 150, 171
    centres = grid_centres(h, w)
    # Cells right on the core borders of tile 64 / overlap 32 (cores split at 48, 80, 112...).
    border = np.array([[47.5, 47.5], [80.0, 20.0], [111.6, 79.4], [48.4, 112.0], [79.5, 111.5]])
    centres = np.concatenate([centres[cdist(centres, border).min(1) > 8], border])
    img = cells_image(h, w, centres)
    model = Blur()
    one = localize(img, model, progress=False, threshold=0.2)[0]  # 150x171 < 1024: one pass
    tiled = localize(img, model, threshold=0.2, **KW)[0]
    assert one.count == tiled.count == len(centres)
    n, worst = matched(one.xy, tiled.xy, 1.0)
    assert n == one.count and worst < 1e-3
    n, worst = matched(centres, tiled.xy, 1.0)
    assert n == len(centres) and worst < 0.5


def test_convolutional_lite_unet_tiled_equals_one_pass():
    # Margin 128 >= the 124-px receptive radius and tile origins on the 16-px pooling grid:
    # exact for the convolutional path.
    model = local_lite_unet()
    img = (np.random.default_rng(1).random((300, 307, 3)) * 255).astype(np.uint8)
    with torch.no_grad():
        ref = model.reparameterize()(torch.from_numpy(img.transpose(2, 0, 1) / 255).float()[None])
    thr = float(np.quantile(ref.numpy(), 0.95))
    one = localize(img, model, progress=False, threshold=thr)[0]
    tiled = localize(img, model, progress=False, threshold=thr, tile_size=288, overlap=256)[0]
    assert one.count > 50
    assert tiled.count == one.count
    assert matched(one.xy, tiled.xy, 1.0) == (one.count, pytest.approx(0.0, abs=1e-2))


def test_full_lite_unet_tiled_close_to_one_pass(tiny_model):
    # Channel attention and GCA are image-wide: tiles cannot be exact, only close.
    img = (np.random.default_rng(2).random((200, 190, 3)) * 255).astype(np.uint8)
    one = localize(img, tiny_model, progress=False, threshold=-1e9)[0]
    tiled = localize(img, tiny_model, progress=False, threshold=-1e9, tile_size=128, overlap=64, context="tile")[0]
    n, _ = matched(one.xy, tiled.xy, 1.0)
    assert abs(tiled.count - one.count) <= 0.05 * one.count
    assert n >= 0.9 * one.count


def test_no_duplicates_across_tile_borders():
    img = cells_image(130, 130, grid_centres(130, 130, step=9, seed=3))
    res = localize(img, Blur(), threshold=0.2, **KW)[0]
    d = cdist(res.xy, res.xy) + np.eye(res.count) * 99
    assert d.min() > res.settings["min_distance"]


def test_axis_tiles_partition_and_align():
    for n in (1, 63, 64, 65, 100, 1000, 1027):
        tiles = tiling.axis_tiles(n, 64, 32)
        cores = [(c0, c1) for _, _, c0, c1 in tiles]
        assert cores[0][0] == 0 and cores[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(cores))
        for t0, t1, c0, c1 in tiles:
            assert t0 % 16 == 0 and t1 - t0 <= 64 and t0 <= c0 < c1 <= t1
            assert (c0 == 0 or c0 - t0 >= 16) and (c1 == n or t1 - c1 >= 16)
        # One shape per image: the last tile is moved back, short of a full tile by < 16 px.
        assert all(64 - 16 < t1 - t0 <= 64 for t0, t1, _, _ in tiles) or n <= 64


def test_every_tile_reaches_the_model_in_one_shape():
    # torch.compile compiles once per input shape; edge tiles used to make up to four.
    shapes = set()

    class Recording(Blur):
        def forward(self, x):
            shapes.add(tuple(x.shape))
            return super().forward(x)

    rng = np.random.default_rng(0)
    img = (rng.random((1000, 1100)) * 255).astype(np.uint8)
    res = localize(img, Recording(), tile_size=512, overlap=128, threshold=0.5, progress=False)[0]
    assert shapes == {(1, 1, 512, 512)} and res.image_size == (1000, 1100)


# --- inputs ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene():
    centres = np.array([[10.0, 12.0], [30.3, 25.6], [50.0, 40.0], [20.0, 50.0]])
    return centres, cells_image(64, 70, centres)


def test_every_input_kind_gives_the_same_points(scene, tmp_path):
    centres, img = scene
    model = Blur(in_chans=3)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img).save(tmp_path / "b.png")
    (tmp_path / "notes.txt").write_text("not an image, ignored in a folder")
    rgb = np.repeat(img[..., None], 3, 2)
    inputs = {
        "path": str(tmp_path / "a.png"),
        "pathlib": tmp_path / "a.png",
        "pil": Image.fromarray(img),
        "grey": img,
        "grey_hw1": img[..., None],
        "rgb": rgb,
        "rgba": np.concatenate([rgb, np.full_like(rgb[..., :1], 7)], 2),
        "tensor_chw": torch.from_numpy(rgb).permute(2, 0, 1),
        "tensor_hw": torch.from_numpy(img),
    }
    for kind, image in inputs.items():
        res = localize(image, model, progress=False, threshold=0.3)
        assert len(res) == 1, kind
        assert res[0].image_size == (64, 70), kind
        assert matched(centres, res[0].xy, 0.5)[0] == 4, kind
    batch = torch.from_numpy(np.stack([rgb, rgb])).permute(0, 3, 1, 2)
    folder = localize(tmp_path, model, progress=False, threshold=0.3)
    globbed = localize(str(tmp_path / "*.png"), model, progress=False, threshold=0.3)
    listed = localize([tmp_path / "a.png", img, batch], model, progress=False, threshold=0.3)
    assert [r.source for r in folder] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert [r.source for r in globbed] == [r.source for r in folder]
    assert [r.source for r in listed] == [
        str(tmp_path / "a.png"),
        "input[1]",
        "input[2][0]",
        "input[2][1]",
    ]
    assert all(r.count == 4 for r in folder + globbed + listed)


def test_uint16_and_float_are_percentile_normalized(scene):
    _, img = scene
    model = Blur()
    u16 = img.astype(np.uint16) * 200 + 1000
    res = localize(u16, model, progress=False, threshold=0.3)[0]
    manual = liteunet.data.normalize_image(u16)
    ref = localize(manual, model, progress=False, threshold=0.3, normalize="none")[0]
    np.testing.assert_allclose(res.xy, ref.xy, atol=1e-5)
    np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-5)
    flt = localize(img.astype(np.float32) * 3.5, model, progress=False, threshold=0.3)[0]
    np.testing.assert_allclose(flt.xy, ref.xy, atol=1e-3)
    # pmax=50 stretches the intensities: higher scores.
    hi = localize(u16, model, progress=False, threshold=0.3, percentiles=(0, 50))[0]
    assert hi.scores.max() > res.scores.max()


def test_model_channels_are_honoured(scene):
    centres, img = scene
    rgb = np.repeat(img[..., None], 3, 2)
    grey_model = localize(rgb, Blur(in_chans=1), progress=False, threshold=0.3)[0]  # RGB -> grey
    assert matched(centres, grey_model.xy, 0.5)[0] == 4
    with pytest.raises(ValueError, match="input\\[0\\].*2 channel"):
        localize(np.zeros((20, 20, 2), np.uint8), Blur(in_chans=3), progress=False)
    with pytest.raises(ValueError, match="in_chans=4"):
        localize(rgb, Blur(in_chans=4), progress=False)


def test_settings_default_to_the_weights_and_can_be_overridden(weights_folder, scene):
    _, img = scene
    rgb = np.repeat(img[..., None], 3, 2)
    res = localize(rgb, str(weights_folder), progress=False)[0]
    assert res.settings["threshold"] == 0.3 and res.settings["min_distance"] == 4
    res = localize(rgb, weights_folder, progress=False, threshold=0.7, min_distance=2)[0]
    assert res.settings["threshold"] == 0.7 and res.settings["min_distance"] == 2
    assert res.settings["model"] == str(weights_folder)
    assert (res.scores >= 0.7).all()
    # A module without stored settings gets the package defaults.
    assert localize(rgb, Blur(3), progress=False)[0].settings["threshold"] == 0.5


def test_scale_maps_points_back(scene):
    centres, _ = scene
    big = cells_image(128, 140, centres * 2, sigma=4.0)
    res = localize(big, Blur(), progress=False, threshold=0.3, scale=0.5)[0]
    assert res.image_size == (128, 140) and res.settings["scale"] == 0.5
    assert matched(centres * 2, res.xy, 1.5)[0] == 4
    with pytest.raises(ValueError, match="mpp"):
        localize(big, Blur(), progress=False, mpp=0.25)


def test_return_map_full_and_downsampled(scene):
    _, img = scene
    full = localize(img, Blur(), threshold=0.3, return_map=True, **KW)[0]
    with torch.no_grad():
        ref = Blur()(torch.from_numpy(img / 255.0).float()[None, None])[0].numpy()
    assert full.location_map.shape == (1, 64, 70)
    np.testing.assert_allclose(full.location_map, ref, atol=1e-5)
    pooled = localize(img, Blur(), threshold=0.3, return_map=4, **KW)[0]
    assert pooled.location_map.shape == (1, 16, 18) and pooled.map_scale == 0.25
    padded = np.pad(ref, ((0, 0), (0, 0), (0, 2)), constant_values=-np.inf)
    np.testing.assert_allclose(
        pooled.location_map, padded.reshape(1, 16, 4, 18, 4).max((2, 4)), atol=1e-5
    )


def test_deterministic_on_cpu(tiny_model):
    img = (np.random.default_rng(5).random((80, 90, 3)) * 255).astype(np.uint8)
    for options in ({**KW, "context": "tile"}, {"progress": False, "tile_size": 192, "overlap": 128}):
        a = localize(np.tile(img, (3, 3, 1)), tiny_model, threshold=-1e9, **options)[0]
        b = localize(np.tile(img, (3, 3, 1)), tiny_model, threshold=-1e9, **options)[0]
        assert a.count > 0
        np.testing.assert_array_equal(a.xy, b.xy)
        np.testing.assert_array_equal(a.scores, b.scores)


class TwoClass(nn.Module):
    """Red cells -> class 0 (positive), green cells -> class 1 (negative)."""

    in_chans, num_classes = 3, 2

    def __init__(self) -> None:
        super().__init__()
        self.blur = Blur(in_chans=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(x)[:, :2]


def test_two_class_counts_and_ki67_index():
    red = cells_image(60, 60, np.array([[10.0, 10.0], [40.0, 12.0], [25.0, 45.0]]))
    green = cells_image(60, 60, np.array([[12.0, 30.0]]))
    img = np.stack([red, green, np.zeros_like(red)], 2)
    res = localize(img, TwoClass(), progress=False, threshold=0.3)[0]
    assert res.label_names == ("positive", "negative")
    assert res.counts == {"positive": 3, "negative": 1}
    assert res.ki67_index == pytest.approx(0.75)
    assert localize(np.zeros_like(img), TwoClass(), progress=False)[0].ki67_index is None
    assert localize(red, Blur(), progress=False)[0].ki67_index is None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_in_reduced_precision(scene):
    _, img = scene
    cpu = localize(img, Blur(), progress=False, threshold=0.3, device="cpu")[0]
    gpu = localize(img, Blur(), progress=False, threshold=0.3, device="cuda")[0]
    assert gpu.settings["precision"] in ("bf16", "fp16")
    assert matched(cpu.xy, gpu.xy, 1.0)[0] == cpu.count == 4


def test_bad_arguments_raise_clearly(scene):
    _, img = scene
    with pytest.raises(ValueError, match="multiples of 16"):
        localize(img, Blur(), tile_size=100, progress=False)
    with pytest.raises(ValueError, match="smaller than tile_size"):
        localize(img, Blur(), tile_size=64, overlap=64, progress=False)
    with pytest.raises(ValueError, match="on_error"):
        localize(img, Blur(), on_error="ignore", progress=False)
    with pytest.raises(ValueError, match="precision must be"):
        localize(img, Blur(), precision="int4", progress=False)
    with pytest.raises(FileNotFoundError, match="weights folder or file not found"):
        localize(img, "no/such/folder", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            localize(img, Blur(), device="cuda", progress=False)


# --- bad inputs -----------------------------------------------------------------------------------


@pytest.fixture()
def bad_files(tmp_path, scene):
    _, img = scene
    Image.fromarray(img).save(tmp_path / "good.png")
    (tmp_path / "text.png").write_text("this is not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    return tmp_path


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("missing.png", FileNotFoundError, "not found"),
        ("text.png", ValueError, "not an image"),
        ("empty.png", ValueError, "empty"),
        ("truncated.png", ValueError, "truncated"),
    ],
)
def test_bad_files_raise_naming_the_file(bad_files, name, error, message):
    with pytest.raises(error, match=message) as info:
        localize(bad_files / name, Blur(), progress=False)
    assert name in str(info.value)


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        (np.zeros((0, 10), np.uint8), ValueError, "empty"),
        (np.full((20, 20), np.nan, np.float32), ValueError, "NaN"),
        (np.where(np.eye(20) > 0, np.inf, 0.0), ValueError, "NaN/infinite"),
        (np.zeros((20, 20), np.complex64), TypeError, "complex64"),
        (np.zeros((20, 20), object), TypeError, "object"),
        (np.zeros((2, 20, 20, 1), np.uint8), ValueError, "4-D"),
        (np.zeros((1, 20, 20, 1), np.uint8), ValueError, "4-D"),
        (torch.zeros(2, 20, 20, 3), ValueError, "channels-last"),
        (torch.zeros(20, 20, 3), ValueError, "channels-last"),
        (torch.zeros(20, 20, dtype=torch.complex64), TypeError, "complex"),
        (np.zeros((3, 20, 20), np.uint8), ValueError, "channels-first"),
        (np.zeros(20, np.uint8), ValueError, "expected \\(H, W\\)"),
        ("not-a-real-file.png", FileNotFoundError, "not found"),
        (12345, TypeError, "unsupported input type int"),
    ],
    ids=[
        "zero-size",
        "nan",
        "inf",
        "complex",
        "object",
        "4d",
        "4d-single",
        "tensor-bhwc",
        "tensor-hwc",
        "tensor-complex",
        "chw-numpy",
        "1d",
        "missing",
        "int",
    ],
)
def test_bad_arrays_raise_clearly(image, error, message):
    with pytest.raises(error, match=message) as info:
        localize(image, Blur(), progress=False)
    assert "input[0]" in str(info.value) or "not-a-real-file" in str(info.value)


def test_tiny_and_boolean_images_work():
    for img in (
        np.full((1, 1), 200, np.uint8),
        np.ones((1, 1, 3), np.float32),
        np.eye(5, dtype=bool),
    ):
        res = localize(img, Blur(in_chans=3), progress=False)[0]
        assert res.ok and res.image_size == img.shape[:2] and res.xy.shape[1] == 2
        assert res.count <= max(1, img.size)


def test_huge_requests_are_refused_before_allocating(monkeypatch):
    huge = np.broadcast_to(np.zeros((1, 1), np.uint8), (10**6, 10**6))  # a view: no memory
    with pytest.raises(ValueError, match="max_pixels"):
        localize(huge, Blur(), progress=False)
    # A 37 GiB map is refused on a 24 GiB machine; a 128 GiB one (the GPU machine) started on it.
    monkeypatch.setattr(inputs_module, "available_memory", lambda: 24 << 30)
    big = np.broadcast_to(np.zeros((1, 1), np.uint8), (10**5, 10**5))
    with pytest.raises(ValueError, match="location map.*GiB.*return_map=4"):
        localize(big, Blur(), progress=False, return_map=True, tile_size=64, overlap=32)


def test_skip_keeps_the_rest_of_the_batch(bad_files, scene):
    _, img = scene
    inputs = [
        bad_files / "good.png",
        bad_files / "missing.png",
        np.full((4, 4), np.nan),
        bad_files / "truncated.png",
        img,
    ]
    with pytest.warns(RuntimeWarning) as record:
        res = localize(inputs, Blur(), progress=False, threshold=0.3, on_error="skip")
    assert len(record) == 3 and "missing.png" in str(record[0].message)
    assert [r.ok for r in res] == [True, False, False, False, True]
    assert [r.count for r in res] == [4, 0, 0, 0, 4]
    assert "missing.png" in res[1].error and "NaN" in res[2].error and "truncated" in res[3].error
    assert isinstance(res[1], LocalizationResult) and res[1].xy.shape == (0, 2)
    with pytest.raises(FileNotFoundError):
        localize(inputs, Blur(), progress=False, on_error="raise")


def test_localizer_is_reusable(scene):
    _, img = scene
    loc = Localizer(Blur(), threshold=0.3, progress=False)
    assert loc(img)[0].count == loc([img, img])[1].count == 4


# --- command line ---------------------------------------------------------------------------------


def test_cli_writes_outputs_and_reports_bad_files(weights_folder, bad_files, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(
        [
            "localize",
            str(bad_files / "good.png"),
            str(bad_files / "text.png"),
            str(bad_files / "missing.png"),
            "-o",
            str(out),
            "--model",
            str(weights_folder),
            "--format",
            "csv,json,geojson",
            "--overlay",
            "--heatmap",
            "--tile-size",
            "64",
            "--overlap",
            "32",
            "--context",
            "tile",
            "--threshold",
            "-1000",
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "text.png" in err and "not an image" in err and "missing.png" in err
    for name in ("good.csv", "good.json", "good.geojson", "good_overlay.png", "good_heatmap.png"):
        assert (out / name).is_file(), name
    assert not (out / "text.csv").exists()
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "failed", "failed"]
    assert int(rows[0]["count"]) > 0
    points = json.loads((out / "good.json").read_text())
    assert points["count"] == int(rows[0]["count"]) == len(points["points"])
    assert Image.open(out / "good_overlay.png").size == (70, 64)


def test_cli_all_good_exits_zero(weights_folder, bad_files, tmp_path):
    rc = main(
        [
            "localize",
            str(bad_files / "good.png"),
            "-o",
            str(tmp_path / "o"),
            "--model",
            str(weights_folder),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0 and (tmp_path / "o" / "good.csv").is_file()
    assert (
        main(
            [
                "localize",
                str(bad_files / "good.png"),
                "-o",
                str(tmp_path / "o"),
                "--model",
                str(weights_folder),
                "--format",
                "xml",
            ]
        )
        == 1
    )


def test_default_tiles_fit_the_image():
    # A side slightly over one tile is not cut into two full tiles (issue: 640 px -> 4 x 512^2).
    for n in (513, 640, 1000, 1100, 2049, 5000):
        side = tiling.fit_tile(n, 512, 128)
        tiles = tiling.axis_tiles(n, side, 128)
        full = tiling.axis_tiles(n, 512, 128)
        assert side % 16 == 0 and side <= 512 and len(tiles) == len(full)
        cores = [(c0, c1) for _, _, c0, c1 in tiles]
        assert cores[0][0] == 0 and cores[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(cores))
        assert all((c0 == 0 or c0 - t0 >= 64) and (c1 == n or t1 - c1 >= 64) for t0, t1, c0, c1 in tiles)
    assert tiling.fit_tile(640, 512, 128) == 384 and tiling.fit_tile(300, 512, 128) == 300
    shapes = set()

    class Recording(Blur):
        def forward(self, x):
            shapes.add(tuple(x.shape))
            return super().forward(x)

    # Up to 1024 px an image is one pass; just above, tiles fitted to it (3 of 464, not 3 of 512).
    for side, expected in ((640, 640), (1100, 464)):
        shapes.clear()
        img = (np.random.default_rng(0).random((side, side)) * 255).astype(np.uint8)
        localize(img, Recording(), threshold=0.5, progress=False, device="cpu")
        assert shapes == {(1, 1, expected, expected)}, side
    assert tiling.tile_sides(1024, 1024, 512, 128) == (1024, 1024)
    assert tiling.tile_sides(1025, 100, 512, 128) == (432, 100)


def test_exact_context_runs_an_image_that_fits_in_one_pass(tiny_model, monkeypatch):
    # Issue 21 item 6: by default the points must not depend on how the image is cut, so an
    # image whose one pass fits in memory is not cut at all, even above 1024 px.
    shapes = []
    handle = tiny_model.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape[-2:])))
    img = (np.random.default_rng(4).random((1040, 1100, 3)) * 255).astype(np.uint8)
    try:
        localize(img, tiny_model, progress=False, device="cpu")
        assert shapes == [(1040, 1100)]
        shapes.clear()
        localize(img, tiny_model, progress=False, device="cpu", context="tile")
        assert len(shapes) == 9 and set(shapes) == {(432, 464)}
        # Too large for half the memory: tiles, with the whole image's statistics gathered first
        # (one pass per attention layer, each stopping after its layer).
        shapes.clear()
        monkeypatch.setattr(localizer_module, "available_memory", lambda: 1 << 20)
        res = localize(img, tiny_model, progress=False, device="cpu")[0]
        assert res.settings["context"] == "exact" and set(shapes) == {(432, 464)} and len(shapes) > 9 * 9
    finally:
        handle.remove()


def test_one_pass_budget_is_half_the_free_gpu_memory_on_cuda(tiny_model, monkeypatch):
    loc = Localizer(tiny_model, device="cpu")
    loc.device = torch.device("cuda")  # only the budget is asked: no GPU needed
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * 640 * 1024 * 1024, 80 << 30))
    assert loc.one_pass_fits(1024, 1024) and not loc.one_pass_fits(1040, 1040)
    loc.precision = "bf16"  # half the bytes per pixel
    assert loc.one_pass_fits(1440, 1440) and not loc.one_pass_fits(1456, 1456)


def test_exact_context_refuses_tiles_too_narrow_for_the_deep_features(tiny_model):
    with pytest.raises(ValueError, match=r"overlap \(64\) is too small for context='exact'.*context='tile'"):
        Localizer(tiny_model, tile_size=256, overlap=64, device="cpu")
    assert Localizer(tiny_model, tile_size=256, overlap=64, device="cpu", context="tile").overlap == 64
    # A model without image-wide terms has nothing to gather: any overlap is accepted.
    assert Localizer(Blur(), tile_size=64, overlap=32, device="cpu").overlap == 32


def test_nuclear_normalization_finds_stained_nuclei_on_glass_in_tiles_as_in_one_pass():
    h, w = 150, 171
    centres = grid_centres(h, w)
    blobs = cells_image(h, w, centres).astype(np.float64) / 255
    # Haematoxylin-blue nuclei on glass: each channel's transmitted light falls with the stain.
    stained = 240 * np.exp(-blobs[..., None] * np.array([0.9, 0.9, 0.35]))
    img = stained.round().astype(np.uint8)
    one = localize(img, Blur(), progress=False, threshold=0.2, normalize="nuclear")[0]
    tiled = localize(img, Blur(), threshold=0.2, normalize="nuclear", **KW)[0]
    assert one.count == tiled.count == len(centres)
    assert matched(one.xy, tiled.xy, 1.0) == (one.count, pytest.approx(0.0, abs=1e-3))
    assert matched(centres, one.xy, 1.0)[0] == len(centres)
