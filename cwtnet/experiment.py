"""``cwtnet-experiment``: the paper's tables as one command (issue 10 section 4).

Every row of a table is one training run with the same steps, seed, data and
(small or paper) size, evaluated on the store's test split by ``cwtnet-eval``'s own
code (whole patches, the authors' PSNR/SSIM and BasicSR's Y-channel crop=scale
figures, bicubic on the same images). The comparison is at equal training steps
(the paper's "1000 batches" for every ablation), not equal wall time.

Tables (rows; the paper's MLCamSR figure beside each):

- ``table1``: every architecture of the registry ``cwtnet.model.ARCHS`` (so a network
  added there appears without editing this module); CWT-Net in reference and SISR mode.
- ``table2``: Table II, CWT-Net ``variant`` ``sr-only``, ``no-dwt``, ``no-wr``, ``full``.
- ``table3``: Table III, ``ref_source`` ``gt``, ``real``, ``gt-updown``, ``lr``.
- ``table4``: Table IV, ``CWTLoss`` variants.
- ``table5``: Table V, 2 / 4 / 8 / 12 / 24 CWTBs (the paper trained these 500 batches).
- ``wr``: not a paper table: CWT-Net with ``wr_mode`` ``predict`` (WR predicts the HH band
  from the LR image) against ``paper`` (WR's blocks on the WT branch's entrance), issue 10
  section 2; the paper's full-model figure beside both.

Layout: ``OUT/TABLE/<row>/seed<k>/`` is a ``cwtnet-train`` run directory (``last.pt``,
``config.yaml``, logs) plus ``eval_<mode>/`` and ``row.json`` (the row's result). A
rerun skips finished rows and resumes an interrupted training from its ``last.pt``.
``OUT/TABLE.md`` and ``OUT/TABLE.json`` hold the table: per row the mean over seeds of
``psnr``/``ssim`` (8-bit RGB, no crop: the authors' convention) and
``psnr_y_crop``/``ssim_y_crop`` (BasicSR), the spread over seeds (max - min PSNR),
steps, wall seconds, samples/s and the paper's figure.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cwtnet.checkpoint import LAST, load_checkpoint, save_model
from cwtnet.choices import DEFAULT_WT_BANDS, EXPERIMENT_SIZES, EXPERIMENT_TABLES, PAPER_READING
from cwtnet.config import TrainConfig
from cwtnet.data import check_store
from cwtnet.evaluate import evaluate
from cwtnet.model import ARCHS, build_model, model_options
from cwtnet.train import train
from mlcamsr.errors import InputError

TABLES = EXPERIMENT_TABLES
SIZES = EXPERIMENT_SIZES

# The paper's MLCamSR figures (PSNR dB, SSIM). Table I by arch name and scale.
PAPER_TABLE1: dict[str, dict[int, tuple[float, float]]] = {
    "bicubic": {2: (35.247, 0.9427), 4: (27.019, 0.6659), 8: (22.475, 0.2276)},
    "srcnn": {2: (35.522, 0.9427), 4: (27.475, 0.7329), 8: (22.489, 0.3624)},
    "srgan": {2: (35.649, 0.9518), 4: (27.626, 0.7406), 8: (22.946, 0.3590)},
    "edsr": {2: (38.190, 0.9677), 4: (27.886, 0.7479), 8: (23.007, 0.4912)},
    "rcan": {2: (38.327, 0.9692), 4: (28.339, 0.7887), 8: (23.075, 0.4894)},
    "mwcnn": {2: (38.800, 0.9722), 4: (28.941, 0.8130), 8: (23.590, 0.5373)},
    "swdnet": {2: (39.228, 0.9719), 4: (29.349, 0.8239), 8: (23.983, 0.5471)},
    "cwtnet": {2: (39.333, 0.9797), 4: (29.639, 0.8304), 8: (24.140, 0.5535)},
}
PAPER_TABLE2 = {"sr-only": (39.161, 0.9712), "no-dwt": (39.145, 0.9619),
                "no-wr": (38.928, 0.9683), "full": (39.333, 0.9797)}
PAPER_TABLE3 = {"gt": (44.035, 0.9933), "real": (39.333, 0.9797),
                "gt-updown": (39.042, 0.9749), "lr": (38.670, 0.9680)}
PAPER_TABLE4 = {"default": (39.333, 0.9797), "only_l1": (39.077, 0.9714),
                "only_mse": (39.030, 0.9647), "only_sr": (38.895, 0.9699),
                "only_wt": (9.947, 0.0658), "weight_exchange": (39.286, 0.9797)}
PAPER_TABLE5 = {2: (39.054, 0.9714), 4: (39.067, 0.9711), 8: (39.219, 0.9723),
                12: (39.278, 0.9748), 24: (39.577, 0.9799)}

SMALL = {"blocks": 2, "channels": 32, "batch_size": 4, "patch": 32}
"""CPU size of every learned row: 2 blocks x 32 channels, batch 4, LR patch 32."""
PAPER = {"blocks": None, "channels": None, "batch_size": 16, "patch": 64}
"""The paper's size (12 CWTBs x 64, EDSR/RCAN at their defaults), batch 16, LR 64."""



