"""``mlcamsr demo``: the whole main job on an embedded default, ending in a report."""

from __future__ import annotations

import click

from cli.common import device_option, handle_errors


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", type=click.Path(file_okay=False), default="demo", show_default=True,
              help="Folder for slides, store, runs, evaluations and report/.")
@click.option("--minutes", type=float, default=8.0, show_default=True,
              help="Total training budget: CWT-Net gets 3/4 of it and EDSR 1/4 with "
              "--compare (6 + 2 by default), CWT-Net all of it without.")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="Also train an EDSR-baseline on the same data (1/4 of --minutes).")
@device_option()
@click.option("--workers", type=int, default=2, show_default=True, help="Extraction worker processes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fresh", is_flag=True, help="Redo every stage (default: reuse slides and store).")
@handle_errors
def demo(out: str, minutes: float, compare: bool, device: str, workers: int, seed: int,
         fresh: bool) -> None:
    """Synthetic slides -> extract -> pyramid -> split -> train CWT-Net -> eval -> report.

    About 10 minutes on a 2-core CPU with the defaults (8 minutes of training). Open
    OUT/report/report.md.

    \b
    Examples:
      mlcamsr demo                           # -> demo/report/report.md
      mlcamsr demo --minutes 2 --no-compare  # a quicker look, CWT-Net only
      mlcamsr demo --device cuda --minutes 20 --out demo_gpu
    """
    from cwtnet.demo import run_demo

    res = run_demo(out, minutes=minutes, compare=compare, seed=seed, device=device,
                   workers=workers, fresh=fresh, log=lambda s: click.echo(s, err=True))
    click.echo(f"report: {res.report} (total {res.timings['total']:.0f} s)")
