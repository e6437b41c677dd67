"""SRGAN in the trainer: the discriminator lives in the checkpoint, resume is exact, the
fallback content loss is labelled, and bad SRGAN options are one line before any output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli.train import main as train_main
from cwtnet.checkpoint import LAST
from cwtnet.config import TrainConfig
from cwtnet.evaluate import _label
from cwtnet.model.resnet_arch import resnet50
from cwtnet.train import train
from mlcamsr.errors import InputError
from tests.builders import make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("sg") / "s.zarr")


def _cfg(store: Path, out: Path, steps: int, **kw) -> TrainConfig:
    return TrainConfig(store=str(store), out=str(out), arch="srgan", steps=steps, blocks=1, channels=8,
                       batch_size=2, patch=12, val_every=0, val_images=1, num_workers=0, ckpt_every=2,
                       progress=False, tensorboard=False, **kw)


@pytest.mark.slow
def test_adversarial_run_resumes_exactly_with_its_discriminator(store: Path, tmp_path: Path) -> None:
    train(_cfg(store, tmp_path / "a", 4))
    train(_cfg(store, tmp_path / "b", 2))
    train(_cfg(store, tmp_path / "b", 4), resume=True, explicit={"steps"})
    a = torch.load(tmp_path / "a" / LAST, weights_only=True)
    b = torch.load(tmp_path / "b" / LAST, weights_only=True)
    assert a["step"] == b["step"] == 4 and a["adversarial"]["content"] == "pixel"
    for part, sa, sb in (("model", a["model"], b["model"]), ("ema", a["ema"], b["ema"]),
                         ("D", a["adversarial"]["discriminator"], b["adversarial"]["discriminator"])):
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (part, k)
    header = (tmp_path / "a" / "log.csv").read_text().splitlines()[0]
    assert {"content", "g_adv", "d_loss"} <= set(header.split(","))
    assert _label("srgan", "sisr", a["config"]) == "SRGAN (pixel content loss: no VGG19 weights)"
    # --adv-weight 0: the generator alone, no discriminator, labelled so
    train(_cfg(store, tmp_path / "g", 2, adv_weight=0.0))
    g = torch.load(tmp_path / "g" / LAST, weights_only=True)
    assert g["adversarial"] is None
    assert _label("srgan", "sisr", g["config"]).startswith("SRGAN generator (SRResNet")


def test_bad_srgan_options_are_one_line_and_write_nothing(store: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "r50.pth"
    torch.save(resnet50(width=8).state_dict(), wrong)
    r = CliRunner().invoke(train_main, ["--zarr", str(store), "--arch", "srgan", "--vgg-weights", str(wrong),
                                        "--out", str(tmp_path / "run"), "--steps", "1", "--no-progress"])
    assert r.exit_code == 2 and "--vgg-weights" in r.stderr and "not a matching state dict" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    with pytest.raises(InputError, match="srgan only"):
        TrainConfig(store=str(store), arch="edsr", adv_weight=1e-3).validate()
    with pytest.raises(InputError, match="no such file"):
        TrainConfig(store=str(store), arch="srgan", vgg_weights=str(tmp_path / "none.pth")).validate()
