"""Two readers, one truth: the reader check and the slide inventory (issue 14).

The disagreement is real, not mocked: ``mlcamsr synth --format aperio-j2k-ycbcr`` writes an
Aperio SVS whose JPEG 2000 tiles hold YCbCr (compression 33003), as Aperio's encoder does;
openslide converts it to RGB, tiffslide shows the YCbCr planes as RGB.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.mlcamsr import main
from mlcamsr import open_store
from mlcamsr.extract import extract
from mlcamsr.reader_check import MAX_TOL, MEAN_TOL, LevelFigures, check_readers, decide
from mlcamsr.slides import open_slide
from mlcamsr.synth import build_levels, render_slide, synth_slides

SIZE = (1024, 768)


@pytest.fixture(scope="module")
def ycbcr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("j2k_ycbcr")
    synth_slides(out, n_slides=1, size=SIZE, seed=3, n_coords=3, lesions=False, fmt="aperio-j2k-ycbcr")
    return out


def test_ycbcr_j2k_slide_disagrees_and_the_check_picks_openslide_which_is_right(ycbcr_dir):
    path = ycbcr_dir / "slide_000.svs"
    c = check_readers(path)
    assert c.status == "disagree" and c.reader == "openslide" and not c.agrees
    assert [f.level for f in c.levels] == [0, 1, 2]
    assert all(f.mean_abs > 10 * MEAN_TOL and f.regions == 1 for f in c.levels)
    assert all(x % 128 == 0 and y % 128 == 0 for f in c.levels for x, y in f.windows)
    assert "slide_000.svs" in c.message and "openslide" in c.message
    # which reader tells the truth: the rendered level 0 (J2K at 80 dB target is near-lossless)
    truth = build_levels(render_slide(SIZE, seed=3, index=0, lesions=False).image)[0][:256, :256]
    err = {}
    for b in ("openslide", "tiffslide"):
        with open_slide(path, backend=b) as r:
            err[b] = np.abs(r.read_level(0, (0, 0), (256, 256)).astype(int) - truth).mean()
    assert err["openslide"] < 2 < 20 < err["tiffslide"]


def test_synth_jpeg_slide_agrees_and_keeps_the_faster_reader(synth_dir):
    c = check_readers(synth_dir / "slide_000.tif", [0, 2])
    assert c.status == "agree" and c.reader == "tiffslide"
    assert [f.level for f in c.levels] == [0, 2]
    assert all(f.max_abs <= MAX_TOL and f.mean_abs <= MEAN_TOL for f in c.levels)
    # the sample is fixed: the same windows every time
    assert check_readers(synth_dir / "slide_000.tif", [0, 2]).as_attrs()["levels"] == c.as_attrs()["levels"]


@pytest.mark.parametrize(("mx", "mean", "status"), [
    (0, 0.0, "agree"), (MAX_TOL, MEAN_TOL, "agree"), (MAX_TOL + 1, 0.1, "disagree"), (3, MEAN_TOL + 0.01, "disagree"),
])
def test_decide_tolerance(mx, mean, status):
    figs = [LevelFigures(0, 0, 0.0, 4, 128), LevelFigures(1, mx, mean, 4, 128)]
    assert decide(figs, faster="tiffslide") == (status, "tiffslide" if status == "agree" else "openslide")


def test_one_reader_is_checked_against_nothing_forced_and_off_read_nothing(shared_data, synth_dir):
    ome = check_readers(shared_data / "patches/openslide-crops/OS-1-detail.ome.tif")
    assert (ome.status, ome.reader, ome.levels) == ("single", "tiffslide", [])
    assert "checked against nothing" in ome.message and ome.opens["openslide"] != "ok"
    dcm = check_readers(shared_data / "wsi/dicom-CMU-1-Small-Region")
    assert (dcm.status, dcm.reader) == ("single", "openslide")
    slide = synth_dir / "slide_000.tif"
    assert (check_readers(slide, backend="openslide").status, check_readers(slide, mode="off").status) == ("forced", "off")


def test_extract_reads_a_disagreeing_slide_with_openslide_and_records_it(ycbcr_dir, tmp_path):
    r = CliRunner().invoke(main, ["extract", "--slides", str(ycbcr_dir), "--coords", str(ycbcr_dir / "coords.csv"),
                                  "--out", str(tmp_path / "on.zarr"), "--size", "256", "--workers", "0", "--quiet",
                                  "--min-tissue", "0"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "Warning: slide slide_000.svs: openslide and tiffslide disagree" in r.output
    s = open_store(tmp_path / "on.zarr")
    meta = s.attrs["slides"]["slide_000.svs"]
    assert meta["reader"] == "openslide" and meta["reader_check"]["status"] == "disagree"
    # provenance names the reader that cut the patches, not the one auto opened first
    assert meta["mpp_source"] == "openslide.mpp-x"
    assert [lv["level"] for lv in meta["reader_check"]["levels"]] == [0, 1, 2]
    assert s.attrs["params"]["reader_check"] == "on"
    t = s.table
    i = int(t.index[t.status == "kept"][0])
    with open_slide(ycbcr_dir / "slide_000.svs", backend="openslide") as osr:
        x, y = int(t.x[i]), int(t.y[i])
        np.testing.assert_array_equal(s["40x"][i], osr.read_level(0, (x - 128, y - 128), (256, 256)))
    # --reader-check off: auto's tiffslide, the YCbCr planes as colours
    extract(ycbcr_dir, ycbcr_dir / "coords.csv", tmp_path / "off.zarr", size=256, workers=0, progress=False,
            min_tissue=0, rgb_tol=1, min_align_psnr=0, reader_check="off")
    off = open_store(tmp_path / "off.zarr")
    assert off.attrs["slides"]["slide_000.svs"]["reader"] == "tiffslide"
    assert np.abs(off["40x"][i].astype(int) - s["40x"][i]).mean() > 20


def test_sample_coords_records_the_check(ycbcr_dir):
    from mlcamsr.sampling import sample_coords

    df = sample_coords(ycbcr_dir, 2, size=256, min_tissue=0.3, overlays=False)
    summ = df.attrs["summary"]["slide_000.svs"]
    assert summ["reader"] == "openslide" and summ["reader_check"]["status"] == "disagree"
    assert len(df.attrs["warnings"]) == 1


def test_slides_inventory_lists_every_slide_and_exits_1_for_unusable(ycbcr_dir, synth_dir, shared_data, tmp_path):
    d = tmp_path / "inv"
    d.mkdir()
    (d / "j2k.svs").symlink_to(ycbcr_dir / "slide_000.svs")
    (d / "kather1.tif").symlink_to(shared_data / "patches/kather100k/kather1.tif")  # no mpp
    (d / "cut.tif").write_bytes((synth_dir / "slide_000.tif").read_bytes()[:4000])  # neither opens
    sheet = tmp_path / "sheet.png"
    r = CliRunner().invoke(main, ["slides", "--slides", str(d), "--json", "--sheet", str(sheet)],
                           catch_exceptions=False)
    assert r.exit_code == 1
    entries = {e["name"]: e for e in json.loads(r.stdout)}
    assert sorted(entries) == ["cut.tif", "j2k.svs", "kather1.tif"]
    j = entries["j2k.svs"]
    assert j["usable"] and j["vendor"] == "aperio" and j["compression"].startswith("APERIO_JP2000_YCBC")
    assert j["reader"] == "openslide" and j["reader_check"]["status"] == "disagree"
    assert j["mpp_source"] == "openslide.mpp-x"  # the chosen reader's, not tiffslide's
    assert [lv["exact_half"] for lv in j["levels"]] == [None, True, True]
    assert [(m["level"], m["kind"]) for m in j["members"]] == [(0, "native"), (1, "native"), (2, "native")]
    assert 0.3 < j["tissue_frac"] < 0.95
    k = entries["kather1.tif"]
    assert not k["usable"] and "no mpp" in k["reason"] and k["opens"]["tiffslide"] == "ok"
    assert k["reader_check"]["status"] == "single" and "checked against nothing" in k["reader_check"]["message"]
    cut = entries["cut.tif"]
    assert not cut["usable"] and cut["levels"] == [] and set(cut["opens"]) == {"openslide", "tiffslide"}
    assert "truncated" in cut["reason"] or "cannot open" in cut["reason"]
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_slides_on_a_truncated_tif_prints_only_our_reason(synth_dir, tmp_path):
    # a real process: under pytest the root logger has a handler, and tifffile's records
    # would never reach stderr the way they do for a user
    d = tmp_path / "cut"
    d.mkdir()
    data = (synth_dir / "slide_000.tif").read_bytes()
    (d / "half.tif").write_bytes(data[: len(data) * 3 // 4])  # level 0 whole, later pages cut off
    r = subprocess.run([sys.executable, "-c", "from cli.mlcamsr import main; main()", "slides", "--slides", str(d)],
                       capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 1, r.stderr
    assert "half.tif" in r.stdout and "NOT USABLE: slide" in r.stdout and "truncated" in r.stdout
    assert r.stderr == ""  # no tifffile log lines, no traceback


def test_levels_both_readers_decode_with_tifffile_are_flagged_not_informative(tmp_path):
    # CAMELYON-style odd levels: openslide would interpolate there, so our openslide backend
    # reads those TIFF pages with tifffile, as the tiffslide backend does
    (slide,) = synth_slides(tmp_path, n_slides=1, size=SIZE, odd_levels=True, n_coords=0, lesions=False)
    c = check_readers(slide)
    assert c.status == "agree" and [f.same_decoder for f in c.levels] == [False, True, True]
    assert c.uninformative == [1, 2] and "levels 1, 2: both readers decode with tifffile" in c.as_attrs()["note"]
    even = check_readers(synth_slides(tmp_path / "even", n_slides=1, size=SIZE, n_coords=0, lesions=False)[0])
    assert even.uninformative == [] and even.as_attrs()["note"] == ""


def test_a_sample_the_check_cannot_read_fails_that_slide_not_the_run(tmp_path):
    import tifffile

    d = tmp_path / "s"
    (bad,) = synth_slides(d / "bad", n_slides=1, size=SIZE, n_coords=0, lesions=False)
    (good,) = synth_slides(d / "good", n_slides=1, size=SIZE, n_coords=0, lesions=False)
    bad.rename(d / "bad.tif")
    good.rename(d / "good.tif")
    with tifffile.TiffFile(d / "bad.tif") as tf:  # zero the first level-0 tile: not a JPEG any more
        off, n = tf.pages[0].dataoffsets[0], tf.pages[0].databytecounts[0]
    data = bytearray((d / "bad.tif").read_bytes())
    data[off:off + n] = bytes(n)
    (d / "bad.tif").write_bytes(bytes(data))
    (d / "coords.csv").write_text("slide,x,y\nbad.tif,200,200\ngood.tif,512,384\n")
    r = extract(d, d / "coords.csv", tmp_path / "o.zarr", size=128, workers=0, progress=False, min_tissue=0,
                rgb_tol=1, min_align_psnr=0)
    assert r.exit_code == 1 and [f[:2] for f in r.failures] == [("bad.tif", 0)]
    assert "reader check could not read" in r.failures[0][2] and "--reader-check off" in r.failures[0][2]
    assert open_store(tmp_path / "o.zarr").table.status.tolist() == ["failed", "kept"]
