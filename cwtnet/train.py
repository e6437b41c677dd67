"""The trainer behind ``cwtnet-train``: data, model, loss, checkpoints, logs, validation.

Exact resume. Every batch is a pure function of ``(seed, step)``: the step-indexed
sampler (:class:`StepBatchSampler`) draws the per-epoch permutation from
``seed + epoch`` (DistributedSampler semantics, each rank takes its stride of the
global batch) and gives each item its own augmentation seed, which the dataset
wrapper (:class:`SeededItems`) uses inside a forked RNG. So the batches do not
depend on DataLoader workers, on how many iterators were made, or on a restart.
Model-side randomness (e.g. dropping the reference) comes from the global RNGs,
whose states are saved in every checkpoint with the model, EMA, optimizer and
scheduler. On CPU, 20 steps straight and 10 + kill -9 + resume 10 give identical
weights (``tests/test_train.py``).

Checkpoints are written atomically (temporary file, fsync, ``os.replace``) and hold
only plain types and tensors, so they load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cwtnet.config import TrainConfig, write_config
from mlcamsr.errors import InputError, MLCamSRError, StoreError

CKPT_FORMAT = "cwtnet-checkpoint"
CKPT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"

# Keys a resumed run may change; every other option must match the run's own config.
RESUME_MUTABLE = {
    "steps", "minutes", "progress", "tensorboard", "num_workers", "device",
    "val_every", "ckpt_every", "log_every", "val_images", "store", "out", "compile",
}


class TrainingDiverged(MLCamSRError):
    """The loss became NaN or inf; the last good checkpoint is kept."""

    exit_code = 1


# --------------------------------------------------------------------------- device / ddp


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present else CPU; ``cuda`` without CUDA -> ``InputError``."""
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


