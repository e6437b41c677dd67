"""``cwtnet-sr``: tiled, memory-bounded SISR of an image or a slide region."""

from __future__ import annotations

import click

from cli.common import device_option, handle_errors, search_window_option, storage_options_option


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
@search_window_option(checkpoint=True)
@storage_options_option()
@handle_errors
def main(checkpoint: str, input_path: str, region: str | None, level: int, out: str, tile: int,
         overlap: int, device: str, use_ema: bool, search_window: str | None) -> None:
    """Super-resolve IMAGE_OR_SLIDE (SISR mode) in overlapping tiles with seamless blending.

    The scale is the checkpoint's; CWT-Net runs its WR module (no reference needed).
    Before the long part it prints the output size, the tile count and the disk it
    needs (refused when the --out folder lacks the space), then an estimated time from
    the first tile. Nothing resumes: an interrupted run leaves no files behind and a
    rerun starts over.

    \b
    Examples:
      cwtnet-sr --checkpoint runs/x2/best.pt --input tile.png --out tile_x2.png
      cwtnet-sr --checkpoint runs/x2/best.pt --input slide.tif --level 1 \\
                --region 20000,30000,4096,4096 --out region_x2.tif
      cwtnet-sr --checkpoint runs/x2/best.pt --input tile.png --out tile_x2.png --search-window 8
    """
    from tqdm import tqdm

    from cwtnet.infer import format_bytes, format_seconds, parse_region, super_resolve_file
    from cwtnet.model import parse_search_window

    window = parse_search_window(search_window)

    bar = None  # made at the first tile, so a refused input prints its one line only

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="tile", desc="cwtnet-sr")
        bar.total = total
        bar.update(done - bar.n)

    def plan(p: dict) -> None:
        for f in p["removed_stale"]:
            click.echo(f"removed {f} (left by a cwtnet-sr run that no longer runs)", err=True)
        click.echo(f"output {p['width']}x{p['height']} px (x{p['scale']}), {p['tiles']} tiles of "
                   f"{p['tile']} LR px on {p['device']}; disk: {format_bytes(p['scratch_bytes'])} scratch "
                   f"+ about {format_bytes(p['out_bytes'])} output, {format_bytes(p['free_bytes'])} free",
                   err=True)

    def estimate(first: float, total: float) -> None:
        click.echo(f"first tile {first:.2f} s: about {format_seconds(total)} in all", err=True)

    try:
        res = super_resolve_file(checkpoint, input_path, out, region=parse_region(region), level=level,
                                 tile=tile, overlap=overlap, device=device, use_ema=use_ema,
                                 progress=progress, on_plan=plan, on_estimate=estimate,
                                 search_window=window)
    except KeyboardInterrupt:  # before handle_errors' resume hint: nothing resumes here
        if bar is not None:
            bar.close()
        click.echo("Interrupted; nothing was written (cwtnet-sr does not resume: a rerun starts over).",
                   err=True)
        raise SystemExit(130) from None
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"wrote {res['out']} ({res['width']}x{res['height']} px, x{res['scale']}, {res['tiles']} tiles, "
               f"{format_seconds(res['seconds'])})")


if __name__ == "__main__":
    main()
