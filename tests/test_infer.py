"""cwtnet-sr: tiling equals untiled away from seams, bounded memory, PNG/TIFF/slide I/O."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from cwtnet.infer import default_eval_tile, ramp, super_resolve_array, tile_starts, tiled_sr
from cwtnet.model import build_model

REPO = Path(__file__).resolve().parents[1]
MEM_CAP_MB = 700  # whole process (python + torch imports are ~270 MB of it)




def test_ramps_sum_to_one_over_an_overlap() -> None:
    a, b = ramp(40, 0, 16), ramp(40, 16, 0)
    np.testing.assert_allclose(a[-16:] + b[:16], 1.0, atol=1e-6)
    assert tile_starts(100, 40, 16) == [0, 24, 48, 60]
    assert tile_starts(30, 40, 16) == [0]


def test_tiled_equals_untiled_away_from_seams(real_img: np.ndarray) -> None:
    torch.manual_seed(0)
    model = build_model("edsr", 2, num_block=1, num_feat=8).eval()
    img = real_img[:160, :200]
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
    whole = super_resolve_array(model, img, scale=2, tile=None)
    tiled = super_resolve_array(model, img, scale=2, tile=64, overlap=16)
    # EDSR with 1 block sees 5 LR px around a pixel: mask 6 LR px around every interior tile edge
    mask = np.ones(whole.shape[:2], bool)
    for axis, n in ((0, 160), (1, 200)):
        starts = tile_starts(n, 64, 16)
        edges = {s for s in starts if s > 0} | {s + 64 for s in starts if s + 64 < n}
        for e in edges:
            sl = slice(max(0, 2 * (e - 6)), 2 * (e + 6))
            if axis == 0:
                mask[sl, :] = False
            else:
                mask[:, sl] = False
    assert mask.mean() > 0.3
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert diff[mask].max() <= 1
    assert diff.mean() < 0.5  # the blend is seamless everywhere, not only away from seams
    # a reference tensor tiles alongside for CWT-Net's reference mode
    cwt = build_model("cwtnet", 2, n_cwtb=1, num_feat=8).eval()
    ref = torch.rand(1, 3, 320, 400)
    out = tiled_sr(cwt, x, scale=2, ref=ref, tile=64, overlap=8)
    assert out.shape == (1, 3, 320, 400) and torch.isfinite(out).all()


def test_png_and_pyramidal_tiff_outputs(edsr_ckpt: Path, real_img: np.ndarray, tmp_path: Path) -> None:
    from cli.sr import main

    src = tmp_path / "in.png"
    Image.fromarray(real_img[:300, :260]).save(src)
    from cwtnet.checkpoint import load_model

    model, _ = load_model(edsr_ckpt)
    want = super_resolve_array(model, real_img[:300, :260], scale=2, tile=64, overlap=16)
    r = CliRunner().invoke(main, ["--checkpoint", str(edsr_ckpt), "--input", str(src),
                                  "--out", str(tmp_path / "o.png"), "--tile", "64", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    got = np.asarray(Image.open(tmp_path / "o.png"))
    assert got.shape == (600, 520, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # streaming == in-memory tiling
    r = CliRunner().invoke(main, ["--checkpoint", str(edsr_ckpt), "--input", str(src), "--region",
                                  "10,20,200,100", "--out", str(tmp_path / "o.tif"), "--tile", "64"])
    assert r.exit_code == 0, r.output
    import tifffile

    with tifffile.TiffFile(tmp_path / "o.tif") as tf:
        assert tf.pages[0].shape == (200, 400, 3) and tf.pages[0].is_tiled


def test_slide_region_is_read_by_tiles(edsr_ckpt: Path, tmp_path: Path) -> None:
    from cli.sr import main
    from mlcamsr.slides import open_slide
    from mlcamsr.synth import synth_slides

    slides = synth_slides(tmp_path / "sl", n_slides=1, size=(1024, 768), n_coords=0)
    r = CliRunner().invoke(main, ["--checkpoint", str(edsr_ckpt), "--input", str(slides[0]), "--level", "1",
                                  "--region", "100,200,150,90", "--out", str(tmp_path / "s.tif"),
                                  "--tile", "64"])
    assert r.exit_code == 0, r.output
    with open_slide(tmp_path / "s.tif") as s:
        assert s.level_dimensions[0] == (300, 180)
        assert s.mpp is not None and abs(s.mpp[0] - 0.243) < 0.01  # level 1 (0.486) / 2


def test_2000px_input_under_memory_cap(edsr_ckpt: Path, real_img: np.ndarray, tmp_path: Path) -> None:
    src = tmp_path / "big.png"
    Image.fromarray(np.tile(real_img, (2, 2, 1))[:2000, :2000]).save(src)
    code = (
        "import json, re, sys\n"
        "from cwtnet.infer import super_resolve_file\n"
        f"r = super_resolve_file({str(edsr_ckpt)!r}, {str(src)!r}, {str(tmp_path / 'big.tif')!r}, tile=128)\n"
        # VmHWM is this process's own peak; ru_maxrss would carry over the forking pytest
        # parent's size across exec (and fail whenever earlier tests grew the parent).
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "r['peak_mb'] = int(hwm) / 1024\n"
        "print(json.dumps(r))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert (res["width"], res["height"]) == (4000, 4000)
    # an untiled pass would hold 4000 x 4000 x 8 ch float activations (>= 512 MB each) alone
    assert res["peak_mb"] < MEM_CAP_MB, res


def test_bad_inputs_one_line(edsr_ckpt: Path, real_img: np.ndarray, tmp_path: Path) -> None:
    from cli.sr import main

    src = tmp_path / "in.png"
    Image.fromarray(real_img[:64, :64]).save(src)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    cases = [
        (["--checkpoint", str(junk), "--input", str(src), "--out", str(tmp_path / "a.png")], "not a CWT-Net checkpoint"),
        (["--checkpoint", str(edsr_ckpt), "--input", str(src), "--out", str(tmp_path / "a.jpg")], "write .png"),
        (["--checkpoint", str(edsr_ckpt), "--input", str(src), "--region", "0,0,100,100",
          "--out", str(tmp_path / "a.png")], "outside"),
        (["--checkpoint", str(edsr_ckpt), "--input", str(src), "--region", "1,2",
          "--out", str(tmp_path / "a.png")], "four integers"),
    ]
    for args, want in cases:
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.output.splitlines() if ln.strip() and "Error" in ln]
        assert len(lines) == 1 and want in lines[0], r.output
    assert not (tmp_path / "a.png").exists()


def test_help_shows_examples() -> None:
    from cli.sr import main

    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    assert "Examples:" in r.output and "cwtnet-sr --checkpoint" in r.output and "--region" in r.output


def test_slide_region_outside_is_refused_in_one_line(edsr_ckpt: Path, tmp_path: Path) -> None:
    """A slide region past the slide's edge reads back transparent black: refuse it, and
    print the one error line only (no empty progress bar before it)."""
    from cli.sr import main
    from mlcamsr.synth import synth_slides

    slides = synth_slides(tmp_path / "sl", n_slides=1, size=(1024, 768), n_coords=0)
    for region in ("2000,100,50,50", "900,0,100,10"):  # wholly / partly outside at --level 1
        out = tmp_path / "s.png"
        r = CliRunner().invoke(main, ["--checkpoint", str(edsr_ckpt), "--input", str(slides[0]), "--level", "1",
                                      "--region", region, "--out", str(out)])
        assert r.exit_code == 2, r.output
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "outside" in lines[0], r.output
        assert not out.exists()


def test_eval_runs_a_windowed_search_untiled_up_to_512_lr_px():
    """A windowed search costs in proportion to the area: 128-px tiles of a 512-px image
    would recompute 1.56x its area; the global search (area squared) and other networks
    keep 128-px tiles above 256 px."""
    from cwtnet.model import apply_search_window, build_model

    cwt = build_model("cwtnet", 2, n_cwtb=1, num_feat=8)
    edsr = build_model("edsr", 2, num_block=1, num_feat=8)
    assert default_eval_tile(cwt, 256) is None and default_eval_tile(edsr, 256) is None
    assert default_eval_tile(cwt, 512) == 128 and default_eval_tile(edsr, 512) == 128  # global search
    apply_search_window(cwt, 8)
    assert default_eval_tile(cwt, 512) is None
    assert default_eval_tile(cwt, 513) == 128
