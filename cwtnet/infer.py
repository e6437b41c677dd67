"""Tiled super-resolution with seamless blending, and ``cwtnet-sr`` (SISR mode).

Tiling. The LR input is cut into ``tile`` x ``tile`` tiles whose starts step by
``tile - overlap`` (the last tile is aligned to the far edge). Each tile is
super-resolved on its own; in the output, a tile's pixels are weighted by a linear
ramp that rises over the ``overlap * scale`` output pixels of every edge shared with
a neighbour (weight 1 elsewhere and along the image border), and the weighted sum
is divided by the sum of weights. Two ramps over the same band sum to one, so the
blend is seamless and a region covered by one tile only is exactly that tile's
output. Away from seams (more than the network's receptive field from a tile edge)
tiled equals untiled for convolutional networks (EDSR, RCAN, SRCNN). CWT-Net's
search-transfer attention and WR channel attention look at the whole input, so its
tiled output differs from an untiled run: the search is restricted to the tile.

Memory. :func:`super_resolve_stream` keeps one band of tiles at a time: the float
accumulator is ``(tile * scale) x (width * scale)`` plus one tile's activations;
finished output rows go straight to a disk-backed array (``np.memmap``) that the
PNG writer (row by row) and the pyramidal TIFF writer (tile by tile) read.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from PIL import Image
from torch import nn

from cwtnet.checkpoint import load_model
from cwtnet.metrics import tensor_to_uint8
from cwtnet.runtime import resolve_device
from mlcamsr.errors import InputError
from mlcamsr.remote import RemotePath, check_url, is_url
from mlcamsr.slides import open_slide

ReadFn = Callable[[int, int, int, int], np.ndarray]
"""``read(x, y, w, h) -> (h, w, 3) uint8``: a window of the LR input in its own pixels."""


# --------------------------------------------------------------------------- tiling


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``[0, length)`` with at least ``overlap`` px shared."""
    if tile >= length:
        return [0]
    if overlap >= tile:
        raise InputError(f"--overlap {overlap} must be smaller than --tile {tile}")
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def ramp(length: int, lead: int, trail: int) -> np.ndarray:
    """1-D blend weights: linear rise over ``lead`` px, fall over ``trail`` px, 1 between."""
    w = np.ones(length, np.float32)
    if lead > 0:
        w[:lead] = np.minimum(w[:lead], (np.arange(lead, dtype=np.float32) + 0.5) / lead)
    if trail > 0:
        w[length - trail :] = np.minimum(
            w[length - trail :], (np.arange(trail, 0, -1, dtype=np.float32) - 0.5) / trail
        )
    return w


def _edge_overlaps(starts: list[int], i: int, tile: int, length: int) -> tuple[int, int]:
    """Overlap (px) of tile ``i`` with its previous and next neighbour along one axis."""
    s = starts[i]
    e = min(s + tile, length)
    lead = (min(starts[i - 1] + tile, length) - s) if i > 0 else 0
    trail = (e - starts[i + 1]) if i + 1 < len(starts) else 0
    return max(lead, 0), max(trail, 0)


def sr_call(model: nn.Module, lr: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
    """``model(lr, ref)``; ``ref=None`` is SISR mode (CWT-Net runs its WR module)."""
    return model(lr, ref)


@torch.no_grad()
def tiled_sr(
    model: nn.Module, lr: torch.Tensor, *, scale: int, ref: torch.Tensor | None = None,
    tile: int | None = None, overlap: int = 16, amp: bool = False,
) -> torch.Tensor:
    """Super-resolve ``lr`` (1, 3, H, W) in tiles; ``ref`` (1, 3, 2H, 2W) is tiled alongside.

    ``tile=None`` or a tile not smaller than the input: one untiled call.
    Returns (1, 3, sH, sW) float32 on the input's device.
    """
    _, _, h, w = lr.shape
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (amp and lr.is_cuda) else contextlib.nullcontext()
    if tile is None or (tile >= h and tile >= w):
        with ctx:
            return sr_call(model, lr, ref).float()
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    out = torch.zeros(1, 3, h * scale, w * scale, device=lr.device)
    wsum = torch.zeros(1, 1, h * scale, w * scale, device=lr.device)
    for iy, y0 in enumerate(ys):
        th = min(tile, h - y0)
        wy = ramp(th * scale, *(o * scale for o in _edge_overlaps(ys, iy, tile, h)))
        for ix, x0 in enumerate(xs):
            tw = min(tile, w - x0)
            wx = ramp(tw * scale, *(o * scale for o in _edge_overlaps(xs, ix, tile, w)))
            part = lr[:, :, y0 : y0 + th, x0 : x0 + tw]
            rpart = None
            if ref is not None:
                rpart = ref[:, :, 2 * y0 : 2 * (y0 + th), 2 * x0 : 2 * (x0 + tw)]
            with ctx:
                sr = sr_call(model, part, rpart).float()
            wt = torch.from_numpy(np.outer(wy, wx)).to(lr.device)[None, None]
            ys_, xs_ = slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale)
            out[:, :, ys_, xs_] += sr * wt
            wsum[:, :, ys_, xs_] += wt
    return out / wsum


