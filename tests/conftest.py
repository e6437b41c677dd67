"""Session fixtures: small real inputs built once (STYLE.md, "Tests").

Real data lives in ../shared/data (never copied into the project); synthetic slides
come from ``mlcamsr.synth``; stores are written by the real extractor.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real slides and patches, see its SOURCES.md)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small CAMELYON-like slides (0.243 um/px, levels by 2) with coords.csv and lesion XML."""
    from mlcamsr.synth import synth_slides

    out = tmp_path_factory.mktemp("synth")
    synth_slides(out, n_slides=2, size=(4096, 3072), seed=0, n_coords=12)
    return out


@pytest.fixture(scope="session")
def small_store(synth_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store extracted from ``synth_dir`` at 256 px (40x 256, 20x 128, 10x 64), serial."""
    from mlcamsr.extract import extract

    out = tmp_path_factory.mktemp("store") / "small.zarr"
    extract(
        synth_dir,
        synth_dir / "coords.csv",
        out,
        size=256,
        workers=0,
        progress=False,
    )
    return out


# real services on 127.0.0.1 for the scale-out tests: moto's S3 server, a dask cluster
from tests.remote_fixtures import dask_cluster, s3_endpoint  # noqa: E402,F401
