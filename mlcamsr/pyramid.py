"""FTMS-style bicubic members (SPEC "mlcamsr pyramid", paper IV-A).

From the finest member (e.g. ``40x``, 1024 px) by repeated anti-aliased bicubic /2
(:func:`mlcamsr.resize.imresize`, MATLAB ``imresize`` with ``a = -0.5``, kernel widened
by 2 when halving; each level rounded to uint8 like a saved image):

    40x 1024 -> 20x_bicubic 512 -> 10x_bicubic 256 -> 5x_bicubic 128

Names follow the base magnification (``f"{mag / 2**k:g}x_bicubic"``). The arrays have the
finest member's layout: its inner chunk side (min'd with each member's size, as extract
does for the real members: 256-px chunks give 20x_bicubic 256, 10x_bicubic 256,
5x_bicubic 128), shard rows and codec; only kept rows are written (other slots stay at
the fill value 0, as in extract). Shards are written with :meth:`Store.write_shard`.

Work is split by shard of the finest member (one writer per shard file): serial with
``workers=0``, else a process pool. After each shard a record
``_pyramid/tasks/<shard>.json`` is written (the rows' digest, and the size and crc32c of
each shard file written, :mod:`mlcamsr.verify`); at the end they are folded into the
members' attributes and the work folder is deleted. A rerun skips shards whose record
(work or folded) matches and whose files still check out, so a killed run resumes, a
damaged shard is rewritten, and the result equals an uninterrupted run. The finest member is read
through :class:`mlcamsr.store.RegionReader` (checked: a damaged source row is an error). Provenance is in each
array's attributes and in the store's member list: ``source`` (the finest member),
``method`` (``"matlab-bicubic-aa"``), ``halvings``.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import signal
import sys
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlcamsr.errors import InputError, StoreError
from mlcamsr.verify import PYRAMID_RECORDS, damaged_shards, fold_records, read_records, record_key

__all__ = ["METHOD", "PyramidResult", "pyramid", "bicubic_names", "halve"]

METHOD = "matlab-bicubic-aa"
RECORDS = PYRAMID_RECORDS
DEFAULT_LEVELS = 3


@dataclass(frozen=True)
class PyramidResult:
    """What a pyramid run did."""

    members: tuple[str, ...]
    sizes: tuple[int, ...]
    n_kept: int
    shards_done: int
    shards_skipped: int

    def summary(self) -> str:
        made = ", ".join(f"{m} ({s} px)" for m, s in zip(self.members, self.sizes))
        return (
            f"pyramid: {made} for {self.n_kept} kept patches; "
            f"{self.shards_done} shard(s) written, {self.shards_skipped} already done"
        )


def halve(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """``levels`` successive anti-aliased bicubic halvings of a uint8 ``(H, W, 3)`` image."""
    from mlcamsr.resize import imresize

    out, cur = [], img
    for _ in range(levels):
        cur = imresize(cur, scale=0.5)
        out.append(cur)
    return out


def bicubic_names(mag: float, levels: int = DEFAULT_LEVELS) -> list[str]:
    """``["20x_bicubic", "10x_bicubic", "5x_bicubic"]`` for ``mag`` 40."""
    return [f"{mag / 2**k:g}x_bicubic" for k in range(1, levels + 1)]


def _plan(store: Any, levels: int) -> dict[str, Any]:
    """Check the store and work out what to make; raises before anything is written."""
    name = str(store.path)
    if not store.has_table:
        raise StoreError(
            f"{name} has no patch table (an unfinished extract?); finish `mlcamsr extract` first"
        )
    real = [m for m in store.members if store.member_info(m).get("kind", "real") != "bicubic"]
    if not real:
        raise StoreError(f"{name} has no members; run `mlcamsr extract` first")
    finest = real[0]
    info = store.member_info(finest)
    size = int(info["size"])
    if levels < 1 or size % (2**levels):
        raise InputError(
            f"--levels {levels}: {finest} patches of {size} px cannot be halved {levels} times "
            "into whole pixels; use fewer levels"
        )
    table = store.table
    kept_idx = np.asarray(table.loc[table["status"] == "kept", "index"], dtype=np.int64)
    if kept_idx.size == 0:
        raise InputError(f"{name} has no kept patches; nothing to downsample (check extract's QC)")
    arr = store[finest]
    n = int(arr.shape[0])
    shard_rows = int(arr.shards[0]) if arr.shards else 1
    level = 1
    for c in arr.compressors:
        level = int(getattr(c, "level", level))
    chunk = int(arr.chunks[1])  # the finest member's inner chunk side (its real layout)
    mag = float(info.get("mag") or 0.0)
    if not mag:
        raise StoreError(f"{name}: member {finest} has no magnification recorded; re-extract")
    return {
        "finest": finest,
        "size": size,
        "mpp": float(info.get("mpp") or 0.0),
        "mag": mag,
        "n": n,
        "shard_rows": shard_rows,
        "zstd_level": level,
        "chunk": chunk,
        "kept": np.sort(kept_idx),
        "names": bicubic_names(mag, levels),
        "sizes": [size // 2**k for k in range(1, levels + 1)],
    }


def _params_hash(plan: dict[str, Any]) -> str:
    keys = ["finest", "size", "n", "shard_rows", "names", "sizes"]
    if plan["chunk"] < plan["size"]:  # inner chunks (whole-patch stores keep their old hash)
        keys.append("chunk")
    blob = json.dumps({k: plan[k] for k in keys} | {"method": METHOD}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _shard_digest(rows: Iterable[int]) -> str:
    return hashlib.sha256(",".join(map(str, rows)).encode()).hexdigest()[:16]


def _do_shard(
    path: Any, finest: str, names: list[str], start: int, stop: int, rows: list[int]
) -> dict[str, Any]:
    """Read the finest member's rows ``start:stop``, write every bicubic member's shard;
    the :class:`ShardRecord` of each (by member, as dicts)."""
    from mlcamsr.store import open_store

    store = open_store(path, mode="r+")
    src = store.region_reader(finest)
    block = np.stack([src[r] if r in rows else np.zeros(src.shape[1:], np.uint8) for r in range(start, stop)])
    outs = [
        np.zeros((stop - start,) + tuple(store[m].shape[1:]), dtype=np.uint8) for m in names
    ]
    for r in rows:
        for k, img in enumerate(halve(block[r - start], len(names))):
            outs[k][r - start] = img
    return {m: store.write_shard(m, start, data).as_dict() for m, data in zip(names, outs)}


def pyramid(
    store_path: Any,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    levels: int = DEFAULT_LEVELS,
) -> PyramidResult:
    """Make the ``*_bicubic`` members of the store at ``store_path`` (see module docstring).

    Args:
        store_path: path or fsspec URL of an MLCamSR store.
        workers: processes (``0`` = serial in this process; default: CPU count).
        overwrite: remake the members even when they exist from other parameters.
        progress: show a progress bar (stderr).
        levels: number of halvings (3: 20x, 10x, 5x for a 40x store).
    """
    from mlcamsr.store import iter_shards, open_store

    store = open_store(store_path, mode="r+")
    plan = _plan(store, int(levels))
    phash = _params_hash(plan)
    name = str(store_path)
    with store.lock():
        registered = set(store.members)
        existing = [m for m in plan["names"] if m in store]
        prev = store.attrs.get("pyramid") or {}
        # arrays left unregistered (e.g. a later extract rewrote the member list) are remade
        lost = [m for m in existing if m not in registered]
        stale = bool(existing) and prev.get("params_hash") != phash
        if stale and not overwrite:
            raise StoreError(
                f"{name} already has {', '.join(existing)} made with other parameters "
                f"(or by an older run); pass --overwrite to remake them"
            )
        if overwrite or stale or lost or len(existing) != len(plan["names"]):
            store.delete_prefix(RECORDS)
            for k, (m, sz) in enumerate(zip(plan["names"], plan["sizes"]), start=1):
                arr = store.create_member(
                    m,
                    n=plan["n"],
                    size=sz,
                    mpp=plan["mpp"] * 2**k,
                    scale=2**k,
                    mag=plan["mag"] / 2**k,
                    kind="bicubic",
                    shard_rows=plan["shard_rows"],
                    zstd_level=plan["zstd_level"],
                    chunk=plan["chunk"],
                    overwrite=True,
                    source=plan["finest"],
                    method=METHOD,
                    halvings=k,
                    complete=False,
                )
                arr.attrs.update(
                    {"mlcamsr": {"source": plan["finest"], "method": METHOD, "halvings": k}}
                )
            store.update_attrs(pyramid={"params_hash": phash, "levels": int(levels)})

        kept = plan["kept"]
        # shards an earlier run wrote, read back: damaged ones are written again
        damaged = damaged_shards(store, plan["names"], RECORDS)
        records = read_records(store, RECORDS)  # work records, else folded ones
        todo, skipped = [], 0
        for shard, start, stop in iter_shards(plan["n"], plan["shard_rows"]):
            rows = [int(r) for r in kept[(kept >= start) & (kept < stop)]]
            if not rows:
                continue
            digest = _shard_digest(rows)
            rec = records.get(shard)
            if rec is not None and shard not in damaged and rec.get("rows_digest") == digest:
                skipped += 1
                continue
            todo.append((shard, start, stop, rows, digest))

        bar = _progress(len(todo), progress)
        args = (store_path, plan["finest"], plan["names"])
        n_workers = (os.cpu_count() or 1) if workers is None else int(workers)
        try:
            if n_workers <= 0 or len(todo) <= 1:
                for shard, start, stop, rows, digest in todo:
                    _record(store, shard, digest, _do_shard(*args, start, stop, rows))
                    bar.update(1)
            else:
                import multiprocessing as mp

                ctx = mp.get_context("spawn")  # zarr's I/O thread does not survive fork
                with ProcessPoolExecutor(min(n_workers, len(todo)), mp_context=ctx,
                                         initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
                    futs = {
                        pool.submit(_do_shard, *args, start, stop, rows): (shard, digest)
                        for shard, start, stop, rows, digest in todo
                    }
                    for fut in as_completed(futs):
                        _record(store, *futs[fut], fut.result())
                        bar.update(1)
        finally:
            bar.close()
        fold_records(store, RECORDS)  # into the members' attributes; no work folder stays
        for m in plan["names"]:
            if not store.member_info(m).get("complete"):
                store.update_member(m, complete=True)
    return PyramidResult(
        members=tuple(plan["names"]),
        sizes=tuple(plan["sizes"]),
        n_kept=int(kept.size),
        shards_done=len(todo),
        shards_skipped=skipped,
    )


def die_with_parent(parent: int) -> None:
    """Pool initializer: this worker gets SIGKILL when its parent dies (Linux
    ``PR_SET_PDEATHSIG``), so a ``kill -9`` of ``mlcamsr pyramid`` leaves no worker (and
    so no resource tracker) behind; elsewhere a no-op. ``parent``: the pid that started
    the pool (already gone: exit now)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _record(store: Any, shard: int, digest: str, written: dict[str, Any]) -> None:
    rec = {"rows_digest": digest, "shards": written}
    store.put_bytes(record_key(RECORDS, shard), json.dumps(rec).encode())


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="pyramid", unit="shard")
