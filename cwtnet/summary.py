"""Model summary: parameters, FLOPs for one LR input, peak memory of one training step.

    python -m cwtnet.summary --arch cwtnet --scale 2 [--lr-size 64] [--batch 1] [--device cpu]
                             [--option name=value ...]
    python -m cwtnet.summary --all [--scale 2] [--lr-size 64]

``--all``: parameters and FLOPs of every arch at its default (paper) options, and of the
Table VI / SRGAN helper networks (ResNet-50, VGG19) on a 224-px image, each beside the
figure its paper states where it states one (``STATED``).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` for one forward pass of
batch 1 (its convention: 2 FLOPs per multiply-add; convolutions and matrix products
only: interpolation, gathers, pooling and activations are not counted). For CWT-Net the
count includes the relevance products of the 12 searches (run without autograd).

Peak memory of one training step (forward, ``CWTLoss``, backward, Adam step) at
``--batch``: on CUDA ``torch.cuda.max_memory_allocated`` minus the memory allocated before
the step; on CPU the process's resident-set high-water mark ``VmHWM`` (reset through
``/proc/self/clear_refs``) minus ``VmRSS`` before the step, read from ``/proc/self/status``,
with glibc's mmap threshold fixed at 128 KiB so freed large blocks leave the resident set:
approximate, and measured first, before any other work of this process.
"""

from __future__ import annotations

import argparse
import ast
import gc
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from cwtnet.losses import CWTLoss
from cwtnet.model import ARCHS, build_model
from cwtnet.model.resnet_arch import resnet50
from cwtnet.model.vgg_arch import VGG19


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux ``clear_refs`` 5); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def fix_malloc_mmap_threshold(nbytes: int = 131072) -> bool:
    """glibc ``mallopt(M_MMAP_THRESHOLD)``: large blocks are mmapped and go back to the OS
    when freed, so VmHWM follows live tensors rather than a grown heap. False if impossible."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, int(nbytes)))  # -3 = M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


class PeakMemory:
    """Context manager measuring the peak extra memory of its body, in bytes (``.peak``).

    CUDA: ``max_memory_allocated`` above the allocation at entry (exact for torch tensors).
    CPU: VmHWM after minus VmRSS at entry (approximate; ``.method`` says which was used).
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.peak: int | None = None
        self.method = ""

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = "cuda max_memory_allocated"
        else:
            reset = reset_peak_rss()
            self._base = (_proc_status_kib("VmRSS") or 0) * 1024
            self.method = "VmHWM-VmRSS (clear_refs)" if reset else "VmHWM-VmRSS (no reset: upper bound)"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            hwm = _proc_status_kib("VmHWM")
            self.peak = None if hwm is None else max(0, hwm * 1024 - self._base)


def _inputs(arch: str, scale: int, batch: int, lr_size: int, device, with_ref: bool):
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(batch, 3, lr_size, lr_size, generator=g).to(device)
    ref = torch.rand(batch, 3, 2 * lr_size, 2 * lr_size, generator=g).to(device) if with_ref else None
    gt = torch.rand(batch, 3, scale * lr_size, scale * lr_size, generator=g).to(device)
    return lr, ref, gt


def train_step(model: torch.nn.Module, lr, ref, gt, optimizer, criterion) -> float:
    """One training step: forward (``forward_train`` when the model has it), loss, backward, step."""
    forward_train = getattr(model, "forward_train", None)
    out = forward_train(lr, ref) if forward_train is not None else model(lr, ref)
    loss = criterion(out, gt)
    loss = loss[0] if isinstance(loss, tuple) else loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def count_flops(model: torch.nn.Module, lr: torch.Tensor, ref: torch.Tensor | None) -> int:
    """FLOPs of one forward pass (FlopCounterMode convention), without autograd."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(lr, ref)
    return int(counter.get_total_flops())


def summarize(arch: str = "cwtnet", scale: int = 2, *, lr_size: int = 64, batch: int = 1,
              device: str = "cpu", **options: Any) -> dict[str, Any]:
    """Parameters, FLOPs (batch 1, ``lr_size`` square LR) and one training step's peak memory."""
    dev = torch.device(device)
    if dev.type == "cpu":
        fix_malloc_mmap_threshold()
    torch.manual_seed(0)
    model = build_model(arch, scale, **options).to(dev)
    is_cwt = hasattr(model, "forward_train")
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result: dict[str, Any] = {"arch": arch, "scale": scale, "lr_size": lr_size, "batch": batch,
                              "device": str(dev), "params": params, "trainable_params": trainable}
    if is_cwt:
        parts = {name: sum(p.numel() for p in mod.parameters() if p.requires_grad)
                 for name, mod in model.named_children()}
        result["params_by_part"] = {name: n for name, n in parts.items() if n}
    # memory first: nothing else of this process has touched the allocator yet
    if trainable:
        model.train()
        lr, ref, gt = _inputs(arch, scale, batch, lr_size, dev, is_cwt)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        crit = CWTLoss().to(dev)
        with PeakMemory(dev) as mem:
            t0 = time.perf_counter()
            train_step(model, lr, ref, gt, opt, crit)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            result["train_step_s"] = time.perf_counter() - t0
        result["train_step_peak_bytes"] = mem.peak
        result["memory_method"] = mem.method
        del opt, lr, ref, gt
    model.eval()
    lr1, ref1, _ = _inputs(arch, scale, 1, lr_size, dev, is_cwt)
    result["flops"] = count_flops(model, lr1, ref1)
    if is_cwt:
        result["flops_sisr"] = count_flops(model, lr1, None)
    return result


