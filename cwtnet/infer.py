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

Disk. Before any tile runs, :func:`super_resolve_file` checks the free space of the
output folder against the scratch arrays (the full-size canvas, plus the halved levels
of a pyramidal TIFF) and an estimate of the output file, and refuses in one line when it
does not fit. Scratch arrays are allocated up front (``posix_fallocate``: a full disk is
an error now, never a SIGBUS later) and unlinked as soon as they are mapped, so no
scratch file outlives the process, even after ``kill -9``. The output is written to
``.<name>.cwtnet-sr-<host>-<pid>.part`` beside it and renamed when complete; a part file
of a process that no longer runs on this host is removed by the next run in the folder.
There is no resume: an interrupted run leaves nothing, and a rerun starts over.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import struct
import time
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
from cwtnet.model import SEARCH_WINDOW_KEEP, apply_search_window
from cwtnet.runtime import resolve_device
from mlcamsr.errors import InputError
from mlcamsr.remote import RemotePath, check_url, is_url
from mlcamsr.slides import open_slide

ReadFn = Callable[[int, int, int, int], np.ndarray]
"""``read(x, y, w, h) -> (h, w, 3) uint8``: a window of the LR input in its own pixels."""


# --------------------------------------------------------------------------- tiling


UNTILED_MAX_LR = 256
"""Largest LR side ``cwtnet-eval`` runs untiled by default (any network)."""
WINDOWED_UNTILED_MAX_LR = 512
"""Largest LR side run untiled by default by a CWT-Net with a windowed search: its cost is
linear in the area, so tiles only add the overlap's recomputation (128-px tiles with 16 px
overlap cover 1.56x the area of a 512-px image); peak RSS of the demo-size model at 512 LR
px is about 1 GB (``bench/inference.py --eval-image 1024``)."""
EVAL_TILE = 128
"""LR tile side ``cwtnet-eval`` uses above those sides."""


def default_eval_tile(model: nn.Module, lr_side: int) -> int | None:
    """The LR tile ``cwtnet-eval`` uses when ``--tile`` is not given (``None``: untiled).

    Untiled up to ``UNTILED_MAX_LR`` px; a CWT-Net whose search is windowed (its cost grows
    with the area, not the area squared) untiled up to ``WINDOWED_UNTILED_MAX_LR`` px;
    else ``EVAL_TILE``-px tiles."""
    window = getattr(getattr(model, "options", None), "search_window", None)
    limit = WINDOWED_UNTILED_MAX_LR if window is not None else UNTILED_MAX_LR
    return None if lr_side <= limit else EVAL_TILE


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


#: Pillow modes holding 8 bits per channel (or fewer: 1-bit, palette), safe to convert to RGB
_PIL_8BIT_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
_PIL_MODE_NAMES = {"I": "16/32-bit integer grayscale", "F": "32-bit float grayscale"}


def _load_image(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            img = tifffile.imread(path)
        else:
            with Image.open(path) as im:
                if im.mode not in _PIL_8BIT_MODES:  # I;16, I, F: convert("RGB") would clip to white
                    raise InputError(
                        f"--input {path}: a {im.mode} image ({_PIL_MODE_NAMES.get(im.mode[:1], im.mode)}); "
                        "cwtnet-sr reads 8-bit RGB: convert it first (e.g. scale to 0-255 and save as 8-bit PNG)"
                    )
                img = np.asarray(im.convert("RGB"))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"--input {path}: cannot read the image ({exc})") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3:
        raise InputError(f"--input {path}: expected an RGB image, got shape {img.shape}")
    if img.dtype != np.uint8:
        raise InputError(f"--input {path}: expected 8-bit RGB, got {img.dtype}; convert it to 8-bit first")
    return np.array(img[..., :3], order="C")  # a writable copy (PIL's arrays are read-only)


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


# --------------------------------------------------------------------------- disk

_TAG = "cwtnet-sr"
_PART_RE = re.compile(r"^\..+\." + _TAG + r"-(?P<host>.+)-(?P<pid>\d+)\.(?:part|u8)$")
#: output bytes per canvas byte, a conservative guess for H&E (PNG deflate; TIFF JPEG q90 + levels)
_OUT_RATIO = {".png": 0.75, ".tif": 0.2, ".tiff": 0.2}


