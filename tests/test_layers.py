"""The paper's layers: each equation against a direct computation, plus drop-in use."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from liteunet.layers import (
    CBAM,
    CDConv2d,
    CDConvNormAct,
    GhostCBAM,
    GhostModule,
    GradientAggregation,
    GraphCorrelationAttention,
    cd_conv2d,
    create_layer,
    list_layers,
)


def _eq3_direct(x, w, theta, padding, stride=1, dilation=1):
    """Eq. (3) pixel by pixel: sum_n w(p_n) x(p0 + p_n) + theta * (-x(p0) * sum_n w(p_n))."""
    b, cin, h, wd = x.shape
    cout, _, k, _ = w.shape
    xp = F.pad(x, (padding,) * 4)
    ho = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    wo = (wd + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    y = torch.zeros(b, cout, ho, wo, dtype=torch.float64)
    wsum = w.sum(dim=(2, 3))  # (cout, cin)
    c = (k // 2) * dilation
    for i in range(ho):
        for j in range(wo):
            r, s = i * stride, j * stride
            patch = xp[:, :, r : r + dilation * (k - 1) + 1 : dilation, s : s + dilation * (k - 1) + 1 : dilation]
            centre = xp[:, :, r + c, s + c]  # x(p0): the pixel under the kernel centre
            y[:, :, i, j] = torch.einsum("bckl,ockl->bo", patch, w) + theta * (-(centre @ wsum.T))
    return y


@pytest.mark.parametrize("theta", [0.0, 0.2, 0.7, 1.0])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2)])
def test_cd_conv2d_matches_eq3(theta, stride, dilation):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 8, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    y = cd_conv2d(x, w, theta=theta, stride=stride, padding=dilation, dilation=dilation)
    torch.testing.assert_close(y, _eq3_direct(x, w, theta, dilation, stride, dilation))


def test_cdconv_theta_zero_is_exactly_conv2d():
    torch.manual_seed(0)
    cd = CDConv2d(3, 5, 3, theta=0.0, bias=True)
    conv = nn.Conv2d(3, 5, 3, padding=1, bias=True)
    conv.load_state_dict(cd.state_dict())
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(cd(x), conv(x))


@pytest.mark.parametrize("groups", [1, 3])
def test_cdconv_reparameterize_is_plain_conv_with_same_output(groups):
    torch.manual_seed(0)
    cd = CDConv2d(6, 6, 3, theta=0.7, groups=groups, bias=True)
    plain = cd.reparameterize()
    assert type(plain) is nn.Conv2d
    x = torch.randn(2, 6, 12, 11)
    torch.testing.assert_close(plain(x), cd(x), rtol=1e-5, atol=1e-5)
    # the centre tap carries the whole theta term
    delta = (cd.weight - plain.weight)[:, :, 1, 1]
    torch.testing.assert_close(delta, 0.7 * cd.weight.sum(dim=(2, 3)))


def test_cdconv_gradient_reaches_weight_through_the_fold():
    cd = CDConv2d(2, 2, 3, theta=0.5)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    cd = cd.double()
    assert torch.autograd.gradcheck(lambda w: cd_conv2d(x, w, theta=0.5, padding=1), (cd.weight.detach().requires_grad_(),))


def test_cdconv_rejects_bad_arguments_clearly():
    with pytest.raises(ValueError, match="odd kernel_size"):
        CDConv2d(3, 3, 2)
    with pytest.raises(ValueError, match=r"theta must be .* in \[0, 1\]"):
        CDConv2d(3, 3, 3, theta=1.5)
    with pytest.raises(ValueError, match=r"expects input \(B, 3, H, W\), got shape \(1, 4, 8, 8\)"):
        CDConv2d(3, 3)(torch.randn(1, 4, 8, 8))


def test_gradient_aggregation_follows_fig3():
    ga = GradientAggregation(3, 28, theta=0.7)
    assert len(ga.branches) == 4
    assert [len(b) for b in ga.branches] == [1, 2, 3, 4]  # four branches of different depth
    for branch in ga.branches:
        assert isinstance(branch[0], CDConvNormAct) and branch[0].conv.theta == 0.7  # a DC block each
        for block in branch[1:]:
            assert type(block.conv) is nn.Conv2d  # then vanilla convs
        assert all(block.conv.kernel_size == (3, 3) for block in branch)
    assert ga.fuse.conv.kernel_size == (1, 1)
    assert ga.fuse.conv.in_channels == 4 * 7
    assert ga(torch.randn(2, 3, 20, 24)).shape == (2, 28, 20, 24)


def test_gradient_aggregation_direct_computation():
    """GA output = 1x1 block of the concatenated branch outputs, branch = DC block then VC blocks."""
    torch.manual_seed(0)
    ga = GradientAggregation(3, 8, depths=(1, 2), theta=0.4).eval()
    x = torch.randn(1, 3, 10, 10)

    def block(m, h, theta=None):
        w = m.conv.weight
        h = cd_conv2d(h, w, theta=theta, padding=1) if theta is not None else F.conv2d(h, w, padding=m.conv.padding)
        return F.relu(F.batch_norm(h, m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias, eps=m.bn.eps))

    b0 = block(ga.branches[0][0], x, 0.4)
    b1 = block(ga.branches[1][1], block(ga.branches[1][0], x, 0.4))
    expected = block(ga.fuse, torch.cat([b0, b1], 1))
    torch.testing.assert_close(ga(x), expected)


def _bn_relu(h, bn):
    return F.relu(F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps))


def test_ghost_module_eq4_eq5():
    torch.manual_seed(0)
    ghost = GhostModule(6, 10).eval()
    x = torch.randn(2, 6, 9, 9)
    f1 = _bn_relu(F.conv2d(x, ghost.primary.conv.weight), ghost.primary.bn)  # eq. (4), 1x1 primary conv
    assert f1.shape[1] == 5
    # eq. (5): ghost map j of intrinsic map i depends on y'_i alone (a depthwise 3x3 conv)
    ghosts = torch.cat(
        [_bn_relu(F.conv2d(f1[:, i : i + 1], ghost.cheap.conv.weight[i : i + 1], padding=1), _SubBN(ghost.cheap.bn, i)) for i in range(5)],
        dim=1,
    )
    torch.testing.assert_close(ghost(x), torch.cat([f1, ghosts], 1))


class _SubBN:
    """One channel of a BatchNorm, for the per-map computation above."""

    def __init__(self, bn, i):
        sl = slice(i, i + 1)
        self.running_mean, self.running_var = bn.running_mean[sl], bn.running_var[sl]
        self.weight, self.bias, self.eps = bn.weight[sl], bn.bias[sl], bn.eps


def test_ghost_module_odd_out_chans():
    assert GhostModule(4, 7)(torch.randn(1, 4, 5, 5)).shape == (1, 7, 5, 5)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_cbam_eq6(memory_format):
    torch.manual_seed(0)
    cbam = CBAM(32).eval()
    f2 = torch.randn(2, 32, 7, 9).contiguous(memory_format=memory_format)

    def mlp(v):
        return F.conv2d(F.relu(F.conv2d(v, cbam.channel.fc1.weight, cbam.channel.fc1.bias)), cbam.channel.fc2.weight, cbam.channel.fc2.bias)

    mc = torch.sigmoid(mlp(f2.mean((2, 3), keepdim=True)) + mlp(f2.amax((2, 3), keepdim=True)))
    f3 = mc * f2
    ms = torch.sigmoid(
        F.conv2d(torch.cat([f3.mean(1, keepdim=True), f3.amax(1, keepdim=True)], 1), cbam.spatial.conv.weight, cbam.spatial.conv.bias, padding=3)
    )
    torch.testing.assert_close(cbam(f2), ms * f3)
    assert cbam.spatial.conv.kernel_size == (7, 7) and cbam.channel.fc1.kernel_size == (1, 1)


def test_cbam_exports_without_adaptive_max_pool():
    """torch 2.11's ONNX exporter has no adaptive_max_pool2d: `liteunet export onnx` failed there."""
    dims = ({2: torch.export.Dim("h", min=2, max=512), 3: torch.export.Dim("w", min=2, max=512)},)
    exported = torch.export.export(CBAM(16).eval(), (torch.randn(1, 16, 8, 10),), dynamic_shapes=dims)
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert not any("adaptive_max_pool" in t for t in targets), targets


