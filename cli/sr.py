"""``cwtnet-sr``: tiled, memory-bounded SISR of an image or a slide region."""

from __future__ import annotations

import click

from cli.common import device_option, handle_errors, storage_options_option


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False),
              help="A .pt written by cwtnet-train.")
@click.option("--input", "input_path", required=True,
              help="PNG/TIFF image, or a slide that mlcamsr opens (read tile by tile; also a "
              "TIFF-family slide in object storage, s3://bucket/slide.tif).")
@click.option("--region", default=None, help="x,y,w,h: x, y in level-0 px, w, h in px of --level [default: all].")
@click.option("--level", type=int, default=0, show_default=True, help="Slide level to read.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .png or .tif (pyramidal).")
@click.option("--tile", type=int, default=128, show_default=True, help="LR tile size (bounds memory).")
@click.option("--overlap", type=int, default=16, show_default=True, help="Tile overlap, blended linearly (LR px).")
@device_option()
@click.option("--use-ema/--no-ema", default=True, show_default=True, help="EMA weights when present.")
@storage_options_option()
@handle_errors
def main(checkpoint: str, input_path: str, region: str | None, level: int, out: str, tile: int,
         overlap: int, device: str, use_ema: bool) -> None:
    """Super-resolve IMAGE_OR_SLIDE (SISR mode) in overlapping tiles with seamless blending.

    The scale is the checkpoint's; CWT-Net runs its WR module (no reference needed).

    \b
    Examples:
      cwtnet-sr --checkpoint runs/x2/best.pt --input tile.png --out tile_x2.png
      cwtnet-sr --checkpoint runs/x2/best.pt --input slide.tif --level 1 \\
                --region 20000,30000,4096,4096 --out region_x2.tif
    """
    from tqdm import tqdm

    from cwtnet.infer import parse_region, super_resolve_file

    bar = None  # made at the first tile, so a refused input prints its one line only

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="tile", desc="cwtnet-sr")
        bar.total = total
        bar.update(done - bar.n)

    try:
        res = super_resolve_file(checkpoint, input_path, out, region=parse_region(region), level=level,
                                 tile=tile, overlap=overlap, device=device, use_ema=use_ema,
                                 progress=progress)
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"wrote {res['out']} ({res['width']}x{res['height']} px, x{res['scale']}, {res['tiles']} tiles)")


if __name__ == "__main__":
    main()
