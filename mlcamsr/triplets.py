"""What a training triplet may be: the SR scales and reference sources the dataset serves.

The one home of these two lists. It imports nothing heavy, so the command line builds
its ``--scale``/``--ref-source`` choices from it without importing torch;
:mod:`mlcamsr.dataset` (which implements them) and :mod:`cwtnet.config` import it too.

``DATASET_SCALES``: the factors ``s`` for which a store of 40x/20x/10x members gives
``(lr, ref, gt)`` triplets (``ref`` is a real member at ``2/s`` of the finest one's
magnification, so ``s`` is 2, 4 or 8). The networks themselves may support more
(``cwtnet.model.MODEL_SCALES``).
"""

from __future__ import annotations

DATASET_SCALES: tuple[int, ...] = (2, 4, 8)
"""SR factors the dataset serves (``TripletDataset(scale=...)``, ``cwtnet-train --scale``)."""

REF_SOURCES: tuple[str, ...] = ("real", "gt", "gt-updown", "lr", "bicubic")
"""WT-branch reference sources (Table III); see :mod:`mlcamsr.dataset` for each rule. ``real``
(I'_GT, a real scan one level coarser, never ``gt``) is the default; ``gt`` is the leaky
upper bound."""
