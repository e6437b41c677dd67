"""The shard byte layout (:mod:`mlcamsr.shards`): byte identity with zarr's own writer,
a crc32c per inner chunk, damage named by store, member and row, old stores readable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlcamsr import shards
from mlcamsr.errors import StoreError
from mlcamsr.store import open_store

ROOT = Path(__file__).resolve().parents[1]


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


def test_write_shard_from_a_row_list_writes_the_same_bytes(tmp_path):
    """extract hands its kept rows as a list (None = not kept): the same shard file as the
    zero-filled block, on the own writer and on zarr's path (a layout it does not handle)."""
    s = open_store(tmp_path / "s.zarr", "w")
    block = np.random.default_rng(2).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    block[1] = 0
    rows = [block[0], None, block[2], block[3]]
    for name in ("a", "b"):
        s.create_member(name, n=8, size=16, mpp=1, scale=1, mag=1, shard_rows=4, chunk=8)
    s.write_shard("a", 4, block)
    s.write_shard("b", 4, rows)
    assert s.get_bytes("a/c/1/0/0/0") == s.get_bytes("b/c/1/0/0/0")
    np.testing.assert_array_equal(s["b"][4:8], block)
    assert not s.write_shard("b", 0, [None] * 4).bytes  # nothing kept: no file
    with pytest.raises(ValueError, match="the member's are"):
        s.write_shard("b", 4, [block[0, :8], None, None, None])
    with pytest.raises(ValueError, match="dtype int64"):  # a cast would wrap 300 to 44 silently
        s.write_shard("b", 4, [block[0].astype(np.int64), None, None, None])
    with pytest.raises(ValueError, match="whole shard"):  # rows 4:8 of a 6-row array
        s6 = open_store(tmp_path / "s6.zarr", "w")
        s6.create_member("c", n=6, size=16, mpp=1, scale=1, mag=1, shard_rows=4, chunk=8)
        s6.write_shard("c", 4, block)
    z = open_store(tmp_path / "s.zarr", "r+")  # a layout the own writer does not handle: zarr's
    z.group.create_array("c", shape=(4, 16, 16, 3), chunks=(2, 16, 16, 3), dtype="uint8")
    z.write_shard("c", 0, [block[0], None])
    np.testing.assert_array_equal(z["c"][:2], block[:2] * np.array([1, 0])[:, None, None, None])


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


