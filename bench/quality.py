"""Quality at a fixed budget: bicubic, EDSR-baseline and CWT-Net (reference and SISR), x2/x4,
and with ``--archs`` the other learned methods of Table I (SRCNN, SRGAN, RCAN, MWCNN, SWD-Net).

Same data and the same wall-clock training budget for every learned model, on

(a) the demo store (``cwtnet.demo.build_demo_store``: 3 synthetic CAMELYON-like slides,
    256-px patches at 40x, split 5:1 by slide), and
(b) a store built from the real images in ``../shared/data``: CMU-1-Small-Region.svs
    read as a 20x slide (its own mpp, 0.499 um/px) and the TCGA / tiatoolbox PNGs
    (>= 512 px) wrapped as small pyramidal TIFF slides by :func:`wrap_png_as_slide` with
    a stated mpp of 0.5 um/px (20x; their real mpp is unrecorded). Members 20x 256 px,
    10x 128 px, 5x 64 px; centres on a grid; the paper's random 5:1 split by patch.

Prints a Table-I-style table with steps and wall time per model and writes
``OUT/quality.json`` and ``OUT/quality.md``.

CPU (this machine)::

    python bench/quality.py --minutes 1.5 --scales 2,4 --max-images 8

Table I's learned methods at equal steps, two seeds (CPU, small configurations ``SMALL``)::

    python bench/quality.py --stores real --scales 2 --minutes 1000 --steps 120 --seeds 0,1 \
        --archs srcnn,srgan,edsr,rcan,mwcnn,swdnet,cwtnet --patch 24 --max-images 12

GPU (paper configuration: 12 CWTBs x 64, EDSR 16 x 64, batch 16, LR patch 64, bf16)::

    python bench/quality.py --device cuda --minutes 10 --scales 2 --stores real --paper

The GPU path also records samples/s and peak CUDA memory of each training run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
PNG_MPP = 0.5  # stated mpp of the wrapped PNG tiles (their real mpp is unrecorded)


def wrap_png_as_slide(png: Path, out: Path, *, mpp: float = PNG_MPP) -> Path:
    """Write an RGB(A) PNG as a small tiled pyramidal TIFF slide with resolution tags ``mpp``."""
    from PIL import Image

    from mlcamsr.synth import build_levels, write_pyramid_tiff

    with Image.open(png) as im:
        img = np.asarray(im.convert("RGB"))
    return write_pyramid_tiff(out, build_levels(img), mpp=mpp)


def build_real_store(out: Path, *, size: int = 256, workers: int = 2, seed: int = 0) -> Path:
    """Store (b): CMU-1-Small-Region.svs (20x) + wrapped PNGs, members 20x/10x/5x, split 5:1 by patch."""
    import csv

    from mlcamsr.extract import extract
    from mlcamsr.pyramid import pyramid
    from mlcamsr.slides import open_slide
    from mlcamsr.split import split

    store = out / "real.zarr"
    if (store / "zarr.json").exists():
        from mlcamsr.store import open_store

        t = open_store(store).table
        if "split" in t.columns and (t["split"].astype(str) == "test").any():
            return store
    slides = out / "real_slides"
    slides.mkdir(parents=True, exist_ok=True)
    svs = DATA / "wsi" / "CMU-1-Small-Region.svs"
    link = slides / svs.name
    if not link.exists():
        os.symlink(svs, link)
    pngs = sorted((DATA / "patches" / "histolab").glob("*.png")) + [
        DATA / "patches" / "tiatoolbox" / "TCGA-HE-7130-01Z-00-DX1.png"]
    names = [link]
    for p in pngs:
        t = slides / (p.stem + ".tif")
        if not t.exists():
            wrap_png_as_slide(p, t)
        names.append(t)
    rows = []
    for path in names:
        with open_slide(path) as s:
            w, h = s.level_dimensions[0]
            k = 0.499 / (s.mpp[0] if s.mpp else PNG_MPP)  # level-0 px per 20x px
        half, step = int(np.ceil(size * k / 2)), int(np.ceil(size * k))
        for cy in range(half, h - half + 1, step):
            for cx in range(half, w - half + 1, step):
                rows.append((path.name, cx, cy))
    coords = slides / "coords.csv"
    with open(coords, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["slide", "x", "y"])
        wr.writerows(rows)
    extract(slides, coords, store, size=size, base_mpp=0.499, base_mag=20, scales=(1, 2, 4),
            workers=workers, progress=False, min_tissue=0.3, rgb_tol=0.45)
    pyramid(store, workers=0, progress=False)
    split(store, ratio="5:1", seed=seed, by="patch", overwrite=True)
    return store


SMALL: dict[str, dict[str, Any]] = {
    "srcnn": {},
    "srgan": {"adv_weight": 1e-3},  # SRGAN: without --vgg-weights its content loss is the pixel loss
    "rcan": {"blocks": 4, "model_options": {"num_block": 4}},  # 4 groups x 4 RCABs x 64
    "mwcnn": {"model_options": {"channels": [80, 128, 128]}},  # half the paper's channels
    "swdnet": {},
}
"""CPU configurations of the other Table I methods (the paper's sizes where affordable)."""

LEARNED = ("srcnn", "srgan", "edsr", "rcan", "mwcnn", "swdnet", "cwtnet")
"""Table I's learned methods in the paper's order."""


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from cwtnet.checkpoint import save_model
    from cwtnet.config import TrainConfig
    from cwtnet.demo import build_demo_store
    from cwtnet.evaluate import evaluate
    from cwtnet.train import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stores: dict[str, Path] = {}
    t = time.perf_counter()
    if "demo" in args.stores:
        stores["demo (synthetic)"] = build_demo_store(out / "demo", log=lambda s: None)
    if "real" in args.stores:
        stores["real (CMU-1 + TCGA)"] = build_real_store(out, workers=args.workers)
    print(f"stores ready in {time.perf_counter() - t:.0f} s", flush=True)
    cuda = args.device == "cuda"
    if args.paper:
        models = {"cwtnet": dict(blocks=12, channels=64), "edsr": dict(blocks=16, channels=64)}
        models.update({a: {} for a in ("srcnn", "srgan", "rcan", "mwcnn", "swdnet")})  # paper defaults
        batch, patch = 16, 64
    else:
        models = {"cwtnet": dict(blocks=args.cwt_blocks, channels=args.cwt_channels),
                  "edsr": dict(blocks=16, channels=64), **SMALL}
        batch, patch = args.batch_size, args.patch
    models = {a: models[a] for a in args.archs}
    results: list[dict[str, Any]] = []
    for sname, store in stores.items():
        for scale in args.scales:
            p = min(patch, 256 // scale // 2) if not args.paper else patch
            bic_ck = save_model(_bicubic(scale), out / f"bicubic_x{scale}.pt", arch="bicubic", scale=scale)
            m = evaluate(str(store), bic_ck, out=out / "eval" / _slug(sname) / f"bicubic_x{scale}",
                         mode="sisr", device=args.device, max_images=args.max_images, pictures=1)
            results.append(_row(sname, "bicubic", scale, m, steps=0, wall=0.0))
            print(results[-1], flush=True)
            for arch, size, seed in [(a, sz, sd) for a, sz in models.items() for sd in args.seeds]:
                run_dir = out / "runs" / _slug(sname) / (f"{arch}_x{scale}" + (f"_s{seed}" if seed else ""))
                import shutil

                shutil.rmtree(run_dir, ignore_errors=True)
                cfg = TrainConfig(store=str(store), scale=scale, out=str(run_dir), arch=arch,
                                  steps=args.steps, minutes=args.minutes, batch_size=batch, patch=p,
                                  lr=args.lr, ema_decay=0.99, val_every=0, val_images=2,
                                  val_patch=p, ckpt_every=10**9, log_every=10, device=args.device,
                                  num_workers=args.num_workers if cuda else 0, progress=False,
                                  seed=seed, **size)
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                r = train(cfg)
                peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
                modes = ["reference", "sisr"] if arch == "cwtnet" else ["sisr"]
                for mode in modes:
                    m = evaluate(str(store), r.checkpoint, out=run_dir / f"eval_{mode}", mode=mode,
                                 device=args.device, max_images=args.max_images, pictures=1,
                                 tile=None if cuda else args.tile, overlap=8)
                    results.append(_row(sname, m["meta"]["label"], scale, m, steps=r.step,
                                        wall=r.wall_s, sps=r.samples_per_s, peak=peak))
                    results[-1].update(arch=arch, seed=seed, mode=mode)
                    if len(args.seeds) > 1:
                        results[-1]["method"] += f" seed {seed}"
                    print(results[-1], flush=True)
    return results


def _bicubic(scale: int) -> Any:
    from cwtnet.model import build_model

    return build_model("bicubic", scale)


def _slug(s: str) -> str:
    return s.split(" ")[0]


def _row(dataset: str, method: str, scale: int, m: dict[str, Any], *, steps: int, wall: float,
         sps: float | None = None, peak: float | None = None) -> dict[str, Any]:
    row = {"dataset": dataset, "method": method, "scale": scale, "psnr": m["model"]["psnr"],
           "ssim": m["model"]["ssim"], "psnr_y_crop": m["model"]["psnr_y_crop"],
           "ssim_y_crop": m["model"]["ssim_y_crop"], "n_images": m["meta"]["n_images"],
           "steps": steps, "wall_s": round(wall, 1)}
    if sps is not None:
        row["samples_per_s"] = round(sps, 2)
    if peak is not None:
        row["peak_gib"] = round(peak, 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out/quality")
    ap.add_argument("--stores", default="demo,real", help="demo, real or both (comma-separated)")
    ap.add_argument("--scales", default="2,4")
    ap.add_argument("--minutes", type=float, default=1.5, help="wall-clock training budget per model")
    ap.add_argument("--steps", type=int, default=10**6, help="step budget per model (the first reached stops)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--archs", default="cwtnet,edsr",
                    help=f"learned methods, comma-separated, from {','.join(LEARNED)} (Table I: all)")
    ap.add_argument("--seeds", default="0", help="training seeds, comma-separated (one run per seed)")
    ap.add_argument("--paper", action="store_true", help="paper config: 12x64 CWT-Net, batch 16, patch 64")
    ap.add_argument("--cwt-blocks", type=int, default=4)
    ap.add_argument("--cwt-channels", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--max-images", type=int, default=8)
    ap.add_argument("--tile", type=int, default=68, help="LR tile for CPU evaluation (CWT-Net attention cost)")
    ap.add_argument("--num-workers", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2, help="extraction processes")
    args = ap.parse_args()
    args.stores = [s.strip() for s in args.stores.split(",")]
    args.scales = [int(s) for s in args.scales.split(",")]
    args.archs = [a.strip() for a in args.archs.split(",")]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    unknown = sorted(set(args.archs) - set(LEARNED))
    if unknown:
        ap.error(f"--archs: unknown {', '.join(unknown)}; choose from {', '.join(LEARNED)}")
    import torch

    from cwtnet.report import table_i

    t0 = time.perf_counter()
    results = run(args)
    wall = time.perf_counter() - t0
    extra = ["steps", "wall_s"] + (["samples_per_s", "peak_gib"] if args.device == "cuda" else [])
    md = table_i(results, extra=extra)
    md_y = table_i(results, psnr_key="psnr_y_crop", ssim_key="ssim_y_crop", title="BasicSR Y, crop=scale")
    dev = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    head = (f"device: {dev}; budget {args.minutes} min per model; batch "
            f"{16 if args.paper else args.batch_size}; total wall {wall:.0f} s; "
            f"{results[0]['n_images'] if results else 0} test images per store")
    out = Path(args.out)
    (out / "quality.json").write_text(json.dumps({"args": vars(args), "results": results, "wall_s": wall},
                                                 indent=2, default=str))
    (out / "quality.md").write_text(head + "\n\n" + md + "\n\n" + md_y + "\n")
    print(head)
    print(md)
    print()
    print(md_y)


if __name__ == "__main__":
    main()
