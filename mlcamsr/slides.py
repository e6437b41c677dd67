"""One reader interface over openslide and tiffslide, with honest levels and mpp.

Units everywhere: *level-0 px* are pixels of the full-resolution level; *level-k px*
are pixels of level k; ``mpp`` is micrometres per level-0 pixel (um/px); pixel data
is ``(h, w, 3)`` uint8 RGB.

What this layer guarantees, whatever the backend:

- ``level_downsamples[k] = (w0 / wk, h0 / hk)``, from the real level dimensions (never
  from a backend's averaged downsample or ``get_best_level_for_downsample``).
- No native level is lost. tiffslide 3.0.1 silently drops levels whose size is not an
  exact half of the level above (1000 px with a 501 px level 1 shows as 1000 and 250
  only); the tiffslide backend lists the pyramid pages itself with tifffile and reads
  the dropped levels lazily from those pages (tile by tile, never a whole level).
- Reads are pixel-exact: a read returns stored level-k pixels, never a sub-pixel
  resampling. (openslide's own ``read_region`` bilinearly interpolates when
  ``x / downsample`` is fractional, which happens at every level of an odd-downsample
  slide; such reads go to the TIFF pages instead, see :class:`Slide`.)
- Out-of-slide pixels and transparent pixels are white (255).
- ``mpp`` is discovered from the slide (openslide/tiffslide metadata, TIFF resolution
  tags in centimetre or inch, OME ``PhysicalSizeX``), else the caller's ``mpp=``; values
  outside 0.01-100 um/px (e.g. 72 dpi = 352.8 um/px) are ignored as bogus. With none,
  ``mpp`` is None and :func:`require_mpp` refuses the slide.

:class:`SlideReader` is the interface every consumer takes (a ``typing.Protocol``);
:class:`Slide`, what :func:`open_slide` returns, is its implementation.

Readers hold open file handles and do not pickle: give workers a :class:`SlideRef`
(``reader.ref``) and let each open its own reader.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, Self, get_args, runtime_checkable

import numpy as np

from mlcamsr.errors import InputError
from mlcamsr.remote import RemotePath, is_url, open_remote_binary

Backend = Literal["auto", "openslide", "tiffslide"]
#: the one list of slide reader choices (``--backend`` of every command)
BACKENDS: tuple[str, ...] = get_args(Backend)
# Files that ``auto`` opens with tiffslide first (faster tile decode, same pixels).
TIFF_SUFFIXES: frozenset[str] = frozenset({".tif", ".tiff", ".svs"})

#: the ``Slide.level_sources`` whose pixels tifffile/imagecodecs decode (tiffslide's own
#: decoder): a level read through one of these by both backends is compared with itself
TIFFFILE_SOURCES: frozenset[str] = frozenset({"tiff-tiles", "tiffslide", "tiff-page"})

MPP_MIN, MPP_MAX = 0.01, 100.0
"""Plausible level-0 um/px; metadata outside this range is ignored (72 dpi = 352.8 um/px)."""

_UM_PER_UNIT = {2: 25400.0, 3: 10000.0}  # TIFF ResolutionUnit: 2 inch, 3 centimetre
_OME_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


def _plausible(v: Any) -> float | None:
    """``float(v)`` when it is a finite mpp in [MPP_MIN, MPP_MAX] um/px, else None."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and MPP_MIN <= f <= MPP_MAX else None


@dataclass(frozen=True)
class SlideRef:
    """A picklable recipe for a reader: what a dask worker receives instead of a reader.

    Attributes:
        path: the slide file (or DICOM folder).
        backend: ``"auto"``, ``"openslide"`` or ``"tiffslide"``.
        mpp: level-0 um/px override, used only when the slide has none.
    """

    path: Path
    backend: str = "auto"
    mpp: float | None = None

    def open(self) -> Slide:
        """Open a fresh reader (one per process or thread)."""
        return open_slide(self.path, backend=self.backend, mpp=self.mpp)


