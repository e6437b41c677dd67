"""The store layer on its own: layout, table round trip, lock, modes."""

from __future__ import annotations

import json
import socket

import numpy as np
import pandas as pd
import pytest

from mlcamsr.errors import StoreError
from mlcamsr.store import LOCK_NAME, open_store


def test_member_table_attrs_round_trip(tmp_path):
    s = open_store(tmp_path / "s.zarr", "w")
    arr = s.create_member("40x", n=20, size=32, mpp=0.243, scale=1, mag=40, shard_rows=8)
    block = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    block[2] = 0
    arr[8:16] = block
    s.write_table(pd.DataFrame({"slide": ["a"] * 20, "x": np.arange(20)}))
    s.update_attrs(params={"size": 32})

    r = open_store(tmp_path / "s.zarr")
    assert r.members == ["40x"]
    assert r.member_info("40x")["mpp"] == pytest.approx(0.243)
    assert r["40x"].shape == (20, 32, 32, 3) and r["40x"].dtype == np.uint8
    np.testing.assert_array_equal(r["40x"][8:16], block)
    assert not r["40x"][0].any()  # unwritten slots read as fill 0
    assert list(r.table.x) == list(range(20))
    assert r.attrs["params"] == {"size": 32} and r.attrs["format_version"] == 1


def test_lock_refuses_second_writer_and_takes_over_stale(tmp_path):
    s = open_store(tmp_path / "s.zarr", "w")
    with s.lock():
        with pytest.raises(StoreError, match="in use by another run"):
            open_store(tmp_path / "s.zarr", "r+").lock().acquire()
    # a lock left by a dead process on this host is stale
    stale = {"pid": 999999999, "host": socket.gethostname()}
    (tmp_path / "s.zarr" / LOCK_NAME).write_text(json.dumps(stale))
    with s.lock():
        pass
    assert not (tmp_path / "s.zarr" / LOCK_NAME).exists()


def test_missing_or_foreign_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        open_store(tmp_path / "nope.zarr")
    import zarr

    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(StoreError, match="not an MLCamSR store"):
        open_store(tmp_path / "plain.zarr")
    open_store(tmp_path / "s.zarr", "w")
    with pytest.raises(StoreError, match="read-only"):
        open_store(tmp_path / "s.zarr", "r").write_table(pd.DataFrame())


@pytest.mark.parametrize(
    "size, chunk",
    [(16, None), (16, 8), (16, 4), (20, 8)],  # whole patch; 2x2 and 4x4 inner; padded edges
)
def test_write_shard_is_byte_identical_to_zarr(tmp_path, size, chunk):
    s = open_store(tmp_path / "s.zarr", "w")
    block = np.random.default_rng(1).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    block[1] = 0
    block[2, :8, :8] = 0  # an empty inner chunk inside a written patch
    for name in ("a", "b"):
        s.create_member(name, n=10, size=size, mpp=1, scale=1, mag=1, shard_rows=4, chunk=chunk)
    c = size if chunk is None else chunk
    assert s["a"].chunks == (1, c, c, 3) and s["a"].shards[:1] == (4,)
    assert s.member_info("a")["chunk"] == c
    s.write_shard("a", 4, block)
    s["b"][4:8] = block
    s.write_shard("a", 8, block[:2])  # the last, partial shard
    s["b"][8:10] = block[:2]
    for key in ("c/1/0/0/0", "c/2/0/0/0"):
        assert s.get_bytes(f"a/{key}") == s.get_bytes(f"b/{key}")
    np.testing.assert_array_equal(open_store(tmp_path / "s.zarr")["a"][4:8], block)
    s.write_shard("a", 4, np.zeros_like(block))  # all empty: the shard is removed
    assert s.get_bytes("a/c/1/0/0/0") is None and not s["a"][4:8].any()
    with pytest.raises(ValueError, match="whole shard"):
        s.write_shard("a", 2, block)
    with pytest.raises(ValueError, match="the member's are"):
        s.write_shard("a", 4, block[:, :8])


