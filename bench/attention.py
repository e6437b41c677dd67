"""Benchmark: dense vs chunked vs windowed search-transfer, and model step / eval speed.

    python bench/attention.py                       # CPU: batch 4, 64 channels, LR 32/48/64/128
    python bench/attention.py --device cuda --batch 16 --dtypes fp32,bf16
    python bench/attention.py --sizes 64,128 --windows 2,4,8,16 --models '' \
        --window-models demo --eval-sizes 64,128,256,512   # the windowed search (issue 12)

Windowed search (``--windows``): ``search_transfer(..., window=W)`` for each W, timed in the
same rounds as the global (chunked) search; the table gives its time and peak memory as
ratios to the global search at the same LR size. Global runs are skipped above
``--global-max-lr`` (their time grows with the square of the image area).

Window models (``--window-models demo|paper``): CWT-Net in the demo's size (4 CWTBs x 32,
``cwtnet.demo``) or the paper's (12 x 64), x2, global and each ``--windows`` W: one
training step (batch ``--model-batch``, LR ``--model-size``, with reference) and one
evaluation forward of a single ``--eval-sizes`` LR image (SISR mode, no autograd; LR 512
is a 1024-px x2 patch), each in a fresh subprocess with its peak memory.

Search-transfer (forward, no autograd, as in inference): ``dense_search_transfer``
(TTSR formulation, full (HW x HW) relevance matrix) against ``search_transfer`` (query
chunks, ``--chunk`` positions or ``auto`` = the relevance budget, 32 MiB CPU / 256 MiB CUDA). For each
configuration: median and minimum time of ``--repeat`` calls after one warm-up (the
minimum is the steadier figure on a shared, loaded machine), the theoretical
relevance bytes (dense: B*HW*HW*itemsize; chunked: B*chunk*HW*itemsize) and the measured
peak extra memory: on CUDA ``max_memory_allocated`` above the inputs; on CPU each
configuration runs in a fresh subprocess and reports VmHWM (reset via clear_refs) minus
VmRSS after the inputs were made (resident memory, approximate). Dense runs are skipped
above ``--dense-max-gb`` of relevance matrix; the table then shows what they would need.

Models (``--models``, on by default): one training step (``forward_train`` / forward,
``CWTLoss``, backward, Adam step) of the paper-config CWT-Net (x2, with reference) and
EDSR-baseline at ``--model-batch`` x LR ``--model-size``, built with ``build_model``.
bf16 runs use ``torch.autocast`` (inputs of the search in bf16).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from cwtnet.model.attention import (
    CUDA_RELEVANCE_BUDGET_BYTES,
    RELEVANCE_BUDGET_BYTES,
    auto_chunk_size,
    dense_search_transfer,
    search_transfer,
)
from cwtnet.summary import PeakMemory, train_step

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _autocast(dev: torch.device, dtype: str):
    if dtype == "fp32":
        return torch.autocast(dev.type, enabled=False)
    return torch.autocast(dev.type, dtype=DTYPES[dtype])


def _search_case(method: str, size: int, batch: int, channels: int, dtype: str, device: str, chunk: str):
    """Inputs (B, C, size, size) and the call of one search-transfer configuration."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(size)
    dt = DTYPES[dtype]
    q, k, v = (torch.randn(batch, channels, size, size, generator=g).to(dev, dt) for _ in range(3))
    n = size * size
    itemsize = dt.itemsize
    budget = CUDA_RELEVANCE_BUDGET_BYTES if dev.type == "cuda" else RELEVANCE_BUDGET_BYTES
    chunk_n = auto_chunk_size(batch, n, n, itemsize, budget) if chunk == "auto" else min(n, int(chunk))
    if method == "dense":
        fn = lambda: dense_search_transfer(q, k, v)  # noqa: E731
        rel_bytes = batch * n * n * itemsize
    elif method.startswith("w"):
        win = int(method[1:])
        fn = lambda: search_transfer(q, k, v, window=win)  # noqa: E731
        rel_bytes = batch * n * (2 * win + 1) ** 2 * itemsize  # the masked-dense equivalent's live part
    else:
        fn = lambda: search_transfer(q, k, v, chunk_size=chunk_n)  # noqa: E731
        rel_bytes = batch * chunk_n * n * itemsize
    info = {"kind": "search", "method": method, "size": size, "batch": batch, "channels": channels,
            "dtype": dtype, "device": device, "chunk": chunk_n if method == "chunked" else None,
            "relevance_bytes": rel_bytes}
    return fn, info


