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
