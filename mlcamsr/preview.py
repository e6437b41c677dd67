"""Contact sheet of stored triplets (``mlcamsr preview``).

Each patch is a block of panels, one per member, finest first (40x | 20x | 10x):

- top row: every member's whole square shown at the same display size
  (``cell`` px), so the same tissue sits at the same place in every panel and a
  misaligned member shows at a glance;
- bottom row (``zoom=True``): the centre of the square at the finest member's
  native resolution (``cell`` finest-member px, the same tissue in every
  member, coarser members enlarged with nearest neighbour), so the loss of
  detail from 40x to 10x is visible;
- a caption: table row, slide, centre, label and split, then the QC figures
  (tissue fraction, RGB mean, cross-scale alignment PSNR per member); a
  rejected/failed row shows its reason (it has no pixels in the store).

Blocks are laid out ``cols`` per row under a title line. The picture size is
:func:`sheet_size`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlcamsr.coords import check_slide_name
from mlcamsr.errors import InputError, StoreError
from mlcamsr.patches import Geometry, member_specs, read_patch
from mlcamsr.slides import SlideReader, open_slide

MARGIN = 12
GAP = 4  # between panels of one block
BLOCK_GAP = 16  # between blocks
TITLE_H = 28
CAPTION_LINES = 3
LINE_H = 14
CAPTION_H = CAPTION_LINES * LINE_H + 6

BG = (255, 255, 255)
TEXT = (20, 20, 20)
MUTED = (110, 110, 110)
STATUS_COLORS = {"kept": (30, 120, 60), "rejected": (200, 60, 30), "failed": (160, 0, 0)}
LABEL_BG = (0, 0, 0, 150)
ZOOM_BOX = (255, 230, 0)


@dataclass(frozen=True)
class Layout:
    """Geometry of a sheet: ``n`` blocks of ``n_members`` panels of ``cell`` px."""

    n: int
    n_members: int
    cell: int
    cols: int
    zoom: bool

    @property
    def block_w(self) -> int:
        return self.n_members * self.cell + (self.n_members - 1) * GAP

    @property
    def block_h(self) -> int:
        rows = 2 if self.zoom else 1
        return rows * self.cell + (rows - 1) * GAP + CAPTION_H

    @property
    def rows(self) -> int:
        return max(1, math.ceil(self.n / self.cols))

    @property
    def size(self) -> tuple[int, int]:
        cols = max(1, min(self.cols, self.n))
        w = 2 * MARGIN + cols * self.block_w + (cols - 1) * BLOCK_GAP
        h = MARGIN + TITLE_H + self.rows * self.block_h + (self.rows - 1) * BLOCK_GAP + MARGIN
        return w, h

    def origin(self, k: int) -> tuple[int, int]:
        r, c = divmod(k, self.cols)
        return (
            MARGIN + c * (self.block_w + BLOCK_GAP),
            MARGIN + TITLE_H + r * (self.block_h + BLOCK_GAP),
        )


def sheet_size(
    n: int, n_members: int = 3, *, cell: int = 192, cols: int = 2, zoom: bool = True
) -> tuple[int, int]:
    """``(width, height)`` in px of a sheet of ``n`` patches."""
    return Layout(n, n_members, cell, cols, zoom).size


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizing
        return ImageFont.load_default()


def _select(
    table: pd.DataFrame, n: int, status: str, seed: int, rows: Sequence[int] | None, path: Any
) -> pd.DataFrame:
    if rows:
        bad = [r for r in rows if r < 0 or r >= len(table)]
        if bad:
            raise InputError(
                f"--rows {bad[0]}: no such table row in {path} (it has rows 0..{len(table) - 1})"
            )
        return table.iloc[list(rows)]
    if status != "all":
        table = table[table["status"] == status]
    if len(table) == 0:
        raise InputError(
            f"{path}: no {status if status != 'all' else ''} patches to show; "
            "try --status all" if status != "all" else f"{path}: the patch table is empty"
        )
    if len(table) > n:
        pick = np.random.default_rng(seed).choice(len(table), size=n, replace=False)
        table = table.iloc[np.sort(pick)]
    return table


def _fit(img: np.ndarray, cell: int) -> Any:
    """A square image shown at ``cell`` px: area-averaged down, nearest up."""
    from PIL import Image

    pil = Image.fromarray(img)
    if img.shape[0] == cell:
        return pil
    resample = Image.Resampling.BOX if img.shape[0] > cell else Image.Resampling.NEAREST
    return pil.resize((cell, cell), resample)


def _zoom_crop(img: np.ndarray, frac: float) -> np.ndarray:
    """The centre ``frac`` of a square image (same tissue at every member)."""
    s = img.shape[0]
    c = max(1, int(round(s * frac)))
    o = (s - c) // 2
    return img[o : o + c, o : o + c]


def _fmt(v: Any, spec: str, default: str = "-") -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return default if not np.isfinite(f) else format(f, spec)


def _caption(row: pd.Series, k: int, members: Sequence[str]) -> list[tuple[str, tuple[int, int, int]]]:
    status = str(row.get("status", "") or "")
    label = str(row.get("label", "") or "")
    split = row.get("split")
    split = "" if split is None or (isinstance(split, float) and np.isnan(split)) else str(split)
    x, y = row.get("x"), row.get("y")
    l1 = f"#{k}  {row.get('slide', '?')}  ({_fmt(x, '.0f')}, {_fmt(y, '.0f')})"
    tumor = _fmt(row.get("tumor_frac"), ".2f")
    if tumor != "-":
        label = f"{label or 'tumour'} ({tumor} tumour)"
    tags = [t for t in (label, split) if t]
    if tags:
        l1 += "  " + " / ".join(tags)
    rgb = ", ".join(_fmt(row.get(f"rgb_mean_{c}"), ".2f") for c in "rgb")
    l2 = f"tissue {_fmt(row.get('tissue_frac'), '.2f')}   RGB mean ({rgb})"
    psnr = [
        f"{m} {_fmt(row.get(f'align_psnr_{m}'), '.1f')}"
        for m in members[1:]
        if f"align_psnr_{m}" in row.index
    ]
    l3 = ("align PSNR " + ", ".join(psnr) + " dB") if psnr else ""
    lines = [(l1, TEXT), (l2, MUTED), (l3, MUTED)]
    if status and status != "kept":
        reason = str(row.get("reason", "") or "")
        lines[2] = (f"{status.upper()}: {reason}", STATUS_COLORS.get(status, TEXT))
    return lines


def _clip(draw: Any, text: str, font: Any, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` px."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _panel_label(draw: Any, xy: tuple[int, int], text: str, font: Any) -> None:
    x, y = xy
    box = draw.textbbox((x + 4, y + 3), text, font=font)
    draw.rectangle([box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2], fill=LABEL_BG)
    draw.text((x + 4, y + 3), text, fill=(255, 255, 255), font=font)


class _Rereader:
    """Reads a row's members again from its slide, as extract did (for rejected rows)."""

    def __init__(self, slides: Path, attrs: dict[str, Any]) -> None:
        if not slides.is_dir():
            raise InputError(f"--slides {slides}: not a folder; give the slides folder of the extraction")
        self.slides = slides
        self.params = attrs.get("params", {})
        self.info = attrs.get("slides", {})
        self.readers: dict[str, SlideReader] = {}

    def read(self, row: pd.Series) -> tuple[dict[str, np.ndarray], str]:
        name = str(row["slide"])
        try:
            check_slide_name(name, "store table")
            info = self.info.get(name, {})
            if name not in self.readers:
                path = self.slides / str(info.get("path", name))
                self.readers[name] = open_slide(path, backend=self.params.get("backend", "auto"))
            reader = self.readers[name]
            mpp = info.get("mpp")
            geo = Geometry.of(reader, tuple(mpp) if mpp else None)
            p = self.params
            specs = member_specs(int(p["size"]), float(p["base_mpp"]), float(p["base_mag"]), p["scales"])
            images, _ = read_patch(
                reader, geo, float(row["x"]), float(row["y"]), specs,
                allow_upsample=bool(p.get("allow_upsample", False)),
            )
            return images, ""
        except Exception as exc:  # noqa: BLE001 - shown in the panel, the sheet goes on
            return {}, f"cannot re-read: {exc}"

    def close(self) -> None:
        for r in self.readers.values():
            r.close()


