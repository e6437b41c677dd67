"""``TrainConfig``: the single source of every training option.

CLI flags (``cwtnet-train``) and config files (YAML ``.yaml``/``.yml`` or TOML
``.toml``) both map onto this dataclass; precedence is defaults < config file <
flags given on the command line. The resolved config is written to
``RUN_DIR/config.yaml`` and stored (as plain types) inside every checkpoint.

Defaults: the paper's where it gives them (CWT-Net IV-B: 12 CWTBs, 64 channels, LR
patch 64, random 90-degree rotations; the loss of III-E); this project's where the paper
is silent (Adam 1e-4, constant rate, batch 16, flips, EMA 0.999, bf16 on CUDA; see
docs/training.md).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from cwtnet.choices import (
    DEFAULT_SEARCH_WINDOW,
    DEFAULT_V_MODE,
    DEFAULT_WT_BANDS,
    DEVICES,
    EVAL_MODES,
    PAPER_READING,
    SCHEDULES,
    V_MODES,
    WT_BANDS,
)
from cwtnet.model import ARCH_NAMES, build_checked
from cwtnet.model import model_options as map_model_options
from mlcamsr.errors import InputError
from mlcamsr.triplets import DATASET_SCALES, REF_SOURCES

READINGS: dict[str, Any] = {"search_window": DEFAULT_SEARCH_WINDOW, "v_mode": DEFAULT_V_MODE,
                            "wt_bands": DEFAULT_WT_BANDS}
"""CWT-Net's reading options of ``TrainConfig`` and their defaults (docs/cwtnet.md)."""

DEFAULT_ADV_WEIGHT: dict[str, float] = {"srgan": 1e-3}
"""Adversarial weight per arch when ``adv_weight`` is unset (SRGAN: the paper's 1e-3)."""


