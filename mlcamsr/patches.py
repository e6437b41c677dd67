"""Read one member square around a centre: the reading policy of SPEC, with provenance.

Geometry (all continuous; pixel k covers [k, k+1)):

- The patch centre ``(cx, cy)`` is a point in level-0 pixel coordinates.
- Member ``m`` (``mpp_m = base_mpp * scale``, ``size_m = size // scale`` px) covers the
  level-0 box ``cx +- size_m * mpp_m / mpp_x / 2`` (and the same in y with ``mpp_y``),
  the same physical square for every member.
- At level L with downsample ``(dx, dy)`` (from the real level dimensions) that box is
  ``box0 / (dx, dy)``.

Source level: the level whose mpp (``mpp_x * dx``) is within ``tol`` (2 %) of ``mpp_m``
(native); else the coarsest level finer than ``mpp_m``, downsampled with the project's
anti-aliased bicubic (:func:`mlcamsr.resize.resample_box`). A native box that falls on
whole pixels with exactly ``size_m`` px is cropped as is; any other box (odd downsamples
such as 1.995, half-pixel centres, a 0.243 member from a 0.226 slide) is read with a
margin and resampled, so the centre stays exact. Upsampling is refused unless allowed.

Provenance strings (column ``src_<member>`` of the table):
``native:L1`` (crop of native level 1), ``native:L1:bicubic-aa`` (native level 1,
resampled sub-pixel to keep the square exact), ``resampled:L0:bicubic-aa`` (downsampled
from level 0), ``upsampled:L0:bicubic`` (only with ``allow_upsample``).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlcamsr.errors import InputError
from mlcamsr.resize import resample_box
from mlcamsr.slides import SlideReader

__all__ = [
    "NATIVE_TOL",
    "BLOCK_CACHE",
    "BlockCache",
    "MemberSpec",
    "ReadPlan",
    "SquareOutside",
    "member_specs",
    "plan_member",
    "read_member",
    "read_patch",
]

#: relative mpp difference under which a level counts as native for a member
NATIVE_TOL = 0.02
_EPS = 1e-6


class SquareOutside(ValueError):
    """The member square of a centre leaves the slide (a per-row failure)."""


@dataclass(frozen=True)
class MemberSpec:
    """One member of the store: ``name`` (``40x``), ``scale`` (1, 2, 4), ``mpp`` um/px, ``size`` px."""

    name: str
    scale: int
    mpp: float
    size: int
    mag: float


def member_specs(
    size: int, base_mpp: float, base_mag: float, scales: Sequence[int]
) -> list[MemberSpec]:
    """The members of an extraction, finest first.

    Raises:
        InputError: ``size`` not divisible by a scale, scales not positive/unique, bad mpp.
    """
    scales = [int(s) for s in scales]
    if not scales or any(s < 1 for s in scales) or len(set(scales)) != len(scales):
        raise InputError(f"--scales {','.join(map(str, scales))}: give distinct integers >= 1, e.g. 1,2,4")
    if size < 1:
        raise InputError(f"--size {size}: give a positive patch size in px, e.g. 1024")
    bad = [s for s in scales if size % s]
    if bad:
        raise InputError(
            f"--size {size} is not divisible by scale(s) {','.join(map(str, bad))}; "
            f"choose a size that is a multiple of {math.lcm(*scales)}"
        )
    if not (base_mpp > 0 and math.isfinite(base_mpp)):
        raise InputError(f"--base-mpp {base_mpp}: give the finest member's um/px, e.g. 0.243")
    if not (base_mag > 0 and math.isfinite(base_mag)):
        raise InputError(f"--base-mag {base_mag}: give the finest member's magnification, e.g. 40")
    from mlcamsr.store import member_name

    out = [
        MemberSpec(member_name(base_mag, s), s, base_mpp * s, size // s, base_mag / s)
        for s in sorted(scales)
    ]
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise InputError(f"--base-mag {base_mag:g} with scales {scales} gives repeated member names {names}")
    return out


@dataclass(frozen=True)
class Geometry:
    """What the reading policy needs of a slide (from a :class:`mlcamsr.slides.SlideReader`):
    level ``dims`` (w, h) px, ``downsamples`` (dx, dy) level-0 px per level px, level-0
    ``mpp`` (x, y) um/px."""

    dims: tuple[tuple[int, int], ...]
    downsamples: tuple[tuple[float, float], ...]
    mpp: tuple[float, float]

    @classmethod
    def of(cls, reader: SlideReader, mpp: tuple[float, float] | None = None) -> Geometry:
        m = mpp if mpp is not None else reader.mpp
        if m is None:
            raise InputError(f"slide {reader.path} has no mpp; add an mpp column or --mpp")
        dims = tuple((int(w), int(h)) for w, h in reader.level_dimensions)
        w0, h0 = dims[0]
        ds = tuple((w0 / w, h0 / h) for w, h in dims)
        return cls(dims, ds, (float(m[0]), float(m[1])))


@dataclass(frozen=True)
class ReadPlan:
    """How to read one member: source ``level``, ``window`` (x, y, w, h) in level px to
    read, and ``box`` (x0, y0, x1, y1) continuous px of that window to map onto
    ``size`` x ``size``; ``crop`` when the window is the member itself."""

    member: MemberSpec
    level: int
    window: tuple[int, int, int, int]
    box: tuple[float, float, float, float]
    crop: bool
    source: str


def choose_level(geo: Geometry, mpp_m: float, *, allow_upsample: bool = False, tol: float = NATIVE_TOL) -> tuple[int, str]:
    """``(level, kind)`` with kind ``native``, ``resampled`` or ``upsampled``."""
    level_mpp = [geo.mpp[0] * dx for dx, _ in geo.downsamples]
    native = [(abs(m - mpp_m) / mpp_m, i) for i, m in enumerate(level_mpp) if abs(m - mpp_m) <= tol * mpp_m]
    if native:
        return min(native)[1], "native"
    finer = [(m, i) for i, m in enumerate(level_mpp) if m < mpp_m]
    if finer:
        return max(finer)[1], "resampled"
    if allow_upsample:
        return 0, "upsampled"
    raise InputError(
        f"the {mpp_m:.3f} um/px member needs upsampling (finest level is {level_mpp[0]:.3f} um/px); "
        "lower the members with --base-mpp/--base-mag, or pass --allow-upsample"
    )


def plan_member(
    geo: Geometry,
    cx: float,
    cy: float,
    spec: MemberSpec,
    *,
    allow_upsample: bool = False,
    tol: float = NATIVE_TOL,
) -> ReadPlan:
    """Plan the read of ``spec`` centred on level-0 point ``(cx, cy)``.

    Raises:
        SquareOutside: the member square leaves level 0.
        InputError: upsampling would be needed and is not allowed.
    """
    hx = spec.size * spec.mpp / geo.mpp[0] / 2.0
    hy = spec.size * spec.mpp / geo.mpp[1] / 2.0
    x0, y0, x1, y1 = cx - hx, cy - hy, cx + hx, cy + hy
    w0, h0 = geo.dims[0]
    if x0 < -_EPS or y0 < -_EPS or x1 > w0 + _EPS or y1 > h0 + _EPS:
        raise SquareOutside(
            f"the {spec.name} square [{x0:.0f},{x1:.0f})x[{y0:.0f},{y1:.0f}) leaves the slide "
            f"({w0}x{h0} px at level 0)"
        )
    level, kind = choose_level(geo, spec.mpp, allow_upsample=allow_upsample, tol=tol)
    dx, dy = geo.downsamples[level]
    lw, lh = geo.dims[level]
    bx0, by0, bx1, by1 = x0 / dx, y0 / dy, x1 / dx, y1 / dy
    n = spec.size

    def whole(v: float) -> bool:
        return abs(v - round(v)) < 1e-6

    if (
        kind == "native"
        and whole(bx0)
        and whole(by0)
        and abs((bx1 - bx0) - n) < 1e-6
        and abs((by1 - by0) - n) < 1e-6
    ):
        ix, iy = int(round(bx0)), int(round(by0))
        return ReadPlan(spec, level, (ix, iy, n, n), (0.0, 0.0, float(n), float(n)), True, f"native:L{level}")

    # Kernel support of the antialiased bicubic in source px: 2 * max(1, shrink) each side.
    shrink = max(1.0, (bx1 - bx0) / n, (by1 - by0) / n)
    margin = int(math.ceil(2.0 * shrink)) + 1
    ix0 = max(0, int(math.floor(bx0)) - margin)
    iy0 = max(0, int(math.floor(by0)) - margin)
    ix1 = min(lw, int(math.ceil(bx1)) + margin)
    iy1 = min(lh, int(math.ceil(by1)) + margin)
    box = (bx0 - ix0, by0 - iy0, bx1 - ix0, by1 - iy0)
    filt = "bicubic" if kind == "upsampled" else "bicubic-aa"
    return ReadPlan(spec, level, (ix0, iy0, ix1 - ix0, iy1 - iy0), box, False, f"{kind}:L{level}:{filt}")


class BlockCache:
    """A per-process LRU of decoded level blocks (``BLOCK`` px squares on the level grid).

    Neighbouring or overlapping patch squares share pyramid tiles; with a cache each
    block is decoded once per worker process instead of once per square that touches it.
    The pixels are the same either way (the blocks are the slide layer's own reads).
    """

    def __init__(self, max_bytes: int = 0) -> None:
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._d: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # thread workers share one cache

    def get(self, key: tuple[Any, ...]) -> np.ndarray | None:
        with self._lock:
            v = self._d.get(key)
            if v is None:
                self.misses += 1
                return None
            self.hits += 1
            self._d.move_to_end(key)
            return v

    def put(self, key: tuple[Any, ...], value: np.ndarray) -> None:
        if value.nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._d:
                return
            self._d[key] = value
            self.nbytes += value.nbytes
            while self.nbytes > self.max_bytes and self._d:
                _, old = self._d.popitem(last=False)
                self.nbytes -= old.nbytes

    def resize(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = int(max_bytes)
            while self.nbytes > self.max_bytes and self._d:
                _, old = self._d.popitem(last=False)
                self.nbytes -= old.nbytes

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.nbytes = 0


#: block side in level px (CAMELYON and synth tiles are 512; Aperio 240/256 divide into it closely)
BLOCK = 512
#: the cache of this process (sized by ``extract(cache_mb=...)``; 0 disables it)
BLOCK_CACHE = BlockCache(0)


def read_level(
    reader: SlideReader,
    geo: Geometry,
    level: int,
    window: tuple[int, int, int, int],
    *,
    cache: BlockCache | None = None,
) -> np.ndarray:
    """Read ``window`` = (x, y, w, h) in level-``level`` px as ``(h, w, 3)`` uint8 RGB.

    With a ``cache`` of non-zero budget the window is assembled from cached
    ``BLOCK``-px blocks of the level (white outside the level, like the reader).
    """
    ix, iy, w, h = window
    if cache is None or cache.max_bytes <= 0:
        return np.asarray(reader.read_level(level, (ix, iy), (w, h)))  # level px, pixel-exact
    lw, lh = geo.dims[level]
    x0, y0, x1, y1 = max(ix, 0), max(iy, 0), min(ix + w, lw), min(iy + h, lh)
    inside = (x0, y0, x1, y1) == (ix, iy, ix + w, iy + h)
    # every pixel of a window inside the level comes from a block: no white fill needed
    out = np.empty((h, w, 3), np.uint8) if inside else np.full((h, w, 3), 255, np.uint8)
    if x1 <= x0 or y1 <= y0:
        return out
    src = str(reader.path)
    for by in range(y0 // BLOCK, (y1 - 1) // BLOCK + 1):
        for bx in range(x0 // BLOCK, (x1 - 1) // BLOCK + 1):
            key = (src, level, bx, by)
            blk = cache.get(key)
            if blk is None:
                bw, bh = min(BLOCK, lw - bx * BLOCK), min(BLOCK, lh - by * BLOCK)
                blk = read_level(reader, geo, level, (bx * BLOCK, by * BLOCK, bw, bh))[..., :3]
                cache.put(key, blk)
            # intersection of this block with the window, in level px
            gx0, gy0 = max(x0, bx * BLOCK), max(y0, by * BLOCK)
            gx1, gy1 = min(x1, bx * BLOCK + blk.shape[1]), min(y1, by * BLOCK + blk.shape[0])
            out[gy0 - iy : gy1 - iy, gx0 - ix : gx1 - ix] = blk[
                gy0 - by * BLOCK : gy1 - by * BLOCK, gx0 - bx * BLOCK : gx1 - bx * BLOCK
            ]
    return out


def read_member(
    reader: SlideReader, geo: Geometry, plan: ReadPlan, *, cache: BlockCache | None = None
) -> np.ndarray:
    """Read one member as ``(size, size, 3)`` uint8 RGB following ``plan``."""
    img = read_level(reader, geo, plan.level, plan.window, cache=cache)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"reader returned shape {img.shape}, expected (h, w, 3)")
    img = img[..., :3]
    if plan.crop:
        return np.ascontiguousarray(img, dtype=np.uint8)
    n = plan.member.size
    if plan.source.startswith("upsampled"):
        return resample_box(img, plan.box, (n, n), antialias=False)
    return np.ascontiguousarray(resample_box(np.ascontiguousarray(img), plan.box, (n, n)))


def read_patch(
    reader: SlideReader,
    geo: Geometry,
    cx: float,
    cy: float,
    specs: Sequence[MemberSpec],
    *,
    allow_upsample: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read every member of one centre: ``(images, sources)`` keyed by member name."""
    plans = [plan_member(geo, cx, cy, s, allow_upsample=allow_upsample) for s in specs]
    images = {p.member.name: read_member(reader, geo, p) for p in plans}
    return images, {p.member.name: p.source for p in plans}
