"""mlcamsr.slides on real files: synthetic pyramids and the real slides in ../shared/data."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile
import tiffslide

from mlcamsr.errors import InputError
from mlcamsr.slides import SlideRef, _tiff_resolution_mpp, open_slide, require_mpp
from mlcamsr.synth import synth_slides

BACKENDS = ["openslide", "tiffslide"]


@pytest.fixture(scope="session")
def odd_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2000x1500 slide with CAMELYON-style levels 1001x751 and 501x376."""
    out = tmp_path_factory.mktemp("odd")
    return synth_slides(out, n_slides=1, size=(2000, 1500), odd_levels=True, n_coords=0)[0]


# ------------------------------------------------------------------ synthetic slides
@pytest.mark.parametrize("backend", BACKENDS)
def test_synth_slide_levels_downsamples_mpp(synth_dir: Path, backend: str) -> None:
    with open_slide(synth_dir / "slide_000.tif", backend=backend) as r:
        assert r.backend == backend
        assert r.level_dimensions == ((4096, 3072), (2048, 1536), (1024, 768), (512, 384),
                                      (256, 192))
        assert r.level_downsamples == ((1, 1), (2, 2), (4, 4), (8, 8), (16, 16))
        assert r.mpp == pytest.approx((0.243, 0.243))
        assert r.mpp_source == f"{backend}.mpp-x"
        assert r.level_mpp(2) == pytest.approx((0.972, 0.972))


def test_backends_return_the_same_pixels(synth_dir: Path) -> None:
    path = synth_dir / "slide_001.tif"
    with open_slide(path, backend="openslide") as a, open_slide(path, backend="tiffslide") as b:
        for level in range(a.level_count):
            pa = a.read_region((1001, 777), level, (300, 200))
            pb = b.read_region((1001, 777), level, (300, 200))
            assert pa.shape == (200, 300, 3) and pa.dtype == np.uint8
            assert np.abs(pa.astype(int) - pb.astype(int)).mean() < 1.0  # JPEG decoders


def test_auto_prefers_tiffslide_for_tiff_pyramids(synth_dir: Path, shared_data: Path) -> None:
    with open_slide(synth_dir / "slide_000.tif") as r:
        assert r.backend == "tiffslide" and r.mpp == pytest.approx((0.243, 0.243))
    with open_slide(shared_data / "wsi" / "dicom-CMU-1-Small-Region") as r:
        assert r.backend == "openslide"


@pytest.mark.parametrize("backend", BACKENDS)
def test_odd_levels_are_all_present_with_downsamples_from_dimensions(
        odd_slide: Path, backend: str) -> None:
    with open_slide(odd_slide, backend=backend) as r:
        assert r.level_dimensions == ((2000, 1500), (1001, 751), (501, 376))
        assert r.level_downsamples[1] == (2000 / 1001, 1500 / 751)
        assert r.level_downsamples[2] == (2000 / 501, 1500 / 376)


def test_tiffslide_alone_drops_the_odd_levels_we_keep(odd_slide: Path) -> None:
    """Documents the tiffslide 3.0.1 bug the slide layer works around."""
    with tiffslide.TiffSlide(odd_slide) as ts:
        raw = ts.level_dimensions
    with open_slide(odd_slide, backend="tiffslide") as r:
        assert len(r.level_dimensions) == 3 >= len(raw)
        dropped = [d for d in r.level_dimensions if d not in raw]
        assert all(r.level_sources[r.level_dimensions.index(d)] in ("tiff-page", "tiff-tiles") for d in dropped)


@pytest.mark.parametrize("backend", BACKENDS)
def test_odd_level_reads_are_the_stored_pixels(odd_slide: Path, backend: str) -> None:
    """No sub-pixel interpolation: what comes back is the TIFF page's pixels."""
    for level in (1, 2):
        page = tifffile.imread(odd_slide, key=level)
        with open_slide(odd_slide, backend=backend) as r:
            got = r.read_level(level, (37, 21), (128, 96))
        assert np.abs(got.astype(int) - page[21:117, 37:165].astype(int)).mean() < 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_region_partly_outside_is_white(synth_dir: Path, backend: str) -> None:
    with open_slide(synth_dir / "slide_000.tif", backend=backend) as r:
        w, h = r.level_dimensions[1]
        out = r.read_region((-200, -100), 1, (300, 200))  # level 1: 100 x 50 px outside
        assert out.shape == (200, 300, 3)
        assert (out[:50] == 255).all() and (out[:, :100] == 255).all()
        inside = r.read_region((0, 0), 1, (200, 150))
        assert np.array_equal(out[50:, 100:], inside)
        corner = r.read_region((2 * w - 20, 2 * h - 20), 1, (64, 64))
        assert (corner[10:] == 255).all() and (corner[:, 10:] == 255).all()
        assert (r.read_region((10**6, 10**6), 0, (8, 8)) == 255).all()