def super_resolve_array(
    model: nn.Module, img: np.ndarray, *, scale: int, tile: int | None = 128, overlap: int = 16,
    device: torch.device | str = "cpu", amp: bool = False,
) -> np.ndarray:
    """SISR of an (H, W, 3) uint8 image held in memory -> (sH, sW, 3) uint8."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(255).to(device)
    return tensor_to_uint8(tiled_sr(model, x, scale=scale, tile=tile, overlap=overlap, amp=amp))


@torch.no_grad()
def super_resolve_stream(
    model: nn.Module, read: ReadFn, width: int, height: int, *, scale: int, tile: int = 128,
    overlap: int = 16, device: torch.device | str = "cpu", amp: bool = False,
    sink: Callable[[int, np.ndarray], None], progress: Callable[[int], None] | None = None,
) -> None:
    """Tiled SISR of a ``width`` x ``height`` LR source read window by window.

    ``sink(y_out, rows)`` receives finished output rows (uint8, (n, s*width, 3)) from
    top to bottom. Peak memory: one band of ``tile * scale`` output rows in float32 plus
    one tile through the network. ``progress(n)`` is called after each tile.
    """
    dev = torch.device(device)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (amp and dev.type == "cuda") else contextlib.nullcontext()
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    s = scale
    W = width * s
    band0 = 0  # first output row held in the band
    acc = np.zeros((0, W, 3), np.float32)
    wsum = np.zeros((0, W), np.float32)
    for iy, y0 in enumerate(ys):
        th = min(tile, height - y0)
        # rows above this band's start are final
        done = y0 * s - band0
        if done > 0:
            sink(band0, _finish(acc[:done], wsum[:done]))
            acc, wsum, band0 = acc[done:], wsum[done:], y0 * s
        need = (y0 + th) * s - band0
        if need > acc.shape[0]:
            extra = need - acc.shape[0]
            acc = np.concatenate([acc, np.zeros((extra, W, 3), np.float32)])
            wsum = np.concatenate([wsum, np.zeros((extra, W), np.float32)])
        wy = ramp(th * s, *(o * s for o in _edge_overlaps(ys, iy, tile, height)))
        for ix, x0 in enumerate(xs):
            tw = min(tile, width - x0)
            wx = ramp(tw * s, *(o * s for o in _edge_overlaps(xs, ix, tile, width)))
            win = read(x0, y0, tw, th)
            x = torch.from_numpy(np.ascontiguousarray(win[..., :3])).permute(2, 0, 1)[None]
            x = x.float().div(255).to(dev)
            with ctx:
                sr = model(x, None).float()
            sr = sr.clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
            wt = np.outer(wy, wx)
            r0 = y0 * s - band0
            acc[r0 : r0 + th * s, x0 * s : (x0 + tw) * s] += sr * wt[..., None]
            wsum[r0 : r0 + th * s, x0 * s : (x0 + tw) * s] += wt
            if progress is not None:
                progress(1)
    if acc.shape[0]:
        sink(band0, _finish(acc, wsum))


def _finish(acc: np.ndarray, wsum: np.ndarray) -> np.ndarray:
    v = acc / np.maximum(wsum, 1e-12)[..., None]
    return np.clip(np.rint(v * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- inputs


def parse_region(text: str | None) -> tuple[int, int, int, int] | None:
    """``"x,y,w,h"`` -> ints (x, y level-0 px; w, h px at the chosen level)."""
    if text is None:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--region {text!r}: give x,y,w,h as four integers, e.g. 1000,2000,512,512") from None
    if w <= 0 or h <= 0:
        raise InputError(f"--region {text!r}: width and height must be positive")
    return x, y, w, h


def _is_image(path: Path) -> bool:
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
        return True
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            with tifffile.TiffFile(path) as tf:
                series = tf.series[0]
                page = tf.pages.first
                return len(series.levels) <= 1 and not page.is_tiled
        except Exception:  # noqa: BLE001
            return False
    return False


def _load_image(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            img = tifffile.imread(path)
        else:
            with Image.open(path) as im:
                img = np.asarray(im.convert("RGB"))
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"--input {path}: cannot read the image ({exc})") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3:
        raise InputError(f"--input {path}: expected an RGB image, got shape {img.shape}")
    if img.dtype != np.uint8:
        raise InputError(f"--input {path}: expected 8-bit RGB, got {img.dtype}")
    return np.ascontiguousarray(img[..., :3])


def open_source(
    path: str | Path, *, region: tuple[int, int, int, int] | None = None, level: int = 0
) -> tuple[ReadFn, int, int, float | None, Callable[[], None]]:
    """``(read, width, height, mpp, close)`` of an image file or a slide region.

    Slides (anything ``mlcamsr.slides.open_slide`` opens) are read window by window,
    never whole; ``region`` is x, y in level-0 px and w, h in px of ``level``.
    """
    remote = is_url(path)  # a slide in object storage: tiffslide by byte range
    if remote:
        check_url(str(path), what="--input", must_exist=True)
    p: Any = RemotePath(str(path)) if remote else Path(path)
    if not remote and not p.exists():
        raise InputError(f"--input {p}: no such file")
    if not remote and _is_image(p):
        img = _load_image(p)
        x0, y0 = 0, 0
        h, w = img.shape[:2]
        if region is not None:
            x0, y0, w, h = region
            if x0 < 0 or y0 < 0 or x0 + w > img.shape[1] or y0 + h > img.shape[0]:
                raise InputError(f"--region {region}: outside the {img.shape[1]}x{img.shape[0]} image")

        def read_img(x: int, y: int, tw: int, th: int) -> np.ndarray:
            return img[y0 + y : y0 + y + th, x0 + x : x0 + x + tw]

        return read_img, w, h, None, lambda: None

    slide = open_slide(p)
    if not 0 <= level < slide.level_count:
        slide.close()
        raise InputError(f"--level {level}: {p.name} has levels 0..{slide.level_count - 1}")
    dx, dy = slide.level_downsamples[level]
    lw, lh = slide.level_dimensions[level]
    if region is None:
        x0, y0, w, h = 0, 0, lw, lh
    else:
        x0, y0, w, h = region
        w0, h0 = slide.level_dimensions[0]
        # up to one --level px of slack (level sizes are rounded); beyond it the slide reads
        # back transparent black, which would be super-resolved as if it were tissue
        if x0 < 0 or y0 < 0 or x0 + (w - 1) * dx >= w0 or y0 + (h - 1) * dy >= h0:
            slide.close()
            raise InputError(
                f"--region {x0},{y0},{w},{h}: outside {p.name} (level 0: {w0}x{h0} px; "
                f"--level {level}: {lw}x{lh} px); x, y are level-0 px, w, h px of --level"
            )
    mpp = slide.mpp[0] * dx if slide.mpp else None

    def read_slide(x: int, y: int, tw: int, th: int) -> np.ndarray:
        loc = (int(round(x0 + x * dx)), int(round(y0 + y * dy)))
        return np.asarray(slide.read_region(loc, level, (tw, th)))[..., :3]

    return read_slide, w, h, mpp, slide.close


# --------------------------------------------------------------------------- outputs


def write_png_rows(path: Path, rows: Iterator[np.ndarray], width: int, height: int) -> None:
    """Write an RGB PNG from an iterator of uint8 row blocks, never holding the whole image."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(6)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        for block in rows:
            raw = np.concatenate([np.zeros((block.shape[0], 1), np.uint8),
                                  block.reshape(block.shape[0], -1)], axis=1)
            data = comp.compress(raw.tobytes())
            if data:
                fh.write(chunk(b"IDAT", data))
        fh.write(chunk(b"IDAT", comp.flush()))
        fh.write(chunk(b"IEND", b""))


