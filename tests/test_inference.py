"""Inference forms: fused, channels-last, bf16, compiled, ONNX (fp32 and int8), precision choice."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

import liteunet
from liteunet.data.io import match_channels, normalize_image, read_image
from liteunet.evaluate import LocalizationSettings, precision_guard
from liteunet.inference import FloatInputConv, InferenceModel, OnnxModel, export_onnx, prepare_model, quantize_onnx
from liteunet.localization import Localizer
from liteunet.localization.options import resolve_precision as _resolve_precision
from liteunet.models._fuse import (
    ConcatFreeGhostCBAM,
    StackedGradientAggregation,
    reparameterize_model,
    stack_gradient_aggregation,
    upsample_conv_to_transposed,
)
from liteunet.samples import sample_path

TINY = dict(widths=(8, 8, 16, 16, 16))


def _sample_batch(size: int = 96) -> torch.Tensor:
    image = match_channels(normalize_image(read_image(sample_path())), 3)[:size, :size]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


@pytest.fixture(scope="module")
def trained():
    """The bundled default weights: real BatchNorm statistics and difference-conv weights."""
    return liteunet.create_model("lite_unet", pretrained=True).eval()


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("name", ["lite_unet", "lite_unet_ghost_cbam", "lite_unet_ghost_cbam_ga", "unet"])
def test_fuse_matches_random_weights(name):
    torch.manual_seed(0)
    model = liteunet.create_model(name, widths=(8, 16, 16, 32, 32) if name == "unet" else TINY["widths"])
    # Random, non-trivial BatchNorm statistics, as after training.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.rand(2, 3, 75, 90)
    with torch.no_grad():
        assert _rel_err(liteunet.fuse(model)(x), model(x)) < 1e-4


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("size", [(1, 1), (5, 8), (13, 6)])
def test_upsample_conv_as_transposed_conv_is_exact(bias, size):
    """Eq.: conv3x3(nearest_2x(x)) == conv_transpose(x, summed taps, stride 2), any size."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(5, 4, 3, padding=1, bias=bias).double()
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    expected = conv(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
    transposed = upsample_conv_to_transposed(conv)
    assert transposed.stride == (2, 2) and transposed.kernel_size == (4, 4)
    torch.testing.assert_close(transposed(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "conv",
    [
        torch.nn.Conv2d(4, 4, 3, padding=1, stride=2),
        torch.nn.Conv2d(4, 4, 3, padding=1, groups=2),
        torch.nn.Conv2d(4, 4, 5, padding=2),
        torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
    ],
)
def test_upsample_conv_rewrite_refuses_other_convs(conv):
    with pytest.raises(ValueError, match="3x3, stride-1, padding-1"):
        upsample_conv_to_transposed(conv)
    upsample = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2, mode="nearest"), conv)
    assert isinstance(reparameterize_model(upsample), torch.nn.Sequential)  # left as it was


def test_fuse_turns_every_lite_unet_upsampling_step_into_a_transposed_conv(trained):
    fused = liteunet.fuse(trained)
    assert [type(up).__name__ for up in fused.up] == ["TransposedUpConv"] * 4
    assert not any(isinstance(m, torch.nn.Upsample) for m in fused.modules())
    bilinear = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2, mode="bilinear"), torch.nn.Conv2d(2, 2, 3, padding=1))
    assert isinstance(reparameterize_model(bilinear)[0], torch.nn.Upsample)  # only nearest is exact


@pytest.mark.parametrize("fold", [False, True])
def test_concat_free_block_matches_the_block_on_the_concatenation(fold):
    torch.manual_seed(0)
    block = liteunet.layers.GhostCBAM(12, 7)  # odd width: the ghost output is trimmed
    for module in block.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    block = reparameterize_model(block.eval()) if fold else block.eval()
    split = ConcatFreeGhostCBAM(block, skip_chans=5)
    skip, x = torch.rand(2, 5, 17, 20, dtype=torch.float64), torch.rand(2, 7, 17, 20, dtype=torch.float64)
    inputs = [skip, x]
    with torch.no_grad():
        out = split.double()(inputs)
        torch.testing.assert_close(out, block.double()(torch.cat([skip, x], 1)), rtol=1e-10, atol=1e-10)
    assert inputs == []  # emptied, so the inputs can be freed inside the block


def test_concat_free_block_refuses_a_non_1x1_first_conv():
    with pytest.raises(ValueError, match="1x1"):
        ConcatFreeGhostCBAM(liteunet.layers.GhostCBAM(8, 8), skip_chans=8)  # no input channels left
    block = liteunet.layers.GhostCBAM(8, 8)
    block.ghost[0].primary.conv = torch.nn.Conv2d(8, 4, 3, padding=1, bias=False)
    with pytest.raises(ValueError, match="1x1"):
        ConcatFreeGhostCBAM(block, skip_chans=4)


