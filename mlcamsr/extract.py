"""The extract job: coords + slides -> an aligned, quality-checked, resumable Zarr store.

:func:`extract` runs these stages, each a function of this module:

1. :func:`check_options`: members from ``size``/``scales``
   (:func:`mlcamsr.patches.member_specs`), QC thresholds, inner chunk side;
2. :func:`plan_rows`: the coords file (:func:`mlcamsr.coords.read_coords`) and its slides
   (:func:`mlcamsr.coords.resolve_slides`): file-level problems are ``InputError`` (exit 2);
   every slide opened once for its geometry: an unreadable slide (zero bytes, truncated,
   not a slide) makes its rows ``failed`` and the run goes on (exit 1); a slide without
   mpp and no override, or one that would need upsampling, is refused (exit 2);
   every row planned: a square that leaves the slide makes that row ``failed``;
   rows labelled from the annotations; each slide's reader chosen while it is open by
   :func:`choose_reader` (:mod:`mlcamsr.reader_check`: openslide and tiffslide compared
   on a fixed sample at the levels the run reads, placed on the run's own patch centres;
   a disagreement reads that slide with openslide, its geometry and mpp taken from
   openslide too, and warns);
3. :func:`open_or_create_store` (under the store's lock): resume, refuse or create;
4. :func:`make_tasks`: one task per shard not yet done (:func:`done_records`);
5. :func:`execute_tasks` runs them (:func:`run_task` each) while :class:`SlideHasher`
   hashes the slides (only with ``--hash full``; by default each slide's O(1)
   fingerprint, :mod:`mlcamsr.fingerprint`, is taken in stage 2 by
   :func:`fingerprint_slides`, recorded when the store is created and checked by
   :func:`check_slides_unchanged` on every rerun);
6. :func:`build_table` and :func:`finish_store`: the table, the shard records folded into
   the member arrays' attributes (the work folder deleted), the attributes, ``complete``.

Stages 1-2 are cheap and write nothing.

Layout: every member is ``(N, size, size, 3)`` in shards of ``shard_rows`` whole patches
with inner chunks of ``min(chunk, member size)`` px (default ``chunk`` 256 when the finest
member is larger, else the whole patch), so a training crop decodes only the chunks it
touches. ``chunk`` is a parameter of the store like the others (recorded in ``params``
and in each member's entry; another value is refused without ``overwrite``).

Work: rows are cut into shards of ``shard_rows`` consecutive rows; one task per shard
reads its rows (each worker process keeps its slides open), runs QC
(:mod:`mlcamsr.qc`), writes the whole shard of every member in one write (zeros for
rows not kept, so a rerun never leaves stale pixels), then writes a small JSON record
``_extract/tasks/<k>.json`` (the rows' QC records, and the size and crc32c of every shard
file written, :mod:`mlcamsr.verify`). Resume = skip the shards that have a record; the
table is assembled from the records in row order, so a resumed store equals an
uninterrupted one. At the end the shard records are folded into the member arrays'
attributes and the work folder is deleted (the table holds the rows' records: a later
rerun reads them back from it, :func:`done_records`), so a finished store is plain Zarr. Repair = a rerun first reads back every recorded shard
(:func:`mlcamsr.verify.damaged_shards`) and drops the record of a damaged one, so it is
written again: exactly what ``mlcamsr verify`` lists, and the result equals a clean run.
Tasks run serially (``workers=0``), on a local dask cluster (``workers=N`` threads of one
in-process worker by default, or N processes with ``processes=True``) or on a running
dask.distributed cluster (``scheduler=ADDRESS``; its
workers must see the slides and the store at the same paths).

Per-row problems are ``failed`` rows (exit 1), never silent: slide unreadable,
square outside the slide, a read error. File-level problems (missing folder, bad coords
file, unknown slide names, unsafe names, missing mpp, bad options, a store made with
other parameters) are errors before anything is written (exit 2).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcamsr import __version__
from mlcamsr.annotations import load_for_slide, require_xml
from mlcamsr.cluster import check_scheduler
from mlcamsr.coords import read_coords, resolve_slides
from mlcamsr.errors import InputError, StoreError
from mlcamsr.fingerprint import HASH_CHOICES, fingerprint, fingerprint_change, sha256_full
from mlcamsr.patches import (
    BLOCK_CACHE,
    Geometry,
    MemberSpec,
    SquareOutside,
    choose_level,
    member_specs,
    plan_member,
    read_member,
)
from mlcamsr.qc import PAPER_RGB_MEAN, QCThresholds, check_patch
from mlcamsr.reader_check import READER_CHECK_MODES, ReaderCheck, check_readers
from mlcamsr.remote import (
    RemoteLock,
    RemotePath,
    check_fence,
    check_url,
    has_conditional_writes,
)
from mlcamsr.slides import BACKENDS, SlideReader, open_slide
from mlcamsr.store import (
    DEFAULT_ZSTD_LEVEL,
    FORMAT_VERSION,
    LOCK_NAME,
    Store,
    StoreLock,
    default_chunk,
    local_path,
    made_by_us,
    member_chunk,
    open_store,
)
from mlcamsr.verify import (
    EXTRACT_RECORDS,
    damaged_shards,
    fold_records,
    forget_records,
    read_records,
    record_key,
)

__all__ = [
    "ExtractPlan",
    "ExtractResult",
    "SlideHasher",
    "TASKS_PREFIX",
    "build_table",
    "check_options",
    "check_places",
    "choose_reader",
    "done_records",
    "drop_damaged",
    "execute_tasks",
    "extract",
    "finish_store",
    "make_tasks",
    "open_or_create_store",
    "plan_rows",
    "run_task",
]

TASKS_PREFIX = EXTRACT_RECORDS


@dataclass
class ExtractResult:
    """What one ``extract`` run did.

    Attributes:
        store: the store path/URL.
        n_rows, n_kept, n_rejected, n_failed: table counts after the run.
        failures: ``(slide, row, reason)`` of every failed row.
        tasks_run, tasks_skipped: shards written now / found already done (resume).
        repaired: shards found damaged by this rerun and written again.
        seconds: wall time of the run.
        warnings: one line per slide whose readers disagree (read with openslide).
    """

    store: str
    n_rows: int = 0
    n_kept: int = 0
    n_rejected: int = 0
    n_failed: int = 0
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    tasks_run: int = 0
    tasks_skipped: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    repaired: list[int] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every row is kept or rejected, 1 when some rows failed (SPEC)."""
        return 1 if self.n_failed else 0


# ----------------------------------------------------------------------------- workers

_READERS: OrderedDict[tuple[str, str, int], SlideReader] = OrderedDict()
_READERS_LOCK = threading.Lock()
_MAX_OPEN = 8


