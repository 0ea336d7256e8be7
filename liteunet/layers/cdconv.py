"""Central difference convolution (CDConv2d), eq. (3) of the Lite-UNet paper.

    y(p0) = sum_{pn in R} w(pn) x(p0 + pn) + theta * (-x(p0) * sum_{pn in R} w(pn))

The second term is linear in ``x(p0)``, the pixel under the kernel centre, so it equals a
vanilla convolution whose centre tap is reduced by ``theta * sum(w)``. We always compute it
that way: one convolution instead of two, and the reparameterized ``nn.Conv2d`` is exact.

Reference: Yu et al., "Searching Central Difference Convolutional Networks for Face
Anti-Spoofing", CVPR 2020; Li Bo et al., "Lite-UNet: A lightweight and efficient network for
cell localization", Eng. Appl. Artif. Intell., 2024.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_bchw

__all__ = ["fold_difference_weight", "cd_conv2d", "CDConv2d"]


def _check_theta(theta: float) -> float:
    # NaN and infinities fail the range test too.
    if not (isinstance(theta, (int, float)) and 0.0 <= theta <= 1.0):
        raise ValueError(f"theta must be a finite number in [0, 1] (0 = vanilla conv), got {theta!r}")
    return float(theta)


def fold_difference_weight(weight: torch.Tensor, theta: float) -> torch.Tensor:
    """Fold the difference term of eq. (3) into the centre tap of a convolution kernel.

    Args:
        weight: convolution kernel with odd spatial size.
        theta: trade-off between the vanilla (0) and the pure central-difference (1) convolution.

    Returns:
        A kernel ``w'`` with ``conv(x, w') == conv(x, w) - theta * x(p0) * sum(w)``.

    Shape:
        - weight: :math:`(C_{out}, C_{in} / groups, k_h, k_w)`, :math:`k_h, k_w` odd.
        - output: same as ``weight``.

    Example:
        >>> w = torch.ones(1, 1, 3, 3)
        >>> fold_difference_weight(w, 1.0)[0, 0]
        tensor([[ 1.,  1.,  1.],
                [ 1., -8.,  1.],
                [ 1.,  1.,  1.]])
    """
    theta = _check_theta(theta)
    if weight.ndim != 4:
        raise ValueError(f"weight must be (C_out, C_in/groups, kH, kW), got shape {tuple(weight.shape)}")
    kh, kw = weight.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"a difference convolution needs an odd kernel with a centre tap, got {kh}x{kw}")
    return _fold(weight, theta)


def _fold(weight: torch.Tensor, theta: float) -> torch.Tensor:
    # Unchecked: CDConv2d validated theta and the kernel once, at construction.
    if theta == 0.0:
        return weight
    kh, kw = weight.shape[-2:]
    centre = torch.zeros_like(weight)
    centre[:, :, kh // 2, kw // 2] = 1.0
    # Built with out-of-place ops so autograd sees w' as a function of w.
    return weight - theta * weight.sum(dim=(2, 3), keepdim=True) * centre


def cd_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    theta: float = 0.7,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Central difference convolution, eq. (3) of Lite-UNet (functional form).

    Args:
        input: input image or feature map.
        weight: kernel with odd spatial size.
        bias: optional bias, added after the difference term (as in ``nn.Conv2d``).
        theta: share of gradient information; 0 gives ``F.conv2d`` exactly.
        stride, padding, dilation, groups: as in :func:`torch.nn.functional.conv2d`.

    Returns:
        The convolved feature map.

    Shape:
        - input: :math:`(B, C_{in}, H, W)`
        - weight: :math:`(C_{out}, C_{in} / groups, k, k)`
        - output: :math:`(B, C_{out}, H_{out}, W_{out})` as for ``F.conv2d``.

    Example:
        >>> x = torch.rand(1, 3, 8, 8)
        >>> w = torch.randn(4, 3, 3, 3)
        >>> cd_conv2d(x, w, theta=0.7, padding=1).shape
        torch.Size([1, 4, 8, 8])
    """
    check_bchw("cd_conv2d", input)
    return F.conv2d(input, fold_difference_weight(weight, theta), bias, stride, padding, dilation, groups)


class CDConv2d(nn.Conv2d):
    """Central difference convolution of Lite-UNet eq. (3), a drop-in for ``nn.Conv2d``.

    Same arguments, parameters and state-dict keys as ``nn.Conv2d``, plus ``theta``. The kernel
    must be odd-sized (the difference is taken against the centre pixel). With ``theta=0`` it
    computes exactly ``nn.Conv2d``. :meth:`reparameterize` returns the equivalent plain
    ``nn.Conv2d`` for inference and export.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size, default 3 (the paper uses 3x3 everywhere in GA).
        theta: trade-off of eq. (3), in [0, 1]. The paper's Fig. 7 finds 0.2 or 0.7 best for
            localization and 0.4 for counting; 0.7 is the default here.
        **kwargs: ``stride``, ``padding``, ``dilation``, ``groups``, ``bias``, ``padding_mode``,
            ``device``, ``dtype`` as for ``nn.Conv2d``. ``padding`` defaults to "same" size
            (``dilation * (kernel_size // 2)``).

    Shape:
        - input: :math:`(B, C_{in}, H, W)`
        - output: :math:`(B, C_{out}, H_{out}, W_{out})`

    Example:
        >>> conv = CDConv2d(3, 8, 3, theta=0.7)
        >>> conv(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 8, 32, 32])
        >>> plain = conv.reparameterize()
        >>> torch.allclose(plain(torch.ones(1, 3, 5, 5)), conv(torch.ones(1, 3, 5, 5)), atol=1e-6)
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        theta: float = 0.7,
        **kwargs,
    ) -> None:
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if ks[0] % 2 == 0 or ks[1] % 2 == 0:
            raise ValueError(f"CDConv2d needs an odd kernel_size (it has a centre tap), got {kernel_size}")
        if "padding" not in kwargs:
            dilation = kwargs.get("dilation", 1)
            dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
            kwargs["padding"] = (dh * (ks[0] // 2), dw * (ks[1] // 2))
        super().__init__(in_channels, out_channels, ks, **kwargs)
        self.theta = _check_theta(theta)

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        return super()._conv_forward(input, _fold(weight, self.theta), bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.ndim != 4 or input.shape[1] != self.in_channels:
            raise ValueError(
                f"CDConv2d expects input (B, {self.in_channels}, H, W), got shape {tuple(input.shape)}"
            )
        return self._conv_forward(input, self.weight, self.bias)

    @torch.no_grad()
    def reparameterize(self) -> nn.Conv2d:
        """Return a plain ``nn.Conv2d`` computing the same function (theta folded into the centre tap)."""
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias is not None,
            padding_mode=self.padding_mode,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        conv.weight.copy_(_fold(self.weight, self.theta))
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        return conv.train(self.training)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, theta={self.theta}"