def preview(
    store: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    n: int = 12,
    status: str = "kept",
    seed: int = 0,
    rows: Sequence[int] | None = None,
    members: Sequence[str] | None = None,
    cell: int = 192,
    cols: int = 2,
    zoom: bool = True,
    slides: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write a contact sheet PNG of stored triplets.

    Args:
        store: the MLCamSR store (path or URL).
        out: the PNG to write.
        n: number of patches (a seeded random choice when there are more).
        status: ``"kept"``, ``"rejected"``, ``"failed"`` or ``"all"`` table rows.
        seed: random seed of the choice.
        rows: explicit table rows instead (overrides ``n``/``status``).
        members: member names, default the store's real members (finest first).
        cell: display size of each panel, px.
        cols: blocks per row of the sheet.
        zoom: add the native-resolution centre crops under each block.
        slides: the slides folder of the extraction; rows without pixels in the
            store (rejected) are then read again from their slide with the
            store's own parameters and reading policy, so you can see why
            they were rejected.

    Returns:
        ``dict(path, rows, members, size)``: what was drawn and the picture size.

    Raises:
        StoreError: the store cannot be opened or lacks a member.
        InputError: nothing to show, or bad options.
    """
    from PIL import Image, ImageDraw

    from mlcamsr.store import open_store

    if n < 1 or cell < 16 or cols < 1:
        raise InputError("--n and --cols must be >= 1 and --cell >= 16")
    if status not in ("kept", "rejected", "failed", "all"):
        raise InputError(f"--status {status!r}: choose kept, rejected, failed or all")
    # the picture format follows --out's extension (a .jpg must not hold PNG bytes)
    fmt = Image.registered_extensions().get(Path(out).suffix.lower())
    if fmt not in ("PNG", "JPEG", "TIFF", "WEBP"):
        raise InputError(f"--out {out}: give a .png (or .jpg, .tif, .webp) file name for the sheet")
    st = open_store(store)
    table = st.table
    if members is None:
        infos = st.attrs.get("members", [])
        members = [m["name"] for m in infos if m.get("kind", "real") == "real" and m["name"] in st]
        members = members or st.members
    else:
        for m in members:
            st[m]  # noqa: B018 - raises StoreError naming the missing member
    members = list(members)
    if not members:
        raise StoreError(f"{store}: the store has no member arrays yet; run `mlcamsr extract`")
    sizes = {m: int(st[m].shape[1]) for m in members}
    finest = max(sizes.values())
    sel = _select(table, n, status, seed, rows, store)

    layout = Layout(len(sel), len(members), cell, min(cols, len(sel)), zoom)
    sheet = Image.new("RGB", layout.size, BG)
    draw = ImageDraw.Draw(sheet, "RGBA")
    f_title, f_head, f_text, f_small = _font(15), _font(12), _font(11), _font(10)

    counts = table["status"].value_counts().to_dict() if "status" in table else {}
    title = (
        f"{Path(str(store)).name}: {len(sel)} of {len(table)} patches "
        f"(kept {counts.get('kept', 0)}, rejected {counts.get('rejected', 0)}, "
        f"failed {counts.get('failed', 0)}); showing {status if not rows else 'chosen rows'}"
    )
    draw.text((MARGIN, MARGIN + 4), title, fill=TEXT, font=f_title)

    # zoom: the centre `cell` finest-member px (all of it when the square is smaller)
    zfrac = min(1.0, cell / finest)
    arrays = {m: st.region_reader(m) for m in members}  # checked reads: damage is an error
    rereader = _Rereader(Path(slides), st.attrs) if slides is not None else None
    for k, (row_id, row) in enumerate(sel.iterrows()):
        ox, oy = layout.origin(k)
        idx = int(row["index"]) if "index" in row and pd.notna(row["index"]) else -1
        images: dict[str, np.ndarray] = {}
        note = ""
        if idx >= 0:
            images = {m: np.asarray(arrays[m][idx]) for m in members}
        elif rereader is not None:
            images, note = rereader.read(row)
        for j, m in enumerate(members):
            px = ox + j * (cell + GAP)
            img = images.get(m)
            if img is not None:
                sheet.paste(_fit(img, cell), (px, oy))
                if zoom and zfrac < 1:  # where the zoom comes from
                    a = (cell - cell * zfrac) / 2
                    draw.rectangle(
                        [px + a, oy + a, px + cell - a - 1, oy + cell - a - 1],
                        outline=ZOOM_BOX,
                        width=1,
                    )
                if zoom:
                    sheet.paste(_fit(_zoom_crop(img, zfrac), cell), (px, oy + cell + GAP))
            else:
                for r in range(2 if zoom else 1):
                    y0 = oy + r * (cell + GAP)
                    draw.rectangle([px, y0, px + cell - 1, y0 + cell - 1], fill=(236, 236, 236))
                    msg = note or f"not stored ({row.get('status', '?')})"
                    msg = _clip(draw, msg, f_text, cell - 8)
                    tw = draw.textlength(msg, font=f_text)
                    draw.text((px + (cell - tw) / 2, y0 + cell // 2 - 6), msg, fill=MUTED, font=f_text)
            reread = " (from slide)" if idx < 0 and img is not None else ""
            _panel_label(draw, (px, oy), f"{m}  {sizes[m]} px{reread}", f_small)
            if zoom:
                zpx = max(1, int(round(sizes[m] * zfrac)))
                _panel_label(draw, (px, oy + cell + GAP), f"{m} centre {zpx} px", f_small)
        cy = oy + (2 if zoom else 1) * cell + (GAP if zoom else 0) + 4
        for i, (line, color) in enumerate(_caption(row, int(row_id), members)):
            if line:
                font = f_head if i == 0 else f_text
                draw.text((ox, cy + i * LINE_H), _clip(draw, line, font, layout.block_w), fill=color, font=font)

    if rereader is not None:
        rereader.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    sheet.save(tmp, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    os.replace(tmp, out)
    return {
        "path": out,
        "rows": [int(r) for r in sel.index],
        "members": members,
        "size": sheet.size,
    }
