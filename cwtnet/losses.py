"""CWT-Net losses (paper section III-E, Eq. 10-14) and the one SSIM of the project.

``ssim_torch`` is THE SSIM: the training loss (``1 - ssim_torch``) and the evaluation
metric (``cwtnet.metrics.ssim``, which calls it on float64 copies of uint8 images with
``data_range=255``) are the same function. Definition (Wang et al. 2004, as
scikit-image ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)`` and BasicSR ``calculate_ssim``):

- Gaussian window 11 x 11, sigma 1.5 (normalised to sum 1), separable;
- 'valid' filtering (no padding: the result is (H - 10) x (W - 10));
- C1 = (0.01 R)^2, C2 = (0.03 R)^2 with R = ``data_range``;
- population (biased) variances and covariance;
- the SSIM map averaged over pixels, then over channels (and images).

Loss layout (Eq. 10-12), ``lambda_1 .. lambda_4`` of the paper named by role::

    L_CWT = lambda_sr * L_SR + lambda_wt * L_WT                       (Eq. 10)
    L_SR  = L1(I_HR, I_GT)        + lambda_ssim_sr * (1 - SSIM(I_HR, I_GT))      (Eq. 11, 13, 14)
    L_WT  = L1(I_WT, DWT(I'_GT))  + lambda_ssim_wt * (1 - SSIM(I_WT, DWT(I'_GT)))  (Eq. 12)

with (lambda_sr, lambda_wt) = (0.3, 0.7), (lambda_ssim_sr, lambda_ssim_wt) = (0.2, 0.2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

SSIM_WIN = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def gaussian_window(size: int = SSIM_WIN, sigma: float = SSIM_SIGMA, dtype=torch.float64) -> torch.Tensor:
    """1-D Gaussian taps (``size``,), centred, summing to 1 (cv2.getGaussianKernel / skimage truncate 3.5)."""
    r = (size - 1) / 2
    g = torch.tensor([math.exp(-((i - r) ** 2) / (2 * sigma**2)) for i in range(size)], dtype=torch.float64)
    return (g / g.sum()).to(dtype)


_WINDOWS: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def _window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``gaussian_window()`` on ``device`` in ``dtype``, cached (no host copy per call)."""
    key = (device, dtype)
    if key not in _WINDOWS:
        _WINDOWS[key] = gaussian_window(dtype=torch.float64).to(device=device, dtype=dtype)
    return _WINDOWS[key]


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter of (N, 1, H, W)."""
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, k, 1))
    return F.conv2d(x, g.view(1, 1, 1, k))


def ssim_torch(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Differentiable SSIM of ``x`` and ``y`` (B, C, H, W) (or (C, H, W)), same shape.

    Args:
        x, y: images; H and W must be >= 11. Half / bfloat16 inputs are computed in
            float32, and autocast is disabled inside (the result is float32 or float64).
        data_range: value range R of the images (1 for [0, 1] tensors, 255 for 8-bit).
        reduction: ``"mean"`` -> scalar (mean over images, channels, pixels);
            ``"none"`` -> (B, C) mean SSIM of each image channel.
    """
    if x.shape != y.shape:
        raise ValueError(f"ssim_torch: shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() == 3:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"ssim_torch: expected (B, C, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h < SSIM_WIN or w < SSIM_WIN:
        raise ValueError(f"ssim_torch: images must be at least {SSIM_WIN}x{SSIM_WIN}, got {h}x{w}")
    if x.dtype not in (torch.float32, torch.float64):
        x, y = x.float(), y.float()
    y = y.to(x.dtype)
    # E[x^2] - E[x]^2 cancels badly in low precision: never let autocast lower it
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _ssim(x, y, float(data_range), reduction)


def _ssim(x: torch.Tensor, y: torch.Tensor, data_range: float, reduction: str) -> torch.Tensor:
    b, c, h, w = x.shape
    g = _window(x.device, x.dtype)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    x = x.reshape(b * c, 1, h, w)
    y = y.reshape(b * c, 1, h, w)
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    var_x = _filter_valid(x * x, g) - mu_x**2
    var_y = _filter_valid(y * y, g) - mu_y**2
    cov = _filter_valid(x * y, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    per_channel = (num / den).mean(dim=(1, 2, 3)).view(b, c)
    if reduction == "none":
        return per_channel
    if reduction == "mean":
        return per_channel.mean()
    raise ValueError(f"ssim_torch: reduction must be 'mean' or 'none', got {reduction!r}")


class L1SSIM(nn.Module):
    """Pixel loss + SSIM loss of one branch (Eq. 11 / 12 with Eq. 13, 14).

    ``loss = pixel(x, y) + lambda_ssim * (1 - ssim_torch(x, y, data_range))``.

    Args:
        lambda_ssim (float): weight of the SSIM term (lambda_3 / lambda_4). Default: 0.2.
        pixel (str): ``"l1"`` (Eq. 13) or ``"mse"`` (Table IV "only MSE"). Default: ``"l1"``.
        data_range (float): SSIM data range of the compared tensors. Default: 1.0.
    """

    def __init__(self, lambda_ssim: float = 0.2, pixel: str = "l1", data_range: float = 1.0) -> None:
        super().__init__()
        if pixel not in ("l1", "mse"):
            raise ValueError(f"pixel must be 'l1' or 'mse', got {pixel!r}")
        self.lambda_ssim = float(lambda_ssim)
        self.pixel = pixel
        self.data_range = float(data_range)

    def terms(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pixel term, 1 - SSIM or None when ``lambda_ssim`` is 0)."""
        if x.shape != y.shape:
            raise ValueError(f"loss: prediction {tuple(x.shape)} and target {tuple(y.shape)} differ")
        pix = F.l1_loss(x, y) if self.pixel == "l1" else F.mse_loss(x, y)
        if self.lambda_ssim == 0:
            return pix, None
        return pix, 1 - ssim_torch(x, y, data_range=self.data_range)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pix, dssim = self.terms(x, y)
        return pix if dssim is None else pix + self.lambda_ssim * dssim


VARIANTS = ("default", "only_l1", "only_mse", "only_sr", "only_wt", "weight_exchange")


class CWTLoss(nn.Module):
    """L_CWT of CWT-Net (Eq. 10-14) and the Table IV variants, plus an optional WR term.

    ``total, parts = loss(out, gt)``:

    - ``out`` a dict from ``CWTNet.forward_train``: ``sr`` (I_HR, B x 3 x sH x sW),
      ``wt`` (I_WT) and ``wt_target`` (DWT(I'_GT), the HH band, same shape as ``wt``),
      optionally ``wr`` and ``wr_target`` (the WR module's output and its target, used
      to train WR for SISR mode). A term is computed when both of its tensors are
      present and not ``None`` and its weight is not 0; an absent pair is skipped.
    - ``out`` a tensor (any other arch): the loss is L_SR alone, with weight 1.
    - ``parts``: floats for logging: ``total``, ``sr``, ``sr_pix``, ``sr_ssim``
      (= 1 - SSIM), and likewise ``wt*`` / ``wr*`` for the terms computed.

    The HH band lies in [-1, 1] for images in [0, 1] but is small on histology (std
    0.010-0.024, |max| 0.09-0.23 on the real patches of ../shared/data). Its SSIM uses
    ``wt_data_range`` (default 1.0, the image's range, as the pytorch-ssim code of the
    authors' lineage assumes). Then C2 = 9e-4 exceeds the band variance (~1e-4), so the
    WT SSIM barely sees amplitude (SSIM(hh, hh / 2) = 0.92-0.97) but still sees structure
    (an uncorrelated prediction scores ~0.03, hh + N(0, 0.01) ~0.89). Set 2.0 for the
    band's full range (gentler still) or a smaller value for a stricter term.

    Variants (Table IV); each overrides the weights named, the rest stay as given:

    - ``default``: 0.3 L_SR + 0.7 L_WT, L1 + 0.2 (1 - SSIM) in each branch.
    - ``only_l1``: "only L1 loss": SSIM weights set to 0 (both branches, and WR).
    - ``only_mse``: "only MSE loss": MSE instead of L1, SSIM weights 0.
    - ``only_sr``: "only SR": lambda_wt = 0 (the WT output is ignored; lambda_sr kept).
    - ``only_wt``: "only WT": lambda_sr = 0 (the paper reports it does not converge).
    - ``weight_exchange``: (lambda_sr, lambda_wt) = (0.7, 0.3).

    Args:
        lambda_sr (float): weight of L_SR (lambda_1). Default: 0.3.
        lambda_wt (float): weight of L_WT (lambda_2). Default: 0.7.
        lambda_ssim_sr (float): SSIM weight in L_SR (lambda_3). Default: 0.2.
        lambda_ssim_wt (float): SSIM weight in L_WT (lambda_4). Default: 0.2.
        variant (str): one of VARIANTS. Default: ``"default"``.
        lambda_wr (float): weight of the WR term ``L1(wr, wr_target) + lambda_ssim_wt *
            (1 - SSIM)`` (not in the paper; trains WR for SISR mode). Default: 0.1.
        wt_data_range (float): SSIM data range for the WT and WR terms. Default: 1.0.
    """

    def __init__(
        self,
        lambda_sr: float = 0.3,
        lambda_wt: float = 0.7,
        lambda_ssim_sr: float = 0.2,
        lambda_ssim_wt: float = 0.2,
        variant: str = "default",
        lambda_wr: float = 0.1,
        wt_data_range: float = 1.0,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown loss variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
        pixel = "l1"
        if variant in ("only_l1", "only_mse"):
            lambda_ssim_sr = lambda_ssim_wt = 0.0
            pixel = "l1" if variant == "only_l1" else "mse"
        elif variant == "only_sr":
            lambda_wt = 0.0
        elif variant == "only_wt":
            lambda_sr = 0.0
        elif variant == "weight_exchange":
            lambda_sr, lambda_wt = 0.7, 0.3
        self.variant = variant
        self.weights = {"sr": float(lambda_sr), "wt": float(lambda_wt), "wr": float(lambda_wr)}
        self.sr_loss = L1SSIM(lambda_ssim_sr, pixel, data_range=1.0)
        self.wt_loss = L1SSIM(lambda_ssim_wt, pixel, data_range=wt_data_range)

    def forward(
        self, out: Mapping[str, torch.Tensor] | torch.Tensor, gt: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if isinstance(out, torch.Tensor):
            pairs = {"sr": (out, gt)}
            weights = {"sr": 1.0}
        else:
            if out.get("sr") is None:
                raise ValueError("CWTLoss: the model output has no 'sr'")
            pairs = {"sr": (out["sr"], gt)}
            for name in ("wt", "wr"):
                if out.get(name) is not None and out.get(f"{name}_target") is not None:
                    pairs[name] = (out[name], out[f"{name}_target"])
            weights = self.weights
        total = None
        parts: dict[str, float] = {}
        for name, (pred, target) in pairs.items():
            if weights[name] == 0:
                continue
            crit = self.sr_loss if name == "sr" else self.wt_loss
            pix, dssim = crit.terms(pred, target)
            term = pix if dssim is None else pix + crit.lambda_ssim * dssim
            total = weights[name] * term if total is None else total + weights[name] * term
            parts[name] = float(term.detach())
            parts[f"{name}_pix"] = float(pix.detach())
            if dssim is not None:
                parts[f"{name}_ssim"] = float(dssim.detach())
        if total is None:
            raise ValueError("CWTLoss: every term has weight 0 or is missing")
        parts["total"] = float(total.detach())
        return total, parts
