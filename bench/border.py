"""Where the border error of a trained model comes from (issue 10 section 3).

For one or more checkpoints, scores the test split's whole patches and splits the
squared error by the HR pixel's distance to the image edge (bands of 0-1, 2-3, 4-7,
8-15 and >= 16 px), for the model and for bicubic on the same images, with and
without mirror-padding the LR input at evaluation (``cwtnet.evaluate.model_sr(pad=)``:
the convolutions' zero padding then falls on the discarded margin). Prints PSNR per
band, the authors' whole-image PSNR (no crop) and BasicSR's Y crop=scale PSNR, side by
side; writes ``OUT/border.json``.

    python bench/border.py --zarr bench_out/fid/real.zarr --checkpoint RUN/last.pt \\
        --pads 0,8 --max-images 6 --tile 64
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BANDS = ((0, 2), (2, 4), (4, 8), (8, 16), (16, 10**6))


def band_psnr(sr: np.ndarray, gt: np.ndarray) -> list[tuple[float, int]]:
    """(sum of squared error, pixel count) per distance band (8-bit RGB, HR px)."""
    h, w = gt.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.minimum(np.minimum(yy, h - 1 - yy), np.minimum(xx, w - 1 - xx))
    err = ((sr.astype(np.float64) - gt.astype(np.float64)) ** 2).mean(axis=2)
    return [(float(err[(dist >= a) & (dist < b)].sum()), int(((dist >= a) & (dist < b)).sum()))
            for a, b in BANDS]


def _psnr(sse: float, n: int) -> float:
    return float(10 * np.log10(255.0**2 / max(sse / max(n, 1), 1e-12)))


def main() -> None:
    import torch

    from cwtnet.checkpoint import load_checkpoint, load_model
    from cwtnet.evaluate import _u8, bicubic_up, figures, model_sr
    from mlcamsr.dataset import TripletDataset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zarr", required=True)
    ap.add_argument("--checkpoint", action="append", required=True)
    ap.add_argument("--pads", default="0,8", help="LR px of mirror padding to compare")
    ap.add_argument("--modes", default="sisr,reference")
    ap.add_argument("--max-images", type=int, default=6)
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--out", default="bench_out/border")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    pads = [int(p) for p in args.pads.split(",")]
    results = []
    for ck in args.checkpoint:
        meta = load_checkpoint(ck)
        scale, ref_source = int(meta["scale"]), str(meta["config"].get("ref_source", "real"))
        model, _ = load_model(ck)
        ds = TripletDataset(args.zarr, split="test", scale=scale, ref_source=ref_source,
                            augment=False, full=True)
        n = min(len(ds), args.max_images)
        modes = args.modes.split(",") if meta["arch"] == "cwtnet" else ["sisr"]
        rows = {}
        bic_acc = np.zeros((len(BANDS), 2))
        bic_fig = []
        for mode in modes:
            for pad in pads:
                acc = np.zeros((len(BANDS), 2))
                figs = []
                for i in range(n):
                    item = ds[i]
                    sr = _u8(model_sr(model, item["lr"][None], item["ref"][None], scale=scale,
                                      mode=mode, tile=args.tile, overlap=8, pad=pad))
                    gt = _u8(item["gt"])
                    acc += np.array(band_psnr(sr, gt))
                    figs.append(figures(sr, gt, scale))
                    if mode == modes[0] and pad == pads[0]:
                        bic = bicubic_up(_u8(item["lr"]), scale)
                        bic_acc += np.array(band_psnr(bic, gt))
                        bic_fig.append(figures(bic, gt, scale))
                rows[f"{mode} pad {pad}"] = {
                    "bands": [_psnr(*a) for a in acc],
                    "psnr": float(np.mean([f["psnr"] for f in figs])),
                    "psnr_y_crop": float(np.mean([f["psnr_y_crop"] for f in figs]))}
        rows["bicubic"] = {"bands": [_psnr(*a) for a in bic_acc],
                           "psnr": float(np.mean([f["psnr"] for f in bic_fig])),
                           "psnr_y_crop": float(np.mean([f["psnr_y_crop"] for f in bic_fig]))}
        head = " | ".join(f"{a}-{b - 1 if b < 10**6 else ''}px" for a, b in BANDS)
        print(f"\n{ck} ({meta['arch']} x{scale}, {n} test images, step {meta.get('step')})")
        print(f"| row | {head} | PSNR no crop | Y crop={scale} |")
        print("|---" * (len(BANDS) + 3) + "|")
        for name, r in rows.items():
            bands = " | ".join(f"{v:.2f}" for v in r["bands"])
            print(f"| {name} | {bands} | {r['psnr']:.3f} | {r['psnr_y_crop']:.3f} |")
        results.append({"checkpoint": ck, "n_images": n, "rows": rows})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "border.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