def test_fused_lite_unet_never_concatenates_skip_and_up_sampled_maps(trained):
    """The decoders' concatenations (2C channels at each scale) are gone from the fused model."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CatWidths(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.widths: list[tuple[int, int]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten.cat.default:
                self.widths.append(tuple(out.shape[1:3]))
            return out

    fused = liteunet.fuse(trained)
    assert [type(block).__name__ for block in fused.decoder] == ["ConcatFreeGhostCBAM"] * 4
    decoder_cats = {(2 * w, 64 >> k) for k, w in enumerate(trained.widths[:4])}  # (channels, height)
    for model, expected in [(trained, decoder_cats), (fused, set())]:
        mode = CatWidths()
        with torch.no_grad(), mode:
            model(torch.rand(1, 3, 64, 64))
        assert decoder_cats & set(mode.widths) == expected


def test_reparameterize_can_keep_the_concatenation_for_export(trained):
    kept = trained.reparameterize(split_decoder=False)
    assert all(isinstance(block, liteunet.layers.GhostCBAM) for block in kept.decoder)
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        assert _rel_err(kept(x), trained(x)) < 1e-4


@pytest.mark.parametrize("depths", [(1, 2, 3, 4), (2, 1), (3,)])
def test_stacked_gradient_aggregation_matches_the_branches(depths):
    torch.manual_seed(0)
    ga = liteunet.layers.GradientAggregation(3, 12, depths=depths)
    for module in ga.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    folded = reparameterize_model(ga.eval())
    stacked = stack_gradient_aggregation(folded)
    assert sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in stacked) == max(depths)
    x = torch.rand(2, 3, 19, 23, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(stacked.double()(x), folded.double()(x), rtol=1e-10, atol=1e-10)


def test_stacking_refuses_unfolded_or_non_relu_gradient_aggregation():
    with pytest.raises(ValueError, match="run fuse first"):
        stack_gradient_aggregation(liteunet.layers.GradientAggregation(3, 8).eval())
    silu = reparameterize_model(liteunet.layers.GradientAggregation(3, 8, act_layer=torch.nn.SiLU).eval())
    with pytest.raises(ValueError, match="ReLU"):  # identity pass-through is exact only for ReLU
        stack_gradient_aggregation(silu)


def test_only_compiled_bf16_on_cpu_stacks_the_branches(trained):
    def stacked(runner):
        inner = getattr(runner, "_orig_mod", runner)
        return any(isinstance(m, StackedGradientAggregation) for m in inner.modules())

    assert stacked(prepare_model(trained, "bf16", compile=True))
    assert not stacked(prepare_model(trained, "bf16"))
    assert not stacked(prepare_model(trained, "fp32", compile=True))


def test_bf16_keeps_the_convs_that_read_the_image_in_float32(trained, monkeypatch):
    runner = prepare_model(trained, "bf16")
    readers = [name for name, m in runner.named_modules() if isinstance(m, FloatInputConv)]
    assert readers == [f"model.encoder.0.branches.{i}.0.conv" for i in range(4)]  # GA's difference convs
    assert runner.input_dtype == torch.float32 and runner.model.head.weight.dtype == torch.bfloat16
    # Their weights are the float32 ones, not rounded to bf16 and back.
    reference = liteunet.fuse(trained)
    for name in readers:
        kept = runner.get_submodule(name).conv.weight
        exact = reference.get_submodule(name.removeprefix("model.")).weight
        assert kept.dtype == torch.float32 and torch.equal(kept, exact)
        assert not torch.equal(kept, exact.bfloat16().float())
    assert not any(isinstance(m, FloatInputConv) for m in prepare_model(trained, "fp32").modules())
    monkeypatch.setattr("liteunet.inference.fused._image_readers", lambda model: [])
    all_bf16 = prepare_model(trained, "bf16")
    assert all_bf16.input_dtype == torch.bfloat16
    # The point of it, on a real image: what the difference convs make of the image, and the
    # location map, are closer to float32 (the map's error 8-41% lower on the bundled sample, crop and
    # whole, with each zoo tag's weights of session 40; FloatInputConv's docstring has validation sets).
    x = _sample_batch(256)
    exact = _outputs_of(reference, [name.removeprefix("model.") for name in readers], x)
    for kept, rounded, want in zip(_outputs_of(runner, readers, x), _outputs_of(all_bf16, readers, x), exact):
        assert (kept.float() - want).abs().mean() < (rounded.float() - want).abs().mean()
    with torch.inference_mode():
        exact_map = reference(x)
        assert (runner(x) - exact_map).abs().mean() < 0.9 * (all_bf16(x) - exact_map).abs().mean()


def _outputs_of(model: torch.nn.Module, names: list[str], x: torch.Tensor) -> list[torch.Tensor]:
    """What each submodule in ``names`` outputs when ``model`` runs once on ``x``."""
    found: dict[str, torch.Tensor] = {}
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, a, out, n=n: found.__setitem__(n, out)) for n in names]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return [found[n] for n in names]


def test_image_readers_must_all_be_convs():
    class ReluFirst(torch.nn.Module):  # the image itself goes through a ReLU: no float-input conv
        def __init__(self):
            super().__init__()
            self.act, self.conv = torch.nn.ReLU(), torch.nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(x) + self.act(x).sum(1, keepdim=True)

    runner = InferenceModel(ReluFirst(), torch.bfloat16)
    assert runner.input_dtype == torch.bfloat16
    assert runner(torch.rand(1, 3, 20, 20)).dtype == torch.float32


def test_fuse_matches_trained_weights_and_leaves_no_batchnorm(trained):
    fused = liteunet.fuse(trained)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, liteunet.layers.CDConv2d)) for m in fused.modules())
    x = _sample_batch()
    with torch.no_grad():
        assert _rel_err(fused(x), trained(x)) < 1e-4
    assert any(isinstance(m, liteunet.layers.CDConv2d) for m in trained.modules())  # original untouched


def test_prepare_model_channels_last_fp32_matches(trained):
    runner = prepare_model(trained, "fp32")
    assert isinstance(runner, InferenceModel) and runner.memory_format == torch.channels_last
    x = _sample_batch()
    with torch.no_grad():
        out = runner(x)
        assert out.dtype == torch.float32 and out.is_contiguous() and out.shape == (1, 1, 96, 96)
        assert _rel_err(out, trained(x)) < 1e-4


def test_prepare_model_bf16_is_close_and_float32_out(trained):
    runner = prepare_model(trained, "bf16")
    x = _sample_batch()
    with torch.no_grad():
        out, ref = runner(x), trained(x)
    assert out.dtype == torch.float32
    assert float((out - ref).abs().max()) < 0.05  # bf16 keeps ~3 significant digits
    assert not torch.equal(out, ref)  # it really ran in bf16


def test_prepare_model_rejects_bad_precisions(trained):
    with pytest.raises(ValueError, match="int8 runs through ONNX Runtime"):
        prepare_model(trained, "int8")
    with pytest.raises(ValueError, match="fp16 is for CUDA"):
        prepare_model(trained, "fp16", device="cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        prepare_model(trained, "fp8")


@pytest.mark.slow
def test_prepare_model_compile_keeps_the_model_contract():
    # A small stand-in: compiling all of Lite-UNet takes minutes on 2 cores (liteunet bench times it).
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)).eval()
    model.in_chans, model.num_classes = 3, 1
    runner = prepare_model(model, "fp32", compile=True, fused=False)
    assert runner.in_chans == 3 and runner.num_classes == 1
    # What was compiled stays reachable (liteunet bench counts its multiply-adds without compiling).
    assert isinstance(runner._orig_mod, InferenceModel)
    x = torch.rand(1, 3, 32, 48)
    with torch.no_grad():
        assert _rel_err(runner(x), model(x)) < 1e-5
    # Frozen weights are constants of the graph; outside no_grad the model still runs.
    with torch.inference_mode():
        assert _rel_err(runner(x), model(x)) < 1e-5
    assert _rel_err(runner(x).detach(), model(x).detach()) < 1e-5
    # Freezing really happened: the no_grad graph keeps the weights it was compiled with, while
    # the grad-mode graph (not frozen) reads the parameters as inputs.
    with torch.no_grad():
        before = runner(x).clone()
        for parameter in runner.parameters():
            parameter.add_(1.0)
        assert torch.equal(runner(x), before)
    assert not torch.allclose(runner(x).detach(), before)


# --- precision choice -------------------------------------------------------------------------------


def test_auto_precision_is_fp32_without_a_guard_record(monkeypatch):
    model = liteunet.create_model("lite_unet", **TINY)
    monkeypatch.setattr("liteunet.localization.options.cpu_has_native_bf16", lambda: True)
    assert _resolve_precision("auto", torch.device("cpu"), model) == "fp32"


@pytest.mark.parametrize("native, passed, expected", [(True, True, "bf16"), (True, False, "fp32"), (False, True, "fp32")])
def test_auto_precision_follows_the_guard_and_the_cpu(monkeypatch, native, passed, expected):
    model = liteunet.create_model("lite_unet", **TINY)
    model.pretrained_cfg = {"inference": {"precision_guard": {"bf16": {"passed": passed}}}}
    monkeypatch.setattr("liteunet.localization.options.cpu_has_native_bf16", lambda: native)
    assert _resolve_precision("auto", torch.device("cpu"), model) == expected


def test_auto_precision_with_tta_follows_the_guard_measured_with_it(monkeypatch):
    model = liteunet.create_model("lite_unet", **TINY)
    model.pretrained_cfg = {"inference": {
        "precision_guard": {"bf16": {"passed": True}},
        "precision_guard_tta": {"d4": {"bf16": {"passed": False}}},
    }}
    monkeypatch.setattr("liteunet.localization.options.cpu_has_native_bf16", lambda: True)
    cpu = torch.device("cpu")
    assert _resolve_precision("auto", cpu, model) == "bf16"
    assert _resolve_precision("auto", cpu, model, "d4") == "fp32"
    assert _resolve_precision("auto", cpu, model, "flips") == "bf16"  # not measured with flips: the plain guard


def test_auto_precision_when_compiling_follows_the_compiled_guard(monkeypatch):
    model = liteunet.create_model("lite_unet", **TINY)
    model.pretrained_cfg = {"inference": {"precision_guard": {"bf16": {"passed": True}, "bf16_compiled": {"passed": False}}}}
    monkeypatch.setattr("liteunet.localization.options.cpu_has_native_bf16", lambda: True)
    cpu = torch.device("cpu")
    assert _resolve_precision("auto", cpu, model) == "bf16"
    assert _resolve_precision("auto", cpu, model, compiled=True) == "fp32"
    model.pretrained_cfg = {"inference": {"precision_guard": {"bf16": {"passed": True}}}}
    assert _resolve_precision("auto", cpu, model, compiled=True) == "bf16"  # not measured compiled: the eager guard


def test_localize_precision_options():
    model = liteunet.create_model("lite_unet", **TINY)
    image = np.zeros((40, 40), np.uint8)
    with pytest.raises(ValueError, match="liteunet export onnx MODEL --int8"):
        liteunet.localize(image, model, precision="int8", progress=False)
    with pytest.raises(ValueError, match="precision must be"):
        liteunet.localize(image, model, precision="fp64", progress=False)
    with pytest.warns(RuntimeWarning, match="bf16 has not been checked"):
        (res,) = liteunet.localize(image, model, precision="bf16", progress=False)
    assert res.settings["precision"] == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (res,) = liteunet.localize(image, model, precision="fp32", progress=False)
    assert res.settings["precision"] == "fp32"


def test_explicit_precision_warns_when_its_recorded_guard_failed():
    model = liteunet.create_model("lite_unet", **TINY)
    model.pretrained_cfg = {"inference": {
        "precision_guard": {"bf16": {"passed": True, "max_abs_diff": 0.2}, "bf16_compiled": {"passed": False, "max_abs_diff": 0.71, "tolerance": 0.5}},
        "precision_guard_tta": {"d4": {"bf16": {"passed": False, "max_abs_diff": 0.58, "tolerance": 0.5}}},
    }}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Localizer(model, precision="bf16", device="cpu")  # passed: no warning
    with pytest.warns(RuntimeWarning, match=r"bf16 with tta='d4' failed the precision guard .* by 0\.58 points"):
        Localizer(model, precision="bf16", tta="d4", device="cpu")
    # compiled, the compiled record decides: here it failed though the eager one passed
    with pytest.warns(RuntimeWarning, match=r"bf16 compiled failed .* by 0\.71 points"):
        Localizer(model, precision="bf16", compile=True, device="cpu")


def test_bundled_weights_auto_precision_matches_their_record(trained):
    from liteunet.hub import load_inference_checks
    from liteunet.inference import cpu_has_native_bf16

    record = load_inference_checks(trained).get("bf16", {})
    expected = "bf16" if cpu_has_native_bf16() and record.get("passed") else "fp32"
    assert _resolve_precision("auto", torch.device("cpu"), trained) == expected


# --- the F1 guard -----------------------------------------------------------------------------------


class _Scaled(torch.nn.Module):
    def __init__(self, model, factor):
        super().__init__()
        self.model, self.factor = model, factor
        self.in_chans, self.num_classes = model.in_chans, model.num_classes

    def forward(self, x):
        return self.model(x) * self.factor


def test_precision_guard_passes_identical_and_fails_broken_forms(tmp_path, trained):
    from PIL import Image

    from liteunet.data import Sample

    crop = _sample_batch(128)[0, 0].numpy()
    path = tmp_path / "crop.png"
    Image.fromarray(np.round(np.clip(crop, 0, 1) * 255).astype(np.uint8)).save(path)
    fused = liteunet.fuse(trained)
    with torch.no_grad():
        peaks = liteunet.points.find_peaks(fused(_sample_batch(128))[0], min_distance=4, threshold=0.2)
    assert len(peaks.xy) > 5
    sample = Sample(image_path=str(path), points=peaks.xy.astype(np.float64), labels=np.zeros(len(peaks.xy), np.int64), name="crop")
    settings = LocalizationSettings(threshold=0.2, min_distance=4)
    report = precision_guard(
        trained, {"same": fused, "blind": _Scaled(fused, 0.0)}, {"sample": [sample]}, settings, progress=False
    )
    assert report["same"]["passed"] and report["same"]["max_abs_diff"] < 0.5
    assert not report["blind"]["passed"] and report["blind"]["max_abs_diff"] > 50
    assert report["blind"]["per_dataset"]["sample"]["f1@10"] == 0.0


# --- ONNX -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory, trained):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    folder = tmp_path_factory.mktemp("onnx")
    fp32 = export_onnx(trained, folder / "multi.onnx")
    crops = [_sample_batch(128)[0].numpy()]
    int8 = quantize_onnx(fp32, folder / "multi.int8.onnx", crops)
    return fp32, int8


@pytest.mark.slow
def test_onnx_matches_pytorch_on_any_size_and_batch(onnx_files, trained):
    fp32, _ = onnx_files
    runner = OnnxModel(fp32)
    assert runner.in_chans == 3 and runner.num_classes == 1 and runner.precision == "fp32"
    for shape in ((1, 3, 96, 96), (2, 3, 75, 130), (1, 3, 17, 250)):
        x = torch.rand(shape)
        with torch.no_grad():
            ref = trained(x)
        out = runner(x)
        assert out.shape == ref.shape
        assert float((out - ref).abs().max()) < 1e-4


@pytest.mark.slow
def test_onnx_carries_the_localization_settings(onnx_files, trained):
    fp32, _ = onnx_files
    runner = OnnxModel(fp32)
    stored = liteunet.hub.load_localization_settings(trained)
    assert liteunet.hub.load_localization_settings(runner) == stored
    assert runner.size_divisor == trained.size_divisor == 16  # localize() aligns tiles to it


@pytest.mark.slow
def test_localize_with_onnx_fp32_and_int8(onnx_files):
    fp32, int8 = onnx_files
    image = read_image(sample_path())
    (torch_res,) = liteunet.localize(image, "lite_unet", precision="fp32", progress=False)
    (onnx_res,) = liteunet.localize(image, str(fp32), progress=False)
    assert onnx_res.settings["precision"] == "fp32"
    assert len(onnx_res) == len(torch_res)
    # Points come sorted by score; near-equal scores may swap order, so match them by position.
    distances = cdist(onnx_res.xy, torch_res.xy)
    assert distances.min(axis=0).max() < 0.01 and distances.min(axis=1).max() < 0.01
    (int8_res,) = liteunet.localize(image, str(int8), progress=False)
    assert int8_res.settings["precision"] == "int8"
    assert abs(len(int8_res) - len(torch_res)) <= 0.1 * len(torch_res)
    with pytest.raises(ValueError, match="int8 ONNX model"):
        liteunet.localize(image, str(int8), precision="bf16", progress=False)


def test_onnx_model_errors(tmp_path):
    pytest.importorskip("onnxruntime")
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        OnnxModel(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="bad.onnx: ONNX Runtime cannot load it"):
        OnnxModel(bad)


@pytest.mark.slow
def test_cli_export_onnx_fp32_and_int8(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from liteunet.cli import main

    out = tmp_path / "m.onnx"
    assert main(["export", "onnx", "lite_unet", "-o", str(out)]) == 0
    assert "fp32, dynamic" in capsys.readouterr().out and out.stat().st_size > 1e6
    out8 = tmp_path / "m.int8.onnx"
    assert main(["export", "onnx", "lite_unet", "-o", str(out8), "--int8", "--calibration", str(sample_path())]) == 0
    assert "int8, calibrated on 1 crops" in capsys.readouterr().out
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out8)).metadata_props}
    assert json.loads(meta["liteunet"])["precision"] == "int8"
