"""What CPU inference costs: ``cwtnet-sr`` seconds per LR tile, side by side, one run.

For each model (untrained weights: the cost does not depend on them) and LR tile side,
times ``super_resolve_stream`` (the loop behind ``cwtnet-sr``) on real H&E texture
(``../shared/data``, the TCGA-HE-7130 patch) over ``--n`` tiles, after one warm-up tile,
and prints wall and CPU seconds per tile (CPU / threads = the time on idle cores; the
cores here are shared) and the projection for a 4096 x 4096 px LR region
(``cwtnet-sr --region ... 4096,4096``) with the default overlap of 16 LR px.
Models: CWT-Net at the demo size (4 CWTBs x 32 channels), a 1-CWTB 16-channel one and
the paper's (12 x 64; ``--models paper``, slow), EDSR-baseline for comparison. Usage::

    python bench/inference.py [--tiles 64,128] [--n 2] [--threads 2] [--models demo,small,edsr,paper]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

REAL_PNG = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "patches" / "tiatoolbox" / "TCGA-HE-7130-01Z-00-DX1.png"


def per_tile(model: torch.nn.Module, img: np.ndarray, tile: int, n: int) -> tuple[float, float]:
    """(wall s, CPU s) per ``tile``-px LR tile of ``super_resolve_stream`` over ``n`` tiles in a
    row (overlap 16), after one warm-up tile."""
    from cwtnet.infer import super_resolve_stream

    def read(x: int, y: int, w: int, h: int) -> np.ndarray:
        return img[y : y + h, x : x + w]

    with torch.no_grad():
        model(torch.rand(1, 3, tile, tile), None)
    width = tile + (n - 1) * (tile - 16)
    t0, c0 = time.perf_counter(), time.process_time()
    super_resolve_stream(model, read, width, tile, scale=2, tile=tile, overlap=16, sink=lambda y, r: None)
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", default="64,128", help="LR tile sides")
    ap.add_argument("--n", type=int, default=2, help="tiles timed per model and side")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--models", default="demo,small,edsr",
                    help="comma list of demo (CWT-Net 4 x 32), small (1 x 16), edsr, paper (12 x 64, slow)")
    args = ap.parse_args()
    from PIL import Image

    from cwtnet.infer import format_seconds, tile_starts
    from cwtnet.model import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    img = np.asarray(Image.open(REAL_PNG).convert("RGB"))
    choices = {
        "demo": ("CWT-Net 4 x 32 (demo)", lambda: build_model("cwtnet", 2, n_cwtb=4, num_feat=32)),
        "small": ("CWT-Net 1 x 16", lambda: build_model("cwtnet", 2, n_cwtb=1, num_feat=16)),
        "edsr": ("EDSR-baseline (16 x 64)", lambda: build_model("edsr", 2)),
        "paper": ("CWT-Net 12 x 64 (paper)", lambda: build_model("cwtnet", 2)),
    }
    models = {choices[k][0]: choices[k][1]() for k in args.models.split(",")}
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, load average "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    for tile in (int(t) for t in args.tiles.split(",")):
        n_region = len(tile_starts(4096, tile, 16)) ** 2
        for name, m in models.items():
            s, cpu = per_tile(m.eval(), img, tile, args.n)
            idle = cpu / args.threads  # what the same work takes on idle cores
            print(f"tile {tile:>4} LR px, {name:<24}: {s:7.3f} s/tile wall, {cpu:7.3f} CPU s/tile "
                  f"(idle-core projection {idle:.3f} s) -> 4096^2 LR region ({n_region} tiles): "
                  f"{format_seconds(s * n_region)} here, {format_seconds(idle * n_region)} on idle cores",
                  flush=True)
    print("load average after " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
