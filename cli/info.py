"""``mlcamsr info``: members, counts, QC and split summary of a store."""

from __future__ import annotations

import json
import sys

import click

from cli.common import handle_errors, storage_options_option, store_argument


@click.command("info")
@store_argument()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@storage_options_option()
@handle_errors
def info(store: str, as_json: bool) -> None:
    """Summarise STORE (default mlcamsr.zarr): members, kept/rejected/failed, QC, split.

    Also a quick integrity check (table, shard files and their recorded sizes; exit 1
    and DAMAGED lines when it fails); `mlcamsr verify` checks every chunk.

    \b
    Examples:
      mlcamsr info
      mlcamsr info other.zarr --json | jq .counts
    """
    from mlcamsr.verify import store_info

    summary = store_info(store)
    health = summary["integrity"]
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        sys.exit(0 if health["ok"] else 1)
    click.echo(f"{summary['store']}  (format {summary['format_version']}, mlcamsr {summary['tool_version']})")
    if summary.get("complete") is False or (summary.get("complete") is None and not summary["counts"]["rows"]):
        click.echo("UNFINISHED: extract has not completed (no patch table yet); rerun the same "
                   "`mlcamsr extract` command to finish it")
    c = summary["counts"]
    click.echo(f"rows: {c['rows']}  kept: {c['kept']}  rejected: {c['rejected']}  failed: {c['failed']}"
               f"  slides: {summary['n_slides']}")
    click.echo("members:")
    for m in summary["members"]:
        src = ", ".join(f"{k} {v}" for k, v in m.get("sources", {}).items())
        chunk = f"chunk {m['chunk']:>4} px" if m.get("chunk") else ""
        if m.get("zstd_level") is not None:
            chunk += f"  zstd {m['zstd_level']:>2}"
        todo = "  UNFINISHED (rerun `mlcamsr pyramid`)" if m.get("complete") is False else ""
        click.echo(f"  {m['name']:<12} {m['size']:>5} px  {m['mpp']:.3f} um/px  {m['kind']:<8} "
                   f"{chunk}  {src}".rstrip() + todo)
    qc = summary.get("qc", {})
    if qc:
        click.echo("QC (kept rows):")
        for k, v in qc.items():
            click.echo(f"  {k}: {v:.3f}" if isinstance(v, float) else f"  {k}: {v}")
    if summary.get("reasons"):
        click.echo("reasons (not kept):")
        for r, n in summary["reasons"].items():
            click.echo(f"  {n:>6}  {r}")
    if summary.get("split"):
        click.echo("split: " + ", ".join(f"{k} {v}" for k, v in summary["split"].items()))
    if summary.get("size_bytes") is not None:
        click.echo(f"size on disk: {summary['size_bytes'] / 1e6:.1f} MB")
    if health["ok"]:
        click.echo("integrity: quick check ok (table, shard files and sizes); "
                   "`mlcamsr verify` reads every chunk")
        return
    for p in health["problems"]:
        click.echo(f"DAMAGED: {p}")
    for d in health["damage"]:
        rows = ", ".join(map(str, d["rows"][:8])) + (" ..." if len(d["rows"]) > 8 else "")
        click.echo(f"DAMAGED: {d['member']} rows {rows}: {d['reason']}")
    if health["damage"]:
        click.echo("run `mlcamsr verify` for the full list; rerun the same `mlcamsr extract` "
                   "(and `mlcamsr pyramid`) to repair")
    sys.exit(1)
