"""Integrity of a finished store: what was written, checked against what is there.

Every shard a writer stores is recorded: ``extract`` writes ``_extract/tasks/<k>.json``
(``{"rows": [row records], "shards": {member: {"bytes", "crc32c"}}}``) after writing
shard ``k`` of every real member, ``pyramid`` writes ``_pyramid/tasks/<k>.json``
(``{"rows_digest", "shards": {...}}``) for its ``*_bicubic`` members, and
:meth:`mlcamsr.store.Store.write_table` records the table's size and crc32c in the root
attribute (``table``). These work records are one small file per shard because each
task writes its own (one writer per object, atomic, no shared file to update). When a
run ends, :func:`fold_records` copies each member's shard records into that array's
attribute ``mlcamsr.shards`` (``{"<k>": [bytes, crc32c]}``, pyramid adding the rows'
digest) and deletes the work folder, so a finished store is plain Zarr (format 3); the
rows' QC records are the table itself. A run cut short leaves the work folder: the next
run reads both (a work record wins over a folded one) and resumes. Stores of format 2
keep their work folders as records (they are never folded). :func:`verify` reads
everything back:

- the table: present, readable, the recorded size and crc32c;
- every shard that holds kept rows, in every member: the file is there; when its size
  and crc32c equal the record it is exactly what was written; otherwise (or with no
  record: stores of format version 1) each kept row's chunks are read and checked
  (:func:`mlcamsr.shards.check_shard`: index crc32c, chunk crc32c, zstd) to name the
  damaged rows.

Rerunning the same ``extract`` (or ``pyramid``) calls :func:`damaged_shards` first and
rewrites exactly those shards; both steps are deterministic, so the repaired store is
identical to an undamaged one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlcamsr import shards as _shards
from mlcamsr.errors import StoreError
from mlcamsr.store import Store, open_store, store_summary

__all__ = [
    "EXTRACT_RECORDS",
    "PYRAMID_RECORDS",
    "Damage",
    "VerifyReport",
    "damaged_shards",
    "describe",
    "fold_records",
    "forget_records",
    "read_records",
    "record_key",
    "store_info",
    "verify",
]

EXTRACT_RECORDS = "_extract/tasks/"
"""Key prefix of extract's per-shard records (``<k:06d>.json``)."""
PYRAMID_RECORDS = "_pyramid/tasks/"
"""Key prefix of pyramid's per-shard records (``<k>.json``)."""


def record_key(prefix: str, shard: int) -> str:
    """The record key of ``shard`` under ``prefix`` (each writer's own naming)."""
    return f"{prefix}{shard:06d}.json" if prefix == EXTRACT_RECORDS else f"{prefix}{shard}.json"


def _prefix_members(store: Store, prefix: str) -> list[str]:
    """The members whose shards ``prefix``'s writer records: bicubic ones for pyramid,
    the others for extract."""
    want_bicubic = prefix == PYRAMID_RECORDS
    return [
        m["name"]
        for m in store.attrs.get("members", [])
        if (m.get("kind") == "bicubic") == want_bicubic and m["name"] in store
    ]


def _work_dir(prefix: str) -> str:
    """The work folder of ``prefix`` (``_extract``, ``_pyramid``)."""
    return prefix.split("/", 1)[0]


def read_records(store: Store, prefix: str) -> dict[int, dict[str, Any]]:
    """The records of ``prefix``'s writer by shard: ``{"rows": [...] or absent, "shards":
    {...}, "rows_digest": ... (pyramid)}``: folded ones (member attributes, format 3: no
    ``rows``, ``"folded": True``), replaced shard by shard by the work records under
    ``prefix`` (a run going on, or cut short).

    Extract records of format version 1 (a bare list of row records) are read as
    ``{"rows": list, "shards": {}}``; a record that does not parse is left out (its shard
    counts as not done)."""
    out: dict[int, dict[str, Any]] = {}
    for m in _prefix_members(store, prefix):
        for k, entry in store.folded_records(m).items():
            folded = out.setdefault(k, {"shards": {}, "folded": True})
            folded["shards"][m] = {"bytes": entry[0], "crc32c": entry[1]}
            if len(entry) > 2:
                folded["rows_digest"] = entry[2]
    for key in store.list_prefix(prefix):
        name = key.rsplit("/", 1)[1]
        stem = name.split(".")[0]
        if not name.endswith(".json") or not stem.isdigit():
            continue
        data = store.get_bytes(key)
        try:
            rec = json.loads(data) if data is not None else None
        except ValueError:
            continue
        if isinstance(rec, list):
            rec = {"rows": rec, "shards": {}}
        if isinstance(rec, dict):
            rec.setdefault("shards", {})
            out[int(stem)] = rec
    return out


