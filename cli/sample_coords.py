"""``mlcamsr sample-coords``: tissue-aware patch centres for ``mlcamsr extract``."""

from __future__ import annotations

import sys

import click

from cli.common import (
    EXIT_PARTIAL,
    backend_option,
    handle_errors,
    print_warnings,
    reader_check_option,
    storage_options_option,
)


@click.command("sample-coords")
@click.option(
    "--slides",
    "slides_dir",
    required=True,
    help="Folder of slides (or an object-storage prefix, s3://bucket/slides/: TIFF-family "
    "slides); names in the output are relative to it.",
)
@click.option(
    "--annotations",
    "annotations_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of ASAP XML lesion annotations (<slide stem>.xml); "
    "then half the centres come from tumour, half from tumour-free tissue.",
)
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Number of centres wanted.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="coords.csv",
    show_default=True,
    help="coords CSV to write (schema: manifests/coords_schema.json).",
)
@click.option(
    "--min-tissue",
    type=click.FloatRange(0, 1),
    default=0.9,
    show_default=True,
    help="Minimum tissue fraction of the whole finest-member square.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--size",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="Finest member side in px at --base-mpp (the square that must lie in tissue).",
)
@click.option(
    "--base-mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=0.243,
    show_default=True,
    help="um/px of the finest member (40x CAMELYON: 0.243).",
)
@click.option(
    "--spacing",
    type=click.FloatRange(min=0),
    default=None,
    help="Minimum distance between centres of one slide, level-0 px, in both x and y "
    "[default: one square side, so squares never overlap].",
)
@click.option(
    "--mpp",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="um/px for slides without mpp metadata (also written to the mpp column).",
)
@click.option(
    "--grid",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    metavar="PX",
    help="Centres on multiples of PX level-0 px, so 20x/10x squares fall on whole pixels of "
    "levels 1/2 and are read natively (1: off).",
)
@click.option(
    "--tumor-min-frac",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.5,
    show_default=True,
    help="Tumour fraction a square must reach to be sampled as tumor.",
)
@click.option(
    "--include",
    multiple=True,
    help="Glob pattern (relative to --slides) selecting slides; repeatable "
    "[default: every .tif/.tiff/.svs/.ndpi/... file and DICOM folder, recursively].",
)
@click.option(
    "--overlay-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to write one mask overlay PNG per slide [default: <out stem>_overlays/ beside --out].",
)
@click.option("--no-overlay", is_flag=True, help="Do not write overlay PNGs.")
@backend_option()
@reader_check_option()
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar.")
@storage_options_option()
@handle_errors
def sample_coords(
    slides_dir: str,
    annotations_dir: str | None,
    n: int,
    out: str,
    min_tissue: float,
    seed: int,
    size: int,
    base_mpp: float,
    spacing: float | None,
    grid: int,
    mpp: float | None,
    tumor_min_frac: float,
    include: tuple[str, ...],
    overlay_dir: str | None,
    no_overlay: bool,
    backend: str,
    reader_check: str,
    progress: bool,
) -> None:
    """Sample N patch centres whose whole finest-member square lies in tissue.

    A tissue mask is made per slide at about 8 um/px (Otsu on saturation,
    background, black and pen ink removed); centres are spread over slides,
    at least --spacing apart, deterministic per --seed. With --annotations,
    half are tumour and half tumour-free (labelled in the label column).
    Writes a coords CSV for `mlcamsr extract --coords` and an overlay PNG per
    slide showing the mask, lesions and sampled squares.

    \b
    Example:
      mlcamsr sample-coords --slides camelyon16/images \\
          --annotations camelyon16/annotations --n 1200 --out coords.csv
    """
    from mlcamsr.sampling import sample_coords as run

    df = run(
        slides_dir,
        n,
        out,
        annotations_dir=annotations_dir,
        min_tissue=min_tissue,
        seed=seed,
        size=size,
        base_mpp=base_mpp,
        spacing=spacing,
        grid=grid,
        mpp=mpp,
        tumor_min_frac=tumor_min_frac,
        include=list(include) or None,
        overlay_dir=overlay_dir,
        overlays=not no_overlay,
        backend=backend,
        reader_check=reader_check,
        progress=progress,
    )
    print_warnings(df.attrs.get("warnings", []))
    classes = df.attrs.get("classes", {})
    per_class = ", ".join(f"{k} {v}" for k, v in classes.items() if k != "any")
    msg = f"Wrote {len(df)} centres from {df['slide'].nunique()} slide(s) to {out}"
    click.echo(msg + (f" ({per_class})" if per_class else ""))
    if df.attrs.get("overlays"):
        first = next(iter(df.attrs["overlays"].values()))
        click.echo(f"Overlays: {len(df.attrs['overlays'])} PNG(s), e.g. {first}")
    # lesions smaller than the square never reach --tumor-min-frac: say which knob helps
    tumor_short = annotations_dir is not None and classes.get("tumor", 0) < n // 2
    tumor_hint = (
        f"; only {classes.get('tumor', 0)} square(s) reach --tumor-min-frac {tumor_min_frac:g} "
        "(lower it, or --size, for lesions smaller than the square)"
        if tumor_short else ""
    )
    if len(df) == 0:
        click.echo(
            f"Error: no centre fits: no {size}-px square lies in enough tissue of any slide; "
            f"lower --size or --min-tissue{tumor_hint}",
            err=True,
        )
        sys.exit(1)
    if len(df) < n:
        click.echo(
            f"Warning: only {len(df)} of {n} centres fit (lower --min-tissue or --spacing, "
            f"or add slides){tumor_hint}.",
            err=True,
        )
    elif annotations_dir is not None and classes and max(classes.values()) - min(classes.values()) > 1:
        click.echo(
            "Warning: tumour and normal counts differ (one class ran short; the other filled "
            f"in){tumor_hint}.",
            err=True,
        )
    failed = df.attrs.get("failed", {})
    for reason in failed.values():
        click.echo(f"Failed: {reason}", err=True)
    if failed:
        sys.exit(EXIT_PARTIAL)
