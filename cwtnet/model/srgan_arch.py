"""SRGAN (Ledig et al., CVPR 2017): the SRResNet generator and the VGG-style discriminator.

The generator is the ``srgan`` arch of ``build_model`` (images in [0, 1]); the trainer
adds the discriminator and the adversarial step (``cwtnet.adversarial``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class SRGANOptions:
    """SRResNet generator options; defaults are the paper's (16 residual blocks x 64 channels)."""

    num_feat: int = 64
    num_block: int = 16


class SRResBlock(nn.Module):
    """SRResNet residual block: ``x + BN(conv(PReLU(BN(conv(x)))))``.

    Args:
        num_feat (int): Channels. Default: 64.
    """

    def __init__(self, num_feat: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.BatchNorm2d(num_feat), nn.PReLU(),
            nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.BatchNorm2d(num_feat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRGAN(nn.Module):
    """SRGAN generator (SRResNet): Photo-Realistic Single Image Super-Resolution Using a
    Generative Adversarial Network (Ledig et al. 2017), Fig. 4 (top).

    conv 9x9 -> ``num_feat`` + PReLU; ``num_block`` residual blocks (conv-BN-PReLU-conv-BN);
    conv 3x3 + BN and a long skip; log2(scale) stages of conv 3x3 (-> 4x channels) +
    PixelShuffle(2) + PReLU (x3: one stage with PixelShuffle(3)); conv 9x9 -> 3.
    ``ref`` is accepted and ignored.

    Args:
        scale (int): Upsampling factor, 2, 3, 4 or 8. Default: 2.
        options (SRGANOptions): see below; ``None`` means the defaults.
            num_feat (int): Channels. Default: 64.
            num_block (int): Residual blocks. Default: 16.
    """

    has_params = True

    def __init__(self, scale: int = 2, options: SRGANOptions | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.options = opt = options or SRGANOptions()
        nf = opt.num_feat
        self.head = nn.Sequential(nn.Conv2d(3, nf, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(*[SRResBlock(nf) for _ in range(opt.num_block)])
        self.body_tail = nn.Sequential(nn.Conv2d(nf, nf, 3, padding=1), nn.BatchNorm2d(nf))
        factors = [3] if scale == 3 else [2] * (int(scale).bit_length() - 1)
        if scale != 3 and 2 ** len(factors) != scale:
            raise ValueError(f"scale {scale} is not supported; choose 2, 3, 4 or 8")
        ups: list[nn.Module] = []
        for f in factors:
            ups += [nn.Conv2d(nf, nf * f * f, 3, padding=1), nn.PixelShuffle(f), nn.PReLU()]
        self.upsample = nn.Sequential(*ups)
        self.conv_last = nn.Conv2d(nf, 3, 9, padding=4)

    def forward(self, lr: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        x = self.head(lr)
        x = x + self.body_tail(self.body(x))
        return self.conv_last(self.upsample(x))


class SRGANDiscriminator(nn.Module):
    """SRGAN discriminator (Ledig et al. 2017, Fig. 4 bottom), for any input size.

    conv 3x3 64 + LeakyReLU(0.2); then 7 conv-BN-LeakyReLU layers with channels
    64, 128, 128, 256, 256, 512, 512 and strides 2, 1, 2, 1, 2, 1, 2; dense 1024 +
    LeakyReLU; dense 1 (a logit: real > 0). The paper's dense layer sees a fixed 6x6x512
    map of a 96-px crop; here an adaptive average pool to ``pool`` x ``pool`` comes first so
    the training patch size is free (the only change).

    Args:
        num_feat (int): Channels of the first layer (doubling every second layer). Default: 64.
        pool (int): Side of the pooled map before the dense layers. Default: 4.
    """

    def __init__(self, num_feat: int = 64, pool: int = 4) -> None:
        super().__init__()
        nf = num_feat
        chans = [nf, nf, 2 * nf, 2 * nf, 4 * nf, 4 * nf, 8 * nf, 8 * nf]
        layers: list[nn.Module] = [nn.Conv2d(3, nf, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        for i in range(1, 8):
            layers += [nn.Conv2d(chans[i - 1], chans[i], 3, stride=1 if i % 2 == 0 else 2, padding=1),
                       nn.BatchNorm2d(chans[i]), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * nf * pool * pool, 1024),
                                        nn.LeakyReLU(0.2, inplace=True), nn.Linear(1024, 1))
        self.num_feat, self.pool_side = num_feat, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 3, H, W) in [0, 1] -> logits (B, 1)."""
        return self.classifier(self.pool(self.features(x * 2 - 1)))
