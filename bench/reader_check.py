"""Cost of the reader check next to what CAMELYON users run: an extract of 3 patches per slide.

On synthetic 40x slides (``mlcamsr.synth``: the CAMELYON16-like generic JPEG TIFF, and the
Aperio JPEG 2000 YCbCr SVS on which the readers disagree), with 3 patch centres per slide
(synth's, 1024 px at 40x + 20x 512 px + 10x 256 px), measures side by side, alternating
for ``--rounds`` rounds and taking each one's median, wall and CPU (user + sys of this
process, all threads) seconds per slide:

(x0) ``extract(..., reader_check="off")``, serial (``workers=0``);
(x1) the same with ``reader_check="on"`` (the default);
(c)  the check alone as extract runs it: ``check_readers`` at levels 0, 1, 2 on the
     slide's patch centres, with a fresh reader of the faster backend opened outside the
     timing (extract opens it anyway for the slide's geometry);
(c4) the earlier sample, for comparison: 4 regions per level placed on the coarsest
     level's tissue, both readers opened by the check.

Prints the ratios (x1 - x0) / x0, c / x0 and c4 / x0 (CPU and wall), plus the machine
load (the 2 cores here are shared). Usage::

    OMP_NUM_THREADS=1 python bench/reader_check.py [--size 8192x6144] [--slides 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mlcamsr.extract import extract
from mlcamsr.reader_check import check_readers, faster_backend
from mlcamsr.slides import open_slide
from mlcamsr.synth import synth_slides


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _time(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, cpu) seconds of ``fn()``."""
    t0, c0 = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - t0, _cpu() - c0


def _med(xs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(w for w, _ in xs), statistics.median(c for _, c in xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="8192x6144")
    ap.add_argument("--slides", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--formats", default="generic-jpeg,aperio-j2k-ycbcr")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="bench_rc_"))
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; slides {a.size}, "
          f"{a.slides} per format, 3 patches per slide (1024/512/256 px), {a.rounds} rounds; "
          "seconds per slide, median, wall / CPU")
    try:
        for fmt in a.formats.split(","):
            d = tmp / fmt
            synth_slides(d, n_slides=a.slides, size=(w, h), seed=0, n_coords=3, fmt=fmt)
            slides = sorted(p for p in d.iterdir() if p.suffix in (".tif", ".svs"))
            coords = pd.read_csv(d / "coords.csv")
            centres = {p.name: list(zip(coords.x[coords.slide == p.name], coords.y[coords.slide == p.name],
                                        strict=True)) for p in slides}
            n = len(slides)
            x0: list[tuple[float, float]] = []
            x1: list[tuple[float, float]] = []
            c: list[tuple[float, float]] = []
            c4: list[tuple[float, float]] = []
            for r in range(a.rounds):
                for mode, acc in (("off", x0), ("on", x1)):
                    out = tmp / f"{fmt}-{mode}-{r}.zarr"
                    wall, cpu = _time(lambda d=d, out=out, mode=mode: extract(
                        d, d / "coords.csv", out, workers=0, progress=False, reader_check=mode,
                        hash_slides=False))
                    acc.append((wall / n, cpu / n))
                    shutil.rmtree(out)
                # fresh readers each round, opened outside the timing (extract opens its own
                # for the geometry): their lazy loads (tile offsets) are part of the check
                held = {p.name: open_slide(p, backend=faster_backend(p)) for p in slides}
                wall, cpu = _time(lambda slides=slides, centres=centres, held=held: [
                    check_readers(p, [0, 1, 2], centres=centres[p.name], opened=held[p.name]) for p in slides])
                c.append((wall / n, cpu / n))
                for r in held.values():
                    r.close()
                wall, cpu = _time(lambda slides=slides: [check_readers(p, [0, 1, 2], regions=4) for p in slides])
                c4.append((wall / n, cpu / n))
            (w0, k0), (w1, k1), (wc, kc), (w4, k4) = _med(x0), _med(x1), _med(c), _med(c4)
            status = check_readers(slides[0], [0, 1, 2], centres=centres[slides[0].name]).status
            print(f"{fmt} (check: {status})")
            print(f"  extract, check off     {w0:.3f} / {k0:.3f}")
            print(f"  extract, check on      {w1:.3f} / {k1:.3f}   (+{(w1 - w0) / w0:.0%} wall, "
                  f"+{(k1 - k0) / k0:.0%} CPU)")
            print(f"  check alone (extract's) {wc:.3f} / {kc:.3f}   = {wc / w0:.0%} wall, {kc / k0:.0%} CPU "
                  "of the extract")
            print(f"  earlier check (4/level) {w4:.3f} / {k4:.3f}   = {w4 / w0:.0%} wall, {k4 / k0:.0%} CPU")
        print(f"load after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
