"""Baselines (EDSR, RCAN, SRCNN, bicubic) and build_model; a tiny real-patch overfit."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cwtnet.losses import L1SSIM, CWTLoss
from cwtnet.model import (
    ARCHS,
    build_from_config,
    build_model,
    has_trainable_params,
    model_config,
    options_for,
)
from cwtnet.model.blocks import MLCAMSR_MEAN, MeanShift
from mlcamsr.errors import InputError
from mlcamsr.resize import imresize, imresize_torch

TINY = {
    "edsr": {"num_feat": 16, "num_block": 2},
    "rcan": {"num_feat": 16, "num_group": 2, "num_block": 2, "reduction": 4},
    "srcnn": {"num_feat1": 16, "num_feat2": 8},
    "bicubic": {},
}


@pytest.mark.parametrize("arch", list(TINY))
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_shapes_and_ref_is_ignored(arch, scale):
    torch.manual_seed(0)
    model = build_model(arch, scale, **TINY[arch]).eval()
    lr = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        sr = model(lr)
        assert sr.shape == (2, 3, 12 * scale, 10 * scale)
        assert torch.equal(sr, model(lr, ref=torch.rand(2, 3, 24, 20)))


@pytest.mark.parametrize("arch", ["edsr", "rcan", "srcnn"])
def test_every_parameter_gets_gradient(arch):
    torch.manual_seed(0)
    model = build_model(arch, 2, **TINY[arch])
    lr, gt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 32, 32)
    L1SSIM()(model(lr), gt).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and model.has_params and has_trainable_params(model)
    missing = [n for n, p in trainable if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing
    # MeanShift stays fixed
    assert all(not p.requires_grad for m in model.modules() if isinstance(m, MeanShift) for p in m.parameters())


def test_bicubic_has_no_parameters_and_is_the_project_bicubic():
    model = build_model("bicubic", 4)
    assert model.has_params is False and not has_trainable_params(model)
    assert not list(model.parameters())
    lr = torch.rand(1, 3, 9, 7)
    assert torch.equal(model(lr), imresize_torch(lr, 4))


def test_literature_defaults():
    edsr = build_model("edsr", 2)
    n_edsr = sum(p.numel() for p in edsr.parameters() if p.requires_grad)
    assert 1.36e6 < n_edsr < 1.38e6  # EDSR-baseline x2: 1.37 M
    rcan = build_model("rcan", 4)
    n_rcan = sum(p.numel() for p in rcan.parameters() if p.requires_grad)
    assert 15.5e6 < n_rcan < 15.7e6  # RCAN x4: 15.6 M
    srcnn = options_for("srcnn")()
    assert (srcnn.kernel1, srcnn.kernel2, srcnn.kernel3, srcnn.num_feat1, srcnn.num_feat2) == (9, 5, 5, 64, 32)


def test_mlcamsr_mean_option():
    model = build_model("edsr", 2, num_feat=8, num_block=1, mean="mlcamsr")
    assert torch.allclose(model.add_mean.bias, torch.tensor(MLCAMSR_MEAN))
    with pytest.raises(ValueError, match="div2k"):
        build_model("edsr", 2, mean="imagenet")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: build_model("vdsr", 2), "cwtnet, edsr, rcan, srcnn, srgan, mwcnn, swdnet, bicubic"),
        (lambda: build_model("edsr", 2, n_resblocks=4), "num_feat, num_block"),
        (lambda: build_model("bicubic", 2, num_feat=4), "none"),
        (lambda: build_model("edsr", 5), "2, 3, 4, 8"),
    ],
)
def test_bad_config_is_one_line_input_error(call, match):
    with pytest.raises(InputError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


@pytest.mark.parametrize("arch", list(TINY))
def test_model_config_round_trips_through_json(arch):
    model = build_model(arch, 4, **TINY[arch])
    cfg = json.loads(json.dumps(model_config(model)))
    again = build_from_config(cfg)
    assert type(again) is type(model) and again.scale == 4
    assert dataclasses.asdict(again.options) == dataclasses.asdict(model.options)
    assert set(ARCHS) == {"cwtnet", "edsr", "rcan", "srcnn", "srgan", "mwcnn", "swdnet", "bicubic"}


def test_cwtnet_config_round_trips_and_package_exports():
    import cwtnet

    for name in ("build_model", "psnr", "ssim", "CWTLoss"):
        assert callable(getattr(cwtnet, name))
    pytest.importorskip("cwtnet.model.cwtnet_arch")
    assert callable(cwtnet.haar_hh) and callable(cwtnet.search_transfer)
    model = build_model("cwtnet", 4, n_cwtb=1, num_feat=8, mean=(0.5, 0.5, 0.5))
    again = build_from_config(json.loads(json.dumps(model_config(model))))
    assert again.scale == 4 and again.options == model.options
    lr = torch.rand(1, 3, 12, 12)
    assert again(lr).shape == (1, 3, 48, 48) and again(lr, torch.rand(1, 3, 24, 24)).shape == (1, 3, 48, 48)


def _real_triplet(shared_data, scale=2, size=48):
    """GT (1, 3, size, size) from a real patch, its bicubic LR, and the x2-coarser reference."""
    img = np.asarray(Image.open(shared_data / "patches" / "kather100k" / "kather1.tif").convert("RGB"))
    gt = img[64 : 64 + size, 64 : 64 + size]
    lr = imresize(gt, scale=1 / scale)
    t = lambda a: torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)[None]  # noqa: E731
    return t(lr), t(gt)


def _overfit(model, loss_fn, lr, gt, ref=None, steps=30, step_lr=2e-3):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=step_lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        out = model.forward_train(lr, ref) if ref is not None else model(lr)
        loss = loss_fn(out, gt)
        loss = loss[0] if isinstance(loss, tuple) else loss
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_tiny_edsr_overfits_one_real_patch(shared_data):
    torch.manual_seed(0)
    lr, gt = _real_triplet(shared_data)
    model = build_model("edsr", 2, num_feat=16, num_block=2, mean="mlcamsr")
    losses = _overfit(model, L1SSIM(), lr, gt)
    assert losses[-1] < 0.5 * losses[0], losses


def test_tiny_cwtnet_with_cwtloss_overfits_one_real_patch(shared_data):
    pytest.importorskip("cwtnet.model.cwtnet_arch")
    torch.manual_seed(0)
    lr, gt = _real_triplet(shared_data)
    # I'_GT: the reference one level coarser than GT, at 2x the LR size (Eq. 1)
    ref = imresize_torch(gt, 2 * lr.shape[-1] / gt.shape[-1])
    model = build_model("cwtnet", 2, n_cwtb=2, num_feat=16)
    losses = _overfit(model, CWTLoss(), lr, gt, ref=ref, step_lr=1e-3)
    assert losses[-1] < 0.5 * losses[0], losses