@dataclass(frozen=True)
class Damage:
    """Damaged rows (array rows = table rows) of one shard of one member."""

    member: str
    shard: int
    key: str
    rows: tuple[int, ...]
    reason: str


@dataclass
class VerifyReport:
    """What :func:`verify` found.

    Attributes:
        store: the store path or URL.
        problems: store-level problems (no table, unreadable table, unfinished run).
        damage: damaged shards with their rows.
        members: the members checked.
        shards_checked, rows_checked: shards read, and kept rows covered, per member summed.
        bytes_read: shard bytes read.
    """

    store: str
    problems: list[str] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    shards_checked: int = 0
    rows_checked: int = 0
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.damage

    @property
    def damaged_rows(self) -> list[int]:
        """Sorted rows with damage in any member."""
        return sorted({r for d in self.damage for r in d.rows})

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 damage or problems found (SPEC exit codes)."""
        return 0 if self.ok else 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: ``ok``, ``problems``, ``damaged_rows``, ``damage`` and the counts."""
        return {
            "store": self.store,
            "ok": self.ok,
            "problems": list(self.problems),
            "damaged_rows": self.damaged_rows,
            "damage": [
                {"member": d.member, "shard": d.shard, "key": d.key, "rows": list(d.rows), "reason": d.reason}
                for d in self.damage
            ],
            "members": list(self.members),
            "shards_checked": self.shards_checked,
            "bytes_read": self.bytes_read,
        }


def _kept_rows(store: Store, report: VerifyReport) -> np.ndarray:
    """Array rows of kept patches: from the table, else from extract's records."""
    name = str(store.path)
    try:
        table = store.table
        kept = table.loc[table["status"] == "kept", "index"]
        return np.sort(np.asarray(kept, dtype=np.int64))
    except StoreError as exc:
        report.problems.append(str(exc))
    except (KeyError, ValueError) as exc:
        report.problems.append(f"{name}: the patch table lacks its status/index columns ({exc})")
    rows = [
        int(r["row"])
        for rec in read_records(store, EXTRACT_RECORDS).values()
        for r in rec.get("rows", [])
        if r.get("status") == "kept"
    ]
    return np.sort(np.asarray(rows, dtype=np.int64))


