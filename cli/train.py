"""``cwtnet-train``: train CWT-Net (or a baseline) on an MLCamSR store.

Every flag maps onto ``cwtnet.config.TrainConfig``; ``--config FILE`` (YAML or TOML)
sets any option too, and flags typed on the command line win over the file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.common import (
    arch_option,
    choice_option,
    device_option,
    handle_errors,
    ref_source_option,
    scale_option,
    schedule_option,
    search_window_option,
    storage_options_option,
    store_option,
)
from cwtnet.choices import EVAL_MODES, V_MODES, WT_BANDS
from cwtnet.config import TrainConfig, resolve_config

_D = TrainConfig()


def _opt(*decls: str, **kw):  # an option whose default is TrainConfig's, shown in --help
    return click.option(*decls, show_default=True, **kw)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@store_option()
@scale_option(_D.scale)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory [default: runs/<arch>_x<scale>_<timestamp>].")
@arch_option(_D.arch, help="Network to train.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML or TOML file of options (any TrainConfig field); flags override it. "
                   "Only here: loss (e.g. {variant: only_l1}, Table IV: only_l1, only_mse, only_sr, "
                   "only_wt, weight_exchange; lambda_sr, lambda_wt, ...) and model_options "
                   "(e.g. {v_mode: ttsr, ref_dropout: 0.5}).")
@_opt("--steps", type=int, default=_D.steps, help="Optimisation steps (batches).")
@click.option("--minutes", type=float, default=None, help="Also stop after this many minutes of training.")
@_opt("--batch-size", type=int, default=_D.batch_size, help="Global batch size (split across torchrun processes).")
@_opt("--patch", type=int, default=_D.patch, help="LR patch size p (gt s*p, ref 2p).")
@click.option("--blocks", type=int, default=None, help="Main blocks (CWTBs / EDSR blocks / RCAN groups) [default: paper's, 12 CWTBs].")
@click.option("--channels", type=int, default=None, help="Feature channels [default: 64].")
@search_window_option(checkpoint=False, default=_D.search_window)
@choice_option("--v-mode", V_MODES, default=_D.v_mode,
               help="CWT-Net's K/V order: paper (V = f_hwt up-down, III-D) or ttsr (V = f_hwt).")
@choice_option("--wt-bands", WT_BANDS, default=_D.wt_bands,
               help="CWT-Net's reference sub-bands on the WT branch: hh (the paper's Eq. 4) or "
                    "detail (LH, HL, HH: what x2 lacks). Paper's reading: --wt-bands hh "
                    "--v-mode paper --search-window global (docs/cwtnet.md).")
@_opt("--lr", type=float, default=_D.lr, help="Adam learning rate.")
@schedule_option(_D.schedule)
@ref_source_option(_D.ref_source)
@_opt("--ema-decay", type=float, default=_D.ema_decay, help="EMA decay of the weights (0 = off).")
@_opt("--val-every", type=int, default=_D.val_every, help="Validate every N steps (0 = at the end only).")
@_opt("--val-images", type=int, default=_D.val_images, help="Test images used for validation (0 = all).")
@choice_option("--best-mode", EVAL_MODES, default=_D.best_mode,
               help="CWT-Net mode whose validation PSNR picks best.pt (sisr: what cwtnet-sr runs).")
@_opt("--ckpt-every", type=int, default=_D.ckpt_every, help="Write RUN_DIR/last.pt every N steps.")
@_opt("--log-every", type=int, default=_D.log_every, help="CSV log every N steps.")
@_opt("--num-workers", type=int, default=_D.num_workers, help="DataLoader worker processes.")
@_opt("--in-memory/--no-in-memory", default=_D.in_memory, help="Hold the training split in RAM.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="For a store in object storage: local folder keeping each shard read, so "
                   "epoch 2 reads locally [default: no cache].")
@_opt("--seed", type=int, default=_D.seed, help="Seed of weights, batches and augmentation.")
@device_option(_D.device)
@_opt("--amp/--no-amp", default=_D.amp, help="bf16 autocast on CUDA (CPU always fp32).")
@_opt("--compile/--no-compile", default=_D.compile, help="torch.compile the model.")
@_opt("--progress/--no-progress", default=_D.progress, help="tqdm progress bar.")
@click.option("--adv-weight", type=float, default=None,
              help="--arch srgan: weight of the adversarial loss [default: the paper's 1e-3; 0 = SRResNet].")
@click.option("--vgg-weights", type=click.Path(dir_okay=False), default=None,
              help="--arch srgan: torchvision vgg19 state dict for the VGG54 content loss "
                   "[default: none, the pixel loss is the content loss and results are labelled so].")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly from its last.pt.")
@storage_options_option()
@handle_errors
def main(config_file: str | None, resume: bool, **flags) -> None:
    """Train CWT-Net (or a baseline: --arch srcnn|srgan|edsr|rcan|mwcnn|swdnet|bicubic) on an MLCamSR store.

    \b
    Examples:
      cwtnet-train --zarr mlcamsr.zarr
      cwtnet-train --zarr mlcamsr.zarr --scale 4 --steps 20000 --out runs/x4
      cwtnet-train --out runs/x4 --resume
      cwtnet-train --zarr mlcamsr.zarr --arch srgan --vgg-weights vgg19-dcbb9e9d.pth
      cwtnet-train --zarr mlcamsr.zarr --config ablation.yaml --steps 1000
      torchrun --nproc-per-node 2 -m cli.train --zarr mlcamsr.zarr --out runs/ddp
    """
    from cwtnet.train import train  # torch and the trainer load only when training

    ctx = click.get_current_context()
    explicit = {
        k for k in flags if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE
    }
    overrides = {k: v for k, v in flags.items() if k in explicit or config_file is None}
    cfg = resolve_config(config_file, overrides)
    cfg.check_typed(explicit)
    result = train(cfg, resume=resume, explicit=explicit, on_checkpoint=_echo_checkpoint)
    if result.rank != 0:
        return
    click.echo(
        f"done: {result.step} steps ({result.stopped}), {result.wall_s:.0f} s, "
        f"{result.samples_per_s:.1f} samples/s; checkpoint {result.checkpoint}"
    )
    for mode, m in result.val.items():
        click.echo(
            f"  val {mode}: PSNR {m['psnr']:.3f} dB, SSIM {m['ssim']:.4f} "
            f"(bicubic {m['psnr_bicubic']:.3f} / {m['ssim_bicubic']:.4f}, {m['n']} images)"
        )


def _echo_checkpoint(step: int, path: Path) -> None:
    # one stdout line per last.pt write (what a supervisor or test waits for)
    click.echo(f"checkpoint step {step} {path}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
