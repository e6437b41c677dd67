"""The project's one bicubic: MATLAB ``imresize`` semantics, in numpy and torch.

Every resampling in MLCamSR and CWT-Net goes through this module: reading a
member from a finer level, the alignment score, the FTMS pyramid, the dataset's
LR images and the bicubic baseline. One kernel means the "bicubic" of a report
is the same operation everywhere.

Convention (as MATLAB ``imresize`` and BasicSR's ``matlab_functions.imresize``):

- Pixel ``k`` covers the continuous interval ``[k, k + 1)``; its centre is ``k + 0.5``.
- Output pixel ``j`` of a resize by ``scale`` (output px per input px) has its
  centre at ``start + (j + 0.5) / scale`` in input coordinates.
- Kernel: Keys' cubic with ``a = -0.5``. When shrinking (``scale < 1``) with
  ``antialias`` the kernel is widened by ``1 / scale`` (MATLAB's antialiasing).
- Weights of each output pixel are normalised to sum to 1; taps that fall outside
  the input are mirrored back in (MATLAB's symmetric boundary).
- Computation is in float32/float64; uint8 input is rounded and clipped once at the
  end (BasicSR's behaviour; MATLAB rounds after each axis, which differs by at
  most one grey level on rare pixels).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["cubic", "resize_weights", "imresize", "resample_box", "imresize_torch"]


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB ``imresize``'s ``cubic``)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (
        -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    ) * ((ax > 1) & (ax <= 2))


@lru_cache(maxsize=256)
def _taps(
    in_len: int, out_len: int, scale: float, start: float, antialias: bool
) -> tuple[np.ndarray, np.ndarray, tuple[tuple[int, ...], int] | None]:
    """Sparse weights ``(idx, w, grid)``: ``idx``, ``w`` are ``(out_len, P)`` and
    out[j] = sum_p w[j,p] * in[idx[j,p]].

    ``grid`` is ``(offsets, step)`` when every output uses the same weights and its
    (unmirrored) taps advance by a whole ``step`` (integer factors, whole-pixel
    shifts): then tap p of output j reads input ``offsets[p] + j * step`` of the
    symmetric-padded input, and :func:`_apply_axis` uses strided slices instead of
    gathers. ``None`` otherwise."""
    if in_len < 1 or out_len < 1:
        raise ValueError(f"lengths must be positive, got in={in_len} out={out_len}")
    kscale = min(scale, 1.0) if antialias else 1.0
    width = 4.0 / kscale
    centres = start + (np.arange(out_len, dtype=np.float64) + 0.5) / scale
    # Taps whose centre k + 0.5 lies within the kernel support around each output centre.
    left = np.floor(centres - 0.5 - width / 2.0).astype(np.int64)
    n_taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(n_taps)[None, :]
    dist = centres[:, None] - (idx + 0.5)
    w = kscale * cubic(kscale * dist)
    w = w / w.sum(axis=1, keepdims=True)
    # Drop columns that are zero for every output (keeps the tap loop short).
    keep = np.any(w != 0, axis=0)
    idx, w = idx[:, keep], w[:, keep]
    grid = None
    steps = np.diff(idx[:, 0])
    if (
        np.all(idx == idx[:, :1] + (idx[0] - idx[0, 0])[None, :])
        and (out_len == 1 or (steps[0] >= 1 and np.all(steps == steps[0])))
        and np.array_equal(w, np.broadcast_to(w[0], w.shape))
    ):
        # the unmirrored taps of output 0: not always consecutive, the kernel is exactly 0
        # at whole multiples of its support (e.g. /4 with integer distances), and such
        # columns were dropped above
        grid = (tuple(int(v) for v in idx[0]), int(steps[0]) if out_len > 1 else 1)
    # Mirror out-of-range taps (symmetric boundary: -1 -> 0, in_len -> in_len - 1).
    period = 2 * in_len
    m = np.mod(idx, period)
    idx = np.where(m < in_len, m, period - 1 - m)
    idx.setflags(write=False)
    w.setflags(write=False)
    return idx, w, grid


def resize_weights(
    in_len: int,
    out_len: int,
    *,
    scale: float | None = None,
    start: float = 0.0,
    antialias: bool = True,
) -> np.ndarray:
    """Dense 1-D resampling matrix ``(out_len, in_len)`` (float64, rows sum to 1).

    Args:
        in_len: input length in px.
        out_len: output length in px.
        scale: output px per input px; default ``out_len / in_len``.
        start: left edge of the resampled interval, in input px (continuous).
        antialias: widen the kernel when shrinking (MATLAB default).
    """
    scale = out_len / in_len if scale is None else float(scale)
    idx, w, _ = _taps(in_len, out_len, scale, float(start), antialias)
    dense = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(dense, (np.repeat(np.arange(out_len), idx.shape[1]), idx.ravel()), w.ravel())
    return dense


def _apply_axis(
    img: np.ndarray,
    axis: int,
    idx: np.ndarray,
    w: np.ndarray,
    grid: tuple[tuple[int, ...], int] | None = None,
) -> np.ndarray:
    """Resample ``img`` (float) along ``axis`` with sparse taps; a loop over taps, not a matmul.

    With a ``grid`` (see :func:`_taps`) the taps are strided slices of the
    symmetric-padded input: the same products and sums in the same order, so the
    result is bit-identical to the gather path, 2-4x faster."""
    n_out = idx.shape[0]
    if grid is not None:
        # Slice along ``axis`` in place (no moveaxis: strided views of a transposed array
        # are 2x slower); start from the first product (0 + a == a, still bit-identical).
        offsets, step = grid
        n_in = img.shape[axis]
        lo = max(0, -offsets[0])
        hi = max(0, offsets[-1] + step * (n_out - 1) - (n_in - 1))
        if lo or hi:
            widths = [(0, 0)] * img.ndim
            widths[axis] = (lo, hi)
            img = np.pad(img, widths, mode="symmetric")
        w0 = w[0].astype(img.dtype)
        sl: list[slice] = [slice(None)] * img.ndim
        # out = w0[0] * x_0 + w0[1] * x_1 + ...: the same products and sums in the same
        # order as out = out + w0[p] * x_p, into two buffers made once (fresh temporaries
        # per tap were page faults: most of this function's system time)
        out = term = None
        for p in range(idx.shape[1]):
            a = offsets[p] + lo
            sl[axis] = slice(a, a + step * (n_out - 1) + 1, step)
            if out is None:
                out = np.multiply(w0[p], img[tuple(sl)])
                term = np.empty_like(out)
            else:
                np.multiply(w0[p], img[tuple(sl)], out=term)
                out += term
        assert out is not None  # idx has at least one tap
        return out
    moved = np.moveaxis(img, axis, 0)
    out = np.zeros((n_out,) + moved.shape[1:], dtype=img.dtype)
    extra = (slice(None),) + (None,) * (moved.ndim - 1)
    for p in range(idx.shape[1]):
        out += w[:, p].astype(img.dtype)[extra] * moved[idx[:, p]]
    return np.moveaxis(out, 0, axis)


def _finish(out: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(dtype, copy=False)


def _resample(
    img: np.ndarray,
    out_hw: tuple[int, int],
    scale_hw: tuple[float, float],
    start_hw: tuple[float, float],
    antialias: bool,
) -> np.ndarray:
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    dtype = img.dtype
    # copy=False: a float input (QC's luma) is only read by the passes, never written
    work = img.astype(np.float32 if dtype in (np.uint8, np.float32, np.float16) else np.float64, copy=False)
    h, w = img.shape[:2]
    # Shrink the axis with the larger reduction first: fewer rows for the second pass.
    order = sorted(range(2), key=lambda a: scale_hw[a])
    for axis in order:
        in_len = (h, w)[axis]
        idx, wts, grid = _taps(in_len, out_hw[axis], scale_hw[axis], start_hw[axis], antialias)
        work = _apply_axis(work, axis, idx, wts, grid)
    return _finish(work, dtype)


def imresize(
    img: np.ndarray,
    *,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    antialias: bool = True,
) -> np.ndarray:
    """Resize an image like MATLAB ``imresize(img, scale, 'bicubic')``.

    Args:
        img: ``(H, W)`` or ``(H, W, C)``; uint8 (0-255) or float (any range).
        scale: output px per input px (e.g. 0.5 halves); output size is
            ``ceil(H * scale), ceil(W * scale)``.
        output_shape: ``(out_h, out_w)`` in px instead of ``scale``.
        antialias: widen the kernel when shrinking (MATLAB default ``True``).

    Returns:
        The resized image, same dtype (uint8 rounded and clipped).
    """
    h, w = img.shape[:2]
    if output_shape is None:
        if scale is None:
            raise ValueError("give scale or output_shape")
        out_hw = (int(math.ceil(h * scale - 1e-9)), int(math.ceil(w * scale - 1e-9)))
        scale_hw = (float(scale), float(scale))
    else:
        out_hw = (int(output_shape[0]), int(output_shape[1]))
        scale_hw = (out_hw[0] / h, out_hw[1] / w) if scale is None else (float(scale),) * 2
    return _resample(img, out_hw, scale_hw, (0.0, 0.0), antialias)


def resample_box(
    img: np.ndarray,
    box: tuple[float, float, float, float],
    out_size: tuple[int, int],
    *,
    antialias: bool = True,
) -> np.ndarray:
    """Map a continuous box of ``img`` onto an output grid with the project bicubic.

    Used to read a member whose square does not fall on whole pixels of the
    source level (odd downsamples such as 1.995, half-pixel centres) or that must
    be downsampled from a finer level. Taps outside ``img`` are mirrored, so read
    a few px of margin around the box.

    Args:
        img: ``(H, W[, C])`` uint8 or float.
        box: ``(x0, y0, x1, y1)`` in px of ``img``, continuous (pixel k covers [k, k+1)).
        out_size: ``(out_w, out_h)`` in px.

    Returns:
        ``(out_h, out_w[, C])`` array, same dtype as ``img``.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    out_w, out_h = int(out_size[0]), int(out_size[1])
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty box {box}")
    scale_hw = (out_h / (y1 - y0), out_w / (x1 - x0))
    return _resample(img, (out_h, out_w), scale_hw, (y0, x0), antialias)


def imresize_torch(x, scale: float | None = None, *, output_shape=None, antialias: bool = True):
    """Torch twin of :func:`imresize` on ``(B, C, H, W)`` float tensors (any device, autograd ok).

    Uses dense weight matrices (``out = Wy @ x @ Wx^T``), cached per size on the CPU
    and moved to ``x``'s device and dtype. Values are not clipped.
    """
    import torch

    h, w = x.shape[-2:]
    if output_shape is None:
        if scale is None:
            raise ValueError("give scale or output_shape")
        out_h, out_w = int(math.ceil(h * scale - 1e-9)), int(math.ceil(w * scale - 1e-9))
        sh = sw = float(scale)
    else:
        out_h, out_w = int(output_shape[0]), int(output_shape[1])
        sh, sw = out_h / h, out_w / w
    wy = torch.as_tensor(
        resize_weights(h, out_h, scale=sh, antialias=antialias), dtype=x.dtype, device=x.device
    )
    wx = torch.as_tensor(
        resize_weights(w, out_w, scale=sw, antialias=antialias), dtype=x.dtype, device=x.device
    )
    return torch.matmul(torch.matmul(wy, x), wx.transpose(0, 1))