STATED: dict[str, tuple[float | None, float | None, str]] = {
    "srcnn": (57_184, None, "Dong et al. TPAMI 2016: 57,184 weights for 9-5-5 on the Y channel; "
                            "ours takes RGB (3 in/out channels), so more"),
    "edsr": (1.5e6, None, "Lim et al. 2017, Table 1: EDSR-baseline 1.5 M (x4 upsampler; x2 has one stage)"),
    "rcan": (16e6, None, "Zhang et al. ECCV 2018: about 16 M"),
    "resnet50": (25.6e6, 3.8e9, "He et al. 2016, Table 1: 3.8 x 10^9 FLOPs (multiply-adds) at 224 px; "
                                "params 25.6 M (torchvision)"),
    "vgg19": (144e6, 19.6e9, "Simonyan & Zisserman 2015, Table 2: 144 M; He et al. 2016: 19.6 x 10^9 FLOPs"),
}
"""Figures the papers state: (parameters, FLOPs in multiply-adds, source). CWT-Net, SRGAN,
MWCNN and SWD-Net state neither, so they have no entry."""


def helper_rows() -> list[dict[str, Any]]:
    """Parameters and FLOPs of ResNet-50 and VGG19 on one 224-px image (on the meta device:
    shapes only, no memory), with the figures their papers state."""
    rows = []
    for name, make in (("resnet50", resnet50), ("vgg19", VGG19)):
        with torch.device("meta"):
            net, x = make().eval(), torch.empty(1, 3, 224, 224)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(x)
        rows.append({"name": name, "input": "224x224", "params": sum(p.numel() for p in net.parameters()),
                     "flops": int(counter.get_total_flops())})
    return [_with_stated(r) for r in rows]


def _with_stated(r: dict[str, Any]) -> dict[str, Any]:
    stated = STATED.get(r["name"])
    r["stated_params"], r["stated_macs"], r["source"] = stated if stated else (None, None, "")
    return r


def summarize_all(scale: int = 2, lr_size: int = 64) -> list[dict[str, Any]]:
    """Parameters and FLOPs (batch 1, no training step) of every arch, then ``helper_rows()``."""
    rows = []
    for arch in ARCHS:
        torch.manual_seed(0)
        model = build_model(arch, scale).eval()
        lr, ref, _ = _inputs(arch, scale, 1, lr_size, "cpu", hasattr(model, "forward_train"))
        rows.append(_with_stated({"name": arch, "input": f"LR {lr_size}x{lr_size}, x{scale}",
                                  "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                                  "flops": count_flops(model, lr, ref)}))
    return rows + helper_rows()


def format_all(rows: list[dict[str, Any]]) -> str:
    """Markdown table of ``summarize_all`` (FLOPs: 2 per multiply-add; MACs = FLOPs / 2)."""
    lines = ["| network | input | parameters | GFLOPs | GMACs | paper states | source |",
             "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        stated = []
        if r["stated_params"]:
            stated.append(f"{r['stated_params'] / 1e6:.3g} M params")
        if r["stated_macs"]:
            stated.append(f"{r['stated_macs'] / 1e9:.3g} G MACs")
        lines.append(f"| {r['name']} | {r['input']} | {r['params']:,} | {r['flops'] / 1e9:.2f} | "
                     f"{r['flops'] / 2e9:.2f} | {'; '.join(stated) or 'not stated'} | {r['source']} |")
    return "\n".join(lines)


def format_summary(r: dict[str, Any]) -> str:
    lines = [f"arch {r['arch']}  scale x{r['scale']}  device {r['device']}",
             f"parameters        {r['params']:,} ({r['trainable_params']:,} trainable)"]
    for name, n in r.get("params_by_part", {}).items():
        lines.append(f"  {name:<15} {n:,}")
    lines.append(f"FLOPs (1x3x{r['lr_size']}x{r['lr_size']} LR) {r['flops'] / 1e9:,.2f} G"
                 + (" with ref" if "flops_sisr" in r else ""))
    if "flops_sisr" in r:
        lines.append(f"FLOPs SISR mode   {r['flops_sisr'] / 1e9:,.2f} G (WR instead of the DWT)")
    if r.get("train_step_peak_bytes") is not None:
        lines.append(f"train step peak   {r['train_step_peak_bytes'] / 2**20:,.1f} MiB extra "
                     f"(batch {r['batch']}, {r['memory_method']}), {r['train_step_s']:.2f} s")
    return "\n".join(lines)


def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"option {text!r} must be name=value")
    name, value = text.split("=", 1)
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cwtnet.summary", description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="cwtnet", choices=list(ARCHS), help="network (default cwtnet)")
    ap.add_argument("--all", action="store_true",
                    help="parameters and FLOPs of every network beside its paper's figures")
    ap.add_argument("--scale", type=int, default=2, help="upsampling factor (default 2)")
    ap.add_argument("--lr-size", type=int, default=64, help="LR side for FLOPs and memory (default 64)")
    ap.add_argument("--batch", type=int, default=1, help="batch of the training step (default 1)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    ap.add_argument("--option", "-o", action="append", type=_parse_option, default=[],
                    help="model option name=value, repeatable (e.g. -o n_cwtb=4)")
    args = ap.parse_args(argv)
    if args.all:
        print(format_all(summarize_all(args.scale, args.lr_size)))
        return 0
    r = summarize(args.arch, args.scale, lr_size=args.lr_size, batch=args.batch,
                  device=args.device, **dict(args.option))
    print(format_summary(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
