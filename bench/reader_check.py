"""Cost of the reader check next to what CAMELYON users run: an extract of 3 patches per slide.

On synthetic 40x slides (``mlcamsr.synth``: the CAMELYON16-like generic JPEG TIFF, and the
Aperio JPEG 2000 YCbCr SVS on which the readers disagree), with 3 patch centres per slide
(synth's, 1024 px at 40x + 20x 512 px + 10x 256 px), measures side by side, alternating
for ``--rounds`` rounds and taking each one's median:

(x0) ``extract(..., reader_check="off")``, serial (``workers=0``), per slide;
(x1) the same with ``reader_check="on"`` (the default);
(c)  ``check_readers`` alone at the levels that extract reads (0, 1, 2).

Prints seconds per slide and the ratios (x1 - x0) / x0 and (c) / (x0), plus the machine
load (the 2 cores here are shared). Usage::

    OMP_NUM_THREADS=1 python bench/reader_check.py [--size 8192x6144] [--slides 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from mlcamsr.extract import extract
from mlcamsr.reader_check import check_readers
from mlcamsr.synth import synth_slides


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


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
          f"{a.slides} per format, 3 patches per slide (1024/512/256 px), {a.rounds} rounds")
    try:
        for fmt in a.formats.split(","):
            d = tmp / fmt
            synth_slides(d, n_slides=a.slides, size=(w, h), seed=0, n_coords=3, fmt=fmt)
            slides = sorted(p for p in d.iterdir() if p.suffix in (".tif", ".svs"))
            x0, x1, c = [], [], []
            for r in range(a.rounds):
                for mode, acc in (("off", x0), ("on", x1)):
                    out = tmp / f"{fmt}-{mode}-{r}.zarr"
                    acc.append(_time(lambda d=d, out=out, mode=mode: extract(
                        d, d / "coords.csv", out, workers=0, progress=False, reader_check=mode,
                        hash_slides=False)) / len(slides))
                    shutil.rmtree(out)
                c.append(sum(_time(lambda p=p: check_readers(p, [0, 1, 2])) for p in slides) / len(slides))
            m0, m1, mc = statistics.median(x0), statistics.median(x1), statistics.median(c)
            status = check_readers(slides[0], [0, 1, 2]).status
            print(f"{fmt:18s} check {status:8s}: extract off {m0:.3f} s/slide, on {m1:.3f} s/slide "
                  f"(+{(m1 - m0) / m0:.0%}); check alone {mc:.3f} s/slide = {mc / m0:.0%} of the extract")
        print(f"load after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
