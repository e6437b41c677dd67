"""Slide identity at O(1) cost: a fingerprint that tells a replaced or truncated slide.

``extract`` records what each slide was when the store was started and checks it again
on every rerun (resume), so shards cut from one file are never completed from another.
Three modes (``--hash``), recorded in the store as ``attrs["slide_hash"]``:

- ``fingerprint`` (default): per slide file, its size in bytes, its mtime (recorded,
  not compared: a copy to another disk keeps the slide) and a sha256 over the TIFF
  structure (header, every IFD, the raw tile/strip offset and byte-count tables) and
  a few fixed byte ranges (the first and last 64 KiB, 4 KiB at each ninth of the file).
  A folder slide (DICOM, MRXS) fingerprints each file and its relative name. The bytes
  read are a few hundred KiB to a few MiB per slide (the offset tables grow with the
  tile count, not with the pixel bytes), whatever the slide's size. On object storage
  (an fsspec URL) the object's ETag and size stand in for the content hash.
  A slide rewritten with other tiles has other offsets and byte counts; a truncated or
  appended one has another size; a same-size, same-layout in-place edit of pixel bytes
  outside the sampled ranges is what it does not see (``full`` does).
- ``full``: the sha256 of every byte (reads the whole collection once; record
  ``sha256`` beside the fingerprint).
- ``none``: nothing recorded, nothing checked.

Units: sizes and ranges in bytes; mtime in seconds since the epoch.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

from mlcamsr.remote import filesystem, is_url, open_remote_binary

__all__ = [
    "HASH_CHOICES",
    "FINGERPRINT_KIND",
    "fingerprint",
    "sha256_full",
    "fingerprint_change",
]

#: the ``--hash`` modes (one home for the list)
HASH_CHOICES = ("fingerprint", "full", "none")
#: version tag of the fingerprint recipe (a new recipe gets a new tag, never silently compared)
FINGERPRINT_KIND = "fp1"

_EDGE = 64 * 1024
_RANGE = 4 * 1024
_N_RANGES = 8
_MAX_IFDS = 4096
_MAX_TABLE = 64 * 2**20  # bytes of offset tables read per file at most
# TIFF tags whose arrays say where the pixel bytes are
_TABLE_TAGS = {273, 279, 324, 325}  # StripOffsets, StripByteCounts, TileOffsets, TileByteCounts
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
              16: 8, 17: 8, 18: 8}


def _hash_tiff_structure(fh: BinaryIO, size: int, h: Any) -> int:
    """Feed the TIFF header, IFDs and offset tables of ``fh`` to ``h``; return bytes read.

    Not a TIFF, or a structure that leaves the file: hashes what it read so far (the
    fixed ranges still apply); never raises for a malformed file.
    """
    fh.seek(0)
    head = fh.read(16)
    nread = len(head)
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        return nread
    e = "<" if head[:2] == b"II" else ">"
    magic = struct.unpack(e + "H", head[2:4])[0]
    if magic == 42:
        big, off = False, struct.unpack(e + "I", head[4:8])[0]
        cnt_fmt, ent_size, val_fmt, inline = "H", 12, "I", 4
    elif magic == 43 and len(head) >= 16:
        big, off = True, struct.unpack(e + "Q", head[8:16])[0]
        cnt_fmt, ent_size, val_fmt, inline = "Q", 20, "Q", 8
    else:
        return nread
    h.update(head)
    seen: set[int] = set()
    table_bytes = 0
    cnt_size = struct.calcsize(cnt_fmt)
    while off and off not in seen and len(seen) < _MAX_IFDS and off + cnt_size <= size:
        seen.add(off)
        fh.seek(off)
        n = struct.unpack(e + cnt_fmt, fh.read(cnt_size))[0]
        if n > 65535 or off + cnt_size + n * ent_size + (8 if big else 4) > size:
            break
        body = fh.read(n * ent_size + (8 if big else 4))
        nread += cnt_size + len(body)
        h.update(body)
        for i in range(n):
            ent = body[i * ent_size : (i + 1) * ent_size]
            tag, typ = struct.unpack(e + "HH", ent[:4])
            count = struct.unpack(e + ("Q" if big else "I"), ent[4 : 12 if big else 8])[0]
            nbytes = count * _TYPE_SIZE.get(typ, 1)
            if tag not in _TABLE_TAGS or nbytes <= inline:
                continue  # inline values are in the IFD bytes already hashed
            ptr = struct.unpack(e + val_fmt, ent[ent_size - inline :])[0]
            if ptr + nbytes > size or table_bytes + nbytes > _MAX_TABLE:
                continue
            fh.seek(ptr)
            h.update(fh.read(nbytes))
            table_bytes += nbytes
            nread += nbytes
        off = struct.unpack(e + val_fmt, body[n * ent_size :])[0]
    return nread


def _hash_ranges(fh: BinaryIO, size: int, h: Any) -> int:
    """Feed the first and last 64 KiB and 4 KiB at each ninth of the file to ``h``."""
    spans = [(0, min(_EDGE, size)), (max(0, size - _EDGE), size)]
    spans += [(size * k // (_N_RANGES + 1), min(size, size * k // (_N_RANGES + 1) + _RANGE))
              for k in range(1, _N_RANGES + 1)]
    nread = 0
    for a, b in spans:
        fh.seek(a)
        data = fh.read(b - a)
        h.update(struct.pack("<QQ", a, len(data)))
        h.update(data)
        nread += len(data)
    return nread


def _file_fingerprint(path: Path, h: Any) -> tuple[int, float, int]:
    st = path.stat()
    h.update(struct.pack("<Q", st.st_size))
    with open(path, "rb") as fh:
        nread = _hash_tiff_structure(fh, st.st_size, h)
        nread += _hash_ranges(fh, st.st_size, h)
    return st.st_size, st.st_mtime, nread


def _url_fingerprint(url: str) -> dict[str, Any]:
    fs, p = filesystem(url)  # credentials/endpoint: AWS_* or --storage-options
    info = fs.info(p)
    size = int(info.get("size") or 0)
    etag = info.get("ETag") or info.get("etag")
    h = hashlib.sha256(struct.pack("<Q", size))
    nread = 0
    if etag:
        h.update(b"etag:" + str(etag).strip('"').encode())
    else:  # a store without ETags: the same byte ranges as a local file
        with fs.open(p, "rb") as fh:
            nread = _hash_tiff_structure(fh, size, h) + _hash_ranges(fh, size, h)
    mtime = info.get("LastModified") or info.get("mtime") or info.get("created")
    out = {"kind": FINGERPRINT_KIND, "size": size, "digest": h.hexdigest(), "bytes_read": nread}
    if etag:
        out["etag"] = str(etag).strip('"')
    if mtime is not None:
        out["mtime"] = mtime if isinstance(mtime, (int, float)) else str(mtime)
    return out


def fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The O(1) fingerprint of a slide file, folder or fsspec URL.

    Returns ``{"kind": "fp1", "size": bytes, "mtime": s, "digest": sha256 hex,
    "bytes_read": bytes}`` (``etag`` on object storage). Raises ``OSError`` when the
    path cannot be read.
    """
    s = os.fspath(path)
    if "://" in s and not s.startswith("file://"):
        return _url_fingerprint(s)
    p = Path(s.removeprefix("file://"))
    h = hashlib.sha256()
    if p.is_dir():
        size, mtime, nread = 0, 0.0, 0
        for f in sorted(f for f in p.rglob("*") if f.is_file()):
            h.update(f.relative_to(p).as_posix().encode() + b"\0")
            fs, fm, fr = _file_fingerprint(f, h)
            size, mtime, nread = size + fs, max(mtime, fm), nread + fr
    else:
        size, mtime, nread = _file_fingerprint(p, h)
    return {"kind": FINGERPRINT_KIND, "size": int(size), "mtime": float(mtime), "digest": h.hexdigest(),
            "bytes_read": int(nread)}


def sha256_full(path: str | os.PathLike[str]) -> tuple[str, int]:
    """``(sha256 hex, bytes read)`` of every byte of a slide file or folder (files in name
    order), or of an object in object storage (streamed by ranges)."""
    h = hashlib.sha256()
    total = 0
    if is_url(os.fspath(path)):
        with open_remote_binary(os.fspath(path)) as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
                total += len(block)
        return h.hexdigest(), total
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
                total += len(block)
    return h.hexdigest(), total


def fingerprint_change(old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
    """Why ``new`` is not the slide ``old`` recorded, or None when it is the same slide.

    Only fingerprints of the same ``kind`` are compared (another recipe: None); size and
    digest decide, mtime does not.
    """
    if not old or old.get("kind") != new.get("kind"):
        return None
    if old.get("size") != new.get("size"):
        return f"its size changed from {old.get('size')} to {new.get('size')} bytes (truncated or replaced)"
    if old.get("digest") != new.get("digest"):
        return "its content fingerprint changed (the file was replaced or rewritten)"
    return None
