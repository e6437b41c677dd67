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

WT_BANDS: tuple[str, ...] = ("hh", "detail")
"""CWT-Net's ``wt_bands``: the Haar sub-bands of the reference that feed the WT branch (and
are L_WT's target). ``hh`` is Eq. (4), F_HH only (3 channels). ``detail`` is LH, HL and HH of
the same orthonormal Haar DWT (9 channels): the three bands that hold everything the LR
image lacks at x2. On real H&E at x2 a perfect HH band raises bicubic's PSNR by only
~0.34 dB, all three detail bands by ~6.8 dB (``bench/band_oracle.py``; docs/cwtnet.md,
"What the reference can carry")."""

V_MODES: tuple[str, ...] = ("paper", "ttsr")
"""CWT-Net's ``v_mode``: the Transformer's K/V order, ``paper`` (K = f_hwt, V = f_hwt up-down,
III-D) or ``ttsr`` (K = f_hwt down-up, V = f_hwt itself, as TTSR)."""

PAPER_READING: dict[str, str | int | None] = {"wt_bands": "hh", "v_mode": "paper", "search_window": None}
"""The paper as written (Eq. 4, III-D, a global search): ``CWTNetOptions``' defaults, and the
value of each key for a run or checkpoint made before the option existed."""

DEFAULT_WT_BANDS = "detail"
DEFAULT_V_MODE = "ttsr"
DEFAULT_SEARCH_WINDOW = 2
"""``cwtnet-train``'s defaults (``TrainConfig``): the setting in which the reference reaches
the output (docs/cwtnet.md, "Making the reference matter": with the ground truth as
reference, +0.34 / +0.53 dB over SISR mode at 1,500 steps, where the paper's reading gives
-0.003 dB). ``--wt-bands hh --v-mode paper --search-window global`` is the paper's reading."""

EXPERIMENT_SIZES: tuple[str, ...] = ("small", "paper")
"""``cwtnet-experiment --size``: CPU-sized rows or the paper's configuration."""
