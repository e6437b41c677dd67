"""Issue 13 networks: MWCNN, SWD-Net, SRGAN (generator + discriminator), ResNet-50, VGG19."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cwtnet.losses import L1SSIM
from cwtnet.model import build_from_config, build_model, model_config
from cwtnet.model.mwcnn_arch import _dwt, _iwt
from cwtnet.model.resnet_arch import load_torchvision_state, resnet50
from cwtnet.model.srgan_arch import SRGANDiscriminator
from cwtnet.model.vgg_arch import VGG19, VGGFeatures
from mlcamsr.resize import imresize

TINY = {
    "mwcnn": {"channels": (8, 16, 16), "convs_per_level": 2, "batch_norm": True},
    "swdnet": {"head_feat": 8, "num_feat": 16, "num_modules": 1, "num_stages": 2, "num_block": 1, "wave_feat": 8},
    "srgan": {"num_feat": 8, "num_block": 2},
}


def _n(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", list(TINY))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shapes_on_odd_sides_and_ref_is_ignored(arch, scale):
    torch.manual_seed(0)
    model = build_model(arch, scale, **TINY[arch]).eval()
    lr = torch.rand(2, 3, 11, 7)  # odd sides: the wavelet nets pad and crop back
    with torch.no_grad():
        sr = model(lr)
        assert sr.shape == (2, 3, 11 * scale, 7 * scale)
        assert torch.equal(sr, model(lr, ref=torch.rand(2, 3, 22, 14)))
    again = build_from_config(json.loads(json.dumps(model_config(model))))
    assert type(again) is type(model) and again.options == model.options


@pytest.mark.parametrize("arch", list(TINY))
def test_every_parameter_gets_gradient(arch):
    torch.manual_seed(0)
    model = build_model(arch, 2, **TINY[arch])
    L1SSIM()(model(torch.rand(2, 3, 16, 16)), torch.rand(2, 3, 32, 32)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_haar_packet_round_trip_reuses_wavelet_module():
    x = torch.rand(2, 5, 8, 6, dtype=torch.float64)
    assert _dwt(x).shape == (2, 20, 4, 3)
    assert torch.allclose(_iwt(_dwt(x)), x)


def test_mwcnn_paper_layout_parameter_count():
    # Fig. 3 of Liu et al.: per level 4 conv layers each side, 3x3 kernels, channels 160/256/256,
    # DWT inputs 12 / 640 / 1024; conv-BN (no conv bias) + the last conv to 12 sub-bands with bias.
    k = 9
    convs = (12 * 160 + 3 * 160 * 160 + 640 * 256 + 3 * 256 * 256 + 1024 * 256 + 3 * 256 * 256  # contracting
             + 3 * 256 * 256 + 256 * 1024 + 3 * 256 * 256 + 256 * 640 + 3 * 160 * 160 + 160 * 12) * k
    bn = 2 * (4 * 160 + 4 * 256 + 4 * 256 + 3 * 256 + 1024 + 3 * 256 + 640 + 3 * 160)
    assert _n(build_model("mwcnn", 2, batch_norm=True)) == convs + bn + 12
    # without BN (the default, as the authors' PyTorch code) the convolutions carry biases
    biases = 4 * 160 + 4 * 256 + 4 * 256 + 3 * 256 + 1024 + 3 * 256 + 640 + 3 * 160
    assert _n(build_model("mwcnn", 2)) == convs + biases + 12
    assert 16.1e6 < convs < 16.2e6


def test_srgan_generator_and_discriminator_follow_the_paper():
    g = build_model("srgan", 4)
    assert len(g.body) == 16 and 1.5e6 < _n(g) < 1.6e6  # SRResNet x4: ~1.5 M
    d = SRGANDiscriminator()
    convs = [m for m in d.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    for side in (32, 48, 96):  # any training patch size
        assert d(torch.rand(2, 3, side, side)).shape == (2, 1)


def test_resnet50_and_vgg19_match_torchvision_layout():
    with torch.device("meta"):  # shapes and names only: no memory, no init time
        r, v = resnet50(), VGG19()
    assert sum(p.numel() for p in r.parameters()) == 25_557_032  # torchvision resnet50
    keys = set(r.state_dict())
    assert {"conv1.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.running_var", "fc.bias"} <= keys
    assert sum(p.numel() for p in v.parameters()) == 143_667_240  # torchvision vgg19
    assert {"features.0.weight", "features.34.bias", "classifier.6.weight"} <= set(v.state_dict())


def test_torchvision_state_dict_loads_and_a_wrong_one_is_one_line(tmp_path):
    torch.manual_seed(0)
    src = resnet50(num_classes=1000, width=8)
    good = tmp_path / "r50.pth"
    torch.save(src.state_dict(), good)
    dst = load_torchvision_state(resnet50(num_classes=2, width=8), str(good))
    assert torch.equal(dst.layer3[1].conv2.weight, src.layer3[1].conv2.weight)
    assert dst.fc.out_features == 2
    bad_shape = tmp_path / "r50_w16.pth"
    torch.save(resnet50(width=16).state_dict(), bad_shape)
    not_tensors = tmp_path / "obj.pth"
    torch.save({"a": object()}, not_tensors)  # refused by weights_only=True
    vgg_for_resnet = tmp_path / "vgg.pth"
    torch.save(VGG19(width_div=16).state_dict(), vgg_for_resnet)
    for path, match in ((bad_shape, "shape of"), (not_tensors, "weights_only"),
                        (vgg_for_resnet, "missing"), (tmp_path / "none.pth", "no such file")):
        with pytest.raises(ValueError, match=match) as info:
            load_torchvision_state(resnet50(num_classes=2, width=8), str(path))
        assert "\n" not in str(info.value) and "--weights" in str(info.value)


def test_vgg_features_load_torchvision_weights_and_stay_frozen(tmp_path):
    torch.manual_seed(0)
    full = VGG19(width_div=16)
    path = tmp_path / "vgg19.pth"
    torch.save(full.state_dict(), path)
    feats = VGGFeatures("relu5_4", weights=str(path), width_div=16)
    assert torch.equal(feats.features[34].weight, full.features[34].weight)
    assert len(feats.features) == 36 and not any(p.requires_grad for p in feats.parameters())
    feats.train()
    assert not feats.training
    x = torch.rand(1, 3, 32, 32)
    assert feats(x).shape == (1, 512 // 16, 2, 2)
    with pytest.raises(ValueError, match="--vgg-weights .*vgg19"):
        VGGFeatures(weights=str(tmp_path / "r.pth") if torch.save(resnet50(width=8).state_dict(),
                                                                  tmp_path / "r.pth") is None else "")


def test_tiny_swdnet_and_mwcnn_fit_one_real_patch(shared_data):
    img = np.asarray(Image.open(shared_data / "patches" / "kather100k" / "kather1.tif").convert("RGB"))
    gt8 = img[64:88, 64:88]
    t = lambda a: torch.from_numpy(a.astype(np.float32) / 255).permute(2, 0, 1)[None]  # noqa: E731
    lr, gt = t(imresize(gt8, scale=0.5)), t(gt8)
    for arch in ("swdnet", "mwcnn"):
        torch.manual_seed(0)
        model = build_model(arch, 2, **TINY[arch])
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        losses = []
        for _ in range(20):
            opt.zero_grad()
            loss = torch.nn.functional.l1_loss(model(lr), gt)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.6 * losses[0], (arch, losses)


def test_summary_helper_networks_match_their_papers():
    from cwtnet.summary import format_all, helper_rows

    rows = {r["name"]: r for r in helper_rows()}
    for name in ("resnet50", "vgg19"):
        r = rows[name]
        assert abs(r["params"] / r["stated_params"] - 1) < 0.01, r
        # FlopCounterMode counts 2 per multiply-add; He et al.'s 3.8 G for ResNet-50 is 7 % under
        # the 4.09 G multiply-adds of torchvision's v1.5 layout (stride on the 3x3 conv)
        assert abs(r["flops"] / 2 / r["stated_macs"] - 1) < 0.08, r
    assert "| resnet50 | 224x224 | 25,557,032 |" in format_all(list(rows.values()))