def _reader(path: str, backend: str) -> SlideReader:
    """The slide reader of this process and thread (opened once, never pickled)."""
    key = (path, backend, threading.get_ident())
    with _READERS_LOCK:
        r = _READERS.get(key)
        if r is not None:
            _READERS.move_to_end(key)
            return r
    r = open_slide(path, backend=backend)
    with _READERS_LOCK:
        _READERS[key] = r
        old = []
        while len(_READERS) > _MAX_OPEN:
            old.append(_READERS.popitem(last=False)[1])
    for o in old:
        try:
            o.close()
        except Exception:  # noqa: BLE001 - closing a cached reader must not fail a task
            pass
    return r


def _close_readers() -> None:
    with _READERS_LOCK:
        readers = list(_READERS.values())
        _READERS.clear()
    for r in readers:
        try:
            r.close()
        except Exception:  # noqa: BLE001
            pass


def _first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0]}" if msg else type(exc).__name__


def run_task(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Extract one shard: read, QC, write every member's shard, write the record.

    ``task`` holds plain data only (picklable): store path, shard bounds, the rows with
    their slide path, geometry and planned failure, the member specs and thresholds.
    Returns the record (one dict per row of the shard).
    """
    specs: list[MemberSpec] = task["specs"]
    th: QCThresholds = task["thresholds"]
    start, stop = task["start"], task["stop"]
    n = stop - start
    # kept rows by reference (no zeroed shard-sized block, no copy); None = rejected/failed
    blocks: dict[str, list[np.ndarray | None]] = {s.name: [None] * n for s in specs}
    order = [s.name for s in specs]
    records: list[dict[str, Any]] = []
    cache_bytes = int(task.get("cache_mb", 0) * 2**20)
    if BLOCK_CACHE.max_bytes != cache_bytes:
        BLOCK_CACHE.resize(cache_bytes)
    for row in task["rows"]:
        rec: dict[str, Any] = {"row": row["row"], "status": "failed", "reason": row.get("fail", "")}
        records.append(rec)
        if rec["reason"]:
            continue
        try:
            reader = _reader(row["path"], row.get("backend", task["backend"]))
        except Exception as exc:  # noqa: BLE001 - any open error fails this slide's rows
            rec["reason"] = f"cannot open slide: {_first_line(exc)}"
            continue
        geo: Geometry = row["geometry"]
        try:
            images: dict[str, np.ndarray] = {}
            sources: dict[str, str] = {}
            for s in specs:
                plan = plan_member(geo, row["x"], row["y"], s, allow_upsample=task["allow_upsample"])
                images[s.name] = read_member(reader, geo, plan, cache=BLOCK_CACHE)
                sources[s.name] = plan.source
        except SquareOutside as exc:
            rec["reason"] = str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a read error fails this row only
            rec["reason"] = f"read error: {_first_line(exc)}"
            continue
        qc = check_patch(images, order, th)
        rec.update(
            status="kept" if qc.ok else "rejected",
            reason=qc.reason,
            tissue_frac=qc.tissue_frac,
            stain_frac=qc.stain_frac,
            rgb_mean=list(qc.rgb_mean),
            align=qc.align_psnr,
            src=sources,
        )
        if qc.ok:
            i = row["row"] - start
            for name, img in images.items():
                blocks[name][i] = img
    store = open_store(task["store"], mode="r+")
    fence = task.get("fence")  # object storage: write only while our run holds the lease
    if fence:
        check_fence(task["store"], fence)
    written = {name: store.write_shard(name, start, block).as_dict() for name, block in blocks.items()}
    record = {"rows": records, "shards": written}
    if fence:
        check_fence(task["store"], fence)
    store.put_bytes(record_key(TASKS_PREFIX, task["shard"]), json.dumps(record).encode())
    return records


# ----------------------------------------------------------------------------- driver


def _params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _open_slides(
    df: pd.DataFrame,
    paths: dict[str, Path],
    specs: Sequence[MemberSpec],
    *,
    backend: str,
    mpp: float | None,
    allow_upsample: bool,
    reader_check: str,
) -> tuple[dict[str, dict[str, Any]], dict[str, str], list[str]]:
    """Open each slide once: its metadata and geometry, and its reader chosen while it is
    open (:func:`choose_reader`). Returns ``(info, failed, warnings)`` by name; raises for
    slides without mpp."""
    info: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    warnings: list[str] = []
    no_mpp: list[str] = []
    col_mpp = df.groupby("slide", sort=False)["mpp"].first()
    centres = {
        name: list(zip(g["x"].to_numpy(dtype=np.float64), g["y"].to_numpy(dtype=np.float64), strict=True))
        for name, g in df.groupby("slide", sort=False)
    }
    for name, path in paths.items():
        row_mpp = col_mpp.get(name, np.nan)
        try:
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
            if size == 0 and path.is_dir():
                raise InputError(f"slide {path} is a folder without files (a DICOM slide folder holds .dcm files)")
            if size == 0:
                raise InputError(f"slide {path} is empty (0 bytes)")
            with open_slide(path, backend=backend) as r:
                meta = _describe(r, name, path, int(size), row_mpp, mpp)
                check = None if meta is None else choose_reader(
                    meta, path, specs, r, centres.get(name, []), backend=backend, mode=reader_check,
                    allow_upsample=allow_upsample)
            if meta is not None and check is not None and check.reader and check.reader != r.backend:
                # the check switched readers: geometry, mpp and its source are the chosen one's
                with open_slide(path, backend=check.reader) as chosen:
                    meta = _describe(chosen, name, path, int(size), row_mpp, mpp)
                if meta is not None:
                    meta["reader_check"] = check.as_attrs()
        except InputError as exc:  # open_slide's one-line reason (empty, truncated, not a WSI)
            failed[name] = str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - unreadable slide: its rows fail, run goes on
            failed[name] = f"cannot open slide {path.name}: {_first_line(exc)}"
            continue
        if meta is None:
            no_mpp.append(name)
            continue
        if check is not None and check.status == "disagree":
            warnings.append(check.message)
        info[name] = meta
    if no_mpp:
        shown = ", ".join(no_mpp[:3]) + (f" and {len(no_mpp) - 3} more" if len(no_mpp) > 3 else "")
        raise InputError(
            f"slide(s) {shown} have no mpp in their metadata; add an mpp column to the coords "
            "file or pass --mpp (never guessed)"
        )
    return info, failed, warnings


def _describe(r: SlideReader, name: str, path: Path, size: int, row_mpp: float,
              mpp: float | None) -> dict[str, Any] | None:
    """A slide's metadata as read by ``r``: levels, vendor, the backend (``reader``), mpp
    (um/px) and where it came from (``r``'s metadata, else the coords column, else
    ``--mpp``), and its :class:`~mlcamsr.patches.Geometry`; None when it has no mpp."""
    dims = tuple((int(w), int(h)) for w, h in r.level_dimensions)
    own = r.mpp
    meta: dict[str, Any] = {
        "path": name,
        **({"url": str(path), "etag": path.etag} if isinstance(path, RemotePath) else {}),
        "size": size,
        "reader": str(r.backend),
        "vendor": r.vendor,
        "levels": [list(d) for d in dims],
    }
    mpp_source = getattr(r, "mpp_source", None)
    if own is not None and all(v and math.isfinite(v) and v > 0 for v in own):
        m = (float(own[0]), float(own[1]))
    elif row_mpp == row_mpp and row_mpp is not None and not np.isnan(row_mpp):
        m, mpp_source = (float(row_mpp), float(row_mpp)), "coords:mpp"
    elif mpp is not None:
        m, mpp_source = (float(mpp), float(mpp)), "option:--mpp"
    else:
        return None
    meta["mpp"] = list(m)
    meta["mpp_source"] = mpp_source
    meta["geometry"] = Geometry(dims, tuple((dims[0][0] / w, dims[0][1] / h) for w, h in dims), m)
    return meta


def _make_table(
    df: pd.DataFrame,
    records: dict[int, dict[str, Any]],
    specs: Sequence[MemberSpec],
    extra: Sequence[str],
    tumor_frac: np.ndarray,
    labels: np.ndarray,
) -> pd.DataFrame:
    n = len(df)
    names = [s.name for s in specs]
    status = np.empty(n, dtype=object)
    reason = np.empty(n, dtype=object)
    index = np.full(n, -1, dtype=np.int64)
    tissue = np.full(n, np.nan)
    stain = np.full(n, np.nan)
    rgb = np.full((n, 3), np.nan)
    align = {m: np.full(n, np.nan) for m in names[1:]}
    src = {m: np.empty(n, dtype=object) for m in names}
    for i in range(n):
        rec = records[i]
        status[i] = rec["status"]
        reason[i] = rec.get("reason", "")
        if rec["status"] == "kept":
            index[i] = i
        if "tissue_frac" in rec:
            tissue[i] = rec["tissue_frac"]
            stain[i] = np.nan if rec.get("stain_frac") is None else rec["stain_frac"]
            rgb[i] = rec["rgb_mean"]
            for m in names[1:]:
                v = rec["align"].get(m)
                align[m][i] = np.inf if v is None else v
        for m in names:
            src[m][i] = rec.get("src", {}).get(m, "")
    cols: dict[str, Any] = {
        "slide": df["slide"].astype(str).to_numpy(),
        "x": df["x"].to_numpy(),
        "y": df["y"].to_numpy(),
        "label": labels,
        "status": status,
        "reason": reason,
        "index": index,
        "tissue_frac": tissue,
        "stain_frac": stain,
        "rgb_mean_r": rgb[:, 0],
        "rgb_mean_g": rgb[:, 1],
        "rgb_mean_b": rgb[:, 2],
    }
    for m in names[1:]:
        cols[f"align_psnr_{m}"] = align[m]
    for m in names:
        cols[f"src_{m}"] = src[m]
    cols["tumor_frac"] = tumor_frac
    cols["split"] = pd.Series([None] * n, dtype="object")
    table = pd.DataFrame(cols)
    for c in ("slide", "label", "status", "reason", *[f"src_{m}" for m in names]):
        table[c] = table[c].astype(str)
    for c in extra:
        if c not in table.columns:
            table[c] = df[c].to_numpy()
    return table


def _labels(
    df: pd.DataFrame, annotations: str | os.PathLike[str] | None, half_widths: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    labels = df["label"].astype(str).to_numpy(dtype=object)
    tumor = np.full(len(df), np.nan)
    if annotations is None:
        return labels, tumor
    ann_dir = Path(annotations)
    if not ann_dir.is_dir():
        raise InputError(f"--annotations {ann_dir} is not a folder; give the folder of ASAP XML files")
    require_xml(ann_dir)

    for slide, idx in df.groupby("slide", sort=False).indices.items():
        hw = half_widths.get(slide)
        if hw is None:
            continue
        try:
            ann = load_for_slide(ann_dir, slide)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"--annotations: cannot read the XML of slide {slide}: {_first_line(exc)}") from None
        lab, frac = ann.label_many(df["x"].to_numpy()[idx], df["y"].to_numpy()[idx], hw)
        labels[idx] = lab
        tumor[idx] = frac
    return labels, tumor


def _summary(table: pd.DataFrame, specs: Sequence[MemberSpec]) -> dict[str, Any]:
    kept = table[table.status == "kept"]
    out: dict[str, Any] = {
        "rows": len(table),
        "kept": int((table.status == "kept").sum()),
        "rejected": int((table.status == "rejected").sum()),
        "failed": int((table.status == "failed").sum()),
    }
    if len(kept):
        out["tissue_frac_median"] = float(kept.tissue_frac.median())
        if kept.stain_frac.notna().any():
            out["stain_frac_min"] = float(kept.stain_frac.min())
        for s in specs[1:]:
            col = kept[f"align_psnr_{s.name}"].replace(np.inf, np.nan)
            if col.notna().any():
                out[f"align_psnr_{s.name}_min"] = float(col.min())
                out[f"align_psnr_{s.name}_median"] = float(col.median())
    return out


def _progress_bar(total: int, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="patch", desc="extract", disable=not enabled, leave=True)


# Dask settings of the local cluster extract starts (not of a --scheduler's workers):
# - distributed's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in workers, which turns every
#   large numpy temporary into a fresh mmap (page faults): +50 % CPU per patch here. Keep
#   its one-thread BLAS settings, drop that one.
# - the worker's statistical profiler walks every task thread's stack each 10 ms (for the
#   dashboard's profile page) while holding the GIL; extract's tasks are long, uniform and
#   need no profile: off.
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1,
                                            "OPENBLAS_NUM_THREADS": 1},
    "distributed.worker.profile.enabled": False,
}


def _run_tasks(
    tasks: list[dict[str, Any]],
    *,
    workers: int,
    scheduler: str | None,
    processes: bool = False,
    dashboard: bool = False,
) -> Iterable[tuple[dict[str, Any], list[dict[str, Any]] | BaseException]]:
    """Yield ``(task, records or exception)`` as tasks finish.

    A local cluster listens on no network interface: no dashboard unless ``dashboard``
    (then on 127.0.0.1:8787, or a free port), and distributed's own HTTP endpoints (which
    it always starts) on 127.0.0.1 at a free port; process workers talk over 127.0.0.1."""
    if not tasks:
        return
    if scheduler is None and workers <= 0:
        for t in tasks:
            try:
                res: list[dict[str, Any]] | BaseException = run_task(t)
            except Exception as exc:  # noqa: BLE001
                res = exc
            yield t, res
        return
    import logging

    from distributed import Client, LocalCluster, as_completed

    cluster = None
    # distributed's workers write their environment settings (OMP_NUM_THREADS=1,
    # MALLOC_TRIM_THRESHOLD_, ...) into os.environ of this process; a library call must
    # not leave them behind for the caller (they slowed later torch work, and changed
    # its memory use, in the same process).
    environ_before = dict(os.environ)
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s")
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"--scheduler {scheduler}: cannot connect ({_first_line(exc)}); check the address") from None
    else:
        import dask

        # every listener on loopback: the scheduler serves HTTP routes with or without a
        # dashboard, so every address is a loopback one and scheduler_kwargs (merged last by
        # LocalCluster) says whether the dashboard is on
        http = "127.0.0.1:8787" if dashboard else "127.0.0.1:0"
        loopback: dict[str, Any] = {
            "dashboard_address": http,
            "worker_dashboard_address": "127.0.0.1:0",
            "scheduler_kwargs": {"dashboard": bool(dashboard), "dashboard_address": http},
            "silence_logs": logging.ERROR,
        }
        with dask.config.set(LOCAL_CLUSTER_CONFIG):
            if not processes:  # one in-process worker with N threads: no start-up, one shared cache
                cluster = LocalCluster(n_workers=1, threads_per_worker=workers, processes=False, **loopback)
            else:
                cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", **loopback
                )
        client = Client(cluster)
    try:
        futures = {}
        for t in tasks:
            f = client.submit(run_task, t, pure=False, key=f"extract-shard-{t['shard']}-{t['token']}")
            futures[f] = t
        for fut in as_completed(list(futures)):
            t = futures[fut]
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001
                res = exc
            yield t, res
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        _restore_environ(environ_before)


def _restore_environ(before: dict[str, str]) -> None:
    for key in set(os.environ) - set(before):
        del os.environ[key]
    for key, value in before.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@dataclass
class ExtractPlan:
    """What the driver knows before anything is written (stage 2, :func:`plan_rows`).

    Attributes:
        coords: the coords table (:func:`mlcamsr.coords.read_coords`), one row per patch.
        extra: the coords file's own extra columns, copied into the store table.
        paths: slide name -> file (or DICOM folder).
        slides: name -> metadata of every slide that opened (its ``geometry`` included).
        failed_slides: name -> reason, for slides that did not open (their rows fail).
        pre_fail: row -> reason, for rows failed before any read.
        labels, tumor_frac: per-row label and tumour fraction (NaN without annotations).
        warnings: one line per slide whose two readers disagree (:func:`choose_reader`).
    """

    coords: pd.DataFrame
    extra: list[str]
    paths: dict[str, Path]
    slides: dict[str, dict[str, Any]]
    failed_slides: dict[str, str]
    pre_fail: dict[int, str]
    labels: np.ndarray
    tumor_frac: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of rows (patches) of the run."""
        return len(self.coords)


