"""coords.csv validation: every file-level mistake is one InputError line naming file/row and fix."""

from __future__ import annotations

import pytest

from mlcamsr.coords import read_coords, resolve_slides
from mlcamsr.errors import InputError


def _csv(tmp_path, text, name="coords.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_types_extras_and_hash(tmp_path):
    df = read_coords(_csv(tmp_path, "slide,x,y,label,center\na.tif,10,20,tumor,3\nb,1.5,2,,4\n"))
    assert list(df.slide) == ["a.tif", "b"]
    assert df.x.dtype.kind == "f" and df.y.dtype.kind == "i"
    assert list(df.label) == ["tumor", ""] and "center" in df.columns
    assert df.mpp.isna().all() and len(df.attrs["sha256"]) == 64


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "is empty"),
        ("slide,x,y\n", "no rows"),
        ("slide,xx,y\na,1,2\n", "lacks column"),
        ("slide,x,y\na,abc,2\n", r"row 0 \(line 2\): x='abc' is not a finite number"),
        ("slide,x,y\na,1,2\na,,3\n", r"row 1 \(line 3\): x=''"),
        ("slide,x,y\na,1,nan\n", "y='nan' is not a finite number"),
        ("slide,x,y\na,1,2\nb,1,2\na,1,2\n", r"rows 0 and 2 .* same patch"),
        ("slide,x,y\n../etc/passwd,1,2\n", r"contains '\.\.'"),
        ("slide,x,y\n/etc/passwd,1,2\n", "absolute path"),
        ("slide,x,y,mpp\na,1,2,-1\n", "mpp='-1' is not a positive number"),
        ("slide,x,y,mpp\na,1,2,0.25\na,3,4,0.5\n", "different mpp values"),
        # int64 overflow printed the square as [-9223372036854775808, ...)
        ("slide,x,y\na,1e20,2\n", r"row 0 \(line 2\): x='1e20' is out of range"),
        # pandas renamed the second x to x.1 and used the first silently
        ("slide,x,y,x\na,1,2,3\n", "column\\(s\\) x appear more than once"),
        # extract's own columns silently replaced the user's
        ("slide,x,y,status,src_40x\na,1,2,todo,scan\n", "status, src_40x would be overwritten"),
    ],
)
def test_bad_coords_files(tmp_path, text, match):
    with pytest.raises(InputError, match=match) as exc:
        read_coords(_csv(tmp_path, text))
    assert "\n" not in str(exc.value)


def test_missing_coords_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_coords(tmp_path / "nope.csv")


def test_resolve_with_or_without_extension_and_missing(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a.tif").write_bytes(b"x")
    (tmp_path / "s" / "b.svs").write_bytes(b"x")
    df = read_coords(_csv(tmp_path, "slide,x,y\na,1,2\nb.svs,1,2\n"))
    paths = resolve_slides(df, tmp_path / "s")
    assert paths["a"].name == "a.tif" and paths["b.svs"].name == "b.svs"
    df2 = read_coords(_csv(tmp_path, "slide,x,y\na,1,2\nzz,1,2\n", "c2.csv"))
    with pytest.raises(InputError, match=r"1 slide\(s\) .* not found .* 'zz' \(first at row 1\)"):
        resolve_slides(df2, tmp_path / "s")
    with pytest.raises(InputError, match="slides folder .* not found"):
        resolve_slides(df, tmp_path / "nowhere")


def test_name_without_extension_matching_two_slides_is_refused(tmp_path):
    """``a`` with a.tif and a.svs side by side must not silently read one of them."""
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a.tif").write_bytes(b"x")
    (tmp_path / "s" / "a.svs").write_bytes(b"x")
    (tmp_path / "s" / "b.tif").write_bytes(b"x")
    (tmp_path / "s" / "b.xml").write_bytes(b"x")  # annotations beside the slide: not ambiguous
    df = read_coords(_csv(tmp_path, "slide,x,y\na,1,2\n"))
    with pytest.raises(InputError, match=r"'a' matches 2 files .*a\.tif, a\.svs; give the full file name"):
        resolve_slides(df, tmp_path / "s")
    df = read_coords(_csv(tmp_path, "slide,x,y\na.svs,1,2\nb,1,2\n", "c2.csv"))
    paths = resolve_slides(df, tmp_path / "s")
    assert paths["a.svs"].name == "a.svs" and paths["b"].name == "b.tif"


def test_one_slide_under_two_names_is_refused(tmp_path):
    """``a`` and ``a.tif`` are one slide: two names would let split --by slide put it on both sides."""
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a.tif").write_bytes(b"x")
    df = read_coords(_csv(tmp_path, "slide,x,y\na.tif,1,2\nb,1,1\na,5,6\n"))
    (tmp_path / "s" / "b.svs").write_bytes(b"x")
    with pytest.raises(InputError, match=r"'a.tif' and 'a' \(row 2\) are the same file .*use one name"):
        resolve_slides(df, tmp_path / "s")
