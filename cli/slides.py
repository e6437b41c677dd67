"""``mlcamsr slides``: an inventory of a folder of slides before anyone cuts patches."""

from __future__ import annotations

import json
import sys

import click

from cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    backend_option,
    handle_errors,
    parse_scales,
    print_warnings,
    reader_check_option,
)


@click.command("slides")
@click.option("--slides", "slides_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of slides (searched recursively; a folder of .dcm files is one slide).")
@click.option("--json", "as_json", is_flag=True, help="Print the inventory as JSON.")
@click.option("--sheet", default=None, type=click.Path(dir_okay=False), metavar="FILE.png",
              help="Also write a thumbnail contact sheet.")
@click.option("--base-mpp", default=0.243, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="um/px of the planned extract's finest member.")
@click.option("--scales", default="1,2,4", show_default=True, callback=parse_scales,
              help="Planned member scales: which would be read natively, which resampled.")
@click.option("--mpp", default=None, type=click.FloatRange(0.01, 100),
              help="um/px for slides without mpp metadata (as extract's --mpp).")
@click.option("--include", multiple=True, help="Glob pattern (relative to --slides) selecting slides; repeatable.")
@backend_option()
@reader_check_option()
@handle_errors
def slides(slides_dir: str, as_json: bool, sheet: str | None, base_mpp: float, scales: tuple[int, ...],
           mpp: float | None, include: tuple[str, ...], backend: str, reader_check: str) -> None:
    """List each slide's vendor, format, compression, levels, mpp, readers and tissue.

    Per slide: which backends open it and whether openslide and tiffslide decode the
    same pixels (the reader check extract runs), the levels with their downsamples and
    whether each is an exact half, mpp and its source, a tissue fraction from the
    thumbnail, and which planned members (--base-mpp, --scales) are native or resampled.
    Exit 0: every slide usable; 1: some cannot be used (listed with the reason).

    \b
    Examples:
      mlcamsr slides --slides camelyon16/images --sheet slides.png
      mlcamsr slides --slides tcga/ --base-mpp 0.5 --scales 1,2 --json | jq '.[].reader_check.status'
    """
    from mlcamsr.inventory import describe, inventory, write_sheet

    entries = inventory(slides_dir, base_mpp=base_mpp, scales=scales, mpp=mpp, backend=backend,
                        reader_check=reader_check, include=list(include) or None)
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in entries], indent=2))
    else:
        for e in entries:
            click.echo("\n".join(describe(e)))
        bad = sum(not e.usable for e in entries)
        click.echo(f"{len(entries)} slide(s): {len(entries) - bad} usable, {bad} not usable")
    print_warnings([e.reader_check["message"] for e in entries
                    if e.reader_check and e.reader_check["status"] == "disagree"])
    if sheet:
        click.echo(f"Contact sheet: {write_sheet(entries, sheet)}", err=True)
    sys.exit(EXIT_PARTIAL if any(not e.usable for e in entries) else EXIT_OK)
