"""``mlcamsr extract``: slides + coords.csv -> an aligned, quality-checked Zarr store."""

from __future__ import annotations

import shlex
import sys

import click

from cli.common import (
    DEFAULT_STORE,
    EXIT_OK,
    EXIT_PARTIAL,
    backend_option,
    handle_errors,
    parse_scales,
    print_warnings,
    reader_check_option,
    rgb_mean_option,
    sectioned,
    storage_options_option,
)
from mlcamsr.fingerprint import HASH_CHOICES
from mlcamsr.qc import QCThresholds


@click.command("extract", cls=sectioned({
    "Inputs and output": ["slides_dir", "coords_csv", "out", "annotations", "mpp", "backend", "reader_check",
                          "storage_options"],
    "Members (what each patch holds)": ["size", "base_mpp", "base_mag", "scales", "allow_upsample"],
    "Quality control": ["min_tissue", "min_stain", "rgb_mean", "rgb_tol", "min_align_psnr"],
    "Parallelism": ["workers", "processes", "scheduler", "cache_mb", "dashboard"],
    "Store layout": ["shard_rows", "chunk", "zstd_level", "slide_hash", "overwrite"],
}))
@click.option("--slides", "slides_dir", required=True, type=click.Path(file_okay=True),
              help="Folder (or object-storage prefix, s3://bucket/slides/) holding the slides named in "
              "the coords file.")
@click.option("--coords", "coords_csv", required=True, type=click.Path(),
              help="CSV with slide,x,y (level-0 px of the patch CENTRE) [,label,mpp,...].")
@click.option("--out", default=DEFAULT_STORE, show_default=True,
              help="Store to write (path or fsspec URL); rerun the same command to resume.")
@click.option("--size", default=1024, show_default=True, type=click.IntRange(min=1),
              help="Finest member side in px.")
@click.option("--base-mpp", default=0.243, show_default=True, type=float,
              help="um/px of the finest member (CAMELYON16 40x: 0.243).")
@click.option("--base-mag", default=40.0, show_default=True, type=float,
              help="Magnification of the finest member, used in member names (40 -> 40x).")
@click.option("--scales", default="1,2,4", show_default=True, callback=parse_scales,
              help="Member scales: 1,2,4 gives 40x 1024 px, 20x 512 px, 10x 256 px.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0),
              help="Local dask workers (threads; see --processes); 0: serial, no dask.")
@click.option("--processes", is_flag=True,
              help="Run the local workers as separate processes instead of threads of this "
              "process (threads measured faster: no start-up, one shared block cache).")
@click.option("--scheduler", default=None,
              help="Address of a running dask.distributed scheduler (instead of a local cluster).")
@backend_option()
@reader_check_option()
@click.option("--mpp", default=None, type=float,
              help="um/px for slides without mpp metadata and no mpp column value.")
@click.option("--annotations", default=None, type=click.Path(),
              help="Folder of ASAP XML lesion annotations: label tumor/normal + tumor_frac.")
@click.option("--overwrite", is_flag=True,
              help="Replace a store made with other parameters (one with the same parameters is resumed).")
@click.option("--allow-upsample", is_flag=True,
              help="Allow members finer than the slide's finest level (upsampled; not real data).")
