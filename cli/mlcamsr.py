"""The ``mlcamsr`` command group. Subcommands load lazily so ``--help`` stays fast."""

from __future__ import annotations

import importlib

import click

from mlcamsr import __version__

# command name -> "module:attribute"; each module is one page: options, one call, exit code.
COMMANDS: dict[str, str] = {
    "synth": "cli.synth:synth",
    "extract": "cli.extract:extract",
    "info": "cli.info:info",
    "preview": "cli.preview:preview",
    "pyramid": "cli.pyramid:pyramid",
    "split": "cli.split:split",
    "sample-coords": "cli.sample_coords:sample_coords",
    "slides": "cli.slides:slides",
    "demo": "cli.demo:demo",
    "verify": "cli.verify:verify",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used (Click docs, "Lazily Loading")."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlcamsr")
def main() -> None:
    """Build aligned multi-scale super-resolution datasets from whole-slide images.

    \b
    Typical run:
      mlcamsr synth --out slides/                 # or use your CAMELYON folder
      mlcamsr extract --slides slides/ --coords slides/coords.csv
      mlcamsr pyramid && mlcamsr split && mlcamsr info
      mlcamsr verify                              # every chunk against its crc32c
      cwtnet-train --zarr mlcamsr.zarr
    """