def test_read_region_rounds_to_the_nearest_level_pixel(synth_dir: Path) -> None:
    with open_slide(synth_dir / "slide_000.tif", backend="tiffslide") as r:
        assert np.array_equal(r.read_region((401, 203), 1, (16, 16)),
                              r.read_level(1, (201, 102), (16, 16)))


def test_readers_do_not_pickle_but_refs_do(synth_dir: Path) -> None:
    with open_slide(synth_dir / "slide_000.tif", backend="tiffslide", mpp=0.5) as r:
        with pytest.raises(TypeError, match="SlideRef"):
            pickle.dumps(r)
        ref = pickle.loads(pickle.dumps(r.ref))
        assert ref == SlideRef(r.path, "tiffslide", 0.5)
        with ref.open() as r2:
            assert r2.level_dimensions == r.level_dimensions
            assert r2.mpp_source == "tiffslide.mpp-x"  # metadata wins over the override


# ------------------------------------------------------------------ real slides
@pytest.mark.parametrize("backend", BACKENDS)
def test_cmu1_svs_one_level_mpp_0499(shared_data: Path, backend: str) -> None:
    with open_slide(shared_data / "wsi/CMU-1-Small-Region.svs", backend=backend) as r:
        assert r.level_dimensions == ((2220, 2967),)
        assert r.mpp == pytest.approx((0.499, 0.499))
        assert r.vendor == "aperio"


def test_cmu1_pixels_agree_between_backends(shared_data: Path) -> None:
    path = shared_data / "wsi/CMU-1-Small-Region.svs"
    with open_slide(path, backend="openslide") as a, open_slide(path, backend="tiffslide") as b:
        pa, pb = a.read_region((900, 1200), 0, (256, 256)), b.read_region((900, 1200), 0, (256, 256))
    assert np.abs(pa.astype(int) - pb.astype(int)).mean() < 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_tcga_jpeg2000_two_levels_no_mpp_until_overridden(shared_data: Path, backend: str) -> None:
    path = shared_data / "wsi/TCGA-CR-7395-01A-01-TS1.svs"
    with open_slide(path, backend=backend) as r:
        assert r.level_dimensions == ((4443, 3567), (2221, 1783))
        assert r.level_downsamples[1] == (4443 / 2221, 3567 / 1783)
        assert r.mpp is None and r.mpp_source == "none"
        with pytest.raises(InputError, match="TCGA-CR-7395.*mpp"):
            require_mpp(r)
        px = r.read_region((2000, 1500), 1, (64, 64))
        assert px.shape == (64, 64, 3) and px.std() > 5  # real decoded tissue
    with open_slide(path, backend=backend, mpp=1.0) as r:
        assert require_mpp(r) == (1.0, 1.0) and r.mpp_source == "override"


def test_tcga_level1_pixels_agree_between_backends(shared_data: Path) -> None:
    path = shared_data / "wsi/TCGA-CR-7395-01A-01-TS1.svs"
    with open_slide(path, backend="openslide") as a, open_slide(path, backend="tiffslide") as b:
        pa, pb = a.read_level(1, (1000, 700), (128, 128)), b.read_level(1, (1000, 700), (128, 128))
    assert np.abs(pa.astype(int) - pb.astype(int)).mean() < 2.0


def test_dicom_folder_geometry_and_mpp_via_openslide(shared_data: Path) -> None:
    folder = shared_data / "wsi/dicom-CMU-1-Small-Region"
    with open_slide(folder) as r:
        assert r.backend == "openslide" and r.vendor == "dicom"
        assert r.level_count == 12
        assert r.level_dimensions[:3] == ((2220, 2967), (1110, 1483), (555, 741))
        assert r.level_downsamples[2] == (2220 / 555, 2967 / 741)
        assert r.mpp == pytest.approx((0.499, 0.499))
        assert r.read_region((0, 0), 11, (4, 4)).shape == (4, 4, 3)
    with pytest.raises(InputError, match="tiffslide"):
        open_slide(folder, backend="tiffslide")


def test_ome_tiff_opens_with_tiffslide_only(shared_data: Path) -> None:
    path = shared_data / "patches/openslide-crops/OS-1-detail.ome.tif"
    with open_slide(path) as r:
        assert r.backend == "tiffslide"
        assert r.level_dimensions == ((1101, 1101),)
        assert r.mpp == pytest.approx((0.2271, 0.2271), abs=1e-4)
    with pytest.raises(InputError, match="OS-1-detail"):
        open_slide(path, backend="openslide")


