"""What can a reference carry at x2? The Haar band ceiling on real H&E.

    python bench/band_oracle.py

For every H&E image in ``../shared/data/patches`` (not the IHC one): gt = the image
(cropped to a multiple of 4 px), LR = the project's bicubic /2 (``mlcamsr.resize``, as
``mlcamsr pyramid``), estimate = bicubic x2 of LR. Prints the PSNR (8-bit RGB, no border
cut) of the estimate, of the estimate with gt's Haar HH band put in (what the paper's WT
branch carries, Eq. 4: ``wt_bands="hh"``), and with all three detail bands LH, HL, HH put
in (``wt_bands="detail"``), plus each band's share of the estimate's squared error (the
Haar transform is orthonormal, so the shares add up to 1). A trained SISR model's own
ceilings are in ``bench/reference.py`` (the ``SISR + gt ...`` columns).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"

from cwtnet.diagnose import band_oracle  # noqa: E402
from cwtnet.model.wavelet import dwt_haar  # noqa: E402
from mlcamsr.resize import imresize  # noqa: E402


def images() -> list[Path]:
    """The H&E images of ../shared/data/patches (the IHC folder left out)."""
    return [p for p in sorted((DATA / "patches").glob("*/*")) if p.parent.name != "ihc"]


def row(path: Path) -> dict[str, float]:
    im = np.asarray(Image.open(path).convert("RGB"))
    h, w = (im.shape[0] // 4) * 4, (im.shape[1] // 4) * 4
    gt_u8 = np.ascontiguousarray(im[:h, :w])
    up_u8 = imresize(imresize(gt_u8, scale=0.5), scale=2.0)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255

    gt, up = t(gt_u8), t(up_u8)
    err = [float(((a - b) ** 2).sum()) for a, b in zip(dwt_haar(up.double()), dwt_haar(gt.double()))]
    shares = [e / sum(err) for e in err]
    return {**band_oracle(up, gt, 0), **dict(zip(("LL", "LH", "HL", "HH"), shares))}


def main() -> int:
    rows = {}
    for p in images():
        try:
            rows[f"{p.parent.name}/{p.name}"] = row(p)
        except OSError as exc:  # an image PIL cannot read is named, not fatal
            print(f"skipped {p}: {exc}", file=sys.stderr)
    print("| image | bicubic | + gt HH | + gt LH, HL, HH | error share LL / LH / HL / HH |")
    print("|---|---:|---:|---:|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['estimate']:.2f} | {r['hh']:.2f} | {r['detail']:.2f} "
              f"| {r['LL']:.2f} / {r['LH']:.2f} / {r['HL']:.2f} / {r['HH']:.2f} |")
    m = {k: float(np.mean([r[k] for r in rows.values()])) for k in ("estimate", "hh", "detail", "HH")}
    print(f"| mean of {len(rows)} | {m['estimate']:.2f} | {m['hh']:.2f} (+{m['hh'] - m['estimate']:.2f}) "
          f"| {m['detail']:.2f} (+{m['detail'] - m['estimate']:.2f}) | HH {m['HH']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
