"""The project's one bicubic (mlcamsr.resize) against independent implementations.

Independent references used here, on real H&E patches:
- a direct per-pixel reference written below from MATLAB's definition (exact);
- PyTorch's ``interpolate(mode="bicubic", antialias=True)`` (a = -0.5, kernel widened
  when shrinking; float, agrees to float32 precision away from borders);
- Pillow's ``Image.resize(BICUBIC)`` (always antialiased, a = -0.5). Pillow keeps an 8-bit
  image between its horizontal and vertical passes (rounded and clipped), so it differs
  from a float-then-round bicubic by up to 3 grey levels on a few pixels per 100,000;
  with the same 8-bit intermediate emulated, it agrees within 1 level.
scikit-image has no Keys a = -0.5 kernel (``order=3`` is a B-spline with Gaussian
anti-aliasing), so it is not a reference for this operation.
Borders differ by design: MATLAB mirrors taps, Pillow and torch truncate and renormalise.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mlcamsr.resize import cubic, imresize, imresize_torch, resize_weights

IMAGES = (
    "patches/tiatoolbox/TCGA-HE-7130-01Z-00-DX1.png",
    "patches/histolab/tissue-level0-4302-10273-4814-10785.png",
    "patches/openslide-crops/CMU-1-Small-Region_test_tile.png",
)


@pytest.fixture(scope="module", params=IMAGES, ids=lambda p: Path(p).stem[:12])
def patch(request, shared_data: Path) -> np.ndarray:
    from PIL import Image

    im = np.asarray(Image.open(shared_data / request.param).convert("RGB"))
    n = min(min(im.shape[:2]), 320) // 16 * 16
    return np.ascontiguousarray(im[:n, :n])


def margin(scale: float) -> int:
    """Output px reached by the boundary handling: the kernel spans 2 output px each side
    when shrinking (2/scale input px), 2*scale when enlarging; plus 2 for safety."""
    return int(math.ceil(2.0 * max(scale, 1.0))) + 2


def direct_reference(img: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """MATLAB imresize written out per output pixel (float64, mirror boundary).

    out(i, j) = sum_y sum_x k_h(ci - (y + .5)) k_w(cj - (x + .5)) img(mirror(y), mirror(x)) / norm,
    with centres ci = (i + .5) / s, and k(d) = s' cubic(s' d), s' = min(s, 1).
    """
    h, w = img.shape[:2]

    def taps(n_in: int, n_out: int) -> list[tuple[list[int], np.ndarray]]:
        s = n_out / n_in
        ks = min(s, 1.0)
        out = []
        for i in range(n_out):
            c = (i + 0.5) / s
            lo = math.floor(c - 2.0 / ks) - 1
            hi = math.ceil(c + 2.0 / ks) + 1
            idx, wts = [], []
            for k in range(lo, hi + 1):
                wt = ks * float(cubic(np.array(ks * (c - (k + 0.5)))))
                if wt == 0.0:
                    continue
                m = k % (2 * n_in)
                idx.append(m if m < n_in else 2 * n_in - 1 - m)
                wts.append(wt)
            wts_a = np.array(wts)
            out.append((idx, wts_a / wts_a.sum()))
        return out

    th, tw = taps(h, out_hw[0]), taps(w, out_hw[1])
    x = img.astype(np.float64)
    res = np.zeros(out_hw + img.shape[2:], np.float64)
    for i, (iy, wy) in enumerate(th):
        rows = np.tensordot(wy, x[iy], axes=1)  # (W, C)
        for j, (ix, wx) in enumerate(tw):
            res[i, j] = np.tensordot(wx, rows[ix], axes=1)
    return res


# -- exactness ------------------------------------------------------------------------------


@pytest.mark.parametrize("n_in,n_out", [(16, 8), (64, 16), (30, 7), (10, 20), (17, 17), (8, 64)])
def test_weight_rows_sum_to_one(n_in: int, n_out: int) -> None:
    w = resize_weights(n_in, n_out)
    assert w.shape == (n_out, n_in)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)


def test_known_matlab_weights_for_halving_and_doubling() -> None:
    # interior row of a /2 resize: cubic(d/2)/2 at d = 0.5, 1.5, 2.5, 3.5 (MATLAB / BasicSR)
    half = np.array([-0.01171875, -0.03515625, 0.11328125, 0.43359375])
    w = resize_weights(32, 16)
    np.testing.assert_allclose(w[8, 13:21], np.r_[half, half[::-1]], atol=1e-15)
    assert not w[8, :13].any() and not w[8, 21:].any()
    # interior row of x2: distances 1.75, 0.75, 0.25, 1.25
    w = resize_weights(16, 32)
    np.testing.assert_allclose(w[16, 6:10], [-0.0234375, 0.2265625, 0.8671875, -0.0703125])


def test_identity_at_scale_one(patch: np.ndarray) -> None:
    np.testing.assert_array_equal(imresize(patch, scale=1.0), patch)
    np.testing.assert_allclose(resize_weights(9, 9), np.eye(9), atol=1e-15)


@pytest.mark.parametrize("out", [(20, 20), (13, 17), (80, 80), (7, 30)])
def test_equals_a_direct_per_pixel_reference_including_borders(patch: np.ndarray, out) -> None:
    img = patch[100:140, 60:100]
    ref = direct_reference(img, out)
    got = imresize(img.astype(np.float64), output_shape=out)
    np.testing.assert_allclose(got, ref, atol=1e-9)
    got8 = imresize(img, output_shape=out).astype(int)
    assert np.abs(got8 - np.clip(np.rint(ref), 0, 255)).max() <= 1


def test_uint8_is_the_rounded_float_result(patch: np.ndarray) -> None:
    f = imresize(patch.astype(np.float64), scale=0.25)
    u = imresize(patch, scale=0.25)
    assert u.dtype == np.uint8
    d = np.abs(u.astype(int) - np.clip(np.rint(f), 0, 255))
    assert d.max() <= 1 and np.mean(d == 0) > 0.999


@pytest.mark.parametrize("scale", [0.5, 0.25, 0.125, 2.0])
def test_torch_twin_matches_numpy(patch: np.ndarray, scale: float) -> None:
    import torch

    img = patch[:128, :128].astype(np.float64)
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    got = imresize_torch(t, scale)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, imresize(img, scale=scale), atol=1e-9)


# -- independent implementations ------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.5, 0.25, 0.125, 0.75, 2.0])
def test_agrees_with_torch_antialiased_bicubic_away_from_borders(patch: np.ndarray, scale) -> None:
    import torch
    import torch.nn.functional as F

    img = patch.astype(np.float32)
    n = int(round(img.shape[0] * scale))
    t = torch.from_numpy(img).permute(2, 0, 1)[None]
    ref = F.interpolate(t, size=(n, n), mode="bicubic", antialias=True, align_corners=False)
    ref = ref[0].permute(1, 2, 0).numpy()
    got = imresize(img.astype(np.float64), output_shape=(n, n))
    m = margin(scale)
    if n - 2 * m < 8:
        pytest.skip(f"{n} px output has no interior at scale {scale}")
    assert np.abs(got - ref)[m:-m, m:-m].max() < 0.01  # float32 precision, grey levels


@pytest.mark.parametrize("scale", [0.5, 0.25, 0.125, 0.75, 2.0])
def test_agrees_with_pillow_bicubic_away_from_borders(patch: np.ndarray, scale: float) -> None:
    from PIL import Image

    n = int(round(patch.shape[0] * scale))
    pil = np.asarray(Image.fromarray(patch).resize((n, n), Image.BICUBIC)).astype(int)
    got = imresize(patch, output_shape=(n, n)).astype(int)
    m = margin(scale)
    if n - 2 * m < 8:
        pytest.skip(f"{n} px output has no interior at scale {scale}")
    d = np.abs(got - pil)[m:-m, m:-m]
    # measured on these patches: >= 99.8 % within 1 grey level, max 9 (x2, high-contrast
    # edges of the CMU tile); the rest is
    # Pillow's 8-bit intermediate between passes (see the module docstring)
    assert np.mean(d <= 1) >= 0.998 and d.max() <= 10
    # with Pillow's 8-bit intermediate (horizontal pass first) emulated on our weights:
    # within 1 grey level (x2: 2, Pillow's fixed-point coefficients)
    w = resize_weights(patch.shape[0], n)
    h8 = np.clip(np.rint(np.einsum("jx,yxc->yjc", w, patch.astype(np.float64))), 0, 255)
    emu = np.clip(np.rint(np.einsum("iy,yjc->ijc", w, h8)), 0, 255)
    assert np.abs(emu - pil)[m:-m, m:-m].max() <= (2 if scale > 1 else 1)


def _gather_only(img: np.ndarray, box: tuple[float, float, float, float], n: int) -> np.ndarray:
    """resample_box through the general gather path alone (no strided grid path)."""
    from mlcamsr import resize as rz

    x0, y0, x1, y1 = box
    scale_hw, start_hw = (n / (y1 - y0), n / (x1 - x0)), (y0, x0)
    work = img.astype(np.float32)
    for axis in sorted(range(2), key=lambda a: scale_hw[a]):
        idx, w, _ = rz._taps(img.shape[axis], n, scale_hw[axis], start_hw[axis], True)
        work = rz._apply_axis(work, axis, idx, w, None)
    return rz._finish(work, np.dtype(np.uint8))


@pytest.mark.parametrize(
    ("box", "n", "shape"),
    [
        ((3.5, 3.5, 515.5, 515.5), 512, (520, 520)),  # half-pixel centre, native level
        ((7.5, 7.5, 1031.5, 1031.5), 256, (1040, 1040)),  # /4 from a finer level
        ((-3.0, -3.0, 1043.0, 1043.0), 523, (1040, 1040)),  # mirrored borders
        ((3.25, 4.5, 516.5, 517.75), 512, (522, 522)),  # odd downsample: general path
    ],
)
def test_fast_resample_is_bit_identical_to_resample_box(box, n, shape):
    from mlcamsr.resize import resample_box

    img = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resample_box(img, box, (n, n)), _gather_only(img, box, n))


def test_grid_path_equals_dense_weights_when_interior_taps_vanish():
    # /4 with integer distances: the kernel is exactly 0 at +-4 px, so interior taps
    # drop out and the strided path must not assume consecutive taps
    from mlcamsr.resize import resample_box, resize_weights

    img = np.random.default_rng(1).random((1040, 1040))
    out = resample_box(img, (7.5, 7.5, 1031.5, 1031.5), (256, 256))
    w = resize_weights(1040, 256, scale=0.25, start=7.5)
    np.testing.assert_allclose(out, w @ img @ w.T, atol=1e-9)