def check_options(
    *,
    size: int,
    base_mpp: float,
    base_mag: float,
    scales: Sequence[int],
    backend: str,
    mpp: float | None,
    shard_rows: int,
    chunk: int | None,
    reader_check: str = "on",
    min_tissue: float,
    rgb_mean: Sequence[float],
    rgb_tol: float,
    min_align_psnr: float,
    min_stain: float = QCThresholds.min_stain,
    cache_mb: float = 0.0,
) -> tuple[list[MemberSpec], QCThresholds, int]:
    """Stage 1: the members, QC thresholds and inner chunk side (px) of a run, or InputError
    (every number finite and in range: a NaN threshold would switch QC off silently)."""
    _check_numbers(
        size=size, base_mpp=base_mpp, base_mag=base_mag, min_tissue=min_tissue, rgb_mean=rgb_mean,
        rgb_tol=rgb_tol, min_align_psnr=min_align_psnr, min_stain=min_stain, cache_mb=cache_mb,
    )
    specs = member_specs(int(size), float(base_mpp), float(base_mag), scales)
    small = [s for s in specs if s.size < MIN_MEMBER_PX]
    if small:
        raise InputError(
            f"--scales {','.join(map(str, scales))}: member {small[0].name} would be {small[0].size} px "
            f"(--size {size} / {small[0].scale}); every member needs at least {MIN_MEMBER_PX} px"
        )
    if mpp is not None and not (mpp > 0 and math.isfinite(mpp)):
        raise InputError(f"--mpp {mpp}: give a positive um/px, e.g. 0.243")
    if backend not in BACKENDS:
        raise InputError(f"--backend {backend}: choose {', '.join(BACKENDS)}")
    if reader_check not in READER_CHECK_MODES:
        raise InputError(f"--reader-check {reader_check}: choose {', '.join(READER_CHECK_MODES)}")
    if shard_rows < 1:
        raise InputError(f"--shard-rows {shard_rows}: give at least 1")
    if chunk is not None and int(chunk) < 16:
        raise InputError(
            f"--chunk {chunk}: give an inner chunk side of at least 16 px (default 256; "
            f"{int(size)} = one chunk per patch)"
        )
    chunk_px = member_chunk(default_chunk(size) if chunk is None else int(chunk), int(size))
    th = QCThresholds(
        min_tissue=float(min_tissue),
        rgb_mean=tuple(float(v) for v in rgb_mean),  # type: ignore[arg-type]
        rgb_tol=float(rgb_tol),
        min_align_psnr=float(min_align_psnr),
        min_stain=float(min_stain),
    )
    if len(th.rgb_mean) != 3:
        raise InputError(f"--rgb-mean {rgb_mean}: give three values in [0, 1], e.g. "
                         f"{','.join(f'{v:g}' for v in PAPER_RGB_MEAN)}")
    return specs, th, chunk_px


