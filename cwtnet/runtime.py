"""Where a run executes: the device and the ``torchrun`` process group.

``resolve_device`` picks CPU or CUDA at run time; ``init_distributed`` joins the
process group that ``torchrun`` describes in its environment (RANK, WORLD_SIZE,
LOCAL_RANK): NCCL on CUDA, gloo on CPU. One process without ``torchrun`` is
``Dist(rank=0, world=1)`` and every call here is then a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from cwtnet.choices import DEVICES
from mlcamsr.errors import InputError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present else CPU; ``cuda`` without CUDA -> ``InputError``.

    Under ``torchrun`` on CUDA the device is ``cuda:LOCAL_RANK``.
    """
    if name not in DEVICES:
        raise InputError(f"--device {name!r} is unknown; choose {', '.join(DEVICES)}")
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
        """``True`` on rank 0, the process that writes files and logs."""
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the ``torchrun`` process group (NCCL on CUDA, gloo on CPU) when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not tdist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=tdist.get_rank(), world=tdist.get_world_size())


def barrier(dist: Dist) -> None:
    """Wait for every process of the group (no-op for one process)."""
    if dist.world > 1:
        tdist.barrier()


def finish_distributed(dist: Dist) -> None:
    """Leave the process group (no-op for one process)."""
    if dist.world > 1 and tdist.is_initialized():
        tdist.destroy_process_group()