def test_write_shard_many_inner_chunks_real_pixels(tmp_path, shared_data):
    """More chunks per shard than one writev takes (IOV_MAX 1024), real H&E: zarr's bytes."""
    from PIL import Image

    im = np.asarray(Image.open(shared_data / "patches/histolab/tcga-lung-rgb.png").convert("RGB"))
    block = np.stack([im[k * 16 : k * 16 + 128, k * 19 : k * 19 + 128] for k in range(20)])
    s = open_store(tmp_path / "s.zarr", "w")
    for name in ("a", "b"):
        s.create_member(name, n=20, size=128, mpp=1, scale=1, mag=1, shard_rows=20, chunk=16)
    s.write_shard("a", 0, block)  # 20 x 8 x 8 = 1280 inner chunks in one shard
    s["b"][:] = block
    assert s.get_bytes("a/c/0/0/0/0") == s.get_bytes("b/c/0/0/0/0")
    np.testing.assert_array_equal(s["a"][:], block)


@pytest.mark.parametrize("size, chunk", [(40, 16), (32, None)])
def test_region_reader_equals_zarr_slices(tmp_path, size, chunk):
    """The dataset's reader: padded edge chunks, empty chunks, empty shards, a rewritten
    shard (index cache), a remote store (zarr path) -- always what zarr's slice gives."""
    s = open_store(tmp_path / "s.zarr", "w")
    s.create_member("a", n=9, size=size, mpp=1, scale=1, mag=1, shard_rows=4, chunk=chunk)
    rng = np.random.default_rng(2)
    block = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    block[1] = 0
    block[2, :16, :16] = 0
    s.write_shard("a", 0, block)
    s.write_shard("a", 8, block[:1])  # rows 4..7: no shard file at all
    r = open_store(tmp_path / "s.zarr").region_reader("a")
    arr = r.array
    for _ in range(60):
        i = int(rng.integers(9))
        y, x = (int(v) for v in rng.integers(-4, size, size=2))
        h, w = (int(v) for v in rng.integers(1, size + 8, size=2))
        want = np.asarray(arr[i, max(0, y) : y + h, max(0, x) : x + w, :])
        np.testing.assert_array_equal(r.read(i, y, x, h, w), want)
    assert r.chunks_read > 0 and r.shape == arr.shape and r.chunks == arr.chunks
    s.write_shard("a", 0, block[::-1].copy())  # rewritten: the cached index is refreshed
    np.testing.assert_array_equal(r.read(0, 0, 0, size, size), block[3])
    np.testing.assert_array_equal(r[3], block[0])


def test_info_summary_reports_the_chunking(tmp_path):
    from mlcamsr.store import store_summary

    s = open_store(tmp_path / "s.zarr", "w")
    s.create_member("40x", n=4, size=64, mpp=0.243, scale=1, mag=40, shard_rows=2, chunk=32)
    s.create_member("20x", n=4, size=32, mpp=0.486, scale=2, mag=20, shard_rows=2, chunk=32)
    members = {m["name"]: m for m in store_summary(tmp_path / "s.zarr")["members"]}
    assert members["40x"]["chunk"] == 32 and members["20x"]["chunk"] == 32
    assert members["40x"]["shard_rows"] == 2


def test_fsspec_url_round_trip():
    s = open_store("memory://mlcamsr-test/s.zarr", "w")
    s.create_member("40x", n=4, size=8, mpp=0.243, scale=1, mag=40, shard_rows=2)
    block = np.full((2, 8, 8, 3), 7, np.uint8)
    s.write_shard("40x", 2, block)
    s.write_table(pd.DataFrame({"slide": ["a"] * 4}))
    r = open_store("memory://mlcamsr-test/s.zarr")
    np.testing.assert_array_equal(r["40x"][2:4], block)
    assert len(r.table) == 4 and r.local_root is None
    reader = r.region_reader("40x")  # remote: reads through zarr
    np.testing.assert_array_equal(reader.read(3, 2, 1, 4, 5), block[1, 2:6, 1:6])
    assert reader.chunks_read == 0
