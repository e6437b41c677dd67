"""cwtnet-utility (Table VI) on a tiny labelled store of real H&E: outputs, recomputable
predictions, and one-line exit-2 errors for unlabelled stores and wrong weights."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli.utility import main
from cwtnet.checkpoint import save_model
from cwtnet.model import build_model
from cwtnet.model.resnet_arch import resnet50
from cwtnet.utility import UtilityConfig, cut_tiles, run_utility
from mlcamsr.resize import imresize
from mlcamsr.store import open_store

REPO = Path(__file__).resolve().parents[1]
PATCHES = REPO.parent / "shared" / "data" / "patches" / "histolab"
SOURCES = {"tumor": PATCHES / "high-nuclei-score-level0.png",
           "normal": PATCHES / "tissue-level0-4302-10273-4814-10785.png"}


def make_labelled_store(path: Path, *, labels: bool = True, n: int = 12, size: int = 64) -> Path:
    """Patches of two real H&E images, one per class, members 40x/20x; 2 of each class in test."""
    imgs = {k: np.asarray(Image.open(p).convert("RGB")) for k, p in SOURCES.items()}
    st = open_store(path, "w")
    arrs = {f: st.create_member(f"{40 / f:g}x", n=n, size=size // f, mpp=0.243 * f, scale=f, mag=40 / f)
            for f in (1, 2)}
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        cls = ("tumor", "normal")[i % 2]
        y, x = rng.integers(0, 512 - size, 2)
        p = imgs[cls][y:y + size, x:x + size]
        arrs[1][i], arrs[2][i] = p, imresize(p, scale=0.5)
        rows.append(dict(slide=f"s{i}", x=int(x), y=int(y), label=cls if labels else "", status="kept",
                         reason="", index=i, split="test" if i < 4 else "train"))
    st.write_table(pd.DataFrame(rows))
    return path


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not all(p.exists() for p in SOURCES.values()):
        pytest.skip("real patches missing")
    return make_labelled_store(tmp_path_factory.mktemp("u") / "lab.zarr")


def _cli(*args: str) -> Any:
    """The CLI in process (click's runner): exit code and stderr as a user sees them."""
    r = CliRunner().invoke(main, list(args))
    r.returncode = r.exit_code
    return r


def test_cut_tiles_covers_the_patch_without_overlap():
    img = np.arange(10 * 9 * 3).reshape(10, 9, 3)
    tiles = list(cut_tiles(img, 4))
    assert [(y, x) for y, x, _ in tiles] == [(0, 0), (0, 4), (4, 0), (4, 4)]
    assert all(t.shape == (4, 4, 3) for *_, t in tiles)
    assert np.array_equal(tiles[3][2], img[4:8, 4:8])


def test_utility_table_and_per_tile_predictions(labelled: Path, tmp_path: Path):
    torch.manual_seed(0)
    run = tmp_path / "srcnn_run"
    run.mkdir()
    opts = {"num_feat1": 8, "num_feat2": 4}
    save_model(build_model("srcnn", 2, **opts), run / "last.pt", arch="srcnn", scale=2, options=opts)
    out = tmp_path / "t6"
    res = run_utility(UtilityConfig(store=str(labelled), out=str(out), runs=[str(run)], tile=32, epochs=3,
                                    batch_size=8, lr=1e-3, width=8, sr_tile=20, device="cpu"),
                      log=lambda s: None)
    methods = [r["method"] for r in res["rows"]]
    assert methods[:3] == ["GT", "bicubic(↓)", "bicubic"] and methods[3].startswith("SRCNN")
    # 4 test patches of 64 px -> 16 tiles of 32 px (LR tiles 16 px for bicubic(down))
    assert [r["n_tiles"] for r in res["rows"]] == [16] * 4
    assert [r["tile_px"] for r in res["rows"]] == [32, 16, 32, 32]
    assert res["rows"][0]["paper_mlcamsr"] == 91.83 and res["rows"][3]["paper_pcam"] == 68.87
    assert res["meta"]["train_tiles"] == 32 and res["meta"]["train_tumor_tiles"] == 16
    assert res["meta"]["train_loss"][-1] < res["meta"]["train_loss"][0]
    with open(out / "predictions.csv") as fh:
        preds = list(csv.DictReader(fh))
    assert len(preds) == 64
    for r in res["rows"]:  # the table is recomputable from the saved predictions
        mine = [p for p in preds if p["variant"] == r["method"]]
        acc = 100 * np.mean([(float(p["p_tumor"]) >= 0.5) == (p["label"] == "tumor") for p in mine])
        assert acc == pytest.approx(r["accuracy"], abs=1e-6)
    assert json.loads((out / "table6.json").read_text())["rows"] == res["rows"]
    md = (out / "table6.md").read_text()
    assert "| GT |" in md and "91.83" in md and "from scratch" in md
    ck = torch.load(out / "classifier.pt", weights_only=True)
    assert ck["classes"] == ["normal", "tumor"]


def test_unlabelled_store_and_bad_weights_exit_2_in_one_line(labelled: Path, tmp_path: Path):
    bare = make_labelled_store(tmp_path / "bare.zarr", labels=False)
    r = _cli("--zarr", str(bare), "--out", str(tmp_path / "o1"), "--width", "8")
    assert r.returncode == 2 and "--annotations" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o1").exists()
    wrong = tmp_path / "r50_w16.pth"
    torch.save(resnet50(width=16).state_dict(), wrong)
    r = _cli("--zarr", str(labelled), "--out", str(tmp_path / "o2"), "--width", "8", "--weights", str(wrong))
    assert r.returncode == 2 and "--weights" in r.stderr and "not a matching state dict" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = _cli("--zarr", str(labelled), "--out", str(tmp_path / "o3"), "--runs", str(tmp_path / "nope"))
    assert r.returncode == 2 and "--runs" in r.stderr and len(r.stderr.strip().splitlines()) == 1
