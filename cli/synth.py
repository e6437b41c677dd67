"""``mlcamsr synth``: write CAMELYON-like synthetic slides for the demo and tests."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import choice_option, handle_errors
from mlcamsr.synth import SLIDE_FORMATS


def _parse_size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """``WxH`` or one int (square), level-0 px."""
    try:
        parts = [int(v) for v in value.lower().replace(" ", "").split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 64:
        raise click.BadParameter(f"{value!r}: give WxH level-0 px (e.g. 4096x3072) or one "
                                 "int for a square, at least 64", ctx=ctx, param=param)
    return parts[0], parts[1]


@click.command("synth")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write slide_000.tif ..., slide_000.xml ... and coords.csv into (created).")
@click.option("--n-slides", default=2, show_default=True, type=click.IntRange(min=1),
              help="Number of slides.")
@click.option("--size", default="4096x3072", show_default=True, callback=_parse_size, metavar="WxH",
              help="Level-0 size WxH in px (one int for a square). 4096x3072 takes a few "
                   "seconds per slide, 8192x6144 about four times that.")
@click.option("--mpp", default=0.243, show_default=True, type=click.FloatRange(0.01, 100),
              help="Level-0 um/px written in the resolution tags (CAMELYON16 40x: 0.243).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Random seed; the same seed writes byte-identical files.")
@click.option("--odd-levels", is_flag=True,
              help="CAMELYON16-style non-power-of-two downsamples: each level is w//2+1 px "
                   "(1.996, 3.98, ...), the case tiffslide 3.0.1 loses levels on.")
@click.option("--n-coords", default=16, show_default=True, type=click.IntRange(min=0),
              help="Patch centres per slide in coords.csv: about a third in lesions "
                   "(label tumor), the rest normal tissue, and (from 4 up) one centre "
                   "half on glass as a QC case.")
@choice_option("--format", SLIDE_FORMATS, default="generic-jpeg", dest="fmt",
               help="File format: the CAMELYON16-like generic JPEG TIFF, or an Aperio SVS with "
                    "JPEG 2000 tiles in YCbCr (33003, which openslide and tiffslide decode "
                    "differently) or RGB (33005).")
@click.option("--no-lesions", is_flag=True,
              help="Do not paint tumour regions (no XML, no label column).")
@handle_errors
def synth(out: Path, n_slides: int, size: tuple[int, int], mpp: float, seed: int,
          odd_levels: bool, n_coords: int, fmt: str, no_lesions: bool) -> None:
    """Write synthetic CAMELYON-like whole-slide images to try the pipeline on.

    Each slide is a generic tiled pyramidal TIFF (JPEG 512-px tiles, levels by 2
    down to a thumbnail, resolution tags in cm) that openslide and tiffslide both
    open with the same levels and mpp. The content is H&E-like: tissue on white
    glass, pink stroma with fine fibres, purple nuclei with sharp edges, and
    tumour regions outlined in ASAP XML (slide_000.xml), so extraction, QC and
    lesion labelling all have something real to do.

    \b
    Example:
      mlcamsr synth --out slides/ --n-slides 3 --size 8192x6144
      mlcamsr extract --slides slides/ --coords slides/coords.csv --annotations slides/
    """
    from tqdm import tqdm

    from mlcamsr.synth import synth_slides

    with tqdm(total=n_slides, unit="slide", desc="synth") as bar:
        paths = synth_slides(out, n_slides=n_slides, size=size, mpp=mpp, seed=seed,
                             odd_levels=odd_levels, lesions=not no_lesions,
                             n_coords=n_coords, fmt=fmt, progress=lambda p: bar.update(1))
    click.echo(f"Wrote {len(paths)} slides and {out / 'coords.csv'}")
