"""``cwtnet-eval``: PSNR/SSIM of a checkpoint and bicubic on a split's whole patches."""

from __future__ import annotations

import click

from cli.common import (
    arch_option,
    device_option,
    handle_errors,
    mode_option,
    scale_option,
    search_window_option,
    store_option,
)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@store_option()
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="A .pt written by cwtnet-train (RUN_DIR/last.pt or best.pt).")
@click.option("--split", default="test", show_default=True, help="Table split to score.")
@scale_option(None, help="Must match the checkpoint [default: the checkpoint's].")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder [default: <checkpoint folder>/eval_<split>_<mode>].")
@arch_option(None, help="Refuse a checkpoint of another architecture [default: accept the checkpoint's].")
@mode_option()
@click.option("--save-images", is_flag=True, help="Write images/<i>_sr.png, _bicubic.png, _gt.png.")
@click.option("--use-ema/--no-ema", default=True, show_default=True, help="EMA weights when the checkpoint has them.")
@device_option()
@click.option("--tile", type=int, default=None, help="LR tile size [default: untiled up to 256 px, else 128].")
@click.option("--overlap", type=int, default=16, show_default=True, help="Tile overlap (LR px).")
@click.option("--max-images", type=int, default=None, help="Score only the first N images.")
@click.option("--pictures", type=int, default=6, show_default=True, help="Side-by-side pictures to write.")
@search_window_option(checkpoint=True)
@handle_errors
def main(store: str, checkpoint: str, split: str, scale: int | None, out: str | None,
         arch: str | None, mode: str,
         save_images: bool, use_ema: bool, device: str, tile: int | None, overlap: int,
         max_images: int | None, pictures: int, search_window: str | None) -> None:
    """Score a checkpoint and bicubic (authors' PSNR/SSIM + BasicSR's) on STORE's test split.

    Prints the image count, sizes and tiling first, then an estimated time from the
    first image.

    Writes OUT/metrics.json (keys model, bicubic: mean psnr, ssim in the authors'
    convention; *_rgb_crop, *_y_crop: BasicSR's), per_image.csv, table.md and
    compare/<i>.png (bicubic | model | ground truth).

    \b
    Examples:
      cwtnet-eval --zarr mlcamsr.zarr --checkpoint runs/x2/best.pt --out eval_x2
      cwtnet-eval --zarr mlcamsr.zarr --checkpoint runs/x2/best.pt --mode sisr --save-images
      cwtnet-eval --zarr mlcamsr.zarr --checkpoint runs/x2/best.pt --search-window 8
    """
    from pathlib import Path

    from cwtnet.evaluate import evaluate
    from cwtnet.infer import format_seconds
    from cwtnet.model import parse_search_window

    window = parse_search_window(search_window)

    def plan(p: dict) -> None:
        tiles = "untiled" if p["tiles"] == 1 else f"{p['tiles']} tiles of {p['tile']} LR px each"
        click.echo(f"scoring {p['label']} on {p['images']} images: {p['gt_px']} px ground truth, "
                   f"{p['lr_px']} px LR ({tiles}) on {p['device']}", err=True)

    def estimate(first: float, total: float) -> None:
        click.echo(f"first image {first:.2f} s: about {format_seconds(total)} in all", err=True)

    out_dir = out or str(Path(checkpoint).parent / f"eval_{split}_{mode}")
    m = evaluate(store, checkpoint, out=out_dir, split=split, scale=scale,
                 mode=mode, save_images=save_images, use_ema=use_ema, device=device, tile=tile,
                 overlap=overlap, max_images=max_images, pictures=pictures, progress=True,
                 arch=arch, on_plan=plan, on_estimate=estimate, search_window=window)
    meta = m["meta"]
    click.echo(f"{meta['label']} x{meta['scale']} on {meta['n_images']} {split} images "
               f"(8-bit RGB, no crop):")
    click.echo(f"  model   PSNR {m['model']['psnr']:.3f} dB  SSIM {m['model']['ssim']:.4f}")
    click.echo(f"  bicubic PSNR {m['bicubic']['psnr']:.3f} dB  SSIM {m['bicubic']['ssim']:.4f}")
    click.echo(f"written: {out_dir}/metrics.json, per_image.csv, table.md, compare/")


if __name__ == "__main__":
    main()
