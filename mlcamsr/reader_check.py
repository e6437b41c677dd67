"""Two readers, one truth: compare openslide and tiffslide on a slide before cutting it.

``auto`` opens TIFF-family slides with tiffslide because it decodes faster, but the two
readers do not always decode the same pixels (Aperio JPEG 2000 in YCbCr, compression
33003: openslide converts the colours, tiffslide shows the YCbCr planes as RGB; tiffslide
issue #86: garbled JPEG 2000 tiles on CAMELYON16 slides). A wrong colour transform hits
every level alike, so the cross-scale alignment QC cannot see it. This module is the check
that can (docs/slides.md, "Reader agreement").

:func:`check_readers` opens a slide with both backends (or takes the reader the caller
already holds and opens only the other), reads the same small fixed sample of regions with
each (:func:`sample_regions`: :data:`REGIONS` window of :data:`REGION_PX` level-k px per
level, deterministic, each inside one 256/512-px tile, the levels at different places: the
run's own patch centres when extract passes them, else the tissue-richest cells of a grid
over the coarsest level), and records per level the max and mean absolute difference
(uint8 grey levels, over all channels and regions). Then :func:`decide`:

- both open and agree within JPEG decoder tolerance (:data:`MEAN_TOL`, :data:`MAX_TOL`)
  -> the faster reader (what ``auto`` opens first, tiffslide for TIFF-family files);
- both open and disagree -> openslide (the reference decoder of the vendors' formats),
  with a warning naming the slide and the figures;
- one opens -> that one, "checked against nothing" (status ``single``);
- ``--backend`` forces a reader (status ``forced``), ``--reader-check off`` skips the
  check (status ``off``); neither reads anything twice.

The result (:class:`ReaderCheck`) is plain data for the store's slide attributes
(``reader`` and ``reader_check``) and for ``mlcamsr slides``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from mlcamsr.slides import TIFF_SUFFIXES, TIFFFILE_SOURCES, SlideReader, open_slide

ReaderCheckMode = Literal["on", "off"]
#: the one list of ``--reader-check`` choices
READER_CHECK_MODES: tuple[str, ...] = get_args(ReaderCheckMode)

MEAN_TOL = 1.0
"""Largest mean absolute difference (grey levels, per level) still counted as agreement:
two JPEG/JPEG 2000 decoders differ by rounding in the IDCT and colour conversion (well
under one grey level on average); a wrong colour transform is tens of levels off."""
MAX_TOL = 24
"""Largest single-pixel absolute difference still counted as agreement (chroma upsampling
variants differ by a few levels at sharp colour edges; garbled tiles by far more)."""
REGIONS = 1
"""Regions read per level and reader. The levels take the sample's points in turn (level
i the i-th), so a 3-level check still looks at three places of the slide. One region per
level is enough for what the check is for: a decoder difference is a property of a level's
page (its codec and colour space), the same on every tile of it, tens of grey levels off
against a tolerance of one (docs/slides.md, "Reader agreement"); more regions cost one
tile decode per reader each (bench/reader_check.py)."""
REGION_PX = 128
"""Side of each region in level-k px."""
GRID = 4
"""The coarsest level is cut into GRID x GRID cells; regions sit in the tissue-richest."""
THUMB_MAX_PX = 1_048_576
"""The coarsest level is read whole for the tissue placement only up to this many px;
larger (one-level slides) the regions sit at the grid cell centres."""


@dataclass
class LevelFigures:
    """Agreement at one level: ``max_abs`` and ``mean_abs`` grey levels (uint8) over
    ``regions`` windows of ``region_px`` level-k px; ``windows`` are their ``(x, y)``
    top-left corners in level-k px. ``same_decoder``: both backends read this level
    through tifffile (our openslide backend reads a non-integer-downsample level from its
    TIFF page, :data:`mlcamsr.slides.TIFFFILE_SOURCES`), so their agreement says nothing
    about its pixels (a 33003 slide would agree there while both are wrong)."""

    level: int
    max_abs: int
    mean_abs: float
    regions: int
    region_px: int
    windows: list[tuple[int, int]] = field(default_factory=list)
    same_decoder: bool = False


@dataclass
class ReaderCheck:
    """What the check found for one slide and the reader it chose.

    Attributes:
        reader: the backend extract / sample-coords use for this slide.
        status: ``agree``, ``disagree``, ``single`` (only one backend opens it: checked
            against nothing), ``forced`` (``--backend``), ``off`` (``--reader-check off``).
        opens: backend -> ``"ok"`` or the reason it cannot open the slide.
        levels: per checked level, the figures (empty unless both opened).
        seconds: wall time of the check.
        message: for ``disagree`` the warning line, for ``single`` why, else "".
    """

    reader: str
    status: str
    opens: dict[str, str] = field(default_factory=dict)
    levels: list[LevelFigures] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""

    @property
    def agrees(self) -> bool:
        """True unless the two readers were compared and disagree."""
        return self.status != "disagree"

    def as_attrs(self) -> dict[str, Any]:
        """JSON-ready dict for the store's slide attributes (``reader_check``)."""
        d = asdict(self)
        d["tolerance"] = {"mean_abs": MEAN_TOL, "max_abs": MAX_TOL}
        d["note"] = self.note()
        # wall time is not provenance: kept out so a resumed or repaired store stays
        # byte-identical to an uninterrupted run
        del d["seconds"]
        for lv in d["levels"]:
            lv["mean_abs"] = round(lv["mean_abs"], 4)
            lv["windows"] = [list(w) for w in lv["windows"]]
        return d

    @property
    def uninformative(self) -> list[int]:
        """The checked levels both readers decode with tifffile (``same_decoder``)."""
        return [f.level for f in self.levels if f.same_decoder]

    def note(self) -> str:
        """One line about the levels whose agreement is not informative, else ""."""
        if not self.uninformative:
            return ""
        ks = ", ".join(map(str, self.uninformative))
        return (f"level{'s' if len(self.uninformative) > 1 else ''} {ks}: both readers decode with "
                "tifffile (non-integer downsample: the openslide backend reads the TIFF page); "
                "agreement there is not informative")

    def summary(self) -> str:
        """One line: status and per-level ``max/mean`` figures."""
        figs = ", ".join(f"L{f.level} max {f.max_abs} mean {f.mean_abs:.2f}" for f in self.levels)
        return f"{self.status} -> {self.reader}" + (f" ({figs})" if figs else "") + (
            f"; {self.message}" if self.status == "single" else "")


