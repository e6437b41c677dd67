"""Read and validate a coords file: one patch centre per row.

Schema (``manifests/``): ``slide`` (file name relative to the slides folder, with or
without extension), ``x``, ``y`` (level-0 pixel coordinates of the patch CENTRE, a
continuous point: pixel k covers [k, k+1)), optional ``label``, optional ``mpp`` (um/px
for slides without metadata); any other column is carried into the patch table.

Everything wrong with the file itself is an :class:`~mlcamsr.errors.InputError` naming
the file, the row (0-based data row and 1-based file line) and the fix.
"""

from __future__ import annotations

import csv
import hashlib
import os
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd

from mlcamsr.errors import InputError
from mlcamsr.remote import is_url, resolve_remote_slides

__all__ = ["REQUIRED_COLUMNS", "SLIDE_SUFFIXES", "read_coords", "resolve_slides", "check_slide_name"]

REQUIRED_COLUMNS = ("slide", "x", "y")
# columns extract writes itself: a coords column of the same name would be overwritten
RESERVED_COLUMNS = ("status", "reason", "index", "tissue_frac", "rgb_mean_r", "rgb_mean_g",
                    "rgb_mean_b", "tumor_frac", "split")
RESERVED_PREFIXES = ("align_psnr_", "src_")
MAX_COORD = 2**31  # level-0 px; far beyond any slide, and int64-safe
#: tried, in order, when a slide name is given without extension
SLIDE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".dcm")


def _where(path: Path, i: int) -> str:
    return f"{path} row {i} (line {i + 2})"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_slide_name(name: str, where: str) -> None:
    """Refuse names that could leave the slides folder (absolute, ``..``, drive letters)."""
    if not name or not name.strip():
        raise InputError(f"{where}: empty slide name; give the slide file name")
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.drive or pure.anchor:
            raise InputError(
                f"{where}: slide {name!r} is an absolute path; give a name relative to --slides"
            )
        if ".." in pure.parts:
            raise InputError(
                f"{where}: slide {name!r} contains '..' and would leave --slides; "
                "give a name inside the slides folder"
            )