@dataclass
class Dist:
    """Process-group facts (``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the ``torchrun`` process group (NCCL on CUDA, gloo on CPU) when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as tdist

    if not tdist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=tdist.get_rank(), world=tdist.get_world_size())


def _barrier(dist: Dist) -> None:
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.barrier()


# --------------------------------------------------------------------------- data


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields, for each step in ``[start_step, steps)``, this rank's list of ``(index, seed)``.

    Global sample position ``q = step * batch_size + k`` (k < batch_size) lives in epoch
    ``q // n`` and takes element ``q % n`` of ``randperm(n)`` drawn from ``seed``, epoch;
    rank r takes positions ``k = r * per_rank ... (r + 1) * per_rank - 1``. Each item also
    carries its own augmentation seed, a function of ``(seed, q)``.
    """

    def __init__(
        self, n: int, batch_size: int, *, seed: int, start_step: int, steps: int,
        rank: int = 0, world: int = 1,
    ) -> None:
        if batch_size % world:
            raise InputError(
                f"--batch-size {batch_size} is not divisible by the {world} processes; "
                "use a multiple of --nproc-per-node"
            )
        self.n, self.batch, self.seed = n, batch_size, seed
        self.start, self.steps, self.rank, self.world = start_step, steps, rank, world
        self._perm: tuple[int, torch.Tensor] | None = None

    def _perm_for(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        return self._perm[1]

    def batch_for(self, step: int) -> list[tuple[int, int]]:
        per = self.batch // self.world
        out = []
        for k in range(self.rank * per, (self.rank + 1) * per):
            q = step * self.batch + k
            idx = int(self._perm_for(q // self.n)[q % self.n])
            out.append((idx, (self.seed * 1_000_003 + q) % 2**31))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.steps):
            yield self.batch_for(step)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


class SeededItems(torch.utils.data.Dataset):
    """Wraps a dataset: item ``(index, seed)`` is ``dataset[index]`` drawn with all RNGs seeded.

    The global torch/numpy/python RNG states are restored afterwards, so loading data
    (in the main process when ``num_workers=0``) never disturbs training randomness.
    """

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # TripletDataset draws crops/rotations from a numpy Generator that it seeds from
            # torch.initial_seed() when unset: unset it so this item's seed drives it.
            if hasattr(self.dataset, "_rng"):
                self.dataset._rng = None
            random.seed(seed)
            np.random.seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


def check_store(store_path: str, scale: int, *, ref_source: str = "real", need_train: bool = True,
                split: str = "test", patch: int | None = None) -> Any:
    """Open the store and check what training/evaluation at ``scale`` needs; one-line errors.

    ``patch``: the training LR patch, checked against the finest member's size.
    """
    from mlcamsr.store import open_store

    store = open_store(store_path)
    table = store.table
    members = list(store.members)
    if not members:
        raise StoreError(f"{store_path}: the store has no members; run `mlcamsr extract` first")
    finest = members[0]
    if ref_source == "real" and scale > 2:
        try:
            mag = float(finest.rstrip("x"))
            need = f"{mag / (scale // 2):g}x"
        except ValueError:
            need = None
        if need is not None and need not in members:
            raise StoreError(
                f"{store_path}: x{scale} needs the member {need!r} as the WT-branch reference, "
                f"but the store holds {', '.join(members)}; extract with --scales including "
                f"{scale // 2} or train with --ref-source bicubic"
            )
    if patch is not None:
        size = int(store.member_info(finest)["size"])
        if scale * int(patch) > size:
            raise InputError(
                f"--patch {patch} at scale {scale} needs a {scale * int(patch)}-px gt crop, but "
                f"{store_path}'s {finest} patches are {size} px; use --patch {size // scale} or less"
            )
    if "split" not in table.columns or table["split"].isna().all() or (
        table["split"].astype(str).isin(["train", "test"]).sum() == 0
    ):
        raise StoreError(f"{store_path}: the store has no train/test split; run `mlcamsr split {store_path}` first")
    kept = table[table.get("status", "kept") == "kept"] if "status" in table.columns else table
    splits = kept["split"].astype(str)
    if need_train and (splits == "train").sum() == 0:
        raise StoreError(f"{store_path}: the train split is empty; rerun `mlcamsr split` with another --ratio")
    if (splits == split).sum() == 0:
        raise StoreError(
            f"{store_path}: the {split} split is empty; rerun `mlcamsr split --overwrite` with another --ratio"
        )
    return store


def make_dataset(store: Any, cfg: TrainConfig, split: str, *, train: bool, patch: int | None,
                 full: bool = False) -> torch.utils.data.Dataset:
    """The project's ``TripletDataset`` for ``split`` (augmented for training only).

    A ``patch`` larger than the store's patches allow becomes the whole patch when not training.
    """
    from mlcamsr.dataset import TripletDataset

    if not train and patch is not None:
        whole = int(store.member_info(store.members[0])["size"]) // int(cfg.scale)
        if patch >= whole:
            patch, full = None, True

    kwargs: dict[str, Any] = dict(
        split=split, scale=int(cfg.scale), patch=int(patch or cfg.patch),
        ref_source=cfg.ref_source, augment=train, in_memory=bool(cfg.in_memory and train),
    )
    if full:
        kwargs["full"] = True
    return TripletDataset(store, **kwargs)


# --------------------------------------------------------------------------- model


# TrainConfig.blocks / .channels -> the option names of each architecture's dataclass.
_BLOCKS_KEY = {"cwtnet": "n_cwtb", "edsr": "num_block", "rcan": "num_group"}
_CHANNELS_KEY = {"cwtnet": "num_feat", "edsr": "num_feat", "rcan": "num_feat"}


def model_options(cfg: TrainConfig) -> dict[str, Any]:
    """``build_model`` keyword options from ``cfg`` (``blocks``/``channels`` + ``model_options``)."""
    opts: dict[str, Any] = {}
    if cfg.blocks is not None:
        if cfg.arch not in _BLOCKS_KEY:
            raise InputError(f"--blocks does not apply to --arch {cfg.arch}")
        opts[_BLOCKS_KEY[cfg.arch]] = int(cfg.blocks)
    if cfg.channels is not None:
        if cfg.arch not in _CHANNELS_KEY:
            raise InputError(f"--channels does not apply to --arch {cfg.arch}")
        opts[_CHANNELS_KEY[cfg.arch]] = int(cfg.channels)
    opts.update(cfg.model_options or {})
    return opts


def build(arch: str, scale: int, options: dict[str, Any]) -> nn.Module:
    """``cwtnet.model.build_model`` with a one-line error for a bad option."""
    from cwtnet.model import build_model

    try:
        return build_model(arch, int(scale), **options)
    except InputError:
        raise
    except (TypeError, ValueError) as exc:
        raise InputError(f"model options for --arch {arch}: {exc}") from None


class TrainStep(nn.Module):
    """One module whose ``forward`` is the training forward (what DDP must wrap).

    CWT-Net: ``forward_train(lr, ref)`` -> dict for ``CWTLoss``; others: ``model(lr, ref)``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, lr: torch.Tensor, ref: torch.Tensor) -> Any:
        if hasattr(self.model, "forward_train"):
            return self.model.forward_train(lr, ref)
        return self.model(lr, ref)


def has_params(model: nn.Module) -> bool:
    return any(p.requires_grad for p in model.parameters())


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
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                self.state[k].copy_(v)


def make_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer) -> Any:
    sched = torch.optim.lr_scheduler
    if cfg.schedule == "cosine":
        return sched.CosineAnnealingLR(opt, T_max=max(1, int(cfg.steps)), eta_min=cfg.lr * 0.01)
    if cfg.schedule == "step":
        return sched.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.gamma)
    return sched.ConstantLR(opt, factor=1.0, total_iters=0)


# --------------------------------------------------------------------------- checkpoints


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4]),
        },
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_model(model: nn.Module, path: str | Path, *, arch: str, scale: int,
               options: dict[str, Any] | None = None) -> Path:
    """Write weights alone as a checkpoint that ``cwtnet-eval``/``cwtnet-sr`` accept
    (e.g. imported or untrained weights); it cannot be resumed."""
    p = Path(path)
    save_atomic({
        "format": CKPT_FORMAT, "format_version": CKPT_VERSION, "arch": arch, "scale": int(scale),
        "model_options": dict(options or {}), "step": 0, "model": model.state_dict(), "ema": None,
        "config": TrainConfig(arch=arch, scale=int(scale)).to_dict(), "tool_version": _tool_version(),
    }, p)
    return p


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; anything not ours -> ``InputError``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--checkpoint {p}: no such file; give a .pt written by cwtnet-train")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{p}: not a CWT-Net checkpoint (cannot be loaded safely: {first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise InputError(f"{p}: not a CWT-Net checkpoint (no '{CKPT_FORMAT}' marker); give a .pt written by cwtnet-train")
    if int(ckpt.get("format_version", 0)) > CKPT_VERSION:
        raise InputError(f"{p}: checkpoint format {ckpt['format_version']} is newer than this tool; upgrade")
    return ckpt


def load_model(
    path: str | Path, *, use_ema: bool = True, device: torch.device | str = "cpu",
    arch: str | None = None, scale: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint (EMA weights when present and asked) in eval mode.

    ``arch``/``scale`` given and different from the checkpoint's -> ``InputError``.
    """
    ckpt = load_checkpoint(path)
    if arch is not None and arch != ckpt["arch"]:
        raise InputError(f"{path}: checkpoint is for --arch {ckpt['arch']}, not {arch}; pass the matching checkpoint")
    if scale is not None and int(scale) != int(ckpt["scale"]):
        raise InputError(
            f"{path}: checkpoint is for x{ckpt['scale']}, not x{scale}; use --scale {ckpt['scale']} "
            "or a checkpoint trained at this scale"
        )
    model = build(ckpt["arch"], int(ckpt["scale"]), dict(ckpt.get("model_options") or {}))
    state = ckpt["ema"] if (use_ema and ckpt.get("ema")) else ckpt["model"]
    if state:
        model.load_state_dict(state)
    model.to(device).eval()
    return model, ckpt


# --------------------------------------------------------------------------- logs


def _timestamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.arch}_x{cfg.scale}_{_timestamp()}"


class CsvLog:
    """Append-only CSV with a fixed header; on resume rows after ``keep_until`` are dropped."""

    def __init__(self, path: Path, keep_until: int | None = None) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if path.exists() and keep_until is not None:
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows:
                self.fields = list(rows[0].keys())
            rows = [r for r in rows if int(float(r["step"])) <= keep_until]
            with open(path, "w", newline="") as fh:
                if self.fields:
                    w = csv.DictWriter(fh, fieldnames=self.fields)
                    w.writeheader()
                    w.writerows(rows)
        elif path.exists():
            path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row.keys())
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def plot_curves(run_dir: Path) -> Path | None:
    """``RUN_DIR/curve.png``: training loss and validation PSNR against step."""
    log, val = read_csv(run_dir / "log.csv"), read_csv(run_dir / "val.csv")
    if not log and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if log:
        steps = [int(r["step"]) for r in log]
        axes[0].plot(steps, [float(r["loss"]) for r in log], lw=1)
        axes[0].set_yscale("log")
    axes[0].set(xlabel="step", ylabel="training loss", title="L_CWT (train)")
    modes = sorted({r["mode"] for r in val})
    for mode in modes:
        rows = [r for r in val if r["mode"] == mode]
        axes[1].plot([int(r["step"]) for r in rows], [float(r["psnr"]) for r in rows], "o-", label=mode)
        if mode == modes[0]:
            axes[1].plot([int(r["step"]) for r in rows], [float(r["psnr_bicubic"]) for r in rows],
                         "kx--", lw=1, label="bicubic")
    axes[1].set(xlabel="step", ylabel="PSNR (dB, RGB, no crop)", title="validation (test split)")
    if modes:
        axes[1].legend()
    fig.tight_layout()
    out = run_dir / "curve.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _tensorboard(run_dir: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - tensorboard is an optional extra
        return None
    return SummaryWriter(str(run_dir / "tb"))


