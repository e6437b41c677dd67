"""Training and evaluation data: store checks, the dataset factory, step-indexed batches.

Exact resume. Every batch is a pure function of ``(seed, step)``: the step-indexed
sampler (:class:`StepBatchSampler`) draws the per-epoch permutation from
``seed + epoch`` (DistributedSampler semantics, each rank takes its stride of the
global batch) and gives each item its own augmentation seed, which the dataset
wrapper (:class:`SeededItems`) uses inside a forked RNG. So the batches do not
depend on DataLoader workers, on how many iterators were made, or on a restart.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from cwtnet.config import TrainConfig
from mlcamsr.dataset import TripletDataset
from mlcamsr.errors import InputError, StoreError
from mlcamsr.store import Store, open_store


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
        """This rank's ``(dataset index, augmentation seed)`` pairs of global step ``step``."""
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
    A dataset with ``reseed(seed)`` (``TripletDataset``'s crop/augmentation generator)
    is reseeded with the item's seed.
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
            reseed = getattr(self.dataset, "reseed", None)
            if reseed is not None:
                reseed(seed)
            random.seed(seed)
            np.random.seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


def check_store(store_path: str, scale: int, *, ref_source: str = "real", need_train: bool = True,
                split: str = "test", patch: int | None = None) -> Store:
    """Open the store and check what training/evaluation at ``scale`` needs; one-line errors.

    ``patch``: the training LR patch (LR px), checked against the finest member's size.
    """
    store = open_store(store_path)
    table = store.table
    members = list(store.members)
    if not members:
        raise StoreError(f"{store_path}: the store has no members; run `mlcamsr extract` first")
    finest = members[0]
    if ref_source == "real":  # I'_GT: the real member one level coarser than gt (20x at x2)
        f = max(2, scale // 2)
        try:
            mag = float(finest.rstrip("x"))
            need: str | None = f"{mag / f:g}x"
        except ValueError:
            need = None
        if need is not None and need not in members:
            raise StoreError(
                f"{store_path}: x{scale} needs the member {need!r} as the WT-branch reference, "
                f"but the store holds {', '.join(members)}; extract with --scales including "
                f"{f} or train with --ref-source bicubic"
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


def make_dataset(store: Store, cfg: TrainConfig, split: str, *, train: bool, patch: int | None,
                 full: bool = False) -> TripletDataset:
    """The project's ``TripletDataset`` for ``split`` (augmented for training only).

    ``patch``: LR px; one at least as large as the whole patch becomes the whole patch
    (``full``) when not training.
    """
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
    if cfg.cache_dir is not None:
        kwargs["cache_dir"] = cfg.cache_dir
    return TripletDataset(store, **kwargs)
