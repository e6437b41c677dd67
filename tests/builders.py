"""Small real stores and checks shared by several test modules (no test imports another).

- ``real_patches`` / ``build_store``: real H&E squares from ../shared/data written with the
  store API (member at scale f = imresize(finest, 1/f));
- ``make_store``: a tiny 40x/20x/10x store of crops of one real H&E image, with a split;
- ``tree_digest``: hash of every file under a folder ("store untouched" checks).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mlcamsr.resize import imresize
from mlcamsr.store import member_name, open_store

REPO = Path(__file__).resolve().parents[1]
REAL_PNG = REPO.parent / "shared" / "data" / "patches" / "tiatoolbox" / "TCGA-HE-7130-01Z-00-DX1.png"

REAL_IMAGES = (
    "patches/tiatoolbox/TCGA-HE-7130-01Z-00-DX1.png",
    "patches/histolab/tcga-lung-rgb.png",
    "patches/histolab/tissue-level0-7352-11762-7864-12274.png",
)


def real_patches(shared_data: Path, size: int, per_image: int = 4) -> tuple[np.ndarray, list]:
    """``per_image`` real H&E squares of ``size`` px from each of three images."""
    out, slides = [], []
    for rel in REAL_IMAGES:
        im = np.asarray(Image.open(shared_data / rel).convert("RGB"))
        h, w = im.shape[:2]
        for k in range(per_image):
            y = (k * 97) % max(1, h - size)
            x = (k * 131) % max(1, w - size)
            out.append(im[y : y + size, x : x + size])
            slides.append(Path(rel).stem)
    return np.stack(out), slides


def build_store(
    path: Path,
    images: np.ndarray,
    slides: list[str],
    *,
    scales: tuple[int, ...] = (1, 2, 4),
    base_mag: float = 40.0,
    status: list[str] | None = None,
    split: list[str] | None = None,
    chunk: int | None = None,
) -> Path:
    """A small store written with the store API: member at scale f = imresize(finest, 1/f).

    Rows whose status is not ``kept`` get index -1 and no pixels, as extract does.
    ``chunk``: inner chunk side of every member (min'd with its size; None: whole patches).
    """
    n, size = images.shape[:2]
    status = status or ["kept"] * n
    st = open_store(path, mode="w")
    for f in scales:
        arr = st.create_member(
            member_name(base_mag, f),
            n=n,
            size=size // f,
            mpp=0.243 * f,
            scale=f,
            mag=base_mag / f,
            kind="real",
            shard_rows=4,
            chunk=chunk,
        )
        data = np.zeros((n, size // f, size // f, 3), np.uint8)
        for i in range(n):
            if status[i] == "kept":
                data[i] = images[i] if f == 1 else imresize(images[i], scale=1 / f)
        arr[:] = data
    table = pd.DataFrame(
        {
            "slide": slides,
            "x": np.arange(n) * 1000,
            "y": np.arange(n) * 500,
            "label": ["tumor" if i % 3 == 0 else "normal" for i in range(n)],
            "status": status,
            "reason": ["" if s == "kept" else "qc" for s in status],
            "index": [i if s == "kept" else -1 for i, s in enumerate(status)],
        }
    )
    if split is not None:
        table["split"] = split
    st.write_table(table)
    return path


def make_store(path: Path, *, n: int = 8, size: int = 128, test: int = 2,
               members: tuple[int, ...] = (1, 2, 4), split: bool = True) -> Path:
    """A small store written with the store API: crops of a real H&E image (40x, 20x, 10x)."""
    if REAL_PNG.exists():
        img = np.asarray(Image.open(REAL_PNG).convert("RGB"))
    else:  # pragma: no cover - real data missing: smooth random texture
        rng = np.random.default_rng(1)
        img = (rng.random((600, 600, 3)) * 255).astype(np.uint8)
    st = open_store(path, "w")
    rng = np.random.default_rng(0)
    arrs = {f: st.create_member(f"{40 / f:g}x", n=n, size=size // f, mpp=0.243 * f, scale=f, mag=40 / f)
            for f in members}
    rows = []
    for i in range(n):
        y, x = rng.integers(0, min(img.shape[:2]) - size, 2)
        p = img[y : y + size, x : x + size]
        for f in members:
            arrs[f][i] = p if f == 1 else imresize(p, scale=1 / f)
        rows.append(dict(slide=f"s{i % 3}", x=int(x), y=int(y), label="normal", status="kept",
                         reason="", index=i, split=(("test" if i < test else "train") if split else None)))
    st.write_table(pd.DataFrame(rows))
    return path


def tree_digest(path: Path) -> str:
    """Hash of every file (name and bytes) under ``path``: 'store untouched' checks."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()
