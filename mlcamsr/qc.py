"""Per-patch quality control: tissue fraction, RGB mean, cross-scale alignment.

The paper (section IV-A) removed samples "with significant blank areas" and kept
samples whose RGB mean was near the training-set mean [0.7204, 0.4298, 0.6379].
MLCamSR adds a third figure: the *alignment score* of each coarser member, the PSNR
(8-bit scale, on luma Y = 0.299 R + 0.587 G + 0.114 B) between the member and the
anti-aliased bicubic downsample (the weights of :func:`mlcamsr.resize.imresize`) of the
finest member to the member's size. Luma keeps the score a third of the cost of RGB;
a misaligned level moves every channel alike. Real pyramid levels of a well-built slide score high (they are the same tissue, only a
different scanner/codec blur); a level shifted or scaled by a few pixels scores low.

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
    "tissue_fraction",
    "psnr",
    "align_psnr",
    "check_patch",
]

#: MLCamSR training-set RGB mean (paper, section IV-A), channels in [0, 1]
PAPER_RGB_MEAN = (0.7204, 0.4298, 0.6379)


@dataclass(frozen=True)
class QCThresholds:
    """Acceptance thresholds of one extraction.

    Attributes:
        min_tissue: reject when the tissue fraction is below this. Default 0.5.
        rgb_mean: reference RGB mean in [0, 1]. Default the paper's training-set mean.
        rgb_tol: reject when any channel mean differs from ``rgb_mean`` by more. Default 0.25.
        min_align_psnr: reject when any coarser member's alignment PSNR (dB) is below.
            Default 25.0 (see docs/benchmarks.md for measured values).
        bg_saturation: a pixel with HSV saturation below this ...
        bg_value: ... and HSV value (max channel / 255) above this is background.
    """

    min_tissue: float = 0.5
    rgb_mean: tuple[float, float, float] = field(default=PAPER_RGB_MEAN)
    rgb_tol: float = 0.25
    min_align_psnr: float = 25.0
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

    @property
    def ok(self) -> bool:
        return not self.reason


def tissue_fraction(img: np.ndarray, *, bg_saturation: float = 0.10, bg_value: float = 0.80) -> float:
    """Fraction of pixels that are not bright, unsaturated background (glass, blank areas).

    Args:
        img: ``(H, W, 3)`` uint8 RGB.
    """
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    # saturation = (max - min) / max; background: max > bg_value*255 and sat < bg_saturation
    bright = mx > bg_value * 255.0
    flat = (mx - mn).astype(np.float32) < np.float32(bg_saturation) * np.maximum(mx, 1)
    return float(1.0 - np.count_nonzero(bright & flat) / mx.size)


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
        :class:`QCResult` with the tissue fraction (on the coarsest member), the RGB mean
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
    mean = coarsest.reshape(-1, 3).mean(axis=0, dtype=np.float64) / 255.0
    rgb = (float(mean[0]), float(mean[1]), float(mean[2]))
    tissue = tissue_fraction(coarsest, bg_saturation=th.bg_saturation, bg_value=th.bg_value)

    reason = ""
    if tissue < th.min_tissue:
        reason = f"tissue {tissue:.2f} < {th.min_tissue:g}"
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
    return QCResult(tissue_frac=tissue, rgb_mean=rgb, align_psnr=align, reason=reason)
