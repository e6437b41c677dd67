"""CWT-Net's reading options (search window, K/V order, reference sub-bands): cwtnet-train's
defaults are the project's, CWTNetOptions' the paper's; one home for each; a run stored
before the options existed resumes with the reading it trained."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.train import main as train_main
from cwtnet.choices import PAPER_READING
from cwtnet.config import TrainConfig
from cwtnet.model import make_options
from mlcamsr.errors import InputError


def test_training_defaults_are_the_project_reading_and_the_network_defaults_the_papers():
    opts = TrainConfig().validate().network_options()
    assert (opts["search_window"], opts["v_mode"], opts["wt_bands"]) == (2, "ttsr", "detail")
    paper = make_options("cwtnet")
    assert {k: getattr(paper, k) for k in PAPER_READING} == PAPER_READING
    glob = TrainConfig(search_window=None, v_mode="paper", wt_bands="hh").validate().network_options()
    assert {k: glob[k] for k in PAPER_READING} == PAPER_READING
    assert "wt_bands" not in TrainConfig(arch="edsr").validate().network_options()


@pytest.mark.parametrize("cfg, words", [
    (dict(model_options={"v_mode": "ttsr"}), "--v-mode"),
    (dict(model_options={"search_window": 4}), "--search-window"),
    (dict(wt_bands="ll"), "--wt-bands"),
    (dict(v_mode="dense"), "--v-mode"),
    (dict(search_window=-1), "--search-window"),
    (dict(arch="edsr", wt_bands="hh"), "cwtnet only"),
])
def test_bad_or_misplaced_readings_are_one_line_errors(cfg, words):
    with pytest.raises(InputError, match=words):
        TrainConfig(**cfg).validate()


def test_a_run_stored_before_the_options_resumes_with_its_own_reading():
    old = TrainConfig().to_dict()
    for key in ("v_mode", "wt_bands"):
        old.pop(key)
    old.update(search_window=None, model_options={"v_mode": "ttsr", "n_wrb": 2})
    cfg = TrainConfig.from_stored(old)
    assert (cfg.search_window, cfg.v_mode, cfg.wt_bands) == (None, "ttsr", "hh")
    assert cfg.model_options == {"n_wrb": 2}
    cfg.validate()
    new = TrainConfig(v_mode="paper").to_dict()  # a current config is taken as written
    assert TrainConfig.from_stored(new) == TrainConfig(v_mode="paper")


@pytest.mark.parametrize("value", ["abc", "-3"])
def test_cli_search_window_takes_px_or_global(value, tmp_path):
    r = CliRunner().invoke(train_main, ["--zarr", str(tmp_path / "none.zarr"), "--search-window", value])
    assert r.exit_code == 2 and "--search-window" in r.output and "global" in r.output, r.output
