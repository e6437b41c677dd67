"""Bad input found by probing (issue 9): one line, exit 2, nothing written or lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.mlcamsr import main
from mlcamsr.errors import StoreError
from mlcamsr.store import StoreLock


def _one_line_exit_2(res, match: str) -> None:
    assert res.exit_code == 2, res.output
    assert res.output.startswith("Error: ") and len(res.output.strip().splitlines()) == 1, res.output
    assert match in res.output, res.output


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--rgb-mean", "nan,0,0"], "--rgb-mean nan,0.0,0.0: give finite numbers"),
        (["--min-align-psnr", "nan"], "--min-align-psnr nan: give a finite number"),
        (["--min-stain", "nan"], "--min-stain nan: give a finite number"),  # else the check is off
        (["--cache-mb", "nan"], "--cache-mb nan: give a finite number"),  # was: every row failed
        (["--rgb-mean", "2,0,0"], "three values in [0, 1]"),
        (["--scales", "1,2,256"], "member 0.15625x would be 4 px"),
        (["--out", "memory://x.zarr"], "memory:// store vanishes"),
        (["--out", "AFILE/x.zarr"], "cannot create the folder"),
        (["--out", "/proc/x.zarr"], "/proc/x.zarr"),
    ],
)
def test_bad_numbers_and_outputs_exit_2_one_line(synth_dir, tmp_path, args, match):
    (tmp_path / "AFILE").write_text("mine")
    args = [a.replace("AFILE", str(tmp_path / "AFILE")) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "s.zarr")]
    res = CliRunner().invoke(main, ["extract", "--slides", str(synth_dir), "--coords",
                                    str(synth_dir / "coords.csv"), "--workers", "0", "--quiet", *out, *args])
    _one_line_exit_2(res, match)
    assert not (tmp_path / "s.zarr").exists() and (tmp_path / "AFILE").read_text() == "mine"


def test_a_lock_that_cannot_be_created_is_a_store_error():
    """A store on a read-only mount: the writer lock fails with one line, no OSError."""
    with pytest.raises(StoreError, match="cannot take the writer lock /proc/self/mlcamsr.lock"):
        StoreLock(Path("/proc/self/mlcamsr.lock")).acquire()
    with pytest.raises(StoreError, match="cannot create /proc/nope"):
        StoreLock(Path("/proc/nope/mlcamsr.lock")).acquire()


def test_a_row_with_an_extra_field_is_named_as_such(tmp_path):
    from mlcamsr.coords import read_coords
    from mlcamsr.errors import InputError

    p = tmp_path / "c.csv"
    p.write_text("slide,x,y\na.tif,1,2,extra\n")  # pandas shifted it: "y='extra' is not a number"
    with pytest.raises(InputError, match=r"row 0 \(line 2\) has 4 fields, the header 3"):
        read_coords(p)


def test_a_slide_name_in_another_unicode_normalisation_says_so(tmp_path):
    import unicodedata

    import pandas as pd

    from mlcamsr.coords import resolve_slides
    from mlcamsr.errors import InputError

    (tmp_path / unicodedata.normalize("NFC", "café.tif")).write_bytes(b"x")
    df = pd.DataFrame({"slide": [unicodedata.normalize("NFD", "café.tif")]})
    with pytest.raises(InputError, match="another Unicode normalisation"):
        resolve_slides(df, tmp_path)


def test_an_empty_folder_named_like_a_slide_is_not_called_0_bytes(tmp_path):
    from mlcamsr.extract import extract

    (tmp_path / "slides" / "dir.tif").mkdir(parents=True)
    (tmp_path / "c.csv").write_text("slide,x,y\ndir.tif,100,100\n")
    res = extract(tmp_path / "slides", tmp_path / "c.csv", tmp_path / "s.zarr", size=64, workers=0,
                  progress=False, mpp=0.25)
    assert res.exit_code == 1 and "folder without files" in res.failures[0][2]


def test_split_ratio_preview_cell_and_sample_coords_size_limits(synth_dir, tmp_path):
    from mlcamsr.errors import InputError
    from mlcamsr.split import parse_ratio

    with pytest.raises(InputError, match="less than 1/1e\\+06"):
        parse_ratio("1e308:1e-308")
    res = CliRunner().invoke(main, ["preview", str(tmp_path / "none.zarr"), "--cell", "100000",
                                    "--out", str(tmp_path / "p.png")])
    assert res.exit_code == 2 and "--cell" in res.output  # was: OOM-killed
    res = CliRunner().invoke(main, ["sample-coords", "--slides", str(synth_dir), "--n", "4", "--size",
                                    "100000", "--out", str(tmp_path / "c.csv"), "--no-progress"])
    assert res.exit_code == 1 and "no centre fits" in res.output  # was: 0 centres, rc 0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--lr", "nan"], "--lr nan: give a positive finite learning rate"),
        (["--channels", "0"], "--channels 0: give at least 1"),
        (["--num-workers", "-1"], "--num-workers -1: give 0 or more"),
        (["--val-images", "-1"], "--val-images -1: give 0 or more"),
        (["--minutes", "nan"], "--minutes nan"),
    ],
)
def test_train_options_one_line_before_anything_runs(tmp_path, args, match):
    from cli.train import main as train_main

    res = CliRunner().invoke(train_main, ["--zarr", str(tmp_path / "none.zarr"), "--out",
                                          str(tmp_path / "run"), *args])
    _one_line_exit_2(res, match)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--max-images", "-1"], "--max-images -1: give at least 1"),
        (["--overlap", "-3"], "--overlap -3: give 0 or more"),
        (["--split", "validation"], "--split 'validation': a store's splits are train and test"),
    ],
)
def test_eval_options_one_line_before_anything_runs(tmp_path, args, match):
    from cli.evaluate import main as eval_main

    res = CliRunner().invoke(eval_main, ["--zarr", str(tmp_path / "none.zarr"), "--checkpoint",
                                         str(tmp_path / "none.pt"), "--out", str(tmp_path / "ev"), *args])
    _one_line_exit_2(res, match)
    assert not (tmp_path / "ev").exists()


class Foreign:
    """An object a checkpoint must never carry (not unpickled with weights_only=True)."""


def test_checkpoint_errors_name_the_cause_in_whole_words(tmp_path):
    import torch

    from cwtnet.checkpoint import load_checkpoint
    from mlcamsr.errors import InputError

    good = tmp_path / "c.pt"
    torch.save({"format": "x", "w": torch.zeros(1000)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError) as err:
        load_checkpoint(cut)  # was worded like a security refusal, cut mid-word
    msg = str(err.value)
    assert "truncated, or not a .pt file" in msg and "safely" not in msg and msg.endswith("cwtnet-train")
    bad = tmp_path / "obj.pt"
    torch.save({"x": Foreign()}, bad)
    with pytest.raises(InputError, match="never unpickled"):
        load_checkpoint(bad)
