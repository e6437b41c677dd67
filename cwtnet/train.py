"""The trainer behind ``cwtnet-train``: a loop that reads as its stages.

``train(cfg)`` resolves the run directory (:func:`prepare_run`), builds a
:class:`Trainer` (setup: device, store checks, process group, model, loss,
optimizer, scheduler, EMA), restores ``last.pt`` on resume, prepares the data and
logs, and runs :meth:`Trainer.fit`, whose loop calls the named stages
:meth:`~Trainer.step`, :meth:`~Trainer.log`, :meth:`~Trainer.validate` and
:meth:`~Trainer.save`; each can be called alone (``tests/test_train.py``).
Device and process group live in :mod:`cwtnet.runtime`, data in :mod:`cwtnet.data`,
checkpoints in :mod:`cwtnet.checkpoint`, logs in :mod:`cwtnet.runlog`.

Exact resume. Every batch is a pure function of ``(seed, step)``
(:class:`cwtnet.data.StepBatchSampler`). Model-side randomness (e.g. dropping the
reference) comes from the global RNGs, whose states are saved in every checkpoint
with the model, EMA, optimizer and scheduler. On CPU, 20 steps straight and
10 + kill -9 + resume 10 give identical weights (``tests/test_train.py``).
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from cwtnet.adversarial import AdversarialStep
from cwtnet.checkpoint import (
    BEST,
    CKPT_FORMAT,
    CKPT_VERSION,
    LAST,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
    tool_version,
)
from cwtnet.config import TrainConfig, write_config
from cwtnet.data import SeededItems, StepBatchSampler, check_store, make_dataset
from cwtnet.evaluate import score_dataset
from cwtnet.losses import CWTLoss
from cwtnet.model import build_checked, has_trainable_params
from cwtnet.model.vgg_arch import VGGFeatures
from cwtnet.runlog import CsvLog, plot_curves, tensorboard_writer
from cwtnet.runtime import barrier, finish_distributed, init_distributed, resolve_device
from mlcamsr.errors import InputError, MLCamSRError

# Keys a resumed run may change; every other option must match the run's own config.
RESUME_MUTABLE = {
    "steps", "minutes", "progress", "tensorboard", "num_workers", "device",
    "val_every", "ckpt_every", "log_every", "val_images", "store", "out", "compile", "cache_dir",
}


class TrainingDiverged(MLCamSRError):
    """The loss became NaN or inf; the last good checkpoint is kept."""

    exit_code = 1


CURVE_EVERY_S = 60.0
"""Least wall seconds between two redraws of ``RUN_DIR/curve.png`` during training."""

# --------------------------------------------------------------------------- pieces


class TrainStep(nn.Module):
    """One module whose ``forward`` is the training forward (what DDP must wrap).

    CWT-Net: ``forward_train(lr, ref)`` -> dict for ``CWTLoss``; others: ``model(lr, ref)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, lr: torch.Tensor, ref: torch.Tensor) -> Any:
        forward_train = getattr(self.model, "forward_train", None)
        if forward_train is not None:
            return forward_train(lr, ref)
        return self.model(lr, ref)


class EMA:
    """Exponential moving average of every floating tensor of a model's state dict.

    The decay warms up as ``min(decay, (1 + step) / (10 + step))`` so short runs are not
    dominated by the initial weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Blend ``model``'s current weights in (``step``: steps done before this one)."""
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                self.state[k].copy_(v)


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer) -> Any:
    """The learning-rate schedule ``cfg.schedule`` (``constant | cosine | step``)."""
    sched = torch.optim.lr_scheduler
    if cfg.schedule == "cosine":
        return sched.CosineAnnealingLR(opt, T_max=max(1, int(cfg.steps)), eta_min=cfg.lr * 0.01)
    if cfg.schedule == "step":
        return sched.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    return sched.ConstantLR(opt, factor=1.0, total_iters=0)


