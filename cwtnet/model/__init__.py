"""Networks of the project and ``build_model`` (one plain dict, no registry machinery).

Every model is called ``sr = model(lr, ref=None)`` with ``lr`` (B, 3, H, W) in [0, 1]
and returns ``sr`` (B, 3, sH, sW). Each model stores its options dataclass as
``model.options``, its factor as ``model.scale``, and says whether it has trainable
parameters in ``model.has_params`` (``False`` for bicubic).

Checkpoints store ``model_config(model)`` (a JSON-able dict) and rebuild with
``build_model(**config)``. ``model_options`` maps the trainer's generic ``blocks`` /
``channels`` onto each architecture's own option names; ``build_checked`` is
``build_model`` with a one-line ``InputError`` for any bad option.

Importing this package does not import torch (the network modules load on first
build), so the command line reads ``ARCH_NAMES`` and ``MODEL_SCALES`` cheaply.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

from mlcamsr.errors import InputError

if TYPE_CHECKING:
    from torch import nn

ARCHS: dict[str, tuple[str, str, str]] = {
    "cwtnet": ("cwtnet.model.cwtnet_arch", "CWTNet", "CWTNetOptions"),
    "edsr": ("cwtnet.model.edsr_arch", "EDSR", "EDSROptions"),
    "rcan": ("cwtnet.model.rcan_arch", "RCAN", "RCANOptions"),
    "srcnn": ("cwtnet.model.srcnn_arch", "SRCNN", "SRCNNOptions"),
    "srgan": ("cwtnet.model.srgan_arch", "SRGAN", "SRGANOptions"),
    "mwcnn": ("cwtnet.model.mwcnn_arch", "MWCNN", "MWCNNOptions"),
    "swdnet": ("cwtnet.model.swdnet_arch", "SWDNet", "SWDNetOptions"),
    "bicubic": ("cwtnet.model.bicubic_arch", "Bicubic", "BicubicOptions"),
}
"""arch name -> (module, network class, options dataclass); modules import lazily."""

ARCH_NAMES: tuple[str, ...] = tuple(ARCHS)
"""The ``--arch`` choices (one home: the keys of ``ARCHS``)."""

MODEL_SCALES: tuple[int, ...] = (2, 3, 4, 8)
"""Factors the networks can be built for. Training and evaluation also need a dataset at
that factor: ``mlcamsr.triplets.DATASET_SCALES`` (2, 4, 8) is what they accept."""


class ModelConfigError(InputError, ValueError):
    """Unknown arch, option or scale: a one-line message that lists the choices."""


def _lookup(arch: str) -> tuple[type[nn.Module], type]:
    if arch not in ARCHS:
        raise ModelConfigError(f"unknown arch {arch!r}; choose one of: {', '.join(ARCHS)}")
    module, cls_name, opt_name = ARCHS[arch]
    mod = importlib.import_module(module)
    return getattr(mod, cls_name), getattr(mod, opt_name)


def options_for(arch: str) -> type:
    """The options dataclass of ``arch`` (its defaults are the paper's / literature's)."""
    return _lookup(arch)[1]


def make_options(arch: str, **options: Any) -> Any:
    """``options_for(arch)(**options)``, rejecting unknown names in one line; lists become tuples."""
    opt_cls = options_for(arch)
    names = [f.name for f in dataclasses.fields(opt_cls)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        choices = ", ".join(names) if names else "(none)"
        raise ModelConfigError(f"unknown option(s) {', '.join(unknown)} for arch {arch!r}; choose from: {choices}")
    # JSON turns tuples (e.g. an RGB mean) into lists: turn them back
    return opt_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})


def build_model(arch: str, scale: int, **options: Any) -> nn.Module:
    """Build ``arch`` at ``scale`` with ``options`` overriding the dataclass defaults.

    Raises ``ModelConfigError`` (an ``InputError`` and a ``ValueError``) for an unknown
    arch, option or scale.
    """
    net_cls, _ = _lookup(arch)
    if int(scale) not in MODEL_SCALES:
        raise ModelConfigError(
            f"scale {scale} is not supported; choose one of: {', '.join(map(str, MODEL_SCALES))}"
        )
    # Any: nn.Module types attribute reads as Tensor | Module; arch/scale/options are plain values
    model: Any = net_cls(int(scale), make_options(arch, **options))
    model.arch = arch
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """``{"arch", "scale", "options"}`` of a built model, JSON-able; ``build_model(**cfg)`` rebuilds it."""
    built: Any = model  # arch/scale/options are plain attributes every network sets
    opts = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(built.options).items()}
    return {"arch": built.arch, "scale": int(built.scale), "options": opts}


def build_from_config(config: dict[str, Any]) -> nn.Module:
    """Inverse of ``model_config``."""
    return build_model(config["arch"], config["scale"], **config.get("options", {}))


SEARCH_WINDOW_KEEP = "checkpoint"
"""``apply_search_window`` value that leaves a loaded model's search as trained."""


