"""Zarr v3 shard files of the member arrays, byte for byte: the one module that knows them.

A member array (:meth:`mlcamsr.store.Store.create_member`) is ``uint8 (N, H, W, 3)`` with
one codec, ``sharding_indexed``: shards of ``rows`` whole patches, inner chunks
``(1, ch, cw, 3)``, inner codecs ``bytes`` + ``zstd`` (+ ``crc32c`` from format version 2),
index codecs ``bytes`` (little endian) + ``crc32c`` at the end of the file. One shard file
is therefore::

    chunk, chunk, ...            each: zstd frame [+ crc32c of the frame, uint32 LE]
    index                        (rows, ny, nx, 2) uint64 LE: (offset, length) per chunk,
                                 2**64-1 for an empty chunk (all fill value 0)
    crc32c(index)                uint32 LE

with the chunks in zarr's Morton order. This module writes such files faster than zarr's
generic path (:func:`encode_shard`, checked byte for byte against zarr's own writer in
``tests/test_shards.py``), reads single chunks of them (:class:`ShardFile`) and checks
them (:func:`check_shard`). It is the only module that imports ``zarr.core`` (the raw
key I/O helpers at the end, and zarr's Morton order); a zarr upgrade that changes the
format is caught by that test.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import google_crc32c
import numpy as np
from numcodecs import Zstd
from zarr.core.buffer import default_buffer_prototype
from zarr.core.indexing import morton_order_iter
from zarr.core.sync import sync

__all__ = [
    "EMPTY",
    "ChunkError",
    "Layout",
    "Rows",
    "ShardFile",
    "check_shard",
    "crc32c",
    "crc32c_parts",
    "encode_shard",
    "first_line",
    "read_index",
    "layout_of",
    "shard_key",
    "store_delete",
    "store_delete_dir",
    "store_get",
    "store_list_prefix",
    "store_set",
    "store_size",
]

CRC32C_RESIDUE = 0x48674BC7
"""CRC-32C of any bytes followed by their own CRC-32C, little endian (the check residue)."""

EMPTY = np.iinfo(np.uint64).max
"""Index entry (offset and length) of an empty chunk."""


class ChunkError(ValueError):
    """One inner chunk (or a shard's index) does not check out: ``row`` in the shard or None."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli) of ``data``, as zarr's ``crc32c`` codec computes it."""
    return int(google_crc32c.value(bytes(data) if isinstance(data, memoryview) else data))


def crc32c_parts(parts: Iterable[bytes]) -> int:
    """CRC-32C of the concatenation of ``parts`` (without joining them)."""
    crc = 0
    for part in parts:
        crc = int(google_crc32c.extend(crc, part))
    return crc


def _crc_bytes(data: bytes) -> bytes:
    return np.array([google_crc32c.value(data)], dtype="<u4").tobytes()


@dataclass(frozen=True)
class Layout:
    """The shard layout of a member array.

    Attributes:
        level: zstd level of the inner chunks.
        ch, cw: inner chunk sides (px).
        rows: patches per shard.
        ny, nx: inner chunks per patch along y and x.
        crc: inner chunks end in a crc32c (format version 2) or not (version 1).
        order: ``(row, cy, cx, 0)`` of every chunk slot of a shard in zarr's Morton order.
    """

    level: int
    ch: int
    cw: int
    rows: int
    ny: int
    nx: int
    crc: bool
    order: tuple[tuple[int, ...], ...]

    @property
    def index_bytes(self) -> int:
        """Size of the index at the end of a shard file, without its crc32c."""
        return self.rows * self.ny * self.nx * 16


def layout_of(arr: Any) -> Layout | None:
    """The :class:`Layout` of zarr array ``arr`` when it has one of the layouts
    :meth:`mlcamsr.store.Store.create_member` makes, else ``None`` (zarr's generic path)."""
    try:
        codecs = [c.to_dict() for c in arr.metadata.codecs]
        if len(codecs) != 1 or codecs[0]["name"] != "sharding_indexed" or arr.dtype != np.uint8:
            return None
        conf = codecs[0]["configuration"]
        inner = [c["name"] for c in conf["codecs"]]
        chunk = [int(v) for v in conf["chunk_shape"]]
        shard = [int(v) for v in arr.metadata.chunk_grid.chunk_shape]
        shape = [int(v) for v in arr.shape]
        if (
            len(shape) != 4
            or shape[3] != 3
            or len(chunk) != 4
            or chunk[0] != 1
            or chunk[3] != 3
            or shard[3] != 3
            or any(shard[d] != -(-shape[d] // chunk[d]) * chunk[d] for d in (1, 2))
            or conf.get("index_location", "end") != "end"
            or inner not in (["bytes", "zstd"], ["bytes", "zstd", "crc32c"])
            or conf["codecs"][1]["configuration"].get("checksum")
            or [c["name"] for c in conf["index_codecs"]] != ["bytes", "crc32c"]
            or conf["index_codecs"][0].get("configuration", {}).get("endian", "little") != "little"
            or arr.metadata.fill_value != 0
        ):
            return None
        ny, nx = shard[1] // chunk[1], shard[2] // chunk[2]
        order = tuple(morton_order_iter((shard[0], ny, nx, 1)))  # zarr's own chunk order
        return Layout(
            level=int(conf["codecs"][1]["configuration"]["level"]),
            ch=chunk[1],
            cw=chunk[2],
            rows=shard[0],
            ny=ny,
            nx=nx,
            crc=len(inner) == 3,
            order=order,
        )
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return None


Rows: TypeAlias = "np.ndarray | Sequence[np.ndarray | None]"
"""One shard's rows: an ``(n, H, W, 3)`` uint8 block, or ``n`` rows each ``(H, W, 3)`` or
``None`` (empty, read back as zeros). The list form spares extract a zeroed block and a copy
of every kept patch."""


def shard_key(arr: Any, shard: int) -> str:
    """The store key of shard ``shard`` of member array ``arr`` (``"40x/c/3/0/0/0"``)."""
    return f"{arr.basename}/" + arr.metadata.encode_chunk_key((int(shard), 0, 0, 0))


def encode_shard(layout: Layout, block: Rows, shape: tuple[int, int]) -> list[bytes]:
    """The bytes zarr writes for one shard holding ``block`` (``(n, H, W, 3)`` uint8, or a
    sequence of ``n`` such ``(H, W, 3)`` rows with ``None`` for an empty one;
    ``n <= layout.rows``; ``shape`` = ``(H, W)``): the parts to write in order (each
    chunk's zstd frame, then its crc32c as a part of its own; the index and its crc32c),
    or ``[]`` when every chunk is empty (zarr then deletes the shard). Joined, the parts
    are the shard file; a chunk's frame and its checksum are never concatenated here
    (that copy of every compressed byte cost a fresh buffer per chunk).

    Inner chunks that are all zero are left empty (zarr's ``write_empty_chunks=False``);
    edge chunks are padded with the fill value 0."""
    codec = Zstd(level=layout.level)
    ch, cw, ny, nx = layout.ch, layout.cw, layout.ny, layout.nx
    h, w = shape
    index = np.full((layout.rows, ny, nx, 1, 2), EMPTY, dtype="<u8")
    encoded: dict[tuple[int, int, int], tuple[bytes, ...]] = {}
    buf = None  # one (ny, nx, ch, cw, 3) buffer reused for every row: no fresh pages per row
    for r in range(len(block)):
        row = block[r]
        if row is None:
            continue
        patch = np.asarray(row, dtype=np.uint8)
        if not patch.any():
            continue  # an empty patch: no chunk stored
        if ny == 1 and nx == 1 and patch.shape[:2] == (ch, cw):
            tiles = np.ascontiguousarray(patch).reshape(1, 1, ch, cw, 3)
        else:
            if patch.shape[:2] != (ny * ch, nx * cw):  # edge chunks: padded with the fill value
                full = np.zeros((ny * ch, nx * cw, 3), dtype=np.uint8)
                full[:h, :w] = patch
                patch = full
            if buf is None:
                buf = np.empty((ny, nx, ch, cw, 3), dtype=np.uint8)
            np.copyto(buf, patch.reshape(ny, ch, nx, cw, 3).transpose(0, 2, 1, 3, 4))
            tiles = buf
        for cy in range(ny):
            for cx in range(nx):
                tile = tiles[cy, cx]
                if tile.any():
                    data = codec.encode(tile)
                    data = data if isinstance(data, bytes) else bytes(data)
                    encoded[(r, cy, cx)] = (data, _crc_bytes(data)) if layout.crc else (data,)
    parts: list[bytes] = []
    offset = 0
    for r, cy, cx, _ in layout.order:
        chunk = encoded.get((r, cy, cx))  # absent: empty, or a row past the array's end
        if chunk is None:
            continue
        n = sum(len(b) for b in chunk)
        index[r, cy, cx, 0] = (offset, n)
        parts.extend(chunk)
        offset += n
    if not parts:
        return []
    idx = index.tobytes()
    return [*parts, idx, _crc_bytes(idx)]


class ShardFile:
    """Reads single inner chunks of one shard file, checking every checksum.

    ``read_at(offset, n)`` returns ``n`` bytes at ``offset`` of the file (``os.pread`` on
    a local file, or slices of bytes already read); ``size`` is the file's length;
    ``index`` an index already read by :func:`read_index` (else it is read now).
    Raises :class:`ChunkError` for an index that fails its crc32c or points outside the
    file, and, from :meth:`chunk`, for a chunk that fails its crc32c or does not decode.
    """

    def __init__(self, layout: Layout, size: int, read_at: Any, index: np.ndarray | None = None) -> None:
        self.layout = layout
        self.size = int(size)
        self._read_at = read_at
        self._zstd = Zstd()
        self.index = read_index(layout, self.size, read_at) if index is None else index

    @classmethod
    def from_bytes(cls, layout: Layout, data: bytes) -> ShardFile:
        view = memoryview(data)
        return cls(layout, len(data), lambda off, n: bytes(view[off : off + n]))

    def stored(self, r: int, cy: int, cx: int) -> bool:
        """Whether chunk ``(cy, cx)`` of row ``r`` (in the shard) is stored (not empty)."""
        return int(self.index[r, cy, cx, 0]) != EMPTY

    def chunk(self, r: int, cy: int, cx: int) -> np.ndarray | None:
        """Chunk ``(cy, cx)`` of row ``r`` as ``(ch, cw, 3)`` uint8, or ``None`` when empty."""
        off, n = (int(v) for v in self.index[r, cy, cx])
        if off == EMPTY:
            return None
        data = self._read_at(off, n)
        if len(data) != n:
            raise ChunkError(f"chunk ({cy}, {cx}) is cut short", r)
        payload: Any = data
        if self.layout.crc:
            # CRC-32C of the frame followed by its own crc32c (LE) is a constant: one pass, no copy
            if n < 4 or google_crc32c.value(data) != CRC32C_RESIDUE:
                raise ChunkError(f"chunk ({cy}, {cx}) fails its crc32c (corrupted bytes)", r)
            payload = memoryview(data)[:-4]
        try:
            raw = self._zstd.decode(payload)
        except (RuntimeError, ValueError) as exc:
            raise ChunkError(f"chunk ({cy}, {cx}) does not decode ({first_line(exc)})", r) from None
        lay = self.layout
        if len(raw) != lay.ch * lay.cw * 3:
            raise ChunkError(f"chunk ({cy}, {cx}) decodes to {len(raw)} bytes", r)
        return np.frombuffer(raw, dtype=np.uint8).reshape(lay.ch, lay.cw, 3)


def read_index(layout: Layout, size: int, read_at: Any) -> np.ndarray:
    """The checked chunk index ``(rows, ny, nx, 2)`` (offset, length) of a shard file of
    ``size`` bytes; :class:`ChunkError` when it fails its crc32c or points past the data."""
    nb = layout.index_bytes
    if size < nb + 4:
        raise ChunkError(f"the shard file is {size} bytes, shorter than its index ({nb + 4})")
    raw = read_at(size - nb - 4, nb + 4)
    if len(raw) != nb + 4 or crc32c(raw[:nb]) != int(np.frombuffer(raw[nb:], dtype="<u4")[0]):
        raise ChunkError("the shard's chunk index fails its crc32c (truncated or overwritten)")
    index = np.frombuffer(raw[:nb], dtype="<u8").reshape(layout.rows, layout.ny, layout.nx, 2)
    used = index[..., 0] != EMPTY
    if used.any() and int((index[..., 0][used] + index[..., 1][used]).max()) > size - nb - 4:
        raise ChunkError("the shard's chunk index points past the end of the file")
    return index


def first_line(exc: BaseException) -> str:
    """``"Type: first line of the message"``."""
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0]}" if msg else type(exc).__name__


def check_shard(layout: Layout, data: bytes, rows: Iterable[int]) -> dict[int, str]:
    """Damaged rows among ``rows`` (indices within the shard) of one shard file's bytes:
    ``{row: reason}``. Every stored chunk of those rows is read and checked; a row with
    no stored chunk at all is damaged too (a kept patch is never all black)."""
    rows = list(rows)
    try:
        sf = ShardFile.from_bytes(layout, data)
    except ChunkError as exc:
        return {r: str(exc) for r in rows}
    bad: dict[int, str] = {}
    for r in rows:
        any_stored = False
        try:
            for cy in range(layout.ny):
                for cx in range(layout.nx):
                    if sf.chunk(r, cy, cx) is not None:
                        any_stored = True
        except ChunkError as exc:
            bad[r] = str(exc)
            continue
        if not any_stored:
            bad[r] = "no chunk stored for this row (lost)"
    return bad


# -- raw key I/O on a zarr store (zarr's async store API, run synchronously) -----------


def store_get(store: Any, key: str) -> bytes | None:
    """The bytes at ``key`` of zarr store ``store``, or ``None`` when absent."""
    buf = sync(store.get(key, prototype=default_buffer_prototype()))
    return None if buf is None else buf.to_bytes()


def store_set(store: Any, key: str, data: bytes) -> None:
    """Write ``data`` at ``key`` of zarr store ``store``."""
    sync(store.set(key, default_buffer_prototype().buffer.from_bytes(data)))


def store_size(store: Any, key: str) -> int | None:
    """Size in bytes of ``key`` of zarr store ``store``, or ``None`` when absent."""
    try:
        return int(sync(store.getsize(key)))
    except (FileNotFoundError, KeyError):
        return None


def store_delete(store: Any, key: str) -> None:
    """Delete ``key`` of zarr store ``store`` (absent: nothing to do)."""
    sync(store.delete(key))


def store_delete_dir(store: Any, prefix: str) -> None:
    """Delete every key under ``prefix`` of zarr store ``store``."""
    sync(store.delete_dir(prefix))


def store_list_prefix(store: Any, prefix: str) -> list[str]:
    """Keys under ``prefix`` of zarr store ``store`` (sorted)."""

    async def _collect() -> list[str]:
        return [k async for k in store.list_prefix(prefix)]

    return sorted(sync(_collect()))
