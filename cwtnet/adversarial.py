"""SRGAN's adversarial training step (Ledig et al., CVPR 2017, Eq. 3-6), for the trainer.

Generator loss (``generator_loss``)::

    l_G = l_content + adv_weight * BCE(D(G(lr)), real)

``l_content`` is the VGG54 loss of the paper, MSE between the ``relu5_4`` features of a
frozen ImageNet VGG19 of SR and GT, each divided by 12.75 (the paper's rescaling), when
``vgg_weights`` (a torchvision ``vgg19`` state dict, loaded with ``weights_only=True``)
is given. Those weights cannot be downloaded here, so **without them the content loss
is the trainer's own pixel loss** (the same L1 + SSIM every other arch trains with) and
every table labels the run "SRGAN (pixel content loss: no VGG19 weights)"
(``cwtnet.evaluate._label``). ``adv_weight = 0`` trains the generator alone (SRResNet).

Discriminator step (``discriminator_step``), after each generator step::

    l_D = BCE(D(gt), real) + BCE(D(G(lr).detach()), fake)

with its own Adam (``d_lr``, betas 0.9 / 0.999). Its weights and optimizer state are in
the checkpoint (``state_dict``), so ``--resume`` continues exactly. Unlike the paper the
generator is not first pre-trained as SRResNet: both start together (a short CPU run
would otherwise be all pre-training).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cwtnet.model.srgan_arch import SRGANDiscriminator
from cwtnet.model.vgg_arch import VGGFeatures

VGG_SCALE = 12.75
"""The paper's rescaling of VGG feature maps (Section 2.2.1)."""


class AdversarialStep(nn.Module):
    """Discriminator, its optimizer and the SRGAN generator loss.

    Args:
        adv_weight (float): Weight of the adversarial term (paper: 1e-3).
        vgg (str | VGGFeatures | None): torchvision ``vgg19`` state dict (path) or an already
            loaded ``VGGFeatures`` for the VGG54 content loss; ``None``: the pixel content loss
            given to ``generator_loss``.
        d_lr (float): Adam learning rate of the discriminator. Default: 1e-4.
        d_feat (int): Channels of the discriminator's first layer (paper: 64). Default: 64.
        vgg_width_div (int): VGG channel divisor (tests only). Default: 1.
    """

    def __init__(self, adv_weight: float, vgg: str | VGGFeatures | None = None, d_lr: float = 1e-4,
                 d_feat: int = 64, vgg_width_div: int = 1) -> None:
        super().__init__()
        self.adv_weight = float(adv_weight)
        self.discriminator = SRGANDiscriminator(d_feat)
        if isinstance(vgg, str):
            vgg = VGGFeatures("relu5_4", weights=vgg, width_div=vgg_width_div)
        self.vgg = vgg
        self.d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=d_lr, betas=(0.9, 0.999))

    @property
    def content(self) -> str:
        """``"vgg54"`` or ``"pixel"``: which content loss the generator gets."""
        return "vgg54" if self.vgg is not None else "pixel"

    def generator_loss(self, sr: torch.Tensor, gt: torch.Tensor,
                       pixel_loss: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``l_G`` for the SR batch; ``pixel_loss`` is the trainer's loss (the fallback content)."""
        if self.vgg is not None:
            content = F.mse_loss(self.vgg(sr) / VGG_SCALE, self.vgg(gt) / VGG_SCALE)
        else:
            content = pixel_loss
        for p in self.discriminator.parameters():
            p.requires_grad_(False)
        try:
            logits = self.discriminator(sr)
        finally:
            for p in self.discriminator.parameters():
                p.requires_grad_(True)
        adv = F.binary_cross_entropy_with_logits(logits.float(), torch.ones_like(logits, dtype=torch.float32))
        total = content + self.adv_weight * adv
        return total, {"content": float(content.detach()), "g_adv": float(adv.detach())}

    def discriminator_step(self, sr: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
        """One Adam step of the discriminator on real ``gt`` and fake ``sr`` (detached)."""
        real = self.discriminator(gt).float()
        fake = self.discriminator(sr.detach()).float()
        loss = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        self.d_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.d_opt.step()
        return {"d_loss": float(loss.detach()), "d_real": float(torch.sigmoid(real.detach()).mean()),
                "d_fake": float(torch.sigmoid(fake.detach()).mean())}

    def checkpoint_state(self) -> dict[str, Any]:
        """What the checkpoint stores: discriminator weights and optimizer state."""
        return {"discriminator": self.discriminator.state_dict(), "d_optimizer": self.d_opt.state_dict(),
                "adv_weight": self.adv_weight, "content": self.content}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``checkpoint_state`` (``--resume``)."""
        self.discriminator.load_state_dict(state["discriminator"])
        self.d_opt.load_state_dict(state["d_optimizer"])
