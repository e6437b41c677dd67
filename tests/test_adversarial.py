"""SRGAN's adversarial step: losses, a discriminator that learns, VGG54 content with local
torchvision-layout weights, and a checkpoint round trip that resumes exactly."""

from __future__ import annotations

import torch

from cwtnet.adversarial import AdversarialStep
from cwtnet.model import build_model
from cwtnet.model.vgg_arch import VGG19


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lr = torch.rand(4, 3, 16, 16, generator=g)
    gt = torch.nn.functional.interpolate(lr, scale_factor=2, mode="bilinear", align_corners=False)
    return lr, (gt + 0.05 * torch.rand(gt.shape, generator=g)).clamp(0, 1)


def _steps(g, adv, g_opt, n, seed=0):
    out = []
    for i in range(n):
        lr, gt = _batch(seed + i)
        sr = g(lr)
        pixel = torch.nn.functional.l1_loss(sr, gt)
        loss, terms = adv.generator_loss(sr, gt, pixel)
        g_opt.zero_grad()
        loss.backward()
        g_opt.step()
        out.append({**terms, **adv.discriminator_step(sr, gt)})
    return out


def test_pixel_fallback_trains_both_and_the_discriminator_gets_no_generator_gradient():
    torch.manual_seed(0)
    g = build_model("srgan", 2, num_feat=8, num_block=1)
    adv = AdversarialStep(1e-3, d_feat=8)
    assert adv.content == "pixel"
    g_opt = torch.optim.Adam(g.parameters(), 1e-3)
    lr, gt = _batch()
    sr = g(lr)
    pixel = torch.nn.functional.l1_loss(sr, gt)
    loss, terms = adv.generator_loss(sr, gt, pixel)
    assert torch.allclose(loss, pixel + 1e-3 * torch.tensor(terms["g_adv"]), atol=1e-6)
    loss.backward()
    assert all(p.grad is None for p in adv.discriminator.parameters())  # G's loss leaves D alone
    assert all(p.requires_grad for p in adv.discriminator.parameters())
    hist = _steps(g, adv, g_opt, 12)
    # the discriminator learns to tell GT from this early generator
    assert hist[-1]["d_loss"] < hist[0]["d_loss"] and hist[-1]["d_real"] > hist[-1]["d_fake"]


def test_vgg54_content_with_local_weights(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "vgg19.pth"
    torch.save(VGG19(width_div=16).state_dict(), path)
    adv = AdversarialStep(1e-3, vgg=str(path), d_feat=8, vgg_width_div=16)
    assert adv.content == "vgg54"
    lr, gt = _batch()
    _, same = adv.generator_loss(gt, gt, torch.tensor(5.0))
    blocky = lr.repeat_interleave(2, -1).repeat_interleave(2, -2)
    _, other = adv.generator_loss(blocky, gt, torch.tensor(5.0))
    assert same["content"] == 0.0 and other["content"] > 0  # VGG features, not the pixel loss given
    assert not any(p.requires_grad for p in adv.vgg.parameters())


def test_checkpoint_state_resumes_exactly():
    def fresh():
        torch.manual_seed(0)
        return build_model("srgan", 2, num_feat=8, num_block=1), AdversarialStep(1e-2, d_feat=8)

    g, adv = fresh()
    opt = torch.optim.Adam(g.parameters(), 1e-3)
    straight = _steps(g, adv, opt, 6)
    g2, adv2 = fresh()
    opt2 = torch.optim.Adam(g2.parameters(), 1e-3)
    _steps(g2, adv2, opt2, 3)
    saved = {"g": g2.state_dict(), "opt": opt2.state_dict(), "adv": adv2.checkpoint_state()}
    g3, adv3 = build_model("srgan", 2, num_feat=8, num_block=1), AdversarialStep(1e-2, d_feat=8)
    opt3 = torch.optim.Adam(g3.parameters(), 1e-3)
    g3.load_state_dict(saved["g"])
    opt3.load_state_dict(saved["opt"])
    adv3.load_checkpoint_state(saved["adv"])
    resumed = _steps(g3, adv3, opt3, 3, seed=3)
    assert resumed == straight[3:]
