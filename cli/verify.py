"""``mlcamsr verify [STORE]``: check every kept row's shards and chunks; list the damage."""

from __future__ import annotations

import json
import sys

import click

from cli.common import handle_errors, store_argument


@click.command("verify")
@store_argument()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def verify(store: str, as_json: bool) -> None:
    """Check STORE (default mlcamsr.zarr): every kept row of every member, its shard file
    against what was written (size, crc32c) and each chunk's crc32c.

    Prints the damaged rows (member, row, slide, what is wrong) and exits 1 when there
    are any; rerunning the same `mlcamsr extract` (and `mlcamsr pyramid` for the
    *_bicubic members) rewrites exactly what is listed.

    \b
    Examples:
      mlcamsr verify
      mlcamsr verify other.zarr --json | jq .damaged_rows
    """
    from mlcamsr.verify import describe
    from mlcamsr.verify import verify as run

    report = run(store)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for line in describe(report):
            click.echo(line)
    sys.exit(report.exit_code)