def _to_float(out: Any) -> Any:
    if isinstance(out, dict):
        return {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v)
                for k, v in out.items()}
    return out.float()


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<arch>_x<scale>_<YYYYmmdd-HHMMSS>``."""
    return Path("runs") / f"{cfg.arch}_x{cfg.scale}_{datetime.now().strftime('%Y%m%d-%H%M%S')}"


# --------------------------------------------------------------------------- run directory


@dataclass
class TrainResult:
    """What a finished run leaves behind."""

    run_dir: Path
    step: int
    checkpoint: Path
    stopped: str  # "steps" | "minutes"
    wall_s: float
    samples_per_s: float
    val: dict[str, Any] = field(default_factory=dict)
    rank: int = 0


def prepare_run(cfg: TrainConfig, *, resume: bool, explicit: set[str] | None = None) -> TrainConfig:
    """Resolve the run directory; on ``resume`` merge the run's own config (see RESUME_MUTABLE)."""
    if resume:
        if cfg.out is None:
            raise InputError("--resume needs --out RUN_DIR (the run directory to continue)")
        ckpt_path = Path(cfg.out) / LAST
        if not ckpt_path.is_file():
            raise InputError(
                f"--resume: no checkpoint {ckpt_path}; start without --resume or point --out at a run directory"
            )
        saved = TrainConfig.from_stored(load_checkpoint(ckpt_path)["config"], source=str(ckpt_path))
        explicit = explicit or set()
        changes: dict[str, Any] = {}
        for key in explicit:
            new, old = getattr(cfg, key), getattr(saved, key)
            if key in RESUME_MUTABLE:
                changes[key] = new
            elif new != old:
                raise InputError(
                    f"--resume: option {key}={new!r} differs from the run's {old!r}; "
                    "a resumed run keeps its options (start a new run to change it)"
                )
        changes["out"] = cfg.out
        return saved.replace(**changes).validate()
    out = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    if (out / LAST).exists():
        raise InputError(f"--out {out} already holds a run (last.pt); add --resume or choose another --out")
    return cfg.replace(out=str(out)).validate()


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """One training run as stages (after BasicSR's ``SRModel``).

    - construction = setup: device, store checks, process group, run directory, seeded
      model, loss, optimizer, scheduler, EMA;
    - :meth:`restore` (resume): weights, EMA, optimizer, scheduler, RNG states, step, best;
    - :meth:`prepare`: ``config.yaml``, the DDP/compiled training module, data, logs;
    - :meth:`step`: one optimisation step on a batch; :meth:`log`: the CSV/TensorBoard row;
      :meth:`validate`: ``val.csv`` rows, ``best.pt``, ``curve.png``; :meth:`save`: a checkpoint;
    - :meth:`fit`: the loop over those stages; :meth:`close`: leave the process group.

    ``on_checkpoint(step, path)`` is called on rank 0 after each ``last.pt`` write (the
    CLI prints it; a library caller may ignore it).
    """

    def __init__(self, cfg: TrainConfig, *,
                 on_checkpoint: Callable[[int, Path], None] | None = None) -> None:
        if cfg.out is None:
            raise InputError("Trainer needs cfg.out (resolve it with prepare_run)")
        self.cfg = cfg
        self.run_dir = Path(cfg.out)
        self.on_checkpoint = on_checkpoint
        self.device = resolve_device(cfg.device)
        self.store = check_store(cfg.store, int(cfg.scale), ref_source=cfg.ref_source, patch=int(cfg.patch))
        self.adv_weight = cfg.adversarial_weight() if cfg.arch == "srgan" else 0.0
        self.vgg = self._load_vgg() if self.adv_weight > 0 and cfg.vgg_weights else None
        self.dist = init_distributed(self.device)
        if self.adv_weight > 0 and self.dist.world > 1:
            raise InputError("--adv-weight: SRGAN's discriminator step runs in one process only; "
                             "train it without torchrun, or pass --adv-weight 0 (SRResNet)")
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        barrier(self.dist)
        self.use_cuda = self.device.type == "cuda"
        self.options = cfg.network_options()
        self._build_model()
        self.start = self.step_count = self.last_good = 0
        self.best = -math.inf
        self.resumed = False

    # -- setup ------------------------------------------------------------------------

    def _load_vgg(self) -> VGGFeatures:
        """SRGAN's frozen VGG19 (``--vgg-weights``), checked before anything is written."""
        try:
            return VGGFeatures("relu5_4", weights=self.cfg.vgg_weights)
        except ValueError as exc:
            raise InputError(str(exc)) from None

    def _build_model(self) -> None:
        """Seeded weights (the same on every rank), then loss, optimizer, scheduler, EMA."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        self.model = build_checked(cfg.arch, int(cfg.scale), self.options).to(self.device)
        # SRGAN: the discriminator (seeded like the generator, the same on every rank)
        self.adv = (AdversarialStep(self.adv_weight, self.vgg, d_lr=cfg.d_lr).to(self.device)
                    if self.adv_weight > 0 else None)
        if self.use_cuda and cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.trainable = has_trainable_params(self.model)
        if self.dist.world > 1:  # same initial weights everywhere (DDP broadcasts them), per-rank randomness after
            torch.manual_seed(cfg.seed * 1000 + self.dist.rank)
        self.criterion = CWTLoss(**(cfg.loss or {}))
        self.opt = torch.optim.Adam(
            [p for p in self.model.parameters() if p.requires_grad] or [nn.Parameter(torch.zeros(1))],
            lr=cfg.lr, betas=(float(cfg.betas[0]), float(cfg.betas[1])), weight_decay=cfg.weight_decay,
        )
        self.sched = make_scheduler(cfg, self.opt)
        self.ema = EMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from a training checkpoint: weights, EMA, optimizer, scheduler, RNGs, step."""
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None and ckpt.get("ema"):
            self.ema.state = {k: v.to(self.device) for k, v in ckpt["ema"].items()}
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        if self.adv is not None:
            if not ckpt.get("adversarial"):
                raise InputError(f"{self.run_dir / LAST}: no discriminator state (the run had --adv-weight 0); "
                                 "resume with the run's own options")
            self.adv.load_checkpoint_state(ckpt["adversarial"])
        set_rng_state(ckpt["rng"])
        self.start = self.step_count = self.last_good = int(ckpt["step"])
        self.best = float(ckpt.get("best_psnr", -math.inf))
        self.resumed = True

    def prepare(self) -> None:
        """Write ``config.yaml``; wrap the training module (DDP, compile); data and logs."""
        cfg, dist = self.cfg, self.dist
        if dist.main:
            write_config(cfg, self.run_dir / "config.yaml")
        self.train_module = self._training_module()
        self.steps = int(cfg.steps) if self.trainable else self.start
        train_ds = make_dataset(self.store, cfg, "train", train=True, patch=cfg.patch)
        self.val_ds = make_dataset(self.store, cfg, "test", train=False, patch=cfg.val_patch,
                                   full=cfg.val_patch is None) if dist.main else None
        sampler = StepBatchSampler(len(train_ds), int(cfg.batch_size), seed=cfg.seed,
                                   start_step=self.start, steps=self.steps, rank=dist.rank, world=dist.world)
        self.loader = torch.utils.data.DataLoader(
            SeededItems(train_ds), batch_sampler=sampler, num_workers=int(cfg.num_workers),
            pin_memory=self.use_cuda, persistent_workers=False,
            # its own generator: making the iterator must not draw from the global RNG (exact resume)
            generator=torch.Generator().manual_seed(cfg.seed),
            multiprocessing_context="spawn" if cfg.num_workers and sys.platform == "darwin" else None,
        )
        resume, start = self.resumed, self.start
        self.log_csv = CsvLog(self.run_dir / "log.csv", keep_until=start if resume else None) if dist.main else None
        # a resume with nothing left to train validates step `start` again: drop its old rows
        val_keep = (start - 1 if start >= self.steps else start) if resume else None
        self.val_csv = CsvLog(self.run_dir / "val.csv", keep_until=val_keep) if dist.main else None
        self.tb = tensorboard_writer(self.run_dir, cfg.tensorboard) if dist.main else None
        self.t0 = self._t_window = time.perf_counter()
        self._curve_t = -math.inf
        self._n_window = 0

    def _training_module(self) -> nn.Module:
        module: nn.Module = TrainStep(self.model)
        if self.dist.world > 1 and self.trainable:
            # a zero loss weight (Table IV "only SR" / "only WT", lambda_wr 0) leaves a part of
            # CWT-Net without gradient, which plain DDP takes for a broken graph
            unused = self.cfg.arch == "cwtnet" and min(self.criterion.weights.values()) == 0
            module = DistributedDataParallel(module, device_ids=[self.device.index] if self.use_cuda else None,
                                             find_unused_parameters=unused)
        if self.cfg.compile:
            module = torch.compile(module)  # type: ignore[assignment]
        return module

    # -- one step ---------------------------------------------------------------------

    def feed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(lr, ref, gt)`` of a loader batch on the device (channels_last on CUDA if asked)."""
        lr_img = batch["lr"].to(self.device, non_blocking=True)
        ref = batch["ref"].to(self.device, non_blocking=True)
        gt = batch["gt"].to(self.device, non_blocking=True)
        if self.use_cuda and self.cfg.channels_last:
            lr_img = lr_img.contiguous(memory_format=torch.channels_last)
            ref = ref.contiguous(memory_format=torch.channels_last)
        return lr_img, ref, gt

    def step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """One optimisation step; returns ``(loss, loss parts)``. A non-finite loss raises
        :class:`TrainingDiverged` before any weight changes."""
        lr_img, ref, gt = self.feed(batch)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if (self.use_cuda and self.cfg.amp)
                    else contextlib.nullcontext())
        with autocast:
            out = self.train_module(lr_img, ref)
        loss, parts = self.criterion(_to_float(out), gt)
        parts = dict(parts or {})
        if self.adv is not None:  # SRGAN: content (VGG54 or this pixel loss) + adversarial term
            with autocast:
                loss, extra = self.adv.generator_loss(_to_float(out), gt, loss)
            parts.update(extra)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss.item()} at step {self.step_count + 1}; stopped. The last good checkpoint "
                f"is {self.run_dir / LAST} (step {self.last_good}); lower --lr or set grad_clip, then --resume"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        if self.adv is not None:
            with autocast:
                parts.update(self.adv.discriminator_step(_to_float(out).detach(), gt))
        if self.ema is not None:
            self.ema.update(self.model, self.step_count)
        self.step_count += 1
        self._n_window += lr_img.shape[0] * self.dist.world
        return loss, parts

    def log(self, loss: torch.Tensor, parts: dict[str, Any], *, force: bool = False) -> None:
        """Append a ``log.csv`` row (and TensorBoard scalar) every ``log_every`` steps (rank 0)."""
        if self.log_csv is None or not (force or self.step_count % max(1, self.cfg.log_every) == 0):
            return
        now = time.perf_counter()
        row = {"step": self.step_count, "loss": f"{loss.item():.6f}"}
        row.update({k: f"{float(v):.6f}" for k, v in parts.items()})
        row.update({"lr": f"{self.sched.get_last_lr()[0]:.3e}",
                    "samples_per_s": f"{self._n_window / max(now - self._t_window, 1e-9):.2f}",
                    "elapsed_s": f"{now - self.t0:.1f}"})
        self.log_csv.write(row)
        if self.tb is not None:
            self.tb.add_scalar("train/loss", loss.item(), self.step_count)
        self._t_window, self._n_window = now, 0

    # -- validation and checkpoints ----------------------------------------------------

    def validate(self, *, final: bool = False) -> dict[str, Any]:
        """Score the (EMA) model on the test split: ``val.csv`` rows, ``best.pt`` when the
        PSNR (dB) of ``cfg.best_mode`` improves (sisr for other networks), ``curve.png``
        (redrawn at most every ``CURVE_EVERY_S`` s, and always when ``final``). Rank 0 only;
        other ranks get ``{}``."""
        if self.val_ds is None or self.val_csv is None:
            return {}
        cfg, step = self.cfg, self.step_count
        modes = ["reference", "sisr"] if cfg.arch == "cwtnet" else ["sisr"]
        res: dict[str, Any] = {}
        # validation must not move the training RNG (the EMA copy's init draws from it):
        # otherwise --val-every changes the run, and a run extended with --resume differs
        with torch.random.fork_rng(devices=[self.device] if self.use_cuda else []):
            eval_model = self.model
            if self.ema is not None:  # a fresh copy (deepcopy fails on the WT output a model keeps)
                eval_model = build_checked(cfg.arch, int(cfg.scale), self.options).to(self.device)
                eval_model.load_state_dict(self.ema.state)
            eval_model.eval()
            for mode in modes:
                m = score_dataset(eval_model, self.val_ds, scale=int(cfg.scale), mode=mode, device=self.device,
                                  max_images=cfg.val_images or None, amp=self.use_cuda and cfg.amp)
                res[mode] = m
                self.val_csv.write({"step": step, "mode": mode, "psnr": f"{m['psnr']:.4f}",
                                    "ssim": f"{m['ssim']:.5f}", "psnr_bicubic": f"{m['psnr_bicubic']:.4f}",
                                    "ssim_bicubic": f"{m['ssim_bicubic']:.5f}", "n": m["n"]})
                if self.tb is not None:
                    self.tb.add_scalar(f"val/psnr_{mode}", m["psnr"], step)
                    self.tb.add_scalar(f"val/ssim_{mode}", m["ssim"], step)
        self.model.train()
        key = cfg.best_mode if cfg.best_mode in res else modes[0]  # the mode the config names
        if res and res[key]["psnr"] > self.best:
            self.best = res[key]["psnr"]
            self.save(self.run_dir / BEST)
        if final or time.perf_counter() - self._curve_t >= CURVE_EVERY_S:
            plot_curves(self.run_dir)  # ~0.7 s of matplotlib: a fifth of a short run at val_every 20
            self._curve_t = time.perf_counter()
        return res

    def checkpoint(self) -> dict[str, Any]:
        """The training checkpoint of the current step (plain types and tensors)."""
        cfg = self.cfg
        return {
            "format": CKPT_FORMAT, "format_version": CKPT_VERSION,
            "arch": cfg.arch, "scale": int(cfg.scale), "model_options": dict(self.options),
            "step": int(self.step_count), "model": self.model.state_dict(),
            "ema": self.ema.state if self.ema is not None else None,
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "rng": rng_state(), "config": cfg.to_dict(), "best_psnr": float(self.best),
            "adversarial": self.adv.checkpoint_state() if self.adv is not None else None,
            "tool_version": tool_version(),
        }

    def save(self, path: Path) -> None:
        """Write :meth:`checkpoint` atomically to ``path`` (rank 0 only)."""
        if self.dist.main:
            save_atomic(self.checkpoint(), path)

    def save_last(self) -> None:
        """``last.pt`` of the current step; it becomes the last good checkpoint."""
        self.save(self.run_dir / LAST)
        self.last_good = self.step_count
        if self.dist.main and self.on_checkpoint is not None:
            self.on_checkpoint(self.step_count, self.run_dir / LAST)

    # -- the loop ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _progress(self) -> Iterator[Any]:
        cfg = self.cfg
        if not (self.dist.main and cfg.progress):
            yield None
            return
        desc = f"{cfg.arch} x{cfg.scale}" + (f" ({cfg.minutes:g} min budget)" if cfg.minutes else "")
        bar = tqdm(total=self.steps if not cfg.minutes else None, initial=self.start, desc=desc,
                   unit="step", dynamic_ncols=True, file=sys.stderr)
        try:
            yield bar
        finally:
            bar.close()

    def fit(self) -> TrainResult:
        """Train from ``start`` to ``steps`` (or the ``minutes`` budget), validating and saving
        on schedule, then validate the final weights; returns what the run left behind."""
        cfg = self.cfg
        budget = cfg.minutes * 60.0 if cfg.minutes else None
        stopped = "steps"
        self.model.train()
        with self._progress() as bar:
            for batch in self.loader:
                loss, parts = self.step(batch)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
                self.log(loss, parts, force=self.step_count == self.steps)
                out_of_time = budget is not None and time.perf_counter() - self.t0 >= budget
                if out_of_time:
                    stopped = "minutes"
                at_end = self.step_count == self.steps
                if cfg.val_every and self.step_count % cfg.val_every == 0 and not at_end and not out_of_time:
                    self.validate()
                if self.step_count % max(1, cfg.ckpt_every) == 0 or at_end or out_of_time:
                    self.save_last()
                if out_of_time:
                    break
        wall = time.perf_counter() - self.t0
        if self.step_count == self.start or self.step_count != self.last_good:
            self.save_last()  # no steps (bicubic / resume at the end) or stopped early
        val = self.validate(final=True)
        done = max(self.step_count - self.start, 0)
        return TrainResult(
            run_dir=self.run_dir, step=self.step_count, checkpoint=self.run_dir / LAST, stopped=stopped,
            wall_s=wall, samples_per_s=done * int(cfg.batch_size) / wall if wall > 0 else 0.0, val=val,
            rank=self.dist.rank,
        )

    def close(self) -> None:
        """Close TensorBoard, wait for every rank, leave the process group."""
        tb, self.tb = getattr(self, "tb", None), None
        if tb is not None:
            tb.close()
        barrier(self.dist)
        finish_distributed(self.dist)


def train(cfg: TrainConfig, *, resume: bool = False, explicit: set[str] | None = None,
          on_checkpoint: Callable[[int, Path], None] | None = None) -> TrainResult:
    """Train ``cfg.arch`` on ``cfg.store`` and return where the results are.

    ``explicit`` names the options the user gave (only used with ``resume``);
    ``on_checkpoint(step, path)`` is called after each ``last.pt`` write.
    """
    cfg = prepare_run(cfg, resume=resume, explicit=explicit)
    trainer = Trainer(cfg, on_checkpoint=on_checkpoint)
    if resume:
        trainer.restore(load_checkpoint(trainer.run_dir / LAST))
    trainer.prepare()
    result = trainer.fit()
    trainer.close()
    return result