# --------------------------------------------------------------------------- training


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
        saved = TrainConfig.from_dict(load_checkpoint(ckpt_path)["config"], source=str(ckpt_path))
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


def train(cfg: TrainConfig, *, resume: bool = False, explicit: set[str] | None = None) -> TrainResult:
    """Train ``cfg.arch`` on ``cfg.store`` and return where the results are.

    ``explicit`` names the options the user gave (only used with ``resume``).
    """
    cfg = prepare_run(cfg, resume=resume, explicit=explicit)
    device = resolve_device(cfg.device)
    store = check_store(cfg.store, int(cfg.scale), ref_source=cfg.ref_source, patch=int(cfg.patch))
    dist = init_distributed(device)
    run_dir = Path(cfg.out)  # type: ignore[arg-type]
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    _barrier(dist)

    from cwtnet.losses import CWTLoss

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    options = model_options(cfg)
    model = build(cfg.arch, int(cfg.scale), options).to(device)
    use_cuda = device.type == "cuda"
    if use_cuda and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trainable = has_params(model)
    if dist.world > 1:  # same initial weights everywhere (DDP broadcasts them), per-rank randomness after
        torch.manual_seed(cfg.seed * 1000 + dist.rank)
    criterion = CWTLoss(**(cfg.loss or {}))
    opt = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad] or [nn.Parameter(torch.zeros(1))],
        lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
    )
    sched = make_scheduler(cfg, opt)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    start = 0
    best = -math.inf
    if resume:
        ckpt = load_checkpoint(run_dir / LAST)
        model.load_state_dict(ckpt["model"])
        if ema is not None and ckpt.get("ema"):
            ema.state = {k: v.to(device) for k, v in ckpt["ema"].items()}
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"])
        start = int(ckpt["step"])
        best = float(ckpt.get("best_psnr", -math.inf))
    if dist.main:
        write_config(cfg, run_dir / "config.yaml")

    step_module: nn.Module = TrainStep(model)
    if dist.world > 1 and trainable:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # a zero loss weight (Table IV "only SR" / "only WT", lambda_wr 0) leaves a part of
        # CWT-Net without gradient, which plain DDP takes for a broken graph
        unused = cfg.arch == "cwtnet" and min(criterion.weights.values()) == 0
        step_module = DDP(step_module, device_ids=[device.index] if use_cuda else None,
                          find_unused_parameters=unused)
    if cfg.compile:
        step_module = torch.compile(step_module)

    train_ds = make_dataset(store, cfg, "train", train=True, patch=cfg.patch)
    val_ds = make_dataset(store, cfg, "test", train=False, patch=cfg.val_patch,
                          full=cfg.val_patch is None) if dist.main else None
    steps = int(cfg.steps) if trainable else start
    sampler = StepBatchSampler(len(train_ds), int(cfg.batch_size), seed=cfg.seed, start_step=start,
                               steps=steps, rank=dist.rank, world=dist.world)
    loader = torch.utils.data.DataLoader(
        SeededItems(train_ds), batch_sampler=sampler, num_workers=int(cfg.num_workers),
        pin_memory=use_cuda, persistent_workers=False,
        # its own generator: making the iterator must not draw from the global RNG (exact resume)
        generator=torch.Generator().manual_seed(cfg.seed),
        multiprocessing_context="spawn" if cfg.num_workers and sys.platform == "darwin" else None,
    )

    log = CsvLog(run_dir / "log.csv", keep_until=start if resume else None) if dist.main else None
    # a resume with nothing left to train validates step `start` again: drop its old rows
    val_keep = (start - 1 if start >= steps else start) if resume else None
    val_log = CsvLog(run_dir / "val.csv", keep_until=val_keep) if dist.main else None
    tb = _tensorboard(run_dir, cfg.tensorboard) if dist.main else None
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if (use_cuda and cfg.amp) else contextlib.nullcontext()
    )

    def checkpoint(step: int, path: Path) -> None:
        if not dist.main:
            return
        save_atomic({
            "format": CKPT_FORMAT, "format_version": CKPT_VERSION,
            "arch": cfg.arch, "scale": int(cfg.scale), "model_options": dict(options),
            "step": int(step), "model": model.state_dict(),
            "ema": ema.state if ema is not None else None,
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": _rng_state(), "config": cfg.to_dict(), "best_psnr": float(best),
            "tool_version": _tool_version(),
        }, path)

    def run_validation(step: int) -> dict[str, Any]:
        nonlocal best
        if not dist.main or val_ds is None:
            return {}
        from cwtnet.evaluate import score_dataset

        modes = ["reference", "sisr"] if cfg.arch == "cwtnet" else ["sisr"]
        res: dict[str, Any] = {}
        # validation must not move the training RNG (the EMA copy's init draws from it):
        # otherwise --val-every changes the run, and a run extended with --resume differs
        with torch.random.fork_rng(devices=[device] if use_cuda else []):
            eval_model = model
            if ema is not None:  # a fresh copy (deepcopy fails on the WT output a model keeps)
                eval_model = build(cfg.arch, int(cfg.scale), options).to(device)
                eval_model.load_state_dict(ema.state)
            eval_model.eval()
            for mode in modes:
                m = score_dataset(eval_model, val_ds, scale=int(cfg.scale), mode=mode, device=device,
                                  max_images=cfg.val_images or None, amp=use_cuda and cfg.amp)
                res[mode] = m
                val_log.write({"step": step, "mode": mode, "psnr": f"{m['psnr']:.4f}",
                               "ssim": f"{m['ssim']:.5f}", "psnr_bicubic": f"{m['psnr_bicubic']:.4f}",
                               "ssim_bicubic": f"{m['ssim_bicubic']:.5f}", "n": m["n"]})
                if tb is not None:
                    tb.add_scalar(f"val/psnr_{mode}", m["psnr"], step)
                    tb.add_scalar(f"val/ssim_{mode}", m["ssim"], step)
        model.train()
        if res and res[modes[0]]["psnr"] > best:
            best = res[modes[0]]["psnr"]
            checkpoint(step, run_dir / BEST)
        plot_curves(run_dir)
        return res

    bar = None
    if dist.main and cfg.progress:
        from tqdm import tqdm

        desc = f"{cfg.arch} x{cfg.scale}" + (f" ({cfg.minutes:g} min budget)" if cfg.minutes else "")
        bar = tqdm(total=steps if not cfg.minutes else None, initial=start, desc=desc, unit="step",
                   dynamic_ncols=True, file=sys.stderr)
    model.train()
    t0 = time.perf_counter()
    t_window, n_window = t0, 0
    step = start
    stopped = "steps"
    val_res: dict[str, Any] = {}
    budget = cfg.minutes * 60.0 if cfg.minutes else None
    last_good = start
    for batch in loader:
        lr_img = batch["lr"].to(device, non_blocking=True)
        ref = batch["ref"].to(device, non_blocking=True)
        gt = batch["gt"].to(device, non_blocking=True)
        if use_cuda and cfg.channels_last:
            lr_img, ref = (t.contiguous(memory_format=torch.channels_last) for t in (lr_img, ref))
        with autocast:
            out = step_module(lr_img, ref)
        out = _to_float(out)
        loss, parts = criterion(out, gt)
        if not torch.isfinite(loss):
            if bar is not None:
                bar.close()
            raise TrainingDiverged(
                f"loss became {loss.item()} at step {step + 1}; stopped. The last good checkpoint "
                f"is {run_dir / LAST} (step {last_good}); lower --lr or set grad_clip, then --resume"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(model, step)
        step += 1
        n_window += lr_img.shape[0] * dist.world
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if dist.main and (step % max(1, cfg.log_every) == 0 or step == steps):
            now = time.perf_counter()
            row = {"step": step, "loss": f"{loss.item():.6f}"}
            row.update({k: f"{float(v):.6f}" for k, v in (parts or {}).items()})
            row.update({"lr": f"{sched.get_last_lr()[0]:.3e}",
                        "samples_per_s": f"{n_window / max(now - t_window, 1e-9):.2f}",
                        "elapsed_s": f"{now - t0:.1f}"})
            log.write(row)
            if tb is not None:
                tb.add_scalar("train/loss", loss.item(), step)
            t_window, n_window = now, 0
        out_of_time = budget is not None and time.perf_counter() - t0 >= budget
        if out_of_time:
            stopped = "minutes"
        if cfg.val_every and step % cfg.val_every == 0 and step != steps and not out_of_time:
            val_res = run_validation(step)
        if step % max(1, cfg.ckpt_every) == 0 or step == steps or out_of_time:
            checkpoint(step, run_dir / LAST)
            last_good = step
            if dist.main:
                print(f"checkpoint step {step} {run_dir / LAST}", flush=True)
        if out_of_time:
            break
    wall = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    if step == start or step != last_good:  # no steps (bicubic / resume at the end) or stopped early
        checkpoint(step, run_dir / LAST)
    val_res = run_validation(step)
    if dist.main:
        plot_curves(run_dir)
    if tb is not None:
        tb.close()
    _barrier(dist)
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.destroy_process_group()
    done = max(step - start, 0)
    return TrainResult(
        run_dir=run_dir, step=step, checkpoint=run_dir / LAST, stopped=stopped, wall_s=wall,
        samples_per_s=done * int(cfg.batch_size) / wall if wall > 0 else 0.0, val=val_res,
        rank=dist.rank,
    )


def _to_float(out: Any) -> Any:
    if isinstance(out, dict):
        return {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v)
                for k, v in out.items()}
    return out.float()


def _tool_version() -> str:
    try:
        from mlcamsr import __version__

        return str(__version__)
    except Exception:  # noqa: BLE001
        return "unknown"