@dataclass
class Row:
    """One row: a name, what to train, and the paper's figure (PSNR, SSIM) or None."""

    name: str
    arch: str = "cwtnet"
    model_options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    paper: tuple[float, float] | None = None


def rows_for(table: str, scale: int) -> list[Row]:
    """The rows of ``table`` at ``scale`` (table1 reads the architecture registry)."""
    if table == "table1":
        return [Row(a, arch=a, paper=PAPER_TABLE1.get(a, {}).get(scale)) for a in ARCHS]
    if table == "table2":
        return [Row(v, model_options={"variant": v}, paper=PAPER_TABLE2[v]) for v in PAPER_TABLE2]
    if table == "table3":
        return [Row(r, train={"ref_source": r}, paper=PAPER_TABLE3[r]) for r in PAPER_TABLE3]
    if table == "table4":
        return [Row(v, train={"loss": {"variant": v}}, paper=PAPER_TABLE4[v]) for v in PAPER_TABLE4]
    if table == "table5":
        return [Row(f"{n} CWTBs", model_options={"n_cwtb": n}, paper=PAPER_TABLE5[n])
                for n in PAPER_TABLE5]
    if table == "wr":
        return [Row(f"wr {m}", model_options={"wr_mode": m}, paper=PAPER_TABLE2["full"])
                for m in ("predict", "paper")]
    raise InputError(f"TABLE {table!r} is unknown; choose one of {', '.join(TABLES)}")


def _size_options(arch: str, size: dict[str, Any]) -> dict[str, Any]:
    """``blocks``/``channels`` of ``size`` under ``arch``'s own option names
    (``cwtnet.model.model_options``); an arch without such an option keeps its default."""
    out: dict[str, Any] = {}
    for key in ("blocks", "channels"):
        if size.get(key) is not None:
            try:
                if key == "blocks":
                    out.update(model_options(arch, blocks=int(size[key])))
                else:
                    out.update(model_options(arch, channels=int(size[key])))
            except InputError:
                pass
    return out


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_")


def _modes(arch: str) -> list[str]:
    return ["reference", "sisr"] if arch == "cwtnet" else ["sisr"]


