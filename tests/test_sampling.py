"""Tissue masks and ``sample-coords`` (mlcamsr.sampling, cli.sample_coords)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.mlcamsr import main
from mlcamsr.annotations import find_annotation, load_annotations
from mlcamsr.errors import InputError
from mlcamsr.sampling import (
    box_fraction,
    coords_table,
    discover_slides,
    draw_centres,
    integral_image,
    overlay_name,
    plan_slides,
    sample_coords,
    tissue_mask,
)

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
SIZE = 256  # 40x square of the small test store: 256 level-0 px at 0.243 um/px


@pytest.fixture(scope="module")
def sampled(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    out = tmp_path_factory.mktemp("sampled") / "coords.csv"
    df = sample_coords(synth_dir, 16, out, annotations_dir=synth_dir, size=SIZE, seed=0)
    return df, out


# ----------------------------------------------------------------- pieces


def test_box_fraction_is_exact_area_fraction() -> None:
    rng = np.random.default_rng(1)
    mask = rng.random((20, 30)) > 0.5
    s = integral_image(mask)
    # fine supersampling as the reference
    up = np.kron(mask, np.ones((10, 10)))
    for _ in range(50):
        x0, y0 = rng.uniform(-3, 25), rng.uniform(-3, 15)
        w, h = rng.uniform(0.5, 8), rng.uniform(0.5, 8)
        # snap the box to the 1/10 grid so the reference is exact
        bx0, bx1 = round(x0 * 10) / 10, round((x0 + w) * 10) / 10
        by0, by1 = round(y0 * 10) / 10, round((y0 + h) * 10) / 10
        xs = (np.clip([bx0, bx1], 0, 30) * 10).round().astype(int)
        ys = (np.clip([by0, by1], 0, 20) * 10).round().astype(int)
        ref = up[ys[0] : ys[1], xs[0] : xs[1]].sum() / 100 / ((bx1 - bx0) * (by1 - by0))
        got = box_fraction(s, np.array([bx0]), np.array([by0]), np.array([bx1]), np.array([by1]))[0]
        assert got == pytest.approx(ref, abs=1e-9)


def test_tissue_mask_drops_background_black_and_pen() -> None:
    img = np.full((200, 200, 3), 240, np.uint8)  # glass
    yy, xx = np.mgrid[:200, :200]
    img[(yy - 100) ** 2 + (xx - 70) ** 2 < 50**2] = (200, 110, 170)  # H&E pink disc
    img[10:30, 150:190] = (10, 10, 10)  # black border / dust
    img[150:190, 150:190] = (40, 160, 60)  # green ink
    img[5:8, 5:8] = (200, 110, 170)  # a speck (9 px at 8 um/px: removed)
    mask, thr, method = tissue_mask(img, mpp=8.0)
    assert 0.04 <= thr <= 0.25 and method == "saturation"
    assert mask[100, 70] and mask[100, 30]
    assert not mask[20, 170] and not mask[170, 170] and not mask[6, 6] and not mask[190, 10]


def test_false_colour_falls_back_to_background_distance() -> None:
    # a DICOM WSI read with the wrong photometric interpretation: salmon glass, grey-teal tissue
    img = np.full((120, 120, 3), (240, 150, 150), np.uint8)  # saturation 0.38
    img[30:90, 30:90] = (110, 130, 135)  # saturation 0.19, darker
    mask, _, method = tissue_mask(img)
    assert method == "background-distance"
    assert mask[30:90, 30:90].all() and mask.sum() == 60 * 60


def test_discover_and_overlay_names(synth_dir: Path) -> None:
    assert discover_slides(synth_dir) == ["slide_000.tif", "slide_001.tif"]
    wsi = REPO.parent / "shared" / "data" / "wsi"
    if wsi.is_dir():
        assert discover_slides(wsi)[-1] == "dicom-CMU-1-Small-Region"
    assert discover_slides(synth_dir, ["*001.tif"]) == ["slide_001.tif"]
    assert overlay_name("slide_000.tif") == "slide_000_overlay.png"
    assert overlay_name("center_0/p_004.tif") == "center_0__p_004_overlay.png"


# ----------------------------------------------------------------- synthetic slides


def test_every_square_lies_in_tissue(sampled: tuple[pd.DataFrame, Path], synth_dir: Path) -> None:
    from skimage.color import rgb2hsv

    from mlcamsr.slides import open_slide

    df, _ = sampled
    assert len(df) == 16
    for slide, group in df.groupby("slide"):
        assert df.attrs["summary"][slide]["mask_method"] == "saturation"
        thr = df.attrs["summary"][slide]["mask_threshold"]
        with open_slide(synth_dir / slide) as r:
            W, H = r.level_dimensions[0]
            for x, y in zip(group["x"], group["y"]):
                x0, y0 = x - SIZE // 2, y - SIZE // 2
                assert 0 <= x0 and 0 <= y0 and x0 + SIZE <= W and y0 + SIZE <= H
                # read the square at level 2 (x4): an independent look at the pixels
                patch = r.read_region((x0, y0), 2, (SIZE // 4, SIZE // 4))
                sat = rgb2hsv(patch)[..., 1]
                assert (sat > thr).mean() >= 0.75, (slide, x, y)


def test_spacing_is_respected(synth_dir: Path, tmp_path: Path) -> None:
    spacing = 400
    df = sample_coords(synth_dir, 30, None, size=SIZE, spacing=spacing, seed=3)
    assert len(df) == 30
    for _, g in df.groupby("slide"):
        xy = g[["x", "y"]].to_numpy()
        d = np.abs(xy[:, None, :] - xy[None, :, :]).max(axis=2)
        np.fill_diagonal(d, spacing)
        assert d.min() >= spacing


def test_deterministic_per_seed(synth_dir: Path, sampled: tuple[pd.DataFrame, Path]) -> None:
    df, _ = sampled
    again = sample_coords(synth_dir, 16, None, annotations_dir=synth_dir, size=SIZE, seed=0)
    pd.testing.assert_frame_equal(df, again)
    other = sample_coords(synth_dir, 16, None, annotations_dir=synth_dir, size=SIZE, seed=1)
    assert not df[["x", "y"]].equals(other[["x", "y"]])


def test_balanced_labels_match_annotations(
    sampled: tuple[pd.DataFrame, Path], synth_dir: Path
) -> None:
    df, _ = sampled
    assert df["label"].value_counts().to_dict() == {"tumor": 8, "normal": 8}
    assert df.groupby("slide").size().to_dict() == {"slide_000.tif": 8, "slide_001.tif": 8}
    for slide, g in df.groupby("slide"):
        ann = load_annotations(find_annotation(synth_dir, slide))
        for x, y, lab in zip(g["x"], g["y"], g["label"]):
            got, frac = ann.label(x, y, SIZE / 2)
            assert got == lab
            assert frac >= 0.5 if lab == "tumor" else frac == 0.0


def test_output_is_a_valid_coords_file(sampled: tuple[pd.DataFrame, Path]) -> None:
    from mlcamsr.coords import read_coords

    df, out = sampled
    assert list(pd.read_csv(out).columns) == ["slide", "x", "y", "label"]
    back = read_coords(out)
    assert back[["slide", "x", "y", "label"]].equals(df[["slide", "x", "y", "label"]])


def test_overlay_png_per_slide(sampled: tuple[pd.DataFrame, Path]) -> None:
    df, out = sampled
    pngs = sorted((out.parent / "coords_overlays").glob("*.png"))
    assert [p.name for p in pngs] == ["slide_000_overlay.png", "slide_001_overlay.png"]
    with Image.open(pngs[0]) as im:
        assert im.mode == "RGB" and min(im.size) > 100
        px = np.asarray(im)
    # orange tumour boxes and blue normal boxes are drawn
    assert ((px == (255, 140, 0)).all(axis=2)).any()
    assert ((px == (20, 90, 230)).all(axis=2)).any()


def test_short_class_is_filled_by_the_other(synth_dir: Path) -> None:
    df = sample_coords(
        synth_dir, 60, None, annotations_dir=synth_dir, size=SIZE, spacing=SIZE, seed=0
    )
    counts = df["label"].value_counts().to_dict()
    # the lesions hold fewer than 30 non-overlapping squares; normal tissue fills in
    assert counts["tumor"] < 30 < counts["normal"]
    assert len(df) == 60 and df.attrs["classes"] == counts


# ----------------------------------------------------------------- real slides


def test_real_cmu1_svs_20x(shared_data: Path, tmp_path: Path) -> None:
    wsi = shared_data / "wsi"
    df = sample_coords(
        wsi, 4, tmp_path / "c.csv", include=["CMU-1-Small-Region.svs"], size=512, base_mpp=0.499
    )
    assert len(df) == 4 and set(df["slide"]) == {"CMU-1-Small-Region.svs"}
    s = df.attrs["summary"]["CMU-1-Small-Region.svs"]
    assert s["square_level0_px"] == [512.0, 512.0]
    assert 7 < s["mask_mpp"] < 9 and 0.2 < s["tissue_frac"] < 0.5
    assert ((df["x"] - 256 >= 0) & (df["x"] + 256 <= 2220)).all()
    assert ((df["y"] - 256 >= 0) & (df["y"] + 256 <= 2967)).all()
    assert (tmp_path / "c_overlays" / "CMU-1-Small-Region_overlay.png").is_file()
    # the shipped example manifest is exactly what the README command produces
    example = pd.read_csv(MANIFESTS / "example_coords.csv")
    pd.testing.assert_frame_equal(example[["slide", "x", "y"]], df[["slide", "x", "y"]])


def test_slide_without_mpp_fails_alone_and_mpp_override_works(
    shared_data: Path, tmp_path: Path
) -> None:
    wsi = shared_data / "wsi"
    df = sample_coords(wsi, 8, None, size=512, base_mpp=0.499)
    # the DICOM folder is one slide; its false colours (SOURCES.md) need the fallback mask
    assert set(df["slide"]) == {"CMU-1-Small-Region.svs", "dicom-CMU-1-Small-Region"}
    summary = df.attrs["summary"]
    assert summary["CMU-1-Small-Region.svs"]["mask_method"] == "saturation"
    assert summary["dicom-CMU-1-Small-Region"]["mask_method"] == "background-distance"
    # same tissue, same geometry: the two masks agree on most of the slide
    assert abs(summary["dicom-CMU-1-Small-Region"]["tissue_frac"] - 0.32) < 0.08
    (reason,) = df.attrs["failed"].values()
    assert "TCGA-CR-7395-01A-01-TS1.svs" in reason and "--mpp" in reason
    df = sample_coords(wsi, 6, None, include=["TCGA*.svs"], size=256, mpp=1.0)
    assert len(df) == 6 and (df["mpp"] == 1.0).all()


# ----------------------------------------------------------------- schema


def _validate(csv: Path, schema: dict) -> None:
    """A small Frictionless Table Schema check: required columns, types, constraints, key."""
    from mlcamsr.coords import check_slide_name

    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    fields = {f["name"]: f for f in schema["fields"]}
    for name, f in fields.items():
        if f["constraints"].get("required"):
            assert name in df.columns, name
            assert (df[name] != "").all(), name
        if name in df.columns and f["type"] == "number":
            vals = pd.to_numeric(df[name].replace("", np.nan))
            assert np.isfinite(vals.dropna()).all()
            if "minimum" in f["constraints"]:
                assert (vals.dropna() > f["constraints"]["minimum"]).all()
    for i, name in enumerate(df["slide"]):
        check_slide_name(name, f"{csv} row {i}")
    assert not df.duplicated(subset=schema["primaryKey"]).any()


def test_example_manifest_follows_schema(shared_data: Path) -> None:
    from mlcamsr.coords import read_coords, resolve_slides

    schema = json.loads((MANIFESTS / "coords_schema.json").read_text())
    assert schema["version"] == "1.0.0"
    assert [f["name"] for f in schema["fields"]][:3] == ["slide", "x", "y"]
    _validate(MANIFESTS / "example_coords.csv", schema)
    df = read_coords(MANIFESTS / "example_coords.csv")
    assert "source" in df.columns  # extra columns are kept
    paths = resolve_slides(df, shared_data / "wsi")
    assert paths["CMU-1-Small-Region.svs"].name == "CMU-1-Small-Region.svs"


# ----------------------------------------------------------------- errors and CLI


def test_bad_inputs_are_input_errors(tmp_path: Path, synth_dir: Path) -> None:
    with pytest.raises(InputError, match="no slide files found"):
        sample_coords(tmp_path, 4, None)
    with pytest.raises(InputError, match="not a folder"):
        sample_coords(tmp_path / "missing", 4, None)
    bad = tmp_path / "ann"
    bad.mkdir()
    (bad / "slide_000.xml").write_text("<ASAP_Annotations><oops>")
    with pytest.raises(InputError, match="slide_000.xml"):
        sample_coords(synth_dir, 4, None, annotations_dir=bad, size=SIZE)


def test_cli_sample_coords(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    args = ["sample-coords", "--slides", str(synth_dir), "--annotations", str(synth_dir)]
    args += ["--n", "8", "--out", str(out), "--size", str(SIZE), "--no-progress"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "Wrote 8 centres from 2 slide(s)" in r.output and "tumor 4, normal 4" in r.output
    assert len(pd.read_csv(out)) == 8
    assert (tmp_path / "c_overlays" / "slide_001_overlay.png").is_file()


def test_cli_partial_failure_and_usage_errors(shared_data: Path, tmp_path: Path) -> None:
    wsi = str(shared_data / "wsi")
    r = CliRunner().invoke(
        main,
        ["sample-coords", "--slides", wsi, "--n", "2", "--out", str(tmp_path / "c.csv"),
         "--size", "512", "--base-mpp", "0.499", "--no-overlay", "--no-progress"],
    )
    assert r.exit_code == 1
    assert "Failed:" in r.output and "TCGA-CR-7395" in r.output
    assert not (tmp_path / "c_overlays").exists()
    r = CliRunner().invoke(main, ["sample-coords", "--slides", str(tmp_path), "--n", "2",
                                  "--out", str(tmp_path / "d.csv")])
    assert r.exit_code == 2 and "Error:" in r.output and "no slide files" in r.output
    r = CliRunner().invoke(main, ["sample-coords", "--slides", str(tmp_path / "nope"), "--n", "2"])
    assert r.exit_code == 2


def test_cli_help() -> None:
    r = CliRunner().invoke(main, ["sample-coords", "--help"])
    assert r.exit_code == 0
    for opt in ("--slides", "--annotations", "--n", "--out", "--min-tissue", "--seed",
                "--size", "--base-mpp", "--spacing", "--overlay-dir"):
        assert opt in r.output
    assert "default: 0.9" in r.output and "coords.csv" in r.output


def test_cli_names_tumor_min_frac_when_tumour_runs_short(synth_dir: Path, tmp_path: Path) -> None:
    """Synthetic lesions are smaller than a 1024-px square: no square reaches the default
    --tumor-min-frac 0.5, and the warning must say which option helps."""
    out = tmp_path / "c.csv"
    args = ["sample-coords", "--slides", str(synth_dir), "--annotations", str(synth_dir)]
    args += ["--n", "40", "--out", str(out), "--no-progress", "--no-overlay"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "tumor 0" in r.output and "--tumor-min-frac 0.5" in r.output


def test_help_names_the_schema_file_that_exists() -> None:
    r = CliRunner().invoke(main, ["sample-coords", "--help"])
    named = [w.strip("().,") for w in r.output.split() if w.startswith("manifests/")]
    assert named and all((Path(__file__).resolve().parents[1] / w).is_file() for w in named), named


def test_centres_are_on_the_grid_so_coarser_members_read_natively(synth_dir: Path, tmp_path: Path) -> None:
    df = sample_coords(synth_dir, 6, None, overlays=False)
    assert len(df) and (df["x"] % 4 == 0).all() and (df["y"] % 4 == 0).all()
    off = sample_coords(synth_dir, 6, None, overlays=False, grid=1)
    assert not ((off["x"] % 4 == 0).all() and (off["y"] % 4 == 0).all())


def test_stages_compose_to_sample_coords(synth_dir: Path, tmp_path: Path) -> None:
    """plan_slides -> draw_centres -> coords_table, run alone, give sample_coords' centres;
    an unreadable slide is reported by plan_slides and the others go on."""
    for f in synth_dir.glob("slide_*.tif"):
        (tmp_path / f.name).symlink_to(f)
    (tmp_path / "broken.tif").write_bytes(b"not a slide")
    names = discover_slides(tmp_path)
    square_um = SIZE * 0.243
    plans, failed = plan_slides(
        tmp_path, names, annotations_dir=None, square_um=square_um, mask_mpp=min(8.0, square_um / 16),
        mpp=None, spacing=None, min_tissue=0.9, tumor_min_frac=0.5, grid=4, seed=3, backend="auto",
    )
    assert list(failed) == ["broken.tif"] and [p.name for p in plans] == ["slide_000.tif", "slide_001.tif"]
    assert all(p.available["any"] > 0 and not p.accepted for p in plans)
    assert draw_centres(plans, 6, ["any"]) == {"any": 6}
    assert [len(p.accepted) for p in plans] == [3, 3]  # slides take turns
    staged = coords_table(plans, with_classes=False)
    whole = sample_coords(tmp_path, 6, size=SIZE, seed=3)
    pd.testing.assert_frame_equal(staged, whole)
    assert whole.attrs["failed"].keys() == {"broken.tif"}