def run_search_memory(method: str, size: int, batch: int, channels: int, dtype: str, device: str,
                      chunk: str) -> dict:
    """Peak extra memory of one call (after one warm-up call), in this process."""
    dev = torch.device(device)
    fn, info = _search_case(method, size, batch, channels, dtype, device, chunk)
    with torch.no_grad(), _autocast(dev, dtype):
        fn()
        with PeakMemory(dev) as mem:
            out = fn()
            _sync(dev)
            del out
    return {**info, "peak_bytes": mem.peak, "memory_method": mem.method}


def time_searches(methods: list[str], size: int, batch: int, channels: int, dtype: str, device: str,
                  chunk: str, repeat: int) -> dict[str, list[float]]:
    """Times of ``repeat`` rounds, the methods interleaved in each round (after one warm-up
    round), so that load changes on a shared machine hit every method alike."""
    dev = torch.device(device)
    cases = {m: _search_case(m, size, batch, channels, dtype, device, chunk)[0] for m in methods}
    times: dict[str, list[float]] = {m: [] for m in methods}
    with torch.no_grad(), _autocast(dev, dtype):
        for i in range(repeat + 1):
            for m, fn in cases.items():
                _sync(dev)
                t0 = time.perf_counter()
                out = fn()
                _sync(dev)
                if i:
                    times[m].append(time.perf_counter() - t0)
                del out
    return times


def run_model(arch: str, batch: int, size: int, dtype: str, device: str, repeat: int, warmup: int) -> dict:
    """Time and peak memory of one training step of ``arch`` (x2, paper / literature defaults)."""
    from cwtnet.losses import CWTLoss
    from cwtnet.model import build_model

    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model(arch, 2).to(dev).train()
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(batch, 3, size, size, generator=g).to(dev)
    ref = torch.rand(batch, 3, 2 * size, 2 * size, generator=g).to(dev) if arch == "cwtnet" else None
    gt = torch.rand(batch, 3, 2 * size, 2 * size, generator=g).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    crit = CWTLoss().to(dev)
    times = []
    with PeakMemory(dev) as mem:
        for i in range(warmup + repeat):
            _sync(dev)
            t0 = time.perf_counter()
            with _autocast(dev, dtype):
                train_step(model, lr, ref, gt, opt, crit)
            _sync(dev)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return {"kind": "model", "arch": arch, "batch": batch, "size": size, "dtype": dtype,
            "device": device, "time_s": statistics.median(times), "time_min_s": min(times), "repeat": repeat,
            "warmup": warmup, "peak_bytes": mem.peak, "memory_method": mem.method}


WINDOW_MODELS = {"demo": dict(n_cwtb=4, num_feat=32), "paper": dict(n_cwtb=12, num_feat=64)}
"""CWT-Net sizes of the window-model rows: ``cwtnet.demo``'s and the paper's (IV-B)."""