def _config(row: Row, *, store: str, scale: int, steps: int, seed: int, size: dict[str, Any],
            device: str, run_dir: Path, lr: float, wt_bands: str | None = None) -> Any:
    opts = {**_size_options(row.arch, size), **row.model_options}
    patch = int(row.train.get("patch", size["patch"]))
    return TrainConfig(
        store=store, scale=int(scale), out=str(run_dir), arch=row.arch, model_options=opts,
        steps=int(steps), batch_size=int(size["batch_size"]), patch=patch, lr=lr,
        seed=int(seed), device=device,
        wt_bands=wt_bands if wt_bands and row.arch == "cwtnet" else DEFAULT_WT_BANDS, val_every=0, val_images=1, val_patch=patch,
        ckpt_every=max(50, int(steps) // 4), log_every=10, num_workers=0, progress=False,
        tensorboard=False, **{k: v for k, v in row.train.items() if k != "patch"},
    )


def _run_row(row: Row, run_dir: Path, cfg: Any, *, store: str, device: str,
             max_images: int | None, tile: int | None, log: Callable[[str], None]) -> dict[str, Any]:
    """Train (or resume) one row's run and evaluate it; returns and writes ``row.json``."""
    done = run_dir / "row.json"
    if done.is_file():
        old: dict[str, Any] = json.loads(done.read_text())
        if old.get("steps") == cfg.steps and old.get("config") == _key(cfg):
            log(f"  {row.name} seed {cfg.seed}: done earlier, kept")
            return old
        raise InputError(
            f"{run_dir} holds a row run with other settings (steps {old.get('steps')}); "
            "give another --out or delete that folder"
        )
    progress = run_dir / "progress.json"
    wall = json.loads(progress.read_text())["wall_s"] if progress.is_file() else 0.0
    if row.arch == "bicubic":
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt = save_model(build_model("bicubic", cfg.scale), run_dir / LAST, arch="bicubic",
                          scale=cfg.scale)
        steps_done, sps = 0, 0.0
    else:
        resume = (run_dir / LAST).is_file()
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)  # a run that died before its first checkpoint
        if resume and int(load_checkpoint(run_dir / LAST).get("step", 0)) >= cfg.steps:
            ckpt, steps_done, sps = run_dir / LAST, cfg.steps, float("nan")
            prev = json.loads(progress.read_text()) if progress.is_file() else {}
            sps = float(prev.get("samples_per_s", float("nan")))
        else:
            log(f"  {row.name} seed {cfg.seed}: training {cfg.steps} steps"
                + (" (resumed)" if resume else ""))
            r = train(cfg, resume=resume, explicit={"steps", "device", "store", "out"})
            wall += r.wall_s
            ckpt, steps_done = r.checkpoint, r.step
            sps = steps_done * cfg.batch_size / wall if wall > 0 else 0.0
            progress.write_text(json.dumps({"wall_s": wall, "samples_per_s": sps}))
    res: dict[str, Any] = {"name": row.name, "arch": row.arch, "seed": cfg.seed,
                           "steps": steps_done, "wall_s": round(wall, 1),
                           "samples_per_s": round(sps, 2) if math.isfinite(sps) else None,
                           "paper": list(row.paper) if row.paper else None, "config": _key(cfg)}
    for mode in _modes(row.arch):
        m = evaluate(store, ckpt, out=run_dir / f"eval_{mode}", mode=mode, device=device,
                     max_images=max_images, pictures=1, tile=tile, overlap=8)
        res[mode] = {k: m["model"][k] for k in ("psnr", "ssim", "psnr_y_crop", "ssim_y_crop")}
        res["bicubic"] = {k: m["bicubic"][k] for k in ("psnr", "ssim", "psnr_y_crop", "ssim_y_crop")}
        res["n_images"] = m["meta"]["n_images"]
    done.write_text(json.dumps(res, indent=2))
    return res


def _key(cfg: Any) -> dict[str, Any]:
    """The settings that make a row's result (a rerun with others is refused)."""
    d = cfg.to_dict()
    return {k: d[k] for k in ("arch", "scale", "model_options", "search_window", "v_mode", "wt_bands",
                              "batch_size", "patch", "lr", "ref_source", "loss", "seed")}


