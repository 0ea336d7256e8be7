"""Image-wide attention context in tiled inference (issue 21, item 6): results that do not depend on
how the image is cut."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import liteunet
from liteunet.layers import ChannelAttention, GraphCorrelationAttention
from liteunet.layers.graph_correlation_attention import graph_correlation_attention, key_context
from liteunet.localization import LocalizationOptions, Localizer
from liteunet.localization.context import ImageContext, core_mask, sample_tiles, stat_cores
from liteunet.localization.tiling import axis_tiles


def _sensitive_model() -> torch.nn.Module:
    """A small random Lite-UNet whose map depends strongly on its image-wide attention terms.

    BatchNorm statistics are set from the test image (so activations are of unit scale rather
    than vanishing) and no variance is below the layer's mean, which keeps the random network
    from amplifying float rounding.
    """
    torch.manual_seed(0)
    model = liteunet.create_model("lite_unet", widths=(8, 8, 16, 16, 16))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    with torch.no_grad():
        model.train()(torch.from_numpy(_image().transpose(2, 0, 1).copy())[None])
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.clamp_(min=float(m.running_var.mean()))
    return model


def _image(side: int = 400) -> np.ndarray:
    """Two halves of different brightness and a black corner: tiles see very different statistics."""
    rng = np.random.default_rng(0)
    img = rng.random((side, side, 3)).astype(np.float32) * 0.3
    img[:, side // 2 :] += 0.7
    img[side * 2 // 3 :, : side // 3] = 0
    return img


_KW = dict(device="cpu", progress=False, normalize="none", return_map=True, threshold=0.0, precision="fp32")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return _sensitive_model()


@pytest.fixture(scope="module")
def single(model):
    return Localizer(model, tile_size=512, **_KW)([_image()])[0]


def test_exact_context_equals_one_whole_image_pass(model, single):
    # 384-px tiles with 256 overlap: a 128-px margin covers the 124-px receptive radius, so with
    # the exact image-wide statistics every core equals one whole-image pass.
    tiled = Localizer(model, tile_size=384, overlap=256, context="exact", **_KW)([_image()])[0]
    assert tiled.settings["context"] == "exact"
    np.testing.assert_allclose(tiled.location_map, single.location_map, atol=1e-3)
    # Threshold 0 keeps every local maximum: float rounding may split a flat top in two.
    assert abs(len(tiled) - len(single)) <= 0.002 * len(single)


def test_tile_context_differs_and_fast_context_is_closer(model, single):
    own = Localizer(model, tile_size=384, overlap=256, context="tile", **_KW)([_image()])[0]
    fast = Localizer(model, tile_size=384, overlap=256, context="fast", **_KW)([_image()])[0]
    err_own = np.abs(own.location_map - single.location_map).max()
    err_fast = np.abs(fast.location_map - single.location_map).max()
    assert err_own > 1e-2  # each tile its own context: not the whole-image result
    assert err_fast < err_own / 2


def test_exact_context_with_test_time_augmentation(model):
    # Each view of a tile takes the statistics of the whole image in that view.
    one = Localizer(model, tile_size=512, tta="flips", **_KW)([_image()])[0]
    tiled = Localizer(model, tile_size=384, overlap=256, context="exact", tta="flips", **_KW)([_image()])[0]
    np.testing.assert_allclose(tiled.location_map, one.location_map, atol=1e-3)


def test_context_is_off_for_single_tiles_and_hooks_are_removed(model, single):
    loc = Localizer(model, tile_size=384, overlap=256, context="fast", **_KW)
    loc([_image()])
    assert loc.context == "fast" and not loc.image_context.stats == {}
    assert not any(m._forward_hooks for m in loc.image_context.layers)
    # An image within one tile is one pass: no statistics gathered, the same map as the model's.
    small = loc([_image()[:300, :300]])[0]
    ref = Localizer(model, tile_size=512, context="tile", **_KW)([_image()[:300, :300]])[0]
    np.testing.assert_array_equal(small.location_map, ref.location_map)


@pytest.mark.parametrize("n, tile, overlap", [(300, 128, 64), (1000, 512, 128), (2000, 1024, 256), (777, 256, 48), (640, 384, 128)])
def test_stat_cores_partition_the_padded_image_on_the_pooling_grid(n, tile, overlap):
    tiles = axis_tiles(n, tile, overlap)
    cores = stat_cores(tiles, n)
    assert cores[0][0] == 0 and cores[-1][1] == -(-n // 16) * 16
    assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))
    for (t0, _, _, _), (s0, s1) in zip(tiles, cores):
        assert s0 % 16 == 0 and s1 % 16 == 0 and s0 < s1
        assert t0 <= s0 and s1 <= t0 + tile  # inside the (padded) tile
    mask = core_mask(cores[0], cores[-1], (tiles[0][0], tiles[-1][0]), (tile, tile))
    assert mask.shape == (1, tile, tile) and mask.sum() > 0


def test_sample_tiles_spreads_evenly():
    assert sample_tiles(10, None) == list(range(10))
    assert sample_tiles(10, 3) == [0, 4, 9] or sample_tiles(10, 3) == [0, 5, 9]
    assert sample_tiles(3, 10) == [0, 1, 2]


def test_channel_attention_from_pooled_is_its_forward():
    ca = ChannelAttention(16).eval()
    x = torch.rand(2, 16, 8, 8)
    np.testing.assert_allclose(
        ca(x).detach(), ca.from_pooled(x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)).detach(), atol=1e-6
    )


def test_gca_with_summed_context_of_parts_equals_whole():
    gca = GraphCorrelationAttention(16, 4).eval()
    x = torch.rand(1, 16, 8, 8)
    nodes = x.flatten(2).transpose(1, 2)
    # K^T X summed over two halves of the positions, divided by N: the whole map's context.
    half = torch.zeros(1, 64, 1)
    half[:, :32] = 1
    parts = key_context(nodes, gca.key.weight, half) + key_context(nodes, gca.key.weight, 1 - half)
    w = (gca.query.weight, gca.key.weight, gca.update.weight)
    np.testing.assert_allclose(
        graph_correlation_attention(x, *w, context=parts / 64).detach(), gca(x).detach(), atol=1e-6
    )


def test_image_context_finds_every_attention_layer(model):
    assert len(ImageContext(model)) == 9  # 4 encoder + 4 decoder channel attentions, and GCA
    assert len(ImageContext(liteunet.create_model("lite_unet_ghost_cbam"))) == 9  # no GCA, a CBAM first block
    assert len(ImageContext(liteunet.create_model("unet"))) == 0


def test_context_option_is_checked():
    with pytest.raises(ValueError, match="context"):
        LocalizationOptions(context="global")
    with pytest.raises(ValueError, match="context_tiles"):
        LocalizationOptions(context_tiles=0)
    assert LocalizationOptions().context == "exact"


@pytest.mark.data
@pytest.mark.slow
def test_default_points_do_not_depend_on_the_cut_on_real_tissue():
    # Issue 21 item 6 with the bundled default weights on a 1200x1200 H&E crop (CRC mosaic): the
    # default gives exactly the points of one whole-image pass; each tile its own context does not.
    from liteunet.bench.localize_cost import crc_mosaic

    try:
        image = crc_mosaic()[0][:1200, :1200]
    except (OSError, ValueError, KeyError) as err:
        pytest.skip(f"needs the crc data set: {err}")
    run = dict(device="cpu", progress=False, precision="fp32")
    one_pass = Localizer("lite_unet.multi", tile_size=1200, **run)([image])[0]
    default = Localizer("lite_unet.multi", **run)([image])[0]
    np.testing.assert_array_equal(default.xy, one_pass.xy)
    tiled = Localizer("lite_unet.multi", context="tile", **run)([image])[0]
    assert len(tiled) > 1.02 * len(one_pass)  # 1596 against 1488 when written


def _symmetrize_kernels(model: torch.nn.Module) -> torch.nn.Module:
    """Every convolution kernel averaged with its left-right and up-down mirror images."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                w = m.weight
                m.weight.copy_((w + w.flip(-1) + w.flip(-2) + w.flip(-1, -2)) / 4)
    return model


@pytest.mark.parametrize("name", ["lite_unet", "unet"])
def test_flips_change_points_only_through_the_learned_kernels(name):
    """Pooling, upsampling, padding and the attention terms are mirror-symmetric: with mirror-
    symmetric kernels the map of a flipped image is the flipped map, exactly. So a trained
    model's flip disagreement (issue 21 item 6) comes from its weights alone."""
    torch.manual_seed(0)
    model = liteunet.create_model(name, widths=(8, 8, 16, 16, 16)).eval()
    x = torch.rand(1, 3, 64, 80)

    def flip_gap(m: torch.nn.Module) -> float:
        with torch.no_grad():
            out = m(x)
            return max(float((m(x.flip(d)).flip(d) - out).abs().max()) for d in (-1, -2)) / float(out.abs().max())

    assert flip_gap(model) > 1e-3
    assert flip_gap(_symmetrize_kernels(model)) < 1e-5
