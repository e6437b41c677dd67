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
    assert r.attrs["params"] == {"size": 32} and r.attrs["format_version"] == 3


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
    with pytest.raises(StoreError, match=r"member a row 5 is damaged \(shard file a/c/1/0/0/0 is missing\)"):
        r.read(5, 0, 0, 4, 4)  # a reader asks for kept rows: never silent zeros
    for _ in range(60):
        i = int(rng.choice([0, 1, 2, 3, 8]))
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
    reader = r.region_reader("40x")  # remote: the shard's bytes through the store, checked
    np.testing.assert_array_equal(reader.read(3, 2, 1, 4, 5), block[1, 2:6, 1:6])
    assert reader.chunks_read == 1
    with pytest.raises(StoreError, match="40x row 0 is damaged"):
        reader.read(0, 0, 0, 2, 2)