def _check_member(
    store: Store,
    member: str,
    kept: np.ndarray,
    records: dict[int, dict[str, Any]],
    shard_ids: Iterable[int] | None = None,
    quick: bool = False,
) -> tuple[list[Damage], int, int]:
    """``(damage, shards read, bytes read)`` for the kept rows of ``member``; ``quick``:
    only that each shard file exists with its recorded size (nothing read)."""
    arr = store[member]
    rows_per = int(arr.shards[0]) if arr.shards else int(arr.chunks[0])
    layout = _shards.layout_of(arr)
    by_shard: dict[int, list[int]] = {}
    for r in kept.tolist():
        by_shard.setdefault(int(r) // rows_per, []).append(int(r))
    wanted = sorted(by_shard) if shard_ids is None else sorted(set(shard_ids) & set(by_shard))
    damage: list[Damage] = []
    n_read = n_bytes = 0
    for k in wanted:
        rows = by_shard[k]
        key = _shards.shard_key(arr, k)
        rec = records.get(k, {}).get("shards", {}).get(member)
        if quick:
            size = _shards.store_size(store.group.store, key)
            if size is None:
                damage.append(Damage(member, k, key, tuple(rows), f"shard file {key} is missing"))
            elif rec is not None and rec.get("bytes") != size:
                why = f"shard file {key} is {size} bytes, {rec.get('bytes')} were written"
                damage.append(Damage(member, k, key, tuple(rows), why))
            continue
        data = store.get_bytes(key)
        n_read += 1
        if data is None:
            damage.append(Damage(member, k, key, tuple(rows), f"shard file {key} is missing"))
            continue
        n_bytes += len(data)
        if rec is not None and rec.get("bytes") == len(data) and rec.get("crc32c") == _shards.crc32c(data):
            continue  # exactly what was written
        if layout is None:
            bad = _check_rows_through_zarr(arr, rows)
        else:
            bad = _shards.check_shard(layout, data, [r - k * rows_per for r in rows])
            bad = {r + k * rows_per: why for r, why in bad.items()}
        if rec is not None and not bad:
            # every chunk checks out, yet the file is not what was written (size/crc32c)
            bad = dict.fromkeys(rows, f"shard file {key} differs from what was written")
        for why in sorted(set(bad.values())):
            damage.append(Damage(member, k, key, tuple(r for r in rows if bad.get(r) == why), why))
    return damage, n_read, n_bytes


def _check_rows_through_zarr(arr: Any, rows: Sequence[int]) -> dict[int, str]:
    bad: dict[int, str] = {}
    for r in rows:
        try:
            if not np.asarray(arr[r]).any():
                bad[r] = "no data stored for this row (lost)"
        except (ValueError, RuntimeError, OSError) as exc:
            bad[r] = _shards.first_line(exc)
    return bad


def _records_for(store: Store, member: str) -> dict[int, dict[str, Any]]:
    kind = store.member_info(member).get("kind", "real")
    return read_records(store, PYRAMID_RECORDS if kind == "bicubic" else EXTRACT_RECORDS)


def fold_records(store: Store, prefix: str) -> int:
    """At the end of a run: copy the records of ``prefix``'s writer (:func:`read_records`,
    work records and already folded ones) into each member's attribute
    ``mlcamsr.shards`` (:meth:`Store.set_folded_records`), then delete the work folder.
    Each step is one atomic write, so a crash in between leaves records that still
    read the same. Format 2 stores are left as they are. Returns the shards folded."""
    if store.format_version < 3:
        return 0
    records = read_records(store, prefix)
    for m in _prefix_members(store, prefix):
        entries: dict[int, list[Any]] = {}
        for k, rec in records.items():
            shard = rec.get("shards", {}).get(m)
            if shard is None:
                continue
            entry = [shard.get("bytes"), shard.get("crc32c")]
            if "rows_digest" in rec:
                entry.append(rec["rows_digest"])
            entries[k] = entry
        if entries != store.folded_records(m):
            store.set_folded_records(m, entries)
    store.delete_prefix(_work_dir(prefix))
    return len(records)


def forget_records(store: Store, prefix: str, shards: Iterable[int]) -> None:
    """Drop the records (work and folded) of ``shards``: they are written again."""
    drop = set(shards)
    if not drop:
        return
    for k in drop:
        store.delete_key(record_key(prefix, k))
    for m in _prefix_members(store, prefix):
        folded = store.folded_records(m)
        if drop & set(folded):
            store.set_folded_records(m, {k: v for k, v in folded.items() if k not in drop})


def _table_kept(store: Store) -> set[int]:
    """Array rows the table lists as kept (none when it does not read)."""
    try:
        table = store.table
        return {int(r) for r in table.loc[table["status"] == "kept", "index"]}
    except (StoreError, KeyError, ValueError):
        return set()


def damaged_shards(store: Store, members: Sequence[str], prefix: str) -> dict[int, list[Damage]]:
    """Shards (by index) of ``members`` whose recorded content is damaged, for a writer
    about to repair them: only shards that have a record of ``prefix``'s writer are
    checked (a shard without one is not done yet and is written anyway). Kept rows: the
    extract work records' and the table's."""
    records = read_records(store, prefix)
    rows = {
        int(r["row"])
        for rec in read_records(store, EXTRACT_RECORDS).values()
        for r in rec.get("rows", [])
        if r.get("status") == "kept"
    }
    kept = np.asarray(sorted(rows | _table_kept(store)), dtype=np.int64)
    out: dict[int, list[Damage]] = {}
    for m in members:
        if m not in store:
            continue
        damage, _, _ = _check_member(store, m, kept, records, shard_ids=records)
        for d in damage:
            out.setdefault(d.shard, []).append(d)
    return out


def describe(report: VerifyReport, store: Store | None = None, limit: int = 50) -> list[str]:
    """The report as lines for a person: a verdict, then one line per damaged row
    (member, row, slide and centre when the table reads, reason), then the fix."""
    lines = list(report.problems)
    where: dict[int, str] = {}
    try:
        table = (store or open_store(report.store, "r")).table
        for r in report.damaged_rows[:limit]:
            if 0 <= r < len(table):
                t = table.iloc[r]
                where[r] = f" ({t['slide']} x={t['x']:g} y={t['y']:g})"
    except (StoreError, KeyError, ValueError, TypeError):
        pass
    n = 0
    for d in report.damage:
        for r in d.rows:
            if n < limit:
                lines.append(f"damaged: {d.member} row {r}{where.get(r, '')}: {d.reason}")
            n += 1
    if n > limit:
        lines.append(f"... and {n - limit} more damaged row entries (--json lists them all)")
    if report.ok:
        lines.append(
            f"{report.store}: healthy ({len(report.members)} members, {report.shards_checked} shards, "
            f"{report.bytes_read / 1e6:.1f} MB checked)"
        )
        return lines
    if report.damage:
        real = sorted({d.member for d in report.damage if not d.member.endswith("_bicubic")})
        bic = sorted({d.member for d in report.damage if d.member.endswith("_bicubic")})
        fix = []
        if real:
            fix.append("rerun the same `mlcamsr extract` command")
        if bic:
            fix.append(f"rerun `mlcamsr pyramid {report.store}`")
        lines.append(
            f"{report.store}: {len(report.damaged_rows)} damaged row(s) in {', '.join(real + bic)}; "
            + " and then ".join(fix) + " to rewrite exactly these shards"
        )
    return lines


def verify(path_or_url: str | os.PathLike[str] | Store, *, quick: bool = False) -> VerifyReport:
    """Check every kept row's shards and chunks of every member of a store.

    ``quick=True`` (what ``mlcamsr info`` runs) reads no shard: it checks the table and
    that every shard holding kept rows exists with its recorded size.

    Returns:
        :class:`VerifyReport`; ``report.exit_code`` is 1 when anything is damaged.

    Raises:
        StoreError: the path is not an MLCamSR store.
    """
    store = path_or_url if isinstance(path_or_url, Store) else open_store(path_or_url, "r")
    name = str(store.path)
    report = VerifyReport(store=name)
    kept = _kept_rows(store, report)
    attrs = store.attrs
    if attrs.get("complete") is False:
        report.problems.append(
            f"{name}: the extract run is unfinished; rerun the same `mlcamsr extract` to finish it"
        )
    for m in store.members:
        info = store.member_info(m)
        if info.get("kind") == "bicubic" and not info.get("complete", True):
            report.problems.append(f"{name}: {m} is unfinished; rerun `mlcamsr pyramid {name}`")
        damage, n_read, n_bytes = _check_member(store, m, kept, _records_for(store, m), quick=quick)
        report.members.append(m)
        report.damage.extend(damage)
        report.shards_checked += n_read
        report.bytes_read += n_bytes
        report.rows_checked += int(kept.size)
    report.damage.sort(key=lambda d: (d.shard, d.member))
    return report


def store_info(path_or_url: str | os.PathLike[str]) -> dict[str, Any]:
    """:func:`mlcamsr.store.store_summary` plus ``integrity``: a quick check (the table,
    every shard holding kept rows present with its recorded size; no chunk is read):
    ``ok``, ``problems``, ``damaged_rows``, ``damage`` (what ``mlcamsr info`` prints)."""
    out = store_summary(path_or_url)
    check = verify(path_or_url, quick=True)
    out["integrity"] = {
        "checked": "quick: the table, shard files present with their recorded sizes",
        "ok": check.ok,
        "problems": check.problems,
        "damaged_rows": check.damaged_rows,
        "damage": check.as_dict()["damage"],
    }
    return out
