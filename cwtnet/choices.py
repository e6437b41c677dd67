"""The choice lists of cwtnet that are neither a network nor a dataset property.

One home each; imports nothing heavy, so ``cli/common.py`` builds click options from
them without importing torch. The other lists live with what they choose:
architectures in :data:`cwtnet.model.ARCH_NAMES`, network scales in
:data:`cwtnet.model.MODEL_SCALES`, dataset scales and reference sources in
:mod:`mlcamsr.triplets`.
"""

from __future__ import annotations

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
"""``--device``: ``auto`` = CUDA when present, else CPU (:func:`cwtnet.runtime.resolve_device`)."""

SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step")
"""Learning-rate schedules of ``cwtnet-train`` (:func:`cwtnet.train.make_scheduler`)."""

EVAL_MODES: tuple[str, ...] = ("reference", "sisr")
"""CWT-Net inference modes: with the reference I'_GT, or single-image SR through the WR module."""

EXPERIMENT_TABLES: tuple[str, ...] = ("table1", "table2", "table3", "table4", "table5", "wr")
"""``cwtnet-experiment TABLE``: the paper's Tables I-V and the WR comparison (:mod:`cwtnet.experiment`)."""

EXPERIMENT_SIZES: tuple[str, ...] = ("small", "paper")
"""``cwtnet-experiment --size``: CPU-sized rows or the paper's configuration."""
