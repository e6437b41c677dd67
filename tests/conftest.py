"""Session fixtures: small real inputs built once (STYLE.md, "Tests").

Real data lives in ../shared/data (never copied into the project); synthetic slides
come from ``mlcamsr.synth``; stores are written by the real extractor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


@pytest.fixture(scope="session")
def real_img(shared_data: Path) -> np.ndarray:
    """A real H&E tile (TCGA-HE-7130, tiatoolbox sample) as ``(H, W, 3)`` uint8 RGB."""
    return np.asarray(Image.open(shared_data / "patches" / "tiatoolbox" / "TCGA-HE-7130-01Z-00-DX1.png").convert("RGB"))


@pytest.fixture(scope="session")
def edsr_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny EDSR x2 checkpoint (1 block x 8 channels, seed 0)."""
    import torch

    from cwtnet.checkpoint import save_model
    from cwtnet.model import build_model

    torch.manual_seed(0)
    opts = dict(num_block=1, num_feat=8)
    m = build_model("edsr", 2, **opts)
    return save_model(m, tmp_path_factory.mktemp("ck") / "edsr.pt", arch="edsr", scale=2, options=opts)

