"""ResNet-50 (He et al., CVPR 2016) with torchvision's module names, for Table VI.

``torchvision`` is not a dependency (it does not install beside the pinned torch);
this file rebuilds ``torchvision.models.resnet50`` layer for layer so a torchvision
ImageNet state dict loads here unchanged (``load_torchvision_state``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv, as torchvision): 1x1, 3x3, 1x1 (4x).

    Args:
        inplanes (int): Input channels.
        planes (int): Bottleneck channels (output: 4x).
        stride (int): Stride of the 3x3 conv. Default: 1.
        downsample (nn.Module | None): Projection of the shortcut. Default: None.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """ResNet: Deep Residual Learning for Image Recognition (He, Zhang, Ren, Sun; CVPR 2016).

    Input (B, 3, H, W), ImageNet-normalised (see ``IMAGENET_MEAN``/``IMAGENET_STD``); output
    logits (B, num_classes). Any H, W >= 32 (global average pooling).

    Args:
        layers (tuple[int, ...]): Bottlenecks per stage; (3, 4, 6, 3) is ResNet-50.
        num_classes (int): Outputs of the final dense layer. Default: 1000.
        width (int): Channels of the stem (64 in the paper; smaller for tests). Default: 64.
    """

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), num_classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(8 * width, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width * Bottleneck.expansion, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""RGB mean of ImageNet on [0, 1] (torchvision's normalisation)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""RGB std of ImageNet on [0, 1]."""


def resnet50(num_classes: int = 1000, width: int = 64) -> ResNet:
    """ResNet-50 (3, 4, 6, 3 bottlenecks); ``width=64`` is the paper's (25.6 M parameters at 1000 classes)."""
    return ResNet((3, 4, 6, 3), num_classes=num_classes, width=width)


def load_state_file(path: str, option: str) -> dict[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)`` of a state dict; ``ValueError`` (one line naming
    ``option`` and the file) when it is missing, unsafe to load or not a dict of tensors.
    Accepts ``{"state_dict": {...}}`` wrappers."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{option} {p}: no such file; give a torchvision state dict (.pth)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise ValueError(f"{option} {p}: not a state dict that loads with weights_only=True ({first})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{option} {p}: not a state dict (a dict of tensors); give a torchvision .pth")
    return obj


def check_state(model: nn.Module, state: dict[str, torch.Tensor], option: str, path: str, *,
                skip_prefixes: tuple[str, ...] = (), name: str = "resnet50") -> dict[str, torch.Tensor]:
    """The entries of ``state`` that ``model`` needs, after checking names and shapes match;
    keys starting with ``skip_prefixes`` are ignored on both sides. ``ValueError`` (one line) else."""
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(skip_prefixes)}
    theirs = {k: v for k, v in state.items() if not k.startswith(skip_prefixes)}
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    shape = [k for k in own if k in theirs and tuple(theirs[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        what = (f"{len(missing)} missing (e.g. {missing[0]})" if missing else
                f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else
                f"shape of {shape[0]} is {tuple(theirs[shape[0]].shape)}, expected {tuple(own[shape[0]].shape)}")
        raise ValueError(f"{option} {path}: not a matching state dict: {what} key(s); "
                         f"give torchvision {name} weights")
    return theirs


def load_torchvision_state(model: nn.Module, path: str, option: str = "--weights",
                           skip_prefixes: tuple[str, ...] = ("fc.",)) -> nn.Module:
    """Load a torchvision state dict into ``model`` (``weights_only=True``), all keys except
    ``skip_prefixes`` (the classifier, replaced for the task). ``ValueError`` when it does not match."""
    state = check_state(model, load_state_file(path, option), option, path, skip_prefixes=skip_prefixes)
    model.load_state_dict(state, strict=False)
    return model
