"""MWCNN (Liu et al., CVPR-W 2018), the 24-layer SR network of its Fig. 3, images in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cwtnet.model.blocks import pad_to_multiple
from cwtnet.model.wavelet import dwt_haar, idwt_haar
from mlcamsr.resize import imresize_torch


@dataclass
class MWCNNOptions:
    """MWCNN options; defaults are the paper's 3 levels of 160 / 256 / 256 channels with
    4 conv layers per level on each side (24 layers in all), without batch norm as in the
    authors' PyTorch code (the paper's Fig. 3 has it: ``batch_norm=True``)."""

    channels: tuple[int, int, int] = (160, 256, 256)
    convs_per_level: int = 4
    batch_norm: bool = False


def _dwt(x: torch.Tensor) -> torch.Tensor:
    """(B, C, 2h, 2w) -> (B, 4C, h, w): the four Haar sub-bands stacked band-major."""
    return torch.cat(dwt_haar(x), dim=1)


def _iwt(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``_dwt``: (B, 4C, h, w) -> (B, C, 2h, 2w)."""
    return idwt_haar(*torch.chunk(x, 4, dim=1))


class ConvBNReLU(nn.Sequential):
    """3x3 convolution, batch norm (optional), ReLU: one MWCNN layer.

    Args:
        in_ch (int): Input channels.
        out_ch (int): Output channels.
        batch_norm (bool): Insert ``BatchNorm2d``. Default: True.
    """

    def __init__(self, in_ch: int, out_ch: int, batch_norm: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def _stack(first_in: int, ch: int, n: int, bn: bool, last_out: int | None = None) -> nn.Sequential:
    """``n`` layers: ``first_in -> ch``, ``ch -> ch`` ..., and the last to ``last_out`` when given."""
    layers = []
    for i in range(n):
        cin = first_in if i == 0 else ch
        cout = last_out if (last_out is not None and i == n - 1) else ch
        layers.append(ConvBNReLU(cin, cout, bn))
    return nn.Sequential(*layers)


class MWCNN(nn.Module):
    """MWCNN: Multi-level Wavelet-CNN for Image Restoration (Liu, Zhang, Zhang, Lin, Zuo; CVPR-W 2018).

    A U-Net whose pooling is the Haar DWT and whose up-sampling is the inverse DWT
    (``cwtnet.model.wavelet``, orthonormal, so no information is lost at a level change).
    As in the paper's SR setting the LR image is first upsampled by the project's bicubic
    (``imresize_torch``) and the network predicts the residual to it. Contracting side,
    level ``l`` (1..3): DWT (4x the channels, half the side), then ``convs_per_level``
    conv-BN-ReLU layers, the first mapping to ``channels[l-1]``. Expanding side, level 3
    to 1: ``convs_per_level`` layers, the last mapping to 4x the channels of the level
    below (12 = the image's 4 sub-bands at level 1, without BN/ReLU), inverse DWT, and an
    element-wise sum with the contracting features of that level. Sides not divisible by
    8 are reflect-padded and cropped back. ``ref`` is accepted and ignored.

    Args:
        scale (int): Upsampling factor, 2, 3, 4 or 8. Default: 2.
        options (MWCNNOptions): see below; ``None`` means the defaults.
            channels (tuple[int, int, int]): Channels at levels 1, 2, 3. Default: (160, 256, 256).
            convs_per_level (int): Layers per level and side (paper: 4). Default: 4.
            batch_norm (bool): Batch norm after each convolution (paper's Fig. 3: yes; the
                authors' PyTorch code: no). Default: False. Measured here (docs/benchmarks.md):
                with batch norm, 120 CPU steps at batch 8 left running statistics that wreck
                eval-mode output (7-10 dB PSNR against 26-28 dB with batch statistics).
    """

    has_params = True
    levels = 3

    def __init__(self, scale: int = 2, options: MWCNNOptions | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.options = opt = options or MWCNNOptions()
        c1, c2, c3 = (int(c) for c in opt.channels)
        n, bn = int(opt.convs_per_level), bool(opt.batch_norm)
        if n < 2:
            raise ValueError(f"convs_per_level must be >= 2, got {n}")
        self.down1 = _stack(12, c1, n, bn)
        self.down2 = _stack(4 * c1, c2, n, bn)
        self.down3 = _stack(4 * c2, c3, n, bn)
        self.up3 = _stack(c3, c3, n, bn, last_out=4 * c2)
        self.up2 = _stack(c2, c2, n, bn, last_out=4 * c1)
        self.up1 = _stack(c1, c1, n - 1, bn)
        self.tail = nn.Conv2d(c1, 12, 3, padding=1)  # the image's 4 sub-bands, no BN/ReLU

    def forward(self, lr: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        up = imresize_torch(lr, self.scale)  # bicubic pre-upsampling, as in the paper's SR
        x, (h, w) = pad_to_multiple(up, 2**self.levels)
        f1 = self.down1(_dwt(x))
        f2 = self.down2(_dwt(f1))
        f3 = self.down3(_dwt(f2))
        y2 = _iwt(self.up3(f3)) + f2
        y1 = _iwt(self.up2(y2)) + f1
        res = _iwt(self.tail(self.up1(y1)))
        return up + res[..., :h, :w]