def test_cbam_without_autograd_matches_and_leaves_its_input_alone():
    torch.manual_seed(0)
    cbam = CBAM(16).eval()
    x = torch.randn(2, 16, 9, 11)
    kept = x.clone()
    with_grad = cbam(x)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            torch.testing.assert_close(cbam(x), with_grad, rtol=0, atol=0)
    torch.testing.assert_close(x, kept, rtol=0, atol=0)
    x.requires_grad_(True)
    cbam(x).sum().backward()  # the training path still has what autograd needs
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_ghost_cbam_is_ghost_modules_then_cbam():
    torch.manual_seed(0)
    block = GhostCBAM(8, 16).eval()
    x = torch.randn(1, 8, 12, 12)
    torch.testing.assert_close(block(x), block.cbam(block.ghost[1](block.ghost[0](x))))
    kernels = {m.kernel_size for m in block.modules() if isinstance(m, nn.Conv2d)}
    assert kernels == {(1, 1), (3, 3), (7, 7)}  # Ghost: 1 and 3; CBAM: 1 and 7


def _gca_direct(gca, x):
    """Eqs. (7)-(9) as written, with the N x N correlation built explicitly (eval: no dropout)."""
    b, c, h, w = x.shape
    nodes = x.flatten(2).transpose(1, 2).double()
    wq, wk, wu = (m.weight.double() for m in (gca.query, gca.key, gca.update))
    corr = (nodes @ wq.T) @ (nodes @ wk.T).transpose(1, 2) / (h * w)  # eq. (7), scaled by 1/N
    update = F.relu(corr @ nodes @ wu.T)  # eq. (8)
    return (torch.sigmoid(update) * nodes).transpose(1, 2).reshape(b, c, h, w)  # eq. (9)