def _stamp() -> str:
    return f"{_TAG}-{socket.gethostname()}-{os.getpid()}"


def part_path(out: Path) -> Path:
    """Where ``out`` is written before its rename: ``.<name>.cwtnet-sr-<host>-<pid>.part``."""
    return out.with_name(f".{out.name}.{_stamp()}.part")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale(folder: Path) -> list[Path]:
    """Remove the part/scratch files of cwtnet-sr runs on this host that no longer run."""
    removed = []
    host = socket.gethostname()
    for f in folder.glob(f".*.{_TAG}-*"):
        m = _PART_RE.match(f.name)
        if m is None or m["host"] != host or int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            f.unlink()
            removed.append(f)
    return removed


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def format_bytes(n: float) -> str:
    """``1.23 GB`` from 100 MB up, else ``12.3 MB``."""
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _no_space(path: Path, need: int | None = None) -> InputError:
    free = _free_bytes(path.parent if not path.is_dir() else path)
    what = f"needs {format_bytes(need)} more, " if need else ""
    return InputError(f"--out {path}: no space left on the device ({what}{format_bytes(free)} free); free some space, "
                      "use a smaller --region or write to another disk")


def scratch_array(folder: Path, shape: tuple[int, ...], tag: str) -> tuple[np.ndarray, Path]:
    """A uint8 array on disk in ``folder``, its blocks allocated now: ``(array, path)``.

    On POSIX the file is unlinked as soon as it is mapped (the mapping keeps it alive
    for this process only), so it cannot outlive the process; ``path`` is for removal
    elsewhere. A full disk raises :class:`InputError` here, never a SIGBUS later.
    """
    path = folder / f".{tag}.{_stamp()}.u8"
    nbytes = int(np.prod(shape))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except AttributeError:  # no posix_fallocate (macOS): sparse, the free-space check stands
            os.ftruncate(fd, nbytes)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise _no_space(path, nbytes) from None
            os.ftruncate(fd, nbytes)  # a file system without fallocate
        with os.fdopen(os.dup(fd), "r+b") as fh:
            arr = np.memmap(fh, dtype=np.uint8, mode="r+", shape=shape)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    finally:
        os.close(fd)
    if os.name == "posix":
        os.unlink(path)
    return arr, path


def pyramid_shapes(h: int, w: int, tile: int = 256) -> list[tuple[int, int]]:
    """Shapes (h, w) of the levels :func:`write_pyramid_tiff` adds below level 0."""
    out: list[tuple[int, int]] = []
    while max(h, w) > 1024 and min(h, w) >= 2 * tile:
        h, w = h // 2, w // 2
        out.append((h, w))
    return out


def write_pyramid_tiff(path: Path, arr: np.ndarray, *, mpp: float | None, tile: int = 256,
                       tmpdir: str | None = None) -> None:
    """Tiled pyramidal TIFF (levels by 2 down to <= 1024 px, JPEG tiles) from a (memmap) array.

    Levels are separate pages (reduced-resolution subfile type), the layout
    openslide's generic-TIFF reader and tiffslide both read. The halved levels are
    scratch arrays in ``tmpdir`` (default: beside ``path``) that never outlive the call;
    the file is written as a part file and renamed when complete.
    """
    folder = Path(tmpdir) if tmpdir else path.parent
    levels = [arr]
    scratch: list[Path] = []
    tmp = part_path(path)
    try:
        for k, (h, w) in enumerate(pyramid_shapes(int(arr.shape[0]), int(arr.shape[1]), tile=tile)):
            nxt, name = scratch_array(folder, (h, w, 3), f"{path.name}.level{k + 1}")
            scratch.append(name)
            _halve(levels[-1], nxt)
            levels.append(nxt)
        h0, w0 = arr.shape[:2]
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
        del levels
        for name in [*scratch, tmp]:
            with contextlib.suppress(OSError):
                os.unlink(name)


def format_seconds(s: float) -> str:
    """``3 h 05 min``, ``4 min 03 s`` or ``12.5 s``."""
    if s >= 3600:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    if s >= 60:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{s:.1f} s"


