"""CWT-Net: cross-scale wavelet Transformer for histopathology super-resolution.

Public names import lazily (``import cwtnet`` stays cheap for the CLI):

- ``build_model(arch, scale, **options)`` (``cwtnet.model``);
- ``haar_hh(x)`` (``cwtnet.model.wavelet``), ``search_transfer(q, k, v, chunk_size=None)``
  (``cwtnet.model.attention``);
- ``psnr``, ``ssim`` (``cwtnet.metrics``); ``CWTLoss`` (``cwtnet.losses``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_model": "cwtnet.model",
    "haar_hh": "cwtnet.model.wavelet",
    "search_transfer": "cwtnet.model.attention",
    "psnr": "cwtnet.metrics",
    "ssim": "cwtnet.metrics",
    "CWTLoss": "cwtnet.losses",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cwtnet' has no attribute {name!r}")
