"""The H&E stain check (``mlcamsr.qc.stain_fraction``) on every real image we have, and its cost.

Figures, per image, of what QC computes on a patch: the tissue fraction and the stain
fraction (the H&E-like share of the stained tissue pixels: optical density OD_B <
0.75 x OD_G), with the verdict at ``--min-stain`` (default: QC's, 0.6), for:

- every image in ../shared/data/patches (H&E, and the IHC image ``ihc/skimage_ihc.png``);
- ``--tile``-px tiles of level 0 of the two real H&E slides in ../shared/data/wsi and of
  the DICOM CMU-1 read by openslide (false colours: docs/slides.md), each tile kept when
  its tissue fraction passes QC's ``min_tissue`` (0.5), as extract's QC would see it;
- the same tiles of one ``mlcamsr synth`` slide (level 1; its texture must pass).

Then the cost: CPU ms per patch of each QC stage (tissue, stain, RGB mean, alignment of
the two coarser members) on a synthetic 1024/512/256-px triplet, measured side by side
(``--rounds`` rounds, median), with the load average (the machine is shared). Usage::

    OMP_NUM_THREADS=1 python bench/stain.py [--data ../shared/data] [--tile 512]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mlcamsr.qc import QCThresholds, align_psnr, stain_fraction, tissue_fraction
from mlcamsr.resize import imresize
from mlcamsr.slides import open_slide
from mlcamsr.synth import synth_slides

REPO = Path(__file__).resolve().parents[1]


def load_image(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a PNG or TIFF patch (tifffile for TIFF: PIL cannot read the OME one)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.ascontiguousarray(tifffile.imread(path)[..., :3])
    return np.asarray(Image.open(path).convert("RGB"))


def slide_tiles(path: Path, tile: int, level: int = 0, backend: str = "auto") -> list[tuple[str, np.ndarray]]:
    """Every ``tile``-px square of ``level`` whose tissue fraction passes QC's ``min_tissue``."""
    out = []
    th = QCThresholds()
    with open_slide(path, backend=backend, mpp=1.0) as s:
        w, h = s.level_dimensions[level]
        ds = s.level_downsamples[level][0]
        for y in range(0, h - tile + 1, tile):
            for x in range(0, w - tile + 1, tile):
                im = s.read_region((int(x * ds), int(y * ds)), level, (tile, tile))
                if tissue_fraction(im) >= th.min_tissue:
                    out.append((f"@{x},{y}", im))
    return out


def figures(groups: dict[str, list[tuple[str, np.ndarray]]], min_stain: float) -> None:
    print(f"{'image':58s} {'tissue':>6s} {'stain':>6s}  verdict (min_stain {min_stain:g})")
    for group, items in groups.items():
        vals = []
        for name, im in items:
            t, s = tissue_fraction(im), stain_fraction(im)
            vals.append(s)
            verdict = "kept" if not s < min_stain else "REJECTED (stain)"
            print(f"{group + name:58s} {t:6.3f} {s:6.3f}  {verdict}")
        v = np.asarray(vals, dtype=float)
        print(f"  -> {group}: {len(v)} image(s), stain fraction min {np.nanmin(v):.3f} max {np.nanmax(v):.3f}, "
              f"{int((v < min_stain).sum())} rejected\n")


def cost(rounds: int) -> None:
    """CPU ms per patch of each QC stage on a synthetic triplet (1024, 512, 256 px)."""
    with tempfile.TemporaryDirectory() as d:
        synth_slides(d, n_slides=1, size=(2048, 2048), seed=1, n_coords=1)
        with open_slide(Path(d) / "slide_000.tif") as s:
            fin = s.read_region((512, 512), 0, (1024, 1024))
    mid, coarse = imresize(fin, scale=0.5), imresize(fin, scale=0.25)
    stages = {
        "tissue_fraction (256 px)": lambda: tissue_fraction(coarse),
        "stain_fraction (256 px)": lambda: stain_fraction(coarse),
        "rgb mean (256 px)": lambda: coarse.reshape(-1, 3).mean(axis=0, dtype=np.float64),
        "alignment 20x + 10x": lambda: (align_psnr(fin, mid), align_psnr(fin, coarse)),
    }
    reps = 20
    got: dict[str, list[float]] = {k: [] for k in stages}
    for _ in range(rounds):
        for name, fn in stages.items():  # side by side, interleaved
            t0 = time.process_time()
            for _ in range(reps):
                fn()
            got[name].append((time.process_time() - t0) / reps * 1e3)
    print(f"QC cost per patch, CPU ms (median of {rounds} rounds x {reps}; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}):")
    base = statistics.median(got["tissue_fraction (256 px)"])
    for name, v in got.items():
        m = statistics.median(v)
        print(f"  {name:28s} {m:7.2f} ms  ({m / base:.2f}x tissue)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--tile", type=int, default=512, help="tile side in px of the slide tiles")
    ap.add_argument("--min-stain", type=float, default=QCThresholds.min_stain)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    data = Path(args.data)
    groups: dict[str, list[tuple[str, np.ndarray]]] = {}
    for p in sorted((data / "patches").glob("*/*")):
        groups.setdefault("patches/", []).append((str(p.relative_to(data / "patches")), load_image(p)))
    for name in ("CMU-1-Small-Region.svs", "TCGA-CR-7395-01A-01-TS1.svs"):
        groups[f"{name}"] = slide_tiles(data / "wsi" / name, args.tile)
    groups["dicom-CMU-1 (openslide)"] = slide_tiles(data / "wsi" / "dicom-CMU-1-Small-Region", args.tile,
                                                    backend="openslide")
    with tempfile.TemporaryDirectory() as d:
        synth_slides(d, n_slides=1, size=(4096, 3072), seed=0, n_coords=1)
        groups["synth slide_000.tif level 1"] = slide_tiles(Path(d) / "slide_000.tif", args.tile, level=1)
    figures(groups, args.min_stain)
    cost(args.rounds)


if __name__ == "__main__":
    main()
