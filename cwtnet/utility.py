"""Table VI, diagnostic utility: does a super-resolved patch keep what a classifier needs?

Protocol (the paper's Section IV-F, at x``scale``):

1. tiles: every whole ground-truth patch of the store is cut into ``tile`` x ``tile`` px
   tiles (non-overlapping, from the top-left; 128 px as in the paper) that keep the
   patch's ``label`` (``tumor`` / ``normal``, written by ``mlcamsr extract --annotations``);
2. classifier: a ResNet-50 (``cwtnet.model.resnet_arch``, torchvision's architecture,
   from scratch or from ``weights`` = a torchvision ImageNet state dict, its ``fc``
   replaced by 2 outputs) trained on the train split's GT tiles (Adam, D4 augmentation,
   ImageNet normalisation, cross-entropy), then frozen;
3. variants of the test split's patches, each cut into the same tiles:
   ``GT``; ``bicubic(↓)`` the LR patch itself (tiles of ``tile / scale`` px, the
   classifier sees the smaller tile); ``bicubic`` the LR patch upsampled by the project's
   bicubic; and each given run's SR output (its checkpoint's EMA weights; CWT-Net in
   reference mode with its run's reference source, the others SISR) of the whole LR
   patch, then tiled;
4. accuracy per variant (tumor/normal, argmax) beside the paper's figures, in
   ``OUT/table6.md`` and ``OUT/table6.json``; every tile's prediction in
   ``OUT/predictions.csv`` (variant, row, slide, tile origin, label, predicted label,
   p(tumor)) so anyone can recompute them; the classifier in ``OUT/classifier.pt``.

The paper's PCam column is printed for reference only; the PCam part of the protocol is
not implemented here.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cwtnet.checkpoint import load_checkpoint, load_model
from cwtnet.data import check_store
from cwtnet.evaluate import _label, bicubic_up, model_sr
from cwtnet.model.resnet_arch import IMAGENET_MEAN, IMAGENET_STD, load_torchvision_state, resnet50
from cwtnet.runtime import resolve_device
from mlcamsr.dataset import TripletDataset
from mlcamsr.errors import InputError, StoreError

CLASSES = ("normal", "tumor")
"""Class index -> label; p(tumor) is the softmax of index 1."""

PAPER_TABLE6 = {
    "GT": (91.83, 90.03), "bicubic(↓)": (62.89, 63.22), "bicubic": (79.53, 66.40),
    "SRCNN": (77.76, 68.87), "SRGAN": (81.04, 70.35), "EDSR": (82.72, 74.19), "RCAN": (84.31, 79.68),
    "MWCNN": (82.71, 76.42), "SWD-Net": (86.47, 80.48), "CWT-Net": (88.12, 80.85),
}
"""The paper's Table VI: method -> (MLCamSR accuracy %, PCam accuracy %), ResNet-50 at x2."""

_PAPER_KEY = {"srcnn": "SRCNN", "srgan": "SRGAN", "edsr": "EDSR", "rcan": "RCAN", "mwcnn": "MWCNN",
              "swdnet": "SWD-Net", "cwtnet": "CWT-Net", "bicubic": "bicubic"}


@dataclass
class UtilityConfig:
    """Options of a Table VI run.

    Args:
        store (str): MLCamSR store with ``label`` and ``split`` columns.
        out (str): Output folder.
        runs (list[str]): Run folders (``last.pt`` there, else ``best.pt``) or ``.pt`` files.
        scale (int): SR factor of the protocol (the paper: 2). Default: 2.
        tile (int): Tile side at GT resolution, px (the paper: 128). Default: 128.
        epochs (int): Classifier training epochs over the train tiles. Default: 10.
        batch_size (int): Classifier batch. Default: 16.
        lr (float): Adam learning rate. Default: 1e-4.
        weights (str | None): torchvision ResNet-50 state dict to start from. Default: None (scratch).
        width (int): ResNet stem width (64 = ResNet-50; smaller only for quick checks). Default: 64.
        max_patches (int | None): Use at most this many patches per split (quick checks). Default: None.
        sr_tile (int | None): LR tile (px) for the runs' SR, overlap 8 (``None``: whole patches;
            CWT-Net's attention on a whole 128-px LR patch is slow on a CPU). Default: None.
        seed (int): Seed of initialisation, order and augmentation. Default: 0.
        device (str): ``auto | cpu | cuda``. Default: auto.
    """

    store: str
    out: str
    runs: list[str] = field(default_factory=list)
    scale: int = 2
    tile: int = 128
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-4
    weights: str | None = None
    width: int = 64
    max_patches: int | None = None
    sr_tile: int | None = None
    seed: int = 0
    device: str = "auto"


