"""Per-patch quality control: tissue fraction, H&E stain, RGB mean, cross-scale alignment.

The paper (section IV-A) removed samples "with significant blank areas" and kept
samples whose RGB mean was near the training-set mean [0.7204, 0.4298, 0.6379].
MLCamSR adds a third figure: the *alignment score* of each coarser member, the PSNR
(8-bit scale, on luma Y = 0.299 R + 0.587 G + 0.114 B) between the member and the
anti-aliased bicubic downsample (the weights of :func:`mlcamsr.resize.imresize`) of the
finest member to the member's size. Luma keeps the score a third of the cost of RGB;
a misaligned level moves every channel alike. Real pyramid levels of a well-built slide score high (they are the same tissue, only a
different scanner/codec blur); a level shifted or scaled by a few pixels scores low.

The *stain fraction* (:func:`stain_fraction`) catches a patch that is not H&E: a DAB/IHC
stain, or false colours from a reader that decodes YCbCr tiles as RGB. In optical density
(OD = -ln(I/255), Beer-Lambert) both H&E dyes absorb blue the least: the Ruifrok-Johnston
vectors give OD_B/OD_G = 0.41 for haematoxylin and 0.11 for eosin, so every mix of the two
lies between; DAB gives 1.36 and the DICOM CMU-1 read with false colours 0.98 on its
salmon glass. The figure is the fraction of stained tissue pixels (not background, OD
norm > :data:`STAIN_MIN_OD`) with OD_B < :data:`STAIN_BLUE_GREEN` x OD_G. Measured
(``python bench/stain.py``, docs/slides.md "Stain check"): every real H&E image and
patch in ../shared/data 0.83-1.00, ``mlcamsr synth`` 1.00, the DICOM false colours
0.00-0.32, the IHC image 0.05; the default threshold 0.6 sits between, 0.2 from both.

Every threshold is a field of :class:`QCThresholds`; the extract command exposes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from mlcamsr.resize import imresize

__all__ = [
    "PAPER_RGB_MEAN",
    "QCThresholds",
    "QCResult",
    "background_mask",
    "tissue_fraction",
    "stain_fraction",
    "rgb_sum",
    "STAIN_BLUE_GREEN",
    "STAIN_MIN_OD",
    "psnr",
    "align_psnr",
    "check_patch",
]

#: MLCamSR training-set RGB mean (paper, section IV-A), channels in [0, 1]
PAPER_RGB_MEAN = (0.7204, 0.4298, 0.6379)

STAIN_BLUE_GREEN = 0.75
"""A stained pixel is H&E-like when its blue optical density is below this times its green
one (H&E mixes: 0.11-0.41 by the Ruifrok-Johnston vectors, real slides' medians 0.46-0.64;
DAB 1.36; YCbCr decoded as RGB about 1)."""
STAIN_MIN_OD = 0.15
"""Optical-density norm above which a tissue pixel counts as stained (Macenko et al.'s
transparency threshold); fainter pixels carry no reliable stain colour."""

_OD = (-np.log(np.maximum(np.arange(256, dtype=np.float64), 1.0) / 255.0)).astype(np.float32)


@dataclass(frozen=True)
class QCThresholds:
    """Acceptance thresholds of one extraction.

    Attributes:
        min_tissue: reject when the tissue fraction is below this. Default 0.5.
        rgb_mean: reference RGB mean in [0, 1]. Default the paper's training-set mean.
        rgb_tol: reject when any channel mean differs from ``rgb_mean`` by more. Default 0.25.
        min_align_psnr: reject when any coarser member's alignment PSNR (dB) is below.
            Default 25.0 (see docs/benchmarks.md for measured values).
        min_stain: reject when the H&E-like fraction of the stained tissue pixels
            (:func:`stain_fraction`, in [0, 1]) is below. Default 0.6; 0 switches it off.
        bg_saturation: a pixel with HSV saturation below this ...
        bg_value: ... and HSV value (max channel / 255) above this is background.
    """

    min_tissue: float = 0.5
    rgb_mean: tuple[float, float, float] = field(default=PAPER_RGB_MEAN)
    rgb_tol: float = 0.25
    min_align_psnr: float = 25.0
    min_stain: float = 0.6
    bg_saturation: float = 0.10
    bg_value: float = 0.80

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["rgb_mean"] = [float(v) for v in self.rgb_mean]
        return d


@dataclass
class QCResult:
    """Figures of one patch and the verdict (``reason`` empty when accepted)."""

    tissue_frac: float
    rgb_mean: tuple[float, float, float]
    align_psnr: dict[str, float]
    reason: str = ""
    stain_frac: float = math.nan

    @property
    def ok(self) -> bool:
        return not self.reason


def background_mask(img: np.ndarray, *, bg_saturation: float = 0.10, bg_value: float = 0.80) -> np.ndarray:
    """``(H, W)`` bool: bright, unsaturated background pixels (glass, blank areas) of an
    ``(H, W, 3)`` uint8 RGB image: HSV value (max / 255) above ``bg_value`` and saturation
    ((max - min) / max) below ``bg_saturation``."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    bright = mx > bg_value * 255.0
    flat = (mx - mn).astype(np.float32) < np.float32(bg_saturation) * np.maximum(mx, 1)
    return bright & flat


