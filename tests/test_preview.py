"""Contact sheets of stored triplets (mlcamsr.preview, cli.preview)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.mlcamsr import main
from mlcamsr.errors import InputError, StoreError
from mlcamsr.preview import GAP, MARGIN, TITLE_H, preview, sheet_size
from mlcamsr.store import open_store


def test_sheet_size_formula() -> None:
    # 2 columns of blocks: 3 panels of 192 + 2 gaps; 2 rows of (2 panels + gap + caption)
    w, h = sheet_size(4, 3, cell=192, cols=2, zoom=True)
    block_w = 3 * 192 + 2 * GAP
    assert w == 2 * MARGIN + 2 * block_w + 16
    assert h > 2 * (2 * 192) + TITLE_H
    assert sheet_size(1, 3, cell=100, cols=4, zoom=False)[0] == 2 * MARGIN + 3 * 100 + 2 * GAP


def test_preview_writes_png_of_expected_size(small_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    res = preview(small_store, out, n=4, cell=128, cols=2)
    assert res["members"] == ["40x", "20x", "10x"]
    assert len(res["rows"]) == 4
    with Image.open(out) as im:
        assert im.mode == "RGB"
        assert im.size == sheet_size(4, 3, cell=128, cols=2, zoom=True) == res["size"]
        px = np.asarray(im)
    # the first panel is the stored 40x patch, area-averaged to 128 px
    st = open_store(small_store)
    row = st.table.iloc[res["rows"][0]]
    assert row["status"] == "kept"
    img = np.asarray(st["40x"][int(row["index"])])
    ref = img.reshape(128, 2, 128, 2, 3).mean(axis=(1, 3))
    panel = px[MARGIN + TITLE_H : MARGIN + TITLE_H + 128, MARGIN : MARGIN + 128].astype(float)
    # away from the panel label in the corner and the zoom box outline
    assert np.abs(panel[40:90, 40:90] - ref[40:90, 40:90]).max() <= 1.0


def test_preview_is_deterministic_and_seeded(small_store: Path, tmp_path: Path) -> None:
    a = preview(small_store, tmp_path / "a.png", n=3, seed=0)
    b = preview(small_store, tmp_path / "b.png", n=3, seed=0)
    c = preview(small_store, tmp_path / "c.png", n=3, seed=5)
    assert a["rows"] == b["rows"] and a["rows"] != c["rows"]
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_preview_rows_status_and_members(small_store: Path, tmp_path: Path) -> None:
    table = open_store(small_store).table
    res = preview(small_store, tmp_path / "r.png", rows=[1, 0], members=["40x", "10x"], zoom=False)
    assert res["rows"] == [1, 0] and res["members"] == ["40x", "10x"]
    assert res["size"] == sheet_size(2, 2, cell=192, cols=2, zoom=False)
    res = preview(small_store, tmp_path / "all.png", n=1000, status="all")
    assert len(res["rows"]) == len(table)
    if (table["status"] == "rejected").any():
        res = preview(small_store, tmp_path / "rej.png", status="rejected")
        assert all(table.loc[r, "status"] == "rejected" for r in res["rows"])


def test_rejected_rows_are_read_again_from_the_slide(
    small_store: Path, synth_dir: Path, tmp_path: Path
) -> None:
    table = open_store(small_store).table
    rejected = [int(i) for i in table.index[table["status"] == "rejected"]]
    if not rejected:
        pytest.skip("the small store has no rejected row")
    row = rejected[:1]
    blank = preview(small_store, tmp_path / "a.png", rows=row, cell=64, zoom=False)
    again = preview(small_store, tmp_path / "b.png", rows=row, cell=64, zoom=False, slides=synth_dir)
    assert blank["size"] == again["size"]
    a = np.asarray(Image.open(tmp_path / "a.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "b.png")).astype(int)
    y0, x0 = MARGIN + TITLE_H + 20, MARGIN  # below the panel label
    pa, pb = a[y0 : y0 + 40, x0 : x0 + 64], b[y0 : y0 + 40, x0 : x0 + 64]
    assert (pa[:4] == 236).all()  # the grey "not stored" card
    assert np.abs(pa - pb).mean() > 10 and not (pb[:4] == 236).all()  # pixels from the slide


def test_preview_bad_inputs(small_store: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--rows 9999"):
        preview(small_store, tmp_path / "x.png", rows=[9999])
    with pytest.raises(StoreError, match="5x"):
        preview(small_store, tmp_path / "x.png", members=["5x"])
    with pytest.raises(StoreError, match="not found"):
        preview(tmp_path / "missing.zarr", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(InputError, match="--out .*sheet: give a .png"):
        preview(small_store, tmp_path / "sheet", n=1)
    from PIL import Image

    r = preview(small_store, tmp_path / "sheet.jpg", n=1)  # the format follows the extension
    with Image.open(r["path"]) as im:
        assert im.format == "JPEG"
    assert not list(tmp_path.glob("*.tmp"))


def test_cli_preview(small_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    r = CliRunner().invoke(main, ["preview", str(small_store), "--out", str(out), "--n", "2"])
    assert r.exit_code == 0, r.output
    assert "Wrote" in r.output and "members 40x, 20x, 10x" in r.output
    assert Image.open(out).size == sheet_size(2, 3)
    r = CliRunner().invoke(main, ["preview", str(tmp_path / "nope.zarr"), "--out", str(out)])
    assert r.exit_code == 2 and "Error:" in r.output
    r = CliRunner().invoke(main, ["preview", str(small_store), "--rows", "a,b"])
    assert r.exit_code == 2


def test_cli_preview_help() -> None:
    r = CliRunner().invoke(main, ["preview", "--help"])
    assert r.exit_code == 0
    for opt in ("[STORE]", "--out", "--n", "--status", "--seed", "--slides",
                "kept|rejected|failed|all"):
        assert opt in r.output
    assert "40x | 20x | 10x" in r.output
