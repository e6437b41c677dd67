"""``cwtnet-utility``: Table VI, tumor/normal accuracy of a ResNet-50 on GT, bicubic and SR tiles."""

from __future__ import annotations

import click

from cli.common import handle_errors, store_option


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@store_option()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--runs", multiple=True, type=click.Path(), metavar="RUN_DIR",
              help="cwtnet-train run folder (last.pt, else best.pt) or .pt; repeatable.")
@click.option("--scale", type=click.Choice(["2", "4", "8"]), default="2", show_default=True,
              help="SR factor of the protocol (the paper: 2); runs must match.")
@click.option("--tile", type=int, default=128, show_default=True, help="Tile side at GT resolution (px).")
@click.option("--epochs", type=int, default=10, show_default=True, help="Classifier training epochs.")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Adam learning rate.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="torchvision ResNet-50 state dict to start from (weights_only) [default: from scratch].")
@click.option("--width", type=int, default=64, show_default=True,
              help="ResNet stem width: 64 is ResNet-50; smaller only for quick checks.")
@click.option("--max-patches", type=int, default=None, help="At most N patches per split (quick checks).")
@click.option("--sr-tile", type=int, default=None,
              help="LR tile (px) for the runs' SR, overlap 8 [default: whole patches; e.g. 68 for CWT-Net on a CPU].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@handle_errors
def main(store: str, out: str, runs: tuple[str, ...], scale: str, tile: int, epochs: int, batch_size: int,
         lr: float, weights: str | None, width: int, max_patches: int | None, sr_tile: int | None, seed: int,
         device: str) -> None:
    """Train a ResNet-50 on STORE's ground-truth train tiles (tumor/normal labels from
    `mlcamsr extract --annotations`), then score the test tiles as GT, bicubic(down),
    bicubic and each run's SR output. Writes OUT/table6.md, table6.json (with the
    paper's figures beside ours), predictions.csv (every tile) and classifier.pt.

    \b
    Examples:
      cwtnet-utility --zarr demo/mlcamsr.zarr --out table6 --runs runs/edsr_x2 --runs runs/cwtnet_x2
      cwtnet-utility --zarr mlcamsr.zarr --out table6 --weights resnet50-0676ba61.pth --epochs 5
    """
    from cwtnet.utility import UtilityConfig, run_utility

    if epochs < 1 or batch_size < 2 or tile < 2 or width < 1:
        raise click.UsageError("--epochs and --width must be >= 1, --batch-size and --tile >= 2")
    cfg = UtilityConfig(store=store, out=out, runs=list(runs), scale=int(scale), tile=tile, epochs=epochs,
                        batch_size=batch_size, lr=lr, weights=weights, width=width,
                        max_patches=max_patches, sr_tile=sr_tile, seed=seed, device=device)
    result = run_utility(cfg, log=click.echo)
    click.echo(f"written: {out}/table6.md, table6.json, predictions.csv, classifier.pt "
               f"({result['meta']['wall_s']} s)")


if __name__ == "__main__":
    main()
