"""Tables and the report folder: a Table-I-style table, the training curve, the pictures.

``table_i(results)`` turns rows ``{"dataset", "method", "scale", "psnr", "ssim", ...}``
into the paper's layout (one row per dataset and method, a PSNR(dB) | SSIM pair per
scale, the best of each column in bold). ``write_report`` assembles ``report.md``
from a training run and its evaluations; every figure in it comes from the
``metrics.json`` files that ``cwtnet.evaluate`` writes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _ssim(v: float) -> str:
    s = f"{v:.4f}"
    return s[1:] if s.startswith("0.") else s


def table_i(
    results: Sequence[dict[str, Any]], *, psnr_key: str = "psnr", ssim_key: str = "ssim",
    title: str | None = None, extra: Sequence[str] = (),
) -> str:
    """Markdown table in the layout of the paper's Table I (best per column in bold).

    ``extra`` names further keys shown as columns after the scales (e.g. steps, wall_s).
    """
    scales = sorted({int(r["scale"]) for r in results})
    keys: list[tuple[str, str]] = []
    for r in results:
        k = (str(r["dataset"]), str(r["method"]))
        if k not in keys:
            keys.append(k)
    cell = {(str(r["dataset"]), str(r["method"]), int(r["scale"])): r for r in results}
    best: dict[tuple[str, int], tuple[float, float]] = {}
    for (d, _m, s), r in cell.items():
        p, q = float(r[psnr_key]), float(r[ssim_key])
        bp, bq = best.get((d, s), (float("-inf"), float("-inf")))
        best[(d, s)] = (max(bp, p), max(bq, q))
    head = "| Dataset | Method | " + " | ".join(f"{s}x PSNR(dB) | {s}x SSIM" for s in scales)
    head += "".join(f" | {e}" for e in extra) + " |"
    sep = "|---|---|" + "---:|---:|" * len(scales) + "---:|" * len(extra)
    lines = ([f"**{title}**", ""] if title else []) + [head, sep]
    last = None
    for d, m in keys:
        parts = [d if d != last else "", m]
        last = d
        for s in scales:
            found = cell.get((d, m, s))
            if found is None:
                parts += ["", ""]
                continue
            p, q = float(found[psnr_key]), float(found[ssim_key])
            bp, bq = best[(d, s)]
            ps, qs = f"{p:.3f}", _ssim(q)
            parts += [f"**{ps}**" if p == bp else ps, f"**{qs}**" if q == bq else qs]
        for e in extra:
            vals = [cell[(d, m, s)].get(e, "") for s in scales if (d, m, s) in cell]
            parts.append(" / ".join(str(v) for v in vals))
        lines.append("| " + " | ".join(parts) + " |")
    return "\n".join(lines)


def write_report(
    out_dir: str | Path, *, runs: Sequence[str | Path] = (), evals: Sequence[str | Path] = (),
    title: str = "MLCamSR + CWT-Net report", notes: Sequence[str] = (),
) -> Path:
    """Write ``out_dir/report.md`` from training runs (curves) and evaluation folders.

    Copies each run's ``curve.png`` and each evaluation's first comparison pictures into
    ``out_dir`` so the folder stands alone. Returns the path of ``report.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""]
    lines += [n for n in notes] + ([""] if notes else [])
    results: list[dict[str, Any]] = []
    metas: list[tuple[Path, dict[str, Any]]] = []
    for e in evals:
        e = Path(e)
        m = json.loads((e / "metrics.json").read_text())
        meta = m["meta"]
        metas.append((e, m))
        name = Path(str(meta["store"]).rstrip("/")).name
        if not any(r["method"] == "bicubic" and r["scale"] == meta["scale"] for r in results):
            results.append({"dataset": name, "method": "bicubic", "scale": meta["scale"], **m["bicubic"]})
        results.append({"dataset": name, "method": meta["label"], "scale": meta["scale"], **m["model"]})
    if results:
        n = metas[0][1]["meta"]["n_images"]
        lines += ["## Results (test split, whole patches)", "",
                  f"PSNR/SSIM as the paper's authors score (8-bit RGB, no border crop), "
                  f"{n} test images; computed by `cwtnet/evaluate.py` (`metrics.json`).", "",
                  table_i(results), "",
                  "BasicSR convention (Y channel, crop = scale):", "",
                  table_i(results, psnr_key="psnr_y_crop", ssim_key="ssim_y_crop"), ""]
    for r in runs:
        r = Path(r)
        curve = r / "curve.png"
        if curve.exists():
            dst = out / f"curve_{r.name}.png"
            shutil.copyfile(curve, dst)
            lines += [f"## Training curve: `{r.name}`", "", f"![training curve]({dst.name})", ""]
            cfg = r / "config.yaml"
            if cfg.exists():
                lines += ["<details><summary>config</summary>", "", "```yaml",
                          cfg.read_text().strip(), "```", "", "</details>", ""]
    for e, m in metas:
        pics = sorted((e / "compare").glob("*.png"), key=lambda p: int(p.stem))[:3]
        if not pics:
            continue
        lines += [f"## {m['meta']['label']} x{m['meta']['scale']}: bicubic | model | ground truth", ""]
        for p in pics:
            dst = out / f"{e.name}_{p.name}"
            shutil.copyfile(p, dst)
            lines += [f"![{e.name} {p.stem}]({dst.name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