def run_window_model(size_name: str, window: int | None, what: str, batch: int, size: int, device: str,
                     repeat: int) -> dict:
    """One training step (``what="step"``, batch x LR ``size``, with reference) or one SISR
    evaluation forward of a single LR ``size`` image (``what="eval"``) of CWT-Net x2."""
    from cwtnet.losses import CWTLoss
    from cwtnet.model import build_model

    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model("cwtnet", 2, search_window=window, **WINDOW_MODELS[size_name]).to(dev)
    g = torch.Generator().manual_seed(0)
    times = []
    if what == "step":
        model.train()
        lr = torch.rand(batch, 3, size, size, generator=g).to(dev)
        ref = torch.rand(batch, 3, 2 * size, 2 * size, generator=g).to(dev)
        gt = torch.rand(batch, 3, 2 * size, 2 * size, generator=g).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        crit = CWTLoss().to(dev)
        fn = lambda: train_step(model, lr, ref, gt, opt, crit)  # noqa: E731
    else:
        model.eval()
        batch = 1
        lr = torch.rand(1, 3, size, size, generator=g).to(dev)

        def fn():
            with torch.no_grad():
                return model(lr)
    fn()  # warm-up (and the first call's allocations)
    with PeakMemory(dev) as mem:
        for _ in range(repeat):
            _sync(dev)
            t0 = time.perf_counter()
            fn()
            _sync(dev)
            times.append(time.perf_counter() - t0)
    return {"kind": "window_model", "model": size_name, "window": window, "what": what, "batch": batch,
            "size": size, "device": device, "time_s": statistics.median(times), "time_min_s": min(times),
            "repeat": repeat, "peak_bytes": mem.peak, "memory_method": mem.method}


