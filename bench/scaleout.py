"""Scale-out: extract on a separate-process dask cluster, local vs S3; loading from S3.

One run, side by side, on this machine:

- extract triplets/s (40x/20x/10x, QC, Zarr write) with ``--scheduler`` on a real
  cluster started here (``dask scheduler`` + ``dask worker`` processes, 127.0.0.1):
  (L1) 1 worker, slides and store on the local disk;
  (S1) 1 worker, slides and store on S3 (moto's server on 127.0.0.1);
  (S2) 2 workers, slides and store on S3.
  Ratios S1/L1 (cost of the object store) and S2/S1 (second worker process).
- ``TripletDataset`` samples/s (one process, ``augment=True`` random crops, the
  extracted store): local store; S3 store without cache; S3 with ``cache_dir`` epoch 1
  (fills the cache) and epoch 2 (reads it). Ratios against the local store.

moto is an in-process Python server, far slower per request than S3 or MinIO; the S3
figures bound the client-side cost from below, not a real bucket's throughput. The
machine load is printed (the 2 cores here are shared). Usage::

    python bench/scaleout.py [--n 48] [--size 1024] [--slide-size 8192] [--samples 400] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _du(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48, help="patch centres (default 48)")
    ap.add_argument("--size", type=int, default=1024, help="finest member px (default 1024)")
    ap.add_argument("--slide-size", type=int, default=8192, help="synthetic slide side px")
    ap.add_argument("--samples", type=int, default=400, help="dataset samples per measurement")
    ap.add_argument("--patch", type=int, default=64, help="LR patch px of the dataset (x2)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; medians (default 2)")
    args = ap.parse_args()

    import numpy as np

    from mlcamsr.dataset import TripletDataset
    from mlcamsr.extract import extract
    from mlcamsr.split import split
    from mlcamsr.synth import synth_slides
    from tests.remote_fixtures import kill, start_dask_cluster, start_moto

    tmp = Path(tempfile.mkdtemp(prefix="mlcamsr-scaleout-"))
    procs = []
    try:
        slides = tmp / "slides"
        synth_slides(slides, n_slides=1, size=(args.slide_size, args.slide_size), seed=0, n_coords=args.n)
        coords = slides / "coords.csv"
        moto, url = start_moto(tmp)
        procs.append(moto)
        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": url})
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("bench")
        for f in slides.glob("*.tif"):
            fs.put(str(f), f"bench/slides/{f.name}")
        print(f"machine: {os.cpu_count()} cores, load {_load()}; {args.n} triplets of "
              f"{args.size}/{args.size // 2}/{args.size // 4} px from one {args.slide_size}-px synthetic slide")

        # configurations interleaved, --rounds times, medians: the shared machine's load moves
        configs = (
            ("L1", 1, str(slides), "local"),
            ("S1", 1, "s3://bench/slides/", "s3"),
            ("S2", 2, "s3://bench/slides/", "s3"),
        )
        runs: dict[str, list[float]] = {c[0]: [] for c in configs}
        for r in range(args.rounds):
            for label, workers, src, kind in configs:
                out = str(tmp / f"{label}-{r}.zarr") if kind == "local" else f"s3://bench/{label}-{r}.zarr"
                cluster = start_dask_cluster(tmp / f"dask-{label}-{r}", n_workers=workers)
                try:
                    t0 = time.perf_counter()
                    res = extract(src, coords, out, size=args.size, scheduler=cluster.address,
                                  progress=False, shard_rows=4)
                    dt = time.perf_counter() - t0
                finally:
                    cluster.close()
                runs[label].append(res.n_rows / dt)
                print(f"  round {r + 1} ({label}) {workers} worker process(es), {kind}: {res.n_rows} rows "
                      f"in {dt:.1f} s = {res.n_rows / dt:.2f} triplets/s (load {_load()})")
        rates = {k: float(np.median(v)) for k, v in runs.items()}
        for label, workers, _, kind in configs:
            print(f"({label}) {workers} worker process(es), {kind}: median {rates[label]:.2f} triplets/s")
        print(f"extract ratios: S1/L1 = {rates['S1'] / rates['L1']:.2f} (S3 vs local, 1 worker); "
              f"S2/S1 = {rates['S2'] / rates['S1']:.2f} (2 vs 1 worker processes, S3)")

        local = tmp / "L1-0.zarr"
        split(local, ratio="5:1", by="patch")
        fs.put(str(local), "bench/ds.zarr", recursive=True)

        def sps(ds: TripletDataset) -> float:
            rng = np.random.default_rng(0)
            idx = rng.integers(0, len(ds), args.samples)
            t0 = time.perf_counter()
            for i in idx:
                ds[int(i)]
            return args.samples / (time.perf_counter() - t0)

        kw = {"split": "train", "scale": 2, "patch": args.patch}
        local_ds = TripletDataset(local, **kw)
        remote_ds = TripletDataset("s3://bench/ds.zarr", **kw)
        cached = TripletDataset("s3://bench/ds.zarr", cache_dir=tmp / "cache", **kw)
        sps(local_ds)  # warm-up: imports, resize weights, page cache of the local shards
        e1 = sps(cached)  # epoch 1 through the cache: fetches the shards the crops touch
        got: dict[str, list[float]] = {"local": [], "s3": [], "cache2": []}
        for _ in range(args.rounds):
            got["local"].append(sps(local_ds))
            got["s3"].append(sps(remote_ds))
            got["cache2"].append(sps(cached))  # epoch 2+: local copies
        med = {k: float(np.median(v)) for k, v in got.items()}
        loc = med["local"]
        print(f"dataset samples/s ({args.samples} random x2 crops of {args.patch} px, one process, "
              f"median of {args.rounds} interleaved rounds): local {loc:.1f} (runs "
              f"{', '.join(f'{v:.1f}' for v in got['local'])}); S3 no cache {med['s3']:.1f} "
              f"({med['s3'] / loc:.2f}x local); S3 + cache epoch 1 {e1:.1f} ({e1 / loc:.2f}x, once), "
              f"epoch 2 {med['cache2']:.1f} ({med['cache2'] / loc:.2f}x) (load {_load()})")
        n_trip = len(coords.read_text().splitlines()) - 1
        print(f"store: {_du(local) / 2**20:.1f} MiB for {n_trip} "
              "triplets")
    finally:
        for p in procs:
            kill(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
