"""Image-quality metrics on 8-bit RGB images (H, W, 3) uint8.

Two conventions, chosen by arguments:

- the CWT-Net authors': ``crop_border=0, y_channel=False`` (8-bit RGB, whole image);
- BasicSR's: ``crop_border=scale``, RGB or ``y_channel=True`` (BT.601 luma, not rounded:
  Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 with R, G, B in 0..255).

PSNR = 10 log10(255^2 / MSE), the MSE over all pixels and channels; identical images
give ``float('inf')``. SSIM is ``cwtnet.losses.ssim_torch`` (the training loss's SSIM)
on float64 copies with ``data_range=255``: Gaussian 11 / 1.5, 'valid', mean over
channels. Both equal scikit-image's ``peak_signal_noise_ratio(data_range=255)`` and
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=255, channel_axis=-1)`` (tests/test_metrics.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from cwtnet.losses import ssim_torch
from cwtnet.lpips import lpips_distance, lpips_files

Y_WEIGHTS = (65.481, 128.553, 24.966)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB uint8 (H, W, 3) image as float64 (H, W) in [16, 235] (BasicSR, unrounded)."""
    x = np.asarray(img, dtype=np.float64) / 255.0
    return 16.0 + x @ np.asarray(Y_WEIGHTS, dtype=np.float64)


def _prepare(a: np.ndarray, b: np.ndarray, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"metric: image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.ndim != 3:
        raise ValueError(f"metric: expected (H, W, C) images, got shape {a.shape}")
    if y_channel:
        if a.shape[2] != 3:
            raise ValueError("metric: y_channel needs RGB (H, W, 3) images")
        a, b = rgb_to_y(a)[..., None], rgb_to_y(b)[..., None]
    else:
        a, b = a.astype(np.float64), b.astype(np.float64)
    if crop_border:
        c = int(crop_border)
        a, b = a[c:-c, c:-c], b[c:-c, c:-c]
    return a, b


def psnr(a: np.ndarray, b: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """PSNR in dB of two uint8 (H, W, 3) images (data range 255); ``inf`` when identical."""
    a, b = _prepare(a, b, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return float("inf")
    return 10.0 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """SSIM of two uint8 (H, W, 3) images: ``ssim_torch`` in float64, data range 255, channel mean."""
    a, b = _prepare(a, b, crop_border, y_channel)
    ta = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
    tb = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1)))
    with torch.no_grad():
        return float(ssim_torch(ta, tb, data_range=255.0))


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """[0, 1] tensor (C, H, W) or (1, C, H, W) -> (H, W, C) uint8; (B, C, H, W) -> (B, H, W, C).

    Clamped to [0, 1], times 255, rounded half to even (``torch.round``), as BasicSR's
    ``tensor2img``.
    """
    x = x.detach().to("cpu", torch.float32)
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    y = (x.clamp(0, 1) * 255.0).round().to(torch.uint8)
    perm = (1, 2, 0) if y.dim() == 3 else (0, 2, 3, 1)
    return y.permute(*perm).contiguous().numpy()


def lpips_status(net: str = "alex", weights_dir: str | Path | None = None) -> str:
    """``"ok"`` when LPIPS can run offline, else ``"unavailable: <reason>"``. Never downloads.

    See :mod:`cwtnet.lpips` for the files it looks for (``--lpips-weights DIR``).
    """
    return lpips_files(net, weights_dir)[2]


def lpips_score(a: np.ndarray, b: np.ndarray, net: str = "alex",
                weights_dir: str | Path | None = None) -> float | None:
    """LPIPS of two uint8 (H, W, 3) images, or ``None`` when ``lpips_status(net)`` is not ok:
    nothing is downloaded and no value is made up."""
    return lpips_distance(a, b, net, weights_dir)
