"""Checkpoints: the format, atomic writes, safe loads, and the RNG state they carry.

A checkpoint is a ``dict`` of plain types and tensors (so it loads with
``torch.load(weights_only=True)``) marked ``format: "cwtnet-checkpoint"``,
``format_version: 1``, holding ``arch``, ``scale``, ``model_options``, ``step``,
``model`` (state dict), ``ema`` (state dict or ``None``) and ``config``
(``TrainConfig.to_dict()``); a training checkpoint adds ``optimizer``, ``scheduler``,
``rng`` (:func:`rng_state`) and ``best_psnr``. Files are written atomically
(temporary file in the same folder, fsync, ``os.replace``).
"""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cwtnet.config import TrainConfig
from cwtnet.model import build_checked
from mlcamsr import __version__
from mlcamsr.errors import InputError

CKPT_FORMAT = "cwtnet-checkpoint"
CKPT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"


def tool_version() -> str:
    """The version string written into every checkpoint."""
    return str(__version__)


def rng_state() -> dict[str, Any]:
    """The torch, numpy, python (and CUDA) global RNG states as plain types and tensors."""
    np_state: tuple[Any, ...] = tuple(np.random.get_state())
    state: dict[str, Any] = {
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


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where CUDA is present)."""
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
        "config": TrainConfig(arch=arch, scale=int(scale)).to_dict(), "tool_version": tool_version(),
    }, p)
    return p


def _unreadable(exc: BaseException, most: int = 160) -> str:
    """Why ``torch.load`` failed, in words: a refused object (weights_only) apart from a
    cut or foreign file; the library's message shortened at a word, never mid-word."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if len(msg) > most:
        msg = msg[:most].rsplit(" ", 1)[0] + " ..."
    if "weights_only" in msg or "Weights only load failed" in msg:
        return (
            "not a CWT-Net checkpoint: it holds objects other than tensors and plain data, "
            "which are never unpickled (weights_only=True); give a .pt written by cwtnet-train"
        )
    return (
        f"not a CWT-Net checkpoint: truncated, or not a .pt file ({msg}); give a .pt written "
        "by cwtnet-train"
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; anything not ours -> ``InputError``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--checkpoint {p}: no such file; give a .pt written by cwtnet-train")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise InputError(f"{p}: {_unreadable(exc)}") from None
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
    # a checkpoint from before an option builds with CWTNetOptions' default, the paper's
    # reading, which is what such a run trained (cwtnet.choices.PAPER_READING)
    model = build_checked(ckpt["arch"], int(ckpt["scale"]), dict(ckpt.get("model_options") or {}))
    state = ckpt["ema"] if (use_ema and ckpt.get("ema")) else ckpt["model"]
    if state:
        model.load_state_dict(state)
    model.to(device).eval()
    return model, ckpt