@pytest.mark.parametrize("shape", [(2, 16, 5, 7), (1, 8, 1, 1), (1, 32, 16, 16)])
def test_gca_matches_eq7_to_9(shape):
    torch.manual_seed(0)
    gca = GraphCorrelationAttention(shape[1]).eval()
    x = torch.randn(shape)
    torch.testing.assert_close(gca(x).double(), _gca_direct(gca, x), rtol=1e-5, atol=1e-5)
    n = shape[2] * shape[3]
    assert gca.correlation(x).shape == (shape[0], n, n)


def test_gca_scaling_is_independent_of_image_size():
    """With Corr scaled by 1/N, a feature map tiled with copies of itself gives the same
    per-position output: activations do not grow with H x W (trained on crops, run on tiles)."""
    torch.manual_seed(0)
    gca = GraphCorrelationAttention(16).eval()
    with torch.no_grad():
        for m in (gca.query, gca.key, gca.update):
            m.weight.mul_(3)
    x = torch.randn(1, 16, 6, 6)
    torch.testing.assert_close(gca(x.repeat(1, 1, 8, 8)), gca(x).repeat(1, 1, 8, 8), rtol=1e-4, atol=1e-5)


def test_gca_dropout_only_in_training():
    gca = GraphCorrelationAttention(8, drop=0.5)
    x = torch.randn(1, 8, 6, 6)
    gca.eval()
    assert torch.equal(gca(x), gca(x))
    gca.train()
    torch.manual_seed(1)
    a = gca(x)
    torch.manual_seed(2)
    assert not torch.equal(a, gca(x))


#: Constructor arguments of each registered layer for a 4-channel input (the layer tests run
#: over ``list_layers()``, so a newly registered layer without an entry here fails loudly).
LAYER_ARGS = {
    "cdconv": (4, 8, 3),
    "ga": (4, 8),
    "ghost": (4, 8),
    "cbam": (4,),
    "ghost_cbam": (4, 8),
    "gca": (4,),
}
LAYER_CASES = {name: ((lambda name=name: create_layer(name, *LAYER_ARGS[name])), 4) for name in list_layers()}


def test_every_registered_layer_has_test_arguments():
    assert set(LAYER_ARGS) == set(list_layers())


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_bf16_and_input_check(name):
    make, cin = LAYER_CASES[name]
    layer = make().eval()
    x = torch.randn(1, cin, 12, 10)
    ref = layer(x)
    out = layer.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    torch.testing.assert_close(out.float(), ref, rtol=0.1, atol=0.1)
    with pytest.raises(ValueError, match=rf"\(B, {cin}, H, W\)"):
        layer(torch.randn(1, cin + 1, 12, 10, dtype=torch.bfloat16))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_cuda(name):
    make, cin = LAYER_CASES[name]
    layer = make().eval()
    x = torch.randn(1, cin, 12, 10)
    torch.testing.assert_close(layer.cuda()(x.cuda()).cpu(), layer.cpu()(x), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_trace_compile_export(name):
    make, cin = LAYER_CASES[name]
    layer = make().eval()
    x, x2 = torch.randn(1, cin, 16, 12), torch.randn(2, cin, 20, 24)
    traced = torch.jit.trace(layer, x)
    torch.testing.assert_close(traced(x2), layer(x2))
    # fullgraph=True fails on any graph break; the eager backend keeps the test fast.
    compiled = torch.compile(layer, fullgraph=True, backend="eager", dynamic=True)
    torch.testing.assert_close(compiled(x2), layer(x2))
    dims = ({2: torch.export.Dim("h", min=2, max=512), 3: torch.export.Dim("w", min=2, max=512)},)
    exported = torch.export.export(layer, (x,), dynamic_shapes=dims)
    torch.testing.assert_close(exported.module()(x2[:1]), layer(x2[:1]))


def test_create_layer_by_name():
    assert set(list_layers()) >= {"cdconv", "ga", "ghost_cbam", "gca"}
    assert isinstance(create_layer("gca", 32), GraphCorrelationAttention)
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        create_layer("nope")


def test_layers_drop_into_a_timm_resnet():
    """GCA and GhostCBAM inserted into timm's resnet18 train like any other layer."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    model.layer2 = nn.Sequential(model.layer2, GhostCBAM(128, 128))
    model.layer3 = nn.Sequential(model.layer3, GraphCorrelationAttention(256))
    model.layer4 = nn.Sequential(model.layer4, GraphCorrelationAttention(512, drop=0.0))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    before = [p.detach().clone() for p in model.layer3[1].parameters()]
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.layer3[1].parameters())
    assert all(p.grad is not None for p in model.layer2[1].parameters())
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.layer3[1].parameters()))
