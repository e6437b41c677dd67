"""Real-texture pyramids for the benchmarks: held-out H&E images tiled into a 40x slide.

The images are the real H&E patches and the CMU-1 region under ``../shared/data``
(never copied into the project; read in place). A level-0 mosaic of ``mosaic`` px is
filled with 512-px blocks, each a random crop (random flip and quarter turn) of one
source image, mirror-tiled when the source is smaller than a block; the levels are
exact halves (2x2 box means), JPEG q90 in 512-px tiles, resolution tags of 0.243 um/px
at level 0 (CAMELYON16 40x), the layout of ``mlcamsr.synth``.

A slide larger than the mosaic repeats it periodically: the mosaic's tiles are
JPEG-encoded once (by tifffile itself, so the bytes are what tifffile writes) and the
large file is written from those precompressed tiles. The repeat keeps the pyramid
exact (level k of the slide is level k of the mosaic repeated) and makes a 2-4 GB file
a matter of disk speed, not of encoding time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TILE = 512
QUALITY = 90
MPP = 0.243

#: H&E images of ../shared/data (the IHC image is left out: not H&E)
HE_SOURCES = (
    "wsi/CMU-1-Small-Region.svs",
    "patches/tiatoolbox/TCGA-HE-7130-01Z-00-DX1.png",
    "patches/openslide-crops/OS-1-detail.ome.tif",
    "patches/histolab/high-nuclei-score-level0.png",
    "patches/histolab/tcga-lung-rgb.png",
    "patches/histolab/tissue-level0-4302-10273-4814-10785.png",
    "patches/histolab/tissue-level0-7352-11762-7864-12274.png",
    "patches/kather100k/kather1.tif",
    "patches/kather100k/kather2.tif",
    "patches/openslide-crops/CMU-1-Small-Region_test_tile.png",
    "patches/tiatoolbox/source_image.png",
)


def _load(rel: str) -> np.ndarray:
    p = DATA / rel
    if p.suffix == ".svs":
        import tiffslide

        with tiffslide.TiffSlide(p) as s:
            return np.asarray(s.read_region((0, 0), 0, s.dimensions, as_array=True))[..., :3]
    if p.suffix == ".tif":
        import tifffile

        return np.asarray(tifffile.imread(p))[..., :3]
    from PIL import Image

    with Image.open(p) as im:
        return np.asarray(im.convert("RGB"))


def sources() -> list[np.ndarray]:
    """The H&E source images as (h, w, 3) uint8, each at least one block on a side."""
    out = []
    for rel in HE_SOURCES:
        img = _load(rel)
        while img.shape[0] < TILE or img.shape[1] < TILE:  # mirror-tile small patches
            img = np.concatenate([img, img[::-1]], axis=0) if img.shape[0] < TILE else img
            img = np.concatenate([img, img[:, ::-1]], axis=1) if img.shape[1] < TILE else img
        out.append(np.ascontiguousarray(img))
    return out


def mosaic(side: int, seed: int = 0) -> np.ndarray:
    """A ``side`` x ``side`` level-0 mosaic of random 512-px H&E crops (uint8 RGB)."""
    if side % (TILE * 8):
        raise ValueError(f"mosaic side {side} must be a multiple of {TILE * 8} (exact halves to level 3)")
    rng = np.random.default_rng(seed)
    src = sources()
    out = np.empty((side, side, 3), np.uint8)
    for by in range(side // TILE):
        for bx in range(side // TILE):
            img = src[rng.integers(len(src))]
            y = rng.integers(img.shape[0] - TILE + 1)
            x = rng.integers(img.shape[1] - TILE + 1)
            blk = np.rot90(img[y : y + TILE, x : x + TILE], rng.integers(4))
            if rng.integers(2):
                blk = blk[:, ::-1]
            out[by * TILE : (by + 1) * TILE, bx * TILE : (bx + 1) * TILE] = blk
    return out


def halves(img: np.ndarray, n_levels: int) -> list[np.ndarray]:
    """``img`` and its exact 2x2 box-mean halves (``n_levels`` arrays)."""
    levels = [img]
    for _ in range(n_levels - 1):
        a = levels[-1].astype(np.uint16)
        s = a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]
        levels.append(((s + 2) // 4).astype(np.uint8))
    return levels


def _encoded_tiles(levels: list[np.ndarray]) -> list[list[list[bytes]]]:
    """JPEG bytes of every tile of every level, as tifffile writes them: ``[level][ty][tx]``."""
    import tifffile

    fd, name = tempfile.mkstemp(suffix=".tif")
    os.close(fd)
    try:
        with tifffile.TiffWriter(name) as tw:
            for lv in levels:
                tw.write(lv, photometric="rgb", tile=(TILE, TILE), compression="jpeg",
                         compressionargs={"level": QUALITY}, metadata=None, maxworkers=1)
        out = []
        with tifffile.TiffFile(name) as tf, open(name, "rb") as fh:
            for page, lv in zip(tf.pages, levels):
                nty, ntx = -(-lv.shape[0] // TILE), -(-lv.shape[1] // TILE)
                tiles = []
                for off, cnt in zip(page.dataoffsets, page.databytecounts):
                    fh.seek(off)
                    tiles.append(fh.read(cnt))
                out.append([tiles[r * ntx : (r + 1) * ntx] for r in range(nty)])
        return out
    finally:
        os.unlink(name)


def write_slide(path: str | os.PathLike[str], side: int, *, mosaic_side: int = 8192, seed: int = 0) -> Path:
    """Write a ``side`` x ``side`` real-texture pyramid (levels down to <= 1024 px).

    ``side`` must be a multiple of ``mosaic_side``; the mosaic repeats. Returns the path.
    """
    import tifffile

    if side % mosaic_side:
        raise ValueError(f"slide side {side} must be a multiple of the mosaic side {mosaic_side}")
    n_levels = 1
    while side >> n_levels >= 1024 and (mosaic_side >> n_levels) % TILE == 0:
        n_levels += 1
    levels = halves(mosaic(mosaic_side, seed), n_levels)
    enc = _encoded_tiles(levels)
    del levels
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    big = side * side * 3 * 4 // 3 > 3_500_000_000
    with tifffile.TiffWriter(tmp, bigtiff=big) as tw:
        for k, tiles in enumerate(enc):
            sk = side >> k
            nt = sk // TILE
            period = len(tiles)

            def it(tiles: list[list[bytes]] = tiles, nt: int = nt, period: int = period):
                for ty in range(nt):
                    for tx in range(nt):
                        yield tiles[ty % period][tx % period]

            res = 1e4 / (MPP * (1 << k))  # px per cm of this level
            tw.write(it(), shape=(sk, sk, 3), dtype=np.uint8, photometric="rgb", tile=(TILE, TILE),
                     compression="jpeg", resolution=(res, res), resolutionunit="CENTIMETER",
                     subfiletype=0 if k == 0 else 1, metadata=None, software="bench.texture")
    os.replace(tmp, path)
    return path


def sparse_centres(side: int, n: int, size: int = 1024, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` centres on the 4-px grid spread uniformly over the slide (squares of ``size`` inside)."""
    rng = np.random.default_rng(seed)
    lo, hi = size // 2, side - size // 2
    xs = rng.integers(lo // 4, hi // 4 + 1, n) * 4
    ys = rng.integers(lo // 4, hi // 4 + 1, n) * 4
    return [(int(x), int(y)) for x, y in zip(xs, ys)]


def touched_tile_bytes(path: str | os.PathLike[str], reads: list[tuple[int, tuple[int, int, int, int]]]) -> int:
    """Compressed bytes of the distinct tiles that the level windows ``(level, (x, y, w, h))`` touch."""
    import tifffile

    seen: set[tuple[int, int]] = set()
    total = 0
    with tifffile.TiffFile(path) as tf:
        pages = [p for p in tf.pages if p.is_tiled]
        counts = [np.asarray(p.databytecounts) for p in pages]
        ntx = [-(-p.imagewidth // p.tilewidth) for p in pages]
        tw = [p.tilewidth for p in pages]
        th = [p.tilelength for p in pages]
    for level, (x, y, w, h) in reads:
        for ty in range(max(y, 0) // th[level], (y + h - 1) // th[level] + 1):
            for tx in range(max(x, 0) // tw[level], (x + w - 1) // tw[level] + 1):
                i = ty * ntx[level] + tx
                if (level, i) not in seen:
                    seen.add((level, i))
                    total += int(counts[level][i])
    return total
