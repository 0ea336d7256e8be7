"""``liteunet bench``: runs every requested form side by side and writes what the docs include."""

from __future__ import annotations

import json

import pytest

from liteunet.bench import FORMS, peak_rss_mb, run_benchmark, to_markdown
from liteunet.cli import main


def test_peak_rss_follows_what_this_process_touches():
    import numpy as np

    # An earlier test's peak may sit above anything touched here: reset the high-water mark.
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError as err:
        pytest.skip(f"cannot reset this process's peak RSS: {err}")
    before = peak_rss_mb()
    block = np.ones(300 * 2**20, np.uint8)  # 300 MB, every page written
    after = peak_rss_mb()
    del block
    assert after - before >= 250, (before, after)


@pytest.mark.slow
def test_bench_command_writes_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main([
        "bench", "--size", "64", "--forms", "unet", "eager", "fused_cl", "bf16", "--repeats", "2",
        "--warmup", "1", "--threads", "1", "--no-memory", "--no-slide", "--localize-size", "160",
        "-o", str(out),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "paper U-Net baseline" in printed and "vs unet" in printed
    result = json.loads((out / "latest.json").read_text())
    rows = {row["form"]: row for row in result["rows"]}
    assert set(rows) == {"unet", "eager", "fused_cl", "bf16"}
    timed = [r for r in rows.values() if r["median_ms"] is not None]
    assert rows["unet"]["ratio_to_unet"] == 1.0
    for row in timed:
        assert len(row["times_ms"]) == 2 and row["median_ms"] > 0 and row["macs"] > 0
        assert row["first_call_s"] > 0
    # the U-Net baseline does 15x the work of Lite-UNet at any size
    assert rows["unet"]["macs"] > 10 * rows["eager"]["macs"]
    assert result["peaks_gflops"]["fp32"] > 0
    assert result["localize"]["model_s"] > 0 and result["localize"]["total_s"] >= result["localize"]["model_s"]
    # the zoo table reads the latency of the default form from the same file
    from liteunet.zoo import read_benchmarks

    records = read_benchmarks(out / "latest.json")
    assert {r["model"] for r in records} == {"lite_unet", "unet"}
    markdown = (out / "latest.md").read_text()
    assert markdown == to_markdown(result)
    assert "| form | ms / image | vs unet |" in markdown and "localize()" in markdown


def test_unknown_form_is_refused(capsys):
    assert main(["bench", "--forms", "fastest", "--no-slide", "--no-localize"]) == 1
    assert f"choose from {', '.join(FORMS)}" in capsys.readouterr().err


def test_a_form_that_cannot_run_here_is_reported_not_fatal(monkeypatch):
    monkeypatch.setattr("liteunet.bench.latency.form_unavailable", lambda form: "not here" if form == "fused" else "")
    result = run_benchmark(size=32, forms=("fused", "fused_cl"), repeats=1, warmup=0, threads=1, memory=False,
                           localize_side=None, slide_side=None, progress=False)
    rows = {row["form"]: row for row in result["rows"]}
    assert rows["fused"]["note"] == "not here" and rows["fused"]["median_ms"] is None
    assert rows["fused_cl"]["median_ms"] > 0
    assert "| lite_unet reparameterized (CD + BN folded), fp32 | not here |" in to_markdown(result)
    # with no --weights, the default weights localize() uses, named by their tag
    assert result["weights"] == "lite_unet.generalist"
    assert "(weights `lite_unet.generalist`)" in to_markdown(result)


def test_speed_by_size_reports_one_pass_up_to_1024_and_fitted_tiles_above():
    import torch.nn as nn

    from liteunet.bench.localize_cost import megapixels_by_size

    class Dim(nn.Module):
        """A 1x1 convolution: the timing path of a model at almost no cost."""

        in_chans = num_classes = 1

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return self.conv(x)

    out = megapixels_by_size(Dim(), (64, 1024, 1040), precision="fp32", repeats=1)
    assert out["device"] == "cpu" and out["precision"] == "fp32"
    assert [r["tile"] for r in out["rows"]] == [64, 1024, 432]  # 1040: 3 tiles of 432 along each side
    assert all(r["localize_mp_s"] > 0 and r["single_pass_mp_s"] > 0 and r["ratio"] > 0 for r in out["rows"])
    # No image-wide attention in this model: context "tile" cuts it the same way.
    assert [r["tile_context"] for r in out["rows"]] == [64, 1024, 432]
    assert all(r["tile_context_mp_s"] > 0 and r["tile_context_ratio"] > 0 for r in out["rows"])
    assert all(r["input_scaling_s"] > 0 and 0 < r["input_scaling_share"] < 1 for r in out["rows"])


def test_speed_by_size_times_auto_when_the_weights_store_a_scale_model(tmp_path):
    import numpy as np
    import timm

    import liteunet
    from liteunet.bench.localize_cost import megapixels_by_size
    from liteunet.inference import ScaleModel
    from liteunet.inference.scale_model import default_feature_layers

    widths = (8, 8, 16, 16, 16)
    model = liteunet.create_model("lite_unet", widths=widths).eval()
    timm.models.save_for_hf(model, tmp_path, model_args={"widths": list(widths)}, safe_serialization=True)
    config = json.loads((tmp_path / "config.json").read_text())
    scale_model = ScaleModel(tuple(default_feature_layers(model)), np.zeros(sum(widths) + widths[-1], np.float32), 0.0)
    config["localization"] = {"threshold": 0.5, "min_distance": 3, "scale_model": scale_model.to_config()}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (row,) = megapixels_by_size(str(tmp_path), (64,), precision="fp32", repeats=1)["rows"]
    assert row["auto_mp_s"] > 0 and row["auto_ratio"] > 0 and row["auto_no_search_ratio"] > 0


def test_speed_on_an_8bit_rgb_image_feeds_localize_three_8bit_channels(monkeypatch):
    import numpy as np

    from liteunet.bench import localize_cost
    from liteunet.data import read_image
    from liteunet.samples import sample_path

    image = localize_cost.demo_image(300, rgb8=True)
    original = read_image(sample_path())
    assert image.shape == (300, 300, 3) and image.dtype == np.uint8 and image.max() > 100
    assert np.array_equal(image[..., 0], image[..., 2])  # grey in three channels
    assert np.corrcoef(image[:200, :200, 0].ravel(), original[:200, :200].ravel())[0, 1] > 0.99
    seen = []
    real = localize_cost.Localizer.__call__
    monkeypatch.setattr(localize_cost.Localizer, "__call__", lambda self, images, **kw: (seen.append(images[0].dtype), real(self, images, **kw))[1])
    out = localize_cost.megapixels_by_size("lite_unet", (64,), precision="fp32", repeats=1, rgb8=True)
    assert out["image"] == "8-bit RGB" and set(seen) == {np.dtype(np.uint8)}
    assert out["normalize"] == "percentile"  # the default weights scale 8-bit images by percentiles too
