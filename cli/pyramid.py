"""``mlcamsr pyramid [STORE]``: FTMS-style bicubic members from the finest member."""

from __future__ import annotations

import click

from cli.common import handle_errors, storage_options_option, store_argument


@click.command("pyramid")
@store_argument()
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Worker processes (0 = serial; default: number of CPUs).",
)
@click.option(
    "--levels",
    type=click.IntRange(min=1, max=6),
    default=3,
    show_default=True,
    help="Number of /2 halvings (3: 20x, 10x, 5x from 40x).",
)
@click.option("--overwrite", is_flag=True, help="Remake bicubic members made with other parameters.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar.")
@storage_options_option()
@handle_errors
def pyramid(store: str, workers: int | None, levels: int, overwrite: bool, progress: bool) -> None:
    """Make 20x_bicubic, 10x_bicubic, 5x_bicubic from the finest member of STORE.

    Repeated anti-aliased bicubic /2 (MATLAB imresize, see docs/resize.md); resumable:
    rerun the same command after an interruption to finish it.

    \b
    Examples:
      mlcamsr pyramid                       # mlcamsr.zarr: 20x/10x/5x_bicubic
      mlcamsr pyramid other.zarr --levels 2 --workers 4
    """
    from mlcamsr.pyramid import pyramid as run

    result = run(store, workers=workers, overwrite=overwrite, progress=progress, levels=levels)
    click.echo(result.summary())
