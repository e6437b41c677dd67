"""Haar wavelet transform: the HH sub-band of CWT-Net's WT branch (Eq. 4) and a full 2-D DWT.

Sub-band filters (orthonormal Haar, stride 2, applied per channel), on the 2x2 block
``[[a, b], [c, d]]`` (rows y, columns x):

    LL = (a + b + c + d) / 2        F_LL = 1/2 [[ 1,  1], [ 1,  1]]
    LH = (a + b - c - d) / 2        F_LH = 1/2 [[ 1,  1], [-1, -1]]  (low along x, high along y)
    HL = (a - b + c - d) / 2        F_HL = 1/2 [[ 1, -1], [ 1, -1]]  (high along x, low along y)
    HH = (a - b - c + d) / 2        F_HH = 1/2 [[ 1, -1], [-1,  1]]  (Eq. 4, the diagonal detail)

The transform is orthonormal, so ``idwt_haar`` is its transpose and reconstructs exactly
(up to float rounding). Implemented with strided slicing, not convolution: the result is
exact and works for any dtype/device.
"""

from __future__ import annotations

import torch

F_HH = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]) / 2
"""The HH filter of Eq. (4)."""


def _quads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if x.dim() != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"Haar DWT needs even H and W, got {h}x{w}")
    return x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]


def haar_hh(x: torch.Tensor) -> torch.Tensor:
    """HH sub-band of ``x`` (B, C, 2h, 2w) -> (B, C, h, w): F_HH of Eq. (4), stride 2, per channel."""
    a, b, c, d = _quads(x)
    return (a - b - c + d) / 2


def dwt_haar(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level of the orthonormal 2-D Haar DWT: (B, C, 2h, 2w) -> (LL, LH, HL, HH), each (B, C, h, w)."""
    a, b, c, d = _quads(x)
    return (a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2


def idwt_haar(ll: torch.Tensor, lh: torch.Tensor, hl: torch.Tensor, hh: torch.Tensor) -> torch.Tensor:
    """Inverse of ``dwt_haar``: four (B, C, h, w) sub-bands -> (B, C, 2h, 2w)."""
    b_, c_, h, w = ll.shape
    out = ll.new_empty(b_, c_, 2 * h, 2 * w)
    out[..., 0::2, 0::2] = (ll + lh + hl + hh) / 2
    out[..., 0::2, 1::2] = (ll + lh - hl - hh) / 2
    out[..., 1::2, 0::2] = (ll - lh + hl - hh) / 2
    out[..., 1::2, 1::2] = (ll - lh - hl + hh) / 2
    return out


__all__ = ["F_HH", "dwt_haar", "haar_hh", "idwt_haar"]
