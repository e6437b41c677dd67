"""Extraction speed: MLCamSR extract vs a read-only loop and a naive extractor, one run.

Two slide cases (``--case``):

- ``real`` (default): held-out real H&E texture from ``../shared/data`` tiled into an
  8192 x 8192 40x pyramid (JPEG q90, 512-px tiles, exact-half levels; ``bench/texture.py``)
  with N centres on the 4-px grid spread uniformly over the slide (sparse: squares rarely
  share tiles, so the block cache saves little). This is the case users meet.
- ``synth``: one synthetic slide (``mlcamsr.synth``) with synth's tissue-picked centres,
  whose squares overlap (each level-0 tile touched by about 8 squares).

On the chosen slide and the same N patch centres (default 240), measures:

(a) a single-process tiffslide read-only loop over the same triplets (40x 1024 px from
    level 0, 20x 512 px from level 1, 10x 256 px from level 2; no QC, no write);
(b) a naive extractor: openslide ``read_region`` per member, one PNG file per patch;
(c) ``mlcamsr.extract.extract(..., workers=W)`` as ``mlcamsr extract --workers W`` runs
    it by default: a local dask cluster of W threads in this process (cluster start
    included), the real job: exact centring, QC, Zarr v3 write, one shared block cache
    (tiles shared by neighbouring squares decode once);
(cp) the same with ``processes=True`` (W worker processes, a cache each);
(c0) processes and ``cache_mb=0`` (every square decodes all its tiles, as (a) does);
(s) the same extract serially (``workers=0``), and a per-stage profile of the serial
    path (read, resample, QC, encode) in ms per triplet, to say what bounds (c).

Prints triplets/s, the ratios (c)/(a) and (c)/(b), CPU ms per triplet split into user and
system time with the minor page faults per triplet (where the system time goes), the store
size and codec, and the machine load (the 2 cores here are shared).

``--io`` instead measures the I/O amplification of extract: a 2-4 GB real-texture
pyramid (``--big-side``, default 73728 px, the mosaic repeated) is written once, N sparse
centres are extracted with the default slide identity (``--hash fingerprint``) and with
``--hash full``, and the bytes read by the process (``rchar`` of ``/proc/self/io``; the
threads of the default local cluster are this process) are divided by the compressed
bytes of the distinct tiles the member squares touch. The big slide is removed after. ``--write-only`` instead times just the
store write (``Store.write_shard``: encode + write, CPU ms per triplet) of the same
triplets in each inner-chunk layout of ``--chunks``, and ``--compare-chunks`` runs (c)
alone in each layout of ``--chunks``, interleaved for ``--rounds`` rounds. Usage::

    python bench/extract.py [--case real|synth] [--n 240] [--slide-size 8192] [--workers 2] [--compare-levels]
    python bench/extract.py --io [--n 240] [--big-side 73728]
    python bench/extract.py --write-only [--chunks 1024,256,128] [--compare-crc]
    python bench/extract.py --compare-chunks [--chunks 1024,256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the dask worker processes
    are children of this process and are joined when the cluster closes)."""
    import resource

    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def _usage() -> np.ndarray:
    """(user s, system s, minor faults) of this process + its finished children."""
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return np.array([a.ru_utime + b.ru_utime, a.ru_stime + b.ru_stime, a.ru_minflt + b.ru_minflt])


def _split(u: np.ndarray, n: int) -> str:
    return f"user {1000 * u[0] / n:.1f} + sys {1000 * u[1] / n:.1f} ms, {u[2] / n:.0f} minor faults per triplet"


def _rchar() -> int:
    """Bytes this process has read through read()/pread() so far (``/proc/self/io``)."""
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("rchar:"))