class _PageLevel:
    """One pyramid level read lazily from a TIFF page with tifffile (zarr over the tiles)."""

    def __init__(self, page: Any) -> None:
        import zarr

        self.page = page
        self.array = zarr.open_array(page.aszarr(), mode="r")

    def read(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        return np.asarray(self.array[y0:y1, x0:x1])


class _TileLevel:
    """One tiled TIFF page read tile by tile: ``os.pread`` of each tile's bytes and the
    page's own decoder (tifffile's, the one tiffslide's zarr store calls), assembled
    into the window. Pixel-identical to the zarr path; it skips zarr's per-chunk async
    machinery and its fresh buffers (page faults, the system time of a read), and both
    ``pread`` and the decoders release the GIL, so reader threads decode in parallel.
    """

    def __init__(self, page: Any, fd: int) -> None:
        self.page = page
        self.fd = fd
        self.tw, self.th = int(page.tilewidth), int(page.tilelength)
        self.ntx = -(-int(page.imagewidth) // self.tw)
        self.spp = int(page.samplesperpixel)
        self.offsets = page.dataoffsets
        self.counts = page.databytecounts
        self.kw: dict[str, Any] = {"_fullsize": True}
        if page.jpegtables is not None:
            self.kw["jpegtables"] = page.jpegtables
        if getattr(page.keyframe, "jpegheader", None) is not None:
            self.kw["jpegheader"] = page.keyframe.jpegheader
        self.decode = page.decode

    @staticmethod
    def usable(page: Any) -> bool:
        """A tiled, chunky (interleaved), 8-bit page of 3 or 4 samples, one tile deep."""
        try:
            return bool(
                page.is_tiled
                and int(page.planarconfig) == 1
                and int(page.bitspersample) == 8
                and int(page.samplesperpixel) in (3, 4)
                and int(getattr(page, "tiledepth", 1)) == 1
                and int(getattr(page, "imagedepth", 1)) == 1
            )
        except Exception:  # noqa: BLE001 - anything unusual: the zarr path reads it
            return False

    def read(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        tw, th = self.tw, self.th
        out = np.empty((y1 - y0, x1 - x0, self.spp), np.uint8)
        for ty in range(y0 // th, (y1 - 1) // th + 1):
            for tx in range(x0 // tw, (x1 - 1) // tw + 1):
                i = ty * self.ntx + tx
                gx0, gy0 = max(x0, tx * tw), max(y0, ty * th)
                gx1, gy1 = min(x1, tx * tw + tw), min(y1, ty * th + th)
                dst = out[gy0 - y0 : gy1 - y0, gx0 - x0 : gx1 - x0]
                count = int(self.counts[i])
                if count == 0 or int(self.offsets[i]) == 0:  # a tile never written: the fill value
                    dst[...] = 0
                    continue
                data = os.pread(self.fd, count, int(self.offsets[i]))
                if len(data) != count:
                    raise OSError(f"tile {i} of a {self.page.shape[1]}x{self.page.shape[0]} level: "
                                  f"read {len(data)} of {count} bytes (file truncated?)")
                tile = self.decode(data, i, **self.kw)[0]
                tile = tile.reshape(th, tw, self.spp)
                dst[...] = tile[gy0 - ty * th : gy1 - ty * th, gx0 - tx * tw : gx1 - tx * tw]
        return out


def _tiff_pyramid_pages(tf: Any) -> list[Any]:
    """Pyramid pages of a TIFF, largest first: series levels + tiled reduced pages.

    Labels, macros and thumbnails are left out: a pyramid page is tiled, RGB(A), not
    described as ``label``/``macro``, no wider than level 0 and of its aspect ratio
    within one level-k pixel.
    """
    cands: list[Any] = []
    for s in tf.series:
        for lv in getattr(s, "levels", [s]):
            if lv.keyframe is not None:
                cands.append(lv.keyframe)
    cands.extend(tf.pages)
    first = cands[0] if cands else None
    if first is None:
        return []
    h0, w0 = first.shape[:2]
    out: dict[tuple[int, int], Any] = {}
    for p in cands:
        if not hasattr(p, "is_tiled") or len(p.shape) != 3 or p.shape[-1] not in (3, 4):
            continue
        desc = (p.description or "").lower()
        if "label" in desc or "macro" in desc:
            continue
        h, w = p.shape[:2]
        if w > w0 or h > h0 or not (p.is_tiled or (w, h) == (w0, h0)):
            continue
        # same aspect ratio: h must be h0 * w / w0 within one pixel (plus rounding)
        if abs(h - h0 * w / w0) > 1.5 + h0 / w0:
            continue
        out.setdefault((w, h), p)
    return [out[k] for k in sorted(out, key=lambda k: -k[0])]


def _check_complete(path: Path, pages: list[Any]) -> None:
    """InputError when a pyramid page's tiles end past the end of the file (truncated copy)."""
    size = path.stat().st_size
    for p in pages:
        offs, counts = p.dataoffsets, p.databytecounts
        if len(offs) and max(o + c for o, c in zip(offs, counts, strict=False)) > size:
            raise InputError(f"slide {path} is truncated: the tiles of its {p.shape[1]}x"
                             f"{p.shape[0]} level end past the end of the file; copy it again")


def _tiff_resolution_mpp(page: Any) -> tuple[float, float] | None:
    """Level-0 um/px from XResolution/YResolution when the unit is inch or cm and plausible."""
    tags = page.tags
    unit = tags.get("ResolutionUnit")
    xr, yr = tags.get("XResolution"), tags.get("YResolution")
    if unit is None or xr is None or yr is None:
        return None
    um = _UM_PER_UNIT.get(int(unit.value))
    if um is None:
        return None

    def one(v: Any) -> float | None:
        num, den = (v if isinstance(v, tuple) else (v, 1))[:2]
        if not num or not den:
            return None
        return _plausible(um / (num / den))

    mx, my = one(xr.value), one(yr.value)
    return (mx, my) if mx and my else None


def _ome_mpp(tf: Any) -> tuple[float, float] | None:
    """``PhysicalSizeX/Y`` of the first OME image, in um/px, when plausible."""
    xml = getattr(tf, "ome_metadata", None)
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.endswith("}Pixels") or el.tag == "Pixels":
            sx, sy = el.get("PhysicalSizeX"), el.get("PhysicalSizeY")
            ux = _OME_UNIT_TO_UM.get(el.get("PhysicalSizeXUnit", "µm"), None)
            uy = _OME_UNIT_TO_UM.get(el.get("PhysicalSizeYUnit", "µm"), None)
            if sx is None or sy is None or ux is None or uy is None:
                return None
            mx, my = _plausible(float(sx) * ux), _plausible(float(sy) * uy)
            return (mx, my) if mx and my else None
    return None


_QUIET = threading.local()


def _not_while_quiet(record: logging.LogRecord) -> bool:
    """Logger filter: False (drop) for a record emitted inside :func:`quiet_tifffile`."""
    return not getattr(_QUIET, "depth", 0)


# tifffile logs what it finds wrong in a damaged file ("invalid page offset ...") and,
# with no logging configured, Python prints it on stderr: besides our one-line reason.
# The filter drops only what is logged inside quiet_tifffile(), in that thread.
logging.getLogger("tifffile").addFilter(_not_while_quiet)


@contextmanager
def quiet_tifffile() -> Iterator[None]:
    """Within it, this thread's tifffile log records are dropped: the slide layer probes files
    with tifffile (via tiffslide or directly) and says what is wrong in its own one-line
    error (e.g. "slide X is truncated ... copy it again"); tifffile's complaints about the
    same damage would print on stderr besides it. Other threads, and tifffile outside the
    block, log as before."""
    _QUIET.depth = getattr(_QUIET, "depth", 0) + 1
    try:
        yield
    finally:
        _QUIET.depth -= 1


@runtime_checkable
class SlideReader(Protocol):
    """What the rest of the project needs of an open slide (units: module docstring).

    :class:`Slide` implements it; any object with these members (e.g. an in-memory
    test reader) can stand in. Attributes:

    - ``path``: the file opened; ``backend``: ``"openslide"`` or ``"tiffslide"``;
      ``vendor``: the backend's vendor string or None; ``properties``: its metadata.
    - ``level_count``; ``level_dimensions``: ``(w, h)`` px of each level, level 0 first;
      ``level_downsamples``: ``(dx, dy) = (w0 / wk, h0 / hk)`` level-0 px per level-k px.
    - ``mpp``: level-0 ``(x, y)`` um/px or None; ``mpp_source``: where it came from.
    """

    path: Path
    backend: str
    vendor: str | None
    properties: Mapping[str, str]
    level_count: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[tuple[float, float], ...]
    mpp: tuple[float, float] | None
    mpp_source: str

    def read_level(self, level: int, origin: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
        """Stored pixels of ``level``: ``origin`` (x, y) in level-k px, ``size`` (w, h) in
        level-k px -> ``(h, w, 3)`` uint8 RGB, white (255) outside the level."""
        ...

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """openslide-style read: ``location`` top-left in level-0 px, ``size`` (w, h) in
        level-k px -> ``(h, w, 3)`` uint8 RGB, white outside the slide."""
        ...

    def close(self) -> None:
        """Release the file handles (idempotent)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class Slide:
    """A whole-slide image behind one interface (see the module docstring for units);
    implements :class:`SlideReader`.

    Attributes:
        path: the file opened (for a DICOM folder, the ``.dcm`` file handed to openslide).
        backend: ``"openslide"`` or ``"tiffslide"`` (what ``auto`` chose).
        vendor: the backend's vendor string (``"aperio"``, ``"generic-tiff"``,
            ``"dicom"``...) or None.
        properties: the backend's properties, values as strings.
        level_count: number of native levels.
        level_dimensions: ``(w, h)`` px of each level, level 0 first.
        level_downsamples: ``(dx, dy) = (w0 / wk, h0 / hk)`` level-0 px per level-k px.
        mpp: level-0 ``(x, y)`` um/px, or None when neither the slide nor the caller
            gave one.
        mpp_source: ``"openslide.mpp-x"``, ``"tiffslide.mpp-x"``, ``"tiff-resolution"``,
            ``"ome"``, ``"override"`` or ``"none"``.
        level_sources: per level, where its pixels come from: ``"openslide"``,
            ``"tiff-tiles"`` (tiffslide backend, a tiled 8-bit TIFF page: each tile's bytes
            read with ``os.pread`` and decoded by tifffile's own decoder, no zarr),
            ``"tiffslide"``, ``"tiff-page"`` (read with tifffile: a level tiffslide
            dropped, or an openslide level whose downsample would make openslide
            interpolate), or ``"openslide-subpixel"`` (a non-integer openslide downsample
            and no TIFF page to read instead, e.g. DICOM level 2 at 4.002: openslide
            starts the window up to half a pixel off and interpolates bilinearly).
    """

    path: Path
    backend: str
    vendor: str | None
    properties: Mapping[str, str]
    level_count: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[tuple[float, float], ...]
    mpp: tuple[float, float] | None
    mpp_source: str
    level_sources: tuple[str, ...]

    def __init__(self, path: Path, backend: str, *, mpp: float | None = None) -> None:
        self.path = path
        self.backend = backend
        self._tf: Any = None  # tifffile.TiffFile when the file is a TIFF
        self._own_tf = False
        self._osr: Any = None
        self._ts: Any = None
        self._remote: Any = None  # the byte-range file of a slide in object storage
        self._fd: int | None = None  # the file for tile reads (os.pread: thread-safe)
        self._readers: list[Any] = []  # per level: callable(x0, y0, x1, y1) -> array
        try:
            if backend == "openslide":
                self._init_openslide()
            else:
                self._init_tiffslide()
        except BaseException:
            self.close()  # a half-opened reader must not leak its file handles
            raise
        w0, h0 = self.level_dimensions[0]
        self.level_count = len(self.level_dimensions)
        self.level_downsamples = tuple((w0 / w, h0 / h) for w, h in self.level_dimensions)
        self._override = mpp
        self.mpp, self.mpp_source = self._discover_mpp(mpp)

    # ---------------------------------------------------------------- backends
    def _open_tifffile(self) -> Any:
        import tifffile

        try:
            return tifffile.TiffFile(self.path)
        except Exception:  # noqa: BLE001 - not a TIFF (DICOM...), fine
            return None

    def _init_openslide(self) -> None:
        import openslide

        osr = openslide.OpenSlide(str(self.path))
        self._osr = osr
        self.properties = dict(osr.properties)
        self.vendor = self.properties.get("openslide.vendor")
        self.level_dimensions = tuple((int(w), int(h)) for w, h in osr.level_dimensions)
        if self.vendor != "dicom":
            self._tf = self._open_tifffile()
            self._own_tf = self._tf is not None
        pages = {}
        if self._tf is not None:
            found = _tiff_pyramid_pages(self._tf)
            _check_complete(self.path, found)
            pages = {(p.shape[1], p.shape[0]): p for p in found}
        sources = []
        for k, (w, h) in enumerate(self.level_dimensions):
            ds = float(osr.level_downsamples[k])
            if ds == round(ds) or (w, h) not in pages:
                # integer downsample: col * ds is an integer, openslide copies pixels exactly;
                # otherwise (DICOM 4.002...) openslide's bilinear sub-pixel start is unavoidable
                self._readers.append(self._openslide_reader(k, ds))
                sources.append("openslide" if ds == round(ds) else "openslide-subpixel")
            else:
                self._readers.append(_PageLevel(pages[(w, h)]).read)
                sources.append("tiff-page")
        self.level_sources = tuple(sources)

    def _openslide_reader(self, level: int, ds: float) -> Any:
        osr = self._osr

        def read(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
            # level-0 location whose x / ds is closest to the wanted level px (exact when ds integer)
            loc = (int(round(x0 * ds)), int(round(y0 * ds)))
            rgba = np.asarray(osr.read_region(loc, level, (x1 - x0, y1 - y0)))
            return rgba

        return read

    def _init_tiffslide(self) -> None:
        import tiffslide

        if isinstance(self.path, RemotePath):  # read by byte range, 1 MiB blocks
            self._remote = open_remote_binary(str(self.path))
            ts = tiffslide.TiffSlide(self._remote)
        else:
            ts = tiffslide.TiffSlide(self.path)
        self._ts = ts
        self._tf = ts.ts_tifffile
        self.properties = {k: ("" if v is None else str(v)) for k, v in ts.properties.items()}
        self.vendor = ts.properties.get("tiffslide.vendor")
        ts_dims = [(int(w), int(h)) for w, h in ts.level_dimensions]
        grp = ts.zarr_group
        by_dims: dict[tuple[int, int], Any] = {}
        for k, d in enumerate(ts_dims):
            arr = grp[str(k)] if hasattr(grp, "__getitem__") and str(k) in grp else grp
            by_dims[d] = arr
        pages = _tiff_pyramid_pages(self._tf)
        _check_complete(self.path, pages)
        dims = list(ts_dims)
        page_by_dims: dict[tuple[int, int], Any] = {}
        for p in pages:
            d = (p.shape[1], p.shape[0])
            if d not in by_dims and d[0] < ts_dims[0][0]:
                page_by_dims[d] = p
                dims.append(d)
        dims.sort(key=lambda d: -d[0])
        # the pread tile path needs a local file; an object is read through tiffslide's zarr
        # store over the byte-range file
        tiled = {} if self._remote is not None else {
            (p.shape[1], p.shape[0]): p for p in pages if _TileLevel.usable(p)
        }
        fd = os.open(self.path, os.O_RDONLY) if tiled else -1
        self._fd = fd if tiled else None
        sources = []
        for d in dims:
            if d in tiled:
                self._readers.append(_TileLevel(tiled[d], fd).read)
                sources.append("tiff-tiles")
            elif d in by_dims:
                arr = by_dims[d]
                self._readers.append(lambda x0, y0, x1, y1, a=arr: np.asarray(a[y0:y1, x0:x1]))
                sources.append("tiffslide")
            else:
                self._readers.append(_PageLevel(page_by_dims[d]).read)
                sources.append("tiff-page")
        self.level_dimensions = tuple(dims)
        self.level_sources = tuple(sources)

    # ---------------------------------------------------------------- mpp
    def _discover_mpp(self, override: float | None) -> tuple[tuple[float, float] | None, str]:
        key = "openslide" if self.backend == "openslide" else "tiffslide"
        mx = _plausible(self.properties.get(f"{key}.mpp-x"))
        my = _plausible(self.properties.get(f"{key}.mpp-y"))
        if mx and my:
            return (mx, my), f"{key}.mpp-x"
        if self._tf is not None:
            if self._tf.pages:
                res = _tiff_resolution_mpp(self._tf.pages[0])
                if res:
                    return res, "tiff-resolution"
            ome = _ome_mpp(self._tf)
            if ome:
                return ome, "ome"
        if override is not None:
            return (float(override), float(override)), "override"
        return None, "none"

    def level_mpp(self, level: int) -> tuple[float, float] | None:
        """``(x, y)`` um/px of ``level`` (level-0 mpp times the level's downsample), or None."""
        if self.mpp is None:
            return None
        dx, dy = self.level_downsamples[level]
        return self.mpp[0] * dx, self.mpp[1] * dy

    # ---------------------------------------------------------------- pixels
    def read_level(self, level: int, origin: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
        """Stored pixels of ``level``: the window at ``origin`` (level-k px) of ``size`` (w, h).

        Returns ``(h, w, 3)`` uint8 RGB; parts outside the level are white (255).
        """
        if not 0 <= level < self.level_count:
            raise InputError(f"{self.path.name}: level {level} does not exist "
                             f"(the slide has levels 0-{self.level_count - 1})")
        col, row = int(origin[0]), int(origin[1])
        w, h = int(size[0]), int(size[1])
        if w < 0 or h < 0:
            raise ValueError(f"size must be non-negative, got {size}")
        lw, lh = self.level_dimensions[level]
        x0, y0 = max(col, 0), max(row, 0)
        x1, y1 = min(col + w, lw), min(row + h, lh)
        if x1 <= x0 or y1 <= y0:
            return np.full((h, w, 3), 255, np.uint8)
        try:
            px = self._readers[level](x0, y0, x1, y1)
        except Exception as exc:  # noqa: BLE001 - decoder errors of any backend
            raise InputError(f"slide {self.path.name}: cannot read level {level} at level px "
                             f"({x0}, {y0})-({x1}, {y1}) with {self.backend}: {_short(exc)}; "
                             "the file may be truncated or corrupt, copy it again") from exc
        rgb = _to_rgb(px)
        if (x0, y0, x1, y1) == (col, row, col + w, row + h) and rgb.flags.writeable:
            return np.ascontiguousarray(rgb)  # inside the level: no second copy
        out = np.full((h, w, 3), 255, np.uint8)
        out[y0 - row:y1 - row, x0 - col:x1 - col] = rgb
        return out

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """openslide-style read: ``location`` is the top-left in level-0 px, ``size`` in level-k px.

        The window starts at the level-k pixel whose left/top edge is nearest the
        location: ``round(x / dx), round(y / dy)`` (pixel-exact; openslide itself would
        interpolate a fractional start). Returns ``(h, w, 3)`` uint8 RGB, white outside.
        """
        dx, dy = self.level_downsamples[level]
        col = math.floor(location[0] / dx + 0.5)
        row = math.floor(location[1] / dy + 0.5)
        return self.read_level(level, (col, row), size)

    # ---------------------------------------------------------------- lifecycle
    @property
    def ref(self) -> SlideRef:
        """A picklable :class:`SlideRef` that reopens this slide with the same backend and mpp."""
        return SlideRef(self.path, self.backend, self._override)

    def close(self) -> None:
        """Release the file handles (idempotent)."""
        if self._osr is not None:
            self._osr.close()
            self._osr = None
        if self._ts is not None:
            self._ts.close()
            self._ts = None
        if self._tf is not None and self._own_tf:
            self._tf.close()
        self._tf = None
        if self._remote is not None:
            self._remote.close()
            self._remote = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError("Slide holds open files and does not pickle; "
                        "send reader.ref (a SlideRef) and call .open() in the worker")

    def __repr__(self) -> str:
        return (f"Slide({self.path.name!r}, backend={self.backend!r}, levels={self.level_count}, "
                f"dims={self.level_dimensions[0]}, mpp={self.mpp}, mpp_source={self.mpp_source!r})")


def _to_rgb(px: np.ndarray) -> np.ndarray:
    """Backend pixels to ``(h, w, 3)`` uint8 RGB: grey stacked, alpha composited over white."""
    px = np.asarray(px)
    if px.dtype != np.uint8:
        raise InputError(f"pixel type {px.dtype} is not supported; convert the slide to 8-bit RGB")
    if px.ndim == 2:
        return np.repeat(px[..., None], 3, axis=2)
    if px.shape[-1] == 4:
        a = px[..., 3:4]
        if (a == 255).all():
            return px[..., :3]
        rgb = px[..., :3].astype(np.uint16)
        # openslide-python returns un-premultiplied RGBA; transparent -> white
        return ((rgb * a + 255 * (255 - a.astype(np.uint16)) + 127) // 255).astype(np.uint8)
    return px[..., :3]


def _resolve_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"slide {p} does not exist; check the path (and the --slides folder)")
    if p.is_dir():
        dcm = sorted(q for q in p.iterdir() if q.suffix.lower() == ".dcm")
        if not dcm:
            raise InputError(f"{p} is a folder without .dcm files; give a slide file "
                             "or a DICOM WSI folder")
        return dcm[0]
    if p.stat().st_size == 0:
        raise InputError(f"slide {p} is empty (0 bytes); copy it again")
    return p


def open_slide(path: str | os.PathLike[str], *, backend: Backend | str = "auto",
               mpp: float | None = None) -> Slide:
    """Open a whole-slide image.

    Args:
        path: a slide file, or a DICOM WSI folder (openslide opens its first ``.dcm``
            and finds the other levels).
        backend: ``"openslide"``, ``"tiffslide"`` or ``"auto"``: TIFF-family files
            (``.tif``, ``.tiff``, ``.svs``) try tiffslide first (it decodes tiles about
            2.5x faster than openslide here, see docs/slides.md), everything else
            (DICOM, NDPI, MRXS, ...) openslide first; the other backend is the fallback.
        mpp: level-0 um/px used only when the slide's metadata has none
            (``mpp_source == "override"``).

    Returns:
        A :class:`Slide` (a :class:`SlideReader`); use it as a context manager or call ``close()``.

    Raises:
        InputError: missing/empty file, unknown backend, a bad ``mpp``, or a file
            neither backend can read.
    """
    if backend not in BACKENDS:
        raise InputError(f"--backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if mpp is not None and _plausible(mpp) is None:
        raise InputError(f"mpp {mpp!r} for {Path(path).name} is not a level-0 um/px in "
                         f"[{MPP_MIN}, {MPP_MAX}] (40x is about 0.25, 20x about 0.5)")
    if isinstance(path, RemotePath) or is_url(path):
        return _open_remote(path if isinstance(path, RemotePath) else RemotePath(str(path)), backend, mpp)
    p = _resolve_path(path)
    errors: list[str] = []
    if backend == "auto":
        tiff_family = p.suffix.lower() in TIFF_SUFFIXES
        order = ["tiffslide", "openslide"] if tiff_family else ["openslide", "tiffslide"]
    else:
        order = [backend]
    for name in order:
        try:
            with quiet_tifffile():
                return Slide(p, name, mpp=mpp)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - backend-specific error types
            errors.append(f"{name}: {_short(exc)}")
    raise InputError(f"cannot open slide {p}: {'; '.join(errors)}. "
                     "Check that the file is complete and a supported WSI format "
                     "(try --backend openslide or tiffslide)")


def _open_remote(p: RemotePath, backend: str, mpp: float | None) -> Slide:
    """A slide in object storage: tiffslide over fsspec (openslide needs a local file)."""
    if backend == "openslide":
        raise InputError(f"slide {p}: openslide reads local files only; use --backend auto or "
                         "tiffslide for slides in object storage (TIFF, SVS), or copy it locally")
    if p.suffix.lower() not in TIFF_SUFFIXES:
        raise InputError(f"slide {p}: only TIFF-family slides ({', '.join(sorted(TIFF_SUFFIXES))}) are "
                         "read from object storage (tiffslide); copy other formats to a local folder")
    try:
        with quiet_tifffile():
            return Slide(p, "tiffslide", mpp=mpp)  # type: ignore[arg-type]  # a Path stand-in
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - fsspec/tifffile error types
        raise InputError(f"cannot open slide {p} with tiffslide: {_short(exc)}. Check that the "
                         "object is complete and a TIFF-family WSI") from None


def _short(exc: BaseException) -> str:
    msg = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
    return msg[:160]


def require_mpp(reader: SlideReader) -> tuple[float, float]:
    """The reader's level-0 ``(x, y)`` um/px, or InputError naming the slide and the fix."""
    if reader.mpp is None:
        raise InputError(f"slide {reader.path.name} has no mpp in its metadata; add an `mpp` "
                         "column to coords.csv or pass --mpp (level-0 um/px, e.g. 0.243 for 40x)")
    return reader.mpp
