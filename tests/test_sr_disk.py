"""cwtnet-sr on large regions (issue 9 bug 3, issue 12 part 5) and 16-bit inputs (bug 4).

Real images from ../shared/data, a tiny real EDSR checkpoint, real processes killed
with real signals.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.sr import main
from mlcamsr.errors import InputError

REPO = Path(__file__).resolve().parents[1]




def test_16bit_grayscale_png_is_refused_not_white(edsr_ckpt, real_img, tmp_path):
    gray16 = (real_img[:96, :96].mean(axis=2) * 257).astype(np.uint16)
    src = tmp_path / "g16.png"
    Image.fromarray(gray16).save(src)
    assert Image.open(src).mode.startswith("I")  # what Pillow makes of a 16-bit grayscale PNG
    out = tmp_path / "o" / "g16_x2.png"
    r = CliRunner().invoke(main, ["--checkpoint", str(edsr_ckpt), "--input", str(src), "--out", str(out)])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "8-bit" in lines[0] and "g16.png" in lines[0], r.output
    assert not out.exists()
    # an 8-bit grayscale PNG still works (gray replicated to RGB)
    src8 = tmp_path / "g8.png"
    Image.fromarray((gray16 // 257).astype(np.uint8)).save(src8)
    r = CliRunner().invoke(main, ["--checkpoint", str(edsr_ckpt), "--input", str(src8), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert np.asarray(Image.open(out)).mean() < 250


def test_plan_and_estimate_before_the_long_part_and_no_files_left(edsr_ckpt, real_img, tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(real_img[:200, :300]).save(src)
    d = tmp_path / "out"
    r = CliRunner().invoke(main, ["--checkpoint", str(edsr_ckpt), "--input", str(src), "--out", str(d / "x.tif"),
                                  "--tile", "64", "--overlap", "8"])
    assert r.exit_code == 0, r.output
    plan = next(ln for ln in r.output.splitlines() if ln.startswith("output "))
    assert "600x400 px (x2), 24 tiles of 64 LR px" in plan and "MB scratch" in plan and "free" in plan
    est = next(ln for ln in r.output.splitlines() if ln.startswith("first tile"))
    assert "in all" in est
    assert r.output.index(plan) < r.output.index(est) < r.output.index("wrote ")
    assert sorted(p.name for p in d.iterdir()) == ["x.tif"]  # no scratch level or part file left


def test_too_little_free_space_is_refused_before_any_work(edsr_ckpt, real_img, tmp_path, monkeypatch):
    import cwtnet.infer as infer

    src = tmp_path / "in.png"
    Image.fromarray(real_img[:200, :300]).save(src)
    d = tmp_path / "out"
    monkeypatch.setattr(infer, "_free_bytes", lambda folder: 100_000)  # a nearly full disk
    with pytest.raises(InputError, match=r"600x400 px output needs about .* 0.1 MB free"):
        infer.super_resolve_file(edsr_ckpt, src, d / "x.png", tile=64, device="cpu")
    assert list(d.iterdir()) == []


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _start(edsr_ckpt: Path, src: Path, out: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-c", "from cli.sr import main; main()", "--checkpoint", str(edsr_ckpt),
           "--input", str(src), "--out", str(out), "--tile", "16", "--overlap", "4", "--device", "cpu"]
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    # SIGINT back to its default in the child: a test runner started in the background by a
    # non-interactive shell (`.ci/run &`) passes SIGINT down ignored, and Python keeps it so
    p = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = ""
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the tile loop: the scratch canvas exists by then
        line = p.stderr.readline()
        seen += line
        if line.startswith("first tile") or not line:
            break
    assert "first tile" in seen, seen
    return p, seen


@pytest.mark.slow  # two CLI processes started (torch import) and signalled
def test_kill_leaves_no_scratch_ctrl_c_promises_no_resume_stale_part_cleaned(edsr_ckpt, real_img, tmp_path):
    src = tmp_path / "big.png"
    Image.fromarray(np.tile(real_img, (2, 2, 1))[:1600, :1600]).save(src)  # 1600 tiles of 16 px
    d = tmp_path / "out"
    d.mkdir()
    p, _ = _start(edsr_ckpt, src, d / "a.png")
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert list(d.iterdir()) == []  # the 15 MB scratch canvas died with the process
    p, _ = _start(edsr_ckpt, src, d / "a.png")
    p.send_signal(signal.SIGINT)
    err = p.stderr.read()
    assert p.wait() == 130
    assert "does not resume" in err and "rerun the same command to resume" not in err
    assert "Traceback" not in err and list(d.iterdir()) == []
    # a part file from a run killed while writing (its pid is gone) is cleaned by the next run
    stale = d / f".b.png.cwtnet-sr-{socket.gethostname()}-{_dead_pid()}.part"
    stale.write_bytes(b"\0" * 1000)
    live = d / f".c.png.cwtnet-sr-{socket.gethostname()}-{os.getpid()}.part"  # a live run's: kept
    live.write_bytes(b"\0")
    small = tmp_path / "small.png"
    Image.fromarray(real_img[:64, :64]).save(small)
    r = CliRunner().invoke(main, ["--checkpoint", str(edsr_ckpt), "--input", str(small), "--out", str(d / "s.png")])
    assert r.exit_code == 0, r.output
    assert f"removed {stale}" in r.output
    assert sorted(x.name for x in d.iterdir()) == sorted([live.name, "s.png"])
