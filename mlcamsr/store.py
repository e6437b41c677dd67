"""The MLCamSR store: a Zarr v3 group with one array per member and a patch table.

Layout (``format_version`` 3)::

    STORE.zarr/
      zarr.json                 root group; attribute "mlcamsr" (see below)
      40x/ 20x/ 10x/            uint8 (N, size, size, 3) arrays: shards of ``shard_rows``
                                whole patches, inner chunks of ``chunk`` x ``chunk`` px
                                (default 256, or the whole patch when it is not larger),
                                BytesCodec + Zstd(-1; level in params) + Crc32c; attribute
                                ``mlcamsr.shards``:
                                the size and crc32c of every shard written (folded in from
                                the work records when a run ends, :mod:`mlcamsr.verify`)
      table/                    the patch table: a uint8 (nbytes,) array whose one chunk is
                                the Parquet file (BytesCodec + Crc32c), written atomically
      _extract/tasks/<k>.json   work records, only while a run is going (or after a crash:
                                the next run resumes from them); folded and deleted at its end
      mlcamsr.lock              present while a writer runs (pid, host)

So a finished store is a plain Zarr v3 hierarchy: ``zarr.open_group`` lists, walks and
reads it without a warning (``table.parquet`` and the work folders of format 2 made zarr
warn "not recognized as a component of a Zarr hierarchy"). Formats 1 and 2 (the table at
``table.parquet``, records kept in ``_extract/`` and ``_pyramid/``) are read and verified
as before, and writers keep their layout until the store is remade.

Root attribute ``mlcamsr``: ``format_version``, ``tool_version``, ``params`` (the full
extraction parameters), ``params_hash``, ``slides`` (name -> size, sha256, mpp,
mpp_source, reader, levels), ``members`` (list, finest first: name, mpp, size, scale,
mag, kind, chunk, sources), ``complete`` (bool).

Inner chunks: a training sample reads a small crop (e.g. 128 px) of a 1024-px patch;
with one chunk per patch each read decodes the whole ~3 MB patch, with 256-px inner
chunks it decodes the 1-4 chunks the crop touches (zarr reads them by byte range from
the shard). Shards stay whole patches, so one writer still owns whole shard files.

Any fsspec URL zarr accepts works for reading and writing (options: ``storage_options``
or :func:`mlcamsr.remote.storage_options`). The writer lock is a lock file on local stores
and a lease with a fencing token on ``s3://`` (conditional writes,
:class:`mlcamsr.remote.RemoteLock`); other URL schemes get no lock. On object storage a
shard, a record and the table are each one PUT (atomic); docs/scaling.md has the guarantees.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import fsspec
import numpy as np
import pandas as pd
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec
from zarr.storage import LocalStore

from mlcamsr import remote
from mlcamsr import shards as _shards
from mlcamsr.errors import StoreError

__all__ = [
    "DEFAULT_CHUNK",
    "DEFAULT_ZSTD_LEVEL",
    "FORMAT_VERSION",
    "ATTR_KEY",
    "TABLE_ARRAY",
    "TABLE_KEY",
    "LOCK_NAME",
    "RegionReader",
    "Store",
    "StoreLock",
    "default_chunk",
    "member_chunk",
    "member_name",
    "open_store",
    "store_summary",
]

FORMAT_VERSION = 3
"""3: the table is a Zarr array and shard records are folded into the member arrays'
attributes (a finished store is plain Zarr). 2: inner chunks end in a crc32c (zarr's
``crc32c`` codec), table at ``table.parquet``, records in work folders. 1: no per-chunk
crc (read as is)."""
ATTR_KEY = "mlcamsr"
TABLE_ARRAY = "table"
"""The table array of format 3: ``uint8 (nbytes,)``, one chunk = the Parquet file."""
TABLE_KEY = "table.parquet"
"""Where formats 1 and 2 keep the table (a file zarr does not recognise)."""
LOCK_NAME = "mlcamsr.lock"

_MODES = ("r", "r+", "a", "w")

DEFAULT_CHUNK = 256
"""Default inner chunk side (px) of the member arrays extract writes."""


DEFAULT_ZSTD_LEVEL = -1
"""Default Zstandard level of the member arrays. H&E pixels decoded from JPEG tiles are
noise-like: on the real-texture benchmark slide level 1 stores 1.124x smaller than raw and
level -1 1.066x (5 % more bytes), but -1 encodes in 3.3 instead of 7.0 CPU ms per triplet
and decodes in 1.2 instead of 3.6 (docs/benchmarks.md). Stores made with level 1 (the
earlier default) keep it when rerun."""


def default_chunk(size: int) -> int:
    """The default inner chunk side for a finest member of ``size`` px: 256, or ``size``."""
    return DEFAULT_CHUNK if int(size) > DEFAULT_CHUNK else int(size)


def member_chunk(chunk: int | None, size: int) -> int:
    """Inner chunk side of a ``size``-px member: ``min(chunk, size)`` (``None``: whole patch)."""
    return int(size) if chunk is None else max(1, min(int(chunk), int(size)))


def member_name(base_mag: float, scale: int) -> str:
    """Name of the member at ``scale`` (1 = finest): ``f"{base_mag/scale:g}x"`` (40 -> 40x, 20x, 10x)."""
    return f"{base_mag / scale:g}x"


def _is_url(path: str | os.PathLike[str]) -> bool:
    return "://" in str(path)


def local_path(path_or_url: str | os.PathLike[str]) -> str:
    """``file://`` URLs as plain paths (local stores get the lock and atomic writes); others as is."""
    s = str(path_or_url)
    if s.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(s).path)
    return s


