"""QC figures on real patches: tissue fraction, PSNR, alignment of a shifted downsample."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from mlcamsr.qc import (
    QCThresholds,
    align_psnr,
    check_patch,
    psnr,
    rgb_sum,
    stain_fraction,
    tissue_fraction,
)
from mlcamsr.resize import imresize


@pytest.fixture(scope="module")
def tissue(shared_data):
    img = np.asarray(Image.open(shared_data / "patches/tiatoolbox/TCGA-HE-7130-01Z-00-DX1.png"))
    return np.ascontiguousarray(img[:512, :512, :3])


def test_tissue_fraction_blank_and_tissue(tissue):
    glass = np.full((64, 64, 3), 240, np.uint8)
    assert tissue_fraction(glass) == 0.0
    assert tissue_fraction(tissue) > 0.8
    half = tissue[:64, :64].copy()
    half[:, :32] = 240
    assert 0.4 < tissue_fraction(half) < 0.6


@pytest.mark.parametrize("shape", [(256, 256, 3), (1, 1, 3), (7, 5, 3), (1024, 1024, 3)])
def test_rgb_sum_gives_the_same_mean_as_numpy(shape):
    """QC's RGB mean is recorded in the table: the fast sum must equal numpy's mean bit for bit."""
    rng = np.random.default_rng(sum(shape))
    for img in (rng.integers(0, 256, shape, dtype=np.uint8), np.full(shape, 255, np.uint8)):
        n = shape[0] * shape[1]
        ref = img.reshape(-1, 3).mean(axis=0, dtype=np.float64) / 255.0
        assert np.array_equal(rgb_sum(img) / n / 255.0, ref)


def test_psnr_identical_and_known():
    a = np.zeros((8, 8, 3), np.uint8)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255), abs=1e-6)


def test_alignment_high_when_aligned_low_when_shifted(tissue):
    half = imresize(tissue, scale=0.5)
    assert align_psnr(tissue, half) > 45  # the same operation up to rounding
    shifted = np.roll(half, 2, axis=1)
    assert align_psnr(tissue, shifted) < 25


def test_check_patch_reasons(tissue):
    images = {"40x": tissue, "20x": imresize(tissue, scale=0.5), "10x": imresize(tissue, scale=0.25)}
    th = QCThresholds(rgb_tol=1.0)
    res = check_patch(images, ["40x", "20x", "10x"], th)
    assert res.ok and set(res.align_psnr) == {"20x", "10x"}
    bad = dict(images, **{"20x": np.roll(images["20x"], 3, axis=0)})
    assert check_patch(bad, ["40x", "20x", "10x"], th).reason.startswith("alignment 20x")
    glass = {k: np.full_like(v, 242) for k, v in images.items()}
    assert check_patch(glass, ["40x", "20x", "10x"], th).reason.startswith("tissue 0.00")
    strict = QCThresholds(rgb_mean=(0.0, 0.0, 0.0), rgb_tol=0.1)
    assert check_patch(images, ["40x", "20x", "10x"], strict).reason.startswith("rgb mean")


# ----------------------------------------------------------------------------- H&E stain check

SHARED = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"
NOT_HE = {"ihc/skimage_ihc.png"}  # DAB + haematoxylin (IHC), not H&E
PATCH_FILES = sorted(str(p.relative_to(SHARED / "patches")) for p in (SHARED / "patches").glob("*/*"))


def _image(path) -> np.ndarray:
    if str(path).endswith(".tif"):
        import tifffile

        return np.ascontiguousarray(tifffile.imread(path)[..., :3])
    return np.asarray(Image.open(path).convert("RGB"))


def _triplet(img: np.ndarray) -> dict[str, np.ndarray]:
    side = min(img.shape[:2]) // 4 * 4
    fin = np.ascontiguousarray(img[:side, :side])
    return {"40x": fin, "20x": imresize(fin, scale=0.5), "10x": imresize(fin, scale=0.25)}


@pytest.mark.parametrize("rel", PATCH_FILES)
def test_every_real_he_image_passes_the_stain_check_and_ihc_does_not(rel):
    res = check_patch(_triplet(_image(SHARED / "patches" / rel)), ["40x", "20x", "10x"], QCThresholds())
    if rel in NOT_HE:
        assert res.reason.startswith("stain") and res.stain_frac < 0.2, (rel, res)
    else:
        assert not res.reason.startswith("stain") and res.stain_frac > 0.8, (rel, res)


@pytest.mark.parametrize("slide", ["CMU-1-Small-Region.svs", "TCGA-CR-7395-01A-01-TS1.svs"])
def test_every_tissue_tile_of_the_real_he_slides_passes_the_stain_check(slide):
    from mlcamsr.slides import open_slide

    th = QCThresholds()
    figs = []
    with open_slide(SHARED / "wsi" / slide, mpp=1.0) as s:
        w, h = s.level_dimensions[0]
        for y in range(0, h - 512 + 1, 512):
            for x in range(0, w - 512 + 1, 512):
                tile = s.read_region((x, y), 0, (512, 512))
                if tissue_fraction(tile) >= th.min_tissue:
                    figs.append(stain_fraction(tile))
    assert len(figs) >= 5 and min(figs) > 0.8, figs


def test_the_dicom_false_colours_are_rejected_for_their_stain(shared_data, tmp_path):
    """The DICOM CMU-1 read by openslide (YCbCr shown as RGB: salmon glass, teal tissue)
    passed tissue and RGB-mean QC for 2 of 3 patches; the stain check rejects all."""
    from mlcamsr.extract import extract
    from mlcamsr.store import open_store

    c = tmp_path / "c.csv"
    c.write_text("slide,x,y\n" + "".join(f"dicom-CMU-1-Small-Region,{x},{y}\n"
                                         for x, y in [(1110, 1480), (1200, 800), (1100, 2300)]))
    kw = dict(size=256, base_mpp=0.499, base_mag=20, workers=0, progress=False, backend="openslide")
    t = open_store(extract(shared_data / "wsi", c, tmp_path / "d.zarr", **kw).store).table
    assert list(t.status) == ["rejected"] * 3 and all(t.reason.str.startswith("stain")), t.reason.tolist()
    assert (t.stain_frac < 0.35).all()
    # --min-stain 0 switches the check off: what QC did before (it kept some of them)
    off = open_store(extract(shared_data / "wsi", c, tmp_path / "o.zarr", min_stain=0, **kw).store).table
    assert (off.status == "kept").sum() >= 1 and not off.reason.str.startswith("stain").any()


def test_synthetic_slides_pass_the_stain_check(synth_dir):
    from mlcamsr.slides import open_slide

    with open_slide(synth_dir / "slide_000.tif") as s:
        tile = s.read_region((1024, 1024), 1, (512, 512))
    assert tissue_fraction(tile) > 0.5 and stain_fraction(tile) > 0.95


def test_stain_fraction_of_pure_dyes_and_blank():
    od = {"haematoxylin": (0.650, 0.704, 0.286), "eosin": (0.072, 0.990, 0.105), "dab": (0.268, 0.570, 0.776)}

    def dye(v):
        return np.broadcast_to(np.round(255 * np.exp(-np.asarray(v))).astype(np.uint8), (8, 8, 3)).copy()

    assert stain_fraction(dye(od["haematoxylin"])) == 1.0 and stain_fraction(dye(od["eosin"])) == 1.0
    assert stain_fraction(dye(od["dab"])) == 0.0
    assert math.isnan(stain_fraction(np.full((8, 8, 3), 250, np.uint8)))  # nothing stained