def faster_backend(path: Path) -> str:
    """The backend ``auto`` opens first: tiffslide for TIFF-family files, else openslide."""
    return "tiffslide" if path.suffix.lower() in TIFF_SUFFIXES else "openslide"


def _tissue_score(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel tissue (float 0/1): saturated and not white glass (HSV, as qc.tissue_fraction)."""
    mx = rgb.max(axis=-1).astype(np.float32)
    mn = rgb.min(axis=-1).astype(np.float32)
    sat = np.divide(mx - mn, mx, out=np.zeros_like(mx), where=mx > 0)
    return ((sat > 0.10) & (mx < 0.95 * 255)).astype(np.float32)


def _spread(points: Sequence[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    """Up to ``n`` of ``points`` spread over them: the distinct points sorted by ``(y, x)``,
    taken at evenly spaced ranks (first and last included); deterministic."""
    pts = sorted({(float(x), float(y)) for x, y in points}, key=lambda p: (p[1], p[0]))
    if len(pts) <= n:
        return pts
    if n == 1:
        return [pts[(len(pts) - 1) // 2]]
    return [pts[round(i * (len(pts) - 1) / (n - 1))] for i in range(n)]


def _tissue_cells(reader: SlideReader, regions: int, grid: int) -> list[tuple[float, float]]:
    """The centres (level-0 px) of the ``regions`` tissue-richest cells of a ``grid`` x
    ``grid`` cut of the coarsest level (read whole when it is at most :data:`THUMB_MAX_PX`),
    each moved to its cell's tissue centroid; ties and tissue-free cells in grid order."""
    dims = reader.level_dimensions
    last = len(dims) - 1
    lw, lh = dims[last]
    thumb = reader.read_level(last, (0, 0), (lw, lh)) if lw * lh <= THUMB_MAX_PX else None
    scored = []
    for j in range(grid):
        for i in range(grid):
            x0, x1 = lw * i // grid, max(lw * (i + 1) // grid, lw * i // grid + 1)
            y0, y1 = lh * j // grid, max(lh * (j + 1) // grid, lh * j // grid + 1)
            cx, cy, score = (x0 + x1) / 2, (y0 + y1) / 2, 0.0
            if thumb is not None:
                t = _tissue_score(thumb[y0:y1, x0:x1])
                score = float(t.mean()) if t.size else 0.0
                if t.sum() > 0:
                    yy, xx = np.nonzero(t)
                    cx, cy = x0 + float(xx.mean()) + 0.5, y0 + float(yy.mean()) + 0.5
            scored.append((-score, j * grid + i, cx, cy))
    scored.sort()
    w0, h0 = dims[0]
    return [(cx * w0 / lw, cy * h0 / lh) for _, _, cx, cy in scored[:regions]]


def sample_regions(reader: SlideReader, levels: Sequence[int], *, regions: int = REGIONS,
                   region_px: int = REGION_PX, grid: int = GRID,
                   centres: Sequence[tuple[float, float]] | None = None) -> dict[int, list[tuple[int, int]]]:
    """The fixed sample: level -> up to ``regions`` window corners ``(x, y)`` in level-k px.

    ``regions`` x ``len(levels)`` level-0 points are chosen, and dealt to the levels in
    turn (level ``levels[i]`` gets points ``i * regions ...``; with fewer points they wrap):

    - ``centres`` given (extract: the run's own patch centres, level-0 px): those inside
      the slide, spread over them (:func:`_spread`); nothing extra is read, and the
      windows hold tiles the run cuts;
    - else (or when none is inside): the coarsest level is cut into ``grid`` x ``grid``
      cells and the cells with the most tissue are taken, each at its tissue centroid
      (its centre when the level is too large to read, or holds no tissue).

    A point is mapped to its level (downsample from dimensions), and its window snapped
    down to a multiple of ``region_px`` (one tile of a 256/512-px tiling) and clamped
    inside the level. Deterministic for a given slide and ``centres``.
    """
    dims = reader.level_dimensions
    w0, h0 = dims[0]
    levels = list(levels)
    want = max(1, regions * len(levels))  # distinct points, dealt round robin to the levels
    inside = [(x, y) for x, y in (centres or ()) if 0 <= x < w0 and 0 <= y < h0]
    points = _spread(inside, want) if inside else _tissue_cells(reader, want, grid)
    out: dict[int, list[tuple[int, int]]] = {}
    for i, k in enumerate(levels):
        kw, kh = dims[k]
        wins = []
        for j in range(regions):
            px, py = points[(i * regions + j) % len(points)]
            # level-0 px -> level-k px (downsamples from dimensions)
            x, y = px * kw / w0, py * kh / h0
            side_x, side_y = min(region_px, kw), min(region_px, kh)
            # snapped to multiples of the region side: inside one tile of any 256/512-px
            # tiling, so each read decodes one tile per reader, not up to four
            wx = int(min(max(math.floor(x / side_x) * side_x, 0), kw - side_x))
            wy = int(min(max(math.floor(y / side_y) * side_y, 0), kh - side_y))
            if (wx, wy) not in wins:  # a small level may map two points to one window
                wins.append((wx, wy))
        out[k] = wins
    return out


def compare_readers(a: SlideReader, b: SlideReader, levels: Sequence[int], *, regions: int = REGIONS,
                    region_px: int = REGION_PX,
                    centres: Sequence[tuple[float, float]] | None = None) -> list[LevelFigures]:
    """Read the fixed sample (:func:`sample_regions`, placed with ``a``) with both readers;
    per level the max and mean absolute difference in grey levels. A level whose dimensions
    differ between the readers counts as the largest disagreement (255). The two readers
    read in two threads at once (each reader stays in its own thread; decoders release
    the GIL)."""
    sample = sample_regions(a, levels, regions=regions, region_px=region_px, centres=centres)
    same = [k for k in levels if k < b.level_count and a.level_dimensions[k] == b.level_dimensions[k]]

    def read_all(r: SlideReader) -> dict[int, list[np.ndarray]]:
        out = {}
        for k in same:
            size = (min(region_px, r.level_dimensions[k][0]), min(region_px, r.level_dimensions[k][1]))
            out[k] = [r.read_level(k, xy, size) for xy in sample[k]]
        return out

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="mlcamsr-reader-check") as pool:
        fa, fb = pool.submit(read_all, a), pool.submit(read_all, b)
        pa, pb = fa.result(), fb.result()
    figs = []
    for k in levels:
        if k not in pa:
            figs.append(LevelFigures(k, 255, 255.0, 0, region_px, []))
            continue
        d = [np.abs(x.astype(np.int16) - y.astype(np.int16)) for x, y in zip(pa[k], pb[k], strict=True)]
        total, count = sum(float(v.sum()) for v in d), sum(v.size for v in d)
        figs.append(LevelFigures(k, max(int(v.max()) for v in d), total / max(count, 1), len(d), region_px,
                                 sample[k], same_decoder=_tifffile_both(a, b, k)))
    return figs