def super_resolve_file(
    checkpoint: str | Path, input_path: str | Path, out: str | Path, *,
    region: tuple[int, int, int, int] | None = None, level: int = 0, tile: int = 128,
    overlap: int = 16, device: str = "auto", use_ema: bool = True,
    progress: Callable[[int, int], None] | None = None,
    on_plan: Callable[[dict[str, Any]], None] | None = None,
    on_estimate: Callable[[float, float], None] | None = None,
    search_window: int | None | str = SEARCH_WINDOW_KEEP,
) -> dict[str, Any]:
    """The ``cwtnet-sr`` job: SISR of an image or slide region to PNG or pyramidal TIFF.

    ``search_window``: CWT-Net's search window in LR px (``None`` = global; default: as
    trained); a window makes the cost linear in the tile area.

    Before the first tile: ``on_plan(plan)`` with the output size (``width``, ``height``
    px), ``scale``, ``tiles``, ``tile``, ``scratch_bytes`` (temporary disk), ``out_bytes``
    (estimated output), ``free_bytes``, ``removed_stale`` (part files of dead runs
    removed), ``device``; refused in one line when the folder lacks the space. After
    the first tile: ``on_estimate(first_tile_s, estimated_total_s)``.

    Returns ``{"out", "width", "height", "scale", "tiles", "seconds"}`` (output size in px).
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
    apply_search_window(model, search_window)
    scale = int(ckpt["scale"])
    read, w, h, mpp, close = open_source(input_path, region=region, level=level)
    try:
        W, H = w * scale, h * scale
        n_tiles = len(tile_starts(h, tile, overlap)) * len(tile_starts(w, tile, overlap))
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--out {out}: cannot create its folder ({exc.strerror})") from None
        removed = clean_stale(out.parent)
        canvas_bytes = H * W * 3
        scratch_bytes = canvas_bytes
        if suffix != ".png":
            scratch_bytes += sum(a * b * 3 for a, b in pyramid_shapes(H, W))
        out_bytes = int(canvas_bytes * _OUT_RATIO[suffix])
        free = _free_bytes(out.parent)
        if scratch_bytes + out_bytes > free:
            raise InputError(
                f"--out {out}: the {W}x{H} px output needs about {format_bytes(scratch_bytes + out_bytes)} in "
                f"{out.parent} ({format_bytes(scratch_bytes)} scratch + about {format_bytes(out_bytes)} output), "
                f"{format_bytes(free)} free; free some space, use a smaller --region or write to another disk"
            )
        if on_plan is not None:
            on_plan({"width": W, "height": H, "scale": scale, "tiles": n_tiles, "tile": tile,
                     "scratch_bytes": scratch_bytes, "out_bytes": out_bytes, "free_bytes": free,
                     "removed_stale": [str(p) for p in removed], "device": str(dev)})
        canvas, canvas_path = scratch_array(out.parent, (H, W, 3), out.name)
        t0 = time.perf_counter()
        try:
            def sink(y: int, rows: np.ndarray) -> None:
                canvas[y : y + rows.shape[0]] = rows

            done = [0]

            def tick(n: int) -> None:
                done[0] += n
                if done[0] == n and on_estimate is not None:
                    first = time.perf_counter() - t0
                    on_estimate(first, first * n_tiles / n)
                if progress is not None:
                    progress(done[0], n_tiles)

            super_resolve_stream(model, read, w, h, scale=scale, tile=tile, overlap=overlap,
                                 device=dev, amp=dev.type == "cuda", sink=sink, progress=tick)
            close()
            close = _noop
            if suffix == ".png":
                tmp = part_path(out)
                try:
                    write_png_rows(tmp, _iter_rows(canvas), W, H)
                    os.replace(tmp, out)
                finally:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
            else:
                write_pyramid_tiff(out, canvas, mpp=(mpp / scale) if mpp else None, tmpdir=str(out.parent))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise _no_space(out) from None
            raise
        finally:
            with contextlib.suppress(OSError):  # already unlinked on POSIX
                os.unlink(canvas_path)
    finally:
        close()
    return {"out": str(out), "width": W, "height": H, "scale": scale, "tiles": n_tiles,
            "seconds": time.perf_counter() - t0}


def _noop() -> None:
    return None
