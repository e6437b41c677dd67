"""A local copy of a remote store's shards, so that epoch 2 of training reads locally.

``TripletDataset(url, cache_dir=DIR)`` (``cwtnet-train --cache-dir DIR``): the first read
of a shard of a store in object storage fetches the whole shard object (one GET) into
``DIR/<store id>/<shard key>`` (``<member>/c/...``) (temp file + rename, so concurrent DataLoader
workers never see half a file), and every read of it from then on is the local fast path
of :class:`mlcamsr.store.RegionReader` (one ``pread`` + zstd decode per inner chunk).

The store id is a hash of the URL and the store's ``params_hash``: a store rebuilt with
other parameters gets a fresh folder; a rebuild with the same parameters writes the same
bytes (extract is deterministic), so its cached shards stay valid. Every chunk read from a
cached shard is checked against its crc32c like any other read: a damaged copy is a
one-line error naming the row; delete ``DIR`` and read again.
Delete ``DIR`` to free the space; nothing else removes it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from mlcamsr import shards
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
        super().__init__(store, name, shard_root=cache_root(store, cache_dir))
        self._store = store
        self.shards_fetched = 0
        self.bytes_fetched = 0

    def _read_own(self, i: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        lay = self._layout
        assert lay is not None and self._root is not None
        key = shards.shard_key(self.array, i // lay.rows)
        path = self._root / key
        if not path.is_file():
            data = self._store.get_bytes(key)
            if data is None:  # a kept row's shard is never absent: damage, as without cache
                raise self._damaged(i, f"shard file {key} is missing")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            self.shards_fetched += 1
            self.bytes_fetched += len(data)
        return super()._read_own(i, y0, y1, x0, x1)