def _iter_rows(arr: np.ndarray, block: int = 256) -> Iterator[np.ndarray]:
    for y in range(0, arr.shape[0], block):
        yield np.asarray(arr[y : y + block])


def _halve(src: np.ndarray, dst: np.ndarray, block: int = 512) -> None:
    """2x2 mean of ``src`` into ``dst`` in bands (both may be memmaps)."""
    h, w = dst.shape[:2]
    for y in range(0, h, block):
        y1 = min(y + block, h)
        a = np.asarray(src[2 * y : 2 * y1, : 2 * w], dtype=np.uint16)
        a = a[: 2 * (y1 - y)]
        s = a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]
        dst[y:y1] = ((s + 2) // 4).astype(np.uint8)


def write_pyramid_tiff(path: Path, arr: np.ndarray, *, mpp: float | None, tile: int = 256,
                       tmpdir: str | None = None) -> None:
    """Tiled pyramidal TIFF (levels by 2 down to <= 1024 px, JPEG tiles) from a (memmap) array.

    Levels are separate pages (reduced-resolution subfile type), the layout
    openslide's generic-TIFF reader and tiffslide both read.
    """
    levels = [arr]
    tmp_files: list[str] = []
    while max(levels[-1].shape[:2]) > 1024 and min(levels[-1].shape[:2]) >= 2 * tile:
        h, w = levels[-1].shape[0] // 2, levels[-1].shape[1] // 2
        fd, name = tempfile.mkstemp(suffix=".u8", dir=tmpdir)
        os.close(fd)
        tmp_files.append(name)
        nxt = np.memmap(name, dtype=np.uint8, mode="w+", shape=(h, w, 3))
        _halve(levels[-1], nxt)
        levels.append(nxt)
    h0, w0 = arr.shape[:2]
    tmp = path.with_name(path.name + ".part")
    try:
        with tifffile.TiffWriter(tmp, bigtiff=arr.nbytes > 3_500_000_000) as tw:
            for k, lv in enumerate(levels):
                kw: dict[str, Any] = {}
                if mpp:
                    hk, wk = lv.shape[:2]
                    kw = dict(resolution=(1e4 / (mpp * w0 / wk), 1e4 / (mpp * h0 / hk)),
                              resolutionunit="CENTIMETER")
                tw.write(lv, photometric="rgb", tile=(tile, tile), compression="jpeg",
                         compressionargs={"level": 90}, subfiletype=1 if k else 0,
                         metadata=None, software="cwtnet-sr", maxworkers=1, **kw)
        os.replace(tmp, path)
    finally:
        for lv in levels[1:]:
            del lv
        for name in tmp_files:
            with contextlib.suppress(OSError):
                os.unlink(name)


def super_resolve_file(
    checkpoint: str | Path, input_path: str | Path, out: str | Path, *,
    region: tuple[int, int, int, int] | None = None, level: int = 0, tile: int = 128,
    overlap: int = 16, device: str = "auto", use_ema: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The ``cwtnet-sr`` job: SISR of an image or slide region to PNG or pyramidal TIFF.

    Returns ``{"out", "width", "height", "scale", "tiles"}`` (output size in px).
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        raise InputError(f"--out {out}: write .png or .tif/.tiff (pyramidal TIFF)")
    if tile < 8:
        raise InputError(f"--tile {tile}: use at least 8 LR px (default 128)")
    if not 0 <= overlap < tile:
        raise InputError(f"--overlap {overlap}: use 0 <= overlap < tile ({tile})")
    dev = resolve_device(device)
    model, ckpt = load_model(checkpoint, use_ema=use_ema, device=dev)
    scale = int(ckpt["scale"])
    read, w, h, mpp, close = open_source(input_path, region=region, level=level)
    W, H = w * scale, h * scale
    n_tiles = len(tile_starts(h, tile, overlap)) * len(tile_starts(w, tile, overlap))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, mm_name = tempfile.mkstemp(suffix=".u8", dir=out.parent)
    os.close(fd)
    try:
        canvas = np.memmap(mm_name, dtype=np.uint8, mode="w+", shape=(H, W, 3))

        def sink(y: int, rows: np.ndarray) -> None:
            canvas[y : y + rows.shape[0]] = rows

        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(done[0], n_tiles)

        try:
            super_resolve_stream(model, read, w, h, scale=scale, tile=tile, overlap=overlap,
                                 device=dev, amp=dev.type == "cuda", sink=sink, progress=tick)
        finally:
            close()
        canvas.flush()
        if suffix == ".png":
            tmp = out.with_name(out.name + ".part")
            write_png_rows(tmp, _iter_rows(canvas), W, H)
            os.replace(tmp, out)
        else:
            write_pyramid_tiff(out, canvas, mpp=(mpp / scale) if mpp else None, tmpdir=str(out.parent))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(mm_name)
    return {"out": str(out), "width": W, "height": H, "scale": scale, "tiles": n_tiles}
