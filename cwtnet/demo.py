"""The one-command demo: synthetic slides -> store -> CWT-Net -> evaluation -> report.

``run_demo(out)`` runs the whole main job on an embedded default, on CPU in about
``minutes`` of training plus a few minutes of data and evaluation:

1. ``mlcamsr synth``: 3 CAMELYON-like pyramidal TIFFs (0.243 um/px, 4096 x 3072) with
   16 patch centres each;
2. ``mlcamsr extract`` at 256 px (40x 256, 20x 128, 10x 64; QC on);
3. ``mlcamsr pyramid`` (FTMS-style ``*_bicubic`` members) and ``mlcamsr split`` (5:1 by slide);
4. ``cwtnet-train``: a small CWT-Net (4 CWTBs x 32 channels, x2, LR patch 32, batch 8,
   Adam 5e-4, EMA 0.99) for 3/4 of ``minutes`` of wall time (6 of the default 8);
5. optionally EDSR (8 blocks x 32 channels) on the same data for the last 1/4;
6. ``cwtnet-eval`` on the test split (whole 256-px patches; CWT-Net in reference and
   SISR modes) and ``report/report.md`` with the table, the curve and the pictures.

Every stage is the same library call the command line makes. Stages whose output
already exists are reused, so a second run only retrains (``fresh=True`` redoes all).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cwtnet.config import TrainConfig
from cwtnet.evaluate import evaluate
from cwtnet.report import write_report
from cwtnet.train import train
from mlcamsr.errors import InputError
from mlcamsr.extract import extract
from mlcamsr.pyramid import pyramid
from mlcamsr.split import split
from mlcamsr.store import open_store
from mlcamsr.synth import synth_slides

# progress lines go to this logger unless the caller passes ``log`` (the CLI echoes them)
_LOG = logging.getLogger("cwtnet.demo")

DEMO_SLIDES = 3
DEMO_SLIDE_SIZE = (4096, 3072)
DEMO_COORDS_PER_SLIDE = 16
DEMO_PATCH_PX = 256


@dataclass
class DemoResult:
    """Where the demo put things, and how long each stage took (seconds)."""

    out: Path
    report: Path
    store: Path
    runs: list[Path]
    evals: list[Path]
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def run_demo(
    out: str | Path = "demo", *, minutes: float = 8.0, compare: bool = True, seed: int = 0,
    device: str = "auto", workers: int = 2, fresh: bool = False, eval_images: int = 8,
    log: Callable[[str], None] = _LOG.info,
) -> DemoResult:
    """Run the demo into ``out``; return paths and timings.

    ``minutes`` is the total training budget: CWT-Net gets all of it, or 3/4 of it with
    ``compare`` (EDSR, which is far cheaper per step, gets the other 1/4). ``eval_images``
    test patches are scored (0 = all). ``log`` receives one line per stage.
    """
    if minutes <= 0:
        raise InputError("--minutes must be positive (CWT-Net's training budget)")
    out = Path(out)
    if fresh and out.exists():
        for sub in ("slides", "mlcamsr.zarr", "runs", "eval", "report"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    def stage(name: str) -> Callable[[], None]:
        t = time.perf_counter()
        log(f"[demo] {name} ...")

        def done() -> None:
            timings[name] = round(time.perf_counter() - t, 1)
            log(f"[demo] {name}: {timings[name]:.0f} s")

        return done

    store = build_demo_store(out, seed=seed, workers=workers, stage=stage, log=log)

    runs: list[Path] = []
    evals: list[Path] = []
    plans: list[tuple[str, dict[str, Any]]] = [("cwtnet", dict(blocks=4, channels=32))]
    if compare:
        plans.append(("edsr", dict(blocks=8, channels=32)))
    metrics: dict[str, Any] = {}
    budget = {"cwtnet": minutes * (0.75 if compare else 1.0), "edsr": minutes * 0.25}
    for arch, size in plans:
        run_dir = out / "runs" / f"{arch}_x2"
        shutil.rmtree(run_dir, ignore_errors=True)
        cfg = TrainConfig(
            store=str(store), scale=2, out=str(run_dir), arch=arch, steps=100_000, minutes=budget[arch],
            batch_size=8, patch=32, lr=5e-4, schedule="constant", ema_decay=0.99, val_every=20,
            val_images=4, val_patch=32, ckpt_every=100, log_every=5, seed=seed, device=device,
            num_workers=0, progress=True, **size,
        )
        done = stage(f"train {arch}")
        r = train(cfg)
        log(f"[demo]   {arch}: {r.step} steps in {r.wall_s:.0f} s ({r.samples_per_s:.1f} samples/s)")
        done()
        runs.append(run_dir)
        modes = ["reference", "sisr"] if arch == "cwtnet" else ["sisr"]
        for mode in modes:
            ev = out / "eval" / f"{arch}_{mode}"
            done = stage(f"eval {arch} {mode}")
            # whole 128-px LR patches: CWT-Net's windowed search costs linear in the area
            m = evaluate(str(store), r.checkpoint, out=ev, mode=mode, device=device,
                         tile=None, overlap=8, pictures=3,
                         max_images=eval_images or None)
            metrics[f"{arch}_{mode}"] = {"model": m["model"], "bicubic": m["bicubic"],
                                         "steps": r.step, "train_s": round(r.wall_s, 1)}
            log(f"[demo]   {m['meta']['label']}: PSNR {m['model']['psnr']:.2f} dB "
                f"(bicubic {m['bicubic']['psnr']:.2f} dB) on {m['meta']['n_images']} test patches")
            done()
            evals.append(ev)
    done = stage("report")
    notes = [
        f"Made by `mlcamsr demo` in {time.perf_counter() - t_all:.0f} s: {DEMO_SLIDES} synthetic "
        f"CAMELYON-like slides, {DEMO_PATCH_PX}-px patches at 40x (+20x, 10x), x2.",
        "Training budget per network: "
        + ", ".join(f"{k.split('_')[0]} {v['steps']} steps / {v['train_s']:.0f} s"
                    for k, v in metrics.items() if k.endswith(("_reference", "edsr_sisr")))
        + " on CPU (a tiny budget: the paper trains 12 CWTBs x 64 channels far longer).",
        "Test images are whole 256-px patches of the held-out slide, run untiled (CWT-Net "
        "in cwtnet-train's default setting: detail bands, TTSR order, a 2-px search window).",
    ]
    report = write_report(out / "report", runs=runs, evals=evals, title="MLCamSR + CWT-Net demo",
                          notes=notes)
    done()
    timings["total"] = round(time.perf_counter() - t_all, 1)
    (out / "report" / "timings.json").write_text(json.dumps(timings, indent=2))
    return DemoResult(out=out, report=report, store=store, runs=runs, evals=evals, timings=timings,
                      metrics=metrics)


def build_demo_store(
    out: str | Path, *, seed: int = 0, workers: int = 2,
    stage: Callable[[str], Callable[[], None]] | None = None, log: Callable[[str], None] = _LOG.info,
) -> Path:
    """Stages 1-3 of the demo (synth, extract, pyramid, split) into ``out``; returns the store.

    Reuses ``out/slides`` and ``out/mlcamsr.zarr`` when they are complete.
    """
    def _noop(name: str) -> Callable[[], None]:
        return lambda: None

    stage = stage or _noop
    out = Path(out)
    slides = out / "slides"
    store = out / "mlcamsr.zarr"
    if not (slides / "coords.csv").exists():
        done = stage("synth")
        synth_slides(slides, n_slides=DEMO_SLIDES, size=DEMO_SLIDE_SIZE, seed=seed,
                     n_coords=DEMO_COORDS_PER_SLIDE)
        done()
    if not (store / "zarr.json").exists() or not _has_split(store):
        done = stage("extract")
        res = extract(slides, slides / "coords.csv", store, size=DEMO_PATCH_PX, workers=workers,
                      annotations=slides, progress=False)
        log(f"[demo]   {res.n_kept} patches kept, {res.n_rejected} rejected, {res.n_failed} failed")
        done()
        done = stage("pyramid")
        pyramid(store, workers=0, progress=False)
        done()
        done = stage("split")
        s = split(store, ratio="5:1", seed=seed, by="slide")
        log(f"[demo]   {s.summary()}")
        done()
    return store


def _has_split(store: Path) -> bool:
    try:
        t = open_store(store).table
        return "split" in t.columns and (t["split"].astype(str) == "test").any()
    except Exception:  # noqa: BLE001 - unfinished store: redo the data stages
        return False