MIN_MEMBER_PX = 8
"""Smallest member side (px) extract makes."""


def _check_numbers(**options: Any) -> None:
    """Every numeric option finite and in range (a NaN would switch QC off silently)."""

    def bad(name: str, value: Any, want: str) -> InputError:
        return InputError(f"--{name.replace('_', '-')} {value}: give {want}")

    for name, value in options.items():
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        shown = ",".join(map(str, values))
        try:
            nums = [float(v) for v in values]
        except (TypeError, ValueError):
            raise bad(name, shown, "a number") from None
        if not all(math.isfinite(v) for v in nums):
            raise bad(name, shown, "finite numbers" if len(nums) > 1 else "a finite number")
    for name in ("min_tissue", "min_stain"):
        if not 0 <= float(options[name]) <= 1:
            raise bad(name, options[name], "a fraction in [0, 1]")
    if len(options["rgb_mean"]) != 3 or not all(0 <= float(v) <= 1 for v in options["rgb_mean"]):
        shown = ",".join(map(str, options["rgb_mean"]))
        raise bad("rgb_mean", shown, "three values in [0, 1], e.g. 0.7204,0.4298,0.6379")
    for name in ("base_mpp", "base_mag", "size"):
        if float(options[name]) <= 0:
            raise bad(name, options[name], "a positive number")
    for name in ("rgb_tol", "cache_mb"):
        if float(options[name]) < 0:
            raise bad(name, options[name], "a number >= 0")