@click.option("--min-tissue", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Reject patches with a smaller tissue fraction (blank areas).")
@click.option("--min-stain", default=QCThresholds.min_stain, show_default=True, type=click.FloatRange(0, 1),
              metavar="FRACTION",
              help="Reject patches whose stain is not H&E: fewer than this fraction (0-1) of the "
              "stained tissue pixels H&E-like (optical density of blue < 0.75 x green; DAB/IHC "
              "and false colours score low, real H&E 0.83-1.0: docs/slides.md). 0 switches the check off.")
@rgb_mean_option()
@click.option("--rgb-tol", default=0.25, show_default=True, type=click.FloatRange(min=0),
              help="Reject patches whose channel means differ more from --rgb-mean.")
@click.option("--min-align-psnr", default=25.0, show_default=True, type=float,
              help="Reject patches whose coarser members score below this many dB against "
              "the anti-aliased downsample of the finest member (a shifted or mis-scaled level).")
@click.option("--shard-rows", default=16, show_default=True, type=click.IntRange(min=1),
              help="Patches per shard file (and per task).")
@click.option("--chunk", "chunk", default=None, type=click.IntRange(min=16), metavar="PX",
              help="Inner chunk side of the member arrays in px (each member: min(PX, its "
              "size)); a training crop decodes only the chunks it touches. Default: 256, or "
              "the whole patch when --size is 256 or less; --chunk SIZE = one chunk per patch.")
@click.option("--zstd-level", default=None, type=click.IntRange(-7, 22), metavar="N",
              help="Zstandard level of the (lossless) member arrays. Default: -1 for a new "
              "store (H&E decoded from JPEG is noise-like: level 1 saves 5 % more space but "
              "encodes 2x and decodes 3x slower); a rerun (also with --overwrite) keeps the store's own "
              "level (`mlcamsr info` shows it).")
@click.option("--cache-mb", default=256, show_default=True, type=click.FloatRange(min=0),
              help="Per-worker cache of decoded slide blocks in MiB (0: off); pixels unchanged.")
@click.option("--dashboard", is_flag=True,
              help="Serve the local dask cluster's dashboard on 127.0.0.1:8787 (default: none; "
              "nothing listens on a network interface).")
@click.option("--hash", "slide_hash", default="fingerprint", show_default=True, type=click.Choice(HASH_CHOICES),
              help="How each slide is identified in the store and checked on a rerun: fingerprint "
              "(size + TIFF structure + a few byte ranges, O(1) per slide), full (also the sha256 "
              "of every byte: reads the whole collection), none.")
@click.option("--no-hash", is_flag=True, hidden=True, help="Same as --hash none (kept for old scripts).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@storage_options_option()
@handle_errors
def extract(slides_dir, coords_csv, out, size, base_mpp, base_mag, scales, workers, processes, scheduler,
            backend, reader_check, mpp, annotations, overwrite, allow_upsample, min_tissue, min_stain, rgb_mean,
            rgb_tol, min_align_psnr, shard_rows, chunk, zstd_level, cache_mb, dashboard, slide_hash, no_hash, quiet) -> None:
    """Extract aligned multi-scale patches (e.g. 40x/20x/10x) around each centre of --coords.

    Each member is read from a native pyramid level when its mpp is within 2 %, else
    downsampled from the next finer level with an anti-aliased bicubic; the source is
    recorded per patch. Patches failing QC are listed as rejected, not written.
    Exit 0: all rows kept or rejected; 1: some rows or slides failed (listed); 2: bad input.

    \b
    Examples:
      mlcamsr extract --slides camelyon16/images --coords coords.csv     # -> mlcamsr.zarr
      mlcamsr extract --slides camelyon16/images --coords coords.csv \\
          --annotations camelyon16/annotations --workers 8             # + tumor/normal labels
      mlcamsr extract --slides tcga/ --coords c.csv --mpp 0.25 --base-mpp 0.5 --base-mag 20
    Rerun the same command after a crash or Ctrl-C to finish only what is missing.
    """
    from mlcamsr.extract import extract as run

    res = run(
        slides_dir, coords_csv, out, size=size, base_mpp=base_mpp, base_mag=base_mag,
        scales=scales, workers=workers, processes=processes, scheduler=scheduler, backend=backend,
        reader_check=reader_check, mpp=mpp,
        annotations=annotations, overwrite=overwrite, allow_upsample=allow_upsample,
        min_tissue=min_tissue, min_stain=min_stain, rgb_mean=rgb_mean, rgb_tol=rgb_tol,
        min_align_psnr=min_align_psnr,
        shard_rows=shard_rows, zstd_level=zstd_level, chunk=chunk, cache_mb=cache_mb, hash_slides="none" if no_hash else slide_hash,
        progress=not quiet, dashboard=dashboard,
    )
    print_warnings(res.warnings)
    resumed = f", {res.tasks_skipped} shard(s) already done" if res.tasks_skipped else ""
    if res.repaired:
        resumed += f", {len(res.repaired)} damaged shard(s) rewritten"
    click.echo(
        f"{res.store}: {res.n_rows} rows: {res.n_kept} kept, {res.n_rejected} rejected, "
        f"{res.n_failed} failed ({res.seconds:.1f} s{resumed})"
    )
    if res.failures:
        click.echo("Failed rows (slide, row, reason):", err=True)
        for slide, row, reason in res.failures[:50]:
            click.echo(f"  {slide}\trow {row}\t{reason}", err=True)
        if len(res.failures) > 50:
            more = len(res.failures) - 50
            click.echo(f"  ... and {more} more (see `mlcamsr info {shlex.quote(str(res.store))}`)", err=True)
    sys.exit(EXIT_PARTIAL if res.n_failed else EXIT_OK)
