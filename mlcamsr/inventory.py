"""The slide inventory (``mlcamsr slides``): what a folder of slides holds, before anyone
cuts patches.

Per slide (:class:`SlideEntry`): vendor, file format and compression (level-0 TIFF page),
levels (``(w, h)`` px, downsample ``(w0 / wk, h0 / hk)`` from the dimensions, whether each
is an exact half of the level above), level-0 mpp (um/px) and where it came from, which
backends open it, the reader check (:mod:`mlcamsr.reader_check`, at the levels the
planned extract reads), a tissue fraction from a thumbnail of the coarsest level (the
mask of :func:`mlcamsr.sampling.tissue_mask`), and for a planned extract (``base_mpp``,
``scales``) which members would be read natively and which resampled.

A slide that cannot be used (neither backend opens it, no mpp and no ``mpp`` override, a
member that would need upsampling) is listed with the reason (``usable`` False); the
others go on. :func:`write_sheet` draws a thumbnail contact sheet.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlcamsr.errors import InputError
from mlcamsr.patches import Geometry, choose_level
from mlcamsr.reader_check import check_readers
from mlcamsr.sampling import discover_slides, read_level_reduced, tissue_mask
from mlcamsr.slides import SlideReader, open_slide, quiet_tifffile

THUMB_PX = 512
"""Longest side (px) of the thumbnail the tissue fraction and the sheet use, at most."""


@dataclass
class SlideEntry:
    """One slide of the inventory (JSON-ready through :meth:`as_dict`).

    Attributes:
        name: path relative to the folder; file_bytes: size on disk.
        usable: False when the planned extract cannot use it; reason: why (else "").
        vendor, format, compression: backend vendor, ``TIFF``/``BigTIFF``/``DICOM``..., and
            the level-0 page's compression (e.g. ``JPEG``, ``APERIO_JP2000_YCBC``) and
            photometric interpretation.
        levels: per level ``{"level", "width", "height", "downsample": [dx, dy],
            "exact_half"}`` (``exact_half`` None for level 0).
        mpp: level-0 ``[x, y]`` um/px or None; mpp_source: where it came from.
        opens: backend -> ``"ok"`` or its reason; reader: the backend extract would use.
        reader_check: :meth:`mlcamsr.reader_check.ReaderCheck.as_attrs` or None.
        tissue_frac: tissue fraction of the thumbnail mask in [0, 1], or None.
        members: per planned member ``{"scale", "mpp", "level", "kind"}`` with kind
            ``native``, ``resampled`` or ``needs-upsampling``.
        thumb: the thumbnail, ``(h, w, 3)`` uint8 (not in :meth:`as_dict`).
    """

    name: str
    file_bytes: int = 0
    usable: bool = False
    reason: str = ""
    vendor: str | None = None
    format: str | None = None
    compression: str | None = None
    levels: list[dict[str, Any]] = field(default_factory=list)
    mpp: list[float] | None = None
    mpp_source: str = "none"
    opens: dict[str, str] = field(default_factory=dict)
    reader: str = ""
    reader_check: dict[str, Any] | None = None
    tissue_frac: float | None = None
    members: list[dict[str, Any]] = field(default_factory=list)
    thumb: np.ndarray | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Everything but the thumbnail, JSON-ready."""
        d = asdict(self)
        d.pop("thumb")
        return d


def _file_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _tiff_format(path: Path) -> tuple[str | None, str | None]:
    """``(format, "COMPRESSION / PHOTOMETRIC")`` of the level-0 page of a TIFF, else (None, None)."""
    import tifffile

    if path.is_dir() or path.suffix.lower() == ".dcm":
        return "DICOM", None
    try:
        with quiet_tifffile(), tifffile.TiffFile(path) as tf:
            page: Any = tf.pages[0]
            fmt = "BigTIFF" if tf.is_bigtiff else "TIFF"
            flavour = next((f for f in ("svs", "ome", "ndpi", "philips", "scn", "bif") if getattr(tf, f"is_{f}", False)), None)
            comp = getattr(page.compression, "name", str(page.compression))
            phot = getattr(page.photometric, "name", str(page.photometric))
            return (f"{fmt} ({flavour})" if flavour else fmt), f"{comp} / {phot}"
    except Exception:  # noqa: BLE001 - not a TIFF: the backends say what it is
        return None, None


def _levels(reader: SlideReader) -> list[dict[str, Any]]:
    dims = reader.level_dimensions
    out = []
    for k, (w, h) in enumerate(dims):
        dx, dy = dims[0][0] / w, dims[0][1] / h
        half = None if k == 0 else (dims[k - 1][0] == 2 * w and dims[k - 1][1] == 2 * h)
        out.append({"level": k, "width": int(w), "height": int(h),
                    "downsample": [round(dx, 5), round(dy, 5)], "exact_half": half})
    return out


