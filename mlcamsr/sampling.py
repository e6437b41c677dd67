"""Tissue masks and tissue-aware patch centres (``mlcamsr sample-coords``).

The tissue mask (:func:`tissue_mask`) is computed on a low-resolution copy of the
slide (about ``mask_mpp`` um/px, 8 by default, CAMELYON level 5):

1. saturation (HSV) of every pixel; Otsu's threshold on it (scikit-image),
   clamped to ``[0.04, 0.25]`` so a slide that is nearly all background or all
   tissue still gets a sensible cut;
2. tissue = saturation above the threshold, minus near-black pixels (value
   < 0.2: slide borders, dust, black ink) and minus green/blue pen ink (hue in
   ``[0.2, 0.66]`` with saturation > 0.3; H&E hues are pink to purple);
3. cleaned: objects smaller than ``(min_object_um)^2`` removed, holes smaller
   than ``(max_hole_um)^2`` filled;
4. a check: if the "tissue" so found is not darker than the rest, the colours are
   not bright-field H&E (a false-colour file): tissue is then what lies farther
   than Otsu's threshold from the modal (glass) colour.

Centres (:func:`sample_coords`, whose stages are :func:`plan_slides` (mask and
candidates of each slide, :func:`plan_slide`), :func:`draw_centres` (round robin),
:func:`coords_table` and :func:`write_overlays`): a centre is a candidate when the whole finest
member square (``size`` px at ``base_mpp``, i.e. ``size * base_mpp / slide_mpp``
level-0 px per side) lies inside the slide and its tissue fraction in the mask
is at least ``min_tissue`` (exact area fraction from a bilinearly read integral
image of the mask). Candidates are visited in a seeded random order and accepted
greedily when no accepted centre on the same slide is closer than ``spacing``
level-0 px in both x and y (Chebyshev distance; the default, one square side,
means squares never overlap). Slides take turns (round robin), so the centres
spread evenly over slides.

With annotations, half of the centres come from inside tumour (tumour covers at
least ``tumor_min_frac`` of the square, default 0.5) and half from tissue with no
tumour at all in the square; if one class runs short, the other fills the gap
(reported in ``DataFrame.attrs["summary"]``). Output follows the coords schema
(``manifests/coords_schema.json``): ``slide, x, y`` (+ ``label`` with annotations,
+ ``mpp`` when an override was used).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcamsr.annotations import (
    SLIDE_EXTENSIONS,
    SlideAnnotations,
    load_for_slide,
    require_xml,
    slide_stem,
    tumor_mask,
)
from mlcamsr.errors import InputError
from mlcamsr.reader_check import ReaderCheck, check_readers
from mlcamsr.remote import RemoteDir, is_url, list_remote_slides
from mlcamsr.slides import TIFF_SUFFIXES, SlideReader, open_slide

#: file extensions discovered in --slides (DICOM files are not slides one by one:
#: a folder of them is one slide)
DISCOVER_EXTENSIONS = tuple(e for e in SLIDE_EXTENSIONS if e != ".dcm")

MASK_COLOR = (0, 200, 80)
BACKGROUND_SHADE = (70, 70, 90)
TUMOR_COLOR = (230, 30, 30)
NORMAL_BOX_COLOR = (20, 90, 230)
TUMOR_BOX_COLOR = (255, 140, 0)


# --------------------------------------------------------------------------- mask


def tissue_mask(
    rgb: np.ndarray,
    *,
    mpp: float | None = None,
    min_object_um: float = 100.0,
    max_hole_um: float = 64.0,
    remove_pen: bool = True,
) -> tuple[np.ndarray, float, str]:
    """Tissue mask of a low-resolution RGB image.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB.
        mpp: um per pixel of ``rgb`` (for the clean-up sizes); None skips clean-up.
        min_object_um: tissue objects smaller than this squared are removed.
        max_hole_um: holes smaller than this squared are filled.
        remove_pen: drop green/blue ink.

    Returns:
        ``(mask, threshold, method)``: ``(H, W)`` bool, the threshold used and
        ``"saturation"``, or ``"background-distance"`` when the saturated class
        is not darker than the rest (false-colour files, e.g. a DICOM WSI whose
        YCbCr frames are read as RGB): then tissue is what lies farther than
        Otsu's threshold from the modal (glass) colour, in RGB grey levels.
    """
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_holes, remove_small_objects

    rgb = np.asarray(rgb)[..., :3]
    sat, val = _sat_val(rgb)
    try:
        thr = float(threshold_otsu(sat))
    except ValueError:  # constant image
        thr = 0.0
    thr = float(np.clip(thr, 0.04, 0.25))
    method = "saturation"
    mask = (sat > thr) & (val >= 0.2)
    if 0 < mask.sum() < mask.size:
        grey = rgb.astype(np.float32).mean(axis=-1) / 255.0
        if grey[mask].mean() >= grey[~mask].mean() - 0.02:
            # "tissue" as bright as "background": colours are not bright-field H&E;
            # tissue is what is far from the glass colour (the modal colour)
            method = "background-distance"
            dist = np.linalg.norm(rgb.astype(np.float32) - _modal_colour(rgb), axis=-1)
            thr = float(threshold_otsu(dist))
            mask = (dist > thr) & (val >= 0.2)
    if remove_pen and method == "saturation":
        inky = mask & (sat > 0.3)
        hue = _hue(rgb[inky])
        inky[inky] = (hue >= 0.2) & (hue <= 0.66)
        mask &= ~inky
    if mpp and mask.any():
        min_obj = max(1, int(round((min_object_um / mpp) ** 2)))
        max_hole = max(1, int(round((max_hole_um / mpp) ** 2)))
        mask = remove_small_objects(mask, max_size=min_obj) if min_obj > 1 else mask
        mask = remove_small_holes(mask, max_size=max_hole) if max_hole > 1 else mask
    return mask.astype(bool), thr, method


def _modal_colour(rgb: np.ndarray, bins: int = 16) -> np.ndarray:
    """Centre of the most populated cell of a ``bins``^3 RGB histogram (the glass, usually)."""
    q = (rgb.reshape(-1, 3) // (256 // bins)).astype(np.int64)
    code = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    top = int(np.bincount(code, minlength=bins**3).argmax())
    sel = code == top
    return rgb.reshape(-1, 3)[sel].astype(np.float32).mean(axis=0)


def _sat_val(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV saturation and value in [0, 1] (float32; as skimage.color.rgb2hsv, less memory)."""
    mx = rgb.max(axis=-1).astype(np.float32)
    mn = rgb.min(axis=-1).astype(np.float32)
    sat = np.divide(mx - mn, mx, out=np.zeros_like(mx), where=mx > 0)
    return sat, mx / 255.0


