"""Bicubic interpolation as a model (no parameters): the project's MATLAB-style bicubic."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mlcamsr.resize import imresize_torch


@dataclass
class BicubicOptions:
    """Bicubic has no options; the dataclass exists so every arch is built the same way."""


class Bicubic(nn.Module):
    """Bicubic upsampling with ``mlcamsr.resize.imresize_torch`` (MATLAB ``imresize``, a = -0.5).

    It has no parameters: ``has_params`` is ``False`` so trainers skip the optimiser and
    evaluate it directly. The output is not clamped (bicubic can overshoot [0, 1] a
    little); ``cwtnet.metrics.tensor_to_uint8`` rounds and clips as the evaluator does.
    ``ref`` is accepted for a common call signature and ignored.

    Args:
        scale (int): Upsampling factor. Default: 2.
        options (BicubicOptions): no fields. Default: None.
    """

    has_params = False

    def __init__(self, scale: int = 2, options: BicubicOptions | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.options = options or BicubicOptions()

    def forward(self, lr: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        return imresize_torch(lr, self.scale)