def _tifffile_both(a: SlideReader, b: SlideReader, level: int) -> bool:
    """Whether both readers decode ``level`` with tifffile (their ``level_sources``)."""
    sources = [getattr(r, "level_sources", ())[level:level + 1] for r in (a, b)]
    return all(s and s[0] in TIFFFILE_SOURCES for s in sources)


def decide(figs: Sequence[LevelFigures], *, faster: str) -> tuple[str, str]:
    """``(status, reader)`` from the figures: ``agree`` -> ``faster`` when every level is
    within :data:`MEAN_TOL` and :data:`MAX_TOL`, else ``disagree`` -> ``openslide``."""
    ok = all(f.mean_abs <= MEAN_TOL and f.max_abs <= MAX_TOL for f in figs)
    return ("agree", faster) if ok else ("disagree", "openslide")


def _try_open(path: Path, backend: str) -> tuple[SlideReader | None, str]:
    try:
        return open_slide(path, backend=backend), "ok"
    except Exception as exc:  # noqa: BLE001 - any backend failure is recorded as its reason
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, msg.split(". Check that the file")[0]


def check_readers(path: str | Path, levels: Sequence[int] | None = None, *, backend: str = "auto",
                  mode: str = "on", regions: int = REGIONS, region_px: int = REGION_PX,
                  centres: Sequence[tuple[float, float]] | None = None,
                  opened: SlideReader | None = None) -> ReaderCheck:
    """Check one slide and choose its reader (module docstring).

    Args:
        path: the slide file (or DICOM folder).
        levels: the levels the run will read (default: all); levels past the slide's are
            ignored.
        backend: ``auto`` checks; ``openslide``/``tiffslide`` force that reader (status
            ``forced``, nothing read).
        mode: ``on`` or ``off`` (status ``off``: the reader ``auto`` opens, nothing read).
        regions, region_px: the sample per level (:func:`sample_regions`).
        centres: level-0 px points to place the sample on (extract passes its patch
            centres: no placement read); None places it on the tissue of the coarsest level.
        opened: a reader of this slide the caller already holds (either backend): used as
            that backend's reader, so only the other one is opened; never closed here.

    Returns:
        A :class:`ReaderCheck`. When neither backend opens the slide its ``reader`` is ""
        and ``status`` is ``unreadable`` (``opens`` holds both reasons).
    """
    t0 = time.perf_counter()
    p = Path(path)
    if backend != "auto":
        return ReaderCheck(reader=backend, status="forced", message=f"--backend {backend}")
    if mode == "off":
        first = faster_backend(p)
        if opened is not None:
            return ReaderCheck(reader=opened.backend, status="off", opens={opened.backend: "ok"})
        r, why = _try_open(p, first)
        if r is not None:
            r.close()
            return ReaderCheck(reader=first, status="off", opens={first: "ok"})
        other = "openslide" if first == "tiffslide" else "tiffslide"
        return ReaderCheck(reader=other, status="off", opens={first: why})
    readers: dict[str, SlideReader] = {}
    mine: list[SlideReader] = []  # what this call opened (and closes)
    opens: dict[str, str] = {}
    try:
        for name in ("openslide", "tiffslide"):
            if opened is not None and opened.backend == name:
                readers[name], opens[name] = opened, "ok"
                continue
            r, why = _try_open(p, name)
            opens[name] = why
            if r is not None:
                readers[name] = r
                mine.append(r)
        if not readers:
            return ReaderCheck(reader="", status="unreadable", opens=opens,
                               seconds=time.perf_counter() - t0,
                               message="; ".join(f"{k}: {v}" for k, v in opens.items()))
        if len(readers) == 1:
            (only,) = readers
            other = next(k for k in opens if k != only)
            return ReaderCheck(reader=only, status="single", opens=opens, seconds=time.perf_counter() - t0,
                               message=f"checked against nothing: only {only} opens it ({other}: {opens[other]})")
        os_r, ts_r = readers["openslide"], readers["tiffslide"]
        n = os_r.level_count
        use = sorted({int(k) for k in (range(n) if levels is None else levels) if 0 <= int(k) < n})
        figs = compare_readers(os_r, ts_r, use, regions=regions, region_px=region_px, centres=centres)
        status, reader = decide(figs, faster=faster_backend(p))
        check = ReaderCheck(reader=reader, status=status, opens=opens, levels=figs,
                            seconds=time.perf_counter() - t0)
        if status == "disagree":
            worst = max(figs, key=lambda f: f.mean_abs)
            check.message = (
                f"slide {p.name}: openslide and tiffslide disagree (level {worst.level}: max "
                f"{worst.max_abs}, mean {worst.mean_abs:.1f} grey levels over {worst.regions} "
                f"region{'s' if worst.regions != 1 else ''} of {worst.region_px} px; tolerance max {MAX_TOL}, mean {MEAN_TOL:g}); reading it with openslide"
            )
        return check
    finally:
        for r in mine:
            r.close()
