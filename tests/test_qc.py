"""QC figures on real patches: tissue fraction, PSNR, alignment of a shifted downsample."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from mlcamsr.qc import QCThresholds, align_psnr, check_patch, psnr, tissue_fraction
from mlcamsr.resize import imresize


@pytest.fixture(scope="module")
def tissue(shared_data):
    img = np.asarray(Image.open(shared_data / "patches/tiatoolbox/TCGA-HE-7130-01Z-00-DX1.png"))
    return np.ascontiguousarray(img[:512, :512, :3])


def test_tissue_fraction_blank_and_tissue(tissue):
    glass = np.full((64, 64, 3), 240, np.uint8)
    assert tissue_fraction(glass) == 0.0
    assert tissue_fraction(tissue) > 0.8
    half = tissue[:64, :64].copy()
    half[:, :32] = 240
    assert 0.4 < tissue_fraction(half) < 0.6


def test_psnr_identical_and_known():
    a = np.zeros((8, 8, 3), np.uint8)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255), abs=1e-6)


def test_alignment_high_when_aligned_low_when_shifted(tissue):
    half = imresize(tissue, scale=0.5)
    assert align_psnr(tissue, half) > 45  # the same operation up to rounding
    shifted = np.roll(half, 2, axis=1)
    assert align_psnr(tissue, shifted) < 25


def test_check_patch_reasons(tissue):
    images = {"40x": tissue, "20x": imresize(tissue, scale=0.5), "10x": imresize(tissue, scale=0.25)}
    th = QCThresholds(rgb_tol=1.0)
    res = check_patch(images, ["40x", "20x", "10x"], th)
    assert res.ok and set(res.align_psnr) == {"20x", "10x"}
    bad = dict(images, **{"20x": np.roll(images["20x"], 3, axis=0)})
    assert check_patch(bad, ["40x", "20x", "10x"], th).reason.startswith("alignment 20x")
    glass = {k: np.full_like(v, 242) for k, v in images.items()}
    assert check_patch(glass, ["40x", "20x", "10x"], th).reason.startswith("tissue 0.00")
    strict = QCThresholds(rgb_mean=(0.0, 0.0, 0.0), rgb_tol=0.1)
    assert check_patch(images, ["40x", "20x", "10x"], strict).reason.startswith("rgb mean")