def run_experiment(
    table: str, *, store: str, out: str | Path, steps: int = 300, scale: int = 2,
    device: str = "auto", seeds: tuple[int, ...] = (0,), size: str | dict[str, Any] = "small",
    lr: float = 2e-4, max_images: int | None = None, only: tuple[str, ...] = (),
    tile: int | None = None, wt_bands: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and score every row of ``table``; write ``OUT/TABLE.md`` and ``OUT/TABLE.json``.

    ``size``: ``small`` (``SMALL``, CPU), ``paper`` (``PAPER``, CUDA) or a dict with the
    same keys (``blocks``, ``channels``, ``batch_size``, ``patch``). ``seeds``: one run
    per seed per row (two seeds measure the noise). ``only``: row names to run (default
    all). ``lr``: Adam learning rate of every row (2e-4, the project's short-budget rate;
    the paper's 1e-4 with ``--lr 1e-4``). ``tile``: score in LR tiles of this size (8-px
    overlap; a CPU saving: the global search is quadratic in the tile's area; default
    untiled up to 256 px, 512 for a windowed search). ``wt_bands``: CWT-Net rows' reference sub-bands (``hh``, the
    paper's Eq. 4, or ``detail``; ``None`` = the default). Returns the ``TABLE.json`` dict.
    """
    if isinstance(size, dict):
        preset = {**SMALL, **size}
    elif size in SIZES:
        preset = SMALL if size == "small" else PAPER
    else:
        raise InputError(f"--size {size!r} is unknown; choose small or paper")
    if int(steps) < 1:
        raise InputError("--steps must be positive")
    rows = rows_for(table, int(scale))
    if only:
        unknown = sorted(set(only) - {r.name for r in rows})
        if unknown:
            raise InputError(f"--only {', '.join(unknown)}: not a row of {table}; rows: "
                             f"{', '.join(r.name for r in rows)}")
        rows = [r for r in rows if r.name in only]
    if table == "table1" and int(scale) not in (2, 4, 8):
        raise InputError(f"--scale {scale}: choose 2, 4 or 8")
    check_store(store, int(scale), need_train=True)  # one-line errors before any run
    out = Path(out)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    for row in rows:
        slug = _slug(row.name)
        runs = []
        for seed in seeds:
            run_dir = out / table / slug / f"seed{seed}"
            cfg = _config(row, store=store, scale=int(scale), steps=int(steps), seed=int(seed),
                          size=preset, device=device, run_dir=run_dir, lr=float(lr),
                          wt_bands=wt_bands)
            runs.append(_run_row(row, run_dir, cfg, store=store, device=device,
                                 max_images=max_images, tile=tile, log=log))
        results.append(_aggregate(row, runs))
    doc = {"table": table, "scale": int(scale), "steps": int(steps), "seeds": list(seeds),
           "size": size if isinstance(size, str) else "custom", "size_options": preset, "lr": float(lr), "store": str(store),
           "wt_bands": wt_bands or DEFAULT_WT_BANDS,
           "device": device, "tile": tile, "wall_s": round(time.perf_counter() - t0, 1), "rows": results,
           "convention": "psnr/ssim: 8-bit RGB, no crop (authors); *_y_crop: BasicSR Y, "
                         "crop_border=scale; spread: max - min PSNR over seeds"}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{table}.json").write_text(json.dumps(doc, indent=2))
    (out / f"{table}.md").write_text(markdown(doc))
    return doc


def _aggregate(row: Row, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of every figure per mode, and the PSNR spread (max - min)."""
    out: dict[str, Any] = {"name": row.name, "arch": row.arch,
                           "paper": list(row.paper) if row.paper else None,
                           "steps": runs[0]["steps"], "n_images": runs[0].get("n_images"),
                           "wall_s": round(sum(r["wall_s"] for r in runs) / len(runs), 1),
                           "samples_per_s": runs[0]["samples_per_s"], "seeds": len(runs)}
    for mode in _modes(row.arch) + ["bicubic"]:
        figs = [r[mode] for r in runs]
        out[mode] = {k: sum(f[k] for f in figs) / len(figs) for k in figs[0]}
        out[mode]["spread"] = max(f["psnr"] for f in figs) - min(f["psnr"] for f in figs)
    return out


def markdown(doc: dict[str, Any]) -> str:
    """The table as markdown: one line per row and mode, the paper's figure beside it."""
    lines = [
        f"# {doc['table']} x{doc['scale']}: {doc['steps']} steps, seeds "
        f"{', '.join(map(str, doc['seeds']))}, size {doc['size']} ({doc['size_options']}), "
        f"lr {doc['lr']:g}, CWT-Net wt_bands {doc.get('wt_bands', PAPER_READING['wt_bands'])}",
        "",
        f"Store `{doc['store']}`, test split, whole patches. PSNR/SSIM: 8-bit RGB, no border "
        "crop (the authors' convention); Y-crop: BasicSR, Y channel, crop_border = scale. "
        "Spread: max - min PSNR over the seeds. Paper: the paper's MLCamSR figure (its own "
        "data, budget and size; compare orderings, not values).",
        "",
        "| row | mode | PSNR | SSIM | spread | Y-crop PSNR | Y-crop SSIM | steps | wall s "
        "| samples/s | paper PSNR / SSIM |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    bic = doc["rows"][0].get("bicubic") if doc["rows"] else None
    for r in doc["rows"]:
        paper = f"{r['paper'][0]:.3f} / {r['paper'][1]:.4f}" if r.get("paper") else "-"
        for mode in _modes(r["arch"]):
            f = r[mode]
            lines.append(
                f"| {r['name']} | {mode} | {f['psnr']:.3f} | {f['ssim']:.4f} | {f['spread']:.3f} "
                f"| {f['psnr_y_crop']:.3f} | {f['ssim_y_crop']:.4f} | {r['steps']} | {r['wall_s']} "
                f"| {r['samples_per_s'] if r['samples_per_s'] is not None else '-'} | {paper} |"
            )
    if bic is not None:
        lines.append(f"| bicubic (same images) | - | {bic['psnr']:.3f} | {bic['ssim']:.4f} | - "
                     f"| {bic['psnr_y_crop']:.3f} | {bic['ssim_y_crop']:.4f} | 0 | - | - | - |")
    return "\n".join(lines) + "\n"


__all__ = ["PAPER", "SIZES", "SMALL", "TABLES", "Row", "markdown", "rows_for", "run_experiment"]