@dataclass
class Tiles:
    """Tiles of one variant: ``images`` (N, 3, t, t) uint8, ``labels`` (N,) int64, ``meta``
    per tile (row, slide, tile_y, tile_x at GT px)."""

    images: torch.Tensor
    labels: torch.Tensor
    meta: list[dict[str, Any]]


def cut_tiles(img: np.ndarray, tile: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Non-overlapping ``tile`` px tiles of an HWC image from the top-left: (y, x, tile)."""
    h, w = img.shape[:2]
    for y in range(0, h - tile + 1, tile):
        for x in range(0, w - tile + 1, tile):
            yield y, x, img[y:y + tile, x:x + tile]


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


# --------------------------------------------------------------------------- stages


def check_labels(store: Any, store_path: str) -> dict[int, int]:
    """Row -> class index of every kept train/test patch; ``StoreError`` (exit 2, one line)
    when the store has no tumor/normal labels or the train split lacks a class."""
    table = store.table
    fix = ("re-extract with `mlcamsr extract SLIDES COORDS --annotations XML_DIR` (ASAP lesion XML) "
           "or give a coords CSV with a label column of tumor/normal")
    if "label" not in table.columns:
        raise StoreError(f"{store_path}: the store has no patch labels; {fix}")
    labels = table["label"].astype(str).str.strip().str.lower()
    known = labels.isin(CLASSES)
    if not known.any():
        raise StoreError(f"{store_path}: no patch is labelled tumor or normal; {fix}")
    train = table["split"].astype(str) == "train"
    present = set(labels[known & train])
    if present != set(CLASSES):
        missing = ", ".join(sorted(set(CLASSES) - present))
        raise StoreError(f"{store_path}: the train split has no {missing} patch, so a classifier cannot "
                         "learn both classes; add slides/coordinates of that class or re-split")
    return {int(r): CLASSES.index(v) for r, v in labels[known].items()}


def collect_tiles(dataset: Any, labels: dict[int, int], tile: int, *, max_patches: int | None,
                  variant: Callable[[dict[str, Any]], np.ndarray] | None = None,
                  tile_px: int | None = None, slides: dict[int, str] | None = None) -> Tiles:
    """Tiles of every labelled item of ``dataset``: of its GT, or of ``variant(item)`` (an HWC
    uint8 image at GT size, or at GT size / scale with ``tile_px`` the smaller tile)."""
    images, ys, meta = [], [], []
    n = len(dataset) if not max_patches else min(len(dataset), max_patches)
    side = tile_px or tile
    for i in range(n):
        item = dataset[i]
        row = int(item["row"])
        if row not in labels:
            continue
        img = _u8(item["gt"]) if variant is None else variant(item)
        k = tile / side
        for y, x, t in cut_tiles(img, side):
            images.append(torch.from_numpy(np.ascontiguousarray(t)).permute(2, 0, 1))
            ys.append(labels[row])
            meta.append({"row": row, "slide": (slides or {}).get(row, ""),
                         "tile_y": int(y * k), "tile_x": int(x * k)})
    if not images:
        raise StoreError(f"no labelled {tile}-px tiles in the {dataset.split} split "
                         f"(patches smaller than the tile? use --tile {dataset.gt_len} or less)")
    return Tiles(torch.stack(images), torch.tensor(ys, dtype=torch.int64), meta)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def _d4(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    k = int(torch.randint(4, (1,), generator=g))
    x = torch.rot90(x, k, dims=(2, 3))
    return torch.flip(x, dims=(3,)) if int(torch.randint(2, (1,), generator=g)) else x


def build_classifier(cfg: UtilityConfig) -> nn.Module:
    """ResNet-50 with a 2-way ``fc``; from ``cfg.weights`` (torchvision state dict) when given."""
    torch.manual_seed(cfg.seed)
    model = resnet50(num_classes=len(CLASSES), width=cfg.width)
    if cfg.weights:
        try:
            load_torchvision_state(model, cfg.weights, "--weights")
        except ValueError as exc:
            raise InputError(str(exc)) from None
    return model


def train_classifier(model: nn.Module, tiles: Tiles, cfg: UtilityConfig, device: torch.device,
                     log: Callable[[str], None] = print) -> list[float]:
    """Train on ``tiles`` (shuffled, D4-augmented) for ``cfg.epochs``; mean loss per epoch."""
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.to(device).train()
    n = len(tiles.labels)
    losses = []
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for s in range(0, n, cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            x = _normalise(_d4(tiles.images[idx], g).to(device))
            loss = F.cross_entropy(model(x), tiles.labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
        log(f"[utility] epoch {epoch + 1}/{cfg.epochs}: loss {losses[-1]:.4f}")
        if not math.isfinite(losses[-1]):
            raise StoreError("classifier training diverged (loss not finite); lower --lr")
    model.eval()
    return losses


@torch.no_grad()
def predict(model: nn.Module, tiles: Tiles, device: torch.device, batch: int = 32) -> torch.Tensor:
    """p(tumor) of every tile, (N,) float."""
    model.eval()
    out = []
    for s in range(0, len(tiles.labels), batch):
        out.append(torch.softmax(model(_normalise(tiles.images[s:s + batch].to(device))), dim=1)[:, 1].cpu())
    return torch.cat(out)


def resolve_run(path: str) -> Path:
    """A run folder's ``last.pt`` (else ``best.pt``) or a ``.pt`` file; ``InputError`` otherwise."""
    p = Path(path)
    if p.is_dir():
        for name in ("last.pt", "best.pt"):
            if (p / name).is_file():
                return p / name
        raise InputError(f"--runs {p}: no last.pt or best.pt in it; give a cwtnet-train run folder")
    if p.is_file():
        return p
    raise InputError(f"--runs {p}: no such run folder or checkpoint")


# --------------------------------------------------------------------------- the run


def run_utility(cfg: UtilityConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole Table VI protocol (module docstring); returns the ``table6.json`` dict."""
    t0 = time.perf_counter()
    checkpoints = [resolve_run(r) for r in cfg.runs]  # bad --runs fail before any work
    ckpts = [load_checkpoint(c) for c in checkpoints]
    for c, ck in zip(checkpoints, ckpts):
        if int(ck["scale"]) != int(cfg.scale):
            raise InputError(f"--runs {c}: checkpoint is x{ck['scale']}, this table is x{cfg.scale}; "
                             f"pass --scale {ck['scale']} or x{cfg.scale} runs")
    dev = resolve_device(cfg.device)
    store = check_store(cfg.store, cfg.scale, ref_source="lr", need_train=True, split="test")
    labels = check_labels(store, cfg.store)
    slides = {int(r): str(s) for r, s in store.table["slide"].items()} if "slide" in store.table else {}
    if cfg.tile % cfg.scale:
        raise InputError(f"--tile {cfg.tile} must be divisible by --scale {cfg.scale}")
    model = build_classifier(cfg)  # a bad --weights fails before training
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    def dataset(split: str, ref_source: str = "lr") -> Any:  # "lr": a reference no SISR path reads
        return TripletDataset(store, split=split, scale=cfg.scale, ref_source=ref_source,
                              augment=False, full=True)

    # stage 1: train the classifier on GT tiles of the train split
    train_tiles = collect_tiles(dataset("train"), labels, cfg.tile, max_patches=cfg.max_patches, slides=slides)
    log(f"[utility] {len(train_tiles.labels)} train tiles ({int(train_tiles.labels.sum())} tumor); "
        f"training ResNet-50 ({'from ' + cfg.weights if cfg.weights else 'from scratch'}) on {dev}")
    losses = train_classifier(model, train_tiles, cfg, dev, log)
    torch.save({"state_dict": model.state_dict(), "classes": list(CLASSES), "width": cfg.width},
               out / "classifier.pt")

    # stage 2: the test variants
    test = dataset("test")
    tile_lr = cfg.tile // cfg.scale
    variants: list[tuple[str, str, Tiles]] = [
        ("GT", "GT", collect_tiles(test, labels, cfg.tile, max_patches=cfg.max_patches, slides=slides)),
        ("bicubic(↓)", "bicubic(↓)", collect_tiles(test, labels, cfg.tile, max_patches=cfg.max_patches,
                                                   variant=lambda it: _u8(it["lr"]), tile_px=tile_lr,
                                                   slides=slides)),
        ("bicubic", "bicubic", collect_tiles(test, labels, cfg.tile, max_patches=cfg.max_patches,
                                             variant=lambda it: bicubic_up(_u8(it["lr"]), cfg.scale),
                                             slides=slides)),
    ]
    for path, ck in zip(checkpoints, ckpts):
        sr_model, _ = load_model(path, device=dev)
        arch = str(ck["arch"])
        ref_source = str((ck.get("config") or {}).get("ref_source", "real"))
        mode = "reference" if arch == "cwtnet" else "sisr"
        ds = dataset("test", ref_source if mode == "reference" else "lr")

        def sr_variant(item: dict[str, Any], m: nn.Module = sr_model, md: str = mode) -> np.ndarray:
            lr, ref = item["lr"][None].to(dev), item["ref"][None].to(dev)
            return _u8(model_sr(m, lr, ref, scale=cfg.scale, mode=md, tile=cfg.sr_tile, overlap=8)[0])

        name = run_label(ck, mode)
        variants.append((name, _PAPER_KEY.get(arch, ""), collect_tiles(
            ds, labels, cfg.tile, max_patches=cfg.max_patches, variant=sr_variant, slides=slides)))
        log(f"[utility] SR tiles of {name} ({path})")

    # stage 3: predict, score, write
    rows, pred_rows = [], []
    for name, paper_key, tiles in variants:
        p = predict(model, tiles, dev)
        pred = (p >= 0.5).long()
        acc = float((pred == tiles.labels).float().mean()) * 100
        paper = PAPER_TABLE6.get(paper_key)
        rows.append({"method": name, "accuracy": acc, "n_tiles": len(tiles.labels),
                     "tile_px": int(tiles.images.shape[-1]),
                     "paper_mlcamsr": paper[0] if paper else None, "paper_pcam": paper[1] if paper else None})
        for m, y, pp, pr in zip(tiles.meta, tiles.labels.tolist(), p.tolist(), pred.tolist()):
            pred_rows.append({"variant": name, **m, "label": CLASSES[y], "pred": CLASSES[pr], "p_tumor": pp})
        log(f"[utility] {name}: accuracy {acc:.2f} % on {len(tiles.labels)} tiles")
    with open(out / "predictions.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(pred_rows[0]))
        w.writeheader()
        for r in pred_rows:
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
    result = {
        "rows": rows,
        "meta": {"store": cfg.store, "scale": cfg.scale, "tile": cfg.tile, "epochs": cfg.epochs,
                 "batch_size": cfg.batch_size, "lr": cfg.lr, "weights": cfg.weights, "width": cfg.width,
                 "seed": cfg.seed, "device": str(dev), "sr_tile": cfg.sr_tile, "train_tiles": len(train_tiles.labels),
                 "train_tumor_tiles": int(train_tiles.labels.sum()), "train_loss": losses,
                 "runs": [str(c) for c in checkpoints], "wall_s": round(time.perf_counter() - t0, 1),
                 "classifier": "ResNet-50" if cfg.width == 64 else f"ResNet-50 layout, width {cfg.width}"},
    }
    (out / "table6.json").write_text(json.dumps(result, indent=2))
    (out / "table6.md").write_text(format_table6(result))
    return result


def run_label(ckpt: dict[str, Any], mode: str) -> str:
    """Table label of a checkpoint: ``evaluate._label``, with the step count."""
    return f"{_label(str(ckpt['arch']), mode, ckpt.get('config'))} ({int(ckpt.get('step', 0))} steps)"


def format_table6(result: dict[str, Any]) -> str:
    """Table-VI-style markdown: our accuracy beside the paper's MLCamSR and PCam columns."""
    m = result["meta"]
    lines = [f"# Table VI: tumor/normal accuracy of a {m['classifier']} on x{m['scale']} tiles",
             "",
             f"Store {m['store']}; {m['tile']}-px GT tiles; classifier trained {m['epochs']} epochs on "
             f"{m['train_tiles']} GT train tiles ({m['train_tumor_tiles']} tumor) "
             f"{'from ' + str(m['weights']) if m['weights'] else 'from scratch'}, seed {m['seed']}, {m['device']}. "
             "Paper: ResNet-50 on MLCamSR (1,000 CAMELYON patches of 1024 px at 40x) and PCam; "
             "their figures are for reference, not the same data.",
             "",
             "| Method | Acc (ours, %) | tiles | paper MLCamSR | paper PCam |",
             "|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        pm = f"{r['paper_mlcamsr']:.2f}" if r["paper_mlcamsr"] is not None else "-"
        pp = f"{r['paper_pcam']:.2f}" if r["paper_pcam"] is not None else "-"
        lines.append(f"| {r['method']} | {r['accuracy']:.2f} | {r['n_tiles']} | {pm} | {pp} |")
    lines += ["", "bicubic(↓): the LR tile itself (tile / scale px); per-tile predictions: predictions.csv."]
    return "\n".join(lines) + "\n"
