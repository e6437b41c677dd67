"""RCAN (Zhang et al., ECCV 2018), BasicSR/EDSR-PyTorch layout, images in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cwtnet.model.blocks import (
    MeanShift,
    ResidualGroup,
    Upsampler,
    default_conv,
    make_layer,
    resolve_mean,
)


@dataclass
class RCANOptions:
    """RCAN options; defaults are the paper's (10 groups x 20 RCABs, 64 channels, reduction 16)."""

    num_feat: int = 64
    num_group: int = 10
    num_block: int = 20
    reduction: int = 16
    res_scale: float = 1.0
    mean: str | tuple[float, float, float] = "div2k"


class RCAN(nn.Module):
    """RCAN: Image Super-Resolution Using Very Deep Residual Channel Attention Networks (Zhang et al. 2018).

    ``sr = model(lr, ref=None)``; ``lr`` (B, 3, H, W) in [0, 1] -> ``sr`` (B, 3, sH, sW).
    ``ref`` is accepted for a common call signature and ignored.

    Args:
        scale (int): Upsampling factor, 2, 3, 4 or 8. Default: 2.
        options (RCANOptions): see below; ``None`` means the defaults.
            num_feat (int): Channels of every convolution. Default: 64.
            num_group (int): Residual groups. Default: 10.
            num_block (int): RCABs per group. Default: 20.
            reduction (int): Channel-attention reduction. Default: 16.
            res_scale (float): Residual scale of each RCAB. Default: 1.0.
            mean (str | tuple): MeanShift mean, ``"div2k"`` or ``"mlcamsr"`` or an RGB triple.
                Default: ``"div2k"``.
    """

    has_params = True

    def __init__(self, scale: int = 2, options: RCANOptions | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.options = opt = options or RCANOptions()
        mean = resolve_mean(opt.mean)
        self.sub_mean = MeanShift(1.0, mean, sign=-1)
        self.conv_first = default_conv(3, opt.num_feat, 3)
        self.body = make_layer(
            ResidualGroup,
            opt.num_group,
            num_feat=opt.num_feat,
            num_block=opt.num_block,
            reduction=opt.reduction,
            res_scale=opt.res_scale,
        )
        self.conv_after_body = default_conv(opt.num_feat, opt.num_feat, 3)
        self.upsample = Upsampler(scale, opt.num_feat)
        self.conv_last = default_conv(opt.num_feat, 3, 3)
        self.add_mean = MeanShift(1.0, mean, sign=1)

    def forward(self, lr: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv_first(self.sub_mean(lr))
        res = self.conv_after_body(self.body(x)) + x  # long skip
        return self.add_mean(self.conv_last(self.upsample(res)))