def thumbnail(reader: SlideReader, max_px: int = THUMB_PX) -> tuple[np.ndarray, float]:
    """``(thumb, factor)``: the coarsest level block-averaged by an integer ``factor`` to at
    most about ``max_px`` on its longer side; ``(h, w, 3)`` uint8 RGB. ``factor`` times the
    level's downsample is the thumbnail's level-0 px per px."""
    last = reader.level_count - 1
    w, h = reader.level_dimensions[last]
    factor = max(1, math.ceil(max(w, h) / max_px))
    thumb = read_level_reduced(reader, last, factor)
    return thumb, factor * reader.level_downsamples[last][0]


def _members(geo: Geometry, base_mpp: float, scales: Sequence[int]) -> list[dict[str, Any]]:
    out = []
    for s in scales:
        m = base_mpp * s
        try:
            level, kind = choose_level(geo, m)
        except InputError:
            level, kind = None, "needs-upsampling"
        out.append({"scale": int(s), "mpp": round(m, 6), "level": level, "kind": kind})
    return out


def _describe(e: SlideEntry, reader: SlideReader, base_mpp: float, scales: Sequence[int]) -> None:
    """Fill ``e`` from the reader that will cut the patches: vendor, levels, mpp and its
    source, planned members, the thumbnail and its tissue fraction."""
    e.vendor = reader.vendor
    e.levels = _levels(reader)
    e.mpp = list(reader.mpp) if reader.mpp is not None else None
    e.mpp_source = reader.mpp_source
    if reader.mpp is not None:
        e.members = _members(Geometry.of(reader), base_mpp, scales)
    e.thumb, ds = thumbnail(reader)
    thumb_mpp = e.mpp[0] * ds if e.mpp else None
    mask, _, _ = tissue_mask(e.thumb, mpp=thumb_mpp)
    e.tissue_frac = round(float(mask.mean()), 4)


def inspect_slide(
    slides_dir: Path,
    name: str,
    *,
    base_mpp: float = 0.243,
    scales: Sequence[int] = (1, 2, 4),
    mpp: float | None = None,
    backend: str = "auto",
    reader_check: str = "on",
) -> SlideEntry:
    """One slide's :class:`SlideEntry` (module docstring); never raises for a bad slide."""
    path = slides_dir / name
    e = SlideEntry(name=name, file_bytes=_file_bytes(path))
    e.format, e.compression = _tiff_format(path)
    try:
        reader = open_slide(path, backend=backend, mpp=mpp)
    except Exception as exc:  # noqa: BLE001 - every unreadable slide is listed, the rest go on
        e.reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        e.opens = check_readers(path, [], backend="auto").opens
        return e
    with reader:
        levels = [0]
        if reader.mpp is not None:
            levels = sorted({int(m["level"]) for m in _members(Geometry.of(reader), base_mpp, scales)
                             if m["level"] is not None}) or [0]
        check = check_readers(path, levels, backend=backend, mode=reader_check, opened=reader)
        e.opens = check.opens or {reader.backend: "ok"}
        e.reader = check.reader or reader.backend
        e.reader_check = check.as_attrs()
        if e.reader == reader.backend:
            _describe(e, reader, base_mpp, scales)
    if e.reader != reader.backend:  # the check switched readers: record what the chosen one reads
        with open_slide(path, backend=e.reader, mpp=mpp) as chosen:
            _describe(e, chosen, base_mpp, scales)
    if e.mpp is None:
        e.reason = "no mpp in its metadata; extract needs an mpp column in coords.csv or --mpp"
    elif any(m["kind"] == "needs-upsampling" for m in e.members):
        finest = e.mpp[0]
        e.reason = (f"members finer than its level 0 ({finest:.3f} um/px) would need upsampling; "
                    "raise --base-mpp")
    e.usable = not e.reason
    return e


