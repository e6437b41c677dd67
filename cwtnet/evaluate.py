"""``cwtnet-eval``: PSNR/SSIM of a checkpoint and of bicubic on the same test images.

Images. Whole patches of the split (``TripletDataset(full=True)``): ``gt`` is the
finest member's whole patch, ``lr = imresize(gt, 1/s)`` rounded to 8 bits (the
project's one bicubic), ``ref`` by the dataset's rule for the checkpoint's
``ref_source`` (or ``ref_source=`` given here); the default ``real`` is I'_GT, a real
scan one level coarser (s=2: the 20x member up x2; s=4: 20x; s=8: 10x), never ``gt``.
Bicubic is ``imresize(lr, s)`` of the same 8-bit ``lr``.

Figures (``cwtnet.metrics``), every image as 8-bit RGB (rounded, clipped):

- ``psnr`` / ``ssim``: the authors' convention, RGB, no border crop (Table I);
- ``psnr_rgb_crop`` / ``ssim_rgb_crop``: BasicSR, RGB, ``crop_border = scale``;
- ``psnr_y_crop`` / ``ssim_y_crop``: BasicSR, BT.601 Y channel, ``crop_border = scale``.

``metrics.json`` holds ``{"model": {...}, "bicubic": {...}, "meta": {...}}`` with the
means of every figure; ``per_image.csv`` one row per image; ``table.md`` a Table-I
style table; ``compare/<i>.png`` bicubic | model | ground truth with PSNR captions;
``images/<i>_{sr,bicubic,gt}.png`` with ``--save-images``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn
from tqdm import tqdm

from cwtnet.checkpoint import load_checkpoint, load_model
from cwtnet.choices import EVAL_MODES
from cwtnet.config import DEFAULT_ADV_WEIGHT
from cwtnet.data import check_store
from cwtnet.infer import default_eval_tile, tile_starts, tiled_sr
from cwtnet.lpips import NETS as LPIPS_NETS
from cwtnet.metrics import lpips_score, lpips_status, psnr, ssim, tensor_to_uint8
from cwtnet.model import SEARCH_WINDOW_KEEP, apply_search_window, has_trainable_params
from cwtnet.report import table_i
from cwtnet.runtime import resolve_device
from mlcamsr.dataset import TripletDataset
from mlcamsr.errors import InputError
from mlcamsr.resize import imresize

EVAL_PAD = 8
"""LR px of mirror padding around every image a trained model super-resolves for scoring
(``model_sr(pad=)``): without it the outermost 2 HR px are the convolutions' zero-padded
edge (measured in docs/benchmarks.md, "Border error"). Networks without parameters
(bicubic) are never padded."""

MODES = EVAL_MODES
"""CWT-Net with its reference (I'_GT) or in SISR mode; ``cwtnet-eval`` reports both."""
FIGURES = ("psnr", "ssim", "psnr_rgb_crop", "ssim_rgb_crop", "psnr_y_crop", "ssim_y_crop")


def _u8(t: torch.Tensor) -> np.ndarray:
    return tensor_to_uint8(t)


def bicubic_up(lr_u8: np.ndarray, scale: int) -> np.ndarray:
    """The project's bicubic (``mlcamsr.resize.imresize``) of an 8-bit LR image."""
    return imresize(lr_u8, scale=float(scale))


def figures(sr: np.ndarray, gt: np.ndarray, scale: int, *, full: bool = True) -> dict[str, float]:
    """Every figure of one image pair (uint8 HWC); ``full=False`` gives the authors' pair only."""
    out = {"psnr": psnr(sr, gt), "ssim": ssim(sr, gt)}
    if full:
        out["psnr_rgb_crop"] = psnr(sr, gt, crop_border=scale)
        out["ssim_rgb_crop"] = ssim(sr, gt, crop_border=scale)
        out["psnr_y_crop"] = psnr(sr, gt, crop_border=scale, y_channel=True)
        out["ssim_y_crop"] = ssim(sr, gt, crop_border=scale, y_channel=True)
    return out


def model_sr(model: nn.Module, lr: torch.Tensor, ref: torch.Tensor | None, *, scale: int, mode: str,
             tile: int | None = None, overlap: int = 16, amp: bool = False,
             pad: int = 0) -> torch.Tensor:
    """The model's SR of a (1, 3, H, W) batch in ``mode`` (``sisr`` drops ``ref``).

    ``pad`` > 0: mirror-pad ``lr`` by ``pad`` LR px (``ref`` by ``2 pad``) before the call
    and cut the ``scale * pad`` px the padding produced, so the image border is not the
    convolutions' zero-padded edge (``bench/border.py`` measures what this changes).
    """
    ref = ref if mode == "reference" else None
    if pad > 0:
        lr = F.pad(lr, (pad, pad, pad, pad), mode="reflect")
        if ref is not None:
            ref = F.pad(ref, (2 * pad,) * 4, mode="reflect")
    sr = tiled_sr(model, lr, scale=scale, ref=ref, tile=tile, overlap=overlap, amp=amp)
    if pad > 0:
        c = scale * pad
        sr = sr[:, :, c:-c, c:-c]
    return sr


@torch.no_grad()
def iter_scored(
    model: nn.Module, dataset: Any, n: int, *, scale: int, mode: str, device: torch.device | str,
    tile: int | None = None, overlap: int = 16, amp: bool = False, full: bool = True,
    pad: int = EVAL_PAD,
) -> Iterator[tuple[int, dict[str, Any], np.ndarray, np.ndarray, np.ndarray, dict, dict]]:
    """Score the first ``n`` items: yields ``(i, item, sr, bicubic, gt, model_figures,
    bicubic_figures)`` with uint8 HWC images; the one loop behind validation and eval.
    ``pad``: mirror padding in LR px (``model_sr``) for a model with parameters."""
    pad = pad if has_trainable_params(model) else 0
    for i in range(n):
        item = dataset[i]
        lr = item["lr"][None].to(device)
        ref = item["ref"][None].to(device)
        sr = _u8(model_sr(model, lr, ref, scale=scale, mode=mode, tile=tile, overlap=overlap, amp=amp,
                          pad=pad))
        gt, lr8 = _u8(item["gt"]), _u8(item["lr"])
        bic = bicubic_up(lr8, scale)
        yield i, item, sr, bic, gt, figures(sr, gt, scale, full=full), figures(bic, gt, scale, full=full)


@torch.no_grad()
def score_dataset(
    model: nn.Module, dataset: Any, *, scale: int, mode: str = "reference",
    device: torch.device | str = "cpu", max_images: int | None = None, amp: bool = False,
    tile: int | None = None, overlap: int = 16,
) -> dict[str, float]:
    """Mean PSNR/SSIM (authors' convention) of ``model`` and bicubic over ``dataset``'s items."""
    model.eval()
    n = len(dataset) if not max_images else min(len(dataset), max_images)
    acc = {"psnr": 0.0, "ssim": 0.0, "psnr_bicubic": 0.0, "ssim_bicubic": 0.0}
    for *_, f, b in iter_scored(model, dataset, n, scale=scale, mode=mode, device=device,
                                tile=tile, overlap=overlap, amp=amp, full=False):
        acc["psnr"] += f["psnr"]
        acc["ssim"] += f["ssim"]
        acc["psnr_bicubic"] += b["psnr"]
        acc["ssim_bicubic"] += b["ssim"]
    out = {k: v / max(n, 1) for k, v in acc.items()}
    out["n"] = n
    return out


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def side_by_side(panels: list[tuple[np.ndarray, str]], path: Path, *, crop: int | None = 384) -> None:
    """Write panels (uint8 HWC, caption) left to right with captions underneath.

    ``crop`` keeps the centre ``crop`` px of each panel (so details stay visible).
    """
    ims = []
    for img, _ in panels:
        h, w = img.shape[:2]
        if crop and (h > crop or w > crop):
            y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
            img = img[y0 : y0 + crop, x0 : x0 + crop]
        ims.append(img)
    h = max(i.shape[0] for i in ims)
    pad, cap = 6, 26
    width = sum(i.shape[1] for i in ims) + pad * (len(ims) + 1)
    canvas = Image.new("RGB", (width, h + cap + 2 * pad), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(15)
    x = pad
    for img, (_, text) in zip(ims, panels):
        canvas.paste(Image.fromarray(img), (x, pad))
        draw.text((x + 2, h + pad + 4), text, fill="black", font=font)
        x += img.shape[1] + pad
    canvas.save(path)


def _label(arch: str, mode: str, config: dict[str, Any] | None = None) -> str:
    """Table label of ``arch``; SRGAN says how it was trained (``config``: the run's TrainConfig dict)."""
    name = {"cwtnet": "CWT-Net", "edsr": "EDSR", "rcan": "RCAN", "srcnn": "SRCNN", "srgan": "SRGAN",
            "mwcnn": "MWCNN", "swdnet": "SWD-Net", "bicubic": "bicubic"}.get(arch, arch)
    if arch == "srgan":
        cfg = config or {}
        # no adv_weight key: a run from before the option, trained without the discriminator
        weight = cfg.get("adv_weight", 0.0)
        if (DEFAULT_ADV_WEIGHT["srgan"] if weight is None else float(weight)) == 0:
            return "SRGAN generator (SRResNet, pixel loss, no adversarial step)"
        if not cfg.get("vgg_weights"):
            return "SRGAN (pixel content loss: no VGG19 weights)"
    return f"{name} ({mode})" if arch == "cwtnet" else name


def checkpoint_arch(checkpoint: str | Path) -> str:
    """The architecture a checkpoint holds (one-line ``InputError`` if it is not ours)."""
    return str(load_checkpoint(checkpoint)["arch"])


SPLITS = ("train", "test")
"""The splits ``mlcamsr split`` writes (what ``--split`` may name)."""


def check_eval_options(*, split: str, max_images: int | None, overlap: int, tile: int | None,
                       pictures: int) -> None:
    """One :class:`InputError` line for an option no evaluation can use."""
    if split not in SPLITS:
        raise InputError(f"--split {split!r}: a store's splits are {' and '.join(SPLITS)}")
    if max_images is not None and int(max_images) < 1:
        raise InputError(f"--max-images {max_images}: give at least 1 (leave it out to score all)")
    if int(overlap) < 0:
        raise InputError(f"--overlap {overlap}: give 0 or more LR px")
    if tile is not None and int(tile) <= 2 * int(overlap):
        raise InputError(f"--tile {tile}: give more than twice --overlap ({overlap}) LR px")
    if int(pictures) < 0:
        raise InputError(f"--pictures {pictures}: give 0 or more")


def evaluate(
    store: str, checkpoint: str | Path, *, out: str | Path, split: str = "test",
    scale: int | None = None, mode: str = "reference", save_images: bool = False,
    use_ema: bool = True, device: str = "auto", tile: int | None = None, overlap: int = 16,
    max_images: int | None = None, pictures: int = 6, progress: bool = False,
    arch: str | None = None, ref_source: str | None = None, pad: int = EVAL_PAD,
    lpips_weights: str | None = None,
    on_plan: Callable[[dict[str, Any]], None] | None = None,
    on_estimate: Callable[[float, float], None] | None = None,
    search_window: int | None | str = SEARCH_WINDOW_KEEP,
) -> dict[str, Any]:
    """Score ``checkpoint`` and bicubic on the whole patches of ``split``; write the outputs.

    LPIPS (AlexNet and VGG, Table III) is added per image and in ``metrics["lpips"]`` when
    its weights are on disk (``lpips_weights`` folder or the default places, see
    :mod:`cwtnet.lpips`); otherwise ``metrics["lpips"][net]`` is the ``unavailable: ...`` reason.

    ``tile=None``: untiled when the LR patch is at most 256 px (512 px for a CWT-Net
    with a windowed search), else 128-px tiles (overlap ``overlap``;
    :func:`cwtnet.infer.default_eval_tile`). ``ref_source``: the reference the model is scored with;
    ``None`` = the one it was trained with (its checkpoint's config). ``pad``: LR px of
    mirror padding around each image (0 = none; see ``EVAL_PAD``). Before the first
    image: ``on_plan(plan)`` with ``images``, ``gt_px`` and ``lr_px`` (sides), ``tiles`` per
    image (1: untiled), ``tile``, ``label``, ``device``; after it:
    ``on_estimate(first_image_s, estimated_total_s)``. ``search_window``: CWT-Net's search
    window in LR px for this evaluation (``None`` = global; default: as trained). Returns
    the ``metrics.json`` dict.
    """
    if mode not in MODES:
        raise InputError(f"--mode {mode!r}: choose {' or '.join(MODES)}")
    check_eval_options(split=split, max_images=max_images, overlap=overlap, tile=tile, pictures=pictures)
    ckpt = load_checkpoint(checkpoint)
    ck_scale = int(ckpt["scale"])
    if scale is not None and int(scale) != ck_scale:
        raise InputError(
            f"{checkpoint}: checkpoint is for x{ck_scale}, not x{scale}; use --scale {ck_scale} "
            "or a checkpoint trained at this scale"
        )
    scale = ck_scale
    if arch is not None and arch != str(ckpt["arch"]):
        raise InputError(
            f"{checkpoint}: checkpoint is for --arch {ckpt['arch']}, not {arch}; pass the matching checkpoint"
        )
    arch = str(ckpt["arch"])
    trained_ref = str((ckpt.get("config") or {}).get("ref_source", "real"))
    ref_source = trained_ref if ref_source is None else str(ref_source)
    if mode == "reference" and arch != "cwtnet":
        mode = "sisr"  # other networks ignore the reference
    dev = resolve_device(device)
    st = check_store(store, scale, ref_source=ref_source, need_train=False, split=split)
    ds = TripletDataset(st, split=split, scale=scale, ref_source=ref_source, augment=False, full=True)
    model, _ = load_model(checkpoint, use_ema=use_ema, device=dev)
    apply_search_window(model, search_window)
    lr_side = ds.patch
    if tile is None:
        tile = default_eval_tile(model, lr_side)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare").mkdir(exist_ok=True)  # only now: every check above has passed
    if save_images:
        (out / "images").mkdir(exist_ok=True)
    table = st.table
    n = len(ds) if not max_images else min(len(ds), max_images)
    rows: list[dict[str, Any]] = []
    lpips_nets = {net: lpips_status(net, lpips_weights) for net in LPIPS_NETS}
    label = _label(arch, mode, ckpt.get("config"))
    if on_plan is not None:
        n_tiles = 1 if tile is None or tile >= lr_side else len(tile_starts(lr_side, tile, overlap)) ** 2
        on_plan({"images": n, "gt_px": lr_side * scale, "lr_px": lr_side, "tiles": n_tiles, "tile": tile,
                 "label": label, "device": str(dev)})
    bar = None
    if progress:
        bar = tqdm(total=n, desc=f"eval {label} x{scale}", unit="img")
    t0 = time.perf_counter()
    amp = dev.type == "cuda"
    with torch.no_grad():
        for i, item, sr, bic, gt, fm, fb in iter_scored(
            model, ds, n, scale=scale, mode=mode, device=dev, tile=tile, overlap=overlap, amp=amp,
            pad=pad,
        ):
            trow = table.loc[int(item["row"])] if int(item["row"]) in table.index else {}
            row = {"i": i, "row": int(item["row"]), "slide": str(trow.get("slide", "")),
                   "label": str(trow.get("label", ""))}
            row.update({k: fm[k] for k in FIGURES})
            row.update({f"bicubic_{k}": fb[k] for k in FIGURES})
            for net, status in lpips_nets.items():
                if status == "ok":
                    row[f"lpips_{net}"] = lpips_score(sr, gt, net, lpips_weights)
                    row[f"bicubic_lpips_{net}"] = lpips_score(bic, gt, net, lpips_weights)
            rows.append(row)
            if i < pictures:
                side_by_side([(bic, f"bicubic {fb['psnr']:.2f} dB"), (sr, f"{label} {fm['psnr']:.2f} dB"),
                              (gt, "ground truth")], out / "compare" / f"{i}.png")
            if save_images:
                Image.fromarray(sr).save(out / "images" / f"{i}_sr.png")
                Image.fromarray(bic).save(out / "images" / f"{i}_bicubic.png")
                Image.fromarray(gt).save(out / "images" / f"{i}_gt.png")
            if i == 0 and on_estimate is not None:
                first = time.perf_counter() - t0
                on_estimate(first, first * n)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t0
    with open(out / "per_image.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})

    def mean(key: str) -> float:
        vals = [r[key] for r in rows if math.isfinite(r[key])]
        return float(np.mean(vals)) if vals else float("nan")

    metrics: dict[str, Any] = {
        "model": {k: mean(k) for k in FIGURES},
        "bicubic": {k: mean(f"bicubic_{k}") for k in FIGURES},
        "meta": {
            "arch": arch, "label": label, "mode": mode, "scale": scale, "split": split,
            "n_images": n, "store": str(store), "checkpoint": str(checkpoint),
            "step": int(ckpt.get("step", 0)), "ema": bool(use_ema and ckpt.get("ema")),
            "ref_source": ref_source, "trained_ref_source": trained_ref, "gt_px": int(ds.gt_len), "lr_px": int(ds.patch),
            "tile": tile, "overlap": overlap if tile else None, "device": str(dev), "pad": int(pad),
            "wall_s": round(wall, 2),
            "search_window": getattr(getattr(model, "options", None), "search_window", None),
            "convention": "psnr/ssim: 8-bit RGB, no crop (authors); *_rgb_crop / *_y_crop: "
                          "BasicSR crop_border=scale, RGB / BT.601 Y",
        },
    }
    metrics["lpips"] = {net: ({"model": mean(f"lpips_{net}"), "bicubic": mean(f"bicubic_lpips_{net}")}
                              if status == "ok" else status) for net, status in lpips_nets.items()}
    # BasicSR figures also under their own keys (``basicsr_rgb``, ``basicsr_y``).
    metrics["basicsr_rgb"] = {
        "model": {"psnr": metrics["model"]["psnr_rgb_crop"], "ssim": metrics["model"]["ssim_rgb_crop"]},
        "bicubic": {"psnr": metrics["bicubic"]["psnr_rgb_crop"], "ssim": metrics["bicubic"]["ssim_rgb_crop"]},
    }
    metrics["basicsr_y"] = {
        "model": {"psnr": metrics["model"]["psnr_y_crop"], "ssim": metrics["model"]["ssim_y_crop"]},
        "bicubic": {"psnr": metrics["bicubic"]["psnr_y_crop"], "ssim": metrics["bicubic"]["ssim_y_crop"]},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    name = Path(str(store).rstrip("/")).name
    results = [
        {"dataset": name, "method": "bicubic", "scale": scale, **metrics["bicubic"]},
        {"dataset": name, "method": label, "scale": scale, **metrics["model"]},
    ]
    md = [f"# Evaluation: {label} x{scale} on {name} ({split}, {n} whole patches)", "",
          "Authors' convention (Table I): 8-bit RGB, no border crop.", "",
          table_i(results), "",
          "BasicSR convention (crop_border = scale):", "",
          table_i(results, psnr_key="psnr_rgb_crop", ssim_key="ssim_rgb_crop", title="RGB"), "",
          table_i(results, psnr_key="psnr_y_crop", ssim_key="ssim_y_crop", title="Y"), ""]
    (out / "table.md").write_text("\n".join(md))
    return metrics


def evaluate_modes(
    store: str,
    checkpoint: str | Path,
    *,
    out: str | None,
    split: str = "test",
    mode: str = "both",
    **options: Any,
) -> list[tuple[str, str, dict[str, Any]]]:
    """:func:`evaluate` in each mode ``mode`` names: ``both`` is SISR and reference mode for
    a CWT-Net checkpoint (into ``out/sisr`` and ``out/reference``) and SISR alone for any
    other network (into ``out``). ``out`` None: ``<checkpoint folder>/eval_<split>_<mode>``.
    The options are checked before the checkpoint is read. Returns ``(mode, folder,
    metrics)`` per mode, in order."""
    check_eval_options(split=split, max_images=options.get("max_images"),
                       overlap=int(options.get("overlap", 16)), tile=options.get("tile"),
                       pictures=int(options.get("pictures", 6)))
    if mode == "both":
        modes = ["sisr", "reference"] if checkpoint_arch(checkpoint) == "cwtnet" else ["sisr"]
    else:
        modes = [mode]
    results = []
    for m_name in modes:
        if out is None:
            out_dir = str(Path(checkpoint).parent / f"eval_{split}_{m_name}")
        else:
            out_dir = str(Path(out) / m_name) if len(modes) > 1 else str(out)
        results.append((m_name, out_dir, evaluate(store, checkpoint, out=out_dir, split=split,
                                                  mode=m_name, **options)))
    return results

