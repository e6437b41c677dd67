"""``TripletDataset``: aligned (lr, ref, gt) training samples from an MLCamSR store.

SPEC "Training samples". For scale ``s`` in {2, 4, 8} and LR patch ``p``:

- ``gt``  (``s*p`` px): a crop of the finest member (e.g. ``40x``) whose top-left corner
  lies on a multiple of ``s`` (so the crop is on whole pixels of every coarser member).
- ``lr``  (``p`` px): ``imresize(patch, 1/s)`` of the whole finest patch, cropped where
  ``gt`` is -- the project's one MATLAB-style antialiased bicubic (:mod:`mlcamsr.resize`),
  rounded to 8-bit levels like an LR PNG. (Computed on ``gt`` plus a ``4s``-px context,
  which gives exactly that: the same LR as BasicSR's ``LR_bic`` files and as evaluation
  on whole patches, with no mirrored border inside the crop.)
- ``ref`` (``2p`` px, the WT-branch input) covering exactly the tissue of ``gt``; it is
  never ``gt`` itself unless asked for (``ref_source="gt"``, the leaky upper bound):

  ==============  =====================================================================
  ``ref_source``  what ``ref`` is (paper Table III row)
  ==============  =====================================================================
  ``real``        I'_GT ("ours", the default): a REAL scan one level coarser than
                  ``gt``. s=2: the ``20x`` member crop (``p`` px, the slide's own
                  level) brought to ``2p`` by the project's bicubic x2; s=4: the
                  ``20x`` member (native ``2p``); s=8: the ``10x`` member (native ``2p``)
  ``gt``          I_GT (the upper bound row; leaks the target at s=2): s=2: ``gt``
                  itself; s>2: ``imresize(gt, 2/s)`` (8-bit)
  ``gt-updown``   I_GT up-down: ``g = imresize(patch, 2/s)`` (``g`` = the patch for
                  s=2), then ``imresize(imresize(g, 2), 1/2)`` -- up x2 then down x2,
                  each step rounded to 8 bits; cropped where ``gt`` is
  ``lr``          I_LR: ``imresize(LR patch, 2)`` (the 8-bit LR up x2), cropped where
                  ``gt`` is
  ``bicubic``     not a Table III row: the FTMS-style ``*_bicubic`` member of
                  ``mlcamsr pyramid`` in place of the real one (s=2: ``20x_bicubic``
                  brought to ``2p`` by bicubic x2, i.e. the pixels of ``lr`` up x2;
                  s=4: ``20x_bicubic``; s=8: ``10x_bicubic``)
  ==============  =====================================================================

Member crops (``real``, ``bicubic``) start at ``(y0/f, x0/f)`` with ``f = max(2, s/2)``
finest px per member px and cover ``s*p/f`` member px, i.e. the same tissue square as
``gt``; at s=2 the crop is read with a few px of context and brought to ``2p`` there, so
``ref`` equals ``imresize(whole member patch, 2)`` cropped (no mirrored crop border).

Augmentation (``augment=True``): a random 90-degree rotation and a random horizontal
flip, the same for all three images (applied after resizing; the bicubic at integer
factors commutes with them). ``augment=False`` is deterministic: the centre crop (on
the ``s`` grid), or the whole patch with ``full=True`` (``gt`` = finest member,
``lr`` = size/s, ``ref`` = 2*size/s).

Each item is a dict: ``lr``, ``ref``, ``gt`` float32 CHW tensors in [0, 1], ``row``
(the table row), ``index`` (the row in the member arrays).

DataLoader workers (fork or spawn, persistent or not) open the store themselves on
first use: the dataset pickles as its path and settings only. ``in_memory=True`` reads
the members the split needs into numpy arrays once (shared copy-on-write by forked
workers; copied into spawned ones).

Speed: the bicubic is two small torch matmuls with weights precomputed per size (torch
runs single-threaded in DataLoader workers). A sample reads only its crop (plus the
bicubic's context), i.e. ``arr[i, y0:y1, x0:x1, :]``, through
:class:`mlcamsr.store.RegionReader`: the shard's index (cached per worker) and then only
the inner chunks the region touches, one ``pread`` + zstd decode each (other stores
read through zarr, which also decodes only those chunks, at about 3x the overhead).
Extract's default 256-px inner chunks make a 144-px read of a 1024-px patch decode 1-4
chunks (about 2.4 on average) instead of the whole ~3 MB patch; stores with one chunk
per patch still work but decode the whole patch per sample. ``__getitems__`` (called by the DataLoader per
batch) decodes a patch once for all items of the batch that crop from it, when they
would otherwise decode more chunks than the patch has (see ``_cache_threshold``),
and :class:`PatchGroupedSampler` (opt-in) makes batches of such runs. Figures:
docs/benchmarks.md, "Data loading".
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mlcamsr.chunkcache import CachedRegionReader
from mlcamsr.errors import InputError, StoreError
from mlcamsr.remote import is_url
from mlcamsr.resize import resize_weights
from mlcamsr.triplets import DATASET_SCALES as SCALES
from mlcamsr.triplets import REF_SOURCES

__all__ = ["TripletDataset", "PatchGroupedSampler", "REF_SOURCES", "SCALES"]


class _Resizer:
    """Separable bicubic as two small torch matmuls with float32 weights cached per size.

    Input and output are ``(C, H, W)`` float32 tensors holding 8-bit values; the output is
    rounded and clamped to 0..255 (an 8-bit image). Same weights as
    :func:`mlcamsr.resize.imresize`; agrees with it within one grey level (float summation
    order), exactly on almost every pixel. Torch rather than numpy: DataLoader workers run
    torch single-threaded, while numpy's BLAS would start threads in every worker.
    """

    def __init__(self) -> None:
        self._w: dict[tuple[int, int], torch.Tensor] = {}

    def weights(self, in_len: int, out_len: int) -> torch.Tensor:
        key = (in_len, out_len)
        w = self._w.get(key)
        if w is None:
            w = torch.from_numpy(resize_weights(in_len, out_len).astype(np.float32))
            self._w[key] = w
        return w

    def __call__(self, x: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
        wy = self.weights(x.shape[-2], out_h)
        wx = self.weights(x.shape[-1], out_w)
        return torch.matmul(torch.matmul(wy, x), wx.t()).round_().clamp_(0.0, 255.0)


class TripletDataset(Dataset):
    """Aligned ``lr`` / ``ref`` / ``gt`` crops from an MLCamSR store (see module docstring).

    Args:
        store: path or fsspec URL of the store (or an open :class:`mlcamsr.store.Store`).
        split: ``"train"``, ``"test"`` (the table's ``split`` column), or ``"all"`` (every
            kept patch, no split needed). Default ``"train"``.
        scale: SR factor ``s``, one of 2, 4, 8. Default 2.
        patch: LR patch size ``p`` in px (``gt`` is ``s*p``, ``ref`` is ``2p``). Default 64.
        ref_source: ``real`` | ``gt`` | ``gt-updown`` | ``lr`` | ``bicubic`` (Table III,
            module docstring). Default ``real`` (I'_GT, never ``gt``).
        augment: random crops, 90-degree rotations and flips; ``False`` = centre crops.
            Default True.
        in_memory: hold the needed members of the split in RAM (numpy). Default False.
        full: with ``augment=False``, whole patches instead of centre crops. Default False.
        repeat: each patch appears ``repeat`` times per epoch (BasicSR's
            ``dataset_enlarge_ratio``). Default 1.
        storage_options: fsspec options for a store URL (default: ``AWS_*`` environment).
        cache_dir: for a store in object storage, a local folder that keeps a copy of
            each shard read (:mod:`mlcamsr.chunkcache`): epoch 2 reads locally.
    """

    def __init__(
        self,
        store: Any,
        split: str = "train",
        scale: int = 2,
        patch: int = 64,
        ref_source: str = "real",
        augment: bool = True,
        in_memory: bool = False,
        *,
        full: bool = False,
        repeat: int = 1,
        storage_options: dict[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from mlcamsr.store import Store, open_store

        self.storage_options = dict(storage_options or {})
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        if isinstance(store, Store):
            self.path: Any = store.path
            handle = store
        else:
            self.path = store
            handle = open_store(store, mode="r", storage_options=self.storage_options)
        name = str(self.path)
        if scale not in SCALES:
            raise InputError(f"--scale {scale} is not one of {', '.join(map(str, SCALES))}")
        if ref_source not in REF_SOURCES:
            raise InputError(
                f"--ref-source {ref_source!r} is not one of {', '.join(REF_SOURCES)}"
            )
        if int(patch) < 1:
            raise InputError(f"--patch {patch} must be a positive number of LR pixels")
        if full and augment:
            raise InputError("full=True (whole patches) needs augment=False")
        if int(repeat) < 1:
            raise InputError(f"repeat={repeat} must be >= 1")
        self.split, self.scale, self.ref_source = split, int(scale), ref_source
        self.augment, self.in_memory, self.full = bool(augment), bool(in_memory), bool(full)
        self.repeat = int(repeat)

        members = handle.members
        if not members:
            raise StoreError(f"{name} has no members; run `mlcamsr extract` first")
        self.gt_member = members[0]
        info = handle.member_info(self.gt_member)
        self.size = int(info["size"])
        # finest px per ref-member px: the member one level coarser than gt (20x at s=2)
        self.ref_factor = max(2, self.scale // 2)
        self.ref_member = self._ref_member_name(handle, info, name)
        if self.ref_member is not None:
            ref_size = int(handle.member_info(self.ref_member)["size"])
            if ref_size * self.ref_factor != self.size:
                raise StoreError(
                    f"{name}: member {self.ref_member} is {ref_size} px, expected "
                    f"{self.size // self.ref_factor} (1/{self.ref_factor} of {self.gt_member}); "
                    "the store's members do not cover the same square"
                )

        s = self.scale
        if full:
            if self.size % s:
                raise InputError(f"full patches of {self.size} px are not divisible by scale {s}")
            self.patch = self.size // s
        else:
            self.patch = int(patch)
            if s * self.patch > self.size:
                raise InputError(
                    f"--patch {patch} at scale {s} needs a {s * self.patch}-px gt crop, but "
                    f"{name}'s {self.gt_member} patches are {self.size} px; use --patch "
                    f"{self.size // s} or less"
                )
        self.gt_len = s * self.patch
        self.ref_len = 2 * self.patch
        self.ref_crop = self.gt_len // self.ref_factor  # member px read for ref (p at s=2)
        self.ref_up = self.ref_len // self.ref_crop  # 2 at s=2 (bicubic x2), else 1

        table = handle.table
        kept = table["status"] == "kept"
        if split == "all":
            sel = kept
        else:
            if "split" not in table.columns or not (table["split"].fillna("") != "").any():
                raise InputError(
                    f"{name} has no split; run `mlcamsr split {shlex.quote(str(name))}` first"
                )
            sel = kept & (table["split"] == split)
            if not sel.any():
                have = sorted(set(table.loc[kept, "split"].dropna().astype(str)) - {""})
                raise InputError(
                    f"split {split!r} of {name} is empty; splits present: {', '.join(have)}"
                )
        if not sel.any():
            raise InputError(f"{name} has no kept patches; check extract's QC report")
        self.rows = np.asarray(table.index[sel], dtype=np.int64)
        self.indices = np.asarray(table.loc[sel, "index"], dtype=np.int64)
        if (self.indices < 0).any():
            raise StoreError(f"{name}: kept rows with index -1 in the table; the store is damaged")

        self._resize = _Resizer()
        # context read around the gt crop so that lr (and the computed refs) equal the
        # resize of the whole patch, cropped: the /s kernel reaches 2s finest px each side
        self.margin = 0 if full else 4 * s
        self._arrays: dict[str, Any] | None = None
        self._pid: int | None = None
        self._rng: np.random.Generator | None = None
        self._rng_pid: int | None = None
        self._mem: dict[str, np.ndarray] | None = None
        self._batch_cache: dict[tuple[str, int], np.ndarray] | None = None
        if in_memory:
            self._mem = self._load_memory(handle)

    # -- construction helpers ---------------------------------------------------------
    def _ref_member_name(self, handle: Any, info: dict[str, Any], name: str) -> str | None:
        """The member ``ref`` is cropped from, or None when it is computed from ``gt``."""
        if self.ref_source not in ("real", "bicubic"):
            return None
        f = self.ref_factor
        mag = float(info.get("mag", 0) or 0)
        if self.ref_source == "real":
            for m in handle.members:
                mi = handle.member_info(m)
                if mi.get("kind", "real") != "bicubic" and not m.endswith("_bicubic") and (
                    abs(float(mi.get("scale", 0)) - f) < 1e-6
                ):
                    return m
            want = f"{mag / f:g}x" if mag else f"scale {f}"
            raise InputError(
                f"scale {self.scale} with ref_source real needs the {want} member, but {name} "
                f"has {', '.join(handle.members)}; extract with --scales including {f}, or "
                f"use --ref-source bicubic (FTMS-style) or gt-updown"
            )
        target = f"{mag / f:g}x_bicubic" if mag else None
        if target is None or target not in handle:
            raise InputError(
                f"scale {self.scale} with ref_source bicubic needs the {target or 'bicubic'} "
                f"member, which {name} lacks; run `mlcamsr pyramid {shlex.quote(str(name))}` first"
            )
        if not handle.member_info(target).get("complete", True):
            raise InputError(
                f"{name}: {target} is unfinished (an interrupted pyramid); rerun "
                f"`mlcamsr pyramid {shlex.quote(str(name))}` to finish it"
            )
        return target

    def _load_memory(self, handle: Any) -> dict[str, np.ndarray]:
        mem: dict[str, np.ndarray] = {}
        order = np.argsort(self.indices)
        for mname in {m for m in (self.gt_member, self.ref_member) if m is not None}:
            arr = handle.region_reader(mname)  # checked reads: damage is an error, never zeros
            out = np.empty((len(self.indices),) + tuple(arr.shape[1:]), dtype=np.uint8)
            for k in order:
                out[k] = arr[int(self.indices[k])]
            mem[mname] = out
        return mem

    # -- pickling / per-process state ---------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = None
        state["_pid"] = None
        state["_rng"] = None
        state["_rng_pid"] = None
        state["_batch_cache"] = None
        return state

    def _open(self) -> dict[str, Any]:
        pid = os.getpid()
        if self._arrays is None or self._pid != pid:
            from mlcamsr.store import open_store

            # every process opens its own store (and, for a URL, its own filesystem and event
            # loop): an fsspec/aiohttp client must not cross fork
            handle = open_store(self.path, mode="r", storage_options=self.storage_options)
            members = {m for m in (self.gt_member, self.ref_member) if m is not None}
            if self.cache_dir is not None and is_url(self.path):
                self._arrays = {m: CachedRegionReader(handle, m, self.cache_dir) for m in members}
            else:
                self._arrays = {m: handle.region_reader(m) for m in members}
            self._pid = pid
        return self._arrays

    def reseed(self, seed: int | None) -> None:
        """Seed the crop/augmentation generator of this process (``None``: back to the
        default, seeded from ``torch.initial_seed()`` on next use, i.e. per worker)."""
        self._rng = None if seed is None else np.random.default_rng(int(seed))
        self._rng_pid = os.getpid()

    def _generator(self) -> np.random.Generator:
        pid = os.getpid()
        if self._rng is None or self._rng_pid != pid:
            # torch seeds every DataLoader worker differently (base_seed + worker_id)
            self._rng = np.random.default_rng(torch.initial_seed() % (2**63))
            self._rng_pid = pid
        return self._rng

    # -- reading --------------------------------------------------------------------------
    def _crop(self, member: str, k: int, y: int, x: int, h: int, w: int | None = None) -> np.ndarray:
        """``(h, w, 3)`` uint8 pixels of ``member`` for item ``k`` from (y, x) (w defaults to h)."""
        w = h if w is None else w
        if self._mem is not None:
            return self._mem[member][k, y : y + h, x : x + w]
        cached = self._batch_cache.get((member, k)) if self._batch_cache else None
        if cached is not None:
            return cached[y : y + h, x : x + w]
        return self._open()[member].read(int(self.indices[k]), y, x, h, w)

    def _region(self, y0: int, n: int) -> tuple[int, int]:
        """Start and length (multiples of ``s`` away from the gt crop) of the context read."""
        s, m = self.scale, self.margin
        r0 = y0 - m if y0 >= m else y0 % s
        r1 = min(self.size, y0 + n + m)
        return r0, (r1 - r0) // s * s

    def origin(self, k: int, rng: np.random.Generator | None = None) -> tuple[int, int]:
        """Top-left (y, x) of the ``gt`` crop in finest-member px (multiples of ``scale``)."""
        s = self.scale
        room = (self.size - self.gt_len) // s  # origins available on the s grid
        if self.full or room <= 0:
            return 0, 0
        if rng is None:
            return (room // 2) * s, (room // 2) * s
        y, x = rng.integers(0, room + 1, size=2)
        return int(y) * s, int(x) * s

    def __len__(self) -> int:
        return len(self.indices) * self.repeat

    def _sample(
        self, i: int, origin: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(lr, ref, gt)``: float32 CHW tensors of 8-bit values (0..255), not augmented."""
        k = i % len(self.indices)
        if origin is None:
            origin = self.origin(k, self._generator() if self.augment else None)
        y0, x0 = origin
        s, p, G = self.scale, self.patch, self.gt_len
        ry, hy = self._region(y0, G)
        rx, hx = self._region(x0, G)
        oy, ox = y0 - ry, x0 - rx  # gt crop inside the region (multiples of s)
        region = _chw(self._crop(self.gt_member, k, ry, rx, hy, hx))
        gt = region[:, oy : oy + G, ox : ox + G]
        lr_reg = self._resize(region, hy // s, hx // s)
        lr = lr_reg[:, oy // s : oy // s + p, ox // s : ox // s + p]
        if self.ref_member is not None:  # "real" / "bicubic": the coarser member's crop
            ref = self._member_ref(k, y0, x0)
        elif self.ref_source == "gt":
            # I_GT, the leaky upper bound: gt itself (s=2) or gt brought to 2p (8-bit)
            if s == 2:
                ref = gt
            else:
                g = self._resize(region, hy * 2 // s, hx * 2 // s)
                ref = g[:, oy * 2 // s : oy * 2 // s + 2 * p, ox * 2 // s : ox * 2 // s + 2 * p]
        elif self.ref_source == "gt-updown":
            # I_GT (up, down): gt brought to 2p (s > 2), then up x2 and down x2, all 8-bit
            gh, gw = hy * 2 // s, hx * 2 // s
            g = region if s == 2 else self._resize(region, gh, gw)
            g = self._resize(self._resize(g, 2 * gh, 2 * gw), gh, gw)
            ref = g[:, oy * 2 // s : oy * 2 // s + 2 * p, ox * 2 // s : ox * 2 // s + 2 * p]
        else:  # "lr": I_LR up x2
            up = self._resize(lr_reg, 2 * (hy // s), 2 * (hx // s))
            ref = up[:, 2 * (oy // s) : 2 * (oy // s) + 2 * p, 2 * (ox // s) : 2 * (ox // s) + 2 * p]
        return lr.contiguous(), ref.contiguous(), gt.contiguous()

    def _member_ref(self, k: int, y0: int, x0: int) -> torch.Tensor:
        """``ref`` from the coarser member for the gt crop at finest ``(y0, x0)``: the native
        crop (s >= 4), or at s=2 the ``p``-px crop read with context and brought to ``2p``
        by the project's bicubic x2 (equal to the whole member patch up x2, cropped)."""
        member = self.ref_member
        assert member is not None  # only called for "real" / "bicubic"
        f, n = self.ref_factor, self.ref_crop
        my, mx = y0 // f, x0 // f
        if self.ref_up == 1:
            return _chw(self._crop(member, k, my, mx, n))
        size, m, u = self.size // f, 4, self.ref_up
        ry, rx = max(0, my - m), max(0, mx - m)
        hy, hx = min(size, my + n + m) - ry, min(size, mx + n + m) - rx
        up = self._resize(_chw(self._crop(member, k, ry, rx, hy, hx)), u * hy, u * hx)
        oy, ox = u * (my - ry), u * (mx - rx)
        return up[:, oy : oy + self.ref_len, ox : ox + self.ref_len]

    def triplet(
        self, i: int, origin: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lr, ref, gt)`` of item ``i`` as HWC uint8 arrays, without augmentation.

        ``origin`` overrides the gt crop's top-left (y, x) in finest px (tests use it to
        build shifted crops); by default it is what ``__getitem__`` would use.
        """
        return tuple(  # type: ignore[return-value]
            t.permute(1, 2, 0).to(torch.uint8).numpy() for t in self._sample(i, origin)
        )

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        lr, ref, gt = self._sample(i)
        if self.augment:
            rng = self._generator()
            rot, flip = int(rng.integers(4)), bool(rng.integers(2))
            lr, ref, gt = (_augment(t, rot, flip) for t in (lr, ref, gt))
        k = i % len(self.indices)
        return {
            "lr": lr.div(255.0),
            "ref": ref.div(255.0),
            "gt": gt.div(255.0),
            "row": int(self.rows[k]),
            "index": int(self.indices[k]),
        }

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """A whole batch (DataLoader calls this in the worker): a patch that several items
        of the batch crop from is read and decoded once (see :class:`PatchGroupedSampler`).
        """
        ks = [i % len(self.indices) for i in indices]
        if self._mem is None:
            counts: dict[int, int] = {}
            for k in ks:
                counts[k] = counts.get(k, 0) + 1
            arrays = self._open()
            cache: dict[tuple[str, int], np.ndarray] = {}
            if max(counts.values(), default=0) >= 2:
                for m in (self.gt_member, self.ref_member):
                    if m is None:
                        continue
                    need = self._cache_threshold(m, arrays[m])
                    size = int(arrays[m].shape[1])
                    for k, c in counts.items():
                        if c >= need:
                            cache[(m, k)] = arrays[m].read(int(self.indices[k]), 0, 0, size, size)
            self._batch_cache = cache
        try:
            return [self[i] for i in indices]
        finally:
            self._batch_cache = None

    def _cache_threshold(self, member: str, arr: Any) -> int:
        """Crops of one patch in a batch from which reading ``member``'s whole patch once
        decodes fewer chunks than reading each crop (at least 2).

        A read of ``L`` px at a random origin touches on average ``(L - 1) / c + 1`` chunks
        of side ``c`` per axis (at most the ``ceil(size / c)`` there are). Whole-patch
        chunks: 2 (any repeat pays); 256-px chunks of a 1024-px patch with 144-px reads
        (x2, p = 64 plus the bicubic context): 7.
        """
        size, c = int(arr.shape[1]), max(1, int(arr.chunks[1]))
        per_side = -(-size // c)
        if member == self.gt_member:
            length = min(size, self.gt_len + 2 * self.margin)
        else:
            length = min(size, self.ref_crop + (8 if self.ref_up > 1 else 0))
        touched = min(float(per_side), (length - 1) / c + 1)
        return max(2, int(np.ceil(per_side * per_side / (touched * touched))))

    def __repr__(self) -> str:
        return (
            f"TripletDataset({Path(str(self.path)).name!s}, split={self.split!r}, "
            f"scale={self.scale}, patch={self.patch}, ref_source={self.ref_source!r}, "
            f"n={len(self)}, gt={self.gt_member}, ref={self.ref_member or 'computed'})"
        )


class PatchGroupedSampler(Sampler[int]):
    """Shuffled indices in runs of ``crops_per_patch`` items from the same patch.

    With ``batch_size`` a multiple of ``crops_per_patch``, each batch holds
    ``batch_size / crops_per_patch`` patches and :meth:`TripletDataset.__getitems__`
    decodes each once for all its (independently random) crops: on a store with one
    chunk per 1024-px patch this divides the decoding work by ``crops_per_patch``. The
    price is fewer distinct patches per batch; every patch is still visited equally
    often (a fresh permutation per pass). ``crops_per_patch=1`` is plain shuffling.

    Args:
        dataset: the :class:`TripletDataset`.
        crops_per_patch: items in a row from one patch. Default 4.
        seed: base seed; the epoch (:meth:`set_epoch`) is added. Default: random.
    """

    def __init__(self, dataset: TripletDataset, crops_per_patch: int = 4, seed: int | None = None):
        if int(crops_per_patch) < 1:
            raise InputError(f"crops_per_patch={crops_per_patch} must be >= 1")
        self.n_items = len(dataset)
        self.n_patches = len(dataset.indices)
        self.k = int(crops_per_patch)
        self.seed = int(torch.empty((), dtype=torch.int64).random_().item()) if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_items

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        n_groups = -(-self.n_items // self.k)
        order = np.concatenate(
            [rng.permutation(self.n_patches) for _ in range(-(-n_groups // self.n_patches))]
        )[:n_groups]
        out = np.repeat(order, self.k)[: self.n_items]
        self.epoch += 1
        return iter(out.tolist())


def _augment(t: torch.Tensor, rot: int, flip: bool) -> torch.Tensor:
    """Rotate a CHW tensor by ``rot`` * 90 degrees, then mirror it left-right if ``flip``."""
    if rot:
        t = torch.rot90(t, rot, dims=(1, 2))
    if flip:
        t = torch.flip(t, dims=(2,))
    return t


def _chw(a: np.ndarray) -> torch.Tensor:
    """HWC uint8 crop -> CHW float32 tensor of 8-bit values (a copy, never a view)."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).to(torch.float32)
