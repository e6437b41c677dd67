"""A local copy of a remote store's shards, so that epoch 2 of training reads locally.

``TripletDataset(url, cache_dir=DIR)`` (``cwtnet-train --cache-dir DIR``): the first read
of a shard of a store in object storage fetches the whole shard object (one GET) into
``DIR/<store id>/<member>/<shard key>`` (temp file + rename, so concurrent DataLoader
workers never see half a file), and every read of it from then on is the local fast path
of :class:`mlcamsr.store.RegionReader` (one ``pread`` + zstd decode per inner chunk).

The store id is a hash of the URL and the store's ``params_hash``: a store rebuilt with
other parameters gets a fresh folder; a rebuild with the same parameters writes the same
bytes (extract is deterministic), so its cached shards stay valid. A cached shard whose
index fails its crc32c is not trusted: the read goes to the remote store through zarr.
Delete ``DIR`` to free the space; nothing else removes it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from mlcamsr.store import RegionReader, Store

__all__ = ["CachedRegionReader", "cache_root"]


def cache_root(store: Store, cache_dir: str | os.PathLike[str]) -> Path:
    """``cache_dir/<16 hex of sha256(url + params_hash)>``: the folder of this store's shards."""
    ident = f"{store.path}\n{store.attrs.get('params_hash', '')}"
    return Path(cache_dir) / hashlib.sha256(ident.encode()).hexdigest()[:16]


class CachedRegionReader(RegionReader):
    """:class:`RegionReader` over a remote store whose shards are copied to a local folder on
    first use. Counters: ``shards_fetched``, ``bytes_fetched`` (this process)."""

    def __init__(self, store: Store, name: str, cache_dir: str | os.PathLike[str]) -> None:
        root = cache_root(store, cache_dir) / name
        super().__init__(store, name, shard_dir=root)
        self._store = store
        self._absent: set[int] = set()  # shards the remote store does not have (all fill)
        self.shards_fetched = 0
        self.bytes_fetched = 0

    def _read_fast(self, i: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray | None:
        assert self._dir is not None
        shard = i // self._rows
        key = self._key((shard, 0, 0, 0))
        path = self._dir / key
        if shard not in self._absent and not path.is_file():
            data = self._store.get_bytes(f"{self.name}/{key}")
            if data is None:
                self._absent.add(shard)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, path)
                self.shards_fetched += 1
                self.bytes_fetched += len(data)
        return super()._read_fast(i, y0, y1, x0, x1)