def read_coords(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``coords.csv`` and validate it.

    Returns:
        DataFrame with ``slide`` (str), ``x``, ``y`` (int64 when every value is whole,
        else float64), ``label`` (str, "" when absent), ``mpp`` (float64, NaN when absent)
        and the extra columns, in file order. ``df.attrs["sha256"]`` is the file's hash.

    Raises:
        InputError: missing/empty file, missing columns, non-numeric or NaN
            coordinates, bad mpp, unsafe slide names, duplicate (slide, x, y) rows.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"coords file {p} not found; give an existing CSV with --coords")
    if not p.is_file():
        raise InputError(f"coords file {p} is not a file; give a CSV with --coords")
    try:
        if p.stat().st_size == 0:
            raise InputError(f"coords file {p} is empty; it needs a header slide,x,y and rows")
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"coords file {p} is empty; it needs a header slide,x,y and rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"coords file {p} is not a readable CSV ({first})") from None
    with open(p, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [c.strip() for c in next(reader, [])]
        for i, fields in enumerate(reader):  # pandas would shift a longer row into the index
            if len(fields) > len(header):
                raise InputError(
                    f"{_where(p, i)} has {len(fields)} fields, the header {len(header)} "
                    f"({','.join(header)}); quote values that hold commas, or add the column"
                )
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise InputError(
            f"coords file {p}: column(s) {', '.join(repeated)} appear more than once in the header; "
            "keep one of each"
        )
    df.columns = [str(c).strip() for c in df.columns]
    taken = [c for c in df.columns if c in RESERVED_COLUMNS or c.startswith(RESERVED_PREFIXES)]
    if taken:
        raise InputError(
            f"coords file {p}: column(s) {', '.join(taken)} would be overwritten by extract's own "
            "table columns; rename them"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"coords file {p} lacks column(s) {', '.join(missing)} (has: {', '.join(df.columns)}); "
            "expected slide,x,y[,label,mpp,...]"
        )
    if len(df) == 0:
        raise InputError(f"coords file {p} has a header but no rows")

    df["slide"] = df["slide"].astype(str).str.strip()
    for i, name in enumerate(df["slide"]):
        check_slide_name(name, _where(p, i))

    for col in ("x", "y"):
        raw = df[col].astype(str).str.strip()
        num = pd.to_numeric(raw, errors="coerce")
        vals = num.to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(~(np.abs(vals) < MAX_COORD))  # NaN, inf and absurd values
        if len(bad):
            i = int(bad[0])
            raise InputError(
                f"{_where(p, i)}: {col}={raw.iloc[i]!r} is "
                f"{'out of range' if np.isfinite(vals[i]) else 'not a finite number'} "
                f"({len(bad)} such row(s)); give level-0 pixel coordinates of the centre"
            )
        values = num.to_numpy(dtype=np.float64)
        df[col] = values.astype(np.int64) if np.all(values == np.round(values)) else values

    if "mpp" in df.columns:
        raw = df["mpp"].astype(str).str.strip()
        num = pd.to_numeric(raw.replace("", "nan"), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero((raw != "") & ~(np.isfinite(num) & (num > 0)))
        if len(bad):
            i = int(bad[0])
            raise InputError(
                f"{_where(p, i)}: mpp={raw.iloc[i]!r} is not a positive number (um/px); "
                "leave it empty to use the slide's own"
            )
        df["mpp"] = num
        for slide, group in df.groupby("slide", sort=False):
            vals = group["mpp"].dropna().unique()
            if len(vals) > 1:
                raise InputError(
                    f"coords file {p}: slide {slide!r} has different mpp values {sorted(vals)[:3]}; "
                    "give one mpp per slide"
                )
    else:
        df["mpp"] = np.nan

    df["label"] = df["label"].astype(str).str.strip() if "label" in df.columns else ""

    dup = df.duplicated(subset=["slide", "x", "y"], keep=False)
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())
        first = df.iloc[rows[0]]
        same = [
            int(r)
            for r in rows
            if df.iloc[r]["slide"] == first["slide"]
            and df.iloc[r]["x"] == first["x"]
            and df.iloc[r]["y"] == first["y"]
        ]
        raise InputError(
            f"coords file {p}: rows {same[0]} and {same[1]} (lines {same[0] + 2} and {same[1] + 2}) "
            f"are the same patch ({first['slide']}, {first['x']}, {first['y']}); "
            f"{int(dup.sum())} duplicated rows in all; remove the repeats"
        )
    df = df.reset_index(drop=True)
    df.attrs["sha256"] = _sha256(p)
    df.attrs["path"] = str(p)
    return df


def _resolve_one(slides_dir: Path, name: str) -> Path | None:
    cand = slides_dir / name
    if cand.is_file() or cand.is_dir():
        return cand
    hits = [c for suffix in SLIDE_SUFFIXES if (c := slides_dir / (name + suffix)).is_file()]
    if len(hits) > 1:  # e.g. a.tif and a.svs: never pick one silently
        raise InputError(
            f"slide name {name!r} matches {len(hits)} files in {slides_dir}: "
            f"{', '.join(h.name for h in hits)}; give the full file name in the coords file"
        )
    if hits:
        return hits[0]
    parent = cand.parent
    if parent.is_dir():
        stem = PurePosixPath(name).name
        hits = sorted(f for f in parent.iterdir() if f.is_file() and f.stem == stem)
        if len(hits) == 1:
            return hits[0]
    return None


def _unicode_twins(slides_dir: Path, missing: list[tuple[str, int]]) -> None:
    """Raise for a missing name that equals a file's name up to Unicode normalisation
    (NFC vs NFD: they print alike, so "not found" alone would puzzle)."""
    files = {unicodedata.normalize("NFC", f.name): f.name for f in slides_dir.iterdir()}
    files |= {unicodedata.normalize("NFC", PurePosixPath(n).stem): n for n in list(files.values())}
    for name, i in missing:
        twin = files.get(unicodedata.normalize("NFC", name))
        if twin is not None:
            raise InputError(
                f"slide {ascii(name)} (row {i}) is not found in {slides_dir}, but {ascii(twin)} "
                "is: the same letters in another Unicode normalisation (NFC vs NFD); write "
                "the name as the file system has it"
            )


def resolve_slides(df: pd.DataFrame, slides_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Map each distinct ``slide`` name to its file under ``slides_dir``.

    A name matches ``DIR/name``, ``DIR/name + suffix`` (``.tif``, ``.svs``, ...), or the
    one file in its folder with that stem. A DICOM folder may be named directly.

    Raises:
        InputError: the folder is missing/unreadable, or names are not found (all listed).
    """
    if is_url(slides_dir):  # a prefix in object storage: one listing (sizes, ETags)
        first = df.reset_index(drop=True).groupby("slide", sort=False).head(1)
        names = [(str(n), int(i)) for i, n in zip(first.index, first["slide"])]
        return resolve_remote_slides(names, str(slides_dir))  # type: ignore[return-value]
    d = Path(slides_dir)
    if not d.exists():
        raise InputError(f"slides folder {d} not found; give the folder with --slides")
    if not d.is_dir():
        raise InputError(f"--slides {d} is not a folder; give the folder that holds the slides")
    try:
        next(os.scandir(d), None)
    except OSError as exc:
        raise InputError(f"slides folder {d} cannot be read ({exc.strerror}); check permissions") from None
    out: dict[str, Path] = {}
    missing: list[tuple[str, int]] = []
    first_row = df.reset_index(drop=True).groupby("slide", sort=False).head(1)
    for i, name in zip(first_row.index, first_row["slide"]):
        path = _resolve_one(d, name)
        if path is None:
            missing.append((name, int(i)))
            continue
        same = next((n for n, q in out.items() if q.resolve() == path.resolve()), None)
        if same is not None:  # one slide under two names: split --by slide could put it on both sides
            raise InputError(
                f"slide names {same!r} and {name!r} (row {int(i)}) are the same file {path}; "
                "use one name for it in the coords file"
            )
        out[name] = path
    if missing:
        _unicode_twins(d, missing)
        shown = ", ".join(repr(n) for n, _ in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InputError(
            f"{len(missing)} slide(s) in the coords file not found in {d}: {shown}{more} "
            f"(first at row {missing[0][1]}); fix the names or --slides"
        )
    return out