def tissue_fraction(
    img: np.ndarray,
    *,
    bg_saturation: float = 0.10,
    bg_value: float = 0.80,
    background: np.ndarray | None = None,
) -> float:
    """Fraction of pixels that are not background (:func:`background_mask`).

    Args:
        img: ``(H, W, 3)`` uint8 RGB.
        background: the image's :func:`background_mask`, when already made.
    """
    if background is None:
        background = background_mask(img, bg_saturation=bg_saturation, bg_value=bg_value)
    return float(1.0 - np.count_nonzero(background) / background.size)


def stain_fraction(
    img: np.ndarray,
    *,
    bg_saturation: float = 0.10,
    bg_value: float = 0.80,
    background: np.ndarray | None = None,
) -> float:
    """H&E-likeness: the fraction of stained tissue pixels whose optical density has
    OD_B < :data:`STAIN_BLUE_GREEN` x OD_G (see the module docstring).

    Args:
        img: ``(H, W, 3)`` uint8 RGB (QC passes the coarsest member).
        bg_saturation, bg_value: the background rule of :func:`background_mask`.
        background: the image's :func:`background_mask`, when already made.

    Returns:
        a fraction in [0, 1]; ``nan`` when no pixel is stained tissue (a blank patch, which
        the tissue check rejects).
    """
    if background is None:
        background = background_mask(img, bg_saturation=bg_saturation, bg_value=bg_value)
    od_r, od_g, od_b = _OD[img[..., 0]], _OD[img[..., 1]], _OD[img[..., 2]]
    stained = ~background & (od_r * od_r + od_g * od_g + od_b * od_b > np.float32(STAIN_MIN_OD**2))
    n = int(np.count_nonzero(stained))
    if n == 0:
        return math.nan
    return float(np.count_nonzero(stained & (od_b < np.float32(STAIN_BLUE_GREEN) * od_g)) / n)


def rgb_sum(img: np.ndarray) -> np.ndarray:
    """Exact per-channel sums of an ``(H, W, 3)`` uint8 image, float64 ``(3,)``.

    Rows are summed first (contiguous, vectorised), then the 3-strided columns: 0.04
    against 1.0 ms for ``reshape(-1, 3).mean(axis=0)`` on a 256-px patch and, being exact
    integers, equal to it."""
    h, w = img.shape[:2]
    cols = np.add.reduce(img.reshape(h, w * 3), axis=0, dtype=np.uint32)  # < 2**32 for h < 2**24
    return cols.reshape(w, 3).sum(axis=0, dtype=np.uint64).astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 images on the 0-255 scale; ``inf`` when identical."""
    d = a.astype(np.float32) - b.astype(np.float32)
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luma(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an ``(H, W, 3)`` uint8 image, float32 on the 0-255 scale."""
    return img @ _LUMA


def _psnr_f(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def shrink_luma(y: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``imresize(y, output_shape=size)`` of a float32 luma image (strided for integer factors)."""
    return imresize(y, output_shape=size)


def align_psnr(finest: np.ndarray, member: np.ndarray) -> float:
    """Alignment score: PSNR (dB) of ``member``'s luma against the anti-aliased bicubic
    downsample of ``finest``'s luma to the member's size."""
    return _psnr_f(shrink_luma(luma(finest), member.shape[:2]), luma(member))


def check_patch(
    images: Mapping[str, np.ndarray], order: Sequence[str], th: QCThresholds
) -> QCResult:
    """Run every QC check on one patch (all its members) and say whether it is kept.

    Args:
        images: member name -> ``(s, s, 3)`` uint8 image.
        order: member names, finest first.
        th: thresholds.

    Returns:
        :class:`QCResult` with the tissue fraction and the stain fraction (on the coarsest
        member), the RGB mean
        (of the coarsest member: the same square, so the same mean up to rounding),
        the alignment PSNR of every coarser member and the first failed check as ``reason``.
    """
    finest = images[order[0]]
    coarsest = images[order[-1]]
    align: dict[str, float] = {}
    if len(order) > 1:
        y0 = luma(finest)
        for name in order[1:]:
            ref = shrink_luma(y0, images[name].shape[:2])
            align[name] = _psnr_f(ref, luma(images[name]))
    # the coarsest member covers the same square: its mean is the patch mean (to rounding)
    mean = rgb_sum(coarsest) / (coarsest.shape[0] * coarsest.shape[1]) / 255.0
    rgb = (float(mean[0]), float(mean[1]), float(mean[2]))
    bg = background_mask(coarsest, bg_saturation=th.bg_saturation, bg_value=th.bg_value)
    tissue = tissue_fraction(coarsest, background=bg)
    stain = stain_fraction(coarsest, background=bg)

    reason = ""
    if tissue < th.min_tissue:
        reason = f"tissue {tissue:.2f} < {th.min_tissue:g}"
    elif stain < th.min_stain:  # (nan: nothing stained, never below)
        reason = f"stain {stain:.2f} < {th.min_stain:g} (not H&E-like)"
    else:
        off = [abs(m - r) for m, r in zip(rgb, th.rgb_mean)]
        if max(off) > th.rgb_tol:
            c = "RGB"[int(np.argmax(off))]
            reason = (
                f"rgb mean {c}={rgb['RGB'.index(c)]:.3f} off reference "
                f"{th.rgb_mean['RGB'.index(c)]:.3f} by > {th.rgb_tol:g}"
            )
        else:
            low = [(n, v) for n, v in align.items() if v < th.min_align_psnr]
            if low:
                n, v = min(low, key=lambda t: t[1])
                reason = f"alignment {n} {v:.1f} dB < {th.min_align_psnr:g} dB"
    return QCResult(tissue_frac=tissue, rgb_mean=rgb, align_psnr=align, reason=reason, stain_frac=stain)