def inventory(
    slides_dir: str | os.PathLike[str],
    *,
    base_mpp: float = 0.243,
    scales: Sequence[int] = (1, 2, 4),
    mpp: float | None = None,
    backend: str = "auto",
    reader_check: str = "on",
    include: Sequence[str] | None = None,
) -> list[SlideEntry]:
    """Inspect every slide of ``slides_dir`` (:func:`mlcamsr.sampling.discover_slides`).

    Args:
        slides_dir: the folder (searched recursively; a folder of ``.dcm`` is one slide).
        base_mpp, scales: the planned extract's members (``base_mpp * scale`` um/px).
        mpp: level-0 um/px for slides without mpp metadata (as extract's ``--mpp``).
        backend, reader_check: as for extract.
        include: glob patterns selecting slides.

    Returns:
        One :class:`SlideEntry` per slide, in name order.

    Raises:
        InputError: the folder does not exist or holds no slide files; bad options.
    """
    d = Path(slides_dir)
    if not d.is_dir():
        raise InputError(f"--slides {d}: not a folder; give the folder holding the slides")
    if base_mpp <= 0 or not scales or any(int(s) < 1 for s in scales):
        raise InputError("--base-mpp must be positive and --scales positive integers, e.g. 1,2,4")
    names = discover_slides(d, include)
    if not names:
        raise InputError(f"--slides {d}: no slide files found; check the folder")
    return [inspect_slide(d, n, base_mpp=base_mpp, scales=scales, mpp=mpp, backend=backend,
                          reader_check=reader_check) for n in names]


def describe(e: SlideEntry) -> list[str]:
    """Human-readable lines for one entry (the CLI prints them)."""
    lines = [f"{e.name}  ({e.file_bytes / 2**20:.1f} MiB)  " + ("usable" if e.usable else f"NOT USABLE: {e.reason}")]
    opens = ", ".join(f"{k} {'ok' if v == 'ok' else 'fails'}" for k, v in e.opens.items())
    lines.append(f"  vendor {e.vendor or '-'}; format {e.format or '-'}; compression {e.compression or '-'}; opens: {opens or '-'}")
    if e.levels:
        lv = "; ".join(
            f"L{v['level']} {v['width']}x{v['height']} /{v['downsample'][0]:g}"
            + ("" if v["exact_half"] is None else (" half" if v["exact_half"] else " not-half"))
            for v in e.levels)
        lines.append(f"  levels: {lv}")
        m = "none" if e.mpp is None else f"{e.mpp[0]:.4g} x {e.mpp[1]:.4g} um/px"
        lines.append(f"  mpp {m} ({e.mpp_source}); tissue {e.tissue_frac:.0%} of the thumbnail"
                     if e.tissue_frac is not None else f"  mpp {m} ({e.mpp_source})")
    if e.reader_check is not None:
        rc = e.reader_check
        figs = ", ".join(f"L{f['level']} max {f['max_abs']} mean {f['mean_abs']:.2f}" for f in rc["levels"])
        lines.append(f"  reader check: {rc['status']} -> {e.reader}" + (f" ({figs})" if figs else ""))
        if rc.get("note"):
            lines.append(f"  note: {rc['note']}")
    if e.members:
        lines.append("  planned members: " + "; ".join(
            f"x{m['scale']} {m['mpp']:g} um/px "
            + (f"{m['kind']} from L{m['level']}" if m["level"] is not None else m["kind"])
            for m in e.members))
    return lines


def write_sheet(entries: Sequence[SlideEntry], path: str | os.PathLike[str], *, cell: int = 256,
                columns: int = 4) -> Path:
    """A PNG contact sheet: each slide's thumbnail in a ``cell`` px square with its name,
    levels, mpp, reader-check status and tissue fraction; unusable slides captioned in red
    with the reason."""
    from PIL import Image, ImageDraw

    cap = 4 * 13 + 6
    cols = max(1, min(columns, len(entries)))
    rows = max(1, math.ceil(len(entries) / cols))
    sheet = Image.new("RGB", (cols * (cell + 8) + 8, rows * (cell + cap + 8) + 8), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, e in enumerate(entries):
        x0 = 8 + (i % cols) * (cell + 8)
        y0 = 8 + (i // cols) * (cell + cap + 8)
        if e.thumb is not None:
            im = Image.fromarray(e.thumb)
            im.thumbnail((cell, cell))
            sheet.paste(im, (x0 + (cell - im.width) // 2, y0 + cap + (cell - im.height) // 2))
        else:
            draw.rectangle([x0, y0 + cap, x0 + cell - 1, y0 + cap + cell - 1], outline=(200, 0, 0))
        colour = (0, 0, 0) if e.usable else (200, 0, 0)
        mpp = "-" if e.mpp is None else f"{e.mpp[0]:.3g}"
        status = e.reader_check["status"] if e.reader_check else "-"
        text = [e.name[:40], f"{len(e.levels)} levels, mpp {mpp}",
                f"readers: {status} -> {e.reader or '-'}",
                (f"tissue {e.tissue_frac:.0%}" if e.tissue_frac is not None else "") if e.usable else e.reason[:40]]
        for j, t in enumerate(text):
            draw.text((x0, y0 + 2 + 13 * j), t, fill=colour)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
