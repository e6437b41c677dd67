"""cwtnet-experiment: every row trained at equal steps and scored in both modes, tables
written, a rerun resumes instead of retraining, table1 follows the architecture registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.test_train import make_store

TINY = {"blocks": 1, "channels": 8, "batch_size": 2, "patch": 16}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("exp") / "s.zarr", n=5, size=64, test=1)


@pytest.mark.slow
def test_table2_rows_train_score_and_resume(store: Path, tmp_path: Path) -> None:
    from cwtnet.experiment import PAPER_TABLE2, run_experiment

    logs: list[str] = []
    doc = run_experiment("table2", store=str(store), out=tmp_path, steps=2, device="cpu",
                         size=TINY, log=logs.append)
    names = [r["name"] for r in doc["rows"]]
    assert names == list(PAPER_TABLE2)
    for r in doc["rows"]:
        assert r["steps"] == 2 and tuple(r["paper"]) == PAPER_TABLE2[r["name"]]
        assert set(r) >= {"reference", "sisr", "bicubic", "wall_s", "samples_per_s"}
        for mode in ("reference", "sisr"):
            assert set(r[mode]) >= {"psnr", "ssim", "psnr_y_crop", "ssim_y_crop", "spread"}
            assert 5.0 < r[mode]["psnr"] < 60.0
        run = tmp_path / "table2" / r["name"] / "seed0"
        assert (run / "last.pt").is_file() and (run / "eval_sisr" / "metrics.json").is_file()
        cfg = json.loads((run / "row.json").read_text())["config"]
        assert cfg["model_options"]["variant"] == r["name"] and cfg["model_options"]["n_cwtb"] == 1
    md = (tmp_path / "table2.md").read_text()
    assert "| sr-only | reference |" in md and "39.161 / 0.9712" in md
    assert json.loads((tmp_path / "table2.json").read_text())["rows"] == doc["rows"]
    # a rerun keeps finished rows; an interrupted row (no row.json) resumes from last.pt
    (tmp_path / "table2" / "full" / "seed0" / "row.json").unlink()
    logs.clear()
    again = run_experiment("table2", store=str(store), out=tmp_path, steps=3, device="cpu",
                           size=TINY, only=("full",), log=logs.append)
    assert again["rows"][0]["steps"] == 3
    assert any("full seed 0: training 3 steps (resumed)" in s for s in logs), logs
    with pytest.raises(Exception, match="other settings"):
        run_experiment("table2", store=str(store), out=tmp_path, steps=3, device="cpu",
                       size=TINY, only=("sr-only",))


def test_table1_follows_the_architecture_registry(monkeypatch) -> None:
    from cwtnet import model
    from cwtnet.experiment import rows_for

    assert [r.name for r in rows_for("table1", 2)] == list(model.ARCHS)
    monkeypatch.setitem(model.ARCHS, "mwcnn", model.ARCHS["edsr"])  # a row added later
    rows = {r.name: r for r in rows_for("table1", 4)}
    assert "mwcnn" in rows and rows["mwcnn"].paper == (28.941, 0.8130)
    assert [r.name for r in rows_for("table3", 2)] == ["gt", "real", "gt-updown", "lr"]
    assert [r.model_options["n_cwtb"] for r in rows_for("table5", 2)] == [2, 4, 8, 12, 24]


def test_cli_refuses_bad_input_in_one_line(store: Path, tmp_path: Path) -> None:
    from cli.experiment import main

    r = CliRunner().invoke(main, ["table9", "--zarr", str(store), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "table9" in r.output
    r = CliRunner().invoke(main, ["table2", "--zarr", str(store), "--out", str(tmp_path),
                                  "--only", "no-such-row"])
    assert r.exit_code == 2 and "no-such-row" in r.output and "sr-only" in r.output
    assert "Traceback" not in r.output