def io_amplification(work: Path, n: int, size: int, side: int, workers: int, backend: str) -> dict[str, float]:
    """Bytes read by extract over compressed bytes of the touched tiles, per ``--hash`` mode."""
    import distributed  # noqa: F401 - imported before measuring: module files are reads too
    import texture

    from mlcamsr.extract import extract
    from mlcamsr.patches import Geometry, member_specs, plan_member
    from mlcamsr.slides import open_slide

    slides = work / "big"
    slides.mkdir(parents=True, exist_ok=True)
    slide = slides / "big.tif"
    try:
        t0 = time.perf_counter()
        texture.write_slide(slide, side)
        nbytes = slide.stat().st_size
        print(f"wrote {slide} ({side} x {side} px, {nbytes / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s")
        centres = texture.sparse_centres(side, n, size)
        coords = work / "big_coords.csv"
        coords.write_text("slide,x,y\n" + "".join(f"big.tif,{x},{y}\n" for x, y in centres))
        specs = member_specs(size, 0.243, 40, (1, 2, 4))
        with open_slide(slide, backend="tiffslide") as r:
            geo = Geometry.of(r)
        reads = [(p.level, p.window) for x, y in centres for p in (plan_member(geo, x, y, s) for s in specs)]
        touched = texture.touched_tile_bytes(slide, reads)
        out: dict[str, float] = {"slide_bytes": nbytes, "touched_tile_bytes": touched}
        print(f"{n} sparse centres touch {touched / 1e6:.1f} MB of compressed tiles "
              f"({100 * touched / nbytes:.2f} % of the file)")
        for mode in ("fingerprint", "full"):
            store = work / f"big_{mode}.zarr"
            shutil.rmtree(store, ignore_errors=True)
            r0, t0 = _rchar(), time.perf_counter()
            extract(slides, coords, store, size=size, workers=workers, backend=backend, progress=False,
                    hash_slides=mode)
            read, wall = _rchar() - r0, time.perf_counter() - t0
            out[f"{mode}_read_bytes"] = read
            out[f"{mode}_amplification"] = read / touched
            print(f"extract --hash {mode:<11}: read {read / 1e6:8.1f} MB in {wall:5.1f} s -> "
                  f"I/O amplification {read / touched:6.2f} (goal <= 1.5 by default)")
            shutil.rmtree(store, ignore_errors=True)
        return out
    finally:
        slide.unlink(missing_ok=True)


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _du(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


_LAST_CPU = 0.0
_LAST_USAGE = np.zeros(3)


def page_cache_cost(store: Path, n: int) -> dict[str, float]:
    """(w) What writing the store's bytes costs this machine, apart from any encoding: every
    shard file of ``store`` (already compressed) copied by ``os.write`` into new files, then
    the same bytes written again over those files (their page-cache pages exist by then).
    CPU ms per triplet for each, user + sys of this process; the copies are removed after."""
    files = [p for p in store.rglob("*") if p.is_file() and "/c/" in p.as_posix()]
    out = store.parent / "page_cache_cost"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    res: dict[str, float] = {}
    total = 0
    for label, flags in (("new files", os.O_CREAT | os.O_TRUNC), ("overwrite", 0)):
        spent = np.zeros(3)
        for i, p in enumerate(files):  # one file in memory at a time; only the write is timed
            b = p.read_bytes()
            total += len(b) if flags else 0
            u0 = _usage()
            fd = os.open(out / f"{i}", os.O_WRONLY | flags, 0o644)
            os.write(fd, b)
            os.close(fd)
            spent += _usage() - u0
        res[label] = 1000 * (spent[0] + spent[1]) / n
    shutil.rmtree(out)
    res["mb_per_triplet"] = total / 1e6 / n
    return res


def compare_levels(store: Path, n: int, levels: tuple[int, ...] = (3, 1, -1, -3)) -> dict[int, dict[str, float]]:
    """Zstandard levels on the store's own inner chunks (the pixels (c) wrote): ratio
    (raw / compressed) and the encode and decode CPU ms per triplet (``time.thread_time``,
    one thread, numcodecs' ``Zstd`` as the shard writer uses it)."""
    from numcodecs import Zstd

    from mlcamsr.store import open_store

    s = open_store(store)
    tiles = []
    for m in s.members:
        arr, c = s[m], int(s[m].chunks[1])
        rows = min(16, arr.shape[0])
        block = np.asarray(arr[:rows])
        tiles += [np.ascontiguousarray(block[r, y : y + c, x : x + c])
                  for r in range(rows) for y in range(0, arr.shape[1], c) for x in range(0, arr.shape[2], c)]
    per = n / rows  # the tiles are ``rows`` triplets' worth
    raw = sum(t.nbytes for t in tiles)
    res: dict[int, dict[str, float]] = {}
    for level in levels:
        codec = Zstd(level=level)
        frames = [codec.encode(t) for t in tiles]  # warm-up round
        t0 = time.thread_time()
        frames = [codec.encode(t) for t in tiles]
        enc = time.thread_time() - t0
        t0 = time.thread_time()
        for f in frames:
            codec.decode(f)
        dec = time.thread_time() - t0
        res[level] = {"ratio": raw / sum(len(f) for f in frames),
                      "encode_ms": 1000 * enc * per / n, "decode_ms": 1000 * dec * per / n}
    return res


def read_only_loop(slide: Path, centres: list[tuple[int, int]], size: int) -> float:
    """(a) tiffslide, one process, the three members at their native levels; returns seconds."""
    import tiffslide

    ts = tiffslide.TiffSlide(slide)
    global _LAST_CPU, _LAST_USAGE
    c0, u0 = _cpu(), _usage()
    t0 = time.perf_counter()
    for x, y in centres:
        for level, n in ((0, size), (1, size // 2), (2, size // 4)):
            np.asarray(ts.read_region((x - size // 2, y - size // 2), level, (n, n), as_array=True))
    dt = time.perf_counter() - t0
    _LAST_CPU, _LAST_USAGE = _cpu() - c0, _usage() - u0
    ts.close()
    return dt


def naive_loop(slide: Path, centres: list[tuple[int, int]], size: int, out: Path) -> float:
    """(b) openslide read_region per member + one PNG per patch; returns seconds."""
    import openslide

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    osr = openslide.OpenSlide(str(slide))
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(centres):
        for level, n, name in ((0, size, "40x"), (1, size // 2, "20x"), (2, size // 4, "10x")):
            img = osr.read_region((x - size // 2, y - size // 2), level, (n, n)).convert("RGB")
            img.save(out / f"{i:05d}_{name}.png")
    dt = time.perf_counter() - t0
    osr.close()
    return dt


def stage_profile(slide: Path, centres: list[tuple[int, int]], size: int, backend: str) -> dict[str, float]:
    """CPU ms per triplet of each stage of the serial extract path (no block cache)."""
    from numcodecs import Zstd

    from mlcamsr.patches import Geometry, member_specs, plan_member, read_level
    from mlcamsr.qc import QCThresholds, check_patch
    from mlcamsr.resize import resample_box
    from mlcamsr.slides import open_slide

    specs = member_specs(size, 0.243, 40, (1, 2, 4))
    r = open_slide(slide, backend=backend)
    geo = Geometry.of(r)
    zstd = Zstd(level=1)
    t = {"read": 0.0, "resample": 0.0, "qc": 0.0, "encode_zstd1": 0.0}
    for x, y in centres:
        images = {}
        for s in specs:
            plan = plan_member(geo, x, y, s)
            t0 = time.process_time()
            img = read_level(r, geo, plan.level, plan.window)
            t1 = time.process_time()
            if not plan.crop:
                img = resample_box(img, plan.box, (s.size, s.size))
            t2 = time.process_time()
            t["read"] += t1 - t0
            t["resample"] += t2 - t1
            images[s.name] = img
        t0 = time.process_time()
        check_patch(images, [s.name for s in specs], QCThresholds())
        t1 = time.process_time()
        for img in images.values():
            zstd.encode(np.ascontiguousarray(img))
        t2 = time.process_time()
        t["qc"] += t1 - t0
        t["encode_zstd1"] += t2 - t1
    r.close()
    return {k: 1000 * v / len(centres) for k, v in t.items()}


class StageMeter:
    """Per-stage CPU of the real extract run: wraps ``read_member``, ``check_patch`` and
    ``Store.write_shard`` (looked up by ``run_task`` at call time) while it is active and
    sums, per stage, the calling thread's CPU seconds (``time.thread_time``), system
    seconds and minor faults (``RUSAGE_THREAD``). Threads mode only (the tasks run in this
    process); what is left of the process's CPU is the scheduler, zeroed blocks, copies."""

    def __init__(self) -> None:
        import threading

        self.acc: dict[str, np.ndarray] = {}
        self.lock = threading.Lock()
        self.saved: list[tuple[object, str, object]] = []
        # (wall, process CPU) at the first stage call and after the last: the cutting window
        self.first: tuple[float, float] | None = None
        self.last: tuple[float, float] | None = None

    @staticmethod
    def _now() -> np.ndarray:
        import resource

        u = resource.getrusage(resource.RUSAGE_THREAD)
        return np.array([time.thread_time(), u.ru_stime, u.ru_minflt])

    def _wrap(self, name: str, fn):  # noqa: ANN001, ANN202 - a bench's timing wrapper
        def timed(*a, **k):  # noqa: ANN002, ANN003, ANN202
            with self.lock:
                if self.first is None:
                    self.first = (time.perf_counter(), _cpu())
            t0 = self._now()
            try:
                return fn(*a, **k)
            finally:
                d = self._now() - t0
                with self.lock:
                    self.acc[name] = self.acc.get(name, np.zeros(3)) + d
                    self.last = (time.perf_counter(), _cpu())
        return timed

    def __enter__(self) -> StageMeter:
        import mlcamsr.extract as ex
        from mlcamsr.store import Store

        for owner, attr, name in ((ex, "read_member", "read (decode, cache, resample)"),
                                  (ex, "check_patch", "QC (luma, 2 shrinks, tissue)"),
                                  (Store, "write_shard", "encode + write (zstd, crc, writev)")):
            fn = getattr(owner, attr)
            self.saved.append((owner, attr, fn))
            setattr(owner, attr, self._wrap(name, fn))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, attr, fn in self.saved:
            setattr(owner, attr, fn)

    def report(self, n: int, total: np.ndarray) -> str:
        lines = [f"    {k:<36}: CPU {1000 * v[0] / n:5.1f} ms/triplet (sys {1000 * v[1] / n:4.1f}), "
                 f"{v[2] / n:4.0f} minor faults" for k, v in self.acc.items()]
        rest = total[0] + total[1] - sum(v[0] for v in self.acc.values())
        lines.append(f"    {'rest (scheduler, blocks, copies)':<36}: CPU {1000 * rest / n:5.1f} ms/triplet")
        return "\n".join(lines)


def write_cost(
    slide: Path, centres: list[tuple[int, int]], size: int, chunks: list[int], rounds: int = 5,
    checksum: bool = True,
) -> dict[str, dict[str, float]]:
    """CPU ms per triplet of ``Store.write_shard`` (40x/20x/10x, 16-row shards) and bytes
    stored per triplet, per inner chunk side; rounds interleaved, medians. Layouts named
    ``"256"`` carry a crc32c per chunk (``checksum``); ``"256-nocrc"`` do not (format 1)."""
    import tiffslide

    from mlcamsr.store import open_store

    ts = tiffslide.TiffSlide(slide)
    members = {"40x": [], "20x": [], "10x": []}
    for x, y in centres[:16]:
        for (name, level, n) in (("40x", 0, size), ("20x", 1, size // 2), ("10x", 2, size // 4)):
            members[name].append(np.asarray(
                ts.read_region((x - size // 2, y - size // 2), level, (n, n), as_array=True))[..., :3])
    ts.close()
    blocks = {k: np.ascontiguousarray(np.stack(v)) for k, v in members.items()}
    tmp = Path(tempfile.mkdtemp(prefix="bench_write_"))
    st = open_store(tmp / "w.zarr", "w")
    shards = 4  # 64 triplets per round
    layouts = [(str(c), c, True) for c in chunks]
    if not checksum:
        layouts += [(f"{c}-nocrc", c, False) for c in chunks]
    for label, c, crc in layouts:
        for name, b in blocks.items():
            st.create_member(f"{name}_{label}", n=16 * shards, size=b.shape[1], mpp=1, scale=1,
                             mag=1, shard_rows=16, chunk=c, checksum=crc)
    cpu: dict[str, list[float]] = {lab: [] for lab, _, _ in layouts}
    for _ in range(rounds):
        for label, _, _ in layouts:
            t0 = time.process_time()
            for k in range(shards):
                for name, b in blocks.items():
                    st.write_shard(f"{name}_{label}", 16 * k, b)
            cpu[label].append(1000 * (time.process_time() - t0) / (16 * shards))
    out = {}
    for label, _, _ in layouts:
        nbytes = sum(_du(tmp / "w.zarr" / f"{name}_{label}") for name in blocks)
        out[label] = {"cpu_ms_per_triplet": float(np.median(cpu[label])),
                      "mb_per_triplet": nbytes / (16 * shards) / 1e6}
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=("real", "synth"), default="real",
                    help="real: H&E texture, sparse centres; synth: synthetic slide, overlapping squares")
    ap.add_argument("--io", action="store_true", help="only the I/O amplification on a 2-4 GB slide")
    ap.add_argument("--big-side", type=int, default=73728, help="side of the --io slide, level-0 px")
    ap.add_argument("--n", type=int, default=240, help="patch centres (>= 200)")
    ap.add_argument("--size", type=int, default=1024, help="finest member px")
    ap.add_argument("--slide-size", type=int, default=8192, help="slide side, level-0 px")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--backend", default="tiffslide", help="slide reader for (c) and (s)")
    ap.add_argument("--cache-mb", type=float, default=256, help="block cache of (c)")
    ap.add_argument("--work-dir", default=None, help="keep inputs/outputs here (default: a temp dir)")
    ap.add_argument("--skip-serial", action="store_true", help="skip (s) and the stage profile")
    ap.add_argument("--skip-naive", action="store_true", help="skip (b) (PNG encoding dominates it)")
    ap.add_argument("--skip-processes", action="store_true", help="skip (cp) and (c0)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--write-only", action="store_true",
                    help="only time the store write per inner chunk layout (--chunks)")
    ap.add_argument("--chunks", default="1024,256,128",
                    help="inner chunk sides for --write-only / --compare-chunks (>= --size: "
                    "one chunk per patch)")
    ap.add_argument("--compare-chunks", action="store_true",
                    help="only run (c) in each layout of --chunks, interleaved rounds")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of --compare-chunks")
    ap.add_argument("--compare-levels", action="store_true",
                    help="after (c): the zstd levels 3, 1, -1, -3 on the store's own inner chunks")
    ap.add_argument("--compare-crc", action="store_true",
                    help="with --write-only: also each layout without the per-chunk crc32c, "
                    "and print the ratio (the cost of the checksum)")
    args = ap.parse_args()

    # dask.distributed is imported by extract on first use (0.4-0.5 s here); import it before
    # any timing, as (a) imports tiffslide and opens the slide before its clock starts
    import distributed  # noqa: F401

    from mlcamsr.extract import extract
    from mlcamsr.store import open_store
    from mlcamsr.synth import synth_slides

    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_extract_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.io:
        load0 = _load()
        res_io = io_amplification(work, args.n, args.size, args.big_side, args.workers, args.backend)
        print(f"load average before {load0}, after {_load()}; {os.cpu_count()} CPUs")
        if args.json:
            Path(args.json).write_text(json.dumps(res_io, indent=2))
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
        return
    slides = work / f"slides_{args.case}"
    slide = slides / "slide_000.tif"
    if args.case == "synth":
        if not slide.exists():
            synth_slides(slides, n_slides=1, size=(args.slide_size, args.slide_size), seed=0,
                         n_coords=args.n, lesions=False)
        with open(slides / "coords.csv") as fh:
            centres = [(int(r["x"]), int(r["y"])) for r in csv.DictReader(fh)][: args.n]
    else:
        import texture

        slides.mkdir(parents=True, exist_ok=True)
        if not slide.exists():
            texture.write_slide(slide, args.slide_size, mosaic_side=args.slide_size)
        centres = texture.sparse_centres(args.slide_size, args.n, args.size)
    n = len(centres)
    coords = work / f"coords_{args.case}_{n}.csv"
    coords.write_text("slide,x,y\n" + "".join(f"slide_000.tif,{x},{y}\n" for x, y in centres))
    if args.write_only:
        chunks = [int(c) for c in args.chunks.split(",") if c]
        load0 = _load()
        w = write_cost(slide, centres, args.size, chunks, checksum=not args.compare_crc)
        for c, v in w.items():
            print(f"write_shard, inner chunk {c:>11} px: {v['cpu_ms_per_triplet']:.2f} CPU ms/triplet, "
                  f"{v['mb_per_triplet']:.3f} MB/triplet stored")
        for c in chunks:
            if f"{c}-nocrc" in w:
                r = w[str(c)]["cpu_ms_per_triplet"] / w[f"{c}-nocrc"]["cpu_ms_per_triplet"]
                print(f"crc32c per chunk, {c} px: write CPU x{r:.3f} (with / without)")
        print(f"load average before {load0}, after {_load()}")
        if args.json:
            Path(args.json).write_text(json.dumps(w, indent=2))
        return
    if args.compare_chunks:
        chunks = [int(c) for c in args.chunks.split(",") if c]
        load0 = _load()
        runs: dict[int, list[tuple[float, float]]] = {c: [] for c in chunks}
        for r in range(args.rounds):
            for c in chunks:
                out = work / f"store_chunk{c}.zarr"
                shutil.rmtree(out, ignore_errors=True)
                c0, t0 = _cpu(), time.perf_counter()
                extract(slides, coords, out, size=args.size, workers=args.workers,
                        backend=args.backend, progress=False, hash_slides=False,
                        cache_mb=args.cache_mb, chunk=c)
                wall, cpu = time.perf_counter() - t0, _cpu() - c0
                runs[c].append((n / wall, 1000 * cpu / n))
                print(f"round {r + 1} (c) --chunk {c:>5}: {n / wall:6.1f} triplets/s, "
                      f"CPU {1000 * cpu / n:.1f} ms/triplet", flush=True)
        for c, v in runs.items():
            tps, cpu = zip(*v)
            print(f"(c) --chunk {c:>5}: median {np.median(tps):6.1f} triplets/s, CPU "
                  f"{np.median(cpu):.1f} ms/triplet; store {_du(work / f'store_chunk{c}.zarr') / 1e6:.1f} MB")
        print(f"load average before {load0}, after {_load()}")
        if args.json:
            Path(args.json).write_text(json.dumps({str(c): v for c, v in runs.items()}, indent=2))
        return
    res: dict[str, object] = {"n": n, "size": args.size, "slide": f"{args.slide_size}^2 px",
                              "cpus": os.cpu_count(), "load_before": _load()}
    print(f"{n} triplets ({args.size}/{args.size // 2}/{args.size // 4} px) from {slide} "
          f"({slide.stat().st_size / 1e6:.1f} MB); load average {res['load_before']}")

    ta1 = read_only_loop(slide, centres, args.size)
    cpu_a = _LAST_CPU
    ta = ta1
    print(f"(a) tiffslide read-only loop, 1 process : {n / ta1:7.1f} triplets/s ({ta1:.1f} s; "
          f"CPU {1000 * cpu_a / n:.1f} ms/triplet: {_split(_LAST_USAGE, n)})")

    tb, png = float("nan"), 0
    if not args.skip_naive:
        tb = naive_loop(slide, centres, args.size, work / "naive")
        png = _du(work / "naive")
        print(f"(b) naive openslide + PNG per patch     : {n / tb:7.1f} triplets/s ({tb:.1f} s, "
              f"{png / 1e6:.0f} MB PNG)")

    out = work / "store.zarr"

    def run(label: str, **kw: object) -> tuple[float, float, object]:
        shutil.rmtree(out, ignore_errors=True)
        c0, u0 = _cpu(), _usage()
        t0 = time.perf_counter()
        r = extract(slides, coords, out, size=args.size, workers=args.workers, backend=args.backend,
                    progress=False, hash_slides=False, **kw)
        wall, cpu, u = time.perf_counter() - t0, _cpu() - c0, _usage() - u0
        print(f"{label:<42}: {n / wall:7.1f} triplets/s ({wall:.1f} s incl. cluster start; "
              f"CPU {1000 * cpu / n:.1f} ms/triplet, all processes: {_split(u, n)}; "
              f"{cpu / wall:.2f} cores busy)")
        return wall, cpu, r

    w = args.workers
    # (a) again right before the extract runs: the cores are shared, so compare like with like
    ta2 = read_only_loop(slide, centres, args.size)
    print(f"(a) again, just before (c)               : {n / ta2:7.1f} triplets/s ({ta2:.1f} s)")
    with StageMeter() as meter:
        u_c0 = _usage()
        tc, cpu_c, r = run(f"(c) mlcamsr extract --workers {w} (default)", cache_mb=args.cache_mb)
        u_c = _usage() - u_c0
    print("    (c) by stage, CPU of the worker threads (thread_time; sys and faults from RUSAGE_THREAD):")
    print(meter.report(n, u_c))
    res["c_stages_ms"] = {k: 1000 * v[0] / n for k, v in meter.acc.items()}
    # The cutting window, first read to last shard write: what a long run approaches. The
    # rest of (c)'s wall is paid once per run (cluster start, opening the slides, the reader
    # check, the table, folding the shard records).
    assert meter.first is not None and meter.last is not None
    win, cpu_win = meter.last[0] - meter.first[0], meter.last[1] - meter.first[1]
    print(f"    (c) cutting window (first read to last write): {n / win:7.1f} triplets/s ({win:.1f} s; "
          f"CPU {1000 * cpu_win / n:.1f} ms/triplet, {cpu_win / win:.2f} cores busy); "
          f"once per run: {tc - win:.1f} s")
    res.update(c_window_s=win, c_window_tps=n / win, c_window_cpu_ms=1000 * cpu_win / n, c_fixed_s=tc - win)
    ta3 = read_only_loop(slide, centres, args.size)
    print(f"(a) again, just after (c)                : {n / ta3:7.1f} triplets/s ({ta3:.1f} s)")
    ta = (ta2 + ta3) / 2  # the ratios use the (a) runs around (c)
    pc = page_cache_cost(out, n)
    print(f"(w) the store's bytes ({pc['mb_per_triplet']:.2f} MB/triplet) written into new files: CPU "
          f"{pc['new files']:.1f} ms/triplet; over the same files again: {pc['overwrite']:.1f} "
          "(no encoding: what a page-cache page costs this machine, a floor under (c)'s write)")
    res["page_cache_ms"] = pc
    if args.compare_levels:
        for level, v in compare_levels(out, n).items():
            print(f"    zstd level {level:>2}: ratio {v['ratio']:.3f}, encode {v['encode_ms']:.2f}, "
                  f"decode {v['decode_ms']:.2f} CPU ms/triplet")
    s = open_store(out)
    nbytes = _du(out)
    raw = sum(np.prod(s[m].shape) for m in s.members) * r.n_kept / max(1, r.n_rows)
    codec = [c.to_dict() for c in s[s.members[0]].metadata.codecs]
    tc0 = cpu_c0 = tcp = cpu_cp = float("nan")
    if not args.skip_processes:
        tc0, cpu_c0, _ = run(f"(c0) extract --workers {w} --processes --cache-mb 0", processes=True, cache_mb=0)
        tcp, cpu_cp, _ = run(f"(cp) extract --workers {w} --processes", processes=True, cache_mb=args.cache_mb)
    print(f"    kept {r.n_kept}, rejected {r.n_rejected}, failed {r.n_failed}; store {nbytes / 1e6:.1f} MB on "
          f"disk for {raw / 1e6:.0f} MB of kept pixels (ratio {raw / max(nbytes, 1):.2f}); "
          f"codecs {json.dumps(codec)}")
    print(f"ratios (measured): (c)/(a) = {ta / tc:.2f}x (target 1.5x; cutting window {ta / win:.2f}x), "
          f"(c)/(b) = {tb / tc:.2f}x (target 5x); "
          f"(cp)/(a) = {ta / tcp:.2f}x, (c0)/(a) = {ta / tc0:.2f}x, (c0)/(b) = {tb / tc0:.2f}x")
    # What the same work gives on idle cores: throughput = cores / CPU per triplet.
    cores = min(w, os.cpu_count() or 1) or 1
    proj = {"a": n / cpu_a, "c0": cores * n / cpu_c0, "cp": cores * n / cpu_cp, "c": cores * n / cpu_c}
    print(f"CPU-time projection on {cores} idle cores (triplets/s): "
          + ", ".join(f"({k}) {v:.1f}" for k, v in proj.items())
          + f" -> (c)/(a) {proj['c'] / proj['a']:.2f}x, (cp)/(a) {proj['cp'] / proj['a']:.2f}x, "
          f"(c0)/(a) {proj['c0'] / proj['a']:.2f}x")
    res.update(a_tps=n / ta, b_tps=n / tb, c_tps=n / tc, cp_tps=n / tcp, c0_tps=n / tc0,
               c_over_a=ta / tc, c_window_over_a=ta / win, c_over_b=tb / tc, cp_over_a=ta / tcp, c0_over_a=ta / tc0,
               c0_over_b=tb / tc0, store_bytes=nbytes, png_bytes=png, codecs=codec, workers=w,
               backend=args.backend, projection=proj,
               cpu_ms={k: 1000 * v / n for k, v in
                       dict(a=cpu_a, c0=cpu_c0, cp=cpu_cp, c=cpu_c).items()})

    if not args.skip_serial:
        out0 = work / "store_serial.zarr"
        shutil.rmtree(out0, ignore_errors=True)
        t0 = time.perf_counter()
        extract(slides, coords, out0, size=args.size, workers=0,
                backend=args.backend, progress=False, hash_slides=False, cache_mb=0)
        ts_ = time.perf_counter() - t0
        print(f"(s) extract --workers 0 --cache-mb 0     : {n / ts_:7.1f} triplets/s ({ts_:.1f} s)")
        prof = stage_profile(slide, centres, args.size, args.backend)
        total = sum(prof.values())
        print("    serial stages, CPU ms/triplet: " + ", ".join(f"{k} {v:.1f}" for k, v in prof.items())
              + f" (sum {total:.1f}; the rest of (s) is Zarr write + scheduling)")
        res.update(s_tps=n / ts_, stages_ms=prof)
    res["load_after"] = _load()
    print(f"load average after: {res['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=float))


if __name__ == "__main__":
    main()
