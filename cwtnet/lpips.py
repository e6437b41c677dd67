"""LPIPS (Zhang et al., CVPR 2018), the perceptual distance of Table III, offline and torchvision-free.

    d(x, y) = sum_l mean_hw || w_l * (f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|) ||^2

``f_l`` are five ReLU outputs of an ImageNet backbone (AlexNet: relu1..relu5; VGG16:
relu1_2, relu2_2, relu3_3, relu4_3, relu5_3), unit-normalised over channels; ``w_l``
the learned non-negative 1x1 weights of the ``lpips`` package (v0.1). Inputs are uint8
RGB or [0, 1] tensors, mapped to [-1, 1] and through LPIPS's fixed scaling layer.

The ``lpips`` package itself cannot be used here: it imports torchvision, which does not
install beside the pinned torch. This module rebuilds both backbones with torchvision's
names and reads two local files, never downloading anything:

- backbone: a torchvision state dict, ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``
  (or ``alexnet.pth`` / ``vgg16.pth``), looked up in ``--lpips-weights DIR`` then in
  torch hub's checkpoint folder;
- linear heads: ``alex.pth`` / ``vgg.pth`` (the lpips package's ``weights/v0.1``), looked
  up in ``DIR`` then in an installed ``lpips`` package.

When either is missing ``lpips_status`` says ``unavailable: <reason>`` and no score is
reported (``None``), never a made-up 0.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cwtnet.model.resnet_arch import check_state, load_state_file

NETS = ("alex", "vgg")
"""LPIPS backbones: ``alex`` (the paper's default) and ``vgg`` (VGG16)."""

_BACKBONE_FILES = {"alex": ("alexnet-owt-7be5be79.pth", "alexnet.pth"),
                   "vgg": ("vgg16-397923af.pth", "vgg16.pth")}
_ALEX: tuple[tuple[int, int, int, int] | None, ...] = (
    (64, 11, 4, 2), None, (192, 5, 1, 2), None, (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1), None)
"""torchvision ``alexnet().features``: (channels, kernel, stride, padding) convs, ``None`` = 3x3/2 max pool."""
_VGG16: tuple[int | None, ...] = (64, 64, None, 128, 128, None, 256, 256, 256, None, 512, 512, 512, None,
                                  512, 512, 512, None)
"""torchvision ``vgg16().features``: 3x3 conv channels, ``None`` = 2x2 max pool."""
_TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
"""Index in ``features`` of the five ReLU outputs LPIPS compares."""
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
"""LPIPS's fixed scaling layer, on inputs in [-1, 1]."""


def backbone_features(net: str, width_div: int = 1) -> nn.Sequential:
    """torchvision's ``alexnet().features`` / ``vgg16().features`` (channels // ``width_div`` for tests)."""
    layers: list[nn.Module] = []
    cin = 3
    if net == "alex":
        for conv in _ALEX:
            if conv is None:
                layers.append(nn.MaxPool2d(3, 2))
            else:
                c, k, st, p = conv
                layers += [nn.Conv2d(cin, max(1, c // width_div), k, st, p), nn.ReLU(inplace=True)]
                cin = max(1, c // width_div)
    elif net == "vgg":
        for ch in _VGG16:
            if ch is None:
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, max(1, ch // width_div), 3, padding=1), nn.ReLU(inplace=True)]
                cin = max(1, ch // width_div)
    else:
        raise ValueError(f"unknown LPIPS net {net!r}; choose one of {', '.join(NETS)}")
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS distance with a given backbone and linear heads (both frozen).

    Args:
        net (str): ``alex`` or ``vgg``.
        features (nn.Sequential): The backbone's ``features`` (``backbone_features(net)``, loaded).
        lin (list[torch.Tensor]): Five non-negative weight vectors, one per tap (length = its channels).
    """

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, net: str, features: nn.Sequential, lin: list[torch.Tensor]) -> None:
        super().__init__()
        self.net = net
        self.taps = _TAPS[net]
        self.features = nn.Sequential(*list(features)[: self.taps[-1] + 1])
        self.lin = nn.ParameterList(nn.Parameter(w.detach().float().reshape(-1), requires_grad=False) for w in lin)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        x = (x * 2 - 1 - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x``, ``y`` (B, 3, H, W) in [0, 1] -> distances (B,)."""
        d = x.new_zeros(x.shape[0])
        for fx, fy, w in zip(self._taps(x), self._taps(y), self.lin):
            d = d + ((fx - fy).pow(2) * w.view(1, -1, 1, 1)).sum(dim=1).mean(dim=(1, 2))
        return d


def _find(names: tuple[str, ...], dirs: list[Path]) -> Path | None:
    for d in dirs:
        for n in names:
            if (d / n).is_file():
                return d / n
    return None


def _search_dirs(weights_dir: str | Path | None) -> tuple[list[Path], list[Path]]:
    backbone_dirs = ([Path(weights_dir)] if weights_dir else []) + [Path(torch.hub.get_dir()) / "checkpoints"]
    lin_dirs = [Path(weights_dir)] if weights_dir else []
    spec = importlib.util.find_spec("lpips")
    if spec is not None and spec.origin:
        lin_dirs.append(Path(spec.origin).parent / "weights" / "v0.1")
    return backbone_dirs, lin_dirs


def lpips_files(net: str = "alex", weights_dir: str | Path | None = None) -> tuple[Path | None, Path | None, str]:
    """(backbone file, linear-head file, status): status ``"ok"`` or ``"unavailable: <reason>"``."""
    if net not in NETS:
        return None, None, f"unavailable: unknown LPIPS net {net!r} ({' or '.join(NETS)})"
    if weights_dir is not None and not Path(weights_dir).is_dir():
        return None, None, f"unavailable: --lpips-weights {weights_dir} is not a folder"
    bdirs, ldirs = _search_dirs(weights_dir)
    backbone = _find(_BACKBONE_FILES[net], bdirs)
    lin = _find((f"{net}.pth",), ldirs)
    if backbone is None:
        where = ", ".join(str(d) for d in bdirs)
        return None, lin, f"unavailable: no {_BACKBONE_FILES[net][0]} in {where}"
    if lin is None:
        where = ", ".join(str(d) for d in ldirs) or "no folder given and no lpips package"
        return backbone, None, f"unavailable: no LPIPS linear weights {net}.pth in {where}"
    return backbone, lin, "ok"


def load_lpips(net: str = "alex", weights_dir: str | Path | None = None) -> LPIPS:
    """LPIPS from local files (``lpips_files``); ``ValueError`` (one line) when unavailable or not matching."""
    backbone, lin_path, status = lpips_files(net, weights_dir)
    if status != "ok":
        raise ValueError(f"LPIPS {net} {status}")
    holder = nn.Module()
    holder.features = backbone_features(net)
    state = check_state(holder, load_state_file(str(backbone), "--lpips-weights"), "--lpips-weights",
                        str(backbone), skip_prefixes=("classifier.",),
                        name="alexnet" if net == "alex" else "vgg16")
    holder.load_state_dict(state)
    lin_state = load_state_file(str(lin_path), "--lpips-weights")
    found = [lin_state.get(f"lin{i}.model.1.weight") for i in range(5)]
    features = holder.features
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    chans = [convs[j].out_channels for j in ([0, 1, 2, 3, 4] if net == "alex" else [1, 3, 6, 9, 12])]
    lin = [w for w, c in zip(found, chans) if w is not None and w.numel() == c]
    if len(lin) != 5:
        raise ValueError(f"--lpips-weights {lin_path}: not the lpips v0.1 {net}.pth (lin0..lin4.model.1.weight)")
    return LPIPS(net, features, lin)


_cache: dict[tuple[str, str], LPIPS] = {}


def lpips_distance(a: np.ndarray, b: np.ndarray, net: str = "alex",
                   weights_dir: str | Path | None = None) -> float | None:
    """LPIPS of two uint8 (H, W, 3) images; ``None`` when the weights are not on disk."""
    if lpips_files(net, weights_dir)[2] != "ok":
        return None
    key = (net, str(weights_dir))
    if key not in _cache:
        _cache[key] = load_lpips(net, weights_dir)

    def t(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]

    return float(_cache[key](t(a), t(b))[0])