def plan_rows(
    slides_dir: str | os.PathLike[str],
    coords_csv: str | os.PathLike[str],
    specs: Sequence[MemberSpec],
    *,
    backend: str,
    mpp: float | None,
    allow_upsample: bool,
    annotations: str | os.PathLike[str] | None,
    reader_check: str = "on",
) -> ExtractPlan:
    """Stage 2: read the coords, open every slide once, plan every row, label the rows,
    choose each slide's reader (:func:`choose_reader`, while the slide is open).

    File-level problems raise InputError (nothing is written yet); an unreadable slide or
    a square outside its slide only fails the rows concerned (``pre_fail``).
    """
    df = read_coords(coords_csv)
    original_cols = list(pd.read_csv(coords_csv, nrows=0).columns.str.strip())
    extra = [c for c in original_cols if c not in ("slide", "x", "y", "label")]
    paths = resolve_slides(df, slides_dir)
    slides, failed_slides, warnings = _open_slides(df, paths, specs, backend=backend, mpp=mpp,
                                                   allow_upsample=allow_upsample, reader_check=reader_check)
    for name, meta in slides.items():
        for s in specs:
            try:
                choose_level(meta["geometry"], s.mpp, allow_upsample=allow_upsample)
            except InputError as exc:
                raise InputError(f"slide {name}: {exc}") from None
    pre_fail = _plan_failures(df, slides, failed_slides, specs, allow_upsample=allow_upsample)
    half_widths = {
        name: specs[0].size * specs[0].mpp / meta["geometry"].mpp[0] / 2.0 for name, meta in slides.items()
    }
    labels, tumor = _labels(df, annotations, half_widths)
    return ExtractPlan(df, extra, paths, slides, failed_slides, pre_fail, labels, tumor, warnings)


def choose_reader(
    meta: dict[str, Any],
    path: Path,
    specs: Sequence[MemberSpec],
    opened: SlideReader,
    centres: Sequence[tuple[float, float]],
    *,
    backend: str,
    mode: str,
    allow_upsample: bool,
) -> ReaderCheck | None:
    """Stage 2, per slide while it is open: compare openslide and tiffslide at the levels its
    members are read from (:func:`mlcamsr.reader_check.check_readers`, on windows at the
    run's own patch ``centres``, level-0 px, with the ``opened`` reader reused) and set
    ``meta["reader"]`` (the backend its rows are read with) and ``meta["reader_check"]``
    (status, per-level max/mean absolute difference). A slide whose members cannot be
    planned (upsampling) is not checked (None): :func:`plan_rows` refuses it next. A read
    error in the sample is an InputError naming the slide (its rows fail)."""
    try:
        levels = sorted({choose_level(meta["geometry"], s.mpp, allow_upsample=allow_upsample)[0] for s in specs})
    except InputError:
        return None
    try:
        check = check_readers(path, levels, backend=backend, mode=mode, centres=centres, opened=opened)
    except Exception as exc:  # noqa: BLE001 - a read error in the sample: this slide's rows fail
        raise InputError(f"slide {path.name}: the reader check could not read its sample "
                         f"({_first_line(exc)}); --reader-check off skips the check") from None
    if check.reader:
        meta["reader"] = check.reader
    meta["reader_check"] = check.as_attrs()
    return check


def _plan_failures(
    df: pd.DataFrame,
    slides: dict[str, dict[str, Any]],
    failed_slides: dict[str, str],
    specs: Sequence[MemberSpec],
    *,
    allow_upsample: bool,
) -> dict[int, str]:
    """Row -> reason for the rows that fail before any read (slide unreadable, square outside)."""
    pre_fail: dict[int, str] = {}
    xs, ys = df["x"].to_numpy(dtype=np.float64), df["y"].to_numpy(dtype=np.float64)
    for i, slide in enumerate(df["slide"]):
        if slide in failed_slides:
            pre_fail[i] = failed_slides[slide]
            continue
        geo = slides[slide]["geometry"]
        try:
            for s in specs:
                plan_member(geo, xs[i], ys[i], s, allow_upsample=allow_upsample)
        except SquareOutside as exc:
            pre_fail[i] = str(exc)
    return pre_fail


def check_places(out: str, *, scheduler: str | None) -> None:
    """Stage 0: a store URL's endpoint, credentials and bucket, and the ``scheduler``, answer
    (one line and exit 2 otherwise, before anything is read or written)."""
    if "://" in out:
        check_url(out, what="--out", must_exist=False)
    if scheduler is not None:
        check_scheduler(scheduler)


def _lock_out(out: str) -> StoreLock | RemoteLock | None:
    """Refuse an ``out`` folder that is not a store, then take its lock: a lock file, or on
    ``s3://`` a lease with a fencing token (:class:`mlcamsr.remote.RemoteLock`); None for
    other URLs."""
    if has_conditional_writes(out):
        return RemoteLock(out).acquire()
    if "://" in out:
        return None
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise StoreError(f"--out {p} exists and is not a folder; choose another path")
    if made_by_us(p) is False:  # never written into, never replaced, even with --overwrite
        raise StoreError(
            f"--out {p} is not a store this tool made (a foreign Zarr store or other "
            "files); it is never replaced: choose another --out"
        )
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"--out {p}: cannot create the folder ({exc.strerror}); choose another path") from None
    return StoreLock(p / LOCK_NAME).acquire()


def open_or_create_store(
    out: str,
    params: dict[str, Any],
    specs: Sequence[MemberSpec],
    *,
    overwrite: bool,
    slide_hash: str = "none",
    prints: dict[str, dict[str, Any]] | None = None,
) -> tuple[Store, bool]:
    """Stage 3: ``(store, resumed)``: resume a store made with the same ``params``, refuse
    one made with others (unless ``overwrite``) or anything this tool did not make (even
    with ``overwrite``), else create it with empty members and the slides' fingerprints
    ``prints`` (what a resume checks). The caller holds the lock."""
    phash = _params_hash(params)
    try:
        existing: Store | None = open_store(out, mode="r+")
    except StoreError:
        existing = None
    if existing is not None:
        old = existing.attrs
        if old.get("params_hash") == phash or _params_hash(_before_stain_check(params, old)) == old.get("params_hash"):
            return existing, True
        if not overwrite:
            what = _params_diff(old.get("params", {}), params)
            raise StoreError(
                f"{out} was made with other parameters ({what}); use the same options, "
                "another --out, or --overwrite to replace it"
            )
    store = open_store(out, mode="w")  # refuses what this tool did not make (made_by_us)
    store.update_attrs(
        format_version=FORMAT_VERSION,
        tool_version=__version__,
        params=params,
        params_hash=phash,
        complete=False,
        slide_hash=slide_hash,
        slides={name: {"path": name, "fingerprint": fp} for name, fp in (prints or {}).items()},
    )
    for s in specs:
        store.create_member(
            s.name,
            n=int(params["n_rows"]),
            size=s.size,
            mpp=s.mpp,
            scale=s.scale,
            mag=s.mag,
            kind="real",
            shard_rows=int(params["shard_rows"]),
            zstd_level=int(params["zstd_level"]),
            chunk=int(params["chunk"]),
        )
    return store, False


def zstd_level_for(out: str, zstd_level: int | None) -> int:
    """The Zstandard level a run writes: ``zstd_level`` when given; else the level recorded
    by the store at ``out`` (so rerunning the command that made a store with the earlier
    default, level 1, resumes it, with or without ``--overwrite``, instead of replacing or
    refusing it for other parameters); else :data:`DEFAULT_ZSTD_LEVEL`. Read before the run
    takes the lock: a store changed in between, or one whose recorded level is not a whole
    number, meets the parameter check as usual (a one-line refusal)."""
    if zstd_level is not None:
        return int(zstd_level)
    if not made_by_us(out):
        return DEFAULT_ZSTD_LEVEL
    try:
        params = open_store(out, mode="r").attrs.get("params")
    except StoreError:
        return DEFAULT_ZSTD_LEVEL
    level = params.get("zstd_level") if isinstance(params, dict) else None
    return level if isinstance(level, int) and not isinstance(level, bool) else DEFAULT_ZSTD_LEVEL


