"""Run logs of ``cwtnet-train``: ``log.csv``, ``val.csv``, ``curve.png``, TensorBoard events.

matplotlib and tensorboard are imported inside the functions that use them, for import
cost only (they are heavy, and tensorboard is an optional extra); no circle is involved.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class CsvLog:
    """Append-only CSV with a fixed header; on resume rows after ``keep_until`` are dropped.

    ``keep_until=None`` starts a new file (an old one is removed).
    """

    def __init__(self, path: Path, keep_until: int | None = None) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if path.exists() and keep_until is not None:
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows:
                self.fields = list(rows[0].keys())
            rows = [r for r in rows if int(float(r["step"])) <= keep_until]
            with open(path, "w", newline="") as fh:
                if self.fields:
                    w = csv.DictWriter(fh, fieldnames=self.fields)
                    w.writeheader()
                    w.writerows(rows)
        elif path.exists():
            path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        """Append ``row``; the first row written fixes the header."""
        new = self.fields is None
        if new:
            self.fields = list(row.keys())
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields or [], extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV log as dicts of strings (``[]`` when the file does not exist)."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def plot_curves(run_dir: Path) -> Path | None:
    """``RUN_DIR/curve.png``: training loss and validation PSNR (dB) against step."""
    log, val = read_csv(run_dir / "log.csv"), read_csv(run_dir / "val.csv")
    if not log and not val:
        return None
    import matplotlib  # import cost: only runs that plot pay for matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    if log:
        steps = [int(r["step"]) for r in log]
        axes[0].plot(steps, [float(r["loss"]) for r in log], lw=1)
        axes[0].set_yscale("log")
    axes[0].set(xlabel="step", ylabel="training loss", title="L_CWT (train)")
    modes = sorted({r["mode"] for r in val})
    for mode in modes:
        rows = [r for r in val if r["mode"] == mode]
        axes[1].plot([int(r["step"]) for r in rows], [float(r["psnr"]) for r in rows], "o-", label=mode)
        if mode == modes[0]:
            axes[1].plot([int(r["step"]) for r in rows], [float(r["psnr_bicubic"]) for r in rows],
                         "kx--", lw=1, label="bicubic")
    axes[1].set(xlabel="step", ylabel="PSNR (dB, RGB, no crop)", title="validation (test split)")
    if modes:
        axes[1].legend()
    fig.tight_layout()
    out = run_dir / "curve.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def tensorboard_writer(run_dir: Path, enabled: bool) -> Any:
    """A ``SummaryWriter`` on ``RUN_DIR/tb``, or ``None`` when disabled or not installed."""
    if not enabled:
        return None
    try:  # optional extra, and heavy: imported only when asked for
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - tensorboard is an optional extra
        return None
    return SummaryWriter(str(run_dir / "tb"))
