"""``mlcamsr preview``: a contact sheet PNG of stored triplets."""

from __future__ import annotations

import click

from cli.common import handle_errors, store_argument


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if not value:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give table rows as integers, e.g. 0,5,12") from None


@click.command("preview")
@store_argument()
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="preview.png",
    show_default=True,
    help="Sheet to write: .png (or .jpg, .tif, .webp; the format follows the extension).",
)
@click.option("--n", "n", type=click.IntRange(min=1), default=12, show_default=True,
              help="Number of patches (a seeded random choice).")
@click.option(
    "--status",
    type=click.Choice(["kept", "rejected", "failed", "all"]),
    default="kept",
    show_default=True,
    help="Which table rows to show (rejected/failed rows have no pixels: their reason is shown).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the choice.")
@click.option("--rows", callback=_int_list, default=None,
              help="Show these table rows instead, e.g. 0,5,12 (overrides --n/--status).")
@click.option("--members", default=None,
              help="Comma-separated members to show [default: the real members, e.g. 40x,20x,10x].")
@click.option("--cell", type=click.IntRange(min=16, max=2048), default=192, show_default=True,
              help="Display size of each panel, px.")
@click.option("--cols", type=click.IntRange(min=1), default=2, show_default=True,
              help="Patches per row of the sheet.")
@click.option("--slides", "slides_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Slides folder of the extraction: rows without stored pixels (rejected) "
              "are read again from their slide so you can see why.")
@click.option("--zoom/--no-zoom", default=True, show_default=True,
              help="Add centre crops at the finest member's native resolution.")
@handle_errors
def preview(
    store: str,
    out: str,
    n: int,
    status: str,
    seed: int,
    rows: list[int] | None,
    members: str | None,
    cell: int,
    cols: int,
    zoom: bool,
    slides_dir: str | None,
) -> None:
    """Write a contact sheet of triplets from STORE (default mlcamsr.zarr).

    Each patch shows its members side by side (40x | 20x | 10x) at the same
    display size, so the same tissue sits at the same place in every panel;
    under them, the centre at the finest member's native resolution shows the
    detail each scale keeps. Captions give the table row, slide, centre,
    label, split and the QC figures (tissue fraction, RGB mean, alignment PSNR).

    \b
    Example: why were patches rejected?
      mlcamsr preview mlcamsr.zarr --status rejected --slides slides/ --out rejected.png
    """
    from mlcamsr.preview import preview as run

    result = run(
        store,
        out,
        n=n,
        status=status,
        seed=seed,
        rows=rows,
        members=[m.strip() for m in members.split(",") if m.strip()] if members else None,
        cell=cell,
        cols=cols,
        zoom=zoom,
        slides=slides_dir,
    )
    w, h = result["size"]
    click.echo(
        f"Wrote {result['path']} ({w}x{h} px): {len(result['rows'])} patches, "
        f"members {', '.join(result['members'])}"
    )
