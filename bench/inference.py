"""What CPU inference costs: ``cwtnet-sr`` seconds per LR tile, side by side, one run.

For each model (untrained weights: the cost does not depend on them) and LR tile side,
times ``super_resolve_stream`` (the loop behind ``cwtnet-sr``) on real H&E texture
(``../shared/data``, the TCGA-HE-7130 patch) over ``--n`` tiles, after one warm-up tile,
and prints wall and CPU seconds per tile (CPU / threads = the time on idle cores; the
cores here are shared) and the projection for a 4096 x 4096 px LR region
(``cwtnet-sr --region ... 4096,4096``) with the default overlap of 16 LR px.
Models: CWT-Net at the demo size (4 CWTBs x 32 channels) as ``cwtnet-train`` makes it
(window 2, detail bands, TTSR order) and in the paper's reading (global search), a
1-CWTB 16-channel one and the paper's (12 x 64; ``--models paper``, slow), both in the
paper's reading, EDSR-baseline for comparison.

``--eval-image 1024`` instead times what ``cwtnet-eval`` does to one 1024 x 1024
ground-truth image at x2 (LR 512, ``cwtnet.evaluate.model_sr``) with the demo-size CWT-Net
as ``cwtnet-train`` makes it (detail bands, TTSR order; search window ``--search-window``,
default 2 as trained), per mode (``sisr``: the WR module predicts the WT input; ``reference``: the DWT
of the reference; ``--mode both`` runs the network once per mode) and per LR tile side
(``--eval-tiles``, ``0`` = untiled): wall and CPU seconds per image, the FLOPs of the
forward (``torch.utils.flop_counter``: convolutions and matmuls, the search's GEMMs
included; elementwise work, pooling and gathers are not counted), achieved GFLOP/s and
the peak RSS. Usage::

    python bench/inference.py [--tiles 64,128] [--n 2] [--threads 2] [--models demo,small,edsr,paper]
    python bench/inference.py --eval-image 1024 [--eval-tiles 128,256,0] [--modes sisr,reference]
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


def eval_image(img: np.ndarray, side: int, tiles: list[int], modes: list[str], window: int,
               threads: int) -> list[dict[str, float]]:
    """Per (mode, LR tile): seconds (wall, CPU) for one ``side``-px GT image at x2 with the
    demo-size CWT-Net, its forward FLOPs and GFLOP/s; the ``tile`` value 0 = untiled."""
    import resource

    from torch.utils.flop_counter import FlopCounterMode

    from cwtnet.config import TrainConfig
    from cwtnet.evaluate import model_sr
    from cwtnet.model import build_model

    # the demo-size network as cwtnet-train makes it (detail bands, TTSR order), window W
    opts = TrainConfig(blocks=4, channels=32, search_window=window).validate().network_options()
    model = build_model("cwtnet", 2, **opts).eval()
    reps = -(-side // min(img.shape[:2]))
    gt_u8 = np.tile(img, (reps, reps, 1))[:side, :side]
    gt = torch.from_numpy(np.ascontiguousarray(gt_u8)).permute(2, 0, 1)[None].float() / 255
    lr = torch.nn.functional.interpolate(gt, scale_factor=0.5, mode="bicubic", antialias=True).clamp(0, 1)
    rows = []
    with torch.inference_mode():
        model(lr[:, :, :64, :64], None)  # warm-up
        for mode in modes:
            ref = gt if mode == "reference" else None
            for tile in tiles:
                t = None if tile <= 0 else tile
                with FlopCounterMode(display=False) as fc:  # one extra pass, not timed
                    model_sr(model, lr[:, :, :128, :128], None if ref is None else ref[:, :, :256, :256],
                             scale=2, mode=mode, tile=None)
                # FLOPs scale with the area the network runs on (tiles overlap: count it)
                from cwtnet.infer import tile_starts
                covered = (side // 2) ** 2 if t is None else (len(tile_starts(side // 2, t, 16)) * t) ** 2
                flops = fc.get_total_flops() * covered / 128**2
                t0, c0 = time.perf_counter(), time.process_time()
                model_sr(model, lr, ref, scale=2, mode=mode, tile=t, overlap=16)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                row = dict(mode=mode, tile=tile, wall_s=wall, cpu_s=cpu, gflop=flops / 1e9,
                           gflops_wall=flops / 1e9 / wall, gflops_core=flops / 1e9 / cpu, peak_rss_gb=rss,
                           load=os.getloadavg()[0])
                rows.append(row)
                print(f"{side}-px GT at x2, mode {mode:<9} LR tile {('untiled' if t is None else t)!s:>7}: "
                      f"{wall:6.1f} s wall, {cpu:6.1f} CPU s (idle-core projection {cpu / threads:5.1f} s); "
                      f"{flops / 1e9:6.0f} GFLOP (conv + matmul) -> {flops / 1e9 / cpu:5.1f} GFLOP/s per "
                      f"CPU s; peak RSS {rss:.1f} GB; load {os.getloadavg()[0]:.1f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", default="64,128", help="LR tile sides")
    ap.add_argument("--n", type=int, default=2, help="tiles timed per model and side")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--models", default="demo,small,edsr",
                    help="comma list of demo (CWT-Net 4 x 32 as cwtnet-train makes it: window 2), "
                         "demo-global (the same size, the paper's reading: global search), small "
                         "(1 x 16, paper reading), edsr, paper (12 x 64, paper reading, slow)")
    ap.add_argument("--eval-image", type=int, default=0,
                    help="GT side (px) for the cwtnet-eval timing instead of the tile timing, e.g. 1024")
    ap.add_argument("--eval-tiles", default="128,256,0", help="LR tile sides of --eval-image (0 = untiled)")
    ap.add_argument("--modes", default="sisr,reference", help="modes of --eval-image")
    ap.add_argument("--search-window", type=int, default=2,
                    help="search window of --eval-image (LR px; cwtnet-train's default 2)")
    args = ap.parse_args()
    from PIL import Image

    from cwtnet.config import TrainConfig
    from cwtnet.infer import format_seconds, tile_starts
    from cwtnet.model import build_model

    def trained_default(blocks: int, channels: int):  # as cwtnet-train makes it (window 2)
        return lambda: build_model("cwtnet", 2, **TrainConfig(blocks=blocks, channels=channels)
                                   .validate().network_options())

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    img = np.asarray(Image.open(REAL_PNG).convert("RGB"))
    choices = {
        "demo": ("CWT-Net 4 x 32 (demo)", trained_default(4, 32)),
        "demo-global": ("CWT-Net 4 x 32, paper reading", lambda: build_model("cwtnet", 2, n_cwtb=4, num_feat=32)),
        "small": ("CWT-Net 1 x 16", lambda: build_model("cwtnet", 2, n_cwtb=1, num_feat=16)),
        "edsr": ("EDSR-baseline (16 x 64)", lambda: build_model("edsr", 2)),
        "paper": ("CWT-Net 12 x 64 (paper)", lambda: build_model("cwtnet", 2)),
    }
    if args.eval_image:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
              "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
        eval_image(img, args.eval_image, [int(t) for t in args.eval_tiles.split(",")],
                   args.modes.split(","), args.search_window, args.threads)
        print("load average after " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
        return
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
