"""SRCNN (Dong et al., ECCV 2014 / TPAMI 2016) on the project's bicubic-upsampled input."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mlcamsr.resize import imresize_torch


@dataclass
class SRCNNOptions:
    """SRCNN options; defaults are the paper's 9-5-5 network with 64 / 32 channels."""

    num_feat1: int = 64
    num_feat2: int = 32
    kernel1: int = 9
    kernel2: int = 5
    kernel3: int = 5


class SRCNN(nn.Module):
    """SRCNN: Image Super-Resolution Using Deep Convolutional Networks (Dong et al. 2016).

    The LR image is first upsampled by ``mlcamsr.resize.imresize_torch`` (the project's
    one MATLAB-style bicubic, as the paper's pre-upsampling), then three convolutions
    (patch extraction, non-linear mapping, reconstruction) map it to the SR image.
    Convolutions are 'same'-padded so the output is exactly (B, 3, sH, sW).
    ``ref`` is accepted for a common call signature and ignored.

    Args:
        scale (int): Upsampling factor. Default: 2.
        options (SRCNNOptions): see below; ``None`` means the defaults.
            num_feat1 (int): Channels after layer 1. Default: 64.
            num_feat2 (int): Channels after layer 2. Default: 32.
            kernel1, kernel2, kernel3 (int): Kernel sizes. Default: 9, 5, 5.
    """

    has_params = True

    def __init__(self, scale: int = 2, options: SRCNNOptions | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.options = opt = options or SRCNNOptions()
        self.conv1 = nn.Conv2d(3, opt.num_feat1, opt.kernel1, padding=opt.kernel1 // 2)
        self.conv2 = nn.Conv2d(opt.num_feat1, opt.num_feat2, opt.kernel2, padding=opt.kernel2 // 2)
        self.conv3 = nn.Conv2d(opt.num_feat2, 3, opt.kernel3, padding=opt.kernel3 // 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, lr: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        x = imresize_torch(lr, self.scale)  # bicubic pre-upsampling
        x = self.relu(self.conv1(x))  # patch extraction
        x = self.relu(self.conv2(x))  # non-linear mapping
        return self.conv3(x)  # reconstruction