def _in_subprocess(job: dict) -> dict:
    """Run one job in a fresh interpreter (CPU: so VmHWM belongs to this job alone)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd()] + env.get("PYTHONPATH", "").split(os.pathsep))
    # a fixed mmap threshold: large blocks go back to the OS when freed, so the resident
    # high-water mark follows the live tensors instead of glibc's grown heap
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(job)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {**job, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run(job: dict, isolate: bool) -> dict:
    if isolate:
        return _in_subprocess(job)
    fn = {"search": run_search_memory, "model": run_model, "window_model": run_window_model}[job.pop("kind")]
    try:
        return fn(**job)
    except torch.OutOfMemoryError as exc:  # a dense config that does not fit
        return {**job, "error": f"out of memory: {str(exc).splitlines()[0]}"}


def _mib(x) -> str:
    return "-" if x is None else f"{x / 2**20:,.0f}"


def search_table(rows: list[dict]) -> str:
    out = ["| dtype | LR | method | chunk | time median / min (s) | relevance matrix (MiB) | peak extra (MiB) "
           "| vs dense (chunked) or vs global (windowed): time (median, min), peak |",
           "|---|---|---|---|---|---|---|---|"]
    dense = {(r["dtype"], r["size"]): r for r in rows if r["method"] == "dense" and "time_s" in r}
    glob = {(r["dtype"], r["size"]): r for r in rows if r["method"] == "chunked" and "time_s" in r}
    for r in rows:
        if "time_s" not in r:
            out.append(f"| {r['dtype']} | {r['size']} | {r['method']} | - | not run | "
                       f"{_mib(r.get('relevance_bytes'))} | - | {r.get('error', 'skipped')} |")
            continue
        d = dense.get((r["dtype"], r["size"])) if r["method"] == "chunked" else None
        if r["method"].startswith("w"):
            d = glob.get((r["dtype"], r["size"]))
        rel = (f"{r['time_s'] / d['time_s']:.3f}x, {r['time_min_s'] / d['time_min_s']:.3f}x, "
               f"{r['peak_bytes'] / d['peak_bytes']:.2f}x"
               if d and d["peak_bytes"] and r["peak_bytes"] else
               f"{r['time_s'] / d['time_s']:.3f}x, {r['time_min_s'] / d['time_min_s']:.3f}x, -" if d else "")
        out.append(f"| {r['dtype']} | {r['size']} | {r['method']} | {r['chunk'] or '-'} | "
                   f"{r['time_s']:.3f} / {r['time_min_s']:.3f} | "
                   f"{_mib(r['relevance_bytes'])} | {_mib(r['peak_bytes'])} | {rel} |")
    return "\n".join(out)


def model_table(rows: list[dict]) -> str:
    out = ["| arch | dtype | batch x LR | train step median / min (s) | peak extra (MiB) |",
           "|---|---|---|---|---|"]
    for r in rows:
        if "time_s" not in r:
            out.append(f"| {r['arch']} | {r['dtype']} | {r['batch']} x {r['size']} | {r.get('error')} | - |")
            continue
        out.append(f"| {r['arch']} | {r['dtype']} | {r['batch']} x {r['size']} | "
                   f"{r['time_s']:.2f} / {r['time_min_s']:.2f} | "
                   f"{_mib(r['peak_bytes'])} |")
    return "\n".join(out)


def window_model_table(rows: list[dict]) -> str:
    out = ["| model | what | batch x LR | search | time median / min (s) | vs global (median) | peak extra (MiB) |",
           "|---|---|---|---|---|---|---|"]
    glob = {(r["model"], r["what"], r["size"]): r for r in rows if r.get("window") is None and "time_s" in r}
    for r in rows:
        name = "global" if r.get("window") is None else f"W={r['window']}"
        if "time_s" not in r:
            out.append(f"| {r['model']} | {r['what']} | {r['batch']} x {r['size']} | {name} | "
                       f"{r.get('error', 'skipped')} | - | - |")
            continue
        g = glob.get((r["model"], r["what"], r["size"]))
        ratio = f"{g['time_s'] / r['time_s']:.1f}x faster" if g and r.get("window") is not None else ""
        out.append(f"| {r['model']} | {r['what']} | {r['batch']} x {r['size']} | {name} | "
                   f"{r['time_s']:.2f} / {r['time_min_s']:.2f} | {ratio} | {_mib(r['peak_bytes'])} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="dense vs chunked search-transfer; model step speed")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    ap.add_argument("--batch", type=int, default=4, help="batch of the search benchmark (default 4)")
    ap.add_argument("--channels", type=int, default=64, help="feature channels (default 64)")
    ap.add_argument("--sizes", default="32,48,64,128", help="LR sides (default 32,48,64,128)")
    ap.add_argument("--dtypes", default="fp32", help="fp32 and/or bf16, comma separated (default fp32)")
    ap.add_argument("--chunk", default="auto", help="query chunk, positions or 'auto' (default auto)")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per config (default 3)")
    ap.add_argument("--dense-max-gb", type=float, default=None,
                    help="skip dense above this relevance size (default 2 on CPU, 24 on CUDA)")
    ap.add_argument("--windows", default="", help="search windows W to time beside the global search, "
                    "e.g. 2,4,8,16 (default none)")
    ap.add_argument("--memory-max-lr", type=int, default=10**6,
                    help="measure peak memory (a second run in a subprocess) only up to this LR side")
    ap.add_argument("--global-max-lr", type=int, default=128,
                    help="skip the global search above this LR side (default 128)")
    ap.add_argument("--window-models", default="", help="demo and/or paper: CWT-Net step and eval "
                    "timing for global and each --windows W (default none)")
    ap.add_argument("--step-sizes", default="64", help="LR sides of the window-model training step (default 64)")
    ap.add_argument("--eval-sizes", default="128,512", help="LR sides of the window-model evaluation "
                    "(default 128,512; 512 = a 1024-px patch at x2)")
    ap.add_argument("--global-eval-max-lr", type=int, default=128,
                    help="skip global window-model rows above this LR side (default 128)")
    ap.add_argument("--models", default="cwtnet,edsr", help="archs for the training-step timing ('' = none)")
    ap.add_argument("--model-batch", type=int, default=None, help="default: --batch")
    ap.add_argument("--model-size", type=int, default=64, help="LR side of the model step (default 64)")
    ap.add_argument("--model-repeat", type=int, default=1, help="timed training steps (default 1)")
    ap.add_argument("--model-warmup", type=int, default=1, help="untimed steps first (default 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default torch's own)")
    ap.add_argument("--json", default=None, help="also write all rows to this JSON file")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:  # child process of a CPU run
        job = json.loads(args.one)
        print(json.dumps(_run(job, isolate=False)))
        return 0
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # children (memory, models) too
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available", file=sys.stderr)
        return 2
    isolate = dev.type == "cpu"
    dense_max = args.dense_max_gb if args.dense_max_gb is not None else (2.0 if isolate else 24.0)
    dtypes = [d for d in args.dtypes.split(",") if d]
    windows = [int(w) for w in args.windows.split(",") if w]
    for d in dtypes:
        if d not in DTYPES:
            ap.error(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
    print(f"# device {args.device} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else os.cpu_count()} "
          f"{'GPU' if dev.type == 'cuda' else 'CPUs'}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for dtype in dtypes:
        itemsize = DTYPES[dtype].itemsize
        for size in [int(s) for s in args.sizes.split(",") if s]:
            rel = args.batch * (size * size) ** 2 * itemsize
            base = {"method": "dense", "size": size, "batch": args.batch, "channels": args.channels,
                    "dtype": dtype, "device": args.device, "chunk": args.chunk}
            methods = ["chunked"] if size <= args.global_max_lr else []
            if size > args.global_max_lr:
                rows.append({**base, "method": "chunked", "error": f"skipped: LR {size} > --global-max-lr"})
            methods += [f"w{w}" for w in windows]
            if rel > dense_max * 2**30:
                rows.append({**base, "relevance_bytes": rel,
                             "error": f"skipped: needs {rel / 2**30:.2f} GiB for the relevance matrix alone"})
            else:
                methods.insert(0, "dense")
            times = time_searches(methods, size, args.batch, args.channels, dtype, args.device,
                                  args.chunk, args.repeat)
            for method in methods:
                if size > args.memory_max_lr:
                    row = {**_search_case(method, size, args.batch, args.channels, dtype, args.device, args.chunk)[1],
                           "peak_bytes": None}
                else:
                    row = _run({"kind": "search", **base, "method": method}, isolate)
                if "error" not in row:
                    row.update(time_s=statistics.median(times[method]), time_min_s=min(times[method]),
                               repeat=args.repeat, threads=torch.get_num_threads())
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n" + search_table(rows), flush=True)
    wrows = []
    for name in [m for m in args.window_models.split(",") if m]:
        for what, sizes in (("step", args.step_sizes), ("eval", args.eval_sizes)):
            for size in [int(x) for x in sizes.split(",") if x]:
                for win in [None] + windows:
                    job = {"kind": "window_model", "size_name": name, "window": win, "what": what,
                           "batch": args.model_batch or args.batch, "size": size, "device": args.device,
                           "repeat": args.model_repeat}
                    if win is None and size > args.global_eval_max_lr:
                        row = {**job, "model": name, "error": f"skipped: LR {size} > --global-eval-max-lr"}
                    else:
                        row = _run(job, isolate)
                        row.setdefault("model", name)
                    wrows.append(row)
                    print(json.dumps(row), flush=True)
    if wrows:
        print("\n" + window_model_table(wrows), flush=True)
    mrows = []
    warmup = args.model_warmup
    for dtype in dtypes:
        for arch in [a for a in args.models.split(",") if a]:
            job = {"kind": "model", "arch": arch, "batch": args.model_batch or args.batch,
                   "size": args.model_size, "dtype": dtype, "device": args.device,
                   "repeat": args.model_repeat, "warmup": warmup}
            row = _run(job, isolate)
            mrows.append(row)
            print(json.dumps(row), flush=True)
    if mrows:
        print("\n" + model_table(mrows))
    print(f"# load at end {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows + wrows + mrows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
