"""Does the reference reach the output? Diagnostics of CWT-Net's reference path.

``reference_diagnostics(model, lr, ref, gt)`` scores one batch of aligned crops
(``lr`` (B, 3, H, W), ``ref`` (B, 3, 2H, 2W), ``gt`` (B, 3, sH, sW), all in [0, 1]) four
ways and reads where the searches look:

- PSNR (8-bit RGB, the interior: ``border`` LR px, i.e. ``border * s`` gt px, cut on each
  side) with the true reference, in SISR mode (``ref=None``, WR's prediction), with
  another image's reference (the batch rolled by one, so B >= 2) and with an all-zero
  reference. If the reference matters, true > SISR and true > wrong/zero.
- The hard index of every Transformer block (``TransformerBlock.record_index``): the
  distance in LR px between each query and the K position it copies from, as the
  median Euclidean distance and the share of matches within 2 px (Chebyshev) of the
  query. The reference is registered to the LR image, so useful matches are near.
- At x2 (where the reference and ``gt`` share a grid), ``band_oracle``: the PSNR of the
  model's own SISR output with its Haar HH band (or all three detail bands) replaced by
  ``gt``'s, i.e. the most a perfect transfer of those bands could add to this model. The
  paper's WT branch carries HH only (Eq. 4), so ``oracle_hh - sisr`` bounds what its
  reference can ever give at x2.

Used by ``bench/reference.py``; the figures and their reading are in docs/cwtnet.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from cwtnet.metrics import psnr, tensor_to_uint8
from cwtnet.model.attention import TransformerBlock
from cwtnet.model.wavelet import dwt_haar, idwt_haar

REF_MODES = ("true", "sisr", "wrong", "zero")
"""Reference given to the model: the aligned one, none (WR), another image's, zeros."""


def _mode_ref(ref: torch.Tensor, mode: str) -> torch.Tensor | None:
    if mode == "true":
        return ref
    if mode == "sisr":
        return None
    if mode == "wrong":
        if ref.shape[0] < 2:
            raise ValueError("the 'wrong' reference needs a batch of at least 2 crops")
        return ref.roll(1, dims=0)
    if mode == "zero":
        return torch.zeros_like(ref)
    raise ValueError(f"unknown reference mode {mode!r}; choose from {', '.join(REF_MODES)}")


def interior_psnr(sr: torch.Tensor, gt: torch.Tensor, border_px: int) -> float:
    """Mean over the batch of the 8-bit RGB PSNR of ``sr`` vs ``gt`` with ``border_px`` gt px cut."""
    vals = [psnr(tensor_to_uint8(a), tensor_to_uint8(b), crop_border=border_px) for a, b in zip(sr, gt)]
    return float(np.mean(vals))


def index_distances(index: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, H*W) flat K indices of a same-grid search -> (dy, dx) offsets (2, B, H*W), LR px."""
    i = torch.arange(h * w, device=index.device)
    dy = torch.div(index, w, rounding_mode="floor") - torch.div(i, w, rounding_mode="floor")
    dx = index % w - i % w
    return torch.stack([dy, dx])


ORACLE_BANDS = {"hh": (3,), "detail": (1, 2, 3)}
"""``band_oracle`` keys -> indices into ``dwt_haar``'s (LL, LH, HL, HH) taken from ``gt``."""


@torch.no_grad()
def band_oracle(estimate: torch.Tensor, gt: torch.Tensor, border_px: int) -> dict[str, float]:
    """PSNR (8-bit RGB, ``border_px`` gt px cut) of ``estimate`` (B, 3, 2h, 2w) in [0, 1] as
    it is (``"estimate"``) and with its Haar bands named in ``ORACLE_BANDS`` replaced by
    ``gt``'s (same shape): an upper bound of what transferring those bands can add."""
    if estimate.shape != gt.shape:
        raise ValueError(f"band_oracle: shapes differ: {tuple(estimate.shape)} vs {tuple(gt.shape)}")
    est_b, gt_b = dwt_haar(estimate.double()), dwt_haar(gt.double())
    out = {"estimate": interior_psnr(estimate, gt, border_px)}
    for name, taken in ORACLE_BANDS.items():
        bands = [gt_b[i] if i in taken else est_b[i] for i in range(4)]
        out[name] = interior_psnr(idwt_haar(*bands).clamp(0, 1).float(), gt, border_px)
    return out


@torch.no_grad()
def reference_diagnostics(model: nn.Module, lr: torch.Tensor, ref: torch.Tensor, gt: torch.Tensor,
                          *, border: int = 8, modes: tuple[str, ...] = REF_MODES) -> dict[str, Any]:
    """PSNR per reference mode and hard-index distances (true reference) of one batch.

    Returns ``{"psnr": {mode: dB}, "median_distance_px": float, "within_2px": fraction,
    "per_block": [{"median_distance_px", "within_2px"}, ...], "n_images": B}``, and at x2
    with ``"sisr"`` among ``modes`` also ``"oracle": band_oracle(SISR output, gt)``.
    """
    model.eval()
    scale = int(model.scale)  # type: ignore[arg-type]
    blocks = [m for m in model.modules() if isinstance(m, TransformerBlock)]
    out: dict[str, Any] = {"psnr": {}, "n_images": int(lr.shape[0]), "border_lr_px": border}
    for mode in modes:
        for b in blocks:
            b.record_index = mode == "true"
        try:
            sr = model(lr, _mode_ref(ref, mode)).clamp(0, 1)
        finally:
            for b in blocks:
                b.record_index = False
        out["psnr"][mode] = interior_psnr(sr, gt, border * scale)
        if mode == "sisr" and scale == 2:
            out["oracle"] = band_oracle(sr, gt, border * scale)
        if mode == "true" and blocks:
            per_block, all_d = [], []
            for b in blocks:
                if b.last_index is None:
                    raise RuntimeError("a Transformer block kept no index; record_index was off")
                d = index_distances(b.last_index, lr.shape[-2], lr.shape[-1]).float()
                eu = d.square().sum(0).sqrt().flatten()
                cheb = d.abs().amax(0).flatten()
                per_block.append({"median_distance_px": float(eu.median()),
                                  "within_2px": float((cheb <= 2).float().mean())})
                all_d.append((eu, cheb))
                b.last_index = None
            eu = torch.cat([e for e, _ in all_d])
            cheb = torch.cat([c for _, c in all_d])
            out.update(median_distance_px=float(eu.median()), within_2px=float((cheb <= 2).float().mean()),
                       per_block=per_block)
    return out


__all__ = ["ORACLE_BANDS", "REF_MODES", "band_oracle", "index_distances", "interior_psnr", "reference_diagnostics"]
