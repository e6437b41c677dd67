"""Pieces every command shares: error handling, exit codes, common options.

Exit codes (SPEC "Bad input"): 0 all done; 1 the run finished but some rows or
slides failed; 2 bad usage or unreadable inputs.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from cwtnet.choices import DEVICES, EVAL_MODES, SCHEDULES
from cwtnet.model import ARCH_NAMES
from mlcamsr.errors import InputError, MLCamSRError
from mlcamsr.qc import PAPER_RGB_MEAN
from mlcamsr.reader_check import READER_CHECK_MODES
from mlcamsr.remote import ENV_OPTIONS, parse_storage_options
from mlcamsr.slides import BACKENDS
from mlcamsr.triplets import DATASET_SCALES, REF_SOURCES

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2

DEFAULT_STORE = "mlcamsr.zarr"


def handle_errors(fn: F) -> F:
    """Turn library errors into one line on stderr and the right exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MLCamSRError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted; rerun the same command to resume.", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def store_argument(required: bool = False) -> Callable[[F], F]:
    """The positional STORE argument; defaults to ``mlcamsr.zarr`` in the working directory."""
    return click.argument(
        "store", default=DEFAULT_STORE, required=required, metavar="[STORE]"
    )


def store_option(name: str = "--zarr") -> Callable[[F], F]:
    """``--zarr STORE`` for the cwtnet commands (default ``mlcamsr.zarr``)."""
    return click.option(
        name,
        "store",
        default=DEFAULT_STORE,
        show_default=True,
        help="Path or fsspec URL of the MLCamSR Zarr store.",
    )


def sectioned(sections: dict[str, list[str]]) -> type[click.Command]:
    """A Command class whose ``--help`` lists options under headings.

    ``sections`` maps a heading to parameter names (the Python names); options not
    named fall under "Other options". Click has no option groups of its own; this
    only changes how help is laid out, not parsing.
    """

    class SectionedCommand(click.Command):
        def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            records = {p.name: p.get_help_record(ctx) for p in self.get_params(ctx)}
            placed: set[str] = set()
            for heading, names in sections.items():
                rows = [r for r in (records.get(n) for n in names) if r is not None]
                placed.update(names)
                if rows:
                    with formatter.section(heading):
                        formatter.write_dl(rows)
            rest = [r for n, r in records.items() if r and n not in placed]
            if rest:
                with formatter.section("Other options"):
                    formatter.write_dl(rest)

    return SectionedCommand


