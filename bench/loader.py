"""Data-loading benchmark: TripletDataset samples/s against the BasicSR/CARN PNG way.

Side by side in one run, same crops (x2, LR patch 64 -> gt 128, ref = gt), same
augmentation, same DataLoader (batch 16, 2 workers, fork, persistent workers):

(a) ``TripletDataset`` reading the store on disk in extract's layout (``--chunk``,
    default 256: 256-px inner chunks inside 16-patch shards, the store's default zstd level
    (-1 since it replaced 1; docs/benchmarks.md); each member's chunk
    is min(chunk, its size), as ``mlcamsr extract`` writes it);
(b) ``TripletDataset(in_memory=True)``;
(c) BasicSR's ``PairedImageDataset`` way: each sample reads a whole HR PNG (``HR/``) and
    its LR PNG (``LR_bic/``, made with the same bicubic) with Pillow, then crops;
(a4) as (a) with ``PatchGroupedSampler(crops_per_patch=4)``: 4 patches per batch of 16,
    each decoded once for its 4 random crops;
(a') the same pixels in other chunk layouts (``--compare-chunks``, default 1024: one
    chunk per patch, the layout before inner chunks), to show what the layout costs.

Also the single-process cost of the dataset's read alone: one ``arr[i, y:y+144, x:x+144]``
(x2, p = 64 plus the bicubic context) at random even origins, per layout.

The patches are real H&E: 1024-px mosaics of 512-px squares of the real images in
``../shared/data/patches`` (rotated/flipped), so compression behaves like real tissue.

Run: ``python bench/loader.py [--patches 48] [--samples 1024] [--rounds 3] [--chunk 256]
[--compare-chunks 1024,128] [--compare-crc]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "patches"
SOURCES = (
    "tiatoolbox/TCGA-HE-7130-01Z-00-DX1.png",
    "openslide-crops/OS-1-detail.ome.tif",
    "histolab/tissue-level0-7352-11762-7864-12274.png",
    "histolab/tissue-level0-4302-10273-4814-10785.png",
    "histolab/high-nuclei-score-level0.png",
    "histolab/tcga-lung-rgb.png",
)


def real_squares(n: int, size: int = 512, seed: int = 0) -> list[np.ndarray]:
    """``n`` real H&E ``size``-px squares (random position, rotation, flip) from SHARED."""
    rng = np.random.default_rng(seed)
    images = [_read(SHARED / s) for s in SOURCES]
    out = []
    for _ in range(n):
        im = images[int(rng.integers(len(images)))]
        y = int(rng.integers(0, im.shape[0] - size + 1))
        x = int(rng.integers(0, im.shape[1] - size + 1))
        sq = np.rot90(im[y : y + size, x : x + size], int(rng.integers(4)))
        out.append(np.ascontiguousarray(sq[:, ::-1] if rng.integers(2) else sq))
    return out


def _read(path: Path) -> np.ndarray:
    if path.suffix == ".tif":  # OME-TIFF with JPEG tiles: tifffile + imagecodecs
        import tifffile

        return np.asarray(tifffile.imread(path))[..., :3]
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def make_patches(n: int, size: int) -> np.ndarray:
    sq = real_squares(4 * n, size // 2)
    half = size // 2
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        for k, (y, x) in enumerate(((0, 0), (0, half), (half, 0), (half, half))):
            out[i, y : y + half, x : x + half] = sq[4 * i + k]
    return out


def build_store(path: Path, patches: np.ndarray, chunk: int | None = 256, checksum: bool = True) -> None:
    """A store in the extract layout (40x, 20x members, table with a split): inner chunks of
    ``min(chunk, member size)`` px (``None``: one chunk per patch), 16-patch shards, a
    crc32c per chunk (``checksum=False``: without, the format-1 layout)."""
    import pandas as pd

    from mlcamsr.resize import imresize
    from mlcamsr.store import iter_shards, open_store

    n, size = patches.shape[:2]
    st = open_store(path, mode="w")
    for f, name in ((1, "40x"), (2, "20x")):
        data = patches if f == 1 else np.stack([imresize(p, scale=1 / f) for p in patches])
        st.create_member(
            name, n=n, size=size // f, mpp=0.243 * f, scale=f, mag=40.0 / f, kind="real",
            shard_rows=16, chunk=chunk, checksum=checksum,
        )
        for _, start, stop in iter_shards(n, int(st[name].shards[0])):
            st.write_shard(name, start, data[start:stop])
    st.write_table(
        pd.DataFrame(
            {
                "slide": [f"s{i % 4}" for i in range(n)],
                "x": 0,
                "y": 0,
                "status": "kept",
                "reason": "",
                "index": np.arange(n),
                "split": "train",
            }
        )
    )


def crop_read_ms(
    path: Path, reads: int = 40, length: int = 144, seed: int = 0, zarr_slice: bool = False
) -> float:
    """Median ms of one ``40x[i, y:y+length, x:x+length]`` (random even origins), one
    process: the dataset's read alone (``RegionReader.read``), or zarr's own slice."""
    from mlcamsr.store import open_store

    reader = open_store(path).region_reader("40x")
    arr = reader.array
    n, size = int(arr.shape[0]), int(arr.shape[1])
    rng = np.random.default_rng(seed)
    times = []
    for _ in range(reads):
        i = int(rng.integers(n))
        y, x = (int(v) * 2 for v in rng.integers(0, (size - length) // 2 + 1, size=2))
        t0 = time.perf_counter()
        if zarr_slice:
            np.asarray(arr[i, y : y + length, x : x + length, :])
        else:
            reader.read(i, y, x, length, length)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def build_pngs(root: Path, patches: np.ndarray) -> None:
    """BasicSR folders: HR/ (gt) and LR_bic/ (the same bicubic /2), PNG (Pillow defaults)."""
    from PIL import Image

    from mlcamsr.resize import imresize

    (root / "HR").mkdir(parents=True, exist_ok=True)
    (root / "LR_bic").mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(patches):
        Image.fromarray(p).save(root / "HR" / f"{i:04d}.png")
        Image.fromarray(imresize(p, scale=0.5)).save(root / "LR_bic" / f"{i:04d}.png")


class PngPairs:
    """BasicSR ``PairedImageDataset`` (disk backend): read whole HR and LR files, crop."""

    def __init__(self, root: Path, scale: int = 2, patch: int = 64, repeat: int = 1) -> None:
        self.hr = sorted((root / "HR").glob("*.png"))
        self.lr = sorted((root / "LR_bic").glob("*.png"))
        self.scale, self.patch, self.repeat = scale, patch, repeat

    def __len__(self) -> int:
        return len(self.hr) * self.repeat

    def __getitem__(self, i: int) -> dict:
        import torch
        from PIL import Image

        k = i % len(self.hr)
        gt = np.asarray(Image.open(self.hr[k]).convert("RGB"))
        lr = np.asarray(Image.open(self.lr[k]).convert("RGB"))
        p, s = self.patch, self.scale
        rng = np.random.default_rng()
        y, x = rng.integers(0, lr.shape[0] - p + 1, size=2)
        lr = lr[y : y + p, x : x + p]
        gt = gt[y * s : (y + p) * s, x * s : (x + p) * s]
        rot, flip = int(rng.integers(4)), bool(rng.integers(2))
        out = {}
        for key, a in (("lr", lr), ("gt", gt)):
            a = np.rot90(a, rot)
            a = a[:, ::-1] if flip else a
            out[key] = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float() / 255
        out["ref"] = out["gt"]
        return out


def measure(ds, samples: int, batch: int, workers: int, crops_per_patch: int = 0) -> float:
    """Samples/s over ``samples`` items after the first batch (worker start excluded)."""
    from torch.utils.data import DataLoader

    from mlcamsr.dataset import PatchGroupedSampler

    sampler = PatchGroupedSampler(ds, crops_per_patch) if crops_per_patch else None
    dl = DataLoader(
        ds, batch_size=batch, shuffle=sampler is None, sampler=sampler, num_workers=workers,
        persistent_workers=workers > 0, drop_last=True,
    )
    it = iter(dl)
    next(it)
    n, t0 = 0, time.perf_counter()
    while n < samples:
        try:
            b = next(it)
        except StopIteration:
            it = iter(dl)
            continue
        n += len(b["lr"])
    dt = time.perf_counter() - t0
    del it, dl
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", type=int, default=48, help="1024-px patches in the store")
    ap.add_argument("--samples", type=int, default=2048, help="samples timed per loader")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--chunk", type=int, default=256,
                    help="inner chunk side of the (a) store (extract's default 256)")
    ap.add_argument("--compare-chunks", default="1024",
                    help="also time these layouts (a'), e.g. 1024,128 (>= --size: one chunk "
                    "per patch); empty: none")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_loader"))
    ap.add_argument("--keep", action="store_true", help="reuse data built by a previous run")
    ap.add_argument("--compare-crc", action="store_true",
                    help="also (a-): the (a) store without the per-chunk crc32c; prints the ratio")
    args = ap.parse_args()

    from mlcamsr.dataset import TripletDataset

    out = args.out
    other = [int(c) for c in args.compare_chunks.split(",") if c]
    if not (args.keep and (out / "store.zarr").exists()):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        patches = make_patches(args.patches, args.size)
        build_store(out / "store.zarr", patches, chunk=args.chunk)
        build_pngs(out / "png", patches)
        for c in other:
            build_store(out / f"store_chunk{c}.zarr", patches, chunk=c)
        if args.compare_crc:
            build_store(out / "store_nocrc.zarr", patches, chunk=args.chunk, checksum=False)
    repeat = max(1, -(-2 * args.samples // args.patches))
    kw = dict(split="train", scale=2, patch=64, repeat=repeat)
    runs = {
        "(a) store on disk": lambda: TripletDataset(out / "store.zarr", **kw),
        "(a4) disk, PatchGroupedSampler(4)": lambda: TripletDataset(out / "store.zarr", **kw),
        "(b) store in RAM": lambda: TripletDataset(out / "store.zarr", in_memory=True, **kw),
        "(c) PNG folders (BasicSR way)": lambda: PngPairs(out / "png", repeat=repeat),
    }
    def layout(c: int) -> str:
        return "one chunk per patch" if c >= args.size else f"{c}-px inner chunks"

    for c in other:
        runs[f"(a') disk, {layout(c)}"] = lambda c=c: TripletDataset(
            out / f"store_chunk{c}.zarr", **kw
        )
    if args.compare_crc:
        runs["(a-) disk, no chunk crc32c"] = lambda: TripletDataset(out / "store_nocrc.zarr", **kw)
    load0 = os.getloadavg()
    stores = {layout(args.chunk): out / "store.zarr"} | {layout(c): out / f"store_chunk{c}.zarr" for c in other}
    if args.compare_crc:
        stores[f"{layout(args.chunk)} no crc32c"] = out / "store_nocrc.zarr"
    reads: dict[str, list[float]] = {}
    for r in range(5):  # interleaved rounds of single-process crop reads
        for lab, path in stores.items():
            for how, zs in (("RegionReader", False), ("zarr slice", True)):
                key = f"{lab}, {how}"
                reads.setdefault(key, []).append(crop_read_ms(path, seed=r, zarr_slice=zs))
    for name, v in reads.items():
        print(f"crop read (144 px, 1 process) {name:36s} {np.median(v):6.2f} ms median of 5 x 40")
    rounds: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.rounds):  # interleaved rounds: a busy spell hits every loader
        for name, make in runs.items():
            k = 4 if name.startswith("(a4)") else 0
            rounds[name].append(measure(make(), args.samples, args.batch, args.workers, k))
            print(f"round {r + 1} {name:40s} {rounds[name][-1]:8.0f} samples/s", flush=True)
    load1 = os.getloadavg()
    results = {name: float(np.median(v)) for name, v in rounds.items()}
    print(f"{'loader':46s} {'median':>8s} {'best':>8s}  samples/s over {args.rounds} rounds")
    for name, v in rounds.items():
        print(f"{name:46s} {np.median(v):8.0f} {max(v):8.0f}")
    a, c = results["(a) store on disk"], results["(c) PNG folders (BasicSR way)"]
    print(f"(a)/(c) = {a / c:.1f}x (medians); load average before {load0[0]:.2f}, after "
          f"{load1[0]:.2f} on {os.cpu_count()} CPUs")
    if args.compare_crc:
        nocrc = results["(a-) disk, no chunk crc32c"]
        lab = layout(args.chunk)
        r_read = np.median(reads[f"{lab}, RegionReader"]) / np.median(reads[f"{lab} no crc32c, RegionReader"])
        print(f"crc32c per chunk: samples/s with / without = {a / nocrc:.3f}; crop read ms with / "
              f"without = {r_read:.3f}")
    print(json.dumps({"samples_per_s": rounds, "crop_read_ms": reads,
                      "loadavg_before": load0, "loadavg_after": load1,
                      "args": {k: str(v) for k, v in vars(args).items()}}))


if __name__ == "__main__":
    main()
