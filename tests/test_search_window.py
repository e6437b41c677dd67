"""--search-window on cwtnet-train / cwtnet-eval / cwtnet-sr: recorded in checkpoints, old
checkpoints load as the paper's global search, a loaded model can be evaluated windowed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli.evaluate import main as eval_main
from cli.sr import main as sr_main
from cli.train import main as train_main
from cwtnet.checkpoint import LAST, load_checkpoint, load_model
from tests.builders import make_store

TINY = ["--steps", "2", "--batch-size", "2", "--patch", "16", "--blocks", "1", "--channels", "8",
        "--val-every", "0", "--val-images", "1", "--ckpt-every", "10", "--num-workers", "0",
        "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("sw")
    store = make_store(tmp / "s.zarr", n=4, size=64, test=1)
    out = {}
    for name, extra in (("win", []), ("glob", ["--search-window", "global"])):  # 2 is the default
        r = CliRunner().invoke(train_main, ["--zarr", str(store), "--out", str(tmp / name), *TINY, *extra])
        assert r.exit_code == 0, r.output
        out[name] = tmp / name / LAST
    return store, out["win"], out["glob"]


def test_checkpoints_record_the_window_and_old_ones_load_as_global(runs, tmp_path: Path) -> None:
    _, win, glob = runs
    assert load_checkpoint(win)["model_options"]["search_window"] == 2
    assert load_checkpoint(glob)["model_options"]["search_window"] is None
    model, _ = load_model(win)
    assert model.body[0].transformer.window == 2
    # a checkpoint written before the option existed: no key -> the paper's global search
    ck = torch.load(win, map_location="cpu", weights_only=True)
    del ck["model_options"]["search_window"]
    torch.save(ck, tmp_path / "old.pt")
    model, _ = load_model(tmp_path / "old.pt")
    assert model.body[0].transformer.window is None


def test_eval_and_sr_override_the_window(runs, tmp_path: Path) -> None:
    store, win, glob = runs
    r = CliRunner().invoke(eval_main, ["--zarr", str(store), "--checkpoint", str(glob), "--out",
                                       str(tmp_path / "e"), "--device", "cpu", "--pictures", "0",
                                       "--search-window", "3"])  # both modes: e/sisr, e/reference
    assert r.exit_code == 0, r.output
    import json

    for mode in ("sisr", "reference"):
        meta = json.loads((tmp_path / "e" / mode / "metrics.json").read_text())["meta"]
        assert meta["search_window"] == 3
    r = CliRunner().invoke(eval_main, ["--zarr", str(store), "--checkpoint", str(win), "--out",
                                       str(tmp_path / "g"), "--device", "cpu", "--pictures", "0",
                                       "--search-window", "global", "--mode", "sisr"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "g" / "metrics.json").read_text())["meta"]["search_window"] is None
    r = CliRunner().invoke(eval_main, ["--zarr", str(store), "--checkpoint", str(win), "--out",
                                       str(tmp_path / "b"), "--search-window", "wide"])
    assert r.exit_code == 2 and "--search-window 'wide'" in r.output
    img = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 20, 3), dtype=np.uint8)).save(img)
    r = CliRunner().invoke(sr_main, ["--checkpoint", str(glob), "--input", str(img), "--out",
                                     str(tmp_path / "o.png"), "--device", "cpu", "--search-window", "2"])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "o.png").size == (40, 48)


def test_train_refuses_a_window_for_other_archs(runs, tmp_path: Path) -> None:
    store = runs[0]
    r = CliRunner().invoke(train_main, ["--zarr", str(store), "--out", str(tmp_path / "e"), "--arch", "edsr",
                                        *TINY, "--search-window", "2"])
    assert r.exit_code == 2 and "cwtnet only" in r.output
    assert not (tmp_path / "e").exists()
