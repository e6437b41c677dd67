"""LPIPS without torchvision: the distance's properties on a tiny random backbone, the
offline file lookup, and 'unavailable' (never 0) without weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cwtnet.lpips import LPIPS, SCALE, SHIFT, backbone_features, load_lpips, lpips_files
from cwtnet.metrics import lpips_score, lpips_status


def _tiny(net: str) -> LPIPS:
    torch.manual_seed(0)
    feats = backbone_features(net, width_div=8)
    convs = [m for m in feats if isinstance(m, torch.nn.Conv2d)]
    taps = [0, 1, 2, 3, 4] if net == "alex" else [1, 3, 6, 9, 12]
    return LPIPS(net, feats, [torch.rand(convs[j].out_channels) for j in taps])


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_distance_properties_on_a_tiny_random_backbone(net):
    model = _tiny(net)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    assert torch.allclose(model(x, x), torch.zeros(2), atol=1e-7)
    dxy = model(x, y)
    assert (dxy > 0).all() and torch.allclose(dxy, model(y, x))
    # the formula, written out once more
    want = torch.zeros(2)
    shift, scale = torch.tensor(SHIFT).view(1, 3, 1, 1), torch.tensor(SCALE).view(1, 3, 1, 1)
    fx, fy = (x * 2 - 1 - shift) / scale, (y * 2 - 1 - shift) / scale
    k = 0
    for i, layer in enumerate(model.features):
        fx, fy = layer(fx), layer(fy)
        if i in model.taps:
            nx = fx / (fx.norm(dim=1, keepdim=True) + 1e-10)
            ny = fy / (fy.norm(dim=1, keepdim=True) + 1e-10)
            want += (model.lin[k].view(1, -1, 1, 1) * (nx - ny) ** 2).sum(1).mean((1, 2))
            k += 1
    assert torch.allclose(dxy, want, rtol=1e-5)
    # a lighter distortion is closer than a heavier one
    assert (model(x, (x + 0.02).clamp(0, 1)) < model(x, (x + 0.2).clamp(0, 1))).all()


def test_lpips_is_unavailable_without_files_and_never_zero(tmp_path, shared_data):
    img = np.asarray(Image.open(shared_data / "patches" / "kather100k" / "kather1.tif").convert("RGB"))[:64, :64]
    status = lpips_status("alex", tmp_path)
    assert status.startswith("unavailable") and "alexnet" in status
    assert lpips_score(img, img[::-1].copy(), "alex", tmp_path) is None
    assert lpips_status("alex", tmp_path / "nope").startswith("unavailable: --lpips-weights")


def test_lpips_loads_local_torchvision_backbone_and_linear_heads(tmp_path, shared_data):
    torch.manual_seed(0)
    feats = backbone_features("alex")
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, tmp_path / "alexnet-owt-7be5be79.pth")
    assert lpips_files("alex", tmp_path)[2].startswith("unavailable: no LPIPS linear weights")
    chans = [64, 192, 384, 256, 256]
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(chans)}, tmp_path / "alex.pth")
    assert lpips_status("alex", tmp_path) == "ok"
    img = np.asarray(Image.open(shared_data / "patches" / "kather100k" / "kather1.tif").convert("RGB"))[:64, :64]
    assert lpips_score(img, img, "alex", tmp_path) == pytest.approx(0.0, abs=1e-7)
    assert lpips_score(img, np.ascontiguousarray(img[::-1]), "alex", tmp_path) > 0
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, 3, 1, 1) for i in range(5)}, tmp_path / "alex.pth")
    with pytest.raises(ValueError, match="not the lpips v0.1 alex.pth"):
        load_lpips("alex", tmp_path)
