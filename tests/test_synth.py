"""mlcamsr.synth and ``mlcamsr synth``: real TIFFs, opened by both real backends."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
import tiffslide
from click.testing import CliRunner

from cli.mlcamsr import main
from mlcamsr.errors import InputError
from mlcamsr.synth import build_levels, level_sizes, render_slide, synth_slides


def test_level_sizes_by_two_down_to_a_thumbnail() -> None:
    assert level_sizes((4096, 3072)) == [(4096, 3072), (2048, 1536), (1024, 768), (512, 384),
                                         (256, 192)]
    odd = level_sizes((1000, 800), odd_levels=True)
    assert odd == [(1000, 800), (501, 401)]
    assert level_sizes((4000, 3000), odd_levels=True)[1:4] == [(2001, 1501), (1001, 751),
                                                               (501, 376)]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = synth_slides(tmp_path / "a", n_slides=1, size=(1024, 768), seed=3, n_coords=4)
    b = synth_slides(tmp_path / "b", n_slides=1, size=(1024, 768), seed=3, n_coords=4)
    c = synth_slides(tmp_path / "c", n_slides=1, size=(1024, 768), seed=4, n_coords=4)
    assert a[0].read_bytes() == b[0].read_bytes()
    assert (tmp_path / "a/coords.csv").read_bytes() == (tmp_path / "b/coords.csv").read_bytes()
    assert a[0].read_bytes() != c[0].read_bytes()


def test_files_are_tiled_jpeg_pyramids_with_cm_resolution(synth_dir: Path) -> None:
    with tifffile.TiffFile(synth_dir / "slide_000.tif") as tf:
        pages = list(tf.pages)
        assert [p.shape[:2] for p in pages] == [(3072, 4096), (1536, 2048), (768, 1024),
                                                (384, 512), (192, 256)]
        for p in pages:
            assert p.is_tiled and p.tilewidth == 512 and p.tilelength == 512
            assert p.compression == tifffile.COMPRESSION.JPEG
        assert pages[0].tags["ResolutionUnit"].value == 3  # centimetre
        num, den = pages[0].tags["XResolution"].value
        assert 1e4 / (num / den) == pytest.approx(0.243, rel=1e-6)


@pytest.mark.parametrize("backend", ["openslide", "tiffslide"])
def test_both_backends_read_levels_and_mpp(synth_dir: Path, backend: str) -> None:
    path = synth_dir / "slide_001.tif"
    slide = openslide.OpenSlide(path) if backend == "openslide" else tiffslide.TiffSlide(path)
    assert slide.level_count == 5
    assert slide.level_dimensions[0] == (4096, 3072)
    assert float(slide.properties[f"{backend}.mpp-x"]) == pytest.approx(0.243, rel=1e-6)
    assert float(slide.properties[f"{backend}.mpp-y"]) == pytest.approx(0.243, rel=1e-6)
    slide.close()


def test_content_is_hne_like_with_glass_tissue_and_sharp_nuclei() -> None:
    s = render_slide((2048, 1536), seed=1, lesions=True)
    img = s.image
    assert img.dtype == np.uint8 and img.shape == (1536, 2048, 3)
    assert 0.25 < s.tissue.mean() < 0.85  # real glass around tissue
    glass = img[~s.tissue]
    assert glass.mean() > 235
    tissue = img[s.tissue].astype(float).mean(0)
    assert tissue[0] > tissue[1] and tissue[2] > tissue[1]  # pink/purple: R, B > G
    dark = (img.astype(int).sum(-1) < 350) & s.tissue  # haematoxylin nuclei
    assert 0.01 < dark.mean() < 0.5
    # high-frequency detail: neighbouring pixels differ a lot inside tissue
    grad = np.abs(np.diff(img[..., 1].astype(int), axis=1))[s.tissue[:, 1:]]
    assert np.percentile(grad, 95) > 20
    # levels are box averages of the level above
    lv = build_levels(img)
    assert np.abs(lv[1].astype(int) - img.reshape(768, 2, 1024, 2, 3).mean((1, 3))).max() <= 1


def test_lesion_xml_and_coords(synth_dir: Path) -> None:
    from mlcamsr.annotations import load_annotations

    rows = list(csv.DictReader(open(synth_dir / "coords.csv")))
    assert list(rows[0]) == ["slide", "x", "y", "label"]
    assert len(rows) == 24  # 12 per slide
    for r in rows:
        x, y = int(r["x"]), int(r["y"])
        assert 512 <= x <= 4096 - 512 and 512 <= y <= 3072 - 512
    assert {r["label"] for r in rows} == {"tumor", "normal"}
    for name in ("slide_000", "slide_001"):
        ann = load_annotations(synth_dir / f"{name}.xml")
        assert ann.has_tumor
        for r in rows:
            if r["slide"] == f"{name}.tif":
                assert ann.contains(int(r["x"]), int(r["y"])) == (r["label"] == "tumor")


def test_no_lesions_writes_no_xml_and_no_label(tmp_path: Path) -> None:
    synth_slides(tmp_path, n_slides=1, size=(1024, 768), lesions=False, n_coords=2)
    assert not list(tmp_path.glob("*.xml"))
    assert (tmp_path / "coords.csv").read_text().splitlines()[0] == "slide,x,y"


def test_cli_help_teaches_the_options() -> None:
    res = CliRunner().invoke(main, ["synth", "--help"])
    assert res.exit_code == 0
    for opt in ("--out", "--n-slides", "--size", "--mpp", "--seed", "--odd-levels",
                "--n-coords", "--no-lesions"):
        assert opt in res.output


def test_cli_small_run_with_odd_levels(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["synth", "--out", str(tmp_path / "s"), "--n-slides", "1",
                                    "--size", "2000x1500", "--odd-levels", "--n-coords", "4",
                                    "--mpp", "0.25"])
    assert res.exit_code == 0, res.output
    path = tmp_path / "s" / "slide_000.tif"
    with openslide.OpenSlide(path) as s:
        assert s.level_dimensions == ((2000, 1500), (1001, 751), (501, 376))
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.25)
    assert len((tmp_path / "s" / "coords.csv").read_text().splitlines()) == 5


def test_cli_rejects_a_bad_size(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["synth", "--out", str(tmp_path), "--size", "12xfoo"])
    assert res.exit_code == 2
    assert "--size" in res.output


def test_cli_never_writes_into_a_folder_holding_other_files(tmp_path: Path) -> None:
    """``--out`` at the user's own slides folder must not replace their coords.csv."""
    mine = tmp_path / "camelyon"
    mine.mkdir()
    (mine / "tumor_001.tif").write_bytes(b"real slide")
    (mine / "coords.csv").write_text("slide,x,y\ntumor_001.tif,1,2\n")
    args = ["synth", "--n-slides", "1", "--size", "1024", "--n-coords", "2"]
    res = CliRunner().invoke(main, [*args, "--out", str(mine)])
    assert res.exit_code == 2 and "tumor_001.tif" in res.output and "new or empty folder" in res.output
    assert (mine / "coords.csv").read_text() == "slide,x,y\ntumor_001.tif,1,2\n"
    assert sorted(p.name for p in mine.iterdir()) == ["coords.csv", "tumor_001.tif"]
    # a folder of an earlier synth run is rewritten (the same command twice is fine)
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output


def test_library_refuses_a_folder_holding_other_files(tmp_path: Path) -> None:
    """The guard lives in mlcamsr.synth, so Python callers get it too, not only the CLI."""
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="notes.txt.*new or empty folder"):
        synth_slides(tmp_path, n_slides=1, size=(256, 256), n_coords=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
