"""The command-line front door: every command loads and its help teaches."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.mlcamsr import COMMANDS, main


def test_group_help_lists_every_command() -> None:
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0, r.output
    for name in COMMANDS:
        assert name in r.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_help_shows_defaults(name: str) -> None:
    r = CliRunner().invoke(main, [name, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage: " in r.output and "--help" in r.output


def test_extract_help_groups_its_options() -> None:
    r = CliRunner().invoke(main, ["extract", "--help"])
    assert r.exit_code == 0, r.output
    sections = ["Inputs and output:", "Members (what each patch holds):", "Quality control:",
                "Parallelism:", "Store layout:"]
    positions = [r.output.index(s) for s in sections]
    assert positions == sorted(positions)
    # an option sits under its own heading, not under another one
    qc = r.output[r.output.index("Quality control:"):r.output.index("Parallelism:")]
    assert "--min-align-psnr" in qc and "--workers" not in qc


@pytest.mark.parametrize("script", ["cli.train", "cli.evaluate", "cli.sr", "cli.experiment"])
def test_cwtnet_scripts_help(script: str) -> None:
    import importlib

    r = CliRunner().invoke(importlib.import_module(script).main, ["--help"])
    assert r.exit_code == 0, r.output
    assert "Usage: " in r.output


def test_unknown_command_is_one_line_exit_2() -> None:
    r = CliRunner().invoke(main, ["extrakt"])
    assert r.exit_code == 2
    assert "No such command" in r.output
