"""``mlcamsr split [STORE]``: deterministic train/test split written into the table."""

from __future__ import annotations

import click

from cli.common import handle_errors, storage_options_option, store_argument


@click.command("split")
@store_argument()
@click.option("--ratio", default="5:1", show_default=True, help="TRAIN:TEST patch ratio.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--by",
    type=click.Choice(["slide", "patch"]),
    default="slide",
    show_default=True,
    help="slide: every slide on one side; patch: the paper's random split.",
)
@click.option(
    "--stratify",
    default=None,
    metavar="COLUMN",
    help="Balance the ratio within each value of this table column (e.g. label).",
)
@click.option("--overwrite", is_flag=True, help="Replace a split made with other arguments.")
@storage_options_option()
@handle_errors
def split(store: str, ratio: str, seed: int, by: str, stratify: str | None, overwrite: bool) -> None:
    """Assign every kept patch of STORE to train or test and print the achieved ratio.

    \b
    Examples:
      mlcamsr split                                  # 5:1 by slide, seed 0
      mlcamsr split --by patch                       # the paper's random split
      mlcamsr split --ratio 4:1 --stratify label --overwrite
    """
    from mlcamsr.split import split as run

    result = run(store, ratio=ratio, seed=seed, by=by, stratify=stratify, overwrite=overwrite)
    click.echo(result.summary())
