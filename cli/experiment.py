"""``cwtnet-experiment``: train and score every row of one of the paper's tables."""

from __future__ import annotations

import click

from cli.common import choice_option, device_option, handle_errors, scale_option, store_option
from cwtnet.choices import DEFAULT_WT_BANDS, WT_BANDS
from cwtnet.choices import EXPERIMENT_SIZES as SIZES
from cwtnet.choices import EXPERIMENT_TABLES as TABLES


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("table", type=click.Choice(TABLES))
@store_option()
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Output folder: OUT/TABLE.md, OUT/TABLE.json and one run folder per row.")
@click.option("--steps", type=int, default=300, show_default=True,
              help="Training steps (batches) of every row: equal steps, not equal time.")
@scale_option(2, help="Upsampling factor of every row.")
@click.option("--seeds", default="0", show_default=True,
              help="Comma-separated seeds; one run per seed per row (two measure the noise).")
@click.option("--size", type=click.Choice(SIZES), default="small", show_default=True,
              help="small: 2 blocks x 32 channels, batch 4, LR 32 (CPU); paper: 12 CWTBs x 64, "
                   "batch 16, LR 64 (CUDA).")
@click.option("--lr", "lr", type=float, default=2e-4, show_default=True, help="Adam learning rate.")
@click.option("--only", default="", help="Comma-separated row names to run [default: all].")
@click.option("--max-images", type=int, default=None, help="Score only the first N test images.")
@click.option("--tile", type=int, default=None,
              help="Score in LR tiles of this size, 8-px overlap (CPU: the search is quadratic in "
                   "the tile area) [default: untiled up to 256 px, 512 for a windowed CWT-Net search].")
@choice_option("--wt-bands", WT_BANDS, default=None,
               help=f"CWT-Net rows: reference sub-bands, hh (Eq. 4) or detail (LH, HL, HH) "
                    f"[default: {DEFAULT_WT_BANDS}].")
@device_option()
@handle_errors
def main(table: str, store: str, out: str, steps: int, scale: int, seeds: str, size: str,
         lr: float, only: str, max_images: int | None, tile: int | None, wt_bands: str | None,
         device: str) -> None:
    """Train every row of TABLE for the same steps, seed and data; score it on the test split.

    TABLE: table1 (every architecture in the registry), table2 (CWT-Net variants),
    table3 (WT-branch inputs), table4 (losses), table5 (2/4/8/12/24 CWTBs), wr (the two
    readings of the WR module, not a paper table). A rerun
    skips finished rows and resumes interrupted ones.

    \b
    Examples:
      cwtnet-experiment table2 --zarr real.zarr --out exp --steps 300 --seeds 0,1
      cwtnet-experiment table1 --zarr mlcamsr.zarr --out exp --size paper --device cuda
    """
    from cwtnet.experiment import run_experiment
    from mlcamsr.errors import InputError

    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise InputError(f"--seeds {seeds!r}: give comma-separated integers, e.g. 0,1") from None
    if not seed_list:
        raise InputError("--seeds: give at least one seed")
    doc = run_experiment(table, store=store, out=out, steps=steps, scale=scale, device=device,
                         seeds=seed_list, size=size, lr=lr, max_images=max_images, tile=tile,
                         wt_bands=wt_bands,
                         only=tuple(s.strip() for s in only.split(",") if s.strip()),
                         log=lambda s: click.echo(s, err=True))
    click.echo(open(f"{out}/{table}.md").read().rstrip())
    click.echo(f"written: {out}/{table}.md, {out}/{table}.json ({doc['wall_s']} s)")


if __name__ == "__main__":
    main()