def _hue(rgb: np.ndarray) -> np.ndarray:
    """HSV hue in [0, 1) of (..., 3) RGB (as skimage.color.rgb2hsv)."""
    c = rgb.astype(np.float32)
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    mx, mn = c.max(axis=-1), c.min(axis=-1)
    d = np.where(mx > mn, mx - mn, 1.0)
    h = np.where(mx == r, ((g - b) / d) % 6.0, np.where(mx == g, (b - r) / d + 2.0, (r - g) / d + 4.0))
    return np.where(mx > mn, h / 6.0, 0.0).astype(np.float32)


@dataclass
class SlideMask:
    """A slide's tissue mask and where it sits.

    ``mask[i, j]`` covers level-0 ``[j*dx, (j+1)*dx) x [i*dy, (i+1)*dy)``.
    """

    mask: np.ndarray
    thumb: np.ndarray
    level: int
    factor: int
    downsample: tuple[float, float]
    mpp: tuple[float, float]
    threshold: float
    method: str  # "saturation" | "background-distance"
    dimensions: tuple[int, int]  # level-0 (width, height)

    @property
    def mask_mpp(self) -> float:
        return float(self.mpp[0] * self.downsample[0])


def read_level_reduced(reader: SlideReader, level: int, factor: int, tile: int = 4096) -> np.ndarray:
    """Read a whole level in tiles, block-averaged by ``factor`` (white padding)."""
    w, h = reader.level_dimensions[level]
    dx, dy = reader.level_downsamples[level]
    ow, oh = math.ceil(w / factor), math.ceil(h / factor)
    out = np.full((oh, ow, 3), 255, dtype=np.uint8)
    step = max(factor, (tile // factor) * factor)
    for y in range(0, h, step):
        for x in range(0, w, step):
            tw, th = min(step, w - x), min(step, h - y)
            region = np.asarray(
                reader.read_region((int(round(x * dx)), int(round(y * dy))), level, (tw, th))
            )[..., :3]
            if factor > 1:
                pw, ph = math.ceil(tw / factor) * factor, math.ceil(th / factor) * factor
                pad = np.full((ph, pw, 3), 255, dtype=np.float32)
                pad[:th, :tw] = region
                region = (
                    pad.reshape(ph // factor, factor, pw // factor, factor, 3)
                    .mean(axis=(1, 3))
                    .round()
                    .astype(np.uint8)
                )
            oy, ox = y // factor, x // factor
            out[oy : oy + region.shape[0], ox : ox + region.shape[1]] = region
    return out


def mask_level(reader: SlideReader, *, mpp: tuple[float, float], mask_mpp: float = 8.0) -> tuple[int, int]:
    """``(level, factor)`` that :func:`slide_tissue_mask` reads: the coarsest level whose
    mpp is at most ``mask_mpp`` (level 0 if none), block-averaged by ``factor`` towards it."""
    mpps = [mpp[0] * ds[0] for ds in reader.level_downsamples]
    finer = [k for k, m in enumerate(mpps) if m <= mask_mpp * 1.05]
    level = max(finer, key=lambda k: mpps[k]) if finer else int(np.argmin(mpps))
    return level, max(1, int(mask_mpp * 1.05 // mpps[level]))


def slide_tissue_mask(
    reader: SlideReader,
    *,
    mpp: tuple[float, float],
    mask_mpp: float = 8.0,
    max_pixels: int = 40_000_000,
    **mask_options: Any,
) -> SlideMask:
    """Tissue mask of an open slide at about ``mask_mpp`` um/px.

    The level read is the coarsest whose mpp is at most ``mask_mpp`` (level 0 if
    none); it is block-averaged by an integer factor towards ``mask_mpp``.
    """
    level, factor = mask_level(reader, mpp=mpp, mask_mpp=mask_mpp)
    w, h = reader.level_dimensions[level]
    while (w / factor) * (h / factor) > max_pixels:
        factor += 1
    thumb = read_level_reduced(reader, level, factor)
    ds = reader.level_downsamples[level]
    downsample = (float(ds[0]) * factor, float(ds[1]) * factor)
    m, thr, method = tissue_mask(thumb, mpp=mpp[0] * downsample[0], **mask_options)
    return SlideMask(
        mask=m,
        thumb=thumb,
        level=level,
        factor=factor,
        downsample=downsample,
        mpp=(float(mpp[0]), float(mpp[1])),
        threshold=thr,
        method=method,
        dimensions=tuple(int(v) for v in reader.level_dimensions[0]),  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- geometry


def integral_image(mask: np.ndarray) -> np.ndarray:
    """``(H+1, W+1)`` float64 integral image: ``S[i, j] = mask[:i, :j].sum()``."""
    s = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.float64)
    s[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.float64), axis=1)
    return s


def _integral_at(s: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear read of an integral image at continuous (x, y) (exact for pixel-constant images)."""
    h, w = s.shape[0] - 1, s.shape[1] - 1
    x = np.clip(x, 0, w)
    y = np.clip(y, 0, h)
    x0 = np.minimum(np.floor(x).astype(np.intp), w - 1) if w > 0 else np.zeros_like(x, np.intp)
    y0 = np.minimum(np.floor(y).astype(np.intp), h - 1) if h > 0 else np.zeros_like(y, np.intp)
    fx, fy = x - x0, y - y0
    a = s[y0, x0]
    b = s[y0, x0 + 1]
    c = s[y0 + 1, x0]
    d = s[y0 + 1, x0 + 1]
    return a * (1 - fx) * (1 - fy) + b * fx * (1 - fy) + c * (1 - fx) * fy + d * fx * fy


def box_fraction(
    s: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    x1: np.ndarray,
    y1: np.ndarray,
) -> np.ndarray:
    """Mean of the mask over continuous boxes ``[x0, x1) x [y0, y1)`` (mask px); outside counts 0."""
    area = (x1 - x0) * (y1 - y0)
    tot = _integral_at(s, x1, y1) - _integral_at(s, x0, y1) - _integral_at(s, x1, y0) + _integral_at(s, x0, y0)
    return np.clip(tot / np.maximum(area, 1e-12), 0.0, 1.0)


# --------------------------------------------------------------------------- sampling


@dataclass
class SlidePlan:
    """One slide's sampling state: its mask, the square side and spacing (level-0 px),
    annotations, candidate streams per class and the centres accepted so far."""

    name: str
    mask: SlideMask
    side0: tuple[float, float]  # square side in level-0 px (x, y)
    spacing: float
    annotations: SlideAnnotations
    mpp_override: float | None
    reader_check: ReaderCheck | None = None
    streams: dict[str, Iterator[tuple[int, int]]] = field(default_factory=dict)
    accepted: list[tuple[int, int, str]] = field(default_factory=list)
    grid: dict[tuple[int, int], list[tuple[int, int]]] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)

    def try_accept(self, x: int, y: int, cls: str) -> bool:
        sp = self.spacing
        if sp > 0:
            gx, gy = int(x // sp), int(y // sp)
            for i in (-1, 0, 1):
                for j in (-1, 0, 1):
                    for px, py in self.grid.get((gx + i, gy + j), ()):
                        if abs(px - x) < sp and abs(py - y) < sp:
                            return False
            self.grid.setdefault((gx, gy), []).append((x, y))
        self.accepted.append((x, y, cls))
        return True


def _candidates(
    plan: SlidePlan,
    rng: np.random.Generator,
    *,
    min_tissue: float,
    tumor_min_frac: float,
    with_classes: bool,
    grid: int = 1,
    max_candidates: int = 400_000,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Candidate centres (level-0 int px) per class, in a seeded random order.

    One jittered candidate per tissue pixel of the mask; on a large slide a random
    ``max_candidates`` of them (every pixel inside tumour is kept, so small
    lesions are never lost to the subsampling).
    """
    sm = plan.mask
    dx, dy = sm.downsample
    W0, H0 = sm.dimensions
    sx, sy = plan.side0
    hx, hy = sx / 2, sy / 2
    ann = plan.annotations
    tm = tumor_mask(ann, sm.mask.shape, sm.downsample) if with_classes and ann.has_tumor else None
    ii, jj = np.nonzero(sm.mask)
    if ii.size == 0:
        return {}
    if ii.size > max_candidates:
        keep = rng.random(ii.size) < max_candidates / ii.size
        if tm is not None:
            keep |= tm[ii, jj]
        ii, jj = ii[keep], jj[keep]
    cx = np.round((jj + rng.uniform(0, 1, jj.size)) * dx).astype(np.int64)
    cy = np.round((ii + rng.uniform(0, 1, ii.size)) * dy).astype(np.int64)
    if grid > 1:  # on the grid, a member at downsample d | grid starts on a whole level px
        cx, cy = (np.round(cx / grid) * grid).astype(np.int64), (np.round(cy / grid) * grid).astype(np.int64)
    inside = (cx - hx >= 0) & (cy - hy >= 0) & (cx + hx <= W0) & (cy + hy <= H0)
    cx, cy = cx[inside], cy[inside]
    s = integral_image(sm.mask)
    bx0, by0, bx1, by1 = (cx - hx) / dx, (cy - hy) / dy, (cx + hx) / dx, (cy + hy) / dy
    frac = box_fraction(s, bx0, by0, bx1, by1)
    ok = frac >= min_tissue
    cx, cy = cx[ok], cy[ok]
    bx0, by0, bx1, by1 = bx0[ok], by0[ok], bx1[ok], by1[ok]
    order = rng.permutation(cx.size)
    cx, cy = cx[order], cy[order]
    bx0, by0, bx1, by1 = bx0[order], by0[order], bx1[order], by1[order]
    if not with_classes:
        return {"any": (cx, cy)}
    if tm is None:
        return {"normal": (cx, cy), "tumor": (cx[:0], cy[:0])}
    st = integral_image(tm)
    # raster pre-filter (one mask pixel of margin for "normal"), exact check later
    tfrac = box_fraction(st, bx0, by0, bx1, by1)
    near = box_fraction(st, bx0 - 1, by0 - 1, bx1 + 1, by1 + 1)
    t_sel = tfrac >= tumor_min_frac * 0.5
    n_sel = near <= 0
    return {"tumor": (cx[t_sel], cy[t_sel]), "normal": (cx[n_sel], cy[n_sel])}


def _stream(
    cx: np.ndarray,
    cy: np.ndarray,
    cls: str,
    plan: SlidePlan,
    tumor_min_frac: float,
    batch: int = 2048,
) -> Iterator[tuple[int, int]]:
    """Yield candidates of one class that pass the exact polygon check, in order."""
    ann = plan.annotations
    hw = max(plan.side0) / 2
    for start in range(0, cx.size, batch):
        bx, by = cx[start : start + batch], cy[start : start + batch]
        if cls in ("tumor", "normal") and ann.has_tumor:
            # exact fraction over the (possibly anisotropic) square; use the x/y halves
            if plan.side0[0] == plan.side0[1]:
                _, fr = ann.label_many(bx, by, hw)
            else:
                fr = np.array(
                    [_exact_frac(ann, x, y, plan.side0) for x, y in zip(bx, by)], dtype=float
                )
            keep = fr >= tumor_min_frac if cls == "tumor" else fr <= 0
            bx, by = bx[keep], by[keep]
        yield from zip(bx.tolist(), by.tolist())


def _exact_frac(ann: SlideAnnotations, x: float, y: float, side: tuple[float, float]) -> float:
    import shapely
    from shapely.geometry import box

    sq = box(x - side[0] / 2, y - side[1] / 2, x + side[0] / 2, y + side[1] / 2)
    if ann.tumor.is_empty:
        return 0.0
    return float(shapely.area(shapely.intersection(ann.tumor, sq)) / sq.area)


def discover_slides(slides_dir: Path, include: Sequence[str] | None = None) -> list[str]:
    """Slide names relative to ``slides_dir`` (POSIX), sorted.

    ``include``: glob patterns relative to the folder (e.g. ``"*.svs"``); default:
    every file with a known slide extension, recursively, and every folder of
    ``.dcm`` files as one DICOM WSI (named by the folder, as coords.csv allows).
    """
    if include:
        paths = {p for pat in include for p in slides_dir.glob(pat) if p.is_file() or _is_dicom_dir(p)}
    else:
        paths = set()
        for p in slides_dir.rglob("*"):
            if p.is_file() and p.name.lower().endswith(DISCOVER_EXTENSIONS):
                paths.add(p)
            elif p.is_file() and p.suffix.lower() == ".dcm":
                paths.add(p.parent)
    names = sorted(p.relative_to(slides_dir).as_posix() for p in paths if p != slides_dir)
    return [n for n in names if ".." not in Path(n).parts]


def _is_dicom_dir(p: Path) -> bool:
    return p.is_dir() and any(q.suffix.lower() == ".dcm" for q in p.iterdir())


def _slide_mpp(reader: SlideReader, override: float | None, name: str, slides_dir: Path) -> tuple[float, float]:
    mpp = getattr(reader, "mpp", None)
    if mpp is not None and all(v and v > 0 for v in mpp):
        return float(mpp[0]), float(mpp[1])
    if override is not None:
        return float(override), float(override)
    raise InputError(
        f"{slides_dir / name}: slide has no mpp (microns per pixel) in its metadata; "
        "pass --mpp to sample-coords (it is written to the mpp column for extract)"
    )


def sample_coords(
    slides_dir: str | os.PathLike[str],
    n: int,
    out: str | os.PathLike[str] | None = None,
    *,
    annotations_dir: str | os.PathLike[str] | None = None,
    min_tissue: float = 0.9,
    seed: int = 0,
    size: int = 1024,
    base_mpp: float = 0.243,
    spacing: float | None = None,
    grid: int = 4,
    mpp: float | None = None,
    tumor_min_frac: float = 0.5,
    include: Sequence[str] | None = None,
    mask_mpp: float | None = None,
    overlay_dir: str | os.PathLike[str] | None = None,
    overlays: bool = True,
    backend: str = "auto",
    reader_check: str = "on",
    progress: bool = False,
) -> pd.DataFrame:
    """Sample ``n`` tissue-aware patch centres over the slides in ``slides_dir``.

    Args:
        slides_dir: folder of slides; names in the output are relative to it.
        n: number of centres wanted (fewer when the tissue cannot hold them).
        out: coords CSV to write (None: only return the table).
        annotations_dir: ASAP XML folder; when given, half tumour / half normal.
        min_tissue: minimum tissue fraction of the whole square in the mask.
        seed: random seed; same inputs and seed give the same centres.
        size: finest member side in px at ``base_mpp`` (the 40x square).
        base_mpp: um/px of the finest member.
        spacing: minimum Chebyshev distance between centres of one slide, level-0
            px; default one square side (no overlap).
        grid: centres are multiples of ``grid`` level-0 px (default 4). With
            ``size`` divisible by 4 and power-of-two levels, the 20x and 10x squares
            then start on whole pixels of levels 1 and 2 and are read natively;
            off-grid centres are kept exact by a sub-pixel bicubic resample, which
            softens those members a little (recorded as ``native:Lk:bicubic-aa``).
            1 turns it off.
        mpp: um/px for slides that have none in their metadata.
        tumor_min_frac: tumour fraction a "tumor" sample's square must reach.
        include: glob patterns selecting slides (default: all known slide files).
        mask_mpp: um/px of the tissue mask; default ``min(8, square_um / 16)``.
        overlay_dir: where to write ``<slide>_overlay.png`` (default beside
            ``out``: ``<out stem>_overlays/``).
        overlays: write the overlay PNGs.
        backend: slide reader backend for :func:`mlcamsr.slides.open_slide`.
        reader_check: ``on``: with ``auto``, each slide's mask level is read with both
            openslide and tiffslide (:mod:`mlcamsr.reader_check`); a slide they disagree
            on is read with openslide (``df.attrs["warnings"]``); ``off`` skips it.
        progress: show a progress bar over slides.

    Returns:
        DataFrame with ``slide, x, y`` (int level-0 px of the centre), ``label``
        with annotations, ``mpp`` when ``mpp`` was used. ``df.attrs["summary"]``
        holds per-slide details (``reader``, ``reader_check`` figures included) and
        ``df.attrs["failed"]`` slides that could not be used (name -> reason).

    Raises:
        InputError: bad folder or options, or no slide could be used.
    """
    remote = is_url(slides_dir)  # an object-storage prefix: TIFF-family slides, tiffslide
    # a RemoteDir stands in for the folder: `folder / name` is the slide's URL
    folder: Path = RemoteDir(str(slides_dir)) if remote else Path(slides_dir)  # type: ignore[assignment]
    _check_sample_options(folder, annotations_dir, n=n, min_tissue=min_tissue, size=size, base_mpp=base_mpp)
    if remote:
        looked = tuple(sorted(TIFF_SUFFIXES))
        names = list_remote_slides(folder, looked, list(include) if include else None)  # type: ignore[arg-type]
    else:
        looked = DISCOVER_EXTENSIONS
        names = discover_slides(folder, include)
    if not names:
        raise InputError(
            f"--slides {folder}: no slide files found "
            f"(looked for {', '.join(looked)}); check the folder"
        )
    with_classes = annotations_dir is not None
    square_um = size * base_mpp
    plans, failed = plan_slides(
        folder, names,
        annotations_dir=annotations_dir, square_um=square_um,
        mask_mpp=mask_mpp if mask_mpp is not None else min(8.0, square_um / 16),
        mpp=mpp, spacing=spacing, min_tissue=min_tissue, tumor_min_frac=tumor_min_frac,
        grid=grid, seed=seed, backend=backend, reader_check=reader_check, progress=progress,
    )
    classes = ["tumor", "normal"] if with_classes else ["any"]
    got = draw_centres(plans, n, classes)
    df = coords_table(plans, with_classes=with_classes)
    df.attrs["summary"] = {p.name: _slide_summary(p, classes, grid) for p in plans}
    df.attrs["failed"] = failed
    df.attrs["requested"] = n
    df.attrs["classes"] = {c: int(got.get(c, 0)) for c in classes}
    df.attrs["warnings"] = [p.reader_check.message for p in plans
                            if p.reader_check is not None and p.reader_check.status == "disagree"]
    if out is not None:
        _write_csv(df, Path(out))
    if overlays and (overlay_dir is not None or out is not None):
        odir = Path(overlay_dir) if overlay_dir is not None else Path(out).with_name(Path(out).stem + "_overlays")  # type: ignore[arg-type]
        df.attrs["overlays"] = write_overlays(plans, odir)
    return df


def _check_sample_options(
    slides_dir: Path,
    annotations_dir: str | os.PathLike[str] | None,
    *,
    n: int,
    min_tissue: float,
    size: int,
    base_mpp: float,
) -> None:
    """Stage 1: InputError for a missing folder, an annotations folder without XML, bad numbers."""
    if not slides_dir.is_dir():
        raise InputError(f"--slides {slides_dir}: not a folder; give the folder holding the slides")
    if annotations_dir is not None and not Path(annotations_dir).is_dir():
        raise InputError(f"--annotations {annotations_dir}: not a folder; give the ASAP XML folder")
    if annotations_dir is not None:
        require_xml(annotations_dir)
    if n < 1:
        raise InputError(f"--n {n}: must be at least 1")
    if not 0 <= min_tissue <= 1:
        raise InputError(f"--min-tissue {min_tissue}: must be between 0 and 1")
    if size < 1 or base_mpp <= 0:
        raise InputError("--size and --base-mpp must be positive")


def plan_slides(
    slides_dir: Path,
    names: Sequence[str],
    *,
    annotations_dir: str | os.PathLike[str] | None,
    square_um: float,
    mask_mpp: float,
    mpp: float | None,
    spacing: float | None,
    min_tissue: float,
    tumor_min_frac: float,
    grid: int,
    seed: int,
    backend: str,
    reader_check: str = "on",
    progress: bool = False,
) -> tuple[list[SlidePlan], dict[str, str]]:
    """Stage 2: each slide's tissue mask and candidate centres, ``(plans, failed)``.

    ``failed`` maps the slides that could not be read to the reason; InputError when
    none could be used. Slide ``k`` draws from ``np.random.default_rng([seed, k])``.
    """
    failed: dict[str, str] = {}
    plans: list[SlidePlan] = []
    it: Iterable[str] = names
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(names, desc="tissue masks", unit="slide")
    for idx, name in enumerate(it):
        try:
            plan = plan_slide(
                slides_dir, name, np.random.default_rng([seed, idx]),
                annotations_dir=annotations_dir, square_um=square_um, mask_mpp=mask_mpp, mpp=mpp,
                spacing=spacing, min_tissue=min_tissue, tumor_min_frac=tumor_min_frac, grid=grid,
                backend=backend, reader_check=reader_check,
            )
        except _Unreadable as exc:
            failed[name] = str(exc)
            continue
        plans.append(plan)
    if not plans:
        reasons = "; ".join(failed.values())
        raise InputError(f"no slide in {slides_dir} could be used: {reasons}")
    return plans, failed


class _Unreadable(Exception):
    """A slide that cannot be used (its reason is the message); the other slides go on."""


def plan_slide(
    slides_dir: Path,
    name: str,
    rng: np.random.Generator,
    *,
    annotations_dir: str | os.PathLike[str] | None,
    square_um: float,
    mask_mpp: float,
    mpp: float | None,
    spacing: float | None,
    min_tissue: float,
    tumor_min_frac: float,
    grid: int,
    backend: str,
    reader_check: str = "on",
) -> SlidePlan:
    """One slide: its tissue mask (about ``mask_mpp`` um/px), square side in level-0 px and
    candidate streams per class. Raises ``_Unreadable`` for a slide that cannot be read."""
    with_classes = annotations_dir is not None
    ann = load_for_slide(annotations_dir, name) if with_classes else SlideAnnotations.empty()
    try:
        with open_slide(slides_dir / name, backend=backend) as reader:
            smpp = _slide_mpp(reader, mpp, name, slides_dir)
            level, _ = mask_level(reader, mpp=smpp, mask_mpp=mask_mpp)
            # the mask level read by both readers (this one reused; 4 regions: the mask read
            # dwarfs them); a disagreement reads the mask, and its mpp, with openslide
            check = check_readers(slides_dir / name, [level], backend=backend, mode=reader_check,
                                  opened=reader, regions=4)
            if check.reader in ("", reader.backend):
                sm = slide_tissue_mask(reader, mpp=smpp, mask_mpp=mask_mpp)
                own_mpp = reader.mpp
        if check.reader not in ("", reader.backend):
            with open_slide(slides_dir / name, backend=check.reader) as chosen:
                smpp = _slide_mpp(chosen, mpp, name, slides_dir)
                sm = slide_tissue_mask(chosen, mpp=smpp, mask_mpp=mask_mpp)
                own_mpp = chosen.mpp
    except InputError as exc:
        raise _Unreadable(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any unreadable slide is reported, others go on
        raise _Unreadable(f"{slides_dir / name}: cannot read slide ({type(exc).__name__}: {exc})") from None
    side0 = (square_um / sm.mpp[0], square_um / sm.mpp[1])
    plan = SlidePlan(
        name=name,
        mask=sm,
        side0=side0,
        spacing=float(spacing) if spacing is not None else max(side0),
        annotations=ann,
        mpp_override=mpp if own_mpp is None else None,
        reader_check=check,
    )
    cands = _candidates(
        plan, rng, min_tissue=min_tissue, tumor_min_frac=tumor_min_frac,
        with_classes=with_classes, grid=grid,
    )
    for cls, (cx, cy) in cands.items():
        plan.available[cls] = int(cx.size)
        plan.streams[cls] = _stream(cx, cy, cls, plan, tumor_min_frac)
    return plan


def draw_centres(plans: list[SlidePlan], n: int, classes: list[str]) -> dict[str, int]:
    """Stage 3: accept ``n`` centres slide by slide (round robin), half per class with
    annotations; a class that runs short is filled by the other. Returns class -> count."""
    with_classes = classes != ["any"]
    targets = {"tumor": n // 2, "normal": n - n // 2} if with_classes else {"any": n}
    got = _round_robin(plans, classes, targets)
    short = n - sum(got.values())
    if short > 0 and with_classes:  # one class ran short: the other fills the gap
        for cls in classes:
            more = _round_robin(plans, [cls], {cls: short})
            got[cls] += more[cls]
            short -= more[cls]
            if short <= 0:
                break
    return got


def coords_table(plans: list[SlidePlan], *, with_classes: bool) -> pd.DataFrame:
    """Stage 4: the accepted centres as a coords table: ``slide, x, y`` (int level-0 px)
    [+ ``label`` from the exact polygons] [+ ``mpp`` when an override was used]."""
    rows = []
    for plan in plans:
        labels: np.ndarray | None = None
        if with_classes and plan.accepted:
            xs = np.array([a[0] for a in plan.accepted], float)
            ys = np.array([a[1] for a in plan.accepted], float)
            if plan.side0[0] == plan.side0[1]:
                labels, _ = plan.annotations.label_many(xs, ys, plan.side0[0] / 2)
            else:
                labels = np.array(
                    [
                        "tumor" if _exact_frac(plan.annotations, x, y, plan.side0) > 0 else "normal"
                        for x, y in zip(xs, ys)
                    ],
                    dtype=object,
                )
        for k, (x, y, _cls) in enumerate(plan.accepted):
            row: dict[str, Any] = {"slide": plan.name, "x": int(x), "y": int(y)}
            if labels is not None:
                row["label"] = labels[k]
            if plan.mpp_override is not None:
                row["mpp"] = plan.mpp_override
            rows.append(row)
    columns = ["slide", "x", "y"] + (["label"] if with_classes else [])
    if any(p.mpp_override is not None for p in plans):
        columns.append("mpp")
    df = pd.DataFrame(rows, columns=columns)
    df["x"] = df["x"].astype(np.int64)
    df["y"] = df["y"].astype(np.int64)
    return df


def _slide_summary(p: SlidePlan, classes: list[str], grid: int) -> dict[str, Any]:
    """Per-slide details for ``df.attrs["summary"]`` (mask, square, candidates, sampled)."""
    return {
        "mask_level": p.mask.level,
        "mask_factor": p.mask.factor,
        "mask_mpp": round(p.mask.mask_mpp, 4),
        "mask_method": p.mask.method,
        "mask_threshold": round(p.mask.threshold, 4),
        "tissue_frac": round(float(p.mask.mask.mean()), 4),
        "square_level0_px": [round(v, 3) for v in p.side0],
        "spacing_level0_px": round(p.spacing, 3),
        "grid_level0_px": grid,
        "candidates": dict(p.available),
        "sampled": {c: sum(1 for a in p.accepted if a[2] == c) for c in classes},
        "reader": p.reader_check.reader if p.reader_check is not None else None,
        "reader_check": p.reader_check.as_attrs() if p.reader_check is not None else None,
    }


def _write_csv(df: pd.DataFrame, out: Path) -> None:
    """Write the coords CSV atomically (temp file + rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, out)


def write_overlays(plans: list[SlidePlan], odir: Path) -> dict[str, str]:
    """Stage 5: one overlay PNG per slide in ``odir``; returns slide -> PNG path."""
    odir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for p in plans:
        target = odir / overlay_name(p.name)
        write_overlay(p, target)
        paths[p.name] = str(target)
    return paths


def overlay_name(slide: str) -> str:
    """File name of a slide's overlay PNG: ``a/tumor_001.tif`` -> ``a__tumor_001_overlay.png``."""
    parent = Path(slide).parent.as_posix()
    prefix = "" if parent in ("", ".") else parent.replace("/", "__") + "__"
    return f"{prefix}{slide_stem(slide)}_overlay.png"


def _round_robin(
    plans: list[SlidePlan],
    classes: list[str],
    targets: dict[str, int],
) -> dict[str, int]:
    """Slides take turns to accept one centre of each class until targets are met."""
    got = {c: 0 for c in classes}
    for cls in classes:
        active = [p for p in plans if cls in p.streams]
        while got[cls] < targets[cls] and active:
            still = []
            for p in active:
                if got[cls] >= targets[cls]:
                    still.append(p)
                    continue
                for x, y in p.streams[cls]:
                    if p.try_accept(x, y, cls):
                        got[cls] += 1
                        still.append(p)
                        break
                # an exhausted stream drops the slide from this class
            active = still
    return got


# --------------------------------------------------------------------------- overlay


def write_overlay(plan: SlidePlan, path: Path, max_side: int = 1600) -> Path:
    """Thumbnail with the tissue mask tinted, tumour outlined and sampled squares drawn."""
    from PIL import Image, ImageDraw
    from skimage.measure import find_contours

    sm = plan.mask
    thumb = sm.thumb.astype(np.float32)
    # tissue keeps its colours; background is dimmed so the mask reads at a glance
    shade = np.array(BACKGROUND_SHADE, np.float32)
    img = np.where(sm.mask[..., None], thumb, thumb * 0.45 + shade * 0.55).clip(0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    scale = min(4.0, max_side / max(h, w)) if max(h, w) > 0 else 1.0
    ow, oh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    resample = Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.NEAREST
    pil = Image.fromarray(img).resize((ow, oh), resample)
    draw = ImageDraw.Draw(pil)
    lw = max(2, int(round(min(ow, oh) / 400)))
    # tissue outline (mask px -> overlay px; contours run through pixel centres)
    padded = np.pad(sm.mask, 1).astype(np.float32)
    for c in find_contours(padded, 0.5):
        pts = [(float((cc - 0.5) * scale), float((rr - 0.5) * scale)) for rr, cc in c]
        if len(pts) >= 2:
            draw.line(pts, fill=MASK_COLOR, width=lw)
    # level-0 px -> overlay px
    fx = scale / sm.downsample[0]
    fy = scale / sm.downsample[1]
    for ring in plan.annotations.outlines():
        pts = [(float(x * fx), float(y * fy)) for x, y in ring]
        if len(pts) >= 2:
            draw.line(pts, fill=TUMOR_COLOR, width=lw)
    hx, hy = plan.side0[0] / 2, plan.side0[1] / 2
    for x, y, cls in plan.accepted:
        color = TUMOR_BOX_COLOR if cls == "tumor" else NORMAL_BOX_COLOR
        draw.rectangle(
            [(x - hx) * fx, (y - hy) * fy, (x + hx) * fx - 1, (y + hy) * fy - 1],
            outline=color,
            width=lw,
        )
    # caption: what the picture is, then the legend
    n_t = sum(1 for a in plan.accepted if a[2] == "tumor")
    n_n = len(plan.accepted) - n_t
    lines = [
        f"{plan.name}   sampled {len(plan.accepted)}"
        + (f" (tumor {n_t}, normal {n_n})" if plan.annotations.has_tumor or n_t else ""),
        f"mask {sm.mask_mpp:.1f} um/px (level {sm.level}, /{sm.factor}), {sm.method} "
        f"> {sm.threshold:.2f}, tissue {sm.mask.mean():.0%}",
        "green: tissue mask  red: tumour  boxes: orange tumor, blue normal",
    ]
    bar_h = 14 * len(lines) + 6
    canvas = Image.new("RGB", (max(ow, 420), oh + bar_h), (255, 255, 255))
    cdraw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        cdraw.text((4, 3 + 14 * i), line, fill=(0, 0, 0))
    canvas.paste(pil, (0, bar_h))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
