"""``cwtnet-eval``: PSNR/SSIM of a checkpoint and bicubic on a split's whole patches."""

from __future__ import annotations

import click

from cli.common import (
    arch_option,
    choice_option,
    device_option,
    handle_errors,
    ref_source_option,
    scale_option,
    search_window_option,
    store_option,
)
from cwtnet.choices import EVAL_MODES


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@store_option()
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="A .pt written by cwtnet-train (RUN_DIR/last.pt or best.pt).")
@click.option("--split", default="test", show_default=True, help="Table split to score.")
@scale_option(None, help="Must match the checkpoint [default: the checkpoint's].")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder [default: <checkpoint folder>/eval_<split>_<mode>].")
@arch_option(None, help="Refuse a checkpoint of another architecture [default: accept the checkpoint's].")
@choice_option("--mode", ("both", *EVAL_MODES), default="both",
               help="CWT-Net with I'_GT (reference), through its WR module (sisr), or both side "
                    "by side (other networks: sisr).")
@ref_source_option(None, help="Reference to score with (Table III) [default: the one the "
                              "checkpoint was trained with].")
@click.option("--save-images", is_flag=True, help="Write images/<i>_sr.png, _bicubic.png, _gt.png.")
@click.option("--use-ema/--no-ema", default=True, show_default=True, help="EMA weights when the checkpoint has them.")
@device_option()
@click.option("--tile", type=int, default=None, help="LR tile size [default: untiled up to 256 px (512 for a windowed CWT-Net search), else 128].")
@click.option("--overlap", type=int, default=16, show_default=True, help="Tile overlap (LR px).")
@click.option("--pad", type=click.IntRange(min=0), default=8, show_default=True,
              help="Mirror-pad each LR image by this many px before the model and cut the result "
                   "(the border is otherwise the convolutions' zero-padded edge); 0 = off.")
@click.option("--max-images", type=int, default=None, help="Score only the first N images.")
@click.option("--pictures", type=int, default=6, show_default=True, help="Side-by-side pictures to write.")
@click.option("--lpips-weights", type=click.Path(file_okay=False), default=None,
              help="Folder with LPIPS files (alexnet-owt-7be5be79.pth / vgg16-397923af.pth torchvision "
                   "backbones and the lpips package's alex.pth / vgg.pth) [default: torch hub's "
                   "checkpoints + an installed lpips]; without them LPIPS is reported unavailable.")
@search_window_option(checkpoint=True)
@handle_errors
def main(store: str, checkpoint: str, split: str, scale: int | None, out: str | None,
         arch: str | None, mode: str, ref_source: str | None,
         save_images: bool, use_ema: bool, device: str, tile: int | None, overlap: int, pad: int,
         max_images: int | None, pictures: int, search_window: str | None,
         lpips_weights: str | None) -> None:
    """Score a checkpoint and bicubic (authors' PSNR/SSIM + BasicSR's) on STORE's test split.

    CWT-Net is scored in SISR mode and with its reference, side by side (--mode both:
    OUT/sisr and OUT/reference). Prints the image count, sizes and tiling first, then an
    estimated time from the first image.

    With --mode both (the default) a CWT-Net checkpoint is scored in SISR and in reference
    mode, into OUT/sisr/ and OUT/reference/; any other checkpoint or mode writes OUT/ itself.
    Each holds metrics.json (keys model, bicubic: mean psnr, ssim in the authors'
    convention; *_rgb_crop, *_y_crop: BasicSR's), per_image.csv, table.md and
    compare/<i>.png (bicubic | model | ground truth).

    \b
    Examples:
      cwtnet-eval --zarr mlcamsr.zarr --checkpoint runs/x2/best.pt --out eval_x2
      cwtnet-eval --zarr mlcamsr.zarr --checkpoint runs/x2/best.pt --mode sisr --save-images
      cwtnet-eval --zarr mlcamsr.zarr --checkpoint runs/x2/best.pt --search-window 8
    """
    from cwtnet.evaluate import evaluate_modes
    from cwtnet.infer import format_seconds
    from cwtnet.model import parse_search_window

    window = parse_search_window(search_window)

    def plan(p: dict) -> None:
        tiles = "untiled" if p["tiles"] == 1 else f"{p['tiles']} tiles of {p['tile']} LR px each"
        click.echo(f"scoring {p['label']} on {p['images']} images: {p['gt_px']} px ground truth, "
                   f"{p['lr_px']} px LR ({tiles}) on {p['device']}", err=True)

    def estimate(first: float, total: float) -> None:
        click.echo(f"first image {first:.2f} s: about {format_seconds(total)} in all", err=True)

    lines: list[str] = []
    for _mode, out_dir, m in evaluate_modes(
        store, checkpoint, out=out, split=split, scale=scale, mode=mode, save_images=save_images,
        use_ema=use_ema, device=device, tile=tile, overlap=overlap, max_images=max_images,
        pictures=pictures, progress=True, arch=arch, ref_source=ref_source, pad=pad,
        on_plan=plan, on_estimate=estimate, search_window=window, lpips_weights=lpips_weights,
    ):
        meta = m["meta"]
        if not lines:
            lines.append(f"x{meta['scale']} on {meta['n_images']} {split} images (8-bit RGB, no crop; "
                         f"reference: {meta['ref_source']}):")
            lines.append(f"  {'bicubic':<22} PSNR {m['bicubic']['psnr']:.3f} dB  SSIM {m['bicubic']['ssim']:.4f}")
        lines.append(f"  {meta['label']:<22} PSNR {m['model']['psnr']:.3f} dB  SSIM {m['model']['ssim']:.4f}"
                     f"  (written: {out_dir})")
        for net, v in m["lpips"].items():
            lines.append(f"  LPIPS {net}: " + (f"model {v['model']:.4f}  bicubic {v['bicubic']:.4f}"
                                             if isinstance(v, dict) else v))
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
