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

from mlcamsr.errors import MLCamSRError

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