def test_kather_72_dpi_resolution_is_not_an_mpp(shared_data: Path) -> None:
    path = shared_data / "patches/kather100k/kather1.tif"
    with open_slide(path) as r:
        assert r.backend == "tiffslide"
        assert float(r.properties["tiffslide.mpp-x"]) > 100  # what tiffslide reports
        assert r.mpp is None
    with open_slide(path, mpp=0.5) as r:
        assert r.mpp == (0.5, 0.5) and r.mpp_source == "override"


def test_resolution_tags_inch_and_centimetre(tmp_path: Path) -> None:
    img = np.zeros((16, 16, 3), np.uint8)
    cases = {"cm": ((1e4 / 0.25, 1e4 / 0.25), "CENTIMETER", (0.25, 0.25)),
             "inch": ((25400 / 0.5, 25400 / 0.5), "INCH", (0.5, 0.5)),
             "dpi72": ((72, 72), "INCH", None),
             "none": ((4, 4), "NONE", None)}
    for name, (res, unit, want) in cases.items():
        tifffile.imwrite(tmp_path / f"{name}.tif", img, resolution=res, resolutionunit=unit)
        with tifffile.TiffFile(tmp_path / f"{name}.tif") as tf:
            got = _tiff_resolution_mpp(tf.pages[0])
        assert got == (pytest.approx(want) if want else None), name


# ------------------------------------------------------------------ user mistakes
def test_user_mistakes_are_one_line_input_errors(tmp_path: Path, synth_dir: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_slide(tmp_path / "nope.tif")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        open_slide(tmp_path / "empty.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a slide at all" * 10)
    with pytest.raises(InputError, match="cannot open slide .*junk.tif"):
        open_slide(tmp_path / "junk.tif")
    with pytest.raises(InputError, match="--backend"):
        open_slide(synth_dir / "slide_000.tif", backend="pillow")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="mpp"):
        open_slide(synth_dir / "slide_000.tif", mpp=-1)
    data = (synth_dir / "slide_000.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    for backend in ("auto", *BACKENDS):
        with pytest.raises(InputError, match="cut.tif"):
            open_slide(tmp_path / "cut.tif", backend=backend)  # type: ignore[arg-type]
    with open_slide(synth_dir / "slide_000.tif") as r, pytest.raises(InputError, match="level 9"):
        r.read_level(9, (0, 0), (4, 4))


def test_tile_reads_equal_the_tiff_pages(shared_data: Path, synth_dir: Path) -> None:
    """The tiffslide backend reads tiled 8-bit pages tile by tile (pread + tifffile's own
    decoder, no zarr): random windows equal tifffile's zarr reads of the pages (JPEG,
    JPEG 2000, big-endian OME, synthetic), edge tiles included."""
    import zarr

    from mlcamsr.slides import _tiff_pyramid_pages

    rng = np.random.default_rng(0)
    files = [shared_data / "wsi" / "CMU-1-Small-Region.svs", shared_data / "wsi" / "TCGA-CR-7395-01A-01-TS1.svs",
             shared_data / "patches" / "openslide-crops" / "OS-1-detail.ome.tif", synth_dir / "slide_000.tif"]
    for f in files:
        with open_slide(f, backend="tiffslide") as r, tifffile.TiffFile(f) as tf:
            assert "tiff-tiles" in r.level_sources, (f, r.level_sources)
            pages = {(p.shape[1], p.shape[0]): p for p in _tiff_pyramid_pages(tf)}
            for k, (w, h) in enumerate(r.level_dimensions):
                full = zarr.open_array(pages[(w, h)].aszarr(), mode="r")
                for ww, hh in ((min(w, 700), min(h, 700)), *rng.integers(1, 600, (3, 2))):
                    ww, hh = min(int(ww), w), min(int(hh), h)
                    x, y = int(rng.integers(0, w - ww + 1)), int(rng.integers(0, h - hh + 1))
                    np.testing.assert_array_equal(r.read_level(k, (x, y), (ww, hh)), full[y:y + hh, x:x + ww, :3])
                # partly outside: white beyond the level, the stored pixels inside
                a = r.read_level(k, (w - 5, h - 7), (20, 20))
                np.testing.assert_array_equal(a[:7, :5], full[h - 7:, w - 5:, :3])
                assert (a[7:] == 255).all() and (a[:, 5:] == 255).all()
