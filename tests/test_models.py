"""The zoo's models: registry, Fig. 2 layout, Table 2/5 sizes, any-size inputs, export forms."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torch.nn as nn

import liteunet
from liteunet import count_macs, count_params
from liteunet.layers import CDConv2d, GhostCBAM, GradientAggregation, GraphCorrelationAttention
from liteunet.models import LiteUNet, LocalizationModel, UNet
from liteunet.models.lite_unet import UpConv

MODELS = liteunet.list_models()

# Paper Table 2 / Table 5 (params in M, "GFLOPs" = G MACs at 3x512x512) and the tolerances of
# the foundation issue.
SIZE_TARGETS = {
    "unet": (34.53, 0.01, 262.0, 0.01),
    "lite_unet": (1.30, 0.05, 17.5, 0.10),
    "lite_unet_ghost_cbam": (1.25, 0.10, 16.8, 0.10),
    "lite_unet_ghost_cbam_ga": (1.25, 0.10, 16.8, 0.10),
}


def test_zoo_is_registered_in_timm():
    assert set(MODELS) == {"lite_unet", "lite_unet_ghost_cbam", "lite_unet_ghost_cbam_ga", "unet"}
    assert set(MODELS) <= set(timm.list_models())
    assert liteunet.list_models("lite_unet*") == ["lite_unet", "lite_unet_ghost_cbam", "lite_unet_ghost_cbam_ga"]
    tagged = timm.list_models("lite_unet*", include_tags=True)
    assert {"lite_unet.generalist", "lite_unet.multi", "lite_unet.crc", "lite_unet.ki67"} <= set(tagged)  # reserved weight tags


def test_every_model_has_a_paper_size_target():
    assert set(SIZE_TARGETS) == set(MODELS)


@pytest.mark.parametrize("name", sorted(SIZE_TARGETS))
def test_sizes_reproduce_paper_tables(name):
    params_m, p_tol, gmacs, m_tol = SIZE_TARGETS[name]
    model = liteunet.create_model(name)
    assert count_params(model) / 1e6 == pytest.approx(params_m, rel=p_tol)
    assert count_macs(model, (3, 512, 512)) / 1e9 == pytest.approx(gmacs, rel=m_tol)


def test_macs_counter_counts_multiply_accumulates():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(conv, (3, 10, 10)) == 3 * 8 * 9 * 100


def test_timm_and_liteunet_create_the_same_model():
    torch.manual_seed(0)
    a = timm.create_model("lite_unet", theta=0.4)
    torch.manual_seed(0)
    b = liteunet.create_model("lite_unet", theta=0.4)
    assert type(a) is type(b) is LiteUNet
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.pretrained_cfg["architecture"] == "lite_unet"
    tagged = timm.create_model("lite_unet.crc")
    assert tagged.pretrained_cfg["tag"] == "crc"


def test_lite_unet_layout_follows_fig2():
    model = liteunet.create_model("lite_unet", theta=0.2)
    assert isinstance(model.encoder[0], GradientAggregation)  # GA replaces the first encoder block
    assert all(isinstance(m, GhostCBAM) for m in model.encoder[1:])
    assert all(isinstance(m, GhostCBAM) for m in model.decoder)
    assert isinstance(model.bottleneck, GraphCorrelationAttention)  # end of the encoder
    assert len(model.up) == 4 and all(isinstance(m, UpConv) for m in model.up)
    for up in model.up:  # the up-sampling convs stay 3x3
        assert isinstance(up[0], nn.Upsample) and up[1].conv.kernel_size == (3, 3)
    assert {m.theta for m in model.modules() if isinstance(m, CDConv2d)} == {0.2}
    assert model.head.kernel_size == (1, 1)


def test_ablation_rows_differ_only_by_ga_and_gca():
    ghost = liteunet.create_model("lite_unet_ghost_cbam")
    ga = liteunet.create_model("lite_unet_ghost_cbam_ga")
    full = liteunet.create_model("lite_unet")
    assert isinstance(ghost.encoder[0], GhostCBAM) and isinstance(ghost.bottleneck, nn.Identity)
    assert isinstance(ga.encoder[0], GradientAggregation) and isinstance(ga.bottleneck, nn.Identity)
    assert isinstance(full.bottleneck, GraphCorrelationAttention)
    assert count_params(full) - count_params(ga) == count_params(full.bottleneck)


def test_unet_baseline_layout():
    model = liteunet.create_model("unet")
    assert isinstance(model, UNet)
    assert [m[0].conv.out_channels for m in model.encoder] == [64, 128, 256, 512, 1024]
    assert all(not any(isinstance(x, CDConv2d) for x in model.modules()) for _ in [0])


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size", [(37, 53), (16, 16), (1, 1), (64, 33)])
def test_any_input_size_gives_a_map_of_the_same_size(name, size):
    kw = {"widths": (8, 16, 16, 32, 32)} if name == "unet" else {}
    model = liteunet.create_model(name, in_chans=1, num_classes=2, **kw).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, *size))
    assert out.shape == (2, 2, *size)
    assert torch.isfinite(out).all()


def test_odd_sizes_equal_a_pass_on_the_padded_image():
    """Sizes not divisible by 16 are edge-padded at the bottom/right, then cropped back."""
    model = liteunet.create_model("lite_unet").eval()
    x = torch.rand(1, 3, 40, 50)
    padded = torch.nn.functional.pad(x, (0, 14, 0, 8), mode="replicate")
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded)[..., :40, :50])


def test_forward_rejects_bad_input_clearly():
    model = liteunet.create_model("lite_unet")
    with pytest.raises(ValueError, match=r"expects input \(B, 3, H, W\), got shape \(1, 64, 64, 3\).*permute"):
        model(torch.rand(1, 64, 64, 3))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\), got shape \(3, 64, 64\)"):
        model(torch.rand(3, 64, 64))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_pretrained_without_published_weights_fails_clearly():
    with pytest.raises(RuntimeError, match="No pretrained weights are published for 'lite_unet_ghost_cbam'"):
        liteunet.create_model("lite_unet_ghost_cbam", pretrained=True)
    with pytest.raises(ValueError, match="unknown model 'resnet18'"):
        liteunet.create_model("resnet18")


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("name", ["lite_unet", "lite_unet_ghost_cbam"])
def test_reparameterize_folds_cdconv_and_batchnorm(name):
    model = liteunet.create_model(name).eval()
    _randomize_bn(model)
    fused = model.reparameterize()
    assert not any(isinstance(m, (CDConv2d, nn.BatchNorm2d)) for m in fused.modules())
    assert any(isinstance(m, CDConv2d) for m in model.modules()) or name == "lite_unet_ghost_cbam"
    x = torch.rand(2, 3, 48, 40)
    with torch.no_grad():
        ref, out = model(x), fused(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_save_for_hf_round_trip(tmp_path):
    """timm's save_for_hf writes config.json + model.safetensors that load back identically."""
    torch.manual_seed(0)
    model = liteunet.create_model("lite_unet", num_classes=2, in_chans=1, theta=0.4).eval()
    _randomize_bn(model)
    timm.models.save_for_hf(
        model, tmp_path, model_args=dict(num_classes=2, in_chans=1, theta=0.4), safe_serialization=True
    )
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "lite_unet" and config["num_classes"] == 2
    assert (tmp_path / "model.safetensors").exists()
    loaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    assert isinstance(loaded, LiteUNet) and loaded.in_chans == 1 and loaded.num_classes == 2
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_weights_folder_loads_with_a_timm_builder_before_1_0_31(tmp_path, monkeypatch):
    """timm 1.0.16-1.0.30 (setup.cfg allows them) have no ``pretrained_model_args`` argument and
    hand unknown keywords to the model class: loading a folder must not pass it (seen with 1.0.29)."""
    import liteunet.pretrained.build as build

    real = build.build_model_with_cfg

    def builder_before_1_0_31(model_cls, variant, pretrained, pretrained_cfg=None, **kwargs):
        assert "pretrained_model_args" not in kwargs, "would reach the model's __init__"
        return real(model_cls, variant, pretrained, pretrained_cfg=pretrained_cfg, **kwargs)

    monkeypatch.setattr(build, "build_model_with_cfg", builder_before_1_0_31)
    model = liteunet.create_model("lite_unet", theta=0.4).eval()
    timm.models.save_for_hf(model, tmp_path, model_args=dict(theta=0.4), safe_serialization=True)
    loaded = liteunet.load_model(tmp_path).eval()
    assert {m.theta for m in loaded.modules() if isinstance(m, CDConv2d)} == {0.4}
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier(name):
    model = liteunet.create_model(name)
    assert isinstance(model, LocalizationModel) and model.get_classifier() is model.head
    assert model.num_features == model.head.in_channels
    model.reset_classifier(2)
    assert model.num_classes == 2 and model.eval()(torch.rand(1, 3, 16, 16)).shape[1] == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_trace_compile_export_where_the_model_says_it_can(name):
    """Each form a model's capability flags promise is run and compared; the others are skipped.

    Narrow widths: the forms depend on the layout, not the width, and keep the test fast.
    """
    model = liteunet.create_model(name, widths=(8, 8, 16, 16, 16)).eval()
    flags = {f: getattr(model, f) for f in ("supports_jit_trace", "supports_compile", "supports_export")}
    if not any(flags.values()):
        pytest.skip(f"{name} claims no traced, compiled or exported form")
    x, x2 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 96, 80)
    with torch.no_grad():
        ref = model(x2)
        if flags["supports_jit_trace"]:
            torch.testing.assert_close(torch.jit.trace(model, x)(x2), ref)
        if flags["supports_compile"]:
            compiled = torch.compile(model, fullgraph=True, backend="eager", dynamic=True)
            torch.testing.assert_close(compiled(x2), ref)
    if flags["supports_export"]:
        h, w = torch.export.Dim("h", min=1, max=128), torch.export.Dim("w", min=1, max=128)
        exported = torch.export.export(model, (x,), dynamic_shapes=({2: 16 * h, 3: 16 * w},))
        with torch.no_grad():
            torch.testing.assert_close(exported.module()(x2), ref)


def test_training_step_updates_every_parameter():
    model = liteunet.create_model("lite_unet", gca_drop=0.0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss = ((model(torch.rand(2, 3, 32, 32)) - torch.rand(2, 1, 32, 32)) ** 2).mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    opt.step()


def test_min_input_size_zero_pads_small_images_centred():
    """Images smaller than min_input_size see the zero frame training crops had, then are cropped back."""
    model = liteunet.create_model("lite_unet", min_input_size=64).eval()
    x = torch.rand(1, 3, 40, 30)
    framed = torch.nn.functional.pad(x, (17, 17, 12, 12))  # centred in 64x64
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, model(framed)[..., 12:52, 17:47])
        assert out.shape == (1, 1, 40, 30)
        big = torch.rand(1, 3, 80, 96)  # large enough: no frame, same as min_input_size=0
        plain = liteunet.create_model("lite_unet", min_input_size=0).eval()
        plain.load_state_dict(model.state_dict())
        torch.testing.assert_close(model(big), plain(big))
