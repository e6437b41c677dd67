"""Exceptions that carry a one-line message for the user.

The CLI turns these into ``Error: <message>`` and the exit code below, never a
traceback. Library callers can catch them like any exception.
"""

from __future__ import annotations


class MLCamSRError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with (SPEC: 2 = bad usage or input)."""

    exit_code: int = 2


class InputError(MLCamSRError):
    """A file, row or option the user gave is wrong; the message names it and the fix."""


class StoreError(MLCamSRError):
    """A store is missing, not ours, locked, or made with other parameters."""
