"""Every ``mlcamsr`` command's --help teaches: it shows at least one example."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.mlcamsr import main

COMMANDS = ["extract", "info", "preview", "pyramid", "split", "sample-coords", "slides", "synth", "verify"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example(command):
    r = CliRunner().invoke(main, [command, "--help"])
    assert r.exit_code == 0, r.output
    assert "Example" in r.output and f"mlcamsr {command}" in r.output
