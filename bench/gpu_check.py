"""One prepared CUDA check of the final code: correctness first, then a short timing.

Runs on a lent GPU machine (torch only; no slides or stores needed there):

1. ``search_transfer`` chunked == dense on CUDA in fp32 (same argmax, allclose T and S),
   and its bf16-autocast path gives finite output;
2. the paper-config CWT-Net (12 CWTBs x 64) and EDSR-baseline at x2: one training step
   (``forward_train`` + ``CWTLoss``, Adam) at batch 16, LR 64, in fp32 and
   bf16 autocast: finite loss, ms per step (median of the timed steps), peak memory;
3. SISR mode (no reference) of the same CWT-Net runs.

Prints one JSON object. Usage: ``python bench/gpu_check.py [--steps 3] [--device cuda]``
(``--device cpu --small`` is the smoke test used here before spending GPU time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cwtnet.losses import CWTLoss  # noqa: E402
from cwtnet.model import build_model  # noqa: E402
from cwtnet.model.attention import dense_search_transfer, search_transfer  # noqa: E402


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def check_search(dev: torch.device, b: int, c: int, hw: int) -> dict:
    g = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(b, c, hw, hw, generator=g).to(dev) for _ in range(3))
    t_d, s_d, h_d = dense_search_transfer(q, k, v, return_index=True)
    t_c, s_c, h_c = search_transfer(q, k, v, chunk_size=hw * hw // 5, return_index=True)
    out = {
        "size": [b, c, hw, hw],
        "argmax_equal": float((h_d == h_c).float().mean()),
        "t_max_abs_diff": float((t_d - t_c).abs().max()),
        "s_max_abs_diff": float((s_d - s_c).abs().max()),
    }
    if dev.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            t_b, s_b = search_transfer(q, k, v)
        out["bf16_finite"] = bool(torch.isfinite(t_b).all() and torch.isfinite(s_b).all())
    return out


def train_steps(arch: str, dev: torch.device, *, batch: int, lr_px: int, steps: int,
                bf16: bool, small: bool) -> dict:
    torch.manual_seed(0)
    opts = {"n_cwtb": 2, "num_feat": 16} if (small and arch == "cwtnet") else {}
    model = build_model(arch, 2, **opts).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = CWTLoss()  # a plain tensor output (EDSR) gets L_SR = L1 + 0.2 (1 - SSIM) alone
    lr = torch.rand(batch, 3, lr_px, lr_px, device=dev)
    gt = torch.rand(batch, 3, 2 * lr_px, 2 * lr_px, device=dev)
    ref = gt  # x2: I'_GT is the finest member itself
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for i in range(steps + 1):
        _sync(dev)
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = model.forward_train(lr, ref) if arch == "cwtnet" else model(lr)
            total, _ = loss_fn(out, gt)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        _sync(dev)
        if i:  # the first step warms up kernels and the allocator
            times.append(time.perf_counter() - t0)
        losses.append(float(total.detach()))
    res = {
        "arch": arch, "dtype": "bf16" if bf16 else "fp32", "batch": batch, "lr_px": lr_px,
        "ms_per_step": round(1000 * sorted(times)[len(times) // 2], 1),
        "samples_per_s": round(batch / sorted(times)[len(times) // 2], 1),
        "loss_finite": all(map(lambda x: x == x and abs(x) != float("inf"), losses)),
    }
    if dev.type == "cuda":
        res["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    if arch == "cwtnet":
        model.eval()
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            sr = model(lr[:2], ref=None)
        res["sisr_shape"] = list(sr.shape)
        res["sisr_finite"] = bool(torch.isfinite(sr).all())
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="tiny sizes (CPU smoke test)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    report: dict = {"torch": torch.__version__, "device": str(dev)}
    if dev.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(0)
    batch, lr_px = (2, 16) if args.small else (16, 64)
    report["search"] = [check_search(dev, 2 if args.small else 4, 16 if args.small else 64, hw)
                        for hw in ((12, 9) if args.small else (48, 64))]
    report["steps"] = []
    for arch in ("cwtnet", "edsr"):
        for bf16 in ((False,) if dev.type == "cpu" else (False, True)):
            report["steps"].append(train_steps(arch, dev, batch=batch, lr_px=lr_px, steps=args.steps,
                                               bf16=bf16, small=args.small))
            print(json.dumps(report["steps"][-1]), flush=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