class StoreLock:
    """An exclusive writer lock: a file with pid and host created with O_EXCL.

    A lock left by a dead process on this host is taken over; a live one (or one
    from another host) makes :meth:`acquire` raise :class:`StoreError` naming it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._held = False

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _stale(self, info: Mapping[str, Any]) -> bool:
        if info.get("host") != socket.gethostname():
            return False
        pid = info.get("pid")
        if not isinstance(pid, int):
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def acquire(self) -> StoreLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path.parent} ({exc.strerror}); choose a writable path") from None
        payload = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        ).encode()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except OSError as exc:
                if not isinstance(exc, FileExistsError):
                    raise StoreError(
                        f"cannot take the writer lock {self.path} ({exc.strerror}: a read-only "
                        "mount?); run writing commands where the store is writable"
                    ) from None
                info = self._read()
                if not info and time.time() - self._mtime() < 5:
                    time.sleep(0.2)  # another writer is between create and write
                    continue
                if info and not self._stale(info):
                    raise StoreError(
                        f"{self.path.parent} is in use by another run (pid {info.get('pid')} on "
                        f"{info.get('host')}); wait for it, or delete {self.path} if no run is active"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its writer is dead
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            self._held = True
            return self
        raise StoreError(f"could not take the lock {self.path}; delete it if no run is active")

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def release(self) -> None:
        if self._held:
            info = self._read()
            if info.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class Store:
    """An open MLCamSR store.

    Attributes:
        path: the path or URL it was opened with.
        group: the root :class:`zarr.Group`.
        mode: ``"r"``, ``"r+"``, ``"a"`` or ``"w"``.
    """

    def __init__(self, path: str | os.PathLike[str], group: zarr.Group, mode: str) -> None:
        self.path = path
        self.group = group
        self.mode = mode

    # -- identity ------------------------------------------------------------------
    @property
    def local_root(self) -> Path | None:
        """The directory of a local store, else ``None``."""
        st = self.group.store
        if isinstance(st, LocalStore):
            return Path(st.root)
        return None

    def __repr__(self) -> str:
        return f"<mlcamsr Store {self.path!s} members={self.members}>"

    # -- attributes ----------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        """The root ``mlcamsr`` attribute (a copy; change it with :meth:`update_attrs`)."""
        return dict(cast(Mapping[str, Any], self.group.attrs.get(ATTR_KEY, {})))

    def update_attrs(self, **values: Any) -> None:
        """Merge ``values`` into the root ``mlcamsr`` attribute."""
        current = self.attrs
        current.update(_jsonable(values))
        self.group.attrs.update({ATTR_KEY: current})

    # -- members -------------------------------------------------------------------
    @property
    def members(self) -> list[str]:
        """Member array names, finest first (real members, then derived ones)."""
        listed = [m["name"] for m in self.attrs.get("members", [])]
        return [m for m in listed if m in self.group]

    def member_info(self, name: str) -> dict[str, Any]:
        """``dict(name, mpp, size, scale, mag, kind, ...)`` of one member."""
        for m in self.attrs.get("members", []):
            if m["name"] == name:
                return dict(m)
        raise StoreError(f"{self.path}: no member {name!r}; members are {self.members}")

    def __getitem__(self, name: str) -> zarr.Array:
        if name not in self.group:
            raise StoreError(f"{self.path}: no member {name!r}; members are {self.members}")
        return self.group[name]  # type: ignore[return-value]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.group

    def create_member(
        self,
        name: str,
        *,
        n: int,
        size: int,
        mpp: float,
        scale: float,
        mag: float,
        kind: str = "real",
        shard_rows: int = 16,
        zstd_level: int = DEFAULT_ZSTD_LEVEL,
        chunk: int | None = None,
        overwrite: bool = False,
        checksum: bool = True,
        **info: Any,
    ) -> zarr.Array:
        """Create (or replace) a member array ``uint8 (n, size, size, 3)`` and register it.

        Inner chunks of ``(1, c, c, 3)`` with ``c = min(chunk, size)`` (``chunk=None``:
        one chunk per patch), ``shard_rows`` whole patches per shard file (a shard's sides
        are ``size`` rounded up to a multiple of ``c``, as zarr requires), lossless
        ``BytesCodec + ZstdCodec(zstd_level) + Crc32cCodec`` (a checksum per inner chunk,
        format version 2; ``checksum=False`` gives the version-1 layout, for benchmarks);
        unwritten slots read as 0. Writers must
        write whole shards (concurrent writes to one shard lose data). The chunk side is
        registered in the member's entry (``chunk``).
        """
        self._writable()
        shard = max(1, min(int(shard_rows), int(n))) if n else 1
        size = int(size)
        c = member_chunk(chunk, size)
        side = -(-size // c) * c  # whole patches per shard, whole chunks per shard
        arr = self.group.create_array(
            name,
            shape=(int(n), size, size, 3),
            dtype="uint8",
            chunks=(1, c, c, 3),
            shards=(shard, side, side, 3),
            serializer=BytesCodec(),
            compressors=[ZstdCodec(level=int(zstd_level))] + ([Crc32cCodec()] if checksum else []),
            fill_value=0,
            dimension_names=("row", "y", "x", "c"),
            config={"write_empty_chunks": False},
            overwrite=overwrite,
        )
        entry = {
            "name": name,
            "mpp": float(mpp),
            "size": int(size),
            "scale": float(scale),
            "mag": float(mag),
            "kind": kind,
            "chunk": c,
            **info,
        }
        members = [m for m in self.attrs.get("members", []) if m["name"] != name]
        members.append(entry)
        self.update_attrs(members=members)
        return arr

    def update_member(self, name: str, **info: Any) -> None:
        """Merge ``info`` into the registered entry of member ``name``."""
        members = self.attrs.get("members", [])
        for m in members:
            if m["name"] == name:
                m.update(_jsonable(info))
                break
        else:
            raise StoreError(f"{self.path}: no member {name!r}")
        self.update_attrs(members=members)

    def write_shard(self, name: str, start: int, block: _shards.Rows) -> ShardRecord:
        """Write rows ``start : start + len(block)`` of member ``name``, one whole shard.

        ``block``: an ``(n, H, W, 3)`` uint8 array, or ``n`` rows each ``(H, W, 3)`` uint8 or
        ``None`` for an empty row (:data:`mlcamsr.shards.Rows`).

        ``start`` must be a shard boundary and the block must cover the shard (or the
        array's end). Inner chunks that are all zero are left empty (read as fill 0), as
        zarr does with ``write_empty_chunks=False``. For the layouts :meth:`create_member`
        makes (any inner chunk side), the shard is encoded by :mod:`mlcamsr.shards` with
        the same standard codecs, byte for byte what zarr writes (tested), and stored in
        one atomic put, about 3x faster than zarr's generic write path; any other layout
        goes through zarr.

        Returns:
            the :class:`ShardRecord` of what was written (size and crc32c of the shard
            file; size 0 when every chunk is empty and no file exists).
        """
        self._writable()
        arr = self[name]
        rows = int(arr.shards[0]) if arr.shards else int(arr.chunks[0])
        n = len(block)
        if start % rows or (n != rows and start + n != arr.shape[0]) or start + n > arr.shape[0]:
            raise ValueError(f"{name}: rows {start}:{start + n} are not one whole shard of {rows}")
        if isinstance(block, np.ndarray):
            given = [(block.shape[1:], block.dtype)]
        else:
            given = [(r.shape, r.dtype) for r in block if r is not None]
        for shape, dtype in given:
            if tuple(shape) != tuple(arr.shape[1:]):
                raise ValueError(f"{name}: rows of shape {tuple(shape)}, the member's are {arr.shape[1:]}")
            if dtype != np.uint8:  # a cast would wrap (300 -> 44) or zero (0.7 -> 0) silently
                raise ValueError(f"{name}: rows of dtype {dtype}, the member's is uint8")
        key = _shards.shard_key(arr, start // rows)
        layout = _shards.layout_of(arr)
        if layout is None:
            arr[start : start + n] = _stack_rows(block, tuple(arr.shape[1:]))
            data = self.get_bytes(key)
            return ShardRecord(0, None) if data is None else ShardRecord(len(data), _shards.crc32c(data))
        parts = _shards.encode_shard(layout, block, (int(arr.shape[1]), int(arr.shape[2])))
        if not parts:
            _shards.store_delete(self.group.store, key)
            return ShardRecord(0, None)
        record = ShardRecord(sum(len(b) for b in parts), _shards.crc32c_parts(parts))
        root = self.local_root
        if root is None:
            self.put_bytes(key, b"".join(parts))
            return record
        # local: one vectored write to a temp file + rename (atomic, no joined copy)
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            written = _writev_all(fd, parts)
            if written != record.bytes:  # short write: finish the rest plainly
                rest = b"".join(parts)[written:]
                while rest:
                    rest = rest[os.write(fd, rest) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return record

    def region_reader(self, name: str) -> RegionReader:
        """A reader of ``member[i, y:y+h, x:x+w, :]`` that decodes only the inner chunks the
        region touches (see :class:`RegionReader`)."""
        return RegionReader(self, name)

    # -- raw keys ------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` (atomic on local stores: temp file + rename)."""
        self._writable()
        _shards.store_set(self.group.store, key, data)

    def get_bytes(self, key: str) -> bytes | None:
        """The bytes at ``key``, or ``None`` when absent."""
        return _shards.store_get(self.group.store, key)

    def list_prefix(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (sorted)."""
        return _shards.store_list_prefix(self.group.store, prefix)

    def delete_prefix(self, prefix: str) -> None:
        """Delete every key under ``prefix``."""
        self._writable()
        _shards.store_delete_dir(self.group.store, prefix)

    def delete_key(self, key: str) -> None:
        """Delete ``key`` (absent: nothing to do)."""
        self._writable()
        _shards.store_delete(self.group.store, key)

    def shard_key(self, name: str, shard: int) -> str:
        """The key of shard ``shard`` of member ``name`` (``"40x/c/3/0/0/0"``)."""
        return _shards.shard_key(self[name], shard)

    # -- the table -----------------------------------------------------------------
    @property
    def format_version(self) -> int:
        """The store's format (1, 2 or 3; see :data:`FORMAT_VERSION`)."""
        return int(self.attrs.get("format_version") or 1)

    @property
    def table_key(self) -> str:
        """Where the table's bytes live: ``table/c/0`` (format 3) or ``table.parquet``."""
        return f"{TABLE_ARRAY}/c/0" if self.format_version >= 3 else TABLE_KEY

    def _table_parquet(self) -> tuple[bytes | None, str]:
        """``(Parquet bytes or None, where)``; the chunk's own crc32c checked (format 3)."""
        key = self.table_key
        where = f"{str(self.path).rstrip('/')}/{key}"
        data = self.get_bytes(key)
        if data is None or key == TABLE_KEY:
            return data, where
        body, tail = data[:-4], data[-4:]
        if len(data) < 4 or int.from_bytes(tail, "little") != _shards.crc32c(body):
            raise StoreError(f"{where} is damaged (its crc32c differs); rerun the same `mlcamsr extract` to rewrite it")
        return body, where

    @property
    def table(self) -> pd.DataFrame:
        """The patch table (pandas DataFrame, one row per coords row, index 0..N-1).

        Format 3 keeps it as the Zarr array ``table`` (``uint8 (nbytes,)``, one chunk: the
        Parquet file, then zarr's crc32c), so plain zarr reads it too:
        ``pd.read_parquet(io.BytesIO(zarr.open_group(path)["table"][:].tobytes()))``.

        Raises:
            StoreError: no table, or one that is cut short, damaged (its size or crc32c
                differ from what :meth:`write_table` recorded) or not Parquet; one line
                naming the file and the fix.
        """
        data, where = self._table_parquet()
        if data is None:
            raise StoreError(
                f"{self.path} has no patch table yet (an unfinished extract?); rerun "
                "`mlcamsr extract` with the same options to finish it"
            )
        fix = "rerun the same `mlcamsr extract` to rewrite it"
        rec = self.attrs.get("table")
        if isinstance(rec, dict) and (
            rec.get("bytes") != len(data) or rec.get("crc32c") != _shards.crc32c(data)
        ):
            raise StoreError(
                f"{where} is damaged ({len(data)} bytes, recorded {rec.get('bytes')}, crc32c "
                f"differs); {fix}"
            )
        try:
            return pd.read_parquet(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad bytes
            raise StoreError(f"{where} cannot be read ({_shards.first_line(exc)}); {fix}") from None

    @property
    def has_table(self) -> bool:
        return self.get_bytes(self.table_key) is not None

    def write_table(self, df: pd.DataFrame) -> None:
        """Replace the patch table and record its size and crc32c in the root attribute
        (``table``). Format 3: the chunk ``table/c/0`` (Parquet + crc32c), then the array's
        ``zarr.json`` (its shape is the byte count), each one atomic put; formats 1-2: the
        file ``table.parquet``."""
        buf = io.BytesIO()
        df.reset_index(drop=True).to_parquet(buf, index=False)
        data = buf.getvalue()
        if self.format_version >= 3:
            self.put_bytes(self.table_key, data + _shards.crc32c(data).to_bytes(4, "little"))
            meta = _table_array_meta(len(data))
            self.put_bytes(f"{TABLE_ARRAY}/zarr.json", json.dumps(meta, indent=2).encode())
        else:
            self.put_bytes(TABLE_KEY, data)
        self.update_attrs(table={"bytes": len(data), "crc32c": _shards.crc32c(data)})

    # -- shard records folded into the arrays (format 3) ---------------------------
    def folded_records(self, name: str) -> dict[int, list[Any]]:
        """Shard -> ``[bytes, crc32c(, rows_digest)]`` recorded in member ``name``'s
        attribute ``mlcamsr.shards`` (what :func:`mlcamsr.verify.fold_records` wrote)."""
        ours = cast(Mapping[str, Any], self[name].attrs.get(ATTR_KEY, {}))
        return {int(k): list(v) for k, v in (ours.get("shards") or {}).items()}

    def set_folded_records(self, name: str, records: Mapping[int, Sequence[Any]]) -> None:
        """Replace member ``name``'s folded shard records (sorted by shard; one atomic
        rewrite of its ``zarr.json``), keeping its other ``mlcamsr`` attributes."""
        self._writable()
        arr = self[name]
        ours = dict(cast(Mapping[str, Any], arr.attrs.get(ATTR_KEY, {})))
        ours["shards"] = {str(k): _jsonable(list(records[k])) for k in sorted(records)}
        arr.attrs.update({ATTR_KEY: ours})

    # -- locking -------------------------------------------------------------------
    def lock(self) -> StoreLock | remote.RemoteLock | _NoLock:
        """The writer lock (context manager): a lock file on local stores, a lease with a
        fencing token on object storage (:class:`mlcamsr.remote.RemoteLock`), else a no-op."""
        root = self.local_root
        if root is not None:
            return StoreLock(root / LOCK_NAME)
        if remote.has_conditional_writes(str(self.path)):
            return remote.RemoteLock(str(self.path))
        return _NoLock()

    def _writable(self) -> None:
        if self.mode == "r":
            raise StoreError(f"{self.path} is open read-only; open it with mode='r+'")


def _stack_rows(block: _shards.Rows, shape: tuple[int, ...]) -> np.ndarray:
    """``block`` as one ``(n, *shape)`` uint8 array (``None`` rows zero)."""
    if isinstance(block, np.ndarray):
        return block
    out = np.zeros((len(block), *shape), dtype=np.uint8)
    for i, row in enumerate(block):
        if row is not None:
            out[i] = row
    return out


@dataclass(frozen=True)
class ShardRecord:
    """What one :meth:`Store.write_shard` wrote: the shard file's size in bytes (0: no
    file, every chunk empty) and its crc32c (``None`` when no file)."""

    bytes: int
    crc32c: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "crc32c": self.crc32c}


class RegionReader:
    """Reads regions of one member: ``read(i, y, x, h, w)`` = ``arr[i, y:y+h, x:x+w, :]``,
    checked: damage is a :class:`StoreError` naming the store, member, row and the fix.

    For a layout of :meth:`Store.create_member` it reads the shard file itself
    (:class:`mlcamsr.shards.ShardFile`): the shard's index once (cached, keyed by the
    file's inode, mtime and size on local stores, so a rewritten shard is re-read), then
    only the inner chunks the region touches, each with one ``pread`` (local) and one zstd
    decode, every crc32c checked. 0.28 vs 0.93 ms through zarr for a 144-px region of a
    1024-px patch in 256-px chunks. A missing shard file is an error: readers ask only
    for kept rows, and a kept row is never all fill value. Other layouts read through
    zarr (its codecs check the crc32c). ``reader[i]`` is the whole patch ``i``; everything
    else (``shape``, ``chunks``) is the zarr array's. Counters ``chunks_read`` and
    ``bytes_read`` (own path only).
    """

    def __init__(self, store: Store, name: str, shard_root: Path | None = None) -> None:
        """``shard_root``: read shard files (``<member>/c/...``) below this folder instead
        of the store's own root (a local copy of a remote store's shards,
        :mod:`mlcamsr.chunkcache`)."""
        self.array = store[name]
        self.name = name
        self.store_name = str(store.path)
        self.chunks_read = 0
        self.bytes_read = 0
        self._index: dict[int, tuple[Any, Any]] = {}  # shard -> (stamp, index or ShardFile)
        self._zstore = store.group.store
        self._root = shard_root if shard_root is not None else store.local_root
        self._layout = _shards.layout_of(self.array)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_") or attr == "array":  # not set yet (copy, pickle)
            raise AttributeError(attr)
        return getattr(self.array, attr)

    def __getitem__(self, sel: Any) -> Any:
        if isinstance(sel, (int, np.integer)):
            return self.read(int(sel), 0, 0, int(self.array.shape[1]), int(self.array.shape[2]))
        return self.array[sel]

    def _damaged(self, i: int, why: str) -> StoreError:
        return StoreError(
            f"{self.store_name}: member {self.name} row {i} is damaged ({why}); run `mlcamsr "
            f"verify {self.store_name}` and rerun the same extract (or pyramid) to repair it"
        )

    def read(self, i: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        """``(h, w, 3)`` uint8: rows ``y:y+h``, columns ``x:x+w`` of patch ``i`` (clipped to
        the patch, like a numpy slice)."""
        H, W = int(self.array.shape[1]), int(self.array.shape[2])
        i = int(i)
        y0, x0 = max(0, int(y)), max(0, int(x))
        y1, x1 = min(H, int(y) + int(h)), min(W, int(x) + int(w))
        if not 0 <= i < int(self.array.shape[0]):
            raise IndexError(f"{self.name}: row {i} out of range 0..{int(self.array.shape[0]) - 1}")
        if self._layout is None or y1 <= y0 or x1 <= x0:  # (an empty region: numpy's slice)
            try:
                return np.asarray(self.array[i, y0:y1, x0:x1, :])
            except (ValueError, RuntimeError) as exc:
                raise self._damaged(i, _shards.first_line(exc)) from None
        try:
            return self._read_own(i, y0, y1, x0, x1)
        except _shards.ChunkError as exc:
            raise self._damaged(i, str(exc)) from None

    def _read_own(self, i: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        lay = self._layout
        assert lay is not None
        shard, r = divmod(i, lay.rows)
        key = _shards.shard_key(self.array, shard)
        fd = -1
        if self._root is not None:
            try:
                fd = os.open(self._root / key, os.O_RDONLY)
            except FileNotFoundError:
                raise self._damaged(i, f"shard file {key} is missing") from None
        try:
            if fd >= 0:
                st = os.fstat(fd)
                stamp: Any = (st.st_ino, st.st_mtime_ns, st.st_size)
                cached = self._index.get(shard)
                index = cached[1] if cached is not None and cached[0] == stamp else None
                sf = _shards.ShardFile(lay, st.st_size, lambda off, n: os.pread(fd, n, off), index)
            else:
                cached = self._index.get(shard)
                if cached is not None:
                    sf = cached[1]
                else:
                    data = _shards.store_get(self._zstore, key)
                    if data is None:
                        raise self._damaged(i, f"shard file {key} is missing")
                    sf = _shards.ShardFile.from_bytes(lay, data)
                stamp = None
            self._index[shard] = (stamp, sf.index if fd >= 0 else sf)
            out = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
            ch, cw = lay.ch, lay.cw
            for cy in range(y0 // ch, (y1 - 1) // ch + 1):
                for cx in range(x0 // cw, (x1 - 1) // cw + 1):
                    tile = sf.chunk(r, cy, cx)
                    if tile is None:
                        continue  # an empty chunk: fill value 0
                    ty, tx = cy * ch, cx * cw
                    a0, a1 = max(y0, ty), min(y1, ty + ch)
                    b0, b1 = max(x0, tx), min(x1, tx + cw)
                    out[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = tile[a0 - ty : a1 - ty, b0 - tx : b1 - tx]
                    self.chunks_read += 1
                    self.bytes_read += int(sf.index[r, cy, cx, 1])
        finally:
            if fd >= 0:
                os.close(fd)
        return out


class _NoLock:
    def acquire(self) -> _NoLock:
        return self

    def release(self) -> None:
        pass

    def __enter__(self) -> _NoLock:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _table_array_meta(nbytes: int) -> dict[str, Any]:
    """The ``zarr.json`` of the table array: ``uint8 (nbytes,)`` in one chunk, codecs
    ``bytes`` + ``crc32c`` (the chunk is the Parquet file followed by its crc32c)."""
    return {
        "shape": [int(nbytes)],
        "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [max(1, int(nbytes))]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [{"name": "bytes"}, {"name": "crc32c"}],
        "attributes": {ATTR_KEY: {"content": "the patch table as one Parquet file (pandas.read_parquet)"}},
        "dimension_names": ["byte"],
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def _jsonable(obj: Any) -> Any:
    """numpy scalars/arrays and tuples -> plain JSON types (zarr attrs are JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _writev_all(fd: int, bufs: list[bytes]) -> int:
    """``os.writev`` in batches of at most IOV_MAX buffers; bytes written (stops when short)."""
    try:
        most = int(os.sysconf("SC_IOV_MAX"))
    except (ValueError, OSError, AttributeError):
        most = 1024
    most = max(16, most)
    done = 0
    for i in range(0, len(bufs), most):
        batch = bufs[i : i + most]
        want = sum(len(b) for b in batch)
        got = os.writev(fd, batch)
        done += got
        if got != want:
            break
    return done


_WORK_DIRS = ("_extract", "_pyramid")


def _clear_local(root: Path) -> None:
    """Delete what this tool made in a local store (root ``zarr.json``, the table, work
    folders, Zarr arrays and groups), keeping our lock file (we hold it) and anything else
    (a user's notes are not ours to delete)."""
    for child in root.iterdir():
        if child.name == LOCK_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            if child.name in (*_WORK_DIRS, TABLE_ARRAY) or (child / "zarr.json").is_file():
                shutil.rmtree(child)
        elif child.name in ("zarr.json", TABLE_KEY):
            child.unlink()


def made_by_us(path_or_url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> bool | None:
    """Whether ``path_or_url`` holds a store this tool made (root ``zarr.json`` with the
    ``mlcamsr`` attribute): ``True``; something else (a foreign Zarr store, other files):
    ``False``; nothing there (absent, or an empty folder / only our lock): ``None``."""
    target = local_path(path_or_url)
    if not _is_url(target):
        p = Path(target)
        if not p.exists():
            return None
        if not p.is_dir():
            return False
        entries = [c.name for c in p.iterdir() if c.name != LOCK_NAME]
        if not entries:
            return None
        try:
            meta = json.loads((p / "zarr.json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(meta, dict) and ATTR_KEY in (meta.get("attributes") or {})
    # object storage: the same rule; our lease object (mlcamsr.lock) alone is "nothing there"
    fs, _, paths = fsspec.get_fs_token_paths(target, storage_options=remote.storage_options(storage_options))
    root = paths[0].rstrip("/")
    fs.invalidate_cache(root)
    try:
        entries = [e for e in fs.ls(root, detail=False) if str(e).rstrip("/").rsplit("/", 1)[-1] != LOCK_NAME]
    except FileNotFoundError:
        return None
    if not entries:
        return None
    try:
        meta = json.loads(fs.cat_file(f"{root}/zarr.json"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and ATTR_KEY in (meta.get("attributes") or {})


def open_store(
    path_or_url: str | os.PathLike[str],
    mode: str = "r",
    *,
    storage_options: dict[str, Any] | None = None,
) -> Store:
    """Open an MLCamSR store.

    Args:
        path_or_url: a local path (``mlcamsr.zarr``) or an fsspec URL.
        mode: ``"r"`` read an existing store; ``"r+"`` read/write an existing store;
            ``"a"`` open or create; ``"w"`` create, deleting what was there.
        storage_options: passed to fsspec for URLs.

    Raises:
        StoreError: missing store (``r``/``r+``), or a Zarr group that is not an MLCamSR store.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    path_or_url = local_path(path_or_url)
    url = _is_url(path_or_url)
    if not url:
        p = Path(path_or_url)
        if mode in ("r", "r+") and not (p / "zarr.json").is_file():
            if p.exists():
                raise StoreError(f"{p} is not a Zarr v3 store (no zarr.json); check the path")
            raise StoreError(f"store {p} not found; create it with `mlcamsr extract`")
        if p.exists() and not p.is_dir():
            raise StoreError(f"{p} exists and is not a directory; choose another --out")
    kwargs: dict[str, Any] = {}
    if url:
        kwargs["storage_options"] = remote.storage_options(storage_options)
    target = str(path_or_url)
    if mode == "w" and made_by_us(target, storage_options) is False:
        raise StoreError(
            f"{target} is not a store this tool made (a foreign Zarr store or other files); it "
            "is never replaced: choose another --out, or move it away yourself"
        )
    try:
        if mode == "w":
            if not url and Path(target).is_dir():
                _clear_local(Path(target))
            elif url:  # keep the lease we hold (zarr's mode "w" would delete it)
                remote.clear_prefix(target, keep=LOCK_NAME, options=storage_options)
            group = zarr.open_group(target, mode="a", zarr_format=3, **kwargs)
        elif mode == "a":
            group = zarr.open_group(target, mode="a", zarr_format=3, **kwargs)
        else:
            group = zarr.open_group(target, mode=cast(Literal["r", "r+"], mode), zarr_format=3, **kwargs)
    except StoreError:
        raise
    except FileNotFoundError as exc:
        raise StoreError(f"store {target} not found; create it with `mlcamsr extract`") from exc
    except Exception as exc:  # zarr raises several types for "not a group"
        raise StoreError(f"cannot open {target} as a Zarr v3 group: {exc}") from exc
    store = Store(path_or_url, group, mode)
    if mode in ("r", "r+") and ATTR_KEY not in group.attrs:
        raise StoreError(f"{target} is a Zarr group but not an MLCamSR store (no 'mlcamsr' attribute)")
    if mode in ("a", "w") and ATTR_KEY not in group.attrs:
        from mlcamsr import __version__

        store.update_attrs(format_version=FORMAT_VERSION, tool_version=__version__, members=[])
    return store


def iter_shards(n: int, shard_rows: int) -> Iterator[tuple[int, int, int]]:
    """``(shard_index, start_row, stop_row)`` for ``n`` rows in shards of ``shard_rows``."""
    for k, start in enumerate(range(0, n, shard_rows)):
        yield k, start, min(start + shard_rows, n)


def _du(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def store_summary(path_or_url: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON-able summary of a store (what ``mlcamsr info`` prints).

    Keys: ``store``, ``format_version``, ``tool_version``, ``params``, ``complete``,
    ``counts`` (rows/kept/rejected/failed), ``n_slides``, ``members`` (name, size, mpp,
    scale, kind, sources, shape, chunk: inner chunk side in px, shard_rows, zstd_level), ``qc`` (kept rows: tissue and alignment figures),
    ``reasons`` (most common reasons of rows not kept), ``split`` (counts, when set),
    ``size_bytes`` (local stores). ``mlcamsr info`` adds ``integrity``
    (:func:`mlcamsr.verify.store_info`).
    """
    s = open_store(path_or_url, "r")
    attrs = s.attrs
    out: dict[str, Any] = {
        "store": str(path_or_url),
        "format_version": attrs.get("format_version"),
        "tool_version": attrs.get("tool_version"),
        "complete": attrs.get("complete"),
        "params": attrs.get("params", {}),
        "n_slides": len(attrs.get("slides", {})),
    }
    members = []
    for name in s.members:
        info = s.member_info(name)
        arr = s[name]
        info["shape"] = list(arr.shape)
        info["chunk"] = int(arr.chunks[1])  # the array's real layout (also older stores)
        info["shard_rows"] = int(arr.shards[0]) if arr.shards else int(arr.chunks[0])
        layout = _shards.layout_of(arr)
        info["zstd_level"] = None if layout is None else layout.level
        members.append(info)
    out["members"] = members
    counts = {"rows": 0, "kept": 0, "rejected": 0, "failed": 0}
    table_ok = True
    try:
        t = s.table
    except StoreError:
        table_ok = False
    if table_ok:
        counts["rows"] = len(t)
        for k in ("kept", "rejected", "failed"):
            counts[k] = int((t["status"] == k).sum())
        kept = t[t["status"] == "kept"]
        qc: dict[str, Any] = {}
        if len(kept) and "tissue_frac" in kept:
            qc["tissue_frac_min"] = float(kept["tissue_frac"].min())
            qc["tissue_frac_median"] = float(kept["tissue_frac"].median())
            if "stain_frac" in kept and kept["stain_frac"].notna().any():
                qc["stain_frac_min"] = float(kept["stain_frac"].min())
            for c in ("rgb_mean_r", "rgb_mean_g", "rgb_mean_b"):
                if c in kept:
                    qc[f"{c}_mean"] = float(kept[c].mean())
            for c in [c for c in kept.columns if c.startswith("align_psnr_")]:
                v = kept[c].replace(np.inf, np.nan).dropna()
                if len(v):
                    qc[f"{c}_min"] = float(v.min())
                    qc[f"{c}_median"] = float(v.median())
        out["qc"] = qc
        notkept = t[t["status"] != "kept"]
        out["reasons"] = {
            str(k): int(v) for k, v in notkept["reason"].value_counts().head(10).items()
        }
        if "split" in t and t["split"].notna().any():
            sp = t.loc[t["split"].notna() & (t["split"].astype(str) != ""), "split"]
            out["split"] = {str(k): int(v) for k, v in sp.value_counts().sort_index().items()}
    out["counts"] = counts
    root = s.local_root
    out["size_bytes"] = _du(root) if root is not None else None
    return out
