"""Pieces every command shares: error handling, exit codes, common options.

Exit codes (SPEC "Bad input"): 0 all done; 1 the run finished but some rows or
slides failed; 2 bad usage or unreadable inputs.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from cwtnet.choices import DEVICES, EVAL_MODES, SCHEDULES
from cwtnet.model import ARCH_NAMES
from mlcamsr.errors import MLCamSRError
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
                rows = [records[n] for n in names if records.get(n)]
                placed.update(names)
                if rows:
                    with formatter.section(heading):
                        formatter.write_dl(rows)
            rest = [r for n, r in records.items() if r and n not in placed]
            if rest:
                with formatter.section("Other options"):
                    formatter.write_dl(rest)

    return SectionedCommand


# --------------------------------------------------------------------------- cwtnet choice options
# One parametrised helper over the one home of each list (tiatoolbox's cli/common.py,
# without its thirty factories): ``choice_option("arch")`` means the same everywhere.

CHOICES: dict[str, tuple[Any, ...]] = {
    "arch": ARCH_NAMES,          # cwtnet.model.ARCHS
    "scale": DATASET_SCALES,     # mlcamsr.triplets: the scales a store gives triplets for
    "device": DEVICES,           # cwtnet.choices
    "ref_source": REF_SOURCES,   # mlcamsr.triplets
    "schedule": SCHEDULES,       # cwtnet.choices
    "mode": EVAL_MODES,          # cwtnet.choices
}

_CHOICE_HELP = {
    "arch": "Network.",
    "scale": "Upsampling factor.",
    "device": "auto = CUDA when present, else CPU.",
    "ref_source": "WT-branch input (Table III).",
    "schedule": "Learning-rate schedule.",
    "mode": "CWT-Net with I'_GT (reference) or through its WR module (sisr).",
}


def _to_int(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else int(value)


def choice_option(name: str, *, default: Any = None, help: str | None = None) -> Callable[[F], F]:
    """``--NAME`` (underscores become dashes) as a ``click.Choice`` of ``CHOICES[name]``.

    ``default=None`` leaves the option unset; integer lists (``scale``) parse to ``int``.
    ``help`` replaces the list's standard help text.
    """
    values = CHOICES[name]
    numeric = all(isinstance(v, int) for v in values)
    return click.option(
        "--" + name.replace("_", "-"), name,
        type=click.Choice([str(v) for v in values]),
        default=None if default is None else str(default),
        show_default=default is not None,
        callback=_to_int if numeric else None,
        help=help if help is not None else _CHOICE_HELP[name],
    )
