"""cwtnet-eval: metrics.json layout, saved images reproduce the figures, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cwtnet.checkpoint import save_model
from cwtnet.metrics import psnr, ssim
from cwtnet.model import build_model
from cwtnet.report import table_i
from tests.builders import make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("ev") / "s.zarr", n=6, size=64, test=2)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ck")
    torch.manual_seed(0)
    out = {}
    for arch, scale, opts in [("cwtnet", 2, dict(n_cwtb=1, num_feat=8)), ("bicubic", 2, {}),
                              ("edsr", 4, dict(num_block=1, num_feat=8))]:
        out[f"{arch}{scale}"] = save_model(build_model(arch, scale, **opts), d / f"{arch}{scale}.pt",
                                           arch=arch, scale=scale, options=opts)
    return out


def _eval(args: list[str]) -> tuple[int, str]:
    from cli.evaluate import main

    r = CliRunner().invoke(main, args)
    return r.exit_code, r.output


@pytest.mark.parametrize("mode", ["reference", "sisr"])
def test_eval_writes_metrics_csv_table_pictures(store: Path, ckpts: dict[str, Path], tmp_path: Path,
                                                 mode: str) -> None:
    out = tmp_path / "ev"
    code, text = _eval(["--zarr", str(store), "--checkpoint", str(ckpts["cwtnet2"]), "--split", "test",
                        "--scale", "2", "--out", str(out), "--mode", mode, "--save-images", "--device", "cpu"])
    assert code == 0, text
    # the cost is shown before the long part: sizes and tiling, then an estimate from image 1
    assert "on 2 images: 64 px ground truth, 32 px LR (untiled)" in text
    assert text.index("scoring ") < text.index("first image ") < text.index("PSNR")
    m = json.loads((out / "metrics.json").read_text())
    for key in ("model", "bicubic"):
        assert {"psnr", "ssim", "psnr_rgb_crop", "ssim_y_crop"} <= set(m[key])
    assert m["meta"]["mode"] == mode and m["meta"]["n_images"] == 2
    assert "basicsr_y" in m and "basicsr_rgb" in m
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(rows) == 2
    # anyone can recompute the figures from the saved images
    for r in rows:
        i = r["i"]
        sr, bic, gt = (np.asarray(Image.open(out / "images" / f"{i}_{k}.png")) for k in ("sr", "bicubic", "gt"))
        assert gt.shape == (64, 64, 3) and sr.shape == gt.shape
        assert abs(psnr(sr, gt) - float(r["psnr"])) < 1e-4
        assert abs(ssim(bic, gt) - float(r["bicubic_ssim"])) < 1e-5
        assert abs(psnr(bic, gt, crop_border=2, y_channel=True) - float(r["bicubic_psnr_y_crop"])) < 1e-4
    assert np.mean([float(r["psnr"]) for r in rows]) == pytest.approx(m["model"]["psnr"], abs=1e-5)
    assert (out / "compare" / "0.png").exists()
    assert "| Dataset | Method | 2x PSNR(dB) | 2x SSIM |" in (out / "table.md").read_text()


def test_bicubic_checkpoint_scores_exactly_bicubic(store: Path, ckpts: dict[str, Path], tmp_path: Path) -> None:
    code, text = _eval(["--zarr", str(store), "--checkpoint", str(ckpts["bicubic2"]), "--out", str(tmp_path)])
    assert code == 0, text
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["model"]["psnr"] == pytest.approx(m["bicubic"]["psnr"], abs=0.02)
    assert m["model"]["psnr"] > 25  # real tissue, x2


def test_table_i_layout_marks_best() -> None:
    md = table_i([
        {"dataset": "D", "method": "bicubic", "scale": 2, "psnr": 35.2, "ssim": 0.94},
        {"dataset": "D", "method": "CWT-Net", "scale": 2, "psnr": 39.3, "ssim": 0.98},
        {"dataset": "D", "method": "CWT-Net", "scale": 4, "psnr": 29.6, "ssim": 0.83},
    ])
    assert "| D | bicubic | 35.200 | .9400 |" in md
    assert "**39.300** | **.9800**" in md


@pytest.mark.parametrize("case", ["scale", "arch", "junk", "no_split", "empty_test", "no_member"])
def test_bad_input_one_line(case: str, store: Path, ckpts: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "ev"
    args = ["--zarr", str(store), "--checkpoint", str(ckpts["cwtnet2"]), "--out", str(out)]
    if case == "scale":
        args += ["--scale", "4"]
        want = "checkpoint is for x2, not x4"
    elif case == "arch":
        args += ["--arch", "edsr"]
        want = "checkpoint is for --arch cwtnet, not edsr"
    elif case == "junk":
        junk = tmp_path / "junk.pt"
        torch.save({"weights": torch.zeros(2)}, junk)
        args[3] = str(junk)
        want = "not a CWT-Net checkpoint"
    elif case == "no_split":
        args[1] = str(make_store(tmp_path / "n.zarr", n=4, size=64, split=False))
        want = "no train/test split"
    elif case == "empty_test":
        args[1] = str(make_store(tmp_path / "e.zarr", n=4, size=64, test=0))
        want = "test split is empty"
    else:
        args = ["--zarr", str(make_store(tmp_path / "m.zarr", n=4, size=64, members=(1,))),
                "--checkpoint", str(ckpts["edsr4"]), "--out", str(out)]
        want = "needs the member '20x'"
    code, text = _eval(args)
    assert code == 2, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and want in lines[0], text
    assert not (out / "metrics.json").exists()


def test_help_shows_examples() -> None:
    from cli.evaluate import main

    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    assert "Examples:" in r.output and "cwtnet-eval --zarr" in r.output and "metrics.json" in r.output


def test_both_modes_side_by_side_and_the_reference_can_be_chosen(
    store: Path, ckpts: dict[str, Path], tmp_path: Path
) -> None:
    """Issue 10 "Also": CWT-Net is reported in SISR and reference mode by default, and
    --ref-source scores with another Table III reference than the trained one."""
    out = tmp_path / "both"
    code, text = _eval(["--zarr", str(store), "--checkpoint", str(ckpts["cwtnet2"]), "--out", str(out),
                        "--device", "cpu", "--ref-source", "gt", "--pictures", "0"])
    assert code == 0, text
    assert "CWT-Net (sisr)" in text and "CWT-Net (reference)" in text and "reference: gt" in text
    ref = json.loads((out / "reference" / "metrics.json").read_text())
    sisr = json.loads((out / "sisr" / "metrics.json").read_text())
    assert ref["meta"]["mode"] == "reference" and sisr["meta"]["mode"] == "sisr"
    assert ref["meta"]["ref_source"] == "gt" and ref["meta"]["trained_ref_source"] == "real"
    assert ref["model"]["psnr"] != sisr["model"]["psnr"]
    code, text = _eval(["--zarr", str(store), "--checkpoint", str(ckpts["cwtnet2"]), "--out",
                        str(tmp_path / "x"), "--ref-source", "hr"])
    assert code == 2 and "hr" in text


def test_mirror_padding_changes_only_the_border_of_a_local_model() -> None:
    """Issue 10 s3: eval pads the LR image by mirroring (model_sr(pad=)) so the border is
    not the convolutions' zero-padded edge; away from the border a local network's output
    is unchanged, and bicubic (no parameters) is never padded."""
    from cwtnet.evaluate import EVAL_PAD, model_sr
    from cwtnet.model import build_model

    torch.manual_seed(0)
    edsr = build_model("edsr", 2, num_block=1, num_feat=8).eval()
    lr = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        plain = model_sr(edsr, lr, None, scale=2, mode="sisr", pad=0)
        padded = model_sr(edsr, lr, None, scale=2, mode="sisr", pad=6)
        want = edsr(torch.nn.functional.pad(lr, (6, 6, 6, 6), mode="reflect"))[:, :, 12:-12, 12:-12]
    assert padded.shape == plain.shape == (1, 3, 80, 80)
    assert torch.allclose(padded, want, atol=1e-6)
    inner = (slice(None), slice(None), slice(24, -24), slice(24, -24))  # beyond the receptive field
    assert torch.allclose(padded[inner], plain[inner], atol=1e-5)
    assert (padded[:, :, :2] - plain[:, :, :2]).abs().max() > 1e-3
    assert EVAL_PAD > 0