def _member(tmp_path, crc=True, n=6, size=32, chunk=16):
    s = open_store(tmp_path / "s.zarr", "w")
    if crc:
        s.create_member("40x", n=n, size=size, mpp=0.243, scale=1, mag=40, shard_rows=4, chunk=chunk)
    else:  # a format-version-1 member: bytes + zstd, no per-chunk crc32c
        from zarr.codecs import BytesCodec, ZstdCodec

        s.group.create_array(
            "40x", shape=(n, size, size, 3), dtype="uint8", chunks=(1, chunk, chunk, 3),
            shards=(4, -(-size // chunk) * chunk, -(-size // chunk) * chunk, 3), serializer=BytesCodec(), compressors=ZstdCodec(level=1),
            fill_value=0, config={"write_empty_chunks": False},
        )
        s.update_attrs(format_version=1, members=[{"name": "40x", "size": size, "mpp": 0.243, "scale": 1, "mag": 40}])
    block = np.random.default_rng(3).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    return s, block


def test_members_carry_a_crc32c_per_inner_chunk(tmp_path):
    s, _ = _member(tmp_path)
    inner = s["40x"].metadata.codecs[0].to_dict()["configuration"]["codecs"]
    assert [c["name"] for c in inner] == ["bytes", "zstd", "crc32c"]
    lay = shards.layout_of(s["40x"])
    assert lay is not None and lay.crc and (lay.ch, lay.rows, lay.ny) == (16, 4, 2)


def test_a_flipped_byte_is_an_error_naming_store_member_and_row(tmp_path):
    s, block = _member(tmp_path)
    rec = s.write_shard("40x", 0, block)
    path = tmp_path / "s.zarr" / "40x/c/0/0/0/0"
    data = bytearray(path.read_bytes())
    assert rec.bytes == len(data) and rec.crc32c == shards.crc32c(bytes(data))
    sf = shards.ShardFile.from_bytes(shards.layout_of(s["40x"]), bytes(data))
    off, n = (int(v) for v in sf.index[2, 1, 0])
    data[off + n // 2] ^= 0x55  # inside row 2's chunk (1, 0)
    path.write_bytes(bytes(data))
    r = open_store(tmp_path / "s.zarr").region_reader("40x")
    np.testing.assert_array_equal(r.read(1, 0, 0, 32, 32), block[1])  # other rows read fine
    with pytest.raises(StoreError) as err:
        r.read(2, 0, 0, 32, 32)
    msg = str(err.value)
    assert "s.zarr" in msg and "member 40x row 2" in msg and "crc32c" in msg and "\n" not in msg
    assert "mlcamsr verify" in msg
    with pytest.raises(ValueError, match="checksum"):  # zarr's own reader agrees: a standard codec
        s["40x"][2]
    bad = shards.check_shard(shards.layout_of(s["40x"]), bytes(data), range(4))
    assert list(bad) == [2]


def test_random_bytes_for_a_shard_name_the_rows_not_a_zstd_traceback(tmp_path):
    s, block = _member(tmp_path)
    s.write_shard("40x", 0, block)
    path = tmp_path / "s.zarr" / "40x/c/0/0/0/0"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, path.stat().st_size, dtype=np.uint8).tobytes())
    r = open_store(tmp_path / "s.zarr").region_reader("40x")
    with pytest.raises(StoreError, match="member 40x row 3 is damaged .*index fails its crc32c"):
        r[3]


@pytest.mark.parametrize("size, chunk", [(32, 16), (20, 8)])
def test_format_1_members_without_chunk_crc_still_read_and_write(tmp_path, size, chunk):
    """Stores made before the crc32c codec: same reader, and write_shard stays zarr's bytes."""
    s, block = _member(tmp_path, crc=False, size=size, chunk=chunk)
    lay = shards.layout_of(s["40x"])
    assert lay is not None and not lay.crc
    s.group.create_array(
        "b", shape=s["40x"].shape, dtype="uint8", chunks=s["40x"].chunks, shards=s["40x"].shards,
        compressors=s["40x"].compressors, fill_value=0, config={"write_empty_chunks": False},
    )
    s.write_shard("40x", 0, block)
    s.group["b"][0:4] = block
    assert s.get_bytes("40x/c/0/0/0/0") == s.get_bytes("b/c/0/0/0/0")
    np.testing.assert_array_equal(open_store(tmp_path / "s.zarr").region_reader("40x")[2], block[2])


def test_only_the_shards_module_imports_zarr_core():
    """zarr's private modules (and its shard byte layout) live in one place."""
    users = []
    for d in ("mlcamsr", "cwtnet", "cli", "bench"):
        for f in (ROOT / d).rglob("*.py"):
            if "zarr.core" in f.read_text() and f.name != "shards.py":
                users.append(str(f.relative_to(ROOT)))
    assert users == []


def test_encode_shard_writes_each_frame_and_its_crc32c_as_parts_of_their_own(tmp_path):
    """The writer hands zstd's frame and its 4-byte crc32c to writev as separate parts
    (no concatenated copy of every compressed byte); joined they are zarr's shard."""
    s = open_store(tmp_path / "s.zarr", "w")
    block = np.random.default_rng(2).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    for name in ("a", "b"):
        s.create_member(name, n=2, size=16, mpp=1, scale=1, mag=1, shard_rows=2, chunk=8)
    layout = shards.layout_of(s["a"])
    assert layout is not None and layout.crc
    parts = shards.encode_shard(layout, block, (16, 16))
    frames, tail = parts[:-2], parts[-2:]
    assert len(frames) == 2 * 2 * 4  # 2 rows x 4 inner chunks, each frame + its crc32c
    assert all(len(c) == 4 and shards.crc32c(f).to_bytes(4, "little") == c
               for f, c in zip(frames[::2], frames[1::2]))
    assert len(tail[1]) == 4
    s["b"][:] = block
    assert b"".join(parts) == s.get_bytes("b/c/0/0/0/0")