@dataclass
class TrainConfig:
    """Every option of a training run.

    Args:
        store (str): Path or fsspec URL of the MLCamSR Zarr store. Default: ``mlcamsr.zarr``.
        scale (int): Upsampling factor, 2, 4 or 8. Default: 2.
        out (str | None): Run directory; ``None`` = ``runs/<arch>_x<scale>_<timestamp>``.
        arch (str): ``cwtnet | bicubic | srcnn | edsr | rcan``. Default: ``cwtnet``.
        blocks (int | None): Number of main blocks (CWTBs for CWT-Net, residual blocks for
            EDSR, residual groups for RCAN); ``None`` = the architecture's default (12 CWTBs).
        channels (int | None): Feature channels; ``None`` = the architecture's default (64).
        model_options (dict): Further ``build_model`` keyword options, passed as is (not
            the three CWT-Net readings below, which are options of their own).
        search_window (int | None): CWT-Net's search window, LR px either side of each query
            (``CWTNetOptions.search_window``); ``None`` = the paper's global search.
            Default: 2 (:data:`cwtnet.choices.DEFAULT_SEARCH_WINDOW`).
        v_mode (str): CWT-Net's K/V order (:data:`cwtnet.choices.V_MODES`): ``paper`` or
            ``ttsr``. Default: ``ttsr``.
        wt_bands (str): CWT-Net's reference sub-bands on the WT branch
            (:data:`cwtnet.choices.WT_BANDS`): ``hh`` (Eq. 4) or ``detail`` (LH, HL, HH).
            Default: ``detail``. These three are recorded in every checkpoint; their defaults
            are the project's (docs/cwtnet.md, "Making the reference matter"), the paper's
            reading is :data:`cwtnet.choices.PAPER_READING`; other architectures ignore them.
        steps (int): Optimisation steps (batches). Default: 1000 (the paper's ablation budget).
        minutes (float | None): Optional wall-clock budget; training stops (with a checkpoint)
            at ``steps`` or when the budget is spent, whichever comes first.
        batch_size (int): Global batch size (split across ``torchrun`` processes). Default: 16.
        patch (int): LR patch size p (gt is s*p, ref 2p). Default: 64.
        ref_source (str): WT-branch input (Table III): ``real | gt | gt-updown | lr | bicubic``.
        in_memory (bool): Hold the training split in RAM. Default: False.
        num_workers (int): DataLoader worker processes. Default: 2.
        cache_dir (str | None): For a store in object storage (``s3://...``), a local folder
            keeping a copy of every shard read, so epoch 2 reads locally
            (:mod:`mlcamsr.chunkcache`). Default: None (no cache).
        lr (float): Adam learning rate. Default: 1e-4.
        betas (tuple[float, float]): Adam betas. Default: (0.9, 0.999).
        weight_decay (float): Adam weight decay. Default: 0.
        schedule (str): ``constant | cosine | step`` learning-rate schedule. Default: constant.
        milestones (list[int]): Steps at which ``step`` halves the rate (gamma). Default: [].
        gamma (float): Factor for the ``step`` schedule. Default: 0.5.
        grad_clip (float | None): Clip the gradient norm to this value; ``None`` = off.
        loss (dict): Keyword options of ``cwtnet.losses.CWTLoss`` (weights, variants).
        ema_decay (float): EMA decay of the weights; 0 disables EMA. Default: 0.999.
        val_every (int): Validate every N steps (0 = only at the end). Default: 500.
        val_images (int): Test images used for validation (0 = all). Default: 8.
        val_patch (int | None): LR size of the centre crop used for validation (capped at
            the whole patch); ``None`` = whole patches. Default: 64.
        best_mode (str): CWT-Net mode whose validation PSNR picks ``best.pt``: ``sisr`` (what
            ``cwtnet-sr`` runs, no reference) or ``reference``; other networks: sisr.
            Default: sisr.
        ckpt_every (int): Write ``last.pt`` every N steps. Default: 500.
        log_every (int): Append to the CSV log every N steps. Default: 10.
        seed (int): Seed of weights, batches and augmentation. Default: 0.
        device (str): ``auto | cpu | cuda``. Default: auto (CUDA when present).
        amp (bool): bf16 autocast on CUDA (always fp32 on CPU). Default: True.
        channels_last (bool): channels_last memory format on CUDA. Default: True.
        compile (bool): ``torch.compile`` the model. Default: False.
        progress (bool): Show a tqdm progress bar. Default: True.
        tensorboard (bool): Write TensorBoard events when tensorboard is installed.
        adv_weight (float | None): SRGAN's adversarial weight (``--arch srgan`` only); ``None`` =
            the paper's 1e-3, 0 = the SRResNet generator alone (``cwtnet.adversarial``).
        vgg_weights (str | None): torchvision ``vgg19`` state dict for SRGAN's VGG54 content
            loss; ``None`` = the pixel loss as content loss (labelled so in every table).
        d_lr (float): Adam learning rate of SRGAN's discriminator. Default: 1e-4.
    """

    store: str = "mlcamsr.zarr"
    scale: int = 2
    out: str | None = None
    arch: str = "cwtnet"
    blocks: int | None = None
    channels: int | None = None
    model_options: dict = field(default_factory=dict)
    search_window: int | None = DEFAULT_SEARCH_WINDOW
    v_mode: str = DEFAULT_V_MODE
    wt_bands: str = DEFAULT_WT_BANDS
    steps: int = 1000
    minutes: float | None = None
    batch_size: int = 16
    patch: int = 64
    ref_source: str = "real"
    in_memory: bool = False
    num_workers: int = 2
    cache_dir: str | None = None
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.5
    grad_clip: float | None = None
    loss: dict = field(default_factory=dict)
    ema_decay: float = 0.999
    val_every: int = 500
    val_images: int = 8
    val_patch: int | None = 64
    best_mode: str = "sisr"
    ckpt_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    progress: bool = True
    tensorboard: bool = True
    adv_weight: float | None = None
    vgg_weights: str | None = None
    d_lr: float = 1e-4

    def adversarial_weight(self) -> float:
        """The adversarial weight in effect: ``adv_weight``, or the arch's default (SRGAN 1e-3, else 0)."""
        return float(self.adv_weight) if self.adv_weight is not None else DEFAULT_ADV_WEIGHT.get(self.arch, 0.0)

    def validate(self) -> TrainConfig:
        """Check every value; raise ``InputError`` naming the option and the fix."""
        if self.arch not in ARCH_NAMES:
            raise InputError(f"--arch {self.arch!r} is unknown; choose one of {', '.join(ARCH_NAMES)}")
        if int(self.scale) not in DATASET_SCALES:
            raise InputError(
                f"--scale {self.scale} is not supported; choose {', '.join(map(str, DATASET_SCALES))}"
            )
        if self.device not in DEVICES:
            raise InputError(f"--device {self.device!r} is unknown; choose {', '.join(DEVICES)}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule {self.schedule!r} is unknown; choose {', '.join(SCHEDULES)}")
        if self.best_mode not in EVAL_MODES:
            raise InputError(f"--best-mode {self.best_mode!r} is unknown; choose {', '.join(EVAL_MODES)}")
        if self.ref_source not in REF_SOURCES:
            raise InputError(
                f"--ref-source {self.ref_source!r} is unknown; choose {', '.join(REF_SOURCES)}"
            )
        for name in ("steps", "batch_size", "patch"):
            if int(getattr(self, name)) < (0 if name == "steps" else 1):
                raise InputError(f"--{name.replace('_', '-')} must be positive")
        if self.arch == "cwtnet" and int(self.patch) < 11:
            raise InputError(
                f"--patch {self.patch}: CWT-Net's WT output is patch-sized and the SSIM loss "
                "needs at least the 11-px window; use --patch 11 or more"
            )
        self._check_readings()
        if self.minutes is not None and not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise InputError(f"--minutes {self.minutes}: give a positive number of minutes")
        if not 0.0 <= self.ema_decay < 1.0:
            raise InputError(f"--ema-decay {self.ema_decay}: give a value in [0, 1)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr {self.lr}: give a positive finite learning rate, e.g. 1e-4")
        for name in ("blocks", "channels"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise InputError(f"--{name} {value}: give at least 1 (leave it out for the paper's)")
        for name in ("num_workers", "val_images", "val_every", "ckpt_every", "log_every"):
            if int(getattr(self, name)) < 0:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: give 0 or more")
        self._check_adversarial()
        self._check_loss_and_model_options()
        return self

    def _check_adversarial(self) -> None:
        """SRGAN options: only for ``--arch srgan``; the VGG19 file is checked by the trainer."""
        if self.arch != "srgan" and (self.adv_weight or self.vgg_weights):
            raise InputError(f"--adv-weight / --vgg-weights apply to --arch srgan only, not {self.arch}")
        if self.adversarial_weight() < 0:
            raise InputError("--adv-weight must be >= 0 (0 = the SRResNet generator alone)")
        if self.vgg_weights and not Path(self.vgg_weights).is_file():
            raise InputError(f"--vgg-weights {self.vgg_weights}: no such file; give a torchvision vgg19 state dict")
        if self.d_lr <= 0:
            raise InputError("d_lr (the discriminator's learning rate) must be positive")

    def _check_loss_and_model_options(self) -> None:
        """Refuse bad ``loss`` / ``model_options`` entries in one line, before a run directory
        is made: the loss is built, the model on the meta device (no memory, no RNG draw)."""
        import inspect

        # import cost only (no circle: losses imports nothing of cwtnet's): torch stays out
        # of `import cwtnet.config`, so `cwtnet-train --help` starts without it
        import torch

        from cwtnet.losses import CWTLoss

        loss = dict(self.loss or {})
        known = [p for p in inspect.signature(CWTLoss.__init__).parameters if p != "self"]
        unknown = sorted(set(loss) - set(known))
        if unknown:
            raise InputError(f"loss: unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
        try:
            CWTLoss(**loss)
        except (TypeError, ValueError) as exc:
            raise InputError(f"loss: {exc}") from None
        with torch.device("meta"):
            build_checked(self.arch, int(self.scale), self.network_options())

    def _check_readings(self) -> None:
        """``search_window``, ``v_mode``, ``wt_bands``: valid values, set in one place (not in
        ``model_options``), and left at their defaults for networks without them."""
        named = sorted(set(self.model_options or {}) & set(READINGS))
        if named:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in named)
            raise InputError(f"model_options: {', '.join(named)} are options of their own; give {flags} "
                             f"(or {', '.join(f'{k}:' for k in named)} at the top level of the config)")
        if self.search_window is not None and not (isinstance(self.search_window, int) and self.search_window >= 0):
            raise InputError(f"--search-window {self.search_window!r}: give LR px >= 0, or global")
        if self.v_mode not in V_MODES:
            raise InputError(f"--v-mode {self.v_mode!r}: choose one of {', '.join(V_MODES)}")
        if self.wt_bands not in WT_BANDS:
            raise InputError(f"--wt-bands {self.wt_bands!r}: choose one of {', '.join(WT_BANDS)}")
        if self.arch != "cwtnet":
            for key, default in READINGS.items():
                if getattr(self, key) != default:
                    raise InputError(f"--{key.replace('_', '-')} applies to --arch cwtnet only, not "
                                     f"{self.arch}; drop it")

    def check_typed(self, typed: set[str]) -> None:
        """Refuse a CWT-Net reading option the user typed (``typed``: option names given on
        the command line) for another architecture, even at its default value."""
        wrong = sorted(set(typed) & set(READINGS)) if self.arch != "cwtnet" else []
        if wrong:
            raise InputError(f"--{wrong[0].replace('_', '-')} applies to --arch cwtnet only, not "
                             f"{self.arch}; drop it")

    def network_options(self) -> dict[str, Any]:
        """``build_model`` keyword options: ``blocks``/``channels`` under the arch's own names,
        then ``model_options`` as given (:func:`cwtnet.model.model_options`); for CWT-Net
        always ``search_window``, ``v_mode`` and ``wt_bands`` too, so every checkpoint records
        the reading it was trained with."""
        opts = map_model_options(self.arch, blocks=self.blocks, channels=self.channels,
                                 extra=self.model_options)
        if self.arch == "cwtnet":
            opts.update({k: getattr(self, k) for k in READINGS})
        return opts

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of builtin types (safe for YAML and ``torch.load(weights_only=True)``)."""
        d = dataclasses.asdict(self)
        d["betas"] = [float(b) for b in self.betas]
        d["milestones"] = [int(m) for m in self.milestones]
        return d

    @classmethod
    def from_stored(cls, data: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """A run's stored config (``config.yaml``, a checkpoint's ``config``): one written
        before ``v_mode``/``wt_bands`` were options of their own trained the paper's reading,
        or the one its ``model_options`` named, so that is what it resumes with."""
        data = dict(data)
        if data.get("arch", "cwtnet") == "cwtnet":
            opts = dict(data.get("model_options") or {})
            for key in READINGS:
                if key not in data:
                    data[key] = opts.pop(key, PAPER_READING[key])
                else:
                    opts.pop(key, None)
            data["model_options"] = opts
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown keys are refused with the list of known ones."""
        known = {f.name for f in fields(cls)}
        norm = {str(k).replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(norm) - known)
        if unknown:
            raise InputError(
                f"{source}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if "betas" in norm and norm["betas"] is not None:
            norm["betas"] = tuple(float(b) for b in norm["betas"])
        return cls(**norm)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file into a dict of options.

    A TOML file may put the options at top level or under a ``[train]`` table.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--config {p}: no such file; give a YAML or TOML file of options")
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(p.read_text())
            data = data.get("train", data)
        elif p.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(p.read_text()) or {}
        else:
            raise InputError(f"--config {p}: use a .yaml, .yml or .toml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"--config {p}: cannot parse ({first})") from None
    if not isinstance(data, dict):
        raise InputError(f"--config {p}: expected a mapping of option: value")
    return data


def resolve_config(
    file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Defaults < ``file`` < ``overrides`` (the flags the user actually typed)."""
    data: dict[str, Any] = {}
    if file is not None:
        data.update(load_config_file(file))
    cfg = TrainConfig.from_dict(data, source=f"--config {file}") if data else TrainConfig()
    if overrides:
        cfg = cfg.replace(**{k.replace("-", "_"): v for k, v in overrides.items()})
    return cfg.validate()


def write_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
