"""Networks of the project and ``build_model`` (one plain dict, no registry machinery).

Every model is called ``sr = model(lr, ref=None)`` with ``lr`` (B, 3, H, W) in [0, 1]
and returns ``sr`` (B, 3, sH, sW). Each model stores its options dataclass as
``model.options``, its factor as ``model.scale``, and says whether it has trainable
parameters in ``model.has_params`` (``False`` for bicubic).

Checkpoints store ``model_config(model)`` (a JSON-able dict) and rebuild with
``build_model(**config)``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from torch import nn

from mlcamsr.errors import InputError

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

SCALES = (2, 3, 4, 8)


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


def make_options(arch: str, **options: Any):
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
    if int(scale) not in SCALES:
        raise ModelConfigError(f"scale {scale} is not supported; choose one of: {', '.join(map(str, SCALES))}")
    model = net_cls(int(scale), make_options(arch, **options))
    model.arch = arch
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    """``{"arch", "scale", "options"}`` of a built model, JSON-able; ``build_model(**cfg)`` rebuilds it."""
    opts = dataclasses.asdict(model.options)
    opts = {k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()}
    return {"arch": model.arch, "scale": int(model.scale), "options": opts}


def build_from_config(config: dict[str, Any]) -> nn.Module:
    """Inverse of ``model_config``."""
    return build_model(config["arch"], config["scale"], **config.get("options", {}))


def has_trainable_params(model: nn.Module) -> bool:
    """``True`` when the model has a parameter that requires gradient (``False`` for bicubic)."""
    return any(p.requires_grad for p in model.parameters())


__all__ = [
    "ARCHS",
    "ModelConfigError",
    "build_from_config",
    "build_model",
    "has_trainable_params",
    "make_options",
    "model_config",
    "options_for",
]