def _before_stain_check(params: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """``params`` as a store made before the stain check recorded them (its QC parameters
    have no ``min_stain``): such a store resumes and repairs under its own rules
    (:func:`store_thresholds`)."""
    if "min_stain" in ((old.get("params") or {}).get("qc") or {}):
        return params
    qc = {k: v for k, v in params.get("qc", {}).items() if k != "min_stain"}
    return {**params, "qc": qc}


def store_thresholds(store: Store, th: QCThresholds) -> QCThresholds:
    """The QC thresholds a resumed store is finished with: ``th``, with the stain check off
    for a store made before it existed (so a repaired shard equals the original one)."""
    if "min_stain" in (store.attrs.get("params", {}).get("qc") or {}):
        return th
    return replace(th, min_stain=0.0)


def done_records(store: Store, specs: Sequence[MemberSpec] = ()) -> dict[int, list[dict[str, Any]]]:
    """Shard -> its row records, for every shard an earlier run finished (resume): a
    work record's rows, or for a shard whose record was folded at the end of a run
    (format 3), its rows read back from the table (:func:`records_from_table`). When
    the table does not read, folded shards count as not done (they are extracted again)."""
    records = read_records(store, TASKS_PREFIX)
    out = {k: rec["rows"] for k, rec in records.items() if "rows" in rec}
    folded = sorted(k for k, rec in records.items() if "rows" not in rec and rec.get("folded"))
    if folded:
        try:
            table = store.table
        except StoreError:
            return out
        rows = int(store.attrs.get("params", {}).get("shard_rows") or 16)
        names = [s.name for s in specs] or [m for m in store.members if store.member_info(m).get("kind") != "bicubic"]
        for k in folded:
            out[k] = records_from_table(table, names, range(k * rows, min((k + 1) * rows, len(table))))
    return out


def records_from_table(table: pd.DataFrame, members: Sequence[str], rows: Iterable[int]) -> list[dict[str, Any]]:
    """The row records :func:`run_task` wrote for ``rows``, read back from the table
    (the inverse of :func:`_make_table`: the table built from them is the same)."""
    out: list[dict[str, Any]] = []
    for i in rows:
        t = table.iloc[int(i)]
        rec: dict[str, Any] = {"row": int(i), "status": str(t["status"]), "reason": str(t["reason"])}
        if not pd.isna(t["tissue_frac"]):
            rec["tissue_frac"] = float(t["tissue_frac"])
            rec["stain_frac"] = float(t["stain_frac"]) if "stain_frac" in t.index else None
            rec["rgb_mean"] = [float(t[f"rgb_mean_{c}"]) for c in "rgb"]
            rec["align"] = {
                m: None if np.isposinf(t[f"align_psnr_{m}"]) else float(t[f"align_psnr_{m}"]) for m in members[1:]
            }
            rec["src"] = {m: str(t[f"src_{m}"]) for m in members}
        out.append(rec)
    return out


def drop_damaged(store: Store, specs: Sequence[MemberSpec]) -> list[int]:
    """Stage 3b: read back what earlier runs wrote; the shards found damaged lose their
    record, work or folded (so :func:`make_tasks` writes them again). Returns those
    shards, sorted."""
    damaged = sorted(damaged_shards(store, [s.name for s in specs], TASKS_PREFIX))
    forget_records(store, TASKS_PREFIX, damaged)
    return damaged


def _table_ok(store: Store) -> bool:
    """Whether the store's table reads and checks out (else a rerun rewrites it)."""
    try:
        store.table  # noqa: B018 - reading it is the check
    except StoreError:
        return False
    return True


def make_tasks(
    plan: ExtractPlan,
    specs: Sequence[MemberSpec],
    th: QCThresholds,
    *,
    store: str,
    skip: Iterable[int],
    shard_rows: int,
    backend: str,
    allow_upsample: bool,
    token: str,
    cache_mb: float,
    fence: int = 0,
) -> list[dict[str, Any]]:
    """Stage 4: one picklable task (see :func:`run_task`) per shard of ``shard_rows`` rows,
    leaving out the shards in ``skip`` (done by an earlier run)."""
    skip = set(skip)
    df, n = plan.coords, plan.n
    xs, ys = df["x"].to_numpy(dtype=np.float64), df["y"].to_numpy(dtype=np.float64)
    tasks: list[dict[str, Any]] = []
    for k, start in enumerate(range(0, n, shard_rows)):
        if k in skip:
            continue
        stop = min(start + shard_rows, n)
        rows = []
        for i in range(start, stop):
            slide = df["slide"].iat[i]
            row: dict[str, Any] = {"row": i, "x": float(xs[i]), "y": float(ys[i]), "fail": plan.pre_fail.get(i, "")}
            if not row["fail"]:
                row["path"] = str(plan.paths[slide])
                row["geometry"] = plan.slides[slide]["geometry"]
                row["backend"] = plan.slides[slide]["reader"]  # per slide (choose_reader)
            rows.append(row)
        tasks.append(
            {
                "store": store,
                "shard": k,
                "start": start,
                "stop": stop,
                "rows": rows,
                "specs": list(specs),
                "thresholds": th,
                "backend": backend,
                "allow_upsample": bool(allow_upsample),
                "token": token,
                "fence": int(fence),
                "cache_mb": float(cache_mb),
            }
        )
    return tasks


def fingerprint_slides(paths: dict[str, Path], slide_hash: str) -> dict[str, dict[str, Any]]:
    """The O(1) fingerprint of every slide by name (none with ``--hash none``; a path
    that cannot be read gets none: its rows fail when it is opened)."""
    if slide_hash not in HASH_CHOICES:
        raise InputError(f"--hash {slide_hash}: choose {', '.join(HASH_CHOICES)}")
    out: dict[str, dict[str, Any]] = {}
    if slide_hash == "none":
        return out
    for name, path in paths.items():
        try:
            out[name] = fingerprint(path)
        except OSError:
            continue
    return out


def check_slides_unchanged(store: Store, prints: dict[str, dict[str, Any]], out: str) -> None:
    """Refuse to resume (or call done) a store whose slides changed since it was started."""
    recorded = store.attrs.get("slides", {})
    for name, fp in prints.items():
        why = fingerprint_change((recorded.get(name) or {}).get("fingerprint"), fp)
        if why:
            raise StoreError(
                f"slide {name} is not the file {out} was started from: {why}; restore the "
                "original slide, or use another --out or --overwrite to extract from the new one"
            )


class SlideHasher:
    """sha256 of every byte of every slide (``--hash full``) in a background thread while
    the tasks run (hashlib releases the GIL). ``start()`` then ``join()`` -> name ->
    ``(hex digest, bytes read)``."""

    def __init__(self, paths: dict[str, Path], enabled: bool = True) -> None:
        self.paths = paths
        self.hashes: dict[str, tuple[str, int]] = {}
        self._thread: threading.Thread | None = None
        self.enabled = enabled

    def start(self) -> SlideHasher:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="mlcamsr-sha256", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        for name, path in self.paths.items():
            self.hashes[name] = sha256_full(path)

    def join(self) -> dict[str, tuple[str, int]]:
        if self._thread is not None:
            self._thread.join()
        return self.hashes


def execute_tasks(
    tasks: list[dict[str, Any]],
    done: dict[int, list[dict[str, Any]]],
    *,
    n_rows: int,
    workers: int,
    scheduler: str | None,
    processes: bool,
    progress: bool,
    dashboard: bool = False,
) -> dict[int, str]:
    """Stage 5: run ``tasks``, adding each shard's records to ``done``; returns shard ->
    reason for the tasks that raised (their rows are ``failed``; no record was written,
    so a rerun retries exactly those shards)."""
    bar = _progress_bar(n_rows, progress, initial=sum(len(v) for v in done.values()))
    task_errors: dict[int, str] = {}
    try:
        for t, res in _run_tasks(
            tasks, workers=int(workers), scheduler=scheduler, processes=processes, dashboard=dashboard
        ):
            if isinstance(res, BaseException):
                reason = f"task error: {_first_line(res)}"
                task_errors[t["shard"]] = reason
                res = [{"row": r["row"], "status": "failed", "reason": reason} for r in t["rows"]]
            done[t["shard"]] = res
            bar.update(len(res))
    finally:
        bar.close()
        BLOCK_CACHE.clear()  # serial/thread runs filled this process's cache
        _close_readers()
    return task_errors


def build_table(plan: ExtractPlan, done: dict[int, list[dict[str, Any]]], specs: Sequence[MemberSpec]) -> pd.DataFrame:
    """Stage 6: the store table from the shard records, in row order (resume-independent)."""
    records: dict[int, dict[str, Any]] = {}
    for recs in done.values():
        for rec in recs:
            records[int(rec["row"])] = rec
    return _make_table(plan.coords, records, specs, plan.extra, plan.tumor_frac, plan.labels)


def finish_store(
    store: Store,
    table: pd.DataFrame,
    plan: ExtractPlan,
    specs: Sequence[MemberSpec],
    *,
    chunk_px: int,
    hashes: dict[str, tuple[str, int]],
    complete: bool,
    slide_hash: str = "none",
    prints: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Stage 6: write the table and the slide, member and QC attributes; mark the store
    ``complete`` when no task failed."""
    slide_attrs: dict[str, Any] = {}
    for name, meta in plan.slides.items():
        m = {k: v for k, v in meta.items() if k != "geometry"}
        m["downsamples"] = [list(d) for d in meta["geometry"].downsamples]
        prints = prints or {}
        if name in prints:
            m["fingerprint"] = prints[name]
        if name in hashes:
            m["sha256"] = hashes[name][0]
        slide_attrs[name] = m
    for name, reason in plan.failed_slides.items():
        slide_attrs[name] = {"path": name, "error": reason}
        if prints and name in prints:
            slide_attrs[name]["fingerprint"] = prints[name]
    members = []
    for s in specs:
        col = table.loc[table.status == "kept", f"src_{s.name}"]
        members.append(
            {
                "name": s.name,
                "mpp": s.mpp,
                "size": s.size,
                "scale": s.scale,
                "mag": s.mag,
                "kind": "real",
                "chunk": member_chunk(chunk_px, s.size),
                "sources": {str(k): int(v) for k, v in col.value_counts().sort_index().items()},
            }
        )
    ours = {s.name for s in specs}
    members += [m for m in store.attrs.get("members", []) if m.get("name") not in ours]
    root = store.local_root
    if root is not None:  # temp files of writes cut by a kill (we hold the lock: none live)
        for s in specs:
            for tmp in (root / s.name).rglob(".*.tmp"):
                tmp.unlink(missing_ok=True)
    store.write_table(table)
    fold_records(store, TASKS_PREFIX)  # the rows' records are now the table; no work folder stays
    store.update_attrs(
        slides=slide_attrs,
        slide_hash=slide_hash,
        members=members,
        qc_summary=_summary(table, specs),
        complete=complete,
    )


def extract(
    slides_dir: str | os.PathLike[str],
    coords_csv: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    size: int = 1024,
    base_mpp: float = 0.243,
    base_mag: float = 40,
    scales: Sequence[int] = (1, 2, 4),
    workers: int = 2,
    scheduler: str | None = None,
    backend: str = "auto",
    reader_check: str = "on",
    mpp: float | None = None,
    annotations: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    allow_upsample: bool = False,
    min_tissue: float = 0.5,
    rgb_mean: Sequence[float] = PAPER_RGB_MEAN,
    rgb_tol: float = 0.25,
    min_align_psnr: float = 25.0,
    min_stain: float = QCThresholds.min_stain,
    shard_rows: int = 16,
    zstd_level: int | None = None,
    chunk: int | None = None,
    hash_slides: str | bool = "fingerprint",
    cache_mb: float = 256,
    processes: bool = False,
    progress: bool = True,
    dashboard: bool = False,
) -> ExtractResult:
    """Extract aligned multi-scale patches from ``slides_dir`` at the centres in ``coords_csv``.

    Args:
        slides_dir: folder holding the slides named in the coords file.
        coords_csv: ``slide,x,y[,label,mpp,...]`` (see :mod:`mlcamsr.coords`).
        out: store path or fsspec URL (created; resumed when it holds an unfinished run
            with the same parameters).
        size: finest member size in px (default 1024).
        base_mpp: finest member um/px (default 0.243, CAMELYON16 40x).
        base_mag: finest member magnification, used in names (default 40 -> ``40x``).
        scales: member scales (default 1,2,4 -> 40x 1024 px, 20x 512 px, 10x 256 px).
        workers: local dask worker processes; 0 runs serially in this process.
        scheduler: address of a running dask.distributed scheduler (overrides ``workers``).
        backend: slide reader, ``auto``, ``openslide`` or ``tiffslide`` (forces that reader).
        reader_check: ``on`` (with ``auto``, compare both readers per slide and read a
            slide they disagree on with openslide; :mod:`mlcamsr.reader_check`) or ``off``.
        mpp: um/px for slides without metadata and no ``mpp`` column value.
        annotations: folder of ASAP XML lesion files; labels ``tumor``/``normal`` + ``tumor_frac``.
        overwrite: replace a store made with other parameters.
        allow_upsample: allow members finer than the slide's finest level.
        min_tissue, rgb_mean, rgb_tol, min_align_psnr, min_stain: QC thresholds
            (:class:`QCThresholds`; ``min_stain=0`` switches the H&E stain check off).
        shard_rows: patches per shard file and per task.
        chunk: inner chunk side in px of the member arrays; each member gets
            ``min(chunk, member size)``. Default: 256 when ``size`` > 256, else the whole
            patch (``chunk >= size``: one chunk per patch, the earlier layout). At least 16.
        zstd_level: Zstandard level of the member arrays (lossless). ``None`` (default):
            the level of the store at ``out`` when it exists (a rerun resumes it, whatever
            the default was when it was made), else :data:`DEFAULT_ZSTD_LEVEL` (-1).
        hash_slides: how slides are identified (:mod:`mlcamsr.fingerprint`, recorded as
            ``attrs["slide_hash"]``): ``"fingerprint"`` (default, O(1) per slide: size,
            mtime, TIFF structure and fixed byte ranges; checked on every rerun, so a
            replaced or truncated slide stops a resume), ``"full"`` (also the sha256 of
            every byte, read in a background thread) or ``"none"``. ``False`` = ``"none"``,
            ``True`` = ``"fingerprint"``.
        cache_mb: per-process cache of decoded slide blocks (MiB; 0 disables). Patches
            sharing pyramid tiles decode them once per worker; the pixels do not change.
        progress: show a progress bar (stderr).
        dashboard: serve the local dask cluster's dashboard on 127.0.0.1 (default: none;
            nothing listens on a network interface).

    Returns:
        :class:`ExtractResult`; ``result.exit_code`` is 1 when rows failed.

    Raises:
        InputError: bad options, coords file, slide names, slides without mpp.
        StoreError: the store is locked, foreign, or made with other parameters.
    """
    t0 = time.perf_counter()
    out_s = local_path(out)
    check_places(out_s, scheduler=scheduler)
    specs, th, chunk_px = check_options(
        size=size, base_mpp=base_mpp, base_mag=base_mag, scales=scales, backend=backend, mpp=mpp,
        shard_rows=shard_rows, chunk=chunk, min_tissue=min_tissue, rgb_mean=rgb_mean,
        rgb_tol=rgb_tol, min_align_psnr=min_align_psnr, min_stain=min_stain, reader_check=reader_check,
        cache_mb=cache_mb,
    )
    if str(out).startswith("memory://"):
        raise InputError(f"--out {out}: a memory:// store vanishes when the command ends; give a path or URL")
    if isinstance(hash_slides, bool):
        slide_hash = "fingerprint" if hash_slides else "none"
    else:
        slide_hash = str(hash_slides)
    if slide_hash not in HASH_CHOICES:
        raise InputError(f"--hash {hash_slides}: choose {', '.join(HASH_CHOICES)}")
    plan = plan_rows(slides_dir, coords_csv, specs, backend=backend, mpp=mpp,
                     allow_upsample=allow_upsample, annotations=annotations, reader_check=reader_check)
    prints = fingerprint_slides(plan.paths, slide_hash)
    zstd_level = zstd_level_for(out_s, zstd_level)
    params = _store_params(plan, specs, th, size=size, base_mpp=base_mpp, base_mag=base_mag,
                           backend=backend, reader_check=reader_check, mpp=mpp, allow_upsample=allow_upsample,
                           shard_rows=shard_rows, zstd_level=zstd_level, chunk_px=chunk_px,
                           annotations=annotations)
    lock = _lock_out(out_s)
    try:
        store, resumed = open_or_create_store(out_s, params, specs, overwrite=overwrite,
                                              slide_hash=slide_hash, prints=prints)
        if resumed:
            check_slides_unchanged(store, prints, out_s)
            th = store_thresholds(store, th)
        repaired = drop_damaged(store, specs) if resumed else []
        if resumed and not repaired and store.attrs.get("complete") and _table_ok(store):
            return _result(out_s, store.table, t0, tasks_run=0, tasks_skipped=-1, warnings=plan.warnings)
        done = done_records(store, specs)
        tasks = make_tasks(plan, specs, th, store=out_s, skip=done, shard_rows=shard_rows, backend=backend,
                           allow_upsample=allow_upsample, token=_params_hash(params)[:8], cache_mb=cache_mb,
                           fence=lock.token if isinstance(lock, RemoteLock) else 0)
        hasher = SlideHasher({name: plan.paths[name] for name in plan.slides},
                             enabled=slide_hash == "full").start()
        task_errors = execute_tasks(tasks, done, n_rows=plan.n, workers=workers, scheduler=scheduler,
                                    processes=processes, progress=progress, dashboard=dashboard)
        table = build_table(plan, done, specs)
        if isinstance(lock, RemoteLock):
            lock.check()  # another run took the store: do not overwrite its table
        finish_store(store, table, plan, specs, chunk_px=chunk_px, hashes=hasher.join(),
                     complete=not task_errors, slide_hash=slide_hash, prints=prints)
        result = _result(out_s, table, t0, tasks_run=len(tasks), tasks_skipped=len(done) - len(tasks),
                         warnings=plan.warnings)
        result.repaired = repaired
        return result
    finally:
        if lock is not None:
            lock.release()


def _store_params(
    plan: ExtractPlan,
    specs: Sequence[MemberSpec],
    th: QCThresholds,
    *,
    size: int,
    base_mpp: float,
    base_mag: float,
    backend: str,
    reader_check: str,
    mpp: float | None,
    allow_upsample: bool,
    shard_rows: int,
    zstd_level: int,
    chunk_px: int,
    annotations: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    """The parameters recorded in the store; a rerun with equal ones resumes."""
    return {
        "size": int(size),
        "base_mpp": float(base_mpp),
        "base_mag": float(base_mag),
        "scales": [s.scale for s in specs],
        "backend": backend,
        "reader_check": reader_check,
        "mpp": None if mpp is None else float(mpp),
        "allow_upsample": bool(allow_upsample),
        "qc": th.as_dict(),
        "shard_rows": int(shard_rows),
        "zstd_level": int(zstd_level),
        "chunk": chunk_px,
        "coords_sha256": plan.coords.attrs["sha256"],
        "n_rows": plan.n,
        "annotations": None if annotations is None else Path(annotations).name,
    }


def _params_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    diffs = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if not diffs:
        return "format differs"
    parts = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diffs[:2] if k != "qc"]
    if "qc" in diffs[:2]:
        parts.append("QC thresholds differ")
    more = f" and {len(diffs) - 2} more" if len(diffs) > 2 else ""
    return "; ".join(parts) + more


def _result(store: str, table: pd.DataFrame, t0: float, *, tasks_run: int, tasks_skipped: int,
            warnings: list[str] | None = None) -> ExtractResult:
    failed = table[table.status == "failed"]
    return ExtractResult(
        store=store,
        n_rows=len(table),
        n_kept=int((table.status == "kept").sum()),
        n_rejected=int((table.status == "rejected").sum()),
        n_failed=len(failed),
        failures=[(str(r.slide), int(i), str(r.reason)) for i, r in failed.iterrows()],
        tasks_run=tasks_run,
        tasks_skipped=max(0, tasks_skipped),
        seconds=time.perf_counter() - t0,
        warnings=list(warnings or []),
    )