def _export_storage_options(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_storage_options(value)
    except InputError as exc:
        raise click.BadParameter(str(exc)) from None
    os.environ[ENV_OPTIONS] = value  # this process and its children (DataLoader, local dask workers)
    return value


def storage_options_option() -> Callable[[F], F]:
    """``--storage-options JSON``: fsspec options for s3:// (etc.) slides and stores.

    Without it, credentials and endpoint come from the ``AWS_*`` environment variables
    (``AWS_ENDPOINT_URL`` included) as for any AWS client.
    """
    return click.option(
        "--storage-options",
        "storage_options",
        default=None,
        metavar="JSON",
        expose_value=False,
        is_eager=True,
        callback=_export_storage_options,
        help="fsspec options for URLs (s3://...), e.g. '{\"endpoint_url\": \"http://127.0.0.1:9000\"}'; "
        "default: the AWS_* environment variables.",
    )


# ----------------------------------------------------------------------------- mlcamsr choices
# One home per mlcamsr choice list (slide backends: mlcamsr.slides.BACKENDS; the paper's
# RGB mean: mlcamsr.qc.PAPER_RGB_MEAN); every command builds its option from here.


def _to_int(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else int(value)


def choice_option(
    name: str, choices: Sequence[str] | Sequence[int], *, default: str | int | None, help: str,
    dest: str | None = None,
) -> Callable[[F], F]:
    """A ``click.Choice`` option over one of the project's choice lists (default shown).

    ``default=None`` leaves the option unset; a list of ints (scales) parses to ``int``.
    """
    decls = (name,) if dest is None else (name, dest)
    numeric = all(isinstance(c, int) for c in choices)
    return click.option(
        *decls, type=click.Choice([str(c) for c in choices]),
        default=None if default is None else str(default), show_default=default is not None,
        callback=_to_int if numeric else None, help=help,
    )


def backend_option(help: str = "Slide reader.") -> Callable[[F], F]:
    """``--backend auto|openslide|tiffslide`` (:data:`mlcamsr.slides.BACKENDS`)."""
    return choice_option("--backend", BACKENDS, default="auto", help=help)


def reader_check_option() -> Callable[[F], F]:
    """``--reader-check on|off`` (:data:`mlcamsr.reader_check.READER_CHECK_MODES`)."""
    return choice_option(
        "--reader-check", READER_CHECK_MODES, default="on",
        help="With --backend auto, read a small fixed sample of each slide with openslide and "
        "tiffslide; a slide they disagree on is read with openslide (warned, recorded).",
    )


def print_warnings(lines: Sequence[str]) -> None:
    """Each warning line on stderr, prefixed ``Warning:``."""
    for line in lines:
        click.echo(f"Warning: {line}", err=True)


def parse_scales(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    """A click callback: ``"1,2,4"`` -> ``(1, 2, 4)`` (member scales of extract and slides)."""
    try:
        out = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give integers separated by commas, e.g. 1,2,4") from None
    return out


def parse_floats(n: int) -> Callable[[click.Context, click.Parameter, str | None], tuple[float, ...] | None]:
    """A click callback: ``"a,b,c"`` -> ``(a, b, c)`` floats, exactly ``n`` of them (0: any number)."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
        if value is None:
            return None
        try:
            out = tuple(float(v) for v in value.split(","))
        except ValueError:
            raise click.BadParameter(f"{value!r}: give {n} comma-separated numbers") from None
        if n and len(out) != n:
            raise click.BadParameter(f"{value!r}: give {n} comma-separated numbers")
        return out

    return parse


def rgb_mean_option(
    help: str = "Reference RGB mean in [0,1] (the paper's MLCamSR training mean).",
) -> Callable[[F], F]:
    """``--rgb-mean R,G,B`` in [0, 1], default :data:`mlcamsr.qc.PAPER_RGB_MEAN`."""
    return click.option(
        "--rgb-mean",
        default=",".join(f"{v:g}" for v in PAPER_RGB_MEAN),
        show_default=True,
        callback=parse_floats(3),
        help=help,
    )


# ----------------------------------------------------------------------------- cwtnet choices
# One home per cwtnet choice list, all torch-free: architectures cwtnet.model.ARCH_NAMES,
# the scales the dataset serves mlcamsr.triplets.DATASET_SCALES (networks may support more:
# cwtnet.model.MODEL_SCALES), reference sources mlcamsr.triplets.REF_SOURCES, devices,
# schedules and evaluation modes cwtnet.choices. Each command builds its option here.


def arch_option(default: str | None, help: str = "Network.") -> Callable[[F], F]:
    """``--arch`` (:data:`cwtnet.model.ARCH_NAMES`)."""
    return choice_option("--arch", ARCH_NAMES, default=default, help=help)


def scale_option(default: int | None, help: str = "Upsampling factor.") -> Callable[[F], F]:
    """``--scale`` as an int (:data:`mlcamsr.triplets.DATASET_SCALES`)."""
    return choice_option("--scale", DATASET_SCALES, default=default, help=help)


def device_option(default: str = "auto",
                  help: str = "auto = CUDA when present, else CPU.") -> Callable[[F], F]:
    """``--device`` (:data:`cwtnet.choices.DEVICES`)."""
    return choice_option("--device", DEVICES, default=default, help=help)


def ref_source_option(default: str | None, help: str = "WT-branch input (Table III).") -> Callable[[F], F]:
    """``--ref-source`` (:data:`mlcamsr.triplets.REF_SOURCES`)."""
    return choice_option("--ref-source", REF_SOURCES, default=default, help=help)


def schedule_option(default: str, help: str = "Learning-rate schedule.") -> Callable[[F], F]:
    """``--schedule`` (:data:`cwtnet.choices.SCHEDULES`)."""
    return choice_option("--schedule", SCHEDULES, default=default, help=help)


def _window(ctx: click.Context, param: click.Parameter, value: str | int | None) -> int | None | str:
    """``--search-window`` of training: ``PX`` -> int, ``global`` -> ``None``."""
    if value is None or isinstance(value, int):
        return value
    if str(value).strip().lower() == "global":
        return None
    try:
        px = int(value)
    except ValueError:
        px = -1
    if px < 0:
        raise click.BadParameter(f"{value!r}: give LR px >= 0 (e.g. 2) or 'global'")
    return px


def search_window_option(*, checkpoint: bool, default: int | None = None) -> Callable[[F], F]:
    """``--search-window``: CWT-Net's search window in LR px either side of each query.

    Training (``checkpoint=False``): an int >= 0 or ``global`` (the paper's search), unset =
    ``default``. Evaluation / inference (``checkpoint=True``): an int >= 0 or ``global``,
    unset = as the checkpoint was trained (:func:`cwtnet.model.parse_search_window`).
    """
    if not checkpoint:
        return click.option("--search-window", type=str, default="global" if default is None else str(default),
                            metavar="PX|global", callback=_window, show_default=True,
                            help="CWT-Net searches only K positions within PX LR px (rows and "
                                 "columns) of each query, cost linear in the image area; "
                                 "global is the paper's search.")
    return click.option("--search-window", default=None, metavar="PX|global",
                        help="CWT-Net's search window for this run: PX LR px either side of each "
                             "query, or 'global' [default: as the checkpoint was trained].")


def mode_option(default: str = "reference", help: str = (
        "CWT-Net with I'_GT (reference) or through its WR module (sisr).")) -> Callable[[F], F]:
    """``--mode`` (:data:`cwtnet.choices.EVAL_MODES`)."""
    return choice_option("--mode", EVAL_MODES, default=default, help=help)
