"""SWD-Net (Chen et al., MICCAI 2020): joint spatial-wavelet dual-stream SR for histopathology.

Written from the paper's description, with the authors' public code (franciszchen/SWD-Net)
read to settle layer sizes; no code is copied. Images in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from cwtnet.model.blocks import Upsampler, pad_to_multiple
from cwtnet.model.wavelet import dwt_haar, idwt_haar


@dataclass
class SWDNetOptions:
    """SWD-Net options; defaults are the authors' network (64 -> 32 channels in the spatial
    stage, 2 dual-stream modules of 3 stages x 4 residual blocks per stream, wavelet stage
    with 24 / 96 channels in its upper / lower stream)."""

    head_feat: int = 64
    num_feat: int = 32
    num_modules: int = 2
    num_stages: int = 3
    num_block: int = 4
    wave_feat: int = 24


def _dwt(x: torch.Tensor) -> torch.Tensor:
    """Haar wavelet packet, one level: (B, C, 2h, 2w) -> (B, 4C, h, w)."""
    return torch.cat(dwt_haar(x), dim=1)


def _iwt(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``_dwt``: (B, 4C, h, w) -> (B, C, 2h, 2w)."""
    return idwt_haar(*torch.chunk(x, 4, dim=1))


class ResBlockP(nn.Module):
    """Residual block without BN, PReLU activations: ``prelu(x + conv(prelu(conv(x))))``.

    Args:
        num_feat (int): Channels.
    """

    def __init__(self, num_feat: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.act1 = nn.PReLU(num_feat)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.act2 = nn.PReLU(num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(x + self.conv2(self.act1(self.conv1(x))))


class SqueezeExcite(nn.Module):
    """Channel gate ``x * gate(fc(relu(fc(avgpool(x)))))``; ``gate`` sigmoid (SE) or tanh (WFA).

    Args:
        num_feat (int): Channels.
        reduction (int): Bottleneck reduction. Default: 2.
        gate (str): ``"sigmoid"`` or ``"tanh"``. Default: ``"sigmoid"``.
    """

    def __init__(self, num_feat: int, reduction: int = 2, gate: str = "sigmoid") -> None:
        super().__init__()
        hidden = max(1, num_feat // reduction)
        act: nn.Module = nn.PReLU(hidden) if gate == "tanh" else nn.ReLU(inplace=True)
        self.fc = nn.Sequential(nn.Linear(num_feat, hidden), act, nn.Linear(hidden, num_feat),
                                nn.Tanh() if gate == "tanh" else nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[..., None, None]


class RCF(nn.Module):
    """Refined context fusion (the paper's Eq. 1): ``SE(backbone) + W2 relu(W1 c)``, where the
    context ``c`` (B, C, 1, 1) is the ``bypass`` stream pooled with a spatial softmax
    attention predicted from ``backbone``. (The released code computes the added term and
    then drops it; here it is added, as the paper describes.)

    Args:
        num_feat (int): Channels of both streams.
        reduction (int): Bottleneck of SE and of the context transform. Default: 2.
    """

    def __init__(self, num_feat: int, reduction: int = 2) -> None:
        super().__init__()
        self.se = SqueezeExcite(num_feat, reduction)
        self.mask = nn.Conv2d(num_feat, 1, 1, bias=False)  # a bias cancels in the softmax
        hidden = max(1, num_feat // reduction)
        self.transform = nn.Sequential(nn.Conv2d(num_feat, hidden, 1), nn.ReLU(inplace=True),
                                       nn.Conv2d(hidden, num_feat, 1))

    def forward(self, backbone: torch.Tensor, bypass: torch.Tensor) -> torch.Tensor:
        b, c = bypass.shape[:2]
        attn = torch.softmax(self.mask(backbone).flatten(2), dim=-1)  # (B, 1, HW)
        context = torch.bmm(bypass.flatten(2), attn.transpose(1, 2)).view(b, c, 1, 1)
        return self.se(backbone) + self.transform(context)


class DualStreamStage(nn.Module):
    """One stage of a spatial dual-stream module: ``num_block`` residual blocks on the full-
    and the half-resolution stream, then each stream fuses the other through an RCF
    (half -> full: 1x1 conv + nearest x2; full -> half: strided 3x3 conv), LeakyReLU 0.1.

    Args:
        num_feat (int): Channels of both streams.
        num_block (int): Residual blocks per stream.
        both_outputs (bool): Return both streams (``False``: the full-resolution one only).
    """

    def __init__(self, num_feat: int, num_block: int, both_outputs: bool = True) -> None:
        super().__init__()
        self.full_blocks = nn.Sequential(*[ResBlockP(num_feat) for _ in range(num_block)])
        self.half_blocks = nn.Sequential(*[ResBlockP(num_feat) for _ in range(num_block)])
        self.half_to_full = nn.Conv2d(num_feat, num_feat, 1)
        self.rcf_full = RCF(num_feat)
        self.both_outputs = both_outputs
        if both_outputs:
            self.full_to_half = nn.Conv2d(num_feat, num_feat, 3, stride=2, padding=1)
            self.rcf_half = RCF(num_feat)
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, full: torch.Tensor, half: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        full, half = self.full_blocks(full), self.half_blocks(half)
        up = F.interpolate(self.half_to_full(half), size=full.shape[-2:], mode="nearest")
        out_full = self.act(self.rcf_full(full, up))
        out_half = self.act(self.rcf_half(half, self.full_to_half(full))) if self.both_outputs else None
        return out_full, out_half


class DualStreamModule(nn.Module):
    """Spatial dual-stream module: the half-resolution stream is made from the input by a
    strided 3x3 conv + PReLU, then ``num_stages`` dual-stream stages carry both streams;
    the last returns the full-resolution one.

    Args:
        num_feat (int): Channels.
        num_stages (int): Stages (paper: 3).
        num_block (int): Residual blocks per stream and stage (paper: 4).
    """

    def __init__(self, num_feat: int, num_stages: int, num_block: int) -> None:
        super().__init__()
        self.transition = nn.Sequential(nn.Conv2d(num_feat, num_feat, 3, stride=2, padding=1),
                                        nn.PReLU(num_feat))
        self.stages = nn.ModuleList(DualStreamStage(num_feat, num_block, both_outputs=i < num_stages - 1)
                                    for i in range(num_stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full, half = x, self.transition(x)
        for stage in self.stages:
            full, half = stage(full, half)
        return full


class WAC(nn.Module):
    """Wavelet-aware convolution: four parallel paths summed, a 3x3 conv (approximation),
    two 1x3 convs (horizontal detail), two 3x1 (vertical) and two 3x3 (diagonal), PReLU each.

    Args:
        in_ch (int): Input channels.
        out_ch (int): Output channels.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()

        def path(k: tuple[int, int], n: int) -> nn.Sequential:
            pad = (k[0] // 2, k[1] // 2)
            layers: list[nn.Module] = []
            for i in range(n):
                layers += [nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, k, padding=pad), nn.PReLU(out_ch)]
            return nn.Sequential(*layers)

        self.low = path((3, 3), 1)
        self.horizontal = path((1, 3), 2)
        self.vertical = path((3, 1), 2)
        self.diagonal = path((3, 3), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.low(x) + self.horizontal(x) + self.vertical(x) + self.diagonal(x)


class WaveletStage(nn.Module):
    """Wavelet stage: refines the spatial SR in the Haar wavelet-packet domain.

    Level-1 packet (12 channels, half side) = upper stream, level-2 (48 channels, quarter
    side) = lower stream, each adapted by WFA (SE with a tanh gate), then 3 rounds of
    WAC encoder + WAC decoder per stream with RCF exchange between rounds (upper gets the
    inverse DWT of the lower, lower gets the DWT of the upper); the result plus the input's
    level-1 packet is inverted to the image.

    Args:
        wave_feat (int): Channels of the upper stream (the lower uses 4x). Default: 24.
    """

    def __init__(self, wave_feat: int = 24) -> None:
        super().__init__()
        c, d = wave_feat, 4 * wave_feat
        self.wfa_up, self.wfa_down = SqueezeExcite(12, 2, "tanh"), SqueezeExcite(48, 2, "tanh")
        self.up = nn.ModuleList([nn.Sequential(WAC(12, c), WAC(c, c)), nn.Sequential(WAC(c, c), WAC(c, c)),
                                 nn.Sequential(WAC(c, c), WAC(c, 12))])
        self.down = nn.ModuleList([nn.Sequential(WAC(48, d), WAC(d, d)), nn.Sequential(WAC(d, d), WAC(d, d)),
                                   nn.Sequential(WAC(d, d), WAC(d, 48))])
        self.rcf_up = nn.ModuleList([RCF(c), RCF(c), RCF(12)])
        self.rcf_down = nn.ModuleList([RCF(d), RCF(d)])
        self.conv_final = nn.Conv2d(12, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_up = _dwt(x)
        u = self.up[0](self.wfa_up(w_up))
        v = self.down[0](self.wfa_down(_dwt(w_up)))
        for i in (1, 2):
            u, v = (self.up[i](self.rcf_up[i - 1](u, _iwt(v))),
                    self.down[i](self.rcf_down[i - 1](v, _dwt(u))))
        return _iwt(self.conv_final(self.rcf_up[2](u, _iwt(v))) + w_up)


class SWDNet(nn.Module):
    """SWD-Net: Joint Spatial-Wavelet Dual-Stream Network for Super-Resolution
    (Chen, Guo, Yang, Ibragimov, Yuan; MICCAI 2020).

    Spatial stage: conv 3 -> ``head_feat`` + PReLU, a residual block, conv -> ``num_feat``
    + PReLU, a residual block, ``num_modules`` dual-stream modules (each with a skip), the
    concatenation of their outputs reduced to ``num_feat`` channels, a sub-pixel upsampler
    (``Upsampler``: the paper's x2 generalised to 2, 3, 4, 8), conv 3x3 + PReLU, conv 1x1 +
    PReLU, conv -> 3, plus the nearest-upsampled input. Wavelet stage (``WaveletStage``)
    then refines that image; its output is the SR image. The paper supervises both stages'
    outputs; here the trainer's single loss supervises the final one. SR sides not
    divisible by 4 are reflect-padded for the wavelet stage and cropped back.
    ``ref`` is accepted and ignored.

    Args:
        scale (int): Upsampling factor, 2, 3, 4 or 8. Default: 2.
        options (SWDNetOptions): see below; ``None`` means the defaults.
            head_feat (int): Channels of the first convolution. Default: 64.
            num_feat (int): Channels of the spatial dual-stream body. Default: 32.
            num_modules (int): Dual-stream modules (paper: 2). Default: 2.
            num_stages (int): Stages per module (paper: 3). Default: 3.
            num_block (int): Residual blocks per stream and stage (paper: 4). Default: 4.
            wave_feat (int): Upper-stream channels of the wavelet stage (lower: 4x). Default: 24.
    """

    has_params = True

    def __init__(self, scale: int = 2, options: SWDNetOptions | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.options = opt = options or SWDNetOptions()
        hf, nf = opt.head_feat, opt.num_feat
        self.head = nn.Sequential(nn.Conv2d(3, hf, 3, padding=1), nn.PReLU(hf), ResBlockP(hf),
                                  nn.Conv2d(hf, nf, 3, padding=1), nn.PReLU(nf), ResBlockP(nf))
        self.modules_ = nn.ModuleList(DualStreamModule(nf, opt.num_stages, opt.num_block)
                                      for _ in range(opt.num_modules))
        self.fuse = nn.Sequential(nn.Conv2d(nf * opt.num_modules, nf, 3, padding=1), nn.PReLU(nf))
        self.upsample = Upsampler(scale, nf)
        self.tail = nn.Sequential(nn.Conv2d(nf, nf, 3, padding=1), nn.PReLU(nf), nn.Conv2d(nf, nf, 1),
                                  nn.PReLU(nf), nn.Conv2d(nf, 3, 3, padding=1))
        self.wavelet = WaveletStage(opt.wave_feat)

    def spatial(self, lr: torch.Tensor) -> torch.Tensor:
        """The spatial stage's SR (B, 3, sH, sW)."""
        x = self.head(lr)
        feats = []
        for module in self.modules_:
            x = module(x) + x
            feats.append(x)
        y = self.tail(self.upsample(self.fuse(torch.cat(feats, dim=1))))
        return y + F.interpolate(lr, scale_factor=self.scale, mode="nearest")

    def forward(self, lr: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        sr, (h, w) = pad_to_multiple(self.spatial(lr), 4)
        return self.wavelet(sr)[..., :h, :w]