def parse_search_window(text: str | int | None) -> int | None | str:
    """``--search-window`` text -> ``int`` W >= 0, ``None`` for ``"global"``, or
    ``SEARCH_WINDOW_KEEP`` for ``None``/``"checkpoint"``; ``ModelConfigError`` otherwise."""
    if text is None or text == SEARCH_WINDOW_KEEP:
        return SEARCH_WINDOW_KEEP
    if isinstance(text, str) and text.strip().lower() == "global":
        return None
    try:
        w = int(text)
    except (TypeError, ValueError):
        w = -1
    if w < 0:
        raise ModelConfigError(f"--search-window {text!r}: give LR px >= 0 (e.g. 8) or 'global'")
    return w


def apply_search_window(model: nn.Module, window: int | None | str) -> nn.Module:
    """Set a CWT-Net's search window (``None`` = global); ``SEARCH_WINDOW_KEEP`` leaves it.

    Other architectures have no search: a window for them is a ``ModelConfigError``.
    """
    if window == SEARCH_WINDOW_KEEP:
        return model
    setter = getattr(model, "set_search_window", None)
    if not callable(setter):
        raise ModelConfigError(f"--search-window applies to CWT-Net only; this checkpoint is "
                               f"{getattr(model, 'arch', type(model).__name__)!r}: drop the option")
    setter(window)
    return model


def has_trainable_params(model: nn.Module) -> bool:
    """``True`` when the model has a parameter that requires gradient (``False`` for bicubic)."""
    return any(p.requires_grad for p in model.parameters())


# Generic trainer options -> the option names of each architecture's dataclass.
_BLOCKS_KEY = {"cwtnet": "n_cwtb", "edsr": "num_block", "rcan": "num_group", "srgan": "num_block",
               "swdnet": "num_modules"}
_CHANNELS_KEY = {"cwtnet": "num_feat", "edsr": "num_feat", "rcan": "num_feat", "srgan": "num_feat",
                 "swdnet": "num_feat"}


def model_options(arch: str, *, blocks: int | None = None, channels: int | None = None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``build_model`` keyword options: ``blocks`` (main blocks: CWTBs, EDSR / SRGAN residual
    blocks, RCAN residual groups, SWD-Net dual-stream modules) and ``channels`` (feature channels) under ``arch``'s own names,
    then ``extra`` as is. ``blocks``/``channels`` for an arch without them -> ``InputError``."""
    opts: dict[str, Any] = {}
    if blocks is not None:
        if arch not in _BLOCKS_KEY:
            raise InputError(f"--blocks does not apply to --arch {arch}")
        opts[_BLOCKS_KEY[arch]] = int(blocks)
    if channels is not None:
        if arch not in _CHANNELS_KEY:
            raise InputError(f"--channels does not apply to --arch {arch}")
        opts[_CHANNELS_KEY[arch]] = int(channels)
    opts.update(extra or {})
    return opts


def build_checked(arch: str, scale: int, options: dict[str, Any]) -> nn.Module:
    """``build_model`` where a value the network refuses (``TypeError``/``ValueError``) becomes
    a one-line ``InputError`` naming the architecture."""
    try:
        return build_model(arch, int(scale), **options)
    except InputError:
        raise
    except (TypeError, ValueError) as exc:
        raise InputError(f"model options for --arch {arch}: {exc}") from None


__all__ = [
    "ARCHS",
    "ARCH_NAMES",
    "MODEL_SCALES",
    "SEARCH_WINDOW_KEEP",
    "ModelConfigError",
    "apply_search_window",
    "build_checked",
    "build_from_config",
    "build_model",
    "has_trainable_params",
    "make_options",
    "model_config",
    "model_options",
    "options_for",
    "parse_search_window",
]
