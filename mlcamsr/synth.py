"""CAMELYON-like synthetic whole-slide images: tiled pyramidal TIFFs with H&E-like texture.

Each slide is a generic tiled TIFF (no vendor description), like a CAMELYON16 ``.tif``
(``fmt="generic-jpeg"``, the default; the Aperio JPEG 2000 formats of :data:`SLIDE_FORMATS`
exist to test reader agreement, see :func:`write_pyramid_tiff`):

- JPEG tiles of 512 px (quality 90, RGB), one TIFF page per level, level 0 first
  (``NewSubfileType`` 0) and every coarser level a reduced image (``NewSubfileType`` 1);
- levels by 2 down to a thumbnail whose longer side is under 512 px; with
  ``odd_levels=True`` every level is ``floor(w / 2) + 1`` px wide (and high), so the
  downsamples are CAMELYON's non-power-of-two ones (1000 -> 501 px: 1.996);
- each level is the area (box) average of the level above, so the levels agree;
- ``XResolution``/``YResolution`` in pixels per centimetre, so openslide 4.0.1
  (``openslide.mpp-x``, generic-tiff) and tiffslide (``tiffslide.mpp-x``) both report
  the level-0 mpp (default 0.243 um/px, CAMELYON16's 40x).

Content, scaled physically by ``mpp`` (sizes below in um): tissue blobs on white
glass (about half the area is background, RGB about 243), pink eosin stroma with
wavy fibres of 2-3 um period and pixel-level grain, purple haematoxylin nuclei with
sharp 1-px edges and chromatin texture, and, with ``lesions=True``, a few tumour
regions (denser, larger, darker nuclei in outlined cells) whose polygons are written
as ASAP XML next to the slide. Everything is drawn from ``numpy.random.default_rng``
seeded by ``(seed, slide index)``, so the same seed gives the same bytes.

``coords.csv`` in the output folder lists patch centres (level-0 px) for
``mlcamsr extract``: ``slide,x,y`` plus ``label`` (``tumor``/``normal``) when there
are lesions. See :func:`synth_slides`.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageDraw
from scipy import ndimage

from mlcamsr.errors import InputError

#: what synth writes: another synth run in the folder may be replaced, nothing else may
SYNTH_FILES = re.compile(r"(slide_\d{3,}\.(tif|svs|xml)|coords\.csv)")

TILE = 512
"""Tile edge (px) of every level."""
JPEG_QUALITY = 90
J2K_LEVEL = 80
"""imagecodecs ``jpeg2k_encode`` level (target PSNR, dB) of the Aperio JPEG 2000 formats."""

#: the one list of slide formats synth writes (``--format``)
SLIDE_FORMATS: tuple[str, ...] = ("generic-jpeg", "aperio-j2k-ycbcr", "aperio-j2k-rgb")
""":func:`write_pyramid_tiff` formats: ``generic-jpeg`` (default, CAMELYON16-like generic TIFF),
``aperio-j2k-ycbcr`` (Aperio SVS, JPEG 2000 tiles whose codestream holds YCbCr without the
multi-component transform, compression 33003 as Aperio's Matrox encoder writes it) and
``aperio-j2k-rgb`` (the same with an RGB codestream, compression 33005, as TCGA's Kakadu
files). openslide converts 33003 tiles from YCbCr; tiffslide (tifffile) decodes 33003 and
33005 alike, so it shows the YCbCr planes of a 33003 slide as RGB (docs/slides.md,
"Reader agreement")."""
LOWRES = 32
"""Level-0 px per cell of the low-frequency fields (tissue shape, stain variation)."""
BAND = 1024
"""Rows of level 0 rendered at once (bounds memory: about 40 float32 bytes per px of a band)."""
PATCH_HALF = 512
"""Half the 40x square (1024 px) that a coords.csv centre must keep inside the slide."""

# H&E colours, RGB uint8-scale floats.
_GLASS = np.array([243.0, 243.0, 245.0], np.float32)
_STROMA = np.array([228.0, 150.0, 198.0], np.float32)
_FIBRE = np.array([196.0, 92.0, 152.0], np.float32)
_TUMOUR_CYTO = np.array([196.0, 128.0, 184.0], np.float32)
_MEMBRANE = np.array([150.0, 70.0, 135.0], np.float32)
_NUCLEUS = np.array([88.0, 52.0, 140.0], np.float32)
_NUCLEUS_TUMOUR = np.array([62.0, 30.0, 112.0], np.float32)


@dataclass
class SynthSlide:
    """What :func:`render_slide` made: the level-0 image and its ground truth.

    Attributes:
        image: level 0, ``(h, w, 3)`` uint8 RGB.
        tissue: level-0 tissue mask, ``(h, w)`` bool.
        lesions: tumour polygons, each ``(N, 2)`` float64 level-0 px ``(x, y)``.
        tissue_field: the low-resolution tissue field (one value per ``LOWRES`` px)
            and its threshold, for picking coordinates.
    """

    image: np.ndarray
    tissue: np.ndarray
    lesions: list[np.ndarray] = field(default_factory=list)
    tissue_field: np.ndarray | None = None
    threshold: float = 0.5


def level_sizes(size: tuple[int, int], *, odd_levels: bool = False) -> list[tuple[int, int]]:
    """Pyramid level sizes ``(w, h)`` px, level 0 first, down to a thumbnail under 512 px.

    Levels by 2: ``w // 2`` (exact halves for power-of-two sizes). With
    ``odd_levels`` each level is ``w // 2 + 1`` so the downsample is never exactly 2
    (1000 -> 501 -> 251 -> 126: 1.996, 3.984, 7.937), like CAMELYON16.
    """
    w, h = size
    sizes = [(w, h)]
    while max(w, h) >= TILE and min(w, h) >= 4:
        if odd_levels:
            w, h = w // 2 + 1, h // 2 + 1
        else:
            w, h = max(1, w // 2), max(1, h // 2)
        sizes.append((w, h))
    return sizes


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise normalised to zero mean, unit std (float32)."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-6)


def _upsample(field_lr: np.ndarray, cell: float, y0: int, y1: int, width: int,
              resample: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
    """Rows ``y0:y1`` (level-0 px) of a low-res field with one value per ``cell`` px.

    PIL's ``box`` maps the band exactly, so bands join without seams.
    """
    img = Image.fromarray(np.ascontiguousarray(field_lr, dtype=np.float32), mode="F")
    out = img.resize((width, y1 - y0), resample, box=(0.0, y0 / cell, width / cell, y1 / cell))
    return np.asarray(out, dtype=np.float32)


def _lesion_polygon(rng: np.random.Generator, cx: float, cy: float, radius: float) -> np.ndarray:
    """A lobulated closed outline (64 vertices, open ring) around ``(cx, cy)``, level-0 px."""
    theta = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
    r = np.ones_like(theta)
    for k in (2, 3, 5):
        r += rng.uniform(0.04, 0.12) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    return np.stack([cx + radius * r * np.cos(theta), cy + radius * r * np.sin(theta)], axis=1)


def _stamp_nuclei(img: np.ndarray, rng: np.random.Generator, centres: np.ndarray,
                  semi_a: np.ndarray, semi_b: np.ndarray, colour: np.ndarray,
                  ring: float | None) -> None:
    """Paint elliptical nuclei (sharp 1-px antialiased edge, chromatin grain) in place.

    Args:
        img: level-0 ``(h, w, 3)`` uint8, modified in place.
        centres: ``(K, 2)`` level-0 px ``(x, y)``.
        semi_a, semi_b: semi-axes in px, ``(K,)``.
        colour: RGB of the nucleus.
        ring: if given, also draw a 1.2-px cell membrane at ``ring`` times the nucleus.
    """
    h, w = img.shape[:2]
    angles = rng.uniform(0, np.pi, len(centres))
    reach = np.ceil(np.maximum(semi_a, semi_b) * (ring or 1.0) + 2).astype(int)
    shade = rng.uniform(0.8, 1.15, len(centres)).astype(np.float32)
    for k, (cx, cy) in enumerate(centres):
        r = reach[k]
        x0, x1 = max(0, int(cx) - r), min(w, int(cx) + r + 1)
        y0, y1 = max(0, int(cy) - r), min(h, int(cy) + r + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
        c, s = math.cos(angles[k]), math.sin(angles[k])
        u, v = (dx * c + dy * s) / semi_a[k], (-dx * s + dy * c) / semi_b[k]
        rho = np.sqrt(u * u + v * v)
        patch = img[y0:y1, x0:x1].astype(np.float32)
        if ring is not None:
            # membrane: a thin ring, distance to it in px (approximate, via the minor axis)
            d_ring = np.abs(rho - ring) * semi_b[k]
            alpha_r = np.clip(1.2 - d_ring, 0.0, 1.0)[..., None] * 0.8
            patch = patch * (1 - alpha_r) + _MEMBRANE * alpha_r
        alpha = np.clip((1.0 - rho) * semi_b[k] + 0.5, 0.0, 1.0)[..., None]
        grain = rng.uniform(0.75, 1.2, alpha.shape).astype(np.float32)
        body = np.clip(colour * shade[k] * grain, 0, 255)
        patch = patch * (1 - alpha) + body * alpha
        img[y0:y1, x0:x1] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)


def render_slide(size: tuple[int, int], *, mpp: float = 0.243, seed: int = 0, index: int = 0,
                 lesions: bool = True) -> SynthSlide:
    """Draw level 0 of one synthetic H&E slide.

    Args:
        size: level-0 ``(w, h)`` px.
        mpp: level-0 um/px; structures keep their physical size (nucleus 5-8 um).
        seed, index: the random stream is ``default_rng([seed, index])``.
        lesions: paint tumour regions and return their polygons.

    Returns:
        A :class:`SynthSlide` (image ``(h, w, 3)`` uint8).
    """
    w, h = size
    rng = np.random.default_rng([seed, index])
    um = 1.0 / mpp  # px per um at level 0

    # --- tissue: a few Gaussian blobs + smooth noise, thresholded (low-res field) ---
    lw, lh = math.ceil(w / LOWRES) + 2, math.ceil(h / LOWRES) + 2
    gy, gx = np.mgrid[0:lh, 0:lw].astype(np.float32)
    tissue_f = np.zeros((lh, lw), np.float32)
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = rng.uniform(0.2, 0.8) * w / LOWRES, rng.uniform(0.2, 0.8) * h / LOWRES
        sx, sy = rng.uniform(0.12, 0.25) * w / LOWRES, rng.uniform(0.12, 0.25) * h / LOWRES
        tissue_f += np.exp(-0.5 * (((gx - cx) / sx) ** 2 + ((gy - cy) / sy) ** 2))
    tissue_f += 0.18 * _smooth_noise(rng, (lh, lw), sigma=max(2.0, 0.03 * min(lw, lh)))
    threshold = 0.45
    lowres_tissue = tissue_f > threshold

    # --- lesions: lobulated polygons well inside tissue ---
    polygons: list[np.ndarray] = []
    if lesions:
        depth = ndimage.distance_transform_edt(lowres_tissue) * LOWRES  # level-0 px to glass
        n_les = int(rng.integers(1, 4))
        for _ in range(n_les):
            radius = rng.uniform(0.06, 0.11) * min(w, h)
            ok = np.argwhere(depth > 1.35 * radius + LOWRES)
            if len(ok) == 0:
                continue
            py, px = ok[rng.integers(len(ok))]
            cx, cy = (px + 0.5) * LOWRES, (py + 0.5) * LOWRES
            if any(np.hypot(*(p.mean(0) - (cx, cy))) < 2.2 * radius for p in polygons):
                continue
            polygons.append(_lesion_polygon(rng, cx, cy, radius))
    lesion_mask = np.zeros((h, w), bool)
    if polygons:
        m = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(m)
        for p in polygons:
            draw.polygon([tuple(v) for v in p.tolist()], fill=1)
        lesion_mask = np.asarray(m, dtype=bool)

    # --- medium-frequency fields: stain strength, fibre warp, fibre family mix ---
    cell_m = 8.0 * um  # 8 um cells
    mw, mh = math.ceil(w / cell_m) + 3, math.ceil(h / cell_m) + 3
    warp_x = _smooth_noise(rng, (mh, mw), 1.5)
    warp_y = _smooth_noise(rng, (mh, mw), 1.5)
    mix_f = _smooth_noise(rng, (lh, lw), 3.0)
    stain_f = _smooth_noise(rng, (lh, lw), 4.0)
    dens_f = _smooth_noise(rng, (mh, mw), 2.0)
    period = rng.uniform(2.2, 3.2) * um  # fibre period, px
    theta1, theta2 = rng.uniform(0, np.pi), rng.uniform(0, np.pi)
    amp = 4.0 * um  # warp displacement, px

    image = np.empty((h, w, 3), np.uint8)
    tissue = np.empty((h, w), bool)
    xs = np.arange(w, dtype=np.float32)
    for y0 in range(0, h, BAND):
        y1 = min(h, y0 + BAND)
        yy = np.arange(y0, y1, dtype=np.float32)[:, None]
        t_band = _upsample(tissue_f, LOWRES, y0, y1, w)
        tis = t_band > threshold
        tissue[y0:y1] = tis
        wx = _upsample(warp_x, cell_m, y0, y1, w, Image.Resampling.BICUBIC) * amp
        wy = _upsample(warp_y, cell_m, y0, y1, w, Image.Resampling.BICUBIC) * amp
        px, py = xs[None, :] + wx, yy + wy
        k = np.float32(2 * np.pi / period)
        f1 = np.sin(k * (px * np.float32(math.cos(theta1)) + py * np.float32(math.sin(theta1))))
        f2 = np.sin(k * (px * np.float32(math.cos(theta2)) + py * np.float32(math.sin(theta2))) * 1.3)
        mix = 1 / (1 + np.exp(-2 * _upsample(mix_f, LOWRES, y0, y1, w)))
        fib = f1 * mix + f2 * (1 - mix)
        thr = 0.25 + 0.25 * _upsample(dens_f, cell_m, y0, y1, w)
        fibre = np.clip((fib - thr) * 3.0, 0.0, 1.0)[..., None]
        stain = 1.0 + 0.06 * _upsample(stain_f, LOWRES, y0, y1, w)[..., None]
        les = lesion_mask[y0:y1][..., None]
        base = np.where(les, _TUMOUR_CYTO, _STROMA)
        tis_rgb = (base * (1 - fibre) + _FIBRE * fibre) * stain
        tis_rgb += rng.uniform(-7, 7, tis_rgb.shape).astype(np.float32)
        glass = _GLASS + rng.uniform(-2, 2, tis_rgb.shape).astype(np.float32)
        # tissue edge a few px wide
        edge = np.clip((t_band - threshold) * 300.0, 0.0, 1.0)[..., None]
        rgb = glass * (1 - edge) + tis_rgb * edge
        image[y0:y1] = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
        del wx, wy, px, py, f1, f2, fib, fibre, rgb, tis_rgb, glass, base

    # --- nuclei: Poisson points in tissue; dense, large and dark in lesions ---
    area_um2 = w * h / (um * um)
    n_try = int(area_um2 / 250.0)
    pts = rng.uniform((0, 0), (w, h), (n_try, 2))
    ix, iy = pts[:, 0].astype(int), pts[:, 1].astype(int)
    keep = tissue[iy, ix] & ~lesion_mask[iy, ix]
    normal = pts[keep]
    a = rng.uniform(2.5, 4.5, len(normal)) * um
    b = a * rng.uniform(0.35, 0.8, len(normal))
    _stamp_nuclei(image, rng, normal, a, b, _NUCLEUS, ring=None)
    if polygons:
        n_try = int(area_um2 / 60.0)
        pts = rng.uniform((0, 0), (w, h), (n_try, 2))
        ix, iy = pts[:, 0].astype(int), pts[:, 1].astype(int)
        tum = pts[lesion_mask[iy, ix] & tissue[iy, ix]]
        a = rng.uniform(3.0, 4.5, len(tum)) * um
        b = a * rng.uniform(0.75, 0.95, len(tum))
        _stamp_nuclei(image, rng, tum, a, b, _NUCLEUS_TUMOUR, ring=1.7)
    return SynthSlide(image=image, tissue=tissue, lesions=polygons, tissue_field=tissue_f,
                      threshold=threshold)


def build_levels(image: np.ndarray, *, odd_levels: bool = False) -> list[np.ndarray]:
    """The pyramid from level 0: each level is the box (area) average of the level above.

    Returns a list of ``(h_k, w_k, 3)`` uint8 arrays with sizes from :func:`level_sizes`.
    """
    h, w = image.shape[:2]
    sizes = level_sizes((w, h), odd_levels=odd_levels)
    levels = [image]
    prev = Image.fromarray(image)
    for lw, lh in sizes[1:]:
        if prev.width == 2 * lw and prev.height == 2 * lh:
            nxt = prev.reduce(2)
        else:
            nxt = prev.resize((lw, lh), Image.Resampling.BOX)
        levels.append(np.asarray(nxt))
        prev = nxt
    return levels


def _ycbcr(rgb: np.ndarray) -> np.ndarray:
    """JPEG/JFIF full-range YCbCr of ``(h, w, 3)`` uint8 RGB (ITU-R BT.601), uint8."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.clip(np.rint(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


def write_pyramid_tiff(path: str | os.PathLike[str], levels: list[np.ndarray], *, mpp: float,
                       fmt: str = "generic-jpeg") -> Path:
    """Write ``levels`` as a tiled pyramidal TIFF in one of :data:`SLIDE_FORMATS`.

    ``generic-jpeg``: a generic TIFF with JPEG 512-px tiles and resolution tags in cm; level
    k's tags say its own pixel size (``mpp * w0 / w_k``); readers take the level-0 page's.
    ``aperio-j2k-*``: an Aperio SVS (description ``Aperio Image Library ... |MPP = mpp``,
    256-px JPEG 2000 tiles, a stripped thumbnail as the second page, as Aperio writes it).
    BigTIFF is used above 3.5 GB of raw pixels.
    """
    if fmt not in SLIDE_FORMATS:
        raise InputError(f"--format {fmt}: choose {', '.join(SLIDE_FORMATS)}")
    path = Path(path)
    h0, w0 = levels[0].shape[:2]
    raw = sum(lv.nbytes for lv in levels)
    tmp = path.with_name(path.name + ".part")
    with tifffile.TiffWriter(tmp, bigtiff=raw > 3_500_000_000) as tw:
        for k, lv in enumerate(levels):
            if fmt == "generic-jpeg":
                hk, wk = lv.shape[:2]
                res = (1e4 / (mpp * w0 / wk), 1e4 / (mpp * h0 / hk))  # px per cm
                tw.write(
                    lv,
                    photometric="rgb",
                    tile=(TILE, TILE),
                    compression="jpeg",
                    compressionargs={"level": JPEG_QUALITY},
                    resolution=res,
                    resolutionunit="CENTIMETER",
                    subfiletype=0 if k == 0 else 1,
                    metadata=None,
                    software="mlcamsr.synth",
                    maxworkers=1,
                )
            else:
                _write_aperio_page(tw, lv, k, levels, mpp=mpp, ycbcr=fmt == "aperio-j2k-ycbcr")
    os.replace(tmp, path)
    return path


def _write_aperio_page(tw: tifffile.TiffWriter, lv: np.ndarray, k: int, levels: list[np.ndarray], *,
                       mpp: float, ycbcr: bool) -> None:
    """One Aperio level page (JPEG 2000 tiles, 33003 YCbCr or 33005 RGB); after level 0,
    the stripped thumbnail page that Aperio files carry second."""
    h0, w0 = levels[0].shape[:2]
    hk, wk = lv.shape[:2]
    head = "Aperio Image Library v12.0.15 (mlcamsr.synth)\r\n"
    if k == 0:
        desc = (f"{head}{w0}x{h0} [0,0 {w0}x{h0}] (256x256) J2K/{'YUV16' if ycbcr else 'RGB'} "
                f"Q={J2K_LEVEL}|AppMag = 40|MPP = {mpp:.4f}")
    else:
        desc = f"{head}{w0}x{h0} -> {wk}x{hk} - |AppMag = 40|MPP = {mpp:.4f}"
    tw.write(
        _ycbcr(lv) if ycbcr else lv,
        photometric="rgb",  # Aperio writes RGB here; 33003 itself says the codestream is YCbCr
        tile=(256, 256),
        compression=33003 if ycbcr else 33005,
        compressionargs={"level": J2K_LEVEL, "mct": False} if ycbcr else {"level": J2K_LEVEL},
        description=desc,
        metadata=None,
        software="mlcamsr.synth",
        maxworkers=1,
    )
    if k == 0:  # the thumbnail: stripped JPEG, longer side at most 768 px
        small = next((t for t in levels if max(t.shape[:2]) <= 768), levels[-1])
        th, tw_ = small.shape[:2]
        tw.write(small, photometric="rgb", compression="jpeg", rowsperstrip=16,
                 description=f"{head}{w0}x{h0} -> {tw_}x{th} - |AppMag = 40|MPP = {mpp:.4f}",
                 metadata=None, software="mlcamsr.synth", maxworkers=1)


def _square_fraction(integral: np.ndarray, cell: int, x: float, y: float, half: int) -> float:
    """Mean of a mask over the square of half-width ``half`` level-0 px, from its integral image."""
    n_y, n_x = integral.shape[0] - 1, integral.shape[1] - 1
    x0, x1 = int(np.clip((x - half) // cell, 0, n_x)), int(np.clip(-(-(x + half) // cell), 0, n_x))
    y0, y1 = int(np.clip((y - half) // cell, 0, n_y)), int(np.clip(-(-(y + half) // cell), 0, n_y))
    if x1 <= x0 or y1 <= y0:
        return 0.0
    s = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return float(s) / ((x1 - x0) * (y1 - y0))


def pick_coords(slide: SynthSlide, n: int, *, seed: int = 0, index: int = 0,
                half: int = PATCH_HALF) -> list[tuple[int, int, str]]:
    """Patch centres ``(x, y, label)`` in level-0 px for one slide.

    About a third are inside lesions (``tumor``) when the slide has any; the rest are
    ``normal`` with at least 95 % tissue in the ``2 * half`` px square. When ``n >= 4``
    the last centre is a QC case: its square is 20-60 % tissue, the rest glass.
    Centres keep ``half`` px from the slide border (less on slides smaller than
    ``4 * half``).
    """
    h, w = slide.tissue.shape
    half = min(half, min(w, h) // 4)
    rng = np.random.default_rng([seed, index, 1])
    cell = 8
    small = slide.tissue[cell // 2::cell, cell // 2::cell].astype(np.float64)
    integral = np.pad(small.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    from matplotlib.path import Path as MplPath

    paths = [MplPath(p) for p in slide.lesions]

    def inside_lesion(x: float, y: float) -> bool:
        return any(p.contains_point((x, y)) for p in paths)

    n_qc = 1 if n >= 4 else 0
    n_tumor = (n - n_qc) // 3 if paths else 0
    n_normal = n - n_qc - n_tumor
    out: list[tuple[int, int, str]] = []
    wants: list[tuple[int, str, Callable[[float, float], bool]]] = [
        (n_tumor, "tumor", lambda x, y: inside_lesion(x, y)
         and _square_fraction(integral, cell, x, y, half) >= 0.95),
        (n_normal, "normal", lambda x, y: not inside_lesion(x, y)
         and _square_fraction(integral, cell, x, y, half) >= 0.95),
        (n_qc, "normal", lambda x, y: 0.2 <= _square_fraction(integral, cell, x, y, half) <= 0.6
         and not inside_lesion(x, y)),
    ]
    for count, label, ok in wants:
        got, tries = 0, 0
        while got < count and tries < 50_000:
            tries += 1
            x = _on_grid(int(rng.integers(half, max(half + 1, w - half))), half)
            y = _on_grid(int(rng.integers(half, max(half + 1, h - half))), half)
            if ok(x, y):
                out.append((x, y, label))
                got += 1
        while got < count:  # tiny or tissue-poor slide: take any in-bounds centre
            out.append((int(rng.integers(half, max(half + 1, w - half))),
                        int(rng.integers(half, max(half + 1, h - half))), "normal"))
            got += 1
    return out


CENTRE_GRID = 4
"""coords.csv centres are multiples of this (level-0 px), so the 20x and 10x squares of the
default members start on whole pixels of levels 1 and 2 and are read natively."""


def _on_grid(v: int, low: int) -> int:
    """``v`` rounded down to a multiple of :data:`CENTRE_GRID`, not below ``low``."""
    g = v - v % CENTRE_GRID
    return g if g >= low else v


def _parse_size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    w, h = (int(v) for v in size)
    if w < 64 or h < 64:
        raise InputError(f"--size {w}x{h} is too small; give at least 64x64 level-0 px (e.g. 4096x3072)")
    return w, h


def synth_slides(
    out_dir: str | os.PathLike[str],
    *,
    n_slides: int = 2,
    size: int | tuple[int, int] = (4096, 3072),
    mpp: float = 0.243,
    seed: int = 0,
    odd_levels: bool = False,
    lesions: bool = True,
    n_coords: int = 16,
    fmt: str = "generic-jpeg",
    progress: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write ``n_slides`` synthetic CAMELYON-like slides, their lesion XML and ``coords.csv``.

    Args:
        out_dir: folder to write into (created). Files: ``slide_000.tif`` ...,
            ``slide_000.xml`` ... (ASAP XML, group ``Tumor``, only for slides with
            lesions), ``coords.csv``.
        n_slides: number of slides.
        size: level-0 ``(w, h)`` px, or one int for a square. 4096x3072 takes a few
            seconds; 8192x6144 about four times that.
        mpp: level-0 um/px written in the resolution tags (CAMELYON16 40x: 0.243).
        seed: the same seed gives byte-identical files.
        odd_levels: non-power-of-two downsamples (``w // 2 + 1`` per level).
        lesions: paint tumour regions and write their polygons.
        n_coords: patch centres PER SLIDE in ``coords.csv`` (see :func:`pick_coords`);
            0 writes a header-only file.
        fmt: file format, one of :data:`SLIDE_FORMATS` (:func:`write_pyramid_tiff`); the
            Aperio formats are written as ``slide_000.svs``.
        progress: called with each slide path once it is written (the CLI's bar).

    Returns:
        The slide paths, in order.

    Raises:
        InputError: bad options, or ``out_dir`` holds files synth did not write
            (another synth run's files are replaced, nothing else is touched).
    """
    w, h = _parse_size(size)
    if n_slides < 1:
        raise InputError(f"--n-slides {n_slides}: give at least 1")
    if not 0.01 <= mpp <= 100:
        raise InputError(f"--mpp {mpp}: give the level-0 um/px, e.g. 0.243 (40x) or 0.486 (20x)")
    if n_coords < 0:
        raise InputError(f"--n-coords {n_coords}: give 0 or more centres per slide")
    if fmt not in SLIDE_FORMATS:
        raise InputError(f"--format {fmt}: choose {', '.join(SLIDE_FORMATS)}")
    suffix = ".tif" if fmt == "generic-jpeg" else ".svs"
    out = Path(out_dir)
    others = sorted(p.name for p in out.iterdir() if not SYNTH_FILES.fullmatch(p.name)) if out.is_dir() else []
    if others:
        raise InputError(
            f"--out {out} already holds files synth did not write ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}); give a new or empty folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("slide_*"):  # an earlier synth run's slides of the other format
        if SYNTH_FILES.fullmatch(stale.name) and stale.suffix in (".tif", ".svs") and stale.suffix != suffix:
            stale.unlink()
    from mlcamsr.annotations import write_asap_xml

    paths: list[Path] = []
    rows: list[tuple[str, int, int, str]] = []
    for i in range(n_slides):
        slide = render_slide((w, h), mpp=mpp, seed=seed, index=i, lesions=lesions)
        path = write_pyramid_tiff(out / f"slide_{i:03d}{suffix}",
                                  build_levels(slide.image, odd_levels=odd_levels), mpp=mpp, fmt=fmt)
        xml = out / f"slide_{i:03d}.xml"
        if slide.lesions:
            write_asap_xml(xml, [("Tumor", p) for p in slide.lesions])
        elif xml.exists():
            xml.unlink()
        for x, y, label in pick_coords(slide, n_coords, seed=seed, index=i):
            rows.append((path.name, x, y, label))
        paths.append(path)
        del slide
        if progress is not None:
            progress(path)
    tmp = out / "coords.csv.part"
    with open(tmp, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["slide", "x", "y", "label"] if lesions else ["slide", "x", "y"])
        for r in rows:
            wr.writerow(r if lesions else r[:3])
    os.replace(tmp, out / "coords.csv")
    return paths
