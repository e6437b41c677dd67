"""SSIM loss and the CWT-Net loss variants (Eq. 10-14, Table IV)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from cwtnet.losses import L1SSIM, VARIANTS, CWTLoss, ssim_torch


def _f(t) -> float:
    return float(t.detach()) if torch.is_tensor(t) else float(t)


def _pair(shape=(2, 3, 24, 20), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def _out(seed=0, wr=False):
    g = torch.Generator().manual_seed(seed)
    sr, gt = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    wt = (0.1 * torch.randn(2, 3, 16, 16, generator=g)).requires_grad_()
    out = {"sr": sr.requires_grad_(), "wt": wt, "wt_target": 0.1 * torch.randn(2, 3, 16, 16, generator=g)}
    if wr:
        out["wr"] = 0.1 * torch.randn(2, 3, 16, 16, generator=g)
        out["wr_target"] = 0.1 * torch.randn(2, 3, 16, 16, generator=g)
    return out, gt


def test_ssim_torch_equals_skimage__f():
    x, y = _pair()
    per = ssim_torch(x, y, reduction="none")
    for b in range(2):
        sk = structural_similarity(
            x[b].permute(1, 2, 0).numpy(), y[b].permute(1, 2, 0).numpy(), gaussian_weights=True,
            sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1,
        )
        assert _f(per[b].mean()) == pytest.approx(sk, abs=1e-9)
    assert _f(ssim_torch(x, y)) == pytest.approx(_f(per.mean()), abs=1e-12)


def test_ssim_is_one_for_identical_and_differentiable():
    x, y = _pair(seed=1)
    assert _f(ssim_torch(x, x)) == pytest.approx(1.0, abs=1e-12)
    y = y.float().requires_grad_()
    (1 - ssim_torch(x.float(), y)).backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_ssim_runs_on_bf16_and_negative_bands():
    x, y = _pair(seed=2)
    v = ssim_torch(x.bfloat16(), y.bfloat16())
    assert v.dtype == torch.float32 and abs(_f(v) - _f(ssim_torch(x, y))) < 0.02
    hh = 0.05 * torch.randn(1, 3, 16, 16)
    assert torch.isfinite(ssim_torch(hh, -hh, data_range=1.0))


def test_ssim_ignores_autocast():
    x, y = _pair(seed=3)
    x, y = x.float(), y.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = ssim_torch(x, y)
    assert v.dtype == torch.float32 and _f(v) == pytest.approx(_f(ssim_torch(x, y)), abs=1e-6)


def test_ssim_rejects_small_images():
    with pytest.raises(ValueError, match="at least 11"):
        ssim_torch(torch.rand(1, 3, 10, 30), torch.rand(1, 3, 10, 30))


def test_l1ssim_is_l1_plus_weighted_dssim():
    x, y = _pair()
    want = F.l1_loss(x, y) + 0.2 * (1 - ssim_torch(x, y))
    assert _f(L1SSIM()(x, y)) == pytest.approx(_f(want), abs=1e-12)
    assert _f(L1SSIM(0.0, "mse")(x, y)) == pytest.approx(_f(F.mse_loss(x, y)), abs=1e-12)


def _branch(p, t, lam=0.2, pixel=F.l1_loss):
    return pixel(p, t) + (lam * (1 - ssim_torch(p, t)) if lam else 0)


def test_default_is_eq10_with_paper_weights():
    out, gt = _out()
    total, parts = CWTLoss()(out, gt)
    want = 0.3 * _branch(out["sr"], gt) + 0.7 * _branch(out["wt"], out["wt_target"])
    assert _f(total) == pytest.approx(_f(want), abs=1e-6)
    assert parts["total"] == pytest.approx(_f(total))
    assert {"sr", "sr_pix", "sr_ssim", "wt", "wt_pix", "wt_ssim"} <= set(parts)


def test_only_sr_ignores_wt():
    out, gt = _out()
    total, parts = CWTLoss(variant="only_sr")(out, gt)
    total.backward()
    assert out["wt"].grad is None and "wt" not in parts
    out2 = dict(out, wt=out["wt"].detach() + 1.0)
    assert _f(CWTLoss(variant="only_sr")(out2, gt)[0]) == pytest.approx(_f(total))


def test_only_wt_ignores_sr():
    out, gt = _out()
    total, _ = CWTLoss(variant="only_wt")(out, gt)
    assert _f(total) == pytest.approx(_f(0.7 * _branch(out["wt"], out["wt_target"])), abs=1e-6)


@pytest.mark.parametrize(
    "variant, want",
    [
        ("weight_exchange", lambda o, g: 0.7 * _branch(o["sr"], g) + 0.3 * _branch(o["wt"], o["wt_target"])),
        ("only_l1", lambda o, g: 0.3 * F.l1_loss(o["sr"], g) + 0.7 * F.l1_loss(o["wt"], o["wt_target"])),
        ("only_mse", lambda o, g: 0.3 * F.mse_loss(o["sr"], g) + 0.7 * F.mse_loss(o["wt"], o["wt_target"])),
    ],
)
def test_table_iv_variants(variant, want):
    out, gt = _out()
    total, parts = CWTLoss(variant=variant)(out, gt)
    assert _f(total) == pytest.approx(_f(want(out, gt)), abs=1e-6)
    if variant.startswith("only_"):
        assert "sr_ssim" not in parts


def test_wr_term_adds_with_its_weight():
    out, gt = _out(wr=True)
    base, _ = CWTLoss(lambda_wr=0.0)(out, gt)
    total, parts = CWTLoss(lambda_wr=0.5)(out, gt)
    assert _f(total - base) == pytest.approx(0.5 * _f(_branch(out["wr"], out["wr_target"])), abs=1e-6)
    assert "wr" in parts


def test_tensor_output_is_l_sr_alone():
    out, gt = _out()
    total, parts = CWTLoss()(out["sr"], gt)
    assert _f(total) == pytest.approx(_f(_branch(out["sr"], gt)), abs=1e-6)
    assert set(parts) == {"sr", "sr_pix", "sr_ssim", "total"}


def test_unknown_variant_lists_choices():
    with pytest.raises(ValueError, match="only_mse"):
        CWTLoss(variant="nope")
    assert len(VARIANTS) == 6 and np.all([isinstance(v, str) for v in VARIANTS])
