"""Training from a store on a real S3 endpoint (moto server on 127.0.0.1): DataLoader
workers under fork and spawn, the local shard cache, torchrun (issue 11)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from mlcamsr.dataset import TripletDataset
from mlcamsr.split import split as split_store


@pytest.fixture(scope="module")
def split_local(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("split") / "st.zarr"
    shutil.copytree(small_store, out)
    split_store(out, ratio="1:1")
    return out


def upload(s3_endpoint, local: Path, key: str) -> str:
    """The local store's files as objects: the same store, on S3."""
    s3_endpoint.bucket("train")
    fs = s3_endpoint.fs()
    fs.put(str(local), f"train/{key}", recursive=True)
    return f"s3://train/{key}"


@pytest.fixture(scope="module")
def s3_store(s3_endpoint, split_local: Path) -> str:
    return upload(s3_endpoint, split_local, "st.zarr")


def _batches(ds: TripletDataset, ctx: str | None) -> list[dict]:
    workers = 0 if ctx is None else 2
    dl = DataLoader(ds, batch_size=4, num_workers=workers, multiprocessing_context=ctx, timeout=120 if workers else 0)
    return list(dl)


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_dataloader_workers_read_s3_store_like_local(ctx: str, s3_store: str, split_local: Path) -> None:
    """The dataset opened (and read) in the parent first, then 2 workers under fork or spawn:
    no fsspec/aiohttp deadlock (each worker opens its own filesystem), same tensors."""
    local = TripletDataset(split_local, split="train", patch=16, augment=False)
    remote = TripletDataset(s3_store, split="train", patch=16, augment=False)
    remote[0]  # the parent's event loop and session exist before the workers start
    want, got = _batches(local, None), _batches(remote, ctx)
    assert len(want) == len(got) > 0
    for a, b in zip(want, got, strict=True):
        for k in ("lr", "ref", "gt", "row"):
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_cache_dir_epoch_two_reads_locally(s3_endpoint, split_local: Path, tmp_path: Path) -> None:
    url = upload(s3_endpoint, split_local, "cached.zarr")
    ds = TripletDataset(url, split="train", patch=16, augment=False, cache_dir=tmp_path / "cache")
    epoch1 = [ds[i] for i in range(len(ds))]
    readers = ds._open()
    fetched = {m: r.shards_fetched for m, r in readers.items()}
    assert all(v > 0 for v in fetched.values())
    # the remote shards are gone: epoch 2 can only come from the local copies
    fs = s3_endpoint.fs()
    for m in readers:
        fs.rm(f"train/cached.zarr/{m}/c", recursive=True)
    epoch2 = [ds[i] for i in range(len(ds))]
    assert {m: r.shards_fetched for m, r in readers.items()} == fetched
    for a, b in zip(epoch1, epoch2, strict=True):
        torch.testing.assert_close(a["gt"], b["gt"], rtol=0, atol=0)
        torch.testing.assert_close(a["lr"], b["lr"], rtol=0, atol=0)
    # and they equal the local store's samples
    local = TripletDataset(split_local, split="train", patch=16, augment=False)
    torch.testing.assert_close(local[0]["gt"], epoch2[0]["gt"], rtol=0, atol=0)


@pytest.mark.slow
def test_torchrun_two_processes_train_from_s3(s3_store: str, tmp_path: Path) -> None:
    """``torchrun --nproc-per-node 2`` (gloo, CPU) training from the S3 store, DataLoader
    workers on, through the chunk cache."""
    from tests.test_train import LAST, _torchrun_2, load_checkpoint

    args = ["--zarr", s3_store, "--steps", "2", "--batch-size", "2", "--patch", "12", "--blocks", "1",
            "--channels", "8", "--val-every", "0", "--val-images", "1", "--num-workers", "1",
            "--no-progress", "--arch", "edsr", "--cache-dir", str(tmp_path / "cache")]
    r = _torchrun_2(["-m", "cli.train", *args, "--out", str(tmp_path / "ddp")], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_checkpoint(tmp_path / "ddp" / LAST)["step"] == 2
    assert any((tmp_path / "cache").rglob("c/*")), "nothing cached"
