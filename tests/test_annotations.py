"""ASAP XML read/write, polygon repair and patch labelling (mlcamsr.annotations)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlcamsr.annotations import (
    SlideAnnotations,
    find_annotation,
    load_annotations,
    load_for_slide,
    slide_stem,
    tumor_mask,
    write_asap_xml,
)
from mlcamsr.errors import InputError


def square(x0: float, y0: float, side: float) -> np.ndarray:
    return np.array([(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side)], float)


CAMELYON_XML = """<?xml version="1.0"?>
<ASAP_Annotations>
\t<Annotations>
\t\t<Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="0" Y="0" />
\t\t\t\t<Coordinate Order="1" X="1000" Y="0" />
\t\t\t\t<Coordinate Order="2" X="1000" Y="1000" />
\t\t\t\t<Coordinate Order="3" X="0" Y="1000" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 1" Type="Spline" PartOfGroup="_1" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="2000,5" Y="0" />
\t\t\t\t<Coordinate Order="1" X="2500,5" Y="0" />
\t\t\t\t<Coordinate Order="2" X="2500,5" Y="500" />
\t\t\t\t<Coordinate Order="3" X="2000,5" Y="500" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 2" Type="Polygon" PartOfGroup="_2" Color="#64FE2E">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="250" Y="250" />
\t\t\t\t<Coordinate Order="1" X="750" Y="250" />
\t\t\t\t<Coordinate Order="2" X="750" Y="750" />
\t\t\t\t<Coordinate Order="3" X="250" Y="750" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 3" Type="Polygon" PartOfGroup="metastases" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="5000" Y="5000" />
\t\t\t\t<Coordinate Order="1" X="5100" Y="5000" />
\t\t\t\t<Coordinate Order="2" X="5100" Y="5100" />
\t\t\t\t<Coordinate Order="3" X="5000" Y="5100" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 4" Type="Polygon" PartOfGroup="Tumor" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="8000" Y="0" />
\t\t\t\t<Coordinate Order="1" X="9000" Y="0" />
\t\t\t\t<Coordinate Order="2" X="9000" Y="1000" />
\t\t\t\t<Coordinate Order="3" X="8000" Y="1000" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 5" Type="Polygon" PartOfGroup="Stroma" Color="#0000FF">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="20000" Y="0" />
\t\t\t\t<Coordinate Order="1" X="21000" Y="0" />
\t\t\t\t<Coordinate Order="2" X="21000" Y="1000" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 6" Type="Dot" PartOfGroup="_0" Color="#0000FF">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="30000" Y="0" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t</Annotations>
\t<AnnotationGroups>
\t\t<Group Name="_0" PartOfGroup="None" Color="#FF0000"><Attributes /></Group>
\t\t<Group Name="_1" PartOfGroup="None" Color="#FF0000"><Attributes /></Group>
\t\t<Group Name="_2" PartOfGroup="None" Color="#00FF00"><Attributes /></Group>
\t</AnnotationGroups>
</ASAP_Annotations>
"""


@pytest.fixture
def camelyon_xml(tmp_path: Path) -> Path:
    p = tmp_path / "tumor_001.xml"
    p.write_text(CAMELYON_XML)
    return p


def test_round_trip_write_then_load(tmp_path: Path) -> None:
    polys = [("Tumor", square(100.25, 200.5, 400.0)), ("_2", square(200, 300, 100))]
    path = write_asap_xml(tmp_path / "a" / "s.xml", polys)
    ann = load_annotations(path)
    assert len(ann) == 2
    np.testing.assert_array_equal(ann.annotations[0].points, polys[0][1])
    assert ann.annotations[0].group == "Tumor"
    assert ann.tumor_area == pytest.approx(400.0**2 - 100.0**2)
    assert not list(tmp_path.glob("a/*.tmp"))


def test_write_refuses_degenerate_polygon(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="polygon 0"):
        write_asap_xml(tmp_path / "x.xml", [("Tumor", np.zeros((2, 2)))])


def test_camelyon_groups_comma_decimals_and_exclusion(camelyon_xml: Path) -> None:
    ann = load_annotations(camelyon_xml)
    # _0 square minus the _2 hole, _1 square (comma decimals), metastases, Tumor
    expected = 1000**2 - 500**2 + 500 * 500 + 100 * 100 + 1000 * 1000
    assert ann.tumor_area == pytest.approx(expected)
    assert ann.ignored_groups == {"Stroma": 1}
    assert ann.skipped == 1  # the Dot
    assert ann.contains(100, 100) and not ann.contains(500, 500)  # inside the _2 exclusion
    assert ann.contains(2000.6, 10)  # "2000,5" read as 2000.5
    assert not ann.contains(2000.4, 10)
    assert ann.contains(5050, 5050) and ann.contains(8500, 500)
    assert not ann.contains(20900, 100)  # "Stroma" is not tumour


def test_bow_tie_polygon_is_repaired() -> None:
    bow_tie = np.array([(0, 0), (100, 100), (100, 0), (0, 100)], float)
    ann = SlideAnnotations.from_polygons([("Tumor", bow_tie)])
    assert ann.repaired == 1
    assert ann.tumor.is_valid
    # two triangles of area 100*50/2 each
    assert ann.tumor_area == pytest.approx(2 * 2500.0)
    assert ann.contains(20, 50) and ann.contains(80, 50) and not ann.contains(50, 20)


@pytest.mark.parametrize(
    ("cx", "cy", "hw", "frac", "label"),
    [
        (500, 500, 500, 1.0, "tumor"),  # exactly the lesion
        (1000, 500, 500, 0.5, "tumor"),  # half over the right edge
        (1000, 1000, 500, 0.25, "tumor"),  # the corner
        (3000, 3000, 500, 0.0, "normal"),  # far away
        (1600, 500, 100, 0.0, "normal"),  # touching nothing
        (1050, 500, 50, 0.0, "normal"),  # edge-adjacent: zero area
    ],
)
def test_label_fractions_on_known_squares(cx, cy, hw, frac, label) -> None:
    ann = SlideAnnotations.from_polygons([("_0", square(0, 0, 1000))])
    got_label, got_frac = ann.label(cx, cy, hw)
    assert got_frac == pytest.approx(frac)
    assert got_label == label
    labels, fracs = ann.label_many(np.array([cx]), np.array([cy]), hw)
    assert fracs[0] == pytest.approx(frac) and labels[0] == label


def test_label_threshold_and_exclusion(camelyon_xml: Path) -> None:
    ann = load_annotations(camelyon_xml)
    assert ann.label(500, 500, 250) == ("normal", 0.0)  # the _2 hole exactly
    lab, frac = ann.label(500, 500, 500)
    assert frac == pytest.approx(0.75) and lab == "tumor"
    assert ann.label(500, 500, 500, threshold=0.8)[0] == "normal"


def test_label_many_matches_label(camelyon_xml: Path) -> None:
    ann = load_annotations(camelyon_xml)
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(-500, 10000, 200), rng.uniform(-500, 6000, 200)
    labels, fracs = ann.label_many(xs, ys, 300.0)
    for x, y, lab, f in zip(xs, ys, labels, fracs):
        lab1, f1 = ann.label(x, y, 300.0)
        assert lab1 == lab and f1 == pytest.approx(f, abs=1e-12)


def test_empty_annotations_label_normal() -> None:
    ann = SlideAnnotations.empty()
    assert ann.label(10, 10, 5) == ("normal", 0.0)
    assert not ann.has_tumor
    labels, fracs = ann.label_many(np.arange(3.0), np.arange(3.0), 5)
    assert list(labels) == ["normal"] * 3 and fracs.sum() == 0


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("<ASAP_Annotations><Annotations>", "not well-formed XML"),
        ("<Other/>", "expected <ASAP_Annotations>"),
        (
            '<ASAP_Annotations><Annotations><Annotation Name="A7" PartOfGroup="_0">'
            '<Coordinates><Coordinate Order="0" X="abc" Y="1"/></Coordinates>'
            "</Annotation></Annotations></ASAP_Annotations>",
            "'A7' has a non-numeric X",
        ),
    ],
)
def test_malformed_xml_names_the_file(tmp_path: Path, content: str, match: str) -> None:
    p = tmp_path / "bad_slide.xml"
    p.write_text(content)
    with pytest.raises(InputError, match=match) as exc:
        load_annotations(p)
    assert "bad_slide.xml" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.xml"):
        load_annotations(tmp_path / "nope.xml")


def test_find_annotation_matches_stem(tmp_path: Path, camelyon_xml: Path) -> None:
    assert slide_stem("tumor_001.tif") == "tumor_001"
    assert slide_stem("a/b.ome.tiff") == "b"
    assert find_annotation(tmp_path, "tumor_001.tif") == camelyon_xml
    assert find_annotation(tmp_path, "tumor_001") == camelyon_xml
    assert find_annotation(tmp_path, "sub/TUMOR_001.tif") == camelyon_xml
    assert find_annotation(tmp_path, "normal_001.tif") is None
    assert not load_for_slide(tmp_path, "normal_001.tif").has_tumor
    assert load_for_slide(None, "tumor_001.tif").path is None


def test_tumor_mask_raster() -> None:
    ann = SlideAnnotations.from_polygons([("_0", square(0, 0, 1000)), ("_2", square(250, 250, 500))])
    m = tumor_mask(ann, (40, 60), 50.0)  # 1000 px -> 20 level px
    assert m.shape == (40, 60)
    assert m[:20, :20].sum() == 20 * 20 - 10 * 10
    assert not m[5:15, 5:15].any()
    assert not m[20:].any() and not m[:, 20:].any()


def test_annotations_folder_without_xml_is_refused(tmp_path):
    """extract and sample-coords must not label everything "normal" from a wrong folder."""
    from mlcamsr.annotations import require_xml

    empty = tmp_path / "ann"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"--annotations .*ann holds no \.xml files"):
        require_xml(empty)
    (empty / "sub").mkdir()
    (empty / "sub" / "tumor_001.XML").write_text("<ASAP_Annotations/>")
    require_xml(empty)  # any .xml below it will do


def test_extract_and_sample_coords_refuse_an_xml_less_folder(synth_dir, tmp_path):
    from click.testing import CliRunner

    from cli.mlcamsr import main

    empty = tmp_path / "ann"
    empty.mkdir()
    out = tmp_path / "s.zarr"
    r = CliRunner().invoke(main, ["extract", "--slides", str(synth_dir), "--coords",
                                  str(synth_dir / "coords.csv"), "--annotations", str(empty),
                                  "--out", str(out), "--size", "256", "--workers", "0", "--quiet"])
    assert r.exit_code == 2 and "holds no .xml files" in r.output and not out.exists()
    r = CliRunner().invoke(main, ["sample-coords", "--slides", str(synth_dir), "--annotations",
                                  str(empty), "--n", "2", "--out", str(tmp_path / "c.csv"),
                                  "--no-progress"])
    assert r.exit_code == 2 and "holds no .xml files" in r.output


def test_written_xml_is_readable_like_any_new_file(tmp_path: Path) -> None:
    """mkstemp's 0600 made synth's XML unreadable to collaborators (slides were 0644)."""
    import os
    import stat

    umask = os.umask(0o022)
    try:
        path = write_asap_xml(tmp_path / "s.xml", [("Tumor", np.array([[0, 0], [10, 0], [10, 10]]))])
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
