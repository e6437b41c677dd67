"""Shared network pieces (BasicSR ``arch_util`` / EDSR-PyTorch ``common``).

Every network of the project (CWT-Net, EDSR, RCAN, SRCNN) builds from these, so a
residual block or an upsampler means the same thing everywhere. Images are in
[0, 1] (``rgb_range = 1``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlcamsr.qc import PAPER_RGB_MEAN

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
"""RGB mean of DIV2K (EDSR-PyTorch ``common.MeanShift`` default), on [0, 1]."""

MLCAMSR_MEAN = PAPER_RGB_MEAN
"""RGB mean of the MLCamSR training set (the CWT-Net paper's value, :data:`mlcamsr.qc.PAPER_RGB_MEAN`), on [0, 1]."""

MEANS = {"div2k": DIV2K_MEAN, "mlcamsr": MLCAMSR_MEAN}
"""Named means accepted by the ``mean`` option of every network."""


def resolve_mean(mean: str | tuple[float, float, float]) -> tuple[float, float, float]:
    """``"div2k"`` / ``"mlcamsr"`` or an explicit RGB triple -> RGB triple."""
    if isinstance(mean, str):
        if mean not in MEANS:
            raise ValueError(f"unknown mean {mean!r}; choose one of {', '.join(MEANS)} or give 3 floats")
        return MEANS[mean]
    values = tuple(float(m) for m in mean)
    if len(values) != 3:
        raise ValueError(f"mean needs 3 values (R, G, B), got {len(values)}")
    return values[0], values[1], values[2]


def default_conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    """A 'same' convolution (padding = kernel_size // 2), as in EDSR-PyTorch."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class MeanShift(nn.Conv2d):
    """Fixed 1x1 convolution: ``sign * rgb_range * mean / std`` added per channel, x / std.

    ``sign=-1`` subtracts the mean (network entrance), ``sign=+1`` restores it (exit).
    Its weights never receive gradient.

    Args:
        rgb_range (float): Image value range. Default: 1.0.
        rgb_mean (tuple[float]): RGB mean. Default: DIV2K_MEAN.
        rgb_std (tuple[float]): RGB std. Default: (1, 1, 1).
        sign (int): -1 subtracts, +1 adds. Default: -1.
    """

    def __init__(
        self,
        rgb_range: float = 1.0,
        rgb_mean: tuple[float, float, float] = DIV2K_MEAN,
        rgb_std: tuple[float, float, float] = (1.0, 1.0, 1.0),
        sign: int = -1,
    ) -> None:
        super().__init__(3, 3, kernel_size=1)
        std = torch.tensor(rgb_std, dtype=torch.float32)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1)
        assert self.bias is not None  # Conv2d's default bias=True
        self.bias.data = sign * rgb_range * torch.tensor(rgb_mean, dtype=torch.float32) / std
        for p in self.parameters():
            p.requires_grad = False


class ResBlock(nn.Module):
    """EDSR residual block without BN: ``x + res_scale * conv(relu(conv(x)))``.

    Args:
        num_feat (int): Channels. Default: 64.
        res_scale (float): Residual scale. Default: 1.0.
        kernel_size (int): Convolution size. Default: 3.
    """

    def __init__(self, num_feat: int = 64, res_scale: float = 1.0, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv1 = default_conv(num_feat, num_feat, kernel_size)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = default_conv(num_feat, num_feat, kernel_size)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(self.relu(self.conv1(x)))


class Upsampler(nn.Sequential):
    """Sub-pixel upsampler: log2(scale) stages of conv(C -> 4C) + PixelShuffle(2); x3: one stage.

    Args:
        scale (int): 2, 3, 4, 8 (any power of two). Default: 2.
        num_feat (int): Channels. Default: 64.
    """

    def __init__(self, scale: int = 2, num_feat: int = 64) -> None:
        layers: list[nn.Module] = []
        if scale >= 2 and (scale & (scale - 1)) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [default_conv(num_feat, 4 * num_feat, 3), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [default_conv(num_feat, 9 * num_feat, 3), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"scale {scale} is not supported; choose 2, 3, 4 or 8 (a power of two)")
        super().__init__(*layers)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention (RCAN, and CWT-Net's WR Eq. 6-7).

    ``x * sigmoid(conv_up(relu(conv_down(avgpool(x)))))``.

    Args:
        num_feat (int): Channels. Default: 64.
        reduction (int): Channel reduction of the bottleneck. Default: 16.
    """

    def __init__(self, num_feat: int = 64, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, num_feat // reduction)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(num_feat, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_feat, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class RCAB(nn.Module):
    """Residual channel attention block (RCAN): ``x + res_scale * CA(conv(relu(conv(x))))``.

    Args:
        num_feat (int): Channels. Default: 64.
        reduction (int): Channel-attention reduction. Default: 16.
        res_scale (float): Residual scale. Default: 1.0.
    """

    def __init__(self, num_feat: int = 64, reduction: int = 16, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            default_conv(num_feat, num_feat, 3),
            nn.ReLU(inplace=True),
            default_conv(num_feat, num_feat, 3),
            ChannelAttention(num_feat, reduction),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class ResidualGroup(nn.Module):
    """RCAN residual group: ``x + conv(RCAB^n(x))``.

    Args:
        num_feat (int): Channels. Default: 64.
        num_block (int): RCABs in the group. Default: 20.
        reduction (int): Channel-attention reduction. Default: 16.
        res_scale (float): Residual scale of each RCAB. Default: 1.0.
    """

    def __init__(self, num_feat: int = 64, num_block: int = 20, reduction: int = 16, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = make_layer(RCAB, num_block, num_feat=num_feat, reduction=reduction, res_scale=res_scale)
        self.conv = default_conv(num_feat, num_feat, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.body(x))


def make_layer(block: type[nn.Module], num_blocks: int, **kwargs) -> nn.Sequential:
    """``nn.Sequential`` of ``num_blocks`` fresh ``block(**kwargs)``."""
    return nn.Sequential(*[block(**kwargs) for _ in range(num_blocks)])


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad ``x`` (B, C, H, W) at the bottom/right so H and W are multiples of ``multiple``.

    Returns the padded tensor and the original (H, W), so the caller can crop its output
    back (wavelet networks need sides divisible by 2 per DWT level). Falls back to
    replicate padding when a side is too small to reflect.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)
