"""The demo end to end at a tiny budget: every stage runs and the report has its parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner


@pytest.mark.slow
def test_demo_runs_end_to_end_and_writes_report(tmp_path: Path) -> None:
    from cwtnet.demo import run_demo

    res = run_demo(tmp_path / "demo", minutes=0.1, compare=True, workers=0, eval_images=2,
                   log=lambda s: None)
    text = res.report.read_text()
    assert "| Dataset | Method | 2x PSNR(dB) | 2x SSIM |" in text
    assert "CWT-Net (reference)" in text and "CWT-Net (sisr)" in text and "EDSR" in text
    for line in text.splitlines():
        if line.startswith("![") and "](" in line:
            assert (res.report.parent / line.split("](")[1].rstrip(")")).exists(), line
    assert any(p.name.startswith("curve_") for p in res.report.parent.iterdir())
    m = json.loads((res.evals[0] / "metrics.json").read_text())
    assert m["meta"]["n_images"] == 2 and m["bicubic"]["psnr"] > 20
    assert set(res.timings) >= {"synth", "extract", "pyramid", "split", "total"}


def test_demo_command_is_registered_and_checks_minutes(tmp_path: Path) -> None:
    from cli.mlcamsr import main

    r = CliRunner().invoke(main, ["demo", "--help"])
    assert r.exit_code == 0 and "--minutes" in r.output
    r = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "d"), "--minutes", "0"])
    assert r.exit_code == 2 and "--minutes must be positive" in r.output
